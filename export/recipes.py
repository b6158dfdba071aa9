"""A per-backend registry of named recipes (``fp32``, ``int8-static``, ...).

A recipe is one function registered under a name, with the facts everything downstream needs about it:
what its weights are stored in and what its encoder computes in (``fp32``, ``fp16``, ``int8``, ``int4``),
and whether it needs calibration audio. Parity gates, bench dtypes and help texts derive from these facts,
so adding a recipe means writing that function with ``@RECIPES.register(...)`` in the backend's module and
nothing else. Looking up a name the backend does not have fails with a message that names backend, recipe
and the recipes that exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from export.errors import MissingCalibration, UnknownRecipe

PRECISIONS = ("fp32", "fp16", "int8", "int4")  # from the widest to the narrowest


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    weights: str            # what the encoder's weights are stored in, one of PRECISIONS
    compute: str            # what the encoder's arithmetic runs in, one of PRECISIONS
    needs_calibration: bool
    build: Callable

    def __post_init__(self):
        for what in ("weights", "compute"):
            if getattr(self, what) not in PRECISIONS:
                raise ValueError(f"recipe {self.name}: {what}={getattr(self, what)!r} is not one of {PRECISIONS}")

    @property
    def precision(self) -> str:
        """The narrower of weights and compute: what bounds how close the artifact can get to float32."""
        return max(self.weights, self.compute, key=PRECISIONS.index)


class RecipeRegistry:
    def __init__(self, backend: str):
        self.backend = backend
        self._recipes: dict[str, Recipe] = {}

    def register(self, name: str, description: str, *, weights: str, compute: str, needs_calibration: bool = False):
        def decorator(fn: Callable) -> Callable:
            if name in self._recipes:
                raise ValueError(f"{self.backend} recipe '{name}' registered twice")
            self._recipes[name] = Recipe(name, description, weights, compute, needs_calibration, fn)
            return fn
        return decorator

    def get(self, name: str) -> Recipe:
        try:
            return self._recipes[name]
        except KeyError:
            raise UnknownRecipe(self.backend, name, self.names()) from None

    def for_export(self, name: str, calibration) -> Recipe:
        """The recipe ``name`` for an export: a calibrated recipe without calibration chunks is refused."""
        recipe = self.get(name)
        if recipe.needs_calibration and not len(calibration):
            raise MissingCalibration(self.backend, name)
        return recipe

    def names(self) -> list[str]:
        return list(self._recipes)

    def __iter__(self):
        return iter(self._recipes.values())

    def __contains__(self, name: str) -> bool:
        return name in self._recipes
