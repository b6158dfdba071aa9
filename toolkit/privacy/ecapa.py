"""An ECAPA-TDNN-style speaker attacker, sized for CPUs: stronger than Veil's x-vector in the ways that matter.

Desplanques et al., Interspeech 2020 (arXiv 2005.07143): 1-D convolutions with squeeze-excitation and
Res2Net multi-scale blocks, multi-layer feature aggregation, attentive statistics pooling (a per-frame,
per-channel attention with global context, then a weighted mean and standard deviation) and an additive
angular margin (AAM) softmax. Trained on random crops of the attacker's training speakers' embeddings, as many
utterances per speaker as the corpus gives; it scores trials by cosine between centred, length-normalized
embeddings.

Every layer takes a ``(B, 1, T)`` mask: a zero-padded batch of mixed lengths gives each utterance the same
embedding as running it alone (frames past its length are zeroed after every layer and left out of every
statistic), so scoring can batch without changing a number.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.privacy.attackers import padded_batches


def _masked(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    return h if mask is None else h * mask


def _masked_mean(h: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """(B, C, T) -> (B, C, 1) mean over valid frames."""
    if mask is None:
        return h.mean(-1, keepdim=True)
    return (h * mask).sum(-1, keepdim=True) / mask.sum(-1, keepdim=True)


class ConvBlock(nn.Module):
    """Conv1d → ReLU → BatchNorm, then the padding mask."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel, padding=dilation * (kernel - 1) // 2, dilation=dilation)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x, mask=None):
        return _masked(self.norm(F.relu(self.conv(x))), mask)


class SERes2Block(nn.Module):
    """1×1 conv, Res2Net (``scale`` channel groups, each a dilated conv fed by the previous group's output),
    1×1 conv, squeeze-excitation over valid frames, residual."""

    def __init__(self, channels: int, kernel: int, dilation: int, scale: int = 4, se_bottleneck: int = 64):
        super().__init__()
        if channels % scale:
            raise ValueError(f"channels {channels} not divisible by Res2Net scale {scale}")
        width = channels // scale
        self.scale = scale
        self.pre = ConvBlock(channels, channels)
        self.convs = nn.ModuleList(ConvBlock(width, width, kernel, dilation) for _ in range(scale - 1))
        self.post = ConvBlock(channels, channels)
        self.se = nn.Sequential(nn.Linear(channels, se_bottleneck), nn.ReLU(), nn.Linear(se_bottleneck, channels),
                                nn.Sigmoid())

    def forward(self, x, mask=None):
        h = self.pre(x, mask)
        groups = list(h.chunk(self.scale, dim=1))
        out, prev = [groups[0]], None
        for conv, g in zip(self.convs, groups[1:]):
            prev = conv(g if prev is None else g + prev, mask)
            out.append(prev)
        h = self.post(torch.cat(out, dim=1), mask)
        h = h * self.se(_masked_mean(h, mask).squeeze(-1)).unsqueeze(-1)
        return x + h


class AttentiveStatsPooling(nn.Module):
    """Channel-dependent attention over frames with global context; weighted mean and std concatenated."""

    def __init__(self, channels: int, bottleneck: int = 64):
        super().__init__()
        self.attention = nn.Sequential(nn.Conv1d(3 * channels, bottleneck, 1), nn.Tanh(),
                                       nn.Conv1d(bottleneck, channels, 1))

    def forward(self, h, mask=None):
        mean = _masked_mean(h, mask)
        std = (_masked_mean((h - mean) ** 2, mask)).clamp(min=1e-6).sqrt()
        t = h.shape[-1]
        context = torch.cat([h, mean.expand(-1, -1, t), std.expand(-1, -1, t)], dim=1)
        logits = self.attention(context)
        if mask is not None:
            logits = logits.masked_fill(mask == 0, float("-inf"))
        w = torch.softmax(logits, dim=-1)
        mu = (w * h).sum(-1)
        sigma = ((w * h * h).sum(-1) - mu * mu).clamp(min=1e-6).sqrt()
        return torch.cat([mu, sigma], dim=1)


