"""Pad, Resize (nearest) and ConvTranspose: the golden model against onnxruntime on randomized
one-op models (QDQ and 8-bit forms), the frontend's acceptance rules and refusals, Pad folding,
and the stride-phase decomposition the compiler runs ConvTranspose as."""

from __future__ import annotations

import collections
from fractions import Fraction

import hypothesis
import hypothesis.strategies as st
import numpy as np
import onnx
import onnx.helper as oh
import onnx.numpy_helper
import pytest

from codesign import ir, ortwitness, reference
from codesign.compiler import compile_graph
from codesign.driver import run_isasim
from codesign.errors import InputError, TilingError
from codesign.frontend import load_model
from codesign.isa import HwConfig
from codesign.resample import conv_transpose_phases, nearest_indices

from .resamplegen import resample_graph, resample_specs

_SETTINGS = dict(deadline=None, derandomize=True, database=None,
                 suppress_health_check=[hypothesis.HealthCheck.too_slow])
_F32, _U8, _I8 = onnx.TensorProto.FLOAT, onnx.TensorProto.UINT8, onnx.TensorProto.INT8


def _init(name: str, value) -> onnx.TensorProto:
    return onnx.numpy_helper.from_array(np.asarray(value), name)


def _model(nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto], x_shape, y_shape,
           y_type: int, opset: int = 19) -> bytes:
    """``x`` (float) → the nodes → ``y`` (``y_type``, the 8-bit Q output)."""
    graph = oh.make_graph(nodes, "g", [oh.make_tensor_value_info("x", _F32, list(x_shape))],
                          [oh.make_tensor_value_info("y", y_type, list(y_shape))], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _qparams(rng, signed: bool, prefix: str = "x") -> tuple[list, float, int]:
    scale = np.float32(rng.uniform(0.01, 0.05))
    zp = int(rng.integers(-30, 30)) if signed else int(rng.integers(0, 80))
    dtype = np.int8 if signed else np.uint8
    return [_init(f"{prefix}_s", scale), _init(f"{prefix}_z", dtype(zp))], float(scale), zp


def _run_both(model: bytes, x_shape, scale: float, seed: int, count: int = 2):
    """(golden, onnxruntime) integer outputs over ``count`` random inputs that also saturate."""
    graph = load_model(model)
    session = ortwitness.create_session(model)
    rng = np.random.default_rng(seed)
    pairs = []
    for _ in range(count):
        x = (rng.uniform(-1, 1, (1, *x_shape[1:])) * 160 * scale).astype(np.float32)
        want = session.run(None, {"x": x})[0]
        out = graph.outputs[0]
        values = reference.run(graph, [graph.inputs[0].quantize(x)])
        pairs.append((out.from_hwc(values[out.tensor.name]), want))
    return graph, pairs


def _q_dq(signed: bool) -> list[onnx.NodeProto]:
    return [oh.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
            oh.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xf"])]


# ------------------------------------------------------------------------------------------------
# Pad

@st.composite
def _pad_cases(draw):
    return dict(c=draw(st.integers(1, 5)), h=draw(st.integers(1, 6)), w=draw(st.integers(1, 6)),
                pads=[draw(st.integers(0, 3)) for _ in range(4)], signed=draw(st.booleans()),
                value=draw(st.sampled_from([0.0, 0.3, -0.2, 5.0, -9.0])),
                qdq=draw(st.booleans()), opset10=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 31)))


