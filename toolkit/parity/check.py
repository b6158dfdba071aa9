"""The parity recipe: an export folder (``manifest.json`` + artifacts) -> ``parity.json``, ``parity.md``,
``parity.html``, ``.bpte`` check bundles, and the verdict written back into the manifest.

    read the export (``ExportManifest.read``: hashes, chunk length everywhere) and its checkpoint -> float
    reference on N real ``eval-speakers`` utterances, chunked as on a phone -> per artifact: real runtime,
    numbers, cloud numbers, gate -> localization of failing/borderline gaps -> bundled program -> report
    -> manifest.

A failed gate raises :class:`ParityFailed` after everything is written (artifacts are kept).
"""
from __future__ import annotations

import copy
import datetime
import platform
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import export as backends
from toolkit.chunking import ChunkSpec, pick_audio, run_chunked, torch_runner
from toolkit.console import say
from toolkit.errors import VeilError
from toolkit.exporting.calibration import manifest_calibration
from toolkit.exporting.manifest import ExportManifest
from toolkit.files import json_safe
from toolkit.headlines import refresh
from toolkit.model.asr import Prefix, Suffix
from toolkit.parity import coreml_offline, metrics, npu_offline
from toolkit.parity import gates as gating
from toolkit.parity.bundled import write_bundled_program
from toolkit.parity.localize import localize
from toolkit.parity.report import headline, write_reports
from toolkit.parity.stress import StressCase, first_gap, run_stress, stage_snr, stress_cases
from toolkit.paths import DEFAULT_CORPUS, display_path

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
    corpus: Path = DEFAULT_CORPUS
    split: str = PARITY_SPLIT
    utterances: int = DEFAULT_UTTS
    gates: dict = field(default_factory=gating.default_gates)
    localize: str = "auto"           # auto (failing or borderline) | always | never
    bundle: bool = True
    only: list[str] = field(default_factory=list)  # backends to check; default all in the manifest
    readme: Path | None = None       # also rewrite this README's export table (toolkit/headlines.py)


@dataclass
class Reference:
    """What every artifact is compared with: the float prefix and suffix of the export's checkpoint, run on
    the parity audio chunk by chunk as on a phone."""
    model: object
    prefix: Prefix
    suffix: Suffix
    chunk: ChunkSpec
    pcms: list[np.ndarray]
    texts: list[str]
    tokenizer: object
    embeddings: list[np.ndarray]     # (T, d) per utterance
    chunk_lists: list[list[np.ndarray]]
    log_probs: list                  # the float suffix on ``embeddings``
    plot_utt: int                    # the longest utterance: most chunk edges
    stress: list[StressCase] = field(default_factory=list)  # loud and hostile chunks (toolkit/parity/stress.py)


# ---- the recipe ----------------------------------------------------------------------------------------------

