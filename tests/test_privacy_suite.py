"""The attacker suite: its statistics and scoring are right, and each family catches the speaker signature it
is built for in per-chunk instance-normalized embeddings, where Veil's original mean+std pooling sees nothing."""
import json

import numpy as np
import pytest
from scipy.stats import norm

from toolkit.errors import VeilError
from toolkit.privacy.attackers import utterance_split
from experiments.attempts import entries_from_frontier, entry_from_privacy, render_attempts
from toolkit.privacy.ecapa import EcapaSettings, train_ecapa
from toolkit.privacy.framewise import FrameSettings
from toolkit.privacy.scoring import PLDA, SpeakerProjection, VectorClassifier, cosine_verification, verification
from toolkit.privacy.statistics import (FrameStatistics, autocorrelation, correlation, cross_lag, dynamics,
                                        modulation_spectrum, moments)
from toolkit.privacy.suite import ATTACKERS, Embeddings, SuiteOptions, run_suite, select_attackers, spread, strongest

# ---- statistics ---------------------------------------------------------------------------------------------


def test_moments_measure_the_shape_of_each_channel():
    rng = np.random.default_rng(0)
    f = np.stack([rng.normal(size=200_000), rng.exponential(size=200_000)], axis=1)
    m = moments(f).reshape(9, 2)  # mean, std, skew, kurt, 5 quantiles
    assert m[2] == pytest.approx([0.0, 2.0], abs=0.08)  # skewness of a normal and an exponential
    assert m[3] == pytest.approx([0.0, 6.0], abs=0.4)   # excess kurtosis
    assert m[4:, 0] == pytest.approx(norm.ppf([0.05, 0.25, 0.5, 0.75, 0.95]), abs=0.02)


def test_correlation_is_the_fisher_z_of_each_channel_pair():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 100_000))
    f = np.stack([a, 0.6 * a + 0.8 * b, b], axis=1)  # corr(0,1) = 0.6, corr(0,2) = 0, corr(1,2) = 0.8
    assert np.tanh(correlation(f)) == pytest.approx([0.6, 0.0, 0.8], abs=0.01)


def test_autocorrelation_and_modulation_of_known_signals():
    rng = np.random.default_rng(2)
    n, rho = 50_000, 0.7
    x = np.zeros(n)
    e = rng.normal(size=n)
    for t in range(1, n):
        x[t] = rho * x[t - 1] + e[t]
    z = (x - x.mean()) / x.std()
    ac = autocorrelation(z[:, None], lags=(1, 2, 3))[:, 0]
    assert ac == pytest.approx([rho, rho ** 2, rho ** 3], abs=0.02)
    sine = np.sin(2 * np.pi * 0.1 * np.arange(400))  # 0.1 cycles per frame: band (0.08, 0.16]
    bands = np.exp(modulation_spectrum(((sine - sine.mean()) / sine.std())[:, None])[:, 0])
    assert int(np.argmax(bands)) == 3 and bands[3] > 0.95


def test_cross_lag_sees_one_channel_following_another():
    rng = np.random.default_rng(3)
    a = rng.normal(size=5001)
    z = np.stack([a[1:], a[:-1]], axis=1)  # channel 1 at t+1 equals channel 0 at t
    c = cross_lag((z - z.mean(0)) / z.std(0), np.eye(2), lags=(1,)).reshape(2, 2)
    assert c[0, 1] == pytest.approx(1.0, abs=0.01) and abs(c[1, 0]) < 0.05


def test_statistics_beyond_mean_and_std_ignore_per_channel_scaling():
    """Instance normalization is a per-channel affine map: the new statistics must not depend on it."""
    rng = np.random.default_rng(4)
    f = rng.gamma(2.0, size=(120, 6)).cumsum(0)
    g = f * rng.uniform(0.5, 3.0, size=6) + rng.normal(size=6)
    basis = np.linalg.qr(rng.normal(size=(6, 3)))[0]
    np.testing.assert_allclose(moments(f)[12:], moments(g)[12:], atol=1e-6)
    np.testing.assert_allclose(correlation(f), correlation(g), rtol=1e-5)
    np.testing.assert_allclose(dynamics(f, basis), dynamics(g, basis), rtol=1e-4, atol=1e-5)


