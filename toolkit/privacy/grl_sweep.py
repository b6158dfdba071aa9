"""`veil sweep` (the GRL sweep): the paper's experiment as a recipe — the GRL at every location k, beside a baseline.

    veil sweep --corpus C --out DIR [--layers 1..L] [--steps N] [--init-from CKPT] [--parallel P]
               [--train-arg "--speaker-head tdnn"]... [--skip-train] [--dry-run] [--readme README.md]
    veil render RESULTS.json [--readme README.md]      (also: veil sweep --render RESULTS.json)

1. Train ``DIR/baseline`` (``veil train --no-grl``) and ``DIR/grl-k`` (``veil train --grl-layer k``) for each
   k, each as a subprocess whose exact command is recorded. A run directory whose ``last.json`` already
   reached its steps is reused, whoever trained it (e.g. a GPU machine with the same layout:
   ``DIR/NAME/last.safetensors`` + ``last.json`` with provenance ``steps`` and ``command``); a shorter one is
   resumed by the same command.
2. Evaluate each run's ``last.safetensors``: test-split WER/CER, and the semi-informed attackers (Veil's
   original pooled LR/MLP closed set and x-vector EER by default, any of the suite's with ``--attackers``,
   which must include those three) at the model's GRL layer k; the baseline at every k. Audio is loaded
   once; each model's embeddings go only as deep as the layers attacked; each model's evaluation is cached
   in ``DIR/NAME/privacy-eval.json`` (keyed by checkpoint sha256 and attack settings), so the baseline's
   per-layer attacks are computed once and a rerun only evaluates what changed.
3. Write ``benchmarks/results/privacy-sweep-<date>.json`` (+ ``.md``): per model WER, relative WER change,
   closed-set accuracy and its relative change vs the baseline at the same layer, EER, beside the paper's
   −33 % relative speaker accuracy and −6.2 % relative WER; the train commands are in the JSON.
   ``veil render`` rebuilds the Markdown from a JSON; ``--readme`` refreshes the table between
   ``<!-- privacy-sweep:start -->`` and ``<!-- privacy-sweep:end -->``.
"""
from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.evaluate import evaluate_set
from toolkit.console import number
from toolkit.errors import VeilError, read_json
from toolkit.files import file_sha256, write_json, write_text
from toolkit.headlines import replace_between
from toolkit.layer_range import parse_layer_range
from toolkit.model.asr import ModelConfig
from toolkit.model.checkpoint import load_checkpoint, read_config, tokenizer_from
from toolkit.paths import RESULTS_DIR, display_path
from toolkit.privacy.embeddings import layer_embeddings
from toolkit.privacy.leakage import (SWEEP_DEFAULTS, AttackSettings, attack_model, load_attack_data, relative_change,
                                     vs_baseline)
from toolkit.privacy.suite import LEGACY
from toolkit.training.options import parse_train_args

SWEEP_FORMAT = "veil-privacy-sweep/1"
EVAL_CACHE = "privacy-eval.json"
PAPER = {"reference": "Jalal et al., Interspeech 2023 (arXiv 2307.13343)",
         "speaker_accuracy_rel": -33.0, "wer_rel": -6.2}
MARK_START, MARK_END = "<!-- privacy-sweep:start -->", "<!-- privacy-sweep:end -->"
CONTROLLED = {"--out", "--corpus", "--grl-layer", "--no-grl", "--init-from"}  # set by the sweep per run


@dataclass
class SweepRun:
    name: str                 # "baseline" or "grl-k"
    grl_layer: int | None
    run_dir: Path
    argv: list[str]           # the exact `veil train` arguments (after "veil")
    state: str = "missing"    # missing | partial | done
    steps_done: int = 0
    provenance: dict = field(default_factory=dict)

    @property
    def command(self) -> str:
        return "veil " + shlex.join(self.argv)

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / "last.safetensors"


# ---- the plan -------------------------------------------------------------------------------------------------

