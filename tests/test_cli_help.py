"""Every command's --help renders (argparse formats help strings lazily, so a stray '%' only fails here)."""
import argparse

from toolkit.cli import build_parser
from toolkit.exporting import cli as export_cli


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_help_renders():
    names = []
    for p in _all_parsers(build_parser()):
        assert p.format_help()
        names.append(p.prog)
    for cmd in ("corpus", "train", "transcribe", "evaluate", "publish", "privacy", "export", "parity"):
        assert f"veil {cmd}" in names
    standalone = argparse.ArgumentParser(prog="export-prefix")
    export_cli.add_arguments(standalone)
    assert "--target" in standalone.format_help()
