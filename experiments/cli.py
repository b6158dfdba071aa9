"""The research recipes' commands (the lab beside the product; ``toolkit.cli`` registers them by name):

    veil sweep --out DIR [--layers 1..L] [--steps N] [--skip-train] ...       the GRL sweep (paper's experiment)
    veil frontier --out DIR --points d32,d32:2x256 [--init-from CKPT] ...      the bottleneck frontier
    veil attempts add PRIVACY_JSON --name N --tried T --verdict V ...          the privacy attempts log
    veil render RESULT.json [--readme PAGE]                                    re-render any recorded result
    veil bench --sweep-split 1..6 --recipe R                                   the cut-point sweep (flags of bench)

``--readme docs/results.md`` writes a result's table into the results page the README links.
"""
from __future__ import annotations

from pathlib import Path

from experiments import attempts, cut_points, frontier, grl_sweep, legacy_reports
from experiments.cut_points import CUT_POINTS_FORMAT, rejoin_privacy, run_cut_point_sweep
from toolkit.bench import cli as bench_cli
from toolkit.config_flags import add_config_flags
from toolkit.errors import VeilError
from toolkit.paths import DEFAULT_CORPUS, NORMALIZED
from toolkit.privacy.cli import attack_settings
from toolkit.privacy.leakage import SWEEP_DEFAULTS, AttackSettings, attacker_threads
from toolkit.results import render as results_render

def add_readme(p) -> None:
    p.add_argument("--readme", default=None, metavar="PAGE",
                   help="also refresh the result's table in this page: docs/results.md, the page the README links")


def add_lab_run_flags(p, what: str) -> None:
    """The flags every recipe run by experiments/runner.py shares."""
    p.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    p.add_argument("--parallel", type=int, default=1, metavar="P", help=f"train P {what} at a time")
    p.add_argument("--train-arg", action="append", default=[], metavar="ARGS",
                   help="extra `veil train` arguments for every run, shell-split (repeatable), "
                        "e.g. --train-arg '--speaker-head tdnn'")
    p.add_argument("--skip-train", action="store_true", help="evaluate existing runs only; never train")
    p.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    add_readme(p)


def add_parser(sub) -> None:
    add_sweep(sub)
    add_frontier(sub)
    add_attempts(sub)
    add_render(sub)


def add_sweep(sub) -> None:
    sw = sub.add_parser("sweep", help="the paper's experiment: baseline + a GRL model per layer k, WER and leakage")
    sw.add_argument("--out", default=None, metavar="DIR", help="run directories DIR/baseline, DIR/grl-K")
    sw.add_argument("--layers", default=None, metavar="LAYERS", help="GRL locations: '1..6', '2,4', 'all' (default)")
    sw.add_argument("--steps", type=int, default=None, help="training steps per model (default: veil train's)")
    sw.add_argument("--init-from", default=None, metavar="CKPT", help="start every model from these weights")
    add_lab_run_flags(sw, "models")
    sw.add_argument("--results", default=None, metavar="JSON",
                    help="results file (default benchmarks/results/privacy-sweep-<date>.json; .md beside it)")
    sw.add_argument("--render", default=None, metavar="JSON",
                    help="only rebuild the Markdown from this results JSON (the same as `veil render JSON`)")
    add_config_flags(sw, AttackSettings, dest_prefix="attack.", defaults=SWEEP_DEFAULTS,
                     title="attackers (--threads also sets the WER evaluation's torch threads)")
    sw.set_defaults(func=run)



def add_frontier(sub) -> None:
    fr = sub.add_parser("frontier", help="an information bottleneck at the split: WER, strongest attacker and "
                                          "payload per bottleneck size (train + evaluate + chart)")
    fr.add_argument("--out", required=True, metavar="DIR", help="run directories DIR/bn-dD[-GxK][-nS]")
    fr.add_argument("--init-from", default=str(NORMALIZED), metavar="CKPT",
                    help="the model whose frozen prefix every bottleneck follows (and whose config it keeps); "
                         "default models/normalized.safetensors, the shipped model without a bottleneck")
    fr.add_argument("--points", required=True, metavar="LIST",
                    help="comma-separated bottlenecks: dD (D dims, int8), dD:GxK (G codebooks of K codes), "
                         "dD:nS (training noise S), e.g. d32,d32:2x256,d32:1x64")
    fr.add_argument("--steps", type=int, default=2000, help="training steps per bottleneck")
    add_lab_run_flags(fr, "bottlenecks (1 thread each)")
    fr.add_argument("--baseline", default=None, metavar="CKPT", help="also place this model (no adversary) on the chart")
    fr.add_argument("--attackers", default="all", help="attacker suite: 'all', 'fast' or comma-separated names")
    fr.add_argument("--attacker-seeds", type=int, default=1, metavar="N", help="repeat the seeded attackers N times")
    fr.add_argument("--attacker-utts", type=int, default=None, metavar="N",
                    help="training-speaker utterances per speaker for the informed attackers (default: all)")
    fr.add_argument("--threads", type=int, default=0,
                    help="torch and BLAS threads for the evaluation (0 = leave them as they are)")
    fr.add_argument("--reference-privacy", action="append", default=[], metavar="JSON",
                    help="a `veil privacy` report whose row for a reference (same checkpoint, split layer, attackers, "
                         "seeds and attacker data) is reused instead of attacking it again (repeatable)")
    fr.add_argument("--results", default=None, metavar="JSON",
                    help="results file (default benchmarks/results/privacy-frontier-<date>.json; .md, .png beside)")
    fr.set_defaults(func=run)



