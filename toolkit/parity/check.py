"""The parity recipe: an export folder (``manifest.json`` + artifacts) -> ``parity.json``, ``parity.md``,
``parity.html``, ``.bpte`` check bundles, and the verdict written back into the manifest.

    check inputs (checkpoint and artifact hashes, chunk length everywhere) -> float reference on N real
    ``eval-speakers`` utterances, chunked as on a phone -> per artifact: real runtime, numbers, cloud
    numbers, gate -> localization of failing/borderline gaps -> bundled program -> report -> manifest.

A failed gate raises :class:`ParityFailed` after everything is written (artifacts are kept).
"""
from __future__ import annotations

import datetime
import json
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

import export as backends
from toolkit.errors import VeilError, read_json
from toolkit.exporting.console import say
from toolkit.parity import gates as gating
from toolkit.parity import metrics

PARITY_FORMAT = "veil-parity/1"
PARITY_SPLIT = "eval-speakers"
DEFAULT_UTTS = 24
BUNDLED_CASES = 8
LOCALIZE_UTTS = 6


class ParityFailed(VeilError):
    """At least one artifact missed its gate; the message names artifact, metric, value and gate."""
    exit_code = 1


@dataclass
class ParityRequest:
    export_dir: Path
    checkpoint: Path | None = None   # default: the manifest's checkpoint path
    corpus: Path | None = None       # default: toolkit.cli.DEFAULT_CORPUS
    split: str = PARITY_SPLIT
    utterances: int = DEFAULT_UTTS
    gates: dict = field(default_factory=gating.default_gates)
    localize: str = "auto"           # auto (failing or borderline) | always | never
    bundle: bool = True
    only: list[str] = field(default_factory=list)  # backends to check; default all in the manifest


# ---- inputs ------------------------------------------------------------------------------------------------

def read_manifest(export_dir: Path) -> dict:
    return read_json(export_dir / "manifest.json",
                     f"{export_dir}: no manifest.json (not an export folder; run `veil export` first)")


def runtime_input_shape(artifact) -> tuple[int, ...]:
    """The input shape the artifact file itself declares, read through its runtime (or spec for Core ML)."""
    if artifact.backend == "executorch":
        from executorch.runtime import Runtime
        meta = Runtime.get().load_program(Path(artifact.path)).metadata("forward")
        return tuple(int(d) for d in meta.input_tensor_meta(0).sizes())
    if artifact.backend == "litert":
        from ai_edge_litert.interpreter import Interpreter
        details = Interpreter(model_path=str(artifact.path)).get_input_details()
        return tuple(int(d) for d in details[0]["shape"])
    spec = backends.get_backend("coreml").describe(artifact.path)
    return tuple(spec["inputs"][0]["shape"])


def check_inputs(manifest: dict, export_dir: Path, checkpoint: Path, cfg, artifacts) -> None:
    """Refuse to compare things that do not belong together: changed files, other checkpoints, chunk lengths."""
    from toolkit.model.checkpoint import file_sha256
    chunk = int(manifest["input"]["chunk_samples"])
    for entry, art in artifacts:
        if not art.path.exists():
            raise VeilError(f"{art.path}: artifact listed in manifest.json is missing")
        if art.sha256() != entry["sha256"]:
            raise VeilError(f"{entry['file']}: sha256 differs from manifest.json (the file changed after export)")
        shape = runtime_input_shape(art)
        declared = {"manifest input.chunk_samples": chunk, "manifest input.shape": manifest["input"]["shape"][-1],
                    f"manifest entry of {entry['file']}": entry["input"]["shape"][-1]}
        for where, value in declared.items():
            if shape[-1] != int(value):
                raise VeilError(f"chunk length mismatch: {entry['file']} takes {shape[-1]}-sample chunks "
                                f"(shape {list(shape)}) but {where} says {value}")
    if cfg.chunk_samples != chunk:
        raise VeilError(f"chunk length mismatch: checkpoint {checkpoint.name} runs {cfg.chunk_samples}-sample "
                        f"chunks, manifest.json says {chunk}")
    want = manifest["checkpoint"]["sha256"]
    if file_sha256(checkpoint) != want:
        raise VeilError(f"{checkpoint}: not the checkpoint this export was made from (sha256 differs from "
                        f"manifest.json); pass --checkpoint with the original")


