"""`veil corpus build`: synthesize the embedded default corpus (LibriSpeech layout) from installed TTS voices."""
from __future__ import annotations

from toolkit.data.corpus_build import build_corpus
from toolkit.paths import DEFAULT_CORPUS


def add_parser(sub) -> None:
    corpus = sub.add_parser("corpus", help="build the embedded synthetic corpus")
    csub = corpus.add_subparsers(dest="corpus_command", metavar="ACTION", required=True)
    b = csub.add_parser("build", help="synthesize the default multi-speaker corpus (LibriSpeech layout)")
    b.add_argument("--out", default=str(DEFAULT_CORPUS))
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--size", type=float, default=1.0, help="scales utterances per speaker (1.0 = ~12 h)")
    b.add_argument("--jobs", type=int, default=None, help="parallel synthesis processes (default: all cores)")
    b.set_defaults(func=run)


def run(args) -> int:
    m = build_corpus(args.out, seed=args.seed, size=args.size, jobs=args.jobs)
    for split, info in m["splits"].items():
        print(f"{split:14s} {info['utterances']:6d} utterances  {len(info['speakers']):4d} speakers  "
              f"{info['hours']:.2f} h")
    print(f"wrote {args.out} ({m['distinct_sentences']} distinct sentences, {len(m['speakers'])} speakers)")
    return 0
