"""The privacy commands:

    veil privacy [--checkpoint M] [--baseline B] [--layers all|0..6|2,4] [--artifact EXPORT_DIR] ...
    veil sweep --out DIR [--layers 1..L] [--steps N] [--skip-train] ...       the GRL sweep (paper's experiment)
    veil frontier --out DIR --points d32,d32:2x256 [--init-from CKPT] ...      the bottleneck frontier
    veil attempts add PRIVACY_JSON --name N --tried T --verdict V ...          the privacy attempts log

The attackers' settings (``--attackers``, ``--seed``, ``--attacker-utts``, ``--threads``, ...) are the fields of
:class:`AttackSettings`, shared by ``privacy`` and ``sweep`` (the sweep's own defaults: ``SWEEP_DEFAULTS``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.config_flags import add_config_flags, build_config, given_flags
from toolkit.errors import VeilError
from toolkit.paths import DEFAULT_ANONYMIZED, DEFAULT_CORPUS, NORMALIZED
from toolkit.privacy import attempts, frontier, grl_sweep
from toolkit.privacy.leakage import SWEEP_DEFAULTS, AttackSettings, PrivacyRequest, attacker_threads, run_privacy
from toolkit.privacy.suite import ATTACKERS, SETS


def attack_settings(args, defaults: dict | None = None) -> AttackSettings:
    """The command's attack settings: the dataclass defaults, then the command's own ``defaults``, then the flags."""
    values = {**(defaults or {}), **given_flags(args, AttackSettings, "attack.")}
    return build_config(AttackSettings, values, "attack settings")


def attacker_catalogue() -> str:
    """Every attacker by name, with its task, knowledge, cost and what it looks at (``veil privacy --help``)."""
    lines = ["attackers (--attackers takes a set or comma-separated names; sets: "
             + "; ".join(f"{name} = {', '.join(names)}" for name, names in SETS.items() if name != "all")
             + "; all = every attacker below):", ""]
    for a in ATTACKERS.values():
        metric = "accuracy" if a.task == "closed" else "EER"
        lines.append(f"  {a.name:22s} {a.task}-set {metric}, {a.knowledge}, {a.cost}: {a.description}")
    lines += ["", "closed set: trained on 60 % of each unseen eval speaker's utterances, tested on the rest "
              "(chance 1/speakers).", "open set: trained on the attacked source's embeddings of the ASR "
              "training speakers (informed), EER over trials among the unseen eval speakers.",
              "The report's headline is the strongest attacker of each task, named; every attacker's number "
              "is kept. docs/privacy.md says what each one sees."]
    return "\n".join(lines)


def add_parser(sub) -> None:
    pv = sub.add_parser("privacy", help="speaker leakage of a model's embeddings per layer (attacker suite)",
                        epilog=attacker_catalogue(), formatter_class=argparse.RawDescriptionHelpFormatter)
    pv.add_argument("--checkpoint", default=str(DEFAULT_ANONYMIZED))
    pv.add_argument("--baseline", default=None, help="also attack this baseline (and run the ignorant attacker)")
    pv.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    pv.add_argument("--layers", default=None, metavar="LAYERS",
                    help="'all' (default), '0..6', '2,4' (0 = log-mel input, k = block k)")
    pv.add_argument("--artifact", default=None, metavar="EXPORT_DIR",
                    help="attack what the exported prefix emits, run chunk by chunk in its runtime (its split layer)")
    pv.add_argument("--backend", action="append", default=[], help="with --artifact: only this backend (repeatable)")
    pv.add_argument("--cloud-layers", default=None, metavar="LAYERS",
                    help="with --artifact: also attack the suffix's own blocks (e.g. '7..8') run on what the cloud "
                         "received, the operator's view (the export's checkpoint, sha256-checked)")
    pv.add_argument("--out", default="privacy")
    pv.add_argument("--attacker-seeds", type=int, default=1, metavar="N",
                    help="repeat the suite with N attacker seeds (seed, seed+1, ...): mean and sd per attacker and "
                         "for the strongest")
    pv.add_argument("--readme", default=None, metavar="README",
                    help="also rewrite the privacy table of this README (between <!-- veil:privacy --> markers)")
    add_config_flags(pv, AttackSettings, dest_prefix="attack.", title="attackers")
    pv.set_defaults(func=run)

    sw = sub.add_parser("sweep", help="the paper's experiment: baseline + a GRL model per layer k, WER and leakage")
    sw.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    sw.add_argument("--out", default=None, metavar="DIR", help="run directories DIR/baseline, DIR/grl-K")
    sw.add_argument("--layers", default=None, metavar="LAYERS", help="GRL locations: '1..6', '2,4', 'all' (default)")
    sw.add_argument("--steps", type=int, default=None, help="training steps per model (default: veil train's)")
    sw.add_argument("--init-from", default=None, metavar="CKPT", help="start every model from these weights")
    sw.add_argument("--parallel", type=int, default=1, metavar="P", help="train P models at a time")
    sw.add_argument("--train-arg", action="append", default=[], metavar="ARGS",
                    help="extra `veil train` arguments for every run, shell-split (repeatable), "
                         "e.g. --train-arg '--speaker-head tdnn'")
    sw.add_argument("--skip-train", action="store_true", help="evaluate existing runs only; never train")
    sw.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    sw.add_argument("--results", default=None, metavar="JSON",
                    help="results file (default benchmarks/results/privacy-sweep-<date>.json; .md beside it)")
    sw.add_argument("--render", default=None, metavar="JSON",
                    help="only rebuild the Markdown from this results JSON (the same as `veil render JSON`)")
    sw.add_argument("--readme", default=None, metavar="README",
                    help="refresh the table between <!-- privacy-sweep:start/end --> in this file")
    add_config_flags(sw, AttackSettings, dest_prefix="attack.", defaults=SWEEP_DEFAULTS,
                     title="attackers (--threads also sets the WER evaluation's torch threads)")
    sw.set_defaults(func=run)

    fr = sub.add_parser("frontier", help="an information bottleneck at the split: WER, strongest attacker and "
                                          "payload per bottleneck size (train + evaluate + chart)")
    fr.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    fr.add_argument("--out", required=True, metavar="DIR", help="run directories DIR/bn-dD[-GxK][-nS]")
    fr.add_argument("--init-from", default=str(NORMALIZED), metavar="CKPT",
                    help="the model whose frozen prefix every bottleneck follows (and whose config it keeps); "
                         "default models/normalized.safetensors, the shipped model without a bottleneck")
    fr.add_argument("--points", required=True, metavar="LIST",
                    help="comma-separated bottlenecks: dD (D dims, int8), dD:GxK (G codebooks of K codes), "
                         "dD:nS (training noise S), e.g. d32,d32:2x256,d32:1x64")
    fr.add_argument("--steps", type=int, default=2000, help="training steps per bottleneck")
    fr.add_argument("--parallel", type=int, default=1, metavar="P", help="train P bottlenecks at a time (1 thread each)")
    fr.add_argument("--train-arg", action="append", default=[], metavar="ARGS",
                    help="extra `veil train` arguments for every run, shell-split (repeatable)")
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
    fr.add_argument("--skip-train", action="store_true", help="evaluate existing runs only; never train")
    fr.add_argument("--dry-run", action="store_true", help="print the plan and the commands; run nothing")
    fr.add_argument("--results", default=None, metavar="JSON",
                    help="results file (default benchmarks/results/privacy-frontier-<date>.json; .md, .png beside)")
    fr.add_argument("--readme", default=None, metavar="README", help="also rewrite the frontier table of this README")
    fr.set_defaults(func=run)

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
                   help="the baseline's name in --baseline-privacy (default baseline; a checkpoint attacked alone: "
                        "anonymized)")
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


def run(args) -> int:
    return {"privacy": privacy, "sweep": sweep, "frontier": frontier_cmd, "attempts": attempts_log}[args.command](args)


def privacy(args) -> int:
    run_privacy(PrivacyRequest(checkpoint=Path(args.checkpoint), baseline=Path(args.baseline) if args.baseline else None,
                               corpus=Path(args.corpus), layers=args.layers, out=Path(args.out),
                               attack=attack_settings(args), attacker_seeds=args.attacker_seeds,
                               artifact=Path(args.artifact) if args.artifact else None, backends=args.backend, cloud_layers=args.cloud_layers,
                               readme=Path(args.readme) if args.readme else None))
    print(f"wrote {args.out}/privacy.json, privacy.md, privacy.png")
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
