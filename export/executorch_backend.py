"""ExecuTorch backend: ``torch.export`` -> (quantize) -> ``to_edge_transform_and_lower`` (XNNPACK) -> ``.pte``.

The linear story of ExecuTorch's own XNNPACK example: each recipe returns the ``ExportedProgram`` to lower
(quantized or not; the fp32 and PT2E recipes with layer norms, means and shape-only ops rewritten into ops
XNNPACK lowers, so the prefix is one XNNPACK graph: export/xnnpack_decompositions.py); lowering, the
delegation check and serialization are shared. A recipe for another delegate adds ``partitioners`` (default:
XNNPACK) and ``delegation_summary`` to its notes (``coreml-ane``: ``export/executorch_coreml.py``). Quantization
never touches the submodules named in ``float_modules`` (Veil's log-mel frontend): PT2E annotation skips their
nodes and torchao's ``quantize_`` skips their Linear layers. Runner: ``executorch.runtime``. ExecuTorch and torchao are
imported inside the functions that use them: they are heavy, and only this backend needs them.
"""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import torch

from export import executorch_coreml
from export.artifact import Artifact, Runner, in_module, library_versions, single_threaded
from export.errors import ConversionFailed, ExportError
from export.frame import export_frame
from export.recipes import RecipeRegistry
from export.xnnpack_decompositions import decompose_for_xnnpack

NAME = "executorch"
SUFFIX = ".pte"
TARGET = "android"
RUNTIME = "executorch.runtime (XNNPACK)"
DEFAULT_RECIPE = "int8-static"
RECIPES = RecipeRegistry(NAME)
INT4_GROUP_SIZE = 32  # XNNPACK delegates int4 weights only in groups of a multiple of 32 (no per-channel int4)


def library_info() -> dict[str, str]:
    return library_versions("executorch", "torch", "torchao")


def _in_float_module(node: torch.fx.Node, float_modules: tuple[str, ...]) -> bool:
    stack = node.meta.get("nn_module_stack") or {}
    return any(in_module(path, float_modules) for path, _ in stack.values())


def _pt2e_quantize(module, example_inputs, calibration, float_modules, *, dynamic: bool):
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer, get_symmetric_quantization_config)
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    graph = torch.export.export(module, example_inputs).module()
    matched = [n for n in graph.graph.nodes if n.op == "call_function" and _in_float_module(n, float_modules)]
    if float_modules and not matched:
        raise ExportError(f"no graph nodes belong to float modules {list(float_modules)}")
    quantizer = XNNPACKQuantizer()
    quantizer.set_global(get_symmetric_quantization_config(is_per_channel=True, is_dynamic=dynamic))
    quantizer.set_filter_function(lambda n: not _in_float_module(n, float_modules))
    prepared = prepare_pt2e(graph, quantizer)
    with torch.no_grad(), single_threaded():
        for x in ([example_inputs[0]] if dynamic else calibration):
            prepared(torch.as_tensor(x))
    converted = convert_pt2e(prepared)
    return decompose_for_xnnpack(torch.export.export(converted, example_inputs))


@RECIPES.register("fp32", "float32, every op delegated to XNNPACK where it can be", weights="fp32", compute="fp32")
def _fp32(module, example_inputs, calibration, float_modules):
    return decompose_for_xnnpack(torch.export.export(module, example_inputs)), {}


@RECIPES.register("int8-dynamic", "PT2E int8 weights per channel, activations quantized at run time",
                  weights="int8", compute="int8")
def _int8_dynamic(module, example_inputs, calibration, float_modules):
    return _pt2e_quantize(module, example_inputs, calibration, float_modules, dynamic=True), {}


@RECIPES.register("int8-static", "PT2E int8 weights per channel, int8 activations calibrated on real audio",
                  weights="int8", compute="int8", needs_calibration=True)
def _int8_static(module, example_inputs, calibration, float_modules):
    program = _pt2e_quantize(module, example_inputs, calibration, float_modules, dynamic=False)
    return program, {"calibration_chunks": len(calibration)}


@RECIPES.register("8da4w", "torchao int8 dynamic activations + int4 weights in groups of 32 on Linear layers; "
                  "a Linear whose in_features is not a multiple of 32 gets int8 per-channel weights instead",
                  weights="int4", compute="int8")
def _8da4w(module, example_inputs, calibration, float_modules):
    from torchao.quantization.granularity import PerAxis, PerGroup
    from torchao.quantization.quant_api import Int8DynamicActivationIntxWeightConfig, quantize_

    linears = {name: m for name, m in module.named_modules()
               if isinstance(m, torch.nn.Linear) and not in_module(name, float_modules)}
    int4 = sorted(n for n, m in linears.items() if m.in_features % INT4_GROUP_SIZE == 0)
    int8 = sorted(set(linears) - set(int4))  # XNNPACK (ExecuTorch 1.5) has no per-channel int4 path
    configs = ((int4, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int4,
                                                            weight_granularity=PerGroup(INT4_GROUP_SIZE))),
               (int8, Int8DynamicActivationIntxWeightConfig(weight_dtype=torch.int8, weight_granularity=PerAxis(0))))
    for names, config in configs:
        if names:  # quantize_ swaps weights in place: export() hands recipes its own copy of the module
            quantize_(module, config, filter_fn=lambda m, fqn, names=set(names): fqn in names)
    notes = {"int4_group_size": INT4_GROUP_SIZE, "int4_linears": len(int4), "int8_fallback_linears": int8}
    return torch.export.export(module, example_inputs), notes