def add_attempts(sub) -> None:
    at = sub.add_parser("attempts", help="the privacy attempts log: append a result, render Markdown")
    asub = at.add_subparsers(dest="attempts_command", metavar="ACTION", required=True)
    a = asub.add_parser("add", help="append an attempt from a `veil privacy` result JSON")
    a.add_argument("privacy_json", metavar="PRIVACY_JSON")
    a.add_argument("--name", required=True)
    a.add_argument("--tried", required=True, help="what was tried, in a sentence")
    a.add_argument("--verdict", required=True)
    a.add_argument("--layer", type=int, default=None, help="layer to log (default: the model's GRL layer)")
    a.add_argument("--model", default=None, help="attacked model in the report (default: the non-baseline one)")
    a.add_argument("--metrics", default=None, help="`veil evaluate --json` file of the model (test WER)")
    a.add_argument("--baseline-metrics", default=None, help="the same for the baseline")
    a.add_argument("--baseline-privacy", default=None, metavar="PRIVACY_JSON",
                   help="baseline results from this other report (e.g. one `--baseline --layers all` run)")
    a.add_argument("--baseline-model", default="baseline", metavar="NAME",
                   help="the baseline's name in --baseline-privacy (default baseline; a checkpoint attacked alone is "
                        "named by its file, e.g. normalized; reports before 2026-12 named it anonymized)")
    a.add_argument("--train-command", default=None)
    a.add_argument("--date", default=None, help="when the attempt was made (default today, YYYY-MM-DD)")
    a.add_argument("--log", default=None, help=f"attempts log (default benchmarks/results/{attempts.ATTEMPTS_FILE})")
    a.set_defaults(func=run)
    f = asub.add_parser("add-frontier", help="append one attempt per bottleneck point of a `veil frontier` result")
    f.add_argument("frontier_json", metavar="FRONTIER_JSON")
    f.add_argument("--log", default=None, help=f"attempts log (default benchmarks/results/{attempts.ATTEMPTS_FILE})")
    f.set_defaults(func=run)
    r = asub.add_parser("render", help="rewrite the Markdown beside the attempts log (the same as `veil render LOG`)")
    r.add_argument("--log", default=None)
    r.set_defaults(func=run)



def add_render(sub) -> None:
    re = sub.add_parser("render", help="re-render a recorded result (bench, sweep, parity, privacy, evaluate, "
                                       "attempts, service load) from its JSON")
    re.add_argument("result", metavar="RESULT.json")
    add_readme(re)
    re.set_defaults(func=run)


def extend(command: str, parser) -> None:
    """The cut-point sweep's flags on ``veil bench`` (toolkit.cli.EXTENSIONS)."""
    assert command == "bench"
    parser.add_argument("--sweep-split", default=None, metavar="LAYERS",
                        help="the cut-point sweep: export and bench every split layer of LAYERS ('1..6', '2,4', 'all')")
    parser.add_argument("--recipe", default=None, help="recipe for --sweep-split (NAME or BACKEND=NAME)")
    parser.add_argument("--rejoin-privacy", default=None, metavar="SWEEP_JSON",
                        help="join `veil privacy` results recorded since into an existing sweep result and re-render it")
    parser.set_defaults(func=bench)


def bench(args) -> int:
    if args.rejoin_privacy:
        paths = rejoin_privacy(Path(args.rejoin_privacy), plots=not args.no_plots)
        print("wrote " + ", ".join(str(p) for p in paths))
        return 0
    if args.sweep_split or args.recipe:
        run_cut_point_sweep(bench_cli.request(args))
        return 0
    return bench_cli.run(args)


def run(args) -> int:
    return {"sweep": sweep, "frontier": frontier_cmd, "attempts": attempts_log, "render": render_cmd}[args.command](args)


# Results of the research record, beside the product's (toolkit/results/cli.py RESULTS).
LAB_RESULTS = {
    CUT_POINTS_FORMAT: results_render.ResultKind(cut_points.rerender),
    frontier.FRONTIER_FORMAT: results_render.ResultKind(frontier.rerender, frontier.headline_table, frontier.TABLE,
                                                     frontier.SECTION),
    **legacy_reports.RESULTS,
}


