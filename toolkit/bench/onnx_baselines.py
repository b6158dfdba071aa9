"""The peers a user would pick instead of Veil's artifacts: ONNX Runtime on the same float prefix, fp32 and int8.

    float prefix --torch.onnx (dynamo)--> prefix-fp32.onnx
                 --onnxruntime.quantization.quantize_static (QDQ, int8 weights per channel, uint8
                   activations, MinMax on the export's own calibration audio, frontend nodes excluded)-->
                 prefix-int8-qdq-<calibration hash>.onnx

Both are cached per checkpoint and split layer (the int8 file also per calibration set). The frontend stays
float32 in the int8 model, as in Veil's int8 artifacts, so the two compare at the same precision. A speed
row is worth nothing if the model is broken: :func:`baseline_parity` runs a baseline chunked, as a phone
would, on the bench's eval audio and reports SNR and ΔWER against the float prefix, the parity numbers of
``veil parity``.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
from pathlib import Path

import numpy as np
import torch

from toolkit.chunking import ChunkSpec, run_chunked, torch_runner
from toolkit.console import say
from toolkit.parity import metrics

INPUT_NAME = "pcm"
OUTPUT_NAME = "embeddings"


def onnx_fp32(prefix, chunk: np.ndarray, cache: Path) -> Path:
    """ONNX export of the float prefix (torch.onnx, dynamo exporter), cached per checkpoint and split layer."""
    path = cache / "prefix-fp32.onnx"
    if path.is_file():
        return path
    cache.mkdir(parents=True, exist_ok=True)
    tmp = cache / f".prefix-fp32.{os.getpid()}.onnx"
    say("onnx: exporting the float prefix for the ONNX Runtime baseline ...")
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        torch.onnx.export(prefix, (torch.from_numpy(chunk),), str(tmp), input_names=[INPUT_NAME],
                          output_names=[OUTPUT_NAME], dynamo=True, external_data=False)
    os.replace(tmp, path)
    return path


def nodes_in_modules(model, modules: tuple[str, ...]) -> list[str]:
    """Names of the nodes that the dynamo exporter traced inside the submodules ``modules`` of the prefix
    (its ``namespace`` metadata reads ``: Prefix/frontend: LogMelFrontend/...``)."""
    marks = tuple(f"/{m}: " for m in modules)
    return [n.name for n in model.graph.node
            if any(p.key == "namespace" and any(mark in p.value for mark in marks) for p in n.metadata_props)]


class _Chunks:
    """The calibration chunks as ``onnxruntime.quantization``'s data reader (it calls ``get_next`` only)."""

    def __init__(self, chunks: list[np.ndarray]):
        self._feeds = iter([{INPUT_NAME: np.asarray(c, dtype=np.float32)} for c in chunks])

    def get_next(self):
        return next(self._feeds, None)


def calibration_key(chunks: list[np.ndarray]) -> str:
    """A short hash of the calibration audio, so a cached int8 model is reused only for the same audio."""
    h = hashlib.sha256()
    for c in chunks:
        h.update(np.ascontiguousarray(c, dtype=np.float32).tobytes())
    return h.hexdigest()[:12]


def onnx_int8(fp32_path: Path, calibration: list[np.ndarray], cache: Path, float_modules: tuple[str, ...]) -> dict:
    """Static QDQ int8 quantization of ``fp32_path`` on ``calibration`` chunks, the ``float_modules`` nodes
    left float32. Returns ``{"path", "float_nodes", "calibration_chunks"}``."""
    # onnx and onnxruntime.quantization take half a second to import; only a bench with baselines needs them
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    path = cache / f"prefix-int8-qdq-{calibration_key(calibration)}.onnx"
    float_nodes = nodes_in_modules(onnx.load(str(fp32_path)), float_modules)
    if float_modules and not float_nodes:
        raise RuntimeError(f"{fp32_path}: no ONNX node belongs to float modules {list(float_modules)}")
    if not path.is_file():
        say(f"onnx: int8 static QDQ quantization on {len(calibration)} calibration chunks "
            f"({len(float_nodes)} frontend nodes kept float) ...")
        tmp = cache / f".{path.stem}.{os.getpid()}.onnx"
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            quantize_static(str(fp32_path), str(tmp), _Chunks(calibration), quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=float_nodes)
        os.replace(tmp, path)
    return {"path": path, "float_nodes": len(float_nodes), "calibration_chunks": len(calibration)}


def ort_runner(path: Path, threads: int = 1):
    """An ONNX Runtime session as a chunk runner (CPU provider, ``threads`` intra-op threads)."""
    import onnxruntime as ort  # heavy; only a bench with baselines needs it

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    return lambda chunk: session.run(None, {INPUT_NAME: chunk})[0]


def baseline_parity(run, prefix, suffix, pcms: list[np.ndarray], texts: list[str], tokenizer,
                    chunk: ChunkSpec) -> dict:
    """SNR, cosine and ΔWER of ``run`` (a chunk runner) against the float torch prefix, chunked as on a phone,
    through the float suffix: the numbers ``veil parity`` reports for an artifact."""
    refs = [run_chunked(torch_runner(prefix), p, chunk)[0] for p in pcms]
    tests = [run_chunked(run, p, chunk)[0] for p in pcms]
    emb = metrics.embedding_metrics(refs, tests)
    cloud = metrics.cloud_metrics(metrics.decode(suffix, refs), metrics.decode(suffix, tests), texts, tokenizer)
    return {"utterances": len(pcms), "snr_db": emb["snr_db"], "cosine_mean": emb["cosine_mean"],
            "cosine_min": emb["cosine_min"], "wer_float": cloud["wer_float"], "wer": cloud["wer_artifact"],
            "dwer": cloud["dwer"], "identical_share": cloud["identical_share"]}
