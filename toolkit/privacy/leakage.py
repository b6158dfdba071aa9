"""`veil privacy`: how much speaker identity leaks from a model's embeddings, per layer.

For every requested layer and every attacked source (the checkpoint, named by its file, or with ``--artifact`` each
exported prefix run in its real runtime; and the baseline checkpoint when given) the attacker suite
(:mod:`toolkit.privacy.suite`: attackers by name, each trained on *this source's* embeddings) runs:
- closed set: attackers trained on 60 % of each eval speaker's utterances, tested on the other 40 %;
- open set: informed attackers trained on this source's embeddings of the ASR training speakers, scored on
  trials among the unseen eval speakers (EER);
- ignorant (with a baseline): the baseline's fitted original attackers applied to the attacked source.
The headline is the strongest attacker of each task, named; chance is reported beside every accuracy.

From Python (the material once, then any layer of a checkpoint or any export)::

    data = load_attack_data(Path("data/corpus"))          # eval speakers + every training utterance
    row = attack_checkpoint_layer(model_or_path, 4, data, SuiteOptions(attackers="fast"), seeds=[0])
    row = attack_artifact(Path("exports/k6-d16-n0.5-k6"), data, SuiteOptions(), seeds=[0, 1, 2])
    row["strongest"]["open"]            # {"attacker": "ecapa-plda", "eer": ..., ...} (first seed)
    row["spread"]["strongest"]["open"]  # over seeds: {"attacker", "mean", "sd", "values", "per_seed_best"}
"""
from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from toolkit.adapters import open_adapter
from toolkit.chunking import torch_runner
from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.errors import VeilError
from toolkit.files import file_sha256
from toolkit.headlines import refresh
from toolkit.layer_range import parse_layer_range
from toolkit.exporting.manifest import ExportManifest
from toolkit.model.asr import split
from toolkit.model.checkpoint import load_checkpoint
from toolkit.paths import DEFAULT_MODEL, DEFAULT_CORPUS, display_path
from toolkit.privacy.artifact import ExportedPrefix, load_runners, read_export
from toolkit.privacy.attackers import open_set_attack, utterance_split
from toolkit.privacy.ecapa import EcapaSettings
from toolkit.privacy.embeddings import artifact_embeddings, layer_embeddings
from toolkit.privacy.framewise import FrameSettings
from toolkit.privacy.report import REPORT_FORMAT, headline, write_report
from toolkit.privacy.suite import LEGACY, SETS, Embeddings, SuiteOptions, describe_attackers, run_suite


@dataclass
class AttackSettings:
    """How the attackers are built, shared by ``veil privacy`` and ``veil sweep`` (their options are built
    from these fields; the comment on a field's line is its help). ``veil sweep`` runs Veil's original
    attackers on 10 utterances per training speaker unless told otherwise (:data:`SWEEP_DEFAULTS`)."""
    seed: int = 0                 # attacker seed; also draws the closed-set utterance split
    attackers: str = field(default="all", metadata={
        "metavar": "SET|NAME,...", "help": "which attackers: a set (" + ", ".join(SETS) + ") or comma-separated "
        "names (`veil privacy --help` lists them); 'fast' trains no network"})
    xvector_epochs: int = 30      # training epochs of the x-vector attacker
    attacker_utts: int = 0        # training-split utterances per training speaker for the informed attackers (0 = all)
    xvector_utts: int = 10        # of those, the first N per speaker train the x-vector (as before the suite)
    ecapa_steps: int = field(default=EcapaSettings.steps, metadata={
        "help": f"ECAPA training steps of {EcapaSettings.batch} random crops"})
    frame_steps: int = field(default=FrameSettings.steps, metadata={
        "help": f"frame-level network training steps of {FrameSettings.batch} crops"})
    threads: int = 0              # torch and BLAS threads for the attacks (0 = torch's default); results are deterministic for a seed and a thread count
    eval_limit: int = field(default=0, metadata={
        "flag": "limit", "help": "use only the first N eval-speakers utterances (0 = all)"})

    def suite_options(self) -> SuiteOptions:
        """The suite these settings select; a bad count or an unknown attacker is a one-line VeilError."""
        for flag, value in (("--xvector-epochs", self.xvector_epochs), ("--xvector-utts", self.xvector_utts),
                            ("--ecapa-steps", self.ecapa_steps), ("--frame-steps", self.frame_steps)):
            if value < 1:
                raise VeilError(f"{flag} must be at least 1, got {value}")
        for flag, value in (("--attacker-utts", self.attacker_utts), ("--threads", self.threads),
                            ("--limit", self.eval_limit)):
            if value < 0:
                raise VeilError(f"{flag} must be 0 or more, got {value}")
        options = SuiteOptions(attackers=self.attackers, xvector_epochs=self.xvector_epochs,
                               xvector_utts=self.xvector_utts, ecapa=EcapaSettings(steps=self.ecapa_steps),
                               frame=FrameSettings(steps=self.frame_steps))
        options.names()  # an unknown attacker is an error before any slow work
        return options


