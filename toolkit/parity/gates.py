"""Parity gates: per recipe, a minimum SNR of the artifact's embeddings against the float prefix and a
maximum WER increase of the cloud transcript. Gates are data: defaults below, overridden per recipe by
``--gate RECIPE:snr=..,dwer=..`` flags or a JSON file ``{"RECIPE": {"snr": .., "dwer": ..}}``.

A RECIPE key is a recipe name (``int8-static``), ``BACKEND/RECIPE`` (``litert/int8-static``) or ``*``.
Metrics a gate may name: ``snr`` (dB, minimum), ``dwer`` (WER_artifact − WER_float in percentage points
against the references, maximum), ``cos`` (mean per-frame cosine, minimum), ``kl`` (mean CTC posterior
KL in nats, maximum), ``wer_vs_float`` (artifact transcripts scored against float transcripts, maximum).
"""
from __future__ import annotations

import json
from pathlib import Path

from toolkit.errors import VeilError

DWER_MAX = 1.0
DEFAULT_SNR_DB = {"fp32": 60.0, "fp16": 35.0, "int8-dynamic": 15.0, "int8-static": 15.0, "8da4w": 15.0,
                  "int8-weights": 15.0, "palettized-4bit": 15.0}
UNKNOWN_RECIPE_SNR_DB = 15.0
BORDERLINE_DB = 6.0  # an artifact within this of its SNR gate gets its gap localized
METRICS = {  # gate name -> (metric key, direction, unit)
    "snr": ("snr_db", "min", "dB"), "cos": ("cosine_mean", "min", ""), "dwer": ("dwer", "max", "pp"),
    "kl": ("kl_mean", "max", "nats"), "wer_vs_float": ("wer_vs_float", "max", "%"),
}


def default_gates() -> dict[str, dict[str, float]]:
    gates = {r: {"snr": snr, "dwer": DWER_MAX} for r, snr in DEFAULT_SNR_DB.items()}
    gates["*"] = {"snr": UNKNOWN_RECIPE_SNR_DB, "dwer": DWER_MAX}
    return gates


def _parse_values(text: str, where: str) -> dict[str, float]:
    values = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or name not in METRICS:
            raise VeilError(f"{where}: expected METRIC=VALUE with METRIC one of {', '.join(METRICS)}, got '{item}'")
        try:
            values[name] = float(value)
        except ValueError:
            raise VeilError(f"{where}: '{value}' is not a number") from None
    return values


def parse_gate_args(args: list[str], gates_file: str | None = None) -> dict[str, dict[str, float]]:
    """Defaults, then the JSON file, then ``--gate`` flags (later wins, metric by metric)."""
    gates = default_gates()
    if gates_file:
        try:
            data = json.loads(Path(gates_file).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise VeilError(f"{gates_file}: cannot read gates file ({exc})") from None
        if not isinstance(data, dict):
            raise VeilError(f"{gates_file}: expected an object {{recipe: {{metric: value}}}}")
        for recipe, values in data.items():
            if not isinstance(values, dict):
                raise VeilError(f"{gates_file}: gates of '{recipe}' must be an object")
            text = ",".join(f"{k}={v}" for k, v in values.items())
            gates.setdefault(recipe, {}).update(_parse_values(text, f"{gates_file} [{recipe}]"))
    for arg in args:
        recipe, sep, text = arg.partition(":")
        if not sep or not recipe:
            raise VeilError(f"--gate {arg}: expected RECIPE:METRIC=VALUE[,METRIC=VALUE] "
                            f"(e.g. int8-static:snr=20,dwer=0.5)")
        gates.setdefault(recipe, {}).update(_parse_values(text, f"--gate {arg}"))
    return gates


def gate_for(gates: dict, backend: str, recipe: str) -> dict[str, float]:
    """The gate of one artifact: ``*``, then the recipe's, then ``backend/recipe`` entries, merged."""
    out = dict(gates.get("*", {}))
    out.update(gates.get(recipe, {}))
    out.update(gates.get(f"{backend}/{recipe}", {}))
    return out


def check(gate: dict[str, float], metrics: dict) -> list[dict]:
    """Failures: one dict per gate metric the artifact misses (a missing or NaN value fails too)."""
    failures = []
    for name, limit in sorted(gate.items()):
        key, direction, unit = METRICS[name]
        value = metrics.get(key)
        ok = value is not None and value == value and (value >= limit if direction == "min" else value <= limit)
        if not ok:
            failures.append({"metric": name, "value": value, "gate": limit, "direction": direction, "unit": unit})
    return failures


def describe_failure(f: dict) -> str:
    op = "<" if f["direction"] == "min" else ">"
    value = "missing" if f["value"] is None else f"{f['value']:.3f}"
    return f"{f['metric']} {value}{(' ' + f['unit']) if f['unit'] else ''} {op} gate {f['gate']:g}"
