"""Utterance vectors from frame sequences: what an attacker can pool without training a network.

Each family turns one utterance's frames ``(T, d)`` into one fixed-length vector. Per-chunk instance
normalization at the split drives the per-channel mean and standard deviation toward 0 and 1, which blinds
mean+std pooling (``mean_std``); these families look at what normalization leaves behind:

- ``moments``: the shape of each channel's distribution (skewness, kurtosis, quantiles) beside mean and std;
- ``correlation``: how channels co-vary (the upper triangle of the channel correlation matrix, Fisher z);
- ``dynamics``: how frames move in time (lag-k autocorrelation per channel, statistics of the deltas, the
  modulation spectrum per channel, and lagged cross-channel correlation in a low-rank basis).

Statistics that need a basis (the low-rank cross-lag block) are fitted on the attacker's own training
material by :meth:`FrameStatistics.fit`; the others are fixed functions of one utterance. Units: frames are
the model's embedding frames (25 per second after block 1, 100 per second for the log-mel layer 0), so the
modulation bands are in cycles per frame and converted to Hz only for naming.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

import numpy as np
import torch

QUANTILES = (0.05, 0.25, 0.5, 0.75, 0.95)
LAGS = (1, 2, 3, 5, 8)
# modulation bands as fractions of the frame rate (0 .. 0.5 = Nyquist); at 25 frames/s: 0-0.5-1-2-4-7-12.5 Hz
MODULATION_EDGES = (0.0, 0.02, 0.04, 0.08, 0.16, 0.28, 0.5)
CROSS_LAG_RANK = 16
CROSS_LAGS = (1, 2)
_EPS = 1e-6


def _standardized(f: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(z, mean, std) with z = (f − mean) / std per channel over the utterance's frames."""
    f = np.asarray(f, dtype=np.float64)
    mean = f.mean(0)
    std = f.std(0)
    return (f - mean) / (std + _EPS), mean, std


def mean_std(f: np.ndarray) -> np.ndarray:
    """(2d,): per-channel mean and standard deviation (Veil's original pooled attacker)."""
    f = np.asarray(f, dtype=np.float64)
    return np.concatenate([f.mean(0), f.std(0)])


def moments(f: np.ndarray) -> np.ndarray:
    """(9d,): mean, std, skewness, excess kurtosis and the ``QUANTILES`` of the standardized frames, per
    channel. Instance normalization fixes the first two; the shape of the distribution it leaves alone."""
    z, mean, std = _standardized(f)
    z2 = z * z
    skew = (z2 * z).mean(0)
    kurt = (z2 * z2).mean(0) - 3.0
    q = np.quantile(z, QUANTILES, axis=0)
    return np.concatenate([mean, std, skew, kurt, q.reshape(-1)])


def correlation(f: np.ndarray) -> np.ndarray:
    """(d(d−1)/2,): Fisher z (arctanh) of the channel correlation matrix's upper triangle. A speaker's
    timbre is a pattern of co-varying channels; per-channel normalization rescales channels but keeps it."""
    z, _, _ = _standardized(f)
    c = (z.T @ z) / len(z)
    return np.arctanh(np.clip(c.reshape(-1)[_upper_triangle(c.shape[0])], -0.999, 0.999))


@functools.lru_cache(maxsize=8)
def _upper_triangle(d: int) -> np.ndarray:
    """Flat indices of the strict upper triangle of a (d, d) matrix."""
    i, j = np.triu_indices(d, k=1)
    return i * d + j


def autocorrelation(z: np.ndarray, lags=LAGS) -> np.ndarray:
    """(len(lags), d): normalized lag-k autocorrelation of each standardized channel (0 where T <= k)."""
    t = len(z)
    out = np.zeros((len(lags), z.shape[1]))
    for i, k in enumerate(lags):
        if t > k:
            out[i] = (z[:-k] * z[k:]).sum(0) / t
    return out


def modulation_spectrum(z: np.ndarray, edges=MODULATION_EDGES) -> np.ndarray:
    """(len(edges)−1, d): log share of each channel's power in each modulation band (cycles per frame).
    Speaking rate, pitch-synchronous ripple and prosody live at different rates per voice."""
    power = np.abs(np.fft.rfft(z, axis=0)) ** 2
    freq = np.fft.rfftfreq(len(z))
    total = power[1:].sum(0) + _EPS  # without DC (zero after standardization)
    bands = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (freq > lo) & (freq <= hi)
        bands.append(power[sel].sum(0) / total if sel.any() else np.zeros(z.shape[1]))
    return np.log(np.stack(bands) + 1e-4)


