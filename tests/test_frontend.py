"""The in-graph DFT log-mel frontend against an independent numpy FFT implementation."""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from toolkit.audio import load_audio
from toolkit.data.librispeech import read_librispeech
from toolkit.model.frontend import FrontendConfig, LogMelFrontend, dft_basis, factored_dft, mel_filterbank


def numpy_log_mel(pcm: np.ndarray, sr=16000, n_fft=512, win=400, hop=160, n_mels=80, fmin=20.0, fmax=7600.0,
                  floor=1e-5, preemph=0.97) -> np.ndarray:
    """Textbook log-mel: pre-emphasis, frame, Hann window, rfft, power, HTK triangular mel filters, log."""
    x = pcm.astype(np.float64)
    x = np.concatenate([x[:1], x[1:] - preemph * x[:-1]])
    x = np.concatenate([x, np.zeros(win - hop)])
    n_frames = len(pcm) // hop
    frames = np.stack([x[t * hop: t * hop + win] for t in range(n_frames)])
    window = np.hanning(win + 1)[:-1]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, n=n_fft)) ** 2
    mel = lambda f: 2595 * np.log10(1 + f / 700)
    imel = lambda m: 700 * (10 ** (m / 2595) - 1)
    edges = imel(np.linspace(mel(fmin), mel(fmax), n_mels + 2))
    freqs = np.fft.rfftfreq(n_fft, 1 / sr)
    fb = np.zeros((n_mels, len(freqs)))
    for m in range(n_mels):
        lo, c, hi = edges[m], edges[m + 1], edges[m + 2]
        fb[m] = np.clip(np.minimum((freqs - lo) / (c - lo), (hi - freqs) / (hi - c)), 0, None)
    return np.log(power @ fb.T + floor)


def test_frontend_matches_numpy_fft(tiny_corpus):
    fe = LogMelFrontend(FrontendConfig())
    for utt in read_librispeech(tiny_corpus / "test"):
        pcm = load_audio(utt.path)
        with torch.no_grad():
            ours = fe.log_mel(torch.from_numpy(pcm)[None])[0].double().numpy()
        ref = numpy_log_mel(pcm)
        assert ours.shape == ref.shape == (len(pcm) // 160, 80)
        assert np.max(np.abs(ours - ref)) <= 1e-4, utt.path


def test_frontend_silence_and_chunk_frames():
    fe = LogMelFrontend(FrontendConfig())
    out = fe.log_mel(torch.zeros(2, 32000))
    assert out.shape == (2, 200, 80)
    assert torch.allclose(out, torch.full_like(out, float(np.log(1e-5))))


def test_factored_dft_equals_dense_basis():
    """The two-stage DFT computes what the dense (2*257) x 400 Hann-windowed basis computes, with ~6x fewer
    constants; bins beyond the last one a mel filter uses are not computed."""
    cfg = FrontendConfig()
    stage1, stage2, bins = factored_dft(cfg)
    assert stage1.size + stage2.size + cfg.n_mels * bins < dft_basis(cfg).size / 5
    assert not mel_filterbank(cfg)[:, bins:].any()
    pcm = torch.from_numpy(np.random.default_rng(0).standard_normal((2, 32000)) * 0.1)
    x = F.pad(pcm.unsqueeze(1), (0, cfg.win_length - cfg.hop_length))
    dense = F.conv1d(x, torch.from_numpy(dft_basis(cfg)), stride=cfg.hop_length)
    dense_power = dense[:, :257] ** 2 + dense[:, 257:] ** 2
    r = 32  # gcd(hop 160, n_fft 512)
    span = 199 * 160 + stage1.shape[-1] * r
    y = F.conv1d(F.pad(pcm, (0, span - 32000)).reshape(2, span // r, r).transpose(1, 2), torch.from_numpy(stage1),
                 stride=160 // r, groups=r).reshape(2, 2 * r, -1)
    spec = torch.matmul(torch.from_numpy(stage2), y).reshape(2, 2, bins, 200)
    power = spec[:, 0] ** 2 + spec[:, 1] ** 2
    assert torch.allclose(power, dense_power[:, :bins], rtol=1e-9, atol=1e-9)


def test_legacy_checkpoint_with_stored_frontend_matrices(tmp_path):
    """Checkpoints that stored the dense DFT basis and full mel matrix still load; a wrong one is refused."""
    from safetensors.torch import load_file, save_file
    from toolkit.errors import VeilError
    from toolkit.model.checkpoint import load_checkpoint
    src = Path(__file__).resolve().parents[1] / "models" / "baseline.safetensors"
    cfg = FrontendConfig()
    state = load_file(str(src))
    state["frontend.dft"] = torch.tensor(dft_basis(cfg), dtype=torch.float32)
    state["frontend.mel"] = torch.tensor(mel_filterbank(cfg), dtype=torch.float32)
    legacy = tmp_path / "legacy.safetensors"
    save_file(state, str(legacy))
    shutil.copy(src.with_suffix(".json"), legacy.with_suffix(".json"))
    model, _ = load_checkpoint(legacy)
    assert model.frontend.dft1.shape[0] == 1024
    state["frontend.mel"] = state["frontend.mel"] * 2
    save_file(state, str(legacy))
    with pytest.raises(VeilError, match="stored frontend.mel does not match"):
        load_checkpoint(legacy)
