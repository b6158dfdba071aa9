"""The levers of private training (`veil train`): each on a tiny model, for what it does.

- the statistics adversary lowers the speakers' Fisher ratio of a planted signature, and a fresh attacker
  then finds the speakers less often;
- the CTC head at the split reads what the cloud receives and trains the phone's side only;
- distillation pulls the cloud's posteriors toward the teacher's, computed once per utterance;
- a cloud stack of its own size runs after the split, in training as in the split Prefix/Suffix pair;
- the per-chunk normalization can sit below a deeper split, with a variance floor;
- ``--freeze-blocks N`` keeps the first N blocks as they were and trains the rest;
- the pooled-enrollment attacker beats single-utterance trials where per-utterance noise hides a voice.
"""
import json

import numpy as np
import pytest
import torch

from tests.conftest import small_config
from toolkit.data.dataset import AudioSet, collate
from toolkit.data.librispeech import read_librispeech
from toolkit.model.asr import ModelConfig, Prefix, VeilModel, chunk_instance_norm, split
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.privacy.attackers import utterance_split
from toolkit.privacy.scoring import VectorClassifier
from toolkit.privacy.suite import Embeddings, SuiteOptions, run_suite
from toolkit.text.tokenizer import CharTokenizer
from toolkit.training.loop import TeacherPosteriors, TrainConfig, _build_model, distillation_loss, train
from toolkit.training.statistics_adversary import chunk_statistics, fisher_ratio, statistics_penalty

CF = 25  # chunk frames of the planted-signature batches


def _planted(seed: int, n_spk: int = 8, per_spk: int = 4, t: int = 2 * CF, d: int = 8):
    """Frames whose channels 0-5 carry 'content' (white noise, independent of the speaker) and whose channels
    6-7 carry a speaker's constant offset: (B, T, d) frames, the content, (B,) speaker labels."""
    g = torch.Generator().manual_seed(seed)
    content = torch.randn(n_spk * per_spk, t, 6, generator=g)
    offsets = torch.randn(n_spk, 2, generator=g) * 2.0
    labels = torch.arange(n_spk).repeat_interleave(per_spk)
    frames = torch.cat([content, offsets[labels][:, None, :] + 0.1 * torch.randn(len(labels), t, 2, generator=g)], -1)
    return frames, content, labels


def _train_projection(fisher_weight: float, steps: int = 150) -> tuple[torch.nn.Linear, torch.nn.Linear]:
    """An autoencoder of the frames: without the adversary it has every reason to keep the speaker's channels."""
    torch.manual_seed(0)
    down, head = torch.nn.Linear(8, 8), torch.nn.Linear(8, 8)
    opt = torch.optim.Adam([*down.parameters(), *head.parameters()], lr=1e-2)
    for step in range(steps):
        x, content, labels = _planted(step)
        z = down(x)
        mask = torch.ones(z.shape[:2], dtype=torch.bool)
        loss = ((head(z) - x) ** 2).mean() + fisher_weight * statistics_penalty(z, mask, labels, CF)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return down, head


def test_statistics_adversary_lowers_the_fisher_ratio_of_a_planted_signature():
    plain_down, plain_head = _train_projection(0.0)
    private_down, private_head = _train_projection(1.0)
    with torch.no_grad():
        _check_planted(plain_down, plain_head, private_down, private_head)


def _check_planted(plain_down, plain_head, private_down, private_head):
    x, content, labels = _planted(10_000, n_spk=16, per_spk=8)
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    plain = statistics_penalty(plain_down(x), mask, labels, CF)
    private = statistics_penalty(private_down(x), mask, labels, CF)
    assert private < 0.3 * plain, (float(plain), float(private))
    # content stays: the private projection still reconstructs the content channels about as well
    err_plain = ((plain_head(plain_down(x))[..., :6] - content) ** 2).mean()
    err_private = ((private_head(private_down(x))[..., :6] - content) ** 2).mean()
    assert err_private < 0.2 * content.var(), (float(err_plain), float(err_private), float(content.var()))
    # and a fresh attacker (pooled mean + std, logistic regression) finds the speakers less often
    spk = [str(int(s)) for s in labels]
    enroll, test = utterance_split(spk)

    def attack(z):
        pooled = torch.cat([z.mean(1), z.std(1)], 1).numpy()
        return VectorClassifier.fit(pooled[enroll], [spk[i] for i in enroll]).accuracy(pooled[test], [spk[i] for i in test])
    plain_acc, private_acc = attack(plain_down(x)), attack(private_down(x))
    chance = 100.0 / 16
    assert plain_acc >= 4 * chance and private_acc <= 2 * chance, (plain_acc, private_acc)