# What `veil sweep` attacks with unless told otherwise: Veil's original three attackers on the first 10
# utterances per training speaker, so a sweep stays comparable with (and reuses the caches of) earlier ones.
SWEEP_DEFAULTS = {"attackers": "legacy", "attacker_utts": 10}


@dataclass
class PrivacyRequest:
    """One ``veil privacy`` run: attack ``checkpoint``'s layers (or, with ``artifact``, what an export folder's
    artifacts emit at their split layer), beside ``baseline`` when given."""
    checkpoint: Path = DEFAULT_MODEL
    baseline: Path | None = None
    corpus: Path = DEFAULT_CORPUS
    layers: str | None = None               # toolkit.layer_range syntax; default all (0 = log-mel)
    out: Path = Path("privacy")
    attack: AttackSettings = field(default_factory=AttackSettings)
    attacker_seeds: int = 1                 # repeat the attacks with seeds seed, seed+1, ...: mean and sd
    artifact: Path | None = None            # an export folder
    backends: list[str] = field(default_factory=list)  # with artifact: only these backends
    cloud_layers: str | None = None         # with artifact: also the suffix's own blocks on what the cloud receives
    progress: bool = True
    readme: Path | None = None              # also rewrite this README's privacy table (toolkit/headlines.py)
    adapter: dict | None = None             # another encoder (toolkit/adapters.open_adapter's arguments)


def _select(frames, idx):
    return [frames[i] for i in idx]


@contextmanager
def attacker_threads(threads: int):
    """Torch and BLAS (numpy, scikit-learn) limited to ``threads`` inside the block (0: leave them as they are).
    A seeded network attacker gives the same number for the same seed and thread count."""
    if not threads:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(previous)


# ---- the material: audio of the unseen eval speakers and of the informed attackers' training speakers -------

@dataclass
class AttackData:
    """Audio every attack works on, loaded once (a sweep attacks many models with it)."""
    corpus: Path
    eval_data: AudioSet
    train_data: AudioSet
    eval_spk: list[str]
    train_spk: list[str]
    split: tuple[list[int], list[int]] = field(default=None)

    def describe(self) -> dict:
        return {"corpus": str(self.corpus), "eval_speakers": len(set(self.eval_spk)),
                "eval_utterances": len(self.eval_spk), "attacker_train_speakers": len(set(self.train_spk)),
                "attacker_train_utterances": len(self.train_spk)}


