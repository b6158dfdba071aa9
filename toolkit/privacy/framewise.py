"""A frame-level speaker classifier: every frame (with a few frames of context) votes, the utterance is the
speaker with the highest mean log-probability over its frames.

It needs no pooling at all, so it sees whatever a single moment of the embedding says about the voice: the
joint distribution of the channels in one frame (correlations, higher moments), which per-channel
normalization does not touch. Closed set: trained on the attacked speakers' enrollment utterances.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from toolkit.privacy.ecapa import random_crops


class FrameClassifier(nn.Module):
    """Conv over ``context`` frames, then two per-frame layers; (B, T, d) -> (B, T, n_speakers) logits."""

    def __init__(self, d_in: int, n_speakers: int, width: int = 256, context: int = 3):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv1d(d_in, width, context, padding=context // 2), nn.ReLU(), nn.BatchNorm1d(width),
            nn.Conv1d(width, width, 1), nn.ReLU(), nn.BatchNorm1d(width), nn.Dropout(0.1),
            nn.Conv1d(width, n_speakers, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.transpose(1, 2)).transpose(1, 2)


@dataclass
class FrameSettings:
    """``steps`` of ``batch`` crops of ``crop`` frames (every frame of a crop is a training example)."""
    steps: int = 400
    batch: int = 64
    crop: int = 50
    width: int = 256
    context: int = 3
    lr: float = 2e-3


@dataclass
class FrameAttacker:
    model: FrameClassifier
    mean: np.ndarray
    std: np.ndarray
    speakers: list[str]

    @torch.no_grad()
    def predict(self, frames: list[np.ndarray]) -> list[str]:
        """The speaker with the highest mean frame log-probability, per utterance (one at a time: the
        convolution's zero padding at both ends is then exactly that of training crops)."""
        self.model.eval()
        out = []
        for f in frames:
            x = torch.from_numpy(((f - self.mean) / self.std).astype(np.float32))[None]
            out.append(self.speakers[int(F.log_softmax(self.model(x)[0], dim=-1).mean(0).argmax())])
        return out

    def accuracy(self, frames: list[np.ndarray], speakers: list[str]) -> float:
        return 100.0 * float(np.mean(np.asarray(self.predict(frames)) == np.asarray(speakers)))


def train_frame_classifier(frames: list[np.ndarray], speakers: list[str], settings: FrameSettings = FrameSettings(),
                           seed: int = 0) -> FrameAttacker:
    """Frame-level cross-entropy on random crops; deterministic given seed and threads."""
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(frames)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    norm = [((f - mean) / std).astype(np.float32) for f in frames]
    names = sorted(set(speakers))
    y = torch.tensor([names.index(s) for s in speakers])
    model = FrameClassifier(frames[0].shape[1], len(names), settings.width, settings.context)
    opt = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.steps)
    model.train()
    perm: list[int] = []
    for _ in range(settings.steps):
        if len(perm) < settings.batch:
            perm += torch.randperm(len(frames), generator=g).tolist()
        idx, perm = perm[:settings.batch], perm[settings.batch:]
        x = torch.from_numpy(random_crops(norm, idx, settings.crop, rng))
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y[idx].repeat_interleave(x.shape[1]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return FrameAttacker(model, mean, std, names)
