"""Core ML parity pieces. Execution needs Apple's Core ML framework (macOS); what Linux can check is done
here and labelled as such: the package's input/output spec against the manifest, its weights (dequantized
from int8 / palettized storage) against the torch weights, the package's own MIL program run by Veil's numpy
reference interpreter (``mil-reference (Linux)``, gated), and a torch *estimate* of the fp16 numerics beside it
as a cross-check. On macOS parity runs the real ``MLModel.predict`` through ``export.load`` instead.
"""
from __future__ import annotations

import copy
import re
from pathlib import Path

import numpy as np
import torch

import export as backends
from export import coreml_mil
from toolkit.model.asr import Prefix

COMPRESSED_SUFFIXES = ("_quantized", "_palettized", "_to_fp16", "_to_fp32")
MIL_LABEL = coreml_mil.LABEL
MIL_HOW = ("the .mlpackage's own MIL program and weights, evaluated op by op in numpy (export/coreml_mil.py): "
           "each op rounded to its declared dtype, compressed weights dequantized as the program states; not "
           "Core ML's kernels nor the Neural Engine's numerics (those need a Mac)")


def mil_runner(art: backends.Artifact) -> coreml_mil.MILReferenceRunner:
    """The package's program as a chunk runner, by the reference interpreter (any OS)."""
    return coreml_mil.MILReferenceRunner(art)


def spec_vs_manifest(artifact: backends.Artifact, manifest: dict) -> dict:
    """The .mlpackage spec's input/output names, shapes and dtypes against the manifest's I/O."""
    backend = backends.get_backend(artifact.backend)
    spec = backend.describe(artifact.path)
    mismatches = backend.check_spec(artifact, manifest)
    return {"status": "ok" if not mismatches else "mismatch", "spec_version": spec["spec_version"],
            "model_type": spec["model_type"], "inputs": spec["inputs"], "outputs": spec["outputs"],
            "mismatches": mismatches}


def package_weights(path: Path) -> dict[str, tuple[str, np.ndarray]]:
    """MIL weight name -> (storage: const | constexpr op type, float32 value as the runtime would see it)."""
    import coremltools as ct  # heavy, needed only for a Core ML package
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


def estimate_prefix(prefix: Prefix, weights: dict, matching: dict, fp16: bool) -> torch.nn.Module:
    """A torch stand-in for the package: a copy of ``prefix`` with the package's (dequantized) weights and,
    when the recipe computes in fp16, in float16 after the float32 frontend (:class:`Float16AfterFrontend`).
    It runs ``Prefix.forward`` itself, so it computes the artifact's function, split normalization included.
    An *estimate*: Core ML's kernels, fusions and accumulation order are not reproduced."""
    est = copy.deepcopy(prefix).eval()
    params = dict(est.named_parameters())
    with torch.no_grad():
        for row in matching["tensors"]:
            params[row["param"]].copy_(torch.from_numpy(weights[row["package_weight"]][1].reshape(row["shape"])))
    return Float16AfterFrontend(est) if fp16 else est


class _CastOutput(torch.nn.Module):
    def __init__(self, module: torch.nn.Module, dtype: torch.dtype):
        super().__init__()
        self.module, self.dtype = module, dtype

    def forward(self, x):
        return self.module(x).to(self.dtype)


class Float16AfterFrontend(torch.nn.Module):
    """A dtype cast around a :class:`Prefix` (modified in place): the frontend computes in float32 and its
    output is cast to float16; subsampling, blocks, the split normalization and a bottleneck's projection run in
    float16, as the Core ML
    fp16 recipes compute; the embeddings come back as float32."""

    def __init__(self, prefix: Prefix):
        super().__init__()
        prefix.frontend = _CastOutput(prefix.frontend, torch.float16)
        prefix.subsampling.half()
        prefix.blocks.half()
        if prefix.bottleneck is not None:  # the phone's projection (and its unit-RMS step) follow the blocks
            prefix.bottleneck.half()
        self.prefix = prefix

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return self.prefix(pcm).float()