def test_batched_statistics_equal_their_per_utterance_definitions():
    rng = np.random.default_rng(8)
    frames = [rng.gamma(1.5, size=(int(t), 10)).cumsum(0) for t in rng.integers(2, 90, size=40)]
    frames[0] = frames[0][:1]  # one frame: every statistic still defined (zeros where it is not)
    for family in ("mean_std", "moments", "correlation", "dynamics"):
        stats = FrameStatistics(family).fit(frames)
        batched = stats(frames, batch=7)  # mixed lengths in every batch
        alone = np.nan_to_num(np.stack([stats.one(f) for f in frames])).astype(np.float32)
        np.testing.assert_allclose(batched, alone, rtol=1e-4, atol=1e-4, err_msg=family)


def test_frame_statistics_rows_and_unknown_family():
    rng = np.random.default_rng(5)
    frames = [rng.normal(size=(int(t), 8)) for t in rng.integers(20, 60, size=5)]
    for family, dims in (("mean_std", 16), ("moments", 72), ("correlation", 28)):
        assert FrameStatistics(family)(frames).shape == (5, dims)
    dyn = FrameStatistics("dynamics").fit(frames)
    assert dyn.basis.shape == (8, 8) and dyn(frames).shape[0] == 5 and np.isfinite(dyn(frames)).all()
    with pytest.raises(ValueError, match="unknown statistics family"):
        FrameStatistics("cepstrum")


# ---- scoring ------------------------------------------------------------------------------------------------

def _gaussian_speakers(n_spk, per_spk, rng, d=40, nuisance=8.0):
    """Speaker means in 10 dims, a large within-speaker nuisance in the other 30."""
    means = np.zeros((n_spk, d))
    means[:, :10] = rng.normal(size=(n_spk, 10))
    x = np.repeat(means, per_spk, axis=0) + 0.3 * rng.normal(size=(n_spk * per_spk, d))
    x[:, 10:] += nuisance * rng.normal(size=(n_spk * per_spk, d - 10))
    return x, [f"s{i}" for i in range(n_spk) for _ in range(per_spk)]


def test_lda_and_plda_learned_on_other_speakers_remove_the_nuisance():
    rng = np.random.default_rng(6)
    x_train, spk_train = _gaussian_speakers(60, 20, rng)
    x_eval, spk_eval = _gaussian_speakers(20, 10, rng)
    raw = cosine_verification(x_eval, spk_eval)["eer"]
    proj = SpeakerProjection.fit(x_train, spk_train, pca_dims=40, lda_dims=20)
    lda = cosine_verification(proj(x_eval), spk_eval)["eer"]
    plda = verification(PLDA.fit(proj(x_train), spk_train).score_matrix(proj(x_eval)), spk_eval)["eer"]
    assert raw > 25 and lda < 3 and plda < 3, (raw, lda, plda)


def test_vector_classifier_reduces_more_dimensions_than_utterances():
    rng = np.random.default_rng(7)
    x = np.repeat(rng.normal(size=(10, 300)), 12, axis=0) + 3.0 * rng.normal(size=(120, 300))
    spk = [f"s{i}" for i in range(10) for _ in range(12)]
    tr, te = utterance_split(spk)
    clf = VectorClassifier.fit(x[tr], [spk[i] for i in tr])
    assert clf.pca is not None and clf.pca.n_components_ == len(tr) - 1
    assert clf.accuracy(x[te], [spk[i] for i in te]) >= 95.0


# ---- the suite ----------------------------------------------------------------------------------------------

def test_attacker_selection_by_set_and_name():
    assert select_attackers("legacy") == ["pooled-lr", "pooled-mlp", "x-vector"]
    fast = select_attackers("fast")
    assert all(ATTACKERS[n].cost == "fast" for n in fast) and "ecapa" not in fast
    assert {"moments-lr", "correlation-lr", "dynamics-lr", "allstats-lda", "allstats-plda"} <= set(fast)
    assert select_attackers("ecapa,fast,ecapa")[0] == "ecapa" and len(select_attackers("ecapa,fast")) == len(fast) + 1
    assert set(select_attackers("all")) == set(ATTACKERS)
    with pytest.raises(VeilError, match="unknown attacker 'gmm'"):
        select_attackers("fast,gmm")


