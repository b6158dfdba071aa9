"""LiteRT backend: ``litert_torch.convert`` -> float ``.tflite`` -> (ai-edge-quantizer recipe) -> ``.tflite``.

Quantized recipes run ai-edge-quantizer on the float flatbuffer, with two exclusions that keep the model's
edges float32: ops whose tensors belong to a ``float_modules`` submodule (Veil's log-mel frontend), and the
graph's input and output tensors. Without the second, a static recipe turns the PCM input into int8 (8-bit
audio) and the embeddings output into int8; with it the quantizer inserts QUANTIZE after the frontend and
DEQUANTIZE before the output instead, and the runner feeds float32 PCM. Runner:
``ai_edge_litert.interpreter`` (XNNPACK delegate, on by default). litert-torch, ai-edge-quantizer and
ai-edge-litert are imported inside the functions that use them: they are heavy, and only this backend needs
them.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

import numpy as np
import torch

from export import litert_npu
from export.artifact import Artifact, Runner, library_versions
from export.errors import ConversionFailed
from export.frame import export_frame
from export.recipes import RecipeRegistry

NAME = "litert"
SUFFIX = ".tflite"
TARGET = "android"
RUNTIME = "ai_edge_litert Interpreter"
DEFAULT_RECIPE = "int8-static"
RECIPES = RecipeRegistry(NAME)
SIGNATURE = "serving_default"


def library_info() -> dict[str, str]:
    return library_versions("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "torch")


class _NamedIO(torch.nn.Module):
    """Gives the flatbuffer signature readable names: input ``input_name``, output ``output_name``."""

    def __init__(self, module: torch.nn.Module, output_name: str):
        super().__init__()
        self.module = module
        self.output_name = output_name

    def forward(self, **inputs):
        (x,) = inputs.values()
        return {self.output_name: self.module(x)}


def float_scope_regex(float_modules: tuple[str, ...]) -> str | None:
    """Regex over ai-edge-quantizer op scopes (output tensor names such as
    ``pkg.Root/pkg.ModuleClass_module/pkg.LogMelFrontend_frontend;12``) matching ops of ``float_modules``;
    the names are paths below the wrapper's ``module`` attribute."""
    if not float_modules:
        return None
    alternatives = []
    for name in float_modules:
        parts = ["module", *name.split(".")]
        alternatives.append("/".join(rf"[\w.]+_{re.escape(p)}" for p in parts))
    return rf"(?:^|/)(?:{'|'.join(alternatives)})(?:[;/]|$)"


def _io_tensor_names(model: bytes) -> list[str]:
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=model)
    return [d["name"] for d in it.get_input_details() + it.get_output_details()]


def _quantizer(model: bytes):
    from ai_edge_quantizer import quantizer as aeq
    return aeq.Quantizer(bytearray(model))


def _keep_float(q, model: bytes, float_modules) -> None:
    """Later recipe entries win in ai-edge-quantizer: mark float modules and graph I/O as NO_QUANTIZE."""
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    regexes = [rf"^{re.escape(name)};$" for name in _io_tensor_names(model)]  # I/O op scope is "name;"
    scope = float_scope_regex(float_modules)
    if scope:
        regexes.append(scope)
    for regex in regexes:
        q.update_quantization_recipe(regex, qtyping.TFLOperationName.ALL_SUPPORTED,
                                     algorithm_key=AlgorithmName.NO_QUANTIZE)


def _calibrate(q, model: bytes, calibration, input_name: str) -> dict:
    """Activation ranges: the min and max over every calibration chunk, in one thread (reproducible ranges).

    ``Quantizer.calibrate`` keeps a moving average of each tensor's min/max (smoothing 0.95), so the last ~20
    chunks set the ranges and anything louder than them clips. On the shipped split-4 prefix, calibrated on
    speech, that put a full-scale 7 kHz tone at -0.9 dB SNR against the float prefix (6.1 dB after the first
    int8 conv) and speech at 26.0 dB; the running min/max gives 12.6 dB and 28.2 dB (12 eval-speakers
    utterances). ai-edge-quantizer offers the min/max update only on its ``Calibrator``, which takes the
    quantizer's recipe manager (a private attribute in 0.x)."""
    from ai_edge_quantizer import calibrator
    from ai_edge_quantizer.utils import qsv_utils
    samples = [{input_name: np.asarray(torch.as_tensor(x), dtype=np.float32)} for x in calibration]
    calib = calibrator.Calibrator(model, num_threads=1, qsv_update_func=qsv_utils.min_max_update)
    calib.calibrate({SIGNATURE: samples}, q._recipe_manager)
    return calib.get_model_qsvs()


