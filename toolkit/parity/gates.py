"""Parity gates: per recipe, a minimum SNR of the artifact's embeddings against the float prefix and a
maximum WER increase of the cloud transcript. Gates are data: defaults below, overridden per recipe by
``--gate RECIPE:snr=..,dwer=..`` flags or a JSON file ``{"RECIPE": {"snr": .., "dwer": ..}}``.

A RECIPE key is a recipe name (``int8-static``), ``BACKEND/RECIPE`` (``litert/int8-static``) or ``*``.
Metrics a gate may name: ``snr`` (dB, minimum), ``dwer`` (WER_artifact − WER_float in percentage points
against the references, maximum), ``cos`` (mean per-frame cosine, minimum), ``kl`` (mean CTC posterior
KL in nats, maximum), ``wer_vs_float`` (artifact transcripts scored against float transcripts, maximum),
``stress_snr`` and ``stress_cos`` (the worst SNR and the worst mean cosine over the loud and hostile stress
chunks of ``toolkit/parity/stress.py``, minimum: a tone has no transcript, so embeddings are all they judge).
"""
from __future__ import annotations

import json
from pathlib import Path

import export as backends
from export.recipes import family_of
from toolkit.errors import VeilError

DWER_MAX = 1.0
SNR_DB_BY_PRECISION = {"fp32": 60.0, "fp16": 35.0, "int8": 15.0, "int4": 15.0}  # by a recipe's ``precision``
UNKNOWN_RECIPE_SNR_DB = 15.0
# Stress chunks (full-scale tones and noise, clipped, near-silent, DC-offset speech): a float path keeps its
# precision's accuracy anywhere in [-1, 1]; an int8 path calibrated on speech may lose SNR on them but must keep
# the embeddings' direction (a mean cosine under 0.9 is another embedding).
STRESS_SNR_DB_BY_PRECISION = {"fp32": 60.0, "fp16": 30.0, "int8": 5.0, "int4": 5.0}
STRESS_COS_BY_PRECISION = {"fp32": 0.9999, "fp16": 0.999, "int8": 0.9, "int4": 0.9}
BORDERLINE_DB = 6.0  # an artifact within this of its SNR gate gets its gap localized
METRICS = {  # gate name -> (metric key, direction, unit)
    "snr": ("snr_db", "min", "dB"), "cos": ("cosine_mean", "min", ""), "dwer": ("dwer", "max", "pp"),
    "kl": ("kl_mean", "max", "nats"), "wer_vs_float": ("wer_vs_float", "max", "%"),
    "stress_snr": ("stress_snr_db", "min", "dB"), "stress_cos": ("stress_cosine_mean", "min", ""),
}


def recipe_precisions() -> dict[str, str]:
    """``{recipe name: precision}`` over every backend's registry. A name two backends would give different
    precisions is keyed ``backend/recipe`` instead, so each keeps its own default gate."""
    by_name: dict[str, set[tuple[str, str]]] = {}
    for b in backends.BACKENDS:
        for recipe in backends.get_backend(b).RECIPES:
            by_name.setdefault(recipe.name, set()).add((b, recipe.precision))
    out = {}
    for name, found in by_name.items():
        if len({p for _, p in found}) == 1:
            out[name] = next(iter(found))[1]
        else:
            out.update({f"{b}/{name}": p for b, p in sorted(found)})
    return out


def default_gates() -> dict[str, dict[str, float]]:
    """Every registered recipe's default gate (SNR by its precision, ΔWER ≤ DWER_MAX, the stress gates by its
    precision) and ``*``."""
    gates = {r: {"snr": SNR_DB_BY_PRECISION[p], "dwer": DWER_MAX, "stress_snr": STRESS_SNR_DB_BY_PRECISION[p],
                 "stress_cos": STRESS_COS_BY_PRECISION[p]} for r, p in recipe_precisions().items()}
    gates["*"] = {"snr": UNKNOWN_RECIPE_SNR_DB, "dwer": DWER_MAX, "stress_snr": STRESS_SNR_DB_BY_PRECISION["int8"],
                  "stress_cos": STRESS_COS_BY_PRECISION["int8"]}
    return gates


def defaults_text() -> str:
    """The default gates in words, for help texts: ``snr ≥ 60 dB fp32; ≥ 35 dB fp16 (...)``."""
    by_snr: dict[float, list[str]] = {}
    for recipe, precision in recipe_precisions().items():
        by_snr.setdefault(SNR_DB_BY_PRECISION[precision], []).append(recipe)
    parts = [f"≥ {snr:g} dB {', '.join(names)}" for snr, names in sorted(by_snr.items(), reverse=True)]
    stress = "; ".join(f"{p} snr ≥ {STRESS_SNR_DB_BY_PRECISION[p]:g} dB, cos ≥ {STRESS_COS_BY_PRECISION[p]:g}"
                       for p in SNR_DB_BY_PRECISION)
    return (f"snr {'; '.join(parts)} (unknown recipes ≥ {UNKNOWN_RECIPE_SNR_DB:g} dB); dwer ≤ {DWER_MAX:g} pp for "
            f"every recipe; stress audio (worst case) {stress}")


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
    """The gate of one artifact: ``*``, then its recipe family's (``npu-qualcomm`` for ``npu-qualcomm:SM8650``),
    ``backend/family``, the recipe's, then ``backend/recipe`` entries, merged."""
    family = family_of(recipe)
    out = dict(gates.get("*", {}))
    for key in dict.fromkeys([family, f"{backend}/{family}", recipe, f"{backend}/{recipe}"]):
        out.update(gates.get(key, {}))
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
