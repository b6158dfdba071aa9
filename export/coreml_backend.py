"""Core ML backend: ``torch.export`` -> ``coremltools.convert`` -> ML Program ``.mlpackage`` (iOS 17+).

``fp16`` computes the encoder in float16 but keeps the ops of ``float_modules`` (Veil's log-mel frontend) in
float32: power spectra of loud audio approach float16's limit (65504) and the log floor (1e-5) lies below its
normal range (6.1e-5). Compression recipes (``int8-weights``, ``palettized-4bit``) skip every op of the float
modules and the constants feeding them, by name (coremltools' ``op_name_configs``), because a global config
would compress the DFT and mel matrices too.

coremltools' package is not byte-reproducible as written; :func:`normalize_package` makes it so without
changing what it computes (see there). Running a Core ML model needs Apple's Core ML framework: on other
systems :func:`load` raises :class:`NeedsMacOS` and nothing is reported as run; :func:`describe` reads the
spec, which works anywhere. coremltools is imported inside the functions that use it: it is heavy, and only
a Core ML export or check needs it.
"""
from __future__ import annotations

import json
import platform
import uuid
from pathlib import Path

import numpy as np
import torch

from export.artifact import Artifact, Runner, file_sha256, in_module, library_versions
from export.errors import ConversionFailed, ExportError, NeedsMacOS
from export.frame import export_frame
from export.recipes import RecipeRegistry

NAME = "coreml"
SUFFIX = ".mlpackage"
TARGET = "ios"
RUNTIME = "Core ML"
DEFAULT_RECIPE = "int8-weights"
RECIPES = RecipeRegistry(NAME)
MINIMUM_DEPLOYMENT_TARGET = "iOS17"
NORMALIZED = ["Manifest.json item identifiers: uuid5 of the item path instead of random uuid4",
              "model.mlmodel: protobuf maps serialized in sorted order (deterministic=True)",
              "model.mlmodel: metadata key com.github.apple.coremltools.conversion_date removed"]
CONVERSION_DATE_KEY = "com.github.apple.coremltools.conversion_date"


def library_info() -> dict[str, str]:
    return library_versions("coremltools", "torch")


def _float_node_names(program: torch.export.ExportedProgram, float_modules) -> set[str]:
    """Names of the exported graph's nodes inside ``float_modules``; coremltools names MIL ops after them."""
    names = set()
    for node in program.graph.nodes:
        stack = node.meta.get("nn_module_stack") or {}
        if node.op == "call_function" and any(in_module(p, float_modules) for p, _ in stack.values()):
            names.add(node.name)
    return names


def _float_op_names(mlmodel, float_nodes: set[str]) -> set[str]:
    """MIL ops of the float modules plus the constants that feed only them (DFT basis, mel matrix...)."""
    ops = list(mlmodel._mil_program.functions["main"].operations)
    float_ops = {op.name for op in ops if op.name in float_nodes}
    consts = {op.name for op in ops if op.op_type == "const"
              and any(child.name in float_ops for out in op.outputs for child in out.child_ops)}
    return float_ops | consts


def _convert(program, float_nodes, precision: str, io):
    import coremltools as ct
    input_name, input_shape, output_name = io
    if precision == "fp16":
        compute_precision = ct.transform.FP16ComputePrecision(op_selector=lambda op: op.name not in float_nodes)
    else:
        compute_precision = ct.precision.FLOAT32
    return ct.convert(program, inputs=[ct.TensorType(name=input_name, shape=input_shape, dtype=np.float32)],
                      outputs=[ct.TensorType(name=output_name, dtype=np.float32)],
                      convert_to="mlprogram", minimum_deployment_target=ct.target.iOS17,
                      compute_precision=compute_precision, skip_model_load=True)


def _compress(mlmodel, float_nodes, config, compress_fn):
    import coremltools.optimize.coreml as cto
    skip = {name: None for name in _float_op_names(mlmodel, float_nodes)}
    return compress_fn(mlmodel, cto.OptimizationConfig(global_config=config, op_name_configs=skip))


