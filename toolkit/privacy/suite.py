"""The attacker suite: every attacker `veil privacy` runs, by name, and the strongest of each kind.

A privacy claim is only as good as the strongest attacker tried (FINDINGS: a fooled speaker head is not
anonymity, and neither is a fooled attacker suite). The suite therefore covers *families*, each built to see
something the others miss, and its headline is always the strongest attacker of each task, named:

- **closed set** (identify which of the 32 unseen eval speakers spoke; chance 1/32): trained on 60 % of each
  eval speaker's utterances of the attacked source, tested on the other 40 %; top-1 accuracy;
- **open set** (are two utterances of unseen speakers the same voice?): trained on the attacked source's
  embeddings of *other* speakers (the ASR training speakers), EER over all trials among the eval speakers.

Knowledge: ``enrollment`` attackers see only the attacked speakers' enrollment utterances; ``informed``
attackers also train on the attacked source's embeddings of the training speakers, i.e. they run the very same
model or artifact on speech they have labels for (VoicePrivacy's semi-informed attacker).

Statistics attackers are deterministic given the embeddings (the same number for every attacker seed); the
networks (pooled MLP, frame-level network, x-vector, ECAPA) are seeded and, with ``torch.set_num_threads``
fixed, deterministic per seed.

Use from Python (one source, one layer; ``seeds`` repeats the seeded attackers)::

    from toolkit.privacy.leakage import attack_artifact, attack_checkpoint_layer, load_attack_data
    data = load_attack_data(Path("data/corpus"))  # once: eval speakers + every training utterance
    row = attack_checkpoint_layer(model_or_checkpoint_path, 4, data, SuiteOptions(attackers="fast"), seeds=[0])
    row = attack_artifact(Path("exports/k6-d16-n0.5-k6"), data, SuiteOptions(), seeds=[0, 1, 2], backend="executorch")
    row["strongest"]["open"]               # {"attacker": "allstats-plda", "eer": ..., ...} (first seed)
    row["spread"]["strongest"]["open"]     # best mean over seeds: {"attacker", "mean", "sd", "per_seed_best"}
    row["suite"]["ecapa"]["eer"]           # any attacker by name

or on embeddings already computed: ``run_suite(Embeddings(eval_frames, train_frames), eval_speakers,
train_speakers, data.split, options, seeds)``.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from toolkit.errors import VeilError
from toolkit.privacy.attackers import fit_closed_set, open_set_attack, train_xvector
from toolkit.privacy.ecapa import EcapaSettings, train_ecapa
from toolkit.privacy.framewise import FrameSettings, train_frame_classifier
from toolkit.privacy.scoring import (PLDA, SpeakerProjection, VectorClassifier, centroid_accuracy, cosine_verification,
                                     pooled_enrollment_verification, verification)
from toolkit.privacy.statistics import FrameStatistics


# ---- what one attack sees -------------------------------------------------------------------------------

@dataclass
class Embeddings:
    """One source's embeddings at one layer: the eval speakers' and the attacker training speakers'."""
    eval: list[np.ndarray]
    train: list[np.ndarray]


@dataclass
class SuiteOptions:
    """Which attackers to run and their budgets (``attackers``: a set name or comma-separated names)."""
    attackers: str = "all"
    xvector_epochs: int = 30
    xvector_utts: int = 10
    ecapa: EcapaSettings = field(default_factory=EcapaSettings)
    frame: FrameSettings = field(default_factory=FrameSettings)

    def names(self) -> list[str]:
        return select_attackers(self.attackers)

    def describe(self) -> dict:
        return {"attackers": self.attackers, "xvector_epochs": self.xvector_epochs,
                "xvector_utts": self.xvector_utts, "ecapa": asdict(self.ecapa), "frame_net": asdict(self.frame)}


