#!/usr/bin/env python
"""Load benchmark of `veil serve` on loopback: how many real-time phone streams one core holds, with dynamic
batching on and off in the same run, and what the service costs over the plain torch suffix.

    nice -n 5 .venv/bin/python -m experiments.serve_load --export exports/k6-d16-n0.5-k6-fp32

- The server (`veil serve`, the shipped model, 1 torch thread) runs pinned to core 0 (`taskset -c 0`); this
  generator pins itself to core 1.
- N simulated phones each stream real corpus utterances (``--corpus``/test, ``--utterances`` of them) as a
  phone does: one 2-s chunk each 2 s of audio time (the last one when its audio ends, with END), int8 payloads
  pre-encoded from the export's real ExecuTorch artifact (so the generator does not eat the server's CPU),
  one WebSocket session per utterance, back to back, start times staggered over 2 s.
- For each configuration N rises through ``--streams`` until p99 chunk->partial exceeds ``--p99-ms`` (or any
  error); each step: ``--warmup`` s, then ``--measure`` s of recorded latencies (chunks sent in the window).
- Reported per step: chunk->partial and END->final latency p50/p95/p99 (client side, loopback), audio seconds
  decoded per wall second, the server's batch-size histogram (from /metrics), server CPU per chunk, errors.
- The plain torch suffix on the same core, on the same request mix (the frames each partial/final decodes),
  at batch 1 and at the batched run's mean batch size: the cost the service adds is visible.
- ``--time-cap`` bounds the whole run. JSON first (benchmarks/results/serve-load-<date>.json), Markdown
  rendered from it (toolkit/serve/load_report.py; again from the JSON: ``veil render RESULT.json``); with
  ``--readme docs/results.md`` the README's load table too.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import platform
import random
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from websockets.asyncio.client import connect  # noqa: E402

from toolkit import payload  # noqa: E402
from toolkit.audio import load_audio  # noqa: E402
from toolkit.chunking import pick_utterances  # noqa: E402
from toolkit.data.librispeech import read_librispeech  # noqa: E402
from toolkit.exporting.manifest import ExportManifest  # noqa: E402
from toolkit.errors import read_json  # noqa: E402
from toolkit.files import write_json, write_text  # noqa: E402
from toolkit.headlines import refresh  # noqa: E402
from toolkit.model.checkpoint import read_config  # noqa: E402
from toolkit.paths import DEFAULT_MODEL, DEFAULT_CORPUS, RESULTS_DIR, default_export_dir, display_path  # noqa: E402
from toolkit.serve import protocol as p  # noqa: E402
from toolkit.serve.auth import hash_token, new_token  # noqa: E402
from toolkit.serve.client import PrefixRunner, hello_for  # noqa: E402
from toolkit.serve.load_report import (CLIENT_CORE, LOAD_FORMAT, SERVER_CORE, headline,  # noqa: E402
                                       render_markdown)
from toolkit.serve.suffix import ServedSuffix  # noqa: E402

CONFIGS = {"batching": ["--max-batch", "64", "--max-wait-ms", "5"], "batch-1": ["--max-batch", "1"]}


# ---- inputs ----------------------------------------------------------------------------------------------------

def prepare_utterances(export_dir: Path, corpus: Path, count: int, codec: str) -> tuple[list[dict], dict]:
    """Real corpus utterances through the export's ExecuTorch artifact, chunk by chunk, encoded once."""
    manifest = ExportManifest.read(export_dir, only=["executorch"])
    prefix = PrefixRunner(manifest, "executorch")
    g = manifest.chunk
    utts = []
    for u in pick_utterances(read_librispeech(corpus / "test", probe_lengths=False), count):
        pcm = load_audio(u.path)
        chunks, ends, frames = [], [], []
        for seq, valid, emb, _ in prefix.chunks(pcm):
            chunks.append(p.encode_frame(p.Chunk(seq, valid, payload.encode(emb, codec))))
            ends.append((seq * g.chunk_samples + valid) / g.sample_rate)  # when a phone has this chunk's audio
            frames.append(seq * g.chunk_frames + g.frames_for(valid))
        utts.append({"id": u.utt_id, "seconds": len(pcm) / g.sample_rate, "chunks": chunks, "ready_at": ends,
                     "valid_seconds": [v / g.sample_rate for v in g.valid_samples(len(pcm))],
                     "frames_so_far": frames, "end": p.encode_frame(p.End(len(chunks)))})
    hello = p.encode_frame(hello_for(manifest, codec))
    identity = manifest.prefix_identity
    artifact = {"file": prefix.artifact.path.name, "backend": prefix.artifact.backend,
                "recipe": prefix.artifact.recipe, "checkpoint": manifest.checkpoint_file().name,
                "checkpoint_sha256": identity.checkpoint_sha256, "split_layer": identity.split_layer}
    return [dict(u, hello=hello) for u in utts], artifact


