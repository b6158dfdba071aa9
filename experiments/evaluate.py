"""One evaluator for the research recipes: test WER/CER plus the attacker suite at chosen layers, cached.

:meth:`Evaluator.evaluate_checkpoint` is what the GRL sweep and the bottleneck frontier both call:

- the audio is loaded once and lazily (a fully cached recipe loads none);
- the result is cached in a JSON file beside the run, keyed by everything it depends on (checkpoint sha256, layers,
  corpus, attackers and their settings, attacker seeds and data); a damaged or stale cache is recomputed;
- a layer already attacked by a ``veil privacy`` report with the same checkpoint, attackers, seeds and attacker data
  (``reports``) is taken from that report instead of being attacked again;
- a checkpoint that froze the phone blocks of ``shared_prefix`` (``veil train --freeze-prefix``) is attacked through
  those blocks' output, computed once, plus its own bottleneck (checked tensor by tensor first).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from toolkit.data.dataset import AudioSet
from toolkit.data.librispeech import read_librispeech
from toolkit.decoding.evaluate import evaluate_set
from toolkit.errors import VeilError, read_json
from toolkit.files import file_sha256, write_json
from toolkit.model.asr import Prefix
from toolkit.model.bottleneck import replay_noise
from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
from toolkit.paths import display_path
from toolkit.payload import message_bytes
from toolkit.privacy.leakage import attack_model, checkpoint_embeddings, load_attack_data
from toolkit.privacy.suite import SuiteOptions

EVAL_CACHE = "experiment-eval.json"


def payload_bytes_per_second(codec: str, dim: int, groups: int, codes: int, chunk_frames: int,
                             chunk_seconds: float) -> float:
    """Bytes per second of audio of one payload message per chunk (``toolkit/payload.py``'s codecs)."""
    if codec == "vq":
        bits = 8 if codes <= 256 else 16
        return message_bytes("vq", chunk_frames, groups, bits) / chunk_seconds
    return message_bytes(codec, chunk_frames, dim) / chunk_seconds


def model_payload(model) -> dict:
    """The codec and bytes per second of audio a model's phone sends at its split."""
    cfg = model.cfg
    codes, groups = cfg.vq_codes, cfg.vq_groups
    codec = "vq" if codes else "int8"
    dim = cfg.embedding_dim
    bps = payload_bytes_per_second(codec, dim, groups, codes, cfg.chunk.chunk_frames, cfg.chunk.chunk_seconds)
    return {"codec": codec, "dim": dim, "groups": groups if codes else None, "codes": codes or None,
            "noise_std": cfg.bottleneck_noise or None, "bytes_per_second": round(bps, 1)}


def same_phone_blocks(model, other, k: int) -> bool:
    """Do two models compute the same phone blocks (frontend, subsampling, blocks 1..k, the split norm)?"""
    if model.cfg.split_norm != other.cfg.split_norm or model.cfg.split_layer != other.cfg.split_layer:
        return False
    a = Prefix(model, k, bottleneck=False).state_dict()
    b = Prefix(other, k, bottleneck=False).state_dict()
    return a.keys() == b.keys() and all(torch.equal(a[n].float(), b[n].float()) for n in a)


@torch.no_grad()
def transmit(model, x: np.ndarray, generator: torch.Generator | None = None) -> np.ndarray:
    """Block-k output frames (T, d) -> what the phone sends and the cloud receives through ``model``'s
    bottleneck (codewords with a codebook, z plus the channel's noise with one), as :meth:`VeilModel.encode`
    computes it."""
    z = model.bottleneck.phone(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)))
    return model.bottleneck.transmit(z, generator=generator)[0].numpy().astype(np.float32)


