"""The frontend refuses, in one line and before any output, every model the NPU would compute
wrongly or could not hold: inconsistent quantization parameters, unrepresentable multipliers,
accumulators that can leave int32, corrupt tensors and names, broken graphs, and sizes beyond
the limits (checked before anything is allocated)."""

from __future__ import annotations

import copy
import json
import pathlib
import subprocess
import sys

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest

from codesign import ir, reference
from codesign.errors import InputError
from codesign.frontend import limits, load_model
from codesign.frontend.ranges import accumulator_range

_MODELS = pathlib.Path(__file__).parent.parent / "models"
_QDQ = _MODELS / "digits_cnn_qdq.onnx"     # per-channel weights and bias scales, 15 kB
_INT32_MAX = 2 ** 31 - 1


def _refused(model: onnx.ModelProto | bytes | pathlib.Path, *words: str) -> str:
    """Load ``model``, expect an InputError on one line containing ``words``; its message."""
    data = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    with pytest.raises(InputError) as info:
        load_model(data)
    message = str(info.value)
    assert len(message.splitlines()) == 1, message
    for word in words:
        assert word in message, message
    return message


def _init(model: onnx.ModelProto, name: str) -> onnx.TensorProto:
    return next(t for t in model.graph.initializer if t.name == name)


def _set(model: onnx.ModelProto, name: str, value: np.ndarray) -> None:
    _init(model, name).CopyFrom(onnx.numpy_helper.from_array(value, name))


def _qdq() -> onnx.ModelProto:
    return onnx.load(_QDQ)


# ------------------------------------------------------------------------------------------------
# Hand-built one-layer models with known arithmetic

def _q_dq(x: str, scale: str, zp: str, out: str) -> list[onnx.NodeProto]:
    return [onnx.helper.make_node("QuantizeLinear", [x, scale, zp], [f"{out}_q"]),
            onnx.helper.make_node("DequantizeLinear", [f"{out}_q", scale, zp], [out])]


def _model(nodes, inputs, output, shape, inits) -> onnx.ModelProto:
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, s)
                     for n, s in inputs],
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, shape)],
        [onnx.numpy_helper.from_array(np.asarray(v), k) for k, v in inits.items()])
    return onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)],
                                  ir_version=8)


def _conv_model(weight: np.ndarray, bias: np.ndarray, size: tuple[int, int],
                pads: tuple[int, ...] = (0, 0, 0, 0), x_scale: float = 0.02,
                w_scale: float = 0.01, y_scale: float = 0.05) -> onnx.ModelProto:
    """uint8 x (zero point 0) → QDQ Conv with an int32 bias at scale x_scale · w_scale."""
    cout, cin, kh, kw = weight.shape
    oh, ow = size[0] + pads[0] + pads[2] - kh + 1, size[1] + pads[1] + pads[3] - kw + 1
    inits = {"xs": np.float32(x_scale), "xz": np.uint8(0), "ws": np.float32(w_scale),
             "wz": np.int8(0), "w": weight.astype(np.int8), "b": bias.astype(np.int32),
             "bs": np.float32(np.float32(x_scale) * np.float32(w_scale)), "bz": np.int32(0),
             "ys": np.float32(y_scale), "yz": np.uint8(0)}
    nodes = [*_q_dq("x", "xs", "xz", "xd"),
             onnx.helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"]),
             onnx.helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"]),
             onnx.helper.make_node("Conv", ["xd", "wd", "bd"], ["c"], name="conv",
                                   pads=list(pads)),
             *_q_dq("c", "ys", "yz", "y")]
    return _model(nodes, [("x", [1, cin, *size])], "y", [1, cout, oh, ow], inits)


def _two_input_model(op: str, a_scale: float, b_scale: float, y_scale: float,
                     **attrs) -> onnx.ModelProto:
    """Two uint8-quantized [1, 2, 4, 4] inputs through a QDQ Add or Concat."""
    inits = {"as": np.float32(a_scale), "bs": np.float32(b_scale), "ys": np.float32(y_scale),
             "z": np.uint8(128)}
    nodes = [*_q_dq("a", "as", "z", "ad"), *_q_dq("b", "bs", "z", "bd"),
             onnx.helper.make_node(op, ["ad", "bd"], ["s"], name="eltwise", **attrs),
             *_q_dq("s", "ys", "z", "y")]
    channels = 4 if op == "Concat" else 2
    return _model(nodes, [("a", [1, 2, 4, 4]), ("b", [1, 2, 4, 4])], "y",
                  [1, channels, 4, 4], inits)


