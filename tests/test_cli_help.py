"""Every command's --help renders (argparse formats help strings lazily, so a stray '%' only fails here), and
every command is there: each package's cli.py registered in toolkit.cli.COMMANDS, plus `export-prefix`."""
import argparse

from toolkit.cli import COMMANDS, build_parser
from toolkit.exporting import cli as export_cli

ALL_COMMANDS = ("corpus", "corpus build", "train", "transcribe", "evaluate", "publish", "export-prefix", "parity", "bench",
                "privacy", "sweep", "frontier", "attempts", "attempts add", "attempts add-frontier", "attempts render", "render", "serve", "stream",
                "protocol", "protocol vectors")


def _all_parsers(parser):
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _all_parsers(sub)


def test_every_help_renders_and_every_command_is_there():
    names = []
    for p in _all_parsers(build_parser()):
        assert p.format_help()
        names.append(p.prog)
    assert sorted(names) == sorted(["veil"] + [f"veil {cmd}" for cmd in ALL_COMMANDS])
    assert all(module.split(".")[0] in ("toolkit", "experiments") and module.endswith(".cli") for module in COMMANDS.values())
    for command, module in COMMANDS.items():  # each command is registered with the module that adds it
        top = [p.prog for p in _all_parsers(build_parser(command))]
        assert f"veil {command}" in top and set(top) <= {"veil"} | {f"veil {c}" for c in ALL_COMMANDS}
    standalone = argparse.ArgumentParser(prog="export-prefix")
    export_cli.add_arguments(standalone)
    assert "--target" in standalone.format_help()


def test_train_options_come_from_the_config_dataclasses():
    """Every TrainConfig/ModelConfig field a user may set is a `veil train` flag, with its default in the help."""
    from dataclasses import fields

    from toolkit.config_flags import config_fields, flag_of
    from toolkit.model.asr import ModelConfig
    from toolkit.training.loop import TrainConfig
    train = next(p for p in _all_parsers(build_parser()) if p.prog == "veil train")
    text = train.format_help()
    for cls in (TrainConfig, ModelConfig):
        for f, _ in config_fields(cls):
            assert flag_of(f) in text, f.name
    assert "--config" in text and "(default 20000)" in text
    hidden = {f.name for f in fields(ModelConfig)} - {f.name for f, _ in config_fields(ModelConfig)}
    assert hidden == {"vocab_size", "n_speakers", "frontend"}  # from the data, or nested: config file only


def test_privacy_and_sweep_share_the_attack_options_with_their_own_defaults():
    """`veil privacy` runs the whole suite on every training utterance and lists every attacker by name;
    `veil sweep` keeps Veil's original attackers on 10 utterances per speaker, and its help says so."""
    parsers = {p.prog: p for p in _all_parsers(build_parser())}
    privacy, sweep = (" ".join(parsers[f"veil {c}"].format_help().split()) for c in ("privacy", "sweep"))
    assert "(default all)" in privacy and "informed attackers (0 = all) (default 0)" in privacy
    assert "network (default legacy)" in sweep and "(0 = all) (default 10)" in sweep
    for name in ("pooled-lr", "moments-lr", "dynamics-lda", "allstats-plda", "frame-net", "ecapa-plda", "x-vector"):
        assert f" {name} " in privacy, name
