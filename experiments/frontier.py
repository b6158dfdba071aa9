"""`veil frontier`: how much speaker identity an information bottleneck at the split lets through, against
how much recognition it costs and how many bytes it sends — one point per bottleneck, one chart.

    veil frontier --out RUNS --init-from models/normalized.safetensors --points d32:1x64,d32:2x256,d32
                  [--steps 2000] [--parallel 2] [--train-arg "--lr 1e-3"]... [--skip-train] [--dry-run]
                  [--baseline models/baseline.safetensors] [--attackers all] [--attacker-seeds 1] [--readme]

A point is ``dD`` (the phone projects its output to D dims and sends them as int8), ``dD:GxK`` (D dims
vector-quantized by G codebooks of K codes: the phone sends G indices per frame) or ``dD:nS`` (D dims at
unit RMS per frame, plus Gaussian noise of std S that the phone adds before it sends them: the channel in
training, in evaluation and for the attackers alike).

1. Train each point from ``--init-from``: its architecture (split layer, split norm, adversary) comes from that
   checkpoint's own config (``veil train --config INIT.json``); the phone's blocks stay frozen
   (``--freeze-prefix``), so what the bottleneck removes is the only change on the phone. The exact command
   is recorded; a run directory that already reached its steps is reused, a shorter one resumed.
2. Evaluate every point, the ``--init-from`` model itself (no bottleneck) and the ``--baseline`` (no
   adversary): test WER/CER; Veil's attacker suite on what the cloud receives at the split (codewords for a
   codebook) — the strongest closed-set attacker's accuracy and the strongest open-set attacker's EER, each
   with its name; payload bytes per second of audio for the point's codec (``toolkit/payload.py``).
3. Write ``benchmarks/results/privacy-frontier-<date>.json`` (+ ``.md``, ``.png``: EER against WER, payload as
   labels). ``veil render`` rebuilds the Markdown and chart from the JSON; ``--readme`` refreshes its table.
"""
from __future__ import annotations

import datetime
import platform
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from experiments.attempts import GOALS
from experiments.evaluate import EVAL_CACHE, Evaluator
from experiments.runner import ExperimentRun, ExperimentRunner, inspect_run, split_train_args
from toolkit.errors import VeilError
from toolkit.files import write_json, write_text
from toolkit.headlines import made_by, refresh
from toolkit.model.checkpoint import read_config
from toolkit.paths import RESULTS_DIR, display_path
from toolkit.privacy.suite import SuiteOptions

FRONTIER_FORMAT = "veil-privacy-frontier/1"
TABLE, SECTION = "privacy-frontier", "Privacy frontier"
POINT = re.compile(r"^d(?P<dim>\d+)(?::(?:(?P<groups>\d+)x(?P<codes>\d+)|n(?P<noise>[0-9.]+)))?$")
CONTROLLED = {"--out", "--corpus", "--init-from", "--config", "--freeze-prefix", "--bottleneck-dim", "--vq-codes",
              "--vq-groups", "--bottleneck-noise", "--steps"}
# The frontier's own training defaults (CPU-sized); --train-arg overrides them.
TRAIN_DEFAULTS = ["--lr", "1e-3", "--warmup", "200", "--batch-seconds", "60", "--batch-utts", "64",
                  "--time-budget", "0", "--time-limit", "0", "--eval-every", "1000", "--load-workers", "1"]


@dataclass(frozen=True)
class Point:
    dim: int
    groups: int = 0
    codes: int = 0
    noise: float = 0.0

    @classmethod
    def parse(cls, text: str) -> "Point":
        m = POINT.match(text.strip())
        if not m or int(m["dim"]) < 1 or (m["codes"] and (int(m["groups"]) < 1 or not 2 <= int(m["codes"]) <= 65536)):
            raise VeilError(f"--points {text!r}: expected dD, dD:GxK or dD:nS (e.g. d32, d32:2x256, d32:n0.5)")
        p = cls(int(m["dim"]), int(m["groups"] or 0), int(m["codes"] or 0), float(m["noise"] or 0.0))
        if p.codes and p.dim % p.groups:
            raise VeilError(f"--points {text!r}: {p.dim} dims do not split into {p.groups} codebook groups")
        return p

    @property
    def name(self) -> str:
        return f"bn-d{self.dim}" + (f"-{self.groups}x{self.codes}" if self.codes else "") + (
            f"-n{self.noise:g}" if self.noise else "")

    def train_flags(self) -> list[str]:
        flags = ["--bottleneck-dim", str(self.dim)]
        if self.codes:
            flags += ["--vq-codes", str(self.codes), "--vq-groups", str(self.groups)]
        if self.noise:
            flags += ["--bottleneck-noise", f"{self.noise:g}"]
        return flags

    @property
    def codec(self) -> str:
        return "vq" if self.codes else "int8"


