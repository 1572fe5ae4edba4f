"""One-function QDQ / QOperator models over all 256 codes, for the lookup-table tests."""

from __future__ import annotations

import numpy as np
import onnx
import onnx.helper as oh


def _nodes(op: str, rng) -> tuple[list, list, int]:
    """(nodes, initializers, opset) computing ``f`` from ``x`` (the float nodes between
    DequantizeLinear and QuantizeLinear); ``rng`` draws attributes and constants."""
    c = oh.make_tensor
    F = onnx.TensorProto.FLOAT
    if op == "Sigmoid":
        return [oh.make_node("Sigmoid", ["x"], ["f"])], [], 13
    if op == "Tanh":
        return [oh.make_node("Tanh", ["x"], ["f"])], [], 13
    if op == "HardSigmoid":
        alpha, beta = float(rng.uniform(0.05, 0.5)), float(rng.uniform(0.2, 0.8))
        return [oh.make_node("HardSigmoid", ["x"], ["f"], alpha=alpha, beta=beta)], [], 13
    if op == "HardSwish":
        return [oh.make_node("HardSwish", ["x"], ["f"])], [], 14
    if op == "LeakyRelu":
        alpha = float(rng.choice([0.01, 0.1, 0.2, rng.uniform(0.001, 0.5)]))
        return [oh.make_node("LeakyRelu", ["x"], ["f"], alpha=alpha)], [], 13
    if op == "SigmoidRelu6":      # a function DAG with scalar constants and a fused Clip
        nodes = [oh.make_node("Sigmoid", ["x"], ["s"]),
                 oh.make_node("Mul", ["x", "s"], ["m"]),          # SiLU
                 oh.make_node("Mul", ["m", "k"], ["n"]),
                 oh.make_node("Sub", ["n", "b"], ["d"]),
                 oh.make_node("Clip", ["d", "lo", "hi"], ["f"])]
        inits = [c("k", F, [], [float(rng.uniform(0.5, 2))]),
                 c("b", F, [], [float(rng.uniform(-1, 1))]),
                 c("lo", F, [], [0.0]), c("hi", F, [], [6.0])]
        return nodes, inits, 13
    if op == "TanhRelu":
        return [oh.make_node("Tanh", ["x"], ["t"]), oh.make_node("Relu", ["t"], ["f"])], [], 13
    raise ValueError(op)


QDQ_OPS = ["Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "SigmoidRelu6",
           "TanhRelu"]


def qdq_model(op: str, x_scale, x_zp: int, x_signed: bool, y_scale, y_zp: int,
              y_signed: bool, seed: int = 0, n: int = 256) -> bytes:
    """uint8/int8 input [1, n] → DequantizeLinear → ``op`` → QuantizeLinear → 8-bit output."""
    rng = np.random.default_rng(seed)
    nodes, inits, opset = _nodes(op, rng)
    xt = onnx.TensorProto.INT8 if x_signed else onnx.TensorProto.UINT8
    yt = onnx.TensorProto.INT8 if y_signed else onnx.TensorProto.UINT8
    F = onnx.TensorProto.FLOAT
    inits = inits + [oh.make_tensor("xs", F, [], [float(x_scale)]),
                     oh.make_tensor("xz", xt, [], [x_zp]),
                     oh.make_tensor("ys", F, [], [float(y_scale)]),
                     oh.make_tensor("yz", yt, [], [y_zp])]
    graph = oh.make_graph(
        [oh.make_node("DequantizeLinear", ["q", "xs", "xz"], ["x"])] + nodes
        + [oh.make_node("QuantizeLinear", ["f", "ys", "yz"], ["y"])],
        f"lut_{op}", [oh.make_tensor_value_info("q", xt, [1, n])],
        [oh.make_tensor_value_info("y", yt, [1, n])], inits)
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", opset)])
    model.ir_version = 8
    return model.SerializeToString()


def qop_model(op: str, x_scale, x_zp: int, signed: bool, y_scale, y_zp: int,
              alpha: float = 0.01, n: int = 256) -> bytes:
    """com.microsoft.QLinearSigmoid / QLinearLeakyRelu on an 8-bit [1, n] input."""
    t = onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8
    F = onnx.TensorProto.FLOAT
    attrs = {"alpha": alpha} if op == "QLinearLeakyRelu" else {}
    graph = oh.make_graph(
        [oh.make_node(op, ["q", "xs", "xz", "ys", "yz"], ["y"], domain="com.microsoft",
                      **attrs)],
        f"lut_{op}", [oh.make_tensor_value_info("q", t, [1, n])],
        [oh.make_tensor_value_info("y", t, [1, n])],
        [oh.make_tensor("xs", F, [], [float(x_scale)]), oh.make_tensor("xz", t, [], [x_zp]),
         oh.make_tensor("ys", F, [], [float(y_scale)]), oh.make_tensor("yz", t, [], [y_zp])])
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 13),
                                                oh.make_opsetid("com.microsoft", 1)])
    model.ir_version = 8
    return model.SerializeToString()


def all_codes(signed: bool) -> np.ndarray:
    """Every raw byte 0..255 as a [1, 256] input (the table's index order)."""
    raw = np.arange(256, dtype=np.uint8)
    return (raw.view(np.int8) if signed else raw).reshape(1, 256)