def load_attack_data(corpus: Path, train_utts_per_speaker: int | None = None, eval_limit: int = 0, seed: int = 0,
                     progress: bool = True) -> AttackData:
    """The eval speakers' utterances (split 60/40 per speaker with ``seed``) and, for the informed attackers,
    the first ``train_utts_per_speaker`` utterances (None: all) of every ASR training speaker."""
    corpus = Path(corpus)
    for split in ("eval-speakers", "train"):
        if not (corpus / split).is_dir():
            raise VeilError(f"{corpus / split}: corpus split not found (privacy needs eval-speakers and train)")
    if train_utts_per_speaker is not None and train_utts_per_speaker < 1:
        raise VeilError(f"--attacker-utts must be at least 1, got {train_utts_per_speaker}")
    eval_utts = read_librispeech(corpus / "eval-speakers")
    if eval_limit:
        eval_utts = eval_utts[:eval_limit]
    by_spk: dict[str, list] = {}
    for u in read_librispeech(corpus / "train"):
        by_spk.setdefault(u.speaker, []).append(u)
    train_utts = [u for s in sorted(by_spk) for u in by_spk[s][:train_utts_per_speaker]]
    if len({u.speaker for u in eval_utts}) < 2 or len(by_spk) < 2:
        raise VeilError(f"{corpus}: privacy evaluation needs at least 2 eval and 2 training speakers")
    eval_spk = [u.speaker for u in eval_utts]
    return AttackData(corpus, AudioSet.load(eval_utts, "loading eval-speakers", progress),
                      AudioSet.load(train_utts, "loading attacker training set", progress),
                      eval_spk, [u.speaker for u in train_utts], utterance_split(eval_spk, seed=seed))


# ---- attacks ------------------------------------------------------------------------------------------------

def attack_layer(emb_eval, emb_train, data: AttackData, seeds: list[int], options: SuiteOptions,
                 log=None) -> tuple[dict, dict]:
    """The suite on one layer's embeddings, once per attacker seed: (results row, the first seed's fitted
    original attackers by name). The row has ``suite`` (every attacker, first seed), ``strongest`` (the best
    closed- and open-set attacker, named), ``spread`` (2+ seeds) and, where Veil's original attackers ran,
    their keys of the reports before the suite (``closed_lr``, ``closed_mlp``, ``closed_best``,
    ``open_xvector``, ``seed_spread``)."""
    out, ctx = run_suite(Embeddings(emb_eval, emb_train), data.eval_spk, data.train_spk, data.split, options,
                         seeds, log)
    row = dict(out)
    suite = out["suite"]
    if "pooled-lr" in suite:
        row["closed_lr"] = {"attacker": "pooled-lr", **suite["pooled-lr"]}
    if "pooled-mlp" in suite:
        row["closed_mlp"] = {"attacker": "pooled-mlp", **suite["pooled-mlp"]}
    if "closed_lr" in row and "closed_mlp" in row:
        row["closed_best"] = max(row["closed_lr"]["accuracy"], row["closed_mlp"]["accuracy"])
    if "x-vector" in suite:
        row["open_xvector"] = {"attacker": "x-vector", **suite["x-vector"]}
    if "spread" in out and all(n in suite for n in LEGACY):
        row["seed_spread"] = legacy_seed_spread(out["spread"])
    return row, ctx.fitted


def legacy_seed_spread(spread: dict) -> dict:
    """The suite's spread of Veil's original attackers in the layout of the reports before the suite."""
    out = {"seeds": spread["seeds"]}
    for key, name in (("closed_lr", "pooled-lr"), ("closed_mlp", "pooled-mlp"), ("eer", "x-vector")):
        a = spread["attackers"][name]
        out[key], out[f"{key}_mean"], out[f"{key}_sd"] = a["values"], a["mean"], a["sd"]
    return out


def strongest_line(row: dict) -> str:
    """One progress line: the strongest attacker of each task, named, and over seeds the best mean."""
    parts = []
    for task, key, unit in (("closed", "accuracy", "%"), ("open", "eer", "% EER")):
        best = row["strongest"].get(task)
        if not best:
            continue
        text = f"{task} set: {best['attacker']} {best[key]:.1f} {unit}"
        sp = (row.get("spread") or {}).get("strongest", {}).get(task)
        if sp:
            text += f" (over seeds: {sp['attacker']} {sp['mean']:.1f} ± {sp['sd']:.1f})"
        parts.append(text)
    chance = next((r["chance"] for r in row["suite"].values() if "chance" in r), None)
    return "strongest " + "; ".join(parts) + (f"  (chance {chance:.1f} %)" if chance else "")


