"""Log-mel frontend as a grouped strided conv and matmuls with fixed DFT matrices, so every backend exports it.

Pre-emphasis 0.97 (chunk-local: the sample before a chunk counts as 0), 25 ms Hann window (400 samples),
10 ms hop (160 samples), 512-point DFT, 80 HTK mel bins, natural log with a floor, then a fixed per-bin
standardization (statistics of the training split, stored as buffers). A chunk
of ``S`` samples gives exactly ``S / 160`` frames: the chunk is right-padded with zeros inside the graph (the
window is zero past sample 400), so chunks never read each other's samples. Pre-emphasis flattens the spectrum
before the float32 DFT, which keeps quiet high-frequency bins accurate (max log-mel error vs a float64 numpy FFT
< 1e-4 on speech; 7e-4 on a full-scale 7 kHz tone, in bins ~150 dB below it).

The DFT is computed in two factored stages (Cooley-Tukey with ``n_fft = N1 * R``, ``R = gcd(hop, n_fft)``; for the
default config 512 = 16 * 32), both plain ops every backend delegates:

1. the padded chunk is viewed as rows of ``R`` samples; since ``R`` divides the hop, a frame is ``ceil(400 / R)``
   consecutive rows, so one grouped, strided ``conv1d`` (``R`` groups, one per position ``n2`` in a row) frames,
   windows and takes the length-``N1`` DFT across rows, with the twiddle factors ``exp(-2 pi i k1 n2 / n_fft)``
   folded into its weights: ``Y[k1, n2] = sum_n1 w[n] x[n] exp(-2 pi i k1 n / n_fft)``, ``n = R n1 + n2``;
2. one matmul takes the length-``R`` DFT across ``n2``: ``X[k1 + N1 k2] = sum_n2 Y[k1, n2] exp(-2 pi i n2 k2 / R)``,
   for the ``k2`` the mel filters use; bins come out in natural order ``k = k2 N1 + k1``.

Same values as the dense ``(2 * 257) x 400`` DFT basis (``dft_basis``, kept for checking older checkpoints), with
3.4x fewer multiply-adds and 36 k constants instead of 226 k (143 kB instead of 904 kB in every float32 artifact).
"""
from __future__ import annotations

from dataclasses import dataclass
from math import gcd

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F


@dataclass
class FrontendConfig:
    sample_rate: int = 16000
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    f_min: float = 20.0
    f_max: float = 7600.0
    log_floor: float = 1e-5
    preemphasis: float = 0.97


def hz_to_mel(f):
    return 2595.0 * np.log10(1.0 + np.asarray(f, dtype=np.float64) / 700.0)


def mel_to_hz(m):
    return 700.0 * (10.0 ** (np.asarray(m, dtype=np.float64) / 2595.0) - 1.0)


def mel_filterbank(cfg: FrontendConfig) -> np.ndarray:
    """(n_mels, n_fft//2+1) triangular HTK-mel filters, unnormalized."""
    n_bins = cfg.n_fft // 2 + 1
    freqs = np.linspace(0, cfg.sample_rate / 2, n_bins)
    pts = mel_to_hz(np.linspace(hz_to_mel(cfg.f_min), hz_to_mel(cfg.f_max), cfg.n_mels + 2))
    lower, center, upper = pts[:-2, None], pts[1:-1, None], pts[2:, None]
    up = (freqs[None, :] - lower) / (center - lower)
    down = (upper - freqs[None, :]) / (upper - center)
    return np.maximum(0.0, np.minimum(up, down))


