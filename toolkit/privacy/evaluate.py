"""`veil privacy`: how much speaker identity leaks from a model's embeddings, per layer.

For every requested layer and every attacked source (the anonymized checkpoint, or with ``--artifact`` each
exported prefix run in its real runtime; and the baseline checkpoint when given) the attacker suite
(:mod:`toolkit.privacy.suite`) runs on *this source's* embeddings:
- closed set: attackers trained on 60 % of each eval speaker's utterances, tested on the other 40 %;
- open set: informed attackers trained on this source's embeddings of the ASR training speakers, scored on
  trials among the unseen eval speakers (EER);
- ignorant (with a baseline): the baseline's fitted original attackers applied to the attacked source.
The headline is the strongest attacker of each task, named; chance is reported beside every accuracy.
"""
from __future__ import annotations

import json
import os
import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError
from toolkit.model.checkpoint import atomic_write_bytes, file_sha256, load_checkpoint
from toolkit.privacy.attackers import open_set_attack, utterance_split
from toolkit.privacy.embeddings import artifact_embeddings, layer_embeddings
from toolkit.privacy.suite import LEGACY, Embeddings, SuiteOptions, describe_attackers, run_suite

REPORT_FORMAT = "veil-privacy/3"


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


# ---- the material: audio of the unseen eval speakers and of the x-vector's training speakers --------------

@dataclass
class AttackData:
    """Audio every attack works on, loaded once (a sweep attacks many models with it)."""
    corpus: Path
    eval_data: AudioSet
    train_data: AudioSet
    eval_spk: list[str]
    train_spk: list[str]
    split: tuple[list[int], list[int]] = field(default=None)

    def describe(self) -> dict:
        return {"corpus": str(self.corpus), "eval_speakers": len(set(self.eval_spk)),
                "eval_utterances": len(self.eval_spk), "attacker_train_speakers": len(set(self.train_spk)),
                "attacker_train_utterances": len(self.train_spk)}


def load_attack_data(corpus: Path, train_utts_per_speaker: int | None = None, eval_limit: int = 0, seed: int = 0,
                     progress: bool = True) -> AttackData:
    """The eval speakers' utterances (split 60/40 per speaker with ``seed``) and, for the informed attackers,
    the first ``train_utts_per_speaker`` utterances (None: all) of every ASR training speaker."""
    corpus = Path(corpus)
    for split in ("eval-speakers", "train"):
        if not (corpus / split).is_dir():
            raise VeilError(f"{corpus / split}: corpus split not found (privacy needs eval-speakers and train)")
    if train_utts_per_speaker is not None and train_utts_per_speaker < 1:
        raise VeilError(f"--attacker-utts must be at least 1, got {train_utts_per_speaker}")
    eval_utts = read_librispeech(corpus / "eval-speakers")
    if eval_limit:
        eval_utts = eval_utts[:eval_limit]
    by_spk: dict[str, list] = {}
    for u in read_librispeech(corpus / "train"):
        by_spk.setdefault(u.speaker, []).append(u)
    train_utts = [u for s in sorted(by_spk) for u in by_spk[s][:train_utts_per_speaker or None]]
    if len({u.speaker for u in eval_utts}) < 2 or len(by_spk) < 2:
        raise VeilError(f"{corpus}: privacy evaluation needs at least 2 eval and 2 training speakers")
    eval_spk = [u.speaker for u in eval_utts]
    return AttackData(corpus, AudioSet.load(eval_utts, "loading eval-speakers", progress),
                      AudioSet.load(train_utts, "loading attacker training set", progress),
                      eval_spk, [u.speaker for u in train_utts], utterance_split(eval_spk, seed=seed))


# ---- attacks ------------------------------------------------------------------------------------------------

def legacy_options(xvector_epochs: int = 30) -> SuiteOptions:
    """Veil's original three attackers (pooled LR, pooled MLP, x-vector): what sweeps ran before the suite."""
    return SuiteOptions(attackers="legacy", xvector_epochs=xvector_epochs)


