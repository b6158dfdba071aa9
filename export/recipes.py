"""A per-backend registry of named recipes (``fp32``, ``int8-static``, ...).

A recipe is one function registered under a name; adding a recipe means writing that function with
``@RECIPES.register(...)`` in the backend's module and nothing else. Looking up a name the backend does not
have fails with a message that names backend, recipe and the recipes that exist.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from export.errors import UnknownRecipe


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    needs_calibration: bool
    build: Callable


class RecipeRegistry:
    def __init__(self, backend: str):
        self.backend = backend
        self._recipes: dict[str, Recipe] = {}

    def register(self, name: str, description: str, needs_calibration: bool = False):
        def decorator(fn: Callable) -> Callable:
            if name in self._recipes:
                raise ValueError(f"{self.backend} recipe '{name}' registered twice")
            self._recipes[name] = Recipe(name, description, needs_calibration, fn)
            return fn
        return decorator

    def get(self, name: str) -> Recipe:
        try:
            return self._recipes[name]
        except KeyError:
            raise UnknownRecipe(self.backend, name, self.names()) from None

    def names(self) -> list[str]:
        return list(self._recipes)

    def __contains__(self, name: str) -> bool:
        return name in self._recipes
