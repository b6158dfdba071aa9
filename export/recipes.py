"""A per-backend registry of named recipes (``fp32``, ``int8-static``, ``npu-qualcomm:SM8650``, ...).

A recipe is one function registered under a name, with the facts everything downstream needs about it:
what its weights are stored in and what its encoder computes in (``fp32``, ``fp16``, ``int8``, ``int4``),
whether it needs calibration audio, and, for recipes whose artifact runs on hardware this machine may not
have, the status a check reports instead of running it (``needs-macos``, ``needs-device``). Parity gates,
bench dtypes and help texts derive from these facts, so adding a recipe means writing that function with
``@RECIPES.register(...)`` in the backend's module and nothing else.

A recipe may take one option, written ``NAME:OPTION`` (``npu-qualcomm:SM8650``: the SoC an ahead-of-time
NPU compile targets). It registers the options it accepts; the registry hands its function the chosen one as
``option=``. Looking up a name or option the backend does not have fails with a message that names backend,
recipe and what exists.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, replace
from typing import Callable

from export.errors import MissingCalibration, UnknownRecipe

PRECISIONS = ("fp32", "fp16", "int8", "int4")  # from the widest to the narrowest
RUN_STATUSES = ("needs-macos", "needs-device")  # what a check reports for an artifact it cannot execute here


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    weights: str            # what the encoder's weights are stored in, one of PRECISIONS
    compute: str            # what the encoder's arithmetic runs in, one of PRECISIONS
    needs_calibration: bool
    build: Callable
    options: tuple[str, ...] = ()   # a recipe with options is asked for as NAME:OPTION
    option: str | None = None       # the chosen option (set by RecipeRegistry.get)
    option_label: str = "OPTION"    # what the option is, for help texts ("SOC")
    runs_on: str | None = None      # None: wherever its backend's runtime runs; else a RUN_STATUSES status
    requires: Callable | None = None  # requires(recipe name): raises an ExportError when this machine lacks a tool

    def __post_init__(self):
        for what in ("weights", "compute"):
            if getattr(self, what) not in PRECISIONS:
                raise ValueError(f"recipe {self.name}: {what}={getattr(self, what)!r} is not one of {PRECISIONS}")
        if self.runs_on is not None and self.runs_on not in RUN_STATUSES:
            raise ValueError(f"recipe {self.name}: runs_on={self.runs_on!r} is not one of {RUN_STATUSES}")

    @property
    def precision(self) -> str:
        """The narrower of weights and compute: what bounds how close the artifact can get to float32."""
        return max(self.weights, self.compute, key=PRECISIONS.index)

    def check_requirements(self) -> None:
        """Fail before any slow work when this machine cannot build the recipe (a vendor SDK is missing): one
        line saying what to install."""
        if self.requires is not None:
            self.requires(self.name)

    @property
    def family(self) -> str:
        """The registered name without its option (``npu-qualcomm`` for ``npu-qualcomm:SM8650``)."""
        return self.name.partition(":")[0]

    @property
    def usage(self) -> str:
        """How to ask for it: ``fp32``, or ``npu-qualcomm:SOC`` for a recipe with options."""
        return f"{self.family}:{self.option_label}" if self.options else self.name


def family_of(name: str) -> str:
    """``npu-qualcomm`` for ``npu-qualcomm:SM8650``; a name without an option is its own family."""
    return name.partition(":")[0]


class RecipeRegistry:
    def __init__(self, backend: str):
        self.backend = backend
        self._recipes: dict[str, Recipe] = {}

    def register(self, name: str, description: str, *, weights: str, compute: str, needs_calibration: bool = False,
                 options: tuple[str, ...] = (), option_label: str = "OPTION", runs_on: str | None = None,
                 requires: Callable | None = None):
        if ":" in name:
            raise ValueError(f"{self.backend} recipe '{name}': ':' separates a recipe from its option")

        def decorator(fn: Callable) -> Callable:
            if name in self._recipes:
                raise ValueError(f"{self.backend} recipe '{name}' registered twice")
            self._recipes[name] = Recipe(name, description, weights, compute, needs_calibration, fn,
                                         tuple(options), None, option_label, runs_on, requires)
            return fn
        return decorator

    def get(self, name: str) -> Recipe:
        """The recipe ``name`` (``NAME`` or ``NAME:OPTION``); for a recipe with options, a copy whose ``name``
        carries the option and whose ``build`` receives it as ``option=``."""
        family, sep, option = name.partition(":")
        recipe = self._recipes.get(family)
        if recipe is None or (sep and not recipe.options):
            raise UnknownRecipe(self.backend, name, self.names())
        if not recipe.options:
            return recipe
        if option not in recipe.options:
            what = f"unknown {recipe.option_label} '{option}'" if sep else f"needs a {recipe.option_label}"
            raise UnknownRecipe(self.backend, name, self.names(),
                                f"{self.backend} recipe '{recipe.usage}' {what} ({recipe.option_label}: "
                                f"{', '.join(recipe.options)})")
        return replace(recipe, name=f"{family}:{option}", option=option,
                       build=functools.partial(recipe.build, option=option))

    def for_export(self, name: str, calibration) -> Recipe:
        """The recipe ``name`` for an export: a calibrated recipe without calibration chunks is refused."""
        recipe = self.get(name)
        if recipe.needs_calibration and not len(calibration):
            raise MissingCalibration(self.backend, name)
        recipe.check_requirements()
        return recipe

    def names(self) -> list[str]:
        """How to ask for each recipe: ``fp32``, ..., ``npu-qualcomm:SOC``."""
        return [r.usage for r in self._recipes.values()]

    def __iter__(self):
        """The registered recipes (a recipe with options once, without an option chosen)."""
        return iter(self._recipes.values())

    def __contains__(self, name: str) -> bool:
        try:
            self.get(name)
        except UnknownRecipe:
            return False
        return True
