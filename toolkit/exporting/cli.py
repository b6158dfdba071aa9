"""`export-prefix` and `veil export`: export a checkpoint's on-device prefix for Android and/or iOS.

    export-prefix [--checkpoint PATH] [--target android|ios|all] [--recipe NAME | BACKEND=NAME]...
                  [--split-layer K] [--out DIR] [--calibration-utts N] [--corpus DIR] [--verbose]
                  [--no-parity] [--parity-utts N] [--gate RECIPE:METRIC=VALUE]... [--gates-file JSON]

After exporting, parity runs every artifact in its real runtime on eval-speakers audio against the float
model (toolkit/parity); a failed gate exits 1 with the artifact kept and the verdict in the manifest.

android -> ExecuTorch .pte + LiteRT .tflite, ios -> Core ML .mlpackage, all -> the three. Mistakes print one
line and exit 2.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.exporting.calibration import CALIBRATION_UTTS


RECIPE_HELP = ("recipe for every backend of the target, or BACKEND=NAME for one (repeatable). Defaults: "
               "executorch int8-static, litert int8-static, coreml int8-weights. Recipes: executorch fp32, "
               "int8-dynamic, int8-static, 8da4w; litert fp32, fp16, int8-dynamic, int8-static; coreml fp16, "
               "fp32, int8-weights, palettized-4bit")


def add_arguments(p: argparse.ArgumentParser) -> None:
    from toolkit.cli import DEFAULT_ANONYMIZED, DEFAULT_CORPUS
    p.add_argument("--checkpoint", default=str(DEFAULT_ANONYMIZED), help="model checkpoint (.safetensors)")
    p.add_argument("--target", default="all", metavar="android|ios|all",
                   help="android: .pte + .tflite; ios: .mlpackage; all: the three (default)")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME", help=RECIPE_HELP)
    p.add_argument("--split-layer", type=int, default=None, metavar="K",
                   help="export frontend + blocks 1..K (default: the checkpoint's split layer)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: exports/<checkpoint>-k<K>); replaced atomically")
    p.add_argument("--calibration-utts", type=int, default=CALIBRATION_UTTS, metavar="N",
                   help=f"corpus utterances for calibrated recipes, spread over speakers (default {CALIBRATION_UTTS})")
    p.add_argument("--calibration-split", default="train", help="corpus split for calibration (default train)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="LibriSpeech-layout corpus root")
    p.add_argument("--verbose", action="store_true", help="show converter output and full tracebacks")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the parity check that runs after every export (see `veil parity`)")
    from toolkit.parity.cli import add_parity_options
    add_parity_options(p)


def run(args) -> int:
    from toolkit.exporting.prefix_export import ExportRequest, export_prefix
    manifest = export_prefix(ExportRequest(checkpoint=Path(args.checkpoint), target=args.target, recipes=args.recipe,
                                split_layer=args.split_layer, out=Path(args.out) if args.out else None,
                                corpus=Path(args.corpus), calibration_split=args.calibration_split,
                                calibration_utts=args.calibration_utts, verbose=args.verbose))
    if args.no_parity:
        return 0
    from toolkit.cli import REPO_ROOT
    from toolkit.parity.cli import request_from, run_and_report
    out = Path(args.out) if args.out else REPO_ROOT / "exports" / f"{Path(args.checkpoint).stem}-k{manifest['split_layer']}"
    return run_and_report(request_from(args, out, Path(args.checkpoint)))


def add_export_parser(sub) -> None:
    p = sub.add_parser("export", help="export the on-device prefix (ExecuTorch, LiteRT, Core ML) + manifest")
    add_arguments(p)
    p.set_defaults(func=run)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export-prefix", description=__doc__.splitlines()[0])
    add_arguments(parser)
    args = parser.parse_args(argv)
    from toolkit.cli import run_guarded
    return run_guarded("export-prefix", run, args)


if __name__ == "__main__":
    sys.exit(main())
