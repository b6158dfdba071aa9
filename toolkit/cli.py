"""The `veil` command line. Each sub-command is a thin recipe over toolkit components.

User mistakes (bad files, flags, configs) raise VeilError and are printed as one line with exit code 2.
"""
from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from toolkit.errors import VeilError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CORPUS = REPO_ROOT / "data" / "corpus"
MODELS_DIR = REPO_ROOT / "models"
DEFAULT_BASELINE = MODELS_DIR / "baseline.safetensors"
DEFAULT_ANONYMIZED = MODELS_DIR / "anonymized.safetensors"


def _cmd_corpus_build(args) -> int:
    from toolkit.data.corpus_build import build_corpus
    m = build_corpus(args.out, seed=args.seed, size=args.size, jobs=args.jobs)
    for split, info in m["splits"].items():
        print(f"{split:14s} {info['utterances']:6d} utterances  {len(info['speakers']):4d} speakers  "
              f"{info['hours']:.2f} h")
    print(f"wrote {args.out} ({m['distinct_sentences']} distinct sentences, {len(m['speakers'])} speakers)")
    return 0


def _cmd_train(args) -> int:
    from toolkit.model.asr import ModelConfig
    from toolkit.training.loop import TrainConfig, train
    if args.no_grl and args.grl_layer:
        raise VeilError("--no-grl and --grl-layer contradict each other")
    mcfg = ModelConfig(n_blocks=args.blocks, d_model=args.d_model, split_layer=args.split_layer,
                       chunk_samples=args.chunk_samples, grl_layers=[] if args.no_grl else (args.grl_layer or [args.split_layer]),
                       grl_lambda_max=args.lambda_max, n_heads=args.heads,
                       subsampling_channels=args.subsampling_channels, speaker_head=args.speaker_head,
                       split_norm=args.split_norm)
    try:
        ModelConfig(**{**mcfg.to_dict(), "n_speakers": 2}).validate()  # speakers are counted from the corpus later
    except ValueError as exc:
        raise VeilError(str(exc)) from None
    cfg = TrainConfig(corpus=args.corpus, out=args.out, steps=args.steps, lr=args.lr, eval_every=args.eval_every,
                      max_batch_seconds=args.batch_seconds, seed=args.seed, time_limit_min=args.time_limit,
                      init_from=args.init_from or "", dev_utts=args.dev_utts, warmup=args.warmup,
                      threads=args.threads, model=mcfg, max_batch_utts=args.batch_utts,
                      time_budget_min=args.time_budget, load_workers=args.load_workers,
                      speaker_weight=args.speaker_weight, head_reset_every=args.head_reset)
    res = train(cfg, command="veil " + shlex.join(sys.argv[1:]))
    if res:
        print(json.dumps(res))
    return 0


def _cmd_transcribe(args) -> int:
    import torch
    from toolkit.audio import load_audio
    from toolkit.decoding.ctc import greedy_decode
    from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
    model, config = load_checkpoint(args.checkpoint)
    tok = tokenizer_from(config)
    for path in args.files:
        pcm = torch.from_numpy(load_audio(path, min_samples=model.cfg.frontend.win_length))
        with torch.no_grad():
            out = model(pcm[None], torch.tensor([pcm.shape[0]]))
        print(f"{path}\t{greedy_decode(out['log_probs'], out['frame_lengths'], tok)[0]}")
    return 0


def _cmd_evaluate(args) -> int:
    from toolkit.data.dataset import AudioSet
    from toolkit.data.librispeech import read_librispeech
    from toolkit.decoding.evaluate import evaluate_set
    from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
    model, config = load_checkpoint(args.checkpoint)
    tok = tokenizer_from(config)
    results = {}
    for split in args.split:
        utts = read_librispeech(Path(args.corpus) / split)
        if args.limit:
            utts = utts[: args.limit]
        r = evaluate_set(model, tok, AudioSet.load(utts, f"loading {split}"))
        results[split] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
        print(f"{split:14s} CER {r['cer']:6.2f} %   WER {r['wer']:6.2f} %   ({r['utterances']} utterances)")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": str(args.checkpoint), "results": results}, indent=1))
    return 0


