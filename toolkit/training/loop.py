"""`veil train`: CTC + speaker-adversarial training, resumable, single process or torchrun (DDP).

One plain loop. Each step: chunked prefix + suffix forward, CTC loss, plus for every GRL layer the speaker
cross-entropy through the gradient reversal layer with Ganin's lambda at the current progress. Checkpoints
(``last``, ``best`` by dev CER) and the optimizer state go to ``--out`` every ``--eval-every`` steps; a rerun
with the same ``--out`` resumes from ``last``.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from safetensors.torch import load_file
from torch.nn import functional as F
from tqdm import tqdm

from toolkit.data.corpus_build import read_manifest
from toolkit.data.dataset import AudioSet, collate, length_batches
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.evaluate import evaluate_set
from toolkit.errors import VeilError
from toolkit.model.asr import ModelConfig, Prefix, VeilModel
from toolkit.files import atomic_save_tensors
from toolkit.model.checkpoint import load_checkpoint, save_checkpoint
from toolkit.model.grl import ganin_lambda
from toolkit.paths import DEFAULT_CORPUS
from toolkit.text.tokenizer import CharTokenizer


@dataclass
class TrainConfig:
    """One training run. ``veil train`` builds its options from these fields and ModelConfig's
    (``toolkit/config_flags.py``: the comment on a field's line is its help), and ``--config RUN.json`` reads
    the same fields from a file."""
    corpus: str = field(default=str(DEFAULT_CORPUS), metadata={
        "metavar": "DIR", "help": "LibriSpeech-layout corpus root (train and dev splits)"})
    out: str = field(default="", metadata={"metavar": "DIR", "help": "run directory (checkpoints, log); rerun to resume"})
    steps: int = 20000            # optimizer steps
    lr: float = 1.5e-3            # peak learning rate (linear warm-up, cosine decay to 5 %)
    warmup: int = 800             # warm-up steps
    weight_decay: float = 1e-2    # AdamW weight decay
    max_batch_seconds: float = field(default=60.0, metadata={
        "flag": "batch-seconds", "help": "audio seconds per batch (padded)"})
    eval_every: int = 500         # dev evaluation and checkpoint every N steps
    dev_utts: int = 256           # dev utterances evaluated
    speaker_weight: float = 1.0   # weight of each speaker loss
    seed: int = 0                 # seeds the model's initialization, batching and SpecAugment
    time_limit_min: float = field(default=0.0, metadata={
        "flag": "time-limit", "help": "minutes; checkpoint and stop after this (0 = none)"})
    init_from: str = field(default="", metadata={
        "metavar": "CKPT", "help": "start from these weights (e.g. the baseline) instead of random"})
    threads: int = 0              # CPU threads (0 = all cores); small models train as fast on 1
    max_batch_utts: int = field(default=64, metadata={
        "flag": "batch-utts", "help": "at most this many utterances per batch"})
    time_budget_min: float = field(default=0.0, metadata={
        "flag": "time-budget", "help": "minutes: time 100 steps, then fit --steps (and the LR schedule) to this budget"})
    load_workers: int = 1         # processes decoding the corpus (decoded audio is cached in the corpus dir)
    head_reset_every: int = field(default=0, metadata={
        "flag": "head-reset", "metavar": "N",
        "help": "re-initialize the speaker heads (and their Adam moments) every N steps: fresh adversaries"})
    freeze_prefix: bool = False   # train only what follows the phone's blocks (bottleneck, suffix, heads)
    vq_commit_weight: float = 0.25  # weight of the bottleneck's codebook commitment loss
    model: ModelConfig = field(default_factory=ModelConfig)


RATE_PROBE_STEPS = 100  # --time-budget: skip this many steps (start-up), then time as many more


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak at ``cfg.steps``."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup))
    return cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _dist_info() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return (int(os.environ.get("RANK", "0")), world)


def feature_stats(model: VeilModel, data: AudioSet, n: int = 300, seed: int = 0) -> None:
    """Set the frontend's per-bin standardization from ``n`` training utterances."""
    idx = random.Random(seed).sample(range(len(data)), min(n, len(data)))
    with torch.no_grad():
        feats = torch.cat([model.frontend.log_mel(collate([data.pcm[i]])[0])[0] for i in idx])
    model.frontend.feat_mean.copy_(feats.mean(0))
    model.frontend.feat_std.copy_(feats.std(0).clamp_min(1e-3))


def compute_losses(model, pcm, lengths, targets: list[torch.Tensor], speaker_labels: torch.Tensor | None,
                   augment: bool = False, grl_lambda: float = 0.0, generator=None):
    """CTC loss (mean over the batch, per target token), speaker CE per GRL layer and the bottleneck's
    codebook commitment loss (0 without a codebook)."""
    o = model(pcm, lengths, augment=augment, grl_lambda=grl_lambda, generator=generator)
    dev = pcm.device
    ctc = F.ctc_loss(o["log_probs"].transpose(0, 1), torch.cat(targets).to(dev), o["frame_lengths"],
                     torch.tensor([len(t) for t in targets], device=dev), blank=0, zero_infinity=True)
    spk = {} if speaker_labels is None else {
        k: F.cross_entropy(logits, speaker_labels) for k, logits in o["speaker_logits"].items()}
    return ctc, spk, o["commit"]


def reset_speaker_heads(model: VeilModel, opt: torch.optim.Optimizer, seed: int) -> None:
    """Replace every speaker head by a freshly initialized one (same seed on every DDP rank) and drop its
    optimizer moments. A GRL adversary that trains alongside the encoder gets fooled by features that a
    fresh attacker still reads; periodic resets make the encoder face new adversaries, as attackers are."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for k, head in model.speaker_heads.items():
            head.load_state_dict(model.new_speaker_head(int(k)).state_dict())
            for p in head.parameters():
                opt.state.pop(p, None)


def prefix_modules(model: VeilModel) -> list[torch.nn.Module]:
    """The modules of the phone's computation before any bottleneck: frontend, subsampling, blocks 1..K."""
    return [model.frontend, model.subsampling, *model.blocks[: model.cfg.split_layer]]


@torch.no_grad()
@torch.no_grad()
def init_bottleneck(model: VeilModel, data: AudioSet, n: int = 200, seed: int = 0) -> None:
    """Start the bottleneck where it loses least: ``down``/``up`` as the PCA of the split block's output over
    ``n`` training utterances, the codebook as k-means of their projections (on the model's device)."""
    idx = random.Random(seed).sample(range(len(data)), min(n, len(data)))
    prefix = Prefix(model, model.cfg.split_layer, bottleneck=False).eval()
    device = next(model.parameters()).device
    cs = model.cfg.chunk_samples
    frames = []
    for i in idx:
        pcm, _ = collate([data.pcm[i]])
        pcm = F.pad(pcm, (0, -pcm.shape[1] % cs)).reshape(-1, cs)
        frames.append(prefix(pcm.to(device)).reshape(-1, model.cfg.d_model))
    model.bottleneck.init_from(torch.cat(frames), seed=seed)


def _save_state(out: Path, step: int, model, opt, tokenizer, speakers, provenance) -> None:
    save_checkpoint(out / "last.safetensors", model, tokenizer, speakers, {**provenance, "steps": step})
    tensors, meta = {}, {}
    for i, (p, st) in enumerate(zip(model.parameters(), [opt.state.get(p, {}) for p in model.parameters()])):
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"{i}.{k}"] = v
    meta["step"] = str(step)
    atomic_save_tensors(tensors, out / "train_state.safetensors", metadata=meta)


