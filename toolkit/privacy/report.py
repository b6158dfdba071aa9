"""The privacy report: ``privacy.json`` first, and the Markdown, the plot and the README table made from it.

Formats: ``veil-privacy/3`` (the attacker suite: every attacker by name, the strongest of each task, the
spread over attacker seeds) and the reports before the suite, ``veil-privacy/2`` and ``veil-privacy/1``
(Veil's original three attackers), which still render as they were recorded.
"""
from __future__ import annotations

from pathlib import Path

from toolkit.console import number
from toolkit.files import write_json, write_text
from toolkit.headlines import made_by

REPORT_FORMAT = "veil-privacy/3"
SUITE_FORMATS = (REPORT_FORMAT,)
ORIGINAL_FORMAT = "veil-privacy/2"   # Veil's original attackers only (pooled LR / MLP, x-vector)
OLD_REPORT_FORMAT = "veil-privacy/1"  # written before reports carried a format field: the same keys, older ignorant rows
FORMATS = (REPORT_FORMAT, ORIGINAL_FORMAT, OLD_REPORT_FORMAT)


def report_format(doc) -> str | None:
    """The privacy report format of ``doc`` (reports from before the format field count as the first), or None."""
    if not isinstance(doc, dict):
        return None
    if doc.get("format") in FORMATS:
        return doc["format"]
    return OLD_REPORT_FORMAT if "format" not in doc and {"models", "layers", "eval_speakers"} <= set(doc) else None


def _pct(v) -> str:
    return number(v, "{:+.1f} %")


def _value(task: str, r: dict) -> str:
    return f"{r['accuracy']:.1f}" if task == "closed" else f"{r['eer']:.1f}"


def _mean_sd(sp: dict | None) -> str:
    if not sp:
        return ""
    return f"{sp['mean']:.1f} ± {sp['sd']:.1f} (" + ", ".join(f"{v:.1f}" for v in sp["values"]) + ")"


def _artifact_lines(report: dict) -> list[str]:
    art = report.get("artifact")
    if not art:
        return []
    lines = [f"Attacked: the exported prefix of `{art['export_dir']}`, run chunk by chunk in its runtime:", ""]
    for a in art["attacked"]:
        lines.append(f"- `{a['file']}` — {a['backend']} {a['recipe']}, layer {a['split_layer']}, "
                     f"sha256 `{a['sha256'][:16]}…`, runtime {a['runtime']} (checkpoint sha256 "
                     f"`{(a['checkpoint'].get('sha256') or '?')[:16]}…`)")
    for a in art["not_run"]:
        lines.append(f"- `{a['file']}` — {a['backend']} {a['recipe']}: **{a['status']}**, not attacked "
                     f"(nothing was executed)")
    return lines + [""]


# ---- the suite's report (veil-privacy/3) ------------------------------------------------------------------

def render_markdown(report: dict) -> str:
    if report_format(report) not in SUITE_FORMATS:
        return render_original_markdown(report)
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
    lines += _artifact_lines(report)
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
        line = (f"| {name} | {k} | {c['attacker'] if c else '—'} | {_value('closed', c) if c else '—'} | "
                f"{_pct(vs.get('strongest_closed_rel')) if vs else ''} | {o['attacker'] if o else '—'} | "
                f"{_value('open', o) if o else '—'} | {'' if eer_pp is None else f'{eer_pp:+.1f} pp'} |")
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
                         f"{_value(r['task'], r)} | " + (f"{_mean_sd(spread.get(att))} | " if seeds > 1 else "")
                         + f"{r['seconds']:.0f} |")
    original = [(name, k, row) for name, k, row in rows if "closed_best" in row and "open_xvector" in row]
    if original:
        lines += ["", "## Veil's original attackers (comparable with reports before the suite)", "",
                  "| model | layer | closed-set LR % | closed-set MLP % | rel. change (best) vs baseline | "
                  "x-vector EER % | minDCF |", "|---|---|---|---|---|---|---|"]
        for name, k, row in original:
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


def _strongest_cell(row: dict, task: str) -> str:
    """``value (attacker)``; over seeds ``mean ± sd (attacker with the best mean)``."""
    key = "accuracy" if task == "closed" else "eer"
    sp = ((row.get("spread") or {}).get("strongest") or {}).get(task)
    if sp:
        return f"{sp['mean']:.1f} ± {sp['sd']:.1f} ({sp['attacker']})"
    best = (row.get("strongest") or {}).get(task)
    return f"{best[key]:.1f} ({best['attacker']})" if best else "—"