def headline(result: dict) -> dict:
    """The strongest attacker of each task (mean over attacker seeds when several): name and value."""
    priv = result["privacy"]
    spread = (priv.get("spread") or {}).get("strongest")
    if spread and len((priv.get("spread") or {}).get("seeds", [])) > 1:
        c, o = spread["closed"], spread["open"]
        return {"closed_attacker": c["attacker"], "closed_accuracy": c["mean"], "closed_sd": c["sd"],
                "open_attacker": o["attacker"], "eer": o["mean"], "eer_sd": o["sd"]}
    s = priv["strongest"]
    return {"closed_attacker": s["closed"]["attacker"], "closed_accuracy": s["closed"]["accuracy"], "closed_sd": 0.0,
            "open_attacker": s["open"]["attacker"], "eer": s["open"]["eer"], "eer_sd": 0.0}


# ---- the recipe ------------------------------------------------------------------------------------------------

@dataclass
class FrontierRequest:
    corpus: Path
    out: Path
    init_from: Path
    points: list[str]
    steps: int = 2000
    parallel: int = 1
    train_args: list[str] = field(default_factory=list)
    baseline: Path | None = None
    skip_train: bool = False
    dry_run: bool = False
    attackers: str = "all"
    attacker_seeds: int = 1
    attacker_utts: int | None = None
    results: Path | None = None
    readme: Path | None = None
    reference_privacy: list[Path] = field(default_factory=list)  # `veil privacy` reports reused for references


def default_results_path() -> Path:
    return RESULTS_DIR / f"privacy-frontier-{datetime.date.today().isoformat()}.json"