class ECAPA(nn.Module):
    """Input conv, SE-Res2 blocks with growing dilation, multi-layer aggregation, attentive statistics
    pooling, a ``emb``-dimensional speaker embedding."""

    def __init__(self, d_in: int, channels: int = 256, emb: int = 192, dilations=(2, 3, 4), scale: int = 4):
        super().__init__()
        self.input = ConvBlock(d_in, channels, kernel=5)
        self.blocks = nn.ModuleList(SERes2Block(channels, 3, d, scale) for d in dilations)
        self.aggregate = ConvBlock(channels * len(dilations), channels * len(dilations))
        self.pool = AttentiveStatsPooling(channels * len(dilations))
        self.pool_norm = nn.BatchNorm1d(2 * channels * len(dilations))
        self.embedding = nn.Linear(2 * channels * len(dilations), emb)
        self.embedding_norm = nn.BatchNorm1d(emb)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, d) -> (B, emb). ``lengths``: valid frames of each row of a zero-padded batch."""
        mask = None
        if lengths is not None:
            mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        h = self.input(x.transpose(1, 2), mask)
        outs = []
        for block in self.blocks:
            h = block(h, mask)
            outs.append(h)
        h = self.aggregate(torch.cat(outs, dim=1), mask)
        return self.embedding_norm(self.embedding(self.pool_norm(self.pool(h, mask))))


class AAMSoftmax(nn.Module):
    """Additive angular margin softmax: the target logit is s·cos(θ + m), the others s·cos(θ)."""

    def __init__(self, emb: int, n_classes: int, scale: float = 30.0):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_classes, emb) * 0.01)
        self.scale = scale

    def forward(self, e: torch.Tensor, target: torch.Tensor, margin: float) -> torch.Tensor:
        cos = F.linear(F.normalize(e), F.normalize(self.weight)).clamp(-1 + 1e-7, 1 - 1e-7)
        target_cos = torch.cos(torch.acos(cos.gather(1, target[:, None])) + margin)
        logits = cos.scatter(1, target[:, None], target_cos) * self.scale
        return F.cross_entropy(logits, target)


@dataclass
class EcapaSettings:
    """Training budget and shape. ``steps`` of ``batch`` crops of ``crop_min..crop_max`` frames."""
    steps: int = 600
    batch: int = 64
    crop_min: int = 40
    crop_max: int = 100
    channels: int = 128
    emb: int = 128
    lr: float = 3e-3
    margin: float = 0.2
    margin_warmup: float = 0.3  # fraction of the steps over which the margin grows from 0


@dataclass
class EcapaAttacker:
    model: ECAPA
    mean: np.ndarray
    std: np.ndarray
    centre: np.ndarray | None = None  # mean training embedding, subtracted before length normalization

    @torch.no_grad()
    def embed(self, frames: list[np.ndarray], batch: int = 64, normalize: bool = True) -> np.ndarray:
        """(N, emb): utterances of similar length batched (zero-padded, masked); centred and L2-normalized
        unless ``normalize`` is False."""
        self.model.eval()
        out = np.zeros((len(frames), self.model.embedding.out_features), dtype=np.float32)
        for idx, x, lengths in padded_batches(frames, self.mean, self.std, batch):
            out[idx] = self.model(x, lengths).numpy()
        if not normalize:
            return out
        if self.centre is not None:
            out = out - self.centre
        return out / (np.linalg.norm(out, axis=1, keepdims=True) + 1e-12)


def random_crops(frames: list[np.ndarray], idx: list[int], length: int, rng: np.random.Generator) -> np.ndarray:
    """(B, length, d): a random window of each utterance; one shorter than ``length`` is repeated to fill it."""
    out = []
    for i in idx:
        f = frames[i]
        if len(f) < length:
            f = np.tile(f, (math.ceil(length / len(f)), 1))
        start = int(rng.integers(0, len(f) - length + 1))
        out.append(f[start:start + length])
    return np.stack(out)


def train_ecapa(frames: list[np.ndarray], speakers: list[str], settings: EcapaSettings = EcapaSettings(),
                seed: int = 0, progress=None, centre_utterances: int = 2048) -> EcapaAttacker:
    """Speaker classification with an AAM softmax on random crops; deterministic given seed and threads.
    The embeddings' centre is the mean over ``centre_utterances`` random training utterances."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(frames)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    norm = [((f - mean) / std).astype(np.float32) for f in frames]
    labels = {s: i for i, s in enumerate(sorted(set(speakers)))}
    y = torch.tensor([labels[s] for s in speakers])
    model = ECAPA(frames[0].shape[1], settings.channels, settings.emb)
    head = AAMSoftmax(settings.emb, len(labels))
    params = list(model.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=settings.lr, weight_decay=2e-5)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps, pct_start=0.15)
    model.train()
    perm: list[int] = []
    for step in range(settings.steps):
        if len(perm) < settings.batch:
            perm += torch.randperm(len(frames), generator=g).tolist()
        idx, perm = perm[:settings.batch], perm[settings.batch:]
        length = int(rng.integers(settings.crop_min, settings.crop_max + 1))
        x = torch.from_numpy(random_crops(norm, idx, length, rng))
        margin = settings.margin * min(1.0, step / max(1.0, settings.margin_warmup * settings.steps))
        loss = head(model(x), y[idx], margin)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if progress and (step + 1) % 250 == 0:
            progress(f"    ecapa step {step + 1}/{settings.steps}: loss {loss.item():.2f}")
    attacker = EcapaAttacker(model, mean, std)
    sample = sorted(rng.choice(len(frames), min(len(frames), centre_utterances), replace=False).tolist())
    attacker.centre = attacker.embed([frames[i] for i in sample], normalize=False).mean(0)
    return attacker
