"""`export-prefix` (also `veil export-prefix`, the same command): export a checkpoint's on-device prefix for Android and/or iOS.

    export-prefix [--checkpoint PATH] [--target android|ios|all|BACKEND] [--recipe NAME | BACKEND=NAME]...
                  [--split-layer K] [--out DIR] [--calibration-utts N] [--corpus DIR] [--verbose]
                  [--no-parity] [--parity-utts N] [--gate RECIPE:METRIC=VALUE]... [--gates-file JSON]

After exporting, parity runs every artifact in its real runtime on eval-speakers audio against the float
model (toolkit/parity); a failed gate exits 1 with the artifact kept and the verdict in the manifest.

android -> ExecuTorch .pte + LiteRT .tflite, ios -> Core ML .mlpackage, all -> the three, a backend's name ->
that backend alone. Mistakes print one line and exit 2.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import export as backends
from toolkit.adapters import ADAPTERS
from toolkit.errors import run_guarded
from toolkit.exporting.calibration import CALIBRATION_UTTS
from toolkit.exporting.prefix_export import ExportRequest, export_prefix, targets
from toolkit.parity import cli as parity_cli
from toolkit.paths import DEFAULT_MODEL, DEFAULT_CORPUS


def recipe_help() -> str:
    """The --recipe help, from the backends' registries."""
    names = list(backends.BACKENDS)
    defaults = ", ".join(f"{b} {backends.get_backend(b).DEFAULT_RECIPE}" for b in names)
    recipes = "; ".join(f"{b} " + ", ".join(backends.get_backend(b).RECIPES.names()) for b in names)
    return (f"recipe for every backend of the target, or BACKEND=NAME for one (repeatable). Defaults: {defaults}. "
            f"Recipes: {recipes} (export/README.md)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", default=str(DEFAULT_MODEL), help="model checkpoint (.safetensors)")
    p.add_argument("--target", default="all", metavar="|".join(targets()),
                   help="android: .pte + .tflite; ios: .mlpackage; all: the three (default); a backend: that one")
    p.add_argument("--recipe", action="append", default=[], metavar="NAME", help=recipe_help())
    p.add_argument("--adapter", default=None, metavar="|".join(ADAPTERS),
                   help="export another encoder than Veil's through its adapter (docs/ADAPTERS.md), with --config "
                        "(a preset such as 'tiny', or the model's config.json) and --weights (safetensors or "
                        "pytorch_model.bin)")
    p.add_argument("--config", default=None, help="the adapter's model config: a preset ('tiny') or config.json")
    p.add_argument("--weights", default=None, metavar="FILE", help="the adapter's weights (.safetensors or .bin)")
    p.add_argument("--model", default=None, metavar="MODULE:FUNCTION",
                   help="any nn.Module: a function returning the prefix for a cut and the chunk geometry "
                        "(docs/ADAPTERS.md)")
    p.add_argument("--split-layer", "--cut", dest="split_layer", type=int, default=None, metavar="K",
                   help="the phone runs frontend + blocks 1..K (default: the checkpoint's split layer, the one it "
                        "was trained for; another K is a what-if cut, recorded in the manifest)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output directory (default: exports/<checkpoint>-k<K>); replaced atomically")
    p.add_argument("--calibration-utts", type=int, default=CALIBRATION_UTTS, metavar="N",
                   help=f"corpus utterances for calibrated recipes, spread over speakers (default {CALIBRATION_UTTS})")
    p.add_argument("--calibration-split", default="train", help="corpus split for calibration (default train)")
    p.add_argument("--calibration-loud", action="store_true",
                   help="add 20 seeded loud chunks (full-scale tones, sweeps, noise, clipped and DC-shifted speech) "
                        "to the calibration audio; recorded in the manifest. Off by default: on the shipped model it "
                        "lifts LiteRT's loud-audio worst case but costs speech SNR and does not pass the stress gates "
                        "(docs/export-notes.md, 'Loud input')")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="LibriSpeech-layout corpus root")
    p.add_argument("--verbose", action="store_true", help="show converter output and full tracebacks")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the parity check that runs after every export (see `veil parity`)")
    parity_cli.add_parity_options(p)


def add_parser(sub) -> None:
    p = sub.add_parser("export-prefix", help="export the on-device prefix (ExecuTorch, LiteRT, Core ML) + manifest")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args) -> int:
    if args.verbose:
        os.environ["VEIL_VERBOSE"] = "1"  # converters' own warnings too (export/frame.py)
    out, _ = export_prefix(ExportRequest(checkpoint=Path(args.checkpoint), target=args.target, recipes=args.recipe,
                                         split_layer=args.split_layer, out=Path(args.out) if args.out else None,
                                         corpus=Path(args.corpus), calibration_split=args.calibration_split,
                                         calibration_utts=args.calibration_utts,
                                         calibration_loud=args.calibration_loud, verbose=args.verbose,
                                         adapter=args.adapter, config=args.config,
                                         weights=Path(args.weights) if args.weights else None, model=args.model))
    if args.no_parity:
        return 0
    own = not (args.adapter or args.model)  # another encoder: parity rebuilds it from the manifest's adapter section
    return parity_cli.run_and_report(parity_cli.request_from(args, out, Path(args.checkpoint) if own else None))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="export-prefix", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run_guarded("export-prefix", run, parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