def _avgpool_model(x_scale: float, y_scale: float) -> onnx.ModelProto:
    inits = {"xs": np.float32(x_scale), "ys": np.float32(y_scale), "z": np.uint8(0)}
    nodes = [*_q_dq("x", "xs", "z", "xd"),
             onnx.helper.make_node("AveragePool", ["xd"], ["p"], name="pool",
                                   kernel_shape=[2, 2], strides=[2, 2]),
             *_q_dq("p", "ys", "z", "y")]
    return _model(nodes, [("x", [1, 2, 4, 4])], "y", [1, 2, 2, 2], inits)


def test_hand_built_models_load() -> None:
    """The models the tests below break are accepted as built."""
    load_model(_conv_model(np.ones((2, 3, 3, 3)), np.zeros(2), (5, 5)).SerializeToString())
    for op, attrs in (("Add", {}), ("Concat", {"axis": 1})):
        load_model(_two_input_model(op, 0.1, 0.05, 0.2, **attrs).SerializeToString())
    load_model(_avgpool_model(0.1, 0.1).SerializeToString())


# ------------------------------------------------------------------------------------------------
# 1. Bias scale consistency

_BIAS = "0.bias"                       # the bias DequantizeLinear's output, read by the Conv
_BIAS_SCALE = "0.bias_quantized_scale"  # per channel, [8]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 0.0, -1.0, 2.0, 1 + 2 ** -18])
def test_bias_scale_must_be_x_scale_times_w_scale(value: float) -> None:
    """onnxruntime's fused kernels drop the bias scale but its float path does not: a scale
    other than x_scale · w_scale means two results, and is refused naming the bias."""
    model = _qdq()
    scale = onnx.numpy_helper.to_array(_init(model, _BIAS_SCALE)).copy()
    scale[3] = scale[3] * np.float32(value) if np.isfinite(value) and value > 0 else value
    _set(model, _BIAS_SCALE, scale)
    _refused(model, repr(_BIAS), "x_scale · w_scale", "channel 3")


def test_bias_scale_within_float32_rounding_is_accepted() -> None:
    model = _qdq()
    scale = onnx.numpy_helper.to_array(_init(model, _BIAS_SCALE))
    _set(model, _BIAS_SCALE, np.nextafter(scale, np.float32(np.inf)))
    load_model(model.SerializeToString())


@pytest.mark.parametrize("shape", [(), (2,), (8, 1)])
def test_bias_scale_of_wrong_shape_is_refused(shape: tuple[int, ...]) -> None:
    """A per-tensor scale cannot match per-channel weight scales; other shapes are malformed."""
    model = _qdq()
    scale = onnx.numpy_helper.to_array(_init(model, _BIAS_SCALE))
    _set(model, _BIAS_SCALE, np.resize(scale, shape).astype(np.float32))
    _refused(model, repr(_BIAS))


# ------------------------------------------------------------------------------------------------
# 2. Requant multipliers and zero points

@pytest.mark.parametrize("y_scale, words", [
    (1e-12, "out of range"),           # M = 2e-4 / 1e-12 >= 2**24
    (1e36, "subnormal"),               # M = 2e-4 / 1e36 < 2**-126
])
def test_conv_multiplier_outside_the_requantizer_is_refused(y_scale: float, words: str) -> None:
    model = _conv_model(np.ones((2, 3, 3, 3)), np.zeros(2), (5, 5), y_scale=y_scale)
    _refused(model, "layer 'conv'", "requant multiplier", words)


@pytest.mark.parametrize("x_scale, y_scale", [(3e38, 1e-30), (1e-30, 3e38)])
def test_multipliers_overflowing_float32_are_refused(x_scale: float, y_scale: float) -> None:
    """Huge scale ratios overflow to inf or underflow to 0 in float32, quietly (no warning
    turned error), and are refused."""
    _refused(_avgpool_model(x_scale, y_scale), "layer 'pool'", "requant multiplier")
    _refused(_two_input_model("Add", x_scale, x_scale, y_scale), "layer 'eltwise'")


