"""`veil privacy`: how much speaker identity leaks from a model's embeddings, per layer.

For every requested layer and every attacked source (the anonymized checkpoint, or with ``--artifact`` each
exported prefix run in its real runtime; and the baseline checkpoint when given):
- closed set (semi-informed): pooled LR and MLP trained on 60 % of each eval speaker's utterances of *this
  source's* embeddings, tested on the other 40 %;
- open set (semi-informed): an x-vector attacker trained by speaker classification on *this source's*
  embeddings of the ASR training speakers, scored on cosine trials among the unseen eval speakers (EER);
- ignorant (with a baseline): the baseline's fitted attackers applied to the attacked source's embeddings.
The headline is the strongest (semi-informed) attacker; chance is reported beside every accuracy.
"""
from __future__ import annotations

import platform
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.console import number
from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError
from toolkit.files import file_sha256, write_json, write_text
from toolkit.headlines import made_by, refresh
from toolkit.layer_range import parse_layer_range
from toolkit.model.checkpoint import load_checkpoint
from toolkit.paths import DEFAULT_ANONYMIZED, DEFAULT_CORPUS, display_path
from toolkit.privacy.artifact import load_runners, read_export
from toolkit.privacy.attackers import fit_closed_set, open_set_attack, train_xvector, utterance_split
from toolkit.privacy.embeddings import artifact_embeddings, layer_embeddings

REPORT_FORMAT = "veil-privacy/2"
OLD_REPORT_FORMAT = "veil-privacy/1"  # written before reports carried a format field: the same keys, older ignorant rows


