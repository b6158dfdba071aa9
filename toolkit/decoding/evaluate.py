"""Transcribe an in-memory utterance set with the full model (batched, chunked prefix) and score it."""
from __future__ import annotations

import torch

from toolkit.data.dataset import AudioSet, collate, length_batches
from toolkit.decoding.ctc import error_rates, greedy_decode


@torch.no_grad()
def transcribe_set(model, tokenizer, data: AudioSet, max_batch_samples: int = 16000 * 120,
                   device: str = "cpu") -> list[str]:
    model.eval()
    hyps = [""] * len(data)
    for batch in length_batches([len(x) for x in data.pcm], max_batch_samples, seed=None):
        pcm, lengths = collate([data.pcm[i] for i in batch])
        out = model(pcm.to(device), lengths.to(device))
        for i, text in zip(batch, greedy_decode(out["log_probs"].cpu(), out["frame_lengths"].cpu(), tokenizer)):
            hyps[i] = text
    return hyps


def evaluate_set(model, tokenizer, data: AudioSet, device: str = "cpu") -> dict:
    hyps = transcribe_set(model, tokenizer, data, device=device)
    return error_rates([u.text for u in data.utts], hyps)
