"""Gradient reversal: identity forward, -lambda * grad backward; Ganin's schedule."""
import math

import pytest
import torch

from toolkit.model.grl import SpeakerHead, ganin_lambda, grad_reverse, masked_stats_pool


@pytest.mark.parametrize("lambd", [0.0, 0.3, 1.0, 2.5])
def test_grl_forward_identity_backward_negated(lambd):
    torch.manual_seed(0)
    x = torch.randn(3, 5, 7, requires_grad=True)
    y = grad_reverse(x, lambd)
    assert torch.equal(y, x)
    upstream = torch.randn_like(x)
    y.backward(upstream)
    assert torch.allclose(x.grad, -lambd * upstream)


def test_ganin_schedule():
    assert ganin_lambda(0.0, 1.0) == 0.0
    assert ganin_lambda(1.0, 2.0) == pytest.approx(2.0 * (2 / (1 + math.exp(-10)) - 1))
    assert ganin_lambda(0.5, 1.0) == pytest.approx(2 / (1 + math.exp(-5)) - 1)
    values = [ganin_lambda(p / 10, 1.0) for p in range(11)]
    assert values == sorted(values)
    assert ganin_lambda(5.0, 1.0) == ganin_lambda(1.0, 1.0)  # clamped


def test_stats_pool_ignores_padding():
    torch.manual_seed(0)
    x = torch.randn(1, 10, 4)
    padded = torch.cat([x, torch.full((1, 5, 4), 100.0)], 1)
    mask = torch.arange(15)[None] < 10
    assert torch.allclose(masked_stats_pool(padded, mask), masked_stats_pool(x, None), atol=1e-5)
    head = SpeakerHead(4, 3)
    assert head(padded, mask).shape == (1, 3)


def test_grl_reverses_encoder_gradient_in_model(small_model):
    """Through the model, the speaker loss gradient on the encoder flips sign with lambda."""
    torch.manual_seed(1)
    pcm, lengths = torch.randn(2, 20000) * 0.1, torch.tensor([20000, 15000])
    grads = []
    for lam in (1.0, -1.0):
        small_model.zero_grad()
        out = small_model(pcm, lengths, grl_lambda=lam)
        out["speaker_logits"][1].logsumexp(-1).sum().backward()
        grads.append(small_model.blocks[0].attn.qkv.weight.grad.clone())
    assert grads[0].abs().sum() > 0
    assert torch.allclose(grads[0], -grads[1], atol=1e-6)


def test_head_reset_gives_fresh_deterministic_heads_and_drops_their_moments():
    from tests.conftest import small_config
    from toolkit.model.asr import VeilModel
    from toolkit.training.loop import reset_speaker_heads
    for head in ("mlp", "tdnn"):
        model = VeilModel(small_config(speaker_head=head, grl_layers=[1, 2]))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        pcm = torch.randn(2, 16000)
        out = model(pcm, torch.tensor([16000, 12000]), grl_lambda=1.0)
        (out["log_probs"].mean() + sum(v.logsumexp(-1).mean() for v in out["speaker_logits"].values())).backward()
        opt.step()
        trained = {k: v.clone() for k, v in model.state_dict().items()}
        reset_speaker_heads(model, opt, seed=7)
        after = model.state_dict()
        heads = [k for k in after if k.startswith("speaker_heads")]
        assert heads and all(not torch.equal(after[k], trained[k]) for k in heads if k.endswith("weight"))
        assert all(torch.equal(after[k], trained[k]) for k in after if not k.startswith("speaker_heads"))
        assert all(p not in opt.state for p in model.speaker_heads.parameters())
        assert all(p in opt.state for p in model.blocks.parameters())
        other = VeilModel(small_config(speaker_head=head, grl_layers=[1, 2]))
        reset_speaker_heads(other, torch.optim.AdamW(other.parameters()), seed=7)
        assert all(torch.equal(other.state_dict()[k], after[k]) for k in heads)
