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
from toolkit.training.statistics_adversary import statistics_penalty


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
    freeze_blocks: int = field(default=0, metadata={
        "metavar": "N", "help": "freeze the frontend, subsampling and blocks 1..N (0 = none; --freeze-prefix: all "
                                "of the phone's blocks): deeper phone blocks adapt, the first ones keep their weights"})
    vq_commit_weight: float = 0.25  # weight of the bottleneck's codebook commitment loss
    distill_from: str = field(default="", metadata={
        "metavar": "CKPT", "help": "teacher checkpoint: the cloud's posteriors learn its posteriors on the clean "
                                   "utterance (KL, weight --distill-weight), so a noisy channel converges sooner"})
    distill_weight: float = 0.0   # weight of the KL to the teacher's posteriors (with --distill-from)
    split_ctc_weight: float = 0.3  # weight of the CTC loss on what the cloud receives (with --split-ctc)
    fisher_weight: float = 0.0    # weight of the statistics adversary: the speakers' Fisher ratio of what the cloud receives
    model: ModelConfig = field(default_factory=ModelConfig)


RATE_PROBE_STEPS = 100  # --time-budget: skip this many steps (start-up), then time as many more


def lr_at(step: int, cfg: TrainConfig, total: int | None = None) -> float:
    """Linear warm-up, then cosine decay to 5 % of the peak at ``total`` steps (default ``cfg.steps``; a
    ``--time-budget`` run fits its own)."""
    total = cfg.steps if total is None else total
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    p = min(1.0, (step - cfg.warmup) / max(1, total - cfg.warmup))
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


def _ctc(log_probs, frame_lengths, targets: list[torch.Tensor]) -> torch.Tensor:
    dev = log_probs.device
    return F.ctc_loss(log_probs.transpose(0, 1), torch.cat(targets).to(dev), frame_lengths,
                      torch.tensor([len(t) for t in targets], device=dev), blank=0, zero_infinity=True)


def compute_losses(model, pcm, lengths, targets: list[torch.Tensor], speaker_labels: torch.Tensor | None,
                   augment: bool = False, grl_lambda: float = 0.0, generator=None, outputs: dict | None = None):
    """CTC loss (mean over the batch, per target token), speaker CE per GRL layer and the bottleneck's
    codebook commitment loss (0 without a codebook). ``outputs``, when given, receives the forward's outputs
    (the other losses of a step read them)."""
    o = model(pcm, lengths, augment=augment, grl_lambda=grl_lambda, generator=generator)
    ctc = _ctc(o["log_probs"], o["frame_lengths"], targets)
    spk = {} if speaker_labels is None else {
        k: F.cross_entropy(logits, speaker_labels) for k, logits in o["speaker_logits"].items()}
    if outputs is not None:
        outputs.update(o)
    return ctc, spk, o["commit"]


class TeacherPosteriors:
    """A teacher's CTC log-posteriors of each training utterance, computed once on the clean audio (no
    SpecAugment, the teacher in eval mode) and kept in memory (float16, ~0.2 MB per minute of audio)."""

    def __init__(self, checkpoint: str, student_cfg: ModelConfig, device: str):
        self.model, _ = load_checkpoint(checkpoint)
        self.model.to(device).eval().requires_grad_(False)
        tcfg = self.model.cfg
        if tcfg.frame_samples != student_cfg.frame_samples or tcfg.vocab_size != student_cfg.vocab_size:
            raise VeilError(f"{checkpoint}: the teacher's frames or vocabulary differ from the student's")
        self.cache: dict[int, torch.Tensor] = {}

    @torch.no_grad()
    def batch(self, indices: list[int], pcm: torch.Tensor, lengths: torch.Tensor, frames: int) -> torch.Tensor:
        """(B, frames, V) teacher log-probs for utterances ``indices`` (their padded ``pcm``), zero past each
        utterance's frames."""
        missing = [j for j, i in enumerate(indices) if i not in self.cache]
        if missing:
            o = self.model(pcm[missing], lengths[missing])
            for j, lp, n in zip(missing, o["log_probs"], o["frame_lengths"].tolist()):
                self.cache[indices[j]] = lp[:n].to(torch.float16).cpu()
        out = pcm.new_zeros(len(indices), frames, self.model.cfg.vocab_size)
        for j, i in enumerate(indices):
            t = self.cache[i][:frames]
            out[j, : len(t)] = t.to(out)
        return out


