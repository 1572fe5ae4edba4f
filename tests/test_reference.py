"""The golden model against onnxruntime's integer kernels: bit-exact on every zoo model."""

from __future__ import annotations

import collections
import math
import pathlib

import hypothesis
import hypothesis.strategies as st
import numpy as np
import onnx
import onnx.numpy_helper
import pytest

import models
from codesign import ir, isa, opwitness, ortwitness, perlayer, reference
from codesign.frontend import load_model
from tests.modelgen import (
    ELEMENTWISE_ZOO,
    PT2E_ZOO,
    ZOO,
    Conv,
    Flatten,
    Linear,
    ReLU,
    Spec,
    build,
    random_inputs,
)


def _feeds(graph: ir.Graph, spec: Spec, count: int, seed: int) -> list[np.ndarray]:
    """Random inputs in the model's own input type (8-bit inputs: random integers)."""
    (binding,) = graph.inputs
    if binding.is_float:
        # Wide inputs (3σ beyond the calibration data) also exercise saturation.
        return [x * np.float32(1.5) for x in random_inputs(spec, count, seed)]
    rng = np.random.default_rng(seed)
    t = binding.tensor
    return [rng.integers(t.qmin, t.qmax + 1, binding.onnx_shape).astype(t.numpy_dtype)
            for _ in range(count)]


def _golden(graph: ir.Graph, feed: np.ndarray) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    values = reference.run(graph, [graph.inputs[0].quantize(feed)])
    out = graph.outputs[0]
    return out.dequantize(values[out.tensor.name]), values


def _assert_bit_exact(got: np.ndarray, want: np.ndarray) -> None:
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes(), np.abs(got.astype(float) - want.astype(float)).max()


@pytest.mark.parametrize("name", sorted(ZOO) + sorted(PT2E_ZOO))
def test_golden_equals_onnxruntime(name: str) -> None:
    spec = ZOO.get(name) or PT2E_ZOO[name]
    if spec.fmt == "pt2e":
        pytest.importorskip("torchao", reason="PT2E quantization needs torchao")
    path = build(spec)
    graph = load_model(path)
    session = ortwitness.create_session(path)
    for feed in _feeds(graph, spec, 4, seed=11):
        want = session.run(None, {graph.inputs[0].onnx_name: feed})[0]
        got, values = _golden(graph, feed)
        _assert_bit_exact(got, want)
        for tensor in {op.y for op in graph.ops}:
            assert values[tensor.name].shape == tensor.shape
            assert values[tensor.name].dtype == tensor.numpy_dtype


#: Per op kind: [values compared, values that differ by 1 LSB], over the element-wise models.
_LSB_STATS: dict[str, list[int]] = collections.defaultdict(lambda: [0, 0])


@pytest.mark.parametrize("name", sorted(ELEMENTWISE_ZOO))
def test_elementwise_within_one_lsb(name: str) -> None:
    """Each op of a model with element-wise ops against onnxruntime's kernel for it alone on the
    same inputs (codesign.opwitness): convolutions etc. bit-exact, the ops ORT computes in float
    (QLinearAdd, the average pools, ReduceMean, Concat's requantization) within 1 LSB."""
    spec = ELEMENTWISE_ZOO[name]
    graph = load_model(build(spec))
    golden = [reference.run(graph, [graph.inputs[0].quantize(feed)])
              for feed in _feeds(graph, spec, 4, seed=11)]
    ort = opwitness.op_witness(build(spec), graph, golden).outputs
    for check in perlayer.check_ops(graph, golden, ort):
        assert check.compared == len(golden) and check.within_bound, check
        if check.bound:
            stats = _LSB_STATS[check.kind]
            stats[0] += len(golden) * math.prod(next(
                op.y.shape for op in graph.ops if op.name == check.layer))
            stats[1] += check.mismatches


def test_elementwise_lsb_report() -> None:
    """Print how often the element-wise ops differ from onnxruntime (runs after the above)."""
    for kind, (total, differ) in sorted(_LSB_STATS.items()):
        print(f"{kind:8s} {differ:6d} of {total:7d} values differ by 1 LSB "
              f"({100 * differ / max(total, 1):.2f} %)")


def test_uniform_nonzero_weight_zero_point() -> None:
    """A weight zero point other than 0 (rewritten into a QOperator model) stays exact."""
    spec = Spec((3, 6, 6), (Conv(5, 3, padding=1), Flatten(), Linear(4)), fmt="qop",
                per_channel=False, seed=5)
    model = onnx.load(build(spec))
    for node in model.graph.node:
        if node.op_type in ("QLinearConv", "QGemm"):
            zp = next(i for i in model.graph.initializer if i.name == node.input[5])
            zp.CopyFrom(onnx.numpy_helper.from_array(np.array(3, np.int8), zp.name))
    data = model.SerializeToString()
    graph = load_model(data)
    assert [op.w_zero_point for op in graph.ops if isinstance(op, ir.Conv)] == [3, 3]
    session = ortwitness.create_session(data)
    for feed in _feeds(graph, spec, 3, seed=2):
        _assert_bit_exact(_golden(graph, feed)[0], session.run(None, {"x": feed})[0])


