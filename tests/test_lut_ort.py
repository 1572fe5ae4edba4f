"""Lookup-table activations against onnxruntime (the witness; the tables are computed in numpy).

* the float32 kernels of codesign.frontend.lut against onnxruntime's own float ops, on 80,013
  inputs each: identical bits;
* every table entry (all 256 inputs) against onnxruntime running the real DQ → f → Q model (or
  the QOperator node), over many random scale / zero-point / signedness sets per op: identical;
* the golden model of whole random-shaped models against onnxruntime (hypothesis).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import onnx
import onnx.helper as oh
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign import ir, reference
from codesign.frontend import load_model
from codesign.frontend.lut import (
    gelu,
    hard_sigmoid,
    leaky_relu,
    mlas_erf,
    mlas_exp,
    mlas_logistic,
    mlas_tanh,
)
from codesign.ortwitness import create_session

from .lutmodels import QDQ_OPS, activation_model, all_codes, qdq_model, qop_model

F32 = np.float32


def _float_op(node: onnx.NodeProto, x: np.ndarray, opset: int = 20) -> np.ndarray:
    graph = oh.make_graph([node], "f", [oh.make_tensor_value_info("x", 1, [1, None])],
                          [oh.make_tensor_value_info("y", 1, [1, None])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset),
                                                oh.make_opsetid("com.microsoft", 1)])
    model.ir_version = 9
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x.reshape(1, -1)})[0].reshape(-1)


KERNELS = {
    "Sigmoid": (oh.make_node("Sigmoid", ["x"], ["y"]), mlas_logistic),
    "Tanh": (oh.make_node("Tanh", ["x"], ["y"]), mlas_tanh),
    "HardSigmoid": (oh.make_node("HardSigmoid", ["x"], ["y"], alpha=0.3, beta=0.45),
                    lambda v: hard_sigmoid(v, 0.3, 0.45)),
    "HardSwish": (oh.make_node("HardSwish", ["x"], ["y"]),
                  lambda v: (v * hard_sigmoid(v, 1 / 6, 0.5)).astype(F32)),
    "LeakyRelu": (oh.make_node("LeakyRelu", ["x"], ["y"], alpha=0.13),
                  lambda v: leaky_relu(v, 0.13)),
    "Erf": (oh.make_node("Erf", ["x"], ["y"]), mlas_erf),
    "Exp": (oh.make_node("Exp", ["x"], ["y"]), mlas_exp),
    "Gelu": (oh.make_node("Gelu", ["x"], ["y"]), gelu),
    "GeluTanh": (oh.make_node("Gelu", ["x"], ["y"], approximate="tanh"),
                 lambda v: gelu(v, "tanh")),
    "com.microsoft.Gelu": (oh.make_node("Gelu", ["x"], ["y"], domain="com.microsoft"), gelu),
}


@pytest.mark.parametrize("name", KERNELS)
def test_float_kernels_are_onnxruntimes_bit_for_bit(name):
    node, kernel = KERNELS[name]
    rng = np.random.default_rng(7)
    x = np.concatenate([rng.uniform(-25, 25, 30000), rng.uniform(-1, 1, 30000),
                        rng.uniform(-110, 95, 20000),
                        [0.0, -0.0, 18.0, -18.0, 9.0, -9.0, 3.0, -3.0, 0.921875, 3.925,
                         -3.925, 100.0, -1e30]]).astype(F32)
    np.testing.assert_array_equal(kernel(x).view(np.uint32), _float_op(node, x).view(np.uint32))


def _random_qparams(rng, same_sign: bool = False):
    x_signed = bool(rng.integers(2))
    y_signed = x_signed if same_sign else bool(rng.integers(2))
    x_scale = F32(10 ** rng.uniform(-3, 0))
    y_scale = F32(10 ** rng.uniform(-3.3, -0.3))

    def zp(signed):
        return int(rng.integers(-128, 128) if signed else rng.integers(0, 256))

    return x_scale, zp(x_signed), x_signed, y_scale, zp(y_signed), y_signed


def _golden_and_ort(model: bytes, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, ir.Graph]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "m.onnx")
        with open(path, "wb") as f:
            f.write(model)
        graph = load_model(path)
    want = create_session(model).run(None, {"q": x})[0]
    b_in, b_out = graph.inputs[0], graph.outputs[0]
    got = reference.run(graph, [b_in.to_hwc(x)])[b_out.tensor.name]
    return b_out.from_hwc(got), want, graph


#: Random scale sets per op for the exhaustive table test.
N_SETS = 30


@pytest.mark.parametrize("op", QDQ_OPS + ["QLinearSigmoid", "QLinearLeakyRelu"])
def test_every_table_entry_equals_onnxruntime(op):
    """All 256 inputs, N_SETS random quantizations: the table is onnxruntime's output."""
    rng = np.random.default_rng(len(op) * 1000 + ord(op[-1]))
    exact = 0
    for k in range(N_SETS):
        xs, xz, xsg, ys, yz, ysg = _random_qparams(rng, same_sign=op.startswith("QLinear"))
        if op.startswith("QLinear"):
            model = qop_model(op, xs, xz, xsg, ys, yz, alpha=float(rng.uniform(0.001, 0.5)))
        else:
            model = qdq_model(op, xs, xz, xsg, ys, yz, ysg, seed=k)
        got, want, graph = _golden_and_ort(model, all_codes(xsg))
        (lut,) = graph.ops
        assert isinstance(lut, ir.Lut)
        np.testing.assert_array_equal(got, want, err_msg=f"{op} set {k}: {xs, xz, ys, yz}")
        exact += int((got == want).sum())
    assert exact == 256 * N_SETS