def attack_model(emb_eval: dict, emb_train: dict, data: AttackData, layers: list[int], options: SuiteOptions,
                 seeds: list[int], progress=print) -> tuple[dict, dict]:
    """The suite on one source's embeddings, per layer, once per attacker seed; returns (results per layer,
    {layer: the first seed's fitted original attackers}). The headline numbers are those of ``seeds[0]``."""
    results, fitted = {}, {}
    for k in layers:
        t0 = time.time()
        progress(f"  layer {k}: {len(options.names())} attackers, seeds {list(seeds)}")
        row, fitted[k] = attack_layer(emb_eval[k], emb_train[k], data, list(seeds), options, progress)
        row["seconds"] = round(time.time() - t0, 1)
        results[k] = row
        progress(f"  layer {k}: {strongest_line(row)}   [{row['seconds']:.0f} s]")
    return results, fitted


def ignorant_attacks(base: dict, anon_eval: dict, data: AttackData, layers) -> dict:
    """The baseline's fitted original attackers (pooled LR/MLP, x-vector: fitted on baseline embeddings)
    applied to another source's embeddings. Layers where none of them ran are left out."""
    _, te = data.split
    out = {}
    for k in layers:
        row = {}
        for kind in ("lr", "mlp"):
            if f"pooled-{kind}" in base[k]:
                row[f"closed_{kind}"] = base[k][f"pooled-{kind}"].score(_select(anon_eval[k], te),
                                                                         _select(data.eval_spk, te))
        if "x-vector" in base[k]:
            row["open_xvector"] = open_set_attack(base[k]["x-vector"], anon_eval[k], data.eval_spk)
        if row:
            out[k] = row
    return out


def relative_change(value: float, reference: float) -> float | None:
    """(value − reference) / reference in percent; None without a usable reference."""
    if reference is None or value is None or reference == 0:
        return None
    return 100.0 * (value - reference) / reference


def vs_baseline(row: dict, base: dict) -> dict:
    """One layer's attack results against the baseline's at the same layer: relative changes of the
    closed-set accuracies in percent and EER differences in percentage points, for Veil's original attackers
    and for the strongest attacker of each task (where both sides ran them)."""
    vs = {}
    if "closed_best" in row and "closed_best" in base:
        vs.update(closed_lr_rel=relative_change(row["closed_lr"]["accuracy"], base["closed_lr"]["accuracy"]),
                  closed_mlp_rel=relative_change(row["closed_mlp"]["accuracy"], base["closed_mlp"]["accuracy"]),
                  closed_best_rel=relative_change(row["closed_best"], base["closed_best"]))
    if "open_xvector" in row and "open_xvector" in base:
        vs["eer_pp"] = row["open_xvector"]["eer"] - base["open_xvector"]["eer"]
    mine, theirs = row.get("strongest") or {}, base.get("strongest") or {}
    if "closed" in mine and "closed" in theirs:
        vs["strongest_closed_rel"] = relative_change(mine["closed"]["accuracy"], theirs["closed"]["accuracy"])
    if "open" in mine and "open" in theirs:
        vs["strongest_eer_pp"] = mine["open"]["eer"] - theirs["open"]["eer"]
    return vs


def _add_relative_changes(report: dict) -> None:
    base = report["models"].get("baseline")
    if not base:
        return
    for name, m in report["models"].items():
        if name == "baseline":
            continue
        for k, row in m["layers"].items():
            if base["layers"].get(k):
                row["vs_baseline"] = vs_baseline(row, base["layers"][k])


# ---- one source, one layer ------------------------------------------------------------------------------------

