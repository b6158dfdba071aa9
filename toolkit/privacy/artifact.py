"""Attack what an exported prefix actually emits: the export folder's artifacts, run in their real runtimes.

The export folder is checked at the boundary (manifest present and readable, the artifacts it lists present
and unchanged since export, one chunk length everywhere) before any slow work; every problem is one line
naming the file. Core ML executes only on macOS: elsewhere a Core ML artifact gets a ``needs-macos`` record
and is never reported as attacked, and asking for nothing but Core ML is an error.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass
from pathlib import Path

import export as backends
from toolkit.errors import VeilError


@dataclass
class ExportedPrefix:
    """One artifact of an export folder, with everything a privacy report must say about it."""
    artifact: backends.Artifact
    entry: dict
    export_dir: Path
    split_layer: int
    chunk_samples: int
    frame_samples: int
    checkpoint: dict  # the manifest's {"path", "sha256", ...}

    @property
    def name(self) -> str:
        return f"{self.artifact.backend}/{self.artifact.recipe}"

    def describe(self) -> dict:
        return {"export_dir": str(self.export_dir), "file": self.entry["file"], "path": str(self.artifact.path),
                "backend": self.artifact.backend, "recipe": self.artifact.recipe,
                "sha256": self.entry["sha256"], "size_bytes": self.entry.get("size_bytes"),
                "split_layer": self.split_layer, "chunk_samples": self.chunk_samples,
                "frame_samples": self.frame_samples,
                "checkpoint": {"path": self.checkpoint.get("path"), "sha256": self.checkpoint.get("sha256")}}


def read_export(export_dir: Path, only: list[str] | None = None) -> list[ExportedPrefix]:
    """The artifacts of ``export_dir`` (those of the backends in ``only``, default all), validated."""
    from toolkit.parity.check import read_manifest
    export_dir = Path(export_dir)
    if not export_dir.is_dir():
        raise VeilError(f"{export_dir}: --artifact export folder not found")
    manifest = read_manifest(export_dir)
    path = export_dir / "manifest.json"
    try:
        split_layer = int(manifest["split_layer"])
        chunk = int(manifest["input"]["chunk_samples"])
        frame = int(manifest["output"].get("frame_samples") or chunk // int(manifest["output"]["shape"][1]))
        entries = list(manifest["artifacts"])
        checkpoint = dict(manifest.get("checkpoint") or {})
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise VeilError(f"{path}: not a Veil export manifest (missing or bad field {exc})") from None
    if chunk % frame:
        raise VeilError(f"{path}: chunk_samples {chunk} is not a multiple of frame_samples {frame}")
    known = sorted({e.get("backend", "?") for e in entries})
    for b in only or []:
        if b not in backends.BACKENDS:
            raise VeilError(f"--backend {b}: unknown backend (backends: {', '.join(backends.BACKENDS)})")
        if b not in known:
            raise VeilError(f"{path}: export has no {b} artifact (it has: {', '.join(known) or 'none'})")
    out = []
    for entry in entries:
        if only and entry.get("backend") not in only:
            continue
        try:
            art = backends.Artifact.from_json(entry, export_dir)
        except (KeyError, TypeError) as exc:
            raise VeilError(f"{path}: artifact entry {entry.get('file', '?')!r} lacks field {exc}") from None
        if not art.path.exists():
            raise VeilError(f"{art.path}: artifact listed in manifest.json is missing")
        if art.sha256() != entry.get("sha256"):
            raise VeilError(f"{art.path}: sha256 differs from manifest.json (the file changed after export)")
        if art.input_shape[-1] != chunk:
            raise VeilError(f"{art.path}: takes {art.input_shape[-1]}-sample chunks but manifest.json says {chunk}")
        if art.output_shape[-2] * frame != chunk:
            raise VeilError(f"{art.path}: emits {art.output_shape[-2]} frames per {chunk}-sample chunk, "
                            f"manifest.json says {frame} samples per frame")
        out.append(ExportedPrefix(art, entry, export_dir, split_layer, chunk, frame, checkpoint))
    if not out:
        raise VeilError(f"{path}: lists no artifacts")
    return out


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