def run_parity(req: ParityRequest) -> dict:
    """Check every artifact of ``req.export_dir``; writes the reports and the manifest; returns parity.json's
    content. Raises ParityFailed when a gate failed, VeilError for anything a user can fix."""
    export_dir = Path(req.export_dir)
    manifest = ExportManifest.read(export_dir, only=req.only)
    k = manifest.split_layer
    adapter = manifest.model_adapter(req.checkpoint)  # toolkit/adapters: Veil's conformer or another encoder
    model, prefix, suffix, tokenizer = getattr(adapter, "model", None), adapter.prefix(k), adapter.suffix(k), adapter.tokenizer()
    if tokenizer is None:
        suffix = None  # no decoder: no transcripts, hence no ΔWER (said in the report)
    checkpoint = Path(req.checkpoint or manifest.checkpoint["path"])
    artifacts = manifest.artifacts()

    corpus = Path(req.corpus)
    utts, pcms = pick_audio(corpus, req.split, req.utterances)
    chunk = manifest.chunk
    say(f"parity: {len(utts)} utterances of {corpus / req.split}, {len(artifacts)} artifacts, float reference ...")
    ref_emb, chunk_lists = zip(*(run_chunked(torch_runner(prefix), p, chunk) for p in pcms))
    ref = Reference(model, prefix, suffix, chunk, pcms, [u.text for u in utts], tokenizer,
                    list(ref_emb), list(chunk_lists), metrics.decode(suffix, list(ref_emb)) if suffix else None,
                    int(np.argmax([len(p) for p in pcms])), stress_cases(pcms[0], chunk.chunk_samples, chunk.sample_rate))
    report = {
        "format": PARITY_FORMAT,
        "checked_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": f"{platform.system()} {platform.machine()}",
        "export_dir": str(export_dir), "checkpoint": {"path": str(checkpoint), "sha256": manifest.checkpoint["sha256"]},
        "split_layer": k,
        "audio": {"split": str(corpus / req.split), "utterances": len(utts), "speakers": len({u.speaker for u in utts}),
                  "seconds": round(sum(len(p) for p in pcms) / chunk.sample_rate, 2),
                  "chunks": sum(map(len, chunk_lists)), "chunk_samples": chunk.chunk_samples,
                  "frame_samples": chunk.frame_samples, "utterance_ids": [u.utt_id for u in utts]},
        "float": (metrics.transcript_error_rates(ref.log_probs, ref.texts, ref.tokenizer) if suffix else
                  {"wer": float("nan"), "cer": float("nan"), "status": "no-suffix", "detail": f"the {adapter.name} model has no CTC head and decoder here: "
                                                    f"no transcripts, no ΔWER"}),
        "adapter": manifest.section("adapter"),
        "gates": req.gates,
        "plot_utterance": {"id": utts[ref.plot_utt].utt_id, "frames": int(len(ref_emb[ref.plot_utt])),
                           "chunk_frames": chunk.chunk_frames},
        "stress_audio": {"from_utterance": utts[0].utt_id, "cases": [{"case": c.name, "what": c.what} for c in ref.stress]},
        "artifacts": [],
    }
    for i, (entry, art) in enumerate(artifacts, 1):
        say(f"[{i}/{len(artifacts)}] {entry['file']} ({art.backend} {art.recipe}) ...", end=" ")
        result = check_artifact(entry, art, ref, manifest, req)
        report["artifacts"].append(result)
        say(_status_line(result))

    failed = [a for a in report["artifacts"] if a["verdict"] == "fail"]
    pending = sorted({a["verdict"] for a in report["artifacts"] if a["verdict"] not in ("pass", "fail")})
    report["verdict"] = "fail" if failed else ("+".join(pending) if pending else "pass")
    write_reports(export_dir, report)
    record_verdict(manifest, report, req)
    if req.readme:
        refresh(req.readme, "parity", headline(json_safe(report), display_path(export_dir / "parity.json")), "Export and parity")
    say(f"parity: {report['verdict']}; wrote {export_dir}/parity.json, parity.md, parity.html")
    if failed:
        lines = [f"{a['file']} ({a['backend']} {a['recipe']}): " +
                 "; ".join(gating.describe_failure(f) for f in a["failures"]) for a in failed]
        raise ParityFailed("parity gate failed: " + " | ".join(lines) + f" (artifacts kept; see {export_dir}/parity.md)")
    return report


def record_verdict(manifest: ExportManifest, report: dict, req: ParityRequest) -> None:
    """The verdict, overall and per artifact, written back into ``manifest.json`` (atomically)."""
    manifest.data["parity"] = {"verdict": report["verdict"], "checked_at": report["checked_at"],
                               "report": "parity.json", "utterances": report["audio"]["utterances"],
                               "split": req.split,
                               "artifacts": {a["file"]: {"verdict": a["verdict"], "failures": a.get("failures", [])}
                                             for a in report["artifacts"]}}
    for entry in manifest.data["artifacts"]:
        for a in report["artifacts"]:
            if a["file"] == entry["file"]:
                measured = a.get("checked_on_linux", {}).get("mil_reference") or a
                entry["parity"] = {"verdict": a["verdict"], "snr_db": measured.get("numeric", {}).get("snr_db"),
                                   "dwer": measured.get("cloud", {}).get("dwer"), "failures": a.get("failures", [])}
                if measured is not a:
                    entry["parity"]["measured_by"] = measured["label"]
    manifest.write()


