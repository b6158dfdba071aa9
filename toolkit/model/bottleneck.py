"""The information bottleneck at the split: what may leave the phone, and how little of it.

A fooled speaker head is not anonymity, and neither is normalization: identity survives in the structure of
the frames (FINDINGS). The lever the literature relies on (VoicePrivacy 2024 baselines B5/B6) is to squeeze
the transmitted representation until it can carry little besides content:

    block k output (d) ─▶ down: d → dim (phone) ─▶ [vector quantization, G groups × K codes] ─▶ up: dim → d (cloud)

- ``down`` is part of the exported prefix: the artifact emits ``z`` (chunk_frames × dim), continuous.
- With a codebook (``vq_codes > 0``) the payload codec sends, per frame, the index of the nearest codeword in
  each of ``vq_groups`` groups (``toolkit/payload.py`` codec ``vq``); the cloud looks the codewords up. Nearest
  codeword of a codeword is itself, so quantizing twice is quantizing once: the suffix may be fed either the
  phone's ``z`` or the codewords it received.
- Without a codebook, ``z`` itself travels (int8 codec), and ``dim`` alone is the bottleneck.
- ``noise`` S > 0 (no codebook): the phone normalizes each frame of ``z`` to unit RMS (in the exported graph,
  so ``down`` cannot outgrow the noise by scaling up) and adds i.i.d. Gaussian noise of std S to every value
  before the payload codec (on the phone, from a secure RNG; the manifest's ``bottleneck.noise_std``). It is
  the channel, not a regularizer: training, evaluation and the attackers all see ``z + noise``. Per-dimension
  signal-to-noise ratio 1/S².

The codebook is learned by exponential moving averages of its assigned vectors (van den Oord et al. 2017,
"VQ-VAE", §3.2 and appendix), with a commitment loss on ``z``, straight-through gradients, and dead codes
re-seeded from the batch, so every code stays in use.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

EMA_DECAY = 0.99
RMS_EPS = 1e-6           # per-frame RMS normalization of a noisy channel's z
NOISE_SEED = 0           # where an evaluation or an attack replays a noisy channel, its noise comes from this seed
DEAD_CODE_COUNT = 1e-3   # EMA assignment count below which a code is re-seeded from the batch


def replay_noise(device: str | torch.device = "cpu") -> torch.Generator:
    """The generator a noisy channel's noise comes from where Veil replays the channel (transcription,
    evaluation, attack embeddings), so the same run gives the same numbers; a phone draws its noise from the
    OS's random source instead."""
    return torch.Generator(device).manual_seed(NOISE_SEED)


