"""`veil privacy`: its arguments (every attacker option in one place) and the command."""
from __future__ import annotations

import argparse
from pathlib import Path

from toolkit.errors import VeilError
from toolkit.privacy.ecapa import EcapaSettings
from toolkit.privacy.framewise import FrameSettings
from toolkit.privacy.suite import ATTACKERS, SETS, SuiteOptions


def _attacker_catalogue() -> str:
    lines = ["attackers (--attackers takes a set or comma-separated names; sets: "
             + "; ".join(f"{name} = {', '.join(names)}" for name, names in SETS.items() if name != "all")
             + "; all = every attacker below):", ""]
    for a in ATTACKERS.values():
        metric = "accuracy" if a.task == "closed" else "EER"
        lines.append(f"  {a.name:16s} {a.task}-set {metric}, {a.knowledge}, {a.cost}: {a.description}")
    lines += ["", "closed set: trained on 60 % of each unseen eval speaker's utterances, tested on the rest "
              "(chance 1/speakers).", "open set: trained on the attacked source's embeddings of the ASR "
              "training speakers (informed), EER over trials among the unseen eval speakers.",
              "The report's headline is the strongest attacker of each task, named; every attacker's number "
              "is kept."]
    return "\n".join(lines)


def _utts(value: str) -> int | None:
    if value == "all":
        return None
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_privacy_parser(sub) -> None:
    from toolkit.cli import DEFAULT_ANONYMIZED, DEFAULT_CORPUS  # the CLI's defaults (it is calling us)
    pv = sub.add_parser("privacy", help="speaker leakage of a model's embeddings per layer (attacker suite)",
                        epilog=_attacker_catalogue(), formatter_class=argparse.RawDescriptionHelpFormatter)
    pv.add_argument("--checkpoint", default=str(DEFAULT_ANONYMIZED))
    pv.add_argument("--baseline", default=None, help="also attack this baseline (and run the ignorant attacker)")
    pv.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    pv.add_argument("--layers", default=None, help="'all' (default) or comma-separated block indices (0 = log-mel)")
    pv.add_argument("--artifact", default=None, metavar="EXPORT_DIR",
                    help="attack what the exported prefix emits, run chunk by chunk in its runtime (its split layer)")
    pv.add_argument("--backend", action="append", default=[], help="with --artifact: only this backend (repeatable)")
    pv.add_argument("--out", default="privacy")
    pv.add_argument("--attackers", default="all", metavar="SET|NAME,...",
                    help="which attackers: 'all' (default), 'fast' (pooled statistics only, no network "
                         "training: about a minute), 'legacy' (Veil's original three), or names (see below)")
    pv.add_argument("--attacker-utts", type=_utts, default=None, metavar="N|all",
                    help="training-split utterances per training speaker for the informed attackers "
                         "(default all; the corpus has 90)")
    pv.add_argument("--xvector-utts", type=int, default=SuiteOptions.xvector_utts, metavar="N",
                    help="of those, the first N per speaker train the x-vector (default 10, as before the suite)")
    pv.add_argument("--xvector-epochs", type=int, default=SuiteOptions.xvector_epochs)
    pv.add_argument("--ecapa-steps", type=int, default=EcapaSettings.steps, metavar="N",
                    help=f"ECAPA training steps of {EcapaSettings.batch} random crops (default {EcapaSettings.steps})")
    pv.add_argument("--frame-steps", type=int, default=FrameSettings.steps, metavar="N",
                    help=f"frame-level network training steps of {FrameSettings.batch} crops "
                         f"(default {FrameSettings.steps})")
    pv.add_argument("--threads", type=int, default=None, metavar="N",
                    help="torch and BLAS threads for the attackers (results are deterministic for a seed and "
                         "a thread count; default: torch's)")
    pv.add_argument("--limit", type=int, default=0, help="use only the first N eval-speakers utterances")
    pv.add_argument("--seed", type=int, default=0)
    pv.add_argument("--attacker-seeds", type=int, default=1, metavar="N",
                    help="repeat the suite with N attacker seeds (seed, seed+1, ...): mean and sd per attacker "
                         "and for the strongest")
    pv.set_defaults(func=run_privacy_command)


def suite_options(args) -> SuiteOptions:
    for flag, value in (("--ecapa-steps", args.ecapa_steps), ("--frame-steps", args.frame_steps),
                        ("--xvector-utts", args.xvector_utts), ("--xvector-epochs", args.xvector_epochs)):
        if value < 1:
            raise VeilError(f"{flag} must be at least 1, got {value}")
    return SuiteOptions(attackers=args.attackers, xvector_epochs=args.xvector_epochs, xvector_utts=args.xvector_utts,
                        ecapa=EcapaSettings(steps=args.ecapa_steps), frame=FrameSettings(steps=args.frame_steps))


def run_privacy_command(args) -> int:
    from toolkit.privacy.evaluate import run_privacy
    report = run_privacy(Path(args.checkpoint), Path(args.baseline) if args.baseline else None, Path(args.corpus),
                         args.layers, Path(args.out), train_utts_per_speaker=args.attacker_utts, seed=args.seed,
                         eval_limit=args.limit, artifact=Path(args.artifact) if args.artifact else None,
                         backends=args.backend, attacker_seeds=args.attacker_seeds, options=suite_options(args),
                         threads=args.threads)
    print(f"wrote {args.out}/privacy.json, privacy.md, privacy.png ({report['seconds']:.0f} s)")
    return 0