@hypothesis.settings(max_examples=30, **_SETTINGS)
@hypothesis.given(_pad_cases())
def test_pad_golden_equals_onnxruntime(case):
    """Constant Pad on H and W, QDQ (float value, quantized by the Q after it) and on the 8-bit
    tensor (the value an 8-bit constant), with pads/constant_value as inputs (opset 19) or, on
    float tensors, as attributes (opset 10), bit-exact with onnxruntime."""
    rng = np.random.default_rng(case["seed"])
    inits, scale, zp = _qparams(rng, case["signed"])
    top, left, bottom, right = case["pads"]
    pads = _init("pads", np.array([0, 0, top, left, 0, 0, bottom, right], np.int64))
    x_shape = (1, case["c"], case["h"], case["w"])
    y_shape = (1, case["c"], case["h"] + top + bottom, case["w"] + left + right)
    dtype = np.int8 if case["signed"] else np.uint8
    info = np.iinfo(dtype)
    value = (case["value"] if case["qdq"]
             else int(np.clip(round(case["value"] / scale) + zp, info.min, info.max)))
    opset10 = case["opset10"] and case["qdq"]   # Pad-2 is for float tensors only
    x_name = "xf" if case["qdq"] else "xq"
    out = "p" if case["qdq"] else "y"
    if opset10:
        pad = oh.make_node("Pad", [x_name], [out], mode="constant", value=float(value),
                           pads=[int(v) for v in onnx.numpy_helper.to_array(pads)])
    else:
        pad = oh.make_node("Pad", [x_name, "pads", "cv"], [out], mode="constant")
        inits += [pads, _init("cv", np.float32(value) if case["qdq"] else dtype(value))]
    if case["qdq"]:
        nodes = _q_dq(case["signed"]) + [
            pad, oh.make_node("QuantizeLinear", ["p", "x_s", "x_z"], ["y"])]
    else:
        nodes = [oh.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]), pad]
    model = _model(nodes, inits, x_shape, y_shape, _I8 if case["signed"] else _U8,
                   10 if opset10 else 19)
    graph, pairs = _run_both(model, x_shape, scale, case["seed"])
    # No padding at all is the input itself, no op.
    assert [op.kind for op in graph.ops] == [ir.OpKind.PAD] * (max(case["pads"]) > 0)
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


def _pad_conv_model(value: float, pool: bool) -> bytes:
    """Q → DQ → Pad(value) → Q → DQ → Conv 3×3 (or MaxPool 3×3) → Q, uint8 with zero point 10."""
    rng = np.random.default_rng(5)
    inits = [_init("x_s", np.float32(0.02)), _init("x_z", np.uint8(10)),
             _init("pads", np.array([0, 0, 1, 2, 0, 0, 2, 0], np.int64)),
             _init("cv", np.float32(value)), _init("y_s", np.float32(0.05)),
             _init("y_z", np.uint8(3))]
    nodes = _q_dq(False) + [
        oh.make_node("Pad", ["xf", "pads", "cv"], ["p"]),
        oh.make_node("QuantizeLinear", ["p", "x_s", "x_z"], ["pq"]),
        oh.make_node("DequantizeLinear", ["pq", "x_s", "x_z"], ["pf"])]
    if pool:
        nodes += [oh.make_node("MaxPool", ["pf"], ["c"], kernel_shape=[3, 3]),
                  oh.make_node("QuantizeLinear", ["c", "x_s", "x_z"], ["y"])]
        return _model(nodes, inits, (1, 3, 5, 5), (1, 3, 6, 5), _U8)
    inits += [_init("w", rng.integers(-100, 100, (4, 3, 3, 3)).astype(np.int8)),
              _init("w_s", np.float32(0.01)), _init("w_z", np.int8(0))]
    nodes += [oh.make_node("DequantizeLinear", ["w", "w_s", "w_z"], ["wf"]),
              oh.make_node("Conv", ["pf", "wf"], ["c"], pads=[1, 0, 0, 1]),
              oh.make_node("QuantizeLinear", ["c", "y_s", "y_z"], ["y"])]
    return _model(nodes, inits, (1, 3, 5, 5), (1, 4, 7, 6), _U8)


@pytest.mark.parametrize(("value", "pool", "folded"), [
    (0.0, False, True),     # the input zero point: folds into the Conv's pads
    (0.1, False, False),    # another value: a Pad on the NPU, then the Conv
    (-0.2, True, True),     # quantizes to 0, uint8's least value: folds into the MaxPool
    (0.0, True, False),     # the zero point 10 could win the max: stays
])
def test_pad_folds_only_where_exact(value, pool, folded):
    model = _pad_conv_model(value, pool)
    graph, pairs = _run_both(model, (1, 3, 5, 5), 0.02, seed=3, count=3)
    kinds = [op.kind for op in graph.ops]
    assert (ir.OpKind.PAD not in kinds) == folded, kinds
    if folded:
        op = graph.ops[0]
        assert op.pads == ((1, 2, 2, 0) if pool else (2, 2, 2, 1))
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# Resize

