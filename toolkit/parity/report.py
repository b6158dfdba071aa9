"""parity.json first; parity.md and a self-contained parity.html (plots as base64 PNG) are rendered from it."""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from toolkit.console import number as _num
from toolkit.files import json_safe, write_json, write_text
from toolkit.headlines import made_by
from toolkit.parity.gates import METRICS, describe_failure


def rows(report: dict) -> list[dict]:
    out = []
    for a in report["artifacts"]:
        if "checked_on_linux" in a:
            mil = a["checked_on_linux"].get("mil_reference")
            n, c = (mil["numeric"], mil["cloud"]) if mil else ({}, {})
            failed = "; ".join(describe_failure(f) for f in a.get("failures", []))
            out.append({"artifact": a["file"], "backend": a["backend"], "recipe": a["recipe"],
                        "snr": n.get("snr_db"), "cos_mean": n.get("cosine_mean"), "cos_min": n.get("cosine_min"),
                        "dwer": c.get("dwer"), "kl": c.get("kl_mean"),
                        "identical": 100 * c["identical_share"] if c else None, "gate": a["gate"],
                        "verdict": a["verdict"] + (f" ({mil['label']} {mil['verdict']})" if mil else ""),
                        "note": "; ".join(filter(None, [failed, offline_note(a["checked_on_linux"])]))})
            continue
        n, c = a["numeric"], a["cloud"]
        note = "; ".join(describe_failure(f) for f in a["failures"])
        loc = a.get("localization")
        if loc and "stages" in loc:
            where = (f"gap opens at {loc['first_gap_stage']}" if loc["first_gap_stage"]
                     else "gap not reproduced by re-export from the checkpoint")
            note = (note + "; " if note else "") + where
        out.append({"artifact": a["file"], "backend": a["backend"], "recipe": a["recipe"], "snr": n["snr_db"],
                    "cos_mean": n["cosine_mean"], "cos_min": n["cosine_min"], "dwer": c["dwer"], "kl": c["kl_mean"],
                    "identical": 100 * c["identical_share"], "gate": a["gate"], "verdict": a["verdict"] +
                    (" (borderline)" if a.get("borderline") else ""), "note": note})
    return out


def offline_note(checked: dict) -> str:
    """One line of what was checked of an artifact that did not run here."""
    est = checked.get("fp16_estimate") or {}
    mil = checked.get("mil_reference")
    parts = [f"numbers: {mil['label']}, the package's MIL program in numpy; Core ML not executed"] if mil else []
    if checked.get("mil_reference_unavailable"):
        parts.append(checked["mil_reference_unavailable"])
    parts += [f"{'torch ' if mil else 'not executed; '}estimate SNR {_num(est.get('numeric', {}).get('snr_db'), '{:.1f}')} dB, "
             f"dWER {_num(est.get('cloud', {}).get('dwer'), '{:+.2f}')}"]
    if "placement" in checked:
        p = checked["placement"]
        parts.append(f"{checked['soc']}: {p['ops_on_npu']}/{p['ops_total']} ops on the NPU, {p['partitions']} "
                     f"partition(s), {p['ops_on_cpu']} on the CPU")
        src = checked.get("source_graph_on_cpu", {})
        if "numeric" in src:
            parts.append(f"source graph on CPU SNR {_num(src['numeric']['snr_db'], '{:.1f}')} dB"
                         f"{'' if src['same_bytes_as_compiled_source'] else ' (NOT the compiled source bytes)'}")
    if "weights_vs_torch" in checked:
        w = checked["weights_vs_torch"]
        parts.append(f"weights max rel. error {_num(w['max_rel_error'], '{:.2e}')} ({w['matched']} tensors); spec "
                     f"{checked['spec_vs_manifest']['status']}")
    if "delegation" in checked and checked["delegation"]:
        d = checked["delegation"]
        parts.append(f"{d['ops_delegated']}/{d['ops_total']} ops in the {d.get('label', d['backend'])} delegate")
    st = checked.get("stress_estimate")
    if st:
        parts.append(f"stress estimate worst {_num(st['stress_snr_db'], '{:.1f}')} dB ({st['worst_case']})" +
                     (f", gap opens at {st['stages']['first_gap_stage']}" if st.get("stages") else ""))
    return "; ".join(parts)


