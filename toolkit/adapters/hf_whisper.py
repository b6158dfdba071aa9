"""Hugging Face ``transformers`` Whisper encoder (log-mel in: conv stem + transformer layers).

The phone feeds PCM; Whisper's log-mel frontend is inside the prefix, float32 in every recipe
(:class:`WhisperLogMel`: the computation of ``WhisperFeatureExtractor`` — 400-sample periodic Hann window,
160-sample hop, centered frames with reflection padding, power spectrum, 80 Slaney mel filters, log10 floored
at 1e-10, clamped to 8 below the chunk's maximum, ``(x + 4) / 4`` — written as a DFT-basis convolution and
matmuls). The reflection padding is a matmul with a 200 x 200 exchange matrix (a ``flip`` has no XNNPACK
lowering); the clamp's maximum over the chunk (``amax``) has none either and is listed in the manifest.

Whisper reads 30-s windows (1500 positions). The phone runs 2-s chunks: 200 mel frames -> 100 encoder frames
with positions 0..99, each chunk alone. A model trained on 30-s windows was not trained on such chunks: parity
compares the artifact with this same chunked float prefix, and no ΔWER is measured (the seq2seq decoder is not
part of the adapter: ``suffix`` is None).
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.adapters.base import ModelAdapter, fit_state, read_state, state_sha256
from toolkit.chunking import ChunkSpec
from toolkit.errors import VeilError
from toolkit.files import file_sha256

N_FFT, HOP, SAMPLE_RATE = 400, 160, 16000
CHUNK_SECONDS = 2.0
SEED = 0


def presets() -> dict[str, dict]:
    return {"tiny": dict(d_model=64, encoder_layers=4, encoder_attention_heads=4, encoder_ffn_dim=128,
                         decoder_layers=1, decoder_attention_heads=4, decoder_ffn_dim=128, num_mel_bins=80,
                         max_source_positions=100, max_target_positions=32, vocab_size=64,
                         pad_token_id=0, bos_token_id=1, eos_token_id=2, decoder_start_token_id=3)}


class WhisperLogMel(nn.Module):
    """(N, S) PCM -> (N, n_mels, S / 160) Whisper log-mel features (see the module docstring)."""

    def __init__(self, n_mels: int):
        super().__init__()
        from transformers.audio_utils import mel_filter_bank
        n = np.arange(N_FFT)
        window = 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann, as WhisperFeatureExtractor
        k = np.arange(N_FFT // 2 + 1)[:, None]
        phase = 2 * np.pi * k * n[None, :] / N_FFT
        basis = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window])[:, None, :]
        mel = mel_filter_bank(num_frequency_bins=N_FFT // 2 + 1, num_mel_filters=n_mels, min_frequency=0.0,
                              max_frequency=8000.0, sampling_rate=SAMPLE_RATE, norm="slaney", mel_scale="slaney")
        self.register_buffer("dft", torch.tensor(basis, dtype=torch.float32))
        self.register_buffer("mel", torch.tensor(mel.T, dtype=torch.float32))  # (n_mels, bins)
        self.register_buffer("flip", torch.flip(torch.eye(N_FFT // 2), dims=[0]))
        self.bins = N_FFT // 2 + 1

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        half = N_FFT // 2
        left = torch.matmul(pcm[:, 1:half + 1], self.flip)  # reflection: x[half], ..., x[1]
        right = torch.matmul(pcm[:, -half - 1:-1], self.flip)  # x[S-2], ..., x[S-1-half]
        x = torch.cat([left, pcm, right], dim=1)[:, None, :]
        spec = F.conv1d(x, self.dft, stride=HOP)[:, :, :-1]  # (N, 2*bins, S/160): drop the last frame, as Whisper
        power = spec[:, :self.bins] ** 2 + spec[:, self.bins:] ** 2
        logmel = torch.log(torch.clamp(torch.matmul(self.mel, power), min=1e-10)) * (1.0 / math.log(10.0))
        logmel = torch.maximum(logmel, logmel.amax(dim=(1, 2), keepdim=True) - 8.0)
        return (logmel + 4.0) / 4.0


def _tensor(out):
    return out[0] if isinstance(out, tuple) else out


class WhisperPrefix(nn.Module):
    """One PCM chunk (1, chunk_samples) -> the output of encoder layer k (1, chunk_frames, d_model)."""

    def __init__(self, encoder: nn.Module, k: int, frames: int):
        super().__init__()
        self.frontend = WhisperLogMel(encoder.config.num_mel_bins)
        self.conv1, self.conv2 = copy.deepcopy(encoder.conv1), copy.deepcopy(encoder.conv2)
        self.register_buffer("positions", encoder.embed_positions.weight[:frames].detach().clone())
        self.layers = nn.ModuleList(copy.deepcopy(list(encoder.layers[:k])))

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        x = F.gelu(self.conv2(F.gelu(self.conv1(self.frontend(pcm)))))  # (N, d, T)
        n, d, t = x.shape  # positions added on (N*T, d): XNNPACK (ExecuTorch 1.5.1) miscomputes a Linear whose
        x = (x.transpose(1, 2).reshape(n * t, d) + self.positions.repeat(n, 1)).reshape(n, t, d)  # input is a transpose
        for layer in self.layers:
            x = _tensor(layer(x, None))
        return x


class HFWhisperAdapter(ModelAdapter):
    name = "hf-whisper"
    phone_input = {"kind": "pcm", "frontend": "whisper-log-mel (WhisperFeatureExtractor's computation as a DFT "
                                              "convolution and matmuls in the graph, float32)"}
    float_modules = ("frontend",)
    # ExecuTorch's PT2E int8 recipes fail to build on this encoder ("Missing out variants:
    # quantized_decomposed::dequantize_per_channel": the attention projections' weight dequantize stays outside
    # XNNPACK); torchao's 8da4w (int8 dynamic activations, int4/int8 weights) builds and measured 40.6 dB SNR at
    # cut 4 of the tiny preset on real audio. LiteRT int8-static: 57.6 dB.
    default_recipes = {"executorch": "8da4w"}

    def __init__(self, config: str | None = "tiny", weights: str | Path | None = None, cut: int | None = None):
        from transformers import WhisperConfig
        from transformers.models.whisper.modeling_whisper import WhisperEncoder
        self.config_arg, self.weights = config or "tiny", Path(weights) if weights else None
        table = presets()
        if self.config_arg in table:
            self.hf_config = WhisperConfig(**table[self.config_arg])
        else:
            path = Path(self.config_arg)
            path = path / "config.json" if path.is_dir() else path
            if not path.is_file():
                raise VeilError(f"--config {self.config_arg}: neither a preset ({', '.join(table)}) nor a config.json")
            try:
                self.hf_config = WhisperConfig.from_json_file(str(path))
            except (ValueError, OSError, TypeError) as exc:
                raise VeilError(f"{path}: not a Whisper config ({str(exc).splitlines()[0][:120]})") from None
        self.hf_config._attn_implementation = "eager"
        torch.manual_seed(SEED)
        self.model = WhisperEncoder(self.hf_config).eval()
        if self.weights is not None:
            state = read_state(self.weights)
            for p in ("model.encoder.", "encoder."):  # WhisperForConditionalGeneration / WhisperModel files
                if any(k.startswith(p) for k in state):
                    state = {k[len(p):]: v for k, v in state.items() if k.startswith(p)}
                    break
            fit_state(self.model, state, self.weights)
        self.chunk = ChunkSpec(SAMPLE_RATE, int(CHUNK_SECONDS * SAMPLE_RATE), 2 * HOP)
        if self.chunk.chunk_frames > self.hf_config.max_source_positions:
            raise VeilError(f"{self.chunk.chunk_seconds:g}-s chunks need {self.chunk.chunk_frames} positions; the "
                            f"model has {self.hf_config.max_source_positions}")
        self.n_blocks = self.hf_config.encoder_layers
        self.default_cut = cut or max(1, self.n_blocks // 2)

    def prefix(self, k: int) -> nn.Module:
        self.check_cut(k)
        return WhisperPrefix(self.model, k, self.chunk.chunk_frames).eval()

    def output_dim(self, k: int) -> int:
        return int(self.hf_config.d_model)

    def source(self) -> dict:
        return {"name": self.name, "config": self.config_arg, "weights": str(self.weights) if self.weights else None}

    def identity_sha256(self) -> str:
        return file_sha256(self.weights) if self.weights else state_sha256(self.model)