class VectorQuantizer(nn.Module):
    """``groups`` independent codebooks of ``codes`` vectors of ``dim // groups`` dims each."""

    def __init__(self, dim: int, groups: int, codes: int):
        super().__init__()
        if dim % groups:
            raise ValueError(f"bottleneck dim {dim} is not divisible by {groups} codebook groups")
        self.groups, self.codes, self.group_dim = groups, codes, dim // groups
        self.register_buffer("codebook", torch.randn(groups, codes, self.group_dim) * 0.1)
        self.register_buffer("ema_count", torch.ones(groups, codes))
        self.register_buffer("ema_sum", self.codebook.clone())

    def indices(self, z: torch.Tensor) -> torch.Tensor:
        """(..., dim) -> (..., groups) nearest-codeword indices (squared L2, first minimum on ties)."""
        zg = z.reshape(*z.shape[:-1], self.groups, 1, self.group_dim)
        return ((zg - self.codebook) ** 2).sum(-1).argmin(-1)

    def lookup(self, idx: torch.Tensor) -> torch.Tensor:
        """(..., groups) indices -> (..., dim) codewords."""
        g = torch.arange(self.groups, device=idx.device)
        return self.codebook[g, idx].reshape(*idx.shape[:-1], self.groups * self.group_dim)

    def forward(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Quantize ``z`` (B, T, dim): returns the codewords with straight-through gradients to ``z`` and the
        commitment loss ||z - sg(q)||² over valid frames. In training mode the codebook follows its EMA."""
        idx = self.indices(z)
        q = self.lookup(idx)
        valid = torch.ones(z.shape[:-1], dtype=torch.bool, device=z.device) if mask is None else mask
        if self.training:
            self._ema_update(z.detach()[valid], idx[valid])
        w = valid.unsqueeze(-1).to(z.dtype)
        commit = (((z - q.detach()) ** 2) * w).sum() / (w.sum() * z.shape[-1]).clamp_min(1.0)
        if z.requires_grad:  # straight-through: the codewords forward, the identity's gradient backward
            q = z + (q - z).detach()  # (equal to the codewords up to rounding, hence only when training)
        return q, commit

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, idx: torch.Tensor) -> None:
        if z.numel() == 0:
            return
        zg = z.reshape(-1, self.groups, self.group_dim)
        onehot = F.one_hot(idx, self.codes).to(z.dtype)                     # (N, G, K)
        self.ema_count.mul_(EMA_DECAY).add_(onehot.sum(0), alpha=1 - EMA_DECAY)
        self.ema_sum.mul_(EMA_DECAY).add_(torch.einsum("ngk,ngd->gkd", onehot, zg), alpha=1 - EMA_DECAY)
        total = self.ema_count.sum(1, keepdim=True)
        count = (self.ema_count + 1e-5) / (total + self.codes * 1e-5) * total  # Laplace smoothing
        self.codebook.copy_(self.ema_sum / count.unsqueeze(-1))
        dead = self.ema_count < DEAD_CODE_COUNT
        for g in range(self.groups):
            codes = dead[g].nonzero().squeeze(1)
            if len(codes):
                pick = torch.randint(0, zg.shape[0], (len(codes),), device=z.device)
                self.codebook[g, codes] = zg[pick, g]
                self.ema_sum[g, codes] = zg[pick, g]
                self.ema_count[g, codes] = 1.0

    @torch.no_grad()
    def init_from(self, z: torch.Tensor, iters: int = 10, seed: int = 0) -> None:
        """k-means on sample vectors ``z`` (N, dim), one codebook per group, seeded from random samples."""
        g_ = torch.Generator().manual_seed(seed)
        zg = z.reshape(-1, self.groups, self.group_dim)
        for g in range(self.groups):
            x = zg[:, g]
            c = x[torch.randperm(len(x), generator=g_)[: self.codes]].clone()
            for _ in range(iters):
                a = torch.cdist(x, c).argmin(1)
                sums = torch.zeros_like(c).index_add_(0, a, x)
                n = torch.bincount(a, minlength=self.codes).to(x.dtype)
                c = torch.where(n[:, None] > 0, sums / n.clamp_min(1)[:, None], c)
            self.codebook[g] = c
            self.ema_sum[g] = c
            self.ema_count[g] = 1.0


class Bottleneck(nn.Module):
    """Phone side ``down`` (d -> dim), the optional codebook, cloud side ``up`` (dim -> out_dim, default d: the
    width of the cloud's first block)."""

    def __init__(self, d: int, dim: int, groups: int = 0, codes: int = 0, noise: float = 0.0, out_dim: int = 0):
        super().__init__()
        self.dim, self.noise = dim, noise
        self.down = nn.Linear(d, dim)
        self.up = nn.Linear(dim, out_dim or d)
        self.vq = VectorQuantizer(dim, groups, codes) if codes else None

    def phone(self, x: torch.Tensor) -> torch.Tensor:
        """What the exported prefix emits for block-k output ``x``: ``down(x)``, each frame at unit RMS when the
        channel adds noise."""
        z = self.down(x)
        if self.noise and self.vq is None:
            z = z * torch.rsqrt(z.pow(2).mean(-1, keepdim=True) + RMS_EPS)
        return z

    def transmit(self, z: torch.Tensor, mask: torch.Tensor | None = None,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """What the cloud receives for phone output ``z``: codewords (with a codebook), ``z`` plus the channel's
        noise (with ``noise``), or ``z`` itself; plus the commitment loss (0 without a codebook)."""
        if self.vq is not None:
            return self.vq(z, mask)
        if self.noise:
            z = z + self.noise * torch.randn(z.shape, generator=generator, device=z.device, dtype=z.dtype)
        return z, z.new_zeros(())

    def receive(self, z: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """The cloud's side of the payload ``z`` it received: quantized with the codebook (idempotent on
        codewords), else as it came (the noise was added on the phone)."""
        return self.vq(z, mask)[0] if self.vq is not None else z

    @torch.no_grad()
    def init_from(self, x: torch.Tensor, seed: int = 0) -> None:
        """Initialize ``down``/``up`` as the PCA of sample embeddings ``x`` (N, d) (so the bottleneck starts as
        the best rank-``dim`` linear reconstruction) and the codebook by k-means of the projected samples."""
        mean = x.mean(0)
        _, _, vt = torch.linalg.svd(x - mean, full_matrices=False)
        basis = vt[: self.dim]
        self.down.weight.copy_(basis)
        self.down.bias.copy_(-basis @ mean)
        if self.up.out_features == x.shape[1]:  # the cloud reads back the split's width: start as the PCA inverse
            self.up.weight.copy_(basis.T)
            self.up.bias.copy_(mean)
        if self.vq is not None:
            self.vq.init_from(self.down(x), seed=seed)
