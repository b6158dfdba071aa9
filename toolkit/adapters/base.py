"""The model adapter: everything export, parity, bench and privacy need to know about an encoder.

An adapter answers six questions about one model (``docs/ADAPTERS.md``):

- **build**: the model from the user's weights (``safetensors`` or ``pytorch_model.bin``) and a config;
- **phone input**: what the phone feeds the prefix. Always one PCM chunk ``(1, chunk_samples)`` float32 in
  [-1, 1]; a model that reads features gets its frontend *inside* the prefix (a DFT matmul, float32 in every
  recipe), named in ``phone_input``, so a phone needs no feature code of its own;
- **cut points**: the blocks after which the encoder can be cut (``1..n_blocks``);
- **prefix**: the on-device module for a cut: ``(1, chunk_samples)`` PCM -> ``(1, chunk_frames, dim)``;
- **suffix**: the cloud's module for a cut, when the model has a head: ``(B, T, dim)`` + mask ``(B, T)`` ->
  CTC log-probs ``(B, T, V)``; None when it has none (parity then reports no ΔWER, and says so);
- **decode**: a tokenizer whose ``decode(ids)`` turns greedy CTC ids into text.

An adapter for a new architecture is one new file with a subclass of :class:`ModelAdapter` registered in
``toolkit/adapters/__init__.py``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from torch import nn

from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError

FLOAT_MODULES = ("frontend",)  # the submodule of every prefix that is never quantized (same name as Veil's)


def read_state(weights: str | Path) -> dict:
    """A weights file as ``{name: tensor}``: ``.safetensors``, or a ``pytorch_model.bin`` read with
    ``weights_only`` (no pickled code runs). A missing or unreadable file is a one-line error."""
    path = Path(weights)
    if not path.is_file():
        raise VeilError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file
            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file: one line
        raise VeilError(f"{path}: cannot read weights ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VeilError(f"{path}: not a weights file (no name -> tensor mapping)")
    return state


def fit_state(module: nn.Module, state: dict, path: str | Path, strip_prefixes: tuple[str, ...] = ()) -> None:
    """Load ``state`` into ``module`` strictly. Keys may carry one of ``strip_prefixes`` (e.g. ``wav2vec2.`` of
    a ``ForCTC`` file loaded into the bare encoder); a missing, unexpected or misshapen key is a one-line error
    naming the file and the first such keys."""
    own = module.state_dict()
    renamed = {}
    for key, value in state.items():
        name = key
        if name not in own:
            for p in strip_prefixes:
                if name.startswith(p) and name[len(p):] in own:
                    name = name[len(p):]
                    break
        renamed[name] = value
    missing = sorted(set(own) - set(renamed))
    unexpected = sorted(set(renamed) - set(own))
    if missing or unexpected:
        raise VeilError(f"{path}: weights do not fit the model (missing {len(missing)}: "
                        f"{', '.join(missing[:3]) or '-'}; unexpected {len(unexpected)}: "
                        f"{', '.join(unexpected[:3]) or '-'})")
    bad = [k for k in own if tuple(own[k].shape) != tuple(renamed[k].shape)]
    if bad:
        raise VeilError(f"{path}: weights do not fit the model ({bad[0]}: file {list(renamed[bad[0]].shape)}, "
                        f"model {list(own[bad[0]].shape)}); is --config the model's config?")
    module.load_state_dict(renamed, strict=True)


def load_weights(module: nn.Module, weights: str | Path, strip_prefixes: tuple[str, ...] = ()) -> None:
    """:func:`read_state` then :func:`fit_state`."""
    fit_state(module, read_state(weights), weights, strip_prefixes)


def state_sha256(module: nn.Module) -> str:
    """sha256 of a module's float32 weights (names, shapes and bytes, in name order): the prefix identity of a
    model that has no weights file of its own (a ``--config`` built with seeded random weights)."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(name.encode() + str(list(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return h.hexdigest()


class ModelAdapter:
    """One encoder seen through the six answers of the module docstring. Subclasses set ``name``, ``chunk``
    (the phone's chunk geometry), ``phone_input`` and ``n_blocks`` and implement :meth:`prefix`; :meth:`suffix`
    and :meth:`tokenizer` when the model has a CTC head."""

    name = "?"
    chunk: ChunkSpec
    n_blocks: int
    phone_input: dict  # {"kind": "pcm", "frontend": "<name, or null when the model reads PCM itself>"}
    float_modules: tuple[str, ...] = FLOAT_MODULES
    default_cut: int = 1
    not_delegated_why: dict[str, str] = {}
    default_recipes: dict[str, str] = {}  # backend -> this model's default recipe where the backend's does not fit  # op -> why XNNPACK leaves it out (copied into the manifest)

    # ---- the six answers ----------------------------------------------------------------------------------
    def cut_points(self) -> list[int]:
        """Blocks after which the encoder can be cut."""
        return list(range(1, self.n_blocks + 1))

    def prefix(self, k: int) -> nn.Module:
        raise NotImplementedError

    def suffix(self, k: int) -> nn.Module | None:
        return None

    def tokenizer(self):
        return None

    def output_dim(self, k: int) -> int:
        """Dimensions per embedding frame of the prefix cut after block ``k``."""
        with torch.no_grad():
            return int(self.prefix(k).eval()(torch.zeros(1, self.chunk.chunk_samples)).shape[-1])

    # ---- what the manifest records --------------------------------------------------------------------------
    def check_cut(self, k: int | None) -> int:
        k = self.default_cut if k is None else k
        if k not in self.cut_points():
            raise VeilError(f"cut {k} is outside 1..{self.n_blocks} ({self.name} model with {self.n_blocks} blocks)")
        return k

    def source(self) -> dict:
        """How to rebuild this model (the manifest's ``adapter`` section): name, config, weights."""
        raise NotImplementedError

    def identity_sha256(self) -> str:
        """The prefix identity's checkpoint sha256: the weights file's, else the weights' own (:func:`state_sha256`)."""
        raise NotImplementedError

    def describe(self, k: int) -> str:
        """One line for the export's progress output."""
        return f"{self.name}: {self.n_blocks} blocks; exporting {self.phone_input.get('frontend') or 'PCM'} + blocks 1..{k}"