def report_format(doc) -> str | None:
    """The privacy report format of ``doc`` (reports from before the format field count as the first), or None."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") in (REPORT_FORMAT, OLD_REPORT_FORMAT):
        return doc["format"]
    return OLD_REPORT_FORMAT if "format" not in doc and {"models", "layers", "eval_speakers"} <= set(doc) else None


@dataclass
class AttackSettings:
    """How the attackers are built, shared by ``veil privacy`` and ``veil sweep`` (their options are built
    from these fields; the comment on a field's line is its help)."""
    seed: int = 0                 # attacker seed; also draws the closed-set utterance split
    xvector_epochs: int = 30      # training epochs of the x-vector attacker
    attacker_utts: int = 10       # training-split utterances per speaker for the x-vector
    eval_limit: int = field(default=0, metadata={
        "flag": "limit", "help": "use only the first N eval-speakers utterances (0 = all)"})


@dataclass
class PrivacyRequest:
    """One ``veil privacy`` run: attack ``checkpoint``'s layers (or, with ``artifact``, what an export folder's
    artifacts emit at their split layer), beside ``baseline`` when given."""
    checkpoint: Path = DEFAULT_ANONYMIZED
    baseline: Path | None = None
    corpus: Path = DEFAULT_CORPUS
    layers: str | None = None               # toolkit.layer_range syntax; default all (0 = log-mel)
    out: Path = Path("privacy")
    attack: AttackSettings = field(default_factory=AttackSettings)
    attacker_seeds: int = 1                 # repeat the attacks with seeds seed, seed+1, ...: mean and sd
    artifact: Path | None = None            # an export folder
    backends: list[str] = field(default_factory=list)  # with artifact: only these backends
    progress: bool = True
    readme: Path | None = None              # also rewrite this README's privacy table (toolkit/headlines.py)


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


def load_attack_data(corpus: Path, train_utts_per_speaker: int = 10, eval_limit: int = 0, seed: int = 0,
                     progress: bool = True) -> AttackData:
    corpus = Path(corpus)
    for split in ("eval-speakers", "train"):
        if not (corpus / split).is_dir():
            raise VeilError(f"{corpus / split}: corpus split not found (privacy needs eval-speakers and train)")
    if train_utts_per_speaker < 1:
        raise VeilError(f"--attacker-utts must be at least 1, got {train_utts_per_speaker}")
    eval_utts = read_librispeech(corpus / "eval-speakers")
    if eval_limit:
        eval_utts = eval_utts[:eval_limit]
    by_spk: dict[str, list] = {}
    for u in read_librispeech(corpus / "train"):
        by_spk.setdefault(u.speaker, []).append(u)
    train_utts = [u for s in sorted(by_spk) for u in by_spk[s][:train_utts_per_speaker]]
    if len({u.speaker for u in eval_utts}) < 2 or len(by_spk) < 2:
        raise VeilError(f"{corpus}: privacy evaluation needs at least 2 eval and 2 training speakers")
    eval_spk = [u.speaker for u in eval_utts]
    return AttackData(corpus, AudioSet.load(eval_utts, "loading eval-speakers", progress),
                      AudioSet.load(train_utts, "loading attacker training set", progress),
                      eval_spk, [u.speaker for u in train_utts], utterance_split(eval_spk, seed=seed))


# ---- attacks ------------------------------------------------------------------------------------------------

@dataclass
class FittedAttackers:
    """One source's semi-informed attackers per layer, kept to play the ignorant attacker on other sources."""
    closed: dict = field(default_factory=dict)   # layer -> {"lr": ClosedSetAttacker, "mlp": ...}
    xvector: dict = field(default_factory=dict)  # layer -> XVectorAttacker


def attack_layer(emb_eval, emb_train, data: AttackData, seed: int, xvector_epochs: int) -> tuple[dict, dict, object]:
    """The semi-informed attacks on one layer's embeddings with attackers seeded ``seed``:
    (results row, fitted closed-set attackers by kind, fitted x-vector)."""
    tr, te = data.split
    row, closed = {}, {}
    for kind in ("lr", "mlp"):
        closed[kind] = fit_closed_set(_select(emb_eval, tr), _select(data.eval_spk, tr), kind, seed)
        row[f"closed_{kind}"] = closed[kind].score(_select(emb_eval, te), _select(data.eval_spk, te))
    xv = train_xvector(emb_train, data.train_spk, epochs=xvector_epochs, seed=seed)
    row["open_xvector"] = open_set_attack(xv, emb_eval, data.eval_spk)
    row["closed_best"] = max(row["closed_lr"]["accuracy"], row["closed_mlp"]["accuracy"])
    return row, closed, xv


def seed_spread(rows: list[dict], seeds: list[int]) -> dict:
    """The same attacks repeated with attackers seeded ``seeds`` (same embeddings, same utterance split): how much
    a verdict near a threshold depends on the attacker's luck. Each value, mean and sample sd."""
    runs = {"closed_lr": [r["closed_lr"]["accuracy"] for r in rows],
            "closed_mlp": [r["closed_mlp"]["accuracy"] for r in rows],
            "eer": [r["open_xvector"]["eer"] for r in rows]}
    out = {"seeds": seeds, **runs}
    for key, values in runs.items():
        out[f"{key}_mean"] = float(np.mean(values))
        out[f"{key}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return out


def attack_model(emb_eval: dict, emb_train: dict, data: AttackData, layers: list[int], seed: int,
                 xvector_epochs: int, progress=print, attacker_seeds: int = 1) -> tuple[dict, FittedAttackers]:
    """Semi-informed attacks on one source's embeddings; returns (results per layer, fitted attackers).
    ``attacker_seeds`` > 1 repeats them with attackers seeded ``seed + 1, ...`` (``row["seed_spread"]``);
    the headline numbers and the fitted attackers stay those of ``seed``."""
    results, fitted = {}, FittedAttackers()
    for k in layers:
        t0 = time.time()
        row, fitted.closed[k], fitted.xvector[k] = attack_layer(emb_eval[k], emb_train[k], data, seed, xvector_epochs)
        spread = ""
        if attacker_seeds > 1:
            seeds = list(range(seed, seed + attacker_seeds))
            again = [attack_layer(emb_eval[k], emb_train[k], data, s, xvector_epochs)[0] for s in seeds[1:]]
            sp = row["seed_spread"] = seed_spread([row, *again], seeds)
            spread = (f"; over {attacker_seeds} attacker seeds LR {sp['closed_lr_mean']:.1f} ± "
                      f"{sp['closed_lr_sd']:.1f} %, EER {sp['eer_mean']:.1f} ± {sp['eer_sd']:.1f} %")
        row["seconds"] = round(time.time() - t0, 1)
        results[k] = row
        progress(f"  layer {k}: closed-set LR {row['closed_lr']['accuracy']:.1f} %  MLP "
                 f"{row['closed_mlp']['accuracy']:.1f} %  (chance {row['closed_lr']['chance']:.1f} %)  "
                 f"x-vector EER {row['open_xvector']['eer']:.1f} %{spread}   [{row['seconds']:.0f} s]")
    return results, fitted


def ignorant_attacks(base: FittedAttackers, anon_eval: dict, data: AttackData, layers) -> dict:
    """The baseline's attackers (fitted on baseline embeddings) applied to another source's embeddings."""
    _, te = data.split
    out = {}
    for k in layers:
        row = {f"closed_{kind}": base.closed[k][kind].score(_select(anon_eval[k], te), _select(data.eval_spk, te))
               for kind in ("lr", "mlp")}
        row["open_xvector"] = open_set_attack(base.xvector[k], anon_eval[k], data.eval_spk)
        out[k] = row
    return out


def relative_change(value: float, reference: float) -> float | None:
    """(value − reference) / reference in percent; None without a usable reference."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


# ---- the recipe -------------------------------------------------------------------------------------------------

def run_privacy(req: PrivacyRequest) -> dict:
    """Attack the request's sources; write privacy.json/.md/.png into ``req.out``; return the report."""
    log = print if req.progress else (lambda *a, **k: None)
    attack = req.attack
    if req.attacker_seeds < 1:
        raise VeilError(f"--attacker-seeds must be at least 1, got {req.attacker_seeds}")
    started = time.time()
    sources: dict[str, dict] = {}  # name -> {"kind": "checkpoint"|"artifact", ...}
    loaded = {}
    skipped: list[dict] = []
    baseline = req.baseline
    if baseline:
        loaded["baseline"] = load_checkpoint(baseline)[0]
        sources["baseline"] = {"kind": "checkpoint", "checkpoint": str(baseline), "sha256": file_sha256(baseline)}
    if req.artifact is not None:
        prefixes = read_export(Path(req.artifact), req.backends)
        k = prefixes[0].split_layer
        if req.layers not in (None, str(k)):
            raise VeilError(f"--layers {req.layers}: an exported prefix emits only its split layer ({k})")
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
        checkpoint = Path(req.checkpoint)
        model = load_checkpoint(checkpoint)[0]
        if baseline and loaded["baseline"].cfg.n_blocks != model.cfg.n_blocks:
            raise VeilError(f"{checkpoint}: baseline and anonymized models have different depths "
                            f"{sorted({loaded['baseline'].cfg.n_blocks, model.cfg.n_blocks})}")
        layers = parse_layer_range(req.layers, 0, model.cfg.n_blocks)
        loaded["anonymized"] = model
        sources["anonymized"] = {"kind": "checkpoint", "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}

    data = load_attack_data(Path(req.corpus), attack.attacker_utts, attack.eval_limit, attack.seed, req.progress)
    report = {"format": REPORT_FORMAT, "command": "veil " + shlex.join(sys.argv[1:]), "host": platform.node(),
              **data.describe(), "layers": layers, "seed": attack.seed, "attacker_seeds": req.attacker_seeds,
              "xvector_epochs": attack.xvector_epochs,
              "models": {}, "ignorant": {}}
    if req.artifact is not None:
        report["artifact"] = {"export_dir": str(req.artifact),
                              "attacked": [s for s in sources.values() if s["kind"] == "artifact"],
                              "not_run": skipped}
    embs, fitted = {}, {}
    for name, obj in loaded.items():
        t0 = time.time()
        src = sources[name]
        log(f"{name}: {src['path'] if src['kind'] == 'artifact' else src['checkpoint']}")
        if sources[name]["kind"] == "artifact":
            p, runner = obj
            emb_eval = {layers[0]: artifact_embeddings(runner, data.eval_data, p.chunk, req.progress,
                                                       desc=f"{p.name} eval-speakers")}
            emb_train = {layers[0]: artifact_embeddings(runner, data.train_data, p.chunk, req.progress,
                                                        desc=f"{p.name} attacker training set")}
            grl, split = None, p.split_layer
        else:
            emb_eval = layer_embeddings(obj, data.eval_data, layers, progress=req.progress)
            emb_train = layer_embeddings(obj, data.train_data, layers, progress=req.progress)
            grl, split = obj.cfg.grl_layers, obj.cfg.split_layer
        t_emb = time.time() - t0
        res, fit = attack_model(emb_eval, emb_train, data, layers, attack.seed, attack.xvector_epochs, log,
                                req.attacker_seeds)
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
    write_report(report, Path(req.out))
    if req.readme:
        refresh(req.readme, "privacy", headline(report, display_path(Path(req.out) / "privacy.json")), "Privacy")
    return report


def vs_baseline(row: dict, base: dict) -> dict:
    """One layer's attack results against the baseline's at the same layer: relative changes of the
    closed-set accuracies in percent, and the EER difference in percentage points."""
    return {"closed_lr_rel": relative_change(row["closed_lr"]["accuracy"], base["closed_lr"]["accuracy"]),
            "closed_mlp_rel": relative_change(row["closed_mlp"]["accuracy"], base["closed_mlp"]["accuracy"]),
            "closed_best_rel": relative_change(row["closed_best"], base["closed_best"]),
            "eer_pp": row["open_xvector"]["eer"] - base["open_xvector"]["eer"]}


def _add_relative_changes(report: dict) -> None:
    base = report["models"].get("baseline")
    if not base:
        return
    for name, m in report["models"].items():
        if name == "baseline":
            continue
        for k, row in m["layers"].items():
            b = base["layers"].get(k)
            if b:
                row["vs_baseline"] = vs_baseline(row, b)


# ---- reports ------------------------------------------------------------------------------------------------

def _pct(v) -> str:
    return number(v, "{:+.1f} %")


def render_markdown(report: dict) -> str:
    chance = 100 / report["eval_speakers"]
    lines = ["# Speaker leakage per layer", "",
             f"{report['eval_speakers']} unseen speakers, {report['eval_utterances']} utterances; x-vector "
             f"trained on {report['attacker_train_speakers']} other speakers. Chance (closed set) = "
             f"{chance:.1f} %. Higher EER = more private (50 % = no information). Attackers are semi-informed: "
             f"trained on the embeddings of the source they attack.", ""]
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
    lines += ["| model | layer | closed-set LR % | closed-set MLP % | rel. change (best) vs baseline | "
              "x-vector EER % | minDCF |", "|---|---|---|---|---|---|---|"]
    for name, m in report["models"].items():
        for k, row in m["layers"].items():
            rel = _pct(row.get("vs_baseline", {}).get("closed_best_rel")) if name != "baseline" else ""
            lines.append(f"| {name} | {k} | {row['closed_lr']['accuracy']:.1f} | {row['closed_mlp']['accuracy']:.1f} | "
                         f"{rel} | {row['open_xvector']['eer']:.1f} | {row['open_xvector']['min_dcf']:.3f} |")
    spreads = [(name, k, row["seed_spread"]) for name, m in report["models"].items()
               for k, row in m["layers"].items() if row.get("seed_spread")]
    if spreads:
        lines += ["", "Over attacker seeds (same embeddings and utterance split; mean ± sample sd, then each seed):", "",
                  "| model | layer | seeds | closed-set LR % | closed-set MLP % | x-vector EER % |", "|---|---|---|---|---|---|"]
        for name, k, sp in spreads:
            cell = lambda key: (f"{sp[key + '_mean']:.1f} ± {sp[key + '_sd']:.1f} ("
                                + ", ".join(f"{v:.1f}" for v in sp[key]) + ")")
            lines.append(f"| {name} | {k} | {', '.join(map(str, sp['seeds']))} | {cell('closed_lr')} | "
                         f"{cell('closed_mlp')} | {cell('eer')} |")
    ignorant = report.get("ignorant") or {}
    if report.get("format") == REPORT_FORMAT:
        per_model = ignorant  # {model: {layer: row}}
    else:  # veil-privacy/1: {layer: row} for the anonymized model
        per_model = {"anonymized": ignorant} if ignorant else {}
    if per_model:
        lines += ["", "Ignorant attacker (fitted on baseline embeddings, applied to the attacked source's):", "",
                  "| model | layer | closed-set LR % | closed-set MLP % | x-vector EER % |", "|---|---|---|---|---|"]
        for name, rows in per_model.items():
            for k, row in rows.items():
                lines.append(f"| {name} | {k} | {row['closed_lr']['accuracy']:.1f} | "
                             f"{row['closed_mlp']['accuracy']:.1f} | {row['open_xvector']['eer']:.1f} |")
    return "\n".join(lines) + "\n"


def headline(report: dict, source: str | None = None) -> str:
    """The README's privacy table, every number with its attacker: per attacked source and layer, Veil's
    semi-informed closed-set attackers (pooled mean+std -> LR / MLP) and its x-vector (EER)."""
    chance = 100 / report["eval_speakers"]
    lines = [f"| source | layer | closed-set accuracy %, pooled mean+std LR / MLP (chance {chance:.1f}) | "
             f"open-set EER %, Veil's x-vector (50 = no information) |", "|---|---|---|---|"]
    for name, m in report["models"].items():
        what = f"{name} ({m['backend']} {m['recipe']})" if m.get("kind") == "artifact" else name
        for k, row in m["layers"].items():
            lines.append(f"| {what} | {k} | {row['closed_lr']['accuracy']:.1f} / {row['closed_mlp']['accuracy']:.1f} | "
                         f"{row['open_xvector']['eer']:.1f} |")
    return "\n".join(lines) + (
        f"\n\nAttackers trained afterwards on the embeddings they attack (semi-informed), {report['eval_speakers']} "
        f"unseen speakers. Only Veil's own suite: stronger attackers do far better (see the privacy status above). "
        + made_by(report.get("command") or "veil privacy", source) + "\n")


def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "privacy.json", report)
    return [out_dir / "privacy.json", *rerender(report, out_dir / "privacy.json")]


def rerender(report: dict, json_path: Path) -> list[Path]:
    """Re-make ``privacy.md`` and ``privacy.png`` beside a recorded privacy JSON (``report``, its content)."""
    json_path = Path(json_path)
    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    write_text(md, render_markdown(report))
    plot_layers(report, png)
    return [md, png]


def plot_layers(report: dict, path: Path) -> None:
    """Closed-set accuracy (best of LR, MLP) and x-vector EER per layer, one line per model."""
    import matplotlib  # heavy to import, needed only where plots are drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    grl = set()
    for name, m in report["models"].items():
        ks = sorted(int(k) for k in m["layers"])
        style = "s--" if name == "baseline" else "o-"
        a1.plot(ks, [m["layers"][str(k)]["closed_best"] for k in ks], style, label=name)
        a2.plot(ks, [m["layers"][str(k)]["open_xvector"]["eer"] for k in ks], style, label=name)
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
    a1.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel="closed-set accuracy % (best of LR, MLP)", ylim=(0, 102))
    a2.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel="x-vector EER %", ylim=(0, 55))
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
