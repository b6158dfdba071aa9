"""`veil transcribe` (text from audio files) and `veil evaluate` (CER/WER of a checkpoint on corpus splits),
both with the whole float model."""
from __future__ import annotations

import shlex
import sys
from pathlib import Path

import torch

from toolkit.audio import load_audio
from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.ctc import greedy_decode
from toolkit.decoding.evaluate import EVAL_FORMAT, evaluate_set, headline
from toolkit.files import write_json
from toolkit.headlines import refresh
from toolkit.model.bottleneck import replay_noise
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
from toolkit.paths import DEFAULT_MODEL, DEFAULT_CORPUS, display_path

DEFAULT_SPLITS = ("test", "eval-speakers")


def add_parser(sub) -> None:
    tr = sub.add_parser("transcribe", help="transcribe audio files with the full model")
    tr.add_argument("files", nargs="+")
    tr.add_argument("--checkpoint", action="append", default=None,
                    help="model checkpoint (default: the default model); repeat it to see models side by side, one "
                         "line per model and file")
    tr.set_defaults(func=run)

    ev = sub.add_parser("evaluate", help="CER/WER of a checkpoint on corpus splits")
    ev.add_argument("--checkpoint", default=str(DEFAULT_MODEL))
    ev.add_argument("--corpus", default=str(DEFAULT_CORPUS))
    ev.add_argument("--split", action="append", default=None,
                    help=f"corpus split (repeatable; default {' and '.join(DEFAULT_SPLITS)})")
    ev.add_argument("--limit", type=int, default=0, help="only the first N utterances of each split")
    ev.add_argument("--json", help="also write the results to this JSON file")
    ev.add_argument("--readme", default=None, metavar="PAGE",
                    help="also rewrite the accuracy table of this page (docs/results.md, <!-- veil:accuracy --> markers)")
    ev.set_defaults(func=run)


def run(args) -> int:
    return transcribe(args) if args.command == "transcribe" else evaluate(args)


def transcribe(args) -> int:
    checkpoints = args.checkpoint or [str(DEFAULT_MODEL)]  # `append` with a default would add to it
    models = [load_checkpoint(c) for c in checkpoints]
    width = max(len(Path(c).stem) for c in checkpoints)
    for path in args.files:
        pcm = torch.from_numpy(load_audio(path, min_samples=max(m.cfg.frontend.win_length for m, _ in models)))
        for checkpoint, (model, config) in zip(checkpoints, models):
            noise = replay_noise()  # a noisy bottleneck's channel: the same text on every run
            with torch.no_grad():
                out = model(pcm[None], torch.tensor([pcm.shape[0]]), generator=noise)
            text = greedy_decode(out["log_probs"], out["frame_lengths"], tokenizer_from(config))[0]
            print(f"{path}\t{Path(checkpoint).stem:{width}s}\t{text}" if len(models) > 1 else f"{path}\t{text}")
    return 0


def evaluate(args) -> int:
    model, config = load_checkpoint(args.checkpoint)
    tok = tokenizer_from(config)
    results = {}
    for split in args.split or DEFAULT_SPLITS:  # `append` with a list default would add to the default
        utts = read_librispeech(Path(args.corpus) / split)
        if args.limit:
            utts = utts[: args.limit]
        r = evaluate_set(model, tok, AudioSet.load(utts, f"loading {split}"))
        results[split] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items()}
        print(f"{split:14s} CER {r['cer']:6.2f} %   WER {r['wer']:6.2f} %   ({r['utterances']} utterances)")
    doc = {"format": EVAL_FORMAT, "command": "veil " + shlex.join(sys.argv[1:]), "checkpoint": str(args.checkpoint),
           "results": results}
    if args.json:
        write_json(args.json, doc)
    if args.readme:
        print(f"wrote the accuracy table of {refresh(args.readme, 'accuracy', headline(doc, display_path(args.json) if args.json else None), 'Accuracy')}")
    return 0
