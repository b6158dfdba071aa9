"""The `veil` command line. It only assembles the commands: each lives in its package's ``cli.py``, which has
``add_parser(sub)`` (adds its sub-command(s) to ``veil``, each with ``func=run``) and ``run(args)``.

Adding a command: write ``<package>/cli.py`` and add its module name to COMMANDS (one line). User mistakes
(bad files, flags, configs) raise VeilError and are printed as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from toolkit.errors import run_guarded

COMMANDS = (  # in the order `veil --help` lists them
    "toolkit.data.cli",        # corpus build
    "toolkit.training.cli",    # train
    "toolkit.decoding.cli",    # transcribe, evaluate
    "toolkit.model.cli",       # publish
    "toolkit.exporting.cli",   # export (also the `export-prefix` console script)
    "toolkit.parity.cli",      # parity
    "toolkit.bench.cli",       # bench
    "toolkit.privacy.cli",     # privacy, sweep, attempts
    "toolkit.results.cli",     # render
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veil", description="Private split speech recognition toolkit.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(name).add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_guarded(f"veil {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
