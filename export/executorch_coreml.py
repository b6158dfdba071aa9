"""ExecuTorch's Core ML delegate for the Apple Neural Engine, with the float frontend kept out of it.

Core ML's delegate compiles its partition with a compute precision; in float16 (what the Neural Engine
computes in) a delegate holding the whole prefix would cast the PCM input and run the log-mel frontend in
fp16, where the power spectrum of loud audio overflows and the log floor (1e-5) is subnormal: a full-scale
tone loses its embeddings (a torch fp16 stand-in: 18.6 dB on a 1 kHz sine). :class:`EncoderOnlyCoreMLPartitioner`
therefore proposes only the ops outside ``float_modules`` (read from each node's ``nn_module_stack``) to Core ML;
the frontend's ops go to XNNPACK in float32 on the CPU, and the delegate's input is the standardized log-mel
features, whose range fp16 holds. The manifest records what each delegate took.

The ``.pte`` runs only where ExecuTorch has its Core ML backend (iOS/macOS builds); Linux's
``executorch.runtime`` answers ``CoreMLBackend is not registered``, which :func:`load_error` turns into
``needs-macos``. coremltools and ExecuTorch's Apple backend are imported inside the functions that use them.
"""
from __future__ import annotations

import platform

import torch

from export.artifact import in_module
from export.errors import ExportError, NeedsMacOS

COMPUTE_UNIT = "CPU_AND_NE"   # coremltools.ComputeUnit: the Neural Engine, the CPU where an op cannot run on it
DEPLOYMENT_TARGET = "iOS17"


