"""The attempts log: every try at closing the privacy gap, failed ones included (issue 6).

``benchmarks/results/privacy-attempts.json`` is an append-only list of entries
``{name, date, tried, train_command, layer, probe: {...}, eer: {...}, wer: {...}, verdict, source}``, built
from a `veil privacy` result JSON (semi-informed attackers at one layer, model vs baseline) and optional
`veil evaluate --json` metrics files. Rendered as a Markdown section (``privacy-attempts.md``).

    veil attempts add PRIVACY_JSON --name NAME --tried TEXT --verdict TEXT [--layer K] [--date D]
                      [--metrics M.json] [--baseline-metrics B.json] [--train-command CMD] [--log PATH]
    veil attempts add-frontier FRONTIER_JSON [--log PATH]      one entry per bottleneck point
    veil attempts render [--log PATH]
"""
from __future__ import annotations

import datetime
from pathlib import Path

from toolkit.console import number
from toolkit.errors import VeilError, read_json
from toolkit.files import write_json, write_text
from toolkit.paths import RESULTS_DIR

ATTEMPTS_FILE = "privacy-attempts.json"
DEFAULT_LOG = RESULTS_DIR / ATTEMPTS_FILE


def _read_json(path: Path, what: str) -> dict | list:
    return read_json(path, f"{path}: {what} not found")


def _test_wer(metrics: dict | None) -> float | None:
    return ((metrics or {}).get("results") or {}).get("test", {}).get("wer")


def entry_from_privacy(privacy_json: Path, name: str, tried: str, verdict: str, layer: int | None = None,
                       model: str | None = None, metrics: Path | None = None, baseline_metrics: Path | None = None,
                       train_command: str | None = None, date: str | None = None,
                       baseline_privacy: Path | None = None, baseline_model: str = "baseline") -> dict:
    """One attempts-log entry from a `veil privacy` report (and optional `veil evaluate --json` files).
    ``baseline_privacy``: take the baseline's attack results at that layer from another report (one run of
    `--baseline --layers all` serves every attempt) when the report has no baseline of its own; ``baseline_model``
    is the baseline's name in that report (a checkpoint attacked alone is named by its file's stem; before
    2026-12 it was ``anonymized``)."""
    report = _read_json(privacy_json, "privacy result")
    try:
        models = report["models"]
        attacked = model or next(n for n in models if n != "baseline")
        layers = models[attacked]["layers"]
        k = str(layer if layer is not None else (models[attacked].get("grl_layers") or [None])[0] or
                max(layers, key=int))
        row = layers[k]
        base = models.get("baseline", {}).get("layers", {}).get(k)
        chance = _get(row, "closed_lr", "chance") or (100.0 / report["eval_speakers"] if report.get("eval_speakers")
                                                       else None)
    except (KeyError, StopIteration, TypeError) as exc:
        raise VeilError(f"{privacy_json}: not a privacy result with that model/layer ({exc})") from None
    base_source = str(privacy_json) if base else None
    if base is None and baseline_privacy:
        other = _read_json(baseline_privacy, "baseline privacy result")
        base = other.get("models", {}).get(baseline_model, {}).get("layers", {}).get(k)
        if base is None:
            raise VeilError(f"{baseline_privacy}: no result of model {baseline_model!r} at layer {k}")
        if (other.get("eval_utterances"), other.get("seed")) != (report.get("eval_utterances"), report.get("seed")):
            raise VeilError(f"{baseline_privacy}: attacked with other settings (eval utterances, seed) than "
                            f"{privacy_json}")
        base_source = str(baseline_privacy)
    m = _read_json(metrics, "metrics") if metrics else None
    bm = _read_json(baseline_metrics, "baseline metrics") if baseline_metrics else None
    src = models[attacked]
    return {
        "name": name, "date": date or datetime.date.today().isoformat(), "tried": tried,
        "train_command": train_command, "layer": int(k),
        "attacked": {"model": attacked,
                     "checkpoint": src.get("path") if src.get("kind") == "artifact" else src.get("checkpoint"),
                     "sha256": src.get("sha256"), "kind": src.get("kind", "checkpoint"),
                     **({"backend": src["backend"], "recipe": src["recipe"]} if src.get("kind") == "artifact" else {})},
        "probe": {"attacker": "semi-informed pooled mean+std", "lr": _get(row, "closed_lr", "accuracy"),
                  "mlp": _get(row, "closed_mlp", "accuracy"), "chance": chance,
                  "baseline_lr": _get(base, "closed_lr", "accuracy"),
                  "baseline_mlp": _get(base, "closed_mlp", "accuracy")},
        "eer": {"attacker": "x-vector", "model": _get(row, "open_xvector", "eer"),
                "baseline": _get(base, "open_xvector", "eer")},
        "strongest": _strongest(row, base, report.get("attacker_seeds", 1)),
        "wer": {"split": "test", "model": _test_wer(m), "baseline": _test_wer(bm)},
        "verdict": verdict, "source": str(privacy_json), "baseline_source": base_source,
    }


