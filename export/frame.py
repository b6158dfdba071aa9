"""The frame every backend's ``export()`` shares: pick the recipe (a calibrated one refuses to run without
calibration), run the float module once for the reference output shape, convert inside :func:`converting` (any
converter exception becomes one :class:`ConversionFailed` line naming backend and recipe), time it, and describe
the file as an :class:`Artifact`. A backend supplies only ``convert(spec, module, example_inputs, out_path) ->
details``, which writes ``out_path`` and returns what the manifest records about it.

Converters warn about their own internals (torch's pytree ``LeafSpec`` deprecation, once per quantized node in
PT2E): KNOWN_WARNINGS are silenced here, where they are raised, unless ``VEIL_VERBOSE`` is set (``veil --verbose``,
``export-prefix --verbose``). Any other warning still shows.
"""
from __future__ import annotations

import os
import time
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Callable

import torch

from export.artifact import Artifact, example_tensors
from export.errors import converting
from export.recipes import Recipe, RecipeRegistry

# (category, message regex) of the third-party warnings a user cannot act on
KNOWN_WARNINGS = (
    (FutureWarning, r"`isinstance\(treespec, LeafSpec\)` is deprecated"),
)


@contextmanager
def quiet_known_warnings():
    """Silence KNOWN_WARNINGS inside the block (nothing when ``VEIL_VERBOSE`` is set)."""
    if os.environ.get("VEIL_VERBOSE"):
        yield
        return
    with warnings.catch_warnings():
        for category, message in KNOWN_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


Convert = Callable[[Recipe, torch.nn.Module, tuple, Path], dict]


def export_frame(backend: str, recipes: RecipeRegistry, convert: Convert, module: torch.nn.Module,
                 example_inputs: tuple, recipe: str, out_path: str | Path, calibration=(), input_name: str = "input",
                 output_name: str = "output", prepare: Callable[[torch.nn.Module], torch.nn.Module] | None = None
                 ) -> Artifact:
    """``module`` exported by ``backend`` with ``recipe`` to ``out_path``; ``prepare`` adapts the module first
    (ExecuTorch makes every buffer persistent)."""
    spec = recipes.for_export(recipe, calibration)
    out_path = Path(out_path)
    example_inputs = example_tensors(example_inputs)
    start = time.perf_counter()
    module = module.eval()
    if prepare is not None:
        module = prepare(module)
    with converting(backend, recipe), quiet_known_warnings():
        with torch.no_grad():
            reference = module(*example_inputs)
        details = convert(spec, module, example_inputs, out_path)
    return Artifact(backend, spec.name, out_path, input_name, tuple(example_inputs[0].shape), output_name,
                    tuple(reference.shape), time.perf_counter() - start, details)
