"""`veil sweep`: plan and commands, reuse of finished runs, evaluation, results JSON/MD, README table, log."""
from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from tests.conftest import small_config
from toolkit.cli import main as veil_main
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError
from toolkit.model.asr import VeilModel
from toolkit.model.checkpoint import save_checkpoint
from experiments import grl_sweep
from experiments.attempts import append_attempt, entry_from_privacy, read_log, render_attempts
from toolkit.text.tokenizer import CharTokenizer

FAST = ["--xvector-epochs", "2", "--attacker-utts", "2"]
TINY_TRAIN = ("--blocks 2 --d-model 32 --heads 2 --subsampling-channels 8 --chunk-samples 16000 --split-layer 1 "
              "--eval-every 2 --dev-utts 2 --batch-seconds 8 --warmup 1")


def make_run(root, name, grl, steps, seed=0, planned=None):
    torch.manual_seed(seed)
    model = VeilModel(small_config(grl_layers=grl, split_layer=2))
    prov = {"steps": steps, "command": f"veil train --out elsewhere/{name} (a run made on another machine)",
            "train_config": {"steps": planned or steps}}
    save_checkpoint(root / name / "last.safetensors", model, CharTokenizer(), list("abcd"), prov)


@pytest.fixture()
def runs(tmp_path):
    root = tmp_path / "sweep"
    make_run(root, "baseline", [], 5, seed=0)
    make_run(root, "grl-1", [1], 5, seed=1)
    make_run(root, "grl-2", [2], 5, seed=2)
    return root


def test_dry_run_prints_the_plan_and_writes_nothing(tiny_corpus, runs, tmp_path, capsys):
    shutil.rmtree(runs / "grl-2")
    make_run(runs, "grl-1", [1], 3, seed=1, planned=5)  # stopped early: resumed by the same command
    results = tmp_path / "res.json"
    rc = veil_main(["sweep", "--corpus", str(tiny_corpus), "--out", str(runs), "--layers", "1..2", "--steps", "5",
                    "--train-arg", "--blocks 2", "--train-arg=--speaker-head=tdnn", "--init-from",
                    str(runs / "baseline" / "last.safetensors"), "--results", str(results), "--dry-run"])
    out = capsys.readouterr().out
    assert rc == 0
    lines = {line.split()[0]: line for line in out.splitlines() if line.startswith("  ") and line.split()}
    assert "reuse (steps 5)" in lines["baseline"] and "resume (steps 3)" in lines["grl-1"] and " train " in lines["grl-2"]
    assert (f"veil train --corpus {tiny_corpus} --out {runs / 'grl-2'} --grl-layer 2 --steps 5 --init-from "
            f"{runs / 'baseline' / 'last.safetensors'} --blocks 2 --speaker-head=tdnn") in lines["grl-2"]
    assert "--no-grl" in lines["baseline"]
    assert not (runs / "grl-2").exists() and not results.exists()


