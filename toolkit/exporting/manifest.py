"""The export manifest: the one contract between the export and everything that uses an export folder
(parity, bench, privacy, the cloud service, the phone apps). Its format is documented field by field in
``docs/MANIFEST.md``.

:meth:`ExportManifest.new` builds it (every producer: ``export-prefix``, the cut-point sweep through the same
export) and :meth:`ExportManifest.write` writes it atomically. :meth:`ExportManifest.read` is the boundary:
it checks, once, everything a reader relies on and raises a one-line :class:`VeilError` naming the file:

- the folder holds a ``manifest.json`` that parses, with ``format`` ``veil-export/1`` and the fields below;
- one chunk geometry (:class:`ChunkSpec`) everywhere: ``input``, ``output``, every artifact's entry and the
  input shape the artifact file itself declares (read through its runtime, or its spec for Core ML);
- every artifact listed is present, of a backend this Veil knows, and unchanged since export (sha256).

Sections a reader does not know (a later version's optional additions) are ignored and kept when the
manifest is rewritten (parity writes its verdict back into it), so adding an optional section never breaks
an older reader; a change that would is a new major version (``veil-export/2``), which this reader refuses.
"""
from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import export as backends
from toolkit import __version__
from toolkit.adapters import from_source
from toolkit.adapters.veil import VeilAdapter
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError, read_json
from toolkit.files import atomic_write_bytes, file_sha256, write_json
from toolkit.model.asr import split
from toolkit.model.checkpoint import config_path, load_checkpoint
from toolkit.paths import REPO_ROOT

MANIFEST = "manifest.json"
MANIFEST_FORMAT = "veil-export/1"
FLOAT_MODULES = ("frontend",)  # the in-graph log-mel frontend: never quantized, never compressed
INPUT_NAME, OUTPUT_NAME = "pcm", "embeddings"


@dataclass(frozen=True)
class PrefixIdentity:
    """Which prefix an artifact computes: the float checkpoint (sha256 of its weights file) cut after block
    ``split_layer``. Every artifact of one export, whatever its backend or recipe, has the same identity; a
    cloud suffix serves exactly one, because a suffix fed another prefix's embeddings returns fluent garbage,
    not an error."""
    checkpoint_sha256: str
    split_layer: int

    @property
    def key(self) -> str:
        """``<checkpoint sha256>:k<split layer>``, e.g. ``fc5f6175...:k4``."""
        return f"{self.checkpoint_sha256}:k{self.split_layer}"

    @property
    def short(self) -> str:
        """``<first 12 hex digits>:k<split layer>``: how error lines and logs name the prefix."""
        return f"{self.checkpoint_sha256[:12]}:k{self.split_layer}"

    @property
    def raw_sha256(self) -> bytes:
        """The checkpoint sha256 as 32 bytes (how the streaming protocol's HELLO carries it)."""
        return bytes.fromhex(self.checkpoint_sha256)

    def to_json(self) -> dict:
        return {"checkpoint_sha256": self.checkpoint_sha256, "split_layer": self.split_layer}


def io_description(cfg, split_layer: int) -> dict:
    """The manifest's ``input`` and ``output`` sections for a prefix of model config ``cfg`` cut after
    ``split_layer``."""
    return io_sections(cfg.chunk, cfg.prefix_output_dim(split_layer), split_layer)


def io_sections(chunk, dim: int, split_layer: int) -> dict:
    """The manifest's ``input`` (PCM chunks of ``chunk``) and ``output`` (``dim``-dim frames after block
    ``split_layer``) sections of any prefix."""
    return {
        "input": {"name": INPUT_NAME, "shape": [1, chunk.chunk_samples], "dtype": "float32",
                  "sample_rate": chunk.sample_rate, "chunk_samples": chunk.chunk_samples,
                  "chunk_seconds": chunk.chunk_seconds, "range": [-1.0, 1.0],
                  "layout": "mono PCM; an utterance is cut into chunks, the last one zero-padded"},
        "output": {"name": OUTPUT_NAME, "shape": [1, chunk.chunk_frames, dim], "dtype": "float32",
                   "frames_per_chunk": chunk.chunk_frames, "frame_samples": chunk.frame_samples,
                   "frame_rate_hz": chunk.frame_rate_hz, "embedding_dim": dim,
                   "layer": split_layer,
                   "valid_frames": "ceil(utterance_samples / frame_samples) over the concatenated chunks"},
    }


CODEBOOK_FILE = "codebook.f32"


