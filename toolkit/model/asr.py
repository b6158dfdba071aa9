"""Veil's ASR model: PCM -> log-mel -> conv subsampling -> conformer blocks -> CTC, plus speaker heads.

Blocks 1..split_layer form the on-device *prefix* and are chunk-local: the utterance is cut into fixed
``chunk_samples`` chunks (last one zero-padded) and each chunk runs alone, in training exactly as on the
phone. Blocks split_layer+1..L (the cloud *suffix*) see the whole utterance. Speaker heads sit behind a GRL
after each block index in ``grl_layers`` (see ``toolkit/model/grl.py``).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from toolkit.chunking import ChunkSpec
from toolkit.model.bottleneck import Bottleneck
from toolkit.model.conformer import ConformerBlock, ConvSubsampling
from toolkit.model.frontend import FrontendConfig, LogMelFrontend
from toolkit.model.grl import SPEAKER_HEADS, grad_reverse

SUBSAMPLING = 4


SPLIT_NORMS = ("none", "chunk")


@dataclass
class ModelConfig:
    """The architecture, stored as JSON in every checkpoint. ``veil train`` builds its options from these
    fields (``toolkit/config_flags.py``): the comment on a field's line is its help."""
    vocab_size: int = field(default=29, metadata={"cli": False})  # from the tokenizer
    d_model: int = 144                  # embedding width (the prefix's output dimension)
    n_heads: int = field(default=4, metadata={"flag": "heads", "help": "attention heads per block"})
    ff_mult: int = 4                    # feed-forward width = ff_mult x d_model
    conv_kernel: int = 15               # depthwise convolution kernel of each block, in frames
    n_blocks: int = field(default=6, metadata={"flag": "blocks", "help": "conformer blocks"})
    subsampling_channels: int = 64      # channels of the conv subsampling (x4 in time)
    dropout: float = 0.1                # dropout in the conformer blocks (training only)
    chunk_samples: int = 32000          # PCM samples per chunk: 2.0 s at 16 kHz -> 50 embedding frames
    split_layer: int = 3                # the phone runs frontend + blocks 1..K, trained chunk-local
    grl_layers: list[int] = field(default_factory=list, metadata={
        "flag": "grl-layer", "metavar": "K",
        "help": "attach a GRL + speaker head after block K (default: after the split layer; --no-grl: none)"})
    grl_lambda_max: float = field(default=1.0, metadata={
        "flag": "lambda-max", "help": "GRL strength at the end of Ganin's schedule"})
    grl_gamma: float = 10.0             # steepness of Ganin's lambda schedule
    n_speakers: int = field(default=0, metadata={"cli": False})  # from the training split
    speaker_hidden: int = 256           # hidden width of each speaker head
    speaker_head: str = field(default="mlp", metadata={
        "choices": sorted(SPEAKER_HEADS), "help": "adversary behind each GRL: pooled-stats MLP, or an x-vector TDNN"})
    split_norm: str = field(default="none", metadata={
        "choices": SPLIT_NORMS, "help": "'chunk': instance-normalize the prefix output per chunk before it leaves"})
    norm_layer: int = 0                 # the per-chunk normalization follows this block (0 = the split layer)
    split_norm_floor: float = 1e-5      # variance floor of the per-chunk normalization (a steady tone has ~0)
    bottleneck_dim: int = 0             # >0: the phone projects its output to this many dims before it leaves
    vq_codes: int = 0                   # >0: vector-quantize the bottleneck; codes per codebook group
    vq_groups: int = 1                  # codebook groups (indices sent per frame) when --vq-codes is set
    bottleneck_noise: float = 0.0       # std of the Gaussian noise the phone adds to unit-RMS z (no codebook)
    suffix_blocks: int = 0              # >0: the cloud runs its own stack of this many blocks after the split
    suffix_dim: int = 0                 # width of the cloud's own blocks (0 = d_model)
    split_ctc: bool = False             # training only: a CTC head on what the cloud receives (content pressure)
    frontend: FrontendConfig = field(default_factory=FrontendConfig)

    def __post_init__(self):
        if isinstance(self.frontend, dict):
            self.frontend = FrontendConfig(**self.frontend)
        self.grl_layers = sorted({int(k) for k in self.grl_layers})

    @property
    def frame_samples(self) -> int:
        """PCM samples per embedding frame (40 ms)."""
        return self.frontend.hop_length * SUBSAMPLING

    @property
    def chunk_frames(self) -> int:
        return self.chunk.chunk_frames

    @property
    def cloud_dim(self) -> int:
        """Width of the cloud's own blocks (``suffix_blocks``), or of the model's blocks without them."""
        return (self.suffix_dim or self.d_model) if self.suffix_blocks else self.d_model

    @property
    def total_blocks(self) -> int:
        """Blocks 1..n_blocks, then the cloud's own blocks n_blocks+1..n_blocks+suffix_blocks."""
        return self.n_blocks + self.suffix_blocks

    @property
    def norm_at(self) -> int:
        """The block the per-chunk normalization follows (with ``split_norm='chunk'``)."""
        return self.norm_layer or self.split_layer

    def block_dim(self, k: int) -> int:
        """Width of block ``k``'s output (what a cut or an attacker after block ``k`` sees), before a bottleneck."""
        return self.cloud_dim if k > self.n_blocks else self.d_model

    @property
    def embedding_dim(self) -> int:
        """Dimensions of what leaves the phone: the bottleneck's, or the split block's output."""
        return self.bottleneck_dim or self.d_model

    def prefix_output_dim(self, split_layer: int) -> int:
        """Dimensions a prefix cut after ``split_layer`` emits: the bottleneck's at the trained split, else the
        blocks' (a what-if cut elsewhere passes through the bottleneck and back, or never reaches it)."""
        return self.embedding_dim if split_layer == self.split_layer else self.d_model

    @property
    def chunk(self) -> ChunkSpec:
        """The chunk geometry the phone runs (the same object the export manifest carries)."""
        return ChunkSpec(self.frontend.sample_rate, self.chunk_samples, self.frame_samples)

    def validate(self) -> None:
        _ = self.chunk  # ChunkSpec checks the geometry: chunk_samples a multiple of frame_samples
        if not 1 <= self.split_layer <= self.n_blocks:
            raise ValueError(f"split_layer={self.split_layer} is outside 1..{self.n_blocks}")
        for k in self.grl_layers:
            if not 1 <= k <= self.total_blocks:
                raise ValueError(f"GRL layer {k} is outside 1..{self.total_blocks}")
        if self.suffix_blocks < 0 or self.suffix_dim < 0:
            raise ValueError("suffix_blocks and suffix_dim must be >= 0")
        if self.suffix_dim and not self.suffix_blocks:
            raise ValueError("suffix_dim sets the width of the cloud's own blocks: it needs suffix_blocks > 0")
        if self.suffix_blocks and self.split_layer != self.n_blocks:
            raise ValueError(f"with a cloud stack (suffix_blocks={self.suffix_blocks}) the phone runs every one of the "
                             f"n_blocks={self.n_blocks} blocks: split_layer must be {self.n_blocks}")
        if self.cloud_dim % self.n_heads:
            raise ValueError(f"suffix_dim={self.cloud_dim} is not divisible by n_heads={self.n_heads}")
        if not 0 <= self.norm_layer <= self.split_layer:
            raise ValueError(f"norm_layer={self.norm_layer} is outside 1..split_layer={self.split_layer} (0 = the split)")
        if self.split_norm_floor <= 0:
            raise ValueError("split_norm_floor must be > 0")
        if self.grl_layers and self.n_speakers < 2:
            raise ValueError("a speaker head needs n_speakers >= 2")
        if self.split_norm not in SPLIT_NORMS:
            raise ValueError(f"split_norm={self.split_norm!r} is not 'none' or 'chunk'")
        if self.speaker_head not in SPEAKER_HEADS:
            raise ValueError(f"speaker_head={self.speaker_head!r} is not one of {sorted(SPEAKER_HEADS)}")
        if self.bottleneck_dim < 0 or self.vq_codes < 0 or self.vq_groups < 1 or self.bottleneck_noise < 0:
            raise ValueError("bottleneck_dim, vq_codes and bottleneck_noise must be >= 0, vq_groups >= 1")
        if self.bottleneck_noise and (self.vq_codes or not self.bottleneck_dim):
            raise ValueError("bottleneck_noise needs a bottleneck without a codebook (bottleneck_dim > 0, vq_codes 0)")
        if self.vq_codes and not self.bottleneck_dim:
            raise ValueError("a codebook (vq_codes) needs a bottleneck (bottleneck_dim > 0)")
        if self.vq_codes and (self.bottleneck_dim % self.vq_groups or self.vq_codes > 65536):
            raise ValueError(f"bottleneck_dim={self.bottleneck_dim} must split into vq_groups={self.vq_groups} "
                             f"equal groups and vq_codes={self.vq_codes} must be <= 65536")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")

    def to_dict(self) -> dict:
        return asdict(self)


