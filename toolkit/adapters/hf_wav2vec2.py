"""Hugging Face ``transformers`` Wav2Vec2 and HuBERT encoders (raw PCM in: CNN feature encoder + transformer).

The model is ``Wav2Vec2ForCTC`` / ``HubertForCTC`` built from the user's ``config.json`` (or a preset such as
``tiny``) and weights; a checkpoint of the bare encoder (``Wav2Vec2Model``) loads too and then has no suffix.

The prefix for cut ``k`` is the library's own submodules, in the library's order: feature encoder ->
feature projection -> positional convolution (+ the post-norm variant's layer norm) -> encoder layers 1..k.
Three export-time rewrites compute the same function with ops every backend lowers (the model's definition is
untouched; the prefix holds copies):

- the positional convolution's weight normalization is folded into a plain weight;
- the feature encoder's GroupNorm (one group per channel, ``feat_extract_norm="group"``) becomes the same
  per-channel normalization over time written as mean/variance (``native_group_norm`` has no XNNPACK lowering);
- the chunk is zero-padded at its end by ``receptive_field - frame_samples`` samples (80 for the standard CNN),
  so a chunk of ``n * 320`` samples gives exactly ``n`` frames (the CNN alone would give ``n - 1``).

Chunks are processed alone (the CNN's GroupNorm and the attention see one chunk), as the phone runs them.
There is no log-mel frontend: the CNN feature encoder plays its part (it reads raw PCM) and is the prefix's
``frontend``, float32 in every recipe (int8 through it measured 2.7 dB SNR at cut 4 of the ``tiny`` preset on
real audio against 30.5 dB with it float). The feature projection runs on the
frames flattened to 2-D (see ``Wav2Vec2Prefix.forward``).
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import torch
from torch import nn

from toolkit.adapters.base import ModelAdapter, load_weights, state_sha256
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.files import file_sha256
from toolkit.text.tokenizer import CharTokenizer

CHUNK_SECONDS = 2.0
SEED = 0  # weights of a preset built without --weights


def presets(vocab_size: int) -> dict[str, dict]:
    """Small configurations for tests and trying the toolkit without weights."""
    return {"tiny": dict(hidden_size=64, num_hidden_layers=4, num_attention_heads=4, intermediate_size=128,
                         conv_dim=(32,) * 7, num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
                         vocab_size=vocab_size)}


class ChannelNorm(nn.Module):
    """GroupNorm with one group per channel, (N, C, T): the same function written as mean and variance."""

    def __init__(self, norm: nn.GroupNorm):
        super().__init__()
        self.eps = norm.eps
        self.weight = nn.Parameter(norm.weight.detach().clone())
        self.bias = nn.Parameter(norm.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)
        var = ((x - mean) ** 2).mean(dim=-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None] + self.bias[:, None]


def _export_ready(module: nn.Module) -> nn.Module:
    """A copy with weight norm folded and per-channel GroupNorms rewritten (see the module docstring)."""
    module = copy.deepcopy(module)
    for sub in list(module.modules()):
        for child_name, child in list(sub.named_children()):
            if isinstance(child, nn.GroupNorm) and child.num_groups == child.num_channels:
                setattr(sub, child_name, ChannelNorm(child))
            elif isinstance(child, nn.Conv1d) and torch.nn.utils.parametrize.is_parametrized(child, "weight"):
                # a plain Conv1d with the weight-normed weight (removing the parametrization in place would
                # change the class the original model shares with this copy)
                plain = nn.Conv1d(child.in_channels, child.out_channels, child.kernel_size, child.stride,
                                  child.padding, child.dilation, child.groups, child.bias is not None)
                with torch.no_grad():
                    plain.weight.copy_(child.weight)
                    if child.bias is not None:
                        plain.bias.copy_(child.bias)
                setattr(sub, child_name, plain)
    return module


class FeatureEncoder(nn.Module):
    """The CNN feature encoder as the prefix's ``frontend``: padded PCM (N, 1, S) -> features (N, C, T)."""

    def __init__(self, conv_layers: nn.ModuleList):
        super().__init__()
        self.conv_layers = conv_layers

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.conv_layers:
            x = conv(x)
        return x