def test_subnormal_scale_product_is_refused() -> None:
    model = _conv_model(np.ones((2, 3, 3, 3)), np.zeros(2), (5, 5), x_scale=1e-20,
                        w_scale=1e-20, y_scale=1e-30)
    _refused(model, "layer 'conv'", "not a normal float32")


@pytest.mark.parametrize("scale", [1e-40, 1e-45])
def test_subnormal_activation_scale_is_refused(scale: float) -> None:
    _refused(_avgpool_model(scale, scale), "scale must be a positive, finite, normal")


def test_avgpool_multiplier_outside_the_requantizer_is_refused() -> None:
    _refused(_avgpool_model(1.0, 1e-37), "layer 'pool'", "requant multiplier")


def test_concat_multiplier_outside_the_requantizer_is_refused() -> None:
    _refused(_two_input_model("Concat", 1.0, 1.0, 1e-30, axis=1), "layer 'eltwise'",
             "requant multiplier")


def test_add_operand_scaled_to_nothing_is_refused() -> None:
    """A scale ratio below 2**-15 of the other's rounds the operand's integer ratio to 0."""
    _refused(_two_input_model("Add", 1.0, 1e-6, 1.0), "layer 'eltwise'", "ignored")


@pytest.mark.parametrize("output_dtype", [onnx.TensorProto.INT16, onnx.TensorProto.UINT16])
def test_quantize_output_dtype_must_be_8_bit(output_dtype: int) -> None:
    """opset 21's output_dtype without a zero point picks the type; only 8-bit types are."""
    model = _avgpool_model(0.1, 0.1)
    model.opset_import[0].version = 21
    model.ir_version = 10
    node = model.graph.node[-2]
    assert node.op_type == "QuantizeLinear"
    del node.input[2:]
    node.attribute.append(onnx.helper.make_attribute("output_dtype", output_dtype))
    del model.graph.node[-1].input[2:]
    _refused(model, "output_dtype")


@pytest.mark.parametrize("bound", [[np.nan], [0.0, 6.0]])
def test_clip_bound_must_be_one_number(bound: list[float]) -> None:
    model = _conv_model(np.ones((2, 3, 3, 3)), np.zeros(2), (5, 5))
    model.graph.initializer.append(onnx.numpy_helper.from_array(
        np.asarray(bound, np.float32).reshape(() if len(bound) == 1 else -1), "lo"))
    conv = next(i for i, n in enumerate(model.graph.node) if n.op_type == "Conv")
    model.graph.node[conv].output[0] = "c0"
    model.graph.node.insert(conv + 1, onnx.helper.make_node("Clip", ["c0", "lo"], ["c"],
                                                            name="clip"))
    _refused(model, "node 'clip'")


# ------------------------------------------------------------------------------------------------
# 3. Tensor data integrity and names

_WEIGHT = "0.weight_quantized"


@pytest.mark.parametrize("data_type", [0, 99, onnx.TensorProto.BFLOAT16,
                                       onnx.TensorProto.FLOAT8E4M3FN, onnx.TensorProto.INT4,
                                       onnx.TensorProto.STRING])
def test_unsupported_data_type_is_refused(data_type: int) -> None:
    model = _qdq()
    _init(model, _WEIGHT).data_type = data_type
    _refused(model, f"initializer {_WEIGHT!r}", "data type")


@pytest.mark.parametrize("cut", [1, 7])
def test_raw_data_shorter_or_longer_than_dims_is_refused(cut: int) -> None:
    model = _qdq()
    t = _init(model, _WEIGHT)
    t.raw_data = t.raw_data[:-cut]
    _refused(model, f"initializer {_WEIGHT!r}", "corrupt")
    t.raw_data += b"\0" * (2 * cut)
    _refused(model, f"initializer {_WEIGHT!r}", "corrupt")


def test_typed_data_count_must_match_dims() -> None:
    model = _qdq()
    t = _init(model, _BIAS_SCALE)
    values = onnx.numpy_helper.to_array(t).tolist()
    t.ClearField("raw_data")
    t.float_data.extend(values[:-1])
    _refused(model, f"initializer {_BIAS_SCALE!r}", "holds 7 values")


@pytest.mark.parametrize("dims", [[-1, 1, 3, 3], [2 ** 31, 1, 3, 3], [2 ** 40, 2 ** 40]])
def test_bad_or_huge_dims_are_refused(dims: list[int]) -> None:
    model = _qdq()
    t = _init(model, _WEIGHT)
    del t.dims[:]
    t.dims.extend(dims)
    _refused(model, f"initializer {_WEIGHT!r}")