@RECIPES.register("coreml-ane", "the encoder in ExecuTorch's Core ML delegate (fp16, Neural Engine), the log-mel "
                  "frontend kept out of it in float32 on XNNPACK; runs only on iOS/macOS", weights="fp16",
                  compute="fp16", runs_on="needs-macos")
def _coreml_ane(module, example_inputs, calibration, float_modules):
    notes = {"partitioners": executorch_coreml.partitioners(float_modules),
             "delegation_summary": lambda gm: executorch_coreml.delegation_by_backend(gm, float_modules)}
    return torch.export.export(module, example_inputs), notes


def with_persistent_buffers(module: torch.nn.Module) -> torch.nn.Module:
    """A copy whose buffers are all persistent. ExecuTorch 1.5's XNNPACK preprocess fails its verifier on
    non-persistent buffers ("Non-persistent buffer frontend.dft is in the state dict"), and Veil's
    frontend keeps its config-derived DFT/mel matrices non-persistent. Same values, same graph."""
    module = copy.deepcopy(module)
    for sub in module.modules():
        sub._non_persistent_buffers_set.clear()
    return module


def delegation_summary(graph_module: torch.fx.GraphModule) -> dict:
    """Operator nodes delegated to XNNPACK vs all operator nodes (``getitem`` plumbing not counted)."""
    from executorch.devtools.backend_debug import get_delegation_info
    info = get_delegation_info(graph_module)
    ops = {k: v for k, v in info.delegation_by_operator.items() if k != "getitem"}
    delegated = sum(v.delegated for v in ops.values())
    total = delegated + sum(v.non_delegated for v in ops.values())
    return {"backend": "XnnpackBackend", "delegated_subgraphs": info.num_delegated_subgraphs,
            "ops_delegated": delegated, "ops_total": total,
            "not_delegated": {k: v.non_delegated for k, v in sorted(ops.items()) if v.non_delegated}}


def export(module: torch.nn.Module, example_inputs: tuple, recipe: str, out_path: str | Path, *,
           calibration=(), float_modules: tuple[str, ...] = (), input_name: str = "input",
           output_name: str = "output") -> Artifact:
    """Export ``module`` with ``recipe`` to ``out_path`` (.pte). ``calibration``: input tensors/arrays shaped
    like ``example_inputs[0]`` (static recipes only). Converter errors become :class:`ConversionFailed`."""
    def convert(spec, module, example_inputs, out_path) -> dict:
        from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
        from executorch.exir import to_edge_transform_and_lower
        with torch.no_grad():
            program, notes = spec.build(module, example_inputs, calibration, tuple(float_modules))
            edge = to_edge_transform_and_lower(program, partitioner=notes.pop("partitioners", None)
                                               or [XnnpackPartitioner()])
        delegation = notes.pop("delegation_summary", delegation_summary)(edge.exported_program().graph_module)
        if delegation["ops_delegated"] == 0:
            raise ConversionFailed(NAME, recipe, f"nothing was delegated to {delegation['backend']} "
                                                 f"(0 of {delegation['ops_total']} ops)")
        if delegation.get("float_module_ops_in_coreml"):
            raise ConversionFailed(NAME, recipe, f"{delegation['float_module_ops_in_coreml']} ops of float modules "
                                                 f"{list(float_modules)} went into the fp16 Core ML delegate")
        out_path.write_bytes(edge.to_executorch().buffer)
        return {"delegation": delegation, **notes, "libraries": library_info(), "deterministic": True}

    return export_frame(NAME, RECIPES, convert, module, example_inputs, recipe, out_path, calibration, input_name,
                        output_name, prepare=with_persistent_buffers)


def runs_here() -> bool:
    """``executorch.runtime`` runs on every OS Veil supports."""
    return True


def import_runtime() -> None:
    """Import the runtime (not the artifact): a benchmark takes its memory baseline after this."""
    import executorch.runtime  # noqa: F401
    from executorch.extension.pybindings import portable_lib  # noqa: F401


class ExecuTorchRunner(Runner):
    def __init__(self, artifact: Artifact):
        super().__init__(artifact)
        from executorch.runtime import Runtime
        self.program = Runtime.get().load_program(Path(artifact.path))
        try:
            self.method = self.program.load_method("forward")
        except RuntimeError as exc:  # a delegate this runtime lacks: Core ML off Apple systems -> needs-macos
            raise executorch_coreml.load_error(artifact, exc) from exc

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.method.execute([torch.from_numpy(x)])[0].numpy()

    def thread_info(self) -> dict:
        from executorch.extension.pybindings.portable_lib import _threadpool_get_thread_count
        return {"xnnpack_threadpool": int(_threadpool_get_thread_count())}


def load(artifact: Artifact, threads: int | None = None) -> Runner:
    """``threads``: size of XNNPACK's (process-wide) thread pool; default: leave it as it is."""
    if threads:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
        _unsafe_reset_threadpool(int(threads))
    return ExecuTorchRunner(artifact)


def input_shape(artifact: Artifact) -> tuple[int, ...]:
    """The input shape the ``.pte`` itself declares (its method metadata)."""
    from executorch.runtime import Runtime
    meta = Runtime.get().load_program(Path(artifact.path)).metadata("forward")
    return tuple(int(d) for d in meta.input_tensor_meta(0).sizes())


def check_spec(artifact: Artifact, io: dict) -> list[str]:
    """What the file declares against the manifest's ``{"input": .., "output": ..}``: its input shape
    (a ``.pte`` names no tensors). Returns the mismatches, empty when they agree."""
    declared, want = list(input_shape(artifact)), list(io["input"]["shape"])
    return [] if declared == want else [f"input shape {declared} != manifest {want}"]