_TRANSFORMS = ["half_pixel", "pytorch_half_pixel", "half_pixel_symmetric", "align_corners",
               "asymmetric"]
_NEAREST = ["round_prefer_floor", "round_prefer_ceil", "floor", "ceil"]


@st.composite
def _resize_cases(draw):
    return dict(c=draw(st.integers(1, 3)), h=draw(st.integers(1, 5)), w=draw(st.integers(1, 5)),
                fh=draw(st.integers(1, 4)), fw=draw(st.integers(1, 4)),
                transform=draw(st.sampled_from(_TRANSFORMS)),
                nearest=draw(st.sampled_from(_NEAREST)), sizes=draw(st.booleans()),
                signed=draw(st.booleans()), qdq=draw(st.booleans()),
                seed=draw(st.integers(0, 2 ** 31)))


_RESIZE_SEEN: collections.Counter[str] = collections.Counter()


@hypothesis.settings(max_examples=60, **_SETTINGS)
@hypothesis.given(_resize_cases())
def test_resize_accepts_exactly_the_replications(case):
    """Every coordinate transformation × nearest mode × integer factors: where the frontend
    accepts the Resize, the golden model equals onnxruntime bit for bit; where it refuses, one
    line says why, and onnxruntime's result is indeed not a replication of each input pixel."""
    rng = np.random.default_rng(case["seed"])
    inits, scale, _ = _qparams(rng, case["signed"])
    x_shape = (1, case["c"], case["h"], case["w"])
    y_shape = (1, case["c"], case["h"] * case["fh"], case["w"] * case["fw"])
    if case["sizes"]:
        inits += [_init("sizes", np.array(y_shape, np.int64))]
        inputs = ["", "", "sizes"]
    else:
        inits += [_init("scales", np.array([1, 1, case["fh"], case["fw"]], np.float32))]
        inputs = ["", "scales"]
    attrs = dict(mode="nearest", coordinate_transformation_mode=case["transform"],
                 nearest_mode=case["nearest"])
    if case["qdq"]:
        nodes = _q_dq(case["signed"]) + [
            oh.make_node("Resize", ["xf", *inputs], ["r"], **attrs),
            oh.make_node("QuantizeLinear", ["r", "x_s", "x_z"], ["y"])]
    else:
        nodes = [oh.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"]),
                 oh.make_node("Resize", ["xq", *inputs], ["y"], **attrs)]
    model = _model(nodes, inits, x_shape, y_shape, _I8 if case["signed"] else _U8)
    try:
        graph = load_model(model)
    except InputError as e:
        assert "\n" not in str(e) and "Resize" in str(e)
        session = ortwitness.create_session(model)
        # Distinct pixels: a replication would show each one as an fh × fw block.
        zp = int(onnx.numpy_helper.to_array(inits[1]))
        base = np.arange(np.prod(x_shape)).reshape(x_shape) - (128 if case["signed"] else 0)
        x = ((base - zp) * np.float32(scale)).astype(np.float32)
        want = session.run(None, {"x": x})[0].astype(np.int64)
        replicated = np.repeat(np.repeat(base, case["fh"], axis=2), case["fw"], axis=3)
        assert not np.array_equal(want, replicated), str(e)
        _RESIZE_SEEN["refused"] += 1
        return
    _RESIZE_SEEN["accepted"] += 1
    identity = case["fh"] == case["fw"] == 1
    assert [op.kind for op in graph.ops] == [ir.OpKind.RESIZE] * (not identity)
    _, pairs = _run_both(model, x_shape, scale, case["seed"])
    for got, want in pairs:
        np.testing.assert_array_equal(got, want)


def test_resize_both_outcomes_were_drawn():
    """The random cases above exercised acceptance and refusal (runs after them)."""
    assert _RESIZE_SEEN["accepted"] >= 5 and _RESIZE_SEEN["refused"] >= 5, _RESIZE_SEEN