@pytest.mark.parametrize("mutate", ["data_type", "raw_data"])
def test_constant_node_with_corrupt_tensor_is_refused(mutate: str) -> None:
    """The same checks hold for a Constant node's tensor as for an initializer."""
    model = _qdq()
    t = _init(model, _WEIGHT)
    value = copy.deepcopy(t)
    model.graph.initializer.remove(t)
    if mutate == "data_type":
        value.data_type = 99
    else:
        value.raw_data = value.raw_data[:-1]
    model.graph.node.insert(0, onnx.helper.make_node("Constant", [], [_WEIGHT], name="const",
                                                     value=value))
    _refused(model, "attribute 'value' of node 'const'")


@pytest.mark.parametrize("name", ["0.weight_DequantizeLinear_Output", _WEIGHT, "logits"])
@pytest.mark.parametrize("bad", [b"\xff", b"\xed\xa0\x80", b"\xc3"])
def test_invalid_utf8_names_are_refused(name: str, bad: bytes) -> None:
    """protobuf hands invalid UTF-8 strings out as bytes; refused before anything uses them."""
    data = _QDQ.read_bytes()
    encoded = name.encode()
    assert encoded in data
    _refused(data.replace(encoded, (bad * len(encoded))[:len(encoded)]), "not valid UTF-8")


@pytest.mark.parametrize("where", ["node", "graph", "value_info", "initializer"])
def test_names_with_control_characters_are_refused(where: str) -> None:
    model = _qdq()
    if where == "node":
        model.graph.node[0].name = "conv\n0"
    elif where == "graph":
        model.graph.name = "g\x00"
    elif where == "value_info":
        model.graph.value_info.append(onnx.helper.make_tensor_value_info(
            "v\r", onnx.TensorProto.FLOAT, [1]))
    else:
        model.graph.initializer[0].name = "w\u2028"
    _refused(model, "control or line-break")


@pytest.mark.parametrize("elem_type", [0, 99])
def test_undefined_element_type_is_refused(elem_type: int) -> None:
    """onnx's shape inference raises ValueError on these; refused before it."""
    model = _qdq()
    model.graph.input[0].type.tensor_type.elem_type = elem_type
    _refused(model, "'x'", "element type")


def test_invalid_utf8_string_attribute_is_refused() -> None:
    model = _qdq()
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.attribute.append(onnx.helper.make_attribute("auto_pad", b"\xffSAME"))
    _refused(model, "auto_pad")


def test_opset_newer_than_onnx_is_refused() -> None:
    model = _qdq()
    model.opset_import[0].version = 99
    _refused(model, "opset 99")


def test_odd_file_name_is_escaped(tmp_path: pathlib.Path) -> None:
    """A file name's control characters never reach the graph name (report, listing) or a
    message as themselves."""
    path = tmp_path / "kws\nv2.onnx"
    path.write_bytes(_QDQ.read_bytes())
    graph = load_model(path)
    assert graph.name == "kws\\nv2"
    json.dumps(graph.name, ensure_ascii=False).encode()


# ------------------------------------------------------------------------------------------------
# 4. Graph structure

def test_graph_without_outputs_is_refused() -> None:
    model = _qdq()
    model.graph.ClearField("output")
    _refused(model, "no outputs")


def test_duplicate_output_is_refused() -> None:
    model = _qdq()
    model.graph.output.append(copy.deepcopy(model.graph.output[0]))
    _refused(model, "listed twice")


@pytest.mark.parametrize("mutate", ["overwrite_initializer", "overwrite_input", "cycle",
                                    "unproduced"])
def test_broken_graph_is_refused(mutate: str) -> None:
    """What onnx.checker catches stays refused in one line."""
    model = _qdq()
    g = model.graph
    if mutate == "overwrite_initializer":
        g.node[-1].output[0] = g.initializer[0].name
    elif mutate == "overwrite_input":
        g.node[-1].output[0] = g.input[0].name
    elif mutate == "cycle":
        g.node[0].input[0] = g.node[-1].output[0]
    else:
        g.output[0].name = "nothing"
    _refused(model, "not a valid ONNX file")


# ------------------------------------------------------------------------------------------------
# 5. The int32 accumulator range