def render(path: Path, readme: Path | None = None) -> list[Path]:
    """Any recorded result, the product's and the lab's (the attempts log, the GRL sweep and the formats above)."""
    doc = results_render.read_result(path)
    if attempts.is_attempts_log(doc):
        if readme:
            raise VeilError(f"--readme: the attempts log has no table ({path})")
        return attempts.rerender(doc, path)
    if isinstance(doc, dict) and doc.get("format") == grl_sweep.SWEEP_FORMAT:
        return grl_sweep.rerender(doc, path, readme)
    legacy = legacy_reports.report_format(doc)
    if legacy:  # veil-privacy/1 carries no format field
        doc = {**doc, "format": legacy}
    return results_render.render(path, readme, {**results_render.RESULTS, **LAB_RESULTS}, doc,
                              also=f"{grl_sweep.SWEEP_FORMAT}, and the privacy attempts log")


def render_cmd(args) -> int:
    for path in render(Path(args.result), Path(args.readme) if args.readme else None):
        print(f"wrote {path}")
    return 0


def sweep(args) -> int:
    readme = Path(args.readme) if args.readme else None
    if args.render:
        path = Path(args.render)
        md = grl_sweep.rerender(grl_sweep.load_results(path), path, readme)[0]
        print(f"wrote {md}" + (f"; refreshed the table in {readme}" if readme else ""))
        return 0
    if not args.out:
        raise VeilError("--out DIR is required (or --render RESULTS.json)")
    attack = attack_settings(args, SWEEP_DEFAULTS)
    attack.suite_options()  # a bad attacker setting is an error before any training
    with attacker_threads(attack.threads):
        grl_sweep.run_sweep(grl_sweep.SweepRequest(
            corpus=Path(args.corpus), out=Path(args.out), layers=args.layers, steps=args.steps,
            init_from=Path(args.init_from) if args.init_from else None, parallel=args.parallel,
            train_args=args.train_arg, skip_train=args.skip_train, dry_run=args.dry_run,
            results=Path(args.results) if args.results else None, readme=readme, attack=attack))
    return 0


def frontier_cmd(args) -> int:
    if args.threads < 0:
        raise VeilError(f"--threads must be 0 (default) or more, got {args.threads}")
    with attacker_threads(args.threads):
        run_frontier_request(args)
    return 0


def run_frontier_request(args) -> None:
    frontier.run_frontier(frontier.FrontierRequest(
        corpus=Path(args.corpus), out=Path(args.out), init_from=Path(args.init_from),
        points=[p for p in args.points.split(",") if p.strip()], steps=args.steps, parallel=args.parallel,
        train_args=args.train_arg, baseline=Path(args.baseline) if args.baseline else None,
        skip_train=args.skip_train, dry_run=args.dry_run, attackers=args.attackers,
        attacker_seeds=args.attacker_seeds, attacker_utts=args.attacker_utts,
        results=Path(args.results) if args.results else None, readme=Path(args.readme) if args.readme else None,
        reference_privacy=[Path(p) for p in args.reference_privacy]))


def attempts_log(args) -> int:
    log = Path(args.log) if args.log else attempts.DEFAULT_LOG
    if args.attempts_command == "add":
        entry = attempts.entry_from_privacy(Path(args.privacy_json), args.name, args.tried, args.verdict, args.layer,
                                            args.model, Path(args.metrics) if args.metrics else None,
                                            Path(args.baseline_metrics) if args.baseline_metrics else None,
                                            args.train_command, args.date,
                                            Path(args.baseline_privacy) if args.baseline_privacy else None,
                                            args.baseline_model)
        entries = attempts.append_attempt(log, entry)
        print(f"appended attempt {args.name!r} to {log} ({len(entries)} entries); wrote {log.with_suffix('.md')}")
    elif args.attempts_command == "add-frontier":
        entries = attempts.read_log(log)
        logged = {e.get("name"): e for e in entries}
        for entry in attempts.entries_from_frontier(Path(args.frontier_json)):
            before = logged.get(entry["name"])
            if before is not None and (before.get("attacked") or {}).get("sha256") == entry["attacked"]["sha256"]:
                print(f"attempt {entry['name']!r}: already logged (same checkpoint), kept as it is")
                continue  # a frontier rerun with more points logs only the new ones
            entries = attempts.append_attempt(log, entry)
            print(f"appended attempt {entry['name']!r}: {entry['verdict']}")
        print(f"{log}: {len(entries)} entries; wrote {log.with_suffix('.md')}")
    else:
        (md,) = attempts.rerender(attempts.read_log(log), log)
        print(f"wrote {md}")
    return 0
