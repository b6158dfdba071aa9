"""The `veil` command line. It only assembles the commands: each lives in its package's ``cli.py``, which has
``add_parser(sub)`` (adds its sub-command(s) to ``veil``, each with ``func=run``) and ``run(args)``.

Adding a command: write ``<package>/cli.py`` and register it in COMMANDS (one line per command). The research
recipes (``experiments/``) are commands too, and the cut-point sweep adds its flags to ``veil bench``
(EXTENSIONS): this registry names them by string, so no ``toolkit`` module imports ``experiments``
(tests/test_imports.py). A run imports
only the module of the command it runs (so ``veil corpus build`` does not load torch); ``veil --help`` imports
them all. User mistakes (bad files, flags, configs) raise VeilError and are printed as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from toolkit.errors import run_guarded

COMMANDS = {  # command -> the cli module that adds it, in the order `veil --help` lists them
    "corpus": "toolkit.data.cli",
    "train": "toolkit.training.cli",
    "transcribe": "toolkit.decoding.cli",
    "evaluate": "toolkit.decoding.cli",
    "publish": "toolkit.model.cli",
    "export-prefix": "toolkit.exporting.cli",  # also the `export-prefix` console script
    "parity": "toolkit.parity.cli",
    "bench": "toolkit.bench.cli",
    "privacy": "toolkit.privacy.cli",
    "sweep": "experiments.cli",
    "frontier": "experiments.cli",
    "attempts": "experiments.cli",
    "render": "experiments.cli",
    "serve": "toolkit.serve.cli",
    "stream": "toolkit.serve.cli",
    "protocol": "toolkit.serve.cli",
}
# command -> the module whose ``extend(command, parser)`` adds a research recipe's flags to that product command
EXTENSIONS = {"bench": "experiments.cli"}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or with ``command`` of the module that adds that one."""
    p = argparse.ArgumentParser(prog="veil", description="Private split speech recognition toolkit.")
    p.add_argument("--verbose", action="store_true", dest="veil_verbose",
                   help="show the third-party warnings Veil silences (export/frame.py KNOWN_WARNINGS)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    modules = [COMMANDS[command]] if command in COMMANDS else list(dict.fromkeys(COMMANDS.values()))
    for name in modules:
        importlib.import_module(name).add_parser(sub)
    for name, module in EXTENSIONS.items():
        if name in sub.choices:
            importlib.import_module(module).extend(name, sub.choices[name])
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = next((a for a in argv if not a.startswith("-")), None)
    args = build_parser(command).parse_args(argv)
    if args.veil_verbose or getattr(args, "verbose", False):
        os.environ["VEIL_VERBOSE"] = "1"
    return run_guarded(f"veil {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