def adapter_embeddings(adapter, k: int, data: AudioSet, progress: bool = False) -> list[np.ndarray]:
    """(T_i, d) per utterance: the adapter's float prefix cut after block ``k``, chunk by chunk."""
    return artifact_embeddings(torch_runner(adapter.prefix(k)), data, adapter.chunk, progress, desc=f"block {k}")


def checkpoint_embeddings(model, data: AttackData, layers: list[int], progress: bool = False) -> tuple[dict, dict]:
    """({layer: eval-speaker frames}, {layer: attacker-training-speaker frames}) of a float model."""
    return (layer_embeddings(model, data.eval_data, layers, progress=progress),
            layer_embeddings(model, data.train_data, layers, progress=progress))


def prefix_embeddings(prefix: ExportedPrefix, runner, data: AttackData, progress: bool = False) -> tuple[list, list]:
    """(eval-speaker frames, attacker-training-speaker frames) of an exported prefix run in its runtime, as the
    cloud receives them (a vq export's codewords)."""
    ev = artifact_embeddings(runner, data.eval_data, prefix.chunk, progress, desc=f"{prefix.name} eval-speakers")
    tr = artifact_embeddings(runner, data.train_data, prefix.chunk, progress,
                             desc=f"{prefix.name} attacker training set")
    return [prefix.received(x) for x in ev], [prefix.received(x) for x in tr]


@torch.no_grad()
def cloud_embeddings(model, split_layer: int, received: list[np.ndarray], layers: list[int],
                     batch: int = 64) -> dict[int, list[np.ndarray]]:
    """The suffix's own block outputs ``{k: [(T_i, d) per utterance]}`` for ``layers`` (> ``split_layer``), run
    on what the cloud received (``received``: an artifact's output plus the phone's noise): the operator's view."""
    suffix = split(model.eval(), split_layer)[1]
    out = {k: [None] * len(received) for k in layers}
    order = sorted(range(len(received)), key=lambda i: len(received[i]))
    for start in range(0, len(order), batch):
        idx = order[start:start + batch]
        t = max(len(received[i]) for i in idx)
        x = torch.zeros(len(idx), t, received[idx[0]].shape[1])
        mask = torch.zeros(len(idx), t, dtype=torch.bool)
        for j, i in enumerate(idx):
            x[j, : len(received[i])] = torch.from_numpy(received[i])
            mask[j, : len(received[i])] = True
        _, kept = suffix.run(x, mask, keep=tuple(layers))
        for k in layers:
            for j, i in enumerate(idx):
                out[k][i] = kept[k][j, : len(received[i])].numpy().astype(np.float32)
    return out


def attack_checkpoint_layer(model, layer: int, data: AttackData, options: SuiteOptions | None = None,
                            seeds: list[int] = (0,), log=None) -> dict:
    """The suite on one layer of a float model (a ``VeilModel`` or a checkpoint path): one results row."""
    if not isinstance(model, torch.nn.Module):
        model = load_checkpoint(Path(model))[0]
    emb_eval, emb_train = checkpoint_embeddings(model, data, [layer])
    return attack_layer(emb_eval[layer], emb_train[layer], data, list(seeds), options or SuiteOptions(), log)[0]


def attack_artifact(export_dir: Path, data: AttackData, options: SuiteOptions | None = None,
                    seeds: list[int] = (0,), backend: str = "executorch", log=None) -> dict:
    """The suite on what an export folder's ``backend`` artifact emits, run chunk by chunk in its runtime."""
    runnable, _ = load_runners(read_export(Path(export_dir), [backend]))
    prefix, runner = runnable[0]
    emb_eval, emb_train = prefix_embeddings(prefix, runner, data)
    return attack_layer(emb_eval, emb_train, data, list(seeds), options or SuiteOptions(), log)[0]


# ---- the recipe -------------------------------------------------------------------------------------------------

