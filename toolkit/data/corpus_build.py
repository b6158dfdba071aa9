"""`veil corpus build`: the embedded default corpus, synthesized locally and deterministically.

Layout: ``<out>/<split>/`` is a LibriSpeech-layout root for each split (train, dev, test, eval-speakers),
16 kHz mono FLAC, plus ``<out>/manifest.json`` recording seed, size, speakers, sentence source and counts.
- ``train``/``dev``/``test`` share the ASR speakers; dev and test sentences never occur in train.
- ``eval-speakers`` holds speakers never seen in ASR training (for privacy attacks and unseen-speaker WER),
  speaking held-out sentences.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf
from tqdm import tqdm

from toolkit.data.sentences import load_sentences
from toolkit.data.voices import Voice, catalog, check_tools, synthesize, to_flac_16k, tool_versions
from toolkit.errors import VeilError, read_json

SPLITS = ("train", "dev", "test", "eval-speakers")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CorpusPlan:
    """Sizes at ``size=1``; ``size`` scales the utterance counts, never the speaker count."""
    n_speakers: int = 160
    n_eval_speakers: int = 32
    train_per_speaker: int = 90
    dev_per_speaker: int = 2
    test_per_speaker: int = 4
    eval_per_speaker: int = 40

    def scaled(self, size: float) -> dict[str, int]:
        def s(n, lo):
            return max(lo, round(n * size))
        return {"train": s(self.train_per_speaker, 1), "dev": s(self.dev_per_speaker, 1),
                "test": s(self.test_per_speaker, 1), "eval-speakers": s(self.eval_per_speaker, 2)}


def _speaker_id(index: int) -> str:
    return str(1000 + index)


def _chapter_id(split: str) -> str:
    return str(SPLITS.index(split) + 1)


def plan_utterances(seed: int, size: float, plan: CorpusPlan) -> tuple[list[Voice], list[dict]]:
    """Assign (split, speaker, sentence) for every utterance. Pure function of (seed, size, plan)."""
    if size <= 0:
        raise VeilError(f"--size must be positive, got {size}")
    if not 2 <= plan.n_eval_speakers < plan.n_speakers:
        raise VeilError("need at least 2 eval speakers and at least one ASR speaker")
    voices = catalog(plan.n_speakers, seed)
    rng = random.Random(seed + 1)
    sentences = load_sentences()
    rng.shuffle(sentences)
    per = plan.scaled(size)
    n_asr = plan.n_speakers - plan.n_eval_speakers
    need_heldout = n_asr * (per["dev"] + per["test"]) + plan.n_eval_speakers * per["eval-speakers"]
    heldout_n = min(need_heldout, len(sentences) // 3)
    heldout, train_pool = sentences[:heldout_n], sentences[heldout_n:]
    if not heldout or not train_pool:
        raise VeilError("not enough sentences for the requested corpus size")
    # dev/test/eval draw from disjoint slices of the held-out pool where it is large enough
    n_dev, n_test = n_asr * per["dev"], n_asr * per["test"]
    pools = {"dev": heldout[:n_dev] or heldout, "test": heldout[n_dev:n_dev + n_test] or heldout,
             "eval-speakers": heldout[n_dev + n_test:] or heldout, "train": train_pool}
    cursor = {k: 0 for k in pools}

    def next_sentence(split: str) -> str:
        pool = pools[split]
        s = pool[cursor[split] % len(pool)]
        cursor[split] += 1
        return s

    utts = []
    for idx, voice in enumerate(voices):
        spk = _speaker_id(idx)
        splits = ("eval-speakers",) if idx >= n_asr else ("train", "dev", "test")
        for split in splits:
            for u in range(per[split]):
                utts.append({"split": split, "speaker": spk, "chapter": _chapter_id(split), "index": u,
                             "text": next_sentence(split)})
    return voices, utts


def _render_job(args) -> list[tuple[str, int]]:
    """Synthesize one speaker's utterances of one split into their final FLAC paths."""
    voice_dict, items, out_dir = args
    voice = Voice(**voice_dict)
    with tempfile.TemporaryDirectory(prefix="veil-tts-") as tmp:
        wavs = synthesize(voice, [it["text"] for it in items], Path(tmp))
        results = []
        for it, wav in zip(items, wavs):
            flac = Path(out_dir) / it["relpath"]
            flac.parent.mkdir(parents=True, exist_ok=True)
            to_flac_16k(voice, wav, flac)
            results.append((it["utt_id"], sf.info(str(flac)).frames))
    return results


