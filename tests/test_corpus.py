"""The corpus builder on a handful of utterances, and the LibriSpeech reader on what it wrote."""
import hashlib

import numpy as np
import pytest
import soundfile as sf

from toolkit.data.corpus_build import SPLITS, CorpusPlan, build_corpus, plan_utterances, read_manifest
from toolkit.data.librispeech import read_librispeech
from toolkit.data.sentences import load_sentences
from toolkit.data.voices import catalog
from toolkit.errors import VeilError
from tests.conftest import TINY_PLAN


def test_layout_and_manifest(tiny_corpus):
    manifest = read_manifest(tiny_corpus)
    assert manifest["seed"] == 7 and manifest["sample_rate"] == 16000
    for split in SPLITS:
        utts = read_librispeech(tiny_corpus / split)
        assert len(utts) == manifest["splits"][split]["utterances"] > 0
        for u in utts:
            spk, chap, _ = u.utt_id.split("-")
            assert u.path == tiny_corpus / split / spk / chap / f"{u.utt_id}.flac"
            info = sf.info(str(u.path))
            assert (info.samplerate, info.channels, info.format) == (16000, 1, "FLAC")
            assert info.frames > 8000 and u.text and u.text == u.text.lower()
            pcm, _ = sf.read(str(u.path))
            assert np.abs(pcm).max() > 0.01  # real speech, not silence


def test_splits_disjoint(tiny_corpus):
    split_utts = {s: read_librispeech(tiny_corpus / s) for s in SPLITS}
    train_spk = {u.speaker for u in split_utts["train"]}
    train_txt = {u.text for u in split_utts["train"]}
    assert {u.speaker for u in split_utts["test"]} <= train_spk
    assert not {u.speaker for u in split_utts["eval-speakers"]} & train_spk
    for split in ("dev", "test", "eval-speakers"):
        assert not {u.text for u in split_utts[split]} & train_txt


def test_deterministic(tiny_corpus, tmp_path):
    """A second build from the same seed gives the same transcripts and bit-identical audio."""
    plan = CorpusPlan(n_speakers=6, n_eval_speakers=2, train_per_speaker=1, dev_per_speaker=1,
                      test_per_speaker=1, eval_per_speaker=2)
    a = build_corpus(tmp_path / "a", seed=7, plan=plan, progress=False, jobs=1)
    b = build_corpus(tmp_path / "b", seed=7, plan=plan, progress=False, jobs=2)
    assert a["transcript_sha256"] == b["transcript_sha256"]
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.flac"))
    assert files
    for rel in files:
        assert hashlib.sha256((tmp_path / "a" / rel).read_bytes()).digest() == \
            hashlib.sha256((tmp_path / "b" / rel).read_bytes()).digest()
    c = plan_utterances(8, 1.0, plan)[1]
    assert [u["text"] for u in c] != [u["text"] for u in plan_utterances(7, 1.0, plan)[1]]


def test_default_plan_meets_the_spec():
    """The default corpus: >= 120 distinct speakers, >= 6000 distinct sentences, >= 20 utts per eval speaker."""
    plan = CorpusPlan()
    voices, utts = plan_utterances(0, 1.0, plan)
    assert len(set(voices)) == len(voices) >= 120
    assert {v.engine for v in voices} == {"espeak-ng", "flite", "festival"}
    assert len({u["text"] for u in utts}) >= 6000
    eval_counts = {}
    for u in utts:
        if u["split"] == "eval-speakers":
            eval_counts[u["speaker"]] = eval_counts.get(u["speaker"], 0) + 1
    assert len(eval_counts) == plan.n_eval_speakers and min(eval_counts.values()) >= 20
    assert len(load_sentences()) >= 6000


def test_catalog_is_seeded():
    assert catalog(40, 1) == catalog(40, 1)
    assert catalog(40, 1) != catalog(40, 2)


def test_refuses_existing_corpus(tiny_corpus):
    with pytest.raises(VeilError, match="already exists"):
        build_corpus(tiny_corpus, seed=7, plan=TINY_PLAN, progress=False)


def test_reader_errors(tiny_corpus, tmp_path):
    with pytest.raises(VeilError, match="does not exist"):
        read_librispeech(tmp_path / "nope")
    with pytest.raises(VeilError, match="no LibriSpeech-layout audio"):
        read_librispeech(tmp_path)
    # a missing transcript file, and a transcript missing one line
    src = next((tiny_corpus / "train").glob("*/*"))
    dst = tmp_path / "c" / src.parent.name / src.name
    dst.mkdir(parents=True)
    for p in src.iterdir():
        (dst / p.name).write_bytes(p.read_bytes())
    trans = next(dst.glob("*.trans.txt"))
    lines = trans.read_text().splitlines()
    trans.write_text("\n".join(lines[1:]) + "\n")
    with pytest.raises(VeilError, match="no transcript for"):
        read_librispeech(tmp_path / "c")
    trans.unlink()
    with pytest.raises(VeilError, match="transcript file missing"):
        read_librispeech(tmp_path / "c")


def test_manifest_errors(tmp_path):
    with pytest.raises(VeilError, match="not a Veil corpus"):
        read_manifest(tmp_path)
    (tmp_path / "manifest.json").write_text("{broken")
    with pytest.raises(VeilError, match="corrupt manifest"):
        read_manifest(tmp_path)
