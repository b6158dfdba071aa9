"""The bench recipe: export folder(s) -> every artifact and two baselines measured side by side -> one JSON.

    check the export folders (same checkpoint, split layer, chunk) -> real eval-speakers audio -> prefix MACs
    -> baselines (torch eager fp32 prefix; ONNX Runtime fp32 and static int8 QDQ of the same prefix, the
       int8 one calibrated on the export's calibration audio, with its parity)
    -> per thread count, per artifact: a fresh worker process (load, first inference, warm-up, timed runs, RSS)
    -> machine ceiling (matmul per dtype, same thread counts) -> achieved/peak
    -> payload codec: bytes/s and ΔWER through the suffix -> phones (optional) -> targets -> JSON, MD, PNG

Everything is measured in one run because the machine is shared: the numbers to compare are the ratios
between rows of the same run. Nothing here asserts a speed; the targets are recorded as met or not.
"""
from __future__ import annotations

import datetime
import os
import platform
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import export as backends
from export.artifact import library_versions
from export.recipes import RUN_STATUSES as NOT_RUN_STATUSES
from toolkit.bench import ceiling as ceil
from toolkit.bench import android_app, onnx_baselines, op_profile, phones, report
from toolkit.bench.payload_eval import evaluate_payload
from toolkit.bench.runner import run_worker, summarize
from toolkit.chunking import chunk_pcm, pick_audio
from toolkit.console import say
from toolkit.errors import VeilError
from toolkit.exporting.calibration import CALIBRATION_UTTS, calibration_chunks, manifest_calibration
from toolkit.exporting.manifest import FLOAT_MODULES, ExportManifest
from toolkit.files import file_sha256, json_safe
from toolkit.headlines import refresh
from toolkit.paths import DEFAULT_CORPUS, EXPORTS_DIR, RESULTS_DIR, display_path

BENCH_FORMAT = "veil-bench/1"
DEFAULT_OUT = RESULTS_DIR
DEFAULT_CACHE = EXPORTS_DIR / ".bench-cache"
TARGETS = {"speedup_vs_torch": 5.0, "int8_size_ratio": 0.30, "int8_payload_kBps": 4.0, "int8_payload_dwer_abs": 0.5,
           "speedup_vs_onnxruntime_int8": 1.0, "int8_achieved_over_peak": 0.40, "executorch_int8_subgraphs": 3}


@dataclass
class BenchRequest:
    export_dirs: list[Path] = field(default_factory=list)
    threads: list[int] = field(default_factory=lambda: [1, 2])
    runs: int = 50
    warmup: int = 5
    out_dir: Path = DEFAULT_OUT
    name: str | None = None                 # default <date>-<host>
    corpus: Path = DEFAULT_CORPUS
    payload_utts: int = 48
    checkpoint: Path | None = None
    baselines: bool = True
    profile: bool = False                   # per-operator tables (ETDump + Inspector) of every artifact
    ceiling: str = "full"                   # full | matmul | none
    cache_dir: Path = DEFAULT_CACHE
    command: str = ""
    sweep: str | None = None                # cut-point sweep: the split layers, e.g. "1..6" (toolkit.layer_range)
    recipe: str | None = None
    device: str | None = None
    tools: dict[str, str] = field(default_factory=dict)  # phone tool kind -> local binary (phone_tools.PHONE_TOOLS)
    npu_libs: str | None = None              # the phone's LiteRT dispatch library + vendor NPU runtime
    ios_log: str | None = None              # saved `xcodebuild test` log of the iOS XCTest (--device ios)
    app: bool = False                       # also measure in the Veil demo app (--device android --app)
    plots: bool = True
    rounds: int = 3                         # round-robin passes over all targets (timed runs split among them)
    quick: bool = False                     # smoke runs: fewer than 50 timed runs allowed, marked in the JSON
    readme: Path | None = None              # also rewrite this README's benchmark table (toolkit/headlines.py)


def compute_dtype(backend: str, recipe: str) -> str:
    """The dtype class an artifact is benched as: ``int8`` when its recipe stores or computes the encoder in
    int8 or int4 (its ceiling is the int8 matmul; it counts for the int8 targets), else ``fp32``. The
    frontend is float in every recipe."""
    return "int8" if backends.get_backend(backend).RECIPES.get(recipe).precision in ("int8", "int4") else "fp32"


