"""Speaker attackers on frame embeddings: closed-set identification and open-set verification.

Both are trained *after the fact on the very embeddings they attack* (FINDINGS: a training-time speaker
head driven to chance says nothing about what a fresh attacker can recover).

- Closed set: mean+std pooled utterance vectors -> standardization -> logistic regression or an MLP,
  trained and tested on disjoint utterances of the same speakers. Reports top-1 accuracy and chance.
- Open set: an x-vector-style attacker (TDNN + statistics pooling + embedding layer) trained by speaker
  classification on one set of speakers, scoring cosine trials between utterances of *other* speakers.
  Reports EER (and minDCF at P_target = 0.01).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn import functional as F


def pooled_stats(frames: list[np.ndarray]) -> np.ndarray:
    """(N, 2d): per-utterance mean and standard deviation over frames."""
    return np.stack([np.concatenate([f.mean(0), f.std(0)]) for f in frames]).astype(np.float64)


def utterance_split(speakers: list[str], train_fraction: float = 0.6, seed: int = 0) -> tuple[list[int], list[int]]:
    """Per speaker, the first ``train_fraction`` of its (shuffled) utterances train, the rest test."""
    rng = random.Random(seed)
    by_spk: dict[str, list[int]] = {}
    for i, s in enumerate(speakers):
        by_spk.setdefault(s, []).append(i)
    train, test = [], []
    for s in sorted(by_spk):
        idx = by_spk[s][:]
        rng.shuffle(idx)
        n = max(1, min(len(idx) - 1, round(len(idx) * train_fraction)))
        train += idx[:n]
        test += idx[n:]
    return sorted(train), sorted(test)


def _classifier(kind: str, seed: int):
    if kind == "lr":
        return LogisticRegression(max_iter=3000, C=1.0)
    if kind == "mlp":
        return MLPClassifier(hidden_layer_sizes=(256,), alpha=1e-3, max_iter=600, random_state=seed)
    raise ValueError(f"unknown closed-set attacker {kind!r} (expected 'lr' or 'mlp')")


@dataclass
class ClosedSetAttacker:
    """A fitted pooled-statistics classifier; reusable on other embeddings (the ignorant attacker)."""
    kind: str
    scaler: StandardScaler
    classifier: object
    n_train: int
    n_speakers: int

    def score(self, frames: list[np.ndarray], speakers: list[str]) -> dict:
        pred = self.classifier.predict(self.scaler.transform(pooled_stats(frames)))
        acc = float(np.mean(pred == np.asarray(speakers)))
        return {"attacker": f"pooled-{self.kind}", "accuracy": 100.0 * acc, "chance": 100.0 / self.n_speakers,
                "n_train": self.n_train, "n_test": len(frames), "n_speakers": self.n_speakers}


def fit_closed_set(train_frames: list[np.ndarray], train_speakers: list[str], kind: str = "lr",
                   seed: int = 0) -> ClosedSetAttacker:
    stats = pooled_stats(train_frames)
    scaler = StandardScaler().fit(stats)
    clf = _classifier(kind, seed).fit(scaler.transform(stats), train_speakers)
    return ClosedSetAttacker(kind, scaler, clf, len(train_frames), len(set(train_speakers)))


def closed_set_attack(train_frames: list[np.ndarray], train_speakers: list[str], test_frames: list[np.ndarray],
                      test_speakers: list[str], kind: str = "lr", seed: int = 0) -> dict:
    """Fit on pooled train utterances, report top-1 accuracy (%) on pooled test utterances."""
    return fit_closed_set(train_frames, train_speakers, kind, seed).score(test_frames, test_speakers)


# ---- open set -------------------------------------------------------------------------------------------

class XVector(nn.Module):
    """Small TDNN: frame layers with growing context, statistics pooling, a 128-d embedding."""

    def __init__(self, d_in: int, n_speakers: int, width: int = 256, emb: int = 128):
        super().__init__()
        self.frames = nn.Sequential(
            nn.Conv1d(d_in, width, 5, padding=2), nn.ReLU(), nn.BatchNorm1d(width),
            nn.Conv1d(width, width, 3, padding=2, dilation=2), nn.ReLU(), nn.BatchNorm1d(width),
            nn.Conv1d(width, width, 3, padding=3, dilation=3), nn.ReLU(), nn.BatchNorm1d(width),
            nn.Conv1d(width, 2 * width, 1), nn.ReLU(), nn.BatchNorm1d(2 * width))
        self.embedding = nn.Linear(4 * width, emb)
        self.classifier = nn.Sequential(nn.ReLU(), nn.BatchNorm1d(emb), nn.Linear(emb, n_speakers))

    def embed(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, T, d) -> (B, emb). With ``lengths`` (zero-padded batch), frames past each length are zeroed
        after every layer and left out of the statistics, so each row equals its utterance embedded alone."""
        if lengths is None:
            h = self.frames(x.transpose(1, 2))
            return self.embedding(torch.cat([h.mean(-1), h.std(-1)], dim=-1))
        mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.dtype)[:, None, :]
        h = x.transpose(1, 2)
        for i in range(0, len(self.frames), 3):  # conv, ReLU, BatchNorm; every conv keeps the length
            h = self.frames[i + 2](self.frames[i + 1](self.frames[i](h))) * mask
        n = lengths.to(x.dtype)[:, None]
        mean = h.sum(-1) / n
        var = (((h - mean[..., None]) * mask) ** 2).sum(-1) / (n - 1).clamp(min=1)
        return self.embedding(torch.cat([mean, var.sqrt()], dim=-1))

    def forward(self, x):
        return self.classifier(self.embed(x))


