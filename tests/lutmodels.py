"""One-function QDQ / QOperator models over all 256 codes, for the lookup-table tests."""

from __future__ import annotations

import pathlib
import warnings

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
    if op == "Exp":
        return [oh.make_node("Exp", ["x"], ["f"])], [], 13
    if op == "Erf":
        return [oh.make_node("Erf", ["x"], ["f"])], [], 13
    if op == "Gelu":
        return [oh.make_node("Gelu", ["x"], ["f"])], [], 20
    if op == "GeluTanh":
        return [oh.make_node("Gelu", ["x"], ["f"], approximate="tanh")], [], 20
    if op == "MsGelu":
        return [oh.make_node("Gelu", ["x"], ["f"], domain="com.microsoft")], [], 13
    if op == "GeluErf":          # torch's GELU below opset 20: x · 0.5 · (1 + erf(x / √2))
        nodes = [oh.make_node("Div", ["x", "r2"], ["d"]), oh.make_node("Erf", ["d"], ["e"]),
                 oh.make_node("Add", ["e", "one"], ["p"]), oh.make_node("Mul", ["x", "p"], ["m"]),
                 oh.make_node("Mul", ["m", "half"], ["f"])]
        inits = [c("r2", F, [], [1.4142135381698608]), c("one", F, [], [1.0]),
                 c("half", F, [], [0.5])]
        return nodes, inits, 13
    if op == "Requantize":       # DequantizeLinear straight into QuantizeLinear at new params
        return [], [], 13
    if op == "TanhRelu":
        return [oh.make_node("Tanh", ["x"], ["t"]), oh.make_node("Relu", ["t"], ["f"])], [], 13
    raise ValueError(op)


QDQ_OPS = ["Sigmoid", "Tanh", "HardSigmoid", "HardSwish", "LeakyRelu", "SigmoidRelu6",
           "TanhRelu", "Erf", "Gelu", "GeluTanh", "MsGelu", "GeluErf", "Exp", "Requantize"]


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
        + [oh.make_node("QuantizeLinear", ["f" if nodes else "x", "ys", "yz"], ["y"])],
        f"lut_{op}", [oh.make_tensor_value_info("q", xt, [1, n])],
        [oh.make_tensor_value_info("y", yt, [1, n])], inits)
    domains = [oh.make_opsetid("", opset)] + (
        [oh.make_opsetid("com.microsoft", 1)] if any(n.domain for n in nodes) else [])
    model = oh.make_model(graph, opset_imports=domains)
    model.ir_version = 9
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


# ------------------------------------------------------------------------------------------------
# A PyTorch model with one layer of each activation, quantized by onnxruntime (QDQ)

def _export(path) -> None:
    import torch

    activations = [torch.nn.Sigmoid, torch.nn.Hardsigmoid, torch.nn.Hardswish, torch.nn.Tanh,
                   lambda: torch.nn.LeakyReLU(0.1)]
    torch.manual_seed(3)
    layers: list[torch.nn.Module] = []
    channels = 3
    for k, act in enumerate(activations):
        out = 6 + 3 * k
        layers += [torch.nn.Conv2d(channels, out, 3 if k == 0 else 1,
                                   padding=1 if k == 0 else 0), act()]
        channels = out
    module = torch.nn.Sequential(*layers).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 6, 5),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])


def _quantize(src, dst, fmt: str = "qdq", signed: bool = False) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(5)
            self.data = iter({"x": rng.standard_normal((1, 3, 6, 5)).astype(np.float32)}
                             for _ in range(8))

        def get_next(self):
            return next(self.data, None)

    quantize_static(str(src), str(dst), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=True)


def activation_model(directory: pathlib.Path, fmt: str = "qdq",
                     signed: bool = False) -> pathlib.Path:
    """Conv → Sigmoid → Conv → HardSigmoid → Conv → HardSwish → Conv → Tanh → Conv → LeakyReLU,
    exported by torch.onnx.export and quantized by quantize_static (``fmt`` "qdq" or "qop",
    uint8 or int8 activations); returns the quantized model's path in ``directory``."""
    if not (directory / "float.onnx").exists():
        _export(directory / "float.onnx")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _quantize(directory / "float.onnx", directory / "model.onnx", fmt, signed)
    return directory / "model.onnx"
