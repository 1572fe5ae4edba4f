"""The ONNX frontend: the IR it builds, and the errors it gives for models it cannot take."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import onnxruntime as ort
import pytest

from codesign import ir, ortwitness, reference
from codesign.errors import InputError
from codesign.frontend import load_model
from tests.modelgen import (
    ELEMENTWISE_ZOO,
    ZOO,
    Conv,
    Flatten,
    GlobalAvgPool,
    Linear,
    ReLU,
    Residual,
    Spec,
    build,
    float_model,
    random_inputs,
)

_SMALL = Spec((3, 6, 6), (Conv(4, 3), ReLU(), Flatten(), Linear(3)))


def _ops(graph: ir.Graph) -> list[str]:
    return [op.kind.value for op in graph.ops]


def test_conv_pool_fc_structure() -> None:
    graph = load_model(build(ZOO["conv_relu_pool_fc_qdq_u8"]))
    assert _ops(graph) == ["conv", "maxpool", "flatten", "conv"]
    conv, pool, flat, fc = graph.ops
    assert isinstance(conv, ir.Conv) and isinstance(fc, ir.Conv)
    assert conv.x.shape == (11, 11, 3) and conv.y.shape == (6, 6, 5)
    assert conv.weight.shape == (3, 3, 3, 5) and conv.weight.dtype == np.int8
    assert conv.stride == (2, 2) and conv.pads == (1, 1, 1, 1)
    assert conv.bias.dtype == np.int32 and conv.multiplier.dtype == np.float32
    assert pool.y.shape == (3, 3, 5) and flat.y.shape == (1, 1, 45)
    assert fc.weight.shape == (1, 1, 45, 7)
    (inp,), (out,) = graph.inputs, graph.outputs
    assert inp.is_float and inp.onnx_shape == (1, 3, 11, 11) and not inp.tensor.signed
    assert out.is_float and out.onnx_shape == (1, 7)
    # The ReLU is folded into the conv's output zero point or clamp: nothing below it survives.
    assert conv.qrange[0] >= conv.y.zero_point


def test_multiplier_is_float32_in_contract_order() -> None:
    model = onnx.load(build(ZOO["conv_relu_pool_fc_qop_s8"]))
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    x_scale, w_scale, y_scale = (inits[node.input[i]] for i in (1, 4, 6))
    want = np.array([np.float32(np.float32(x_scale * ws) / y_scale) for ws in w_scale],
                    np.float32)
    conv = load_model(build(ZOO["conv_relu_pool_fc_qop_s8"])).ops[0]
    assert isinstance(conv, ir.Conv)
    np.testing.assert_array_equal(conv.multiplier, want)
    np.testing.assert_array_equal(conv.bias, inits[node.input[8]])


@pytest.mark.parametrize("name, pads", [("asym_pads_qop_s8_tensor", (1, 0, 2, 1)),
                                        ("same_upper_relu6_qop_s8", (0, 0, 1, 1)),
                                        ("same_lower_qdq_u8_tensor", (1, 1, 0, 0))])
def test_padding(name: str, pads: tuple[int, int, int, int]) -> None:
    conv = load_model(build(ZOO[name])).ops[0]
    assert isinstance(conv, ir.Conv) and conv.pads == pads


def test_maxpool_ceil_mode_becomes_end_padding() -> None:
    pool = load_model(build(ZOO["pool_ceil_qop_s8"])).ops[1]
    assert isinstance(pool, ir.MaxPool)
    assert pool.x.shape == (8, 5, 4) and pool.y.shape == (4, 2, 4)
    assert pool.pads == (0, 0, 1, 0)


def test_matmul_rows_are_pixels() -> None:
    graph = load_model(build(ZOO["matmul_rows_qop_s8"]))
    assert [op.x.shape for op in graph.ops] == [(1, 5, 12), (1, 5, 6)]
    assert graph.outputs[0].onnx_shape == (1, 5, 3)


def test_integer_boundaries_and_symbolic_batch() -> None:
    path = build(ZOO["int_io_qop_s8"])
    assert onnx.load(path).graph.input[0].type.tensor_type.shape.dim[0].dim_param
    graph = load_model(path)
    (inp,), (out,) = graph.inputs, graph.outputs
    assert not inp.is_float and not out.is_float and inp.tensor.signed
    assert inp.onnx_shape == (1, 2, 7, 7)


def test_bytes_and_path_agree() -> None:
    path = build(_SMALL)
    assert repr(load_model(path).ops) == repr(load_model(path.read_bytes()).ops)


def test_unused_opset_imports_are_ignored() -> None:
    model = onnx.load(build(_SMALL))
    model.opset_import.extend([onnx.helper.make_opsetid("ai.onnx.ml", 3),
                               onnx.helper.make_opsetid("com.example", 1)])
    assert _ops(load_model(model.SerializeToString())) == ["conv", "flatten", "conv"]


def _conv_then(model: onnx.ModelProto, node: onnx.NodeProto) -> None:
    """Insert ``node`` (one input, one output) right after the model's Conv."""
    graph = model.graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == conv.output[0]:
                n.input[i] = node.output[0]
    node.input[0] = conv.output[0]
    graph.node.insert(list(graph.node).index(conv) + 1, node)


