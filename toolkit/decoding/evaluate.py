"""Transcribe an in-memory utterance set with the full model (batched, chunked prefix) and score it; the
results document of ``veil evaluate`` and its headline table."""
from __future__ import annotations

import torch

from toolkit.data.dataset import AudioSet, collate, length_batches
from toolkit.decoding.ctc import error_rates, greedy_decode
from toolkit.headlines import made_by
from toolkit.model.bottleneck import replay_noise


@torch.no_grad()
def transcribe_set(model, tokenizer, data: AudioSet, max_batch_samples: int = 16000 * 120,
                   device: str = "cpu") -> list[str]:
    model.eval()
    noise = replay_noise(device)
    hyps = [""] * len(data)
    for batch in length_batches([len(x) for x in data.pcm], max_batch_samples, seed=None):
        pcm, lengths = collate([data.pcm[i] for i in batch])
        out = model(pcm.to(device), lengths.to(device), generator=noise)
        for i, text in zip(batch, greedy_decode(out["log_probs"].cpu(), out["frame_lengths"].cpu(), tokenizer)):
            hyps[i] = text
    return hyps


def evaluate_set(model, tokenizer, data: AudioSet, device: str = "cpu") -> dict:
    hyps = transcribe_set(model, tokenizer, data, device=device)
    return error_rates([u.text for u in data.utts], hyps)


EVAL_FORMAT = "veil-eval/1"


def is_eval_result(doc) -> bool:
    """``veil evaluate --json`` output; files written before it carried a format have its two keys."""
    return isinstance(doc, dict) and (doc.get("format") == EVAL_FORMAT or {"checkpoint", "results"} <= set(doc))


def headline(doc: dict, source: str | None = None) -> str:
    """The README's accuracy table: CER/WER per split of one checkpoint (greedy CTC, no language model)."""
    lines = ["| split | utterances | CER % | WER % |", "|---|---|---|---|"]
    for split, r in doc["results"].items():
        lines.append(f"| {split} | {r['utterances']} | {r['cer']:.2f} | {r['wer']:.2f} |")
    return "\n".join(lines) + (f"\n\n`{doc['checkpoint']}`, greedy CTC, no language model. "
                                + made_by(doc.get("command") or "veil evaluate", source) + "\n")
