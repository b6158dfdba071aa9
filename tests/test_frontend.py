"""The in-graph DFT log-mel frontend against an independent numpy FFT implementation."""
import numpy as np
import torch

from toolkit.audio import load_audio
from toolkit.data.librispeech import read_librispeech
from toolkit.model.frontend import FrontendConfig, LogMelFrontend


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