def write_bottleneck(model, split_layer: int, export_dir: Path) -> dict | None:
    """The manifest's ``bottleneck`` section for a prefix of ``model`` cut after ``split_layer``, writing the
    codebook the phone quantizes with (``codebook.f32``: little-endian float32, shape (groups, codes, dim /
    groups), C order) into ``export_dir``. None when the cut emits no bottleneck vectors."""
    cfg = model.cfg
    if model.bottleneck is None or cfg.prefix_output_dim(split_layer) != cfg.bottleneck_dim:
        return None
    section = {"dim": cfg.bottleneck_dim, "payload_codec": "int8", "codebook": None}
    if cfg.bottleneck_noise:  # the channel: the phone adds N(0, S^2) to the unit-RMS frames the artifact emits
        section["noise_std"] = float(cfg.bottleneck_noise)
    vq = model.bottleneck.vq
    if vq is not None:
        book = vq.codebook.detach().cpu().numpy().astype("<f4")
        path = Path(export_dir) / CODEBOOK_FILE
        atomic_write_bytes(path, book.tobytes())
        section.update(payload_codec="vq", groups=vq.groups, codes=vq.codes,
                       codebook={"file": CODEBOOK_FILE, "sha256": file_sha256(path), "shape": list(book.shape),
                                 "dtype": "float32", "byte_order": "little"})
    return section


