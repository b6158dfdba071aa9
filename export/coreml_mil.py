"""Core ML ML Programs executed on Linux: a numpy reference interpreter for an ``.mlpackage``'s own MIL program.

Only a Mac can run a Core ML model (``MLModel.predict``). What coremltools *wrote*, though, can be read anywhere:
the package's MIL program (protobuf) and its weight blob. :class:`MILInterpreter` reads both with coremltools'
own readers (``milproto.load``, which reads ``weight.bin`` through ``libmilstoragepython``'s blob reader) and
evaluates the main function op by op in numpy, so a conversion that changed an op's meaning, a weight stored
with the wrong scale, a frontend that did not stay float32 or a layout mistake shows up in the numbers.

Semantics, per op:

- every tensor keeps its serialized dtype: an op whose output the program declares fp16 is rounded to float16,
  fp32 stays float32. Inside one op, arithmetic runs in float32 (a float16 input is widened exactly), the way
  a matmul, conv or reduction accumulates in wider precision; so an fp16 program is evaluated as "each op
  correctly rounded to float16". Apple's kernels (the Neural Engine above all) round and fuse in their own
  ways, which only a Mac shows.
- compressed weights (``constexpr_affine_dequantize``, ``constexpr_blockwise_shift_scale``,
  ``constexpr_lut_to_dense``, ...) are dequantized once, at load, by the ops' own ``materialized_val_inference``
  (per tensor, per channel or per block, as the op's attributes say);
- ops whose coremltools ``value_inference`` implements their documented semantics reuse it; ``conv`` and
  ``silu`` (which have none) are implemented here;
- an op the interpreter does not implement fails at load, in one line naming it (:class:`UnsupportedMILOp`).

Every op's output is checked against the shape the program declares, so a layout mistake is named where it
happens rather than as a wrong number at the end.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from export.artifact import Artifact, Runner
from export.errors import ExportError

CONSTEXPR_OPS = ("constexpr_affine_dequantize", "constexpr_blockwise_shift_scale", "constexpr_lut_to_dense",
                 "constexpr_cast", "constexpr_sparse_to_dense")
# Ops evaluated by coremltools' own value_inference (each tested against torch in tests/test_coreml_mil.py).
VALUE_INFERENCE_OPS = frozenset({
    "add", "sub", "mul", "real_div", "pow", "maximum", "minimum",
    "abs", "exp", "log", "rsqrt", "sqrt", "tanh", "erf", "square",
    "relu", "sigmoid", "softmax", "gelu", "clip",
    "linear", "matmul", "layer_norm", "reduce_mean", "reduce_sum", "reduce_max",
    "reshape", "transpose", "squeeze", "expand_dims", "slice_by_index", "split", "concat", "pad", "identity",
})
FLOAT_DTYPES = {"fp16": np.float16, "fp32": np.float32}


class UnsupportedMILOp(ExportError):
    """The program holds an op the reference interpreter does not implement; nothing was evaluated."""

    def __init__(self, path, op_type: str, op_name: str, count: int):
        more = f" and {count - 1} more op(s) of that type" if count > 1 else ""
        super().__init__(f"coreml-mil: {Path(path).name}: op '{op_type}' (first: '{op_name}'{more}) is not "
                         f"implemented by Veil's MIL reference interpreter; nothing was evaluated")
        self.op_type = op_type


class MILEvaluationError(ExportError):
    """An op's evaluation failed or disagreed with the shape the program declares for its output."""


class _Held:
    """What a coremltools ``Var`` keeps as its value (``Var.val`` reads ``_sym_val.val``)."""
    __slots__ = ("val",)

    def __init__(self, val):
        self.val = val


def _dtype_name(var) -> str:
    from coremltools.converters.mil.mil import types
    return types.builtin_to_string(var.dtype)


