"""Where does the numeric gap open? Export the sub-prefixes "frontend + subsampling", "+ block 1", ...,
"+ block k" with the artifact's recipe and calibration, run each in the real runtime on the same chunks and
report each stage's SNR against the same stage of the float torch prefix.

Stage j is ``Prefix(model, j)``, the module ``split(model, j)`` returns: the one definition of the phone's
computation, with the split normalization after its block wherever a stage includes that block. Stages share
the full prefix's leading layers and see the same calibration audio, so a calibrated recipe quantizes those
layers exactly as in the full artifact: stage j's runtime output is the full artifact's activation after
block j, and the full-depth stage is the artifact itself, re-exported. If even the full-depth stage matches
torch while the artifact does not, the gap does not come from the recipe: the artifact was not made from
this checkpoint.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

import export as backends
from toolkit.chunking import torch_runner
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME
from toolkit.model.asr import Prefix, VeilModel


def stage_prefixes(model: VeilModel, k: int) -> list[Prefix]:
    """The stages of the prefix cut after block ``k``: ``Prefix(model, j)`` for j = 0..k (j = 0: frontend and
    subsampling only). They share ``model``'s weights."""
    return [Prefix(model, j).eval() for j in range(k + 1)]


def stage_name(j: int) -> str:
    return "frontend+subsampling" if j == 0 else f"block {j}"


def localize(model: VeilModel, k: int, backend: str, recipe: str, chunks: list[np.ndarray],
             calibration: list[np.ndarray], threshold_db: float, artifact_snr_db: float,
             artifact_sha256: str | None = None, progress=None) -> dict:
    """Per-stage SNR of the prefix of ``model`` cut after block ``k``; ``first_gap_stage``: the first stage
    whose SNR falls below ``threshold_db`` (the gate plus the borderline margin), else the stage with the
    largest SNR drop. Stages are exported exactly as ``export-prefix`` exports (same float modules, input
    and output names), so with ``artifact_sha256`` the report says whether the full-depth re-export is
    byte for byte the artifact: proof that it was made from this checkpoint, recipe and calibration."""
    module = backends.get_backend(backend)
    stages = []
    with tempfile.TemporaryDirectory(prefix="veil-localize-") as tmp:
        for j, sub in enumerate(stage_prefixes(model, k)):
            if progress:
                progress(f"  localize {backend} {recipe}: {stage_name(j)}")
            art = module.export(sub, (chunks[0],), recipe, Path(tmp) / f"stage{j}{module.SUFFIX}",
                                calibration=calibration, float_modules=FLOAT_MODULES, input_name=INPUT_NAME,
                                output_name=OUTPUT_NAME)
            runner = backends.load(art)
            reference = torch_runner(sub)
            ref = np.concatenate([reference(c) for c in chunks])
            out = np.concatenate([runner(c) for c in chunks])
            stages.append({"stage": stage_name(j), "blocks": j, "snr_db": backends.snr_db(ref, out),
                           "sha256": art.sha256()})
    for i, s in enumerate(stages):
        s["drop_db"] = (stages[i - 1]["snr_db"] - s["snr_db"]) if i else None
    below = [s for s in stages if s["snr_db"] < threshold_db]
    drops = [s for s in stages if s["drop_db"] is not None and np.isfinite(s["drop_db"])]
    largest = max(drops, key=lambda s: s["drop_db"]) if drops else stages[0]
    first = below[0] if below else largest
    identical = None if artifact_sha256 is None else stages[-1]["sha256"] == artifact_sha256
    reproduced = bool(identical) or stages[-1]["snr_db"] < artifact_snr_db + 3.0
    if not reproduced:  # no stage of a faithful re-export shows the gap: there is no layer to name
        first, rule = None, "not reproduced by re-export"
    else:
        rule = "first stage below threshold" if below else "largest SNR drop (no stage below threshold)"
    return {"method": "sub-prefix re-export with the same recipe and calibration, real runtime",
            "chunks": len(chunks), "threshold_db": threshold_db, "stages": stages,
            "first_gap_stage": first["stage"] if first else None, "first_gap_rule": rule,
            "largest_drop_stage": largest["stage"],
            "full_depth_snr_db": stages[-1]["snr_db"], "full_depth_is_the_artifact": identical,
            "reproduced": bool(reproduced),
            "note": None if reproduced else
            (f"re-exporting from the checkpoint gives {stages[-1]['snr_db']:.1f} dB at full depth, the artifact "
             f"{artifact_snr_db:.1f} dB: the gap is not the recipe's; the artifact does not compute this "
             f"checkpoint's prefix")}
