"""Back-ends that turn utterance vectors into speaker decisions, the way speaker-recognition systems do.

- Closed set (:class:`VectorClassifier`): standardize, reduce with PCA where there are more dimensions than
  training utterances, logistic regression. Top-1 accuracy over the attacked speakers.
- Open set (:class:`SpeakerProjection`): a projection learned on *other* speakers (the attacker's training
  speakers): standardize → PCA → LDA (which also whitens the within-speaker covariance, i.e. WCCN) → centre
  → length-normalize; trials are scored by cosine or by a two-covariance PLDA (:class:`PLDA`).
- Closed set in a learned speaker space (:func:`centroid_accuracy`): cosine to each attacked speaker's mean
  enrollment vector, after such a projection or on a trained network's speaker embeddings.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg import eigh
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from toolkit.privacy.attackers import eer, min_dcf, trials


def _labels(speakers: list[str]) -> np.ndarray:
    index = {s: i for i, s in enumerate(sorted(set(speakers)))}
    return np.array([index[s] for s in speakers])


@dataclass
class VectorClassifier:
    """Closed-set identification from one vector per utterance (fitted on the attacked speakers' enrollment)."""
    scaler: StandardScaler
    pca: PCA | None
    classifier: LogisticRegression
    n_speakers: int

    @classmethod
    def fit(cls, x: np.ndarray, speakers: list[str], max_dims: int = 512, c: float = 10.0,
            seed: int = 0) -> "VectorClassifier":
        """``max_dims``: PCA keeps at most this many directions (and fewer than the training utterances)."""
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        pca = None
        dims = max(1, min(max_dims, len(x) - 1))
        if z.shape[1] > dims:
            pca = PCA(dims, svd_solver="full" if len(x) <= 2000 else "randomized", random_state=seed).fit(z)
            z = pca.transform(z)
            z /= np.sqrt(pca.explained_variance_[0]) + 1e-12  # one scale for every direction (no whitening)
        clf = LogisticRegression(max_iter=2000, C=c).fit(z, speakers)
        return cls(scaler, pca, clf, len(set(speakers)))

    def _features(self, x: np.ndarray) -> np.ndarray:
        z = self.scaler.transform(x)
        if self.pca is not None:
            z = self.pca.transform(z) / (np.sqrt(self.pca.explained_variance_[0]) + 1e-12)
        return z

    def accuracy(self, x: np.ndarray, speakers: list[str]) -> float:
        """Top-1 accuracy in percent."""
        return 100.0 * float(np.mean(self.classifier.predict(self._features(x)) == np.asarray(speakers)))


def centroid_accuracy(emb: np.ndarray, speakers: list[str], enroll: list[int], test: list[int]) -> float:
    """Closed-set top-1 accuracy (%) of cosine scoring against each speaker's mean enrollment vector; ``emb``
    rows are unit length (a speaker-space projection or a speaker embedding)."""
    spk = np.asarray(speakers)
    names = sorted(set(spk[enroll]))
    centroids = np.stack([emb[enroll][spk[enroll] == s].mean(0) for s in names])
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) + 1e-12
    predicted = np.asarray(names)[np.argmax(emb[test] @ centroids.T, axis=1)]
    return 100.0 * float(np.mean(predicted == spk[test]))


@dataclass
class SpeakerProjection:
    """Standardize → PCA → LDA → centre → length-normalize, learned on the attacker's training speakers."""
    scaler: StandardScaler
    pca: PCA
    lda: np.ndarray     # (pca_dims, lda_dims)
    centre: np.ndarray  # mean of the projected training vectors

    @classmethod
    def fit(cls, x: np.ndarray, speakers: list[str], pca_dims: int = 2000, lda_dims: int = 200,
            seed: int = 0) -> "SpeakerProjection":
        y = _labels(speakers)
        n_spk = int(y.max()) + 1
        scaler = StandardScaler().fit(x)
        z = scaler.transform(x)
        pca = PCA(max(1, min(pca_dims, z.shape[1], len(z) - n_spk)), svd_solver="randomized", iterated_power=2,
                  random_state=seed).fit(z)  # 2 power iterations: the same EERs as 7, a third of the time
        z = pca.transform(z)
        means = np.stack([z[y == s].mean(0) for s in range(n_spk)])
        within = z - means[y]
        sw = within.T @ within / len(z)
        mu = z.mean(0)
        counts = np.bincount(y, minlength=n_spk)[:, None]
        sb = ((means - mu) * counts).T @ (means - mu) / len(z)
        sw += 1e-3 * np.trace(sw) / len(sw) * np.eye(len(sw))  # a little shrinkage: full rank always
        w, v = eigh(sb, sw)  # v.T @ sw @ v = I: within-speaker whitening (WCCN) comes with it
        v = v[:, np.argsort(w)[::-1][:min(lda_dims, n_spk - 1, len(w))]]
        proj = z @ v
        return cls(scaler, pca, v, proj.mean(0))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """(N, lda_dims), unit length."""
        z = self.pca.transform(self.scaler.transform(x)) @ self.lda - self.centre
        return z / (np.linalg.norm(z, axis=1, keepdims=True) + 1e-12)


