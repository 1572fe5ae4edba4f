"""Add / Sub / Mul of two activations (same shape or broadcast over H×W) and with 8-bit
constants: golden model against onnxruntime and the compiled program (ISA model) against the
golden model, on randomized shapes, quantizations and operand forms."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign import ir, reference
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.compiler.lower import sized_for
from codesign.driver import run_isasim
from codesign.errors import InputError
from codesign.frontend import load_model
from codesign.isa import HwConfig
from codesign.opwitness import ort_to_hwc
from codesign.ortwitness import create_session

#: A small NPU (4-channel ACT words: channels spread over several words, broadcast periods > 1).
SMALL = HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=256, wgt_depth=64, acc_depth=64,
                 prm_depth=8)

#: How the second operand is given.
FORMS = ("same", "b_plane", "a_plane", "const_scalar", "const_channel", "const_full",
         "const_float")


@dataclasses.dataclass(frozen=True)
class Case:
    op: str                 # Add, Sub, Mul
    fmt: str                # qdq, qop
    form: str               # one of FORMS
    shape: tuple[int, ...]  # the full activation shape (ONNX)
    signed: bool
    scales: tuple[float, float, float]
    zps: tuple[int, int, int]
    act: str                # "", "Relu", "Clip"
    seed: int
    float_const: float = 1.0  # const_float: the constant, in units of a's scale
    const_first: bool = False  # a constant operand is the node's first input (c − x)


def _plane_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape broadcast over H×W (or over the rows of a [1, M, N] sequence)."""
    return (1, shape[1], 1, 1) if len(shape) == 4 else (1, 1, shape[-1])


def _const_shape(case: Case) -> tuple[int, ...]:
    if case.form in ("const_scalar", "const_float"):
        return ()
    if case.form == "const_channel":
        # ONNX broadcasting aligns right: [C, 1, 1] on NCHW, [N] on a [1, M, N] sequence.
        return (case.shape[1], 1, 1) if len(case.shape) == 4 else (case.shape[-1],)
    return case.shape


def _shapes(case: Case) -> tuple[tuple[int, ...], tuple[int, ...] | None]:
    """The ONNX shapes of inputs a and b (None: b is a constant)."""
    if case.form == "same":
        return case.shape, case.shape
    if case.form == "b_plane":
        return case.shape, _plane_shape(case.shape)
    if case.form == "a_plane":
        return _plane_shape(case.shape), case.shape
    return case.shape, None


def _qparams(name: str, scale: float, zp: int, signed: bool) -> list[onnx.TensorProto]:
    return [onnx.numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_s"),
            onnx.numpy_helper.from_array(np.asarray(zp, np.int8 if signed else np.uint8),
                                         f"{name}_z")]