def attacked_name(checkpoint: Path, taken) -> str:
    """A checkpoint's name in the report: its file's stem (``normalized``), as it is, never a role it may not have;
    ``(attacked)`` is added when the baseline already has that name."""
    stem = Path(checkpoint).stem
    return f"{stem} (attacked)" if stem in taken else stem


def run_privacy(req: PrivacyRequest) -> dict:
    """Attack the request's sources; write privacy.json/.md/.png into ``req.out``; return the report."""
    if req.attacker_seeds < 1:
        raise VeilError(f"--attacker-seeds must be at least 1, got {req.attacker_seeds}")
    options = req.attack.suite_options()
    with attacker_threads(req.attack.threads):
        return _run_privacy(req, options)


@dataclass
class _Sources:
    """What one `veil privacy` run attacks: ``loaded[name]`` (a model, an adapter or an artifact's prefix and
    runner), ``described[name]`` (the report's record of it), the layers, and the operator's suffix for
    ``--cloud-layers``."""
    loaded: dict = field(default_factory=dict)
    described: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    layers: list = field(default_factory=list)
    cloud_layers: list = field(default_factory=list)
    cloud_model: object = None


def _artifact_sources(req: PrivacyRequest, src: _Sources) -> None:
    prefixes = read_export(Path(req.artifact), req.backends)
    k = prefixes[0].split_layer
    if req.layers not in (None, str(k)):
        raise VeilError(f"--layers {req.layers}: an exported prefix emits only its split layer ({k}); "
                        f"--cloud-layers attacks the suffix's blocks on it")
    if req.cloud_layers:
        src.cloud_model = ExportManifest.read(Path(req.artifact)).load_checkpoint()[0]  # sha256-checked
        src.cloud_layers = parse_layer_range(req.cloud_layers, k + 1, src.cloud_model.cfg.total_blocks, "--cloud-layers")
    src.layers = [k, *src.cloud_layers]
    for model in src.loaded.values():
        if not 1 <= k <= model.cfg.n_blocks:
            raise VeilError(f"{req.baseline}: baseline has {model.cfg.n_blocks} blocks, the artifact's layer is {k}")
    runnable, src.skipped = load_runners(prefixes)
    for p, runner in runnable:
        name = p.name  # backend/recipe: the report names what it attacked
        src.described[name] = {"kind": "artifact", **p.describe(), "runtime": type(runner).__name__}
        src.loaded[name] = (p, runner)


def _sources(req: PrivacyRequest) -> _Sources:
    """Load what ``req`` attacks (checkpoint, export folder or adapter, and the baseline), checked at the boundary."""
    src = _Sources()
    baseline = req.baseline
    if baseline:
        src.loaded["baseline"] = load_checkpoint(baseline)[0]
        src.described["baseline"] = {"kind": "checkpoint", "checkpoint": str(baseline), "sha256": file_sha256(baseline)}
    if req.artifact is not None:
        _artifact_sources(req, src)
    elif req.adapter:  # another encoder: its per-layer embeddings, each cut run chunk by chunk as a phone would
        if baseline:
            raise VeilError("--baseline goes with a Veil checkpoint, not with --adapter/--model")
        adapter = open_adapter(**req.adapter)
        src.layers = parse_layer_range(req.layers, 1, adapter.n_blocks)
        src.loaded[adapter.name] = adapter
        src.described[adapter.name] = {
            "kind": "adapter", **adapter.source(), "sha256": adapter.identity_sha256(),
            "checkpoint": adapter.source().get("weights") or
            f"{adapter.name} {adapter.source().get('config') or adapter.source().get('model')}"}
    else:
        checkpoint = Path(req.checkpoint)
        model = load_checkpoint(checkpoint)[0]
        if baseline and src.loaded["baseline"].cfg.n_blocks != model.cfg.n_blocks:
            raise VeilError(f"{checkpoint}: it and the baseline have different depths "
                            f"{sorted({src.loaded['baseline'].cfg.n_blocks, model.cfg.n_blocks})}")
        src.layers = parse_layer_range(req.layers, 0, model.cfg.total_blocks)  # the cloud stack too: the operator's
        name = attacked_name(checkpoint, src.loaded)
        src.loaded[name] = model
        src.described[name] = {"kind": "checkpoint", "checkpoint": str(checkpoint), "sha256": file_sha256(checkpoint)}
    return src