def test_requantization_matches_integer_requantize() -> None:
    """``torch.round(f32(acc) · M)`` equals the hardware's integer formulation (isa.requantize)."""
    graph = load_model(build(ZOO["deep_cnn_qdq_u8"]))
    x = graph.inputs[0].quantize(random_inputs(ZOO["deep_cnn_qdq_u8"], 1, 4)[0])
    op = graph.ops[0]
    assert isinstance(op, ir.Conv)
    acc = reference.conv_accumulator(op, x).numpy()
    y = reference.run(graph, [x])[op.y.name]
    lo, hi = op.qrange
    for index in np.ndindex(*acc.shape[:2]):
        for c in range(acc.shape[2]):
            mult, shift = isa.float_to_mult_shift(op.multiplier[c])
            q = isa.requantize(int(acc[index][c]), mult, shift) + op.y.zero_point
            assert min(max(q, lo), hi) == y[index][c]


def test_run_checks_inputs() -> None:
    graph = load_model(build(ZOO["mlp_qop_u8"]))
    with pytest.raises(ValueError, match="uint8"):
        reference.run(graph, [np.zeros((1, 1, 13), np.int8)])
    with pytest.raises(ValueError, match="takes 1 inputs"):
        reference.run(graph, [])


def test_maxpool_padding_never_wins() -> None:
    """All-minimum int8 input: a padded window's maximum is still −128, never a pad value."""
    x = ir.Tensor("x", (3, 3, 2), True, np.float32(1), 0)
    y = ir.Tensor("y", (2, 2, 2), True, np.float32(1), 0)
    graph = ir.Graph("pool", (ir.IOBinding("x", (1, 2, 3, 3), False, x),),
                     (ir.IOBinding("y", (1, 2, 2, 2), False, y),),
                     (ir.MaxPool(x, y, (2, 2), (2, 2), (1, 1, 0, 0)),))
    out = reference.run(graph, [np.full((3, 3, 2), -128, np.int8)])["y"]
    assert (out == -128).all()


def test_flatten_is_chw_order() -> None:
    x = ir.Tensor("x", (2, 3, 4), False, np.float32(1), 0)
    y = ir.Tensor("y", (1, 1, 24), False, np.float32(1), 0)
    graph = ir.Graph("flat", (ir.IOBinding("x", (1, 4, 2, 3), False, x),),
                     (ir.IOBinding("y", (1, 24), False, y),), (ir.Flatten(x, y),))
    chw = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    out = reference.run(graph, [chw.transpose(1, 2, 0)])["y"]
    np.testing.assert_array_equal(out.reshape(-1), chw.reshape(-1))


def test_quantize_matches_onnxruntime() -> None:
    """IOBinding.quantize (divide, RNE, saturate) agrees with ORT's QuantizeLinear, ties too."""
    rng = np.random.default_rng(0)
    for scale in (np.float32(0.1), np.float32(0.0123457), np.float32(1 / 255), np.float32(3)):
        for zero_point, signed in ((128, False), (3, False), (0, True), (-7, True)):
            k = rng.integers(-400, 400, 2048).astype(np.float32)
            ties = (k + np.float32(0.5)) * scale
            x = np.concatenate([ties, np.nextafter(ties, np.float32(np.inf)),
                                np.nextafter(ties, np.float32(-np.inf)),
                                rng.standard_normal(2048).astype(np.float32) * scale * 200])
            t = ir.Tensor("x", (1, 1, x.size), signed, scale, zero_point)
            got = ir.IOBinding("x", (1, x.size), True, t).quantize(x[None]).reshape(-1)
            want = ortwitness.quantize_linear(x, scale, zero_point, signed)
            np.testing.assert_array_equal(got, want)


@st.composite
def _conv_specs(draw: st.DrawFn) -> Spec:
    """A conv (random size, kernel, stride, asymmetric pads) → fc model in a random format."""
    cin, cout = draw(st.integers(1, 6)), draw(st.integers(1, 9))
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    pads = tuple(draw(st.integers(0, k - 1)) for k in (kh, kw, kh, kw))
    h = draw(st.integers(max(1, kh - pads[0] - pads[2]), 12))
    w = draw(st.integers(max(1, kw - pads[1] - pads[3]), 12))
    stride = draw(st.integers(1, 3))
    fmt, signed = draw(st.sampled_from([("qdq", False), ("qdq", True), ("qop", False),
                                        ("qop", True)]))
    layers = (Conv(cout, (kh, kw), stride, pads=(pads[0], pads[1], pads[2], pads[3])),
              *draw(st.sampled_from([(), (ReLU(),)])), Flatten(), Linear(draw(st.integers(1, 7))))
    return Spec((cin, h, w), layers, fmt=fmt, signed=signed, per_channel=draw(st.booleans()),
                seed=draw(st.integers(0, 99)))


@hypothesis.settings(max_examples=8, deadline=None, derandomize=True, database=None)
@hypothesis.given(_conv_specs())
def test_random_conv_shapes(spec: Spec) -> None:
    path = build(spec)
    graph = load_model(path)
    session = ortwitness.create_session(path)
    for feed in _feeds(graph, spec, 2, seed=5):
        _assert_bit_exact(_golden(graph, feed)[0], session.run(None, {"x": feed})[0])


@pytest.mark.parametrize("stem", ["digits_mlp_qdq", "digits_cnn_qop", "digits_cnn_qdq"])
def test_bundled_digits_models(stem: str) -> None:
    """The committed example models: golden == onnxruntime on real test digits."""
    from models.digits import MODELS, load_split

    model = next(m for m in MODELS.values() if stem in m.quantized)
    path = pathlib.Path(models.__file__).parent / f"{stem}.onnx"
    graph = load_model(path)
    session = ortwitness.create_session(path)
    for x in load_split(model)[2][:40]:
        _assert_bit_exact(_golden(graph, x[None])[0], session.run(None, {"x": x[None]})[0])
