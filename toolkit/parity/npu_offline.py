"""Parity of an ahead-of-time NPU artifact where no NPU is attached: what can be checked, each number labelled.

The compiled ``.tflite`` runs only on its phone (its DISPATCH_OP holds the vendor's binary), so parity reports
``needs-device`` and checks instead:

- **placement**, as the compiler reported it at export (ops on the NPU, ops left to the CPU, partitions);
- **the graph the compiler was given**: the artifact's source recipe (``fp32`` or ``int8-static``) re-exported
  from the checkpoint with the export's calibration, compared byte for byte with the source the manifest
  records, and run in LiteRT on this CPU on the parity audio: everything but the NPU's arithmetic. Ops the
  compiler left outside the NPU run exactly so on the phone's CPU;
- **an fp16 estimate** of the NPU's arithmetic: the torch ``Prefix`` computing in float16 throughout, the
  log-mel frontend included, because the HTP computes the source graph's float ops in fp16. Int8 ops of an
  ``npu-qualcomm-int8`` artifact are not modelled by it (the source graph on the CPU holds them).
"""
from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import numpy as np
import torch

import export as backends
from toolkit.chunking import ChunkSpec, run_chunked, torch_runner
from toolkit.exporting.calibration import manifest_calibration
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME


class Float16Everywhere(torch.nn.Module):
    """A :class:`Prefix` computing in float16 from the PCM on, frontend included, as an NPU without fp32
    arithmetic computes the float graph; the embeddings come back as float32. ``prefix`` is copied."""

    def __init__(self, prefix: torch.nn.Module):
        super().__init__()
        self.prefix = copy.deepcopy(prefix).half()

    def forward(self, pcm: torch.Tensor) -> torch.Tensor:
        return self.prefix(pcm.half()).float()


def source_graph(prefix: torch.nn.Module, npu: dict, chunk: ChunkSpec, calibration_info: dict | None,
                 out_dir: Path) -> backends.Artifact:
    """The artifact's source recipe re-exported from ``prefix`` exactly as ``export-prefix`` exports it."""
    litert = backends.get_backend("litert")
    recipe = npu["source_recipe"]
    calibration = []
    if litert.RECIPES.get(recipe).needs_calibration:
        calibration = manifest_calibration(calibration_info, chunk.chunk_samples)
    example = np.zeros((1, chunk.chunk_samples), np.float32)
    return litert.export(prefix, (calibration[0] if calibration else example,), recipe,
                         out_dir / f"source-{recipe}{litert.SUFFIX}", calibration=calibration,
                         float_modules=FLOAT_MODULES, input_name=INPUT_NAME, output_name=OUTPUT_NAME)


def checks(entry: dict, art: backends.Artifact, prefix: torch.nn.Module, pcms: list[np.ndarray], chunk: ChunkSpec,
           manifest, numbers) -> tuple[dict, torch.nn.Module]:
    """The offline checks of one NPU artifact; ``numbers(outputs)`` turns per-utterance embeddings into parity's
    numeric and cloud numbers. Returns them and the fp16 estimate module (for the stress audio)."""
    npu = entry["npu"]
    with tempfile.TemporaryDirectory(prefix="veil-npu-source-") as tmp:
        try:
            source = source_graph(prefix, npu, chunk, manifest.calibration, Path(tmp))
        except backends.ExportError as exc:
            source_check = {"status": "failed", "detail": str(exc)}
        else:
            runner = backends.load(source)
            outs = [run_chunked(runner, p, chunk)[0] for p in pcms]
            source_check = {"label": "source graph on this CPU (LiteRT)", "recipe": npu["source_recipe"],
                            "same_bytes_as_compiled_source": source.sha256() == npu.get("source_sha256"),
                            "how": "the graph given to the NPU compiler, re-exported from the checkpoint and run "
                                   "in ai_edge_litert on this CPU: what the phone's CPU would compute of it; the "
                                   "NPU computes its float ops in fp16 instead", **numbers(outs)}
    estimate = Float16Everywhere(prefix).eval()
    outs = [run_chunked(torch_runner(estimate), p, chunk)[0] for p in pcms]
    fp16 = {"label": "estimate", "how": "the torch Prefix in float16 throughout, the log-mel frontend included (the "
                                        "NPU has no fp32 arithmetic); not the vendor's kernels: an estimate, never "
                                        "a pass", **numbers(outs)}
    return {"checked_on_linux": {"placement": npu["placement"], "soc": npu["soc"], "sdk": npu["sdk"],
                                 "source_graph_on_cpu": source_check, "fp16_estimate": fp16}}, estimate
