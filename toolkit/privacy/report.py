"""The privacy report: ``privacy.json`` first, and the Markdown, the plot and the README table made from it.

Format ``veil-privacy/3``: the attacker suite, every attacker by name, the strongest of each task, the spread
over attacker seeds. The reports written before the suite are the research record's
(``experiments/legacy_reports.py``).
"""
from __future__ import annotations

from pathlib import Path

from toolkit.console import number
from toolkit.files import write_json, write_text
from toolkit.headlines import made_by

REPORT_FORMAT = "veil-privacy/3"


def _pct(v) -> str:
    return number(v, "{:+.1f} %")


def _value(task: str, r: dict) -> str:
    return f"{r['accuracy']:.1f}" if task == "closed" else f"{r['eer']:.1f}"


def _mean_sd(sp: dict | None) -> str:
    if not sp:
        return ""
    return f"{sp['mean']:.1f} ± {sp['sd']:.1f} (" + ", ".join(f"{v:.1f}" for v in sp["values"]) + ")"


def artifact_lines(report: dict) -> list[str]:
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
    lines += artifact_lines(report)
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
    attacker of each task, named."""
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


# ---- files ----------------------------------------------------------------------------------------------------

def write_report(report: dict, out_dir: Path) -> list[Path]:
    out_dir = Path(out_dir)
    write_json(out_dir / "privacy.json", report)
    return [out_dir / "privacy.json", *rerender(report, out_dir / "privacy.json")]


def rerender(report: dict, json_path: Path, markdown=None, points=None, who=None) -> list[Path]:
    """Re-make ``privacy.md`` and ``privacy.png`` beside a recorded privacy JSON (``report``, its content). An
    older format passes its own ``markdown``, ``points`` and axis words ``who``."""
    json_path = Path(json_path)
    md, png = json_path.with_suffix(".md"), json_path.with_suffix(".png")
    write_text(md, (markdown or render_markdown)(report))
    plot_layers(report, png, points, who)
    return [md, png]


def strongest_points(m: dict, task: str) -> list[tuple[int, float, str | None]]:
    """(layer, value, attacker name) of one model: the strongest attacker of the task at each layer."""
    out = []
    for k in sorted(int(k) for k in m["layers"]):
        best = m["layers"][str(k)].get("strongest", {}).get(task)
        if best:
            out.append((k, best["accuracy" if task == "closed" else "eer"], best["attacker"]))
    return out


def plot_layers(report: dict, path: Path, points=None, who=None) -> None:
    """Closed-set accuracy and open-set EER per layer, one line per model: the strongest attacker of the suite,
    each point labelled with its name (``points(model, task)`` and ``who`` for an older format)."""
    import matplotlib  # heavy to import, needed only where plots are drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    suite = points is None
    points = points or strongest_points
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2) if suite else (10, 3.8))
    grl = set()
    for name, m in report["models"].items():
        style = "s--" if name == "baseline" else "o-"
        for ax, task in ((a1, "closed"), (a2, "open")):
            pts = points(m, task)
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
    who = who or ("strongest attacker", "strongest attacker")
    a1.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel=f"closed-set accuracy % ({who[0]})", ylim=(0, 102))
    a2.set(xlabel="layer (0 = log-mel; shaded = GRL)", ylabel=f"open-set EER % ({who[1]})", ylim=(0, 55))
    fig.tight_layout()
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
