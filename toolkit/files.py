"""Writing files so that a reader never sees half of one: every write goes to a temporary file beside the
target and is renamed into place (``os.replace`` is atomic on one file system). A whole folder (an export, the
test vectors) is written into a temporary folder beside it (:func:`temp_dir_beside`) and swapped in with
renames only (:func:`replace_dir`).

Every JSON document Veil writes (manifests, results, caches) goes through :func:`write_json`, with one
convention for what JSON cannot hold: a non-finite float is written as the string ``"inf"``, ``"-inf"`` or
``"nan"`` (``float()`` reads each back), so the file stays standard JSON and an SNR of a bit-exact artifact
(``inf``) keeps its meaning. Renderers show such strings as they are.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path

from safetensors.torch import save_file

from export.artifact import file_sha256

__all__ = ["atomic_write_bytes", "atomic_save_tensors", "write_json", "write_text", "json_safe", "file_sha256",
           "temp_dir_beside", "replace_dir"]


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _umask_mode() -> int:
    return 0o666 & ~_umask()


def _replace_from_temp(path: Path, write) -> None:
    """``write(tmp_path)`` into a temporary file beside ``path``, then rename it onto ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, _umask_mode())  # mkstemp makes files private; these are ordinary outputs
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    _replace_from_temp(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_save_tensors(tensors: dict, path: str | Path, metadata: dict | None = None) -> None:
    """A safetensors file (tensors detached, contiguous, on the CPU), written atomically."""
    path = Path(path)
    _replace_from_temp(path, lambda tmp: save_file(
        {k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, metadata=metadata))


def json_safe(x):
    """``x`` with every non-finite float replaced by ``"inf"``, ``"-inf"`` or ``"nan"`` (tuples become lists)."""
    if isinstance(x, float) and not math.isfinite(x):
        return "nan" if x != x else ("inf" if x > 0 else "-inf")
    if isinstance(x, dict):
        return {k: json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [json_safe(v) for v in x]
    return x


def write_json(path: str | Path, obj) -> None:
    """``obj`` as indented JSON (non-finite floats as strings, see above), parent folders created, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n").encode())


def write_text(path: str | Path, text: str) -> None:
    """UTF-8 text, parent folders created, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


def temp_dir_beside(target: str | Path) -> Path:
    """A new empty folder beside ``target`` (same file system, so :func:`replace_dir` is renames only), with the
    permissions of an ordinary folder (``mkdtemp`` makes it private). Raises OSError when it cannot be made."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.partial-", dir=target.parent))
    os.chmod(tmp, 0o777 & ~_umask())
    return tmp


def replace_dir(tmp: str | Path, target: str | Path) -> None:
    """Put the finished folder ``tmp`` at ``target`` with renames only; a previous ``target`` is removed after
    the swap, so a reader sees the old folder or the new one, never a mix."""
    tmp, target = Path(tmp), Path(target)
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.rename(target, old)
    os.rename(tmp, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