def frames_for(num_samples: torch.Tensor | int, frame_samples: int):
    """Valid embedding frames for an utterance of ``num_samples``: ceil(num_samples / frame_samples)."""
    if isinstance(num_samples, torch.Tensor):
        return torch.div(num_samples + frame_samples - 1, frame_samples, rounding_mode="floor")
    return -(-num_samples // frame_samples)


def chunk_instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """(N, T, d): zero mean, unit variance per channel over the T frames of each chunk (no affine).
    Removes the chunk's global per-channel statistics (timbre, level, channel), as instance normalization
    does in speaker-disentangling voice conversion; what is left varies frame to frame (content). ``eps`` is
    the variance floor: a chunk whose channel barely varies (a steady tone) is not amplified past it."""
    mean = x.mean(dim=1, keepdim=True)
    var = ((x - mean) ** 2).mean(dim=1, keepdim=True)
    return (x - mean) * torch.rsqrt(var + eps)


def spec_augment(feats: torch.Tensor, generator: torch.Generator | None = None, freq_masks: int = 2,
                 freq_width: int = 15, time_masks: int = 2, time_width: int = 20) -> torch.Tensor:
    """Zero random frequency bands and time spans of (N, T, F) standardized features (per chunk)."""
    n, t, f = feats.shape
    mask = torch.ones_like(feats)
    dev = feats.device
    for _ in range(freq_masks):
        w = torch.randint(0, freq_width + 1, (n, 1), generator=generator).to(dev)
        s = (torch.rand(n, 1, generator=generator).to(dev) * (f - w)).long()
        idx = torch.arange(f, device=dev)[None, :]
        mask = mask * (~((idx >= s) & (idx < s + w))).unsqueeze(1).to(feats.dtype)
    for _ in range(time_masks):
        w = torch.randint(0, time_width + 1, (n, 1), generator=generator).to(dev)
        s = (torch.rand(n, 1, generator=generator).to(dev) * (t - w)).long()
        idx = torch.arange(t, device=dev)[None, :]
        mask = mask * (~((idx >= s) & (idx < s + w))).unsqueeze(2).to(feats.dtype)
    return feats * mask


class VeilModel(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.frontend = LogMelFrontend(cfg.frontend)
        self.subsampling = ConvSubsampling(cfg.frontend.n_mels, cfg.d_model, cfg.subsampling_channels)
        self.blocks = nn.ModuleList(
            ConformerBlock(cfg.d_model, cfg.n_heads, cfg.ff_mult, cfg.conv_kernel, cfg.dropout)
            for _ in range(cfg.n_blocks))
        self.cloud_blocks = nn.ModuleList(
            ConformerBlock(cfg.cloud_dim, cfg.n_heads, cfg.ff_mult, cfg.conv_kernel, cfg.dropout)
            for _ in range(cfg.suffix_blocks))
        self.ctc_head = nn.Linear(cfg.cloud_dim, cfg.vocab_size)
        self.bottleneck = Bottleneck(cfg.d_model, cfg.bottleneck_dim, cfg.vq_groups, cfg.vq_codes,
                                     cfg.bottleneck_noise, out_dim=cfg.cloud_dim) if cfg.bottleneck_dim else None
        # without a bottleneck, a cloud stack of another width reads the split through its own projection
        self.cloud_in = (nn.Linear(cfg.d_model, cfg.cloud_dim)
                         if cfg.suffix_blocks and not cfg.bottleneck_dim and cfg.cloud_dim != cfg.d_model else None)
        self.speaker_heads = nn.ModuleDict({str(k): self.new_speaker_head(k) for k in cfg.grl_layers})
        # training only: content pressure on what the cloud receives
        self.split_ctc_head = nn.Linear(cfg.embedding_dim, cfg.vocab_size) if cfg.split_ctc else None

    def block(self, i: int) -> nn.Module:
        """Block ``i + 1`` (0-based ``i``): the model's blocks, then the cloud's own."""
        n = self.cfg.n_blocks
        return self.blocks[i] if i < n else self.cloud_blocks[i - n]

    def new_speaker_head(self, k: int) -> nn.Module:
        """A freshly initialized adversary for block ``k``'s output; at the split of a bottleneck model it sees
        what the cloud receives (the bottleneck's ``embedding_dim`` dims)."""
        cfg = self.cfg
        d = cfg.embedding_dim if k == cfg.split_layer else cfg.block_dim(k)
        return SPEAKER_HEADS[cfg.speaker_head](d, cfg.n_speakers, cfg.speaker_hidden)

    # ---- the encoder as training runs it, batched -------------------------------------------------------
    def encode(self, pcm: torch.Tensor, lengths: torch.Tensor, upto: int, keep=(), augment: bool = False,
               generator: torch.Generator | None = None):
        """pcm (B, S) zero-padded, lengths (B,) in samples, through block ``upto``. Blocks 1..split_layer run
        chunk by chunk through :class:`Prefix` (what the phone runs, with SpecAugment when ``augment``); later
        blocks see the whole utterance. Returns the output of block ``upto`` (B, T, d), ``{k: (B, T, d)}``
        for the blocks in ``keep``, the valid frames per utterance (B,), the valid-frame mask (B, T) and the
        bottleneck's commitment loss (0 without a codebook). ``generator`` draws SpecAugment's masks and a noisy
        bottleneck's noise.
        With a bottleneck, "the output of the split block" is what the cloud receives: the codewords (or the
        projection) that :class:`Suffix` expands back to ``d_model`` before block ``split_layer + 1``."""
        cfg = self.cfg
        b, s = pcm.shape
        cs, cf = cfg.chunk_samples, cfg.chunk_frames
        n_chunks = max(1, math.ceil(s / cs))
        chunks = nn.functional.pad(pcm, (0, n_chunks * cs - s)).reshape(b * n_chunks, cs)
        chunk_valid = (torch.arange(n_chunks, device=pcm.device)[None, :] * cs < lengths[:, None]).reshape(-1)
        idx = chunk_valid.nonzero().squeeze(1)
        on_device = Prefix(self, min(upto, cfg.split_layer))
        x_chunks, kept = on_device.layers(chunks[idx], augment, generator, keep)

        def unchunk(y):
            full = y.new_zeros(b * n_chunks, cf, y.shape[-1])
            full[idx] = y
            return full.reshape(b, n_chunks * cf, y.shape[-1])

        frame_lengths = frames_for(lengths, cfg.frame_samples)
        mask = torch.arange(n_chunks * cf, device=pcm.device)[None, :] < frame_lengths[:, None]
        layers = {k: unchunk(v) for k, v in kept.items()}
        x = unchunk(x_chunks)
        commit = x.new_zeros(())
        if self.bottleneck is not None and upto >= cfg.split_layer:
            x, commit = self.bottleneck.transmit(x, mask, generator)
            if cfg.split_layer in layers:
                layers[cfg.split_layer] = x
        if upto > cfg.split_layer:
            x = self.bottleneck.up(x) if self.bottleneck is not None else (
                self.cloud_in(x) if self.cloud_in is not None else x)
        for i in range(cfg.split_layer, upto):
            x = self.block(i)(x, mask)
            if i + 1 in keep:
                layers[i + 1] = x
        return x, layers, frame_lengths, mask, commit

    # ---- the whole model, batched -------------------------------------------------------------------
    def forward(self, pcm: torch.Tensor, lengths: torch.Tensor, augment: bool = False,
                grl_lambda: float = 0.0, generator: torch.Generator | None = None,
                return_layers: bool = False) -> dict:
        """pcm (B, S) zero-padded, lengths (B,) in samples. Returns CTC log-probs (B, T, V), frame lengths,
        speaker logits per GRL layer, the bottleneck's commitment loss, and (optionally) every block's output."""
        cfg = self.cfg
        keep = {*(range(1, cfg.total_blocks + 1) if return_layers else cfg.grl_layers), cfg.split_layer}
        x, layers, frame_lengths, mask, commit = self.encode(pcm, lengths, cfg.total_blocks, tuple(sorted(keep)),
                                                             augment, generator)
        received = layers[cfg.split_layer]  # what the cloud receives: the split's output, after the channel
        out = {"log_probs": torch.log_softmax(self.ctc_head(x), dim=-1), "frame_lengths": frame_lengths,
               "mask": mask, "speaker_logits": {}, "commit": commit, "received": received}
        if self.split_ctc_head is not None:
            out["split_log_probs"] = torch.log_softmax(self.split_ctc_head(received), dim=-1)
        for k in cfg.grl_layers:
            out["speaker_logits"][k] = self.speaker_heads[str(k)](grad_reverse(layers[k], grl_lambda), mask)
        if return_layers:
            out["layers"] = layers
        return out


class Prefix(nn.Module):
    """What the phone runs: one PCM chunk (1, chunk_samples) -> embeddings (1, chunk_frames, d). The only
    definition of the on-device computation: exports, parity's references and estimates, localization's
    stages and the training forward all run this module.
    With ``split_norm`` the per-chunk instance normalization follows block ``cfg.split_layer`` wherever the
    cut is: at the end of the trained prefix, inside a deeper what-if prefix (cut-point sweep). So does the
    bottleneck's projection ``down``: a prefix cut at the split emits the bottleneck vectors ``z`` (the payload
    codec quantizes them on the phone); a deeper what-if prefix goes on through the codebook and ``up``."""

    def __init__(self, model: VeilModel, split_layer: int, bottleneck: bool = True):
        super().__init__()
        self.frontend = model.frontend
        self.subsampling = model.subsampling
        self.blocks = nn.ModuleList(model.blocks[:split_layer])
        self.chunk_samples = model.cfg.chunk_samples
        cfg = model.cfg
        self.norm_after = cfg.norm_at if cfg.split_norm == "chunk" and split_layer >= cfg.norm_at else 0
        self.norm_floor = cfg.split_norm_floor
        self.bottleneck = model.bottleneck if bottleneck and split_layer >= cfg.split_layer else None
        self.bottleneck_after = cfg.split_layer

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return self.layers(pcm)[0]

    def layers(self, pcm: torch.Tensor, augment: bool = False, generator: torch.Generator | None = None,
               keep=()) -> tuple[torch.Tensor, dict]:
        """(N, chunk_samples) -> the last block's output (N, chunk_frames, d) and ``{k: output of block k}``
        for k in ``keep``; ``augment`` applies SpecAugment to the features (training only)."""
        feats = self.frontend(pcm)
        if augment:
            feats = spec_augment(feats, generator)
        x = self.subsampling(feats)
        kept = {}
        for i, block in enumerate(self.blocks, 1):
            x = block(x)
            if i == self.norm_after:
                x = chunk_instance_norm(x, self.norm_floor)
            if self.bottleneck is not None and i == self.bottleneck_after:
                x = self.bottleneck.phone(x)
                if i < len(self.blocks):  # a deeper what-if prefix: the cloud's side of the bottleneck, here
                    x = self.bottleneck.up(self.bottleneck.transmit(x)[0])
            if i in keep:
                kept[i] = x
        return x, kept


class Suffix(nn.Module):
    """What the cloud runs: embeddings (B, T, d) + valid-frame mask (B, T) -> CTC log-probs (B, T, V).
    Cut before a split-norm model's normalization (a what-if of the cut-point sweep), the suffix applies the
    per-chunk normalization after block ``cfg.norm_at`` itself, over each ``chunk_frames`` group of frames
    (the last, partial group over the frames it has). A bottleneck model's suffix cut at the split receives
    bottleneck vectors (``embedding_dim``): it quantizes them with the codebook (idempotent on codewords, so
    the phone's ``z`` and the codewords decoded from a ``vq`` payload give the same result) and expands them.
    A model with a cloud stack (``suffix_blocks``) goes on through the cloud's own blocks after the split."""

    def __init__(self, model: VeilModel, split_layer: int):
        super().__init__()
        cfg = model.cfg
        self.blocks = nn.ModuleList([*model.blocks[split_layer:], *model.cloud_blocks])
        self.ctc_head = model.ctc_head
        self.first = split_layer + 1
        self.norm_after = cfg.norm_at if cfg.split_norm == "chunk" and split_layer < cfg.norm_at else 0
        self.norm_floor = cfg.split_norm_floor
        self.chunk_frames = cfg.chunk_frames
        self.bottleneck = model.bottleneck if split_layer <= cfg.split_layer else None
        self.cloud_in = model.cloud_in
        self.at_split = split_layer == cfg.split_layer
        self.split_after = cfg.split_layer if split_layer < cfg.split_layer else 0

    @property
    def codebook(self) -> torch.Tensor | None:
        """(groups, codes, dim / groups) codewords that ``vq`` payloads index, when this suffix receives them."""
        if self.bottleneck is None or not self.at_split or self.bottleneck.vq is None:
            return None
        return self.bottleneck.vq.codebook

    def _enter_cloud(self, z: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if self.bottleneck is not None:
            return self.bottleneck.up(self.bottleneck.receive(z, mask))
        return self.cloud_in(z) if self.cloud_in is not None else z

    def forward(self, emb: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.run(emb, mask)[0]

    def run(self, emb: torch.Tensor, mask: torch.Tensor | None = None, keep=()) -> tuple[torch.Tensor, dict]:
        """CTC log-probs and ``{k: output of block k}`` for k in ``keep``: the cloud's own activations, what
        an operator who holds the suffix can read (the privacy suite attacks them too)."""
        kept = {}
        x = self._enter_cloud(emb, mask) if self.at_split else emb
        for i, block in enumerate(self.blocks, self.first):
            x = block(x, mask)
            if i in keep:
                kept[i] = x
            if i == self.norm_after:
                cf = self.chunk_frames
                x = torch.cat([chunk_instance_norm(x[:, j:j + cf], self.norm_floor)
                               for j in range(0, x.shape[1], cf)], dim=1)
            if i == self.split_after:
                if self.bottleneck is not None:  # what-if cut before the split: the channel runs here
                    x = self.bottleneck.transmit(self.bottleneck.phone(x), mask)[0]
                x = self._enter_cloud(x, mask)
        return torch.log_softmax(self.ctc_head(x), dim=-1), kept


def split(model: VeilModel, k: int | None = None) -> tuple[Prefix, Suffix]:
    """Cut after block ``k`` (default: the config's split layer). Shares weights with ``model``."""
    k = model.cfg.split_layer if k is None else k
    if not 1 <= k <= model.cfg.n_blocks:  # the phone can run the model's blocks, never the cloud's own
        raise ValueError(f"split layer {k} is outside 1..{model.cfg.n_blocks}")
    return Prefix(model, k), Suffix(model, k)