class AttackContext:
    """Everything the attackers of one source need, with per-source caches (pooled statistics do not depend on
    the attacker seed) and per-seed caches (a trained ECAPA serves both its closed- and open-set attack)."""

    def __init__(self, emb: Embeddings, eval_spk: list[str], train_spk: list[str], split, options: SuiteOptions,
                 log=None):
        self.emb, self.eval_spk, self.train_spk, self.options = emb, eval_spk, train_spk, options
        self.enroll, self.test = split
        self.log = log or (lambda *a, **k: None)
        self.seed = 0
        self._features: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._seeded: dict[tuple, object] = {}
        self.fitted: dict[str, object] = {}  # the legacy attackers of the first seed, for the ignorant attack

    @property
    def chance(self) -> float:
        return 100.0 / len(set(self.eval_spk))

    def sel(self, items, idx):
        return [items[i] for i in idx]

    def features(self, family: str) -> tuple[np.ndarray, np.ndarray]:
        """(eval vectors, training-speaker vectors) of one statistics family; ``allstats`` = all but mean+std
        concatenated. A basis the family needs is fitted on the training speakers' frames (no labels used)."""
        if family not in self._features:
            if family == "allstats":
                parts = [self.features(f) for f in ("moments", "correlation", "dynamics")]
                self._features[family] = (np.hstack([p[0] for p in parts]), np.hstack([p[1] for p in parts]))
            else:
                stats = FrameStatistics(family).fit(self.emb.train)
                self._features[family] = (stats(self.emb.eval), stats(self.emb.train))
        return self._features[family]

    def per_seed(self, key: str, build: Callable[[], object]):
        k = (key, self.seed)
        if k not in self._seeded:
            self._seeded[k] = build()
        return self._seeded[k]

    def ecapa(self):
        def build():
            t0 = time.time()
            att = train_ecapa(self.emb.train, self.train_spk, self.options.ecapa, seed=self.seed, progress=self.log)
            self.log(f"    ecapa trained on {len(self.emb.train)} utterances of {len(set(self.train_spk))} "
                     f"speakers in {time.time() - t0:.0f} s")
            return att
        return self.per_seed("ecapa", build)

    def ecapa_vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(eval, training) ECAPA embeddings of the current seed's ECAPA, centred and length-normalized."""
        return self.per_seed("ecapa-vectors", lambda: (self.ecapa().embed(self.emb.eval),
                                                       self.ecapa().embed(self.emb.train)))

    def projection(self, family: str) -> SpeakerProjection:
        return self.per_seed(f"lda-{family}", lambda: SpeakerProjection.fit(self.features(family)[1], self.train_spk))

    def closed_result(self, accuracy: float) -> dict:
        return {"accuracy": accuracy, "chance": self.chance, "n_train": len(self.enroll), "n_test": len(self.test),
                "n_speakers": len(set(self.eval_spk))}


# ---- the attackers ----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Attacker:
    name: str
    task: str        # "closed" (accuracy %) or "open" (EER %)
    family: str
    knowledge: str   # "enrollment" or "informed"
    seeded: bool     # does its result depend on the attacker seed?
    cost: str        # "fast" (seconds) or "slow" (trains a network)
    description: str
    run: Callable[[AttackContext], dict]


def _legacy_closed(kind: str):
    def run(ctx: AttackContext) -> dict:
        fitted = fit_closed_set(ctx.sel(ctx.emb.eval, ctx.enroll), ctx.sel(ctx.eval_spk, ctx.enroll), kind, ctx.seed)
        ctx.fitted.setdefault(f"pooled-{kind}", fitted)
        out = fitted.score(ctx.sel(ctx.emb.eval, ctx.test), ctx.sel(ctx.eval_spk, ctx.test))
        out.pop("attacker")
        return out
    return run


def _xvector(ctx: AttackContext) -> dict:
    """Veil's original open-set attacker: trained on the first ``xvector_utts`` utterances per training speaker."""
    seen: dict[str, int] = {}
    idx = []
    for i, s in enumerate(ctx.train_spk):
        if seen.get(s, 0) < ctx.options.xvector_utts:
            idx.append(i)
            seen[s] = seen.get(s, 0) + 1
    xv = train_xvector(ctx.sel(ctx.emb.train, idx), ctx.sel(ctx.train_spk, idx), epochs=ctx.options.xvector_epochs,
                       seed=ctx.seed)
    ctx.fitted.setdefault("x-vector", xv)
    out = open_set_attack(xv, ctx.emb.eval, ctx.eval_spk)
    out.pop("attacker")
    return {**out, "n_train": len(idx)}