def _tensor(out):
    return out[0] if isinstance(out, tuple) else out


class Wav2Vec2Prefix(nn.Module):
    """One PCM chunk (1, chunk_samples) -> the output of encoder layer k (1, chunk_frames, hidden_size)."""

    def __init__(self, base: nn.Module, k: int, pad_samples: int):
        super().__init__()
        cnn = _export_ready(base.feature_extractor)
        self.frontend = FeatureEncoder(cnn.conv_layers)  # the CNN feature encoder reads raw PCM: float32 in every recipe
        self.feature_projection = copy.deepcopy(base.feature_projection)
        encoder = base.encoder
        self.pos_conv_embed = _export_ready(encoder.pos_conv_embed)
        self.post_norm = None if base.config.do_stable_layer_norm else copy.deepcopy(encoder.layer_norm)
        self.layers = nn.ModuleList(copy.deepcopy(list(encoder.layers[:k])))
        self.pad_samples = pad_samples

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = nn.functional.pad(pcm, (0, self.pad_samples))[:, None, :]
        x = self.frontend(x)
        n, c, t = x.shape  # the projection runs on (N*T, C): ExecuTorch 1.5.1's XNNPACK computes a Linear whose
        # 3-D input comes straight from a transpose wrongly (fp32 SNR 15-25 dB; flattened first: > 140 dB)
        x = _tensor(self.feature_projection(x.transpose(1, 2).reshape(n * t, c))).reshape(n, t, -1)
        x = x + self.pos_conv_embed(x)
        if self.post_norm is not None:
            x = self.post_norm(x)
        for layer in self.layers:
            x = _tensor(layer(x))
        return x