class Frontier(ExperimentRunner):
    """A bottleneck per point behind the frozen phone blocks of ``--init-from``: plan, train, evaluate (the points
    and the references), report with a chart."""

    name = "frontier"

    def __init__(self, req: FrontierRequest, progress: bool = True):
        super().__init__(progress)
        self.req, self.corpus, self.out, self.init = req, Path(req.corpus), Path(req.out), Path(req.init_from)
        self.steps, self.parallel, self.skip_train, self.dry_run = req.steps, req.parallel, req.skip_train, req.dry_run
        self.results_path = Path(req.results) if req.results else default_results_path()
        self.options = SuiteOptions(attackers=req.attackers)
        self.evaluator: Evaluator | None = None

    def check(self) -> None:
        req = self.req
        for split in ("train", "test", "eval-speakers"):
            if not (self.corpus / split).is_dir():
                raise VeilError(f"{self.corpus / split}: corpus split not found (the frontier trains on train, "
                                f"scores test, attacks eval-speakers)")
        for path, flag in ((self.init, "--init-from"), (req.baseline, "--baseline")):
            if path is not None and not Path(path).is_file():
                raise VeilError(f"{path}: {flag} checkpoint not found")
        if req.attacker_seeds < 1:
            raise VeilError("--steps, --parallel and --attacker-seeds must be at least 1")
        self.options.names()  # an unknown attacker is an error before any slow work

    def plan(self) -> list[ExperimentRun]:
        self.check()
        points = [Point.parse(p) for p in self.req.points]
        if not points:
            raise VeilError("--points: name at least one bottleneck (e.g. d32:2x256)")
        train_args = split_train_args(self.req.train_args, CONTROLLED, "frontier")
        self.split_layer = int(read_config(self.init)["model"]["split_layer"])
        runs = []
        for p in points:
            run_dir = self.out / p.name
            argv = ["train", "--config", str(self.init.with_suffix(".json")), "--init-from", str(self.init),
                    "--corpus", str(self.corpus), "--out", str(run_dir), "--freeze-prefix", *p.train_flags(),
                    "--steps", str(self.steps), *TRAIN_DEFAULTS, *train_args]
            if self.parallel > 1:
                argv += ["--threads", "1"]
            runs.append(inspect_run(ExperimentRun(p.name, self.split_layer, run_dir, argv), self.steps))
        return runs

    def print_plan(self, runs: list[ExperimentRun]) -> None:
        print(f"frontier plan: {len(runs)} bottlenecks from {self.init}, corpus {self.corpus}")
        super().print_plan(runs)
        print(f"  references: {self.init} (no bottleneck)"
              + (f", {self.req.baseline} (baseline)" if self.req.baseline else ""))
        print(f"  results: {self.results_path} (+ .md, .png)")

    def evaluate(self, runs: list[ExperimentRun]) -> list[dict]:
        req, k = self.req, self.split_layer
        self.evaluator = ev = Evaluator(self.corpus, self.options, list(range(req.attacker_seeds)), req.attacker_utts,
                                        progress=self.progress, log=self.log, shared_prefix=self.init)
        references = [("no bottleneck", self.init, self.out / "reference-init")]
        if req.baseline:
            references.append(("baseline", Path(req.baseline), self.out / "reference-baseline"))

        def one(name, checkpoint, run_dir, **extra) -> dict:
            e = ev.evaluate_checkpoint(name, checkpoint, run_dir / EVAL_CACHE, [k], req.reference_privacy)
            e = {key: v for key, v in e.items() if key not in ("cached", "layers", "attack_data")}
            return {**e, "layer": k, "privacy": e["privacy"][str(k)], **extra}

        evaluated = [one(name, path, cache, role="reference") for name, path, cache in references]
        evaluated += [one(r.name, r.checkpoint, r.run_dir, role="point", train_command=r.train_command,
                          steps=r.steps_done or r.provenance.get("steps")) for r in runs]
        return evaluated

    def report(self, runs: list[ExperimentRun], evaluated: list[dict], seconds: dict) -> dict:
        req = self.req
        return {"format": FRONTIER_FORMAT, "date": datetime.date.today().isoformat(),
                "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                "command": "veil " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["frontier"] else None,
                "host": platform.node(), "corpus": display_path(self.corpus), "init_from": display_path(self.init),
                "split_layer": self.split_layer,
                "attack": {"suite": self.options.describe(), "seeds": req.attacker_seeds,
                           "attacker_utts_per_speaker": req.attacker_utts or "all",
                           **self.evaluator.data().describe()},
                "models": [{**e, "headline": headline(e)} for e in evaluated],
                "seconds": {"train": seconds["train"], "total": seconds["total"]}}

    def write(self, report: dict) -> None:
        write_frontier(report, self.results_path, self.req.readme)
        self.log(f"wrote {self.results_path} (+ .md, .png)"
                 + (f"; refreshed the table in {self.req.readme}" if self.req.readme else ""))


def run_frontier(req: FrontierRequest, progress: bool = True) -> dict | None:
    if req.steps < 1 or req.parallel < 1 or req.attacker_seeds < 1:
        raise VeilError("--steps, --parallel and --attacker-seeds must be at least 1")
    return Frontier(req, progress).run()


# ---- reports -----------------------------------------------------------------------------------------------------