# Issue 17's goals, on the strongest attacker of the suite: open-set EER >= 40 % (mean - 1 sd over attacker
# seeds), closed-set accuracy <= 20 %, test WER at most 1 pp above the baseline's, payload <= 2 kB/s of audio.
GOALS = {"eer_min": 40.0, "closed_max": 20.0, "wer_over_baseline_max": 1.0, "payload_max_bytes_per_second": 2000.0}


def frontier_verdict(point: dict, baseline_wer: float | None) -> str:
    """Which of the privacy goals a frontier point meets, each with its number."""
    h, wer, bps = point["headline"], point["test"]["wer"], point["payload"]["bytes_per_second"]
    eer = h["eer"] - (h.get("eer_sd") or 0.0)
    checks = [(f"EER {eer:.1f} % (goal >= {GOALS['eer_min']:.0f})", eer >= GOALS["eer_min"]),
              (f"closed {h['closed_accuracy']:.1f} % (goal <= {GOALS['closed_max']:.0f})",
               h["closed_accuracy"] <= GOALS["closed_max"])]
    if baseline_wer is not None:
        checks.append((f"WER +{wer - baseline_wer:.2f} pp (goal <= +{GOALS['wer_over_baseline_max']:.0f})",
                       wer - baseline_wer <= GOALS["wer_over_baseline_max"]))
    checks.append((f"{bps:.0f} B/s (goal <= {GOALS['payload_max_bytes_per_second']:.0f})",
                   bps <= GOALS["payload_max_bytes_per_second"]))
    met = [c for c, ok in checks if ok]
    missed = [c for c, ok in checks if not ok]
    return ("meets every goal: " if not missed else "misses " + "; ".join(missed) + (". Meets " if met else "")) + \
        "; ".join(met)


def entries_from_frontier(frontier_json: Path, date: str | None = None) -> list[dict]:
    """One attempts-log entry per bottleneck point of a `veil frontier` report, against its baseline reference
    (the same attackers), with the point's train command and a verdict against the goals."""
    report = _read_json(frontier_json, "frontier result")
    try:
        models = report["models"]
        base = next((m for m in models if m["name"] == "baseline"), None)
        points = [m for m in models if m["role"] == "point"]
    except (KeyError, TypeError) as exc:
        raise VeilError(f"{frontier_json}: not a frontier result ({exc})") from None
    base_row = base["privacy"] if base else None
    seeds = report["attack"]["seeds"]
    chance = 100.0 / report["attack"]["eval_speakers"] if report["attack"].get("eval_speakers") else None
    out = []
    for m in points:
        row, p = m["privacy"], m["payload"]
        codec = f"vq {p['groups']}x{p['codes']}" if p["codec"] == "vq" else f"int8 x {p['dim']}"
        out.append({
            "name": f"frontier-{m['name']}", "date": date or report["date"],
            "tried": f"information bottleneck at the split: {p['dim']} dims, {codec} ({p['bytes_per_second']:.0f} "
                     f"B/s), trained behind the frozen phone blocks of {Path(report['init_from']).name}; attacked "
                     f"on what the cloud receives (`veil frontier`, attackers {report['attack']['suite']['attackers']})",
            "train_command": m.get("train_command"), "layer": m["layer"],
            "attacked": {"model": m["name"], "checkpoint": m["checkpoint"], "sha256": m["sha256"], "kind": "checkpoint"},
            "probe": {"attacker": "semi-informed pooled mean+std", "lr": _get(row, "closed_lr", "accuracy"),
                      "mlp": _get(row, "closed_mlp", "accuracy"), "chance": chance,
                      "baseline_lr": _get(base_row, "closed_lr", "accuracy"),
                      "baseline_mlp": _get(base_row, "closed_mlp", "accuracy")},
            "eer": {"attacker": "x-vector", "model": _get(row, "open_xvector", "eer"),
                    "baseline": _get(base_row, "open_xvector", "eer")},
            "strongest": _strongest(row, base_row, seeds),
            "wer": {"split": "test", "model": m["test"]["wer"], "baseline": base["test"]["wer"] if base else None},
            "verdict": frontier_verdict(m, base["test"]["wer"] if base else None),
            "source": str(frontier_json), "baseline_source": str(frontier_json) if base else None})
    return out