def _run_quantizer(q, model, float_modules, calibration=None, input_name=None) -> bytes:
    _keep_float(q, model, float_modules)
    result = _calibrate(q, model, calibration, input_name) if q.need_calibration else None
    return bytes(q.quantize(result, enable_progress_report=False).quantized_model)


@RECIPES.register("fp32", "float32 as converted", weights="fp32", compute="fp32")
def _fp32(model, calibration, float_modules, input_name):
    return model


@RECIPES.register("fp16", "float16 weights (FULLY_CONNECTED/CONV), float32 compute; frontend stays float32",
                  weights="fp16", compute="fp32")
def _fp16(model, calibration, float_modules, input_name):
    from ai_edge_quantizer import qtyping
    from ai_edge_quantizer.algorithm_manager import AlgorithmName
    q = _quantizer(model)
    q.add_weight_only_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 16,
                             algorithm_key=AlgorithmName.FLOAT_CASTING)
    return _run_quantizer(q, model, float_modules)


@RECIPES.register("int8-dynamic", "int8 weights per channel, activations quantized at run time",
                  weights="int8", compute="int8")
def _int8_dynamic(model, calibration, float_modules, input_name):
    from ai_edge_quantizer import qtyping
    q = _quantizer(model)
    q.add_dynamic_config(".*", qtyping.TFLOperationName.ALL_SUPPORTED, 8)
    return _run_quantizer(q, model, float_modules)


# The op families int8-static quantizes: the compute ops XNNPACK runs in int8, and the transposes, slices and
# pads between them, which only move int8 values on their producer's scale. Measured on the shipped split-4
# prefix (export/README.md, "Why LiteRT int8-static quantizes these ops"; latency p50 at 1 thread through
# ai_edge_litert 2.3's XNNPACK, as a ratio to the previous recipe in the same run):
# - BATCH_MATMUL (attention's QK^T and AV) stays float32: XNNPACK takes no int8 BATCH_MATMUL, so the previous
#   recipe (FC, conv, depthwise conv, batch matmul) ran each of the 8 on the builtin kernel, between 9 XNNPACK
#   partitions, and was only 1.11x faster than fp32. Without it the graph is one partition: 1.4x.
# - TRANSPOSE, SLICE, PAD in int8 as well (this recipe): 1.6x faster than the previous recipe (1.8x fp32),
#   speech SNR 28.1 dB (was 27.9), dWER +0.00 pp, stress worst 11.7 dB (was 11.6); the 7 kHz tone's mean cosine
#   reads 0.788 (was 0.838, gate 0.9 failed before and after), which comes with the float batch matmuls.
#   Without TRANSPOSE: as fast, but dWER +0.42 pp.
# - RESHAPE in int8 too: as fast, but XNNPACK then returns NaN on full-scale tones (3150 values on 7 kHz; none
#   with the builtin kernels), dWER +0.42 pp.
# - ADD/MUL/SUB/LOGISTIC in int8 with the norms float: 1.47x, about 4 dB lost (the int8 residual adds). Every
#   supported op in int8: 6 dB lost, 87 partitions (int8 MEAN, RSQRT, SQUARED_DIFFERENCE, SOFTMAX are not
#   delegated), 0.73x.
#   16-bit activations (a16w8) everywhere: 13 dB better, but XNNPACK takes no int16 ops: 20x slower.
STATIC_INT8_OPS = ("FULLY_CONNECTED", "CONV_2D", "DEPTHWISE_CONV_2D", "TRANSPOSE", "SLICE", "PAD")


@RECIPES.register("int8-static", "int8 weights per channel + int8 activations calibrated on real audio, for the "
                  "fully connected and conv ops and the transposes, slices and pads between them; layer norms, "
                  "softmax, SiLU, residual adds, reshapes and attention's batch matmuls float32, so XNNPACK runs "
                  "the graph as one partition; float32 PCM in, float32 embeddings out", weights="int8",
                  compute="int8", needs_calibration=True)