def _stats_closed(family: str):
    def run(ctx: AttackContext) -> dict:
        x_eval, _ = ctx.features(family)
        clf = VectorClassifier.fit(x_eval[ctx.enroll], ctx.sel(ctx.eval_spk, ctx.enroll))
        return {**ctx.closed_result(clf.accuracy(x_eval[ctx.test], ctx.sel(ctx.eval_spk, ctx.test))),
                "dims": int(x_eval.shape[1])}
    return run


def _stats_lda(family: str):
    def run(ctx: AttackContext) -> dict:
        proj = ctx.projection(family)
        return {**cosine_verification(proj(ctx.features(family)[0]), ctx.eval_spk), "n_train": len(ctx.train_spk)}
    return run


def _stats_plda(family: str):
    def run(ctx: AttackContext) -> dict:
        proj = ctx.projection(family)
        plda = PLDA.fit(proj(ctx.features(family)[1]), ctx.train_spk)
        return {**verification(plda.score_matrix(proj(ctx.features(family)[0])), ctx.eval_spk),
                "n_train": len(ctx.train_spk)}
    return run


def _stats_lda_closed(family: str):
    def run(ctx: AttackContext) -> dict:
        z = ctx.projection(family)(ctx.features(family)[0])
        return ctx.closed_result(centroid_accuracy(z, ctx.eval_spk, ctx.enroll, ctx.test))
    return run


def _stats_pooled_enroll(family: str):
    def run(ctx: AttackContext) -> dict:
        z = ctx.projection(family)(ctx.features(family)[0])
        return {**pooled_enrollment_verification(z, ctx.eval_spk, ctx.enroll, ctx.test), "n_train": len(ctx.train_spk)}
    return run


def _ecapa_pooled_enroll(ctx: AttackContext) -> dict:
    e_eval, _ = ctx.ecapa_vectors()
    return {**pooled_enrollment_verification(e_eval, ctx.eval_spk, ctx.enroll, ctx.test), "n_train": len(ctx.train_spk)}


def _frame_net(ctx: AttackContext) -> dict:
    att = train_frame_classifier(ctx.sel(ctx.emb.eval, ctx.enroll), ctx.sel(ctx.eval_spk, ctx.enroll),
                                 ctx.options.frame, seed=ctx.seed)
    return ctx.closed_result(att.accuracy(ctx.sel(ctx.emb.eval, ctx.test), ctx.sel(ctx.eval_spk, ctx.test)))


def _ecapa_open(ctx: AttackContext) -> dict:
    e_eval, _ = ctx.ecapa_vectors()
    return {**cosine_verification(e_eval, ctx.eval_spk), "n_train": len(ctx.train_spk),
            "steps": ctx.options.ecapa.steps}


def _ecapa_plda(ctx: AttackContext) -> dict:
    e_eval, e_train = ctx.ecapa_vectors()
    plda = PLDA.fit(e_train, ctx.train_spk)
    return {**verification(plda.score_matrix(e_eval), ctx.eval_spk), "n_train": len(ctx.train_spk)}


def _ecapa_closed(ctx: AttackContext) -> dict:
    e_eval, _ = ctx.ecapa_vectors()
    return ctx.closed_result(centroid_accuracy(e_eval, ctx.eval_spk, ctx.enroll, ctx.test))


_STATS = {"moments": "higher-order moments and quantiles per channel",
          "correlation": "cross-channel correlation (upper triangle, Fisher z)",
          "dynamics": "temporal dynamics: autocorrelation, deltas, modulation spectrum, cross-lag correlation",
          "allstats": "moments + correlation + dynamics"}
_FAMILY = {"moments": "pooled statistics", "correlation": "pooled statistics", "dynamics": "temporal dynamics",
           "allstats": "pooled statistics + dynamics"}