def test_nearest_indices_follow_onnx():
    # asymmetric/floor: o // f for any f; asymmetric/round_prefer_floor only for f ≤ 2.
    assert nearest_indices(3, 9, Fraction(3), "asymmetric", "floor").tolist() == [
        0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert nearest_indices(2, 6, Fraction(3), "asymmetric", "round_prefer_floor").tolist() == [
        0, 0, 1, 1, 1, 1]
    # half_pixel never ties for integer factors: round to nearest is o // f.
    assert nearest_indices(2, 8, Fraction(4), "half_pixel", "round_prefer_ceil").tolist() == [
        0, 0, 0, 0, 1, 1, 1, 1]
    assert nearest_indices(2, 4, Fraction(2), "bogus", "floor") is None


# ------------------------------------------------------------------------------------------------
# ConvTranspose

@st.composite
def _convt_cases(draw):
    k = draw(st.integers(1, 4))
    s = draw(st.integers(1, 3))
    return dict(cin=draw(st.integers(1, 6)), cout=draw(st.integers(1, 6)),
                h=draw(st.integers(1, 5)), w=draw(st.integers(1, 5)), k=k, s=s,
                pads=[draw(st.integers(0, k - 1)) for _ in range(4)],
                out_pad=[draw(st.integers(0, s - 1)) for _ in range(2)],
                signed=draw(st.booleans()), per_channel=draw(st.booleans()),
                relu=draw(st.booleans()), seed=draw(st.integers(0, 2 ** 31)))


def _convt_model(case) -> tuple[bytes, tuple, float] | None:
    rng = np.random.default_rng(case["seed"])
    inits, scale, _ = _qparams(rng, case["signed"])
    cin, cout, k, s = case["cin"], case["cout"], case["k"], case["s"]
    top, left, bottom, right = case["pads"]
    oh_ = s * (case["h"] - 1) + case["out_pad"][0] + k - top - bottom
    ow_ = s * (case["w"] - 1) + case["out_pad"][1] + k - left - right
    if oh_ < 1 or ow_ < 1:
        return None
    w_scale = (rng.uniform(0.002, 0.01, cout) if case["per_channel"]
               else np.full(cout, rng.uniform(0.002, 0.01))).astype(np.float32)
    y_scale = np.float32(scale * 0.006 * np.sqrt(cin * k * k / s / s) * 40)
    y_inits, _, _ = _qparams(rng, case["signed"], "y")
    y_inits[0] = _init("y_s", y_scale)
    inits += y_inits + [
        _init("w", rng.integers(-127, 128, (cin, cout, k, k)).astype(np.int8)),
        _init("w_s", w_scale if case["per_channel"] else w_scale[:1].reshape(())),
        _init("w_z", np.zeros(cout, np.int8) if case["per_channel"] else np.int8(0)),
        _init("b", rng.integers(-3000, 3000, cout).astype(np.int32)),
        _init("b_s", (np.float32(scale) * w_scale).astype(np.float32)),
        _init("b_z", np.zeros(cout, np.int32))]
    nodes = _q_dq(case["signed"]) + [
        oh.make_node("DequantizeLinear", ["w", "w_s", "w_z"], ["wf"],
                     axis=1 if case["per_channel"] else 1),
        oh.make_node("DequantizeLinear", ["b", "b_s", "b_z"], ["bf"], axis=0),
        oh.make_node("ConvTranspose", ["xf", "wf", "bf"], ["c"], strides=[s, s],
                     pads=case["pads"], output_padding=case["out_pad"])]
    if case["relu"]:
        nodes += [oh.make_node("Relu", ["c"], ["cr"])]
    nodes += [oh.make_node("QuantizeLinear", ["cr" if case["relu"] else "c", "y_s", "y_z"],
                           ["y"])]
    x_shape = (1, cin, case["h"], case["w"])
    model = _model(nodes, inits, x_shape, (1, cout, oh_, ow_), _I8 if case["signed"] else _U8)
    return model, x_shape, scale


_CONVT_LSB = collections.Counter()


@hypothesis.settings(max_examples=40, **_SETTINGS)
@hypothesis.given(_convt_cases())
def test_conv_transpose_golden_vs_onnxruntime(case):
    """QDQ ConvTranspose (strides 1–3, kernels 1–4, pads, output_padding, per-tensor and
    per-channel weights, fused ReLU): onnxruntime 1.31 runs it in float (DequantizeLinear →
    float ConvTranspose → QuantizeLinear: it has no CPU integer kernel), the golden model has
    Conv's exact integer formula; they agree within 1 LSB (counts: test below)."""
    built = _convt_model(case)
    hypothesis.assume(built is not None)
    model, x_shape, scale = built
    graph, pairs = _run_both(model, x_shape, scale, case["seed"], count=3)
    assert [op.kind for op in graph.ops] == [ir.OpKind.CONV_TRANSPOSE]
    for got, want in pairs:
        delta = np.abs(got.astype(np.int64) - want.astype(np.int64))
        assert delta.max() <= 1, delta.max()
        _CONVT_LSB["values"] += delta.size
        _CONVT_LSB["differ"] += int((delta > 0).sum())


def test_conv_transpose_lsb_report():
    """How often the golden ConvTranspose differs from onnxruntime's float one (after the
    randomized test above)."""
    print(f"conv_transpose: {_CONVT_LSB['differ']} of {_CONVT_LSB['values']} values differ by "
          "1 LSB from onnxruntime (float ConvTranspose)")
    assert _CONVT_LSB["values"] > 0


@hypothesis.settings(max_examples=40, **_SETTINGS)
@hypothesis.given(_convt_cases())
def test_stride_phases_reassemble_the_transposed_convolution(case):
    """The compiler's decomposition: each phase's stride-1 convolution (taps flipped, leading
    pad possibly negative), scattered to its pixels, is exactly the golden accumulator."""
    rng = np.random.default_rng(case["seed"])
    h, w, cin, cout, k, s = (case[n] for n in ("h", "w", "cin", "cout", "k", "s"))
    top, left, bottom, right = case["pads"]
    out = (s * (h - 1) + case["out_pad"][0] + k - top - bottom,
           s * (w - 1) + case["out_pad"][1] + k - left - right)
    hypothesis.assume(min(out) >= 1)
    x = ir.Tensor("x", (h, w, cin), False, np.float32(1), 7)
    y = ir.Tensor("y", (*out, cout), False, np.float32(1), 0)
    op = ir.ConvTranspose(x, y, rng.integers(-128, 128, (k, k, cin, cout)).astype(np.int8), -3,
                          rng.integers(-99, 99, cout).astype(np.int32),
                          np.ones(cout, np.float32), (s, s), (top, left))
    xv = rng.integers(0, 256, (h, w, cin)).astype(np.uint8)
    want = reference.conv_transpose_accumulator(op, xv).numpy()
    got = np.zeros_like(want)
    seen = np.zeros(want.shape[:2], int)
    padded = np.pad(xv.astype(np.int64) - 7, ((k, k + s), (k, k + s), (0, 0)))
    for phase in conv_transpose_phases(op):
        conv = phase.conv
        ny, nx, _ = conv.y.shape
        kh, kw = conv.weight.shape[:2]
        pt, pl = conv.pads[:2]
        wc = conv.weight.astype(np.int64) + 3
        for j in range(ny):
            for i in range(nx):
                win = padded[k + j - pt:k + j - pt + kh, k + i - pl:k + i - pl + kw]
                got[phase.ry + s * j, phase.rx + s * i] = (
                    np.einsum("abc,abcn->n", win, wc) + conv.bias)
                seen[phase.ry + s * j, phase.rx + s * i] += 1
    assert (seen == 1).all()
    np.testing.assert_array_equal(got, want)


# ------------------------------------------------------------------------------------------------
# Refusals: one line naming the node and what to do

def _refused(nodes, inits, x_shape, y_shape, opset: int = 19) -> str:
    model = _model(nodes, [_init("x_s", np.float32(0.02)), _init("x_z", np.uint8(9))] + inits,
                   x_shape, y_shape, _U8, opset)
    with pytest.raises(InputError) as info:
        load_model(model)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_refusals_are_one_line():
    q = [oh.make_node("QuantizeLinear", ["x", "x_s", "x_z"], ["xq"])]
    scales = [_init("scales", np.array([1, 1, 2, 2], np.float32))]
    assert "mode 'linear'" in _refused(
        q + [oh.make_node("Resize", ["xq", "", "scales"], ["y"], mode="linear")], scales,
        (1, 2, 3, 3), (1, 2, 6, 6))
    assert "not an integer replication" in _refused(
        q + [oh.make_node("Resize", ["xq", "", "scales"], ["y"], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="ceil")],
        scales,
        (1, 2, 3, 3), (1, 2, 6, 6))
    assert "not an integer replication" in _refused(
        q + [oh.make_node("Resize", ["xq", "", "s15"], ["y"], mode="nearest",
                          coordinate_transformation_mode="asymmetric", nearest_mode="floor")],
        [_init("s15", np.array([1, 1, 1.5, 2], np.float32))], (1, 2, 4, 3), (1, 2, 6, 6))
    pads = _init("pads", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))
    assert "'reflect'" in _refused(
        q + [oh.make_node("Pad", ["xq", "pads"], ["y"], mode="reflect")], [pads],
        (1, 2, 3, 3), (1, 2, 5, 5))
    crop = _init("pads", np.array([0, 0, -1, 0, 0, 0, 0, 0], np.int64))
    assert "crop" in _refused(q + [oh.make_node("Pad", ["xq", "pads"], ["y"])], [crop],
                              (1, 2, 3, 3), (1, 2, 2, 3))
    channels = _init("pads", np.array([0, 1, 0, 0, 0, 0, 0, 0], np.int64))
    assert "channels" in _refused(q + [oh.make_node("Pad", ["xq", "pads"], ["y"])], [channels],
                                  (1, 2, 3, 3), (1, 3, 3, 3))
    dq = [oh.make_node("DequantizeLinear", ["xq", "x_s", "x_z"], ["xf"]),
          oh.make_node("DequantizeLinear", ["w", "x_s", "w_z"], ["wf"])]
    weights = [_init("w", np.ones((2, 1, 2, 2), np.int8)), _init("w_z", np.int8(0))]
    float_weight = [_init("wfloat", np.ones((2, 2, 2, 2), np.float32))]
    assert "QuantFormat.QDQ" in _refused(
        q + dq[:1] + [oh.make_node("ConvTranspose", ["xf", "wfloat"], ["c"], strides=[2, 2]),
                      oh.make_node("QuantizeLinear", ["c", "x_s", "x_z"], ["y"])],
        float_weight, (1, 2, 3, 3), (1, 2, 6, 6))
    assert "group" in _refused(
        q + dq + [oh.make_node("ConvTranspose", ["xf", "wf"], ["c"], strides=[2, 2], group=2),
                  oh.make_node("QuantizeLinear", ["c", "x_s", "x_z"], ["y"])], weights,
        (1, 2, 3, 3), (1, 2, 6, 6))


