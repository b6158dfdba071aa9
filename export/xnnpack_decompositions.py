"""Export-time rewrites that keep the whole prefix inside one XNNPACK graph (ExecuTorch 1.5).

ExecuTorch's ``XnnpackPartitioner`` cuts the graph wherever an op has no XNNPACK lowering; every cut is a
delegate boundary with a portable-kernel op between two XNNPACK subgraphs (and, in an int8 graph, a
dequantize/quantize round trip around it). For Veil's prefix the cuts were (ExecuTorch 1.5.1, int8-static,
split-4 model: 38 subgraphs):

    native_layer_norm  x24   XNNPACK in ExecuTorch 1.5 has no layer norm
    expand_copy        x18   from ``matmul`` on 3-D/4-D operands (the attention matmuls, the mel matmul)
    squeeze_copy.dims  x12   from unbinding q, k, v; the partitioner has no squeeze config
    mean.dim           x2    the per-chunk instance norm; XNNPACK's mean is 4-D global average pooling only
    unsqueeze_copy     x2    the frontend's conv input and the subsampling's channel axis (not trailing)

:func:`decomposition_table` maps each of them onto ops XNNPACK lowers, computing the same function in
float32 (same formulas, same order of operations up to summation order):

- ``layer_norm`` -> mean over the last axis, subtract, square, mean, add eps, rsqrt, multiply, affine: the
  two-pass, biased-variance formula of ``torch.nn.LayerNorm``;
- ``mean.dim`` over any axes -> a (1, rows, n, 1) view and XNNPACK's global average pooling over the
  [2, 3] axes (moving the reduced axes last with a permute when they are not);
- ``expand`` that adds no elements, ``squeeze``, ``unsqueeze`` -> ``view`` (a static reshape).

These are decompositions (``ExportedProgram.run_decompositions``) applied to the program that is about to be
lowered, after PT2E quantization (the fp32, int8-dynamic and int8-static recipes; not 8da4w, whose torchao
tensor subclasses the table would decompose into wrong numbers): the quantizer annotated the model as written (layer norms stay float32, as
before), and the model's definition is untouched. Everything else goes through the default (core ATen)
decompositions, as ``to_edge`` would do.
"""
from __future__ import annotations

import math

import torch

aten = torch.ops.aten


def _mean_over(x: torch.Tensor, dims, keepdim: bool) -> torch.Tensor:
    """``x.mean(dims, keepdim)`` as XNNPACK's one mean: a global average pooling of a 4-D tensor over its
    [2, 3] axes. The reduced axes are moved last (a permute, only when they are not), flattened to one axis
    of length n, and the rest to rows: (1, rows, n, 1) averaged over [2, 3]. XNNPACK runs it in NHWC, so
    the delegate adds one layout transpose of the (rows, n) activations around it; no constant, no
    float island."""
    shape = list(x.shape)
    rank = len(shape)
    dims = sorted({d % rank for d in (dims if isinstance(dims, (list, tuple)) else [dims])})
    kept = [d for d in range(rank) if d not in dims]
    if dims != list(range(rank - len(dims), rank)):  # reduced axes last, the others in their order
        x = aten.permute.default(x, kept + dims)
    rows, n = math.prod(shape[d] for d in kept), math.prod(shape[d] for d in dims)
    mean = aten.mean.dim(aten.view.default(x, [1, rows, n, 1]), [2, 3], True)
    out = [1 if d in dims else shape[d] for d in range(rank)] if keepdim else [shape[d] for d in kept]
    return aten.view.default(mean, out)


def mean_dim(x, dims, keepdim=False, *, dtype=None):
    """``aten.mean.dim``; the XNNPACK-native case (4-D, [2, 3], keepdim) is left as it is."""
    rank = x.dim()
    if dtype is not None or dims is None or len(dims) == 0:
        return NotImplemented
    if rank == 4 and keepdim and sorted(d % rank for d in dims) == [2, 3]:
        return NotImplemented
    return _mean_over(x, dims, keepdim)


def _layer_norm_parts(x, normalized_shape, weight, bias, eps):
    axes = list(range(x.dim() - len(normalized_shape), x.dim()))
    mean = _mean_over(x, axes, True)
    centered = aten.sub.Tensor(x, mean)
    var = _mean_over(aten.mul.Tensor(centered, centered), axes, True)
    rstd = aten.rsqrt.default(aten.add.Tensor(var, eps))
    out = aten.mul.Tensor(centered, rstd)
    if weight is not None:
        out = aten.mul.Tensor(out, weight)
    if bias is not None:
        out = aten.add.Tensor(out, bias)
    return out, mean, rstd


def layer_norm(x, normalized_shape, weight=None, bias=None, eps=1e-5, cudnn_enable=True):
    """``aten.layer_norm``: (x - mean) * rsqrt(biased var + eps) * weight + bias over the normalized axes."""
    return _layer_norm_parts(x, normalized_shape, weight, bias, eps)[0]


def native_layer_norm(x, normalized_shape, weight, bias, eps):
    """``aten.native_layer_norm``: (out, mean, rstd), mean and rstd with the normalized axes kept as 1."""
    return _layer_norm_parts(x, normalized_shape, weight, bias, eps)


def expand(x, size, *, implicit=False):
    """``expand`` that only adds or keeps size-1 axes (no element is repeated) is a reshape."""
    out = [s if s != -1 else x.shape[i - (len(size) - x.dim())] for i, s in enumerate(size)]
    if math.prod(out) != x.numel():
        return NotImplemented
    return aten.view.default(x, out)


def squeeze(x, dims=None):
    """``squeeze`` (all size-1 axes, one axis, or a list of axes) is a reshape."""
    rank = max(x.dim(), 1)
    if dims is None:
        dims = range(x.dim())
    elif isinstance(dims, int):
        dims = [dims]
    drop = {d % rank for d in dims if x.shape[d % rank] == 1}
    return aten.view.default(x, [s for i, s in enumerate(x.shape) if i not in drop])


def unsqueeze(x, dim):
    """``unsqueeze`` is a reshape."""
    shape = list(x.shape)
    shape.insert(dim % (len(shape) + 1), 1)
    return aten.view.default(x, shape)


def decomposition_table() -> dict:
    """The default (core ATen) decompositions, as ``to_edge`` applies them, plus the rewrites above (the
    expands to rewrite appear only once ``matmul`` is decomposed)."""
    table = torch.export.default_decompositions()
    table[aten.layer_norm.default] = layer_norm
    table[aten.native_layer_norm.default] = native_layer_norm
    table[aten.mean.dim] = mean_dim
    table[aten.expand.default] = expand
    for op in (aten.squeeze.default, aten.squeeze.dim, aten.squeeze.dims):
        table[op] = squeeze
    table[aten.unsqueeze.default] = unsqueeze
    return table


def decompose_for_xnnpack(program: torch.export.ExportedProgram) -> torch.export.ExportedProgram:
    """``program`` with layer norms, non-pooling means and shape-only ops in forms XNNPACK lowers."""
    return program.run_decompositions(decomposition_table())