def delta_moments(z: np.ndarray) -> np.ndarray:
    """(4, d): std, skewness and kurtosis of the first difference, and std of the second difference, of
    each standardized channel (how fast and how jerkily each channel moves)."""
    if len(z) < 3:
        return np.zeros((4, z.shape[1]))
    d1 = np.diff(z, axis=0)
    d2 = np.diff(d1, axis=0)
    s1 = d1.std(0) + _EPS
    c = (d1 - d1.mean(0)) / s1
    c2 = c * c
    return np.stack([s1, (c2 * c).mean(0), (c2 * c2).mean(0) - 3.0, d2.std(0)])


def cross_lag(z: np.ndarray, basis: np.ndarray, lags=CROSS_LAGS) -> np.ndarray:
    """(len(lags)·r²,): correlation of projected channel i at frame t with projected channel j at t+k,
    in an r-dimensional basis (r² instead of d² numbers): temporal structure *between* channels."""
    y = z @ basis
    y = (y - y.mean(0)) / (y.std(0) + _EPS)
    t = len(y)
    out = []
    for k in lags:
        out.append(((y[:-k].T @ y[k:]) / t).reshape(-1) if t > k else np.zeros(basis.shape[1] ** 2))
    return np.concatenate(out)


def principal_basis(frames: list[np.ndarray], rank: int, max_frames: int = 200_000, seed: int = 0) -> np.ndarray:
    """(d, rank): the leading principal directions of per-utterance-standardized frames."""
    rng = np.random.default_rng(seed)
    z = np.concatenate([_standardized(f)[0] for f in frames])
    if len(z) > max_frames:
        z = z[rng.choice(len(z), max_frames, replace=False)]
    cov = (z.T @ z) / len(z)
    w, v = np.linalg.eigh(cov)
    v = v[:, np.argsort(w)[::-1][:rank]]
    return v * np.sign(v[np.abs(v).argmax(0), np.arange(v.shape[1])])  # deterministic signs


def dynamics(f: np.ndarray, basis: np.ndarray | None) -> np.ndarray:
    """Temporal statistics of one utterance: lag-k autocorrelation, delta moments and modulation spectrum
    per channel, and (given a basis) lagged cross-channel correlations."""
    z, _, _ = _standardized(f)
    parts = [autocorrelation(z).reshape(-1), delta_moments(z).reshape(-1), modulation_spectrum(z).reshape(-1)]
    if basis is not None:
        parts.append(cross_lag(z, basis))
    return np.concatenate(parts)


FAMILIES = ("mean_std", "moments", "correlation", "dynamics")


# ---- the same statistics for a zero-padded batch of utterances (what the suite runs) ------------------------
# Each function below equals its per-utterance definition above (tests/test_privacy_suite.py checks it); the
# batch form only exists because the per-utterance NumPy calls cost ~10x more CPU on 10,000+ utterances.

