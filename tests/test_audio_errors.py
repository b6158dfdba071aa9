"""Bad audio gives one clear line naming the file, through the library and through the CLI."""
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from toolkit.audio import load_audio
from toolkit.errors import VeilError
from toolkit.model.checkpoint import save_checkpoint
from toolkit.text.tokenizer import CharTokenizer


def _wav(path, data, sr=16000):
    sf.write(str(path), data, sr, subtype="FLOAT" if np.asarray(data).dtype.kind == "f" else "PCM_16")
    return path


def test_resample_and_mix(tmp_path):
    t = np.arange(44100) / 44100
    stereo = np.stack([np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 440 * t)], 1).astype(np.float32) * 0.5
    pcm = load_audio(_wav(tmp_path / "s.wav", stereo, 44100))
    assert pcm.dtype == np.float32 and pcm.ndim == 1 and len(pcm) == 16000
    spectrum = np.abs(np.fft.rfft(pcm))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 Hz bins over one second


@pytest.mark.parametrize("name,make,message", [
    ("empty.wav", lambda p: _wav(p, np.zeros(0, np.float32)), "audio is empty"),
    ("nan.wav", lambda p: _wav(p, np.array([0.1, np.nan] * 400, np.float32)), "NaN/Inf"),
    ("short.wav", lambda p: _wav(p, np.full(100, 0.1, np.float32)), "shorter than one output frame"),
    ("text.wav", lambda p: p.write_text("this is not audio"), "not a readable audio file"),
    ("missing.wav", lambda p: None, "no such audio file"),
    ("lowrate.wav", lambda p: _wav(p, np.full(4000, 0.1, np.float32), sr=4000), "below 8000 Hz"),
])
def test_bad_audio(tmp_path, name, make, message):
    path = tmp_path / name
    make(path)
    with pytest.raises(VeilError, match=message) as err:
        load_audio(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def _veil(*args):
    return subprocess.run([sys.executable, "-m", "toolkit.cli", *args], capture_output=True, text=True)


def test_cli_bad_audio_and_checkpoint(tmp_path, small_model):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_model, CharTokenizer(), ["a", "b", "c", "d"], {})
    bad = tmp_path / "bad.flac"
    bad.write_bytes(b"\x00garbage" * 10)
    r = _veil("transcribe", str(bad), "--checkpoint", str(ckpt))
    assert r.returncode == 2
    assert r.stderr.strip() == f"veil transcribe: {bad}: not a readable audio file ({r.stderr.split('(', 1)[1].strip()}"
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    ckpt.write_bytes(ckpt.read_bytes()[:100])
    good = _wav(tmp_path / "ok.wav", (np.random.default_rng(0).standard_normal(16000) * 0.1).astype(np.float32))
    r = _veil("transcribe", str(good), "--checkpoint", str(ckpt))
    assert r.returncode == 2 and "corrupt or unreadable safetensors" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_cli_transcribe_runs(tmp_path, small_model, tiny_corpus):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_model, CharTokenizer(), ["a", "b", "c", "d"], {})
    flac = next((tiny_corpus / "test").rglob("*.flac"))
    r = _veil("transcribe", str(flac), "--checkpoint", str(ckpt))
    assert r.returncode == 0, r.stderr
    path, text = r.stdout.rstrip("\n").split("\t")
    assert path == str(flac) and set(text) <= set(" 'abcdefghijklmnopqrstuvwxyz")


def test_cli_help_lists_subcommands():
    r = _veil("--help")
    for cmd in ("corpus", "train", "transcribe", "evaluate"):
        assert cmd in r.stdout


FORMATS = {"wav": ("WAV", "PCM_16"), "flac": ("FLAC", "PCM_16"), "opus": ("OGG", "OPUS")}


def _cut(tmp_path, ext: str, keep: float):
    """A 3-s tone written whole in ``ext``, then cut to ``keep`` of its bytes (the header stays intact)."""
    whole = tmp_path / f"whole.{ext}"
    t = np.arange(48000) / 16000
    sf.write(str(whole), (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 16000, format=FORMATS[ext][0],
             subtype=FORMATS[ext][1])
    data = whole.read_bytes()
    cut = tmp_path / f"cut-{keep}.{ext}"
    cut.write_bytes(data[:max(1, int(len(data) * keep))] if keep < 1 else data[:-1])
    return whole, cut


@pytest.mark.parametrize("ext", sorted(FORMATS))
@pytest.mark.parametrize("keep", [0.6, 1.0])  # 1.0: all but the last byte
def test_a_truncated_file_is_refused_not_transcribed_in_part(tmp_path, ext, keep):
    whole, cut = _cut(tmp_path, ext, keep)
    assert len(load_audio(whole)) == 48000
    with pytest.raises(VeilError, match="truncated or corrupt audio") as err:
        load_audio(cut)
    assert str(err.value).startswith(f"{cut}: ") and "\n" not in str(err.value)


@pytest.mark.parametrize("ext", sorted(FORMATS))
def test_every_command_that_reads_audio_refuses_a_truncated_file(tmp_path, small_model, tiny_corpus, ext):
    ckpt = save_checkpoint(tmp_path / "m.safetensors", small_model, CharTokenizer(), ["a", "b", "c", "d"], {})
    _, cut = _cut(tmp_path, ext, 0.6)
    r = _veil("transcribe", str(cut), "--checkpoint", str(ckpt))
    assert r.returncode == 2 and r.stdout == "", r.stderr
    assert r.stderr.startswith(f"veil transcribe: {cut}: truncated or corrupt audio (")
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    if ext != "flac":
        return
    corpus = tmp_path / "corpus"  # a corpus utterance cut short stops `veil evaluate` (and training, privacy...)
    shutil.copytree(tiny_corpus, corpus)
    victim = sorted((corpus / "test").rglob("*.flac"))[0]
    victim.write_bytes(victim.read_bytes()[:len(victim.read_bytes()) // 2])
    r = _veil("evaluate", "--checkpoint", str(ckpt), "--corpus", str(corpus), "--split", "test")
    assert r.returncode == 2 and f"{victim}: truncated or corrupt audio" in r.stderr, r.stderr
    lines = [ln for ln in r.stderr.replace("\r", "\n").splitlines() if ln.strip() and "utt/s]" not in ln]
    assert lines == [f"veil evaluate: {victim}: " + r.stderr.split(f"veil evaluate: {victim}: ")[1].splitlines()[0]]
    assert "Traceback" not in r.stderr
