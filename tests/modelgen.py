"""Small quantized ONNX models built in code, the way users make theirs.

A :class:`Spec` names a stack of layers, the input shape and the quantization options; :func:`build`
turns it into a PyTorch module with seeded weights, exports it with ``torch.onnx.export`` (the
dynamo exporter by default, the TorchScript one on request so both exporters' graphs are
covered), optionally rewrites the float graph (asymmetric pads, ``auto_pad``), quantizes it with
onnxruntime's ``quantize_static`` on seeded random calibration data and optionally strips the
boundary QuantizeLinear/DequantizeLinear so the model's input or output is the 8-bit tensor.

The same spec always gives the same file, and each distinct spec is built once per process (in a
temporary directory removed at exit), so a test suite can ask for the same model many times.

Examples
--------
>>> spec = Spec(input_shape=(3, 9, 9), layers=(Conv(8, 3, stride=2), ReLU(), Flatten(),
...                                              Linear(10)))
>>> path = build(spec)
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import hashlib
import logging
import pathlib
import shutil
import tempfile
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import torch

__all__ = [
    "ZOO",
    "AvgPool",
    "Cat",
    "Const",
    "Conv",
    "ELEMENTWISE_ZOO",
    "Flatten",
    "Gate",
    "GlobalAvgPool",
    "Layer",
    "Linear",
    "MatMul",
    "MaxPool",
    "Mean",
    "PT2E_ZOO",
    "ReLU",
    "ReLU6",
    "Residual",
    "Spec",
    "build",
    "export_float",
    "float_model",
    "ort_quantize",
    "pt2e_export",
    "pt2e_quantize",
    "random_inputs",
]


@dataclasses.dataclass(frozen=True)
class Conv:
    """``nn.Conv2d(cin, out, k, stride, padding, groups=groups)``.

    ``pads`` (top, left, bottom, right), when given, replaces ``padding`` by a ``ZeroPad2d`` in
    PyTorch that ends up as the ONNX Conv's (possibly asymmetric) ``pads`` (dynamo exporter only).
    ``auto_pad`` ("SAME_UPPER", "SAME_LOWER", "VALID") additionally replaces those explicit pads
    by the attribute; ``pads`` must then be what the attribute implies.
    """
    out: int
    k: int | tuple[int, int] = 3
    stride: int = 1
    padding: int = 0
    pads: tuple[int, int, int, int] | None = None
    auto_pad: str | None = None
    bias: bool = True
    groups: int = 1


@dataclasses.dataclass(frozen=True)
class ReLU:
    """``nn.ReLU()`` (the quantizer usually folds it into the preceding layer's zero point)."""


@dataclasses.dataclass(frozen=True)
class ReLU6:
    """``nn.ReLU6()``, exported as ONNX Clip(0, 6)."""


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """``nn.MaxPool2d(k, stride, padding, ceil_mode=ceil_mode)``."""
    k: int
    stride: int | None = None
    padding: int = 0
    ceil_mode: bool = False


@dataclasses.dataclass(frozen=True)
class Flatten:
    """``nn.Flatten()`` (Reshape from the dynamo exporter, Flatten from TorchScript)."""


@dataclasses.dataclass(frozen=True)
class Linear:
    """``nn.Linear(in, out, bias)`` (Gemm on a 2-D input, MatMul (+ Add) on 3-D)."""
    out: int
    bias: bool = True


@dataclasses.dataclass(frozen=True)
class MatMul:
    """``x @ W`` with a weight parameter ``W`` of shape ``[in, out]`` (ONNX MatMul)."""
    out: int


@dataclasses.dataclass(frozen=True)
class AvgPool:
    """``nn.AvgPool2d(k, stride)`` (no padding)."""
    k: int
    stride: int | None = None


@dataclasses.dataclass(frozen=True)
class GlobalAvgPool:
    """``nn.AdaptiveAvgPool2d(1)``."""


@dataclasses.dataclass(frozen=True)
class Mean:
    """``x.mean((2, 3), keepdim)`` (ONNX ReduceMean over H and W)."""
    keepdim: bool = True


@dataclasses.dataclass(frozen=True)
class Residual:
    """``x + body(x)`` (``body`` keeps the shape), then ``act`` ("relu", "relu6" or None)."""
    body: tuple[Layer, ...]
    act: str | None = None


@dataclasses.dataclass(frozen=True)
class Cat:
    """``torch.cat([branch(x) for branch in branches], dim=1)``; ``()`` is ``x`` itself."""
    branches: tuple[tuple[Layer, ...], ...]


@dataclasses.dataclass(frozen=True)
class Const:
    """``x + value``, ``x - value`` or ``x * value`` (``op`` "add", "sub", "mul"): an element-wise
    op with a constant, quantized as an 8-bit initializer."""
    op: str
    value: float


@dataclasses.dataclass(frozen=True)
class Gate:
    """``x * body(x)``: squeeze-excite when ``body`` ends in a ``[1, C, 1, 1]`` gate (global
    average pool → 1×1 convolutions → a gate function), a broadcast Mul."""
    body: tuple[Layer, ...]


Layer = (Conv | ReLU | ReLU6 | MaxPool | Flatten | Linear | MatMul | AvgPool | GlobalAvgPool
         | Mean | Residual | Cat | Const | Gate)


@dataclasses.dataclass(frozen=True)
class Spec:
    """One model to build.

    Parameters
    ----------
    input_shape
        One inference's input without the batch: ``(C, H, W)``, ``(K,)`` or ``(M, K)``.
    layers
        The layer stack.
    fmt
        ``"qdq"`` or ``"qop"`` (QOperator) from ``quantize_static``; ``"pt2e"``: PyTorch 2
        export quantization (torchao's ``prepare_pt2e``/``convert_pt2e``) before the ONNX export
        (dynamo exporter only).
    signed
        int8 activations (True) or uint8 (False); weights are always int8. PT2E uses torchao's
        XNNPACK quantizer for int8 and its X86 Inductor quantizer for uint8.
    per_channel
        Per-output-channel weight scales.
    int_input, int_output
        Strip the input QuantizeLinear / output DequantizeLinear so the model's input / output is
        the 8-bit tensor itself.
    exporter
        ``"dynamo"`` or ``"torchscript"``.
    dynamic_batch
        Export the batch dimension as symbolic.
    seed
        Seeds the weights and the calibration data.
    """
    input_shape: tuple[int, ...]
    layers: tuple[Layer, ...]
    fmt: str = "qdq"
    signed: bool = False
    per_channel: bool = True
    int_input: bool = False
    int_output: bool = False
    exporter: str = "dynamo"
    dynamic_batch: bool = False
    seed: int = 0

    @property
    def key(self) -> str:
        """A short stable file name for the spec."""
        return hashlib.sha256(repr(self).encode()).hexdigest()[:16]


class _MatMul(torch.nn.Module):
    def __init__(self, k: int, n: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(k, n) / k ** 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


class _Mean(torch.nn.Module):
    def __init__(self, keepdim: bool) -> None:
        super().__init__()
        self.keepdim = keepdim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean((2, 3), keepdim=self.keepdim)


class _Residual(torch.nn.Module):
    def __init__(self, body: torch.nn.Module, act: torch.nn.Module) -> None:
        super().__init__()
        self.body, self.act = body, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(x + self.body(x))


class _Const(torch.nn.Module):
    def __init__(self, op: str, value: float) -> None:
        super().__init__()
        self.op, self.value = op, value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.op == "add":
            return x + self.value
        return x - self.value if self.op == "sub" else x * self.value


class _Gate(torch.nn.Module):
    def __init__(self, body: torch.nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.body(x)


class _Cat(torch.nn.Module):
    def __init__(self, branches: list[torch.nn.Module]) -> None:
        super().__init__()
        self.branches = torch.nn.ModuleList(branches)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([branch(x) for branch in self.branches], dim=1)


def _stack(layers: tuple[Layer, ...], shape: torch.Size) -> tuple[torch.nn.Module, torch.Size]:
    """The module of ``layers`` on inputs of ``shape``, and its output shape."""
    modules: list[torch.nn.Module] = []
    for layer in layers:
        first = len(modules)
        new: torch.nn.Module
        match layer:
            case Conv():
                if layer.pads is not None:
                    top, left, bottom, right = layer.pads
                    modules.append(torch.nn.ZeroPad2d((left, right, top, bottom)))
                padding = 0 if layer.pads is not None else layer.padding
                new = torch.nn.Conv2d(shape[1], layer.out, layer.k, layer.stride, padding,
                                      bias=layer.bias, groups=layer.groups)
            case ReLU():
                new = torch.nn.ReLU()
            case ReLU6():
                new = torch.nn.ReLU6()
            case MaxPool():
                new = torch.nn.MaxPool2d(layer.k, layer.stride, layer.padding,
                                         ceil_mode=layer.ceil_mode)
            case AvgPool():
                new = torch.nn.AvgPool2d(layer.k, layer.stride)
            case GlobalAvgPool():
                new = torch.nn.AdaptiveAvgPool2d(1)
            case Mean():
                new = _Mean(layer.keepdim)
            case Flatten():
                new = torch.nn.Flatten()
            case Linear():
                new = torch.nn.Linear(shape[-1], layer.out, bias=layer.bias)
            case MatMul():
                new = _MatMul(shape[-1], layer.out)
            case Residual():
                acts = {None: torch.nn.Identity(), "relu": torch.nn.ReLU(),
                        "relu6": torch.nn.ReLU6()}
                new = _Residual(_stack(layer.body, shape)[0], acts[layer.act])
            case Cat():
                new = _Cat([_stack(branch, shape)[0] for branch in layer.branches])
            case Const():
                new = _Const(layer.op, layer.value)
            case Gate():
                new = _Gate(_stack(layer.body, shape)[0])
        modules.append(new)
        with torch.no_grad():
            shape = torch.nn.Sequential(*modules[first:])(torch.zeros(shape)).shape
    return torch.nn.Sequential(*modules), shape


def _module(spec: Spec) -> torch.nn.Module:
    """The PyTorch model of ``spec`` with weights seeded by ``spec.seed``."""
    torch.manual_seed(spec.seed)
    return _stack(spec.layers, torch.Size((1, *spec.input_shape)))[0].eval()


@contextlib.contextmanager
def _quiet_export():
    """Silence the exporters' own notices (exactly these), which are not about our models."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed. Skipping torchvision::nms"
    try:
        with warnings.catch_warnings():
            # torch 2.13's dynamo exporter trips over its own pytree deprecation.
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    FutureWarning)
            warnings.filterwarnings("ignore", "You are using the legacy TorchScript-based ONNX",
                                    DeprecationWarning)
            warnings.filterwarnings("ignore", "The feature will be removed", DeprecationWarning)
            yield
    finally:
        logger.setLevel(level)


def _export(spec: Spec, path: pathlib.Path) -> None:
    if spec.exporter == "torchscript" and any(
            isinstance(layer, Conv) and layer.pads is not None for layer in spec.layers):
        # TorchScript exports ZeroPad2d as a computed Pad that cannot be folded into the Conv.
        raise ValueError("asymmetric pads need the dynamo exporter")
    module = _module(spec)
    x = torch.zeros((1, *spec.input_shape))
    with _quiet_export(), torch.no_grad():
        if spec.exporter == "dynamo":
            dynamic = ({0: torch.export.Dim("batch")},) if spec.dynamic_batch else None
            program = torch.onnx.export(module, (x,), dynamo=True, input_names=["x"],
                                        output_names=["y"], dynamic_shapes=dynamic,
                                        verbose=False)
            program.save(str(path))
        elif spec.exporter == "torchscript":
            dynamic = {"x": {0: "batch"}, "y": {0: "batch"}} if spec.dynamic_batch else None
            torch.onnx.export(module, (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"], dynamic_axes=dynamic)
        else:
            raise ValueError(f"exporter must be 'dynamo' or 'torchscript', not {spec.exporter!r}")
    _fold_pads(spec, path)


def _fold_pads(spec: Spec, path: pathlib.Path) -> None:
    """Turn each ZeroPad2d + Conv into a Conv with (asymmetric) ``pads`` or ``auto_pad``.

    The dynamo exporter's optimizer has already folded the Pad into the Conv's ``pads``; only
    ``auto_pad`` needs rewriting.
    """
    convs = [layer for layer in spec.layers if isinstance(layer, Conv)]
    if all(c.pads is None for c in convs):
        return
    model = onnx.load(str(path))
    for layer, conv in zip(convs, [n for n in model.graph.node if n.op_type == "Conv"],
                           strict=True):
        if layer.pads is None:
            continue
        pads = next(a.ints for a in conv.attribute if a.name == "pads")
        assert list(pads) == list(layer.pads), (pads, layer.pads)
        if layer.auto_pad is not None:
            kept = [a for a in conv.attribute if a.name not in ("pads", "auto_pad")]
            del conv.attribute[:]
            conv.attribute.extend(kept)
            conv.attribute.append(onnx.helper.make_attribute("auto_pad", layer.auto_pad))
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _strip_io(spec: Spec, path: pathlib.Path) -> None:
    """Make the graph input / output the 8-bit tensor by dropping the boundary Q / DQ nodes."""
    if not (spec.int_input or spec.int_output):
        return
    model = onnx.load(str(path))
    graph = model.graph
    dtype = onnx.TensorProto.INT8 if spec.signed else onnx.TensorProto.UINT8
    if spec.int_input:
        (inp,) = graph.input
        q = next(n for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == inp.name)
        graph.node.remove(q)
        for node in graph.node:
            for i, name in enumerate(node.input):
                if name == q.output[0]:
                    node.input[i] = inp.name
        inp.type.tensor_type.elem_type = dtype
    if spec.int_output:
        (out,) = graph.output
        dq = next(n for n in graph.node
                  if n.op_type == "DequantizeLinear" and n.output[0] == out.name)
        graph.node.remove(dq)
        for node in graph.node:
            for i, name in enumerate(node.output):
                if name == dq.input[0]:
                    node.output[i] = out.name
        out.type.tensor_type.elem_type = dtype
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def random_inputs(spec: Spec, n: int, seed: int) -> list[np.ndarray]:
    """``n`` float32 inputs of shape ``(1, *spec.input_shape)``, roughly unit normal."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, *spec.input_shape)).astype(np.float32) for _ in range(n)]


def ort_quantize(src: pathlib.Path, dst: pathlib.Path, calibration: list[np.ndarray],
                 fmt: str = "qdq", signed: bool = False, per_channel: bool = True,
                 input_name: str = "x", extra_op_types: tuple[str, ...] = ()) -> None:
    """onnxruntime's ``quantize_static`` of the float model ``src`` into ``dst``, calibrated on
    ``calibration`` (int8 weights; QDQ or QOperator; int8 or uint8 activations).

    ``extra_op_types`` are quantized besides onnxruntime's default op types (its registries),
    as a user asks for with ``op_types_to_quantize``.
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter({input_name: x} for x in calibration)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    formats = {"qdq": QuantFormat.QDQ, "qop": QuantFormat.QOperator}
    op_types = (sorted({*QLinearOpsRegistry, *QDQRegistry, *extra_op_types}) if extra_op_types
                else None)
    quantize_static(str(src), str(dst), Reader(), quant_format=formats[fmt],
                    activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel,
                    op_types_to_quantize=op_types)


def export_float(module: torch.nn.Module, example: torch.Tensor, path: pathlib.Path) -> None:
    """The float ONNX model of ``module`` (dynamo exporter, weights inline, input ``x``)."""
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(module, (example,), dynamo=True, input_names=["x"],
                          output_names=["y"], verbose=False).save(str(path))


def _quantize(spec: Spec, src: pathlib.Path, dst: pathlib.Path) -> None:
    ort_quantize(src, dst, random_inputs(spec, 16, spec.seed + 1000), spec.fmt, spec.signed,
                 spec.per_channel)


_directory: pathlib.Path | None = None


def _cache_dir() -> pathlib.Path:
    global _directory
    if _directory is None:
        _directory = pathlib.Path(tempfile.mkdtemp(prefix="codesign-models-"))
        atexit.register(shutil.rmtree, _directory, ignore_errors=True)
    return _directory


def float_model(spec: Spec) -> pathlib.Path:
    """The exported float ONNX model of ``spec`` (before quantization)."""
    return _float_model(dataclasses.replace(spec, fmt="qdq", signed=False, per_channel=True,
                                            int_input=False, int_output=False))


@functools.cache
def _float_model(spec: Spec) -> pathlib.Path:
    path = _cache_dir() / f"{spec.key}_float.onnx"
    _export(spec, path)
    return path


def pt2e_quantize(module: torch.nn.Module, example: torch.Tensor,
                  calibration: list[np.ndarray], signed: bool = True,
                  per_channel: bool = True) -> torch.nn.Module:
    """``module`` quantized with PT2E (torchao): the XNNPACK quantizer (int8 activations) when
    ``signed``, else the X86 Inductor one (uint8), calibrated on ``calibration``."""
    # torchao logs about its optional CUDA kernels and torch's pytree on import, and its X86
    # quantizer imports torch._inductor, which warns about torch.jit: none of it is our models'.
    quiet = [logging.getLogger(name) for name in ("torchao", "torch.utils._pytree")]
    levels = [logger.level for logger in quiet]
    for logger in quiet:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "`torch.jit.script_method` is deprecated",
                                    DeprecationWarning)
            from torchao.quantization.pt2e import move_exported_model_to_eval
            from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
            from torchao.quantization.pt2e.quantizer.x86_inductor_quantizer import (
                X86InductorQuantizer,
                get_default_x86_inductor_quantization_config,
            )

            # executorch owns the XNNPACK quantizer; torchao ships this copy of it for tests.
            from torchao.testing.pt2e._xnnpack_quantizer import (
                XNNPACKQuantizer,
                get_symmetric_quantization_config,
            )
    finally:
        for logger, level in zip(quiet, levels, strict=True):
            logger.setLevel(level)
    with _quiet_export(), warnings.catch_warnings():
        # The copy warns that it is deprecated in favour of executorch's, which is not installed.
        warnings.filterwarnings("ignore", "XNNPACKQuantizer is deprecated", UserWarning)
        quantizer = (XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
            is_per_channel=per_channel)) if signed else
            X86InductorQuantizer().set_global(get_default_x86_inductor_quantization_config()))
        program = torch.export.export(module, (example,)).module()
        prepared = prepare_pt2e(program, quantizer)
        for sample in calibration:
            prepared(torch.from_numpy(sample))
        return move_exported_model_to_eval(convert_pt2e(prepared))


def pt2e_export(quantized: torch.nn.Module, example: torch.Tensor, path: pathlib.Path) -> None:
    """Export a PT2E-quantized module the way torch 2.13 users do: ``torch.onnx.export(m, x,
    path)``, which writes the weights to ``path.data`` beside the model."""
    with _quiet_export(), warnings.catch_warnings():
        # move_exported_model_to_eval switches the ops to eval but not the module's flag.
        warnings.filterwarnings("ignore", "Exporting a model while it is in training mode",
                                UserWarning)
        torch.onnx.export(quantized, (example,), str(path), dynamo=True, input_names=["x"],
                          output_names=["y"], verbose=False)


def _pt2e(spec: Spec, path: pathlib.Path) -> None:
    """Quantize with PT2E (torchao) and export the quantized program to ONNX."""
    x = torch.zeros((1, *spec.input_shape))
    quantized = pt2e_quantize(_module(spec), x, random_inputs(spec, 16, spec.seed + 1000),
                              spec.signed, spec.per_channel)
    pt2e_export(quantized, x, path)


@functools.cache
def build(spec: Spec) -> pathlib.Path:
    """The quantized model of ``spec`` (built once per process; do not modify the file)."""
    path = _cache_dir() / f"{spec.key}.onnx"
    if spec.fmt == "pt2e":
        _pt2e(spec, path)
    else:
        _quantize(spec, float_model(spec), path)
    _strip_io(spec, path)
    return path


#: A zoo of small models covering both formats, both activation types, per-tensor and
#: per-channel weights, odd sizes, strides, asymmetric/auto padding, pooling, Gemm and MatMul,
#: 8-bit boundaries and both exporters. Keys are stable test ids.
ZOO: dict[str, Spec] = {
    "conv_relu_pool_fc_qdq_u8": Spec(
        (3, 11, 11), (Conv(5, 3, stride=2, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(7))),
    "conv_relu_pool_fc_qdq_s8": Spec(
        (3, 11, 11), (Conv(5, 3, stride=2, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(7)),
        signed=True),
    "conv_relu_pool_fc_qop_u8": Spec(
        (3, 11, 11), (Conv(5, 3, stride=2, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(7)),
        fmt="qop"),
    "conv_relu_pool_fc_qop_s8": Spec(
        (3, 11, 11), (Conv(5, 3, stride=2, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(7)),
        fmt="qop", signed=True),
    "asym_pads_qop_s8_tensor": Spec(
        (3, 10, 9), (Conv(4, 3, pads=(1, 0, 2, 1)), ReLU(), Flatten(), Linear(7)),
        fmt="qop", signed=True, per_channel=False),
    "asym_pads_qdq_u8": Spec(
        (2, 9, 10), (Conv(6, (2, 3), stride=2, pads=(0, 2, 1, 0)), ReLU(), Conv(3, 1),
                     Flatten(), Linear(4))),
    "same_upper_relu6_qop_s8": Spec(
        (3, 10, 10), (Conv(4, 3, stride=2, pads=(0, 0, 1, 1), auto_pad="SAME_UPPER"), ReLU6(),
                      Flatten(), Linear(7)), fmt="qop", signed=True),
    "same_lower_qdq_u8_tensor": Spec(
        (3, 8, 8), (Conv(4, 2, pads=(1, 1, 0, 0), auto_pad="SAME_LOWER"), ReLU6(), Flatten(),
                    Linear(5)), per_channel=False),
    "deep_cnn_qdq_u8": Spec(
        (16, 9, 9), (Conv(32, 3, padding=1), ReLU(), Conv(32, 3, padding=1), ReLU(),
                     Conv(16, 3, padding=1), Flatten(), Linear(10))),
    "deep_cnn_qop_s8": Spec(
        (16, 9, 9), (Conv(32, 3, padding=1), ReLU(), Conv(32, 3, padding=1), ReLU(),
                     Conv(16, 3, padding=1), Flatten(), Linear(10)), fmt="qop", signed=True),
    "deep_cnn_qdq_s8_tensor": Spec(
        (16, 9, 9), (Conv(32, 3, padding=1), ReLU(), Conv(32, 3, padding=1), ReLU(),
                     Conv(16, 3, padding=1), Flatten(), Linear(10)),
        signed=True, per_channel=False, seed=3),
    "big_kernel_stride3_qop_u8": Spec(
        (1, 17, 13), (Conv(8, 5, stride=3, padding=2), ReLU(), MaxPool(3, 2, padding=1),
                      Flatten(), Linear(3)), fmt="qop"),
    "pool_ceil_qdq_u8": Spec(
        (3, 9, 9), (Conv(4, 3), ReLU(), MaxPool(2, ceil_mode=True), Flatten(), Linear(6))),
    "pool_ceil_qop_s8": Spec(
        (3, 10, 7), (Conv(4, 3), MaxPool(3, 2, ceil_mode=True), Flatten(), Linear(6)),
        fmt="qop", signed=True),
    "mlp_qdq_u8": Spec((64,), (Linear(64), ReLU(), Linear(32), ReLU(), Linear(10))),
    "mlp_qdq_s8_tensor": Spec((13,), (Linear(9), ReLU(), Linear(5)), signed=True,
                              per_channel=False),
    "mlp_qop_u8": Spec((13,), (Linear(9), ReLU(), Linear(5)), fmt="qop"),
    "mlp_qop_s8": Spec((13,), (Linear(9), ReLU(), Linear(5)), fmt="qop", signed=True),
    "matmul_qdq_u8": Spec((20,), (MatMul(11), ReLU(), Linear(5))),
    "matmul_rows_qop_u8": Spec((5, 12), (Linear(6, bias=False), ReLU(), MatMul(3)), fmt="qop"),
    "matmul_rows_qop_s8": Spec((5, 12), (MatMul(6), ReLU(), MatMul(3)), fmt="qop", signed=True),
    "matmul_rows_qdq_s8": Spec((7, 4), (MatMul(6), ReLU(), MatMul(3)), signed=True),
    "torchscript_flatten_qdq_u8": Spec(
        (2, 7, 7), (Conv(4, (3, 2), padding=1), ReLU(), Flatten(), MatMul(5)),
        exporter="torchscript", dynamic_batch=True),
    "int_io_qdq_u8": Spec(
        (2, 7, 7), (Conv(4, 3, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(5)),
        int_input=True, int_output=True),
    "int_io_qop_s8": Spec(
        (2, 7, 7), (Conv(4, 3, padding=1), ReLU(), Flatten(), Linear(5)), fmt="qop",
        signed=True, int_input=True, int_output=True, dynamic_batch=True),
    "no_bias_qop_u8_tensor": Spec(
        (3, 6, 6), (Conv(5, 3, padding=1, bias=False), Flatten(), Linear(4, bias=False)),
        fmt="qop", per_channel=False),
}
ZOO.update({
    "depthwise_s2_asym_qdq_u8": Spec(
        (6, 11, 10), (Conv(6, 3, stride=2, pads=(1, 0, 2, 1), groups=6), ReLU(), Conv(8, 1),
                      Flatten(), Linear(5))),
    "depthwise_s2_asym_qop_s8": Spec(
        (6, 11, 10), (Conv(12, 3, stride=2, pads=(0, 1, 1, 2), groups=6), ReLU6(), Flatten(),
                      Linear(5)), fmt="qop", signed=True),
    "grouped_qop_u8_tensor": Spec(
        (6, 9, 9), (Conv(9, 3, padding=1, groups=3), ReLU(), Conv(4, 3, stride=2, groups=1),
                    Flatten(), Linear(5)), fmt="qop", per_channel=False),
    "grouped_qdq_s8": Spec(
        (8, 7, 7), (Conv(8, 3, padding=1, groups=2), ReLU6(), Conv(4, 3, groups=4), Flatten(),
                    Linear(3)), signed=True),
})

#: PyTorch 2 export quantization (float biases, explicit ReLU): bit-exact like ZOO. (A residual
#: PT2E model is not here: onnxruntime 1.31 fails to create an exact-kernel session for it.)
PT2E_ZOO: dict[str, Spec] = {
    "pt2e_conv_fc_s8": Spec(
        (3, 9, 9), (Conv(6, 3, stride=2, padding=1), ReLU(), MaxPool(2), Flatten(), Linear(5)),
        fmt="pt2e", signed=True),
    "pt2e_depthwise_s8": Spec(
        (4, 9, 9), (Conv(4, 3, padding=1, groups=4), ReLU6(), Conv(8, 1), ReLU(), Flatten(),
                    Linear(5)), fmt="pt2e", signed=True),
    "pt2e_mlp_s8": Spec((13,), (Linear(9), ReLU(), Linear(5)), fmt="pt2e", signed=True),
}

#: Models with element-wise ops (Add, average pools, ReduceMean, Concat), which onnxruntime
#: computes in float: the golden model is within 1 LSB of it, not bit-exact (docs/arithmetic.md).
ELEMENTWISE_ZOO: dict[str, Spec] = {
    "residual_qdq_u8": Spec(
        (6, 8, 8), (Conv(6, 3, padding=1), ReLU(),
                    Residual((Conv(6, 3, padding=1), ReLU(), Conv(6, 3, padding=1)), act="relu"),
                    GlobalAvgPool(), Flatten(), Linear(5))),
    "residual_qdq_s8": Spec(
        (6, 8, 8), (Conv(6, 3, padding=1),
                    Residual((Conv(6, 3, padding=1), ReLU(), Conv(6, 1)), act="relu6"),
                    Residual((Conv(6, 3, groups=6, padding=1),)), Flatten(), Linear(5)),
        signed=True),
    "residual_qop_u8": Spec(
        (6, 8, 8), (Conv(6, 3, padding=1), ReLU(),
                    Residual((Conv(6, 3, padding=1), ReLU(), Conv(6, 3, padding=1)), act="relu"),
                    GlobalAvgPool(), Flatten(), Linear(5)), fmt="qop"),
    "residual_qop_s8": Spec(
        (6, 8, 8), (Conv(6, 3, padding=1),
                    Residual((Conv(6, 3, padding=1), ReLU(), Conv(6, 1)), act="relu6"),
                    Residual((Conv(6, 3, groups=6, padding=1),)), Flatten(), Linear(5)),
        fmt="qop", signed=True),
    "avgpool_qdq_u8": Spec((3, 9, 9), (Conv(4, 3), ReLU(), AvgPool(2), Flatten(), Linear(5))),
    "avgpool_qop_s8": Spec(
        (3, 11, 11), (Conv(4, 3), ReLU(), AvgPool(3, 2), Flatten(), Linear(5)), fmt="qop",
        signed=True),
    "mean_keepdim_qdq_s8": Spec(
        (3, 7, 7), (Conv(8, 3), ReLU6(), Mean(True), Flatten(), Linear(5)), signed=True),
    "mean_flat_qop_u8": Spec((3, 7, 7), (Conv(8, 3), ReLU(), Mean(False), Linear(5)), fmt="qop"),
    "mean_flat_qdq_u8": Spec((3, 7, 7), (Conv(8, 3), Mean(False), Linear(5))),
    "gap_qop_s8": Spec(
        (3, 9, 9), (Conv(8, 3), ReLU(), GlobalAvgPool(), Flatten(), Linear(5)), fmt="qop",
        signed=True),
    "concat_qdq_u8": Spec(
        (3, 6, 6), (Conv(4, 3), ReLU(), Cat(((Conv(2, 1),), (), (Conv(3, 3, padding=1), ReLU()))),
                    Flatten(), Linear(5))),
    "concat_qop_s8": Spec(
        (3, 6, 6), (Conv(4, 3), ReLU(), Cat(((Conv(2, 1),), (), (Conv(3, 3, padding=1), ReLU()))),
                    Flatten(), Linear(5)), fmt="qop", signed=True),
    "concat_qop_u8": Spec(
        (3, 6, 6), (Conv(4, 3), Cat(((Conv(5, 1), ReLU()), (Conv(3, 3, padding=1),))),
                    GlobalAvgPool(), Flatten(), Linear(5)), fmt="qop"),
}