def _padded(frames: list[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x (B, T, d) float64 zero-padded, lengths (B,), mask (B, T, 1))."""
    lengths = torch.tensor([len(f) for f in frames])
    x = torch.zeros(len(frames), int(lengths.max()), frames[0].shape[1], dtype=torch.float64)
    for j, f in enumerate(frames):
        x[j, : len(f)] = torch.from_numpy(np.asarray(f, dtype=np.float64))
    mask = (torch.arange(x.shape[1])[None, :] < lengths[:, None]).to(x.dtype)[..., None]
    return x, lengths, mask


def _batch_standardized(x, lengths, mask):
    n = lengths.to(x.dtype)[:, None, None]
    mean = (x * mask).sum(1, keepdim=True) / n
    centred = (x - mean) * mask
    std = ((centred * centred).sum(1, keepdim=True) / n).sqrt()
    return centred / (std + _EPS), mean[:, 0], std[:, 0]


def _batch_moments(z, lengths, mask, mean, std):
    n = lengths.to(z.dtype)[:, None]
    z2 = z * z
    skew = (z2 * z).sum(1) / n
    kurt = (z2 * z2).sum(1) / n - 3.0
    ordered = torch.sort(z.masked_fill(mask == 0, float("inf")), dim=1).values
    qs = []
    for q in QUANTILES:  # NumPy's default ("linear") interpolation between order statistics
        pos = q * (lengths - 1).to(z.dtype)
        lo, hi = pos.floor().long(), pos.ceil().long()
        v_lo = ordered.gather(1, lo[:, None, None].expand(-1, 1, z.shape[2]))[:, 0]
        v_hi = ordered.gather(1, hi[:, None, None].expand(-1, 1, z.shape[2]))[:, 0]
        qs.append(v_lo + (pos - lo)[:, None] * (v_hi - v_lo))
    return torch.cat([mean, std, skew, kurt, *qs], dim=1)


def _batch_correlation(z, lengths):
    c = torch.bmm(z.transpose(1, 2), z) / lengths.to(z.dtype)[:, None, None]
    iu = torch.from_numpy(_upper_triangle(z.shape[2]))
    return torch.arctanh(c.reshape(len(c), -1)[:, iu].clamp(-0.999, 0.999))


def _batch_dynamics(z, lengths, mask, basis: np.ndarray | None):
    b, t, d = z.shape
    n = lengths.to(z.dtype)[:, None]
    ac = [((z[:, :-k] * z[:, k:]).sum(1) / n) if t > k else z.new_zeros(b, d) for k in LAGS]
    # deltas: first differences valid where t + 1 < length, second where t + 2 < length
    d1 = (z[:, 1:] - z[:, :-1]) * mask[:, 1:]
    d2 = (d1[:, 1:] - d1[:, :-1]) * mask[:, 2:]
    n1, n2 = (n - 1).clamp(min=1), (n - 2).clamp(min=1)
    m1 = d1.sum(1) / n1
    c1 = (d1 - m1[:, None]) * mask[:, 1:]
    s1 = ((c1 * c1).sum(1) / n1).sqrt() + _EPS
    c1 = c1 / s1[:, None]
    c1sq = c1 * c1
    m2 = d2.sum(1) / n2
    c2 = (d2 - m2[:, None]) * mask[:, 2:]
    deltas = torch.stack([s1, (c1sq * c1).sum(1) / n1, (c1sq * c1sq).sum(1) / n1 - 3.0,
                          ((c2 * c2).sum(1) / n2).sqrt()], dim=1)
    deltas = deltas * (lengths >= 3).to(z.dtype)[:, None, None]
    modulation = torch.from_numpy(np.stack([modulation_spectrum(z[j, : int(lengths[j])].numpy())
                                            for j in range(b)]))
    parts = [torch.stack(ac, 1).reshape(b, -1), deltas.reshape(b, -1), modulation.reshape(b, -1)]
    if basis is not None:
        y = z @ torch.from_numpy(basis).to(z.dtype)
        y, _, _ = _batch_standardized(y, lengths, mask)
        for k in CROSS_LAGS:
            parts.append((torch.bmm(y[:, :-k].transpose(1, 2), y[:, k:]) / n[:, :, None]).reshape(b, -1)
                         if t > k else z.new_zeros(b, basis.shape[1] ** 2))
    return torch.cat(parts, dim=1)


@dataclass
class FrameStatistics:
    """One pooled-statistics family, fitted (where it needs a basis) on the attacker's training frames."""
    family: str
    basis: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown statistics family {self.family!r} (expected one of {', '.join(FAMILIES)})")

    def fit(self, frames: list[np.ndarray], seed: int = 0) -> "FrameStatistics":
        if self.family == "dynamics":
            rank = min(CROSS_LAG_RANK, frames[0].shape[1])
            self.basis = principal_basis(frames, rank, seed=seed)
        return self

    def one(self, f: np.ndarray) -> np.ndarray:
        """The family's vector of one utterance, by its per-utterance definition."""
        if self.family == "mean_std":
            return mean_std(f)
        if self.family == "moments":
            return moments(f)
        if self.family == "correlation":
            return correlation(f)
        return dynamics(f, self.basis)

    @torch.no_grad()
    def __call__(self, frames: list[np.ndarray], batch: int = 64) -> np.ndarray:
        """(N, D) float32, one row per utterance: utterances of similar length in zero-padded batches."""
        order = sorted(range(len(frames)), key=lambda i: len(frames[i]))
        out = None
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            x, lengths, mask = _padded([frames[i] for i in idx])
            z, mean, std = _batch_standardized(x, lengths, mask)
            if self.family == "mean_std":
                rows = torch.cat([mean, std], dim=1)
            elif self.family == "moments":
                rows = _batch_moments(z, lengths, mask, mean, std)
            elif self.family == "correlation":
                rows = _batch_correlation(z, lengths)
            else:
                rows = _batch_dynamics(z, lengths, mask, self.basis)
            if out is None:
                out = np.zeros((len(frames), rows.shape[1]), dtype=np.float32)
            out[idx] = np.nan_to_num(rows.numpy())
        return out
