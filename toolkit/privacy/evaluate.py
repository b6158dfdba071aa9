"""`veil privacy`: how much speaker identity leaks from a model's embeddings, per layer.

For every requested layer and model (the anonymized checkpoint, and the baseline when given):
- closed set (semi-informed): pooled LR and MLP trained on 60 % of each eval speaker's utterances of *this
  model's* embeddings, tested on the other 40 %;
- open set (semi-informed): an x-vector attacker trained by speaker classification on *this model's*
  embeddings of the ASR training speakers, scored on cosine trials among the unseen eval speakers (EER);
- ignorant (with a baseline): the same attackers trained on the baseline's embeddings, applied to the
  anonymized model's embeddings.
The headline is the strongest (semi-informed) attacker; chance is reported beside every accuracy.
"""
from __future__ import annotations

import json
import platform
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError
from toolkit.model.checkpoint import file_sha256, load_checkpoint
from toolkit.privacy.attackers import (closed_set_attack, open_set_attack, train_xvector, utterance_split)
from toolkit.privacy.embeddings import layer_embeddings


def parse_layers(spec: str, n_blocks: int) -> list[int]:
    if spec == "all":
        return list(range(0, n_blocks + 1))
    try:
        layers = sorted({int(x) for x in spec.split(",")})
    except ValueError:
        raise VeilError(f"--layers must be 'all' or comma-separated block indices, got {spec!r}") from None
    bad = [k for k in layers if not 0 <= k <= n_blocks]
    if bad:
        raise VeilError(f"--layers {bad} outside 0..{n_blocks} (0 = log-mel input)")
    return layers


def _select(frames, idx):
    return [frames[i] for i in idx]


def attack_model(emb_eval: dict, emb_train: dict, eval_spk: list[str], train_spk: list[str], layers: list[int],
                 seed: int, xvector_epochs: int, progress=print) -> tuple[dict, dict]:
    """Semi-informed attacks on one model's embeddings; returns (results per layer, fitted x-vectors)."""
    tr, te = utterance_split(eval_spk, seed=seed)
    results, xvectors = {}, {}
    for k in layers:
        t0 = time.time()
        row = {}
        for kind in ("lr", "mlp"):
            row[f"closed_{kind}"] = closed_set_attack(_select(emb_eval[k], tr), _select(eval_spk, tr),
                                                      _select(emb_eval[k], te), _select(eval_spk, te), kind, seed)
        xv = train_xvector(emb_train[k], train_spk, epochs=xvector_epochs, seed=seed)
        row["open_xvector"] = open_set_attack(xv, emb_eval[k], eval_spk)
        row["closed_best"] = max(row["closed_lr"]["accuracy"], row["closed_mlp"]["accuracy"])
        results[k] = row
        xvectors[k] = xv
        progress(f"  layer {k}: closed-set LR {row['closed_lr']['accuracy']:.1f} %  MLP "
                 f"{row['closed_mlp']['accuracy']:.1f} %  (chance {row['closed_lr']['chance']:.1f} %)  "
                 f"x-vector EER {row['open_xvector']['eer']:.1f} %   [{time.time() - t0:.0f} s]")
    return results, xvectors


def ignorant_attacks(base_eval: dict, anon_eval: dict, base_xv: dict, eval_spk: list[str], layers, seed) -> dict:
    """Attackers fitted on baseline embeddings, applied to the anonymized model's embeddings."""
    tr, te = utterance_split(eval_spk, seed=seed)
    out = {}
    for k in layers:
        row = {}
        for kind in ("lr", "mlp"):
            row[f"closed_{kind}"] = closed_set_attack(_select(base_eval[k], tr), _select(eval_spk, tr),
                                                      _select(anon_eval[k], te), _select(eval_spk, te), kind, seed)
        row["open_xvector"] = open_set_attack(base_xv[k], anon_eval[k], eval_spk)
        out[k] = row
    return out