def export_checkpoint(export_dir: str | Path) -> str:
    """The checkpoint an export was cut from (the suffix the server serves)."""
    return str(ExportManifest.read(export_dir, only=["executorch"]).checkpoint_file())


# ---- the server --------------------------------------------------------------------------------------------------

def start_server(extra: list[str], token_hash: str, checkpoint: str) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "VEIL_SERVE_TOKENS": token_hash}
    cmd = ["taskset", "-c", str(SERVER_CORE), sys.executable, "-m", "toolkit.cli", "serve", "--port", "0",
           "--checkpoint", checkpoint, "--threads", "1", "--max-sessions", "4096", "--max-sessions-per-token",
           "4096", "--rate-limit", "0", "--idle-timeout-s", "120", "--log-level", "warning", *extra]
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in proc.stdout:
        m = re.search(r"listening on (http://\S+)", line)
        if m:
            return proc, m.group(1)
    raise RuntimeError(f"veil serve did not start: {' '.join(cmd)}")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def server_pid(proc: subprocess.Popen) -> int:
    return proc.pid  # taskset execs the interpreter in place


def scrape(url: str) -> dict:
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        name, value = line.rsplit(" ", 1)
        out[name] = float(value)
    return out


def batch_histogram(before: dict, after: dict) -> dict:
    edges = ["1.0", "2.0", "4.0", "8.0", "16.0", "32.0", "64.0", "128.0", "+Inf"]
    cum = [after.get(f'veil_batch_size_bucket{{le="{e}"}}', 0) - before.get(f'veil_batch_size_bucket{{le="{e}"}}', 0)
           for e in edges]
    counts = [int(c - (cum[i - 1] if i else 0)) for i, c in enumerate(cum)]
    calls = after.get("veil_batch_size_count", 0) - before.get("veil_batch_size_count", 0)
    items = after.get("veil_batch_size_sum", 0) - before.get("veil_batch_size_sum", 0)
    return {"calls": int(calls), "items": int(items), "mean": round(items / calls, 2) if calls else 0.0,
            "buckets_le": dict(zip(["1", "2", "3-4", "5-8", "9-16", "17-32", "33-64", "65-128", ">128"], counts))}


# ---- the phones --------------------------------------------------------------------------------------------------

async def phone(idx: int, url: str, token: str, utts: list[dict], window: list[float], stop: asyncio.Event,
                record: dict, seed: int, paced: bool = True) -> None:
    """``paced``: a real-time phone (a chunk per 2 s of audio); unpaced: the next chunk as soon as the previous
    PARTIAL arrives (a closed loop that saturates the server: its throughput)."""
    rng = random.Random(seed * 100003 + idx)
    loop = asyncio.get_running_loop()
    await asyncio.sleep(rng.uniform(0, 2.0))
    u = rng.randrange(len(utts))
    headers = {"Authorization": f"Bearer {token}"}
    while not stop.is_set():
        utt = utts[u % len(utts)]
        u += 1
        sent: dict[int, float] = {}
        answered = asyncio.Queue()
        try:
            async with connect(url, additional_headers=headers, compression=None, proxy=None, max_size=2 ** 20,
                               open_timeout=60, ping_interval=None) as ws:
                await ws.send(utt["hello"])
                if not isinstance(p.decode_frame(await ws.recv()), p.Ready):
                    record["errors"]["no_ready"] = record["errors"].get("no_ready", 0) + 1
                    return
                start = loop.time()

                async def reader():
                    while True:
                        m = p.decode_frame(await ws.recv())
                        now = loop.time()
                        if isinstance(m, p.Partial):
                            answered.put_nowait(m.seq)
                            t = sent[m.seq]
                            if window[0] <= t < window[1]:
                                record["partial_ms"].append(1000 * (now - t))
                                record["audio_s"] += utt["valid_seconds"][m.seq]
                        elif isinstance(m, p.Final):
                            t = sent["end"]
                            if window[0] <= t < window[1]:
                                record["final_ms"].append(1000 * (now - t))
                            return
                        else:
                            record["errors"][m.name] = record["errors"].get(m.name, 0) + 1
                            return

                read = asyncio.ensure_future(reader())
                try:
                    for seq, frame in enumerate(utt["chunks"]):
                        delay = start + utt["ready_at"][seq] - loop.time()
                        if paced and delay > 0:
                            await asyncio.sleep(delay)
                        elif not paced and seq:
                            await answered.get()
                        if stop.is_set():
                            break
                        sent[seq] = loop.time()
                        await ws.send(frame)
                    else:
                        sent["end"] = loop.time()
                        await ws.send(utt["end"])
                        await read
                finally:
                    read.cancel()
                    await asyncio.gather(read, return_exceptions=True)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a refused or broken session is an error of this step
            name = type(exc).__name__
            record["errors"][name] = record["errors"].get(name, 0) + 1
            await asyncio.sleep(0.5)