@pytest.mark.parametrize("activation", ["Relu", "Clip"])
def test_explicit_activation_folds_into_clamp(activation: str) -> None:
    """Conv → Relu/Clip → QuantizeLinear in a QDQ graph becomes the conv's clamp."""
    spec = Spec((3, 6, 6), (Conv(4, 3), Flatten(), Linear(3)), per_channel=False)
    model = onnx.load(build(spec))
    if activation == "Relu":
        node = onnx.helper.make_node("Relu", ["?"], ["act"])
    else:
        model.graph.initializer.extend([onnx.numpy_helper.from_array(np.float32(0), "lo"),
                                        onnx.numpy_helper.from_array(np.float32(0.5), "hi")])
        node = onnx.helper.make_node("Clip", ["?", "lo", "hi"], ["act"])
    _conv_then(model, node)
    conv = load_model(model.SerializeToString()).ops[0]
    assert isinstance(conv, ir.Conv)
    y = conv.y
    high = y.qmax if activation == "Relu" else min(
        y.qmax, int(np.rint(np.float32(0.5) / y.scale)) + y.zero_point)
    assert conv.qrange == (max(y.qmin, y.zero_point), high)


# ------------------------------------------------------------------------------------------------
# Errors: one InputError, one line, saying what to do

def test_float_model_is_refused() -> None:
    with pytest.raises(InputError, match=r"float model; quantize it first.*quantize_static"):
        load_model(float_model(_SMALL))


@pytest.mark.parametrize("cut", [0.5, 0.1])
def test_truncated_file_is_refused(tmp_path, cut: float) -> None:
    data = build(_SMALL).read_bytes()
    path = tmp_path / "truncated.onnx"
    path.write_bytes(data[:int(len(data) * cut)])
    with pytest.raises(InputError, match=r"truncated\.onnx is not a valid ONNX file"):
        load_model(path)


def test_garbage_and_missing_files_are_refused(tmp_path) -> None:
    with pytest.raises(InputError, match="not a valid ONNX file"):
        load_model(b"\x08\x07 this is not protobuf " * 20)
    with pytest.raises(InputError, match="no such file"):
        load_model(tmp_path / "missing.onnx")


def test_unsupported_ops_are_named_together() -> None:
    q = onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"])
    dq = onnx.helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"])
    # (Sigmoid, Tanh and Exp are lookup tables now.)
    nodes = [q, dq, onnx.helper.make_node("Cos", ["xd"], ["a"]),
             onnx.helper.make_node("Sin", ["a"], ["b"]),
             onnx.helper.make_node("Softmax", ["b"], ["c"]),
             onnx.helper.make_node("Cos", ["c"], ["y"])]
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4])],
        [onnx.numpy_helper.from_array(np.float32(0.1), "s"),
         onnx.numpy_helper.from_array(np.uint8(128), "z")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    with pytest.raises(InputError) as info:
        load_model(model.SerializeToString())
    message = str(info.value)
    assert "Cos (×2)" in message and "Softmax" in message and "Sin" in message
    assert "\n" not in message


def test_int32_output_ops_are_explained() -> None:
    node = onnx.helper.make_node("MatMulInteger", ["x", "w"], ["y"])
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 4])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.INT32, [1, 3])],
        [onnx.numpy_helper.from_array(np.ones((4, 3), np.int8), "w")])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)])
    with pytest.raises(InputError, match=r"MatMulInteger.*int32 outputs.*8-bit outputs"):
        load_model(model.SerializeToString())


