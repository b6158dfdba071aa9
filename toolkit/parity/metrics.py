"""Parity numbers. Embeddings: per-frame cosine, SNR, absolute error, non-finite values. Cloud: the float
suffix decodes the artifact's embeddings and the float embeddings; WER/CER against the references, CTC
posterior KL per frame, share of identical greedy transcripts.

Embeddings are lists of per-utterance (T, d) arrays, frames already trimmed to the utterance's valid length.
"""
from __future__ import annotations

import numpy as np
import torch

from export import snr_db
from toolkit.decoding.ctc import error_rates, greedy_ids


def frame_cosine(ref: np.ndarray, test: np.ndarray) -> np.ndarray:
    """Cosine similarity per frame (T,). Two all-zero frames count as identical (1.0)."""
    ref, test = ref.astype(np.float64), test.astype(np.float64)
    num = np.sum(ref * test, axis=-1)
    den = np.linalg.norm(ref, axis=-1) * np.linalg.norm(test, axis=-1)
    both_zero = (den == 0) & (np.abs(ref).sum(-1) == 0) & (np.abs(test).sum(-1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return np.where(both_zero, 1.0, cos)


def embedding_metrics(refs: list[np.ndarray], tests: list[np.ndarray]) -> dict:
    """Numbers over all frames of all utterances; non-finite artifact values are counted, then zeroed so
    the other numbers stay defined (and bad)."""
    ref = np.concatenate(refs)
    test = np.concatenate(tests)
    nonfinite = int(np.size(test) - np.count_nonzero(np.isfinite(test)))
    test = np.nan_to_num(test, nan=0.0, posinf=0.0, neginf=0.0)
    cos = frame_cosine(ref, test)
    err = np.abs(test.astype(np.float64) - ref)
    return {"frames": int(ref.shape[0]), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "snr_db": snr_db(ref, test), "max_abs_error": float(err.max()), "mean_abs_error": float(err.mean()),
            "nonfinite": nonfinite}


def decode(suffix, embeddings: list[np.ndarray]) -> list[torch.Tensor]:
    """Float suffix on each utterance's embeddings (whole utterance, no padding) -> CTC log-probs (T, V)."""
    out = []
    with torch.no_grad():
        for emb in embeddings:
            x = torch.from_numpy(np.nan_to_num(emb, nan=0.0, posinf=0.0, neginf=0.0)).float()[None]
            out.append(suffix(x, torch.ones(1, x.shape[1], dtype=torch.bool))[0])
    return out


def ctc_kl(ref_lp: list[torch.Tensor], test_lp: list[torch.Tensor]) -> float:
    """Mean over frames of KL(P_float || P_artifact) of the CTC posteriors, in nats."""
    kl = [torch.sum(r.exp() * (r - t), dim=-1) for r, t in zip(ref_lp, test_lp)]
    return max(0.0, float(torch.cat(kl).mean()))  # KL >= 0; float rounding can dip a hair below


def transcript_error_rates(log_probs: list[torch.Tensor], texts: list[str], tokenizer) -> dict:
    """WER/CER (%) of the greedy transcripts of ``log_probs`` against the references."""
    return error_rates(texts, [tokenizer.decode(greedy_ids(lp)) for lp in log_probs])


def cloud_metrics(float_lp: list[torch.Tensor], artifact_lp: list[torch.Tensor], texts: list[str],
                  tokenizer) -> dict:
    """What the cloud sees. ``dwer``/``dcer`` are signed, artifact minus float, in percentage points against
    the references (a gate on them fails only on degradation); ``wer_vs_float`` scores the artifact's
    transcripts against the float transcripts (it also catches changes that cancel in ``dwer``)."""
    float_hyps = [tokenizer.decode(greedy_ids(lp)) for lp in float_lp]
    art_hyps = [tokenizer.decode(greedy_ids(lp)) for lp in artifact_lp]
    f, a = error_rates(texts, float_hyps), error_rates(texts, art_hyps)
    vs_float = error_rates(float_hyps, art_hyps)
    return {"wer_float": f["wer"], "wer_artifact": a["wer"], "dwer": a["wer"] - f["wer"],
            "dwer_abs": abs(a["wer"] - f["wer"]), "cer_float": f["cer"], "cer_artifact": a["cer"],
            "dcer": a["cer"] - f["cer"], "wer_vs_float": vs_float["wer"],
            "kl_mean": ctc_kl(float_lp, artifact_lp),
            "identical_share": float(np.mean([x == y for x, y in zip(float_hyps, art_hyps)])),
            "utterances": len(texts), "examples": [{"reference": t, "float": x, "artifact": y}
                                                   for t, x, y in list(zip(texts, float_hyps, art_hyps))[:3]]}