def test_fisher_ratio_is_zero_without_two_speakers_and_large_for_separated_ones():
    stats = torch.randn(20, 5)
    assert float(fisher_ratio(stats, torch.zeros(20, dtype=torch.long))) == 0.0
    labels = torch.arange(4).repeat_interleave(5)
    separated = stats * 0.1 + torch.randn(4, 5)[labels] * 3.0
    assert fisher_ratio(separated, labels) > 10 * fisher_ratio(stats, labels)
    x = torch.randn(3, 2 * CF + 7, 4)  # chunks with too few valid frames give no sample
    mask = torch.ones(x.shape[:2], dtype=torch.bool)
    mask[2, 5:] = False
    feats, utt = chunk_statistics(x, mask, CF)
    assert utt.tolist() == [0, 0, 1, 1] and feats.shape == (4, 4 * 3 + 6)


def test_split_ctc_head_reads_what_the_cloud_receives_and_trains_the_phone_side_only():
    cfg = small_config(split_ctc=True, bottleneck_dim=8, bottleneck_noise=0.5, grl_layers=[])
    model = VeilModel(cfg)
    pcm = torch.randn(2, 20000)
    out = model(pcm, torch.tensor([20000, 12000]), generator=torch.Generator().manual_seed(0))
    assert out["received"].shape[-1] == 8 and out["split_log_probs"].shape[-1] == cfg.vocab_size
    out["split_log_probs"].sum().backward()
    assert model.bottleneck.down.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in model.blocks[0].parameters())
    assert all(p.grad is None for p in model.blocks[1].parameters())  # the cloud's blocks get nothing from it
    assert all(p.grad is None for p in model.ctc_head.parameters())


def test_distillation_pulls_the_cloud_toward_the_teacher_from_cached_posteriors(tmp_path):
    torch.manual_seed(1)
    teacher = VeilModel(small_config(grl_layers=[])).eval()
    save_checkpoint(tmp_path / "teacher.safetensors", teacher, CharTokenizer(), ["a", "b"], {})
    torch.manual_seed(2)
    student = VeilModel(small_config(grl_layers=[]))
    posteriors = TeacherPosteriors(str(tmp_path / "teacher.safetensors"), student.cfg, "cpu")
    pcm, lengths = torch.randn(3, 24000) * 0.1, torch.tensor([24000, 20000, 9000])
    opt = torch.optim.Adam(student.parameters(), lr=3e-3)
    kls = []
    for _ in range(40):
        o = student(pcm, lengths)
        target = posteriors.batch([0, 1, 2], pcm, lengths, o["log_probs"].shape[1])
        kl = distillation_loss(o["log_probs"], target, o["mask"])
        opt.zero_grad()
        kl.backward()
        opt.step()
        kls.append(kl.item())
    assert kls[-1] < 0.3 * kls[0], kls[::10]
    assert sorted(posteriors.cache) == [0, 1, 2] and posteriors.cache[2].dtype == torch.float16
    assert len(posteriors.cache[2]) == 15  # 9000 samples -> 15 frames of 640


@torch.no_grad()
def test_a_cloud_stack_of_its_own_width_runs_after_the_split(tmp_path):
    cfg = small_config(n_blocks=2, split_layer=2, suffix_blocks=2, suffix_dim=96, bottleneck_dim=8, grl_layers=[2])
    torch.manual_seed(0)
    model = VeilModel(cfg).eval()
    assert cfg.total_blocks == 4 and model.ctc_head.in_features == 96 and model.bottleneck.up.out_features == 96
    pcm = torch.randn(1, 16000)
    whole = model(pcm, torch.tensor([16000]), return_layers=True)
    assert whole["layers"][2].shape[-1] == 8 and whole["layers"][3].shape[-1] == 96
    prefix, suffix = split(model)
    torch.testing.assert_close(suffix(prefix(pcm)), whole["log_probs"], atol=1e-5, rtol=1e-5)
    save_checkpoint(tmp_path / "m.safetensors", model, CharTokenizer(), ["a", "b", "c", "d"], {})
    again, _ = load_checkpoint(tmp_path / "m.safetensors")
    torch.testing.assert_close(again(pcm, torch.tensor([16000]))["log_probs"], whole["log_probs"], atol=1e-2, rtol=0)
    with pytest.raises(ValueError, match="split_layer must be 2"):
        ModelConfig(**{**cfg.to_dict(), "split_layer": 1}).validate()
    with pytest.raises(ValueError, match="needs suffix_blocks"):
        ModelConfig(**{**cfg.to_dict(), "suffix_blocks": 0}).validate()


