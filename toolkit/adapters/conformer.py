"""A NeMo-compatible Conformer / FastConformer CTC encoder, defined here.

torchaudio's Conformer cannot be used: torchaudio cannot be installed beside the pinned torch 2.13.0 (its newest
wheel pip accepts, 2.11.1, fails to load its ``_torchaudio.so`` under it). NeMo itself is not a dependency
either (hundreds of MB, its own pins). So this module defines the encoder with NeMo's module and parameter
names (``encoder.pre_encode.conv.0.weight``, ``encoder.layers.0.self_attn.linear_pos.weight``,
``decoder.decoder_layers.0.weight``...), so the state dict of a NeMo ``EncDecCTCModel`` (``model_weights.ckpt``
of a ``.nemo`` archive, unpacked) loads into it; the ``preprocessor.*`` buffers are recomputed:

- preprocessor (``AudioToMelSpectrogramPreprocessor`` defaults, in the graph, float32): pre-emphasis 0.97,
  symmetric 400-sample Hann window, 160-sample hop, 512-point DFT on centered zero-padded frames, power, 80
  Slaney mel filters, ``log(x + 2**-24)``, per-feature normalization (mean and std over the chunk's frames).
  The chunk's last centered frame is dropped, so 2 s give 200 frames;
- ``pre_encode``: ``striding`` (Conformer, x4: two 3x3 stride-2 convolutions) or ``dw_striding`` (FastConformer,
  x8: one convolution, then two depthwise-separable ones), then a Linear;
- relative positional encoding (``RelPositionalEncoding`` with ``xscaling``) and ``RelPositionMultiHeadAttention``
  (Transformer-XL biases ``pos_bias_u``/``pos_bias_v``, ``rel_shift``);
- ``ConformerLayer``: half-step feed-forward, self-attention, convolution module (pointwise + GLU, depthwise,
  BatchNorm, Swish, pointwise), half-step feed-forward, layer norm;
- CTC ``decoder``: a 1x1 ``Conv1d`` to vocabulary + blank, NeMo's blank being the last index (the suffix moves it
  to index 0, where Veil's greedy decoder expects it).
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.adapters.base import ModelAdapter, fit_state, read_state, state_sha256
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.files import file_sha256
from toolkit.text.tokenizer import CharTokenizer

SAMPLE_RATE, HOP, WIN, N_FFT = 16000, 160, 400, 512
CHUNK_SECONDS = 2.0
SEED = 0


@dataclass
class ConformerConfig:
    """The fields of NeMo's ``ConformerEncoder`` this definition reads (same names as its YAML config)."""
    feat_in: int = 80
    n_layers: int = 4
    d_model: int = 64
    n_heads: int = 4
    ff_expansion_factor: int = 4
    conv_kernel_size: int = 9
    subsampling: str = "striding"  # striding (x4) | dw_striding (x8, FastConformer)
    subsampling_factor: int = 4
    subsampling_conv_channels: int = 64
    xscaling: bool = True
    vocab_size: int = 28  # CTC outputs are vocab_size + 1 (the blank, last)


PRESETS = {"tiny": ConformerConfig(),
           "tiny-fast": ConformerConfig(subsampling="dw_striding", subsampling_factor=8, conv_kernel_size=9)}


