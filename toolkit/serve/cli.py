"""`veil protocol vectors`: the cross-language test vectors of docs/PROTOCOL.md."""
from __future__ import annotations

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CHECKPOINT = REPO_ROOT / "models" / "anonymized.safetensors"
DEFAULT_VECTORS = REPO_ROOT / "testvectors"


def add_parser(sub) -> None:
    pr = sub.add_parser("protocol", help="the streaming protocol: cross-language test vectors")
    psub = pr.add_subparsers(dest="protocol_command", metavar="ACTION", required=True)
    v = psub.add_parser("vectors", help="write the test vectors of docs/PROTOCOL.md (frames, payloads, a real session)")
    v.add_argument("--out", default=str(DEFAULT_VECTORS))
    v.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT), help="the model whose session the vectors record")
    v.add_argument("--audio", default=None,
                   help="the PCM snippet (an audio file or raw .f32); default: the one committed in --out")
    v.set_defaults(func=run)


def run(args) -> int:
    if args.command == "protocol":
        return run_vectors(args)
    raise AssertionError(args.command)


def run_vectors(args) -> int:
    from toolkit.serve.vectors import write_vectors  # torch + the model: only for this command
    index = write_vectors(args.out, args.checkpoint, args.audio)
    files = sum(1 for f in Path(args.out).rglob("*") if f.is_file())
    print(f"wrote {args.out}/ ({files} files; {len(index['scenarios'])} scenarios, "
          f"{len(index['frames']['errors'])} malformed frames, {len(index['payload']['errors']['cases'])} "
          f"malformed payloads, sessions: {', '.join(s['codec'] for s in index['sessions'])})")
    return 0
