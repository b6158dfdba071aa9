"""Split equivalence, chunked prefix == training-time prefix, batching independence."""
import pytest
import torch

from toolkit.chunking import run_chunked, torch_runner
from toolkit.model.asr import ModelConfig, VeilModel, frames_for, split
from tests.conftest import small_config


def phone_run(model, prefix, pcm: torch.Tensor) -> torch.Tensor:
    """A whole utterance (S,) through ``prefix`` chunk by chunk, as the phone runs it: the one chunked runner
    the pipeline uses (zero-padded last chunk, frames trimmed to ceil(S / frame_samples)). Returns (T, d)."""
    return torch.from_numpy(run_chunked(torch_runner(prefix), pcm.numpy(), model.cfg.chunk)[0])


def _utterances():
    g = torch.Generator().manual_seed(3)
    lengths = [40000, 16000, 9001, 31999]
    return [torch.randn(n, generator=g) * 0.1 for n in lengths]


def _batch(utts):
    lengths = torch.tensor([len(u) for u in utts])
    pcm = torch.zeros(len(utts), int(lengths.max()))
    for i, u in enumerate(utts):
        pcm[i, : len(u)] = u
    return pcm, lengths


@torch.no_grad()
def test_suffix_of_prefix_equals_full_model(small_model):
    prefix, suffix = split(small_model)
    for u in _utterances():
        out = small_model(u[None], torch.tensor([len(u)]))
        full = out["log_probs"][0, : int(out["frame_lengths"][0])]
        emb = phone_run(small_model, prefix, u)
        assert emb.shape == (frames_for(len(u), 640), 64)
        assert torch.allclose(suffix(emb[None])[0], full, atol=1e-5)


@torch.no_grad()
def test_chunked_prefix_equals_training_time_prefix(small_model):
    """The phone's chunk-by-chunk prefix gives the same frames as the batched training forward."""
    utts = _utterances()
    pcm, lengths = _batch(utts)
    layers = small_model(pcm, lengths, return_layers=True)["layers"]
    prefix, _ = split(small_model)
    for i, u in enumerate(utts):
        emb = phone_run(small_model, prefix, u)
        assert torch.allclose(layers[1][i, : emb.shape[0]], emb, atol=1e-5)


@torch.no_grad()
def test_batch_equals_single(small_model):
    utts = _utterances()
    pcm, lengths = _batch(utts)
    out = small_model(pcm, lengths)
    for i, u in enumerate(utts):
        single = small_model(u[None], torch.tensor([len(u)]))
        n = int(out["frame_lengths"][i])
        assert n == int(single["frame_lengths"][0])
        assert torch.allclose(out["log_probs"][i, :n], single["log_probs"][0, :n], atol=1e-4)


@torch.no_grad()
def test_split_at_other_layers_and_bounds():
    torch.manual_seed(0)
    model = VeilModel(small_config(n_blocks=3, split_layer=2, grl_layers=[])).eval()
    u = _utterances()[0]
    out = model(u[None], torch.tensor([len(u)]))
    full = out["log_probs"][0, : int(out["frame_lengths"][0])]
    prefix, suffix = split(model, 2)
    assert torch.allclose(suffix(phone_run(model, prefix, u)[None])[0], full, atol=1e-5)
    assert len(split(model, 3)[1].blocks) == 0
    for bad in (0, 4):
        with pytest.raises(ValueError, match="outside 1..3"):
            split(model, bad)


def test_config_validation():
    with pytest.raises(ValueError, match="multiple of 640"):
        VeilModel(small_config(chunk_samples=16001))
    with pytest.raises(ValueError, match="GRL layer 5"):
        VeilModel(small_config(grl_layers=[5]))
    cfg = ModelConfig(**small_config().to_dict())  # round-trips through a plain dict (frontend nested)
    assert cfg == small_config()


@torch.no_grad()
def test_split_norm_is_part_of_the_prefix_and_removes_chunk_statistics():
    """With split_norm='chunk' the phone's prefix emits instance-normalized chunks, identical to what the
    training forward (and so the suffix and the speaker heads) sees; frames still differ (content)."""
    torch.manual_seed(0)
    model = VeilModel(small_config(split_norm="chunk", speaker_head="tdnn")).eval()
    utts = _utterances()
    pcm, lengths = _batch(utts)
    out = model(pcm, lengths, return_layers=True)
    prefix, suffix = split(model)
    for i, u in enumerate(utts):
        emb = phone_run(model, prefix, u)
        assert torch.allclose(out["layers"][1][i, : emb.shape[0]], emb, atol=1e-5)
        n = int(out["frame_lengths"][i])
        assert torch.allclose(suffix(emb[None])[0], out["log_probs"][i, :n], atol=1e-4)
    chunk = prefix(pcm[:1, :16000])[0]
    assert torch.allclose(chunk.mean(0), torch.zeros(64), atol=1e-4)
    assert torch.allclose(chunk.var(0, unbiased=False), torch.ones(64), atol=1e-3)
    assert chunk.std(1).min() > 0.1
    plain = VeilModel(small_config()).eval()
    plain.load_state_dict({k: v for k, v in model.state_dict().items() if not k.startswith("speaker")}, strict=False)
    assert not split(plain)[0].norm_after and not torch.allclose(split(plain)[0](pcm[:1, :16000]), chunk[None])
    with pytest.raises(ValueError, match="split_norm"):
        small_config(split_norm="frame").validate()


def test_split_norm_follows_its_block_at_any_cut():
    """A what-if cut of a split-norm model (cut-point sweep) keeps the normalization after the trained split
    block: in the prefix when the cut is deeper, in the suffix when it is shallower. On one exactly chunk-long
    utterance (where chunk-local and full context agree) prefix + suffix equal the whole model at every cut."""
    torch.manual_seed(0)
    model = VeilModel(small_config(n_blocks=3, split_layer=2, grl_layers=[2], split_norm="chunk")).eval()
    pcm = torch.randn(1, model.cfg.chunk_samples) * 0.1
    with torch.no_grad():
        out = model(pcm, torch.tensor([pcm.shape[1]]), return_layers=True)
        for k in (1, 2, 3):
            prefix, suffix = split(model, k)
            assert prefix.norm_after == (2 if k >= 2 else 0) and suffix.norm_after == (2 if k < 2 else 0)
            emb = prefix(pcm)
            assert torch.allclose(emb[0], out["layers"][k][0], atol=1e-5), k
            assert torch.allclose(suffix(emb), out["log_probs"], atol=1e-4), k
