"""The machine ceiling: this CPU's matmul throughput per dtype and thread count, and the prefix's MAC count.

Achieved/peak tells how much of the hardware an artifact uses: (prefix MACs per chunk / p50 latency) divided
by the best matmul throughput any runtime reached here in the same dtype at the same thread count. The
kernels are one (M, K) x (K, N) matmul, measured in fresh worker processes like the artifacts:

    torch fp32        torch.mm (oneDNN/MKL)          torch int8       torch._int_mm (int8 x int8 -> int32)
    onnxruntime fp32  MatMul                         onnxruntime int8 MatMulInteger (uint8 x int8 -> int32)
    executorch fp32   nn.Linear lowered to XNNPACK   executorch int8  the same, PT2E int8 static (qs8 GEMM)
    litert fp32       nn.Linear as FULLY_CONNECTED   litert int8      the same, int8 static

The ExecuTorch/LiteRT kernels go through Veil's own ``export`` backends, so they use exactly the kernels the
artifacts use. Peak = MACs / p50 latency (the same statistic the artifacts are judged by).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

import export as backends

CEILING_SHAPE = (256, 1024, 1024)  # M, K, N: 268 M MACs per call, milliseconds on one core
RUNTIME_KERNELS = [("executorch", "fp32", "fp32"), ("executorch", "int8", "int8-static"),
                   ("litert", "fp32", "fp32"), ("litert", "int8", "int8-static")]
MATMUL_KERNELS = [("torch", "fp32"), ("torch", "int8"), ("onnxruntime", "fp32"), ("onnxruntime", "int8")]


def shape_macs(shape=CEILING_SHAPE) -> int:
    m, k, n = shape
    return m * k * n


def prefix_macs(prefix, chunk_samples: int) -> dict:
    """Multiply-accumulates of one chunk through the float prefix (torch's flop counter: conv, mm, bmm,
    attention; 1 MAC = 2 FLOPs), in total and per top-level module."""
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        prefix(torch.zeros(1, chunk_samples))
    per_module = {}
    for name, ops in counter.get_flop_counts().items():
        parts = name.split(".")
        if len(parts) == 2 or (len(parts) == 3 and parts[1] == "blocks"):
            per_module[".".join(parts[1:])] = int(sum(ops.values()) // 2)
    return {"macs_per_chunk": int(counter.get_total_flops() // 2), "per_module": per_module}


def _onnx_matmul(path: Path, dtype: str, shape) -> Path:
    import onnx  # heavy, needed only when the ONNX ceiling kernels are written
    from onnx import TensorProto, helper, numpy_helper
    m, k, n = shape
    rng = np.random.default_rng(0)
    if dtype == "fp32":
        b = numpy_helper.from_array(rng.standard_normal((k, n)).astype(np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.FLOAT, TensorProto.FLOAT
    else:
        b = numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "B")
        node = helper.make_node("MatMulInteger", ["A", "B"], ["Y"])
        a_type, y_type = TensorProto.UINT8, TensorProto.INT32
    graph = helper.make_graph([node], "matmul", [helper.make_tensor_value_info("A", a_type, [m, k])],
                              [helper.make_tensor_value_info("Y", y_type, [m, n])], [b])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def matmul_kernel(spec: dict):
    """Worker side: a closure that runs one matmul of ``spec['shape']`` (the input argument is ignored)."""
    runtime, dtype = spec["runtime"], spec["dtype"]
    m, k, n = spec["shape"]
    gen = torch.Generator().manual_seed(0)
    if runtime == "torch":
        if dtype == "fp32":
            a, b = torch.randn(m, k, generator=gen), torch.randn(k, n, generator=gen)
            return lambda _: torch.mm(a, b).numpy()
        a = torch.randint(-127, 128, (m, k), generator=gen, dtype=torch.int8)
        b = torch.randint(-127, 128, (k, n), generator=gen, dtype=torch.int8)
        return lambda _: torch._int_mm(a, b).numpy()
    import onnxruntime as ort  # only in the worker that measures it (see toolkit/bench/worker.py)
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(spec["threads"])
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(spec["path"], options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    a = (rng.standard_normal((m, k)).astype(np.float32) if dtype == "fp32"
         else rng.integers(0, 256, (m, k)).astype(np.uint8))
    return lambda _: session.run(None, {"A": a})[0]


def runtime_kernel_module(shape=CEILING_SHAPE):
    """One Linear (no bias) followed by an add, so the matmul is not the graph's output op (LiteRT's int8
    recipe keeps graph I/O ops float)."""
    class MatmulKernel(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = torch.nn.Linear(shape[1], shape[2], bias=False)

        def forward(self, x):
            return self.linear(x) + 1.0

    torch.manual_seed(0)
    return MatmulKernel().eval()


def prepare_kernels(work_dir: Path, runtime_kernels: bool = True, shape=CEILING_SHAPE) -> list[dict]:
    """Kernel descriptions for the workers: ONNX models written, ExecuTorch/LiteRT Linear layers exported
    (skipped with ``runtime_kernels=False``). Each: {name, runtime, dtype, macs, spec (partial worker spec)}."""
    work_dir.mkdir(parents=True, exist_ok=True)
    m, k, n = shape
    kernels = []
    for runtime, dtype in MATMUL_KERNELS:
        spec = {"kind": "matmul", "runtime": runtime, "dtype": dtype, "shape": list(shape)}
        if runtime == "onnxruntime":
            spec["path"] = str(_onnx_matmul(work_dir / f"matmul-{dtype}.onnx", dtype, shape))
        kernels.append({"name": f"{runtime} {dtype}", "runtime": runtime, "dtype": dtype, "spec": spec})
    if runtime_kernels:
        x = np.random.default_rng(0).standard_normal((m, k)).astype(np.float32)
        np.save(work_dir / "linear-input.npy", x)
        for backend, dtype, recipe in RUNTIME_KERNELS:
            mod = backends.get_backend(backend)
            path = work_dir / f"linear-{m}x{k}x{n}-{recipe}{mod.SUFFIX}"
            entry_path = path.with_name(path.name + ".json")
            if path.is_file() and entry_path.is_file():  # exported by an earlier run: same module, same seed
                entry = json.loads(entry_path.read_text())
            else:
                try:
                    artifact = mod.export(runtime_kernel_module(shape), (x,), recipe, path, calibration=[x])
                except backends.ExportError as exc:
                    kernels.append({"name": f"{backend} {dtype} ({recipe} Linear)", "runtime": backend,
                                    "dtype": dtype, "error": str(exc)[:300]})
                    continue
                entry = artifact.to_json(relative_to=work_dir)
                entry_path.write_text(json.dumps(entry))
            kernels.append({"name": f"{backend} {dtype} ({recipe} Linear)", "runtime": backend, "dtype": dtype,
                            "spec": {"kind": backend, "entry": entry, "base_dir": str(work_dir),
                                     "input": str(work_dir / "linear-input.npy")}})
    for kern in kernels:
        kern["macs"] = shape_macs(shape)
        kern["shape"] = list(shape)
    return kernels


def peaks(results: list[dict]) -> dict:
    """{dtype: {threads: {gmacs, kernel}}} from measured kernels (the best one per dtype and thread count)."""
    best: dict = {}
    for r in results:
        if r.get("status") != "ok":
            continue
        key = str(r["threads"])
        cur = best.setdefault(r["dtype"], {}).get(key)
        if cur is None or r["gmacs"] > cur["gmacs"]:
            best[r["dtype"]][key] = {"gmacs": r["gmacs"], "kernel": r["name"]}
    return best
