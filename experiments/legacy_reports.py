"""The privacy reports written before the attacker suite: ``veil-privacy/2`` and ``veil-privacy/1`` (Veil's original
three attackers: pooled mean+std LR / MLP and the x-vector). Recorded results in benchmarks/results still render as
they were recorded (``veil render``); nothing writes these formats any more.
"""
from __future__ import annotations

from pathlib import Path

from toolkit.console import number
from toolkit.headlines import made_by
from toolkit.privacy import report as privacy_report
from toolkit.results.render import ResultKind

ORIGINAL_FORMAT = "veil-privacy/2"   # Veil's original attackers only (pooled LR / MLP, x-vector)
OLD_REPORT_FORMAT = "veil-privacy/1"  # written before reports carried a format field: the same keys, older ignorant rows


def report_format(doc) -> str | None:
    """The legacy format of ``doc`` (reports from before the format field count as the first), or None."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") in (ORIGINAL_FORMAT, OLD_REPORT_FORMAT):
        return doc["format"]
    return OLD_REPORT_FORMAT if "format" not in doc and {"models", "layers", "eval_speakers"} <= set(doc) else None


def _pct(v) -> str:
    return number(v, "{:+.1f} %")


def render_original_markdown(report: dict) -> str:
    chance = 100 / report["eval_speakers"]
    lines = ["# Speaker leakage per layer", "",
             f"{report['eval_speakers']} unseen speakers, {report['eval_utterances']} utterances; x-vector "
             f"trained on {report['attacker_train_speakers']} other speakers. Chance (closed set) = "
             f"{chance:.1f} %. Higher EER = more private (50 % = no information). Attackers are semi-informed: "
             f"trained on the embeddings of the source they attack.", ""]
    lines += privacy_report.artifact_lines(report)
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
    if report_format(report) == ORIGINAL_FORMAT:
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


def original_headline(report: dict, source: str | None = None) -> str:
    """The README's privacy table of a report before the suite: Veil's semi-informed closed-set attackers
    (pooled mean+std -> LR / MLP) and its x-vector (EER), each named."""
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
        f"unseen speakers. Only Veil's original attackers: the attacker suite does far better (see the privacy "
        f"status above). " + made_by(report.get("command") or "veil privacy", source) + "\n")


def original_points(m: dict, task: str) -> list[tuple[int, float, None]]:
    """(layer, best of LR/MLP closed-set accuracy or x-vector EER, no attacker name) of one model."""
    return [(k, m["layers"][str(k)]["closed_best"] if task == "closed" else m["layers"][str(k)]["open_xvector"]["eer"],
             None) for k in sorted(int(k) for k in m["layers"])]


def rerender(report: dict, json_path: Path) -> list[Path]:
    return privacy_report.rerender(report, json_path, render_original_markdown, original_points,
                                   ("best of LR, MLP", "x-vector"))


RESULTS = {fmt: ResultKind(rerender, original_headline, "privacy", "Privacy")
           for fmt in (ORIGINAL_FORMAT, OLD_REPORT_FORMAT)}