async def run_step(url: str, token: str, utts: list[dict], n: int, warmup: float, measure: float, seed: int,
                   proc: subprocess.Popen, paced: bool = True) -> dict:
    ws_url = url.replace("http", "ws", 1) + "/v1/stream"
    loop = asyncio.get_running_loop()
    record = {"partial_ms": [], "final_ms": [], "audio_s": 0.0, "errors": {}}
    stop = asyncio.Event()
    t0 = loop.time()
    window = [t0 + warmup, t0 + warmup + measure]
    tasks = [asyncio.ensure_future(phone(i, ws_url, token, utts, window, stop, record, seed, paced))
             for i in range(n)]
    await asyncio.sleep(warmup)
    before, cpu0, wall0 = scrape(url), cpu_seconds(server_pid(proc)), time.perf_counter()
    await asyncio.sleep(measure)
    after, cpu1, wall1 = scrape(url), cpu_seconds(server_pid(proc)), time.perf_counter()
    await asyncio.sleep(1.0)  # answers to chunks sent at the end of the window
    stop.set()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for _ in range(100):  # the server frees every session before the next step
        if scrape(url).get("veil_sessions_active", 0) == 0:
            break
        await asyncio.sleep(0.1)
    chunks = int(after.get('veil_chunks_total{kind="new"}', 0) - before.get('veil_chunks_total{kind="new"}', 0))
    pct = lambda xs, q: round(float(np.percentile(xs, q)), 1) if xs else None
    return {"streams": n, "paced": paced, "window_s": round(wall1 - wall0, 2), "chunks_per_s": round(chunks / measure, 1),
            "chunk_to_partial_ms": {"p50": pct(record["partial_ms"], 50), "p95": pct(record["partial_ms"], 95),
                                    "p99": pct(record["partial_ms"], 99), "count": len(record["partial_ms"])},
            "end_to_final_ms": {"p50": pct(record["final_ms"], 50), "p95": pct(record["final_ms"], 95),
                                "p99": pct(record["final_ms"], 99), "count": len(record["final_ms"])},
            "audio_seconds_per_wall_second": round(record["audio_s"] / measure, 2),
            "server_chunks": chunks, "server_cpu_ms_per_chunk": round(1000 * (cpu1 - cpu0) / chunks, 3) if chunks else None,
            "server_cpu_share": round((cpu1 - cpu0) / (wall1 - wall0), 3),
            "batches": batch_histogram(before, after), "errors": record["errors"]}


# ---- the plain torch suffix ----------------------------------------------------------------------------------------