def _get(row: dict | None, key: str, value: str):
    return ((row or {}).get(key) or {}).get(value)


def _strongest(row: dict, base: dict | None, seeds: int) -> dict | None:
    """The strongest attacker of each task (named), beside the baseline's strongest; over attacker seeds the
    best mean and the per-seed best. None for a report made before the attacker suite."""
    if "strongest" not in row:
        return None
    out = {"attacker_seeds": seeds}
    for task, key in (("closed", "accuracy"), ("open", "eer")):
        mine = row["strongest"].get(task)
        if not mine:
            continue
        theirs = ((base or {}).get("strongest") or {}).get(task)
        entry = {"attacker": mine["attacker"], "model": mine[key],
                 "baseline_attacker": theirs["attacker"] if theirs else None,
                 "baseline": theirs[key] if theirs else None}
        sp = ((row.get("spread") or {}).get("strongest") or {}).get(task)
        if sp:
            entry.update(mean_attacker=sp["attacker"], mean=sp["mean"], sd=sp["sd"],
                         per_seed_best_mean=sp["per_seed_best"]["mean"], per_seed_best_sd=sp["per_seed_best"]["sd"],
                         per_seed_best_attackers=sp["per_seed_best"]["attackers"])
        out[task] = entry
    return out


def read_log(path: Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    entries = _read_json(path, "attempts log")
    if not isinstance(entries, list):
        raise VeilError(f"{path}: an attempts log is a JSON list")
    return entries


def append_attempt(path: Path, entry: dict) -> list[dict]:
    """Append ``entry`` (never rewriting earlier ones) and re-render the Markdown beside the log."""
    entries = read_log(path)
    if any(e.get("name") == entry["name"] for e in entries):
        raise VeilError(f"{path}: an attempt named {entry['name']!r} is already logged (names are unique)")
    entries.append(entry)
    write_json(path, entries)
    write_text(Path(path).with_suffix(".md"), render_attempts(entries))
    return entries


def _v(x, fmt="{:.1f}") -> str:
    return number(x, fmt)


def _strongest_cell(entry: dict, task: str) -> str:
    s = (entry.get("strongest") or {}).get(task)
    if not s:
        return "—"
    value = (f"{s['mean']:.1f} ± {s['sd']:.1f} ({s['mean_attacker']})" if "mean" in s
             else f"{s['model']:.1f} ({s['attacker']})")
    if s.get("baseline") is not None:
        value += f"; baseline {s['baseline']:.1f} ({s['baseline_attacker']})"
    return value


def render_attempts(entries: list[dict]) -> str:
    """A Markdown section: one row per attempt, and each train command below the table."""
    lines = ["## Privacy attempts", "",
             "Every try at anonymizing the split-layer embeddings, failed ones included. Probe: semi-informed "
             "pooled LR / MLP on the unseen eval speakers (baseline in parentheses); EER: x-vector "
             "(baseline in parentheses); strongest: the best attacker of Veil's attacker suite for each task, "
             "named (attempts logged before the suite existed have none; over several attacker seeds: mean ± "
             "sd of the attacker with the best mean); WER: test split.", "",
             "| attempt | date | what was tried | layer | probe LR % | probe MLP % | chance % | EER % | "
             "strongest closed set % | strongest EER % | WER % | verdict |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for e in entries:
        p, r, w = e["probe"], e["eer"], e["wer"]
        lines.append(f"| {e['name']} | {e['date']} | {e['tried']} | {e['layer']} | {_v(p['lr'])} ({_v(p['baseline_lr'])}) | "
                     f"{_v(p['mlp'])} ({_v(p['baseline_mlp'])}) | {_v(p['chance'])} | {_v(r['model'])} ({_v(r['baseline'])}) | "
                     f"{_strongest_cell(e, 'closed')} | {_strongest_cell(e, 'open')} | "
                     f"{_v(w['model'], '{:.2f}')} ({_v(w['baseline'], '{:.2f}')}) | {e['verdict']} |")
    lines += ["", "Train commands:", ""]
    lines += [f"- {e['name']}: `{e['train_command'] or 'not recorded'}`" for e in entries]
    return "\n".join(lines) + "\n"


def is_attempts_log(doc) -> bool:
    """An attempts log is a JSON list of entries (it has no ``format`` field: it is append-only)."""
    return isinstance(doc, list) and all(isinstance(e, dict) and {"name", "probe", "eer"} <= set(e) for e in doc)


def rerender(entries: list[dict], json_path: Path) -> list[Path]:
    """Rewrite the Markdown beside an attempts log (``entries``, its content)."""
    md = Path(json_path).with_suffix(".md")
    write_text(md, render_attempts(entries))
    return [md]
