"""Privacy attackers: they work on real speaker differences, fail on shuffled labels, EER is exact."""
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import norm

from toolkit.data.corpus_build import CorpusPlan, build_corpus
from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.model.asr import VeilModel
from toolkit.model.checkpoint import save_checkpoint
from toolkit.privacy.attackers import (closed_set_attack, eer, min_dcf, open_set_attack, train_xvector,
                                       utterance_split)
from toolkit.privacy.embeddings import layer_embeddings
from toolkit.text.tokenizer import CharTokenizer
from tests.conftest import small_config


@pytest.fixture(scope="module")
def speaker_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("spk") / "c"
    plan = CorpusPlan(n_speakers=12, n_eval_speakers=8, train_per_speaker=3, dev_per_speaker=1,
                      test_per_speaker=1, eval_per_speaker=8)
    build_corpus(root, seed=3, plan=plan, progress=False, jobs=2)
    return root


@pytest.fixture(scope="module")
def logmel(speaker_corpus):
    utts = read_librispeech(speaker_corpus / "eval-speakers")
    torch.manual_seed(0)
    model = VeilModel(small_config()).eval()
    frames = layer_embeddings(model, AudioSet.load(utts, progress=False), [0], progress=False)[0]
    return frames, [u.speaker for u in utts]


@pytest.mark.parametrize("kind", ["lr", "mlp"])
def test_closed_set_identifies_real_speakers(logmel, kind):
    frames, spk = logmel
    tr, te = utterance_split(spk, seed=0)
    assert not set(tr) & set(te) and len(set(spk[i] for i in te)) == 8
    r = closed_set_attack([frames[i] for i in tr], [spk[i] for i in tr], [frames[i] for i in te],
                          [spk[i] for i in te], kind)
    assert r["chance"] == pytest.approx(12.5)
    assert r["accuracy"] >= 80.0, r


def test_closed_set_near_chance_on_shuffled_labels(logmel):
    frames, spk = logmel
    accs = []
    for seed in range(5):
        shuffled = spk[:]
        random.Random(seed).shuffle(shuffled)
        tr, te = utterance_split(shuffled, seed=seed)
        accs.append(closed_set_attack([frames[i] for i in tr], [shuffled[i] for i in tr],
                                      [frames[i] for i in te], [shuffled[i] for i in te], "lr")["accuracy"])
    assert np.mean(accs) < 30.0, accs


def test_xvector_verifies_unseen_speakers(logmel):
    frames, spk = logmel
    seen = sorted(set(spk))[:5]
    a = [i for i, s in enumerate(spk) if s in seen]
    b = [i for i, s in enumerate(spk) if s not in seen]
    att = train_xvector([frames[i] for i in a], [spk[i] for i in a], epochs=15, seed=0)
    good = open_set_attack(att, [frames[i] for i in b], [spk[i] for i in b])["eer"]
    shuffled = [spk[i] for i in b]
    random.Random(0).shuffle(shuffled)
    bad = open_set_attack(att, [frames[i] for i in b], shuffled)["eer"]
    assert good < 25.0 and bad > good + 15.0, (good, bad)


def test_eer_on_known_score_sets():
    rng = np.random.default_rng(0)
    n = 50000
    for d in (0.5, 1.0, 2.0):
        scores = np.concatenate([rng.normal(d, 1, n), rng.normal(-d, 1, n)])
        labels = np.r_[np.ones(n), np.zeros(n)]
        assert eer(scores, labels) == pytest.approx(100 * norm.cdf(-d), abs=0.5)
    assert eer(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == 0.0
    assert eer(np.array([0.0, 1.0, 2.0, 3.0]), np.array([1, 1, 0, 0])) == 100.0
    assert eer(np.array([1.0, 0.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) == pytest.approx(50.0)
    assert 0.0 <= min_dcf(np.array([3.0, 2.0, 1.0, 0.0]), np.array([1, 1, 0, 0])) <= 1e-9
    with pytest.raises(ValueError):
        eer(np.array([1.0, 2.0]), np.array([1, 1]))


def test_cli_end_to_end(speaker_corpus, tmp_path):
    paths = {}
    for name, grl in (("base", []), ("anon", [1])):
        torch.manual_seed(1)
        model = VeilModel(small_config(grl_layers=grl))
        paths[name] = save_checkpoint(tmp_path / f"{name}.safetensors", model, CharTokenizer(),
                                      ["a", "b", "c", "d"], {})
    out = tmp_path / "report"
    r = subprocess.run([sys.executable, "-m", "toolkit.cli", "privacy", "--checkpoint", str(paths["anon"]),
                        "--baseline", str(paths["base"]), "--corpus", str(speaker_corpus), "--layers", "0,1",
                        "--out", str(out), "--xvector-epochs", "2", "--attacker-utts", "2"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "privacy.json").read_text())
    assert set(report["models"]) == {"baseline", "anonymized"}
    row = report["models"]["anonymized"]["layers"]["1"]
    assert 0 <= row["closed_lr"]["accuracy"] <= 100 and 0 <= row["open_xvector"]["eer"] <= 100
    assert row["closed_lr"]["n_speakers"] == 8 and report["attacker_train_speakers"] == 4
    assert set(report["ignorant"]) == {"0", "1"}
    assert "| anonymized | 1 |" in (out / "privacy.md").read_text()
    assert (out / "privacy.png").stat().st_size > 10000
    bad = subprocess.run([sys.executable, "-m", "toolkit.cli", "privacy", "--checkpoint", str(paths["anon"]),
                          "--corpus", str(speaker_corpus), "--layers", "7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "outside 0..2" in bad.stderr