def host_info() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"hostname": socket.gethostname(), "platform": f"{platform.system()} {platform.machine()}", "cpu": cpu,
            "cores": os.cpu_count(), "python": platform.python_version(),
            "libraries": dict(sorted({**library_versions("torch", "onnxruntime", "onnx", "numpy"),
                                      **{k: v for b in backends.BACKENDS
                                         for k, v in backends.get_backend(b).library_info().items()}}.items()))}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def default_name(suffix: str = "") -> str:
    return f"{datetime.date.today().isoformat()}-{socket.gethostname()}{suffix}"


# ---- inputs ------------------------------------------------------------------------------------------------

def read_exports(dirs: list[Path]) -> list[ExportManifest]:
    """The export folders, each checked at the boundary, all of one prefix (checkpoint and split layer) and
    one chunk geometry."""
    if not dirs:
        raise VeilError("give at least one EXPORT_DIR (made by `export-prefix`), or --sweep-split with --recipe")
    manifests = [ExportManifest.read(Path(d)) for d in dirs]
    first = manifests[0]
    for m in manifests[1:]:
        for what, a, b in (("checkpoint", first.checkpoint["sha256"], m.checkpoint["sha256"]),
                           ("split layer", first.split_layer, m.split_layer),
                           ("chunk length", first.chunk.chunk_samples, m.chunk.chunk_samples)):
            if a != b:
                raise VeilError(f"{m.dir}: exported with another {what} than {first.dir} ({b} vs {a}); "
                                f"bench export folders of one checkpoint and split layer together")
    return manifests


def bench_audio(corpus: Path, count: int):
    """Real eval-speakers utterances (spread over speakers) for the payload, and the timed input chunk: the
    first chunk of the longest of them."""
    split_name = "eval-speakers" if (Path(corpus) / "eval-speakers").is_dir() else "test"
    utts, pcms = pick_audio(corpus, split_name, max(1, count), flag="--payload-utts")
    return split_name, utts, pcms


def tensor_bytes_fp32(module) -> int:
    return 4 * (sum(p.numel() for p in module.parameters()) + sum(b.numel() for b in module.buffers()))


def baseline_calibration(manifest: ExportManifest, corpus: Path) -> list[np.ndarray]:
    """The calibration chunks of the export's static recipes (same split, same utterances), so ONNX Runtime
    int8 is calibrated on what Veil's int8 artifacts saw; for an export without a calibrated recipe, the
    default calibration count of the corpus's train split."""
    if manifest.calibration:
        return manifest_calibration(manifest.calibration, manifest.chunk.chunk_samples)
    chunks, _ = calibration_chunks(Path(corpus) / "train", CALIBRATION_UTTS, manifest.chunk.chunk_samples)
    return chunks


def torch_baseline(prefix, checkpoint: Path, k: int) -> dict:
    """The torch eager fp32 prefix as a bench target: what a user runs without Veil."""
    return {"name": "torch eager fp32", "role": "baseline", "backend": "torch", "recipe": "fp32",
            "runtime": "torch eager (no Veil)", "dtype": "fp32", "file": str(checkpoint),
            "size_bytes": tensor_bytes_fp32(prefix),
            "size_note": "float32 bytes of the prefix's parameters and buffers",
            "spec": {"kind": "torch", "checkpoint": str(checkpoint), "split_layer": k}, "measurements": []}


# ---- measuring ---------------------------------------------------------------------------------------------

