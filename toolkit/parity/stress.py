"""Loud and hostile audio for parity: what a phone's microphone also delivers, beside normal speech.

Parity's speech sits at normal level, so it cannot see a path that breaks only on loud input: a float16
log-mel frontend, for one, overflows or loses the log floor on a full-scale tone (a torch fp16 stand-in of
the shipped prefix: 47–58 dB against fp32 on speech, 18.6 dB on a full-scale 1 kHz sine). Each stress case is
one chunk, made deterministically (fixed frequencies and a seeded generator) from one parity utterance:

| case | what |
|---|---|
| ``tone-{f}hz`` | a full-scale sine (amplitude 1.0) at 100, 1000, 4000 and 7000 Hz |
| ``speech-clipped`` | the speech driven 12 dB past full scale, then clipped to [-1, 1] |
| ``noise-full-scale`` | white noise, uniform over [-1, 1] |
| ``near-silence`` | the speech at -80 dBFS peak (1e-4), where the log floor dominates |
| ``dc-offset`` | the speech at 0.5 peak riding on a +0.5 DC offset |

The transcript of a tone means nothing, so stress cases are judged on the embeddings alone: SNR and cosine
against the float prefix on the same chunk, gated per case (``stress_snr``, ``stress_cos`` in
``toolkit/parity/gates.py``). Where a case fails, :func:`stage_snr` names the stage where the gap opens.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from export import snr_db
from toolkit.parity.metrics import frame_cosine

STRESS_SEED = 16
TONE_HZ = (100, 1000, 4000, 7000)
CLIP_GAIN_DB = 12.0
NEAR_SILENCE_PEAK = 1e-4
DC_OFFSET = 0.5


@dataclass(frozen=True)
class StressCase:
    name: str
    what: str
    pcm: np.ndarray  # (1, chunk_samples) float32 in [-1, 1]


def stress_cases(speech: np.ndarray, chunk_samples: int, sample_rate: int, seed: int = STRESS_SEED) -> list[StressCase]:
    """The stress chunks, built from ``speech`` (one utterance; its first chunk, zero-padded) and ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(chunk_samples, dtype=np.float64) / sample_rate
    voice = np.zeros(chunk_samples)
    head = np.asarray(speech, dtype=np.float64).reshape(-1)[:chunk_samples]
    voice[:len(head)] = head
    peak = float(np.max(np.abs(voice))) or 1.0
    voice = voice / peak  # peak 1.0
    cases = [(f"tone-{f}hz", f"sine at {f} Hz, amplitude 1.0 (full scale)", np.sin(2 * np.pi * f * t))
             for f in TONE_HZ]
    gain = 10 ** (CLIP_GAIN_DB / 20)
    cases += [
        ("speech-clipped", f"speech at +{CLIP_GAIN_DB:g} dB past full scale, clipped to [-1, 1]",
         np.clip(voice * gain, -1.0, 1.0)),
        ("noise-full-scale", f"white noise, uniform over [-1, 1] (seed {seed})", rng.uniform(-1.0, 1.0, chunk_samples)),
        ("near-silence", f"speech at {NEAR_SILENCE_PEAK:g} peak ({20 * np.log10(NEAR_SILENCE_PEAK):.0f} dBFS)",
         voice * NEAR_SILENCE_PEAK),
        ("dc-offset", f"speech at 0.5 peak plus a {DC_OFFSET:+g} DC offset", 0.5 * voice + DC_OFFSET),
    ]
    return [StressCase(name, what, np.asarray(pcm, dtype=np.float32).reshape(1, -1)) for name, what, pcm in cases]


def case_metrics(reference: np.ndarray, output: np.ndarray) -> dict:
    """One case: SNR (dB) and per-frame cosine of ``output`` against ``reference`` (both (1, T, d)); non-finite
    values are counted, then zeroed so the numbers stay defined (and bad)."""
    ref = np.asarray(reference, dtype=np.float64).reshape(-1, reference.shape[-1])
    out = np.asarray(output, dtype=np.float64).reshape(-1, output.shape[-1])
    nonfinite = int(out.size - np.count_nonzero(np.isfinite(out)))
    out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
    cos = frame_cosine(ref, out)
    return {"snr_db": snr_db(ref, out), "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "max_abs_error": float(np.max(np.abs(out - ref))), "nonfinite": nonfinite}


def run_stress(cases: list[StressCase], reference, runner) -> dict:
    """Every case through the float ``reference`` and the artifact's ``runner`` (both: (1, S) -> (1, T, d)).
    Returns the per-case numbers and the worst case, the values the stress gates read."""
    rows = []
    for case in cases:
        m = case_metrics(reference(case.pcm), runner(case.pcm))
        rows.append({"case": case.name, "what": case.what, **m})
    worst = min(rows, key=lambda r: r["snr_db"])
    return {"seed": STRESS_SEED, "cases": rows, "worst_case": worst["case"],
            "stress_snr_db": worst["snr_db"], "stress_cosine_mean": min(r["cosine_mean"] for r in rows),
            "nonfinite": sum(r["nonfinite"] for r in rows)}


def stage_outputs(prefix: torch.nn.Module, pcm: np.ndarray) -> dict[str, np.ndarray]:
    """The output of each stage of a ``Prefix`` (or a dtype wrapper holding one as ``.prefix``) on one chunk:
    ``frontend`` (standardized log-mel), ``subsampling``, ``block 1..k`` and ``output`` (after the split
    normalization, when the prefix has one), each as float64."""
    inner = getattr(prefix, "prefix", prefix)
    names = {"frontend": inner.frontend, "subsampling": inner.subsampling,
             **{f"block {i}": b for i, b in enumerate(inner.blocks, 1)}}
    captured: dict[str, np.ndarray] = {}
    hooks = [module.register_forward_hook(
        lambda _m, _i, out, name=name: captured.__setitem__(name, out.detach().double().numpy()))
        for name, module in names.items()]
    try:
        with torch.no_grad():
            captured["output"] = prefix(torch.from_numpy(np.asarray(pcm, dtype=np.float32))).double().numpy()
    finally:
        for h in hooks:
            h.remove()
    return {name: captured[name] for name in [*names, "output"]}


def stage_snr(reference: torch.nn.Module, estimate: torch.nn.Module, pcm: np.ndarray) -> list[dict]:
    """Per-stage SNR (dB) of a torch stand-in (an fp16 estimate) against the float prefix on one chunk: where
    the gap opens, for artifacts that cannot run here (the runtime's own stages are re-exported instead, in
    ``toolkit/parity/localize.py``)."""
    ref, est = stage_outputs(reference, pcm), stage_outputs(estimate, pcm)
    rows = []
    for name in ref:
        nonfinite = int(est[name].size - np.count_nonzero(np.isfinite(est[name])))
        rows.append({"stage": name, "snr_db": snr_db(ref[name], np.nan_to_num(est[name], nan=0.0, posinf=0.0,
                                                                                 neginf=0.0)),
                     "nonfinite": nonfinite})
    return rows


def first_gap(stages: list[dict], threshold_db: float) -> str | None:
    """The first stage whose SNR falls below ``threshold_db``, else None."""
    return next((s["stage"] for s in stages if not s["snr_db"] >= threshold_db), None)