def build(case: Case) -> tuple[bytes, list[np.ndarray]]:
    """The model of ``case`` and one input set: float inputs that quantize exactly to random
    integers (so that onnxruntime and the golden model see the same 8-bit values)."""
    rng = np.random.default_rng(case.seed)
    dtype = np.int8 if case.signed else np.uint8
    lo, hi = (-128, 127) if case.signed else (0, 255)
    a_shape, b_shape = _shapes(case)
    names = ["a", "b"] if b_shape is not None else ["a"]
    shapes = [a_shape, b_shape][:len(names)]
    inits, nodes, feeds = [], [], []
    for i, (name, shape) in enumerate(zip(names, shapes, strict=True)):
        inits += _qparams(name, case.scales[i], case.zps[i], case.signed)
        q = rng.integers(lo, hi + 1, shape)
        feeds.append(((q - case.zps[i]) * np.float32(case.scales[i])).astype(np.float32))
        nodes.append(onnx.helper.make_node("QuantizeLinear", [name, f"{name}_s", f"{name}_z"],
                                           [f"{name}_q"]))
    if case.form == "const_float":
        inits.append(onnx.numpy_helper.from_array(
            np.asarray(case.float_const * case.scales[0], np.float32), "b_f"))
    elif b_shape is None:
        inits += _qparams("b", case.scales[1], case.zps[1], case.signed)
        inits.append(onnx.numpy_helper.from_array(
            rng.integers(lo, hi + 1, _const_shape(case)).astype(dtype), "b_q"))
    inits += _qparams("y", case.scales[2], case.zps[2], case.signed)
    if case.fmt == "qdq":
        nodes += [onnx.helper.make_node("DequantizeLinear", [f"{n}_q", f"{n}_s", f"{n}_z"],
                                        [f"{n}_f"])
                  for n in ("a", "b")[:1 if case.form == "const_float" else 2]]
        operands = ["b_f", "a_f"] if case.const_first else ["a_f", "b_f"]
        nodes.append(onnx.helper.make_node(case.op, operands, ["r"], name="binary"))
        last = "r"
        if case.act == "Relu":
            nodes.append(onnx.helper.make_node("Relu", [last], ["r_act"]))
            last = "r_act"
        elif case.act == "Clip":
            inits += [onnx.numpy_helper.from_array(np.asarray(v, np.float32), n)
                      for n, v in (("lo", 0.0), ("hi", 6.0 * case.scales[2] * 3))]
            nodes.append(onnx.helper.make_node("Clip", [last, "lo", "hi"], ["r_act"]))
            last = "r_act"
        nodes.append(onnx.helper.make_node("QuantizeLinear", [last, "y_s", "y_z"], ["y_q"]))
    else:
        a, b = ["a_q", "a_s", "a_z"], ["b_q", "b_s", "b_z"]
        nodes.append(onnx.helper.make_node(
            f"QLinear{case.op}", [*(b + a if case.const_first else a + b), "y_s", "y_z"],
            ["y_q"], name="binary", domain="com.microsoft"))
    nodes.append(onnx.helper.make_node("DequantizeLinear", ["y_q", "y_s", "y_z"], ["y"]))
    inputs = [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, list(s))
              for n, s in zip(names, shapes, strict=True)]
    graph = onnx.helper.make_graph(nodes, "binary", inputs, [
        onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, list(case.shape))],
        inits)
    opsets = [onnx.helper.make_opsetid("", 17)]
    if case.fmt == "qop":
        opsets.append(onnx.helper.make_opsetid("com.microsoft", 1))
    model = onnx.helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    return model.SerializeToString(), feeds


@st.composite
def cases(draw) -> Case:
    op = draw(st.sampled_from(["Add", "Sub", "Mul"]))
    form = draw(st.sampled_from(FORMS))
    fmt = "qdq" if op == "Sub" or form == "const_float" else draw(st.sampled_from(["qdq", "qop"]))
    if draw(st.booleans()):
        shape = (1, draw(st.integers(1, 20)), draw(st.integers(1, 5)), draw(st.integers(1, 5)))
    else:
        shape = (1, draw(st.integers(1, 6)), draw(st.integers(1, 20)))
    signed = draw(st.booleans())
    zp = st.integers(-128, 127) if signed else st.integers(0, 255)
    scale = st.floats(-9, -2).map(lambda e: float(np.float32(2.0 ** e * 1.37)))
    scales = (draw(scale), draw(scale), draw(scale))
    if op != "Mul":
        # The Add ratios a_scale / y_scale and b_scale / y_scale within 2**14 of each other.
        scales = (scales[0], scales[1], max(scales[2], max(scales[:2]) / 64))
    return Case(op, fmt, form, shape, signed, scales, (draw(zp), draw(zp), draw(zp)),
                draw(st.sampled_from(["", "Relu", "Clip"])) if fmt == "qdq" else "",
                draw(st.integers(0, 2**31)),
                draw(st.sampled_from([-1, 1])) * draw(st.floats(0.01, 300)),
                form.startswith("const") and draw(st.booleans()))


def _golden(graph: ir.Graph, feeds: list[np.ndarray]) -> tuple[dict, list[np.ndarray]]:
    q = [b.quantize(x) for b, x in zip(graph.inputs, feeds, strict=True)]
    return reference.run(graph, q), q