def torch_baseline(checkpoint: str, utts: list[dict], batch: int, window_frames: int) -> dict:
    """The suffix alone on core 0, one thread, on the benchmark's request mix: one partial per chunk (frames so
    far, capped by the partial window) and one final per utterance (all frames)."""
    os.sched_setaffinity(0, {SERVER_CORE})
    torch.set_num_threads(1)
    served = ServedSuffix.load(checkpoint)
    d = served.dim
    rng = np.random.default_rng(0)
    requests = []
    for u in utts:  # a final is a separate call only when the last partial was windowed
        requests += [min(f, window_frames) for f in u["frames_so_far"]]
        requests += [u["frames_so_far"][-1]] if u["frames_so_far"][-1] > window_frames else []
    chunks = sum(len(u["chunks"]) for u in utts)
    inputs = [rng.standard_normal((t, d)).astype(np.float32) for t in requests]
    result = {}
    for b in sorted({1, max(1, batch)}):
        ordered = sorted(inputs, key=len) if b > 1 else inputs  # batches of similar lengths: its best case
        served.labels(ordered[:b])  # warm
        t0 = time.process_time()
        repeats = 3
        for _ in range(repeats):
            for i in range(0, len(ordered), b):
                served.labels(ordered[i:i + b])
        per_chunk = (time.process_time() - t0) / repeats / chunks
        result[f"batch_{b}"] = {"cpu_ms_per_chunk": round(1000 * per_chunk, 3),
                                "streams_per_core": round(1.0 / (per_chunk * 0.5), 1)}  # a stream: 0.5 chunk/s
    result["requests_per_chunk"] = round(len(requests) / chunks, 3)
    result["mean_frames_per_request"] = round(float(np.mean(requests)), 1)
    os.sched_setaffinity(0, {CLIENT_CORE})
    return result


# ---- report ----------------------------------------------------------------------------------------------------------