def render_table(report: dict) -> str:
    rows = ["| model | payload | bytes/s | test WER % | strongest closed-set attacker: accuracy % | "
            "strongest open-set attacker: EER % |", "|---|---|---|---|---|---|"]
    for m in report["models"]:
        h, p = m["headline"], m["payload"]
        codec = f"vq {p['groups']}×{p['codes']}" if p["codec"] == "vq" else f"int8 × {p['dim']}" + (
            f" + N(0, {p['noise_std']:g}²)" if p.get("noise_std") else "")
        sd = lambda v: f" ± {v:.1f}" if v else ""  # noqa: E731
        rows.append(f"| {m['name']} | {codec} | {p['bytes_per_second']:.0f} | {m['test']['wer']:.2f} | "
                    f"{h['closed_attacker']}: {h['closed_accuracy']:.1f}{sd(h['closed_sd'])} | "
                    f"{h['open_attacker']}: {h['eer']:.1f}{sd(h['eer_sd'])} |")
    a = report["attack"]
    note = (f"Split after block {report['split_layer']}; attackers trained after the fact on what the cloud receives "
            f"(codewords for vq, the noisy vectors for a noise point); {a.get('eval_speakers', '?')} unseen speakers (closed-set chance "
            f"{100 / a['eval_speakers']:.1f} %), open set trained on {a.get('attacker_train_speakers', '?')} training "
            f"speakers; {a['seeds']} attacker seed(s). Bytes/s: one payload message per 2-s chunk.") if a.get(
        "eval_speakers") else ""
    return "\n".join(rows) + ("\n\n" + note if note else "") + "\n"


def render_markdown(report: dict) -> str:
    lines = [f"# Privacy frontier of the bottleneck at the split ({report['date']})", "",
             f"From `{report['init_from']}`, corpus `{report['corpus']}`. Command: `{report.get('command') or '—'}`.",
             "", render_table(report), "## Train commands", ""]
    for m in report["models"]:
        if m.get("train_command"):
            lines.append(f"- {m['name']} ({m.get('steps')} steps): `{m['train_command']}`")
    lines += ["", "## Every attacker, per model", ""]
    for m in report["models"]:
        suite = m["privacy"].get("suite", {})
        cells = ", ".join(f"{k} {v['accuracy']:.1f} %" if "accuracy" in v else f"{k} EER {v['eer']:.1f} %"
                          for k, v in suite.items() if isinstance(v, dict) and ("accuracy" in v or "eer" in v))
        lines.append(f"- **{m['name']}**: {cells}")
    return "\n".join(lines) + "\n"


def render_chart(report: dict, path: Path) -> None:
    import matplotlib  # plotting is optional output, loaded only when a chart is written
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for m in report["models"]:
        h = m["headline"]
        ref = m["role"] == "reference"
        ax.errorbar(m["test"]["wer"], h["eer"], yerr=h["eer_sd"] or None, fmt="s" if ref else "o",
                    color="grey" if ref else "tab:blue", capsize=3)
        ax.annotate(f"{m['name']}\n{m['payload']['bytes_per_second']:.0f} B/s", (m["test"]["wer"], h["eer"]),
                    textcoords="offset points", xytext=(5, 4), fontsize=7)
    ax.axhline(50, color="green", lw=0.6, ls=":")
    ax.axhline(GOALS["eer_min"], color="tab:red", lw=0.8, ls="--", label=f"goal: EER ≥ {GOALS['eer_min']:.0f} %")
    base = next((m for m in report["models"] if m["name"] == "baseline"), None)
    if base is not None:
        wer_goal = base["test"]["wer"] + GOALS["wer_over_baseline_max"]
        ax.axvline(wer_goal, color="tab:orange", lw=0.8, ls="--", label=f"goal: WER ≤ baseline + 1 ({wer_goal:.1f} %)")
    ax.legend(loc="lower right", fontsize=7)
    ax.set_xlabel("test WER % (greedy)")
    ax.set_ylabel("EER % of the strongest open-set attacker")
    ax.set_title("Bottleneck at the split: privacy against recognition (labels: payload)")
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def headline_table(report: dict, source: str | None = None) -> str:
    """The README's table: every point and reference, with the command that measured it."""
    return render_table(report) + "\n" + made_by(report.get("command") or "veil frontier", source) + "\n"


def rerender(report: dict, path: Path) -> list[Path]:
    """Markdown and chart from a recorded frontier JSON."""
    path = Path(path)
    write_text(path.with_suffix(".md"), render_markdown(report))
    render_chart(report, path.with_suffix(".png"))
    return [path.with_suffix(".md"), path.with_suffix(".png")]


def write_frontier(report: dict, path: Path, readme: Path | None = None) -> None:
    path = Path(path)
    report["results_file"] = display_path(path)
    write_json(path, report)
    rerender(report, path)
    if readme:
        refresh(Path(readme), TABLE, headline_table(report, display_path(path)), SECTION)
