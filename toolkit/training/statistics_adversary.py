"""The statistics adversary: a differentiable speaker-separability penalty on what the cloud receives.

The attackers that win against Veil's channels are not networks but pooled statistics with a linear
discriminant on top (``allstats-lda-centroid``, ``allstats-plda``: FINDINGS, the privacy attempts log). A GRL
head that must learn 128 speakers while the encoder moves never gets that strong. This adversary needs no
learning: it computes, over the batch, the pooled statistics an LDA attacker would see and the Fisher
discriminant ratio they give, ``tr((S_w + r I)^-1 S_b) / D``, and training minimizes it. That is exactly the
separability an LDA-based attacker exploits, measured on the current batch.

Samples are the 2-s chunks of every utterance (each chunk's statistics, labelled with its speaker), so
within-speaker scatter exists even when a speaker has one utterance in the batch. Statistics per chunk and
channel: mean, standard deviation, lag-1 autocorrelation, and the channel correlation matrix's upper triangle
(Fisher z), the families of ``toolkit/privacy/statistics.py``.
"""
from __future__ import annotations

import torch

MIN_FRAMES = 8       # chunks with fewer valid frames give no sample
RIDGE = 0.1          # shrinkage of the within-speaker scatter toward its mean eigenvalue (more statistics than chunks in a batch)
_EPS = 1e-5


def chunk_statistics(x: torch.Tensor, mask: torch.Tensor, chunk_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, T, d) frames and (B, T) valid mask -> ((N, F) statistics of every chunk with at least
    ``MIN_FRAMES`` valid frames, (N,) the index of its utterance in the batch)."""
    b, t, d = x.shape
    n = t // chunk_frames
    xc = x[:, : n * chunk_frames].reshape(b * n, chunk_frames, d)
    w = mask[:, : n * chunk_frames].reshape(b * n, chunk_frames, 1).to(x.dtype)
    count = w.sum(1)                                                    # (BN, 1)
    keep = count.squeeze(1) >= MIN_FRAMES
    xc, w, count = xc[keep], w[keep], count[keep]
    utt = torch.arange(b, device=x.device).repeat_interleave(n)[keep]
    mean = (xc * w).sum(1) / count
    centred = (xc - mean[:, None]) * w
    var = centred.pow(2).sum(1) / count
    std = (var + _EPS).sqrt()
    z = centred / std[:, None]
    lag1 = (z[:, 1:] * z[:, :-1]).sum(1) / (count - 1).clamp_min(1.0)
    corr = torch.einsum("ntd,nte->nde", z, z) / count[:, :, None]
    iu = torch.triu_indices(d, d, 1, device=x.device)
    corr = torch.atanh(corr[:, iu[0], iu[1]].clamp(-0.999, 0.999))
    return torch.cat([mean, std, lag1, corr], dim=1), utt


def fisher_ratio(stats: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``tr((S_w + r I)^-1 S_b) / F`` of samples ``stats`` (N, F) in classes ``labels`` (N,): how far apart the
    class means are in units of the within-class spread, along every direction an LDA would pick. 0 when
    the batch has fewer than two classes with samples."""
    classes, inverse, counts = torch.unique(labels, return_inverse=True, return_counts=True)
    if len(classes) < 2 or len(labels) <= len(classes):
        return stats.new_zeros(())
    f = stats.shape[1]
    feats = (stats - stats.mean(0)) / (stats.std(0) + _EPS)            # every statistic on one scale
    sums = feats.new_zeros(len(classes), f).index_add_(0, inverse, feats)
    means = sums / counts[:, None].to(feats.dtype)
    within = feats - means[inverse]
    s_w = within.T @ within / len(labels)
    s_b = (means * counts[:, None].to(feats.dtype)).T @ means / len(labels)
    ridge = RIDGE * s_w.diagonal().mean().clamp_min(_EPS)
    eye = torch.eye(f, device=feats.device, dtype=feats.dtype)
    return torch.linalg.solve(s_w + ridge * eye, s_b).diagonal().sum() / f


def statistics_penalty(x: torch.Tensor, mask: torch.Tensor, speakers: torch.Tensor, chunk_frames: int) -> torch.Tensor:
    """The penalty ``veil train --fisher-weight`` adds: the Fisher ratio of the chunk statistics of ``x``
    (what the cloud receives, (B, T, d)) between the batch's speakers (B,)."""
    stats, utt = chunk_statistics(x, mask, chunk_frames)
    return fisher_ratio(stats, speakers[utt])