def test_strongest_is_the_best_of_each_task_by_name_and_over_seeds():
    r = lambda lr, mlp, xv, ec: {"pooled-lr": {"accuracy": lr}, "pooled-mlp": {"accuracy": mlp},
                                 "x-vector": {"eer": xv}, "ecapa": {"eer": ec}}
    per_seed = [r(30, 40, 20, 10), r(30, 20, 22, 24), r(30, 35, 21, 14)]
    s = strongest(per_seed[0])
    assert s["closed"]["attacker"] == "pooled-mlp" and s["open"] == {"attacker": "ecapa", "eer": 10}
    sp = spread(per_seed, [0, 1, 2])
    assert sp["attackers"]["ecapa"]["values"] == [10, 24, 14] and sp["attackers"]["pooled-lr"]["sd"] == 0.0
    assert sp["strongest"]["closed"]["attacker"] == "pooled-mlp"  # best mean 31.7 beats 30.0
    assert sp["strongest"]["open"]["attacker"] == "ecapa" and sp["strongest"]["open"]["mean"] == pytest.approx(16)
    best = sp["strongest"]["open"]["per_seed_best"]
    assert best["attackers"] == ["ecapa", "x-vector", "ecapa"] and best["values"] == [10, 22, 14]
    assert sp["strongest"]["closed"]["per_seed_best"]["values"] == [40, 30, 35]


# ---- mechanism: normalized embeddings that still carry a voice -------------------------------------------------

D, CHUNK = 12, 25


def _chunk_instance_norm(x):
    """Veil's split normalization: zero mean, unit variance per channel within every chunk of frames."""
    out = np.empty_like(x)
    for s in range(0, len(x), CHUNK):
        c = x[s:s + CHUNK]
        out[s:s + CHUNK] = (c - c.mean(0)) / np.sqrt(c.var(0) + 1e-5)
    return out


def _voice(signature, rng):
    """A speaker's hidden parameters for one kind of signature."""
    if signature == "correlation":
        return np.eye(D) + 0.5 * rng.normal(size=(D, D)) / np.sqrt(D)  # a mixing matrix
    if signature == "moments":
        return np.exp(rng.uniform(np.log(0.6), np.log(12.0), size=D))  # gamma shape per channel (skewness)
    return rng.uniform(-0.5, 0.9, size=D)                               # AR(1) coefficient per channel


def _utterance(signature, voice, n, rng):
    if signature == "correlation":
        x = rng.normal(size=(n, D)) @ voice.T
    elif signature == "moments":
        x = rng.gamma(voice, size=(n, D))
    else:
        e = rng.normal(size=(n, D))
        x = np.zeros((n, D))
        for t in range(1, n):
            x[t] = voice * x[t - 1] + e[t]
    # utterance-level gain and offset per channel (a voice's timbre), then the chunk normalization removes them
    x = x * rng.uniform(0.5, 2.0, size=D) + rng.normal(scale=3.0, size=D)
    return _chunk_instance_norm(x).astype(np.float32)


def synthetic_source(signature, n_train=16, n_eval=8, per_train=16, per_eval=20, seed=0):
    """Training and eval speakers whose only identity is ``signature``; frame counts vary (60..150)."""
    rng = np.random.default_rng(seed)
    frames, speakers = [], []
    for s in range(n_train + n_eval):
        voice = _voice(signature, rng)
        for _ in range(per_train if s < n_train else per_eval):
            frames.append(_utterance(signature, voice, int(rng.integers(60, 151)), rng))
            speakers.append(f"{'t' if s < n_train else 'e'}{s}")
    k = n_train * per_train
    return Embeddings(frames[k:], frames[:k]), speakers[k:], speakers[:k]


SMALL = SuiteOptions(ecapa=EcapaSettings(steps=150, batch=32, crop_min=40, crop_max=80, channels=32, emb=32),
                     frame=FrameSettings(steps=150, batch=32, crop=40, width=64), xvector_epochs=5)


def _attack(signature, attackers):
    emb, eval_spk, train_spk = synthetic_source(signature)
    out, _ = run_suite(emb, eval_spk, train_spk, utterance_split(eval_spk),
                       SuiteOptions(**{**SMALL.__dict__, "attackers": attackers}), seeds=[0])
    return out["suite"]