class Evaluator:
    """Loads the audio once (lazily) and evaluates checkpoints: :meth:`evaluate_checkpoint`."""

    def __init__(self, corpus: Path, options: SuiteOptions, seeds: list[int], attacker_utts: int | None = None,
                 eval_limit: int = 0, progress: bool = True, log=print, shared_prefix: Path | None = None):
        self.corpus, self.options, self.seeds = Path(corpus), options, list(seeds)
        self.attacker_utts, self.eval_limit = attacker_utts or None, eval_limit
        self.progress, self.log, self.shared_prefix = progress, log, shared_prefix
        self._data = self._test = self._shared = None

    # ---- the material, loaded once ----
    def data(self):
        if self._data is None:
            self._data = load_attack_data(self.corpus, self.attacker_utts, self.eval_limit, self.seeds[0],
                                          self.progress)
        return self._data

    def test(self):
        if self._test is None:
            split = self.corpus / "test"
            if not split.is_dir():
                raise VeilError(f"{split}: corpus test split not found")
            self._test = AudioSet.load(read_librispeech(split), "loading test", self.progress)
        return self._test

    def shared(self):
        """(init model, split layer, eval frames, training frames): the frozen phone blocks' output, computed once."""
        if self._shared is None:
            model = load_checkpoint(self.shared_prefix)[0].eval()
            k = model.cfg.split_layer
            t0 = time.time()
            ev, tr = checkpoint_embeddings(model, self.data(), [k], progress=self.progress)
            self.log(f"phone blocks of {self.shared_prefix.name} on the attack data: {time.time() - t0:.0f} s")
            self._shared = (model, k, ev[k], tr[k])
        return self._shared

    def embeddings(self, model, layers: list[int]) -> tuple[dict, dict]:
        """({layer: eval-speaker frames}, {layer: attacker-training frames}) of what the cloud receives."""
        if self.shared_prefix is not None and len(layers) == 1:
            init, k, ev, tr = self.shared()
            if layers[0] == k and same_phone_blocks(model, init, k):
                if model.bottleneck is None:
                    return {k: ev}, {k: tr}
                g = replay_noise()  # one stream: each utterance gets its own noise
                return {k: [transmit(model, x, g) for x in ev]}, {k: [transmit(model, x, g) for x in tr]}
        return checkpoint_embeddings(model, self.data(), layers, progress=self.progress)

    def key(self, sha: str, layers: list[int]) -> dict:
        """What an evaluation depends on: a cached one is reused only when all of it matches."""
        return {"checkpoint_sha256": sha, "layers": layers, "corpus": str(self.corpus.resolve()),
                "suite": self.options.describe(), "seeds": self.seeds, "attacker_utts": self.attacker_utts,
                "eval_limit": self.eval_limit}

    def recorded_row(self, reports: list[Path], sha: str, layer: int) -> tuple[dict, Path] | None:
        """A `veil privacy` report's row for this checkpoint and layer, made with the same attackers, seeds and
        attacker data (so a reference attacked before is not attacked again), or None."""
        for path in reports:
            report = read_json(path, f"{path}: --reference-privacy report not found")
            options = report.get("attacker_options") or {}
            same = (options.get("attackers") == self.options.attackers and
                    int(report.get("attacker_seeds", 1)) == len(self.seeds) and
                    report.get("attacker_train_utterances") == len(self.data().train_spk) and
                    report.get("eval_utterances") == len(self.data().eval_spk))
            for model in (report.get("models") or {}).values():
                row = (model.get("layers") or {}).get(str(layer))
                if same and model.get("sha256") == sha and row:
                    return row, path
        return None

    @staticmethod
    def read_cache(cache: Path | None, key: dict) -> dict | None:
        if cache is None or not cache.exists():
            return None
        try:
            cached = read_json(cache, f"{cache}: not found")
        except VeilError:
            return None  # a damaged cache is recomputed and rewritten
        return cached["result"] if isinstance(cached, dict) and cached.get("key") == key else None

    # ---- the one evaluation ----
    def evaluate_checkpoint(self, name: str, checkpoint: Path, cache: Path | None, layers: list[int] | None = None,
                            reports: list[Path] = ()) -> dict:
        """Test WER/CER and the suite at ``layers`` (default: the model's split layer) of ``checkpoint``, cached in
        ``cache``; ``result["privacy"]`` maps each layer (a string) to its row, ``result["cached"]`` says whether
        it was computed now."""
        sha = file_sha256(checkpoint)
        model, config = load_checkpoint(checkpoint)
        layers = list(layers or [model.cfg.split_layer])
        key = self.key(sha, layers)
        cached = self.read_cache(cache, key)
        if cached is not None:
            self.log(f"evaluate {name}: cached ({cache})")
            return {**cached, "cached": True}
        if max(layers) > model.cfg.n_blocks:
            raise VeilError(f"{checkpoint}: has {model.cfg.n_blocks} blocks; asked to attack layer {max(layers)}")
        t0 = time.time()
        test = evaluate_set(model, tokenizer_from(config), self.test())
        t_test = time.time() - t0
        self.log(f"evaluate {name}: test WER {test['wer']:.2f} %  CER {test['cer']:.2f} %  [{t_test:.0f} s]")
        rows = {}
        for k in layers:
            recorded = self.recorded_row(list(reports), sha, k) if reports else None
            if recorded is not None:
                rows[k] = {**recorded[0], "recorded_in": str(recorded[1])}
                self.log(f"evaluate {name}: layer {k} from {recorded[1]} (same checkpoint, layer and attackers)")
        todo = [k for k in layers if k not in rows]
        t1 = time.time()
        if todo:
            emb_eval, emb_train = self.embeddings(model.eval(), todo)
            rows.update(attack_model(emb_eval, emb_train, self.data(), todo, self.options, self.seeds, self.log)[0])
        cfg = model.cfg
        result = {"name": name, "checkpoint": display_path(checkpoint), "sha256": sha, "layers": layers,
                  "split_layer": cfg.split_layer, "split_norm": cfg.split_norm, "grl_layers": cfg.grl_layers,
                  "speaker_head": getattr(cfg, "speaker_head", None),
                  "lambda_max": cfg.grl_lambda_max if cfg.grl_layers else None, "payload": model_payload(model),
                  "test": {"wer": test["wer"], "cer": test["cer"], "utterances": test["utterances"]},
                  "privacy": {str(k): rows[k] for k in layers}, "attack_data": self.data().describe(),
                  "seconds": {"test": round(t_test, 1), "attacks": round(time.time() - t1, 1),
                              "total": round(time.time() - t0, 1)}}
        if cache is not None:
            Path(cache).parent.mkdir(parents=True, exist_ok=True)
            write_json(cache, {"key": key, "result": result})
        return {**result, "cached": False}