def _cmd_publish(args) -> int:
    from toolkit.model.checkpoint import publish_checkpoint
    dst = publish_checkpoint(args.src, args.dst, args.storage)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB, {args.storage}) and {dst.with_suffix('.json').name}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="veil", description="Private split speech recognition toolkit.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    corpus = sub.add_parser("corpus", help="build the embedded synthetic corpus")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    b = csub.add_parser("build", help="synthesize the default multi-speaker corpus (LibriSpeech layout)")
    b.add_argument("--out", default=str(DEFAULT_CORPUS))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--size", type=float, default=1.0, help="scales utterances per speaker (1.0 = ~12 h)")
    b.add_argument("--jobs", type=int, default=None, help="parallel synthesis processes (default: all cores)")
    b.set_defaults(func=_cmd_corpus_build)

    t = sub.add_parser("train", help="train a conformer-CTC model, optionally speaker-adversarial")
    t.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    t.add_argument("--out", required=True, help="run directory (checkpoints, log); rerun to resume")
    t.add_argument("--grl-layer", type=int, action="append", help="attach GRL + speaker head after block K (repeatable)")
    t.add_argument("--no-grl", action="store_true", help="baseline: no speaker-adversarial head")
    t.add_argument("--lambda-max", type=float, default=1.0)
    t.add_argument("--speaker-head", choices=["mlp", "tdnn"], default="mlp",
                   help="adversary behind the GRL: pooled-stats MLP, or an x-vector-style TDNN")
    t.add_argument("--speaker-weight", type=float, default=1.0, help="weight of each speaker loss")
    t.add_argument("--head-reset", type=int, default=0, metavar="N",
                   help="re-initialize the speaker heads every N steps, so the encoder keeps facing fresh adversaries")
    t.add_argument("--split-norm", choices=["none", "chunk"], default="none",
                   help="'chunk': instance-normalize the prefix output per chunk (removes global timbre stats)")
    t.add_argument("--split-layer", type=int, default=3, help="blocks 1..K run chunked on the phone")
    t.add_argument("--blocks", type=int, default=6)
    t.add_argument("--d-model", type=int, default=144)
    t.add_argument("--heads", type=int, default=4)
    t.add_argument("--subsampling-channels", type=int, default=64)
    t.add_argument("--chunk-samples", type=int, default=32000)
    t.add_argument("--steps", type=int, default=20000)
    t.add_argument("--warmup", type=int, default=800)
    t.add_argument("--lr", type=float, default=1.5e-3)
    t.add_argument("--batch-seconds", type=float, default=60.0, help="audio seconds per batch (padded)")
    t.add_argument("--batch-utts", type=int, default=64, help="at most this many utterances per batch")
    t.add_argument("--time-budget", type=float, default=0.0,
                   help="minutes: measure the step rate, then fit --steps (and the LR schedule) to this budget")
    t.add_argument("--load-workers", type=int, default=1, help="processes decoding the corpus")
    t.add_argument("--eval-every", type=int, default=500)
    t.add_argument("--dev-utts", type=int, default=256)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--time-limit", type=float, default=0.0, help="minutes; checkpoint and stop after this")
    t.add_argument("--threads", type=int, default=0, help="CPU threads per process (0 = all cores)")
    t.add_argument("--init-from", help="initialize encoder and CTC head from this checkpoint")
    t.set_defaults(func=_cmd_train)

    tr = sub.add_parser("transcribe", help="transcribe audio files with the full model")
    tr.add_argument("files", nargs="+")
    tr.add_argument("--checkpoint", default=str(DEFAULT_ANONYMIZED))
    tr.set_defaults(func=_cmd_transcribe)

    ev = sub.add_parser("evaluate", help="CER/WER of a checkpoint on corpus splits")
    ev.add_argument("--checkpoint", default=str(DEFAULT_ANONYMIZED))
    ev.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ev.add_argument("--split", action="append", default=None)
    ev.add_argument("--limit", type=int, default=0)
    ev.add_argument("--json")
    ev.set_defaults(func=_cmd_evaluate)

    pb = sub.add_parser("publish", help="copy a training checkpoint into a compact shipped checkpoint")
    pb.add_argument("src")
    pb.add_argument("dst")
    pb.add_argument("--storage", choices=["float16", "float32"], default="float16")
    pb.set_defaults(func=_cmd_publish)

    from toolkit.privacy.cli import add_privacy_parser
    add_privacy_parser(sub)

    from toolkit.exporting.cli import add_export_parser
    add_export_parser(sub)
    from toolkit.parity.cli import add_parity_parser
    add_parity_parser(sub)
    from toolkit.bench.cli import add_bench_parser
    add_bench_parser(sub)
    from toolkit.privacy.sweep import add_sweep_parser
    add_sweep_parser(sub)
    from toolkit.privacy.attempts import add_attempts_parser
    add_attempts_parser(sub)
    return p


def run_guarded(prog: str, func, args) -> int:
    """Run a command; a VeilError becomes one line on stderr and exit 2 (no traceback)."""
    try:
        return func(args)
    except VeilError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "split", "x") is None:
        args.split = ["test", "eval-speakers"]
    return run_guarded(f"veil {args.command}", args.func, args)


if __name__ == "__main__":
    sys.exit(main())
