"""The cut-point sweep: export the prefix at every split layer in a range with one recipe, and chart latency,
peak memory, size and payload against the split layer.

Exports are cached under ``exports/.bench-cache/sweep/`` (keyed by checkpoint sha256, layer and recipe), so a
re-run only measures. Blocks beyond the checkpoint's trained split layer were trained on whole utterances and
run here on chunks, as they would on a phone (the export manifest says so too). Per-layer speaker leakage joins
the chart from recorded ``veil privacy`` results of the same checkpoint (matched by sha256) in the results
folder; without them ``privacy`` is recorded as pending.
"""
from __future__ import annotations

import datetime
import json
import re
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from toolkit.bench import ceiling as ceil
from toolkit.errors import VeilError, read_json
from toolkit.exporting.console import say

SWEEP_FORMAT = "veil-bench-sweep/1"


def parse_range(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*(?:\.\.|-)\s*(\d+)\s*", text) or re.fullmatch(r"\s*(\d+)\s*", text)
    if not m:
        raise VeilError(f"--sweep-split {text!r}: expected A..B (e.g. 1..6)")
    lo, hi = int(m.group(1)), int(m.group(m.lastindex))
    if lo < 1 or hi < lo:
        raise VeilError(f"--sweep-split {text}: expected 1 <= A <= B")
    return lo, hi


def sweep_backends(recipe: str) -> dict[str, str]:
    """``NAME`` -> every Android backend with that recipe; ``BACKEND=NAME`` -> that backend only."""
    import export as backends
    backend, sep, name = recipe.partition("=")
    chosen = {backend: name} if sep else {b: recipe for b in ("executorch", "litert")}
    for b, r in chosen.items():
        try:
            backends.get_backend(b).RECIPES.get(r)
        except (backends.UnknownBackend, backends.UnknownRecipe) as exc:
            raise VeilError(f"--recipe {recipe}: {exc}") from None
    return chosen


def sweep_export(model, checkpoint: Path, sha: str, k: int, recipe: str, cache: Path, corpus: Path) -> tuple[Path, dict]:
    """The prefix cut after block ``k``, exported with ``recipe`` through Veil's ``export`` backends (the
    same calls and options as ``export-prefix``, minus the backends the recipe does not name), into a folder
    with a minimal manifest; reused when it exists for this checkpoint."""
    import os

    import export as backends
    from toolkit.exporting.calibration import CALIBRATION_UTTS, calibration_chunks
    from toolkit.exporting.prefix_export import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME, check_chunks
    from toolkit.model.asr import split
    from toolkit.parity.check import read_manifest
    out = cache / f"{checkpoint.stem}-{sha[:12]}-k{k}-{recipe.replace('=', '-')}"
    if (out / "manifest.json").is_file():
        manifest = read_manifest(out)
        if manifest["checkpoint"]["sha256"] == sha:
            return out, manifest
    chosen = sweep_backends(recipe)
    cfg = model.cfg
    prefix = split(model, k)[0].eval()
    calibration = []
    if any(backends.get_backend(b).RECIPES.get(r).needs_calibration for b, r in chosen.items()):
        calibration, _ = calibration_chunks(corpus / "train", CALIBRATION_UTTS, cfg.chunk_samples)
    example, _ = check_chunks(corpus, cfg.chunk_samples)
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=cache))
    try:
        entries = []
        for b, r in chosen.items():
            mod = backends.get_backend(b)
            say(f"sweep: split layer {k}: exporting {b} {r} ...")
            try:
                art = mod.export(prefix, (example[0],), r, tmp / f"prefix-k{k}-{r}{mod.SUFFIX}", calibration=calibration,
                                 float_modules=FLOAT_MODULES, input_name=INPUT_NAME, output_name=OUTPUT_NAME)
            except backends.ExportError as exc:
                raise VeilError(f"sweep: split layer {k}: {exc}") from None
            entries.append(art.to_json(relative_to=tmp))
        manifest = {"format": "veil-export/1", "created_by": "veil bench --sweep-split",
                    "checkpoint": {"path": str(checkpoint), "sha256": sha}, "split_layer": k,
                    "trained_chunked_through": cfg.split_layer, "recipe": chosen,
                    "input": {"name": INPUT_NAME, "shape": [1, cfg.chunk_samples], "chunk_samples": cfg.chunk_samples},
                    "artifacts": entries}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            shutil.rmtree(out)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out, manifest


