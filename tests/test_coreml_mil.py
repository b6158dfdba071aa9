"""The MIL reference interpreter (export/coreml_mil.py) against the truth available on Linux.

Op by op: one ML Program per dtype holds every op the interpreter implements, written with coremltools' MIL
builder and saved as a real ``.mlpackage`` (no graph passes, so each op stays as written); each output is
compared with torch on the same random inputs, in float32 and in float16. Whole programs: a small 2-block
model's prefix exported by every Core ML recipe, run on real corpus audio, against the float torch prefix
(fp32: ≥ 60 dB) and against the torch fp16 estimate. A conversion bug injected into a package (a weight scale
doubled in ``weight.bin``, a square weight stored transposed) is caught, and an op the interpreter does not
know fails at load in one line.
"""
from __future__ import annotations

import shutil
import struct
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import export
from export.coreml_mil import SUPPORTED_OPS, MILInterpreter, MILReferenceRunner, UnsupportedMILOp
from toolkit.chunking import pick_audio, run_chunked, torch_runner
from toolkit.exporting.manifest import FLOAT_MODULES, INPUT_NAME, OUTPUT_NAME
from toolkit.model.asr import ModelConfig, VeilModel, split
from toolkit.parity import coreml_offline
from toolkit.parity.metrics import embedding_metrics

RECIPES = [r.name for r in export.get_backend("coreml").RECIPES]
FP16 = 10  # MIL proto DataType FLOAT16