def distillation_loss(student_log_probs: torch.Tensor, teacher_log_probs: torch.Tensor,
                      mask: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) per valid frame, averaged over the batch's valid frames."""
    kl = (teacher_log_probs.exp() * (teacher_log_probs - student_log_probs)).sum(-1)
    w = mask.to(kl.dtype)
    return (kl * w).sum() / w.sum().clamp_min(1.0)


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


def prefix_modules(model: VeilModel, upto: int | None = None) -> list[torch.nn.Module]:
    """The modules of the phone's computation before any bottleneck: frontend, subsampling, blocks 1..K
    (``upto``, default the split layer)."""
    k = model.cfg.split_layer if upto is None else upto
    return [model.frontend, model.subsampling, *model.blocks[:k]]


def frozen_modules(cfg: TrainConfig, model: VeilModel) -> list[torch.nn.Module]:
    """What ``--freeze-prefix`` / ``--freeze-blocks N`` keep fixed (and in eval mode: no dropout)."""
    if cfg.freeze_prefix:
        return prefix_modules(model)
    return prefix_modules(model, min(cfg.freeze_blocks, model.cfg.n_blocks)) if cfg.freeze_blocks else []


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


@dataclass
class Run:
    """What a training run holds while it runs (built by :func:`_set_up`)."""
    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: str
    model: VeilModel
    ddp_model: torch.nn.Module
    opt: torch.optim.Optimizer
    trained: list
    frozen: list
    tokenizer: CharTokenizer
    speakers: list
    train_set: AudioSet
    dev_set: AudioSet
    targets: list
    spk_labels: torch.Tensor
    teacher: TeacherPosteriors | None
    step: int
    total_steps: int
    provenance: dict
    best_cer: float

    @property
    def main(self) -> bool:
        return self.rank == 0


