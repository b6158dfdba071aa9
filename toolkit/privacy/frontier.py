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
import json
import platform
import re
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.evaluate import evaluate_set
from toolkit.errors import VeilError, read_json
from toolkit.files import file_sha256, write_json, write_text
from toolkit.headlines import made_by, refresh
from toolkit.model.asr import Prefix
from toolkit.model.bottleneck import replay_noise
from toolkit.model.checkpoint import load_checkpoint, read_config, tokenizer_from
from toolkit.paths import RESULTS_DIR, display_path
from toolkit.payload import message_bytes
from toolkit.privacy.attempts import GOALS
from toolkit.privacy.grl_sweep import SweepRun, inspect_run, train_runs
from toolkit.privacy.leakage import attack_layer, checkpoint_embeddings, load_attack_data
from toolkit.privacy.suite import SuiteOptions

FRONTIER_FORMAT = "veil-privacy-frontier/1"
EVAL_CACHE = "frontier-eval.json"
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


def payload_bytes_per_second(codec: str, dim: int, groups: int, codes: int, chunk_frames: int,
                             chunk_seconds: float) -> float:
    """Bytes per second of audio of one payload message per chunk (``toolkit/payload.py``'s codecs)."""
    if codec == "vq":
        bits = 8 if codes <= 256 else 16
        return message_bytes("vq", chunk_frames, groups, bits) / chunk_seconds
    return message_bytes(codec, chunk_frames, dim) / chunk_seconds


def model_payload(model) -> dict:
    """The codec and bytes per second of audio a model's phone sends at its split."""
    cfg = model.cfg
    codes, groups = cfg.vq_codes, cfg.vq_groups
    codec = "vq" if codes else "int8"
    dim = cfg.embedding_dim
    bps = payload_bytes_per_second(codec, dim, groups, codes, cfg.chunk.chunk_frames, cfg.chunk.chunk_seconds)
    return {"codec": codec, "dim": dim, "groups": groups if codes else None, "codes": codes or None,
            "noise_std": cfg.bottleneck_noise or None, "bytes_per_second": round(bps, 1)}


# ---- the plan ------------------------------------------------------------------------------------------------

def split_train_args(values: list[str]) -> list[str]:
    words = [w for v in values for w in shlex.split(v)]
    for w in words:
        if w.split("=", 1)[0] in CONTROLLED:
            raise VeilError(f"--train-arg {w}: the frontier sets {w.split('=', 1)[0]} itself")
    return words


def plan_points(corpus: Path, out: Path, points: list[Point], steps: int, init_from: Path, train_args: list[str],
                threads: int | None) -> list[SweepRun]:
    split_layer = int(read_config(init_from)["model"]["split_layer"])
    runs = []
    for p in points:
        run_dir = out / p.name
        argv = ["train", "--config", str(Path(init_from).with_suffix(".json")), "--init-from", str(init_from),
                "--corpus", str(corpus), "--out", str(run_dir), "--freeze-prefix", *p.train_flags(),
                "--steps", str(steps), *TRAIN_DEFAULTS, *train_args]
        if threads:
            argv += ["--threads", str(threads)]
        runs.append(inspect_run(SweepRun(p.name, split_layer, run_dir, argv), steps))
    return runs


# ---- evaluation ------------------------------------------------------------------------------------------------