@pytest.fixture(scope="module", autouse=True)
def _single_thread(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("coreml-mil")


def _save(program, path: Path, target=None) -> Path:
    import coremltools as ct
    model = ct.convert(program, convert_to="mlprogram", pass_pipeline=ct.PassPipeline.EMPTY,
                       minimum_deployment_target=target or ct.target.iOS17, compute_precision=ct.precision.FLOAT32,
                       skip_model_load=True)
    model.save(str(path))
    return path


# ---- op by op against torch -----------------------------------------------------------------------------------

def _op_cases(dt):
    """{name: (MIL builder call, torch reference)} over inputs x, y (2, 8, 12) normal, p (2, 8, 12) positive,
    c1 (1, 8, 30) and c2 (1, 3, 10, 12)."""
    from coremltools.converters.mil import Builder as mb
    rng = np.random.default_rng(1)

    def r(*shape, scale=1.0):
        return (rng.standard_normal(shape) * scale).astype(dt)

    w, b, m, g, be = r(6, 12, scale=0.3), r(6, scale=0.1), r(12, 5, scale=0.3), r(12) + 1, r(12, scale=0.1)
    k1, k1b, k2, k2b = r(12, 2, 3, scale=0.3), r(12, scale=0.1), r(4, 3, 3, 3, scale=0.3), r(4, scale=0.1)
    kd = r(8, 1, 5, scale=0.3)
    t = torch.from_numpy
    c = lambda v: np.array(v, dtype=dt)  # noqa: E731 - a constant in the program's dtype
    other = np.float32 if dt == np.float16 else np.float16
    return {
        "add": (lambda x, y, p, c1, c2: mb.add(x=x, y=y), lambda x, y, p, c1, c2: x + y),
        "sub": (lambda x, y, p, c1, c2: mb.sub(x=x, y=y), lambda x, y, p, c1, c2: x - y),
        "mul": (lambda x, y, p, c1, c2: mb.mul(x=x, y=c(0.75)), lambda x, y, p, c1, c2: x * 0.75),
        "real_div": (lambda x, y, p, c1, c2: mb.real_div(x=x, y=p), lambda x, y, p, c1, c2: x / p),
        "pow": (lambda x, y, p, c1, c2: mb.pow(x=p, y=c(1.7)), lambda x, y, p, c1, c2: p ** 1.7),
        "maximum": (lambda x, y, p, c1, c2: mb.maximum(x=x, y=y), lambda x, y, p, c1, c2: torch.maximum(x, y)),
        "minimum": (lambda x, y, p, c1, c2: mb.minimum(x=x, y=y), lambda x, y, p, c1, c2: torch.minimum(x, y)),
        "abs": (lambda x, y, p, c1, c2: mb.abs(x=x), lambda x, y, p, c1, c2: x.abs()),
        "exp": (lambda x, y, p, c1, c2: mb.exp(x=x), lambda x, y, p, c1, c2: x.exp()),
        "log": (lambda x, y, p, c1, c2: mb.log(x=p), lambda x, y, p, c1, c2: p.log()),
        "rsqrt": (lambda x, y, p, c1, c2: mb.rsqrt(x=p), lambda x, y, p, c1, c2: p.rsqrt()),
        "sqrt": (lambda x, y, p, c1, c2: mb.sqrt(x=p), lambda x, y, p, c1, c2: p.sqrt()),
        "tanh": (lambda x, y, p, c1, c2: mb.tanh(x=x), lambda x, y, p, c1, c2: x.tanh()),
        "erf": (lambda x, y, p, c1, c2: mb.erf(x=x), lambda x, y, p, c1, c2: torch.erf(x)),
        "square": (lambda x, y, p, c1, c2: mb.square(x=x), lambda x, y, p, c1, c2: x * x),
        "relu": (lambda x, y, p, c1, c2: mb.relu(x=x), lambda x, y, p, c1, c2: F.relu(x)),
        "sigmoid": (lambda x, y, p, c1, c2: mb.sigmoid(x=x), lambda x, y, p, c1, c2: torch.sigmoid(x)),
        "silu": (lambda x, y, p, c1, c2: mb.silu(x=x), lambda x, y, p, c1, c2: F.silu(x)),
        "softmax": (lambda x, y, p, c1, c2: mb.softmax(x=x, axis=-1), lambda x, y, p, c1, c2: x.softmax(-1)),
        "gelu": (lambda x, y, p, c1, c2: mb.gelu(x=x, mode="EXACT"), lambda x, y, p, c1, c2: F.gelu(x)),
        "gelu_tanh": (lambda x, y, p, c1, c2: mb.gelu(x=x, mode="TANH_APPROXIMATION"),
                      lambda x, y, p, c1, c2: F.gelu(x, approximate="tanh")),
        "clip": (lambda x, y, p, c1, c2: mb.clip(x=x, alpha=c(-0.5), beta=c(0.5)),
                 lambda x, y, p, c1, c2: x.clamp(-0.5, 0.5)),
        "linear": (lambda x, y, p, c1, c2: mb.linear(x=x, weight=w, bias=b),
                   lambda x, y, p, c1, c2: F.linear(x, t(w), t(b))),
        "matmul": (lambda x, y, p, c1, c2: mb.matmul(x=x, y=m), lambda x, y, p, c1, c2: x @ t(m)),
        "matmul_transpose": (lambda x, y, p, c1, c2: mb.matmul(x=x, y=y, transpose_y=True),
                             lambda x, y, p, c1, c2: x @ y.transpose(1, 2)),
        "layer_norm": (lambda x, y, p, c1, c2: mb.layer_norm(x=x, axes=[-1], gamma=g, beta=be, epsilon=c(1e-5)),
                       lambda x, y, p, c1, c2: F.layer_norm(x, (12,), t(g), t(be), 1e-5)),
        "reduce_mean": (lambda x, y, p, c1, c2: mb.reduce_mean(x=x, axes=[1], keep_dims=True),
                        lambda x, y, p, c1, c2: x.mean(1, keepdim=True)),
        "reduce_sum": (lambda x, y, p, c1, c2: mb.reduce_sum(x=x, axes=[-1], keep_dims=False),
                       lambda x, y, p, c1, c2: x.sum(-1)),
        "reduce_max": (lambda x, y, p, c1, c2: mb.reduce_max(x=x, axes=[0, 2], keep_dims=False),
                       lambda x, y, p, c1, c2: x.amax((0, 2))),
        "reshape": (lambda x, y, p, c1, c2: mb.reshape(x=x, shape=[2, 96]), lambda x, y, p, c1, c2: x.reshape(2, 96)),
        "transpose": (lambda x, y, p, c1, c2: mb.transpose(x=x, perm=[2, 0, 1]),
                      lambda x, y, p, c1, c2: x.permute(2, 0, 1)),
        "expand_dims": (lambda x, y, p, c1, c2: mb.expand_dims(x=x, axes=[1]), lambda x, y, p, c1, c2: x[:, None]),
        "squeeze": (lambda x, y, p, c1, c2: mb.squeeze(x=mb.expand_dims(x=x, axes=[1]), axes=[1]),
                    lambda x, y, p, c1, c2: x),
        "slice_by_index": (lambda x, y, p, c1, c2: mb.slice_by_index(x=x, begin=[0, 1, 2], end=[2, 7, 11],
                                                                     stride=[1, 2, 3]),
                           lambda x, y, p, c1, c2: x[0:2, 1:7:2, 2:11:3]),
        "slice_masked": (lambda x, y, p, c1, c2: mb.slice_by_index(x=x, begin=[1, 0, 0], end=[0, 5, 0],
                                                                   end_mask=[True, False, True],
                                                                   squeeze_mask=[True, False, False]),
                         lambda x, y, p, c1, c2: x[1, 0:5, :]),
        "split": (lambda x, y, p, c1, c2: mb.split(x=x, split_sizes=[3, 5], axis=1)[1],
                  lambda x, y, p, c1, c2: x[:, 3:]),
        "concat": (lambda x, y, p, c1, c2: mb.concat(values=[x, y], axis=2), lambda x, y, p, c1, c2: torch.cat([x, y], 2)),
        "pad": (lambda x, y, p, c1, c2: mb.pad(x=x, pad=[0, 0, 1, 2, 3, 0], mode="constant", constant_val=c(0.5)),
                lambda x, y, p, c1, c2: F.pad(x, (3, 0, 1, 2), value=0.5)),
        "pad_reflect": (lambda x, y, p, c1, c2: mb.pad(x=x, pad=[2, 1], mode="reflect", constant_val=c(0)),
                        lambda x, y, p, c1, c2: F.pad(x, (2, 1), mode="reflect")),
        "identity": (lambda x, y, p, c1, c2: mb.identity(x=x), lambda x, y, p, c1, c2: x),
        "cast": (lambda x, y, p, c1, c2: mb.cast(x=mb.cast(x=x, dtype="fp16" if other == np.float16 else "fp32"),
                                                 dtype="fp32" if dt == np.float32 else "fp16"),
                 lambda x, y, p, c1, c2: x.to(torch.float16 if other == np.float16 else torch.float32).to(x.dtype)),
        "conv1d_grouped": (lambda x, y, p, c1, c2: mb.conv(x=c1, weight=k1, bias=k1b, strides=[2], pad_type="custom",
                                                           pad=[1, 2], dilations=[2], groups=4),
                           lambda x, y, p, c1, c2: F.conv1d(F.pad(c1, (1, 2)), t(k1), t(k1b), stride=2, dilation=2,
                                                            groups=4)),
        "conv1d_depthwise": (lambda x, y, p, c1, c2: mb.conv(x=c1, weight=kd, pad_type="same", groups=8),
                             lambda x, y, p, c1, c2: F.conv1d(c1, t(kd), padding=2, groups=8)),
        "conv2d": (lambda x, y, p, c1, c2: mb.conv(x=c2, weight=k2, bias=k2b, strides=[2, 2], pad_type="custom",
                                                   pad=[1, 1, 1, 1]),
                   lambda x, y, p, c1, c2: F.conv2d(c2, t(k2), t(k2b), stride=2, padding=1)),
        "conv2d_valid": (lambda x, y, p, c1, c2: mb.conv(x=c2, weight=k2, pad_type="valid", strides=[1, 2]),
                         lambda x, y, p, c1, c2: F.conv2d(c2, t(k2), stride=(1, 2))),
    }


def _inputs(dt):
    rng = np.random.default_rng(0)
    shapes = {"x": (2, 8, 12), "y": (2, 8, 12), "p": (2, 8, 12), "c1": (1, 8, 30), "c2": (1, 3, 10, 12)}
    out = {k: rng.standard_normal(s).astype(dt) for k, s in shapes.items()}
    out["p"] = rng.uniform(0.5, 2.0, shapes["p"]).astype(dt)
    return out, shapes


@pytest.fixture(scope="module", params=["fp32", "fp16"])
def op_program(request, work):
    """(dtype, package path, feeds) of one program holding every op case, outputs named ``out_<case>``."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types
    dt = np.float32 if request.param == "fp32" else np.float16
    feeds, shapes = _inputs(dt)
    cases = _op_cases(dt)
    builtin = types.fp32 if dt == np.float32 else types.fp16

    @mb.program(input_specs=[mb.TensorSpec(shape=s, dtype=builtin) for s in shapes.values()],
                opset_version=ct.target.iOS17)
    def prog(x, y, p, c1, c2):
        return tuple(mb.identity(x=build(x, y, p, c1, c2), name=f"out_{name}") for name, (build, _) in cases.items())

    path = _save(prog, work / f"ops-{request.param}.mlpackage")
    return dt, path, feeds


def test_every_op_matches_torch(op_program):
    dt, path, feeds = op_program
    interp = MILInterpreter(path)
    assert set(interp.op_types) <= SUPPORTED_OPS
    names = list(interp.inputs)
    out = interp(dict(zip(names, feeds.values())))
    args = [torch.from_numpy(v) for v in feeds.values()]
    bad = []
    for name, (_, reference) in _op_cases(dt).items():
        got = out[f"out_{name}"]
        want = reference(*args).numpy()
        assert got.dtype == dt, (name, got.dtype)
        assert got.shape == want.shape, (name, got.shape, want.shape)
        scale = max(float(np.max(np.abs(want.astype(np.float32)))), 1e-3)
        tol = 1e-5 if dt == np.float32 else 2e-3  # float32 round-off; 2 float16 ulps at the output's scale
        err = float(np.max(np.abs(got.astype(np.float32) - want.astype(np.float32)))) / scale
        if err > tol:
            bad.append(f"{name}: max error {err:.2e} of scale")
    assert not bad, bad


def test_fp16_program_computes_in_float16(work):
    """An fp16 op's output is float16: 300 * 300 overflows to inf where float32 would give 90000, and 1 + 1e-4
    rounds to 1."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.TensorSpec(shape=(2,), dtype=types.fp16)], opset_version=ct.target.iOS17)
    def prog(x):
        return mb.mul(x=x, y=x, name="square"), mb.add(x=x, y=np.float16(1e-4), name="plus")

    out = MILInterpreter(_save(prog, work / "overflow.mlpackage"))({"x": np.array([300, 1], np.float16)})
    assert out["square"].dtype == np.float16 and np.isinf(out["square"][0]) and out["square"][1] == 1
    assert out["plus"][1] == np.float16(1.0) and out["plus"][0] == np.float16(300)


def test_compressed_weights_dequantize_per_channel_per_block_and_by_lut(work):
    """constexpr_affine_dequantize (per channel), constexpr_blockwise_shift_scale (per block, with offset) and
    constexpr_lut_to_dense (one LUT per channel group) feed linears; the interpreter's outputs equal torch's
    linear on the weights dequantized by the documented formulas."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, (6, 8)).astype(np.int8)
    per_channel = rng.uniform(0.01, 0.05, 6).astype(np.float32)
    per_block = rng.uniform(0.01, 0.05, (6, 2)).astype(np.float32)   # blocks of 4 input columns
    offset = rng.integers(-3, 4, (6, 2)).astype(np.int8)
    lut = rng.standard_normal((2, 1, 16, 1)).astype(np.float32)        # rows 0-2 and 3-5: a LUT each
    idx = rng.integers(0, 16, (6, 8)).astype(types.np_uint4_dtype)

    @mb.program(input_specs=[mb.TensorSpec(shape=(3, 8), dtype=types.fp32)], opset_version=ct.target.iOS18)
    def prog(x):
        w1 = mb.constexpr_blockwise_shift_scale(data=q, scale=per_channel.reshape(6, 1), name="w_channel")
        w2 = mb.constexpr_blockwise_shift_scale(data=q, scale=per_block, offset=offset, name="w_block")
        w3 = mb.constexpr_lut_to_dense(indices=idx, lut=lut, name="w_lut")
        return (mb.linear(x=x, weight=w1, name="y_channel"), mb.linear(x=x, weight=w2, name="y_block"),
                mb.linear(x=x, weight=w3, name="y_lut"))

    path = _save(prog, work / "compressed.mlpackage", ct.target.iOS18)
    interp = MILInterpreter(path)
    assert interp.summary()["compressed_weights"] == 3
    x = rng.standard_normal((3, 8)).astype(np.float32)
    out = interp({"x": x})
    qf = q.astype(np.float32)
    expected = {"y_channel": qf * per_channel[:, None],
                "y_block": (qf - np.repeat(offset, 4, axis=1)) * np.repeat(per_block, 4, axis=1),
                "y_lut": lut[np.repeat([0, 1], 3)[:, None], 0, idx.astype(np.int64), 0]}
    for name, w in expected.items():
        want = F.linear(torch.from_numpy(x), torch.from_numpy(w.astype(np.float32))).numpy()
        np.testing.assert_allclose(out[name], want, rtol=1e-5, atol=1e-5, err_msg=name)


def test_an_unknown_op_fails_in_one_line(work):
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.mil import types

    @mb.program(input_specs=[mb.TensorSpec(shape=(4,), dtype=types.fp32)])
    def prog(x):
        return mb.cumsum(x=mb.relu(x=x), axis=0, name="out")

    with pytest.raises(UnsupportedMILOp) as info:
        MILInterpreter(_save(prog, work / "cumsum.mlpackage"))
    message = str(info.value)
    assert "'cumsum'" in message and "cumsum.mlpackage" in message and len(message.splitlines()) == 1


# ---- whole programs: a small model's prefix, every Core ML recipe -------------------------------------------------

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    model = VeilModel(ModelConfig(n_blocks=2, split_layer=2, d_model=64, n_heads=4, grl_layers=[2], n_speakers=4))
    with torch.no_grad():  # realistic standardization, so the frontend keeps its sub/div ops
        model.frontend.feat_mean.fill_(-6.0)
        model.frontend.feat_std.fill_(3.0)
    return model


@pytest.fixture(scope="module")
def prefix(model):
    return split(model)[0].eval()


@pytest.fixture(scope="module")
def audio(corpus, model) -> tuple[list[np.ndarray], object]:
    """Two real eval-speakers utterances (conftest's corpus) and the chunk geometry the phone cuts them with."""
    _, pcms = pick_audio(corpus, "eval-speakers", 2)
    return pcms, model.cfg.chunk


@pytest.fixture(scope="module")
def packages(work, prefix, audio):
    """{recipe: Artifact} of the small prefix, each Core ML recipe exported once."""
    chunk = audio[0][0][None, : prefix.chunk_samples].astype(np.float32)
    coreml = export.get_backend("coreml")
    return {r: coreml.export(prefix, (chunk,), r, work / f"prefix-{r}.mlpackage", float_modules=FLOAT_MODULES,
                             input_name=INPUT_NAME, output_name=OUTPUT_NAME) for r in RECIPES}


def _snr(prefix, runner, audio) -> float:
    pcms, spec = audio
    ref = [run_chunked(torch_runner(prefix), p, spec)[0] for p in pcms]
    out = [run_chunked(runner, p, spec)[0] for p in pcms]
    return float(embedding_metrics(ref, out)["snr_db"])


@pytest.mark.parametrize("recipe", RECIPES)
def test_whole_program_matches_torch(packages, prefix, audio, recipe):
    art = packages[recipe]
    runner = MILReferenceRunner(art)
    dtypes = runner.interpreter.dtypes()
    snr = _snr(prefix, runner, audio)
    weights = coreml_offline.package_weights(art.path)
    matching = coreml_offline.match_weights(prefix, weights)
    fp16 = export.get_backend("coreml").RECIPES.get(recipe).compute == "fp16"
    estimate = _snr(prefix, torch_runner(coreml_offline.estimate_prefix(prefix, weights, matching, fp16=fp16)), audio)
    if recipe == "fp32":
        assert set(dtypes) == {"fp32"} and snr >= 60.0, (dtypes, snr)
    else:  # the encoder in float16, the frontend in float32; within 3 dB of the torch estimate
        assert dtypes["fp16"] > dtypes["fp32"] > 0, dtypes
        assert abs(snr - estimate) < 3.0, (snr, estimate)
        assert 10.0 < snr < 80.0, snr


# ---- injected conversion bugs are caught --------------------------------------------------------------------------

def _blob_value(package: Path, op_type: str, argument: str, pick) -> tuple[Path, int, int, str, list[int]]:
    """(weight.bin, data offset, bytes, dtype name, shape) of the blob behind ``argument`` of the first ``op_type`` op
    whose const passes ``pick(shape)``."""
    import coremltools as ct
    spec = ct.utils.load_spec(str(package))
    fn = spec.mlProgram.functions["main"]
    ops = fn.block_specializations[fn.opset].operations
    consts = {o.outputs[0].name: o for o in ops if o.type == "const"}
    for op in ops:
        if op.type != op_type:
            continue
        if argument in op.attributes:  # a constexpr op holds its data as attributes
            value = op.attributes[argument]
        elif argument in op.inputs and op.inputs[argument].arguments[0].name in consts:
            value = consts[op.inputs[argument].arguments[0].name].attributes["val"]
        else:
            continue
        shape = [int(d.constant.size) for d in value.type.tensorType.dimensions]
        if value.WhichOneof("value") == "blobFileValue" and pick(shape):
            blob = package / "Data" / "com.apple.CoreML" / "weights" / "weight.bin"
            sentinel, _, size, offset = struct.unpack_from("<IIQQ", blob.read_bytes(), value.blobFileValue.offset)
            assert sentinel == 0xDEADBEEF
            return blob, offset, size, "fp16" if value.type.tensorType.dataType == FP16 else "fp32", shape
    raise AssertionError(f"no {op_type} with a blob {argument} in {package}")


def _edit_blob(blob: Path, offset: int, size: int, dtype: str, edit) -> None:
    data = bytearray(blob.read_bytes())
    np_dtype = np.float16 if dtype == "fp16" else np.float32
    values = np.frombuffer(bytes(data[offset:offset + size]), np_dtype).copy()
    data[offset:offset + size] = edit(values).astype(np_dtype).tobytes()
    blob.write_bytes(bytes(data))


def test_a_wrong_weight_scale_is_caught(packages, prefix, audio, work):
    art = packages["int8-weights"]
    bad = work / "int8-wrong-scale.mlpackage"
    shutil.copytree(art.path, bad)
    blob, offset, size, dtype, _ = _blob_value(bad, "constexpr_affine_dequantize", "scale", lambda s: True)
    _edit_blob(blob, offset, size, dtype, lambda v: v * 2)  # e.g. a scale for 7 bits stored for 8
    good = _snr(prefix, MILReferenceRunner(art), audio)
    wrong = _snr(prefix, MILReferenceRunner(replace(art, path=bad)), audio)
    assert good > 15.0 > wrong, (good, wrong)


def test_a_transposed_weight_is_caught(packages, prefix, audio, work):
    art = packages["fp32"]
    bad = work / "fp32-transposed.mlpackage"
    shutil.copytree(art.path, bad)
    blob, offset, size, dtype, shape = _blob_value(bad, "linear", "weight", lambda s: len(s) == 2 and s[0] == s[1])
    _edit_blob(blob, offset, size, dtype, lambda v: v.reshape(shape).T.copy())
    wrong = _snr(prefix, MILReferenceRunner(replace(art, path=bad)), audio)
    assert wrong < 40.0, wrong


def test_executorch_coreml_delegate_payload_runs(work, prefix, audio):
    """The .mlpackage inside an ExecuTorch Core ML delegate (coreml-ane: the encoder in fp16, the frontend left
    to XNNPACK) runs in the interpreter on the torch frontend's features and reproduces the torch prefix."""
    from export.executorch_coreml import coreml_payloads
    pcms, _ = audio
    x = torch.from_numpy(pcms[0][None, : prefix.chunk_samples].astype(np.float32))
    export.get_backend("executorch").export(prefix, (x,), "coreml-ane", work / "ane.pte", float_modules=FLOAT_MODULES,
                                            input_name=INPUT_NAME, output_name=OUTPUT_NAME)
    (package,) = coreml_payloads(work / "ane.pte", work / "ane-payload")
    interp = MILInterpreter(package)
    assert set(interp.dtypes()) == {"fp16"}  # the delegate computes in float16 only
    with torch.no_grad():
        features, want = prefix.frontend(x).numpy(), prefix(x).numpy()
    (name,) = interp.inputs
    got = next(iter(interp({name: features}).values())).astype(np.float32).reshape(want.shape)
    assert float(embedding_metrics([want[0]], [got[0]])["snr_db"]) > 35.0
