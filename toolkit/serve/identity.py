"""Which prefix a session speaks for: the checkpoint's sha256 and the split layer, and the chunk geometry.

A suffix that does not match the phone's prefix returns fluent garbage, not an error, so the service binds
every session to this identity and refuses any other. Phones read it from the export's ``manifest.json``
(:func:`export_identity`, the one place that reads the manifest here, so it can move to the typed manifest
reader); the server computes it from the checkpoint it serves.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import VeilError, read_json


@dataclass(frozen=True)
class Geometry:
    """How PCM becomes embedding frames: 16 kHz, chunks of ``chunk_samples``, one frame per ``frame_samples``."""
    sample_rate: int
    chunk_samples: int
    frame_samples: int
    dim: int

    @property
    def chunk_frames(self) -> int:
        return self.chunk_samples // self.frame_samples


@dataclass(frozen=True)
class PrefixIdentity:
    checkpoint_sha256: str   # 64 hex digits: sha256 of the checkpoint's .safetensors file
    split_layer: int         # the prefix is the frontend + blocks 1..split_layer

    def __post_init__(self):
        if len(self.checkpoint_sha256) != 64 or any(c not in "0123456789abcdef" for c in self.checkpoint_sha256):
            raise VeilError(f"checkpoint sha256 '{self.checkpoint_sha256}' is not 64 lowercase hex digits")

    @property
    def raw_sha256(self) -> bytes:
        return bytes.fromhex(self.checkpoint_sha256)

    def __str__(self) -> str:
        return f"{self.checkpoint_sha256[:12]}:k{self.split_layer}"


@dataclass(frozen=True)
class ExportInfo:
    """What a client (and a server serving an export) needs from an export folder."""
    export_dir: Path
    identity: PrefixIdentity
    geometry: Geometry
    artifacts: list
    checkpoint: Path  # as recorded at export time (may be relative to where export-prefix ran)


def export_identity(export_dir: str | Path) -> ExportInfo:
    """Read ``manifest.json`` as ``export-prefix`` writes it (format veil-export/1)."""
    export_dir = Path(export_dir)
    m = read_json(export_dir / "manifest.json",
                  f"{export_dir}: no manifest.json (not an export folder; run `export-prefix` first)")
    try:
        identity = PrefixIdentity(m["checkpoint"]["sha256"], int(m["split_layer"]))
        geometry = Geometry(int(m["input"]["sample_rate"]), int(m["input"]["chunk_samples"]),
                            int(m["output"]["frame_samples"]), int(m["output"]["embedding_dim"]))
        artifacts = list(m["artifacts"])
        checkpoint = Path(m["checkpoint"]["path"])
    except (KeyError, TypeError, ValueError) as exc:
        raise VeilError(f"{export_dir}/manifest.json: not an export manifest (missing or bad {exc})") from None
    return ExportInfo(export_dir, identity, geometry, artifacts, checkpoint)