def headline(report: dict, source: str | None = None) -> str:
    """The README's privacy table, every number with its attacker: per attacked source and layer, the strongest
    attacker of each task, named (suite reports), or Veil's original attackers (reports before the suite)."""
    if report_format(report) not in SUITE_FORMATS:
        return original_headline(report, source)
    chance = 100 / report["eval_speakers"]
    seeds = report.get("attacker_seeds", 1)
    lines = [f"| source | layer | closed-set accuracy %, strongest attacker (chance {chance:.1f}) | "
             f"open-set EER %, strongest attacker (50 = no information) |", "|---|---|---|---|"]
    for name, m in report["models"].items():
        what = f"{name} ({m['backend']} {m['recipe']})" if m.get("kind") == "artifact" else name
        for k, row in m["layers"].items():
            lines.append(f"| {what} | {k} | {_strongest_cell(row, 'closed')} | {_strongest_cell(row, 'open')} |")
    attackers = report.get("attacker_options", {}).get("attackers", "all")
    return "\n".join(lines) + (
        f"\n\nThe strongest of Veil's attacker suite (`--attackers {attackers}`, {len(report.get('attackers', []))} "
        f"attackers; docs/privacy.md) for each task, named; every attacker trained on the embeddings it attacks, "
        f"{report['eval_speakers']} unseen speakers"
        + (f", mean ± sd over {seeds} attacker seeds" if seeds > 1 else "") + ". "
        + made_by(report.get("command") or "veil privacy", source) + "\n")


# ---- the reports before the suite (veil-privacy/2 and /1) ------------------------------------------------------

def render_original_markdown(report: dict) -> str:
    chance = 100 / report["eval_speakers"]
    lines = ["# Speaker leakage per layer", "",
             f"{report['eval_speakers']} unseen speakers, {report['eval_utterances']} utterances; x-vector "
             f"trained on {report['attacker_train_speakers']} other speakers. Chance (closed set) = "
             f"{chance:.1f} %. Higher EER = more private (50 % = no information). Attackers are semi-informed: "
             f"trained on the embeddings of the source they attack.", ""]
    lines += _artifact_lines(report)
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


# ---- files ----------------------------------------------------------------------------------------------------

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


def _points(report: dict, m: dict, task: str) -> list[tuple[int, float, str | None]]:
    """(layer, value, attacker name) of one model: the strongest attacker (suite reports) or Veil's original
    attackers' best closed-set accuracy / x-vector EER (reports before the suite)."""
    suite = report_format(report) in SUITE_FORMATS
    out = []
    for k in sorted(int(k) for k in m["layers"]):
        row = m["layers"][str(k)]
        if suite:
            best = row.get("strongest", {}).get(task)
            if best:
                out.append((k, best["accuracy" if task == "closed" else "eer"], best["attacker"]))
        else:
            out.append((k, row["closed_best"] if task == "closed" else row["open_xvector"]["eer"], None))
    return out


def plot_layers(report: dict, path: Path) -> None:
    """Closed-set accuracy and open-set EER per layer, one line per model: the strongest attacker of the suite,
    each point labelled with its name (reports before the suite: best of pooled LR/MLP, and the x-vector)."""
    import matplotlib  # heavy to import, needed only where plots are drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    suite = report_format(report) in SUITE_FORMATS
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2) if suite else (10, 3.8))
    grl = set()
    for name, m in report["models"].items():
        style = "s--" if name == "baseline" else "o-"
        for ax, task in ((a1, "closed"), (a2, "open")):
            pts = _points(report, m, task)
            if not pts:
                continue
            ax.plot([k for k, _, _ in pts], [v for _, v, _ in pts], style, label=name)
            for k, v, attacker in pts:
                if attacker:
                    ax.annotate(attacker, (k, v), textcoords="offset points", xytext=(4, 4), fontsize=7)
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
    who = ("strongest attacker", "strongest attacker") if suite else ("best of LR, MLP", "x-vector")
    a1.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel=f"closed-set accuracy % ({who[0]})", ylim=(0, 102))
    a2.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel=f"open-set EER % ({who[1]})", ylim=(0, 55))
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