def test_symbolic_non_batch_dimension_is_refused() -> None:
    model = onnx.load(build(_SMALL))
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(InputError, match="'x' has symbolic dimension 'height' \\(axis 2\\)"):
        load_model(model.SerializeToString())


def test_non_uniform_weight_zero_points_are_refused() -> None:
    model = onnx.load(build(_SMALL))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    dq = next(n for n in model.graph.node if n.output[0] == conv.input[1])
    zp = next(i for i in model.graph.initializer if i.name == dq.input[2])
    zp.CopyFrom(onnx.numpy_helper.from_array(np.array([0, 1, 0, 2], np.int8), zp.name))
    with pytest.raises(InputError, match="per-channel weight zero points differ"):
        load_model(model.SerializeToString())


def test_standalone_requantization_is_a_lookup_table() -> None:
    """DequantizeLinear → QuantizeLinear with new parameters (float DQ then Q, as ONNX defines
    it) is the identity's lookup table. The comparison session runs the graph as written:
    onnxruntime's optimizer merges Q → DQ → Q → DQ into one pair at a new scale
    (DoubleQDQPairsRemover), which is not the model's arithmetic (docs/arithmetic.md)."""
    model = onnx.load(build(_SMALL))
    graph = model.graph
    out = graph.output[0].name
    last = next(n for n in graph.node if n.output[0] == out)
    graph.node.extend([
        onnx.helper.make_node("QuantizeLinear", ["mid", "s2", last.input[2]], ["q2"]),
        onnx.helper.make_node("DequantizeLinear", ["q2", "s2", last.input[2]], [out])])
    last.output[0] = "mid"
    graph.initializer.append(onnx.numpy_helper.from_array(np.float32(0.5), "s2"))
    data = model.SerializeToString()
    ir_graph = load_model(data)
    assert isinstance(ir_graph.ops[-1], ir.Lut) and ir_graph.ops[-1].function == "Requantize"
    x = random_inputs(_SMALL, 1, seed=3)[0]
    binding = ir_graph.inputs[0]
    golden = reference.run(ir_graph, [binding.quantize(x)])[ir_graph.outputs[0].tensor.name]
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
    want = session.run(None, {binding.onnx_name: x})[0]
    np.testing.assert_array_equal(ir_graph.outputs[0].dequantize(golden), want)


def test_relu_on_dequantized_conv_output_folds() -> None:
    """QuantizeLinear → DequantizeLinear → Relu after a conv narrows that conv's clamp."""
    spec = Spec((3, 6, 6), (Conv(4, 3), Flatten(), Linear(3)), per_channel=False, seed=1)
    model = onnx.load(build(spec))
    graph = model.graph
    conv = next(n for n in graph.node if n.op_type == "Conv")
    q = next(n for n in graph.node if n.input[0] == conv.output[0])
    dq = next(n for n in graph.node if n.input[0] == q.output[0])
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == dq.output[0]:
                n.input[i] = "relu"
    graph.node.insert(list(graph.node).index(dq) + 1,
                      onnx.helper.make_node("Relu", [dq.output[0]], ["relu"]))
    data = model.SerializeToString()
    loaded = load_model(data)
    first = loaded.ops[0]
    assert isinstance(first, ir.Conv) and first.qrange == (first.y.zero_point, 255)
    session = ortwitness.create_session(data)
    (inp,), (out,) = loaded.inputs, loaded.outputs
    for x in random_inputs(spec, 3, 9):
        got = out.dequantize(reference.run(loaded, [inp.quantize(x)])[out.tensor.name])
        assert got.tobytes() == session.run(None, {"x": x})[0].tobytes()


