"""Privacy attackers: they work on real speaker differences, fail on shuffled labels, EER is exact."""
import json
import platform
import random
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
from scipy.stats import norm

import export as backends
from export.artifact import tree_sha256
from toolkit.cli import main as veil_main
from toolkit.data.corpus_build import CorpusPlan, build_corpus
from toolkit.data.dataset import AudioSet, collate
from toolkit.data.librispeech import read_librispeech
from toolkit.exporting.cli import main as export_main
from toolkit.files import file_sha256
from toolkit.chunking import run_chunked, torch_runner
from toolkit.model.asr import VeilModel, split
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.privacy.artifact import load_runners, read_export
from toolkit.privacy.attackers import (closed_set_attack, eer, min_dcf, open_set_attack, train_xvector,
                                       utterance_split)
from toolkit.privacy.embeddings import artifact_embeddings, layer_embeddings
from toolkit.privacy.leakage import attack_artifact, attack_checkpoint_layer, load_attack_data
from toolkit.privacy.suite import ATTACKERS, SuiteOptions
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


def test_xvector_batched_scoring_equals_one_utterance_at_a_time(logmel):
    frames, spk = logmel
    att = train_xvector(frames[:16], spk[:16], epochs=1, seed=0)
    batched = att.embed(frames, batch=7)  # several batches of mixed lengths
    att.model.eval()
    with torch.no_grad():
        alone = np.stack([torch.nn.functional.normalize(att.model.embed(torch.from_numpy(
            ((f - att.mean) / att.std).astype(np.float32))[None]), dim=-1)[0].numpy() for f in frames])
    assert len({f.shape[0] for f in frames}) > 5
    np.testing.assert_allclose(batched, alone, atol=2e-5)


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
                        "--out", str(out), "--xvector-epochs", "2", "--attacker-utts", "2", "--attacker-seeds", "2",
                        "--attackers", "all", "--ecapa-steps", "5", "--frame-steps", "5", "--threads", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    report = json.loads((out / "privacy.json").read_text())
    assert set(report["models"]) == {"baseline", "anon"}  # each model named as it is (its file), not by a role
    row = report["models"]["anon"]["layers"]["1"]
    assert 0 <= row["closed_lr"]["accuracy"] <= 100 and 0 <= row["open_xvector"]["eer"] <= 100
    assert row["closed_lr"]["n_speakers"] == 8 and report["attacker_train_speakers"] == 4
    assert set(report["ignorant"]) == {"anon"} and set(report["ignorant"]["anon"]) == {"0", "1"}
    base_lr = report["models"]["baseline"]["layers"]["1"]["closed_lr"]["accuracy"]
    if base_lr:
        assert row["vs_baseline"]["closed_lr_rel"] == pytest.approx(100 * (row["closed_lr"]["accuracy"] - base_lr) / base_lr)
    sp = row["seed_spread"]
    assert sp["seeds"] == [0, 1] and len(sp["eer"]) == 2 and sp["eer"][0] == row["open_xvector"]["eer"]
    assert sp["closed_lr"][0] == row["closed_lr"]["accuracy"] and report["attacker_seeds"] == 2
    assert sp["eer_mean"] == pytest.approx(np.mean(sp["eer"])) and sp["eer_sd"] == pytest.approx(np.std(sp["eer"], ddof=1))
    # the suite: every attacker kept, the strongest of each task named, each attacker's spread over seeds
    assert set(row["suite"]) == set(ATTACKERS) and report["threads"] == 1 and len(report["attackers"]) == len(ATTACKERS)
    best = row["strongest"]
    assert best["closed"]["accuracy"] == max(r["accuracy"] for r in row["suite"].values() if r["task"] == "closed")
    assert best["open"]["eer"] == min(r["eer"] for r in row["suite"].values() if r["task"] == "open")
    assert row["suite"][best["open"]["attacker"]]["eer"] == best["open"]["eer"]
    ecapa = row["spread"]["attackers"]["ecapa"]
    assert len(ecapa["values"]) == 2 and ecapa["values"][0] == row["suite"]["ecapa"]["eer"]
    assert row["spread"]["attackers"]["correlation-lr"]["sd"] == 0.0  # statistics do not depend on the seed
    assert row["vs_baseline"]["strongest_eer_pp"] == pytest.approx(
        row["strongest"]["open"]["eer"] - report["models"]["baseline"]["layers"]["1"]["strongest"]["open"]["eer"])
    md = (out / "privacy.md").read_text()
    assert "## Strongest attacker" in md and f"| anon | 1 | {row['strongest']['closed']['attacker']} |" in md
    assert "| anon | 1 | allstats-plda | open |" in md and "Veil's original attackers" in md
    unknown = subprocess.run([sys.executable, "-m", "toolkit.cli", "privacy", "--checkpoint", str(paths["anon"]),
                              "--corpus", str(speaker_corpus), "--attackers", "fast,gmm"], capture_output=True, text=True)
    assert unknown.returncode == 2 and "unknown attacker 'gmm'" in unknown.stderr
    assert (out / "privacy.png").stat().st_size > 10000
    bad = subprocess.run([sys.executable, "-m", "toolkit.cli", "privacy", "--checkpoint", str(paths["anon"]),
                          "--corpus", str(speaker_corpus), "--layers", "7"], capture_output=True, text=True)
    assert bad.returncode == 2 and "outside 0..2" in bad.stderr