@RECIPES.register("fp16", "float16 encoder compute and weights; frontend float32", weights="fp16", compute="fp16")
def _fp16(program, float_nodes, io):
    return _convert(program, float_nodes, "fp16", io)


@RECIPES.register("fp32", "float32 throughout", weights="fp32", compute="fp32")
def _fp32(program, float_nodes, io):
    return _convert(program, float_nodes, "fp32", io)


@RECIPES.register("int8-weights", "fp16 model with int8 linear (symmetric, per-channel) weights; frontend float32",
                  weights="int8", compute="fp16")
def _int8_weights(program, float_nodes, io):
    import coremltools.optimize.coreml as cto
    config = cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", granularity="per_channel")
    return _compress(_convert(program, float_nodes, "fp16", io), float_nodes, config, cto.linear_quantize_weights)


@RECIPES.register("palettized-4bit", "fp16 model with 4-bit k-means palettized weights (one LUT per tensor); "
                  "frontend float32", weights="int4", compute="fp16")
def _palettized_4bit(program, float_nodes, io):
    import coremltools.optimize.coreml as cto
    config = cto.OpPalettizerConfig(mode="kmeans", nbits=4, granularity="per_tensor")
    return _compress(_convert(program, float_nodes, "fp16", io), float_nodes, config, cto.palettize_weights)


