"""Core ML parity pieces. Execution needs Apple's Core ML framework (macOS); what Linux can check is done
here and labelled as such: the package's input/output spec against the manifest, its weights (dequantized
from int8 / palettized storage) against the torch weights, and a torch *estimate* of the fp16 numerics.
On macOS the same parity runs the real ``MLModel.predict`` through ``export.load`` with the inputs built
by :func:`predict_inputs`.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import torch

COMPRESSED_SUFFIXES = ("_quantized", "_palettized", "_to_fp16", "_to_fp32")


def predict_inputs(artifact, chunk: np.ndarray) -> dict[str, np.ndarray]:
    """The feature dict ``MLModel.predict`` takes for one PCM chunk: the manifest's input name, a fresh
    float32 (1, chunk_samples) array. Raises ValueError when the chunk does not fit the artifact."""
    x = np.ascontiguousarray(chunk, dtype=np.float32).reshape(tuple(artifact.input_shape))
    return {artifact.input_name: x.copy()}


def spec_vs_manifest(path: Path, manifest: dict) -> dict:
    """The .mlpackage spec's input/output names, shapes and dtypes against the manifest's I/O."""
    import export
    spec = export.get_backend("coreml").describe(path)
    want_in = {k: manifest["input"][k] for k in ("name", "shape", "dtype")}
    want_out = {k: manifest["output"][k] for k in ("name", "shape", "dtype")}
    mismatches = []
    if spec["inputs"] != [want_in]:
        mismatches.append(f"inputs {spec['inputs']} != manifest {want_in}")
    if spec["outputs"] != [want_out]:
        mismatches.append(f"outputs {spec['outputs']} != manifest {want_out}")
    return {"status": "ok" if not mismatches else "mismatch", "spec_version": spec["spec_version"],
            "model_type": spec["model_type"], "inputs": spec["inputs"], "outputs": spec["outputs"],
            "mismatches": mismatches}


def package_weights(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """MIL weight name -> (storage: const | constexpr op type, float32 value as the runtime would see it)."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    mlmodel = ct.models.MLModel(str(path), skip_model_load=True)
    spec = mlmodel.get_spec()
    program = load_mil(spec, spec.specificationVersion, mlmodel.weights_dir)
    weights = {}
    for op in program.functions["main"].operations:
        if op.op_type == "const":
            val = op.outputs[0].val
            if isinstance(val, np.ndarray) and val.ndim >= 1 and val.size > 1:
                weights[op.name] = ("const", np.asarray(val, dtype=np.float32))
        elif op.op_type.startswith("constexpr"):
            weights[op.name] = (op.op_type, np.asarray(op.materialized_val_inference(), dtype=np.float32))
    return weights


def _mil_key(name: str) -> str:
    name = re.sub(r"^p_", "", name)
    changed = True
    while changed:
        changed = False
        for suffix in COMPRESSED_SUFFIXES:
            if name.endswith(suffix):
                name, changed = name[: -len(suffix)], True
    return name


def match_weights(prefix: torch.nn.Module, weights: dict, skip: tuple[str, ...] = ("frontend",)) -> dict:
    """Map the prefix's parameters to package weights by name (coremltools names constants after the
    exported graph's ``p_<dotted_name_with_underscores>``), else by a unique equal shape; report per-tensor
    relative error ||w_pkg − w_torch|| / ||w_torch||."""
    by_key = {_mil_key(n): n for n in weights}
    rows, unmatched = [], []
    used = set()
    for pname, param in prefix.named_parameters():
        if pname.split(".")[0] in skip:
            continue
        w = param.detach().float().numpy()
        mil = by_key.get(pname.replace(".", "_"))
        how = "name"
        if mil is None:
            same = [n for n, (_, v) in weights.items() if v.shape == w.shape and n not in used]
            mil, how = (same[0], "shape") if len(same) == 1 else (None, None)
        if mil is None or weights[mil][1].size != w.size:
            unmatched.append(pname)
            continue
        used.add(mil)
        storage, v = weights[mil]
        v = v.reshape(w.shape)
        rel = float(np.linalg.norm(v - w) / max(np.linalg.norm(w), 1e-30))
        rows.append({"param": pname, "package_weight": mil, "matched_by": how, "storage": storage,
                     "shape": list(w.shape), "rel_error": rel})
    rels = [r["rel_error"] for r in rows]
    return {"matched": len(rows), "unmatched": unmatched, "max_rel_error": max(rels) if rels else None,
            "mean_rel_error": float(np.mean(rels)) if rels else None,
            "compressed": sum(r["storage"] != "const" for r in rows), "tensors": rows}


def estimate_prefix(prefix: torch.nn.Module, weights: dict, matching: dict, fp16: bool) -> torch.nn.Module:
    """A torch stand-in for the package: the package's (dequantized) weights; in float16 after the frontend
    when the recipe computes in fp16. It is an *estimate*: Core ML's kernels, fusions and accumulation
    order are not reproduced."""
    est = copy.deepcopy(prefix).eval()
    params = dict(est.named_parameters())
    with torch.no_grad():
        for row in matching["tensors"]:
            params[row["param"]].copy_(torch.from_numpy(weights[row["package_weight"]][1].reshape(row["shape"])))
    if not fp16:
        return est
    return _HalfAfterFrontend(est)


class _HalfAfterFrontend(torch.nn.Module):
    def __init__(self, prefix):
        super().__init__()
        self.frontend = prefix.frontend
        self.subsampling = copy.deepcopy(prefix.subsampling).half()
        self.blocks = copy.deepcopy(prefix.blocks).half()

    def forward(self, pcm):
        x = self.subsampling(self.frontend(pcm).half())
        for block in self.blocks:
            x = block(x)
        return x.float()
