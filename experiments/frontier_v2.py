"""Frontier v2: the channel trained end to end, every point judged by the whole attacker suite on its int8
ExecuTorch artifact (3 attacker seeds), beside the first frontier (bottleneck behind frozen split-4 blocks).

A point is a folder of recorded results, made by the commands in ``docs/privacy.md`` ("Frontier v2"):

    POINT/train.cmd          the `veil train` command line that made the checkpoint
    POINT/metrics.json       `veil evaluate --split dev --split test --split eval-speakers --json`
    POINT/privacy3/*.json    `veil privacy --artifact EXPORT --backend executorch --attackers all --attacker-seeds 3`
    POINT/privacy-cloud/*.json   `veil privacy --checkpoint CKPT --layers K..L --attackers fast` (optional): the
                             operator's attack on the cloud stack's own activations
    POINT/export/manifest.json   the export (payload bytes/s and the artifact's identity)
    POINT/bench.json         `veil bench EXPORT --json` (optional): phone MACs and latency per chunk

    python -m experiments.frontier_v2 --point NAME=POINT ... --old benchmarks/results/privacy-frontier-2026-11-27.md \\
        --out benchmarks/results/privacy-frontier-v2
writes ``privacy-frontier-v2.json`` (the points), ``.md`` (the table) and ``.png`` (WER against the strongest
attacker, old frontier beside the new). Goals: EER >= 40 % (mean - 1 sd), closed set <= 20 %, test WER <= 35 %.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from experiments.evaluate import payload_bytes_per_second
from toolkit.files import write_json, write_text

GOALS = {"eer_min": 40.0, "closed_max": 20.0, "wer_max": 35.0, "wer_moonshot": 29.1, "payload_max": 2000.0}


def _one_json(folder: Path) -> dict | None:
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    return json.loads(files[0].read_text()) if files else None


def _artifact_row(report: dict) -> dict:
    (model,) = report["models"].values()
    (row,) = model["layers"].values()
    return row


def read_point(name: str, folder: Path) -> dict:
    """One point's recorded numbers (missing files give missing fields, never invented ones)."""
    point: dict = {"name": name, "folder": str(folder)}
    if (folder / "train.cmd").exists():
        point["train_command"] = (folder / "train.cmd").read_text().strip()
    if (folder / "metrics.json").exists():
        results = json.loads((folder / "metrics.json").read_text())["results"]
        point["wer"] = {split: r["wer"] for split, r in results.items()}
        point["cer"] = {split: r["cer"] for split, r in results.items()}
    report = _one_json(folder / "privacy3")
    if report:
        row = _artifact_row(report)
        best = row["spread"]["strongest"]
        point["artifact"] = report["artifact"]["attacked"][0]
        point["attacker_seeds"] = report["attacker_seeds"]
        point["closed"] = {"attacker": best["closed"]["attacker"], "mean": best["closed"]["mean"],
                           "sd": best["closed"]["sd"]}
        point["open"] = {"attacker": best["open"]["attacker"], "mean": best["open"]["mean"], "sd": best["open"]["sd"]}
        point["suite"] = {n: {"mean": a["mean"], "sd": a["sd"], "task": a["task"]}
                          for n, a in row["spread"]["attackers"].items()}
    cloud = _one_json(folder / "privacy-cloud")
    if cloud:
        (model,) = cloud["models"].values()
        point["cloud_layers"] = {k: {"closed": v["strongest"]["closed"]["accuracy"],
                                     "closed_attacker": v["strongest"]["closed"]["attacker"],
                                     "eer": v["strongest"]["open"]["eer"],
                                     "open_attacker": v["strongest"]["open"]["attacker"]}
                                 for k, v in model["layers"].items()}
    manifest = folder / "export" / "manifest.json"
    if manifest.exists():  # one payload message per 2-s chunk
        m = json.loads(manifest.read_text())
        point["channel"] = m.get("bottleneck") or {}
        out, inp = m["output"], m["input"]
        point["payload_bytes_per_second"] = round(payload_bytes_per_second(
            point["channel"].get("payload_codec", "int8"), out["embedding_dim"], 1, 0, out["frames_per_chunk"],
            inp["chunk_seconds"]))
    bench = folder / "bench.json"
    if bench.exists():  # `veil bench EXPORT --threads 1 --json`: the phone's MACs and p50 per 2-s chunk, 1 thread
        doc = json.loads(bench.read_text())
        point["bench"] = {"macs_per_chunk": doc["prefix"]["macs_per_chunk"], "command": doc["command"],
                          "p50_ms_1_thread": {a["name"]: m["p50_ms"] for a in doc["artifacts"]
                                              for m in a["measurements"] if m.get("threads") == 1 and "p50_ms" in m}}
    point["verdict"] = verdict(point)
    return point


def verdict(point: dict) -> str:
    if "open" not in point or "wer" not in point:
        return "incomplete"
    eer = point["open"]["mean"] - point["open"]["sd"]
    checks = [("EER", eer >= GOALS["eer_min"], f"{eer:.1f} % (mean - 1 sd; goal >= 40)"),
              ("closed set", point["closed"]["mean"] <= GOALS["closed_max"],
               f"{point['closed']['mean']:.1f} % (goal <= 20)"),
              ("test WER", point["wer"]["test"] <= GOALS["wer_max"], f"{point['wer']['test']:.2f} % (goal <= 35)")]
    met = [f"{n} {t}" for n, ok, t in checks if ok]
    missed = [f"{n} {t}" for n, ok, t in checks if not ok]
    return ("meets every goal: " if not missed else "misses " + "; ".join(missed) + (". Meets " if met else "")) + \
        "; ".join(met)