# ------------------------------------------------------------------------------------------------
# Grouped convolution, element-wise ops, layout ops, PT2E

@pytest.mark.parametrize("name", ["depthwise_s2_asym_qdq_u8", "depthwise_s2_asym_qop_s8"])
def test_depthwise_conv(name: str) -> None:
    conv = load_model(build(ZOO[name])).ops[0]
    assert isinstance(conv, ir.Conv) and conv.groups == 6 and conv.stride == (2, 2)
    assert conv.weight.shape == (3, 3, 1, conv.y.shape[2])
    assert conv.pads == ZOO[name].layers[0].pads


@pytest.mark.parametrize("name", ["residual_qdq_s8", "residual_qop_s8"])
def test_residual_add(name: str) -> None:
    graph = load_model(build(ELEMENTWISE_ZOO[name]))
    first, second = (op for op in graph.ops if isinstance(op, ir.Add))
    assert first.a is graph.ops[0].y and first.b is graph.ops[2].y
    assert (first.a_mult, first.b_mult, first.shift) == ir.add_multipliers(
        first.a.scale, first.b.scale, first.y.scale)
    # The ReLU6 after the first Add is its clamp (or its output range already).
    lo, hi = first.qrange
    assert lo >= first.y.zero_point and hi <= min(127, first.y.zero_point + round(
        6 / float(first.y.scale)))
    assert second.a is first.y


@pytest.mark.parametrize("name", ["avgpool_qdq_u8", "avgpool_qop_s8", "gap_qop_s8",
                                  "mean_flat_qop_u8", "mean_keepdim_qdq_s8"])
def test_average_pools(name: str) -> None:
    pool = next(op for op in load_model(build(ELEMENTWISE_ZOO[name])).ops
                if isinstance(op, ir.AvgPool))
    kh, kw = pool.kernel
    assert pool.multiplier == np.float32(np.float32(pool.x.scale / pool.y.scale)
                                         / np.float32(kh * kw))
    if name.startswith(("gap", "mean")):
        assert pool.kernel == pool.x.shape[:2] and pool.y.shape == (1, 1, pool.x.shape[2])


@pytest.mark.parametrize("name", ["concat_qdq_u8", "concat_qop_s8"])
def test_concat(name: str) -> None:
    graph = load_model(build(ELEMENTWISE_ZOO[name]))
    (cat,) = [op for op in graph.ops if isinstance(op, ir.Concat)]
    assert [t.shape[2] for t in cat.inputs] == [2, 4, 3] and cat.y.shape[2] == 9
    assert cat.inputs[1] is graph.ops[0].y
    assert cat.multipliers == tuple(np.float32(t.scale / cat.y.scale) for t in cat.inputs)


def _edit_first(model: onnx.ModelProto, op_type: str, **attrs) -> bytes:
    node = next(n for n in model.graph.node if n.op_type == op_type)
    for name, value in attrs.items():
        kept = [a for a in node.attribute if a.name != name]
        del node.attribute[:]
        node.attribute.extend([*kept, onnx.helper.make_attribute(name, value)])
    return model.SerializeToString()


def test_padded_average_pool_is_refused() -> None:
    model = onnx.load(build(ELEMENTWISE_ZOO["avgpool_qdq_u8"]))
    with pytest.raises(InputError, match="average pooling with padding is not supported"):
        load_model(_edit_first(model, "AveragePool", pads=[1, 1, 1, 1]))


def test_reduce_mean_over_channels_is_refused() -> None:
    model = onnx.load(build(ELEMENTWISE_ZOO["mean_keepdim_qdq_s8"]))
    node = next(n for n in model.graph.node if n.op_type == "ReduceMean")
    axes = next(i for i in model.graph.initializer if i.name == node.input[1])
    axes.CopyFrom(onnx.numpy_helper.from_array(np.array([1], np.int64), axes.name))
    with pytest.raises(InputError, match=r"only the mean over H and W \(axes 2, 3\)"):
        load_model(model.SerializeToString())


