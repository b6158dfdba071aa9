"""`veil train`'s options: built from :class:`TrainConfig` and :class:`ModelConfig` (one name, type, default
and help per field, ``toolkit/config_flags.py``), read from a config file, or both.

    veil train --out RUN --grl-layer 4 --split-norm chunk ...      flags only
    veil train --config RUN.json --out RUN2 --steps 4000           a file, then flags on top

``RUN.json`` holds TrainConfig fields with the model's under ``"model"`` (``{"steps": 6000, "model":
{"n_blocks": 6, ...}}``), or is a checkpoint's own ``.json`` (``models/k6-d16-n0.5.json``: its recorded
``provenance.train_config`` and ``model``, without ``out``), so a shipped model's run is repeated from its file.
A value comes from, in order: the dataclass default, the file, the flags. Fields added to either dataclass
appear as flags and config keys without touching this module.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.config_flags import add_config_flags, build_config, given_flags, merge_config
from toolkit.errors import VeilError, read_json
from toolkit.model.asr import ModelConfig
from toolkit.model.checkpoint import FORMAT as CHECKPOINT_FORMAT
from toolkit.training.loop import TrainConfig


def add_train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=argparse.SUPPRESS, metavar="RUN.json",
                   help="start from this config (TrainConfig fields, the model's under \"model\"; or a checkpoint's "
                        ".json); flags override it")
    add_config_flags(p, TrainConfig, title="training")
    add_config_flags(p, ModelConfig, dest_prefix="model.", title="model")
    p.add_argument("--no-grl", action="store_true", default=argparse.SUPPRESS,
                   help="baseline: no speaker-adversarial head (model.grl_layers = [])")


def read_config_file(path: str | Path) -> dict:
    """A run config file as nested values (see the module docstring)."""
    data = read_json(path, f"{path}: config file not found", "not a training config: not valid JSON")
    if not isinstance(data, dict):
        raise VeilError(f"{path}: a training config is a JSON object")
    if data.get("format") == CHECKPOINT_FORMAT:
        recorded = (data.get("provenance") or {}).get("train_config") or {}
        return {**{k: v for k, v in recorded.items() if k != "out"}, "model": data["model"]}
    return data


def given_values(args: argparse.Namespace) -> tuple[dict, bool, str | None]:
    """What the user set, file then flags merged (no defaults): ``(values, --no-grl, config file)``."""
    flags = {**given_flags(args, TrainConfig), "model": given_flags(args, ModelConfig, "model.")}
    no_grl = getattr(args, "no_grl", False)
    file = str(args.config) if "config" in vars(args) else None
    if no_grl and "grl_layers" in flags.get("model", {}):
        raise VeilError("--no-grl and --grl-layer contradict each other")
    return merge_config(read_config_file(file) if file else {}, flags), no_grl, file


def train_config(args: argparse.Namespace) -> TrainConfig:
    """The run's TrainConfig from parsed ``veil train`` arguments; a mistake is a one-line VeilError."""
    values, no_grl, file = given_values(args)
    given_grl = "grl_layers" in values.get("model", {})
    cfg = build_config(TrainConfig, values, file or "veil train")
    if no_grl:
        cfg.model.grl_layers = []
    elif not given_grl:  # the default adversary: a GRL after the split layer
        cfg.model.grl_layers = [cfg.model.split_layer]
    cfg.model.__post_init__()
    if not cfg.out:
        raise VeilError("--out RUN is required (the run directory: checkpoints and log; rerun to resume)")
    try:  # speakers are counted from the corpus later
        ModelConfig(**{**cfg.model.to_dict(), "n_speakers": max(2, cfg.model.n_speakers)}).validate()
    except ValueError as exc:
        raise VeilError(str(exc)) from None
    return cfg


class _RaisingParser(argparse.ArgumentParser):
    def error(self, message):
        raise VeilError(f"veil train arguments: {message}")


def parse_train_args(argv: list[str]) -> dict:
    """What ``veil train ARGV`` sets, file and flags merged, without defaults or checks (the GRL sweep plans
    runs with it)."""
    p = _RaisingParser(prog="veil train", add_help=False)
    add_train_arguments(p)
    return given_values(p.parse_args(argv))[0]
