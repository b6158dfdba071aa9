"""Attack what an exported prefix actually emits: the export folder's artifacts, run in their real runtimes.

The export folder is checked at the boundary (manifest present and readable, the artifacts it lists present
and unchanged since export, one chunk length everywhere) before any slow work; every problem is one line
naming the file. Core ML executes only on macOS: elsewhere a Core ML artifact gets a ``needs-macos`` record
and is never reported as attacked, and asking for nothing but Core ML is an error.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import export as backends
from toolkit import payload
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest
from toolkit.model.bottleneck import NOISE_SEED


@dataclass
class ExportedPrefix:
    """One artifact of an export folder, with everything a privacy report must say about it."""
    artifact: backends.Artifact
    entry: dict
    export_dir: Path
    split_layer: int
    chunk: ChunkSpec
    checkpoint: dict  # the manifest's {"path", "sha256", ...}
    codebook: np.ndarray | None = None  # a vq bottleneck's codebook: the phone sends indices, the cloud codewords
    noise_std: float = 0.0  # a noisy bottleneck's channel: the phone adds N(0, S^2) to every value it sends
    noise: np.random.Generator = field(default_factory=lambda: np.random.default_rng(NOISE_SEED))

    def received(self, frames: np.ndarray) -> np.ndarray:
        """What the cloud receives for the artifact's output ``frames``: with a codebook, the codewords of the
        indices the phone's vq codec sends (``toolkit/payload.py``); with a noisy channel, the frames plus their
        noise (seeded here, so that a report can be reproduced; a phone draws it from a secure source); else
        the frames themselves."""
        if self.codebook is not None:
            return payload.vq_codewords(payload.vq_indices(frames, self.codebook), self.codebook)
        if self.noise_std:
            return (frames + self.noise_std * self.noise.standard_normal(frames.shape)).astype(np.float32)
        return frames

    @property
    def name(self) -> str:
        return f"{self.artifact.backend}/{self.artifact.recipe}"

    def describe(self) -> dict:
        return {"export_dir": str(self.export_dir), "file": self.entry["file"], "path": str(self.artifact.path),
                "backend": self.artifact.backend, "recipe": self.artifact.recipe,
                "sha256": self.entry["sha256"], "size_bytes": self.entry.get("size_bytes"),
                "split_layer": self.split_layer, "chunk_samples": self.chunk.chunk_samples,
                "frame_samples": self.chunk.frame_samples,
                "checkpoint": {"path": self.checkpoint.get("path"), "sha256": self.checkpoint.get("sha256")},
                "attacked": ("codewords of the vq payload" if self.codebook is not None else
                             f"the artifact's output plus the phone's N(0, {self.noise_std:g}²) noise" if self.noise_std
                             else "the artifact's output")}


def read_export(export_dir: Path, only: list[str] | None = None) -> list[ExportedPrefix]:
    """The artifacts of ``export_dir`` (those of the backends in ``only``, default all), checked at the
    boundary by :meth:`ExportManifest.read`."""
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise VeilError(f"{export_dir}: --artifact export folder not found")
    manifest = ExportManifest.read(export_dir, only=only)
    codebook = manifest.codebook() if manifest.payload_codec == "vq" else None
    return [ExportedPrefix(art, entry, export_dir, manifest.split_layer, manifest.chunk, dict(manifest.checkpoint),
                           codebook, manifest.noise_std) for entry, art in manifest.artifacts()]


def load_runners(prefixes: list[ExportedPrefix]) -> tuple[list[tuple[ExportedPrefix, object]], list[dict]]:
    """Runtime runners for the artifacts that can run here, and a ``needs-macos`` record for the others.
    Raises a VeilError when nothing can run (e.g. only Core ML off macOS): that is never a result."""
    runnable, skipped = [], []
    for p in prefixes:
        try:
            runnable.append((p, backends.load(p.artifact)))
        except backends.NeedsMacOS as exc:
            skipped.append({**p.describe(), "status": exc.status, "detail": str(exc)})
        except Exception as exc:  # a runtime that cannot even open the file: name it, one line
            raise VeilError(f"{p.artifact.path}: {p.artifact.backend} runtime could not load it "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not runnable:
        names = ", ".join(s["file"] for s in skipped)
        raise VeilError(f"needs-macos: {names} can only be run by Core ML on macOS (this is "
                        f"{platform.system()}); nothing was attacked")
    return runnable, skipped