def padded_batches(frames: list[np.ndarray], mean: np.ndarray, std: np.ndarray, batch: int):
    """Utterances of similar length, standardized and zero-padded: yields (their indices, x (B, T, d) float32,
    lengths (B,)) for a masked network forward; every utterance once."""
    order = sorted(range(len(frames)), key=lambda i: frames[i].shape[0])
    for s in range(0, len(order), batch):
        idx = order[s:s + batch]
        lengths = torch.tensor([frames[i].shape[0] for i in idx])
        x = torch.zeros(len(idx), int(lengths.max()), frames[idx[0]].shape[1])
        for j, i in enumerate(idx):
            x[j, : lengths[j]] = torch.from_numpy(((frames[i] - mean) / std).astype(np.float32))
        yield idx, x, lengths


@dataclass
class XVectorAttacker:
    model: XVector
    mean: np.ndarray
    std: np.ndarray

    @torch.no_grad()
    def embed(self, frames: list[np.ndarray], batch: int = 64) -> np.ndarray:
        """L2-normalized embeddings, utterances of similar length batched (zero-padded, masked)."""
        self.model.eval()
        out = [None] * len(frames)
        for idx, x, lengths in padded_batches(frames, self.mean, self.std, batch):
            emb = F.normalize(self.model.embed(x, lengths), dim=-1).numpy()
            for j, i in enumerate(idx):
                out[i] = emb[j]
        return np.stack(out)


def train_xvector(frames: list[np.ndarray], speakers: list[str], epochs: int = 30, crop: int = 100,
                  batch: int = 64, seed: int = 0, lr: float = 2e-3) -> XVectorAttacker:
    """Speaker classification on random crops of ``crop`` frames (shorter utterances are used whole)."""
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    stacked = np.concatenate(frames)
    mean, std = stacked.mean(0), stacked.std(0) + 1e-5
    labels = {s: i for i, s in enumerate(sorted(set(speakers)))}
    y = torch.tensor([labels[s] for s in speakers])
    model = XVector(frames[0].shape[1], len(labels))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-3)
    norm = [((f - mean) / std).astype(np.float32) for f in frames]
    steps_per_epoch = max(1, len(frames) // batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * steps_per_epoch)
    model.train()
    for _ in range(epochs):
        perm = torch.randperm(len(frames), generator=g).tolist()
        for s in range(steps_per_epoch):
            idx = perm[s * batch:(s + 1) * batch]
            t = min(crop, min(norm[i].shape[0] for i in idx))
            xs = []
            for i in idx:
                start = int(rng.integers(0, norm[i].shape[0] - t + 1))
                xs.append(norm[i][start:start + t])
            loss = F.cross_entropy(model(torch.from_numpy(np.stack(xs))), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return XVectorAttacker(model, mean, std)


def eer(scores: np.ndarray, labels: np.ndarray) -> float:
    """Equal error rate in percent; labels 1 = same speaker. Interpolates where FAR and FRR cross."""
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    n_t, n_n = labels.sum(), (1 - labels).sum()
    if n_t == 0 or n_n == 0:
        raise ValueError("EER needs both target and non-target trials")
    # threshold after each trial (accept the top i): FRR = targets not accepted, FAR = non-targets accepted
    far = np.concatenate([[0.0], np.cumsum(1 - labels) / n_n])
    frr = np.concatenate([[1.0], 1.0 - np.cumsum(labels) / n_t])
    i = int(np.argmax(far >= frr))
    if i == 0:
        return 100.0 * far[0]
    d0, d1 = frr[i - 1] - far[i - 1], frr[i] - far[i]
    w = d0 / (d0 - d1) if d0 != d1 else 0.0
    return 100.0 * float(far[i - 1] + w * (far[i] - far[i - 1]))


def min_dcf(scores: np.ndarray, labels: np.ndarray, p_target: float = 0.01) -> float:
    scores, labels = np.asarray(scores, float), np.asarray(labels, int)
    order = np.argsort(-scores, kind="stable")
    labels = labels[order]
    n_t, n_n = labels.sum(), (1 - labels).sum()
    far = np.concatenate([[0.0], np.cumsum(1 - labels) / n_n])
    frr = np.concatenate([[1.0], 1.0 - np.cumsum(labels) / n_t])
    dcf = p_target * frr + (1 - p_target) * far
    return float(dcf.min() / min(p_target, 1 - p_target))


def trials(speakers: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All unordered utterance pairs: (i, j, same_speaker)."""
    n = len(speakers)
    i, j = np.triu_indices(n, k=1)
    spk = np.asarray(speakers)
    return i, j, (spk[i] == spk[j]).astype(int)


def open_set_attack(attacker: XVectorAttacker, frames: list[np.ndarray], speakers: list[str]) -> dict:
    emb = attacker.embed(frames)
    i, j, same = trials(speakers)
    scores = np.sum(emb[i] * emb[j], axis=1)
    return {"attacker": "x-vector", "eer": eer(scores, same), "min_dcf": min_dcf(scores, same),
            "n_target_trials": int(same.sum()), "n_nontarget_trials": int((1 - same).sum()),
            "n_speakers": len(set(speakers))}