class NemoMel(nn.Module):
    """(N, S) PCM -> (N, T, feat_in) normalized log-mel features (see the module docstring)."""

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank
        window = torch.hann_window(WIN, periodic=False, dtype=torch.float64).numpy()
        window = np.pad(window, ((N_FFT - WIN) // 2, (N_FFT - WIN) - (N_FFT - WIN) // 2))  # centered in n_fft
        n = np.arange(N_FFT)
        k = np.arange(N_FFT // 2 + 1)[:, None]
        phase = 2 * np.pi * k * n[None, :] / N_FFT
        basis = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])[:, None, :]
        mel = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                              max_frequency=SAMPLE_RATE / 2, sampling_rate=SAMPLE_RATE, norm="slaney",
                              mel_scale="slaney")
        self.register_buffer("dft", torch.tensor(basis, dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel.T, dtype=torch.float32))
        self.bins = N_FFT // 2 + 1

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = torch.cat([pcm[:, :1], pcm[:, 1:] - 0.97 * pcm[:, :-1]], dim=1)
        edge = x.new_zeros(x.shape[0], N_FFT // 2)  # centered frames, zero padded (a cat: XNNPACK 1.5.1 fails to
        x = torch.cat([edge, x, edge], dim=1)[:, None, :]  # build this 2-D constant pad, "StaticConstantPad")
        spec = F.conv1d(x, self.dft, stride=HOP)[:, :, :-1]  # (N, 2*bins, S/160)
        power = spec[:, :self.bins] ** 2 + spec[:, self.bins:] ** 2
        logmel = torch.log(torch.matmul(self.mel, power) + 2 ** -24)  # (N, n_mels, T)
        mean = logmel.mean(dim=2, keepdim=True)
        std = torch.sqrt(((logmel - mean) ** 2).sum(dim=2, keepdim=True) / (logmel.shape[2] - 1)) + 1e-5
        return ((logmel - mean) / std).transpose(1, 2)


class ConvSubsampling(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        c = cfg.subsampling_conv_channels
        if cfg.subsampling == "striding" and cfg.subsampling_factor == 4:
            layers = [nn.Conv2d(1, c, 3, 2, 1), nn.ReLU(), nn.Conv2d(c, c, 3, 2, 1), nn.ReLU()]
        elif cfg.subsampling == "dw_striding" and cfg.subsampling_factor == 8:
            layers = [nn.Conv2d(1, c, 3, 2, 1)]
            for _ in range(2):
                layers += [nn.Conv2d(c, c, 3, 2, 1, groups=c), nn.Conv2d(c, c, 1), nn.ReLU()]
        else:
            raise VeilError(f"subsampling {cfg.subsampling} x{cfg.subsampling_factor}: this definition has "
                            f"striding x4 and dw_striding x8")
        self.conv = nn.Sequential(*layers)
        self.out = nn.Linear(c * (cfg.feat_in // cfg.subsampling_factor), cfg.d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, T, F) -> (N, T / factor, d)
        x = self.conv(x[:, None])
        n, c, t, f = x.shape
        return self.out(x.transpose(1, 2).reshape(n * t, c * f)).reshape(n, t, -1)


def rel_shift_matrix(length: int) -> torch.Tensor:
    """(T, 2T-1, T) 0/1: row i selects position (T-1) - i + j for column j, what ``rel_shift`` selects. XNNPACK
    (ExecuTorch 1.5.1) fails to build the int8 graph with rel_shift's 4-D pad ("Failed to create
    StaticConstantPad node"); a batched matmul it lowers."""
    s = torch.zeros(length, 2 * length - 1, length)
    for i in range(length):
        s[i, torch.arange(length) + (length - 1) - i, torch.arange(length)] = 1.0
    return s


def rel_positions(length: int, d_model: int) -> torch.Tensor:
    """NeMo's ``RelPositionalEncoding`` for ``length`` frames: (1, 2 * length - 1, d), positions length-1 .. -(length-1)."""
    pos = torch.arange(length - 1, -length, -1, dtype=torch.float32)[:, None]
    div = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * -(math.log(10000.0) / d_model))
    pe = torch.zeros(2 * length - 1, d_model)
    pe[:, 0::2], pe[:, 1::2] = torch.sin(pos * div), torch.cos(pos * div)
    return pe[None]


class RelPositionMultiHeadAttention(nn.Module):
    def __init__(self, d: int, h: int):
        super().__init__()
        self.h, self.d_k = h, d // h
        self.linear_q, self.linear_k, self.linear_v, self.linear_out = (nn.Linear(d, d) for _ in range(4))
        self.linear_pos = nn.Linear(d, d, bias=False)
        self.pos_bias_u = nn.Parameter(torch.zeros(h, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(h, self.d_k))

    def forward(self, x: torch.Tensor, pos_emb: torch.Tensor, mask: torch.Tensor | None = None,
                shift: torch.Tensor | None = None) -> torch.Tensor:
        n, t, _ = x.shape
        q = self.linear_q(x).view(n, t, self.h, self.d_k)
        k = self.linear_k(x).view(n, t, self.h, self.d_k).transpose(1, 2)
        v = self.linear_v(x).view(n, t, self.h, self.d_k).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(1, -1, self.h, self.d_k).transpose(1, 2)
        ac = torch.matmul((q + self.pos_bias_u).transpose(1, 2), k.transpose(-2, -1))
        bd = torch.matmul((q + self.pos_bias_v).transpose(1, 2), p.transpose(-2, -1))  # (n, h, t, 2t-1)
        if shift is None:  # NeMo's rel_shift: pad, view, slice
            bd = F.pad(bd, (1, 0)).view(n, self.h, -1, t)[:, :, 1:].reshape(n, self.h, t, 2 * t - 1)[:, :, :, :t]
        else:  # the same selection as a matmul with a constant 0/1 tensor (the export's form: see rel_shift_matrix)
            bd = torch.bmm(bd.reshape(n * self.h, t, 2 * t - 1).transpose(0, 1), shift)  # (t, n*h, t)
            bd = bd.transpose(0, 1).reshape(n, self.h, t, t)
        scores = (ac + bd) / math.sqrt(self.d_k)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], -10000.0)
        out = torch.matmul(torch.softmax(scores, dim=-1), v).transpose(1, 2).reshape(n, t, -1)
        return self.linear_out(out)


class FeedForward(nn.Module):
    def __init__(self, d: int, expansion: int):
        super().__init__()
        self.linear1, self.linear2 = nn.Linear(d, d * expansion), nn.Linear(d * expansion, d)

    def forward(self, x):
        return self.linear2(F.silu(self.linear1(x)))


class ConvModule(nn.Module):
    def __init__(self, d: int, kernel: int):
        super().__init__()
        self.pointwise_conv1 = nn.Conv1d(d, 2 * d, 1)
        self.depthwise_conv = nn.Conv1d(d, d, kernel, padding=(kernel - 1) // 2, groups=d)
        self.batch_norm = nn.BatchNorm1d(d)
        self.pointwise_conv2 = nn.Conv1d(d, d, 1)

    def forward(self, x, mask=None):
        x = F.glu(self.pointwise_conv1(x.transpose(1, 2)), dim=1)
        if mask is not None:
            x = x * mask[:, None, :]
        x = self.pointwise_conv2(F.silu(self.batch_norm(self.depthwise_conv(x))))
        return x.transpose(1, 2)


class ConformerLayer(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        d = cfg.d_model
        self.norm_feed_forward1, self.feed_forward1 = nn.LayerNorm(d), FeedForward(d, cfg.ff_expansion_factor)
        self.norm_self_att, self.self_attn = nn.LayerNorm(d), RelPositionMultiHeadAttention(d, cfg.n_heads)
        self.norm_conv, self.conv = nn.LayerNorm(d), ConvModule(d, cfg.conv_kernel_size)
        self.norm_feed_forward2, self.feed_forward2 = nn.LayerNorm(d), FeedForward(d, cfg.ff_expansion_factor)
        self.norm_out = nn.LayerNorm(d)

    def forward(self, x, pos_emb, mask=None, shift=None):
        x = x + 0.5 * self.feed_forward1(self.norm_feed_forward1(x))
        x = x + self.self_attn(self.norm_self_att(x), pos_emb, mask, shift)
        x = x + self.conv(self.norm_conv(x), mask)
        x = x + 0.5 * self.feed_forward2(self.norm_feed_forward2(x))
        return self.norm_out(x)


class ConformerEncoder(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.cfg = cfg
        self.pre_encode = ConvSubsampling(cfg)
        self.layers = nn.ModuleList(ConformerLayer(cfg) for _ in range(cfg.n_layers))


class ConvASRDecoder(nn.Module):
    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.decoder_layers = nn.Sequential(nn.Conv1d(cfg.d_model, cfg.vocab_size + 1, 1))


class ConformerCTC(nn.Module):
    """NeMo ``EncDecCTCModel``'s ``encoder`` and ``decoder`` (state dict names as NeMo's)."""

    def __init__(self, cfg: ConformerConfig):
        super().__init__()
        self.encoder, self.decoder = ConformerEncoder(cfg), ConvASRDecoder(cfg)


class ConformerPrefix(nn.Module):
    def __init__(self, model: ConformerCTC, k: int, frames: int):
        super().__init__()
        cfg = model.encoder.cfg
        self.frontend = NemoMel(cfg.feat_in)
        self.pre_encode = model.encoder.pre_encode
        self.layers = nn.ModuleList(model.encoder.layers[:k])
        self.xscale = math.sqrt(cfg.d_model) if cfg.xscaling else 1.0
        self.register_buffer("pos_emb", rel_positions(frames, cfg.d_model))
        self.register_buffer("shift", rel_shift_matrix(frames))

    def forward(self, pcm):
        x = self.pre_encode(self.frontend(pcm)) * self.xscale
        for layer in self.layers:
            x = layer(x, self.pos_emb, None, self.shift)
        return x


class ConformerSuffix(nn.Module):
    def __init__(self, model: ConformerCTC, k: int):
        super().__init__()
        self.layers = nn.ModuleList(model.encoder.layers[k:])
        self.head = model.decoder.decoder_layers[0]
        self.d_model = model.encoder.cfg.d_model

    def forward(self, emb, mask=None):
        pos = rel_positions(emb.shape[1], self.d_model)
        x = emb
        for layer in self.layers:
            x = layer(x, pos, mask)
        lp = torch.log_softmax(self.head(x.transpose(1, 2)).transpose(1, 2), dim=-1)
        return torch.cat([lp[..., -1:], lp[..., :-1]], dim=-1)  # NeMo's blank (last) -> index 0


class CtcVocabulary:
    """NeMo's CTC labels (``decoder.vocabulary``): greedy ids (blank moved to 0) -> text."""

    def __init__(self, labels: list[str]):
        self.labels = labels

    def decode(self, ids) -> str:
        return " ".join("".join(self.labels[i - 1] for i in ids if 0 < i <= len(self.labels)).split())


class ConformerAdapter(ModelAdapter):
    name = "conformer"
    # Measured at cut 2 of the tiny preset on real audio: ExecuTorch int8-static 13.0 dB SNR (fp32: 107 dB, so the
    # loss is quantization, not lowering), 8da4w 21.5 dB; LiteRT int8-static 25.9 dB.
    default_recipes = {"executorch": "8da4w"}
    float_modules = ("frontend", "pre_encode")
    phone_input = {"kind": "pcm", "frontend": "nemo-log-mel (AudioToMelSpectrogramPreprocessor's computation as a "
                                              "DFT convolution and matmuls in the graph, per-chunk normalization, float32)"}

    def __init__(self, config: str | None = "tiny", weights: str | Path | None = None, cut: int | None = None):
        self.config_arg, self.weights = config or "tiny", Path(weights) if weights else None
        self.cfg, self.labels = self._config(self.config_arg)
        torch.manual_seed(SEED)
        self.model = ConformerCTC(self.cfg).eval()
        if self.weights is not None:
            state = {k: v for k, v in read_state(self.weights).items() if not k.startswith("preprocessor.")
                     and not k.endswith("num_batches_tracked")}
            own = {k: v for k, v in self.model.state_dict().items() if k.endswith("num_batches_tracked")}
            fit_state(self.model, {**own, **state}, self.weights)
        frame = HOP * self.cfg.subsampling_factor
        self.chunk = ChunkSpec(SAMPLE_RATE, int(CHUNK_SECONDS * SAMPLE_RATE), frame)
        self.n_blocks = self.cfg.n_layers
        self.default_cut = cut or max(1, self.n_blocks // 2)

    def _config(self, arg: str):
        if arg in PRESETS:
            return ConformerConfig(**asdict(PRESETS[arg])), list(CharTokenizer().alphabet)
        path = Path(arg)
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise VeilError(f"--config {arg}: neither a preset ({', '.join(PRESETS)}) nor a readable JSON config "
                            f"({exc})") from None
        encoder = data.get("encoder", data)
        known = {f.name for f in fields(ConformerConfig)} - {"vocab_size"}
        labels = data.get("labels") or (data.get("decoder") or {}).get("vocabulary") or list(CharTokenizer().alphabet)
        try:
            return ConformerConfig(**{k: v for k, v in encoder.items() if k in known}, vocab_size=len(labels)), labels
        except TypeError as exc:
            raise VeilError(f"{path}: not a Conformer config ({exc})") from None

    def prefix(self, k: int) -> nn.Module:
        self.check_cut(k)
        return ConformerPrefix(self.model, k, self.chunk.chunk_frames).eval()

    def suffix(self, k: int) -> nn.Module:
        return ConformerSuffix(self.model, k).eval()

    def tokenizer(self):
        return CtcVocabulary(self.labels)

    def output_dim(self, k: int) -> int:
        return self.cfg.d_model

    def source(self) -> dict:
        return {"name": self.name, "config": self.config_arg, "weights": str(self.weights) if self.weights else None}

    def identity_sha256(self) -> str:
        return file_sha256(self.weights) if self.weights else state_sha256(self.model)