def run_privacy(checkpoint: Path, baseline: Path | None, corpus: Path, layers_spec: str, out_dir: Path,
                train_utts_per_speaker: int = 10, xvector_epochs: int = 30, seed: int = 0,
                eval_limit: int = 0, progress: bool = True) -> dict:
    log = print if progress else (lambda *a, **k: None)
    models = {"anonymized": checkpoint}
    if baseline:
        models = {"baseline": baseline, **models}
    loaded = {name: load_checkpoint(path) for name, path in models.items()}
    n_blocks = {m.cfg.n_blocks for m, _ in loaded.values()}
    if len(n_blocks) != 1:
        raise VeilError(f"{checkpoint}: baseline and anonymized models have different depths {sorted(n_blocks)}")
    layers = parse_layers(layers_spec, n_blocks.pop())

    eval_utts = read_librispeech(corpus / "eval-speakers")
    if eval_limit:
        eval_utts = eval_utts[:eval_limit]
    by_spk: dict[str, list] = {}
    for u in read_librispeech(corpus / "train"):
        by_spk.setdefault(u.speaker, []).append(u)
    train_utts = [u for s in sorted(by_spk) for u in by_spk[s][:train_utts_per_speaker]]
    if len({u.speaker for u in eval_utts}) < 2 or len(by_spk) < 2:
        raise VeilError(f"{corpus}: privacy evaluation needs at least 2 eval and 2 training speakers")
    eval_data = AudioSet.load(eval_utts, "loading eval-speakers", progress)
    train_data = AudioSet.load(train_utts, "loading attacker training set", progress)
    eval_spk = [u.speaker for u in eval_utts]
    train_spk = [u.speaker for u in train_utts]

    report = {"command": "veil " + shlex.join(sys.argv[1:]), "host": platform.node(),
              "corpus": str(corpus), "layers": layers, "seed": seed,
              "eval_speakers": len(set(eval_spk)), "eval_utterances": len(eval_utts),
              "attacker_train_speakers": len(set(train_spk)), "attacker_train_utterances": len(train_utts),
              "models": {}, "ignorant": {}}
    embs, xvs = {}, {}
    for name, (model, config) in loaded.items():
        log(f"{name}: {models[name]}")
        emb_eval = layer_embeddings(model, eval_data, layers, progress=progress)
        emb_train = layer_embeddings(model, train_data, layers, progress=progress)
        res, xv = attack_model(emb_eval, emb_train, eval_spk, train_spk, layers, seed, xvector_epochs, log)
        embs[name], xvs[name] = emb_eval, xv
        report["models"][name] = {"checkpoint": str(models[name]), "sha256": file_sha256(models[name]),
                                  "grl_layers": model.cfg.grl_layers, "split_layer": model.cfg.split_layer,
                                  "layers": {str(k): v for k, v in res.items()}}
    if baseline:
        ign = ignorant_attacks(embs["baseline"], embs["anonymized"], xvs["baseline"], eval_spk, layers, seed)
        report["ignorant"] = {str(k): v for k, v in ign.items()}
    write_report(report, out_dir)
    return report


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "privacy.json").write_text(json.dumps(report, indent=1) + "\n")
    lines = ["# Speaker leakage per layer", "",
             f"{report['eval_speakers']} unseen speakers, {report['eval_utterances']} utterances; x-vector "
             f"trained on {report['attacker_train_speakers']} other speakers. Chance (closed set) = "
             f"{100 / report['eval_speakers']:.1f} %. Higher EER = more private (50 % = no information).", "",
             "| model | layer | closed-set LR % | closed-set MLP % | x-vector EER % | minDCF |",
             "|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        for k, row in m["layers"].items():
            lines.append(f"| {name} | {k} | {row['closed_lr']['accuracy']:.1f} | {row['closed_mlp']['accuracy']:.1f} | "
                         f"{row['open_xvector']['eer']:.1f} | {row['open_xvector']['min_dcf']:.3f} |")
    if report.get("ignorant"):
        lines += ["", "Ignorant attacker (fitted on baseline embeddings, applied to anonymized ones):", "",
                  "| layer | closed-set LR % | closed-set MLP % | x-vector EER % |", "|---|---|---|---|"]
        for k, row in report["ignorant"].items():
            lines.append(f"| {k} | {row['closed_lr']['accuracy']:.1f} | {row['closed_mlp']['accuracy']:.1f} | "
                         f"{row['open_xvector']['eer']:.1f} |")
    (out_dir / "privacy.md").write_text("\n".join(lines) + "\n")
    _plot(report, out_dir / "privacy.png")


def _plot(report: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for name, m in report["models"].items():
        ks = [int(k) for k in m["layers"]]
        a1.plot(ks, [m["layers"][str(k)]["closed_best"] for k in ks], "o-", label=name)
        a2.plot(ks, [m["layers"][str(k)]["open_xvector"]["eer"] for k in ks], "o-", label=name)
    a1.axhline(100 / report["eval_speakers"], ls="--", c="gray", label="chance")
    a2.axhline(50, ls="--", c="gray", label="no information")
    a1.set(xlabel="layer (0 = log-mel)", ylabel="closed-set accuracy % (best of LR, MLP)", ylim=(0, 102))
    a2.set(xlabel="layer (0 = log-mel)", ylabel="x-vector EER %", ylim=(0, 55))
    for a in (a1, a2):
        a.grid(alpha=0.3)
        a.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