@torch.no_grad()
def test_the_chunk_normalization_can_sit_below_a_deeper_split_with_a_variance_floor():
    cfg = small_config(n_blocks=2, split_layer=2, split_norm="chunk", norm_layer=1, split_norm_floor=0.01,
                       grl_layers=[])
    torch.manual_seed(0)
    model = VeilModel(cfg).eval()
    pcm = torch.randn(1, 16000)
    x = model.subsampling(model.frontend(pcm))
    expected = model.blocks[1](chunk_instance_norm(model.blocks[0](x), 0.01))
    torch.testing.assert_close(Prefix(model, 2)(pcm), expected)
    steady = torch.ones(1, 50, 4) + 1e-4 * torch.randn(1, 50, 4)  # a steady tone: almost no variance
    assert chunk_instance_norm(steady, 0.01).abs().max() < 0.01
    assert chunk_instance_norm(steady, 1e-5).abs().max() > 0.1


def test_every_lever_trains_together_and_freeze_blocks_keeps_the_first_blocks(tiny_corpus, tmp_path):
    torch.manual_seed(3)
    teacher = VeilModel(small_config(grl_layers=[]))
    speakers = sorted({u.speaker for u in read_librispeech(tiny_corpus / "train")})
    save_checkpoint(tmp_path / "teacher.safetensors", teacher, CharTokenizer(), speakers, {})
    model_cfg = small_config(n_blocks=2, split_layer=2, norm_layer=1, split_norm="chunk", suffix_blocks=1,
                             bottleneck_dim=8, bottleneck_noise=0.5, split_ctc=True, grl_layers=[2])
    out = tmp_path / "run"
    cfg = TrainConfig(corpus=str(tiny_corpus), out=str(out), steps=3, eval_every=3, dev_utts=2, lr=3e-3, warmup=1,
                      max_batch_seconds=30, threads=1, init_from=str(tmp_path / "teacher.safetensors"),
                      freeze_blocks=1, distill_from=str(tmp_path / "teacher.safetensors"), distill_weight=1.0,
                      fisher_weight=0.1, model=model_cfg)
    train(cfg)
    trained, _ = load_checkpoint(out / "last.safetensors")
    init, _ = load_checkpoint(tmp_path / "teacher.safetensors")
    # frozen: block 1 as the init had it; block 2 trained
    before, after = init.blocks[0].state_dict(), trained.blocks[0].state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), [k for k in before if not torch.equal(before[k], after[k])]
    before, after = init.blocks[1].state_dict(), trained.blocks[1].state_dict()
    assert not all(torch.equal(before[k], after[k]) for k in before)
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert any("dev_cer" in row for row in log)
    prov = json.loads((out / "last.json").read_text())["provenance"]
    assert prov["train_config"]["distill_weight"] == 1.0 and prov["train_config"]["freeze_blocks"] == 1
    # a new stage from this run keeps its trained cloud stack (only a new stack starts as the init's last blocks)
    again = TrainConfig(**{**cfg.__dict__, "out": str(tmp_path / "stage2"), "init_from": str(out / "last.safetensors")})
    stage2, resumed, _ = _build_model(again, tmp_path / "stage2", speakers, CharTokenizer())
    assert not resumed
    for k, v in trained.cloud_blocks.state_dict().items():
        assert torch.equal(stage2.cloud_blocks.state_dict()[k], v), k


def test_pooled_enrollment_beats_single_utterance_trials_where_noise_hides_a_voice(one_torch_thread):
    """Voices differ in how fast each channel moves; utterances are short (20-30 frames), so one utterance's
    statistics are noisy. Enrolling a speaker with the mean of 12 utterances averages that noise out: the
    operator who collects many sessions of a user verifies better than pairwise trials suggest."""
    from tests.test_privacy_suite import _utterance, _voice
    rng = np.random.default_rng(0)
    frames, speakers = [], []
    for s in range(24):
        voice = _voice("dynamics", rng)
        for _ in range(16 if s < 16 else 20):
            frames.append(_utterance("dynamics", voice, int(rng.integers(20, 31)), rng))
            speakers.append(f"s{s}")
    k = 16 * 16
    out, _ = run_suite(Embeddings(frames[k:], frames[:k]), speakers[k:], speakers[:k], utterance_split(speakers[k:]),
                       SuiteOptions(attackers="allstats-lda,allstats-plda,allstats-pooled-enroll"), seeds=[0])
    r = out["suite"]
    assert r["allstats-pooled-enroll"]["eer"] < min(r["allstats-lda"]["eer"], r["allstats-plda"]["eer"]) - 8.0, r
    assert r["allstats-pooled-enroll"]["enrollment_utterances_per_speaker"] == 12.0
