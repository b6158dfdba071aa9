"""The cut-point sweep (``veil bench --sweep-split 1..6 --recipe R``): export the prefix at every split layer
of a set with one recipe, and chart latency, peak memory, size and payload against the split layer.

Each cut is exported by ``export-prefix``'s own code (same recipe, calibration, checks and manifest), into a
cache under ``exports/.bench-cache/sweep/`` keyed by checkpoint sha256, layer and recipe, so a re-run only
measures. Blocks beyond the checkpoint's trained split layer were trained on whole utterances and run here on
chunks, as they would on a phone (the export manifest says so too). Per-layer speaker leakage joins the chart
from recorded ``veil privacy`` results of the same checkpoint (matched by sha256) in the results folder;
without them ``privacy`` is recorded as pending.
"""
from __future__ import annotations

import datetime
import json
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from export.recipes import RUN_STATUSES
from toolkit.bench import ceiling as ceil
from toolkit.bench import report
from toolkit.bench.bench import (BenchRequest, artifact_targets, bench_audio, check_request, default_name, host_info,
                                 load_average, measure_targets, torch_baseline)
from toolkit.bench.payload_eval import evaluate_payload
from toolkit.chunking import chunk_pcm
from toolkit.console import say
from toolkit.errors import VeilError, read_json
from toolkit.exporting.manifest import ExportManifest
from toolkit.exporting.prefix_export import ExportRequest, export_prefix, plan_backends
from toolkit.files import file_sha256
from toolkit.layer_range import parse_layer_range
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
from toolkit.paths import DEFAULT_MODEL, export_dir_name

CUT_POINTS_FORMAT = "veil-bench-sweep/1"


def sweep_target(recipe: str) -> tuple[str, list[str]]:
    """``--recipe`` of the sweep as an export request: ``NAME`` -> every Android backend with that recipe;
    ``BACKEND=NAME`` -> that backend only. A recipe a backend lacks is a one-line error."""
    backend, sep, name = recipe.partition("=")
    target, recipes = (backend, [name]) if sep else ("android", [recipe])
    try:
        plan_backends(target, recipes)
    except VeilError as exc:
        raise VeilError(f"--recipe {recipe}: {exc}") from None
    return target, recipes


def sweep_export(checkpoint: Path, sha: str, k: int, recipe: str, cache: Path, corpus: Path) -> ExportManifest:
    """The prefix cut after block ``k``, exported with ``recipe`` exactly as ``export-prefix --split-layer k``
    would (minus the backends the recipe does not name), into the cache; reused when a checked export of this
    checkpoint is already there."""
    out = cache / export_dir_name(checkpoint, k, f"{sha[:12]}-{recipe.replace('=', '-')}")
    try:
        manifest = ExportManifest.read(out)
        if manifest.checkpoint["sha256"] == sha and manifest.split_layer == k:
            return manifest
    except VeilError:
        pass  # not there yet, or stale (an older cache layout): export again
    target, recipes = sweep_target(recipe)
    say(f"sweep: split layer {k}: exporting {recipe} ...")
    export_prefix(ExportRequest(checkpoint=checkpoint, target=target, recipes=recipes, split_layer=k, out=out,
                                corpus=corpus))
    return ExportManifest.read(out)


def privacy_by_layer(sha: str, results_dir: Path) -> tuple[dict, str | None]:
    """Per-layer speaker leakage of this exact checkpoint from recorded `veil privacy` results (matched by
    sha256): {layer: {closed_lr_accuracy, closed_mlp_accuracy, xvector_eer, chance}}, and the file used."""
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


