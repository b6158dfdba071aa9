"""The export recipe: checkpoint -> on-device prefix -> one artifact per backend -> ``manifest.json``.

A linear story: check the request (targets, recipes, split layer, output folder) before any slow work,
load the checkpoint, cut the prefix, gather calibration audio when a recipe needs it, export each backend
into a temporary folder beside ``--out``, check each file against the manifest's input/output and run it
once in its real runtime as a smoke check, write the manifest, and only then move the folder into place. A
failure anywhere removes the temporary folder, so no partial artifact or manifest is ever left in ``--out``;
converter output and tracebacks go to a log file (kept only when something failed) unless ``--verbose``
shows them on the terminal.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

import export as backends
from toolkit.chunking import ChunkSpec, torch_runner
from toolkit.console import captured_output, human_bytes, say
from toolkit.errors import VeilError
from toolkit.exporting.calibration import CALIBRATION_UTTS, calibration_chunks
from toolkit.adapters import open_adapter
from toolkit.adapters.manifest_info import io_for, new_manifest
from toolkit.exporting.manifest import INPUT_NAME, OUTPUT_NAME, ExportManifest
from toolkit.files import replace_dir, temp_dir_beside
from toolkit.paths import DEFAULT_CORPUS, EXPORTS_DIR, default_export_dir

CHECK_SPLIT, CHECK_UTTS = "dev", 2
MIN_CHECK_SNR_DB = 10.0  # below this an artifact computes something else than the float prefix
CHECKED_INSTEAD = {  # what an export checks of an artifact it cannot execute here
    "needs-macos": "the file declares this manifest's inputs/outputs; frontend ops are float32 and uncompressed "
                   "(Core ML: in the MIL program; ExecuTorch: outside the Core ML delegate)",
    "needs-device": "the file declares this manifest's inputs/outputs; the graph given to the NPU compiler passed "
                    "the recipe's checks (float32 I/O, frontend not quantized); the compiler's op placement is in "
                    "the artifact's npu section",
}


def targets() -> dict[str, list[str]]:
    """``android``, ``ios`` and ``all`` (from each backend's ``TARGET``), and each backend by its own name."""
    return {**backends.targets(), **{b: [b] for b in backends.BACKENDS}}


@dataclass
class ExportRequest:
    checkpoint: Path
    target: str = "all"
    recipes: list[str] = field(default_factory=list)  # "NAME" for every backend, or "BACKEND=NAME"
    split_layer: int | None = None
    out: Path | None = None
    corpus: Path = DEFAULT_CORPUS
    calibration_split: str = "train"
    calibration_utts: int = CALIBRATION_UTTS
    calibration_loud: bool = False  # add the seeded loud chunks (toolkit/exporting/calibration.py)
    verbose: bool = False
    adapter: str | None = None  # toolkit/adapters: another encoder than Veil's (then config/weights, or model)
    config: str | None = None
    weights: Path | None = None
    model: str | None = None    # MODULE:FUNCTION of any nn.Module (the 'module' adapter)


@dataclass
class Plan:
    backends: list[str]
    recipes: dict[str, str]  # backend -> recipe name


def plan_backends(target: str, recipe_args: list[str], defaults: dict | None = None) -> Plan:
    """Which backends and recipes a request means; every mistake is a one-line VeilError. ``defaults``: an
    adapter's own default recipe for some backends (``ModelAdapter.default_recipes``)."""
    known = targets()
    if target not in known:
        raise VeilError(f"unknown target '{target}' (targets: {', '.join(known)})")
    names = list(known[target])
    recipes = {b: (defaults or {}).get(b, backends.get_backend(b).DEFAULT_RECIPE) for b in names}
    for arg in recipe_args:
        backend, sep, recipe = arg.partition("=")
        if not sep:
            recipes = {b: arg for b in names}
            continue
        if backend not in backends.BACKENDS:
            raise VeilError(f"--recipe {arg}: unknown backend '{backend}' (backends: {', '.join(backends.BACKENDS)})")
        if backend not in names:
            raise VeilError(f"--recipe {arg}: backend {backend} is not part of target '{target}' ({', '.join(names)})")
        recipes[backend] = recipe
    for b in names:
        try:
            backends.get_backend(b).RECIPES.get(recipes[b]).check_requirements()  # e.g. an NPU compiler's SDK
        except (backends.UnknownRecipe, backends.MissingNpuSdk) as exc:
            raise VeilError(str(exc)) from None
    return Plan(names, recipes)


def prepare_out_dir(out: Path) -> Path:
    """Check ``out`` can receive an export and make the temporary folder beside it. ``out`` may be new,
    empty, or a previous export (it has a manifest.json); anything else is refused rather than replaced."""
    if out.exists() and not out.is_dir():
        raise VeilError(f"{out}: output path exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not (out / "manifest.json").is_file():
        raise VeilError(f"{out}: output directory is not empty and holds no previous export (manifest.json); "
                        f"choose a new or empty directory")
    try:
        return temp_dir_beside(out)
    except OSError as exc:
        raise VeilError(f"{out}: output directory is not writable ({exc.strerror or exc})") from None


def check_chunks(corpus: Path, chunk: ChunkSpec) -> tuple[list[np.ndarray], str]:
    """A few real chunks for the smoke check (corpus ``dev`` split, disjoint from calibration); a fixed
    synthetic signal (tones + noise) when no corpus is there."""
    split_dir = Path(corpus) / CHECK_SPLIT
    if split_dir.is_dir():
        chunks, info = calibration_chunks(split_dir, CHECK_UTTS, chunk.chunk_samples)
        return chunks, f"{info['utterances']} utterances ({info['chunks']} chunks) of {split_dir}"
    rng = np.random.default_rng(0)
    t = np.arange(chunk.chunk_samples) / chunk.sample_rate
    pcm = 0.3 * np.sin(2 * np.pi * 220 * t) * np.sin(2 * np.pi * 3 * t) + 0.02 * rng.standard_normal(chunk.chunk_samples)
    return [pcm.astype(np.float32).reshape(1, -1)], "synthetic: 220 Hz tone with 3 Hz envelope + noise, seed 0"


def smoke_check(artifact, prefix, chunks: list[np.ndarray], check_audio: str) -> dict:
    """Run the artifact once per chunk in its real runtime and compare with the float torch prefix."""
    try:
        runner = backends.load(artifact)
    except backends.NotRunHere as exc:
        return {"status": exc.status, "detail": str(exc), "checked_instead": CHECKED_INSTEAD[exc.status]}
    outs = np.concatenate([runner(c) for c in chunks])
    reference = torch_runner(prefix)
    refs = np.concatenate([reference(c) for c in chunks])
    if not np.all(np.isfinite(outs)):
        raise backends.ConversionFailed(artifact.backend, artifact.recipe, "the artifact produces non-finite embeddings")
    snr = backends.snr_db(refs, outs)
    if snr < MIN_CHECK_SNR_DB:
        raise backends.ConversionFailed(artifact.backend, artifact.recipe,
                                        f"the artifact's embeddings differ from torch (SNR {snr:.1f} dB "
                                        f"< {MIN_CHECK_SNR_DB:.0f} dB)")
    return {"status": "ran", "runtime": type(runner).__name__, "audio": check_audio, "chunks": len(chunks),
            "snr_db": round(snr, 2), "max_abs_error": float(np.max(np.abs(outs - refs)))}


def check_spec(artifact, io: dict) -> None:
    """On any OS: the file must declare the manifest's input (and, where it names them, output)."""
    mismatches = backends.get_backend(artifact.backend).check_spec(artifact, io)
    if mismatches:
        raise backends.ConversionFailed(artifact.backend, artifact.recipe,
                                        "the file does not declare the manifest's I/O: " + "; ".join(mismatches))


def all_library_versions(names: list[str]) -> dict:
    versions = {}
    for b in names:
        versions.update(backends.get_backend(b).library_info())
    versions["numpy"] = np.__version__
    return dict(sorted(versions.items()))


def export_prefix(req: ExportRequest) -> tuple[Path, ExportManifest]:
    """Run the whole export; returns the output folder and its manifest. Raises VeilError for anything a
    user can fix."""
    plan_backends(req.target, req.recipes)  # a mistake in the request fails before the model loads
    adapter = open_adapter(adapter=req.adapter, config=req.config, weights=req.weights, model=req.model,
                           checkpoint=req.checkpoint)
    plan = plan_backends(req.target, req.recipes, adapter.default_recipes)
    k = adapter.check_cut(req.split_layer)
    if req.out:
        out = Path(req.out)
    elif adapter.name == "veil":
        out = default_export_dir(req.checkpoint, k)
    else:
        out = EXPORTS_DIR / f"{adapter.name}-{Path(str(req.weights or req.config or req.model)).stem}-k{k}"
    req = replace(req, out=out, corpus=Path(req.corpus))
    tmp = prepare_out_dir(out)
    say(adapter.describe(k))
    if adapter.name == "veil" and k > adapter.model.cfg.split_layer:
        cfg = adapter.model.cfg
        say(f"  note: blocks {cfg.split_layer + 1}..{k} were trained on whole utterances and will run on "
            f"{cfg.chunk.chunk_seconds:.2f} s chunks on the phone "
            f"(manifest: trained_chunked_through={cfg.split_layer})")
    log_path, keep_log, manifest = None, False, None
    try:
        log_fd, log_name = tempfile.mkstemp(prefix=f"veil-export-{out.name}-", suffix=".log")
        log_path = Path(log_name)
        with os.fdopen(log_fd, "w") as log:
            try:
                manifest = _export_into(tmp, plan, req, adapter, k, log)
            except backends.ExportError as exc:
                traceback.print_exc(file=log)
                if req.verbose:
                    traceback.print_exc()
                keep_log = True
                raise VeilError(f"{exc} (full log: {log_path})") from None
    finally:
        if manifest is None:
            shutil.rmtree(tmp, ignore_errors=True)
        if log_path is not None and not keep_log:
            log_path.unlink(missing_ok=True)
    return out, manifest


def _export_into(tmp: Path, plan: Plan, req: ExportRequest, adapter, k: int, log) -> ExportManifest:
    prefix = adapter.prefix(k).eval()
    corpus = Path(req.corpus)
    calibration, calibration_info = [], None
    if any(backends.get_backend(b).RECIPES.get(plan.recipes[b]).needs_calibration for b in plan.backends):
        calibration, calibration_info = calibration_chunks(corpus / req.calibration_split, req.calibration_utts,
                                                           adapter.chunk.chunk_samples, loud=req.calibration_loud)
        say(f"calibration: {calibration_info['utterances']} utterances ({calibration_info['speakers']} speakers), "
            f"{calibration_info['chunks']} chunks from {calibration_info['corpus_split']}"
            + (f" + {calibration_info['loud']['chunks']} loud chunks (full-scale tones, noise, clipped speech)"
               if "loud" in calibration_info else ""))
    chunks, check_audio = check_chunks(corpus, adapter.chunk)
    io = io_for(adapter, k)
    artifacts = []
    for i, name in enumerate(plan.backends, 1):
        backend = backends.get_backend(name)
        recipe = plan.recipes[name]
        filename = f"prefix-k{k}-{recipe.replace(':', '-')}{backend.SUFFIX}"  # no ':' in file names
        say(f"[{i}/{len(plan.backends)}] {name} {recipe} -> {filename} ...", end=" ")
        print(f"\n===== {name} {recipe} =====", file=log, flush=True)
        try:
            with captured_output(log, enabled=not req.verbose):
                artifact = backend.export(prefix, (chunks[0],), recipe, tmp / filename, calibration=calibration,
                                          float_modules=adapter.float_modules, input_name=INPUT_NAME,
                                          output_name=OUTPUT_NAME)
                check_spec(artifact, io)
                check = smoke_check(artifact, prefix, chunks, check_audio)
        except backends.ExportError:
            say("failed")
            raise
        entry = artifact.to_json(relative_to=tmp)
        entry["check"] = check
        artifacts.append(entry)
        say(f"{artifact.export_seconds:.1f} s, {human_bytes(artifact.size_bytes)}, {_check_text(check, entry)}")

    manifest = new_manifest(adapter, req.out, split_layer=k, recipes=plan.recipes, calibration=calibration_info,
                            libraries=all_library_versions(plan.backends), artifacts=artifacts, tmp=tmp)
    manifest.write(tmp)
    replace_dir(tmp, req.out)
    print_summary(req.out, manifest.data)
    return manifest


def _check_text(check: dict, entry: dict) -> str:
    parts = []
    if "delegation" in entry:
        d = entry["delegation"]
        parts.append(f"{d['ops_delegated']}/{d['ops_total']} ops on {d.get('label', 'XNNPACK')}")
    if "npu" in entry:
        p = entry["npu"]["placement"]
        parts.append(f"{p['ops_on_npu']}/{p['ops_total']} ops on the {entry['npu']['soc']} NPU, "
                     f"{p['partitions']} partition{'s' if p['partitions'] != 1 else ''}")
    if check["status"] == "ran":
        parts.append(f"SNR {check['snr_db']:.1f} dB vs torch")
    else:
        parts.append(f"{check['status']} (spec checked)")
    return ", ".join(parts)


def print_summary(out: Path, manifest: dict) -> None:
    rows = [("artifact", "backend", "recipe", "size", "export", "check")]
    for a in manifest["artifacts"]:
        check = a["check"]
        rows.append((a["file"], a["backend"], a["recipe"], human_bytes(a["size_bytes"]), f"{a['export_seconds']:.1f} s",
                     f"SNR {check['snr_db']:.1f} dB" if check["status"] == "ran" else check["status"]))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    print()
    for row in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    inp, outp = manifest["input"], manifest["output"]
    print(f"\ninput  {inp['name']} {inp['shape']} float32 PCM, {inp['chunk_seconds']:.2f} s at {inp['sample_rate']} Hz")
    print(f"output {outp['name']} {outp['shape']} float32, {outp['frame_rate_hz']:.0f} frames/s after block "
          f"{manifest['split_layer']}")
    print(f"wrote {out}/ (manifest.json)")