def privacy_by_layer(sha: str, results_dir: Path) -> tuple[dict, str | None]:
    """Per-layer speaker leakage of this exact checkpoint from recorded `veil privacy` results (matched by
    sha256): {layer: {closed_lr_accuracy, closed_mlp_accuracy, xvector_eer, chance}}, and the file used."""
    import json
    found, source = {}, None
    for path in sorted(results_dir.glob("privacy*.json")):
        try:
            doc = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        models = doc.get("models") if isinstance(doc, dict) else None
        for model in (models.values() if isinstance(models, dict) else models if isinstance(models, list) else []):
            if not isinstance(model, dict) or model.get("sha256") != sha:
                continue
            for layer, r in (model.get("layers") or {}).items():
                try:
                    found[int(layer)] = {"closed_lr_accuracy": r["closed_lr"]["accuracy"],
                                         "closed_mlp_accuracy": r.get("closed_mlp", {}).get("accuracy"),
                                         "xvector_eer": r.get("open_xvector", {}).get("eer"),
                                         "chance": r["closed_lr"]["chance"]}
                    source = str(path)
                except (KeyError, TypeError):
                    continue
    return found, source


def run_sweep(req) -> dict:
    from toolkit.bench import report
    from toolkit.bench.bench import (artifact_targets, bench_audio, default_name, host_info, load_average,
                                     measure_targets, tensor_bytes_fp32)
    from toolkit.bench.payload_eval import evaluate_payload
    from toolkit.cli import DEFAULT_ANONYMIZED, DEFAULT_CORPUS
    from toolkit.exporting.calibration import chunk_pcm
    from toolkit.model.asr import split
    from toolkit.model.checkpoint import file_sha256, load_checkpoint, tokenizer_from

    checkpoint = Path(req.checkpoint or DEFAULT_ANONYMIZED)
    if not checkpoint.is_file():
        raise VeilError(f"{checkpoint}: checkpoint not found (pass --checkpoint)")
    model, config = load_checkpoint(checkpoint)
    cfg = model.cfg
    lo, hi = req.sweep
    if hi > cfg.n_blocks:
        raise VeilError(f"--sweep-split {lo}..{hi}: the checkpoint has {cfg.n_blocks} blocks")
    sha = file_sha256(checkpoint)
    corpus = Path(req.corpus or DEFAULT_CORPUS)
    split_name, utts, pcms = bench_audio(corpus, req.payload_utts)
    chunk_seconds = cfg.chunk_samples / cfg.frontend.sample_rate
    chunk = chunk_pcm(pcms[int(np.argmax([len(p) for p in pcms]))], cfg.chunk_samples)[0]
    tokenizer = tokenizer_from(config)
    started, load_start = time.time(), load_average()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="veil-sweep-"))
    try:
        np.save(work / "input.npy", chunk)
        for k in range(lo, hi + 1):
            out, manifest = sweep_export(model, checkpoint, sha, k, req.recipe, req.cache_dir / "sweep", corpus)
            prefix, suffix = split(model, k)
            prefix.eval(), suffix.eval()
            macs = ceil.prefix_macs(prefix, cfg.chunk_samples)
            targets = [{"name": "torch eager fp32", "role": "baseline", "backend": "torch", "recipe": "fp32",
                        "runtime": "torch eager (no Veil)", "dtype": "fp32", "file": str(checkpoint),
                        "size_bytes": tensor_bytes_fp32(prefix),
                        "spec": {"kind": "torch", "checkpoint": str(checkpoint), "split_layer": k},
                        "measurements": []}] + artifact_targets([(out, manifest)])
            for t in targets:
                if "spec" in t:
                    t["spec"]["input"] = str(work / "input.npy")
            say(f"sweep: split layer {k}: {macs['macs_per_chunk'] / 1e6:.1f} M MACs per chunk")
            measure_targets(targets, req, work / f"k{k}", chunk_seconds, macs["macs_per_chunk"])
            for t in targets:
                t.pop("spec", None)
            pay = evaluate_payload(prefix, suffix, pcms, [u.text for u in utts], tokenizer, cfg.chunk_samples,
                                   cfg.frame_samples, cfg.frontend.sample_rate)
            rows.append({"split_layer": k, "export_dir": str(out), "trained_chunked": k <= cfg.split_layer,
                         "macs_per_chunk": macs["macs_per_chunk"], "artifacts": targets,
                         "payload": {c: {key: v[key] for key in ("kB_per_second", "dwer", "wer", "snr_db")}
                                     for c, v in pay["codecs"].items()},
                         "float_wer": pay["float"]["wer"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"format": SWEEP_FORMAT,
           "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": req.command, "host": {**host_info(), "load_average_start": load_start,
                                            "load_average_end": load_average()},
           "wall_seconds": round(time.time() - started, 1),
           "checkpoint": {"path": str(checkpoint), "sha256": sha, "trained_split_layer": cfg.split_layer},
           "recipe": req.recipe, "range": [lo, hi], "chunk": {"samples": cfg.chunk_samples, "seconds": chunk_seconds},
           "settings": {"threads": req.threads, "runs": req.runs, "warmup": req.warmup, "quick": req.quick,
                        "payload_utterances": len(pcms)},
           "rows": rows}
    join_privacy(doc, Path(req.out_dir))
    name = req.name or default_name(f"-sweep-{req.recipe.replace('=', '-')}")
    paths = report.write_all(doc, Path(req.out_dir), name, plots=req.plots, markdown=render_sweep_markdown,
                             plotter=render_sweep_plot)
    say("wrote " + ", ".join(str(p) for p in paths))
    return doc


def validate_sweep(doc: dict) -> None:
    from toolkit.bench.report import SchemaError
    if doc.get("format") != SWEEP_FORMAT or not doc.get("rows"):
        raise SchemaError("sweep JSON: wrong format or no rows")
    for r in doc["rows"]:
        for key in ("split_layer", "macs_per_chunk", "artifacts", "payload"):
            if key not in r:
                raise SchemaError(f"sweep JSON: row lacks '{key}'")


def _series(doc: dict, threads: int):
    names = []
    for r in doc["rows"]:
        for a in r["artifacts"]:
            if a.get("status") != "needs-macos" and a["name"] not in names:
                names.append(a["name"])
    out = {}
    for n in names:
        pts = []
        for r in doc["rows"]:
            a = next((x for x in r["artifacts"] if x["name"] == n), None)
            m = next((m for m in (a or {}).get("measurements", []) if m.get("threads") == threads
                      and m.get("status") == "ok"), None)
            pts.append((r["split_layer"], m, a))
        out[n] = pts
    return out


def join_privacy(doc: dict, results_dir: Path) -> None:
    """Attach the recorded per-layer leakage of the sweep's checkpoint (by sha256) to its rows, then validate."""
    lo, hi = doc["range"]
    leakage, source = privacy_by_layer(doc["checkpoint"]["sha256"], results_dir)
    for r in doc["rows"]:
        r["privacy"] = leakage.get(r["split_layer"])
    covered = sorted(k for k in leakage if lo <= k <= hi)
    doc["privacy"] = ({"status": "joined", "source": source, "layers": covered,
                       "note": "closed-set speaker identification accuracy (pooled LR/MLP, %) and x-vector EER (%) "
                               "at each split layer, from `veil privacy` results of this checkpoint"} if covered else
                      {"status": "pending", "source": None, "layers": [],
                       "note": "no `veil privacy` results for this checkpoint in the results folder; run "
                               "`veil privacy --checkpoint CKPT --layers all --out benchmarks/results` and "
                               "`veil bench --rejoin-privacy SWEEP.json`"})
    validate_sweep(doc)


def rejoin_privacy(sweep_json: Path, plots: bool = True) -> list[Path]:
    """Re-join privacy results recorded after the sweep ran (same folder) and rewrite its JSON/MD/PNG."""
    doc = read_json(sweep_json, f"{sweep_json}: sweep result not found")
    if not isinstance(doc, dict) or "rows" not in doc or "range" not in doc:
        raise VeilError(f"{sweep_json}: not a `veil bench --sweep-split` result")
    from toolkit.bench import report
    join_privacy(doc, sweep_json.parent)
    return report.write_all(doc, sweep_json.parent, sweep_json.stem, plots=plots, markdown=render_sweep_markdown,
                            plotter=render_sweep_plot)


def render_sweep_markdown(doc: dict) -> str:
    th = doc["settings"]["threads"][0]
    lines = [f"# Veil cut-point sweep — recipe {doc['recipe']}, {doc['created_at']}", "",
             f"Checkpoint `{doc['checkpoint']['path']}` (trained chunked through block "
             f"{doc['checkpoint']['trained_split_layer']}); host `{doc['host']['hostname']}`, load average "
             f"{doc['host'].get('load_average_start')}; {th} thread(s) shown; command `{doc['command']}`.", "",
             "| split layer | M MACs/chunk | artifact | size MB | p50 ms | RTF | peak RSS infer MB | int8 payload kB/s "
             "| int8 ΔWER pp | fp16 ΔWER pp |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in doc["rows"]:
        pay = r["payload"]
        for a in r["artifacts"]:
            m = next((m for m in a["measurements"] if m.get("threads") == th and m.get("status") == "ok"), None)
            cells = ([f"{m['p50_ms']:.2f}", f"{m['rtf']:.4f}", f"{m['peak_rss_inference_bytes'] / 1e6:.1f}"] if m
                     else [a.get("status", "failed"), "—", "—"])
            lines.append(f"| {r['split_layer']} | {r['macs_per_chunk'] / 1e6:.1f} | {a['name']} | "
                         f"{a['size_bytes'] / 1e6:.2f} | " + " | ".join(cells) +
                         f" | {pay['int8']['kB_per_second']:.2f} | {pay['int8']['dwer']:+.2f} | "
                         f"{pay['fp16']['dwer']:+.2f} |")
    priv = [r for r in doc["rows"] if r.get("privacy")]
    if priv:
        lines += ["", "| split layer | speaker-ID acc. LR % | MLP % | x-vector EER % | chance % |", "|---|---|---|---|---|"]
        for r in priv:
            v = r["privacy"]
            lines.append(f"| {r['split_layer']} | {v['closed_lr_accuracy']:.1f} | "
                         f"{v['closed_mlp_accuracy'] if v['closed_mlp_accuracy'] is None else round(v['closed_mlp_accuracy'], 1)} | "
                         f"{v['xvector_eer'] if v['xvector_eer'] is None else round(v['xvector_eer'], 1)} | {v['chance']:.1f} |")
    lines += ["", f"Privacy per split layer: {doc['privacy']['status']} ({doc['privacy']['note']}).", "",
              f"![sweep]({doc.get('_name', 'sweep')}.png)", ""]
    return "\n".join(lines)


def render_sweep_plot(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    th = doc["settings"]["threads"][0]
    series = _series(doc, th)
    fig, axes = plt.subplots(1, 5, figsize=(24, 4.5))
    for name, pts in series.items():
        ks = [k for k, m, _ in pts if m]
        axes[0].plot(ks, [m["p50_ms"] for _, m, _ in pts if m], "o-", label=name)
        axes[1].plot(ks, [m["peak_rss_inference_bytes"] / 1e6 for _, m, _ in pts if m], "o-", label=name)
        axes[2].plot([k for k, _, a in pts if a], [a["size_bytes"] / 1e6 for _, _, a in pts if a], "o-", label=name)
    ks = [r["split_layer"] for r in doc["rows"]]
    for codec in doc["rows"][0]["payload"]:
        axes[3].plot(ks, [r["payload"][codec]["kB_per_second"] for r in doc["rows"]], "o-", label=f"{codec} kB/s")
    twin = axes[3].twinx()
    twin.plot(ks, [r["payload"]["int8"]["dwer"] for r in doc["rows"]], "k--", label="int8 ΔWER pp")
    twin.set_ylabel("ΔWER pp (int8)")
    priv = [r for r in doc["rows"] if r.get("privacy")]
    if priv:
        axes[4].plot([r["split_layer"] for r in priv], [r["privacy"]["closed_lr_accuracy"] for r in priv], "o-",
                     label="speaker-ID acc. (LR) %")
        eer = [(r["split_layer"], r["privacy"]["xvector_eer"]) for r in priv if r["privacy"]["xvector_eer"] is not None]
        if eer:
            axes[4].plot(*zip(*eer), "s--", label="x-vector EER %")
        axes[4].axhline(priv[0]["privacy"]["chance"], color="gray", lw=0.8, label="chance")
    else:
        axes[4].text(0.5, 0.5, "privacy: pending\n(no veil privacy results\nfor this checkpoint)", ha="center",
                     va="center", transform=axes[4].transAxes)
    for ax, title, ylabel in ((axes[0], f"p50 latency, {th} thread(s)", "ms"), (axes[1], "peak RSS (inference)", "MB"),
                              (axes[2], "artifact size", "MB"), (axes[3], "payload", "kB/s"),
                              (axes[4], "speaker leakage (privacy)", "%")):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("split layer")
        ax.set_ylabel(ylabel)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle(f"cut-point sweep, recipe {doc['recipe']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)

