"""Short real training runs: the loss goes down, resume continues, torchrun (2 CPU processes, gloo) works."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import torch

from toolkit.data.dataset import AudioSet, collate
from toolkit.data.librispeech import read_librispeech
from toolkit.model.checkpoint import load_checkpoint
from toolkit.text.tokenizer import CharTokenizer
from toolkit.training.loop import TrainConfig, compute_losses, train
from tests.conftest import small_config

SMALL_FLAGS = ["--blocks", "2", "--d-model", "64", "--heads", "4", "--split-layer", "1",
               "--subsampling-channels", "16", "--chunk-samples", "16000", "--batch-seconds", "20",
               "--dev-utts", "4", "--warmup", "5", "--lr", "3e-3"]


@torch.no_grad()
def _train_loss(ckpt: Path, corpus: Path) -> float:
    model, config = load_checkpoint(ckpt)
    utts = read_librispeech(corpus / "train")
    data = AudioSet.load(utts, progress=False)
    tok = CharTokenizer.from_config(config["tokenizer"])
    pcm, lengths = collate(data.pcm)
    ctc, _, _ = compute_losses(model, pcm, lengths, [torch.tensor(tok.encode(u.text)) for u in utts], None)
    return ctc.item()


def test_thirty_second_run_lowers_loss_and_resumes(tiny_corpus, tmp_path):
    out = tmp_path / "run"
    cfg = TrainConfig(corpus=str(tiny_corpus), out=str(out), steps=1, lr=3e-3, warmup=5, eval_every=1000,
                      max_batch_seconds=20, dev_utts=4, threads=2, model=small_config(grl_layers=[1]))
    train(cfg)
    before = _train_loss(out / "last.safetensors", tiny_corpus)
    cfg.steps = 60  # about 30 seconds on 2 cores (a step count, not a clock, so a loaded machine can't fail it)
    train(cfg)
    after = _train_loss(out / "last.safetensors", tiny_corpus)
    prov = json.loads((out / "last.json").read_text())["provenance"]
    assert prov["steps"] == 60  # resumed from step 1 and trained on
    assert after < 0.8 * before, (before, after)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("speaker_ce_1" in row for row in log) and any("dev_cer" in row for row in log)


def test_torchrun_two_processes_gloo(tiny_corpus, tmp_path):
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or shutil.which("torchrun")
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([torchrun, "--standalone", "--nproc_per_node", "2", "-m", "toolkit.cli", "train",
                        "--corpus", str(tiny_corpus), "--out", str(out), "--grl-layer", "1", "--steps", "4",
                        "--eval-every", "4", *SMALL_FLAGS], capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    prov = json.loads((out / "last.json").read_text())["provenance"]
    assert prov["world_size"] == 2 and prov["steps"] == 4
    model, _ = load_checkpoint(out / "last.safetensors")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_cli_train_errors(tiny_corpus, tmp_path):
    def veil(*args):
        return subprocess.run([sys.executable, "-m", "toolkit.cli", "train", *args], capture_output=True, text=True)
    r = veil("--out", str(tmp_path / "x"), "--no-grl", "--grl-layer", "2")
    assert r.returncode == 2 and "contradict" in r.stderr
    r = veil("--out", str(tmp_path / "x"), "--grl-layer", "9")
    assert r.returncode == 2 and "GRL layer 9 is outside 1..6" in r.stderr
    r = veil("--out", str(tmp_path / "x"), "--corpus", str(tmp_path / "none"), "--no-grl")
    assert r.returncode == 2 and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_time_budget_fits_the_schedule(tiny_corpus, tmp_path, monkeypatch):
    """--time-budget: after the rate probe, --steps (and with it the cosine schedule) is refitted to the budget,
    recorded in the provenance, and the run ends at that step with a checkpoint."""
    import toolkit.training.loop as loop
    monkeypatch.setattr(loop, "RATE_PROBE_STEPS", 3)
    out = tmp_path / "run"
    # 18 s: the six probe steps must leave budget to fit on a shared 2-core machine (9 s did not under load)
    cfg = TrainConfig(corpus=str(tiny_corpus), out=str(out), steps=100000, lr=3e-3, warmup=2, eval_every=100000,
                      max_batch_seconds=20, dev_utts=2, threads=2, time_budget_min=0.3,
                      model=small_config(grl_layers=[]))
    res = train(cfg)
    prov = json.loads((out / "last.json").read_text())["provenance"]
    assert 6 < prov["train_config"]["steps"] < 100000
    assert res["step"] == prov["steps"] == prov["train_config"]["steps"]
    assert loop.lr_at(prov["steps"] - 1, cfg, prov["train_config"]["steps"]) < 0.1 * cfg.lr  # the cosine ended with the budget
    assert cfg.steps == 100000  # the run fitted its own schedule; the config it was given is unchanged
