"""Any ``nn.Module``: ``--model mypkg.asr:build --cut 6``.

``build`` is a function the user writes, importable from the working directory or ``PYTHONPATH``. Called as
``build(weights=PATH or None)``, it returns either

- a :class:`~toolkit.adapters.base.ModelAdapter` (the full interface, suffix and tokenizer included), or
- a dict ``{"prefix": fn(k) -> nn.Module, "n_blocks": int, "chunk_samples": int, "frame_samples": int}`` with
  optional ``"suffix": fn(k) -> nn.Module``, ``"tokenizer"`` (an object with ``decode(ids) -> str``),
  ``"sample_rate"`` (16000) and ``"frontend"`` (the name of the prefix's frontend submodule, kept float32;
  default ``frontend`` when the prefix has one).

The prefix takes one PCM chunk ``(1, chunk_samples)`` float32 and returns ``(1, chunk_samples / frame_samples, dim)``.
"""
from __future__ import annotations

import importlib
from pathlib import Path

from torch import nn

from toolkit.adapters.base import ModelAdapter, state_sha256
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.files import file_sha256

REQUIRED = ("prefix", "n_blocks", "chunk_samples", "frame_samples")


def resolve(spec: str):
    """``pkg.module:function`` -> the function; a one-line error for every way it can be wrong."""
    mod_name, sep, fn_name = spec.partition(":")
    if not sep or not mod_name or not fn_name:
        raise VeilError(f"--model {spec}: expected MODULE:FUNCTION, e.g. mypkg.asr:build")
    try:
        module = importlib.import_module(mod_name)
    except ImportError as exc:
        raise VeilError(f"--model {spec}: cannot import {mod_name} ({exc})") from None
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        raise VeilError(f"--model {spec}: {mod_name} has no function {fn_name}")
    return fn


class ModuleAdapter(ModelAdapter):
    name = "module"

    def __init__(self, model: str, weights: str | Path | None = None, cut: int | None = None):
        self.spec, self.weights = model, Path(weights) if weights else None
        built = resolve(model)(weights=str(self.weights) if self.weights else None)
        if isinstance(built, ModelAdapter):
            raise VeilError(f"--model {model}: returned an adapter; register it in toolkit/adapters or return the dict")
        if not isinstance(built, dict) or any(k not in built for k in REQUIRED):
            raise VeilError(f"--model {model}: build() must return a dict with {', '.join(REQUIRED)} (docs/ADAPTERS.md)")
        self.built = built
        try:
            self.chunk = ChunkSpec(int(built.get("sample_rate", 16000)), int(built["chunk_samples"]),
                                   int(built["frame_samples"]))
        except ValueError as exc:
            raise VeilError(f"--model {model}: {exc}") from None
        self.n_blocks = int(built["n_blocks"])
        self.default_cut = cut or self.n_blocks
        frontend = built.get("frontend", "frontend")
        self.phone_input = {"kind": "pcm", "frontend": frontend}
        self._frontend = frontend

    def prefix(self, k: int) -> nn.Module:
        self.check_cut(k)
        module = self.built["prefix"](k).eval()
        names = dict(module.named_modules())
        self.float_modules = (self._frontend,) if self._frontend in names else ()
        if self._frontend not in names:
            self.phone_input = {"kind": "pcm", "frontend": None}
        return module

    def suffix(self, k: int):
        fn = self.built.get("suffix")
        return fn(k).eval() if fn else None

    def tokenizer(self):
        return self.built.get("tokenizer")

    def source(self) -> dict:
        return {"name": self.name, "model": self.spec, "weights": str(self.weights) if self.weights else None}

    def identity_sha256(self) -> str:
        if self.weights:
            return file_sha256(self.weights)
        return state_sha256(self.built["prefix"](self.n_blocks))
