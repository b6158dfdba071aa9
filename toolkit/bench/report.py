"""Bench results: the JSON schema check, and the Markdown table and plots rendered from the JSON."""
from __future__ import annotations

from pathlib import Path

from export.recipes import RUN_STATUSES
from toolkit.console import number as _f
from toolkit.errors import VeilError
from toolkit.files import json_safe, write_json, write_text
from toolkit.bench import op_profile
from toolkit.bench.phone_tools import tool_names
from toolkit.headlines import made_by

MEASUREMENT_KEYS = {"status": str, "threads": int, "load_ms": (int, float), "first_inference_ms": (int, float),
                    "runs": int, "p50_ms": (int, float), "p90_ms": (int, float), "p99_ms": (int, float),
                    "rtf": (int, float), "peak_rss_load_bytes": int, "peak_rss_inference_bytes": int}
ARTIFACT_KEYS = {"name": str, "role": str, "backend": str, "recipe": str, "runtime": str, "dtype": str,
                 "size_bytes": int, "measurements": list}
TOP_KEYS = {"format": str, "created_at": str, "command": str, "host": dict, "checkpoint": dict, "split_layer": int,
            "chunk": dict, "prefix": dict, "settings": dict, "artifacts": list, "ceiling": dict, "payload": dict,
            "targets": dict}


class SchemaError(VeilError):
    pass


def _check(obj: dict, keys: dict, where: str) -> None:
    for k, typ in keys.items():
        if k not in obj:
            raise SchemaError(f"bench JSON: {where} lacks '{k}'")
        if not isinstance(obj[k], typ) or isinstance(obj[k], bool) and typ is not bool:
            raise SchemaError(f"bench JSON: {where}.{k} is {type(obj[k]).__name__}, expected {typ}")


def validate(doc: dict) -> None:
    """The bench JSON schema (format veil-bench/1): raises SchemaError naming the first violation."""
    _check(doc, TOP_KEYS, "document")
    if doc["format"] != "veil-bench/1":
        raise SchemaError(f"bench JSON: unknown format {doc['format']!r}")
    if not doc["artifacts"]:
        raise SchemaError("bench JSON: no artifacts")
    for i, a in enumerate(doc["artifacts"]):
        _check(a, ARTIFACT_KEYS, f"artifacts[{i}]")
        if a.get("status") in RUN_STATUSES:
            if a["measurements"]:
                raise SchemaError(f"bench JSON: artifacts[{i}] is {a['status']} but has measurements")
            continue
        for j, m in enumerate(a["measurements"]):
            if m.get("status") != "ok":
                _check(m, {"status": str, "error": str}, f"artifacts[{i}].measurements[{j}]")
                continue
            _check(m, MEASUREMENT_KEYS, f"artifacts[{i}].measurements[{j}]")
            if not m["p50_ms"] <= m["p90_ms"] <= m["p99_ms"]:
                raise SchemaError(f"bench JSON: artifacts[{i}].measurements[{j}] percentiles out of order")
    for i, a in enumerate((doc.get("device") or {}).get("artifacts", [])):
        _check(a, {"file": str, "status": str, "measurements": list}, f"device.artifacts[{i}]")
        if a.get("tool") is not None and a["tool"] not in tool_names():
            raise SchemaError(f"bench JSON: device.artifacts[{i}].tool {a['tool']!r} is no known phone tool "
                              f"({', '.join(sorted(tool_names()))})")
    for codec, c in doc["payload"].get("codecs", {}).items():
        _check(c, {"bytes_per_second": (int, float), "dwer": (int, float)}, f"payload.codecs.{codec}")
    for key in ("speed", "size", "payload"):
        if key not in doc["targets"] or "status" not in doc["targets"][key]:
            raise SchemaError(f"bench JSON: targets.{key}.status missing")


def _mb(n) -> str:
    return "—" if n is None else f"{n / 1e6:.2f}"