def _int8_static(model, calibration, float_modules, input_name):
    from ai_edge_quantizer import qtyping
    q = _quantizer(model)
    for op in STATIC_INT8_OPS:
        q.add_static_config(".*", qtyping.TFLOperationName(op), activation_num_bits=8, weight_num_bits=8)
    return _run_quantizer(q, model, float_modules, calibration, input_name)


@RECIPES.register("npu-qualcomm", "the fp32 graph compiled ahead of time for a Qualcomm SoC's Hexagon NPU (HTP) "
                  "by ai_edge_litert.aot; the NPU computes its float ops in fp16, the frontend included; runs only "
                  "on that phone", weights="fp16", compute="fp16", options=litert_npu.QUALCOMM.socs,
                  option_label="SOC", runs_on="needs-device",
                  requires=lambda name: litert_npu.find_sdk(litert_npu.QUALCOMM, name))
def _npu_qualcomm(model, calibration, float_modules, input_name, option):
    return litert_npu.compile_for_npu(_fp32(model, calibration, float_modules, input_name), litert_npu.QUALCOMM,
                                      option, f"npu-qualcomm:{option}", "fp32")


@RECIPES.register("npu-qualcomm-int8", "the int8-static graph compiled ahead of time for a Qualcomm SoC's "
                  "Hexagon NPU (HTP) by ai_edge_litert.aot: int8 compute ops, the other float ops (the frontend "
                  "included) in fp16 on the NPU; runs only on that phone", weights="int8", compute="int8",
                  needs_calibration=True, options=litert_npu.QUALCOMM.socs, option_label="SOC",
                  runs_on="needs-device", requires=lambda name: litert_npu.find_sdk(litert_npu.QUALCOMM, name))
def _npu_qualcomm_int8(model, calibration, float_modules, input_name, option):
    return litert_npu.compile_for_npu(_int8_static(model, calibration, float_modules, input_name),
                                      litert_npu.QUALCOMM, option, f"npu-qualcomm-int8:{option}", "int8-static")


