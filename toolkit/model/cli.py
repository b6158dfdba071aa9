"""`veil publish`: copy a training checkpoint into a compact shipped one (same config, weights stored float16)."""
from __future__ import annotations

from toolkit.model.checkpoint import STORAGE_DTYPES, publish_checkpoint


def add_parser(sub) -> None:
    p = sub.add_parser("publish", help="copy a training checkpoint into a compact shipped checkpoint")
    p.add_argument("src", help="training checkpoint, e.g. RUN/best.safetensors")
    p.add_argument("dst", help="shipped checkpoint, e.g. models/NAME.safetensors")
    p.add_argument("--storage", choices=list(STORAGE_DTYPES), default="float16")
    p.set_defaults(func=run)


def run(args) -> int:
    dst = publish_checkpoint(args.src, args.dst, args.storage)
    print(f"wrote {dst} ({dst.stat().st_size / 1e6:.1f} MB, {args.storage}) and {dst.with_suffix('.json').name}")
    return 0