def holds(step: dict, p99_ms: float) -> bool:
    q = step["chunk_to_partial_ms"]["p99"]
    return not step["errors"] and q is not None and q <= p99_ms


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    shipped_k = int(read_config(DEFAULT_MODEL)["model"]["split_layer"])
    ap.add_argument("--export", default=str(default_export_dir(DEFAULT_MODEL, shipped_k)),
                    help="export of the shipped model")
    ap.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ap.add_argument("--utterances", type=int, default=32)
    ap.add_argument("--streams", default="20,40,60,80,100,120,150,200,250,300")
    ap.add_argument("--configs", default="batching,batch-1")
    ap.add_argument("--warmup", type=float, default=8.0)
    ap.add_argument("--measure", type=float, default=20.0)
    ap.add_argument("--p99-ms", type=float, default=250.0)
    ap.add_argument("--time-cap", type=float, default=1200.0, help="seconds for the whole run")
    ap.add_argument("--saturate", type=int, default=64,
                    help="unpaced sessions for the saturated-throughput step of each config (0: skip)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(RESULTS_DIR))
    ap.add_argument("--readme", metavar="PAGE", help="also rewrite the load table in this page (docs/results.md)")
    ap.add_argument("--rebaseline", metavar="JSON",
                    help="measure only the torch baseline again, into this recorded result (the service runs stay "
                         "as recorded); re-render any result with `veil render JSON`")
    return ap.parse_args()


def main() -> int:
    args = parse_args()
    if args.rebaseline:
        result = read_json(args.rebaseline, f"{args.rebaseline}: result not found")
        os.sched_setaffinity(0, {CLIENT_CORE})
        utts, _ = prepare_utterances(Path(args.export), Path(args.corpus), result["utterances"], "int8")
        b = result["summary"]["baseline_batch"]
        result["torch_baseline"] = torch_baseline(export_checkpoint(args.export), utts, b, 400)
        write_json(args.rebaseline, result)
        write_text(Path(args.rebaseline).with_suffix(".md"), render_markdown(result))
        return 0
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the server on the way out
    deadline = time.monotonic() + args.time_cap
    load_at_start = os.getloadavg()
    os.sched_setaffinity(0, {CLIENT_CORE})
    utts, artifact = prepare_utterances(Path(args.export), Path(args.corpus), args.utterances, "int8")
    checkpoint = export_checkpoint(args.export)
    token = new_token()
    runs, saturation = {}, {}
    for config in args.configs.split(","):
        proc, url = start_server(CONFIGS[config], hash_token(token), checkpoint)
        steps = []
        try:
            if args.saturate:
                sat = asyncio.run(run_step(url, token, utts, args.saturate, 4.0, args.measure / 2, args.seed, proc,
                                           paced=False))
                saturation[config] = sat
                print(f"{config:9s} saturated by {args.saturate} unpaced sessions: {sat['chunks_per_s']} chunks/s, "
                      f"{sat['audio_seconds_per_wall_second']} audio-s/s, batch {sat['batches']['mean']}, "
                      f"cpu share {sat['server_cpu_share']}", flush=True)
            for n in [int(x) for x in args.streams.split(",")]:
                if time.monotonic() + args.warmup + args.measure + 10 > deadline:
                    print(f"{config}: time cap reached before N={n}", flush=True)
                    break
                step = asyncio.run(run_step(url, token, utts, n, args.warmup, args.measure, args.seed, proc))
                step["holds"] = holds(step, args.p99_ms)
                steps.append(step)
                c = step["chunk_to_partial_ms"]
                print(f"{config:9s} N={n:4d}: chunk->partial p50 {c['p50']} p99 {c['p99']} ms, "
                      f"{step['audio_seconds_per_wall_second']} audio-s/s, batch {step['batches']['mean']}, "
                      f"cpu {step['server_cpu_ms_per_chunk']} ms/chunk, errors {step['errors']}", flush=True)
                if not step["holds"]:
                    break
        finally:
            stop_server(proc)
        runs[config] = steps

    def best(config):
        ok = [s for s in runs.get(config, []) if s["holds"]]
        return max(ok, key=lambda s: s["streams"]) if ok else None

    top = {c: best(c) for c in runs}
    # the plain suffix at batch 1 and at the batch size the saturated batching run reached
    mean_batch = saturation["batching"]["batches"]["mean"] if "batching" in saturation else (
        top["batching"]["batches"]["mean"] if top.get("batching") else 1.0)
    baseline = torch_baseline(checkpoint, utts, int(round(mean_batch)), 400)
    bkey = f"batch_{max(1, int(round(mean_batch)))}"
    per_cpu = {c: round(saturation[c]["audio_seconds_per_wall_second"] / saturation[c]["server_cpu_share"], 1)
               for c in saturation if saturation[c]["server_cpu_share"]}
    thr = {c: (top[c]["audio_seconds_per_wall_second"] if top[c] else 0.0) for c in runs}
    summary = {"max_streams": {c: (top[c]["streams"] if top[c] else 0) for c in runs},
               "ceiling_reached": {c: bool(runs[c]) and not runs[c][-1]["holds"] for c in runs},
               "throughput": thr,
               "throughput_ratio": round(thr.get("batching", 0) / thr["batch-1"], 2) if thr.get("batch-1") else None,
               "batch_histogram_at_max": top["batching"]["batches"]["buckets_le"] if top.get("batching") else None,
               "service_cpu_ms_per_chunk": top["batching"]["server_cpu_ms_per_chunk"] if top.get("batching") else None,
               "service_cpu_ms_per_chunk_batch1": top["batch-1"]["server_cpu_ms_per_chunk"] if top.get("batch-1") else None,
               "baseline_batch": max(1, int(round(mean_batch))), "baseline_batch_key": bkey,
               "saturated_audio_s_per_s": {c: saturation[c]["audio_seconds_per_wall_second"] for c in saturation},
               "saturated_audio_s_per_server_cpu_s": per_cpu,
               "saturated_ratio_per_cpu": (round(per_cpu["batching"] / per_cpu["batch-1"], 2)
                                           if {"batching", "batch-1"} <= set(per_cpu) else None),
               "saturated_ratio": (round(saturation["batching"]["audio_seconds_per_wall_second"] /
                                         saturation["batch-1"]["audio_seconds_per_wall_second"], 2)
                                   if {"batching", "batch-1"} <= set(saturation) and
                                   saturation["batch-1"]["audio_seconds_per_wall_second"] else None)}
    result = {"format": LOAD_FORMAT, "date": datetime.date.today().isoformat(), "host": platform.node(),
              "cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
              "command": ".venv/bin/python -m experiments.serve_load " + " ".join(sys.argv[1:]),
              "artifact": artifact, "utterances": len(utts),
              "audio_seconds_per_utterance": round(float(np.mean([u["seconds"] for u in utts])), 2),
              "warmup_s": args.warmup, "measure_s": args.measure, "p99_goal_ms": args.p99_ms,
              "saturation_sessions": args.saturate,
              "server_flags": {c: CONFIGS[c] for c in runs}, "saturation": saturation, "runs": runs,
              "torch_baseline": baseline,
              "summary": summary,
              "load_average_at_start": load_at_start, "load_average_at_end": os.getloadavg()}
    stem = Path(args.out) / f"serve-load-{result['date']}"
    write_json(stem.with_suffix(".json"), result)
    write_text(stem.with_suffix(".md"), render_markdown(result))
    print(render_markdown(result))
    if args.readme:
        refresh(Path(args.readme), "serve-load", headline(result, display_path(stem.with_suffix(".json"))),
                "Service load")
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
