"""`veil bench`: latency, memory, size and payload of every exported artifact, beside two baselines.

    veil bench EXPORT_DIR [EXPORT_DIR ...] [--threads 1,2] [--runs 50] [--warmup 5] [--out benchmarks/results]
    veil bench --sweep-split 1..6 --recipe int8-static [--checkpoint M]   (the cut-point sweep: experiments/)
    veil bench EXPORT_DIR --device android[:SERIAL] --tool KIND=PATH... [--app]   (tools: toolkit/bench/phone_tools.py)
    veil bench EXPORT_DIR --device ios --ios-log FILE   (FILE: saved `xcodebuild test` log, see toolkit/bench/phones.py)

Results: ``<out>/<date>-<host>.json`` (+ ``.md``, ``.png``), the sweep ``<date>-<host>-sweep-<recipe>.*``.
"""
from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from toolkit.bench.bench import DEFAULT_CACHE, DEFAULT_OUT, BenchRequest, run_bench
from toolkit.bench.phone_tools import PHONE_TOOLS
from toolkit.paths import DEFAULT_CORPUS


def _threads(text: str) -> list[int]:
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {text!r}")
    return values


def _tool(text: str) -> tuple[str, str]:
    kind, sep, path = text.partition("=")
    if not sep or not path:
        raise argparse.ArgumentTypeError(f"expected KIND=PATH, got {text!r}")
    if kind not in PHONE_TOOLS:
        raise argparse.ArgumentTypeError(f"unknown phone tool kind {kind!r} (kinds: {', '.join(PHONE_TOOLS)})")
    return kind, path


def phone_tools(args) -> dict[str, str]:
    """kind -> local binary, from --tool KIND=PATH and the per-tool flags."""
    tools = dict(args.tool)
    tools.update({t.kind: getattr(args, f"tool_{t.kind}") for t in PHONE_TOOLS.values()
                  if getattr(args, f"tool_{t.kind}", None)})
    return tools


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("export_dirs", nargs="*", metavar="EXPORT_DIR",
                   help="export folders (manifest.json) of one checkpoint and split layer; benched together")
    p.add_argument("--threads", type=_threads, default=[1, 2], help="thread counts (default 1,2)")
    p.add_argument("--runs", type=int, default=50, help="timed runs per artifact and thread count (>= 50)")
    p.add_argument("--rounds", type=int, default=3,
                   help="round-robin passes over all artifacts; the timed runs are split among them (default 3)")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs after the first inference (default 5)")
    p.add_argument("--out", default=None, help="results folder (default benchmarks/results)")
    p.add_argument("--name", default=None, help="result file stem (default <date>-<host>)")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the manifest's; sweep: the shipped model)")
    p.add_argument("--corpus", default=None, help="LibriSpeech-layout corpus root (default data/corpus)")
    p.add_argument("--payload-utts", type=int, default=48, help="eval-speakers utterances for payload ΔWER")
    p.add_argument("--profile", action="store_true",
                   help="per-operator tables of every artifact (ExecuTorch ETDump + devtools Inspector; LiteRT: "
                        "its op mix, per-op times need benchmark_model)")
    p.add_argument("--no-baselines", action="store_true", help="skip torch eager and ONNX Runtime")
    p.add_argument("--ceiling", choices=["full", "matmul", "none"], default="full",
                   help="machine ceiling: full (torch, ORT, ExecuTorch, LiteRT matmuls), matmul (torch, ORT), none")
    p.add_argument("--device", default=None, metavar="android[:SERIAL]|ios", help="measure on a phone")
    p.add_argument("--tool", action="append", default=[], type=_tool, metavar="KIND=PATH",
                   help="a phone tool for --device android (repeatable); kinds: "
                        + "; ".join(f"{t.kind} = {t.help}" for t in PHONE_TOOLS.values()))
    for t in PHONE_TOOLS.values():
        p.add_argument(t.flag, default=None, metavar="PATH", dest=f"tool_{t.kind}", help=f"the same as --tool {t.kind}=PATH")
    p.add_argument("--npu-libs", default=None, metavar="DIR",
                   help="the phone's LiteRT dispatch library and vendor NPU runtime (e.g. libLiteRtDispatch_Qualcomm.so, "
                        "libQnnHtp.so, libQnnSystem.so, libQnnHtpV75Stub.so, libQnnHtpV75Skel.so), pushed with NPU "
                        "artifacts for benchmark_litert_model and, with --app, for the app")
    p.add_argument("--app", action="store_true",
                   help="with --device android: also measure in the Veil demo app (installed; see android_demo/)")
    p.add_argument("--ios-log", default=None, metavar="FILE",
                   help="saved `xcodebuild test` output of the iOS demo's benchmark (ios_demo/VeilDemo/BenchTests), "
                        "for --device ios")
    p.add_argument("--cache-dir", default=None, metavar="DIR",
                   help="ONNX baseline, ceiling kernels and sweep exports (default exports/.bench-cache)")
    p.add_argument("--quick", action="store_true", help="smoke run: allows fewer than 50 runs, marked in the JSON")
    p.add_argument("--no-plots", action="store_true", help="JSON and Markdown only")
    p.add_argument("--readme", default=None, metavar="PAGE",
                   help="also rewrite the benchmark table of this page (docs/results.md, <!-- veil:bench --> markers)")


def command_line(args) -> str:
    """The canonical command that reproduces this run (recorded in the JSON)."""
    parts = ["veil", "bench", *args.export_dirs, "--threads", ",".join(map(str, args.threads)),
             "--runs", str(args.runs), "--rounds", str(args.rounds), "--warmup", str(args.warmup), "--payload-utts", str(args.payload_utts),
             "--ceiling", args.ceiling]
    for flag in ("out", "name", "checkpoint", "corpus", "sweep_split", "recipe", "device", "npu_libs", "ios_log",
                 "cache_dir", "readme"):
        if getattr(args, flag, None):  # sweep_split, recipe: the cut-point sweep's flags (experiments/cli.py)
            parts += ["--" + flag.replace("_", "-"), str(getattr(args, flag))]
    for kind, path in phone_tools(args).items():
        parts += ["--tool", f"{kind}={path}"]
    for flag in ("no_baselines", "profile", "quick", "no_plots", "app"):
        if getattr(args, flag):
            parts.append("--" + flag.replace("_", "-"))
    return shlex.join(parts)


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="latency, memory, size and payload of exported artifacts (+ baselines)")
    add_arguments(p)
    p.set_defaults(func=run)


def request(args) -> BenchRequest:
    return BenchRequest(export_dirs=[Path(d) for d in args.export_dirs], threads=args.threads, runs=args.runs,
                        warmup=args.warmup, rounds=args.rounds, out_dir=Path(args.out) if args.out else DEFAULT_OUT,
                        name=args.name, corpus=Path(args.corpus or DEFAULT_CORPUS), payload_utts=args.payload_utts,
                        checkpoint=Path(args.checkpoint) if args.checkpoint else None,
                        baselines=not args.no_baselines, profile=args.profile, ceiling=args.ceiling,
                        command=command_line(args), sweep=getattr(args, "sweep_split", None),
                        recipe=getattr(args, "recipe", None), device=args.device,
                        tools=phone_tools(args), npu_libs=args.npu_libs,
                        ios_log=args.ios_log, app=args.app, plots=not args.no_plots, quick=args.quick,
                        readme=Path(args.readme) if args.readme else None,
                        cache_dir=Path(args.cache_dir) if args.cache_dir else DEFAULT_CACHE)


def run(args) -> int:
    run_bench(request(args))
    return 0