def build_corpus(out: str | Path, seed: int = 0, size: float = 1.0, jobs: int | None = None,
                 plan: CorpusPlan = CorpusPlan(), progress: bool = True) -> dict:
    """Build into a temporary sibling directory, then rename, so a failed build leaves nothing behind."""
    check_tools()
    out = Path(out)
    if (out / MANIFEST).is_file():
        raise VeilError(f"{out}: a corpus already exists here (remove it or pick another --out)")
    out.parent.mkdir(parents=True, exist_ok=True)
    voices, utts = plan_utterances(seed, size, plan)
    tmp_out = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        groups: dict[tuple[str, str], list[dict]] = {}
        for u in utts:
            utt_id = f"{u['speaker']}-{u['chapter']}-{u['index']:04d}"
            u["utt_id"] = utt_id
            u["relpath"] = f"{u['split']}/{u['speaker']}/{u['chapter']}/{utt_id}.flac"
            groups.setdefault((u["split"], u["speaker"]), []).append(u)
        voice_of = {_speaker_id(i): v for i, v in enumerate(voices)}
        jobs_list = [(voice_of[spk].to_dict(), items, str(tmp_out)) for (split, spk), items in groups.items()]
        lengths: dict[str, int] = {}
        workers = jobs or os.cpu_count() or 1
        with ProcessPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=len(utts), desc="synthesizing", unit="utt", disable=not progress) as bar:
            futures = [pool.submit(_render_job, j) for j in jobs_list]
            for fut in as_completed(futures):
                for utt_id, n in fut.result():
                    lengths[utt_id] = n
                    bar.update(1)
        for (split, spk), items in groups.items():
            trans = tmp_out / split / spk / items[0]["chapter"] / f"{spk}-{items[0]['chapter']}.trans.txt"
            trans.write_text("".join(f"{it['utt_id']} {it['text'].upper()}\n" for it in items))
        manifest = _manifest(seed, size, plan, voices, utts, lengths)
        (tmp_out / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
        if out.exists():
            if any(out.iterdir()):
                raise VeilError(f"{out}: directory exists and is not empty")
            out.rmdir()
        tmp_out.rename(out)
    finally:
        if tmp_out.exists():
            shutil.rmtree(tmp_out, ignore_errors=True)
    return manifest


def _manifest(seed, size, plan, voices, utts, lengths) -> dict:
    splits = {}
    for split in SPLITS:
        rows = [u for u in utts if u["split"] == split]
        splits[split] = {
            "utterances": len(rows),
            "speakers": sorted({u["speaker"] for u in rows}),
            "sentences": len({u["text"] for u in rows}),
            "hours": round(sum(lengths[u["utt_id"]] for u in rows) / 16000 / 3600, 3),
        }
    digest = hashlib.sha256("".join(f"{u['utt_id']}|{u['text']}\n" for u in utts).encode()).hexdigest()
    return {
        "format": "librispeech",
        "sample_rate": 16000,
        "seed": seed,
        "size": size,
        "plan": plan.__dict__,
        "sentence_source": "Debian fortunes/fortunes-min",
        "distinct_sentences": len({u["text"] for u in utts}),
        "tools": tool_versions(),
        "speakers": {_speaker_id(i): v.to_dict() for i, v in enumerate(voices)},
        "splits": splits,
        "transcript_sha256": digest,
    }


def read_manifest(root: str | Path) -> dict:
    return read_json(Path(root) / MANIFEST,
                     f"{root}: not a Veil corpus (no {MANIFEST}); build one with `veil corpus build`",
                     "corrupt manifest")