@pytest.mark.parametrize("signature, closed, open_", [
    ("moments", ["moments-lr", "allstats-lr"], ["moments-lda"]),
    ("correlation", ["correlation-lr", "allstats-lr", "frame-net", "allstats-lda-centroid"], ["correlation-lda"]),
    ("dynamics", ["dynamics-lr", "allstats-lr", "allstats-lda-centroid", "ecapa-centroid"],
     ["dynamics-lda", "allstats-plda", "ecapa", "ecapa-plda"]),
])
def test_each_family_catches_its_signature_where_mean_std_sees_nothing(signature, closed, open_, one_torch_thread):
    """Speakers differ only in the shape of each channel's distribution, in how channels co-vary, or in how
    fast each channel moves; chunk instance normalization leaves every utterance with per-channel mean 0 and
    std 1. Veil's original mean+std attackers stay at chance; the family built for the signature finds it,
    closed set (accuracy) and open set (EER on speakers the attacker never trained on). The informed attackers
    (``*-lda``, ``*-plda``, ``*-centroid``, ECAPA) learn what a voice looks like from the training speakers."""
    emb, _, _ = synthetic_source(signature)
    means = np.stack([f.mean(0) for f in emb.eval])
    stds = np.stack([f.std(0) for f in emb.eval])
    assert np.abs(means).max() < 1e-5 and np.abs(stds - 1).max() < 0.02  # normalization left nothing there
    r = _attack(signature, ",".join(["pooled-lr", "pooled-mlp", "pooled-lda"] + closed + open_))
    chance = r["pooled-lr"]["chance"]
    assert chance == pytest.approx(12.5)
    for name in ("pooled-lr", "pooled-mlp"):
        assert r[name]["accuracy"] <= 2.5 * chance, (name, r[name])
    assert r["pooled-lda"]["eer"] >= 38.0, r["pooled-lda"]
    for name in closed:
        assert r[name]["accuracy"] >= 75.0, (name, r[name])
    for name in open_:
        assert r[name]["eer"] <= 25.0, (name, r[name])


def test_ecapa_batched_embeddings_equal_one_utterance_at_a_time(one_torch_thread):
    emb, _, train_spk = synthetic_source("dynamics", n_train=4, per_train=6, n_eval=1, per_eval=2)
    att = train_ecapa(emb.train, train_spk, EcapaSettings(steps=3, batch=8, channels=16, emb=16), seed=0)
    batched = att.embed(emb.train, batch=5)
    alone = np.concatenate([att.embed([f]) for f in emb.train])
    assert len({f.shape[0] for f in emb.train}) > 5
    np.testing.assert_allclose(batched, alone, atol=2e-5)


def test_suite_is_deterministic_for_a_seed_and_differs_across_seeds(one_torch_thread):
    emb, eval_spk, train_spk = synthetic_source("dynamics", n_train=6, per_train=8, n_eval=4, per_eval=8)
    opts = SuiteOptions(**{**SMALL.__dict__, "attackers": "frame-net,ecapa,dynamics-lr",
                           "ecapa": EcapaSettings(steps=20, batch=16, channels=16, emb=16),
                           "frame": FrameSettings(steps=20, batch=16, crop=30, width=32)})
    split = utterance_split(eval_spk)
    a, _ = run_suite(emb, eval_spk, train_spk, split, opts, seeds=[0, 1])
    b, _ = run_suite(emb, eval_spk, train_spk, split, opts, seeds=[0, 1])
    for name in ("frame-net", "ecapa", "dynamics-lr"):
        assert a["spread"]["attackers"][name]["values"] == b["spread"]["attackers"][name]["values"]
    assert a["spread"]["attackers"]["dynamics-lr"]["sd"] == 0.0  # statistics do not depend on the seed
    assert any(a["spread"]["attackers"][n]["values"][0] != a["spread"]["attackers"][n]["values"][1]
               for n in ("frame-net", "ecapa"))  # the networks do depend on it


