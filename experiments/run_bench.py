#!/usr/bin/env python
"""Re-run the recorded benchmark of a shipped model in one command:

    .venv/bin/python -m experiments.run_bench [--checkpoint models/k6-d16-n0.5.safetensors] [--sweep] [--quick]
                                             [--readme docs/results.md]

1. makes sure the export folders ``exports/<checkpoint>-k<K>[-fp32|-int8-dynamic]`` exist for this exact
   checkpoint (re-exported when their manifest does not check out or names another checkpoint sha256): the
   shipped recipes (``export-prefix --target all``: ExecuTorch and LiteRT int8-static, Core ML int8-weights),
   fp32 and int8-dynamic for Android;
2. ``veil bench`` on all of them together, at 1 and 2 threads, 100 timed runs in 2 round-robin rounds,
   the torch/ONNX Runtime matmul ceiling (``--ceiling full`` adds ExecuTorch/LiteRT kernels), 48
   eval-speakers utterances for the payload -> ``benchmarks/results/<date>-<host>.{json,md,png}``;
3. with ``--sweep``: ``veil bench --sweep-split all --recipe executorch=int8-static`` (1 thread).

Run it under ``nice -n 19`` on a shared machine; compare rows of one run, never runs.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # run as a script from a checkout: the toolkit package next to this folder

from toolkit.cli import main as veil  # noqa: E402
from toolkit.errors import VeilError  # noqa: E402
from toolkit.exporting.manifest import ExportManifest  # noqa: E402
from toolkit.exporting.prefix_export import ExportRequest, export_prefix  # noqa: E402
from toolkit.files import file_sha256  # noqa: E402
from toolkit.model.checkpoint import read_config  # noqa: E402
from toolkit.paths import DEFAULT_MODEL, default_export_dir  # noqa: E402

EXPORT_SETS = {  # folder variant -> (target, recipes)
    "": ("all", []),
    "fp32": ("android", ["fp32"]),
    "int8-dynamic": ("android", ["int8-dynamic"]),
}


def ensure_export(checkpoint: Path, split_layer: int, variant: str, target: str, recipes: list[str]) -> Path:
    """``exports/<checkpoint>-k<K>[-variant]``, re-exported unless it is a checked export of this very
    checkpoint (sha256)."""
    out = default_export_dir(checkpoint, split_layer, variant)
    try:
        if ExportManifest.read(out).checkpoint["sha256"] == file_sha256(checkpoint):
            print(f"export {out.relative_to(REPO)}: up to date")
            return out
    except VeilError:
        pass  # missing, stale or damaged: export again
    print(f"export {out.relative_to(REPO)}: export-prefix --target {target} " +
          " ".join(f"--recipe {r}" for r in recipes))
    export_prefix(ExportRequest(checkpoint=checkpoint, target=target, recipes=recipes, out=out))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    p.add_argument("--sweep", action="store_true", help="also run the cut-point sweep")
    p.add_argument("--quick", action="store_true", help="smoke run (5 timed runs, matmul-only ceiling)")
    p.add_argument("--rounds", type=int, default=2, help="round-robin passes (veil bench --rounds)")
    p.add_argument("--ceiling", default="matmul", choices=["full", "matmul", "none"],
                   help="machine ceiling; 'full' adds ExecuTorch/LiteRT Linear kernels (4 more exports)")
    p.add_argument("--readme", default=None, metavar="PAGE", help="also rewrite this page's benchmark table (docs/results.md)")
    args = p.parse_args(argv)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file():
        print(f"run_bench: {checkpoint}: checkpoint not found", file=sys.stderr)
        return 2
    model = read_config(checkpoint)["model"]
    dirs = [ensure_export(checkpoint, model["split_layer"], v, t, r) for v, (t, r) in EXPORT_SETS.items()]
    dirs = [d.relative_to(REPO) if Path.cwd() == REPO else d for d in dirs]
    common = ["--checkpoint", str(checkpoint)]
    runs = ["--runs", "5", "--quick", "--ceiling", "matmul"] if args.quick else \
        ["--runs", "100", "--rounds", str(args.rounds), "--ceiling", args.ceiling]
    bench = ["bench", *map(str, dirs), "--threads", "1,2", *runs, *common]
    if args.readme:
        bench += ["--readme", args.readme]
    print("veil " + shlex.join(bench))
    rc = veil(bench)
    if rc or not args.sweep:
        return rc
    sweep = ["bench", "--sweep-split", "all", "--recipe", "executorch=int8-static", "--threads", "1",
             *runs, *common]
    print("veil " + shlex.join(sweep))
    return veil(sweep)


if __name__ == "__main__":
    sys.exit(main())