def _start_processes(cfg: TrainConfig) -> tuple[int, int, str]:
    """Rank, world size and device; threads and seeds."""
    rank, world = _dist_info()
    if world > 1:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        torch.set_num_threads(cfg.threads or max(1, (os.cpu_count() or 1) // world))
    else:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    torch.manual_seed(cfg.seed + rank)
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    return rank, world, device


def _build_model(cfg: TrainConfig, out: Path, speakers: list, tokenizer: CharTokenizer) -> tuple[VeilModel, bool, bool]:
    """The model to train: resumed from ``out/last``, or new (from ``--init-from``'s matching weights). Returns
    it, whether it resumed, and whether its bottleneck is new (to be initialized from data)."""
    if (out / "last.safetensors").exists():
        model, ckpt = load_checkpoint(out / "last.safetensors")
        if ckpt["speakers"] != speakers:
            raise VeilError(f"{out}: checkpoint speakers differ from {cfg.corpus}/train; use a new --out")
        return model, True, False
    mcfg = ModelConfig(**{**cfg.model.to_dict(), "vocab_size": tokenizer.vocab_size, "n_speakers": len(speakers)})
    model = VeilModel(mcfg)
    taken = {}
    if cfg.init_from:
        init, _ = load_checkpoint(cfg.init_from)
        own = model.state_dict()
        taken = {k: v for k, v in init.state_dict().items()
                 if k in own and own[k].shape == v.shape and not k.startswith("speaker_heads")}
        own.update(taken)
        # a new cloud stack (the init model has none) starts as copies of the init model's last blocks where
        # their shapes fit: trained conformer blocks converge sooner than random ones
        n_init, n_cloud = init.cfg.n_blocks, mcfg.suffix_blocks
        if n_cloud and not init.cfg.suffix_blocks and n_cloud <= n_init and init.cfg.d_model == mcfg.cloud_dim:
            for j in range(n_cloud):
                src = f"blocks.{n_init - n_cloud + j}."
                for k, v in init.state_dict().items():
                    if k.startswith(src):
                        own[f"cloud_blocks.{j}.{k[len(src):]}"] = v
                        taken[f"cloud_blocks.{j}.{k[len(src):]}"] = v
        model.load_state_dict(own)
    return model, False, model.bottleneck is not None and "bottleneck.down.weight" not in taken


def _resume(cfg: TrainConfig, out: Path, model: VeilModel, opt, provenance: dict) -> tuple[int, int, float]:
    """Step, schedule length and best dev CER of the run in ``out`` (its optimizer state loaded into ``opt``);
    its training seconds carried into ``provenance``."""
    prev = json.loads((out / "last.json").read_text())["provenance"]
    provenance["train_seconds"] = prev.get("train_seconds", 0.0)
    if (out / "train_state.safetensors").exists():
        step = _load_state(out, model, opt)
    else:  # weights only (e.g. a committed checkpoint): continue the schedule with fresh Adam moments
        step = int(prev["steps"])
        tqdm.write(f"{out}: no optimizer state, resuming weights at step {step} with a fresh optimizer", file=sys.stderr)
    # a time-budgeted run resumes with the schedule it fitted, not the requested --steps
    fitted = (prev.get("train_config") or {}).get("steps")
    total = int(fitted) if cfg.time_budget_min and fitted else cfg.steps
    return step, total, prev.get("best_dev_cer", math.inf)


def _set_up(cfg: TrainConfig, command: str) -> Run:
    """Processes, data, model, optimizer, teacher; resumes from ``out`` when it holds a run."""
    rank, world, device = _start_processes(cfg)
    out = Path(cfg.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    corpus = Path(cfg.corpus)
    manifest = read_manifest(corpus) if (corpus / "manifest.json").exists() else {}
    train_utts = read_librispeech(corpus / "train")
    dev_utts = read_librispeech(corpus / "dev")[: cfg.dev_utts]
    speakers = sorted({u.speaker for u in train_utts})
    tokenizer = CharTokenizer()
    model, resume, fresh_bottleneck = _build_model(cfg, out, speakers, tokenizer)
    frozen = frozen_modules(cfg, model)
    for module in frozen:
        module.requires_grad_(False)
    model.to(device)
    main = rank == 0
    train_set = AudioSet.load(train_utts, "loading train", progress=main, workers=cfg.load_workers, cache=True)
    dev_set = AudioSet.load(dev_utts, "loading dev", progress=main, workers=cfg.load_workers)
    if not resume and not cfg.init_from:
        feature_stats(model, train_set, seed=cfg.seed)
    if fresh_bottleneck:
        init_bottleneck(model, train_set, seed=cfg.seed)
    spk_index = {s: i for i, s in enumerate(speakers)}
    ddp_model = model
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=True)
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay, betas=(0.9, 0.98))
    teacher = TeacherPosteriors(cfg.distill_from, model.cfg, device) if cfg.distill_from and cfg.distill_weight else None
    provenance = {
        "command": command, "corpus": str(corpus), "corpus_seed": manifest.get("seed"),
        "corpus_size": manifest.get("size"), "train_utterances": len(train_utts), "world_size": world,
        "device": device, "train_config": {k: v for k, v in cfg.__dict__.items() if k != "model"},
        "train_seconds": 0.0,
    }
    step, total, best_cer = _resume(cfg, out, model, opt, provenance) if resume else (0, cfg.steps, math.inf)
    provenance["train_config"]["steps"] = total
    return Run(cfg, out, rank, world, device, model, ddp_model, opt, trained, frozen, tokenizer, speakers, train_set,
               dev_set, [torch.tensor(tokenizer.encode(u.text), dtype=torch.long) for u in train_utts],
               torch.tensor([spk_index[u.speaker] for u in train_utts]), teacher, step, total, provenance, best_cer)


def _step_loss(run: Run, batch: list[int], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
    """One batch's total loss and its parts (for the log): CTC, speaker CE per GRL layer (through the GRL at
    the schedule's lambda), codebook commitment, CTC on what the cloud receives, distillation, Fisher ratio."""
    cfg, model, device = run.cfg, run.model, run.device
    pcm, lens = collate([run.train_set.pcm[i] for i in batch])
    pcm, lens = pcm.to(device), lens.to(device)
    targets = [run.targets[i] for i in batch]
    speakers = run.spk_labels[batch].to(device)
    lam = ganin_lambda(run.step / run.total_steps, model.cfg.grl_lambda_max, model.cfg.grl_gamma)
    o: dict = {}
    ctc, spk_losses, commit = compute_losses(run.ddp_model, pcm, lens, targets, speakers, augment=True,
                                             grl_lambda=lam, generator=generator, outputs=o)
    loss = ctc + cfg.speaker_weight * sum(spk_losses.values()) + cfg.vq_commit_weight * commit
    parts = {"ctc": ctc.item(), "commit": float(commit.detach()), "lambda": lam,
             **{f"speaker_ce_{k}": v.item() for k, v in spk_losses.items()}}
    if "split_log_probs" in o:
        split_ctc = _ctc(o["split_log_probs"], o["frame_lengths"], targets)
        loss = loss + cfg.split_ctc_weight * split_ctc
        parts["split_ctc"] = split_ctc.item()
    if run.teacher is not None:
        teacher = run.teacher.batch(batch, pcm, lens, o["log_probs"].shape[1])
        kl = distillation_loss(o["log_probs"], teacher, o["mask"])
        loss = loss + cfg.distill_weight * kl
        parts["distill_kl"] = kl.item()
    if cfg.fisher_weight:
        fisher = statistics_penalty(o["received"], o["mask"], speakers, model.cfg.chunk_frames)
        loss = loss + cfg.fisher_weight * fisher
        parts["fisher"] = fisher.item()
    return loss, parts


class StepBudget:
    """``--time-budget``: skip ``RATE_PROBE_STEPS`` steps (start-up), time as many more, then fit the run's
    length (and with it the cosine schedule) to the minutes left. Every DDP rank takes rank 0's estimate."""

    def __init__(self, run: Run):
        self.minutes, self.start, self.first = run.cfg.time_budget_min, time.time(), run.step
        self.rate_start = None

    def after_step(self, run: Run) -> int | None:
        """The fitted total when it has just been fitted, else None."""
        if not self.minutes:
            return None
        if run.step == self.first + RATE_PROBE_STEPS:
            self.rate_start = time.time()
        if run.step != self.first + 2 * RATE_PROBE_STEPS:
            return None
        rate = RATE_PROBE_STEPS / (time.time() - self.rate_start)
        left = self.minutes * 60 - (time.time() - self.start)
        total = max(run.step + 1, run.step + int(rate * left))
        if run.world > 1:
            n = torch.tensor([total], device=run.device)
            dist.broadcast(n, 0)
            total = int(n.item())
        tqdm.write(f"{run.out}: {rate:.2f} steps/s -> {total} steps in {self.minutes} min", file=sys.stderr)
        return total


def _evaluate_and_checkpoint(run: Run, clock: list[float]) -> dict:
    """Dev CER/WER, ``best`` when it improved, ``last`` with the optimizer state (rank 0 only)."""
    model, out, prov = run.model, run.out, run.provenance
    dev = evaluate_set(model, run.tokenizer, run.dev_set, run.device)
    prov["train_seconds"] += time.time() - clock[0]
    clock[0] = time.time()
    prov.update({"dev_cer": round(dev["cer"], 3), "dev_wer": round(dev["wer"], 3)})
    if dev["cer"] < run.best_cer:
        run.best_cer = dev["cer"]
        prov["best_dev_cer"] = round(run.best_cer, 3)
        save_checkpoint(out / "best.safetensors", model, run.tokenizer, run.speakers, {**prov, "steps": run.step})
    _save_state(out, run.step, model, run.opt, run.tokenizer, run.speakers, prov)
    with open(out / "log.jsonl", "a") as f:
        f.write(json.dumps({"step": run.step, "dev_cer": dev["cer"], "dev_wer": dev["wer"]}) + "\n")
    tqdm.write(f"step {run.step}: dev CER {dev['cer']:.2f} % WER {dev['wer']:.2f} %", file=sys.stderr)
    return {"step": run.step, **dev}


def _batches(run: Run, epoch: int) -> list[list[int]]:
    cfg = run.cfg
    max_samples = int(cfg.max_batch_seconds * run.model.cfg.frontend.sample_rate)
    batches = length_batches([len(x) for x in run.train_set.pcm], max_samples, seed=cfg.seed + epoch,
                             max_batch=cfg.max_batch_utts)
    return batches[run.rank::run.world][: len(batches) // run.world]


def train(cfg: TrainConfig, command: str = "") -> dict:
    """Train (or resume) the run ``cfg.out``: set up, then batches until the schedule's last step or the time
    limit, evaluating and checkpointing every ``eval_every`` steps and at the end."""
    run = _set_up(cfg, command)
    budget = StepBudget(run)
    clock, wall_start = [time.time()], time.time()
    gen = torch.Generator().manual_seed(cfg.seed * 1000 + run.rank)
    bar = tqdm(total=run.total_steps, initial=run.step, desc="train", unit="step", disable=not run.main,
               mininterval=5.0)
    per_epoch = max(1, len(_batches(run, 0)))
    epoch, skip = divmod(run.step, per_epoch)  # resume: continue mid-epoch where the last run stopped
    result, stop = {}, False
    while run.step < run.total_steps and not stop:
        for batch in _batches(run, epoch)[skip:]:
            run.ddp_model.train()
            for module in run.frozen:  # a frozen block computes what the phone computes: no dropout
                module.eval()
            loss, parts = _step_loss(run, batch, gen)
            for g in run.opt.param_groups:
                g["lr"] = lr_at(run.step, cfg, run.total_steps)
            run.opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(run.trained, 5.0)
            run.opt.step()
            run.step += 1
            if cfg.head_reset_every and run.model.speaker_heads and run.step % cfg.head_reset_every == 0:
                reset_speaker_heads(run.model, run.opt, cfg.seed * 1_000_003 + run.step)
            fitted = budget.after_step(run)
            if fitted is not None:
                run.total_steps = bar.total = run.provenance["train_config"]["steps"] = fitted
            if run.main:
                bar.update(1)
                bar.set_postfix({k: f"{v:.3f}" for k, v in parts.items() if k != "commit"})
                if run.step % 50 == 0:
                    with open(run.out / "log.jsonl", "a") as f:
                        f.write(json.dumps({"step": run.step, "lr": lr_at(run.step, cfg, run.total_steps),
                                            **{k: round(v, 4) for k, v in parts.items()}}) + "\n")
            timeout = cfg.time_limit_min and (time.time() - wall_start) > cfg.time_limit_min * 60
            if run.step % cfg.eval_every == 0 or run.step >= run.total_steps or timeout:
                if run.main:
                    result = _evaluate_and_checkpoint(run, clock)
                stop = bool(timeout)
            if run.step >= run.total_steps or stop:
                break
        epoch, skip = epoch + 1, 0
    bar.close()
    if run.world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return result
