"""`veil sweep` (the GRL sweep): the paper's experiment as a recipe — the GRL at every location k, beside a baseline.

    veil sweep --corpus C --out DIR [--layers 1..L] [--steps N] [--init-from CKPT] [--parallel P]
               [--train-arg "--speaker-head tdnn"]... [--skip-train] [--dry-run] [--readme docs/results.md]
    veil render RESULTS.json [--readme docs/results.md]      (also: veil sweep --render RESULTS.json)

The steps are those of every recipe (``experiments/runner.py``: plan -> train -> cached evaluate -> render):

1. Plan ``DIR/baseline`` (``veil train --no-grl``) and ``DIR/grl-k`` (``veil train --grl-layer k``) for each k;
   train what is missing as subprocesses whose exact command is recorded.
2. Evaluate each run with ``experiments/evaluate.py``: test-split WER/CER, and the semi-informed attackers (Veil's
   original pooled LR/MLP closed set and x-vector EER by default, any of the suite's with ``--attackers``, which
   must include those three) at the model's GRL layer k; the baseline at every k. Each evaluation is cached beside
   its run, so a rerun only evaluates what changed.
3. Write ``benchmarks/results/privacy-sweep-<date>.json`` (+ ``.md``): per model WER, relative WER change,
   closed-set accuracy and its relative change vs the baseline at the same layer, EER, beside the paper's
   −33 % relative speaker accuracy and −6.2 % relative WER; the train commands are in the JSON.
   ``veil render`` rebuilds the Markdown from a JSON; ``--readme`` refreshes the table between
   ``<!-- privacy-sweep:start -->`` and ``<!-- privacy-sweep:end -->`` (default: docs/results.md).
"""
from __future__ import annotations

import datetime
import os
import platform
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch

from experiments.evaluate import EVAL_CACHE, Evaluator
from experiments.runner import ExperimentRun, ExperimentRunner, inspect_run, split_train_args
from toolkit.console import number
from toolkit.errors import VeilError, read_json
from toolkit.files import write_json, write_text
from toolkit.headlines import replace_between
from toolkit.layer_range import parse_layer_range
from toolkit.model.asr import ModelConfig
from toolkit.model.checkpoint import read_config
from toolkit.paths import RESULTS_DIR, display_path
from toolkit.privacy.leakage import SWEEP_DEFAULTS, AttackSettings, relative_change, vs_baseline
from toolkit.privacy.suite import LEGACY
from toolkit.training.options import parse_train_args

SWEEP_FORMAT = "veil-privacy-sweep/1"
PAPER = {"reference": "Jalal et al., Interspeech 2023 (arXiv 2307.13343)",
         "speaker_accuracy_rel": -33.0, "wer_rel": -6.2}
MARK_START, MARK_END = "<!-- privacy-sweep:start -->", "<!-- privacy-sweep:end -->"
CONTROLLED = {"--out", "--corpus", "--grl-layer", "--no-grl", "--init-from", "--steps"}  # set per run


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


def model_depth(init_from: Path | None, train_args: list[str]) -> int:
    """How many blocks the sweep's models have: the depth the train args set (``--blocks``, or a ``--config``
    file's), else the --init-from checkpoint's, else `veil train`'s default."""
    given = parse_train_args(train_args).get("model", {})
    if "n_blocks" in given:
        return int(given["n_blocks"])
    if init_from:
        return int(read_config(init_from)["model"]["n_blocks"])
    return ModelConfig().n_blocks