def attack_layer(emb_eval, emb_train, data: AttackData, seeds: list[int], options: SuiteOptions,
                 log=None) -> tuple[dict, dict]:
    """The suite on one layer's embeddings, once per attacker seed: (results row, the first seed's fitted
    legacy attackers by name). The row has ``suite`` (every attacker, first seed), ``strongest`` (the best
    closed- and open-set attacker, named), ``spread`` (2+ seeds) and, where Veil's original attackers ran,
    their old keys (``closed_lr``, ``closed_mlp``, ``closed_best``, ``open_xvector``, ``seed_spread``)."""
    out, ctx = run_suite(Embeddings(emb_eval, emb_train), data.eval_spk, data.train_spk, data.split, options,
                         seeds, log)
    row = dict(out)
    suite = out["suite"]
    if "pooled-lr" in suite:
        row["closed_lr"] = {"attacker": "pooled-lr", **suite["pooled-lr"]}
    if "pooled-mlp" in suite:
        row["closed_mlp"] = {"attacker": "pooled-mlp", **suite["pooled-mlp"]}
    if "closed_lr" in row and "closed_mlp" in row:
        row["closed_best"] = max(row["closed_lr"]["accuracy"], row["closed_mlp"]["accuracy"])
    if "x-vector" in suite:
        row["open_xvector"] = {"attacker": "x-vector", **suite["x-vector"]}
    if "spread" in out and all(n in suite for n in LEGACY):
        row["seed_spread"] = legacy_seed_spread(out["spread"])
    return row, ctx.fitted


def legacy_seed_spread(spread: dict) -> dict:
    """The suite's spread of Veil's original attackers in the veil-privacy/2 layout."""
    out = {"seeds": spread["seeds"]}
    for key, name in (("closed_lr", "pooled-lr"), ("closed_mlp", "pooled-mlp"), ("eer", "x-vector")):
        a = spread["attackers"][name]
        out[key], out[f"{key}_mean"], out[f"{key}_sd"] = a["values"], a["mean"], a["sd"]
    return out


def _headline(row: dict) -> str:
    parts = []
    for task, key, unit in (("closed", "accuracy", "%"), ("open", "eer", "% EER")):
        best = row["strongest"].get(task)
        if not best:
            continue
        text = f"{'closed' if task == 'closed' else 'open'} set: {best['attacker']} {best[key]:.1f} {unit}"
        sp = (row.get("spread") or {}).get("strongest", {}).get(task)
        if sp:
            text += f" (over seeds: {sp['attacker']} {sp['mean']:.1f} ± {sp['sd']:.1f})"
        parts.append(text)
    chance = next((r["chance"] for r in row["suite"].values() if "chance" in r), None)
    return "strongest " + "; ".join(parts) + (f"  (chance {chance:.1f} %)" if chance else "")


def attack_model(emb_eval: dict, emb_train: dict, data: AttackData, layers: list[int], seed: int,
                 xvector_epochs: int, progress=print, attacker_seeds: int = 1,
                 options: SuiteOptions | None = None) -> tuple[dict, dict]:
    """The suite on one source's embeddings, per layer; returns (results per layer, {layer: fitted legacy
    attackers}). ``attacker_seeds`` > 1 repeats it with attackers seeded ``seed + 1, ...``; the headline
    numbers and the fitted attackers stay those of ``seed``. Without ``options``: Veil's original attackers."""
    options = options or legacy_options(xvector_epochs)
    seeds = list(range(seed, seed + attacker_seeds))
    results, fitted = {}, {}
    for k in layers:
        t0 = time.time()
        progress(f"  layer {k}: {len(options.names())} attackers, seeds {seeds}")
        row, fitted[k] = attack_layer(emb_eval[k], emb_train[k], data, seeds, options, progress)
        row["seconds"] = round(time.time() - t0, 1)
        results[k] = row
        progress(f"  layer {k}: {_headline(row)}   [{row['seconds']:.0f} s]")
    return results, fitted


def ignorant_attacks(base: dict, anon_eval: dict, data: AttackData, layers) -> dict:
    """The baseline's fitted legacy attackers (pooled LR/MLP, x-vector: fitted on baseline embeddings) applied
    to another source's embeddings. Layers where none of them ran are left out."""
    _, te = data.split
    out = {}
    for k in layers:
        row = {}
        for kind in ("lr", "mlp"):
            if f"pooled-{kind}" in base[k]:
                row[f"closed_{kind}"] = base[k][f"pooled-{kind}"].score(_select(anon_eval[k], te),
                                                                         _select(data.eval_spk, te))
        if "x-vector" in base[k]:
            row["open_xvector"] = open_set_attack(base[k]["x-vector"], anon_eval[k], data.eval_spk)
        if row:
            out[k] = row
    return out