def _shaped_model(op: str, shape, qparams, seed: int) -> bytes:
    """The op's QDQ model on a [1, C, H, W] / [1, K] tensor instead of [1, 256]."""
    model = onnx.load_from_string(qdq_model(op, *qparams, seed=seed))
    for value in (model.graph.input[0], model.graph.output[0]):
        dims = value.type.tensor_type.shape.dim
        del dims[:]
        for d in shape:
            dims.add().dim_value = d
    return model.SerializeToString()


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(op=st.sampled_from(QDQ_OPS), shape=st.one_of(
    st.tuples(st.just(1), st.integers(1, 9), st.integers(1, 6), st.integers(1, 6)),
    st.tuples(st.just(1), st.integers(1, 70))), seed=st.integers(0, 2**31))
def test_golden_model_equals_onnxruntime_on_random_shapes(op, shape, seed):
    rng = np.random.default_rng(seed)
    qparams = _random_qparams(rng)
    model = _shaped_model(op, shape, qparams, seed)
    raw = rng.integers(0, 256, shape).astype(np.uint8)
    x = raw.view(np.int8) if qparams[2] else raw
    got, want, _ = _golden_and_ort(model, x)
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("signed", [False, True], ids=["uint8", "int8"])
def test_quantize_static_qoperator_model_equals_onnxruntime(tmp_path, signed):
    """quantize_static in QOperator format emits QLinearSigmoid and QLinearLeakyRelu, and
    leaves HardSigmoid, HardSwish and Tanh as float ops between DequantizeLinear and
    QuantizeLinear: every one of them is a table, and the golden model equals onnxruntime."""
    path = activation_model(tmp_path, "qop", signed)
    ops = {n.op_type for n in onnx.load(str(path)).graph.node}
    assert {"QLinearSigmoid", "QLinearLeakyRelu", "HardSigmoid", "HardSwish", "Tanh"} <= ops
    graph = load_model(path)
    assert [op.kind.value for op in graph.ops] == ["conv", "lut"] * 5
    session = create_session(str(path))
    rng = np.random.default_rng(0)
    for _ in range(4):
        x = rng.standard_normal((1, 3, 6, 5)).astype(F32)
        want = session.run(None, {"x": x})[0]
        values = reference.run(graph, [graph.inputs[0].quantize(x)])
        got = graph.outputs[0].dequantize(values[graph.outputs[0].tensor.name])
        np.testing.assert_array_equal(got, want)


def test_integer_relu_after_qlinear_sigmoid_clamps_the_table():
    """QOperator: an int8 Relu on QLinearSigmoid's output acts on the integers; folded into the
    table (every entry against onnxruntime)."""
    model = onnx.load_from_string(qop_model("QLinearSigmoid", F32(0.05), 3, True, F32(0.004),
                                            -100))
    model.graph.node[0].output[0] = "s"
    model.graph.node.append(oh.make_node("Relu", ["s"], ["y"]))
    model.opset_import[0].version = 14
    got, want, graph = _golden_and_ort(model.SerializeToString(), all_codes(True))
    (lut,) = graph.ops
    assert int(np.asarray(lut.table).min()) == 0
    np.testing.assert_array_equal(got, want)


def test_nan_and_infinite_values_quantize_as_onnxruntime():
    """A function can reach ±inf or NaN (Div by a zero constant); QuantizeLinear's x86 kernel
    saturates infinities and sends NaN to qmin."""
    from codesign.frontend.lut import quantize_linear
    from codesign.ortwitness import quantize_linear as ort_quantize

    v = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e30, -1e30, 3.5], F32)
    for signed, zp in ((False, 10), (True, -10)):
        t = ir.Tensor("t", (1, 1, 8), signed, F32(0.1), zp)
        np.testing.assert_array_equal(quantize_linear(v, t), ort_quantize(v, t.scale, zp, signed))
