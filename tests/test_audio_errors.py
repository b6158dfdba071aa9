"""Bad audio gives one clear line naming the file, through the library and through the CLI."""
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