def relative_change(value: float, reference: float) -> float | None:
    """(value − reference) / reference in percent; None without a usable reference."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


# ---- the recipe -------------------------------------------------------------------------------------------------

def checkpoint_embeddings(model, data: AttackData, layers: list[int], progress: bool = False) -> tuple[dict, dict]:
    """({layer: eval-speaker frames}, {layer: attacker-training-speaker frames}) of a float model."""
    return (layer_embeddings(model, data.eval_data, layers, progress=progress),
            layer_embeddings(model, data.train_data, layers, progress=progress))


def prefix_embeddings(prefix, runner, data: AttackData, progress: bool = False) -> tuple[list, list]:
    """(eval-speaker frames, attacker-training-speaker frames) of an exported prefix run in its runtime."""
    return (artifact_embeddings(runner, data.eval_data, prefix.chunk_samples, prefix.frame_samples, progress,
                                desc=f"{prefix.name} eval-speakers"),
            artifact_embeddings(runner, data.train_data, prefix.chunk_samples, prefix.frame_samples, progress,
                                desc=f"{prefix.name} attacker training set"))


def attack_checkpoint_layer(model, layer: int, data: AttackData, options: SuiteOptions | None = None,
                            seeds: list[int] = (0,), log=None) -> dict:
    """The suite on one layer of a float model (a ``VeilModel`` or a checkpoint path): one results row."""
    if not isinstance(model, torch.nn.Module):
        model = load_checkpoint(Path(model))[0]
    emb_eval, emb_train = checkpoint_embeddings(model, data, [layer])
    return attack_layer(emb_eval[layer], emb_train[layer], data, list(seeds), options or SuiteOptions(), log)[0]


def attack_artifact(export_dir: Path, data: AttackData, options: SuiteOptions | None = None,
                    seeds: list[int] = (0,), backend: str = "executorch", log=None) -> dict:
    """The suite on what an export folder's ``backend`` artifact emits, run chunk by chunk in its runtime."""
    from toolkit.privacy.artifact import load_runners, read_export
    (prefix, runner), = load_runners(read_export(Path(export_dir), [backend]))[0][:1]
    emb_eval, emb_train = prefix_embeddings(prefix, runner, data)
    return attack_layer(emb_eval, emb_train, data, list(seeds), options or SuiteOptions(), log)[0]


def run_privacy(checkpoint: Path | None, baseline: Path | None, corpus: Path, layers_spec: str | None,
                out_dir: Path, train_utts_per_speaker: int | None = None, xvector_epochs: int = 30, seed: int = 0,
                eval_limit: int = 0, progress: bool = True, artifact: Path | None = None,
                backends: list[str] | None = None, attacker_seeds: int = 1, options: SuiteOptions | None = None,
                threads: int | None = None) -> dict:
    """Attack a checkpoint's layers (or, with ``artifact``, an export folder's artifacts at their split
    layer), optionally beside a baseline checkpoint; write privacy.json/.md/.png into ``out_dir``.
    ``options``: the attacker suite (default: every attacker); ``threads``: torch and BLAS threads."""
    if attacker_seeds < 1:
        raise VeilError(f"--attacker-seeds must be at least 1, got {attacker_seeds}")
    if threads is not None and threads < 1:
        raise VeilError(f"--threads must be at least 1, got {threads}")
    options = options or SuiteOptions(xvector_epochs=xvector_epochs)
    options.names()  # an unknown attacker is an error before any slow work
    if threads is None:
        return _run_privacy(checkpoint, baseline, corpus, layers_spec, out_dir, train_utts_per_speaker, seed,
                            eval_limit, progress, artifact, backends, attacker_seeds, options)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            return _run_privacy(checkpoint, baseline, corpus, layers_spec, out_dir, train_utts_per_speaker, seed,
                                eval_limit, progress, artifact, backends, attacker_seeds, options)
    finally:
        torch.set_num_threads(previous)


