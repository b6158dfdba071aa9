"""What an adapter's export writes into the manifest: the ``input``/``output`` sections of the prefix for a cut
and the ``adapter`` section (how to rebuild the model, its phone input, its cut points, and every op left out of
the XNNPACK graph with the reason). Veil's own adapter keeps the manifest exactly as before
(:func:`toolkit.exporting.manifest.io_description`, no ``adapter`` section)."""
from __future__ import annotations

import datetime

from toolkit import __version__
from toolkit.adapters.base import ModelAdapter
from toolkit.exporting.manifest import MANIFEST_FORMAT, ExportManifest, io_description, io_sections, write_bottleneck

# why ExecuTorch 1.5.1's XnnpackPartitioner leaves an op out of the XNNPACK graph (measured on these adapters)
_NOT_DECOMPOSED = ("the 8da4w recipe's program is lowered without export/xnnpack_decompositions.py (torchao's tensor "
                   "subclasses would be decomposed into wrong numbers), so ")
NOT_DELEGATED_WHY = {  # op names as ExecuTorch's delegation summary writes them
    "aten_native_layer_norm_default": _NOT_DECOMPOSED + "layer norm, which XNNPACK (ExecuTorch 1.5.1) lacks, runs "
                                      "as a portable float32 kernel",
    "aten_expand_copy_default": _NOT_DECOMPOSED + "the expands of 3-D/4-D matmuls stay portable float32 copies",
    "aten_unsqueeze_copy_default": _NOT_DECOMPOSED + "unsqueeze stays a portable float32 copy",
    "aten_squeeze_copy_dims": _NOT_DECOMPOSED + "squeeze stays a portable float32 copy",
    "aten_mean_dim": "XNNPACK's mean is 4-D global average pooling only; the frontend's per-feature mean runs as a "
                     "portable float32 kernel (the frontend is float32 in every recipe)",
    "aten_sum_dim_int_list": "no XNNPACK sum; the frontend's per-feature variance runs as a portable float32 kernel",
    "aten_full_default": "a constant tensor (the frontend's zero padding) made by a portable kernel",
    "aten_amax_default": "no XNNPACK max-reduction; the log-mel frontend's dynamic-range clamp runs as a portable "
                         "float32 kernel (the frontend is float32 in every recipe)",
    "aten_log_default": "no XNNPACK log; part of the float32 log-mel frontend",
    "aten_gelu_default": "no int8 GELU in XNNPACK (ExecuTorch 1.5.1); runs as a portable float32 kernel",
    "dim_order_ops__to_dim_order_copy_default": "a memory-layout copy ExecuTorch inserts between portable kernels",
}


def io_for(adapter: ModelAdapter, k: int) -> dict:
    if adapter.name == "veil":
        return io_description(adapter.model.cfg, k)
    return io_sections(adapter.chunk, adapter.output_dim(k), k)


def adapter_section(adapter: ModelAdapter, artifacts: list[dict]) -> dict:
    """The manifest's ``adapter`` section; ``not_delegated`` names every op an ExecuTorch artifact runs outside
    XNNPACK, per artifact, with the reason (never a silent float island)."""
    left_out = {}
    for entry in artifacts:
        ops = (entry.get("delegation") or {}).get("not_delegated") or {}
        if ops:
            left_out[entry["file"]] = {op: {"count": n, "why": adapter.not_delegated_why.get(
                op, NOT_DELEGATED_WHY.get(op, "no XNNPACK lowering for this op in ExecuTorch 1.5.1; runs as a "
                                                "portable float32 kernel"))} for op, n in ops.items()}
    return {**adapter.source(), "phone_input": adapter.phone_input, "cut_points": adapter.cut_points(),
            "float_modules": list(adapter.float_modules), "has_suffix": adapter.suffix(adapter.default_cut) is not None,
            "not_delegated": left_out}


def new_manifest(adapter: ModelAdapter, export_dir, *, split_layer: int, recipes: dict, calibration: dict | None,
                 libraries: dict, artifacts: list[dict], tmp):
    """The export's :class:`ExportManifest`: Veil's exactly as before, any other adapter's with the same fields
    (``checkpoint`` is the weights file, or the weights' own sha256 for a preset) plus the ``adapter`` section."""

    if adapter.name == "veil":
        return ExportManifest.new(export_dir, checkpoint=adapter.checkpoint, config=adapter.config,
                                  cfg=adapter.model.cfg, split_layer=split_layer, recipes=recipes,
                                  calibration=calibration, libraries=libraries, artifacts=artifacts,
                                  bottleneck=write_bottleneck(adapter.model, split_layer, tmp))
    source = adapter.source()
    data = {
        "format": MANIFEST_FORMAT,
        "created_by": f"veil {__version__} export-prefix --adapter {adapter.name}",
        "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "checkpoint": {"path": source.get("weights") or "", "sha256": adapter.identity_sha256(),
                       "config_sha256": None, "config": source},
        "split_layer": split_layer,
        "trained_chunked_through": None,  # a foreign model was trained on whole utterances; the phone runs chunks
        "chunked_beyond_training": True,
        "float_modules": list(adapter.float_modules),
        "recipe": dict(recipes),
        **io_for(adapter, split_layer),
        "calibration": calibration,
        "libraries": libraries,
        "artifacts": artifacts,
        "adapter": adapter_section(adapter, artifacts),
    }
    return ExportManifest(data, export_dir)
