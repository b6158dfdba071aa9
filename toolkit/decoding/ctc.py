"""CTC greedy decoding and WER/CER (jiwer)."""
from __future__ import annotations

import jiwer
import torch


def greedy_ids(log_probs: torch.Tensor, length: int | None = None, blank: int = 0) -> list[int]:
    """Best path for one utterance (T, V): argmax per frame, merge repeats, drop blanks."""
    best = log_probs[:length].argmax(-1).tolist() if length is not None else log_probs.argmax(-1).tolist()
    out, prev = [], blank
    for t in best:
        if t != prev and t != blank:
            out.append(t)
        prev = t
    return out


def greedy_decode(log_probs: torch.Tensor, frame_lengths: torch.Tensor, tokenizer) -> list[str]:
    return [tokenizer.decode(greedy_ids(lp, int(n))) for lp, n in zip(log_probs, frame_lengths)]


def error_rates(refs: list[str], hyps: list[str]) -> dict:
    """Corpus-level WER and CER in percent (an empty hypothesis counts as all deletions)."""
    hyps = [h if h.strip() else "" for h in hyps]
    pairs = [(r, h) for r, h in zip(refs, hyps) if r.strip()]
    if not pairs:
        return {"wer": float("nan"), "cer": float("nan"), "utterances": 0}
    refs, hyps = zip(*pairs)
    return {"wer": 100.0 * jiwer.wer(list(refs), list(hyps)), "cer": 100.0 * jiwer.cer(list(refs), list(hyps)),
            "utterances": len(refs)}