def test_bad_requests_are_one_line_errors(tiny_corpus, runs, capsys):
    base = ["sweep", "--corpus", str(tiny_corpus), "--out", str(runs), "--layers", "1..2", "--dry-run"]
    cases = [(["--train-arg", "--out x"], "the sweep sets --out itself"),
             (["--layers", "0..2"], "--layers 0..2: [0] outside 1..6"),
             (["--layers", "a..b"], "--layers must look like"),
             (["--parallel", "0"], "--parallel must be at least 1"),
             (["--attackers", "fast"], "the sweep's table needs Veil's original attackers (pooled-lr, pooled-mlp, "
                                       "x-vector); add x-vector"),
             (["--attackers", "legacy,gmm"], "unknown attacker 'gmm'"),
             (["--ecapa-steps", "0"], "--ecapa-steps must be at least 1")]
    for extra, message in cases:
        assert veil_main(base + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    make_run(runs, "grl-2", [1], 5)  # a run whose GRL sits elsewhere is not the grl-2 model
    assert veil_main(base + ["--train-arg", "--blocks 2"]) == 2
    err = capsys.readouterr().err
    assert f"{runs / 'grl-2' / 'last.json'}: run grl-2 has its GRL at [1]; expected 2" in err
    shutil.rmtree(runs / "grl-2")
    assert veil_main(base + ["--train-arg", "--blocks 2", "--skip-train"]) == 2
    assert f"--skip-train: {runs / 'grl-2'} holds no trained run" in capsys.readouterr().err


def test_skip_train_evaluates_premade_runs_and_refreshes_the_readme(tiny_corpus, runs, tmp_path, capsys):
    results = tmp_path / "results" / "privacy-sweep-test.json"
    readme = tmp_path / "README.md"
    readme.write_text("# Project\n\nintro\n\n## Later section\n\ntext\n")
    args = ["sweep", "--corpus", str(tiny_corpus), "--out", str(runs), "--layers", "1..2", "--steps", "5",
            "--train-arg", "--blocks 2", "--skip-train", "--results", str(results), "--readme", str(readme), *FAST]
    assert veil_main(args) == 0
    report = json.loads(results.read_text())
    names = [m["name"] for m in report["models"]]
    assert names == ["baseline", "grl-1", "grl-2"]
    assert set(report["baseline_layers"]) == {"1", "2"}
    base, g1 = report["models"][0], report["models"][1]
    assert set(g1["privacy"]) == {"1"} and report["models"][2]["grl_layer"] == 2
    assert report["train_commands"]["grl-1"].startswith("veil train --out elsewhere/grl-1")
    assert "--grl-layer 1" in g1["planned_command"] and not g1["trained_by_sweep"]
    v = g1["vs_baseline"]
    assert v["wer_rel"] == pytest.approx(100 * (g1["test"]["wer"] - base["test"]["wer"]) / base["test"]["wer"])
    b_lr = base["privacy"]["1"]["closed_lr"]["accuracy"]
    assert b_lr > 0 and v["closed_lr_rel"] == pytest.approx(100 * (g1["privacy"]["1"]["closed_lr"]["accuracy"] - b_lr) / b_lr)
    assert report["paper"]["speaker_accuracy_rel"] == -33.0 and report["paper"]["wer_rel"] == -6.2
    assert g1["test"]["utterances"] == len(read_librispeech(tiny_corpus / "test")) and g1["privacy"]["1"]["closed_lr"]["n_speakers"] == 2
    md = results.with_suffix(".md").read_text()
    assert "| grl-1 | 1 | 5 |" in md and "| paper (Jalal et al." in md and "-33.0 %" in md
    text = readme.read_text()
    assert text.startswith("# Project\n\nintro\n") and text.count(grl_sweep.MARK_START) == 1
    assert "| grl-2 | 2 | 5 |" in text
    # a second run evaluates nothing again and refreshes (not duplicates) the README table
    readme.write_text(text.replace("| grl-2 | 2 | 5 |", "| stale row |") + "\ntrailer\n")
    capsys.readouterr()
    assert veil_main(args) == 0
    assert capsys.readouterr().out.count(": cached (") == 3
    text2 = readme.read_text()
    assert text2.count(grl_sweep.MARK_START) == 1 and "stale row" not in text2 and text2.endswith("\ntrailer\n")
    again = json.loads(results.read_text())
    assert [m["privacy"] for m in again["models"]] == [m["privacy"] for m in report["models"]]
    # the Markdown can be regenerated from the JSON alone
    md = results.with_suffix(".md").read_text()
    results.with_suffix(".md").unlink()
    assert veil_main(["sweep", "--render", str(results)]) == 0
    assert results.with_suffix(".md").read_text() == md
    assert veil_main(["sweep", "--render", str(tmp_path / "nope.json")]) == 2
    results.with_suffix(".md").unlink()  # `veil render` is the one re-render verb for every result
    assert veil_main(["render", str(results), "--readme", str(readme)]) == 0
    assert results.with_suffix(".md").read_text() == md and readme.read_text() == text2


def test_sweep_trains_missing_runs_by_subprocess(tiny_corpus, tmp_path):
    out = tmp_path / "trained"
    results = tmp_path / "r.json"
    assert veil_main(["sweep", "--corpus", str(tiny_corpus), "--out", str(out), "--layers", "1", "--steps", "2",
                      "--parallel", "2", "--train-arg", TINY_TRAIN, "--results", str(results), *FAST]) == 0
    report = json.loads(results.read_text())
    for m in report["models"]:
        prov = json.loads((out / m["name"] / "last.json").read_text())["provenance"]
        assert prov["steps"] == 2 and m["trained_by_sweep"] and m["train_command"] == prov["command"]
        assert f"--threads {max(1, os.cpu_count() // 2)}" in prov["command"]  # --parallel 2: no oversubscription
    assert "--no-grl" in report["train_commands"]["baseline"]
    assert "--grl-layer 1" in report["train_commands"]["grl-1"]
    stamp = (out / "grl-1" / "last.safetensors").stat().st_mtime_ns
    assert veil_main(["sweep", "--corpus", str(tiny_corpus), "--out", str(out), "--layers", "1", "--steps", "2",
                      "--train-arg", TINY_TRAIN, "--results", str(results), *FAST]) == 0
    assert (out / "grl-1" / "last.safetensors").stat().st_mtime_ns == stamp  # reached its steps: reused


def test_attempts_log_appends_and_renders(tmp_path):
    privacy = tmp_path / "privacy.json"
    row = lambda lr, mlp, e: {"closed_lr": {"accuracy": lr, "chance": 3.125}, "closed_mlp": {"accuracy": mlp},
                              "open_xvector": {"eer": e}}
    privacy.write_text(json.dumps({"models": {
        "baseline": {"checkpoint": "b.safetensors", "grl_layers": [], "layers": {"3": row(95.9, 93.9, 6.1)}},
        "anonymized": {"checkpoint": "a.safetensors", "grl_layers": [3], "layers": {"3": row(95.1, 94.5, 6.1)}}}}))
    metrics = tmp_path / "m.json"
    metrics.write_text(json.dumps({"results": {"test": {"wer": 40.065}}}))
    log = tmp_path / "privacy-attempts.json"
    e = entry_from_privacy(privacy, "plain-grl-k3", "plain GRL", "fails", metrics=metrics, train_command="veil train x")
    assert e["layer"] == 3 and e["probe"]["lr"] == 95.1 and e["probe"]["baseline_lr"] == 95.9
    assert e["eer"] == {"attacker": "x-vector", "model": 6.1, "baseline": 6.1} and e["wer"]["model"] == 40.065
    append_attempt(log, e)
    with pytest.raises(Exception, match="already logged"):
        append_attempt(log, e)
    assert veil_main(["attempts", "add", str(privacy), "--name", "second", "--tried", "t", "--verdict", "v",
                      "--log", str(log)]) == 0
    assert [x["name"] for x in read_log(log)] == ["plain-grl-k3", "second"]
    md = log.with_suffix(".md").read_text()
    assert md == render_attempts(read_log(log))
    assert "| plain-grl-k3 | " in md and "95.1 (95.9)" in md and "`veil train x`" in md
    log.with_suffix(".md").unlink()
    assert veil_main(["render", str(log)]) == 0 and log.with_suffix(".md").read_text() == md
    assert veil_main(["attempts", "add", str(tmp_path / "missing.json"), "--name", "n", "--tried", "t",
                      "--verdict", "v", "--log", str(log)]) == 2


def test_attempt_takes_the_baseline_from_another_report(tmp_path):
    row = lambda lr, e: {"closed_lr": {"accuracy": lr, "chance": 3.125}, "closed_mlp": {"accuracy": lr - 1},
                         "open_xvector": {"eer": e}}
    alone = tmp_path / "alone.json"
    alone.write_text(json.dumps({"seed": 0, "eval_utterances": 1280, "models": {
        "anonymized": {"checkpoint": "a.safetensors", "grl_layers": [4], "layers": {"4": row(21.3, 35.1)}}}}))
    layers = tmp_path / "layers.json"
    layers.write_text(json.dumps({"seed": 0, "eval_utterances": 1280, "models": {
        "baseline": {"checkpoint": "b.safetensors", "grl_layers": [], "layers": {"3": row(96.3, 5.3),
                                                                                   "4": row(86.9, 11.3)}}}}))
    e = entry_from_privacy(alone, "s4", "t", "v", layer=4, baseline_privacy=layers)
    assert e["probe"]["baseline_lr"] == 86.9 and e["eer"]["baseline"] == 11.3
    assert e["baseline_source"] == str(layers) and e["source"] == str(alone)
    assert entry_from_privacy(alone, "s4", "t", "v", layer=4)["probe"]["baseline_lr"] is None
    other = json.loads(layers.read_text())
    del other["models"]["baseline"]["layers"]["4"]
    (tmp_path / "only3.json").write_text(json.dumps(other))
    with pytest.raises(VeilError, match="no result of model 'baseline' at layer 4"):
        entry_from_privacy(alone, "s4", "t", "v", layer=4, baseline_privacy=tmp_path / "only3.json")
    # a baseline checkpoint attacked alone is named "anonymized" in its report
    (tmp_path / "alone-base.json").write_text(json.dumps({**json.loads(layers.read_text()), "models": {
        "anonymized": json.loads(layers.read_text())["models"]["baseline"]}}))
    e = entry_from_privacy(alone, "s4", "t", "v", layer=4, baseline_privacy=tmp_path / "alone-base.json",
                           baseline_model="anonymized")
    assert e["probe"]["baseline_lr"] == 86.9
    other = json.loads(layers.read_text())
    other["seed"] = 1
    layers.write_text(json.dumps(other))
    with pytest.raises(VeilError, match="other settings"):
        entry_from_privacy(alone, "s4", "t", "v", layer=4, baseline_privacy=layers)