ATTACKERS: dict[str, Attacker] = {a.name: a for a in [
    Attacker("pooled-lr", "closed", "pooled mean+std (Veil's original)", "enrollment", False, "fast",
             "mean+std pooled, standardized, logistic regression", _legacy_closed("lr")),
    Attacker("pooled-mlp", "closed", "pooled mean+std (Veil's original)", "enrollment", True, "fast",
             "mean+std pooled, standardized, one-hidden-layer MLP", _legacy_closed("mlp")),
    *[Attacker(f"{f}-lr", "closed", _FAMILY[f], "enrollment", False, "fast",
               f"{_STATS[f]}; standardized, PCA, logistic regression", _stats_closed(f)) for f in _STATS],
    Attacker("frame-net", "closed", "frame-level network", "enrollment", True, "slow",
             "conv over 3 frames + 2 per-frame layers; utterance = mean frame log-probability", _frame_net),
    Attacker("allstats-lda-centroid", "closed", "pooled statistics + dynamics", "informed", False, "fast",
             "all statistics through the training speakers' PCA + LDA; cosine to each speaker's enrollment mean",
             _stats_lda_closed("allstats")),
    Attacker("ecapa-centroid", "closed", "sequence network (ECAPA)", "informed", True, "slow",
             "ECAPA trained on the training speakers; cosine to each speaker's mean enrollment embedding",
             _ecapa_closed),
    Attacker("x-vector", "open", "sequence network (Veil's original x-vector)", "informed", True, "slow",
             "TDNN + mean/std pooling, softmax; first --xvector-utts utterances per training speaker", _xvector),
    Attacker("pooled-lda", "open", "pooled mean+std (Veil's original)", "informed", False, "fast",
             "mean+std pooled; PCA + LDA learned on the training speakers, cosine", _stats_lda("mean_std")),
    *[Attacker(f"{f}-lda", "open", _FAMILY[f], "informed", False, "fast",
               f"{_STATS[f]}; PCA + LDA (WCCN) learned on the training speakers, cosine", _stats_lda(f))
      for f in _STATS],
    Attacker("allstats-plda", "open", "pooled statistics + dynamics", "informed", False, "fast",
             "all statistics, PCA + LDA, two-covariance PLDA learned on the training speakers",
             _stats_plda("allstats")),
    Attacker("allstats-pooled-enroll", "open", "pooled statistics + dynamics", "informed", False, "fast",
             "all statistics, PCA + LDA; each speaker enrolled with the mean of its enrollment utterances (60 %), "
             "test utterances scored against every speaker model, cosine", _stats_pooled_enroll("allstats")),
    Attacker("ecapa-pooled-enroll", "open", "sequence network (ECAPA)", "informed", True, "slow",
             "the ECAPA's embeddings; each speaker enrolled with the mean of its enrollment utterances, test "
             "utterances scored against every speaker model", _ecapa_pooled_enroll),
    Attacker("ecapa", "open", "sequence network (ECAPA)", "informed", True, "slow",
             "SE-Res2 blocks, attentive statistics pooling, AAM softmax, random crops, every training "
             "utterance; cosine", _ecapa_open),
    Attacker("ecapa-plda", "open", "sequence network (ECAPA)", "informed", True, "slow",
             "the same ECAPA's embeddings scored by a PLDA learned on the training speakers", _ecapa_plda),
]}

LEGACY = ("pooled-lr", "pooled-mlp", "x-vector")
SETS = {"all": list(ATTACKERS),
        "fast": [n for n, a in ATTACKERS.items() if a.cost == "fast"],
        "legacy": list(LEGACY)}


def select_attackers(spec: str) -> list[str]:
    """'all', 'fast', 'legacy', or comma-separated attacker names (sets may be mixed in)."""
    out: list[str] = []
    for part in (p.strip() for p in spec.split(",")):
        names = SETS.get(part, [part])
        for n in names:
            if n not in ATTACKERS:
                raise VeilError(f"--attackers: unknown attacker {n!r} (sets: {', '.join(SETS)}; attackers: "
                                f"{', '.join(ATTACKERS)})")
            if n not in out:
                out.append(n)
    if not out:
        raise VeilError("--attackers: no attacker selected")
    return out


# ---- running it ---------------------------------------------------------------------------------------------

def _value(task: str, result: dict) -> float:
    return result["accuracy"] if task == "closed" else result["eer"]