class FrontierEvaluator:
    """Loads the audio once and evaluates checkpoints at their split layer (cached per checkpoint + settings)."""

    def __init__(self, corpus: Path, options: SuiteOptions, seeds: list[int], attacker_utts: int | None,
                 progress: bool = True, log=print, shared_prefix: Path | None = None):
        self.corpus, self.options, self.seeds, self.attacker_utts = Path(corpus), options, seeds, attacker_utts
        self.progress, self.log = progress, log
        self._data = self._test = None
        self.shared_prefix = shared_prefix  # the --init-from checkpoint whose phone blocks the points froze
        self._shared = None

    def shared(self):
        """(init model, split layer, eval frames, training frames): the frozen phone blocks' output, computed once."""
        if self._shared is None:
            model = load_checkpoint(self.shared_prefix)[0].eval()
            k = model.cfg.split_layer
            t0 = time.time()
            ev, tr = checkpoint_embeddings(model, self.data(), [k], progress=self.progress)
            self.log(f"phone blocks of {self.shared_prefix.name} on the attack data: {time.time() - t0:.0f} s")
            self._shared = (model, k, ev[k], tr[k])
        return self._shared

    def embeddings(self, model, layer: int) -> tuple[list, list]:
        """What the cloud receives at ``layer``, for the eval speakers and the attacker's training speakers. A
        point trained with ``--freeze-prefix`` runs the same phone blocks as ``--init-from`` (checked tensor by
        tensor): their output is computed once and each point applies only its own bottleneck to it."""
        if self.shared_prefix is not None:
            init, k, ev, tr = self.shared()
            if layer == k and same_phone_blocks(model, init, k):
                if model.bottleneck is None:
                    return ev, tr
                g = replay_noise()  # one stream: each utterance gets its own noise
                return [transmit(model, x, g) for x in ev], [transmit(model, x, g) for x in tr]
        emb_eval, emb_train = checkpoint_embeddings(model, self.data(), [layer], progress=self.progress)
        return emb_eval[layer], emb_train[layer]

    def data(self):
        if self._data is None:
            self._data = load_attack_data(self.corpus, self.attacker_utts, progress=self.progress)
        return self._data

    def test(self):
        if self._test is None:
            self._test = AudioSet.load(read_librispeech(self.corpus / "test"), "loading test", self.progress)
        return self._test

    def key(self, sha: str, layer: int) -> dict:
        return {"checkpoint_sha256": sha, "layer": layer, "corpus": str(self.corpus.resolve()),
                "suite": self.options.describe(), "seeds": self.seeds, "attacker_utts": self.attacker_utts}

    def recorded_row(self, reports: list[Path], sha: str, layer: int) -> tuple[dict, Path] | None:
        """A `veil privacy` report's row for this checkpoint and layer, made with the same attackers, seeds and
        attacker data (so a reference attacked before is not attacked again), or None."""
        for path in reports:
            report = read_json(path, f"{path}: --reference-privacy report not found")
            options = report.get("attacker_options") or {}
            same = (options.get("attackers") == self.options.attackers and
                    int(report.get("attacker_seeds", 1)) == len(self.seeds) and
                    report.get("attacker_train_utterances") == len(self.data().train_spk) and
                    report.get("eval_utterances") == len(self.data().eval_spk))
            for model in (report.get("models") or {}).values():
                row = (model.get("layers") or {}).get(str(layer))
                if same and model.get("sha256") == sha and row:
                    return row, path
        return None

    def evaluate(self, name: str, checkpoint: Path, cache_dir: Path | None, layer: int | None = None,
                 reports: list[Path] = ()) -> dict:
        sha = file_sha256(checkpoint)
        model, config = load_checkpoint(checkpoint)
        layer = layer or model.cfg.split_layer
        recorded = self.recorded_row(list(reports), sha, layer) if reports else None
        key = self.key(sha, layer)
        cache = Path(cache_dir) / EVAL_CACHE if cache_dir else None
        if cache is not None and cache.exists():
            try:
                cached = json.loads(cache.read_text())
                if cached.get("key") == key:
                    self.log(f"evaluate {name}: cached ({cache})")
                    return cached["result"]
            except json.JSONDecodeError:
                pass  # a damaged cache is recomputed
        t0 = time.time()
        test = evaluate_set(model, tokenizer_from(config), self.test())
        self.log(f"evaluate {name}: test WER {test['wer']:.2f} %  CER {test['cer']:.2f} %  [{time.time() - t0:.0f} s]")
        t1 = time.time()
        if recorded is not None:
            row = {**recorded[0], "recorded_in": str(recorded[1])}
            self.log(f"evaluate {name}: privacy from {recorded[1]} (same checkpoint, layer and attackers)")
        else:
            emb_eval, emb_train = self.embeddings(model.eval(), layer)
            row = attack_layer(emb_eval, emb_train, self.data(), self.seeds, self.options, self.log)[0]
        result = {"name": name, "checkpoint": display_path(checkpoint), "sha256": sha, "layer": layer,
                  "split_layer": model.cfg.split_layer, "split_norm": model.cfg.split_norm,
                  "grl_layers": model.cfg.grl_layers, "payload": model_payload(model),
                  "test": {"wer": test["wer"], "cer": test["cer"], "utterances": test["utterances"]},
                  "privacy": row, "seconds": {"test": round(t1 - t0, 1), "attacks": round(time.time() - t1, 1)}}
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, {"key": key, "result": result})
        return result


def same_phone_blocks(model, other, k: int) -> bool:
    """Do two models compute the same phone blocks (frontend, subsampling, blocks 1..k, the split norm)?"""
    if model.cfg.split_norm != other.cfg.split_norm or model.cfg.split_layer != other.cfg.split_layer:
        return False
    a = Prefix(model, k, bottleneck=False).state_dict()
    b = Prefix(other, k, bottleneck=False).state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[n].float(), b[n].float()) for n in a)


