"""Calibration audio for static quantization: real corpus utterances cut into the prefix's PCM chunks, plus a
small seeded set of loud and hostile chunks.

Utterances are picked deterministically and spread over speakers (round-robin over the sorted speaker list),
so the same corpus and count always give the same chunks, hence byte-identical calibrated artifacts. Every
chunk of an utterance is kept, the zero-padded last one included: the phone sees such chunks too.

With ``loud`` (``export --calibration-loud``), the speech is followed by a small seeded set of loud and hostile
chunks (:func:`loud_chunks`): full-scale tones and sweeps across the band, full-scale noise, clipped and
DC-shifted calibration speech, so the int8 activation ranges also cover what a microphone delivers at full scale.
These are NOT parity's stress cases (``toolkit/parity/stress.py``): other frequencies, other gains and offsets,
another noise seed, and speech from the calibration split (parity stresses an ``eval-speakers`` utterance), so
parity's stress gates still measure how the ranges generalize.

It is off by default because, measured on the shipped split-4 prefix, it does not pay: with LiteRT's ranges taken
as the min/max over all chunks, speech calibration alone already covers full-scale input (7 kHz tone 12.6 dB
with or without the loud set), and ExecuTorch's histogram observer, given the loud set, trades speech resolution
for range (speech 24.5 -> 23.7 dB, the 7 kHz tone 7.9 -> 2.7 dB). What still fails the stress gates is not a
range (docs/export-notes.md, "Loud input").
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toolkit.audio import SAMPLE_RATE, load_audio
from toolkit.chunking import chunk_pcm, pick_utterances
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError

# Default calibration size. 32 was enough for the plain prefix; the instance-normalized split-4 prefix gave
# LiteRT int8-static ΔWER +1.25 pp on the parity set with 32 utterances and +0.42 pp with 128.
CALIBRATION_UTTS = 128

# The loud set. Seed and every frequency, gain and offset differ from parity's stress cases (seed 16; tones at
# 100, 1000, 4000, 7000 Hz; clipping at +12 dB; DC +0.5): the stress gates must test generalization, not recall.
LOUD_SEED = 1601
LOUD_TONE_HZ = (180, 450, 1500, 2600, 3300, 5200, 6300, 7600)  # full scale, random phase
LOUD_SWEEP_HZ = (50.0, 7900.0)  # one linear and one logarithmic full-scale sweep over this band
LOUD_CLIP_GAIN_DB = (6.0, 20.0)  # calibration speech driven this far past full scale, then clipped
LOUD_DC_OFFSETS = (-0.4, 0.3)  # calibration speech at 0.5 peak on these DC offsets
LOUD_SPEECH_UTTS = 2  # calibration utterances (the first picked) whose first chunk feeds the speech-based cases


def loud_chunks(speech: list[np.ndarray], chunk_samples: int, sample_rate: int = SAMPLE_RATE,
                seed: int = LOUD_SEED) -> tuple[list[np.ndarray], list[dict]]:
    """The loud calibration chunks, each (1, chunk_samples) float32, and their names and descriptions.

    ``speech``: the first chunk of a few calibration utterances (peak-normalized here before clipping and
    DC shifting). Deterministic: fixed frequencies, gains and offsets, phases and noise from ``seed``."""
    rng = np.random.default_rng(seed)
    t = np.arange(chunk_samples, dtype=np.float64) / sample_rate
    cases: list[tuple[str, str, np.ndarray]] = []
    for f in LOUD_TONE_HZ:
        cases.append((f"tone-{f}hz", f"sine at {f} Hz, amplitude 1.0, random phase",
                      np.sin(2 * np.pi * f * t + rng.uniform(0, 2 * np.pi))))
    f0, f1 = LOUD_SWEEP_HZ
    duration = chunk_samples / sample_rate
    linear_phase = 2 * np.pi * (f0 * t + (f1 - f0) * t ** 2 / (2 * duration))
    log_rate = np.log(f1 / f0) / duration
    log_phase = 2 * np.pi * f0 * (np.exp(log_rate * t) - 1) / log_rate
    cases.append(("sweep-linear", f"linear sweep {f0:g}-{f1:g} Hz, amplitude 1.0", np.sin(linear_phase)))
    cases.append(("sweep-log", f"logarithmic sweep {f0:g}-{f1:g} Hz, amplitude 1.0", np.sin(log_phase)))
    cases.append(("noise-uniform", f"white noise, uniform over [-1, 1] (seed {seed})",
                  rng.uniform(-1.0, 1.0, chunk_samples)))
    cases.append(("noise-gaussian-clipped", f"white Gaussian noise, std 0.5, clipped to [-1, 1] (seed {seed})",
                  np.clip(rng.normal(0.0, 0.5, chunk_samples), -1.0, 1.0)))
    for i, pcm in enumerate(speech):
        voice = np.asarray(pcm, dtype=np.float64).reshape(-1)
        voice = voice / (float(np.max(np.abs(voice))) or 1.0)
        for gain_db in LOUD_CLIP_GAIN_DB:
            cases.append((f"speech{i}-clipped-{gain_db:g}db",
                          f"calibration speech {i} at +{gain_db:g} dB past full scale, clipped to [-1, 1]",
                          np.clip(voice * 10 ** (gain_db / 20), -1.0, 1.0)))
        for offset in LOUD_DC_OFFSETS:
            cases.append((f"speech{i}-dc{offset:+g}", f"calibration speech {i} at 0.5 peak plus a {offset:+g} DC offset",
                          0.5 * voice + offset))
    chunks = [np.asarray(pcm, dtype=np.float32).reshape(1, -1) for _, _, pcm in cases]
    return chunks, [{"name": name, "what": what} for name, what, _ in cases]


def calibration_chunks(split_dir: str | Path, count: int, chunk_samples: int,
                       loud: bool = False) -> tuple[list[np.ndarray], dict]:
    """Chunks of ``count`` utterances from a LibriSpeech-layout split, followed (``loud``) by the loud set made
    from the first of them, plus a JSON-ready description (the manifest's ``calibration`` section)."""
    split_dir = Path(split_dir)
    if count < 1:
        raise VeilError(f"--calibration-utts must be at least 1, got {count}")
    if not split_dir.is_dir():
        raise VeilError(f"{split_dir}: calibration corpus split not found (set --corpus, or choose a recipe "
                        f"that needs no calibration, e.g. --recipe int8-dynamic)")
    picked = pick_utterances(read_librispeech(split_dir, probe_lengths=False), count)
    chunks: list[np.ndarray] = []
    firsts: list[np.ndarray] = []
    seconds = 0.0
    for u in picked:
        pcm = load_audio(u.path)
        seconds += len(pcm) / SAMPLE_RATE
        utterance_chunks = chunk_pcm(pcm, chunk_samples)
        firsts.append(utterance_chunks[0])
        chunks += utterance_chunks
    info = {"corpus_split": str(split_dir), "utterances": len(picked), "speakers": len({u.speaker for u in picked}),
            "chunks": len(chunks), "audio_seconds": round(seconds, 2), "utterance_ids": [u.utt_id for u in picked]}
    if loud:
        extra, cases = loud_chunks(firsts[:LOUD_SPEECH_UTTS], chunk_samples)
        chunks += extra
        info["loud"] = {"seed": LOUD_SEED, "chunks": len(extra), "cases": cases,
                        "note": "full-scale tones, sweeps and noise, clipped and DC-shifted calibration speech; "
                                "distinct from parity's stress cases"}
    return chunks, info


def manifest_calibration(info: dict, chunk_samples: int) -> list[np.ndarray]:
    """The calibration chunks a manifest's ``calibration`` section describes, rebuilt exactly (the loud set only
    where the section records one, so exports made before it are rebuilt as they were)."""
    chunks, rebuilt = calibration_chunks(Path(info["corpus_split"]), int(info["utterances"]), chunk_samples,
                                         loud="loud" in info)
    if rebuilt["utterance_ids"] != info.get("utterance_ids", rebuilt["utterance_ids"]):
        raise VeilError(f"{info['corpus_split']}: the calibration utterances differ from the export's manifest; "
                        f"re-export or restore the corpus")
    return chunks