def measure_targets(targets: list[dict], req: BenchRequest, work: Path, chunk_seconds: float, macs: int) -> None:
    """Round-robin: ``req.rounds`` rounds, each running every (thread count, target) once in a fresh worker with
    a share of the timed runs, so a load spike on the shared machine spreads over all targets instead of
    landing on one. Latencies are pooled over rounds; load/first-inference times are the median over rounds,
    peak RSS the maximum."""
    rounds = max(1, min(req.rounds, req.runs))
    per_round = [req.runs // rounds + (1 if r < req.runs % rounds else 0) for r in range(rounds)]
    raw: dict = {}
    for r in range(rounds):
        for t in req.threads:
            for i, tgt in enumerate(targets):
                if tgt.get("status") in NOT_RUN_STATUSES:
                    continue
                spec = {**tgt["spec"], "threads": t, "runs": per_round[r], "warmup": req.warmup}
                result = run_worker(spec, work, f"r{r}-t{t}-{i}")
                result["load_average_1min"] = (load_average() or [None])[0]
                raw.setdefault((i, t), []).append(result)
        say(f"  round {r + 1}/{rounds} done ({sum(per_round[:r + 1])} of {req.runs} timed runs per target)")
    for (i, t), results in raw.items():
        tgt = targets[i]
        failed = [x for x in results if x.get("status") != "ok"]
        if failed:
            m = {"status": "failed", "threads": t, "error": failed[0].get("error", "unknown")}
        else:
            merged = dict(results[0])
            merged["latencies_ms"] = [v for x in results for v in x["latencies_ms"]]
            for key in ("load_ms", "first_inference_ms", "baseline_rss_bytes", "rss_after_load_bytes"):
                merged[key] = float(np.median([x[key] for x in results]))
            for key in ("load_peak_rss_bytes", "inference_peak_rss_bytes"):
                merged[key] = int(max(x[key] for x in results))
            merged["output_finite"] = all(x["output_finite"] for x in results)
            m = summarize(merged, chunk_seconds, macs)
            m["rounds"] = len(results)
            m["p50_ms_per_round"] = [float(np.percentile(x["latencies_ms"], 50)) for x in results]
            m["load_average_1min"] = [x["load_average_1min"] for x in results]
            m["baseline_rss_bytes"] = int(m["baseline_rss_bytes"])
            m["rss_after_load_bytes"] = int(m["rss_after_load_bytes"])
        tgt["measurements"].append(m)
    for tgt in targets:
        tgt["measurements"].sort(key=lambda m: m.get("threads", 0))
        for m in tgt["measurements"]:
            say(f"  [{m.get('threads')} thr] {tgt['name']}: " +
                (f"p50 {m['p50_ms']:.2f} ms (rounds {', '.join(f'{v:.2f}' for v in m['p50_ms_per_round'])}), "
                 f"RTF {m['rtf']:.4f}" if m["status"] == "ok" else f"failed: {m['error']}"))


def profile_artifacts(targets: list[dict], chunk: np.ndarray, threads: int) -> None:
    """``target["profile"]``: the per-operator table of every artifact (toolkit/bench/op_profile.py), after
    the timed runs so that profiling never overlaps a measurement."""
    for t in targets:
        if t["role"] != "artifact" or t.get("status") == "needs-macos":
            continue
        say(f"profile: {t['name']} ...")
        if t["backend"] == "executorch":
            t["profile"] = op_profile.profile_executorch(Path(t["file"]), chunk, threads=threads)
        elif t["backend"] == "litert":
            t["profile"] = op_profile.profile_litert(t["spec"]["entry"].get("ops"))


def measure_ceiling(req: BenchRequest, work: Path) -> dict:
    if req.ceiling == "none":
        return {"status": "skipped"}
    say(f"ceiling: matmul {ceil.CEILING_SHAPE} per dtype ...")
    kernels = ceil.prepare_kernels(req.cache_dir / "ceiling", runtime_kernels=req.ceiling == "full")
    results = []
    for t in req.threads:
        for i, k in enumerate(kernels):
            if "error" in k:
                m = {"status": "failed", "error": k["error"]}
            else:
                spec = {**k["spec"], "threads": t, "runs": 10, "warmup": 3, "min_seconds": 0.3}
                m = summarize(run_worker(spec, work, f"ceiling-t{t}-{i}"), None, k["macs"])
            row = {"name": k["name"], "runtime": k["runtime"], "dtype": k["dtype"], "threads": t,
                   "shape": k["shape"], "macs": k["macs"], "status": m["status"]}
            if m["status"] == "ok":
                row.update(p50_ms=m["p50_ms"], min_ms=m["min_ms"], gmacs=m["gmacs"],
                           gmacs_best=k["macs"] / (m["min_ms"] / 1e3) / 1e9)
            else:
                row["error"] = m["error"]
            results.append(row)
            say(f"  [{t}] {k['name']}: " + (f"{row['gmacs']:.1f} GMAC/s" if m["status"] == "ok" else row["error"]))
    return {"status": "ok", "shape_mkn": list(ceil.CEILING_SHAPE), "statistic": "MACs / p50 latency",
            "kernels": results, "peak": ceil.peaks(results)}


def add_efficiency(targets: list[dict], ceiling: dict) -> None:
    peak = ceiling.get("peak", {})
    for tgt in targets:
        for m in tgt["measurements"]:
            p = peak.get(tgt["dtype"], {}).get(str(m.get("threads")))
            if m.get("status") == "ok" and p and m.get("gmacs"):
                m["achieved_over_peak"] = m["gmacs"] / p["gmacs"]
                m["peak_kernel"] = p["kernel"]


# ---- targets -----------------------------------------------------------------------------------------------

def _p50(tgt: dict, threads: int):
    for m in tgt["measurements"]:
        if m.get("threads") == threads and m.get("status") == "ok":
            return m["p50_ms"]
    return None


def _with_status(target: dict, met: list[bool]) -> dict:
    target["status"] = "not measured" if not met else ("met" if all(met) else ("not met" if not any(met) else
                                                                               "partly met"))
    return target


def _speedup_target(what: str, baseline: dict | None, int8: list[dict], threads: list[int], goal: float) -> dict:
    """The best int8 artifact's p50 speedup over ``baseline`` per thread count, against ``goal``."""
    target = {"target": what, "per_threads": {}}
    for th in threads:
        base = _p50(baseline, th) if baseline else None
        cands = [(base / _p50(t, th), t["name"]) for t in int8 if base and _p50(t, th)]
        if cands:
            best = max(cands)
            target["per_threads"][str(th)] = {"best_int8": best[1], "speedup": best[0], "met": best[0] >= goal}
    return _with_status(target, [v["met"] for v in target["per_threads"].values()])


def evaluate_targets(targets: list[dict], payload_result: dict | None, threads: list[int],
                     float_frontend_bytes: int = 0) -> dict:
    out = {}
    torch_t = next((t for t in targets if t["role"] == "baseline" and t["backend"] == "torch"), None)
    int8 = [t for t in targets if t["role"] == "artifact" and t["dtype"] == "int8" and t.get("status") not in NOT_RUN_STATUSES]
    ort8 = next((t for t in targets if t["role"] == "baseline" and t["backend"] == "onnx" and t["dtype"] == "int8"),
                None)
    out["speed"] = _speedup_target(f">= {TARGETS['speedup_vs_torch']:g}x faster than the torch eager fp32 prefix "
                                   f"(p50)", torch_t, int8, threads, TARGETS["speedup_vs_torch"])
    out["vs_onnxruntime_int8"] = _speedup_target(f">= {TARGETS['speedup_vs_onnxruntime_int8']:g}x faster than ONNX "
                                                 f"Runtime int8 (p50)", ort8, int8, threads,
                                                 TARGETS["speedup_vs_onnxruntime_int8"])

    et8 = [t for t in int8 if t["backend"] == "executorch"]
    eff = {"target": f"ExecuTorch int8 achieved/peak >= {TARGETS['int8_achieved_over_peak']:.0%} of the int8 "
                     f"matmul ceiling", "artifacts": []}
    for t in et8:
        for m in t["measurements"]:
            if m.get("achieved_over_peak") is not None:
                eff["artifacts"].append({"artifact": t["name"], "threads": m["threads"],
                                         "achieved_over_peak": m["achieved_over_peak"],
                                         "met": m["achieved_over_peak"] >= TARGETS["int8_achieved_over_peak"]})
    out["efficiency"] = _with_status(eff, [a["met"] for a in eff["artifacts"]])

    graph = {"target": f"ExecuTorch int8: <= {TARGETS['executorch_int8_subgraphs']} delegated subgraphs",
             "artifacts": [{"artifact": t["name"], "delegated_subgraphs": t["delegation"]["delegated_subgraphs"],
                            "not_delegated": t["delegation"]["not_delegated"],
                            "met": t["delegation"]["delegated_subgraphs"] <= TARGETS["executorch_int8_subgraphs"]}
                           for t in et8 if t.get("delegation")]}
    out["delegation"] = _with_status(graph, [a["met"] for a in graph["artifacts"]])

    size = {"target": f"int8 artifact <= {TARGETS['int8_size_ratio']:.0%} of the fp32 size", "artifacts": []}
    torch_bytes = torch_t["size_bytes"] if torch_t else None
    for t in [x for x in targets if x["role"] == "artifact" and x["dtype"] == "int8"]:
        fp32 = next((x for x in targets if x["role"] == "artifact" and x["backend"] == t["backend"]
                     and x["recipe"] == "fp32"), None)
        ref_name, ref = (fp32["name"], fp32["size_bytes"]) if fp32 else ("torch fp32 prefix tensors", torch_bytes)
        if ref:
            ratio = t["size_bytes"] / ref
            size["artifacts"].append({
                "artifact": t["name"], "size_bytes": t["size_bytes"], "fp32_reference": ref_name, "fp32_bytes": ref,
                "ratio": ratio, "met": ratio <= TARGETS["int8_size_ratio"],
                # the log-mel frontend (DFT and mel matrices) stays float32 in every recipe, by design
                "ratio_without_float_frontend": (t["size_bytes"] - float_frontend_bytes) / (ref - float_frontend_bytes)
                if float_frontend_bytes and ref > float_frontend_bytes else None})
    vals = [a["met"] for a in size["artifacts"]]
    size["status"] = "not measured" if not vals else ("met" if all(vals) else ("not met" if not any(vals) else "partly met"))
    out["size"] = size

    pay = {"target": f"int8 payload <= {TARGETS['int8_payload_kBps']:g} kB/s of audio with |ΔWER| <= "
                     f"{TARGETS['int8_payload_dwer_abs']:g} pp"}
    if payload_result and "int8" in payload_result.get("codecs", {}):
        c = payload_result["codecs"]["int8"]
        pay.update(kB_per_second=c["kB_per_second"], dwer=c["dwer"],
                   met=c["kB_per_second"] <= TARGETS["int8_payload_kBps"] and c["dwer_abs"] <= TARGETS["int8_payload_dwer_abs"])
        pay["status"] = "met" if pay["met"] else "not met"
    else:
        pay["status"] = "not measured"
    out["payload"] = pay
    return out


# ---- the recipe --------------------------------------------------------------------------------------------

def artifact_targets(manifests: list[ExportManifest]) -> list[dict]:
    """One bench target per distinct artifact (backend, recipe, sha256) of the export folders. An artifact
    whose runtime does not run on this OS (Core ML off macOS) gets its size and a ``needs-macos`` status."""
    seen, targets = set(), []
    for manifest in manifests:
        for entry, art in manifest.artifacts():
            key = (art.backend, art.recipe, entry["sha256"])
            if key in seen:
                continue
            seen.add(key)
            backend = backends.get_backend(art.backend)
            name = f"{art.backend} {art.recipe}"
            if any(t["name"] == name for t in targets):  # the same recipe from two exports: say which
                name += f" ({manifest.dir.name})"
            tgt = {"name": name, "role": "artifact", "backend": art.backend,
                   "recipe": art.recipe, "runtime": backend.RUNTIME, "dtype": compute_dtype(art.backend, art.recipe),
                   "file": str(art.path), "size_bytes": art.size_bytes, "measurements": []}
            runs_on = backend.RECIPES.get(art.recipe).runs_on
            if entry.get("delegation"):
                tgt["delegation"] = entry["delegation"]
            if not backend.runs_here():
                tgt["status"] = "needs-macos"
                tgt["detail"] = f"{backend.RUNTIME} prediction runs only on macOS/iOS; size measured, latency not"
            elif runs_on == "needs-device" or (runs_on == "needs-macos" and platform.system() != "Darwin"):
                tgt["status"] = runs_on
                tgt["detail"] = (f"{art.backend} {art.recipe} runs only on " +
                                 ("its phone's NPU" if runs_on == "needs-device" else "macOS/iOS (Core ML)") +
                                 "; size measured, latency not (veil bench --device)")
            else:
                tgt["spec"] = {"kind": art.backend, "entry": entry, "base_dir": str(manifest.dir)}
            targets.append(tgt)
    return targets


def run_bench(req: BenchRequest) -> dict:
    """Measure; write ``<out_dir>/<name>.json`` (+ .md, .png); return the document."""
    check_request(req)
    manifests = read_exports(req.export_dirs)
    manifest = manifests[0]
    k = manifest.split_layer
    adapter = manifest.model_adapter(req.checkpoint)  # toolkit/adapters: Veil's conformer or another encoder
    prefix, suffix, tokenizer = adapter.prefix(k), adapter.suffix(k), adapter.tokenizer()
    if suffix is None or tokenizer is None:
        raise VeilError(f"{manifest.dir}: the {adapter.name} model has no CTC head and decoder, and bench's payload "
                        f"section measures ΔWER through one; export a model with its head (e.g. *ForCTC weights)")
    checkpoint = Path(req.checkpoint or manifest.checkpoint["path"])
    split_name, utts, pcms = bench_audio(Path(req.corpus), req.payload_utts)
    geometry = manifest.chunk
    longest = int(np.argmax([len(p) for p in pcms]))
    chunk = chunk_pcm(pcms[longest], geometry.chunk_samples)[0]
    macs = ceil.prefix_macs(prefix, geometry.chunk_samples)
    started = time.time()
    load_start = load_average()

    work = Path(tempfile.mkdtemp(prefix="veil-bench-"))
    try:
        np.save(work / "input.npy", chunk)
        targets = []
        if req.baselines:
            cache = req.cache_dir / f"{manifest.checkpoint['sha256'][:16]}-k{k}"
            targets.append(torch_baseline(prefix, checkpoint, k))
            if adapter.name != "veil":  # the worker rebuilds the model through its adapter
                targets[-1]["spec"]["adapter"] = manifest.section("adapter")
            onnx_path = onnx_baselines.onnx_fp32(prefix, chunk, cache)
            targets.append({"name": "onnxruntime fp32", "role": "baseline", "backend": "onnx", "recipe": "fp32",
                            "runtime": "onnxruntime CPUExecutionProvider", "dtype": "fp32", "file": str(onnx_path),
                            "size_bytes": onnx_path.stat().st_size, "spec": {"kind": "onnxruntime", "path": str(onnx_path)},
                            "measurements": []})
            int8 = onnx_baselines.onnx_int8(onnx_path, baseline_calibration(manifest, req.corpus), cache,
                                            FLOAT_MODULES)
            targets.append({"name": "onnxruntime int8-static", "role": "baseline", "backend": "onnx",
                            "recipe": "int8-static", "runtime": "onnxruntime CPUExecutionProvider (QDQ)",
                            "dtype": "int8", "file": str(int8["path"]), "size_bytes": int8["path"].stat().st_size,
                            "quantization": {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                                             "weights": "int8 per channel", "activations": "uint8, MinMax",
                                             "calibration_chunks": int8["calibration_chunks"],
                                             "float_nodes": int8["float_nodes"], "float_modules": list(FLOAT_MODULES)},
                            "spec": {"kind": "onnxruntime", "path": str(int8["path"])}, "measurements": []})
        targets += artifact_targets(manifests)
        for t in targets:
            if "spec" in t:
                t["spec"]["input"] = str(work / "input.npy")
        say(f"bench: {len(targets)} targets x threads {req.threads}, {req.runs} timed runs after {req.warmup} "
            f"warm-up, {macs['macs_per_chunk'] / 1e6:.1f} M MACs per {geometry.chunk_seconds:g} s chunk")
        measure_targets(targets, req, work, geometry.chunk_seconds, macs["macs_per_chunk"])
        ceiling = measure_ceiling(req, work)
        add_efficiency(targets, ceiling)
        if req.profile:
            profile_artifacts(targets, chunk, req.threads[0])

        say(f"payload: {len(pcms)} {split_name} utterances through the float suffix ...")
        payload_result = evaluate_payload(prefix, suffix, pcms, [u.text for u in utts], tokenizer,
                                          geometry)
        for t in targets:
            if t["backend"] == "onnx":
                say(f"parity: {t['name']} on {len(pcms)} {split_name} utterances ...")
                t["parity"] = onnx_baselines.baseline_parity(onnx_baselines.ort_runner(Path(t["file"])), prefix,
                                                             suffix, pcms, [u.text for u in utts],
                                                             tokenizer, geometry)
        device = None
        if req.device:
            device = measure_device(req, manifests, chunk, geometry.chunk_seconds, macs["macs_per_chunk"], work)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    for t in targets:
        t.pop("spec", None)
    doc = {
        "format": BENCH_FORMAT,
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": req.command,
        "host": {**host_info(), "load_average_start": load_start, "load_average_end": load_average()},
        "wall_seconds": round(time.time() - started, 1),
        "export_dirs": [str(m.dir) for m in manifests],
        "checkpoint": {"path": str(checkpoint), "sha256": manifest.checkpoint["sha256"]},
        "split_layer": k,
        "chunk": {"samples": geometry.chunk_samples, "seconds": geometry.chunk_seconds,
                  "input": f"first chunk of {utts[longest].utt_id} ({split_name})"},
        "prefix": {**macs, "embedding_dim": adapter.model.cfg.d_model if adapter.name == "veil" else manifest.embedding_dim,
                   "frames_per_chunk": geometry.chunk_frames, "fp32_bytes": tensor_bytes_fp32(prefix),
                   "frontend_fp32_bytes": tensor_bytes_fp32(prefix.frontend) if hasattr(prefix, "frontend") else 0},
        "settings": {"threads": req.threads, "runs": req.runs, "warmup": req.warmup, "quick": req.quick,
                     "rounds": req.rounds,
                     "process": "one fresh worker process per artifact, thread count and round; rounds go "
                                "round-robin over all artifacts and their latencies are pooled",
                     "latency": "wall time of one runner call on one chunk (perf_counter_ns)",
                     "rtf": "p50 latency / chunk duration", "memory": "peak RSS over the worker's baseline "
                     "(runtime imported, artifact not loaded), during load and during inference"},
        "artifacts": targets,
        "ceiling": ceiling,
        "payload": payload_result,
        "device": device,
    }
    doc["targets"] = evaluate_targets(targets, payload_result, req.threads, doc["prefix"]["frontend_fp32_bytes"])
    report.validate(doc)
    name = req.name or default_name()
    paths = report.write_all(doc, Path(req.out_dir), name, plots=req.plots)
    if req.readme:
        paths.append(refresh(req.readme, "bench", report.headline(json_safe(doc), display_path(paths[0])), "Benchmarks"))
    say("wrote " + ", ".join(str(p) for p in paths))
    return doc


def measure_device(req: BenchRequest, manifests: list[ExportManifest], chunk, chunk_seconds, macs, work: Path) -> dict:
    arts = [(entry, art.path) for m in manifests for entry, art in m.artifacts()]
    if req.device == "ios":
        say(f"device: ios, from the xcodebuild log {req.ios_log} ...")
        return phones.ios_bench(req.ios_log, arts, chunk_seconds, macs)
    say(f"device: {req.device} ...")
    device = phones.android_bench(req.device, arts, chunk, req.threads, req.runs, req.warmup, req.tools,
                                  chunk_seconds, macs, work, npu_libs=req.npu_libs)
    if req.app:
        say(f"device: {req.device}, in the app {android_app.PACKAGE} ...")
        app = android_app.app_bench(req.device, manifests, chunk, req.threads, req.runs, req.warmup, work,
                                     npu_libs=req.npu_libs)
        device = android_app.add_app_rows(device, app, macs)
    return device


def check_request(req: BenchRequest) -> None:
    """Fail on bad flags before any slow work (including a device that is not there)."""
    if not req.threads or any(t < 1 for t in req.threads):
        raise VeilError(f"--threads must be positive integers, got {req.threads}")
    if req.runs < (1 if req.quick else 50):
        raise VeilError(f"--runs {req.runs}: at least 50 timed runs are needed for p99 (--quick allows fewer "
                        f"for smoke tests and marks the results as such)")
    if req.warmup < 0:
        raise VeilError(f"--warmup must be >= 0, got {req.warmup}")
    if req.ceiling not in ("full", "matmul", "none"):
        raise VeilError(f"--ceiling {req.ceiling}: expected full, matmul or none")
    if req.ios_log and req.device != "ios":
        raise VeilError("--ios-log goes with --device ios")
    if req.app and not (req.device or "").startswith("android"):
        raise VeilError("--app goes with --device android[:SERIAL]")
    if req.device:
        if req.device == "ios":
            phones.check_ios(req.ios_log)
        else:
            adb = phones.Adb(*phones.pick_device(req.device))
            if req.app:
                android_app.check_app(adb)
    out = Path(req.out_dir)
    if out.exists() and not out.is_dir():
        raise VeilError(f"{out}: output path exists and is not a directory")
