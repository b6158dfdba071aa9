"""`veil privacy`: speaker leakage of a model's embeddings per layer.

    veil privacy [--checkpoint M] [--baseline B] [--layers all|0..6|2,4] [--artifact EXPORT_DIR] ...

The attackers' settings (``--attackers``, ``--seed``, ``--attacker-utts``, ``--threads``, ...) are the fields of
:class:`AttackSettings`, shared with ``veil sweep`` (experiments/cli.py; its own defaults: ``SWEEP_DEFAULTS``).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.config_flags import add_config_flags, build_config, given_flags
from toolkit.paths import DEFAULT_MODEL, DEFAULT_CORPUS
from toolkit.privacy.leakage import AttackSettings, PrivacyRequest, run_privacy
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
    pv.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
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
    pv.add_argument("--adapter", default=None, help="attack another encoder's layers through its adapter "
                                                    "(docs/ADAPTERS.md), with --config and --weights")
    pv.add_argument("--config", default=None, help="with --adapter: a preset ('tiny') or the model's config.json")
    pv.add_argument("--weights", default=None, help="with --adapter or --model: the weights file")
    pv.add_argument("--model", default=None, metavar="MODULE:FUNCTION", help="any nn.Module (docs/ADAPTERS.md)")
    pv.add_argument("--out", default="privacy")
    pv.add_argument("--attacker-seeds", type=int, default=1, metavar="N",
                    help="repeat the suite with N attacker seeds (seed, seed+1, ...): mean and sd per attacker and "
                         "for the strongest")
    pv.add_argument("--readme", default=None, metavar="PAGE",
                    help="also rewrite the privacy table of this page (docs/results.md, between <!-- veil:privacy "
                         "--> markers)")
    add_config_flags(pv, AttackSettings, dest_prefix="attack.", title="attackers")
    pv.set_defaults(func=run)


def run(args) -> int:
    return privacy(args)


def privacy(args) -> int:
    run_privacy(PrivacyRequest(checkpoint=Path(args.checkpoint), baseline=Path(args.baseline) if args.baseline else None,
                               corpus=Path(args.corpus), layers=args.layers, out=Path(args.out),
                               attack=attack_settings(args), attacker_seeds=args.attacker_seeds,
                               artifact=Path(args.artifact) if args.artifact else None, backends=args.backend, cloud_layers=args.cloud_layers,
                               readme=Path(args.readme) if args.readme else None,
                               adapter=({"adapter": args.adapter, "config": args.config, "weights": args.weights,
                                         "model": args.model} if args.adapter or args.model else None)))
    print(f"wrote {args.out}/privacy.json, privacy.md, privacy.png")
    return 0