def _one_tap(bias: int, weight: int = 127, pads: tuple[int, ...] = (0, 0, 0, 0),
             kernel: int = 1, size: int = 1) -> onnx.ModelProto:
    """One channel, uint8 x with zero point 0: the accumulator's maximum is
    bias + 255 · Σ(weights of the taps in bounds)."""
    w = np.full((1, 1, kernel, kernel), weight)
    return _conv_model(w, np.array([bias]), (size, size), pads)


def test_accumulator_bound_is_exact() -> None:
    """At the bound the model is accepted and the golden model reaches int32's maximum without
    overflow; one more and it is refused, naming the layer, the bound and int32."""
    edge = _INT32_MAX - 255 * 127
    graph = load_model(_one_tap(edge).SerializeToString())
    (conv,) = graph.ops
    assert isinstance(conv, ir.Conv)
    least, most = accumulator_range(conv)
    assert (int(least[0]), int(most[0])) == (edge, _INT32_MAX)
    x = np.full(graph.inputs[0].tensor.shape, 255, np.uint8)
    assert int(reference.conv_accumulator(conv, x).max()) == _INT32_MAX
    reference.run(graph, [x])
    _refused(_one_tap(edge + 1), "layer 'conv'", str(_INT32_MAX + 1), "int32")


def test_accumulator_bound_below_int32_minimum() -> None:
    _refused(_one_tap(-(2 ** 31) + 255 * 127 - 1, weight=-127), str(-(2 ** 31) - 1))


def test_padding_taps_never_count() -> None:
    """A 3×3 kernel on a 1×1 input with padding 1 only ever sees its centre tap in bounds."""
    edge = _INT32_MAX - 255 * 127
    load_model(_one_tap(edge, pads=(1, 1, 1, 1), kernel=3).SerializeToString())
    _refused(_one_tap(edge + 1, pads=(1, 1, 1, 1), kernel=3), "int32")


def test_accumulator_range_is_reached() -> None:
    """Each channel's bounds are accumulators that the golden model computes on some input."""
    rng = np.random.default_rng(5)
    weight = rng.integers(-128, 128, (3, 2, 3, 3))
    graph = load_model(_conv_model(weight, rng.integers(-1000, 1000, 3), (4, 5),
                                   pads=(1, 0, 2, 1)).SerializeToString())
    (conv,) = graph.ops
    assert isinstance(conv, ir.Conv)
    least, most = accumulator_range(conv)
    w = conv.weight.astype(np.int64) - conv.w_zero_point
    for n in range(3):
        high = reference.conv_accumulator(conv, _extreme_input(conv, w[..., n]))
        low = reference.conv_accumulator(conv, _extreme_input(conv, -w[..., n]))
        assert (int(low[..., n].min()), int(high[..., n].max())) == (least[n], most[n])


def _extreme_input(conv: ir.Conv, signed_weight: np.ndarray) -> np.ndarray:
    """The input that makes the window at output (1, 1), which lies wholly inside the input,
    greatest for weights ``signed_weight`` [KH, KW, Cin]: 255 where a weight is positive."""
    h, w, c = conv.x.shape
    x = np.zeros((h, w, c), np.uint8)
    top, left = conv.pads[0], conv.pads[1]
    for ky in range(signed_weight.shape[0]):
        for kx in range(signed_weight.shape[1]):
            x[ky - top + 1, kx - left + 1] = np.where(signed_weight[ky, kx] > 0, 255, 0)
    return x


def test_bundled_models_are_not_refused() -> None:
    for path in sorted([*_MODELS.glob("*_q*.onnx"), *_MODELS.glob("mlperf/*.onnx")]):
        load_model(path)


# ------------------------------------------------------------------------------------------------
# 6. Limits before allocation

# The peak resident size of the probe's own memory: VmHWM starts afresh at exec, whereas
# getrusage's ru_maxrss keeps the forking pytest process's peak.
_PROBE = """
import pathlib, sys, time
from codesign.errors import InputError
from codesign.frontend import load_model
start = time.perf_counter()
try:
    load_model(sys.argv[1])
    print("accepted")
except InputError as e:
    print(e)
print(time.perf_counter() - start)
status = pathlib.Path("/proc/self/status").read_text()
print(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
"""