def _run_privacy(checkpoint, baseline, corpus, layers_spec, out_dir, train_utts_per_speaker, seed, eval_limit,
                 progress, artifact, backends, attacker_seeds, options: SuiteOptions) -> dict:
    log = print if progress else (lambda *a, **k: None)
    started = time.time()
    sources: dict[str, dict] = {}  # name -> {"kind": "checkpoint"|"artifact", ...}
    loaded = {}
    skipped: list[dict] = []
    if baseline:
        loaded["baseline"] = load_checkpoint(baseline)[0]
        sources["baseline"] = {"kind": "checkpoint", "checkpoint": str(baseline), "sha256": file_sha256(baseline)}
    if artifact is not None:
        from toolkit.privacy.artifact import load_runners, read_export
        prefixes = read_export(Path(artifact), backends)
        k = prefixes[0].split_layer
        if layers_spec not in (None, str(k)):
            raise VeilError(f"--layers {layers_spec}: an exported prefix emits only its split layer ({k})")
        layers = [k]
        for model in loaded.values():
            if not 1 <= k <= model.cfg.n_blocks:
                raise VeilError(f"{baseline}: baseline has {model.cfg.n_blocks} blocks, the artifact's layer is {k}")
        runnable, skipped = load_runners(prefixes)
        for p, runner in runnable:
            name = "anonymized" if len(runnable) == 1 else p.name
            sources[name] = {"kind": "artifact", **p.describe(), "runtime": type(runner).__name__}
            loaded[name] = (p, runner)
    else:
        checkpoint = Path(checkpoint)
        model = load_checkpoint(checkpoint)[0]
        if baseline and loaded["baseline"].cfg.n_blocks != model.cfg.n_blocks:
            raise VeilError(f"{checkpoint}: baseline and anonymized models have different depths "
                            f"{sorted({loaded['baseline'].cfg.n_blocks, model.cfg.n_blocks})}")
        layers = parse_layers(layers_spec or "all", model.cfg.n_blocks)
        loaded["anonymized"] = model
        sources["anonymized"] = {"kind": "checkpoint", "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}

    data = load_attack_data(Path(corpus), train_utts_per_speaker, eval_limit, seed, progress)
    report = {"format": REPORT_FORMAT, "command": "veil " + shlex.join(sys.argv[1:]), "host": platform.node(),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              **data.describe(), "layers": layers, "seed": seed,
              "attacker_seeds": attacker_seeds, "xvector_epochs": options.xvector_epochs,
              "attacker_options": options.describe(), "attackers": describe_attackers(options.names()),
              "models": {}, "ignorant": {}}
    if artifact is not None:
        report["artifact"] = {"export_dir": str(artifact),
                              "attacked": [s for s in sources.values() if s["kind"] == "artifact"],
                              "not_run": skipped}
    embs, fitted = {}, {}
    for name, obj in loaded.items():
        t0 = time.time()
        src = sources[name]
        log(f"{name}: {src['path'] if src['kind'] == 'artifact' else src['checkpoint']}")
        if sources[name]["kind"] == "artifact":
            p, runner = obj
            emb_eval, emb_train = ({layers[0]: e} for e in prefix_embeddings(p, runner, data, progress))
            grl, split = None, p.split_layer
        else:
            emb_eval, emb_train = checkpoint_embeddings(obj, data, layers, progress)
            grl, split = obj.cfg.grl_layers, obj.cfg.split_layer
        t_emb = time.time() - t0
        log(f"  embeddings: {t_emb:.0f} s")
        res, fit = attack_model(emb_eval, emb_train, data, layers, seed, options.xvector_epochs, log,
                                attacker_seeds, options)
        embs[name], fitted[name] = emb_eval, fit
        report["models"][name] = {**sources[name], "grl_layers": grl, "split_layer": split,
                                  "embedding_seconds": round(t_emb, 1), "seconds": round(time.time() - t0, 1),
                                  "layers": {str(k): v for k, v in res.items()}}
    if baseline:
        for name in report["models"]:
            if name != "baseline":
                ign = ignorant_attacks(fitted["baseline"], embs[name], data, layers)
                report["ignorant"][name] = {str(k): v for k, v in ign.items()}
        _add_relative_changes(report)
    report["seconds"] = round(time.time() - started, 1)
    write_report(report, Path(out_dir))
    return report


def _add_relative_changes(report: dict) -> None:
    base = report["models"].get("baseline")
    if not base:
        return
    for name, m in report["models"].items():
        if name == "baseline":
            continue
        for k, row in m["layers"].items():
            b = base["layers"].get(k)
            if not b:
                continue
            vs = {}
            if "closed_best" in row and "closed_best" in b:
                vs.update(closed_lr_rel=relative_change(row["closed_lr"]["accuracy"], b["closed_lr"]["accuracy"]),
                          closed_mlp_rel=relative_change(row["closed_mlp"]["accuracy"], b["closed_mlp"]["accuracy"]),
                          closed_best_rel=relative_change(row["closed_best"], b["closed_best"]))
            if "open_xvector" in row and "open_xvector" in b:
                vs["eer_pp"] = row["open_xvector"]["eer"] - b["open_xvector"]["eer"]
            mine, theirs = row["strongest"], b["strongest"]
            if "closed" in mine and "closed" in theirs:
                vs["strongest_closed_rel"] = relative_change(mine["closed"]["accuracy"], theirs["closed"]["accuracy"])
            if "open" in mine and "open" in theirs:
                vs["strongest_eer_pp"] = mine["open"]["eer"] - theirs["open"]["eer"]
            row["vs_baseline"] = vs


# ---- reports ------------------------------------------------------------------------------------------------

def write_json(path: Path, obj) -> None:
    """Write JSON through a temporary file and a rename: a reader never sees half a report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def write_text(path: Path, text: str) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, text.encode())


def _pct(v) -> str:
    return "—" if v is None else f"{v:+.1f} %"


def _cell(task: str, r: dict) -> str:
    return f"{r['accuracy']:.1f}" if task == "closed" else f"{r['eer']:.1f}"


def _mean_sd(sp: dict | None) -> str:
    if not sp:
        return ""
    return f"{sp['mean']:.1f} ± {sp['sd']:.1f} (" + ", ".join(f"{v:.1f}" for v in sp["values"]) + ")"


def render_markdown(report: dict) -> str:
    chance = 100 / report["eval_speakers"]
    seeds = report.get("attacker_seeds", 1)
    lines = ["# Speaker leakage per layer", "",
             f"{report['eval_speakers']} unseen speakers, {report['eval_utterances']} utterances (closed set: "
             f"60 % of each speaker's utterances train, 40 % test; chance {chance:.1f} %). Open set: informed "
             f"attackers trained on the attacked source's embeddings of {report['attacker_train_speakers']} other "
             f"speakers ({report['attacker_train_utterances']} utterances), EER over trials among the unseen "
             f"speakers; higher EER = more private (50 % = no information). Every attacker is trained on the "
             f"embeddings of the source it attacks. {report.get('threads', '?')} threads, "
             f"{report['seconds']:.0f} s in all.", ""]
    art = report.get("artifact")
    if art:
        lines += [f"Attacked: the exported prefix of `{art['export_dir']}`, run chunk by chunk in its runtime:", ""]
        for a in art["attacked"]:
            lines.append(f"- `{a['file']}` — {a['backend']} {a['recipe']}, layer {a['split_layer']}, "
                         f"sha256 `{a['sha256'][:16]}…`, runtime {a['runtime']} (checkpoint sha256 "
                         f"`{(a['checkpoint'].get('sha256') or '?')[:16]}…`)")
        for a in art["not_run"]:
            lines.append(f"- `{a['file']}` — {a['backend']} {a['recipe']}: **{a['status']}**, not attacked "
                         f"(nothing was executed)")
        lines.append("")
    rows = [(name, k, row) for name, m in report["models"].items() for k, row in m["layers"].items()]
    lines += ["## Strongest attacker", "",
              "The best attacker of each task on each source, named"
              + (f"; over {seeds} attacker seeds the one with the best mean (mean ± sample sd, each seed), and "
                 "the best attacker of each seed (the stricter number)." if seeds > 1 else "."), "",
              "| model | layer | closed set: attacker | accuracy % | vs baseline | open set: attacker | EER % | "
              "vs baseline |" + (" closed, over seeds | per-seed best closed | open EER, over seeds | "
                                 "per-seed best EER |" if seeds > 1 else ""),
              "|---|---|---|---|---|---|---|---|" + ("---|---|---|---|" if seeds > 1 else "")]
    for name, k, row in rows:
        st, vs = row.get("strongest", {}), row.get("vs_baseline", {})
        c, o = st.get("closed"), st.get("open")
        eer_pp = vs.get("strongest_eer_pp")
        line = (f"| {name} | {k} | {c['attacker'] if c else '—'} | {_cell('closed', c) if c else '—'} | "
                f"{_pct(vs.get('strongest_closed_rel')) if vs else ''} | {o['attacker'] if o else '—'} | "
                f"{_cell('open', o) if o else '—'} | {'' if eer_pp is None else f'{eer_pp:+.1f} pp'} |")
        if seeds > 1:
            sp = (row.get("spread") or {}).get("strongest", {})
            cells = []
            for task in ("closed", "open"):
                t = sp.get(task)
                cells += ([f"{t['attacker']} {_mean_sd(t)}", f"{_mean_sd(t['per_seed_best'])} "
                           f"({', '.join(t['per_seed_best']['attackers'])})"] if t else ["—", "—"])
            line += " " + " | ".join(cells) + " |"
        lines.append(line)
    lines += ["", "## Every attacker", "",
              "Closed set: top-1 accuracy % (chance " + f"{chance:.1f} %); open set: EER %. Knowledge: "
              "*enrollment* = trained only on the attacked speakers' enrollment utterances; *informed* = also "
              "trained on the attacked source's embeddings of the training speakers.", "",
              "| model | layer | attacker | task | family | knowledge | value | " + ("over seeds | " if seeds > 1 else "")
              + "seconds |", "|---|---|---|---|---|---|---|" + ("---|" if seeds > 1 else "") + "---|"]
    for name, k, row in rows:
        spread = (row.get("spread") or {}).get("attackers", {})
        for att, r in row.get("suite", {}).items():
            lines.append(f"| {name} | {k} | {att} | {r['task']} | {r['family']} | {r['knowledge']} | "
                         f"{_cell(r['task'], r)} | " + (f"{_mean_sd(spread.get(att))} | " if seeds > 1 else "")
                         + f"{r['seconds']:.0f} |")
    legacy = [(name, k, row) for name, k, row in rows if "closed_best" in row and "open_xvector" in row]
    if legacy:
        lines += ["", "## Veil's original attackers (comparable with reports before the suite)", "",
                  "| model | layer | closed-set LR % | closed-set MLP % | rel. change (best) vs baseline | "
                  "x-vector EER % | minDCF |", "|---|---|---|---|---|---|---|"]
        for name, k, row in legacy:
            rel = _pct(row.get("vs_baseline", {}).get("closed_best_rel")) if name != "baseline" else ""
            lines.append(f"| {name} | {k} | {row['closed_lr']['accuracy']:.1f} | {row['closed_mlp']['accuracy']:.1f} | "
                         f"{rel} | {row['open_xvector']['eer']:.1f} | {row['open_xvector']['min_dcf']:.3f} |")
    ignorant = report.get("ignorant") or {}
    if ignorant:
        lines += ["", "Ignorant attacker (Veil's original attackers fitted on baseline embeddings, applied to the "
                  "attacked source's):", "",
                  "| model | layer | closed-set LR % | closed-set MLP % | x-vector EER % |", "|---|---|---|---|---|"]
        for name, layer_rows in ignorant.items():
            for k, row in layer_rows.items():
                cells = [f"{row[key]['accuracy']:.1f}" if key in row else "—" for key in ("closed_lr", "closed_mlp")]
                cells.append(f"{row['open_xvector']['eer']:.1f}" if "open_xvector" in row else "—")
                lines.append(f"| {name} | {k} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "privacy.json", report)
    write_text(out_dir / "privacy.md", render_markdown(report))
    plot_layers(report, out_dir / "privacy.png")


def plot_layers(report: dict, path: Path) -> None:
    """The strongest attacker's closed-set accuracy and open-set EER per layer, one line per model, each point
    labelled with the attacker's name."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
    grl = set()
    for name, m in report["models"].items():
        ks = sorted(int(k) for k in m["layers"])
        style = "s--" if name == "baseline" else "o-"
        for ax, task, key in ((a1, "closed", "accuracy"), (a2, "open", "eer")):
            pts = [(k, m["layers"][str(k)]["strongest"][task]) for k in ks
                   if task in m["layers"][str(k)].get("strongest", {})]
            if not pts:
                continue
            ax.plot([k for k, _ in pts], [p[key] for _, p in pts], style, label=name)
            for k, p in pts:
                ax.annotate(p["attacker"], (k, p[key]), textcoords="offset points", xytext=(4, 4), fontsize=7)
        grl |= set(m.get("grl_layers") or [])
    a1.axhline(100 / report["eval_speakers"], ls=":", c="gray", label="chance")
    a2.axhline(50, ls=":", c="gray", label="no information")
    layers = [int(k) for k in report["layers"]]
    for a in (a1, a2):
        for k in sorted(grl):
            a.axvline(k, c="tab:red", alpha=0.25, lw=6)
        a.set_xticks(layers)
        a.set_xlim(min(layers) - 0.5, max(layers) + 0.5)
        a.grid(alpha=0.3)
        a.legend(fontsize=8)
    a1.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel="closed-set accuracy %, strongest attacker",
           ylim=(0, 102))
    a2.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel="open-set EER %, strongest attacker", ylim=(0, 55))
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