def _in_float_module(node: torch.fx.Node, float_modules: tuple[str, ...]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    return any(in_module(path, float_modules) for path, _ in stack.values())


def partitioners(float_modules: tuple[str, ...]) -> list:
    """Core ML (fp16, Neural Engine) for everything outside ``float_modules``, then XNNPACK (fp32) for them."""
    import coremltools as ct
    from executorch.backends.apple.coreml.compiler import CoreMLBackend
    from executorch.backends.apple.coreml.partition import CoreMLPartitioner
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir.backend.partitioner import PartitionResult
    from executorch.exir.backend.utils import tag_constant_data
    from torch.fx.passes.infra.partitioner import CapabilityBasedPartitioner
    from torch.fx.passes.operator_support import OperatorSupportBase, chain

    class OutsideFloatModules(OperatorSupportBase):
        def is_node_supported(self, submodules, node: torch.fx.Node) -> bool:
            return not _in_float_module(node, float_modules)

    class EncoderOnlyCoreMLPartitioner(CoreMLPartitioner):
        """CoreMLPartitioner whose candidate ops exclude ``float_modules`` (CoreMLPartitioner's own
        ``skip_ops_for_coreml_delegation`` skips by op type, which would also take the encoder's matmuls)."""

        def partition(self, exported_program) -> PartitionResult:
            from executorch.backends.apple.coreml.partition.coreml_partitioner import (
                _OperatorsSupportedForCoreMLBackend)
            support = chain(_OperatorsSupportedForCoreMLBackend(self.skip_ops_for_coreml_delegation, False),
                            OutsideFloatModules())
            proposed = CapabilityBasedPartitioner(exported_program.graph_module, support,
                                                  allows_single_node_partition=True).propose_partitions()
            tags = {}
            for partition in proposed:
                for node in partition.nodes:
                    node.meta["delegation_tag"] = f"coreml{partition.id}"
                    tags[f"coreml{partition.id}"] = self.delegation_spec
            tag_constant_data(exported_program)
            return PartitionResult(tagged_exported_program=exported_program, partition_tags=tags)

    specs = CoreMLBackend.generate_compile_specs(compute_unit=getattr(ct.ComputeUnit, COMPUTE_UNIT),
                                                 minimum_deployment_target=getattr(ct.target, DEPLOYMENT_TARGET),
                                                 compute_precision=ct.precision.FLOAT16)
    return [EncoderOnlyCoreMLPartitioner(compile_specs=specs, take_over_mutable_buffer=False),
            XnnpackPartitioner()]


def delegation_by_backend(graph_module: torch.fx.GraphModule, float_modules: tuple[str, ...]) -> dict:
    """What each delegate took: per backend, subgraphs and operator nodes (``getitem`` plumbing not counted),
    how many of them belong to ``float_modules``, and the operators left to ExecuTorch's portable kernels."""
    from executorch.exir.lowered_backend_module import LoweredBackendModule
    by_backend: dict[str, dict] = {}
    outside: dict[str, int] = {}
    for node in graph_module.graph.nodes:
        if node.op == "get_attr" and isinstance(getattr(graph_module, node.target, None), LoweredBackendModule):
            lowered = getattr(graph_module, node.target)
            ops = [n for n in lowered.original_module.graph.nodes if n.op == "call_function"
                   and "getitem" not in str(n.target)]
            row = by_backend.setdefault(lowered.backend_id, {"subgraphs": 0, "ops": 0, "float_module_ops": 0})
            row["subgraphs"] += 1
            row["ops"] += len(ops)
            row["float_module_ops"] += sum(_in_float_module(n, float_modules) for n in ops)
        elif node.op == "call_function" and "getitem" not in str(node.target) \
                and "executorch_call_delegate" not in str(node.target):
            name = str(node.target).split(".")[-2] if "." in str(node.target) else str(node.target)
            outside[name] = outside.get(name, 0) + 1
    total = sum(r["ops"] for r in by_backend.values()) + sum(outside.values())
    coreml = by_backend.get("CoreMLBackend", {"subgraphs": 0, "ops": 0, "float_module_ops": 0})
    return {"backend": "CoreMLBackend", "label": "Core ML (Neural Engine, fp16)", "compute_unit": COMPUTE_UNIT,
            "compute_precision": "fp16", "delegated_subgraphs": coreml["subgraphs"], "ops_delegated": coreml["ops"],
            "ops_total": total, "float_module_ops_in_coreml": coreml["float_module_ops"],
            "by_backend": by_backend, "not_delegated": dict(sorted(outside.items()))}


def load_error(artifact, exc: Exception) -> Exception:
    """The runtime's refusal of a Core ML delegate where ExecuTorch has no Core ML backend (it logs "Backend
    CoreMLBackend is not registered" and raises "Failed to load method forward, error: 0x:20", NotFound) ->
    :class:`NeedsMacOS`; anything else as is."""
    holds_coreml = (artifact.details.get("delegation") or {}).get("backend") == "CoreMLBackend"
    if holds_coreml and platform.system() != "Darwin":
        return NeedsMacOS(f"executorch {artifact.recipe} ({artifact.path.name})",
                          "runs only where ExecuTorch has its Core ML backend, on iOS/macOS (this runtime: "
                          f"CoreMLBackend is not registered; '{str(exc).splitlines()[0][:80]}')")
    return exc


def coreml_payloads(pte_path, out_dir) -> list:
    """The Core ML delegate payloads of a ``.pte``, each unpacked under ``out_dir`` as the ``.mlpackage`` the
    delegate carries (ExecuTorch's own readers: the program's delegate data, the Core ML backend's
    ``unflatten_directory_contents``). The MIL reference interpreter (``export.coreml_mil``) runs them on Linux;
    a payload's input is what its delegate receives (for Veil's prefix: the standardized log-mel features)."""
    from pathlib import Path

    from executorch.backends.apple.coreml import executorchcoreml
    from executorch.exir._serialize._program import _extract_delegate_payload
    data = Path(pte_path).read_bytes()
    packages = []
    while (payload := _extract_delegate_payload(data, "CoreMLBackend", len(packages))) is not None:
        folder = Path(out_dir) / f"coreml-delegate-{len(packages)}"
        folder.mkdir(parents=True, exist_ok=True)
        if not executorchcoreml.unflatten_directory_contents(payload, str(folder)):
            raise ExportError(f"{Path(pte_path).name}: Core ML delegate {len(packages)} could not be unpacked")
        packages.append(next(folder.rglob("*.mlpackage")))
    return packages