# ---- embeddings: the float path and the exported artifact ----------------------------------------------------

@pytest.mark.parametrize("split_norm", ["none", "chunk"])
def test_layer_embeddings_stop_early_and_match_the_deployed_phone_and_cloud(speaker_corpus, split_norm):
    """The attacked embeddings (the batched training forward, run only as deep as needed) equal what the deployed
    system computes: the phone's Prefix run chunk by chunk as a phone runs it (block 1, the split), then the
    cloud's Suffix on the frames it received (block 2)."""
    torch.manual_seed(0)
    model = VeilModel(small_config(grl_layers=[], split_norm=split_norm)).eval()
    data = AudioSet.load(read_librispeech(speaker_corpus / "eval-speakers")[:6], progress=False)
    ours = layer_embeddings(model, data, [1, 2], progress=False)
    only_first = layer_embeddings(model, data, [1], progress=False)[1]
    prefix, suffix = split(model)
    for i in range(len(data)):
        pcm = data.pcm[i].astype(np.float32) / 32768.0
        phone, _ = run_chunked(torch_runner(prefix), pcm, model.cfg.chunk)
        with torch.no_grad():
            _, cloud = suffix.run(torch.from_numpy(phone)[None], None, keep=(2,))
        # batched vs alone: float32 sums in another order (thread count, padding); the per-chunk norm
        # divides by a std, so the bound is relative as well
        np.testing.assert_allclose(ours[1][i], phone, rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(ours[2][i], cloud[2][0].numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(only_first[i], ours[1][i])


@pytest.fixture(scope="module")
def exported(speaker_corpus, tmp_path_factory):
    """A real android export (ExecuTorch + LiteRT, fp32) of a small model: what --artifact attacks."""
    work = tmp_path_factory.mktemp("artifact")
    torch.manual_seed(1)
    ckpt = save_checkpoint(work / "small.safetensors", VeilModel(small_config(grl_layers=[1])), CharTokenizer(),
                           ["a", "b", "c", "d"], {})
    out = work / "export"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert export_main(["--checkpoint", str(ckpt), "--target", "android", "--recipe", "fp32", "--out", str(out),
                            "--corpus", str(speaker_corpus), "--no-parity"]) == 0
    finally:
        torch.set_num_threads(threads)
    return ckpt, out


def test_artifact_embeddings_are_the_float_prefix_run_in_the_runtime(exported, speaker_corpus):
    ckpt, out = exported
    model = load_checkpoint(ckpt)[0]
    data = AudioSet.load(read_librispeech(speaker_corpus / "eval-speakers")[:4], progress=False)
    ref = layer_embeddings(model, data, [1], progress=False)[1]
    for p in read_export(out):
        got = artifact_embeddings(backends.load(p.artifact), data, p.chunk, progress=False)
        assert [g.shape for g in got] == [r.shape for r in ref]
        assert backends.snr_db(np.concatenate(ref), np.concatenate(got)) > 60, p.name


def test_privacy_attacks_the_exported_artifact(exported, speaker_corpus, tmp_path, capsys):
    ckpt, out = exported
    report_dir = tmp_path / "report"
    assert veil_main(["privacy", "--artifact", str(out), "--backend", "executorch", "--baseline", str(ckpt),
                      "--corpus", str(speaker_corpus), "--out", str(report_dir), "--attackers", "fast",
                      "--attacker-utts", "2", "--threads", "1"]) == 0
    report = json.loads((report_dir / "privacy.json").read_text())
    (attacked,) = report["artifact"]["attacked"]
    pte = out / "prefix-k1-fp32.pte"
    assert attacked["backend"] == "executorch" and attacked["recipe"] == "fp32" and attacked["split_layer"] == 1
    assert attacked["sha256"] == file_sha256(pte) and attacked["path"] == str(pte)
    assert attacked["checkpoint"]["sha256"] == file_sha256(ckpt) and attacked["runtime"] == "ExecuTorchRunner"
    anon, base = report["models"]["executorch/fp32"], report["models"]["baseline"]
    assert anon["kind"] == "artifact" and set(anon["layers"]) == set(base["layers"]) == {"1"}
    # the fp32 artifact emits what the float checkpoint computes: the closed-set attacks agree
    for kind in ("closed_lr", "closed_mlp"):
        assert abs(anon["layers"]["1"][kind]["accuracy"] - base["layers"]["1"][kind]["accuracy"]) <= 5.0
    assert anon["layers"]["1"]["closed_lr"]["accuracy"] >= 60.0  # random-weight prefix still leaks identity
    md = (report_dir / "privacy.md").read_text()
    assert "`prefix-k1-fp32.pte` — executorch fp32" in md and attacked["sha256"][:16] in md
    assert (report_dir / "privacy.png").stat().st_size > 10000


def test_the_operator_attacks_the_suffixs_own_blocks_on_what_the_artifact_sent(exported, speaker_corpus, tmp_path):
    """--cloud-layers: the export's checkpoint (sha256-checked) runs its suffix on the artifact's output, and the
    suite attacks the suffix's block outputs: the operator's view. On an fp32 artifact they are the float
    model's own block-2 outputs, so the deterministic attackers agree with the checkpoint attacked at block 2."""
    ckpt, out = exported
    args = ["--corpus", str(speaker_corpus), "--attackers", "pooled-lr,moments-lr", "--attacker-utts", "2",
            "--threads", "1"]
    assert veil_main(["privacy", "--artifact", str(out), "--backend", "executorch", "--cloud-layers", "2",
                      "--out", str(tmp_path / "art"), *args]) == 0
    assert veil_main(["privacy", "--checkpoint", str(ckpt), "--layers", "2", "--out", str(tmp_path / "ckp"), *args]) == 0
    (art,) = json.loads((tmp_path / "art" / "privacy.json").read_text())["models"].values()
    (ckp,) = json.loads((tmp_path / "ckp" / "privacy.json").read_text())["models"].values()
    assert set(art["layers"]) == {"1", "2"}
    for name in ("pooled-lr", "moments-lr"):
        assert abs(art["layers"]["2"]["suite"][name]["accuracy"] - ckp["layers"]["2"]["suite"][name]["accuracy"]) <= 5.0
    assert veil_main(["privacy", "--artifact", str(out), "--cloud-layers", "1", "--out", str(tmp_path / "x"), *args]) == 2


def test_the_suite_from_python_on_a_checkpoint_layer_and_on_its_export(exported, speaker_corpus, one_torch_thread):
    """``attack_artifact`` runs the suite on what the export emits, ``attack_checkpoint_layer`` on the float
    layer: the fp32 artifact computes the float prefix, so the deterministic attackers agree."""
    ckpt, out = exported
    data = load_attack_data(speaker_corpus, train_utts_per_speaker=2, progress=False)
    options = SuiteOptions(attackers="pooled-lr,moments-lr,allstats-plda")
    art = attack_artifact(out, data, options, seeds=[0], backend="executorch")
    ckp = attack_checkpoint_layer(ckpt, 1, data, options, seeds=[0])
    assert set(art["suite"]) == set(ckp["suite"]) == {"pooled-lr", "moments-lr", "allstats-plda"}
    assert art["strongest"]["open"]["attacker"] == "allstats-plda" and "spread" not in art
    for name in ("pooled-lr", "moments-lr"):
        assert abs(art["suite"][name]["accuracy"] - ckp["suite"][name]["accuracy"]) <= 5.0, name
    assert art["strongest"]["closed"]["accuracy"] == max(art["suite"][n]["accuracy"] for n in ("pooled-lr", "moments-lr"))
    assert art["closed_lr"]["attacker"] == "pooled-lr" and "open_xvector" not in art  # the x-vector did not run


def test_artifact_input_is_checked_at_the_boundary(exported, speaker_corpus, tmp_path, capsys):
    ckpt, out = exported
    base = ["privacy", "--corpus", str(speaker_corpus), "--out", str(tmp_path / "r")]

    def fails(args, message):
        assert veil_main(base + args) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err

    fails(["--artifact", str(tmp_path)], f"{tmp_path}: no manifest.json")
    fails(["--artifact", str(out), "--backend", "coreml"], "export has no coreml artifact")
    fails(["--artifact", str(out), "--layers", "2"], "an exported prefix emits only its split layer (1)")
    tampered = tmp_path / "tampered"
    shutil.copytree(out, tampered)
    with open(tampered / "prefix-k1-fp32.tflite", "ab") as f:
        f.write(b"\0")
    fails(["--artifact", str(tampered)], f"{tampered / 'prefix-k1-fp32.tflite'}: sha256 differs from manifest.json")
    bad = tmp_path / "bad"
    shutil.copytree(out, bad)
    (bad / "manifest.json").write_text("{}")
    fails(["--artifact", str(bad)], f"{bad / 'manifest.json'}: not a Veil export manifest")
    # Core ML cannot run off macOS: it is recorded as needs-macos, never attacked; alone it is an error
    if platform.system() == "Darwin":
        return
    ios = tmp_path / "ios"  # a real Core ML package of the same checkpoint, added to the android export
    assert export_main(["--checkpoint", str(ckpt), "--target", "ios", "--recipe", "fp16", "--out", str(ios),
                        "--corpus", str(speaker_corpus), "--no-parity"]) == 0
    capsys.readouterr()  # the export's progress
    with_coreml = tmp_path / "with-coreml"
    shutil.copytree(out, with_coreml)
    pkg = with_coreml / "prefix-k1-fp16.mlpackage"
    shutil.copytree(ios / pkg.name, pkg)
    manifest = json.loads((with_coreml / "manifest.json").read_text())
    (entry,) = json.loads((ios / "manifest.json").read_text())["artifacts"]
    assert entry["sha256"] == tree_sha256(pkg)
    manifest["artifacts"].append(entry)
    (with_coreml / "manifest.json").write_text(json.dumps(manifest))
    runnable, skipped = load_runners(read_export(with_coreml))
    assert sorted(p.artifact.backend for p, _ in runnable) == ["executorch", "litert"]
    assert [(s["backend"], s["status"]) for s in skipped] == [("coreml", "needs-macos")]
    fails(["--artifact", str(with_coreml), "--backend", "coreml"], "needs-macos: prefix-k1-fp16.mlpackage")
