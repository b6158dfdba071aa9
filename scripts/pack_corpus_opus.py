"""Pack corpus splits as Ogg/Opus tarballs, for training on a remote accelerator with a small upload limit.

    python scripts/pack_corpus_opus.py data/corpus OUT_DIR --parts 2 --level 0.95

Writes OUT_DIR/part<i>.tar, each holding ``corpus/<split>/<spk>/<chapter>/*.ogg`` + transcripts for a
disjoint share of the speakers (split by speaker, round robin over the sorted ids; dev goes in part 0).
``--level`` is libsndfile's Opus compression level: 0.95 gives ~19 kbit/s including the Ogg framing.
Measured on 200 dev utterances: a model trained on FLAC loses 0.5 CER points on such audio (11.08 ->
11.57 %), 0.3 at 25 kbit/s, 1.9 at 12.5 kbit/s. Deterministic: same input, same bytes.
"""
from __future__ import annotations

import argparse
import io
import sys
import tarfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from toolkit.audio import load_audio  # noqa: E402


def encode(args: tuple[str, float]) -> bytes:
    path, level = args
    x = load_audio(path)
    buf = io.BytesIO()
    sf.write(buf, x, 16000, format="OGG", subtype="OPUS", compression_level=level)
    return buf.getvalue()


def add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o644
    tar.addfile(info, io.BytesIO(data))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("corpus")
    ap.add_argument("out")
    ap.add_argument("--parts", type=int, default=2)
    ap.add_argument("--level", type=float, default=0.95)
    ap.add_argument("--splits", default="train,dev")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--only", default="", help="comma-separated part numbers to write (default: all)")
    a = ap.parse_args()
    root, out = Path(a.corpus), Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    jobs: list[list[tuple[str, Path]]] = [[] for _ in range(a.parts)]
    for split in a.splits.split(","):
        # speaker folders only: not the decoded-audio cache (.veil-cache) that training leaves in a split
        speakers = sorted(p for p in (root / split).iterdir() if p.is_dir() and not p.name.startswith("."))
        for i, spk in enumerate(speakers):
            part = 0 if split != "train" else i % a.parts
            jobs[part] += [(split, f) for f in sorted(spk.rglob("*")) if f.is_file()]
    with ProcessPoolExecutor(a.workers) as pool:
        only = {int(i) for i in a.only.split(",") if i}
        for i, files in enumerate(jobs):
            if only and i not in only:
                continue
            tmp = out / f".part{i}.tar.tmp"
            audio = [f for _, f in files if f.suffix == ".flac"]
            blobs = dict(zip(audio, pool.map(encode, [(str(f), a.level) for f in audio], chunksize=32)))
            with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
                for split, f in files:
                    rel = f.relative_to(root)
                    if f.suffix == ".flac":
                        add_bytes(tar, f"corpus/{rel.with_suffix('.ogg')}", blobs[f])
                    else:
                        add_bytes(tar, f"corpus/{rel}", f.read_bytes())
            tmp.rename(out / f"part{i}.tar")
            print(f"part{i}: {len(audio)} utterances, {(out / f'part{i}.tar').stat().st_size / 1e6:.1f} MB",
                  flush=True)


if __name__ == "__main__":
    main()