@torch.no_grad()
def transmit(model, x: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    """Block-k output frames (T, d) -> what the phone sends and the cloud receives through ``model``'s
    bottleneck (codewords with a codebook, z plus the channel's noise with one), as :meth:`VeilModel.encode`
    computes it."""
    z = model.bottleneck.phone(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return model.bottleneck.transmit(z, generator=generator)[0].numpy().astype(np.float32)


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


def run_frontier(req: FrontierRequest, progress: bool = True) -> dict | None:
    log = print if progress else (lambda *a, **k: None)
    corpus, out, init = Path(req.corpus), Path(req.out), Path(req.init_from)
    for split in ("train", "test", "eval-speakers"):
        if not (corpus / split).is_dir():
            raise VeilError(f"{corpus / split}: corpus split not found (the frontier trains on train, scores test, "
                            f"attacks eval-speakers)")
    for path, flag in ((init, "--init-from"), (req.baseline, "--baseline")):
        if path is not None and not Path(path).is_file():
            raise VeilError(f"{path}: {flag} checkpoint not found")
    if req.steps < 1 or req.parallel < 1 or req.attacker_seeds < 1:
        raise VeilError("--steps, --parallel and --attacker-seeds must be at least 1")
    points = [Point.parse(p) for p in req.points]
    if not points:
        raise VeilError("--points: name at least one bottleneck (e.g. d32:2x256)")
    options = SuiteOptions(attackers=req.attackers)
    options.names()  # an unknown attacker is an error before any slow work
    threads = 1 if req.parallel > 1 else None
    runs = plan_points(corpus, out, points, req.steps, init, split_train_args(req.train_args), threads)
    results_path = Path(req.results) if req.results else default_results_path()
    missing = [r for r in runs if r.state == "missing"]
    if req.skip_train and missing:
        raise VeilError(f"--skip-train: {missing[0].run_dir} holds no trained run (no last.json)")
    if req.dry_run:
        print(f"frontier plan: {len(runs)} bottlenecks from {init}, corpus {corpus}")
        for r in runs:
            what = {"done": f"reuse (steps {r.steps_done})", "partial": f"resume (steps {r.steps_done})",
                    "missing": "train"}[r.state]
            print(f"  {r.name:18s} {what:22s} {r.command}")
        print(f"  references: {init} (no bottleneck)" + (f", {req.baseline} (baseline)" if req.baseline else ""))
        print(f"  results: {results_path} (+ .md, .png)")
        return None
    t0 = time.time()
    if not req.skip_train:
        train_runs(runs, req.parallel, log)
    t_train = time.time() - t0
    evaluator = FrontierEvaluator(corpus, options, list(range(req.attacker_seeds)), req.attacker_utts, progress, log,
                                  shared_prefix=init)
    split_layer = int(read_config(init)["model"]["split_layer"])
    references = [("no bottleneck", init, out / "reference-init")]
    if req.baseline:
        references.append(("baseline", Path(req.baseline), out / "reference-baseline"))
    evaluated = [{**evaluator.evaluate(name, path, cache, split_layer, req.reference_privacy), "role": "reference"}
                 for name, path, cache in references]
    for r in runs:
        evaluated.append({**evaluator.evaluate(r.name, r.checkpoint, r.run_dir), "role": "point",
                          "train_command": r.provenance.get("command") or r.command,
                          "steps": r.steps_done or r.provenance.get("steps")})
    report = {"format": FRONTIER_FORMAT, "date": datetime.date.today().isoformat(),
              "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "command": "veil " + shlex.join(sys.argv[1:]) if sys.argv[1:2] == ["frontier"] else None,
              "host": platform.node(), "corpus": display_path(corpus), "init_from": display_path(init), "split_layer": split_layer,
              "attack": {"suite": options.describe(), "seeds": req.attacker_seeds,
                         "attacker_utts_per_speaker": req.attacker_utts or "all",
                         **evaluator.data().describe()},
              "models": [{**e, "headline": headline(e)} for e in evaluated],
              "seconds": {"train": round(t_train, 1), "total": round(time.time() - t0, 1)}}
    write_frontier(report, results_path, req.readme)
    log(f"wrote {results_path} (+ .md, .png)" + (f"; refreshed the table in {req.readme}" if req.readme else ""))
    return report


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