@dataclass
class PLDA:
    """Two-covariance PLDA on projected vectors: x = m + y + e, y ~ N(0, B) per speaker, e ~ N(0, W).
    The trial score is the log-likelihood ratio of same versus different speaker (closed form)."""
    mean: np.ndarray
    q: np.ndarray
    p: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, speakers: list[str]) -> "PLDA":
        y = _labels(speakers)
        m = x.mean(0)
        means = np.stack([x[y == s].mean(0) for s in range(int(y.max()) + 1)])
        within = x - means[y]
        w = within.T @ within / len(x)
        b = np.cov((means - m).T, bias=True)
        eye = np.eye(len(m)) * 1e-6
        t_inv = np.linalg.inv(b + w + eye)
        inner = np.linalg.inv(b + w - b @ t_inv @ b + eye)
        q = 0.5 * (t_inv - inner)
        p = 0.5 * t_inv @ b @ inner
        return cls(m, q, p)

    def score_matrix(self, x: np.ndarray) -> np.ndarray:
        """(N, N) log-likelihood ratios (up to a constant) of every pair of rows."""
        c = x - self.mean
        own = np.einsum("ij,jk,ik->i", c, self.q, c)
        return own[:, None] + own[None, :] + 2.0 * c @ self.p @ c.T


def verification(scores: np.ndarray, speakers: list[str]) -> dict:
    """EER and minDCF over all unordered pairs of a (N, N) score matrix."""
    i, j, same = trials(speakers)
    s = scores[i, j]
    return {"eer": eer(s, same), "min_dcf": min_dcf(s, same), "n_target_trials": int(same.sum()),
            "n_nontarget_trials": int((1 - same).sum()), "n_speakers": len(set(speakers))}


def pooled_enrollment_verification(emb: np.ndarray, speakers: list[str], enroll: list[int], test: list[int]) -> dict:
    """Open-set verification against speaker models pooled over many utterances: each speaker is enrolled with
    the mean of its (unit-length) enrollment vectors, every test utterance is scored (cosine) against every
    speaker model, and the EER is taken over these trials. Noise that varies from utterance to utterance
    averages out of the speaker model, as it does for an operator who collects many sessions of one user."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    spk = np.asarray(speakers)
    names = sorted(set(spk[enroll]))
    models = np.stack([e[enroll][spk[enroll] == s].mean(0) for s in names])
    models /= np.linalg.norm(models, axis=1, keepdims=True) + 1e-12
    scores = (e[test] @ models.T).reshape(-1)
    same = (spk[test][:, None] == np.asarray(names)[None, :]).reshape(-1).astype(int)
    per_speaker = np.bincount(np.searchsorted(names, spk[enroll]), minlength=len(names))
    return {"eer": eer(scores, same), "min_dcf": min_dcf(scores, same), "n_target_trials": int(same.sum()),
            "n_nontarget_trials": int((1 - same).sum()), "n_speakers": len(names),
            "enrollment_utterances_per_speaker": float(per_speaker.mean())}


def cosine_verification(emb: np.ndarray, speakers: list[str]) -> dict:
    """Cosine trials among rows of ``emb`` (normalized here)."""
    e = emb / (np.linalg.norm(emb, axis=1, keepdims=True) + 1e-12)
    return verification(e @ e.T, speakers)