def _status_line(a: dict) -> str:
    mil = a.get("checked_on_linux", {}).get("mil_reference")
    if a["verdict"] in NOT_RUN_SUMMARY and not mil:
        return f"{a['verdict']} ({NOT_RUN_SUMMARY[a['verdict']]})"
    n, c, st = (mil["numeric"], mil["cloud"], mil["stress"]) if mil else (a["numeric"], a["cloud"], a["stress"])
    text = (f"{mil['label'] + ': ' if mil else ''}SNR {n['snr_db']:.1f} dB, cos {n['cosine_mean']:.4f}, "
            f"dWER {c['dwer']:+.2f}, identical {100 * c['identical_share']:.0f} %, stress worst "
            f"{st['stress_snr_db']:.1f} dB ({st['worst_case']}): {a['verdict']}")
    if a.get("failures"):
        text += " (" + "; ".join(gating.describe_failure(f) for f in a["failures"]) + ")"
    return text


def check_artifact(entry: dict, art: backends.Artifact, ref: Reference, manifest: ExportManifest,
                   req: ParityRequest) -> dict:
    gate = gating.gate_for(req.gates, art.backend, art.recipe)
    result = {"file": entry["file"], "backend": art.backend, "recipe": art.recipe, "size_bytes": art.size_bytes,
              "gate": gate}
    try:
        runner = backends.load(art)
    except backends.NotRunHere as exc:
        result.update(offline_checks(exc.status, entry, art, ref, manifest, gate))
        mil = result["checked_on_linux"].get("mil_reference")
        result["failures"] = mil["failures"] if mil else []  # the package's own program is gated; Core ML is not run
        result.update({"verdict": "fail" if result["failures"] else exc.status,
                       "execution": {"status": exc.status, "detail": str(exc)}})
        return result
    outs = [run_chunked(runner, p, ref.chunk)[0] for p in ref.pcms]
    result["runtime"] = type(runner).__name__
    result["numeric"] = metrics.embedding_metrics(ref.embeddings, outs)
    if ref.suffix is not None:
        result["cloud"] = metrics.cloud_metrics(ref.log_probs, metrics.decode(ref.suffix, outs), ref.texts, ref.tokenizer)
    else:  # no suffix: the cloud metrics are not measured and their gates not applied (named in the report)
        result["cloud"] = {**{m: float("nan") for m in NO_SUFFIX_METRICS}, "status": "no-suffix"}
        gate = {m: v for m, v in gate.items() if m not in NO_SUFFIX_GATES}
        result["gate"] = gate
        result["not_gated"] = {"metrics": sorted(NO_SUFFIX_GATES), "why": "no suffix and decoder: no transcripts"}
    result["cosine_over_time"] = [round(float(v), 6) for v in
                                  metrics.frame_cosine(ref.embeddings[ref.plot_utt], outs[ref.plot_utt])]
    result["stress"] = run_stress(ref.stress, torch_runner(ref.prefix), runner)
    failures = gating.check(gate, {**result["numeric"], **result["cloud"], **_stress_values(result["stress"])})
    nonfinite = result["numeric"]["nonfinite"] + result["stress"]["nonfinite"]
    if nonfinite:
        failures.append({"metric": "nonfinite", "value": nonfinite, "gate": 0, "direction": "max", "unit": "values"})
    if any(f["metric"].startswith("stress_") for f in failures) and req.localize != "never":
        worst = next(c for c in ref.stress if c.name == result["stress"]["worst_case"])
        result["stress"]["localization"] = localize_gap(art, ref, manifest, gate.get("stress_snr", 0.0),
                                                        result["stress"]["stress_snr_db"], chunks=[worst.pcm])
    result["failures"] = failures
    result["verdict"] = "fail" if failures else "pass"
    snr_gate = gate.get("snr")
    borderline = snr_gate is not None and result["numeric"]["snr_db"] < snr_gate + gating.BORDERLINE_DB
    result["borderline"] = bool(borderline and not failures)
    speech_failures = [f for f in failures if not f["metric"].startswith("stress_")]  # stress: localized above
    if req.localize == "always" or (req.localize == "auto" and (speech_failures or borderline)):
        result["localization"] = localize_gap(art, ref, manifest, (snr_gate or 0.0) + gating.BORDERLINE_DB,
                                              result["numeric"]["snr_db"])
    if req.bundle and art.backend == "executorch":
        cases = [c for chunks in ref.chunk_lists for c in chunks[:1]][:BUNDLED_CASES]
        reference = torch_runner(ref.prefix)
        expected = [reference(c) for c in cases]
        max_err = max(float(np.max(np.abs(runner(c) - e))) for c, e in zip(cases, expected))
        result["bundled_program"] = write_bundled_program(art.path, Path(manifest.dir) / (Path(entry["file"]).stem + ".bpte"),
                                                          cases, expected, atol=max(2.0 * max_err, 1e-6))
    return result


