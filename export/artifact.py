"""What an export produces (:class:`Artifact`) and what runs it (:class:`Runner`), shared by all backends.

Every backend exports a module that maps one float32 input tensor to one float32 output tensor with fixed
shapes (for Veil: a PCM chunk ``(1, chunk_samples)`` -> embeddings ``(1, chunk_frames, d_model)``).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import numpy as np
import torch


@dataclass
class Artifact:
    backend: str
    recipe: str
    path: Path
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]
    export_seconds: float = 0.0
    details: dict = field(default_factory=dict)  # backend facts: delegation, quantized ops, determinism...

    def __post_init__(self):
        self.path = Path(self.path)
        self.input_shape = tuple(int(d) for d in self.input_shape)
        self.output_shape = tuple(int(d) for d in self.output_shape)

    @property
    def size_bytes(self) -> int:
        return tree_size(self.path)

    def sha256(self) -> str:
        return tree_sha256(self.path)

    def to_json(self, relative_to: Path | None = None) -> dict:
        path = self.path.relative_to(relative_to) if relative_to else self.path
        return {"backend": self.backend, "recipe": self.recipe, "file": str(path),
                "sha256": self.sha256(), "size_bytes": self.size_bytes,
                "export_seconds": round(self.export_seconds, 2),
                "input": {"name": self.input_name, "shape": list(self.input_shape), "dtype": "float32"},
                "output": {"name": self.output_name, "shape": list(self.output_shape), "dtype": "float32"},
                **self.details}

    @classmethod
    def from_json(cls, entry: dict, base_dir: Path | str = ".") -> "Artifact":
        """Rebuild an artifact from its manifest entry (paths are relative to the manifest's folder)."""
        known = {"backend", "recipe", "file", "sha256", "size_bytes", "export_seconds", "input", "output"}
        return cls(entry["backend"], entry["recipe"], Path(base_dir) / entry["file"],
                   entry["input"]["name"], entry["input"]["shape"], entry["output"]["name"],
                   entry["output"]["shape"], entry.get("export_seconds", 0.0),
                   {k: v for k, v in entry.items() if k not in known})


class Runner:
    """Runs one artifact in its real runtime: ``runner(pcm_chunk) -> embeddings`` (numpy float32)."""

    def __init__(self, artifact: Artifact):
        self.artifact = artifact

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.shape != self.artifact.input_shape:
            raise ValueError(f"{self.artifact.backend} runner: input shape {x.shape} != exported shape "
                             f"{self.artifact.input_shape}")
        y = np.asarray(self._run(x), dtype=np.float32)
        if y.shape != self.artifact.output_shape:
            raise RuntimeError(f"{self.artifact.backend} runner: output shape {y.shape} != exported shape "
                               f"{self.artifact.output_shape}")
        return y

    def _run(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def thread_info(self) -> dict:
        """How the runtime was told to use threads (for benchmark records); empty when it decides itself."""
        return {}


def tree_files(path: Path) -> list[Path]:
    path = Path(path)
    return sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]


def tree_size(path: Path) -> int:
    return sum(p.stat().st_size for p in tree_files(path))


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def tree_sha256(path: Path) -> str:
    """sha256 of a file; for a directory (``.mlpackage``), of its sorted relative paths and file hashes."""
    path = Path(path)
    if not path.is_dir():
        return file_sha256(path)
    h = hashlib.sha256()
    for p in tree_files(path):
        h.update(f"{p.relative_to(path).as_posix()}\0{file_sha256(p)}\n".encode())
    return h.hexdigest()


def library_versions(*distributions: str) -> dict[str, str]:
    out = {}
    for name in distributions:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def in_module(module_path: str, names: tuple[str, ...]) -> bool:
    """True if the dotted submodule path ``module_path`` is one of ``names`` or inside one of them."""
    return any(module_path == n or module_path.startswith(n + ".") for n in names)


def snr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """Signal-to-noise ratio of ``test`` against ``reference`` in dB: inf when identical, -inf when ``test``
    holds non-finite values or the reference is silent."""
    reference = np.asarray(reference, dtype=np.float64)
    noise = float(np.mean((np.asarray(test, dtype=np.float64) - reference) ** 2))
    signal = float(np.mean(reference ** 2))
    if noise == 0.0:
        return float("inf")
    if not np.isfinite(noise):
        return float("-inf")
    return 10.0 * float(np.log10(signal / noise)) if signal > 0 else float("-inf")


def example_tensors(example_inputs) -> tuple:
    """Fresh float32 tensors with standard strides: numpy views (e.g. ``a[None]``) carry 0-strides that
    ExecuTorch's memory planner rejects."""
    out = []
    for x in example_inputs:
        x = torch.as_tensor(np.asarray(x, dtype=np.float32) if not isinstance(x, torch.Tensor) else x)
        out.append(torch.empty(x.shape, dtype=torch.float32).copy_(x))
    return tuple(out)


@contextmanager
def single_threaded():
    """Run calibration with one torch thread: intra-op parallelism changes float summation order, hence
    the observed activation ranges in their last bits, hence the bytes of a calibrated artifact."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