def artifact_table(doc: dict) -> list[str]:
    torch_p50 = {}
    for a in doc["artifacts"]:
        if a["backend"] == "torch":
            torch_p50 = {m["threads"]: m["p50_ms"] for m in a["measurements"] if m.get("status") == "ok"}
    lines = ["| artifact | runtime | size MB | threads | load ms | 1st ms | p50 ms | p90 ms | p99 ms | RTF | "
             "× torch | peak RSS load MB | peak RSS infer MB | achieved/peak | XNNPACK subgraphs |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in doc["artifacts"]:
        name = a["name"] + (" (baseline)" if a["role"] == "baseline" else "")
        if a.get("status") in RUN_STATUSES:
            lines.append(f"| {name} | {a['runtime']} | {_mb(a['size_bytes'])} | — | {a['status']} | | | | | | | | | | |")
            continue
        for m in a["measurements"]:
            if m.get("status") != "ok":
                lines.append(f"| {name} | {a['runtime']} | {_mb(a['size_bytes'])} | {m.get('threads', '—')} | "
                             f"failed: {m.get('error', '')[:80]} | | | | | | | | | | |")
                continue
            speed = torch_p50.get(m["threads"])
            lines.append(
                f"| {name} | {a['runtime']} | {_mb(a['size_bytes'])} | {m['threads']} | {_f(m['load_ms'], '{:.0f}')} | "
                f"{_f(m['first_inference_ms'], '{:.1f}')} | {_f(m['p50_ms'])} | {_f(m['p90_ms'])} | {_f(m['p99_ms'])} | "
                f"{_f(m['rtf'], '{:.4f}')} | {_f(speed / m['p50_ms'] if speed else None, '{:.2f}')} | "
                f"{_mb(m['peak_rss_load_bytes'])} | {_mb(m['peak_rss_inference_bytes'])} | "
                f"{_f(m.get('achieved_over_peak'), '{:.1%}')} | {_subgraphs(a)} |")
    return lines


def payload_table(doc: dict) -> list[str]:
    p = doc["payload"]
    lines = ["| payload | kB/s of audio | × 16-bit PCM | SNR dB | WER % | ΔWER pp | identical transcripts |",
             "|---|---|---|---|---|---|---|"]
    for codec, c in p["codecs"].items():
        lines.append(f"| {codec} | {c['kB_per_second']:.2f} | {c['vs_pcm16']:.3f} | {_f(c['snr_db'], '{:.1f}')} | "
                     f"{c['wer']:.2f} | {c['dwer']:+.2f} | {c['identical_share']:.0%} |")
    ref = p["references"]
    lines.append(f"| 16-bit PCM, 16 kHz (reference) | {ref['pcm16_bytes_per_second'] / 1000:.2f} | 1.000 | | | | |")
    for name, bps in ref["speech_codecs_bytes_per_second"].items():
        lines.append(f"| {name} (nominal) | {bps / 1000:.2f} | {bps / ref['pcm16_bytes_per_second']:.3f} | | | | |")
    return lines


def ceiling_lines(doc: dict) -> list[str]:
    c = doc["ceiling"]
    if c.get("status") != "ok":
        return ["Machine ceiling: not measured."]
    lines = [f"Matmul {c['shape_mkn'][0]}×{c['shape_mkn'][1]}×{c['shape_mkn'][2]} ({c['statistic']}):", "",
             "| kernel | threads | GMAC/s (p50) | GMAC/s (best run) |", "|---|---|---|---|"]
    for k in c["kernels"]:
        if k["status"] == "ok":
            lines.append(f"| {k['name']} | {k['threads']} | {k['gmacs']:.1f} | {k['gmacs_best']:.1f} |")
        else:
            lines.append(f"| {k['name']} | {k['threads']} | failed: {k.get('error', '')[:60]} | |")
    peaks = "; ".join(f"{dt} {th} thread(s): {v['gmacs']:.1f} GMAC/s ({v['kernel']})"
                      for dt, per in c["peak"].items() for th, v in per.items())
    lines += ["", f"Peak used for achieved/peak: {peaks}."]
    return lines


def target_lines(doc: dict) -> list[str]:
    t = doc["targets"]
    out = ["| target | status | measured |", "|---|---|---|"]
    sp = t["speed"]
    out.append(f"| {sp['target']} | {sp['status']} | " + "; ".join(
        f"{th} thr: {v['best_int8']} {v['speedup']:.2f}×" for th, v in sp["per_threads"].items()) + " |")
    sz = t["size"]
    out.append(f"| {sz['target']} | {sz['status']} | " + "; ".join(
        f"{a['artifact']} {a['ratio']:.0%} of {a['fp32_reference']}" +
        (f" ({a['ratio_without_float_frontend']:.0%} without the float32 frontend)"
         if a.get("ratio_without_float_frontend") is not None else "") for a in sz["artifacts"]) + " |")
    pl = t["payload"]
    meas = (f"{pl['kB_per_second']:.2f} kB/s, ΔWER {pl['dwer']:+.2f} pp" if "kB_per_second" in pl else "—")
    out.append(f"| {pl['target']} | {pl['status']} | {meas} |")
    if "vs_onnxruntime_int8" in t:
        v = t["vs_onnxruntime_int8"]
        out.append(f"| {v['target']} | {v['status']} | " + "; ".join(
            f"{th} thr: {x['best_int8']} {x['speedup']:.2f}×" for th, x in v["per_threads"].items()) + " |")
    if "efficiency" in t:
        e = t["efficiency"]
        out.append(f"| {e['target']} | {e['status']} | " + "; ".join(
            f"{a['artifact']} {a['threads']} thr: {a['achieved_over_peak']:.0%}" for a in e["artifacts"]) + " |")
    if "delegation" in t:
        d = t["delegation"]
        out.append(f"| {d['target']} | {d['status']} | " + "; ".join(
            f"{a['artifact']}: {a['delegated_subgraphs']}" for a in d["artifacts"]) + " |")
    return out


def _subgraphs(a: dict) -> str:
    return str(a["delegation"]["delegated_subgraphs"]) if a.get("delegation") else "—"


def _parity(a: dict) -> str:
    p = a.get("parity")
    return f"{p['snr_db']:.1f} dB, ΔWER {p['dwer']:+.2f} pp" if p else "—"


def baseline_parity_lines(doc: dict) -> list[str]:
    rows = [a for a in doc["artifacts"] if a.get("parity")]
    if not rows:
        return []
    lines = ["| baseline | SNR dB vs float prefix | cos mean | WER % | ΔWER pp | identical transcripts |",
             "|---|---|---|---|---|---|"]
    for a in rows:
        p = a["parity"]
        lines.append(f"| {a['name']} | {p['snr_db']:.1f} | {p['cosine_mean']:.5f} | {p['wer']:.2f} | "
                     f"{p['dwer']:+.2f} | {p['identical_share']:.0%} |")
    return lines


def headline(doc: dict, source: str | None = None) -> str:
    """The README's benchmark table: per artifact and baseline its size and p50 latency at the run's first
    thread count, and the speed-up over the torch eager fp32 prefix measured in the same run."""
    th = doc["settings"]["threads"][0]

    def p50(a):
        return next((m["p50_ms"] for m in a["measurements"] if m.get("threads") == th and m.get("status") == "ok"),
                    None)
    torch_p50 = next((p50(a) for a in doc["artifacts"] if a["backend"] == "torch"), None)
    lines = [f"| artifact | size MB | p50 ms, {th} thread{'s' if th > 1 else ''} | × torch eager | XNNPACK subgraphs | "
             "parity (baselines) |", "|---|---|---|---|---|---|"]
    for a in doc["artifacts"]:
        name = a["name"] + (" (baseline)" if a["role"] == "baseline" else "")
        if a.get("status") in RUN_STATUSES:
            lines.append(f"| {name} | {_mb(a['size_bytes'])} | {a['status']} | | | |")
            continue
        t = p50(a)
        lines.append(f"| {name} | {_mb(a['size_bytes'])} | {_f(t)} | "
                     f"{_f(torch_p50 / t if torch_p50 and t else None)} | {_subgraphs(a)} | {_parity(a)} |")
    h = doc["host"]
    return "\n".join(lines) + (
        f"\n\n{doc['chunk']['seconds']:g} s chunk, {doc['prefix']['macs_per_chunk'] / 1e6:.1f} M MACs; host "
        f"`{h['hostname']}` ({h['cpu']}, {h['cores']} cores, shared: compare rows, not runs"
        + (f"; 1-min load average {h['load_average_start'][0]:.1f} at start" if h.get("load_average_start") else "")
        + f"), {doc['created_at'][:10]}. "
        + made_by(doc["command"], source) + "\n")


def render_markdown(doc: dict) -> str:
    h = doc["host"]
    pre = doc["prefix"]
    lines = [f"# Veil benchmark — {doc['created_at']}", "",
             f"Host `{h['hostname']}`: {h['cpu']}, {h['cores']} cores, {h['platform']}; load average at start "
             f"{h.get('load_average_start')}, at end {h.get('load_average_end')} (shared machine: compare rows "
             f"of this run, not runs).", "",
             f"Checkpoint `{doc['checkpoint']['path']}` (sha256 {doc['checkpoint']['sha256'][:12]}…), prefix = "
             f"frontend + blocks 1..{doc['split_layer']}; one {doc['chunk']['seconds']:g} s chunk "
             f"({doc['chunk']['samples']} samples) = {pre['macs_per_chunk'] / 1e6:.1f} M MACs; "
             f"{doc['settings']['runs']} timed runs after {doc['settings']['warmup']} warm-up, each artifact in a "
             f"fresh process" + (" — **quick smoke run**" if doc["settings"].get("quick") else "") + ".", "",
             f"Command: `{doc['command']}`", "", "## Latency, memory, size", ""]
    lines += artifact_table(doc)
    lines += ["", "RTF = p50 latency / chunk duration. × torch = torch eager fp32 p50 / this p50 at the same "
              "thread count. Peak RSS is over the worker's baseline (runtime imported, artifact not loaded).", "",
              "## Targets", ""] + target_lines(doc)
    if baseline_parity_lines(doc):
        lines += ["", "## Parity of the baselines", "", "Each baseline chunked as on a phone on the payload "
                  "utterances, against the float torch prefix, decoded by the float suffix (Veil's artifacts: "
                  "`veil parity`, the export's parity.json).", ""] + baseline_parity_lines(doc)
    profiled = [a for a in doc["artifacts"] if a.get("profile")]
    if profiled:
        lines += ["", "## Per-operator profile", ""]
        for a in profiled:
            lines += op_profile.markdown(a["name"], a["profile"])
    lines += ["", "## Payload (what leaves the phone)", ""] + payload_table(doc)
    p = doc["payload"]
    lines += ["", f"{p['utterances']} utterances ({p['audio_seconds']} s), one message per prefix chunk; ΔWER "
              f"through the float suffix against the fp32 embeddings (float WER {p['float']['wer']:.2f} %).", "",
              "## Machine ceiling", ""] + ceiling_lines(doc)
    if doc.get("device") and doc["device"].get("kind") == "ios":
        d = doc["device"]
        lines += ["", f"## Phone (iOS): {d.get('model') or d.get('destination') or 'device not named in the log'}", "",
                  f"From the xcodebuild log `{d.get('log')}`; latency = the XCTest wall-clock metric per iteration, "
                  f"memory = the process's peak physical memory (absolute, not over a baseline).", "",
                  "| artifact | XCTest case | compute units | load ms | p50/mean ms | RTF | peak MB |",
                  "|---|---|---|---|---|---|---|"]
        for a in d["artifacts"]:
            for m in a.get("measurements", []):
                center = m.get("p50_ms") if m.get("p50_ms") is not None else m.get("mean_ms")
                peak = m.get("peak_rss_inference_bytes")
                lines.append(f"| {a.get('file') or '—'} | {a['test']} | {m.get('compute_units') or '—'} | "
                             f"{_f(m.get('load_ms'))} | {_f(center)} | {_f(m.get('rtf'), '{:.4f}')} | "
                             f"{_f(peak / 1e6 if peak is not None else None, '{:.1f}')} |")
    elif doc.get("device"):
        lines += android_lines(doc["device"])
    lines += ["", "![benchmark](%s.png)" % doc.get("_name", "bench"), ""]
    return "\n".join(lines)


def android_lines(d: dict) -> list[str]:
    """The phone section of an Android run: one row per artifact and thread count, with the accelerator it ran on
    (``npu (SM8650)`` for an ahead-of-time NPU artifact); an artifact that was not run gets one row with why."""
    lines = ["", f"## Phone: {d.get('model')} ({d.get('abi')}, serial {d.get('serial')}"
                 + (f", SoC {d['soc']}" if d.get("soc") else "") + ")", "",
             "| artifact | tool | accelerator | threads | load ms | p50/mean ms | RTF |",
             "|---|---|---|---|---|---|---|"]
    for a in d["artifacts"]:
        where = a.get("accelerator") or "—"
        if a.get("soc"):
            where += f" ({a['soc']})"
        if not a.get("measurements"):
            lines.append(f"| {a['file']} | {a.get('tool') or '—'} | {where} | {a.get('status')} | | | |")
        for m in a.get("measurements", []):
            center = m.get("p50_ms") if m.get("p50_ms") is not None else m.get("mean_ms")
            lines.append(f"| {a['file']} | {a['tool']} | {where} | {m.get('threads')} | {_f(m.get('load_ms'))} | "
                         f"{_f(center)} | {_f(m.get('rtf'), '{:.4f}')} |")
    return lines


def render_plots(doc: dict, path: Path) -> None:
    import matplotlib  # heavy to import, needed only where plots are drawn
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    threads = doc["settings"]["threads"]
    arts = [a for a in doc["artifacts"] if a.get("status") not in RUN_STATUSES]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.8))
    names = [a["name"] for a in arts]
    width = 0.8 / max(1, len(threads))
    for j, th in enumerate(threads):
        p50 = [next((m["p50_ms"] for m in a["measurements"] if m.get("threads") == th and m.get("status") == "ok"),
                    0) for a in arts]
        p90 = [next((m["p90_ms"] for m in a["measurements"] if m.get("threads") == th and m.get("status") == "ok"),
                    0) for a in arts]
        xs = [i + j * width for i in range(len(arts))]
        axes[0].bar(xs, p50, width, label=f"{th} thread(s) p50")
        axes[0].errorbar(xs, p50, yerr=[[0] * len(p50), [b - a for a, b in zip(p50, p90)]], fmt="none", ecolor="k",
                         capsize=2)
        rss = [next((m["peak_rss_inference_bytes"] / 1e6 for m in a["measurements"]
                     if m.get("threads") == th and m.get("status") == "ok"), 0) for a in arts]
        axes[1].bar(xs, rss, width, label=f"{th} thread(s)")
    top = 2.5 * max([m["p50_ms"] for a in arts for m in a["measurements"] if m.get("status") == "ok"] or [1.0])
    axes[0].set_ylim(0, top)  # preemption spikes on a shared machine would flatten every bar
    for ax, title, ylabel in ((axes[0], "latency per chunk (bar p50, whisker p90, clipped)", "ms"),
                              (axes[1], "peak RSS during inference over baseline", "MB")):
        ax.set_xticks([i + width * (len(threads) - 1) / 2 for i in range(len(arts))])
        ax.set_xticklabels(names, rotation=35, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    all_arts = doc["artifacts"]
    axes[2].bar(range(len(all_arts)), [a["size_bytes"] / 1e6 for a in all_arts], color="tab:gray")
    axes[2].set_xticks(range(len(all_arts)))
    axes[2].set_xticklabels([a["name"] for a in all_arts], rotation=35, ha="right", fontsize=8)
    axes[2].set_title("artifact size", fontsize=10)
    axes[2].set_ylabel("MB")
    p = doc["payload"]
    labels = list(p["codecs"]) + ["PCM 16-bit"] + [n.split(" (")[0] for n in p["references"]["speech_codecs_bytes_per_second"]]
    vals = [c["kB_per_second"] for c in p["codecs"].values()] + [p["references"]["pcm16_bytes_per_second"] / 1000] + \
           [v / 1000 for v in p["references"]["speech_codecs_bytes_per_second"].values()]
    colors = ["tab:blue"] * len(p["codecs"]) + ["tab:gray"] * (len(vals) - len(p["codecs"]))
    axes[3].bar(range(len(vals)), vals, color=colors)
    axes[3].set_xticks(range(len(vals)))
    axes[3].set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    for i, c in enumerate(p["codecs"].values()):
        axes[3].annotate(f"ΔWER {c['dwer']:+.2f}", (i, c["kB_per_second"]), ha="center", va="bottom", fontsize=7)
    axes[3].set_title("payload per second of audio", fontsize=10)
    axes[3].set_ylabel("kB/s")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def rerender(doc: dict, json_path: Path) -> list[Path]:
    """Re-make the .md and .png beside a recorded bench JSON (``doc``, its content)."""
    json_path = Path(json_path)
    return write_all(doc, json_path.parent, json_path.stem)


def write_all(doc: dict, out_dir: Path, name: str, plots: bool = True,
              markdown=render_markdown, plotter=render_plots) -> list[Path]:
    """``<name>.json`` (non-finite numbers as strings, ``toolkit.files``), then the ``.png`` and ``.md``
    rendered from what the JSON holds."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    clean = json_safe(doc)
    json_path, md_path, png_path = out_dir / f"{name}.json", out_dir / f"{name}.md", out_dir / f"{name}.png"
    write_json(json_path, clean)
    written = [json_path]
    if plots:
        tmp = png_path.with_name(f".{png_path.stem}.tmp.png")
        plotter(clean, tmp)
        tmp.replace(png_path)
        written.append(png_path)
    write_text(md_path, markdown({**clean, "_name": name}))
    written.append(md_path)
    return written