def stress_rows(a: dict) -> tuple[str, dict] | None:
    """(label, stress result) of an artifact: measured in its runtime, by the MIL reference interpreter (a Core ML
    package off macOS), or its torch estimate's."""
    if "stress" in a:
        return "runtime", a["stress"]
    mil = a.get("checked_on_linux", {}).get("mil_reference")
    if mil:
        return mil["label"], mil["stress"]
    st = a.get("checked_on_linux", {}).get("stress_estimate")
    return ("estimate", st) if st else None


def _gate_text(g: dict) -> str:
    return ", ".join(f"{k} {'≥' if METRICS.get(k, ('', 'max'))[1] == 'min' else '≤'} {v:g}" for k, v in sorted(g.items()))


def render_markdown(report: dict) -> str:
    au = report["audio"]
    lines = [f"# Parity — {report['verdict']}", "",
             f"{au['utterances']} utterances ({au['speakers']} speakers, {au['seconds']} s, {au['chunks']} chunks of "
             f"{au['chunk_samples']} samples) of `{au['split']}`, each artifact in its real runtime, chunked as on "
             f"the phone, against the float torch prefix (split after block {report['split_layer']}). Float model: "
             f"WER {_num(report['float']['wer'])} %, CER {_num(report['float']['cer'])} %. Platform: {report['platform']}.",
             "", "| artifact | backend | recipe | SNR dB | cos mean | cos min | ΔWER pp | KL nats/frame | identical % "
             "| gate | verdict | notes |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows(report):
        lines.append(f"| {r['artifact']} | {r['backend']} | {r['recipe']} | {_num(r['snr'], '{:.1f}')} | "
                     f"{_num(r['cos_mean'], '{:.5f}')} | {_num(r['cos_min'], '{:.4f}')} | {_num(r['dwer'], '{:+.2f}')} | "
                     f"{_num(r['kl'], '{:.2e}')} | {_num(r['identical'], '{:.0f}')} | {_gate_text(r['gate'])} | "
                     f"**{r['verdict']}** | {r['note']} |")
    mil = any("mil-reference" in str(r.get("note", "")) for r in rows(report))
    lines += ["", "ΔWER: WER(artifact) − WER(float), percentage points against the references; a gain never fails. "
              "`needs-macos`: Core ML runs only on macOS; `needs-device`: an NPU artifact runs only on its phone; "
              "nothing was executed and nothing is reported as passed."
              + (" `mil-reference (Linux)`: a Core ML package's own MIL program evaluated by Veil's numpy interpreter "
                 "and gated (a failure fails); Core ML's kernels and the Neural Engine's numerics still need a Mac."
                 if mil else "")]
    stress = [(a, *stress_rows(a)) for a in report["artifacts"] if stress_rows(a)]
    if stress:
        cases = [c["case"] for c in stress[0][2]["cases"]]
        lines += ["", "## Loud and hostile audio", "",
                  f"One chunk per case, made from utterance `{report.get('stress_audio', {}).get('from_utterance', '?')}` "
                  f"(seed {stress[0][2]['seed']}): SNR dB / mean cosine of the embeddings against the float prefix on "
                  f"the same chunk. `estimate`: a torch stand-in of an artifact that cannot run here.", "",
                  "| artifact | measured | " + " | ".join(cases) + " | worst | gate |",
                  "|---|---|" + "---|" * (len(cases) + 2)]
        for a, label, st in stress:
            cells = [f"{_num(c['snr_db'], '{:.1f}')} / {_num(c['cosine_mean'], '{:.3f}')}" for c in st["cases"]]
            g = {k: v for k, v in a["gate"].items() if k.startswith("stress_")}
            lines.append(f"| {a['file']} | {label} | " + " | ".join(cells) + f" | {st['worst_case']} | "
                         f"{_gate_text(g)} |")
        for a, label, st in stress:
            loc = st.get("localization") or ({"stages": st["stages"]["stages"],
                                               "first_gap_stage": st["stages"]["first_gap_stage"]}
                                              if st.get("stages") else None)
            if loc and "stages" in loc:
                lines += ["", f"Stress case `{st['worst_case']}` on {a['file']} ({label}): the gap opens at "
                          f"**{loc['first_gap_stage'] or 'no single stage'}**. " +
                          ", ".join(f"{s['stage']} {_num(s['snr_db'], '{:.1f}')} dB" for s in loc["stages"])]
    for a in report["artifacts"]:
        loc = a.get("localization")
        if loc and "stages" in loc:
            lines += ["", f"## Where the gap opens: {a['file']}", "", f"{loc['method']}, {loc['chunks']} chunks; "
                      f"threshold {loc['threshold_db']:.1f} dB. First gap: **{loc['first_gap_stage'] or 'none'}** "
                      f"({loc['first_gap_rule']}).", "", "| stage | SNR dB | drop dB |", "|---|---|---|"]
            lines += [f"| {s['stage']} | {_num(s['snr_db'], '{:.1f}')} | {_num(s['drop_db'], '{:.1f}')} |"
                      for s in loc["stages"]]
            if loc.get("note"):
                lines += ["", loc["note"]]
        if a.get("bundled_program"):
            b = a["bundled_program"]
            v = b["verified_here"]
            lines += ["", f"Bundled program `{b['file']}`: {b['test_cases']} test cases (atol {b['atol']:.2e}); "
                      f"reloaded and run here: {v['cases_passed']}/{v['test_cases_held']} passed ({v['status']})."]
    return "\n".join(lines) + "\n"


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode()


def plots(report: dict) -> list[tuple[str, str]]:
    import matplotlib  # heavy to import, needed only where plots are drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    out = []
    ran = [a for a in report["artifacts"] if "numeric" in a]
    if ran:
        pu = report["plot_utterance"]
        fig, ax = plt.subplots(figsize=(9, 3.2))
        for a in ran:
            ax.plot(a["cosine_over_time"], label=f"{a['backend']} {a['recipe']}", lw=1)
        for edge in range(pu["chunk_frames"], pu["frames"], pu["chunk_frames"]):
            ax.axvline(edge, color="grey", ls="--", lw=0.8)
        ax.set_xlabel("frame (40 ms); dashed: chunk edges")
        ax.set_ylabel("cosine vs float")
        ax.set_title(f"per-frame cosine, utterance {pu['id']}")
        ax.legend(fontsize=7)
        out.append(("Per-frame cosine over time", _png(fig)))
        plt.close(fig)
        fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
        names = [f"{a['backend']}\n{a['recipe']}" for a in ran]
        snr = [min(float(a["numeric"]["snr_db"]), 150.0) for a in ran]
        colors = ["tab:green" if a["verdict"] == "pass" else "tab:red" for a in ran]
        axes[0].bar(names, snr, color=colors)
        axes[0].scatter(names, [a["gate"].get("snr", float("nan")) for a in ran], marker="_", s=400, color="k",
                        label="gate", zorder=3)
        axes[0].set_ylabel("SNR dB (capped at 150)")
        axes[0].legend(fontsize=7)
        dwer = [a["cloud"]["dwer"] for a in ran]
        axes[1].bar(names, [v if v == v else 0.0 for v in dwer], color=colors)
        dwer_gates = [a["gate"].get("dwer", float("nan")) for a in ran]
        if any(g == g for g in dwer_gates):  # none: a model without a suffix, no ΔWER measured
            axes[1].scatter(names, dwer_gates, marker="_", s=400, color="k", zorder=3)
        axes[1].axhline(0, color="grey", lw=0.8)
        axes[1].set_ylabel("ΔWER pp (artifact − float)" if any(v == v for v in dwer) else "ΔWER: not measured (no suffix)")
        for ax in axes:
            ax.tick_params(axis="x", labelsize=7)
        out.append(("SNR and ΔWER per artifact", _png(fig)))
        plt.close(fig)
    return out


def render_html(report: dict) -> str:
    md = render_markdown(report)
    body = []
    for line in md.splitlines():
        if line.startswith("# "):
            body.append(f"<h1>{html.escape(line[2:])}</h1>")
        elif line.startswith("## "):
            body.append(f"<h2>{html.escape(line[3:])}</h2>")
        elif line.startswith("|---"):
            continue
        elif line.startswith("|"):
            cells = [html.escape(c.strip()).replace("**", "") for c in line.strip("|").split("|")]
            body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
        elif line.strip():
            body.append(f"<p>{html.escape(line)}</p>")
    out, in_table = [], False
    for b in body:
        if b.startswith("<tr>") and not in_table:
            out.append("<table>")
            in_table = True
        if not b.startswith("<tr>") and in_table:
            out.append("</table>")
            in_table = False
        out.append(b)
    if in_table:
        out.append("</table>")
    for title, png in plots(report):
        out.append(f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;"
             "font-size:13px}td{border:1px solid #ccc;padding:3px 6px}tr:first-child td{font-weight:bold}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>Veil parity</title><style>{style}</style>"
            f"</head><body>{''.join(out)}</body></html>\n")


def write_reports(export_dir: Path, report: dict) -> list[Path]:
    """``parity.json`` (non-finite numbers as strings, ``toolkit.files``), then ``parity.md`` and
    ``parity.html`` rendered from what the JSON holds."""
    clean = json_safe(report)
    export_dir = Path(export_dir)
    write_json(export_dir / "parity.json", clean)
    write_text(export_dir / "parity.md", render_markdown(clean))
    write_text(export_dir / "parity.html", render_html(clean))
    return [export_dir / name for name in ("parity.json", "parity.md", "parity.html")]


def rerender(report: dict, json_path: Path) -> list[Path]:
    """Re-make ``parity.md`` and ``parity.html`` beside a recorded ``parity.json`` (``report``, its content)."""
    folder = Path(json_path).parent
    write_text(folder / "parity.md", render_markdown(report))
    write_text(folder / "parity.html", render_html(report))
    return [folder / "parity.md", folder / "parity.html"]


def headline(report: dict, source: str | None = None) -> str:
    """The README's export table: per artifact its real-runtime parity, or for Core ML off macOS the fp16
    estimate, labelled as such."""
    lines = ["| artifact | backend, recipe | size MB | SNR dB | cosine | ΔWER pp | stress worst SNR dB | verdict |",
             "|---|---|---|---|---|---|---|---|"]
    for a in report["artifacts"]:
        size = _num(a["size_bytes"] / 1e6 if a.get("size_bytes") else None)
        what = f"`{a['file']}` | {a['backend']} {a['recipe']} | {size}"
        label, st = stress_rows(a) or (None, None)
        tag = {"estimate": "estimate ", "runtime": ""}.get(label, "mil-ref ")
        stress = (f"{tag}{_num(st['stress_snr_db'], '{:.1f}')} "
                  f"({st['worst_case']})") if st else "–"
        mil = a.get("checked_on_linux", {}).get("mil_reference")
        if mil:
            n, c = mil["numeric"], mil["cloud"]
            lines.append(f"| {what} | mil-ref {_num(n['snr_db'], '{:.1f}')} | "
                         f"mil-ref {_num(n['cosine_mean'], '{:.4f}')} | mil-ref {_num(c['dwer'], '{:+.2f}')} | "
                         f"{stress} | {a['verdict']} |")
            continue
        if "checked_on_linux" in a:
            est = a["checked_on_linux"]["fp16_estimate"]
            lines.append(f"| {what} | estimate {_num(est['numeric']['snr_db'], '{:.1f}')} | "
                         f"estimate {_num(est['numeric']['cosine_mean'], '{:.4f}')} | "
                         f"estimate {_num(est['cloud']['dwer'], '{:+.2f}')} | {stress} | {a['verdict']} |")
            continue
        n, c = a["numeric"], a["cloud"]
        lines.append(f"| {what} | {_num(n['snr_db'], '{:.1f}')} | {_num(n['cosine_mean'], '{:.4f}')} | "
                     f"{_num(c['dwer'], '{:+.2f}')} | {stress} | {a['verdict']} |")
    au = report["audio"]
    return "\n".join(lines) + (
        f"\n\nEach artifact in its real runtime on {au['utterances']} `{Path(au['split']).name}` utterances, chunked "
        f"as on a phone, against the float prefix (split after block {report['split_layer']}) of "
        f"`{report['checkpoint']['path']}`; platform {report['platform']}. Stress: the worst of the loud and hostile "
        f"chunks (full-scale tones and noise, clipped, near-silent and DC-offset speech) against the float prefix. "
        f"Core ML runs only on macOS: off macOS its rows are the package's own MIL program run by Veil's numpy "
        f"interpreter (`mil-ref`), gated, still `needs-macos`; an NPU artifact runs only on its phone: its rows are "
        f"torch estimates, never a pass. " + made_by("export-prefix` / `veil parity", source) + "\n")