def _load_state(out: Path, model, opt) -> int:
    state = load_file(str(out / "train_state.safetensors"))
    params = list(model.parameters())
    for key, v in state.items():
        i, k = key.split(".", 1)
        opt.state[params[int(i)]][k] = v
    with open(out / "last.json") as f:
        return int(json.load(f)["provenance"]["steps"])


def train(cfg: TrainConfig, command: str = "") -> dict:
    rank, world = _dist_info()
    if world > 1:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    main = rank == 0
    out = Path(cfg.out)
    if main:
        out.mkdir(parents=True, exist_ok=True)

    corpus = Path(cfg.corpus)
    manifest = read_manifest(corpus) if (corpus / "manifest.json").exists() else {}
    train_utts = read_librispeech(corpus / "train")
    dev_utts = read_librispeech(corpus / "dev")[: cfg.dev_utts]
    speakers = sorted({u.speaker for u in train_utts})
    spk_index = {s: i for i, s in enumerate(speakers)}
    tokenizer = CharTokenizer()

    resume = (out / "last.safetensors").exists()
    fresh_bottleneck = False
    if resume:
        model, ckpt = load_checkpoint(out / "last.safetensors")
        if ckpt["speakers"] != speakers:
            raise VeilError(f"{out}: checkpoint speakers differ from {corpus / 'train'}; use a new --out")
    else:
        mcfg = ModelConfig(**{**cfg.model.to_dict(), "vocab_size": tokenizer.vocab_size,
                              "n_speakers": len(speakers)})
        model = VeilModel(mcfg)
        if cfg.init_from:
            init, _ = load_checkpoint(cfg.init_from)
            own = model.state_dict()
            taken = {k: v for k, v in init.state_dict().items()
                     if k in own and own[k].shape == v.shape and not k.startswith("speaker_heads")}
            own.update(taken)
            model.load_state_dict(own)
        fresh_bottleneck = model.bottleneck is not None and "bottleneck.down.weight" not in (
            taken if cfg.init_from else {})
    if cfg.freeze_prefix:
        for module in prefix_modules(model):
            module.requires_grad_(False)
    model.to(device)
    train_set = AudioSet.load(train_utts, "loading train", progress=main, workers=cfg.load_workers, cache=True)
    dev_set = AudioSet.load(dev_utts, "loading dev", progress=main, workers=cfg.load_workers)
    if not resume and not cfg.init_from:
        feature_stats(model, train_set, seed=cfg.seed)
    if fresh_bottleneck:
        init_bottleneck(model, train_set, seed=cfg.seed)
    targets = [torch.tensor(tokenizer.encode(u.text), dtype=torch.long) for u in train_utts]
    spk_labels = torch.tensor([spk_index[u.speaker] for u in train_utts])

    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    step = 0
    if resume:
        if (out / "train_state.safetensors").exists():
            step = _load_state(out, model, opt)
        else:  # weights only (e.g. a committed checkpoint): continue the schedule with fresh Adam moments
            step = int(json.loads((out / "last.json").read_text())["provenance"]["steps"])
            tqdm.write(f"{out}: no optimizer state, resuming weights at step {step} with a fresh optimizer",
                       file=sys.stderr)

    provenance = {
        "command": command, "corpus": str(corpus), "corpus_seed": manifest.get("seed"),
        "corpus_size": manifest.get("size"), "train_utterances": len(train_utts), "world_size": world,
        "device": device, "train_config": {k: v for k, v in cfg.__dict__.items() if k != "model"},
    }
    log_path = out / "log.jsonl"
    best_cer = math.inf
    if resume:
        prev = json.loads((out / "last.json").read_text())["provenance"]
        best_cer = prev.get("best_dev_cer", math.inf)
        provenance["train_seconds"] = prev.get("train_seconds", 0.0)
    provenance.setdefault("train_seconds", 0.0)
    max_samples = int(cfg.max_batch_seconds * model.cfg.frontend.sample_rate)
    lengths = [len(x) for x in train_set.pcm]
    start = wall_start = time.time()
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + rank)
    bar = tqdm(total=cfg.steps, initial=step, desc="train", unit="step", disable=not main, mininterval=5.0)
    per_epoch = max(1, len(length_batches(lengths, max_samples, 0, cfg.max_batch_utts)) // world)
    budget_start, budget_from = time.time(), step
    epoch, skip = divmod(step, per_epoch)  # resume: continue mid-epoch where the last run stopped
    result = {}
    stop = False
    while step < cfg.steps and not stop:
        batches = length_batches(lengths, max_samples, seed=cfg.seed + epoch, max_batch=cfg.max_batch_utts)
        batches = batches[rank::world][: len(batches) // world]
        for batch in batches[skip:]:
            ddp_model.train()
            if cfg.freeze_prefix:  # a frozen prefix computes exactly what the phone computes: no dropout
                for module in prefix_modules(model):
                    module.eval()
            pcm, lens = collate([train_set.pcm[i] for i in batch])
            lam = ganin_lambda(step / cfg.steps, model.cfg.grl_lambda_max, model.cfg.grl_gamma)
            ctc, spk_losses, commit = compute_losses(
                ddp_model, pcm.to(device), lens.to(device), [targets[i] for i in batch], spk_labels[batch].to(device),
                augment=True, grl_lambda=lam, generator=gen)
            loss = ctc + cfg.speaker_weight * sum(spk_losses.values()) + cfg.vq_commit_weight * commit
            for g in opt.param_groups:
                g["lr"] = lr_at(step, cfg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trained, 5.0)
            opt.step()
            step += 1
            if cfg.head_reset_every and model.speaker_heads and step % cfg.head_reset_every == 0:
                reset_speaker_heads(model, opt, cfg.seed * 1_000_003 + step)
            if cfg.time_budget_min and step == budget_from + RATE_PROBE_STEPS:
                rate_start = time.time()  # the first steps include start-up; time the next ones
            if cfg.time_budget_min and step == budget_from + 2 * RATE_PROBE_STEPS:
                # fix the schedule's length from the measured rate, so the cosine ends with the budget
                rate = RATE_PROBE_STEPS / (time.time() - rate_start)
                left = cfg.time_budget_min * 60 - (time.time() - budget_start)
                cfg.steps = max(step + 1, step + int(rate * left))
                if world > 1:  # every rank must stop at the same step: rank 0's estimate rules
                    n = torch.tensor([cfg.steps], device=device)
                    dist.broadcast(n, 0)
                    cfg.steps = int(n.item())
                provenance["train_config"]["steps"] = cfg.steps
                bar.total = cfg.steps
                tqdm.write(f"{out}: {rate:.2f} steps/s -> {cfg.steps} steps in {cfg.time_budget_min} min",
                           file=sys.stderr)
            if main:
                bar.update(1)
                bar.set_postfix(ctc=f"{ctc.item():.3f}", **{f"spk{k}": f"{v.item():.2f}" for k, v in spk_losses.items()},
                                lam=f"{lam:.2f}")
                if step % 50 == 0:
                    with open(log_path, "a") as f:
                        f.write(json.dumps({"step": step, "ctc": round(ctc.item(), 4), "lr": lr_at(step, cfg),
                                            "commit": round(float(commit), 4),
                                            "lambda": round(lam, 4),
                                            **{f"speaker_ce_{k}": round(v.item(), 4) for k, v in spk_losses.items()}})
                                + "\n")
            timeout = cfg.time_limit_min and (time.time() - wall_start) > cfg.time_limit_min * 60
            if step % cfg.eval_every == 0 or step >= cfg.steps or timeout:
                if main:
                    dev = evaluate_set(model, tokenizer, dev_set, device)
                    provenance["train_seconds"] = provenance["train_seconds"] + (time.time() - start)
                    start = time.time()
                    provenance.update({"dev_cer": round(dev["cer"], 3), "dev_wer": round(dev["wer"], 3)})
                    if dev["cer"] < best_cer:
                        best_cer = dev["cer"]
                        provenance["best_dev_cer"] = round(best_cer, 3)
                        save_checkpoint(out / "best.safetensors", model, tokenizer, speakers,
                                        {**provenance, "steps": step})
                    _save_state(out, step, model, opt, tokenizer, speakers, provenance)
                    with open(log_path, "a") as f:
                        f.write(json.dumps({"step": step, "dev_cer": dev["cer"], "dev_wer": dev["wer"]}) + "\n")
                    tqdm.write(f"step {step}: dev CER {dev['cer']:.2f} % WER {dev['wer']:.2f} %", file=sys.stderr)
                    result = {"step": step, **dev}
                if timeout:
                    stop = True
            if step >= cfg.steps or stop:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