def read_old_frontier(md: Path) -> list[dict]:
    """(name, test WER, closed %, EER %) of the first frontier's points, from its Markdown table."""
    rows = []
    for line in md.read_text().splitlines():
        m = re.match(r"\| (bn-[^ |]+) \|[^|]*\|[^|]*\| ([0-9.]+) \| [^:]+: ([0-9.]+) \| [^:]+: ([0-9.]+) \|", line)
        if m:
            rows.append({"name": m[1], "wer": float(m[2]), "closed": float(m[3]), "eer": float(m[4])})
    return rows


def render_markdown(doc: dict) -> str:
    lines = ["# Privacy frontier v2: the channel trained end to end, judged on its int8 ExecuTorch artifact", "",
             "Every point: the whole attacker suite (`veil privacy --artifact EXPORT --backend executorch --attackers "
             "all --attacker-seeds 3`) on what the cloud receives from the int8 `.pte` (plus the phone's noise); "
             "strongest attacker of each task by its mean over 3 attacker seeds (mean ± sd); 32 unseen speakers "
             "(chance 3.1 %). WER: greedy CTC, `veil evaluate`. Goals: EER ≥ 40 % (mean − 1 sd), closed set ≤ 20 %, "
             "test WER ≤ 35 %.", "",
             "| point | test WER % | eval-speakers WER % | closed set % (attacker) | EER % (attacker) | "
             "cloud's own layers: closed % / EER % | payload B/s | phone M MACs / 2 s | verdict |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in doc["points"]:
        wer = p.get("wer", {})
        closed = f"{p['closed']['mean']:.1f} ± {p['closed']['sd']:.1f} ({p['closed']['attacker']})" if "closed" in p else "—"
        opn = f"{p['open']['mean']:.1f} ± {p['open']['sd']:.1f} ({p['open']['attacker']})" if "open" in p else "—"
        cloud = ", ".join(f"block {k}: {v['closed']:.1f} / {v['eer']:.1f}" for k, v in p.get("cloud_layers", {}).items())
        payload = p.get("payload_bytes_per_second", "—")
        macs = f"{p['bench']['macs_per_chunk'] / 1e6:.0f}" if "bench" in p else "—"
        lines.append(f"| {p['name']} | {wer.get('test', float('nan')):.2f} | {wer.get('eval-speakers', float('nan')):.2f} "
                     f"| {closed} | {opn} | {cloud or '—'} | {payload} | {macs} | {p['verdict']} |")
    lines += ["", "## The first frontier (split 4, frozen phone blocks, 2-block cloud; float model, `--attackers fast`)", "",
              "| point | test WER % | closed set % | EER % |", "|---|---|---|---|"]
    lines += [f"| {o['name']} | {o['wer']:.2f} | {o['closed']:.1f} | {o['eer']:.1f} |" for o in doc["old"]]
    lines += ["", "## Train commands", ""]
    lines += [f"- {p['name']}: `{p['train_command']}`" for p in doc["points"] if p.get("train_command")]
    return "\n".join(lines) + "\n"


def render_chart(doc: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, label, goal in ((axes[0], "closed", "strongest closed-set accuracy %", GOALS["closed_max"]),
                                 (axes[1], "eer", "strongest open-set EER %", GOALS["eer_min"])):
        old = doc["old"]
        ax.scatter([o["wer"] for o in old], [o[key] for o in old], c="0.6", label="frontier v1 (split 4, float)")
        new = [p for p in doc["points"] if "open" in p and "wer" in p]
        ys = [p["closed"]["mean"] if key == "closed" else p["open"]["mean"] for p in new]
        ax.scatter([p["wer"]["test"] for p in new], ys, c="tab:red", label="frontier v2 (int8 .pte, 3 seeds)")
        for p, y in zip(new, ys):
            ax.annotate(p["name"], (p["wer"]["test"], y), fontsize=7)
        ax.axhline(goal, ls="--", c="tab:green")
        ax.axvline(GOALS["wer_max"], ls=":", c="tab:green")
        ax.set_xlabel("test WER %")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.frontier_v2", description=__doc__.split("\n\n")[0])
    ap.add_argument("--point", action="append", required=True, metavar="NAME=FOLDER")
    ap.add_argument("--old", type=Path, required=True, help="the first frontier's Markdown")
    ap.add_argument("--out", type=Path, required=True, help="output path without suffix")
    args = ap.parse_args(argv)
    points = []
    for spec in args.point:
        name, _, folder = spec.partition("=")
        if not folder or not Path(folder).is_dir():
            print(f"frontier_v2: --point {spec}: expected NAME=FOLDER with an existing folder", file=sys.stderr)
            return 2
        points.append(read_point(name, Path(folder)))
    doc = {"format": "veil-frontier-v2/1", "goals": GOALS, "points": points, "old": read_old_frontier(args.old),
           "old_source": str(args.old)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out.with_suffix(".json"), doc)
    write_text(args.out.with_suffix(".md"), render_markdown(doc))
    render_chart(doc, args.out.with_suffix(".png"))
    print(f"wrote {args.out.with_suffix('.json')}, .md, .png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