def _embeddings(src: _Sources, kind: str, obj, data, progress: bool) -> tuple[dict, dict, object, object]:
    """(eval, attacker-training) frames per layer of one source, its GRL layers and split layer."""
    layers = src.layers
    if kind == "artifact":
        p, runner = obj
        emb_eval, emb_train = ({layers[0]: e} for e in prefix_embeddings(p, runner, data, progress))
        for emb in (emb_eval, emb_train):
            if src.cloud_layers:  # the operator runs its suffix on what it received
                emb.update(cloud_embeddings(src.cloud_model, p.split_layer, emb[layers[0]], src.cloud_layers))
        return emb_eval, emb_train, None, p.split_layer
    if kind == "adapter":
        emb_eval, emb_train = ({k: adapter_embeddings(obj, k, d, progress) for k in layers}
                               for d in (data.eval_data, data.train_data))
        return emb_eval, emb_train, None, None
    emb_eval, emb_train = checkpoint_embeddings(obj, data, layers, progress)
    return emb_eval, emb_train, obj.cfg.grl_layers, obj.cfg.split_layer


def _run_privacy(req: PrivacyRequest, options: SuiteOptions) -> dict:
    log = print if req.progress else (lambda *a, **k: None)
    attack = req.attack
    started = time.time()
    src = _sources(req)
    sources, loaded, layers, baseline = src.described, src.loaded, src.layers, req.baseline
    data = load_attack_data(Path(req.corpus), attack.attacker_utts or None, attack.eval_limit, attack.seed,
                            req.progress)
    seeds = list(range(attack.seed, attack.seed + req.attacker_seeds))
    report = {"format": REPORT_FORMAT, "command": "veil " + shlex.join(sys.argv[1:]), "host": platform.node(),
              "threads": torch.get_num_threads(), "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
              **data.describe(), "layers": layers, "seed": attack.seed, "attacker_seeds": req.attacker_seeds,
              "xvector_epochs": options.xvector_epochs, "attacker_options": options.describe(),
              "attackers": describe_attackers(options.names()), "models": {}, "ignorant": {}}
    if req.artifact is not None:
        report["artifact"] = {"export_dir": str(req.artifact),
                              "attacked": [s for s in sources.values() if s["kind"] == "artifact"],
                              "not_run": src.skipped}
    embs, fitted = {}, {}
    for name, obj in loaded.items():
        t0 = time.time()
        described = sources[name]
        log(f"{name}: {described['path'] if described['kind'] == 'artifact' else described['checkpoint']}")
        emb_eval, emb_train, grl, split = _embeddings(src, described["kind"], obj, data, req.progress)
        t_emb = time.time() - t0
        log(f"  embeddings: {t_emb:.0f} s")
        res, fit = attack_model(emb_eval, emb_train, data, layers, options, seeds, log)
        embs[name], fitted[name] = emb_eval, fit
        report["models"][name] = {**described, "grl_layers": grl, "split_layer": split,
                                  "embedding_seconds": round(t_emb, 1), "seconds": round(time.time() - t0, 1),
                                  "layers": {str(k): v for k, v in res.items()}}
    if baseline:
        for name in report["models"]:
            if name != "baseline":
                ign = ignorant_attacks(fitted["baseline"], embs[name], data, layers)
                report["ignorant"][name] = {str(k): v for k, v in ign.items()}
        _add_relative_changes(report)
    report["seconds"] = round(time.time() - started, 1)
    write_report(report, Path(req.out))
    if req.readme:
        refresh(req.readme, "privacy", headline(report, display_path(Path(req.out) / "privacy.json")), "Privacy")
    return report
