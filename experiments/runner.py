"""One runner for the research recipes: plan -> train -> cached evaluate -> render.

A recipe (the GRL sweep, the bottleneck frontier) is an :class:`ExperimentRunner` that says which models it needs
(``plan``), how it evaluates them and what report it builds (``evaluate``, ``report``) and where the report goes
(``write``). The runner does the rest the same way for every recipe:

- a run directory that already reached its steps is reused, whoever trained it (e.g. a GPU machine with the same
  layout: ``DIR/NAME/last.safetensors`` + ``last.json`` with provenance ``steps`` and ``command``); a shorter one is
  resumed by the same command; a directory that holds something else is refused;
- the missing runs are trained as ``veil train`` subprocesses, ``parallel`` at a time, each with its exact command
  recorded and its output in ``RUN/train.log``;
- ``--skip-train`` evaluates what is there, ``--dry-run`` prints the plan and runs nothing;
- evaluation goes through one cached :class:`experiments.evaluate.Evaluator`.
"""
from __future__ import annotations

import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from toolkit.errors import VeilError, read_json


@dataclass
class ExperimentRun:
    name: str                 # "baseline", "grl-k", "bn-d16-n1.5", ...
    grl_layer: int | None     # where the run's adversary must sit (None: no adversary)
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

    @property
    def train_command(self) -> str:
        """The command that trained the run (another machine's, for a run made elsewhere), else the planned one."""
        return self.provenance.get("command") or self.command


def split_train_args(values: list[str], controlled: set[str], recipe: str) -> list[str]:
    """Each ``--train-arg`` value shell-split ("--speaker-head tdnn" -> two words); the options the recipe sets
    per run (``controlled``) are refused."""
    words = [w for v in values for w in shlex.split(v)]
    for w in words:
        opt = w.split("=", 1)[0]
        if opt in controlled:
            raise VeilError(f"--train-arg {w}: the {recipe} sets {opt} itself"
                            + (f" (use the {recipe}'s --steps)" if opt == "--steps" else ""))
    return words


def inspect_run(run: ExperimentRun, steps: int | None) -> ExperimentRun:
    """Is ``run.run_dir`` missing, partial (resumable) or done? Refuse a run that is something else."""
    last = run.run_dir / "last.json"
    if not last.exists():
        if run.run_dir.exists() and any(run.run_dir.iterdir()):
            if not (run.run_dir / "log.jsonl").exists():
                raise VeilError(f"{run.run_dir}: not empty and holds no training run (no last.json)")
        return run
    config = read_json(last, f"{last}: not found")
    try:
        prov = config["provenance"]
        done = int(prov["steps"])
        grl = sorted(int(k) for k in config["model"].get("grl_layers", []))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
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


def train_runs(runs: list[ExperimentRun], parallel: int, log=print) -> None:
    """Run `veil train` for every run not done, ``parallel`` at a time; output goes to RUN/train.log."""
    todo = [r for r in runs if r.state != "done"]
    active: list[tuple[ExperimentRun, subprocess.Popen, float]] = []
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


PLAN_WORDS = {"done": "reuse (steps {steps})", "partial": "resume (steps {steps})", "missing": "train"}


class ExperimentRunner:
    """plan -> train -> cached evaluate -> render. A recipe subclasses it and sets ``steps``, ``parallel``,
    ``skip_train`` and ``dry_run`` (its request's)."""

    name = "experiment"
    steps: int | None = None
    parallel: int = 1
    skip_train: bool = False
    dry_run: bool = False

    def __init__(self, progress: bool = True):
        self.log = print if progress else (lambda *a, **k: None)
        self.progress = progress

    # ---- what a recipe says ----
    def plan(self) -> list[ExperimentRun]:
        raise NotImplementedError

    def print_plan(self, runs: list[ExperimentRun]) -> None:
        for r in runs:
            what = PLAN_WORDS[r.state].format(steps=r.steps_done)
            if r.state == "partial" and self.skip_train:
                what = f"evaluate as is (steps {r.steps_done})"
            print(f"  {r.name:18s} {what:24s} {r.command}")
            if r.provenance.get("command") and r.provenance["command"] != r.command:
                print(f"  {'':18s} (this run was trained by: {r.provenance['command']})")
            if self.plan_detail(r):
                print(f"  {'':18s} {self.plan_detail(r)}")

    def plan_detail(self, run: ExperimentRun) -> str | None:
        """A second line of the plan for ``run`` (what its evaluation will do), or None."""
        return None

    def evaluate(self, runs: list[ExperimentRun]):
        raise NotImplementedError

    def report(self, runs: list[ExperimentRun], evaluated, seconds: dict) -> dict:
        raise NotImplementedError

    def write(self, report: dict) -> None:
        raise NotImplementedError

    # ---- the same for every recipe ----
    def run(self) -> dict | None:
        if self.parallel < 1:
            raise VeilError(f"--parallel must be at least 1, got {self.parallel}")
        if self.steps is not None and self.steps < 1:
            raise VeilError(f"--steps must be at least 1, got {self.steps}")
        runs = self.plan()
        missing = [r for r in runs if r.state == "missing"]
        if self.skip_train and missing:
            raise VeilError(f"--skip-train: {missing[0].run_dir} holds no trained run (no last.json)"
                            + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
        if self.dry_run:
            self.print_plan(runs)
            return None
        t0 = time.time()
        if not self.skip_train:
            train_runs(runs, self.parallel, self.log)
            runs = [inspect_run(r, self.steps) for r in runs]
        t_train = time.time() - t0
        for r in runs:
            if r.state != "done":
                self.log(f"warning: {r.run_dir} stopped at step {r.steps_done} (planned {self.steps or 'its own'}); "
                         f"evaluated as is")
        t1 = time.time()
        evaluated = self.evaluate(runs)
        t_eval = time.time() - t1
        report = self.report(runs, evaluated, {"train": round(t_train, 1), "evaluate": round(t_eval, 1),
                                               "total": round(time.time() - t0, 1)})
        self.write(report)
        return report