class ExportManifest:
    """An export folder's ``manifest.json``: ``data`` is the JSON document itself, ``dir`` the folder."""

    def __init__(self, data: dict, export_dir: Path, only: list[str] | None = None):
        self.data = data
        self.dir = Path(export_dir)
        self._only = list(only or [])

    # ---- writing -------------------------------------------------------------------------------------------

    @classmethod
    def new(cls, export_dir: Path, *, checkpoint: Path, config: dict, cfg, split_layer: int, recipes: dict,
            calibration: dict | None, libraries: dict, artifacts: list[dict],
            bottleneck: dict | None = None) -> "ExportManifest":
        """The manifest of a prefix of ``checkpoint`` (its JSON ``config``, model config ``cfg``) cut after
        ``split_layer``, with one entry per exported artifact (``Artifact.to_json`` + its smoke check)."""
        checkpoint = Path(checkpoint)
        data = {
            "format": MANIFEST_FORMAT,
            "created_by": f"veil {__version__} export-prefix",
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "checkpoint": {"path": str(checkpoint), "sha256": file_sha256(checkpoint),
                           "config_sha256": file_sha256(config_path(checkpoint)), "config": config["model"]},
            "split_layer": split_layer,
            "trained_chunked_through": cfg.split_layer,
            "chunked_beyond_training": split_layer > cfg.split_layer,
            "float_modules": list(FLOAT_MODULES),
            "recipe": dict(recipes),
            **io_description(cfg, split_layer),
            "calibration": calibration,
            "libraries": libraries,
            "artifacts": artifacts,
        }
        if bottleneck:
            data["bottleneck"] = bottleneck
        return cls(data, export_dir)

    def write(self, export_dir: Path | None = None) -> Path:
        """Write ``manifest.json`` into ``export_dir`` (default: this manifest's folder), atomically."""
        path = Path(export_dir or self.dir) / MANIFEST
        write_json(path, self.data)
        return path

    # ---- reading: the boundary -------------------------------------------------------------------------------

    @classmethod
    def read(cls, export_dir: str | Path, only: list[str] | None = None) -> "ExportManifest":
        """Read and check an export folder (see the module docstring). ``only``: check and use only the
        artifacts of these backends (an unknown or absent backend is an error)."""
        export_dir = Path(export_dir)
        path = export_dir / MANIFEST
        data = read_json(path, f"{export_dir}: no {MANIFEST} (not an export folder; run `veil export` first)",
                         "not a Veil export manifest: not valid JSON")
        manifest = cls(data, export_dir, only)
        manifest._check_document(path)
        for entry, art in manifest.artifacts():
            manifest._check_artifact(path, entry, art)
        manifest.codebook()  # present, unchanged and of its declared shape
        return manifest

    def _check_document(self, path: Path) -> None:
        data = self.data
        if not isinstance(data, dict) or not isinstance(data.get("format"), str):
            raise VeilError(f"{path}: not a Veil export manifest (missing or bad field 'format')")
        family, _, major = data["format"].partition("/")
        if family != MANIFEST_FORMAT.split("/")[0]:
            raise VeilError(f"{path}: not a Veil export manifest (format {data['format']!r})")
        if data["format"] != MANIFEST_FORMAT:
            raise VeilError(f"{path}: format {data['format']} is not one this Veil reads ({MANIFEST_FORMAT}); "
                            f"it was written by another version")
        try:
            int(data["split_layer"]), list(data["artifacts"]), self.embedding_dim
            sha = str(data["checkpoint"]["sha256"])
            chunk = self.chunk
            shape_in = list(data["input"]["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VeilError(f"{path}: not a Veil export manifest (missing or bad field {exc})") from None
        if len(sha) != 64 or sha.strip("0123456789abcdef"):
            raise VeilError(f"{path}: checkpoint.sha256 {sha[:20]!r} is not 64 lowercase hex digits")
        if shape_in[-1] != chunk.chunk_samples:
            raise VeilError(f"chunk length mismatch: {path} input.shape says {shape_in[-1]} samples, "
                            f"input.chunk_samples says {chunk.chunk_samples}")
        known = sorted({e.get("backend", "?") for e in data["artifacts"] if isinstance(e, dict)})
        for b in self._only:
            if b not in backends.BACKENDS:
                raise VeilError(f"--backend {b}: unknown backend (backends: {', '.join(backends.BACKENDS)})")
            if b not in known:
                raise VeilError(f"{path}: export has no {b} artifact (it has: {', '.join(known) or 'none'})")
        if not self.entries():
            raise VeilError(f"{path}: lists no artifacts")

    def _check_artifact(self, path: Path, entry: dict, art: backends.Artifact) -> None:
        chunk = self.chunk.chunk_samples
        name = entry.get("file", "?")
        if not art.path.exists():
            raise VeilError(f"{art.path}: artifact listed in {MANIFEST} is missing")
        if art.sha256() != entry.get("sha256"):
            raise VeilError(f"{art.path}: sha256 differs from {MANIFEST} (the file changed after export)")
        try:
            declared = tuple(backends.get_backend(art.backend).input_shape(art))
        except Exception as exc:  # a runtime or spec parser that cannot read the file: name it, one line
            raise VeilError(f"{art.path}: {art.backend} cannot read it ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
        for where, value in ((f"the file declares shape {list(declared)}", declared[-1]),
                             ("its manifest entry", art.input_shape[-1])):
            if value != chunk:
                raise VeilError(f"chunk length mismatch: {name} takes {value}-sample chunks ({where}) but "
                                f"{MANIFEST} input.chunk_samples says {chunk}")
        if art.output_shape[-2] * self.chunk.frame_samples != chunk:
            raise VeilError(f"{art.path}: emits {art.output_shape[-2]} frames per {chunk}-sample chunk, "
                            f"{MANIFEST} says {self.chunk.frame_samples} samples per frame")

    # ---- what readers use --------------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        return self.dir / MANIFEST

    @property
    def split_layer(self) -> int:
        return int(self.data["split_layer"])

    @property
    def trained_chunked_through(self) -> int | None:
        return self.data.get("trained_chunked_through")

    @property
    def checkpoint(self) -> dict:
        """``{"path", "sha256", "config_sha256", "config"}`` of the float checkpoint the prefix was cut from."""
        return self.data["checkpoint"]

    @property
    def chunk(self) -> ChunkSpec:
        inp, out = self.data["input"], self.data["output"]
        try:
            return ChunkSpec(int(inp["sample_rate"]), int(inp["chunk_samples"]), int(out["frame_samples"]))
        except ValueError as exc:
            raise VeilError(f"{self.path}: {exc}") from None

    @property
    def prefix_identity(self) -> PrefixIdentity:
        return PrefixIdentity(self.checkpoint["sha256"], self.split_layer)

    @property
    def embedding_dim(self) -> int:
        """Dimensions of each embedding frame the prefix emits (what the payload carries, the suffix's input)."""
        return int(self.data["output"]["embedding_dim"])

    @property
    def recipes(self) -> dict:
        """``{backend: recipe}`` of this export."""
        return dict(self.data.get("recipe") or {})

    @property
    def calibration(self) -> dict | None:
        return self.data.get("calibration")

    @property
    def payload_codec(self) -> str:
        """The codec the phone sends this export's embeddings with: ``vq`` for a codebook bottleneck, else int8."""
        return (self.section("bottleneck") or {}).get("payload_codec", "int8")

    @property
    def noise_std(self) -> float:
        """Std of the Gaussian noise the phone adds to every value the artifact emits before the codec (0: none)."""
        value = (self.section("bottleneck") or {}).get("noise_std") or 0.0  # absent or null: none
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            raise VeilError(f"{self.path}: bottleneck.noise_std must be a finite number >= 0, got {value!r}")
        if value and self.payload_codec != "int8":
            raise VeilError(f"{self.path}: bottleneck.noise_std goes with payload_codec int8, not "
                            f"{self.payload_codec}")
        return float(value)

    def codebook(self) -> np.ndarray | None:
        """The bottleneck's codebook (groups, codes, dim / groups) float32, checked against the manifest, or None."""
        info = (self.section("bottleneck") or {}).get("codebook")
        if not info:
            return None
        try:
            path, shape = self.dir / info["file"], tuple(int(n) for n in info["shape"])
        except (KeyError, TypeError, ValueError) as exc:
            raise VeilError(f"{self.path}: bad bottleneck.codebook entry ({exc})") from None
        if not path.is_file():
            raise VeilError(f"{path}: codebook listed in {MANIFEST} is missing")
        if file_sha256(path) != info.get("sha256"):
            raise VeilError(f"{path}: sha256 differs from {MANIFEST} (the file changed after export)")
        raw = path.read_bytes()
        if len(shape) != 3 or len(raw) != 4 * int(np.prod(shape)):
            raise VeilError(f"{path}: {len(raw)} bytes is not a float32 codebook of shape {list(shape)}")
        return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)

    def section(self, name: str) -> dict | None:
        """An optional top-level section (``parity``, or one a later version adds), or None."""
        return self.data.get(name)

    def entries(self) -> list[dict]:
        """The artifact entries (of the backends in ``only``, when given), in manifest order."""
        return [e for e in self.data["artifacts"] if not self._only or e.get("backend") in self._only]

    def artifacts(self) -> list[tuple[dict, backends.Artifact]]:
        """(manifest entry, :class:`export.Artifact` with its path in this folder) per selected artifact."""
        out = []
        for entry in self.entries():
            if entry.get("backend") not in backends.BACKENDS:
                raise VeilError(f"{self.path}: artifact {entry.get('file', '?')!r} is for backend "
                                f"{entry.get('backend')!r}, which this Veil does not know "
                                f"(backends: {', '.join(backends.BACKENDS)})")
            try:
                out.append((entry, backends.Artifact.from_json(entry, self.dir)))
            except (KeyError, TypeError) as exc:
                raise VeilError(f"{self.path}: artifact entry {entry.get('file', '?')!r} lacks field {exc}") from None
        return out

    def float_prefix(self, checkpoint: str | Path | None = None):
        """The float model this export was cut from (:meth:`load_checkpoint`), its prefix and suffix at this
        export's split layer (eval mode): ``(model, checkpoint config, prefix, suffix)``."""
        model, config = self.load_checkpoint(checkpoint)
        prefix, suffix = split(model, self.split_layer)
        return model, config, prefix.eval(), suffix.eval()

    def model_adapter(self, checkpoint: str | Path | None = None):
        """The float model this export was cut from, as its adapter (``toolkit/adapters``): another encoder's
        is rebuilt from the manifest's ``adapter`` section and checked to be the same weights (sha256); Veil's
        own comes from :meth:`load_checkpoint`."""
        source = self.section("adapter")
        if not source or source.get("name") == "veil":
            model, config = self.load_checkpoint(checkpoint)
            return VeilAdapter.of(model, config, self.checkpoint_file(checkpoint))
        if checkpoint:
            source = {**source, "weights": str(checkpoint)}
        adapter = from_source(source)
        if adapter.identity_sha256() != self.checkpoint["sha256"]:
            raise VeilError(f"{self.path}: the {adapter.name} model rebuilt from the manifest's adapter section has "
                            f"other weights than the export (sha256 differs); pass --checkpoint with the weights file")
        if adapter.chunk != self.chunk:
            raise VeilError(f"chunk length mismatch: {adapter.name} model runs {adapter.chunk.chunk_samples}-sample "
                            f"chunks, {MANIFEST} says {self.chunk.chunk_samples}")
        return adapter

    def checkpoint_file(self, checkpoint: str | Path | None = None) -> Path:
        """``checkpoint``, or the path the manifest records: a relative one from the working directory, else
        from the repository root (export-prefix records the path as it was given, usually from the repository)."""
        path = Path(checkpoint or self.checkpoint["path"])
        if not checkpoint and not path.is_absolute() and not path.is_file():
            path = REPO_ROOT / path
        return path

    def load_checkpoint(self, checkpoint: str | Path | None = None):
        """The float model this export was cut from: ``checkpoint`` (default: :meth:`checkpoint_file`), checked to
        be that very file (sha256) with the same chunk geometry. Returns ``(model, checkpoint config)``."""
        path = self.checkpoint_file(checkpoint)
        if not path.is_file():
            raise VeilError(f"{path}: checkpoint of this export not found (pass --checkpoint)")
        if file_sha256(path) != self.checkpoint["sha256"]:
            raise VeilError(f"{path}: not the checkpoint this export was made from (sha256 differs from "
                            f"{MANIFEST}); pass --checkpoint with the original")
        model, config = load_checkpoint(path)
        if model.cfg.chunk != self.chunk:
            raise VeilError(f"chunk length mismatch: checkpoint {path.name} runs {model.cfg.chunk.chunk_samples}-"
                            f"sample chunks, {MANIFEST} says {self.chunk.chunk_samples}")
        if not 1 <= self.split_layer <= model.cfg.n_blocks:
            raise VeilError(f"{self.path}: split layer {self.split_layer} is outside 1..{model.cfg.n_blocks}")
        return model, config