def dft_basis(cfg: FrontendConfig) -> np.ndarray:
    """(2*(n_fft//2+1), 1, win_length): Hann-windowed cos and -sin rows (window zero-padded to n_fft)."""
    n = np.arange(cfg.win_length)
    window = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)  # periodic Hann
    k = np.arange(cfg.n_fft // 2 + 1)[:, None]
    phase = 2 * np.pi * k * n[None, :] / cfg.n_fft
    basis = np.concatenate([np.cos(phase) * window, -np.sin(phase) * window], axis=0)
    return basis[:, None, :]


def factored_dft(cfg: FrontendConfig) -> tuple[np.ndarray, np.ndarray, int]:
    """The two stages of the factored DFT (see the module docstring) and the number of bins they produce.

    Returns ``stage1`` (R * 2 * N1, 1, rows): per group n2, N1 real then N1 imaginary outputs over ``rows`` taps;
    ``stage2`` (2 * K2, 2 * R): input channels (n2, re/im), outputs K2 real then K2 imaginary; ``bins = N1 * K2``,
    enough for every bin with a nonzero mel weight.
    """
    r = gcd(cfg.hop_length, cfg.n_fft)
    n1_size = cfg.n_fft // r
    rows = -(-cfg.win_length // r)
    used = np.flatnonzero(mel_filterbank(cfg).any(axis=0))
    k2_size = min(r, int(used[-1]) // n1_size + 1)
    window = np.zeros(rows * r)
    n = np.arange(cfg.win_length)
    window[:cfg.win_length] = 0.5 - 0.5 * np.cos(2 * np.pi * n / cfg.win_length)  # periodic Hann
    n1, n2, k1 = np.meshgrid(np.arange(rows), np.arange(r), np.arange(n1_size), indexing="ij")  # (rows, R, N1)
    sample = r * n1 + n2
    phase = 2 * np.pi * k1 * sample / cfg.n_fft
    taps = window[sample]
    stage1 = np.stack([np.cos(phase) * taps, -np.sin(phase) * taps], axis=2)  # (rows, R, 2, N1)
    stage1 = stage1.transpose(1, 2, 3, 0).reshape(r * 2 * n1_size, 1, rows)
    theta = 2 * np.pi * np.arange(k2_size)[:, None] * np.arange(r)[None, :] / r  # (K2, R)
    cos, sin = np.cos(theta), np.sin(theta)
    # input channel index n2 * 2 + part (part 0: real, 1: imaginary)
    stage2 = np.zeros((2 * k2_size, r, 2))
    stage2[:k2_size, :, 0], stage2[:k2_size, :, 1] = cos, sin  # Re X = Yr cos + Yi sin
    stage2[k2_size:, :, 0], stage2[k2_size:, :, 1] = -sin, cos  # Im X = Yi cos - Yr sin
    return stage1, stage2.reshape(2 * k2_size, 2 * r), n1_size * k2_size


class LogMelFrontend(nn.Module):
    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        stage1, stage2, bins = factored_dft(cfg)
        self.row = gcd(cfg.hop_length, cfg.n_fft)
        self.n1_size, self.rows = cfg.n_fft // self.row, stage1.shape[-1]
        self.k2_size = bins // self.n1_size
        mel = np.zeros((cfg.n_mels, bins))
        full = mel_filterbank(cfg)[:, :bins]
        mel[:, :full.shape[1]] = full
        # Derived from the config, so not stored in checkpoints (persistent=False); only the statistics are.
        self.register_buffer("dft1", torch.tensor(stage1, dtype=torch.float32), persistent=False)
        self.register_buffer("dft2", torch.tensor(stage2, dtype=torch.float32), persistent=False)
        self.register_buffer("mel", torch.tensor(mel, dtype=torch.float32), persistent=False)
        self.register_buffer("feat_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("feat_std", torch.ones(cfg.n_mels))

    def log_mel(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) PCM in [-1, 1] -> (B, S/160, 80) natural-log mel energies (before standardization)."""
        cfg, r = self.cfg, self.row
        if cfg.preemphasis:
            pcm = pcm - cfg.preemphasis * F.pad(pcm, (1, 0))[:, :-1]
        batch, frames = pcm.shape[0], pcm.shape[1] // cfg.hop_length
        span = (frames - 1) * cfg.hop_length + self.rows * r  # samples the last frame's rows reach
        x = F.pad(pcm, (0, span - pcm.shape[1])).reshape(batch, span // r, r).transpose(1, 2)  # (B, R, rows total)
        y = F.conv1d(x, self.dft1, stride=cfg.hop_length // r, groups=r)  # (B, R*2*N1, T): (n2, re/im, k1)
        y = y.reshape(batch, 2 * r, self.n1_size * frames)
        spec = torch.matmul(self.dft2, y)  # (B, 2*K2, N1*T): K2 real rows, then K2 imaginary
        power = spec[:, :self.k2_size] ** 2 + spec[:, self.k2_size:] ** 2  # (B, K2, N1*T)
        power = power.reshape(batch, self.k2_size * self.n1_size, frames)  # (B, bins, T), bin k = k2*N1 + k1
        mel = torch.matmul(self.mel, power)  # (B, n_mels, T)
        return torch.log(mel + cfg.log_floor).transpose(1, 2)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(pcm) - self.feat_mean) / self.feat_std