def test_attempts_log_names_the_strongest_attacker_of_a_suite_report(tmp_path):
    def row(closed, eer, spread=None):
        out = {"suite": {closed[0]: {"task": "closed", "accuracy": closed[1], "chance": 3.125},
                         eer[0]: {"task": "open", "eer": eer[1]}},
               "strongest": {"closed": {"attacker": closed[0], "accuracy": closed[1], "chance": 3.125},
                             "open": {"attacker": eer[0], "eer": eer[1]}}}
        if spread:
            out["spread"] = {"strongest": {task: {"attacker": name, "mean": m, "sd": sd, "values": [m],
                                                  "per_seed_best": {"attackers": [name], "values": [m], "mean": m,
                                                                    "sd": sd}}
                                           for task, (name, m, sd) in spread.items()}}
        return out
    report = tmp_path / "privacy.json"
    report.write_text(json.dumps({"eval_speakers": 32, "attacker_seeds": 3, "models": {
        "baseline": {"checkpoint": "b.safetensors", "layers": {"4": row(("allstats-lr", 99.0), ("ecapa", 2.0))}},
        "anonymized": {"kind": "artifact", "path": "p.pte", "backend": "executorch", "recipe": "int8-static",
                       "layers": {"4": row(("allstats-lda-centroid", 96.0), ("allstats-plda", 5.0),
                                       {"closed": ("allstats-lda-centroid", 96.0, 0.0),
                                        "open": ("ecapa-plda", 5.5, 0.4)})}}}}))
    e = entry_from_privacy(report, "shipped-suite", "t", "v", layer=4)
    assert e["probe"]["lr"] is None and e["probe"]["chance"] == pytest.approx(3.125)  # no legacy attackers ran
    s = e["strongest"]
    assert s["closed"] == {"attacker": "allstats-lda-centroid", "model": 96.0, "baseline_attacker": "allstats-lr",
                           "baseline": 99.0, "mean_attacker": "allstats-lda-centroid", "mean": 96.0, "sd": 0.0,
                           "per_seed_best_mean": 96.0, "per_seed_best_sd": 0.0,
                           "per_seed_best_attackers": ["allstats-lda-centroid"]}
    assert s["open"]["attacker"] == "allstats-plda" and s["open"]["mean_attacker"] == "ecapa-plda"
    md = render_attempts([e])
    assert "5.5 ± 0.4 (ecapa-plda); baseline 2.0 (ecapa)" in md and "96.0 ± 0.0 (allstats-lda-centroid)" in md


def test_each_frontier_point_is_logged_with_its_train_command_and_its_verdict_against_the_goals(tmp_path):
    def model(name, role, wer, closed, eer, payload):
        row = {"suite": {}, "strongest": {"closed": {"attacker": "allstats-lda-centroid", "accuracy": closed},
                                          "open": {"attacker": "allstats-plda", "eer": eer}}}
        return {"name": name, "role": role, "layer": 4, "checkpoint": f"{name}.safetensors", "sha256": "ab" * 32,
                "train_command": f"veil train --out {name}" if role == "point" else None, "test": {"wer": wer},
                "payload": payload, "privacy": row,
                "headline": {"closed_attacker": "allstats-lda-centroid", "closed_accuracy": closed, "closed_sd": 0.0,
                             "open_attacker": "allstats-plda", "eer": eer, "eer_sd": 0.0}}
    vq = {"codec": "vq", "dim": 32, "groups": 1, "codes": 16, "bytes_per_second": 12.5}
    report = tmp_path / "frontier.json"
    report.write_text(json.dumps({"date": "2026-11-26", "init_from": "models/anonymized.safetensors",
                                  "attack": {"suite": {"attackers": "fast"}, "seeds": 1, "eval_speakers": 32},
                                  "models": [model("baseline", "reference", 28.0, 99.0, 2.0, vq),
                                             model("bn-d32-1x16", "point", 60.0, 15.0, 41.0, vq),
                                             model("bn-d32-1x256", "point", 28.5, 30.0, 25.0, vq)]}))
    small, big = entries_from_frontier(report)
    assert small["name"] == "frontier-bn-d32-1x16" and small["train_command"] == "veil train --out bn-d32-1x16"
    assert small["verdict"].startswith("misses WER +32.00 pp") and "EER 41.0 % (goal >= 40)" in small["verdict"]
    assert big["verdict"].startswith("misses EER 25.0 %") and "WER +0.50 pp" in big["verdict"].split("Meets")[1]
    assert small["strongest"]["closed"]["baseline"] == 99.0 and small["wer"]["baseline"] == 28.0
    assert "frontier-bn-d32-1x16" in render_attempts([small, big])

    from toolkit.cli import main as veil_main  # a rerun with more points logs only the new ones
    log = tmp_path / "attempts.json"
    assert veil_main(["attempts", "add-frontier", str(report), "--log", str(log)]) == 0
    doc = json.loads(report.read_text())
    doc["models"].append(model("bn-d16-n0.5", "point", 40.0, 50.0, 20.0, vq))
    report.write_text(json.dumps(doc))
    assert veil_main(["attempts", "add-frontier", str(report), "--log", str(log)]) == 0
    assert [e["name"] for e in json.loads(log.read_text())] == [
        "frontier-bn-d32-1x16", "frontier-bn-d32-1x256", "frontier-bn-d16-n0.5"]
    doc["models"][1]["sha256"] = "cd" * 32  # the same name for another checkpoint is refused, not overwritten
    report.write_text(json.dumps(doc))
    assert veil_main(["attempts", "add-frontier", str(report), "--log", str(log)]) == 2
    assert len(json.loads(log.read_text())) == 3
