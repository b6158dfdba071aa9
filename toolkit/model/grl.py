"""Speaker-adversarial pieces: the gradient reversal layer, Ganin's lambda schedule, the speaker head.

The GRL is attached after encoder block ``k`` (1-based; one or several ``k``) in ``VeilModel.forward``:
block-k frames -> GRL(lambda) -> SpeakerHead -> speaker cross-entropy. Forward is identity; backward
multiplies the gradient by -lambda, so the encoder learns to *remove* what the head uses.
"""
from __future__ import annotations

import math

import torch
from torch import nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lambd):
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float) -> torch.Tensor:
    return _GradReverse.apply(x, lambd)


def ganin_lambda(progress: float, lambda_max: float, gamma: float = 10.0) -> float:
    """lambda_max * (2 / (1 + exp(-gamma * p)) - 1), p = training progress in [0, 1]."""
    p = min(max(progress, 0.0), 1.0)
    return lambda_max * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def masked_stats_pool(x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, T, d) -> (B, 2d): mean and std over valid frames."""
    if mask is None:
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
    w = mask.unsqueeze(-1).to(x.dtype)
    n = w.sum(1).clamp_min(1.0)
    mean = (x * w).sum(1) / n
    var = ((x - mean.unsqueeze(1)) ** 2 * w).sum(1) / n
    return torch.cat([mean, (var + 1e-5).sqrt()], dim=-1)


class SpeakerHead(nn.Module):
    """Statistics pooling (mean+std over frames) + 2-layer MLP -> speaker logits."""

    def __init__(self, d: int, n_speakers: int, hidden: int = 256):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(2 * d, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, n_speakers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.mlp(masked_stats_pool(x, mask))


class TDNNSpeakerHead(nn.Module):
    """x-vector-style adversary: dilated 1-D convolutions over frames (context of 15 frames), then masked
    statistics pooling + MLP. As strong as the x-vector attacker in ``toolkit/privacy``, so the encoder is
    pushed to remove what a frame-level attacker can use, not only what pooled means and stds carry."""

    def __init__(self, d: int, n_speakers: int, hidden: int = 256):
        super().__init__()
        self.frames = nn.Sequential(
            nn.Conv1d(d, hidden, 5, padding=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=2, dilation=2), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 3, padding=3, dilation=3), nn.ReLU(),
            nn.Conv1d(hidden, hidden, 1), nn.ReLU())
        self.mlp = nn.Sequential(nn.Linear(2 * hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_speakers))

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if mask is not None:
            x = x * mask.unsqueeze(-1).to(x.dtype)
        h = self.frames(x.transpose(1, 2)).transpose(1, 2)
        return self.mlp(masked_stats_pool(h, mask))


SPEAKER_HEADS = {"mlp": SpeakerHead, "tdnn": TDNNSpeakerHead}