class GrlSweep(ExperimentRunner):
    """The baseline and a GRL model per layer k: plan, train, evaluate (the baseline at every k), report."""

    name = "sweep"

    def __init__(self, req: SweepRequest, progress: bool = True):
        super().__init__(progress)
        self.req, self.corpus, self.out = req, Path(req.corpus), Path(req.out)
        self.steps, self.parallel, self.skip_train, self.dry_run = req.steps, req.parallel, req.skip_train, req.dry_run
        self.results_path = Path(req.results) if req.results else default_results_path()
        self.train_args = split_train_args(req.train_args, CONTROLLED, "sweep")
        self.layers: list[int] = []

    def check(self) -> None:
        req = self.req
        for split in ("train", "test", "eval-speakers"):
            if not (self.corpus / split).is_dir():
                raise VeilError(f"{self.corpus / split}: corpus split not found (the sweep trains on train, scores "
                                f"test, attacks eval-speakers)")
        if req.init_from and not Path(req.init_from).is_file():
            raise VeilError(f"{req.init_from}: --init-from checkpoint not found")
        missing = [n for n in LEGACY if n not in req.attack.suite_options().names()]
        if missing:
            raise VeilError(f"--attackers {req.attack.attackers}: the sweep's table needs Veil's original attackers "
                            f"({', '.join(LEGACY)}); add {', '.join(missing)}")
        if self.out.exists() and not self.out.is_dir():
            raise VeilError(f"{self.out}: --out exists and is not a directory")

    def plan(self) -> list[ExperimentRun]:
        self.check()
        req = self.req
        self.layers = parse_layer_range(req.layers, 1, model_depth(req.init_from, self.train_args))
        threads = []
        if req.parallel > 1 and not any(w.split("=", 1)[0] == "--threads" for w in self.train_args):
            threads = ["--threads", str(max(1, (os.cpu_count() or 1) // req.parallel))]  # no oversubscription
        runs = []
        for name, grl in [("baseline", None)] + [(f"grl-{k}", k) for k in self.layers]:
            run_dir = self.out / name
            argv = ["train", "--corpus", str(self.corpus), "--out", str(run_dir)]
            argv += ["--no-grl"] if grl is None else ["--grl-layer", str(grl)]
            if req.steps is not None:
                argv += ["--steps", str(req.steps)]
            if req.init_from:
                argv += ["--init-from", str(req.init_from)]
            runs.append(inspect_run(ExperimentRun(name, grl, run_dir, argv + self.train_args + threads), req.steps))
        return runs

    def attacked_layers(self, run: ExperimentRun) -> list[int]:
        return self.layers if run.grl_layer is None else [run.grl_layer]

    def print_plan(self, runs: list[ExperimentRun]) -> None:
        print(f"sweep plan: {len(runs)} models, GRL locations {self.layers}, corpus {self.corpus}")
        super().print_plan(runs)
        print(f"  results: {self.results_path} (+ .md)" + (f"; README table: {self.req.readme}" if self.req.readme else ""))

    def plan_detail(self, run: ExperimentRun) -> str:
        cache = " (cache present)" if (run.run_dir / EVAL_CACHE).exists() else ""
        return f"evaluate test WER/CER; attack layers {self.attacked_layers(run)}{cache}"

    def evaluate(self, runs: list[ExperimentRun]) -> dict:
        a = self.req.attack
        evaluator = Evaluator(self.corpus, a.suite_options(), [a.seed], a.attacker_utts, a.eval_limit, self.progress,
                              self.log)
        return {r.name: {**evaluator.evaluate_checkpoint(r.name, r.checkpoint, r.run_dir / EVAL_CACHE,
                                                         self.attacked_layers(r)), "steps": r.steps_done}
                for r in runs}

    def report(self, runs: list[ExperimentRun], evaluated: dict, seconds: dict) -> dict:
        return build_report(self.req, runs, evaluated, self.layers, seconds)

    def write(self, report: dict) -> None:
        write_results(report, self.results_path, self.req.readme)
        self.log(f"wrote {self.results_path} and {self.results_path.with_suffix('.md')}"
                 + (f"; refreshed the table in {self.req.readme}" if self.req.readme else "")
                 + f"  [evaluation {report['seconds']['evaluate']:.0f} s]")


def run_sweep(req: SweepRequest, progress: bool = True) -> dict | None:
    return GrlSweep(req, progress).run()


def build_report(req: SweepRequest, runs: list[ExperimentRun], evaluated: dict, layers: list[int],
                 seconds: dict) -> dict:
    base = evaluated["baseline"]
    models = []
    for r in runs:
        e = evaluated[r.name]
        entry = {"name": r.name, "grl_layer": r.grl_layer, "run_dir": str(r.run_dir),
                 "train_command": r.train_command, "planned_command": r.command,
                 "trained_by_sweep": r.provenance.get("command") == r.command,
                 "train_seconds": r.provenance.get("train_seconds"), **e}
        if r.grl_layer is not None:
            k = str(r.grl_layer)
            entry["vs_baseline"] = {
                "layer": r.grl_layer,
                "wer_rel": relative_change(e["test"]["wer"], base["test"]["wer"]),
                "cer_rel": relative_change(e["test"]["cer"], base["test"]["cer"]),
                **vs_baseline(e["privacy"][k], base["privacy"][k])}
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
            "init_from": str(req.init_from) if req.init_from else None,
            "train_args": split_train_args(req.train_args, CONTROLLED, "sweep"),
            "layers": layers, "paper": PAPER, "attack": attack,
            "train_commands": {r.name: r.train_command for r in runs},
            "baseline_layers": base["privacy"], "models": models,
            "seconds": {**seconds, "torch_threads": torch.get_num_threads()}}


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