@pytest.mark.parametrize("dims", [[1, 1, 1, 2 ** 24], [1, 1, 2 ** 20, 2 ** 20]])
def test_huge_declared_input_is_refused_fast_and_small(tmp_path: pathlib.Path,
                                                       dims: list[int]) -> None:
    """A 15 kB model declaring a huge input: refused in well under a second and 200 MB (the
    whole process, imports included, in a fresh interpreter)."""
    if not pathlib.Path("/proc/self/status").is_file():
        pytest.skip("measures the peak resident size from Linux's /proc")
    model = _qdq()
    for dim, value in zip(model.graph.input[0].type.tensor_type.shape.dim, dims, strict=True):
        dim.dim_value = value
    path = tmp_path / "huge.onnx"
    onnx.save(model, path)
    assert path.stat().st_size < 16_000
    out = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True,
                         text=True, check=True).stdout.splitlines()
    message, seconds, max_rss_kib = out[0], float(out[1]), int(out[2])
    assert "more than codesign's limit" in message
    assert seconds < 0.5
    assert max_rss_kib < 200 * 1024


def test_file_over_the_size_limit_is_refused_unread(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "big.onnx"
    with open(path, "wb") as f:
        f.truncate(limits.MAX_MODEL_BYTES + 1)       # sparse: nothing is written or read
    with pytest.raises(InputError, match="more than codesign's limit"):
        load_model(path)


def test_too_many_nodes_is_refused() -> None:
    model = _qdq()
    last = model.graph.output[0].name
    extra = [onnx.helper.make_node("Identity", [f"i{k}" if k else last], [f"i{k + 1}"])
             for k in range(limits.MAX_NODES)]
    model.graph.node.extend(extra)
    _refused(model, "nodes, more than")


def test_huge_value_info_is_refused() -> None:
    model = _qdq()
    model.graph.value_info.append(onnx.helper.make_tensor_value_info(
        "v", onnx.TensorProto.FLOAT, [2 ** 20, 2 ** 20]))
    _refused(model, "'v'", "more than")


def _external(tmp_path: pathlib.Path, **entries: str) -> pathlib.Path:
    """The bundled model with its first conv's weight in ``w.bin`` (entries override)."""
    model = _qdq()
    t = _init(model, _WEIGHT)
    (tmp_path / "w.bin").write_bytes(b"\0" * 16 + t.raw_data)
    fields = {"location": "w.bin", "offset": "16", "length": str(len(t.raw_data)), **entries}
    t.ClearField("raw_data")
    t.data_location = onnx.TensorProto.EXTERNAL
    for key, value in fields.items():
        t.external_data.add(key=key, value=value)
    path = tmp_path / "m.onnx"
    onnx.save(model, path)
    return path


def test_external_data_is_read_after_the_checks(tmp_path: pathlib.Path) -> None:
    want = load_model(_QDQ).ops[0]
    got = load_model(_external(tmp_path)).ops[0]
    assert isinstance(want, ir.Conv) and isinstance(got, ir.Conv)
    np.testing.assert_array_equal(got.weight, want.weight)


@pytest.mark.parametrize("entries, words", [
    ({"length": "100000"}, "does not match"),
    ({"offset": "1000000"}, "does not match"),
    ({"offset": "-1"}, "does not match"),
    ({"offset": "x"}, "non-integer"),
    ({"location": "../w.bin"}, "outside the model's directory"),
    ({"location": "/etc/passwd"}, "outside the model's directory"),
    ({"location": "missing.bin"}, "does not exist"),
    ({"colour": "red"}, "external-data keys"),
])
def test_bad_external_data_is_refused(tmp_path: pathlib.Path, entries: dict[str, str],
                                      words: str) -> None:
    with pytest.raises(InputError, match=words):
        load_model(_external(tmp_path, **entries))


def test_external_data_needs_a_path(tmp_path: pathlib.Path) -> None:
    _refused(_external(tmp_path).read_bytes(), "needs the model's path")


def test_padding_beyond_the_activation_limit_is_refused() -> None:
    """Huge pads would make the golden model build an enormous padded input."""
    model = _conv_model(np.ones((1, 1, 3, 3)), np.zeros(1), (8, 8))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    conv.attribute[0].CopyFrom(onnx.helper.make_attribute("pads", [2, 2, 2 ** 12, 2 ** 12]))
    conv.attribute.append(onnx.helper.make_attribute("strides", [2 ** 11, 2 ** 11]))
    model.graph.output[0].type.tensor_type.shape.ClearField("dim")
    _refused(model, "padded input")