def localize_gap(art: backends.Artifact, ref: Reference, manifest: ExportManifest, threshold_db: float,
                 artifact_snr_db: float, chunks: list[np.ndarray] | None = None) -> dict:
    """Where the gap opens, on ``chunks`` (default: the first parity utterances' chunks)."""
    if manifest.section("adapter") and manifest.section("adapter").get("name") != "veil":
        return {"status": "skipped", "detail": "localization re-exports Veil's conformer stage by stage; not "
                                               "available for another adapter's model"}
    calibration = []
    if backends.get_backend(art.backend).RECIPES.get(art.recipe).needs_calibration:
        info = manifest.calibration or {}
        if not info:
            return {"status": "skipped", "detail": "manifest records no calibration audio for this recipe"}
        calibration = manifest_calibration(info, ref.chunk.chunk_samples)
    chunks = chunks or [c for cl in ref.chunk_lists[:LOCALIZE_UTTS] for c in cl]
    say("")
    try:
        return localize(ref.model, manifest.split_layer, art.backend, art.recipe, chunks, calibration, threshold_db,
                        artifact_snr_db, art.sha256(), progress=say)
    except backends.ExportError as exc:
        return {"status": "failed", "detail": str(exc)}


def coreml_mil_reference(art: backends.Artifact, ref: Reference, gate: dict) -> dict:
    """The .mlpackage's own MIL program, evaluated by Veil's numpy interpreter (``export.coreml_mil``) on the
    parity audio and the stress audio, gated like any runtime. Labelled ``mil-reference (Linux)``: Core ML itself
    (its kernels, the Neural Engine's numerics) did not run."""
    runner = coreml_offline.mil_runner(art)
    outs = [run_chunked(runner, p, ref.chunk)[0] for p in ref.pcms]
    mil = {"label": coreml_offline.MIL_LABEL, "how": coreml_offline.MIL_HOW,
           "program": runner.interpreter.summary(), **_numbers(ref, outs),
           "cosine_over_time": [round(float(v), 6) for v in
                                metrics.frame_cosine(ref.embeddings[ref.plot_utt], outs[ref.plot_utt])],
           "stress": run_stress(ref.stress, torch_runner(ref.prefix), runner)}
    failures = gating.check(gate, {**mil["numeric"], **mil["cloud"], **_stress_values(mil["stress"])})
    nonfinite = mil["numeric"]["nonfinite"] + mil["stress"]["nonfinite"]
    if nonfinite:
        failures.append({"metric": "nonfinite", "value": nonfinite, "gate": 0, "direction": "max", "unit": "values"})
    mil["failures"] = failures
    mil["verdict"] = "fail" if failures else "pass"
    mil["seconds_per_chunk"] = {"median": float(np.median(runner.seconds)), "max": float(np.max(runner.seconds)),
                                "chunks": len(runner.seconds), "chunk_seconds": ref.chunk.chunk_seconds}
    return mil