def _after_first_conv_q(model: onnx.ModelProto, nodes: list[onnx.NodeProto], out: str) -> bytes:
    """Insert ``nodes`` (reading the first conv's QuantizeLinear output, writing ``out``)."""
    graph = model.graph
    conv = next(n for n in graph.node if n.op_type == "QLinearConv")
    for n in graph.node:
        for i, name in enumerate(n.input):
            if name == conv.output[0]:
                n.input[i] = out
    position = list(graph.node).index(conv) + 1
    for offset, node in enumerate(nodes):
        graph.node.insert(position + offset, node)
    return model.SerializeToString()


def test_layout_only_ops_pass_through() -> None:
    """Unsqueeze/Squeeze/Transpose that move no data leave the IR unchanged."""
    spec = Spec((3, 6, 6), (Conv(4, 6), Flatten(), Linear(3)), fmt="qop")
    model = onnx.load(build(spec))
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    model.graph.initializer.append(onnx.numpy_helper.from_array(np.array([2, 3], np.int64),
                                                                "ax"))
    # [1, 4, 1, 1] → [1, 4, 1, 1] → [1, 4] → [1, 4, 1, 1]: the channels never move.
    nodes = [onnx.helper.make_node("Transpose", [conv.output[0]], ["t"], perm=[0, 1, 3, 2]),
             onnx.helper.make_node("Squeeze", ["t", "ax"], ["s"]),
             onnx.helper.make_node("Unsqueeze", ["s", "ax"], ["u"])]
    before = _ops(load_model(build(spec)))
    assert _ops(load_model(_after_first_conv_q(model, nodes, "u"))) == before


def test_data_moving_transpose_is_refused() -> None:
    spec = Spec((3, 6, 6), (Conv(4, 3), Flatten(), Linear(3)), fmt="qop")
    model = onnx.load(build(spec))
    conv = next(n for n in model.graph.node if n.op_type == "QLinearConv")
    node = onnx.helper.make_node("Transpose", [conv.output[0]], ["t"], perm=[0, 2, 3, 1])
    with pytest.raises(InputError, match=r"\[1, 4, 4, 4\] → \[1, 4, 4, 4\] moves data"):
        load_model(_after_first_conv_q(model, [node], "t"))


def test_pt2e_float_bias_and_explicit_relu() -> None:
    """PT2E keeps a float bias (quantized as ORT does) and an explicit Relu (the clamp)."""
    pytest.importorskip("torchao", reason="PT2E quantization needs torchao")
    spec = Spec((4, 6, 6), (Conv(4, 3, padding=1), ReLU(), Residual(
        (Conv(4, 3, padding=1), ReLU(), Conv(4, 3, padding=1)), act="relu"),
        GlobalAvgPool(), Flatten(), Linear(5)), fmt="pt2e", signed=True)
    path = build(spec)
    model = onnx.load(path)
    inits = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    node = next(n for n in model.graph.node if n.op_type == "Conv")
    graph = load_model(path)
    conv = graph.ops[0]
    assert isinstance(conv, ir.Conv)
    w_scale = inits[next(n for n in model.graph.node if n.output[0] == node.input[1]).input[1]]
    want = np.rint(inits[node.input[2]] / (conv.x.scale * w_scale).astype(np.float32))
    np.testing.assert_array_equal(conv.bias, want.astype(np.int32))
    assert conv.qrange[0] == -128 and conv.y.zero_point == -128
    (add,) = [op for op in graph.ops if isinstance(op, ir.Add)]
    assert add.qrange[0] >= add.y.zero_point
    assert _ops(graph) == ["conv", "conv", "conv", "add", "avgpool", "conv"]


def test_pt2e_float_output_is_refused() -> None:
    """torchao's X86 Inductor quantizer leaves the last Linear's output in float."""
    pytest.importorskip("torchao", reason="PT2E quantization needs torchao")
    spec = Spec((13,), (Linear(9), ReLU(), Linear(5)), fmt="pt2e")
    with pytest.raises(InputError, match="output 'y' is neither an 8-bit tensor nor the "
                                         "DequantizeLinear of one"):
        load_model(build(spec))
