"""`veil parity EXPORT_DIR`: run every artifact of an export in its real runtime against the float model.

Exit codes: 0 every artifact passed its gate (Core ML off macOS: `needs-macos`, reported, not passed),
1 a gate failed (reports and manifest written, artifacts kept), 2 a user error (one line).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from toolkit.parity.check import DEFAULT_UTTS, PARITY_SPLIT, ParityFailed, ParityRequest, run_parity
from toolkit.parity.gates import METRICS, defaults_text, parse_gate_args
from toolkit.paths import DEFAULT_CORPUS


def gate_help() -> str:
    return (f"override a gate: RECIPE:METRIC=VALUE[,...], RECIPE a recipe, BACKEND/RECIPE or '*'; metrics "
            f"{', '.join(METRICS)} (snr dB min, dwer pp max, cos min, kl nats max, wer_vs_float %% max). "
            f"Defaults: {defaults_text()} (repeatable)")


def add_parity_options(p: argparse.ArgumentParser) -> None:
    """Options shared by `veil parity` and `export-prefix` (which runs parity after exporting)."""
    p.add_argument("--parity-utts", type=int, default=DEFAULT_UTTS, metavar="N",
                   help=f"eval-speakers utterances for parity, spread over speakers (default {DEFAULT_UTTS})")
    p.add_argument("--parity-split", default=PARITY_SPLIT, help=f"corpus split for parity (default {PARITY_SPLIT})")
    p.add_argument("--gate", action="append", default=[], metavar="RECIPE:METRIC=VALUE", help=gate_help())
    p.add_argument("--gates-file", default=None, metavar="JSON", help="gates as {recipe: {metric: value}}")
    p.add_argument("--localize", choices=["auto", "always", "never"], default="auto",
                   help="find the layer where the gap opens: auto = failing or within 6 dB of the SNR gate")
    p.add_argument("--no-bundle", action="store_true", help="do not write ExecuTorch .bpte check bundles")
    p.add_argument("--readme", default=None, metavar="PAGE",
                   help="also rewrite the export table of this page (docs/results.md, <!-- veil:parity --> markers)")


def request_from(args, export_dir: Path, checkpoint: Path | None = None) -> ParityRequest:
    return ParityRequest(export_dir=export_dir, checkpoint=checkpoint, corpus=Path(args.corpus),
                         split=args.parity_split, utterances=args.parity_utts,
                         gates=parse_gate_args(args.gate, args.gates_file), localize=args.localize,
                         bundle=not args.no_bundle, only=list(getattr(args, "backend", None) or []),
                         readme=Path(args.readme) if args.readme else None)


def run_and_report(req: ParityRequest) -> int:
    """Run parity; a failed gate prints its one-line message and returns 1."""
    try:
        run_parity(req)
    except ParityFailed as exc:
        print(f"parity: {exc}", file=sys.stderr)
        return ParityFailed.exit_code
    return 0


def add_parser(sub) -> None:
    p = sub.add_parser("parity", help="check exported artifacts in their real runtimes against the float model")
    p.add_argument("export_dir", metavar="EXPORT_DIR", help="folder written by `export-prefix` (manifest.json)")
    p.add_argument("--checkpoint", default=None, help="the float checkpoint (default: the manifest's)")
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS), help="LibriSpeech-layout corpus root")
    p.add_argument("--backend", action="append", default=[], help="check only this backend (repeatable)")
    add_parity_options(p)
    p.set_defaults(func=run)


def run(args) -> int:
    checkpoint = Path(args.checkpoint) if args.checkpoint else None
    return run_and_report(request_from(args, Path(args.export_dir), checkpoint))