def coreml_offline_checks(art: backends.Artifact, ref: Reference, manifest: ExportManifest,
                          gate: dict) -> tuple[dict, object]:
    """What Linux can check of a .mlpackage; every number here is labelled: spec, weights, the package's program
    run by the MIL reference interpreter (gated), and the torch estimate beside it as a cross-check. Returns the
    checks and the estimate module (which also meets the stress audio)."""
    spec = coreml_offline.spec_vs_manifest(art, manifest.data)
    weights = coreml_offline.package_weights(art.path)
    matching = coreml_offline.match_weights(ref.prefix, weights)
    compute = backends.get_backend(art.backend).RECIPES.get(art.recipe).compute
    fp16 = compute == "fp16"
    est = coreml_offline.estimate_prefix(ref.prefix, weights, matching, fp16=fp16)
    outs = [run_chunked(torch_runner(est), p, ref.chunk)[0] for p in ref.pcms]
    estimate = {"label": "estimate", "how": "the torch Prefix with the package's dequantized weights" +
                (", float16 after the float32 frontend" if fp16 else ", float32") +
                "; not Core ML's kernels: an estimate, never a pass",
                "numeric": metrics.embedding_metrics(ref.embeddings, outs),
                "cloud": metrics.cloud_metrics(ref.log_probs, metrics.decode(ref.suffix, outs), ref.texts,
                                               ref.tokenizer)}
    checked = {"spec_vs_manifest": spec, "weights_vs_torch": matching}
    try:
        checked["mil_reference"] = coreml_mil_reference(art, ref, gate)
    except coreml_offline.coreml_mil.UnsupportedMILOp as exc:  # reported, never a pass; the estimate still runs
        checked["mil_reference_unavailable"] = str(exc)
    return {"checked_on_linux": {**checked, "fp16_estimate": estimate}}, est


NO_SUFFIX_METRICS = ("wer_float", "wer_artifact", "dwer", "dwer_abs", "cer_float", "cer_artifact", "dcer",
                     "wer_vs_float", "kl_mean", "identical_share")
NO_SUFFIX_GATES = ("dwer", "kl", "wer_vs_float")

NOT_RUN_SUMMARY = {"needs-macos": "not executed: spec checked, estimates only",
                   "needs-device": "not executed: NPU placement and the compiled graph's source checked, estimates only"}


def _stress_values(stress: dict) -> dict:
    return {"stress_snr_db": stress["stress_snr_db"], "stress_cosine_mean": stress["stress_cosine_mean"]}


def offline_checks(status: str, entry: dict, art: backends.Artifact, ref: Reference, manifest: ExportManifest,
                   gate: dict) -> dict:
    """What this machine can check of an artifact it cannot execute (``status``: ``needs-macos``,
    ``needs-device``), every number labelled; the torch estimate also meets the stress audio, and where it misses
    the stress gate the stage where its gap opens is named."""
    if art.backend == "coreml":
        checks, estimate_module = coreml_offline_checks(art, ref, manifest, gate)
    elif "npu" in entry:
        checks, estimate_module = npu_offline.checks(entry, art, ref.prefix, ref.pcms, ref.chunk, manifest,
                                                     lambda outs: _numbers(ref, outs))
    else:  # an ExecuTorch delegate for Apple hardware (Core ML): the delegate's fp16 after the float frontend
        estimate_module = coreml_offline.Float16AfterFrontend(copy.deepcopy(ref.prefix))
        outs = [run_chunked(torch_runner(estimate_module), p, ref.chunk)[0] for p in ref.pcms]
        checks = {"checked_on_linux": {"delegation": entry.get("delegation"), "fp16_estimate": {
            "label": "estimate", "how": "the torch Prefix, float16 after the float32 frontend (the Core ML "
                                        "delegate's compute precision; the frontend runs outside it); not Core ML's "
                                        "kernels: an estimate, never a pass", **_numbers(ref, outs)}}}
    stress = run_stress(ref.stress, torch_runner(ref.prefix), torch_runner(estimate_module))
    stress["label"] = "estimate"
    failures = gating.check({k: v for k, v in gate.items() if k.startswith("stress_")}, _stress_values(stress))
    stress["estimate_failures"] = failures
    if failures:
        worst = next(c for c in ref.stress if c.name == stress["worst_case"])
        stages = stage_snr(ref.prefix, estimate_module, worst.pcm)
        stress["stages"] = {"case": worst.name, "stages": stages,
                            "first_gap_stage": first_gap(stages, gate.get("stress_snr", 0.0))}
    checks["checked_on_linux"]["stress_estimate"] = stress
    return checks


def _numbers(ref: Reference, outs: list[np.ndarray]) -> dict:
    return {"numeric": metrics.embedding_metrics(ref.embeddings, outs),
            "cloud": metrics.cloud_metrics(ref.log_probs, metrics.decode(ref.suffix, outs), ref.texts, ref.tokenizer)}