def pick_audio(corpus: Path, split: str, count: int):
    from toolkit.audio import load_audio
    from toolkit.data.librispeech import read_librispeech
    from toolkit.exporting.calibration import pick_utterances
    if count < 1:
        raise VeilError(f"--parity-utts must be at least 1, got {count}")
    split_dir = corpus / split
    if not split_dir.is_dir():
        raise VeilError(f"{split_dir}: parity corpus split not found (set --corpus)")
    utts = pick_utterances(read_librispeech(split_dir, probe_lengths=False), count)
    return utts, [load_audio(u.path) for u in utts]


def run_chunked(run, pcm: np.ndarray, chunk_samples: int, frame_samples: int) -> tuple[np.ndarray, list]:
    """As the phone runs it: chunks of ``chunk_samples`` (last zero-padded), frames concatenated and trimmed
    to ceil(S / frame_samples). ``run``: (1, chunk) float32 -> (1, frames, d). Returns (T, d) and the chunks."""
    from toolkit.exporting.calibration import chunk_pcm
    chunks = chunk_pcm(pcm, chunk_samples)
    frames = np.concatenate([run(c)[0] for c in chunks])
    return frames[: -(-len(pcm) // frame_samples)], chunks


# ---- the recipe ----------------------------------------------------------------------------------------------

def run_parity(req: ParityRequest) -> dict:
    """Check every artifact of ``req.export_dir``; writes the reports and the manifest; returns parity.json's
    content. Raises ParityFailed when a gate failed, VeilError for anything a user can fix."""
    from toolkit.cli import DEFAULT_CORPUS
    from toolkit.model.asr import split
    from toolkit.model.checkpoint import load_checkpoint, tokenizer_from
    from toolkit.model.checkpoint import atomic_write_bytes
    from toolkit.parity.report import write_reports

    export_dir = Path(req.export_dir)
    manifest = read_manifest(export_dir)
    checkpoint = Path(req.checkpoint or manifest["checkpoint"]["path"])
    if not checkpoint.is_file():
        raise VeilError(f"{checkpoint}: checkpoint of this export not found (pass --checkpoint)")
    model, config = load_checkpoint(checkpoint)
    cfg = model.cfg
    k = int(manifest["split_layer"])
    prefix, suffix = split(model, k)
    prefix.eval(), suffix.eval()
    tokenizer = tokenizer_from(config)
    entries = [e for e in manifest["artifacts"] if not req.only or e["backend"] in req.only]
    artifacts = [(e, backends.Artifact.from_json(e, export_dir)) for e in entries]
    check_inputs(manifest, export_dir, checkpoint, cfg, artifacts)

    corpus = Path(req.corpus or DEFAULT_CORPUS)
    utts, pcms = pick_audio(corpus, req.split, req.utterances)
    texts = [u.text for u in utts]
    cs, fs = cfg.chunk_samples, cfg.frame_samples
    say(f"parity: {len(utts)} utterances of {corpus / req.split}, {len(artifacts)} artifacts, float reference ...")

    def torch_run(module):
        def run(c):
            with torch.no_grad():
                return module(torch.from_numpy(c)).numpy()
        return run

    ref_emb, chunk_lists = zip(*(run_chunked(torch_run(prefix), p, cs, fs) for p in pcms))
    ref_lp = metrics.decode(suffix, list(ref_emb))
    plot_utt = int(np.argmax([len(p) for p in pcms]))  # the longest: most chunk edges
    report = {
        "format": PARITY_FORMAT,
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": f"{platform.system()} {platform.machine()}",
        "export_dir": str(export_dir), "checkpoint": {"path": str(checkpoint), "sha256": manifest["checkpoint"]["sha256"]},
        "split_layer": k,
        "audio": {"split": str(corpus / req.split), "utterances": len(utts), "speakers": len({u.speaker for u in utts}),
                  "seconds": round(sum(len(p) for p in pcms) / 16000, 2), "chunks": sum(map(len, chunk_lists)),
                  "chunk_samples": cs, "frame_samples": fs, "utterance_ids": [u.utt_id for u in utts]},
        "float": metrics.transcript_error_rates(ref_lp, texts, tokenizer),
        "gates": req.gates,
        "plot_utterance": {"id": utts[plot_utt].utt_id, "frames": int(len(ref_emb[plot_utt])),
                           "chunk_frames": cfg.chunk_frames},
        "artifacts": [],
    }
    for i, (entry, art) in enumerate(artifacts, 1):
        say(f"[{i}/{len(artifacts)}] {entry['file']} ({art.backend} {art.recipe}) ...", end=" ")
        result = check_artifact(entry, art, prefix, suffix, list(ref_emb), ref_lp, list(chunk_lists), pcms,
                                texts, tokenizer, cfg, manifest, req, export_dir, plot_utt)
        report["artifacts"].append(result)
        say(_status_line(result))

    failed = [a for a in report["artifacts"] if a["verdict"] == "fail"]
    pending = [a for a in report["artifacts"] if a["verdict"] == "needs-macos"]
    report["verdict"] = "fail" if failed else ("needs-macos" if pending else "pass")
    write_reports(export_dir, report)

    manifest["parity"] = {"verdict": report["verdict"], "checked_at": report["checked_at"], "report": "parity.json",
                          "utterances": len(utts), "split": req.split,
                          "artifacts": {a["file"]: {"verdict": a["verdict"], "failures": a.get("failures", [])}
                                        for a in report["artifacts"]}}
    for entry in manifest["artifacts"]:
        for a in report["artifacts"]:
            if a["file"] == entry["file"]:
                entry["parity"] = {"verdict": a["verdict"], "snr_db": a.get("numeric", {}).get("snr_db"),
                                   "dwer": a.get("cloud", {}).get("dwer"), "failures": a.get("failures", [])}
    atomic_write_bytes(export_dir / "manifest.json", (json.dumps(manifest, indent=1) + "\n").encode())
    say(f"parity: {report['verdict']}; wrote {export_dir}/parity.json, parity.md, parity.html")
    if failed:
        lines = [f"{a['file']} ({a['backend']} {a['recipe']}): " +
                 "; ".join(gating.describe_failure(f) for f in a["failures"]) for a in failed]
        raise ParityFailed("parity gate failed: " + " | ".join(lines) + f" (artifacts kept; see {export_dir}/parity.md)")
    return report


def _status_line(a: dict) -> str:
    if a["verdict"] == "needs-macos":
        return "needs-macos (spec + weights checked, fp16 estimate only)"
    n, c = a["numeric"], a["cloud"]
    text = (f"SNR {n['snr_db']:.1f} dB, cos {n['cosine_mean']:.4f}, dWER {c['dwer']:+.2f}, "
            f"identical {100 * c['identical_share']:.0f} %: {a['verdict']}")
    if a.get("failures"):
        text += " (" + "; ".join(gating.describe_failure(f) for f in a["failures"]) + ")"
    return text


def check_artifact(entry, art, prefix, suffix, ref_emb, ref_lp, chunk_lists, pcms, texts, tokenizer, cfg,
                   manifest, req, export_dir, plot_utt) -> dict:
    gate = gating.gate_for(req.gates, art.backend, art.recipe)
    result = {"file": entry["file"], "backend": art.backend, "recipe": art.recipe, "gate": gate}
    try:
        runner = backends.load(art)
    except backends.NeedsMacOS as exc:
        result.update(coreml_offline_checks(art, prefix, suffix, manifest, pcms, ref_emb, ref_lp, texts, tokenizer, cfg))
        result.update({"verdict": "needs-macos", "execution": {"status": exc.status, "detail": str(exc)}})
        return result
    outs = [run_chunked(runner, p, cfg.chunk_samples, cfg.frame_samples)[0] for p in pcms]
    result["runtime"] = type(runner).__name__
    result["numeric"] = metrics.embedding_metrics(ref_emb, outs)
    art_lp = metrics.decode(suffix, outs)
    result["cloud"] = metrics.cloud_metrics(ref_lp, art_lp, texts, tokenizer)
    result["cosine_over_time"] = [round(float(v), 6) for v in metrics.frame_cosine(ref_emb[plot_utt], outs[plot_utt])]
    failures = gating.check(gate, {**result["numeric"], **result["cloud"]})
    if result["numeric"]["nonfinite"]:
        failures.append({"metric": "nonfinite", "value": result["numeric"]["nonfinite"], "gate": 0,
                         "direction": "max", "unit": "values"})
    result["failures"] = failures
    result["verdict"] = "fail" if failures else "pass"
    snr_gate = gate.get("snr")
    borderline = snr_gate is not None and result["numeric"]["snr_db"] < snr_gate + gating.BORDERLINE_DB
    result["borderline"] = bool(borderline and not failures)
    if req.localize == "always" or (req.localize == "auto" and (failures or borderline)):
        result["localization"] = localize_gap(art, prefix, chunk_lists, manifest, cfg,
                                              (snr_gate or 0.0) + gating.BORDERLINE_DB, result["numeric"]["snr_db"])
    if req.bundle and art.backend == "executorch":
        from toolkit.parity.bundled import write_bundled_program
        cases = [c for chunks in chunk_lists for c in chunks[:1]][:BUNDLED_CASES]
        with torch.no_grad():
            expected = [prefix(torch.from_numpy(c)).numpy() for c in cases]
        max_err = max(float(np.max(np.abs(runner(c) - e))) for c, e in zip(cases, expected))
        result["bundled_program"] = write_bundled_program(art.path, export_dir / (Path(entry["file"]).stem + ".bpte"),
                                                          cases, expected, atol=max(2.0 * max_err, 1e-6))
    return result


def localize_gap(art, prefix, chunk_lists, manifest, cfg, threshold_db, artifact_snr_db) -> dict:
    from toolkit.exporting.calibration import calibration_chunks
    from toolkit.exporting.prefix_export import FLOAT_MODULES
    from toolkit.parity.localize import localize
    calibration = []
    if backends.get_backend(art.backend).RECIPES.get(art.recipe).needs_calibration:
        info = manifest.get("calibration") or {}
        if not info:
            return {"status": "skipped", "detail": "manifest records no calibration audio for this recipe"}
        calibration, _ = calibration_chunks(Path(info["corpus_split"]), int(info["utterances"]), cfg.chunk_samples)
    chunks = [c for cl in chunk_lists[:LOCALIZE_UTTS] for c in cl]
    say("")
    try:
        return localize(prefix, art.backend, art.recipe, chunks, calibration, threshold_db, artifact_snr_db,
                        FLOAT_MODULES, progress=say)
    except backends.ExportError as exc:
        return {"status": "failed", "detail": str(exc)}


def coreml_offline_checks(art, prefix, suffix, manifest, pcms, ref_emb, ref_lp, texts, tokenizer, cfg) -> dict:
    """What Linux can check of a .mlpackage; every number here is labelled: spec, weights, estimate."""
    from toolkit.parity import coreml_offline as co
    spec = co.spec_vs_manifest(art.path, manifest)
    weights = co.package_weights(art.path)
    matching = co.match_weights(prefix, weights)
    fp16 = art.recipe != "fp32"
    est = co.estimate_prefix(prefix, weights, matching, fp16=fp16)

    def run(c):
        with torch.no_grad():
            return est(torch.from_numpy(c)).numpy()
    outs = [run_chunked(run, p, cfg.chunk_samples, cfg.frame_samples)[0] for p in pcms]
    estimate = {"label": "estimate", "how": "torch prefix with the package's dequantized weights" +
                (", float16 after the float32 frontend" if fp16 else ", float32") +
                "; not Core ML's kernels: an estimate, never a pass",
                "numeric": metrics.embedding_metrics(ref_emb, outs),
                "cloud": metrics.cloud_metrics(ref_lp, metrics.decode(suffix, outs), texts, tokenizer)}
    weights_report = {k: v for k, v in matching.items() if k != "tensors"}
    weights_report["tensors"] = matching["tensors"]
    return {"checked_on_linux": {"spec_vs_manifest": spec, "weights_vs_torch": weights_report,
                                 "fp16_estimate": estimate}}
