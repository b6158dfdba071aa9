"""Veil's exporters: one module per backend behind one small interface.

    backend = export.get_backend("executorch")           # or "litert", "coreml"
    artifact = backend.export(module, (example,), "int8-static", "prefix.pte",
                              calibration=chunks, float_modules=("frontend",))
    runner = export.load(artifact)                       # the backend's real runtime
    embeddings = runner(pcm_chunk)                       # numpy float32 in, numpy float32 out

Each backend module has ``NAME``, ``SUFFIX``, ``DEFAULT_RECIPE``, ``RECIPES`` (a :class:`RecipeRegistry`),
``export(module, example_inputs, recipe, out_path, **options) -> Artifact``, ``load(artifact) -> Runner``
and ``library_info()``. This package knows torch and the backend libraries only (never ``toolkit``);
backend libraries are imported when a backend is first used.
"""
from __future__ import annotations

import importlib
from types import ModuleType

from export.artifact import Artifact, Runner, snr_db
from export.errors import (ConversionFailed, ExportError, MissingCalibration, NeedsMacOS, UnknownBackend,
                           UnknownRecipe)

BACKENDS = {"executorch": "export.executorch_backend", "litert": "export.litert_backend",
            "coreml": "export.coreml_backend"}


def get_backend(name: str) -> ModuleType:
    if name not in BACKENDS:
        raise UnknownBackend(name, list(BACKENDS))
    return importlib.import_module(BACKENDS[name])


def export(backend: str, module, example_inputs: tuple, recipe: str, out_path, **options) -> Artifact:
    """``get_backend(backend).export(...)``."""
    return get_backend(backend).export(module, example_inputs, recipe, out_path, **options)


def load(artifact: Artifact) -> Runner:
    """A runner for ``artifact`` in its backend's real runtime (Core ML: macOS only, else NeedsMacOS)."""
    return get_backend(artifact.backend).load(artifact)


__all__ = ["Artifact", "Runner", "BACKENDS", "get_backend", "export", "load", "snr_db", "ExportError",
           "ConversionFailed", "MissingCalibration", "NeedsMacOS", "UnknownBackend", "UnknownRecipe"]