def normalize_package(path: Path) -> None:
    """Make a saved ``.mlpackage`` byte-reproducible without changing what it computes. As coremltools 9
    writes it, two exports of the same program differ in three places: random uuid4 item identifiers in
    Manifest.json, protobuf map entries (spec metadata, MIL op attributes) serialized in hash order, and
    the conversion date in the metadata. ``weight.bin`` is already reproducible."""
    import coremltools as ct
    manifest_path = path / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renamed = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"veil-mlpackage:{item['path']}"))
               for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {renamed[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    root = manifest["itemInfoEntries"][manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4) + "\n")
    spec_path = path / "Data" / root["path"]
    spec = ct.proto.Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec.description.metadata.userDefined.pop(CONVERSION_DATE_KEY, None)
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def describe(path: str | Path, float_nodes: set[str] | None = None) -> dict:
    """What can be checked without macOS: the spec's inputs/outputs and, from the MIL program, that the
    float ops stay float32 and uncompressed."""
    import coremltools as ct
    spec = ct.utils.load_spec(str(path))
    array_type = {v: k for k, v in ct.proto.FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.items()}

    def features(items):
        return [{"name": f.name, "shape": [int(d) for d in f.type.multiArrayType.shape],
                 "dtype": array_type[f.type.multiArrayType.dataType].lower()} for f in items]

    return {"spec_version": spec.specificationVersion, "model_type": spec.WhichOneof("Type"),
            "inputs": features(spec.description.input), "outputs": features(spec.description.output)}


# Ops that move values without computing: casting to fp16 before or after one gives the same numbers. The
# frontend's last transpose is merged with the encoder's layout transposes by coremltools' passes and then sits on
# the fp16 side of the boundary cast; any frontend op that computes after an fp16 one is still caught.
DATA_MOVEMENT_OPS = frozenset({"transpose", "reshape", "expand_dims", "squeeze", "slice_by_index"})


def _mil_census(mlmodel, float_nodes: set[str]) -> dict:
    from coremltools.converters.mil.mil import types
    ops = list(mlmodel._mil_program.functions["main"].operations)
    float_ops = [op for op in ops if op.name in float_nodes]
    compressed = [op for op in ops if op.op_type.startswith("constexpr_")]
    fed_by_constexpr = {child.name for op in compressed for out in op.outputs for child in out.child_ops}
    fp32 = [all(types.builtin_to_string(o.dtype) == "fp32" for o in op.outputs) for op in float_ops]
    moves_fp16 = sum(not ok and op.op_type in DATA_MOVEMENT_OPS for ok, op in zip(fp32, float_ops))
    return {"ops": len(ops), "compressed_weights": len(compressed),
            "float_module_ops": len(float_ops),
            "float_module_ops_fp32": sum(fp32) + moves_fp16,
            "float_module_data_movement_fp16": moves_fp16,
            "float_module_ops_compressed": len([op for op in float_ops if op.name in fed_by_constexpr])}


def export(module: torch.nn.Module, example_inputs: tuple, recipe: str, out_path: str | Path, *,
           calibration=(), float_modules: tuple[str, ...] = (), input_name: str = "input",
           output_name: str = "output") -> Artifact:
    def convert(spec, module, example_inputs, out_path) -> dict:
        with torch.no_grad():
            program = torch.export.export(module, example_inputs).run_decompositions({})
        float_nodes = _float_node_names(program, tuple(float_modules))
        if float_modules and not float_nodes:
            raise ExportError(f"no graph nodes belong to float modules {list(float_modules)}")
        mlmodel = spec.build(program, float_nodes, (input_name, tuple(example_inputs[0].shape), output_name))
        census = _mil_census(mlmodel, float_nodes)
        if float_modules and (census["float_module_ops"] == 0
                              or census["float_module_ops_fp32"] != census["float_module_ops"]
                              or census["float_module_ops_compressed"]):
            raise ConversionFailed(NAME, recipe, f"float modules {list(float_modules)} did not stay float32 "
                                                 f"and uncompressed ({census})")
        mlmodel.save(str(out_path))
        normalize_package(out_path)
        weights = out_path / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
        return {"minimum_deployment_target": MINIMUM_DEPLOYMENT_TARGET, "mil": census, "spec": describe(out_path),
                "libraries": library_info(), "weights_sha256": file_sha256(weights) if weights.is_file() else None,
                "deterministic": True, "normalized_for_determinism": NORMALIZED}

    return export_frame(NAME, RECIPES, convert, module, example_inputs, recipe, out_path, calibration, input_name,
                        output_name)


def runs_here() -> bool:
    """Core ML executes only through Apple's framework, on macOS."""
    return platform.system() == "Darwin"


def import_runtime() -> None:
    """Import the runtime (not the artifact): a benchmark takes its memory baseline after this."""
    import coremltools  # noqa: F401


def feature_dict(artifact: Artifact, chunk: np.ndarray) -> dict[str, np.ndarray]:
    """What ``MLModel.predict`` takes for one PCM chunk: ``{input name: a fresh C-contiguous float32 array of
    the exported input shape}``. Raises ValueError when the chunk does not fit the artifact."""
    x = np.ascontiguousarray(chunk, dtype=np.float32).reshape(tuple(artifact.input_shape))
    return {artifact.input_name: x.copy()}


class CoreMLRunner(Runner):
    def __init__(self, artifact: Artifact):
        super().__init__(artifact)
        import coremltools as ct
        self.model = ct.models.MLModel(str(artifact.path), compute_units=ct.ComputeUnit.CPU_ONLY)

    def _run(self, x: np.ndarray) -> np.ndarray:
        return self.model.predict(feature_dict(self.artifact, x))[self.artifact.output_name]


def load(artifact: Artifact, threads: int | None = None) -> Runner:
    """Core ML picks its own threads (``threads`` is ignored). Off macOS: :class:`NeedsMacOS`."""
    if not runs_here():
        raise NeedsMacOS(f"coreml {artifact.recipe} ({Path(artifact.path).name})")
    return CoreMLRunner(artifact)


def input_shape(artifact: Artifact) -> tuple[int, ...]:
    """The input shape the package's spec declares (readable on any OS)."""
    return tuple(describe(artifact.path)["inputs"][0]["shape"])


def check_spec(artifact: Artifact, io: dict) -> list[str]:
    """The package spec's input and output (name, shape, dtype) against the manifest's
    ``{"input": .., "output": ..}``, on any OS. Returns the mismatches, empty when they agree."""
    spec = describe(artifact.path)
    want_in = {k: io["input"][k] for k in ("name", "shape", "dtype")}
    want_out = {k: io["output"][k] for k in ("name", "shape", "dtype")}
    mismatches = []
    if spec["inputs"] != [want_in]:
        mismatches.append(f"inputs {spec['inputs']} != manifest {want_in}")
    if spec["outputs"] != [want_out]:
        mismatches.append(f"outputs {spec['outputs']} != manifest {want_out}")
    return mismatches