def mlas_qlinear_mul(op: ir.Mul, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """onnxruntime's x86 QLinearMul (MLAS qlmul.cpp, SSE2): the exact int32 product, times
    ``f32(f32(a_scale · b_scale) / y_scale)`` in float32, plus the zero point *in float32*,
    rounded half to even and saturated."""
    acc = (a.astype(np.int64) - op.a.zero_point) * (b.astype(np.int64) - op.b.zero_point)
    v = acc.astype(np.float32) * op.multiplier + np.float32(op.y.zero_point)
    return np.clip(np.rint(v.astype(np.float32)), op.y.qmin, op.y.qmax)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_golden_against_onnxruntime_and_program_against_golden(case):
    model, feeds = build(case)
    graph = load_model(model)
    (op,) = graph.ops
    if case.form == "const_float":
        # onnxruntime runs an op with a float constant in float: the tensor's lookup table.
        assert isinstance(op, ir.Lut)
        _check_exact_table_op(graph, feeds, model)
        return
    assert isinstance(op, ir.Mul if case.op == "Mul" else ir.Add)
    assert (op.b_value is not None) == case.form.startswith("const")
    if case.form in ("b_plane", "a_plane", "const_scalar", "const_channel") and any(
            n > 1 for n in op.a.shape[:2]):
        assert op.b.shape == (1, 1, op.a.shape[2])      # broadcast, not expanded
    values, q = _golden(graph, feeds)
    golden = values[graph.outputs[0].tensor.name]
    out = graph.outputs[0].tensor
    session = create_session(model)
    ort = ort_to_hwc(out, session.run(None, {i.name: x for i, x in zip(
        session.get_inputs(), feeds, strict=True)})[0])
    diff = np.abs(golden.astype(np.int64) - ort)
    assert diff.max(initial=0) <= 1, case
    if isinstance(op, ir.Mul) and op.clamp is None:
        # onnxruntime is exactly MLAS's formula; the golden model differs from it only where
        # adding the zero point in float32 rounds v across a half (docs/arithmetic.md).
        a = values[op.a.name]
        b = op.b_value if op.b_value is not None else values[op.b.name]
        mlas = mlas_qlinear_mul(op, a, b)
        np.testing.assert_array_equal(ort, mlas)
        acc = (a.astype(np.int64) - op.a.zero_point) * (b.astype(np.int64) - op.b.zero_point)
        v = acc.astype(np.float32) * op.multiplier
        double = np.rint((v + np.float32(op.y.zero_point)).astype(np.float32)) != (
            np.rint(v) + op.y.zero_point)
        assert not np.any((diff != 0) & ~double), case
    # The compiled program on the ISA model equals the golden model.
    for config in (DEFAULT_CONFIG, SMALL):
        program = compile_graph(graph, config)
        got = run_isasim(program, [q]).outputs[0][0]
        np.testing.assert_array_equal(got, golden)


def _check_exact_table_op(graph: ir.Graph, feeds: list[np.ndarray], model: bytes) -> None:
    values, q = _golden(graph, feeds)
    out = graph.outputs[0].tensor
    session = create_session(model)
    ort = ort_to_hwc(out, session.run(None, {i.name: x for i, x in zip(
        session.get_inputs(), feeds, strict=True)})[0])
    np.testing.assert_array_equal(values[out.name], ort)
    got = run_isasim(compile_graph(graph, sized_for(graph, DEFAULT_CONFIG)), [q]).outputs[0][0]
    np.testing.assert_array_equal(got, values[out.name])


def test_mul_multiplier_is_onnxruntimes_order():
    """M = f32(f32(a_scale · b_scale) / y_scale), not f32(a_scale · f32(b_scale / y_scale))."""
    a, b, y = np.float32(0.1), np.float32(0.3), np.float32(0.7)
    assert ir.mul_multiplier(a, b, y) == np.float32(np.float32(a * b) / y)
    # Scales where the two orders differ, so the test can tell them apart.
    rng = np.random.default_rng(0)
    s = rng.uniform(0.001, 1, (1000, 3)).astype(np.float32)
    other = [np.float32(x * np.float32(z / w)) for x, z, w in s]
    assert any(ir.mul_multiplier(x, z, w) != o for (x, z, w), o in zip(s, other, strict=True))


@pytest.mark.parametrize("form, message", [
    ("float_const", "is float and not one value; quantize it"),
    ("bad_broadcast", "broadcast over H×W"),
])
def test_refused_operands_are_named(form, message):
    case = Case("Mul", "qdq", "same", (1, 3, 4, 5), False, (0.1, 0.1, 0.1), (3, 4, 5), "", 0)
    model = onnx.load_from_string(build(case)[0])
    g = model.graph
    if form == "float_const":
        # b is a float per-channel initializer instead of DequantizeLinear of an 8-bit one
        # (one float value is taken: test_golden_against_onnxruntime_... "const_float").
        g.input.pop()
        g.initializer.append(onnx.numpy_helper.from_array(
            np.arange(1, 4, dtype=np.float32).reshape(3, 1, 1), "b_f"))
        for name in ("b_q", "b_f"):
            node = next(n for n in g.node if n.output[0] == name)
            g.node.remove(node)
    else:
        g.input[1].type.tensor_type.shape.dim[3].dim_value = 1      # [1, 3, 4, 1]
    with pytest.raises(InputError, match=message):
        load_model(model.SerializeToString())


def kept_graph(h: int, w: int, c: int, signed: bool, seed: int, flat: bool = False) -> ir.Graph:
    """conv → t; a whole-plane conv of t → gate g (1, 1, C); t · g (broadcast Mul); that − t
    (Sub); 1×1 conv. Every op runs on the array or ELTWISE with t, g and the products kept in
    ACT (no pooling in between), so the placed paths of the lowering run. With ``flat`` the
    gate is flattened first (a single pixel: the same layout)."""
    from .irgen import _conv, _tensor

    rng = np.random.default_rng(seed)
    x = _tensor(rng, "input", (h, w, c), signed)
    body = _conv(rng, "body", x, c, (3, 3), (1, 1), (1, 1, 1, 1), signed, 0, True)
    t = body.y
    squeeze = _conv(rng, "squeeze", t, c, (h, w), (1, 1), (0, 0, 0, 0), signed, 0, False)
    g = squeeze.y
    ops: list[ir.Op] = [body, squeeze]
    if flat:
        ops.append(ir.Flatten(g, dataclasses.replace(g, name="gate_flat"), name="flatten"))
        g = ops[-1].y
    m = _tensor(rng, "gated", t.shape, signed)
    mul = ir.Mul(t, g, m, ir.mul_multiplier(t.scale, g.scale, m.scale) * np.float32(40),
                 name="mul")
    d = _tensor(rng, "diff", t.shape, signed)
    am, bm, shift = ir.add_multipliers(m.scale, t.scale, d.scale)
    sub = ir.Add(m, t, d, am, -bm, shift, name="sub")
    out = _conv(rng, "out", d, 3, (1, 1), (1, 1), (0, 0, 0, 0), signed, 0, False)
    return ir.Graph("kept", (ir.IOBinding("input", (1, c, h, w), False, x),),
                    (ir.IOBinding("output", (1, 3, h, w), False, out.y),),
                    (*ops, mul, sub, out))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 5), w=st.integers(1, 5), c=st.integers(1, 20), signed=st.booleans(),
       seed=st.integers(0, 2**31), flat=st.booleans())
def test_broadcast_mul_and_sub_of_tensors_kept_in_act(h, w, c, signed, seed, flat):
    from .irgen import random_input

    graph = kept_graph(h, w, c, signed, seed, flat)
    x = random_input(graph, seed)
    want = reference.run(graph, x)["out_out"]
    for config in (DEFAULT_CONFIG, SMALL):
        program = compile_graph(graph, config)
        if config is DEFAULT_CONFIG and not flat:
            # t, the gate and the product never leave ACT (SMALL's ACT may be too small).
            stored = {region.name for region in program.tensors}
            assert not stored & {"body_out", "squeeze_out", "gated"}
        np.testing.assert_array_equal(run_isasim(program, [x]).outputs[0][0], want)
