"""The information bottleneck at the split: what leaves the phone, its codebook, its training and its export."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tests.conftest import small_config
from toolkit import payload
from toolkit.errors import VeilError
from toolkit.exporting.manifest import ExportManifest
from toolkit.exporting.prefix_export import ExportRequest, export_prefix
from toolkit.model.asr import VeilModel, split
from toolkit.model.bottleneck import VectorQuantizer
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.privacy.artifact import load_runners, read_export
from toolkit.privacy.embeddings import artifact_embeddings, layer_embeddings
from experiments.evaluate import same_phone_blocks, transmit
from toolkit.serve.suffix import ServedSuffix
from toolkit.data.dataset import AudioSet, collate
from toolkit.data.librispeech import read_librispeech
from toolkit.text.tokenizer import CharTokenizer
from toolkit.training.loop import TrainConfig, train

VARIANTS = {"projection": dict(bottleneck_dim=16),
            "vq-2x32": dict(bottleneck_dim=16, vq_codes=32, vq_groups=2),
            "vq-1x32-split-norm": dict(bottleneck_dim=16, vq_codes=32, split_norm="chunk")}


def bottleneck_model(**overrides) -> VeilModel:
    torch.manual_seed(0)
    return VeilModel(small_config(**overrides)).eval()


def chunks_of(pcm: torch.Tensor, chunk: int) -> list[torch.Tensor]:
    pcm = torch.nn.functional.pad(pcm, (0, -pcm.shape[0] % chunk))
    return [pcm[i:i + chunk][None] for i in range(0, pcm.shape[0], chunk)]


def test_codewords_are_the_nearest_and_quantizing_twice_is_quantizing_once():
    torch.manual_seed(0)
    vq = VectorQuantizer(dim=8, groups=2, codes=16).eval()
    z = torch.randn(5, 7, 8)
    idx = vq.indices(z)
    q, commit = vq(z)
    brute = torch.stack([((z[..., g * 4:(g + 1) * 4, None] .transpose(-1, -2) - vq.codebook[g]) ** 2)
                         .sum(-1).argmin(-1) for g in range(2)], -1)
    assert torch.equal(idx, brute)
    assert torch.equal(vq.indices(q), idx)
    assert torch.equal(vq(q)[0], q)
    assert commit.item() == pytest.approx(((z - q) ** 2).mean().item(), rel=1e-5)


def test_kmeans_start_uses_every_code_and_ema_follows_the_data():
    torch.manual_seed(0)
    centres = torch.randn(8, 4) * 5
    z = (centres[torch.randint(0, 8, (4000,))] + 0.05 * torch.randn(4000, 4))
    vq = VectorQuantizer(dim=4, groups=1, codes=8)
    vq.init_from(z)
    assert len(torch.unique(vq.indices(z))) == 8
    before = ((z - vq.lookup(vq.indices(z))) ** 2).mean()
    vq.train()
    for _ in range(20):
        vq(z[None])
    after = ((z - vq.lookup(vq.indices(z))) ** 2).mean()
    assert after <= before + 1e-6 and after < 0.01


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_phone_prefix_then_cloud_suffix_is_the_whole_model(variant):
    model = bottleneck_model(**VARIANTS[variant])
    prefix, suffix = split(model)
    pcm = torch.randn(16000 * 2 + 4000) * 0.1
    with torch.no_grad():
        out = model(pcm[None], torch.tensor([pcm.shape[0]]))
        z = torch.cat([prefix(c) for c in chunks_of(pcm, 16000)], 1)
        assert z.shape[-1] == 16  # the bottleneck leaves the phone, not d_model
        parts = suffix(z, out["mask"])
    valid = out["mask"][0]
    assert torch.allclose(parts[0, valid], out["log_probs"][0, valid], atol=1e-5)


def test_the_cloud_reads_received_codewords_as_it_reads_the_phones_vectors():
    model = bottleneck_model(**VARIANTS["vq-2x32"])
    prefix, suffix = split(model)
    z = prefix(torch.randn(1, 16000) * 0.1).detach()
    q, _ = model.bottleneck.transmit(z)
    assert suffix.codebook.shape == (2, 32, 8)
    with torch.no_grad():
        assert torch.equal(suffix(q), suffix(z))


def test_the_adversary_and_ctc_reach_the_phone_projection_through_the_codebook():
    model = bottleneck_model(**VARIANTS["vq-2x32"]).train()
    pcm = torch.randn(1, 24000) * 0.1
    out = model(pcm, torch.tensor([24000]), grl_lambda=1.0)
    assert out["speaker_logits"][1].shape[-1] == 4
    (out["log_probs"].logsumexp(-1).sum() + out["commit"] + out["speaker_logits"][1].sum()).backward()
    assert model.bottleneck.down.weight.grad.abs().sum() > 0
    assert model.speaker_heads["1"].mlp[0].in_features == 2 * 16  # the head sees what the cloud receives


def test_what_leaves_the_phone_is_attacked_as_the_cloud_receives_it(tiny_corpus):
    model = bottleneck_model(**VARIANTS["vq-2x32"])
    data = AudioSet.load(read_librispeech(tiny_corpus / "eval-speakers")[:3], progress=False)
    emb = layer_embeddings(model, data, [1], progress=False)[1]
    book = model.bottleneck.vq.codebook
    for e in emb:
        q = torch.from_numpy(e)
        assert e.shape[1] == 16
        assert torch.equal(model.bottleneck.vq.lookup(model.bottleneck.vq.indices(q)), q)  # codewords only
    assert book.shape == (2, 32, 8)


def test_export_ships_the_codebook_and_the_manifest_guards_it(tiny_corpus, tmp_path, one_torch_thread):
    model = bottleneck_model(**VARIANTS["vq-2x32"])
    ckpt = save_checkpoint(tmp_path / "bn.safetensors", model, CharTokenizer(), ["a", "b", "c", "d"], {})
    out, manifest = export_prefix(ExportRequest(checkpoint=ckpt, target="executorch", recipes=["executorch=fp32"],
                                                out=tmp_path / "export", corpus=tiny_corpus))
    assert manifest.data["output"]["shape"] == [1, model.cfg.chunk_frames, 16]
    read = ExportManifest.read(out)
    assert read.payload_codec == "vq"
    assert np.array_equal(read.codebook(), model.bottleneck.vq.codebook.numpy())
    # veil privacy --artifact attacks what the cloud receives: the codewords of the indices the phone sends
    prefix, runner = load_runners(read_export(out, ["executorch"]))[0][0]
    data = AudioSet.load(read_librispeech(tiny_corpus / "eval-speakers")[:2], progress=False)
    floats = layer_embeddings(model, data, [1], progress=False)[1]
    for frames, reference in zip(artifact_embeddings(runner, data, prefix.chunk, progress=False), floats):
        received = prefix.received(frames)
        assert received.shape == reference.shape and not np.array_equal(received, frames)
        assert np.mean(np.all(np.isclose(received, reference, atol=1e-5), axis=1)) > 0.95  # same codewords
    (out / "codebook.f32").write_bytes(b"\0" * 16)
    with pytest.raises(VeilError, match="codebook.f32: sha256 differs"):
        ExportManifest.read(out)


def test_a_noisy_bottleneck_exports_unit_rms_frames_and_its_noise_std(tiny_corpus, tmp_path, one_torch_thread):
    from toolkit.serve.client import PhoneChannel
    model = bottleneck_model(bottleneck_dim=16, bottleneck_noise=0.5)
    ckpt = save_checkpoint(tmp_path / "bn.safetensors", model, CharTokenizer(), ["a", "b", "c", "d"], {})
    out, _ = export_prefix(ExportRequest(checkpoint=ckpt, target="executorch", recipes=["executorch=fp32"],
                                         out=tmp_path / "export", corpus=tiny_corpus))
    read = ExportManifest.read(out)
    assert read.payload_codec == "int8" and read.noise_std == 0.5 and read.codebook() is None
    prefix, runner = load_runners(read_export(out, ["executorch"]))[0][0]
    data = AudioSet.load(read_librispeech(tiny_corpus / "eval-speakers")[:2], progress=False)
    for frames in artifact_embeddings(runner, data, prefix.chunk, progress=False):
        assert np.allclose(np.sqrt((frames ** 2).mean(1)), 1.0, atol=1e-3)  # the artifact emits unit-RMS frames
        received = prefix.received(frames)   # `veil privacy --artifact` attacks them with the phone's noise
        assert 0.4 < (received - frames).std() < 0.6
        sent = payload.decode(PhoneChannel(read).encode(frames))  # and the client sends them with it
        assert 0.4 < (sent - frames).std() < 0.6


def test_a_frozen_prefix_stays_what_the_phone_already_runs(tiny_corpus, tmp_path):
    torch.manual_seed(0)
    base = VeilModel(small_config(n_speakers=4))
    spk = sorted({u.speaker for u in read_librispeech(tiny_corpus / "train")})
    init = save_checkpoint(tmp_path / "init.safetensors", base, CharTokenizer(), spk, {})
    cfg = TrainConfig(corpus=str(tiny_corpus), out=str(tmp_path / "run"), steps=3, eval_every=3, dev_utts=2,
                      init_from=str(init), freeze_prefix=True, warmup=1, threads=1,
                      model=small_config(bottleneck_dim=16, vq_codes=8, vq_groups=2, grl_layers=[1]))
    train(cfg)
    trained = load_file(str(tmp_path / "run" / "last.safetensors"))
    before = base.state_dict()
    for name, value in before.items():
        if name.startswith(("frontend.", "subsampling.", "blocks.0.")):
            assert torch.equal(trained[name], value), name
    assert not torch.equal(trained["blocks.1.ff1.up.weight"], before["blocks.1.ff1.up.weight"])
    config = json.loads((tmp_path / "run" / "last.json").read_text())
    assert config["model"]["bottleneck_dim"] == 16 and config["model"]["vq_codes"] == 8
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert all(math.isfinite(r.get("dev_cer", 0.0)) for r in log)
    # the frontier attacks such a point through the init model's phone blocks, computed once
    point = load_checkpoint(tmp_path / "run" / "last.safetensors")[0].eval()
    k = point.cfg.split_layer
    torch.manual_seed(1)
    assert same_phone_blocks(point, base.eval(), k) and not same_phone_blocks(point, VeilModel(small_config()), k)
    data = AudioSet.load(read_librispeech(tiny_corpus / "eval-speakers")[:3], progress=False)
    shared = layer_embeddings(base, data, [k], progress=False)[k]
    direct = layer_embeddings(point, data, [k], progress=False)[k]
    for x, y in zip(shared, direct):
        assert y.shape[1] == 16 and np.allclose(transmit(point, x), y, atol=1e-5)


def test_the_service_serves_a_bottleneck_checkpoint_with_its_own_codebook(tmp_path):
    model = bottleneck_model(**VARIANTS["vq-2x32"])
    ckpt = save_checkpoint(tmp_path / "bn.safetensors", model, CharTokenizer(), ["a", "b", "c", "d"], {})
    served = ServedSuffix.load(ckpt)
    assert served.dim == 16 and served.codecs == ["vq"]
    assert served.codebook.shape == (2, 32, 8)
    prefix, _ = split(model)
    with torch.no_grad():
        z = prefix(torch.randn(1, model.cfg.chunk_samples) * 0.1)[0].numpy()
    received = payload.decode(payload.encode_vq(z, served.codebook), served.codebook)
    assert np.array_equal(served.labels([received])[0], served.labels([z])[0])  # the suffix quantizes z itself


def test_a_noisy_channel_adds_its_noise_on_the_phone_to_unit_rms_frames():
    model = bottleneck_model(bottleneck_dim=16, bottleneck_noise=0.5)
    prefix, suffix = split(model)
    pcm = torch.randn(16000 * 2 + 4000) * 0.1
    with torch.no_grad():
        z = torch.cat([prefix(c) for c in chunks_of(pcm, 16000)], 1)
        rms = z.pow(2).mean(-1).sqrt()
        assert torch.allclose(rms, torch.ones_like(rms), atol=1e-4)  # `down` cannot outgrow the noise
        torch.manual_seed(7)
        out = model(pcm[None], torch.tensor([pcm.shape[0]]))
        torch.manual_seed(7)
        received = z + 0.5 * torch.randn(z.shape)  # what the phone sends: the same draws
        parts = suffix(received, out["mask"])       # the cloud adds no noise of its own
        clean = suffix(z, out["mask"])
    valid = out["mask"][0]
    assert torch.allclose(parts[0, valid], out["log_probs"][0, valid], atol=1e-5)
    assert (clean[0, valid] - parts[0, valid]).abs().max() > 1e-2  # the model does read through noise
    with pytest.raises(ValueError, match="without a codebook"):
        VeilModel(small_config(bottleneck_dim=16, vq_codes=8, bottleneck_noise=0.5))


def test_a_noisy_channel_is_attacked_with_its_noise_reproducibly(tiny_corpus):
    model = bottleneck_model(bottleneck_dim=16, bottleneck_noise=0.5)
    data = AudioSet.load(read_librispeech(tiny_corpus / "eval-speakers")[:3], progress=False)
    first, again = (layer_embeddings(model, data, [1], progress=False)[1] for _ in range(2))
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    prefix, _ = split(model)
    with torch.no_grad():
        pcm = collate([data.pcm[0]])[0][0]
        z = torch.cat([prefix(c) for c in chunks_of(pcm, 16000)], 1)[0].numpy()
    noise = first[0] - z[: len(first[0])]
    assert abs(noise.std() - 0.5) < 0.05 and abs(noise.mean()) < 0.05  # the attackers see z + N(0, 0.25)


@pytest.mark.parametrize("variant", ["vq-2x32", "noise"])
def test_the_core_ml_estimate_runs_a_bottleneck_prefix_in_float16(variant):
    import copy
    from toolkit.parity.coreml_offline import Float16AfterFrontend
    model = bottleneck_model(**(VARIANTS.get(variant) or dict(bottleneck_dim=16, bottleneck_noise=0.5)))
    prefix, _ = split(model)
    pcm = torch.randn(1, 16000) * 0.1
    with torch.no_grad():
        est = Float16AfterFrontend(copy.deepcopy(prefix))(pcm)
        ref = prefix(pcm)
    assert est.dtype == torch.float32 and est.shape == ref.shape == (1, 25, 16)
    assert torch.allclose(est, ref, atol=0.05, rtol=0.05)


def channel_manifest(tmp_path, section: dict | None) -> ExportManifest:
    data = {"bottleneck": section} if section is not None else {}
    return ExportManifest(data, tmp_path)


def test_the_phone_channel_sends_what_the_manifests_bottleneck_allows(tmp_path):
    from toolkit.exporting.manifest import write_bottleneck
    from toolkit.serve.client import PhoneChannel
    model = bottleneck_model(**VARIANTS["vq-2x32"])
    vq = channel_manifest(tmp_path, write_bottleneck(model, model.cfg.split_layer, tmp_path))
    z = np.random.default_rng(0).normal(size=(50, 16)).astype(np.float32)
    channel = PhoneChannel(vq)
    assert channel.codec == "vq" and channel.encode(z) == payload.encode_vq(z, vq.codebook())
    for codec in ("int8", "fp16", "fp32"):  # continuous vectors would bypass the codebook
        with pytest.raises(VeilError, match="bypass the bottleneck"):
            PhoneChannel(vq, codec)
    plain = channel_manifest(tmp_path, None)
    assert PhoneChannel(plain).encode(z) == payload.encode(z, "int8")
    with pytest.raises(VeilError, match="no codebook"):
        PhoneChannel(plain, "vq")

    noisy_model = bottleneck_model(bottleneck_dim=16, bottleneck_noise=0.5)
    section = write_bottleneck(noisy_model, noisy_model.cfg.split_layer, tmp_path)
    assert section["noise_std"] == 0.5 and section["payload_codec"] == "int8"
    noisy = channel_manifest(tmp_path, section)
    z = np.zeros((500, 16), np.float32)
    z[:, 0] = 4.0  # a fixed int8 scale (4/127), fine enough to see the noise through
    for rng in (np.random.default_rng(3), None):  # seeded (evaluation), and the OS's secure source (phones)
        sent = payload.decode(PhoneChannel(noisy, "fp32", rng).encode(z))
        noise = (sent - z)[:, 1:]
        # 7,500 draws: the sd is within 5 % and the mean within 0.03 of N(0, 0.25) by more than 6 sigma
        assert abs(noise.std() - 0.5) < 0.025 and abs(noise.mean()) < 0.03
    assert PhoneChannel(noisy, "fp32", np.random.default_rng(3)).encode(z) != PhoneChannel(noisy, "fp32").encode(z)
    from toolkit.privacy.artifact import ExportedPrefix  # `veil privacy --artifact` attacks it with the noise
    attacked = ExportedPrefix(None, {}, tmp_path, 1, None, {}, None, noisy.noise_std)
    first, second = attacked.received(z), attacked.received(z)
    assert abs((first - z).std() - 0.5) < 0.025 and not np.array_equal(first, second)  # fresh noise each time
    for bad in (-0.1, "0.5", float("nan"), True):
        with pytest.raises(VeilError, match="noise_std"):
            PhoneChannel(channel_manifest(tmp_path, {**section, "noise_std": bad}))
    with pytest.raises(VeilError, match="noise_std goes with payload_codec int8"):
        _ = channel_manifest(tmp_path, {**write_bottleneck(model, 1, tmp_path), "noise_std": 0.5}).noise_std


def test_veil_transcribe_of_the_noisy_default_model_gives_the_same_text_every_run(tiny_corpus, capsys):
    """The default model's channel adds noise; `veil transcribe` draws it seeded (NOISE_SEED), not from torch's
    global generator, which is moved between the two runs."""
    from toolkit.cli import main
    from toolkit.paths import DEFAULT_MODEL
    assert load_checkpoint(DEFAULT_MODEL)[0].cfg.bottleneck_noise > 0
    flacs = sorted(str(f) for f in (tiny_corpus / "test").rglob("*.flac"))[:2]
    texts = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        assert main(["transcribe", *flacs, "--checkpoint", str(DEFAULT_MODEL)]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and texts[0].count("\t") == 2