def describe(model: bytes, float_modules: tuple[str, ...] = ()) -> dict:
    """Op census of a flatbuffer: I/O dtypes, how many ops compute in int8 and which op families they are, how
    many float-module ops stay float32, and how many partitions the XNNPACK delegate cuts the graph into (1: one
    delegated graph; each op XNNPACK does not take adds a cut). Used to prove the recipe did what it says (and by
    the tests)."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_content=model, num_threads=1)
    tensors = it.get_tensor_details()
    scope = re.compile(float_scope_regex(float_modules)) if float_modules else None
    ops = it._get_ops_details()  # no public op listing in ai_edge_litert 2.3
    int8_ops, float_module_ops, float_module_quantized = 0, 0, 0
    int8_by_op, float_by_op = {}, {}
    for op in ops:
        outs = [tensors[i] for i in op["outputs"] if i >= 0]
        ins = [tensors[i] for i in op["inputs"] if i >= 0]
        quantized = any(t["dtype"] in (np.int8, np.int16) for t in outs + ins)
        if op["op_name"] in ("QUANTIZE", "DEQUANTIZE"):  # boundary conversions, inserted by the quantizer
            continue
        int8_ops += quantized
        by_op = int8_by_op if quantized else float_by_op
        by_op[op["op_name"]] = by_op.get(op["op_name"], 0) + 1
        if scope and any(scope.search(t["name"] + ";") for t in outs):
            float_module_ops += 1
            float_module_quantized += quantized
    it.allocate_tensors()  # applies the XNNPACK delegate: each partition becomes one DELEGATE node
    partitions = sum(op["op_name"] == "DELEGATE" for op in it._get_ops_details())
    dtype = lambda d: np.dtype(d["dtype"]).name
    return {"ops": len(ops), "int8_ops": int(int8_ops), "float_module_ops": float_module_ops,
            "float_module_ops_quantized": int(float_module_quantized),
            "int8_by_op": dict(sorted(int8_by_op.items())), "float_by_op": dict(sorted(float_by_op.items())),
            "conversions": len(ops) - sum(int8_by_op.values()) - sum(float_by_op.values()),
            "xnnpack_partitions": int(partitions),
            "input_dtypes": [dtype(d) for d in it.get_input_details()],
            "output_dtypes": [dtype(d) for d in it.get_output_details()],
            "signatures": it.get_signature_list()}


def export(module: torch.nn.Module, example_inputs: tuple, recipe: str, out_path: str | Path, *,
           calibration=(), float_modules: tuple[str, ...] = (), input_name: str = "input",
           output_name: str = "output") -> Artifact:
    def convert(spec, module, example_inputs, out_path) -> dict:
        import litert_torch
        with torch.no_grad():
            edge = litert_torch.convert(_NamedIO(module, output_name).eval(),
                                        sample_kwargs={input_name: example_inputs[0]})
        model = spec.build(bytes(edge.model_content()), calibration, tuple(float_modules), input_name)
        npu = model if isinstance(model, litert_npu.CompiledForNpu) else None
        if npu:  # the checks below read the graph the NPU compiler was given; the compiled one ships
            model = npu.source
        census = describe(model, tuple(float_modules))
        if census["input_dtypes"] != ["float32"] or census["output_dtypes"] != ["float32"]:
            raise ConversionFailed(NAME, recipe, f"model I/O is {census['input_dtypes']} -> "
                                                 f"{census['output_dtypes']}, expected float32 -> float32")
        if float_modules and (census["float_module_ops"] == 0 or census["float_module_ops_quantized"]):
            raise ConversionFailed(NAME, recipe, f"float modules {list(float_modules)}: "
                                                 f"{census['float_module_ops']} ops found, "
                                                 f"{census['float_module_ops_quantized']} quantized")
        out_path.write_bytes(npu.compiled if npu else model)
        census.pop("signatures")
        details = {"ops": census, "signature": SIGNATURE, "libraries": library_info(), "deterministic": True}
        if npu:
            details["npu"] = {**npu.details, "source_sha256": hashlib.sha256(npu.source).hexdigest()}
            details["deterministic"] = "not checked (vendor compiler)"
        return details

    return export_frame(NAME, RECIPES, convert, module, example_inputs, recipe, out_path, calibration, input_name,
                        output_name)


def runs_here() -> bool:
    """``ai_edge_litert`` runs on every OS Veil supports."""
    return True


def import_runtime() -> None:
    """Import the runtime (not the artifact): a benchmark takes its memory baseline after this."""
    from ai_edge_litert import interpreter  # noqa: F401


class LiteRTRunner(Runner):
    def __init__(self, artifact: Artifact, num_threads: int | None = None):
        super().__init__(artifact)
        from ai_edge_litert.interpreter import Interpreter
        self.num_threads = num_threads or max(1, torch.get_num_threads())
        self.interpreter = Interpreter(model_path=str(artifact.path), num_threads=self.num_threads)
        self.signature = self.interpreter.get_signature_runner(artifact.details.get("signature", SIGNATURE))

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.signature(**{self.artifact.input_name: x})[self.artifact.output_name]

    def thread_info(self) -> dict:
        return {"interpreter_threads": self.num_threads}


def load(artifact: Artifact, threads: int | None = None) -> Runner:
    """``threads``: the interpreter's threads (default: torch's thread count). An NPU artifact raises
    :class:`NeedsDevice`: its DISPATCH_OP runs only on its phone."""
    if "npu" in artifact.details:
        litert_npu.check_runs_here(f"litert {artifact.recipe} ({Path(artifact.path).name})", artifact.details["npu"])
    return LiteRTRunner(artifact, num_threads=threads)


def input_shape(artifact: Artifact) -> tuple[int, ...]:
    """The input shape the ``.tflite`` itself declares."""
    from ai_edge_litert.interpreter import Interpreter
    details = Interpreter(model_path=str(artifact.path)).get_input_details()
    return tuple(int(d) for d in details[0]["shape"])


def check_spec(artifact: Artifact, io: dict) -> list[str]:
    """What the file declares against the manifest's ``{"input": .., "output": ..}``: its input shape.
    Returns the mismatches, empty when they agree."""
    declared, want = list(input_shape(artifact)), list(io["input"]["shape"])
    return [] if declared == want else [f"input shape {declared} != manifest {want}"]