def run_cut_point_sweep(req: BenchRequest) -> dict:
    """Export and bench every split layer of ``req.sweep``; write the sweep JSON (+ .md, .png); return it."""
    check_request(req)
    if not req.recipe:
        raise VeilError("--sweep-split needs --recipe (e.g. --recipe int8-static)")
    sweep_target(req.recipe)
    checkpoint = Path(req.checkpoint or DEFAULT_MODEL)
    model, config = load_checkpoint(checkpoint)
    cfg = model.cfg
    layers = parse_layer_range(req.sweep, 1, cfg.n_blocks, "--sweep-split")
    sha = file_sha256(checkpoint)
    split_name, utts, pcms = bench_audio(Path(req.corpus), req.payload_utts)
    geometry = cfg.chunk
    chunk = chunk_pcm(pcms[int(np.argmax([len(p) for p in pcms]))], geometry.chunk_samples)[0]
    tokenizer = tokenizer_from(config)
    started, load_start = time.time(), load_average()
    rows = []
    work = Path(tempfile.mkdtemp(prefix="veil-sweep-"))
    try:
        np.save(work / "input.npy", chunk)
        for k in layers:
            manifest = sweep_export(checkpoint, sha, k, req.recipe, req.cache_dir / "sweep", Path(req.corpus))
            prefix, suffix = split(model, k)
            prefix.eval(), suffix.eval()
            macs = ceil.prefix_macs(prefix, geometry.chunk_samples)
            targets = [torch_baseline(prefix, checkpoint, k)] + artifact_targets([manifest])
            for t in targets:
                if "spec" in t:
                    t["spec"]["input"] = str(work / "input.npy")
            say(f"sweep: split layer {k}: {macs['macs_per_chunk'] / 1e6:.1f} M MACs per chunk")
            measure_targets(targets, req, work / f"k{k}", geometry.chunk_seconds, macs["macs_per_chunk"])
            for t in targets:
                t.pop("spec", None)
                t.pop("size_note", None)
            pay = evaluate_payload(prefix, suffix, pcms, [u.text for u in utts], tokenizer, geometry)
            rows.append({"split_layer": k, "export_dir": str(manifest.dir), "trained_chunked": k <= cfg.split_layer,
                         "macs_per_chunk": macs["macs_per_chunk"], "artifacts": targets,
                         "payload": {c: {key: v[key] for key in ("kB_per_second", "dwer", "wer", "snr_db")}
                                     for c, v in pay["codecs"].items()},
                         "float_wer": pay["float"]["wer"]})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    doc = {"format": CUT_POINTS_FORMAT,
           "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "command": req.command, "host": {**host_info(), "load_average_start": load_start,
                                            "load_average_end": load_average()},
           "wall_seconds": round(time.time() - started, 1),
           "checkpoint": {"path": str(checkpoint), "sha256": sha, "trained_split_layer": cfg.split_layer},
           "recipe": req.recipe, "range": [layers[0], layers[-1]], "layers": layers,
           "chunk": {"samples": geometry.chunk_samples, "seconds": geometry.chunk_seconds},
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
    if doc.get("format") != CUT_POINTS_FORMAT or not doc.get("rows"):
        raise report.SchemaError("sweep JSON: wrong format or no rows")
    for r in doc["rows"]:
        for key in ("split_layer", "macs_per_chunk", "artifacts", "payload"):
            if key not in r:
                raise SchemaError(f"sweep JSON: row lacks '{key}'")


def _series(doc: dict, threads: int):
    names = []
    for r in doc["rows"]:
        for a in r["artifacts"]:
            if a.get("status") not in RUN_STATUSES and a["name"] not in names:
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
    swept = {r["split_layer"] for r in doc["rows"]}
    leakage, source = privacy_by_layer(doc["checkpoint"]["sha256"], results_dir)
    for r in doc["rows"]:
        r["privacy"] = leakage.get(r["split_layer"])
    covered = sorted(k for k in leakage if k in swept)
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
    join_privacy(doc, Path(sweep_json).parent)
    return rerender(doc, sweep_json, plots)


def rerender(doc: dict, json_path: Path, plots: bool = True) -> list[Path]:
    """Re-make the .md and .png beside a recorded sweep JSON (``doc``, its content)."""
    json_path = Path(json_path)
    return report.write_all(doc, json_path.parent, json_path.stem, plots=plots, markdown=render_sweep_markdown,
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
    import matplotlib  # heavy to import, needed only where plots are drawn
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