class Wav2Vec2Suffix(nn.Module):
    """Embeddings (B, T, hidden) + valid-frame mask (B, T) -> CTC log-probs (B, T, vocab)."""

    def __init__(self, model: nn.Module, base: nn.Module, k: int):
        super().__init__()
        self.layers = nn.ModuleList(list(base.encoder.layers[k:]))
        self.final_norm = base.encoder.layer_norm if base.config.do_stable_layer_norm else None
        self.lm_head = model.lm_head

    def forward(self, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        attn = None
        if mask is not None and not bool(mask.all()):
            attn = torch.zeros(mask.shape[0], 1, 1, mask.shape[1], dtype=emb.dtype)
            attn = attn.masked_fill(~mask[:, None, None, :], torch.finfo(emb.dtype).min)
        x = emb
        for layer in self.layers:
            x = _tensor(layer(x, attention_mask=attn))
        if self.final_norm is not None:
            x = self.final_norm(x)
        return torch.log_softmax(self.lm_head(x), dim=-1)


class VocabTokenizer:
    """A CTC vocabulary from a Hugging Face ``vocab.json`` (token -> id; ``|`` between words); greedy ids ->
    text. Veil's greedy decoder takes id 0 as the blank, which is the ``<pad>`` of these vocabularies."""

    def __init__(self, vocab: dict[str, int]):
        self.tokens = {i: t for t, i in vocab.items()}
        if self.tokens.get(0) not in ("<pad>", "<blank>", "<s>", "_"):
            raise VeilError(f"vocab.json: id 0 is {self.tokens.get(0)!r}, not the CTC blank (<pad>)")

    def decode(self, ids) -> str:
        text = "".join(self.tokens.get(int(i), "") for i in ids if not self.tokens.get(int(i), "").startswith("<"))
        return " ".join(text.replace("|", " ").split())


class HFWav2Vec2Adapter(ModelAdapter):
    """``hf-wav2vec2`` (``Wav2Vec2ForCTC``) and ``hf-hubert`` (``HubertForCTC``)."""

    name = "hf-wav2vec2"
    family = "wav2vec2"
    phone_input = {"kind": "pcm", "frontend": None,
                   "note": "raw 16 kHz PCM into the CNN feature encoder (float32 in every recipe)"}
    float_modules = ("frontend",)
    # LiteRT int8-static (activation ranges = min/max over the calibration chunks) measured 3.1 dB SNR at cut 4
    # of the tiny preset on real audio, int8-dynamic 43.9 dB (ExecuTorch int8-static: 29.8 dB)
    default_recipes = {"litert": "int8-dynamic"}

    def __init__(self, config: str | None = "tiny", weights: str | Path | None = None, cut: int | None = None):
        from transformers import AutoConfig  # noqa: F401  (heavy: imported only when this adapter is used)
        self.config_arg, self.weights = config or "tiny", Path(weights) if weights else None
        self.hf_config = self._config(self.config_arg)
        self.hf_config._attn_implementation = "eager"
        torch.manual_seed(SEED)
        self.model = self._ctc_class()(self.hf_config).eval()
        self.base = getattr(self.model, self.family)
        if self.weights is not None:
            self._load(self.weights)
        c = self.hf_config
        frame = 1
        receptive = 1
        for kernel, stride in zip(c.conv_kernel, c.conv_stride):
            receptive += (kernel - 1) * frame
            frame *= stride
        self.frame_samples, self.pad_samples = frame, receptive - frame
        self.chunk = ChunkSpec(16000, int(round(CHUNK_SECONDS * 16000 / frame)) * frame, frame)
        self.n_blocks = c.num_hidden_layers
        self.default_cut = cut or max(1, self.n_blocks // 2)

    # ---- building ---------------------------------------------------------------------------------------------
    def _config_class(self):
        from transformers import HubertConfig, Wav2Vec2Config
        return HubertConfig if self.family == "hubert" else Wav2Vec2Config

    def _ctc_class(self):
        from transformers import HubertForCTC, Wav2Vec2ForCTC
        return HubertForCTC if self.family == "hubert" else Wav2Vec2ForCTC

    def _config(self, arg: str):
        table = presets(CharTokenizer().vocab_size)
        if arg in table:
            return self._config_class()(**table[arg])
        path = Path(arg)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise VeilError(f"--config {arg}: neither a preset ({', '.join(table)}) nor a config.json")
        try:
            return self._config_class().from_json_file(str(path))
        except (ValueError, OSError, TypeError) as exc:
            raise VeilError(f"{path}: not a {self.family} config ({str(exc).splitlines()[0][:120]})") from None

    def _load(self, weights: Path) -> None:
        try:  # a ForCTC checkpoint (encoder + head) ...
            load_weights(self.model, weights)
        except VeilError:  # ... or the bare encoder: then there is no head, hence no suffix
            load_weights(self.base, weights, strip_prefixes=(f"{self.family}.",))
            self.model.lm_head = None

    # ---- the adapter's answers -----------------------------------------------------------------------------------
    def prefix(self, k: int) -> nn.Module:
        self.check_cut(k)
        return Wav2Vec2Prefix(self.base, k, self.pad_samples).eval()

    def suffix(self, k: int) -> nn.Module | None:
        if self.model.lm_head is None:
            return None
        return Wav2Vec2Suffix(self.model, self.base, k).eval()

    def tokenizer(self):
        if self.model.lm_head is None:
            return None
        vocab = self._vocab_file()
        if vocab is not None:
            return VocabTokenizer(json.loads(vocab.read_text()))
        if self.hf_config.vocab_size == CharTokenizer().vocab_size:
            return CharTokenizer()
        return None

    def _vocab_file(self) -> Path | None:
        for where in (self.weights.parent if self.weights else None,
                      Path(self.config_arg) if Path(self.config_arg).is_dir() else Path(self.config_arg).parent):
            if where is not None and (where / "vocab.json").is_file():
                return where / "vocab.json"
        return None

    def output_dim(self, k: int) -> int:
        return int(self.hf_config.hidden_size)

    def source(self) -> dict:
        return {"name": self.name, "config": self.config_arg, "weights": str(self.weights) if self.weights else None}

    def identity_sha256(self) -> str:
        return file_sha256(self.weights) if self.weights else state_sha256(self.model)

    not_delegated_why = {}


class HFHubertAdapter(HFWav2Vec2Adapter):
    name = "hf-hubert"
    family = "hubert"