# ------------------------------------------------------------------------------------------------
# The compiled programs on the ISA model (fast; the RTL runs them in test_resample_rtl.py)

_ISA_CONFIGS = {
    "4x4": HwConfig(rows=4, cols=4, bus_bytes=4),
    "2x4-tiny": HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=400, wgt_depth=8, acc_depth=24,
                         prm_depth=2),
    "8x2": HwConfig(rows=8, cols=2, bus_bytes=1, act_depth=512),
    "1x1": HwConfig(rows=1, cols=1, bus_bytes=1),
}


# The tiny scratchpads make long programs (weights streamed tile by tile), whose prefetch pass
# takes seconds each: slow suite only.
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] * (name == "2x4-tiny")) for name in _ISA_CONFIGS])
@hypothesis.settings(max_examples=6, **_SETTINGS)
@hypothesis.given(spec=resample_specs())
def test_compiled_resample_graphs_match_golden_on_isasim(name, spec):
    """Pad → Resize → ConvTranspose (→ Conv) compiled for several array shapes, the tiny
    scratchpads included (which may refuse a layer, with TilingError only), on the ISA model:
    every output equals the golden model's."""
    graph = resample_graph(spec)
    hypothesis.assume(graph is not None)
    try:
        program = compile_graph(graph, _ISA_CONFIGS[name])
    except TilingError:
        assert name == "2x4-tiny"
        return
    rng = np.random.default_rng(spec.seed)
    t = graph.inputs[0].tensor
    inputs = [rng.integers(t.qmin, t.qmax + 1, t.shape).astype(t.numpy_dtype)]
    got = run_isasim(program, [inputs]).outputs[0]
    values = reference.run(graph, inputs)
    for g, b in zip(got, graph.outputs, strict=True):
        np.testing.assert_array_equal(g, values[b.tensor.name])
