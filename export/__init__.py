"""Veil's exporters: one module per backend behind one small interface.

    backend = export.get_backend("executorch")           # or "litert", "coreml"
    artifact = backend.export(module, (example,), "int8-static", "prefix.pte",
                              calibration=chunks, float_modules=("frontend",))
    runner = export.load(artifact)                       # the backend's real runtime
    embeddings = runner(pcm_chunk)                       # numpy float32 in, numpy float32 out

Each backend module has ``NAME``, ``SUFFIX``, ``TARGET`` (``android`` or ``ios``), ``RUNTIME`` (a label),
``DEFAULT_RECIPE``, ``RECIPES`` (a :class:`RecipeRegistry`), ``export(module, example_inputs, recipe,
out_path, **options) -> Artifact``, ``load(artifact, threads=None) -> Runner``, ``runs_here()``,
``import_runtime()``, ``input_shape(artifact)`` (what the file declares), ``check_spec(artifact, io)`` (the
file against a manifest's input/output) and ``library_info()``. This package knows torch and the backend
libraries only (never ``toolkit``); backend libraries are imported when a backend is first used.
"""
from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from export.artifact import Artifact, Runner, snr_db
from export.errors import (ConversionFailed, ExportError, MissingCalibration, MissingNpuSdk, NeedsDevice, NeedsMacOS,
                           NotRunHere, UnknownBackend, UnknownRecipe)

TARGET_ORDER = ("android", "ios")


def _discover_backends() -> dict[str, str]:
    """``{name: module}`` for every ``export/<name>_backend.py``: adding a backend is adding its module. Android
    backends come first, then iOS, each by name (the order exports and reports list them in)."""
    names = [m.name.removesuffix("_backend") for m in pkgutil.iter_modules(__path__) if m.name.endswith("_backend")]
    modules = {n: importlib.import_module(f"{__name__}.{n}_backend") for n in names}
    order = sorted(names, key=lambda n: (TARGET_ORDER.index(modules[n].TARGET), n))
    return {n: modules[n].__name__ for n in order}


BACKENDS = _discover_backends()


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise UnknownBackend(name, list(BACKENDS))
    return importlib.import_module(BACKENDS[name])


def export(backend: str, module, example_inputs: tuple, recipe: str, out_path, **options) -> Artifact:
    """``get_backend(backend).export(...)``."""
    return get_backend(backend).export(module, example_inputs, recipe, out_path, **options)


def load(artifact: Artifact, threads: int | None = None) -> Runner:
    """A runner for ``artifact`` in its backend's real runtime (Core ML: macOS only, else NeedsMacOS; an NPU
    artifact: its phone only, else NeedsDevice; both are :class:`NotRunHere`);
    ``threads``: the runtime's threads where it takes a number (default: its own choice)."""
    return get_backend(artifact.backend).load(artifact, threads=threads)


def targets() -> dict[str, list[str]]:
    """``{target: [backend, ...]}`` from each backend's ``TARGET`` (``android``, ``ios``), plus ``all``."""
    out: dict[str, list[str]] = {}
    for name in BACKENDS:
        out.setdefault(get_backend(name).TARGET, []).append(name)
    out["all"] = list(BACKENDS)
    return out


__all__ = ["Artifact", "Runner", "BACKENDS", "get_backend", "export", "load", "targets", "snr_db", "ExportError",
           "ConversionFailed", "MissingCalibration", "MissingNpuSdk", "NeedsDevice", "NeedsMacOS", "NotRunHere",
           "UnknownBackend", "UnknownRecipe"]