def _np_dtype(var):
    from coremltools.converters.mil.mil import types
    name = _dtype_name(var)
    return FLOAT_DTYPES.get(name) or types.nptype_from_builtin(var.dtype)


def _widen(value):
    """A float16 value as float32 (exact), a numpy bool scalar as a Python bool (numpy 2's reductions refuse
    ``keepdims=np.True_``), anything else as is: ops compute in float32 inside."""
    if isinstance(value, (np.bool_, bool)) or (isinstance(value, np.ndarray) and value.dtype == bool
                                               and value.ndim == 0):
        return bool(value)
    if isinstance(value, np.ndarray) and value.dtype == np.float16:
        return value.astype(np.float32)
    if isinstance(value, np.float16):
        return np.float32(value)
    return value


# ---- ops implemented here (no value_inference in coremltools) -------------------------------------------------

def _conv(op, val: Callable) -> np.ndarray:
    """MIL ``conv`` (1-D to 3-D, groups, dilations, strides, pad_type valid/same/same_lower/custom)."""
    x, w = val(op.x).astype(np.float32), val(op.weight).astype(np.float32)
    n_sp = x.ndim - 2
    strides = [int(s) for s in (val(op.strides) if op.strides is not None else [1] * n_sp)]
    dilations = [int(d) for d in (val(op.dilations) if op.dilations is not None else [1] * n_sp)]
    groups = int(val(op.groups)) if op.groups is not None else 1
    pad_type = str(val(op.pad_type)) if op.pad_type is not None else "valid"
    kernel = w.shape[2:]
    effective = [d * (k - 1) + 1 for d, k in zip(dilations, kernel)]
    if pad_type == "custom":
        pads = [int(p) for p in val(op.pad)]
        pads = [(pads[2 * i], pads[2 * i + 1]) for i in range(n_sp)]
    elif pad_type in ("same", "same_lower"):
        pads = []
        for size, s, e in zip(x.shape[2:], strides, effective):
            total = max((-(-size // s) - 1) * s + e - size, 0)
            small, big = total // 2, total - total // 2
            pads.append((small, big) if pad_type == "same" else (big, small))
    elif pad_type == "valid":
        pads = [(0, 0)] * n_sp
    else:
        raise MILEvaluationError(f"coreml-mil: conv '{op.name}': pad_type '{pad_type}' is not supported")
    x = np.pad(x, [(0, 0), (0, 0)] + pads)
    windows = np.lib.stride_tricks.sliding_window_view(x, effective, axis=tuple(range(2, 2 + n_sp)))
    index = (slice(None), slice(None)) + tuple(slice(None, None, s) for s in strides) + \
        tuple(slice(None, None, d) for d in dilations)
    windows = windows[index]                                    # (N, C, O..., k...)
    n, c = x.shape[:2]
    out_sp = windows.shape[2:2 + n_sp]
    cg, og = c // groups, w.shape[0] // groups
    k = int(np.prod(kernel))
    cols = windows.reshape(n, groups, cg, int(np.prod(out_sp)), k)          # copies into im2col
    cols = cols.transpose(1, 0, 3, 2, 4).reshape(groups, n * int(np.prod(out_sp)), cg * k)
    wg = w.reshape(groups, og, cg * k)
    y = np.matmul(cols, wg.transpose(0, 2, 1))                             # (G, N*O, og)
    y = y.reshape(groups, n, *out_sp, og)
    y = np.moveaxis(y, -1, 1).reshape(groups * og, n, *out_sp)            # channel = g * og + o
    y = np.moveaxis(y, 0, 1)
    if op.bias is not None:
        y = y + val(op.bias).astype(np.float32).reshape((1, -1) + (1,) * n_sp)
    return y


def _silu(op, val: Callable) -> np.ndarray:
    x = val(op.x).astype(np.float32)
    return x / (1.0 + np.exp(-x))


def _cast(op, val: Callable) -> np.ndarray:
    return np.asarray(val(op.x))  # the output's declared dtype (the cast's target) is applied by the caller


OWN_OPS: dict[str, Callable] = {"conv": _conv, "silu": _silu, "cast": _cast}
SUPPORTED_OPS = frozenset(VALUE_INFERENCE_OPS | set(OWN_OPS) | set(CONSTEXPR_OPS) | {"const"})


def load_program(path: str | Path):
    """The ``.mlpackage``'s MIL program (a coremltools ``Program``) with its weights read from ``weight.bin``,
    and the spec: coremltools' own readers, no Core ML framework needed."""
    import coremltools as ct
    from coremltools.converters.mil.frontend.milproto.load import load as load_mil
    path = Path(path)
    if not (path / "Manifest.json").is_file():
        raise ExportError(f"coreml-mil: {path}: not an .mlpackage (no Manifest.json)")
    model = ct.models.MLModel(str(path), skip_model_load=True)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ExportError(f"coreml-mil: {path.name}: model type '{spec.WhichOneof('Type')}' is not an ML Program")
    return load_mil(spec, spec.specificationVersion, model.weights_dir), spec


class MILInterpreter:
    """Evaluates an ML Program's ``main`` function in numpy. ``interpreter({"pcm": x})`` -> ``{output name:
    array}``. Build it once per package (loading dequantizes the weights); calls are independent."""

    def __init__(self, path: str | Path, function: str = "main"):
        self.path = Path(path)
        self.program, self.spec = load_program(self.path)
        if function not in self.program.functions:
            raise ExportError(f"coreml-mil: {self.path.name}: no function '{function}' "
                              f"(functions: {', '.join(self.program.functions)})")
        self.function = self.program.functions[function]
        self.ops = list(self.function.operations)
        unknown: dict[str, list[str]] = {}
        for op in self.ops:
            if op.op_type not in SUPPORTED_OPS or op.blocks:
                unknown.setdefault(op.op_type, []).append(op.name)
        if unknown:
            op_type, names = next(iter(unknown.items()))
            raise UnsupportedMILOp(self.path, op_type, names[0], len(names))
        self.inputs = {name: var for name, var in self.function.inputs.items()}
        self.outputs = [var.name for var in self.function.outputs]
        self.constants: dict[str, object] = {}
        for op in self.ops:
            if op.op_type == "const":
                self.constants[op.outputs[0].name] = op.outputs[0].val
            elif op.op_type in CONSTEXPR_OPS:
                value = op.materialized_val_inference()
                values = value if isinstance(value, tuple) else (value,)
                for var, v in zip(op.outputs, values):
                    self.constants[var.name] = np.asarray(v).astype(_np_dtype(var))
        self.compute = [op for op in self.ops if op.op_type != "const" and op.op_type not in CONSTEXPR_OPS]

    @property
    def op_types(self) -> dict[str, int]:
        """How many ops of each type the main function holds."""
        counts: dict[str, int] = {}
        for op in self.ops:
            counts[op.op_type] = counts.get(op.op_type, 0) + 1
        return counts

    def dtypes(self) -> dict[str, int]:
        """How many compute ops output each dtype (``{"fp32": .., "fp16": ..}``): what the program computes in."""
        counts: dict[str, int] = {}
        for op in self.compute:
            for var in op.outputs:
                counts[_dtype_name(var)] = counts.get(_dtype_name(var), 0) + 1
        return counts

    def summary(self) -> dict:
        """What the program holds: ops by type and the dtypes its compute ops output."""
        return {"ops": dict(sorted(self.op_types.items())), "compute_dtypes": self.dtypes(),
                "compressed_weights": sum(n for t, n in self.op_types.items() if t in CONSTEXPR_OPS)}

    def __call__(self, feeds: dict[str, np.ndarray], keep: bool = False) -> dict[str, np.ndarray]:
        """Evaluate the function on ``feeds`` ({input name: array}); returns {output name: array}, or with
        ``keep`` every value the program computed, by variable name."""
        env: dict[str, object] = dict(self.constants)
        for name, var in self.inputs.items():
            if name not in feeds:
                raise ExportError(f"coreml-mil: {self.path.name}: missing input '{name}' (inputs: "
                                  f"{', '.join(self.inputs)})")
            x = np.asarray(feeds[name]).astype(_np_dtype(var))
            if tuple(x.shape) != tuple(var.shape):
                raise ExportError(f"coreml-mil: {self.path.name}: input '{name}' has shape {tuple(x.shape)}, the "
                                  f"program declares {tuple(var.shape)}")
            env[name] = x
        for op in self.compute:
            self._evaluate(op, env)
        if keep:
            return env
        return {name: env[name] for name in self.outputs}

    def _evaluate(self, op, env: dict) -> None:
        try:
            if op.op_type in OWN_OPS:
                result = OWN_OPS[op.op_type](op, lambda var: env[var.name])
            else:
                result = self._value_inference(op, env)
        except MILEvaluationError:
            raise
        except Exception as exc:  # noqa: BLE001 - name the op, keep the cause
            raise MILEvaluationError(f"coreml-mil: {self.path.name}: op '{op.op_type}' ('{op.name}') failed: "
                                     f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        results = result if isinstance(result, (tuple, list)) and len(op.outputs) > 1 else (result,)
        if len(results) != len(op.outputs):
            raise MILEvaluationError(f"coreml-mil: {self.path.name}: op '{op.op_type}' ('{op.name}') gave "
                                     f"{len(results)} outputs, the program declares {len(op.outputs)}")
        for var, value in zip(op.outputs, results):
            value = np.asarray(value).astype(_np_dtype(var), copy=False)
            declared = tuple(var.shape)
            if all(isinstance(d, (int, np.integer)) for d in declared) and value.shape != declared:
                raise MILEvaluationError(f"coreml-mil: {self.path.name}: op '{op.op_type}' ('{op.name}') computed "
                                         f"shape {value.shape}, the program declares {declared}")
            env[var.name] = value

    @staticmethod
    def _value_inference(op, env: dict):
        """coremltools' own ``value_inference`` on this op, its inputs (widened to float32) set as the values
        of their variables for the duration of the call."""
        held = []
        for var in _input_vars(op):
            if var.name in env:
                held.append((var, var._sym_val))
                var._sym_val = _Held(_widen(env[var.name]))
        try:
            return op.value_inference()
        finally:
            for var, old in reversed(held):
                var._sym_val = old


def _input_vars(op):
    for value in op.inputs.values():
        if isinstance(value, (list, tuple)):
            yield from value
        else:
            yield value


LABEL = "mil-reference (Linux)"


class MILReferenceRunner(Runner):
    """A Core ML artifact's own program as a chunk runner (``runner(pcm_chunk) -> embeddings``), evaluated by
    :class:`MILInterpreter`: what Linux can execute of a ``.mlpackage``. Not Core ML: its kernels, the Neural
    Engine's numerics and speed are a Mac's to show."""

    def __init__(self, artifact: Artifact):
        super().__init__(artifact)
        self.interpreter = MILInterpreter(artifact.path)
        self.seconds: list[float] = []  # wall time of each chunk's evaluation
        for name, names in (("input", self.interpreter.inputs), ("output", self.interpreter.outputs)):
            want = getattr(artifact, f"{name}_name")
            if want not in names:
                raise ExportError(f"coreml-mil: {Path(artifact.path).name}: the program has no {name} '{want}' "
                                  f"({name}s: {', '.join(names)})")

    def _run(self, x: np.ndarray) -> np.ndarray:
        start = time.perf_counter()
        out = self.interpreter({self.artifact.input_name: x})[self.artifact.output_name]
        self.seconds.append(time.perf_counter() - start)
        return np.asarray(out, dtype=np.float32)
