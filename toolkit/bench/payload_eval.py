"""What the payload codec costs: bytes per second of audio and ΔWER through the cloud suffix.

The float prefix runs each real ``eval-speakers`` utterance chunk by chunk, as a phone does; each chunk's
frames (the last chunk trimmed to the utterance) become one message per codec; the float suffix decodes
what the cloud would receive. ΔWER is codec minus fp32-unencoded, in percentage points against the
reference transcripts (parity's cloud metrics, ``toolkit/parity/metrics.py``).
"""
from __future__ import annotations

import numpy as np

from toolkit import payload
from toolkit.audio import SAMPLE_RATE
from toolkit.chunking import ChunkSpec, run_chunked, torch_runner
from toolkit.parity import metrics

PCM16_BYTES_PER_SECOND = SAMPLE_RATE * 2  # 16 kHz, 16-bit mono PCM
SPEECH_CODECS = {  # nominal bitrates, for scale (not measured here)
    "AMR-WB 12.65 kbit/s (3GPP wideband speech codec)": 12650 / 8,
    "Opus 16 kbit/s wideband speech": 16000 / 8,
}


def chunk_frames(prefix, pcm: np.ndarray, chunk: ChunkSpec) -> list[np.ndarray]:
    """Per-chunk embeddings of one utterance (the last chunk trimmed to the utterance's valid frames): the
    phone-style chunked run, cut back into one message per chunk."""
    frames, _ = run_chunked(torch_runner(prefix), pcm, chunk)
    per_chunk = chunk.chunk_frames
    return [frames[i:i + per_chunk] for i in range(0, len(frames), per_chunk)]


def evaluate_payload(prefix, suffix, pcms: list[np.ndarray], texts: list[str], tokenizer, chunk: ChunkSpec,
                     codecs=tuple(payload.CODECS)) -> dict:
    per_utt = [chunk_frames(prefix, p, chunk) for p in pcms]
    seconds = sum(len(p) for p in pcms) / chunk.sample_rate
    ref = [np.concatenate(chunks) for chunks in per_utt]
    ref_lp = metrics.decode(suffix, ref)
    out = {"utterances": len(pcms), "audio_seconds": round(seconds, 2), "message": "one per prefix chunk",
           "frames_per_second": chunk.frame_rate_hz, "embedding_dim": int(ref[0].shape[1]),
           "float": metrics.transcript_error_rates(ref_lp, texts, tokenizer), "codecs": {},
           "references": {"pcm16_bytes_per_second": PCM16_BYTES_PER_SECOND,
                          "speech_codecs_bytes_per_second": SPEECH_CODECS}}
    for codec in codecs:
        total, received, errs = 0, [], []
        for chunks in per_utt:
            got = []
            for emb in chunks:
                dec, n = payload.roundtrip(emb, codec)
                total += n
                got.append(dec)
                errs.append(np.abs(dec - emb).max(axis=1) / np.maximum(np.abs(emb).max(axis=1), 1e-12))
            received.append(np.concatenate(got))
        cloud = metrics.cloud_metrics(ref_lp, metrics.decode(suffix, received), texts, tokenizer)
        emb = metrics.embedding_metrics(ref, received)
        bps = total / seconds
        out["codecs"][codec] = {"bytes_total": total, "bytes_per_second": bps, "kB_per_second": bps / 1000,
                                "vs_pcm16": bps / PCM16_BYTES_PER_SECOND,
                                "max_rel_frame_error": float(np.concatenate(errs).max()),
                                "snr_db": emb["snr_db"], "cosine_min": emb["cosine_min"],
                                "wer": cloud["wer_artifact"], "dwer": cloud["dwer"], "dwer_abs": cloud["dwer_abs"],
                                "dcer": cloud["dcer"], "identical_share": cloud["identical_share"],
                                "kl_mean": cloud["kl_mean"]}
    return out