def strongest(results: dict[str, dict]) -> dict:
    """{"closed": {"attacker": name, ...}, "open": {...}}: highest accuracy, lowest EER (absent if none ran)."""
    out = {}
    for task, pick in (("closed", max), ("open", min)):
        rows = {n: r for n, r in results.items() if ATTACKERS[n].task == task}
        if rows:
            name = pick(rows, key=lambda n: _value(task, rows[n]))
            out[task] = {"attacker": name, **rows[name]}
    return out


def _mean_sd(values: list[float]) -> tuple[float, float]:
    return float(np.mean(values)), float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def spread(per_seed: list[dict[str, dict]], seeds: list[int]) -> dict:
    """Per attacker and for the strongest of each task: each seed's value, mean and sample sd. The strongest
    attacker over seeds is the one with the best mean; ``per_seed_best`` takes the best attacker of each
    seed instead (never weaker for the attacker, the stricter privacy number)."""
    attackers = {}
    for name in per_seed[0]:
        task = ATTACKERS[name].task
        values = [_value(task, r[name]) for r in per_seed]
        m, sd = _mean_sd(values)
        attackers[name] = {"task": task, "values": values, "mean": m, "sd": sd}
    best = {}
    for task, pick in (("closed", max), ("open", min)):
        names = [n for n, a in attackers.items() if a["task"] == task]
        if not names:
            continue
        name = pick(names, key=lambda n: attackers[n]["mean"])
        winners = [strongest(r)[task] for r in per_seed]
        values = [_value(task, w) for w in winners]
        m, sd = _mean_sd(values)
        best[task] = {"attacker": name, "mean": attackers[name]["mean"], "sd": attackers[name]["sd"],
                      "values": attackers[name]["values"],
                      "per_seed_best": {"attackers": [w["attacker"] for w in winners], "values": values,
                                        "mean": m, "sd": sd}}
    return {"seeds": seeds, "attackers": attackers, "strongest": best}


def run_suite(emb: Embeddings, eval_spk: list[str], train_spk: list[str], split, options: SuiteOptions,
              seeds: list[int], log=None) -> tuple[dict, AttackContext]:
    """Run the selected attackers once per seed on one source's embeddings at one layer.

    Returns ``({"suite": {name: result of seeds[0]}, "strongest": ..., "spread": ... (2+ seeds)}, context)``;
    the context keeps the first seed's fitted legacy attackers (``context.fitted``) for the ignorant attack.
    Each result carries ``task``, ``family``, ``knowledge``, ``seconds`` and accuracy/chance or EER/minDCF.
    """
    log = log or (lambda *a, **k: None)
    names = options.names()
    ctx = AttackContext(emb, eval_spk, train_spk, split, options, log)
    per_seed: list[dict[str, dict]] = []
    for seed in seeds:
        ctx.seed = seed
        results = {}
        for name in names:
            a = ATTACKERS[name]
            if not a.seeded and per_seed:
                results[name] = per_seed[0][name]
                continue
            t0, c0 = time.time(), time.process_time()
            r = a.run(ctx)
            results[name] = {"task": a.task, "family": a.family, "knowledge": a.knowledge, **r,
                             "seconds": round(time.time() - t0, 1), "cpu_seconds": round(time.process_time() - c0, 1)}
            log(f"    seed {seed} {name}: " + (f"{r['accuracy']:.1f} %" if a.task == "closed" else
                                                f"EER {r['eer']:.1f} %") + f"  [{time.time() - t0:.0f} s]")
        per_seed.append(results)
        ctx._seeded = {k: v for k, v in ctx._seeded.items() if k[1] != seed}  # free this seed's networks
    out = {"suite": per_seed[0], "strongest": strongest(per_seed[0])}
    if len(seeds) > 1:
        out["spread"] = spread(per_seed, seeds)
    return out, ctx


def describe_attackers(names: list[str] | None = None) -> list[dict]:
    return [{"name": a.name, "task": a.task, "family": a.family, "knowledge": a.knowledge, "cost": a.cost,
             "description": a.description} for n, a in ATTACKERS.items() if names is None or n in names]