def split_train_args(values: list[str]) -> list[str]:
    """Each ``--train-arg`` value is shell-split ("--speaker-head tdnn" -> two words); options the sweep
    sets per run are refused."""
    words = [w for v in values for w in shlex.split(v)]
    for w in words:
        opt = w.split("=", 1)[0]
        if opt in CONTROLLED or opt == "--steps":
            raise VeilError(f"--train-arg {w}: the sweep sets {opt} itself"
                            + (" (use the sweep's --steps)" if opt == "--steps" else ""))
    return words


def model_depth(init_from: Path | None, train_args: list[str]) -> int:
    """How many blocks the sweep's models have: the depth the train args set (``--blocks``, or a ``--config``
    file's), else the --init-from checkpoint's, else `veil train`'s default."""
    given = parse_train_args(train_args).get("model", {})
    if "n_blocks" in given:
        return int(given["n_blocks"])
    if init_from:
        return int(read_config(init_from)["model"]["n_blocks"])
    return ModelConfig().n_blocks


def plan_runs(corpus: Path, out: Path, layers: list[int], steps: int | None, init_from: Path | None,
              train_args: list[str], parallel: int = 1) -> list[SweepRun]:
    runs = []
    threads = []
    if parallel > 1 and not any(w.split("=", 1)[0] == "--threads" for w in train_args):
        threads = ["--threads", str(max(1, (os.cpu_count() or 1) // parallel))]  # no oversubscription
    for name, grl in [("baseline", None)] + [(f"grl-{k}", k) for k in layers]:
        run_dir = out / name
        argv = ["train", "--corpus", str(corpus), "--out", str(run_dir)]
        argv += ["--no-grl"] if grl is None else ["--grl-layer", str(grl)]
        if steps is not None:
            argv += ["--steps", str(steps)]
        if init_from:
            argv += ["--init-from", str(init_from)]
        runs.append(inspect_run(SweepRun(name, grl, run_dir, argv + train_args + threads), steps))
    return runs


def inspect_run(run: SweepRun, steps: int | None) -> SweepRun:
    """Is ``run.run_dir`` missing, partial (resumable) or done? Refuse a run that is something else."""
    last = run.run_dir / "last.json"
    if not last.exists():
        if run.run_dir.exists() and any(run.run_dir.iterdir()):
            if not (run.run_dir / "log.jsonl").exists():
                raise VeilError(f"{run.run_dir}: not empty and holds no training run (no last.json)")
        return run
    try:
        config = json.loads(last.read_text())
        prov = config["provenance"]
        done = int(prov["steps"])
        grl = sorted(int(k) for k in config["model"].get("grl_layers", []))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VeilError(f"{last}: not a training run's checkpoint config ({type(exc).__name__}: {exc})") from None
    if not run.checkpoint.exists():
        raise VeilError(f"{run.checkpoint}: missing (its last.json is there)")
    if run.grl_layer is None and grl:
        raise VeilError(f"{last}: the baseline run has a GRL at {grl}; expected none")
    if run.grl_layer is not None and run.grl_layer not in grl:
        raise VeilError(f"{last}: run {run.name} has its GRL at {grl or 'no layer'}; expected {run.grl_layer}")
    planned = int((prov.get("train_config") or {}).get("steps") or 0)
    target = steps if steps is not None else planned
    if planned and steps is not None:
        target = min(steps, planned)  # e.g. a --time-budget run fitted its own step count
    run.steps_done, run.provenance = done, prov
    run.state = "done" if target and done >= target else "partial"
    return run


# ---- training --------------------------------------------------------------------------------------------------

def train_runs(runs: list[SweepRun], parallel: int, log=print) -> None:
    """Run `veil train` for every run not done, ``parallel`` at a time; output goes to RUN/train.log."""
    todo = [r for r in runs if r.state != "done"]
    active: list[tuple[SweepRun, subprocess.Popen, float]] = []
    failed = []
    while todo or active:
        while todo and len(active) < max(1, parallel):
            run = todo.pop(0)
            run.run_dir.mkdir(parents=True, exist_ok=True)
            log(f"train {run.name}: {run.command}  (log: {run.run_dir / 'train.log'})")
            with open(run.run_dir / "train.log", "ab") as f:
                f.write(f"$ {run.command}\n".encode())
                proc = subprocess.Popen([sys.executable, "-m", "toolkit.cli", *run.argv], stdout=f,
                                        stderr=subprocess.STDOUT)
            active.append((run, proc, time.time()))
        time.sleep(0.2)
        for item in list(active):
            run, proc, t0 = item
            if proc.poll() is None:
                continue
            active.remove(item)
            if proc.returncode:
                failed.append(f"{run.name} (exit {proc.returncode}; see {run.run_dir / 'train.log'})")
            else:
                log(f"train {run.name}: done in {time.time() - t0:.0f} s")
    if failed:
        raise VeilError("training failed: " + "; ".join(failed))


# ---- evaluation -------------------------------------------------------------------------------------------------

def cache_key(corpus: Path, attack: AttackSettings, sha256: str, layers: list[int]) -> dict:
    """What an evaluation depends on: a cached one is reused only when all of it matches."""
    key = {"checkpoint_sha256": sha256, "corpus": str(Path(corpus).resolve()), "seed": attack.seed,
           "xvector_epochs": attack.xvector_epochs, "attacker_utts": attack.attacker_utts,
           "eval_limit": attack.eval_limit, "layers": layers}
    suite = {"attackers": attack.attackers, "xvector_utts": attack.xvector_utts, "ecapa_steps": attack.ecapa_steps,
             "frame_steps": attack.frame_steps}
    as_before_the_suite = attack.attackers == "legacy" and 0 < attack.attacker_utts <= attack.xvector_utts
    if not as_before_the_suite:  # else the key of earlier sweeps: their caches stay valid
        key["suite"] = suite
    return key


class Evaluator:
    """Loads the audio once (lazily: a fully cached sweep loads none) and evaluates checkpoints."""

    def __init__(self, corpus: Path, attack: AttackSettings, progress: bool = True):
        self.corpus, self.attack, self.progress = Path(corpus), attack, progress
        self._attack = self._test = None

    def attack_data(self):
        if self._attack is None:
            a = self.attack
            self._attack = load_attack_data(self.corpus, a.attacker_utts or None, a.eval_limit, a.seed, self.progress)
        return self._attack

    def test_data(self):
        if self._test is None:
            split = self.corpus / "test"
            if not split.is_dir():
                raise VeilError(f"{split}: corpus test split not found")
            self._test = AudioSet.load(read_librispeech(split), "loading test", self.progress)
        return self._test

    def evaluate(self, run: SweepRun, layers: list[int], log=print) -> dict:
        sha = file_sha256(run.checkpoint)
        key = cache_key(self.corpus, self.attack, sha, layers)
        cache = run.run_dir / EVAL_CACHE
        if cache.exists():
            try:
                cached = json.loads(cache.read_text())
                if cached.get("key") == key:
                    log(f"evaluate {run.name}: cached ({cache})")
                    return {**cached["result"], "cached": True}
            except json.JSONDecodeError:
                pass  # a damaged cache is recomputed and rewritten
        t0 = time.time()
        model, config = load_checkpoint(run.checkpoint)
        if max(layers) > model.cfg.n_blocks:
            raise VeilError(f"{run.checkpoint}: has {model.cfg.n_blocks} blocks; the sweep attacks layer {max(layers)}")
        test = evaluate_set(model, tokenizer_from(config), self.test_data())
        t_test = time.time() - t0
        data = self.attack_data()
        t1 = time.time()
        emb_eval = layer_embeddings(model, data.eval_data, layers, progress=False)
        emb_train = layer_embeddings(model, data.train_data, layers, progress=False)
        t_emb = time.time() - t1
        log(f"evaluate {run.name}: test WER {test['wer']:.2f} %  CER {test['cer']:.2f} %  [{t_test:.0f} s]; "
            f"embeddings of layers {layers} [{t_emb:.0f} s]")
        res, _ = attack_model(emb_eval, emb_train, data, layers, self.attack.suite_options(), [self.attack.seed], log)
        result = {"checkpoint": str(run.checkpoint), "sha256": sha, "steps": run.steps_done,
                  "grl_layers": model.cfg.grl_layers, "split_layer": model.cfg.split_layer,
                  "speaker_head": getattr(model.cfg, "speaker_head", None),
                  "lambda_max": model.cfg.grl_lambda_max if model.cfg.grl_layers else None,
                  "test": {"wer": test["wer"], "cer": test["cer"], "utterances": test["utterances"]},
                  "privacy": {str(k): v for k, v in res.items()}, "attack_data": data.describe(),
                  "seconds": {"test": round(t_test, 1), "embeddings": round(t_emb, 1),
                              "attacks": round(time.time() - t1 - t_emb, 1), "total": round(time.time() - t0, 1)}}
        write_json(cache, {"key": key, "result": result})
        return {**result, "cached": False}


# ---- the recipe --------------------------------------------------------------------------------------------------

@dataclass
class SweepRequest:
    corpus: Path
    out: Path
    layers: str | None = None
    steps: int | None = None
    init_from: Path | None = None
    parallel: int = 1
    train_args: list[str] = field(default_factory=list)
    skip_train: bool = False
    dry_run: bool = False
    results: Path | None = None   # default benchmarks/results/privacy-sweep-<date>.json
    readme: Path | None = None
    attack: AttackSettings = field(default_factory=lambda: AttackSettings(**SWEEP_DEFAULTS))


def default_results_path() -> Path:
    return RESULTS_DIR / f"privacy-sweep-{datetime.date.today().isoformat()}.json"


def run_sweep(req: SweepRequest, progress: bool = True) -> dict | None:
    log = print if progress else (lambda *a, **k: None)
    corpus, out = Path(req.corpus), Path(req.out)
    if req.parallel < 1:
        raise VeilError(f"--parallel must be at least 1, got {req.parallel}")
    if req.steps is not None and req.steps < 1:
        raise VeilError(f"--steps must be at least 1, got {req.steps}")
    for split in ("train", "test", "eval-speakers"):
        if not (corpus / split).is_dir():
            raise VeilError(f"{corpus / split}: corpus split not found (the sweep trains on train, scores test, "
                            f"attacks eval-speakers)")
    if req.init_from and not Path(req.init_from).is_file():
        raise VeilError(f"{req.init_from}: --init-from checkpoint not found")
    missing = [n for n in LEGACY if n not in req.attack.suite_options().names()]
    if missing:
        raise VeilError(f"--attackers {req.attack.attackers}: the sweep's table needs Veil's original attackers "
                        f"({', '.join(LEGACY)}); add {', '.join(missing)}")
    if out.exists() and not out.is_dir():
        raise VeilError(f"{out}: --out exists and is not a directory")
    train_args = split_train_args(req.train_args)
    layers = parse_layer_range(req.layers, 1, model_depth(req.init_from, train_args))
    runs = plan_runs(corpus, out, layers, req.steps, req.init_from, train_args, req.parallel)
    results_path = Path(req.results) if req.results else default_results_path()

    missing = [r for r in runs if r.state == "missing"]
    if req.skip_train and missing:
        raise VeilError(f"--skip-train: {missing[0].run_dir} holds no trained run (no last.json)"
                        + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    if req.dry_run:
        print(f"sweep plan: {len(runs)} models, GRL locations {layers}, corpus {corpus}")
        for r in runs:
            what = {"done": f"reuse (steps {r.steps_done})",
                    "partial": f"{'evaluate as is' if req.skip_train else 'resume'} (steps {r.steps_done})",
                    "missing": "train"}[r.state]
            print(f"  {r.name:10s} {what:24s} {r.command}")
            trained_by = r.provenance.get("command")
            if trained_by and trained_by != r.command:
                print(f"  {'':10s} (this run was trained by: {trained_by})")
            cache = r.run_dir / EVAL_CACHE
            print(f"  {'':10s} evaluate test WER/CER; attack layer{'s' if r.grl_layer is None else ''} "
                  f"{layers if r.grl_layer is None else [r.grl_layer]}{' (cache present)' if cache.exists() else ''}")
        print(f"  results: {results_path} (+ .md)" + (f"; README table: {req.readme}" if req.readme else ""))
        return None

    t0 = time.time()
    if not req.skip_train:
        train_runs(runs, req.parallel, log)
        runs = [inspect_run(r, req.steps) for r in runs]
    t_train = time.time() - t0
    for r in runs:
        if r.state != "done":
            log(f"warning: {r.run_dir} stopped at step {r.steps_done} (planned {req.steps or 'its own'}); "
                f"evaluated as is")

    evaluator = Evaluator(corpus, req.attack, progress)
    t1 = time.time()
    evaluated = {}
    for r in runs:
        evaluated[r.name] = evaluator.evaluate(r, layers if r.grl_layer is None else [r.grl_layer], log)
    t_eval = time.time() - t1
    report = build_report(req, runs, evaluated, layers, {"train": round(t_train, 1),
                                                                     "evaluate": round(t_eval, 1)})
    write_results(report, results_path, req.readme)
    log(f"wrote {results_path} and {results_path.with_suffix('.md')}"
        + (f"; refreshed the table in {req.readme}" if req.readme else "") + f"  [evaluation {t_eval:.0f} s]")
    return report


def build_report(req: SweepRequest, runs: list[SweepRun], evaluated: dict, layers: list[int], seconds: dict) -> dict:
    base = evaluated["baseline"]
    models = []
    for r in runs:
        e = evaluated[r.name]
        entry = {"name": r.name, "grl_layer": r.grl_layer, "run_dir": str(r.run_dir),
                 "train_command": r.provenance.get("command") or r.command, "planned_command": r.command,
                 "trained_by_sweep": r.provenance.get("command") == r.command,
                 "train_seconds": r.provenance.get("train_seconds"), **{k: v for k, v in e.items()}}
        if r.grl_layer is not None:
            k = str(r.grl_layer)
            mine, theirs = e["privacy"][k], base["privacy"][k]
            entry["vs_baseline"] = {
                "layer": r.grl_layer,
                "wer_rel": relative_change(e["test"]["wer"], base["test"]["wer"]),
                "cer_rel": relative_change(e["test"]["cer"], base["test"]["cer"]),
                **vs_baseline(mine, theirs)}
        models.append(entry)
    a = req.attack
    attack = {"seed": a.seed, "attackers": a.attackers, "xvector_epochs": a.xvector_epochs,
              "attacker_utts_per_speaker": a.attacker_utts, "xvector_utts_per_speaker": a.xvector_utts,
              "eval_limit": a.eval_limit, "attacker": "semi-informed (trained on the attacked model's embeddings)"}
    attack.update(base["attack_data"])
    return {"format": SWEEP_FORMAT, "date": datetime.date.today().isoformat(),
            "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": "veil " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["sweep"] else None,
            "host": platform.node(), "corpus": str(req.corpus), "out": str(req.out), "steps": req.steps,
            "init_from": str(req.init_from) if req.init_from else None, "train_args": split_train_args(req.train_args),
            "layers": layers, "paper": PAPER, "attack": attack,
            "train_commands": {r.name: r.provenance.get("command") or r.command for r in runs},
            "baseline_layers": base["privacy"], "models": models,
            "seconds": {**seconds, "torch_threads": _torch_threads()}}


def _torch_threads() -> int:
    return torch.get_num_threads()


# ---- reports --------------------------------------------------------------------------------------------------

def _f(v, fmt="{:.1f}") -> str:
    return number(v, fmt)


def _rel(v) -> str:
    return number(v, "{:+.1f} %")


def render_table(report: dict) -> str:
    """The per-model table (Markdown), with the paper's numbers as the last row."""
    lines = ["| model | GRL k | steps | test WER % | rel. WER | LR acc. % (baseline) | rel. LR | "
             "MLP acc. % (baseline) | rel. MLP | x-vector EER % (baseline) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    base_rows = report["baseline_layers"]
    for m in report["models"]:
        if m["grl_layer"] is None:
            lines.append(f"| {m['name']} | — | {m['steps']} | {m['test']['wer']:.2f} | — | "
                         f"{', '.join(f'k={k}: ' + _f(r['closed_lr']['accuracy']) for k, r in base_rows.items())} | — | "
                         f"{', '.join(f'k={k}: ' + _f(r['closed_mlp']['accuracy']) for k, r in base_rows.items())} | — | "
                         f"{', '.join(f'k={k}: ' + _f(r['open_xvector']['eer']) for k, r in base_rows.items())} |")
            continue
        k = str(m["grl_layer"])
        row, b, v = m["privacy"][k], base_rows[k], m["vs_baseline"]
        lines.append(f"| {m['name']} | {k} | {m['steps']} | {m['test']['wer']:.2f} | {_rel(v['wer_rel'])} | "
                     f"{row['closed_lr']['accuracy']:.1f} ({b['closed_lr']['accuracy']:.1f}) | {_rel(v['closed_lr_rel'])} | "
                     f"{row['closed_mlp']['accuracy']:.1f} ({b['closed_mlp']['accuracy']:.1f}) | {_rel(v['closed_mlp_rel'])} | "
                     f"{row['open_xvector']['eer']:.1f} ({b['open_xvector']['eer']:.1f}) |")
    p = report["paper"]
    lines.append(f"| paper ({p['reference']}) | — | — | — | {_rel(p['wer_rel'])} | — | {_rel(p['speaker_accuracy_rel'])} | "
                 f"— | — | — |")
    a = report["attack"]
    chance = 100.0 / a["eval_speakers"] if a.get("eval_speakers") else None
    note = (f"Closed set: {a.get('eval_speakers', '?')} unseen speakers (chance {_f(chance)} %), pooled mean+std → "
            f"LR / MLP, semi-informed attacker at the model's GRL layer; baseline at the same layer in parentheses. "
            f"EER: x-vector trained on {a.get('attacker_train_speakers', '?')} ASR-training speakers (50 % = no "
            f"information). Relative changes are (model − baseline) / baseline. Results: "
            f"`{report.get('results_file', 'privacy-sweep JSON')}`.")
    return "\n".join(lines) + "\n\n" + note + "\n"


def render_markdown(report: dict) -> str:
    lines = [f"# Privacy sweep: GRL location k = {', '.join(map(str, report['layers']))} vs baseline "
             f"({report['date']})", "",
             f"Corpus `{report['corpus']}`; runs in `{report['out']}`; steps {report['steps'] or 'per run'}"
             + (f"; initialized from `{report['init_from']}`" if report.get("init_from") else "")
             + (f"; extra train args `{shlex.join(report['train_args'])}`" if report.get("train_args") else "") + ".",
             "", render_table(report), "## Train commands", ""]
    for name, cmd in report["train_commands"].items():
        lines.append(f"- {name}: `{cmd}`")
    s = report.get("seconds") or {}
    lines += ["", f"Time: training {_f(s.get('train'), '{:.0f}')} s, evaluation {_f(s.get('evaluate'), '{:.0f}')} s "
                  f"(cached evaluations are reused)."]
    return "\n".join(lines) + "\n"


def refresh_readme(readme: Path, table: str) -> None:
    """Put ``table`` between the privacy-sweep markers of ``readme`` (appending a section with the markers
    when they are absent); written through a temporary file and a rename."""
    replace_between(readme, MARK_START, MARK_END, table, "Privacy sweep")


def write_results(report: dict, path: Path, readme: Path | None = None) -> None:
    path = Path(path)
    report["results_file"] = display_path(path)
    write_json(path, report)
    write_text(path.with_suffix(".md"), render_markdown(report))
    if readme:
        refresh_readme(readme, render_table(report))


def load_results(path: Path) -> dict:
    report = read_json(path, f"{path}: sweep results not found")
    if not isinstance(report, dict) or report.get("format") != SWEEP_FORMAT:
        raise VeilError(f"{path}: not a privacy-sweep result (format {SWEEP_FORMAT} expected)")
    return report


def rerender(report: dict, json_path: Path, readme: Path | None = None) -> list[Path]:
    """Rebuild the Markdown beside a results JSON (``report``, its content), and with ``readme`` the table
    between the privacy-sweep markers there, from the JSON alone."""
    if not isinstance(report, dict) or report.get("format") != SWEEP_FORMAT:
        raise VeilError(f"{json_path}: not a privacy-sweep result (format {SWEEP_FORMAT} expected)")
    md = Path(json_path).with_suffix(".md")
    try:
        write_text(md, render_markdown(report))
        if readme:
            refresh_readme(readme, render_table(report))
    except KeyError as exc:
        raise VeilError(f"{json_path}: sweep result lacks field {exc}") from None
    return [md] + ([Path(readme)] if readme else [])
