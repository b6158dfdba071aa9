"""Conformer encoder pieces: conv2d subsampling (x4), macaron feed-forward, MHSA, convolution module.

Written with plain matmuls/softmax (no fused attention kernels) so torch.export lowers it the same way for
ExecuTorch, LiteRT and Core ML. ``mask`` is a (B, T) bool tensor, True on valid frames; the on-device prefix
runs unmasked on whole chunks, the cloud suffix masks padding in a batch.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class ConvSubsampling(nn.Module):
    """(B, T, n_mels) -> (B, T/4, d): two stride-2 3x3 convs; T must be a multiple of 4."""

    def __init__(self, n_mels: int, d_model: int, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.out = nn.Linear(channels * ((n_mels + 3) // 4), d_model)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.conv1(feats.unsqueeze(1)))
        x = F.relu(self.conv2(x))  # (B, C, T/4, F/4)
        b, c, t, f = x.shape
        return self.out(x.permute(0, 2, 1, 3).reshape(b, t, c * f))


class FeedForward(nn.Module):
    def __init__(self, d: int, mult: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.up = nn.Linear(d, d * mult)
        self.down = nn.Linear(d * mult, d)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.down(F.silu(self.up(self.norm(x)))))


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.heads = heads
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        b, t, d = x.shape
        h = self.heads
        q, k, v = self.qkv(self.norm(x)).reshape(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)
        scores = torch.matmul(q, k.transpose(-1, -2)) * (d // h) ** -0.5  # (B, H, T, T)
        if mask is not None:
            scores = scores.masked_fill(~mask[:, None, None, :], -1e4)
        attn = torch.softmax(scores, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d)
        return self.drop(self.proj(out))


class ConvModule(nn.Module):
    """Pointwise-GLU, depthwise conv (same padding), LayerNorm (not BatchNorm: chunk/batch independent)."""

    def __init__(self, d: int, kernel: int, dropout: float):
        super().__init__()
        self.norm = nn.LayerNorm(d)
        self.pw1 = nn.Conv1d(d, 2 * d, 1)
        self.dw = nn.Conv1d(d, d, kernel, padding=kernel // 2, groups=d)
        self.dw_norm = nn.LayerNorm(d)
        self.pw2 = nn.Conv1d(d, d, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        y = F.glu(self.pw1(self.norm(x).transpose(1, 2)), dim=1)  # (B, d, T)
        if mask is not None:
            y = y * mask[:, None, :].to(y.dtype)
        y = self.dw(y)
        y = F.silu(self.dw_norm(y.transpose(1, 2)))
        return self.drop(self.pw2(y.transpose(1, 2)).transpose(1, 2))


class ConformerBlock(nn.Module):
    def __init__(self, d: int, heads: int, ff_mult: int, kernel: int, dropout: float):
        super().__init__()
        self.ff1 = FeedForward(d, ff_mult, dropout)
        self.attn = SelfAttention(d, heads, dropout)
        self.conv = ConvModule(d, kernel, dropout)
        self.ff2 = FeedForward(d, ff_mult, dropout)
        self.norm = nn.LayerNorm(d)

    def forward(self, x, mask=None):
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn(x, mask)
        x = x + self.conv(x, mask)
        x = x + 0.5 * self.ff2(x)
        return self.norm(x)
