"""How a phone feeds the prefix: fixed-size PCM chunks, the last one zero-padded, frames concatenated and trimmed.

:class:`ChunkSpec` is the chunk geometry (sample rate, samples per chunk, samples per embedding frame); the
model config, the export manifest and every runner carry this one object. :func:`run_chunked` is the one
chunked runner: parity, bench, privacy and the tests run an exported artifact (or the float prefix, through
:func:`torch_runner`) exactly as the phone does. :func:`pick_utterances` / :func:`pick_audio` choose real
corpus utterances deterministically, spread over speakers.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from toolkit.audio import load_audio
from toolkit.data.librispeech import Utterance, read_librispeech
from toolkit.errors import VeilError


@dataclass(frozen=True)
class ChunkSpec:
    """The prefix's chunk geometry. ``sample_rate`` in Hz; ``chunk_samples``: PCM samples per chunk (the
    artifact's input length); ``frame_samples``: PCM samples per embedding frame (hop x subsampling)."""
    sample_rate: int
    chunk_samples: int
    frame_samples: int

    def __post_init__(self):
        if min(self.sample_rate, self.chunk_samples, self.frame_samples) < 1:
            raise ValueError(f"chunk geometry must be positive, got {self}")
        if self.chunk_samples % self.frame_samples:
            raise ValueError(f"chunk_samples={self.chunk_samples} is not a multiple of {self.frame_samples} "
                             f"(frame_samples: PCM samples per embedding frame)")

    @property
    def chunk_frames(self) -> int:
        """Embedding frames per chunk."""
        return self.chunk_samples // self.frame_samples

    @property
    def chunk_seconds(self) -> float:
        return self.chunk_samples / self.sample_rate

    @property
    def frame_rate_hz(self) -> float:
        return self.sample_rate / self.frame_samples

    def frames_for(self, num_samples: int) -> int:
        """Valid embedding frames of an utterance of ``num_samples``: ceil(num_samples / frame_samples)."""
        return -(-int(num_samples) // self.frame_samples)

    def chunks_for(self, num_samples: int) -> int:
        """Chunks a phone sends for ``num_samples`` (at least one)."""
        return max(1, -(-int(num_samples) // self.chunk_samples))

    def valid_samples(self, num_samples: int) -> list[int]:
        """The true (unpadded) samples in each chunk of an utterance of ``num_samples``: what the streaming
        protocol's CHUNK message declares beside the zero-padded chunk."""
        return [min(self.chunk_samples, int(num_samples) - i * self.chunk_samples)
                for i in range(self.chunks_for(num_samples))]


def chunk_pcm(pcm: np.ndarray, chunk_samples: int) -> list[np.ndarray]:
    """(S,) float32 -> list of fresh (1, chunk_samples) arrays, the last one zero-padded."""
    n = max(1, -(-len(pcm) // chunk_samples))
    padded = np.zeros(n * chunk_samples, dtype=np.float32)
    padded[: len(pcm)] = pcm
    return [padded[i * chunk_samples:(i + 1) * chunk_samples].reshape(1, chunk_samples).copy() for i in range(n)]


def run_chunked(run: Callable[[np.ndarray], np.ndarray], pcm: np.ndarray,
                chunk: ChunkSpec) -> tuple[np.ndarray, list[np.ndarray]]:
    """As the phone runs it: chunks of ``chunk.chunk_samples`` (last zero-padded), frames concatenated and
    trimmed to ceil(S / frame_samples). ``run``: (1, chunk_samples) float32 -> (1, chunk_frames, d) (an
    artifact's runner, or :func:`torch_runner`). Returns the (T, d) embeddings and the chunks."""
    chunks = chunk_pcm(pcm, chunk.chunk_samples)
    frames = np.concatenate([run(c)[0] for c in chunks])
    return frames[: chunk.frames_for(len(pcm))], chunks


def torch_runner(module: torch.nn.Module) -> Callable[[np.ndarray], np.ndarray]:
    """A torch module (e.g. the float ``Prefix``) as a chunk runner: numpy float32 in, numpy out, no autograd."""
    def run(chunk: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module(torch.from_numpy(chunk)).numpy()
    return run


def pick_utterances(utts: list[Utterance], count: int) -> list[Utterance]:
    """``count`` utterances, one per speaker in turn (speakers and their utterances in sorted order), so the
    same corpus and count always give the same audio (hence byte-identical calibrated artifacts)."""
    by_speaker: dict[str, list[Utterance]] = defaultdict(list)
    for u in sorted(utts, key=lambda u: u.utt_id):
        by_speaker[u.speaker].append(u)
    queues = [by_speaker[s] for s in sorted(by_speaker)]
    picked, depth = [], 0
    while len(picked) < count and any(depth < len(q) for q in queues):
        picked += [q[depth] for q in queues if depth < len(q)][: count - len(picked)]
        depth += 1
    return picked


def pick_audio(corpus: Path, split: str, count: int, flag: str = "--parity-utts"):
    """``count`` utterances of ``corpus/split`` (see :func:`pick_utterances`) and their PCM (float32, [-1, 1]).
    ``flag`` names the option that set ``count`` in the error for a count below 1."""
    if count < 1:
        raise VeilError(f"{flag} must be at least 1, got {count}")
    split_dir = Path(corpus) / split
    if not split_dir.is_dir():
        raise VeilError(f"{split_dir}: corpus split not found (set --corpus)")
    utts = pick_utterances(read_librispeech(split_dir, probe_lengths=False), count)
    return utts, [load_audio(u.path) for u in utts]
