"""The op table: ONNX op type → handler, sections by kind (as tinygrad's ``nn/onnx.py``).

A handler reads its node's input values from the :class:`Context`, stores its output values and
emits IR ops when an 8-bit result appears. Keys are the op type for the default ONNX domain and
``"domain.OpType"`` otherwise. Anything not in :data:`OPS` is refused, all names at once, by the
loader.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper

from codesign import ir
from codesign.frontend.context import Context, quantize_scalar
from codesign.frontend.values import (
    Accumulator,
    Constant,
    Dequantized,
    DequantizedConstant,
    FloatInput,
    Quantized,
)

__all__ = ["OPS", "op_key"]

Handler = Callable[[Context, onnx.NodeProto], None]


def op_key(node: onnx.NodeProto) -> str:
    """The :data:`OPS` key of ``node``."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _str(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------------
# Shared pieces: padding, weight quantization, the convolution accumulator

def _pads(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any], size: tuple[int, int],
          kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` from ``pads`` or ``auto_pad`` (ONNX Conv/MaxPool rules)."""
    auto_pad = _str(attrs.get("auto_pad", "NOTSET"))
    if auto_pad == "NOTSET":
        pads = list(attrs.get("pads", [0, 0, 0, 0]))
        if len(pads) != 4 or min(pads) < 0:
            raise ctx.error(node, f"pads must be 4 non-negative values, not {pads}")
        return pads[0], pads[1], pads[2], pads[3]
    if auto_pad == "VALID":
        return 0, 0, 0, 0
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.error(node, f"auto_pad {auto_pad!r} is not an ONNX auto_pad value")
    begin, end = [], []
    for n, k, s in zip(size, kernel, stride, strict=True):
        total = max(0, (math.ceil(n / s) - 1) * s + k - n)
        small, large = total // 2, total - total // 2
        begin.append(small if auto_pad == "SAME_UPPER" else large)
        end.append(large if auto_pad == "SAME_UPPER" else small)
    return begin[0], begin[1], end[0], end[1]


def _spatial(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any],
             kernel: tuple[int, int]) -> tuple[int, int]:
    """The strides, after refusing dilations and groups the IR has no room for."""
    if len(kernel) != 2:
        raise ctx.error(node, "only 2-D kernels are supported")
    if list(attrs.get("dilations", [1, 1])) != [1, 1]:
        raise ctx.error(node, "dilation is not supported")
    if attrs.get("group", 1) != 1:
        raise ctx.error(node, "grouped/depthwise convolution (group > 1) is not supported yet")
    strides = list(attrs.get("strides", [1, 1]))
    if len(strides) != 2 or min(strides) < 1:
        raise ctx.error(node, f"strides must be 2 positive values, not {strides}")
    return strides[0], strides[1]


def _weight_qparams(ctx: Context, node: onnx.NodeProto, q: np.ndarray, scale: np.ndarray,
                    zero_point: np.ndarray | None, axis: int | None,
                    cout_axis: int) -> tuple[int, np.ndarray]:
    """``(w_zero_point, w_scale[Cout])`` of an int8 weight whose output channels are ``cout_axis``.

    ``axis`` is the quantization axis (normalised) when scale is per channel.
    """
    cout = q.shape[cout_axis]
    if q.dtype != np.int8:
        raise ctx.error(node, f"weights are {q.dtype}; only int8 weights are supported "
                              "(quantize with weight_type=QuantType.QInt8)")
    if scale.size == 1:
        w_scale = np.full(cout, scale.reshape(()), np.float32)
    elif scale.shape == (cout,) and axis == cout_axis:
        w_scale = scale.astype(np.float32)
    else:
        raise ctx.error(node, "weight scales must be per tensor or per output channel")
    if not (np.all(np.isfinite(w_scale)) and np.all(w_scale > 0)):
        raise ctx.error(node, "weight scales must be positive")
    zps = np.zeros(1, np.int8) if zero_point is None else zero_point.reshape(-1)
    if zps.size not in (1, cout):
        raise ctx.error(node, "weight zero points must be per tensor or per output channel")
    if np.any(zps != zps[0]):
        raise ctx.error(node, "per-channel weight zero points differ between channels "
                              f"({sorted(set(zps.tolist()))[:4]}...); the NPU needs one weight "
                              "zero point per layer (quantize weights symmetrically)")
    return int(zps[0]), w_scale


def _bias(ctx: Context, node: onnx.NodeProto, bias: np.ndarray | None, cout: int) -> np.ndarray:
    if bias is None:
        return np.zeros(cout, np.int32)
    if bias.dtype != np.int32 or bias.shape != (cout,):
        raise ctx.error(node, f"bias must be int32 [{cout}], not {bias.dtype} "
                              f"{list(bias.shape)} (quantize with quantize_static)")
    return bias


def _qdq_bias(ctx: Context, node: onnx.NodeProto, index: int, cout: int) -> np.ndarray:
    """The int32 bias behind a QDQ model's ``DequantizeLinear`` (or none)."""
    value = ctx.value(node, index)
    if value is None:
        return _bias(ctx, node, None, cout)
    if not isinstance(value, DequantizedConstant) or np.any(value.zero_point != 0):
        raise ctx.error(node, "bias must be an int32 initializer behind DequantizeLinear with "
                              "zero point 0 (quantize with quantize_static)")
    return _bias(ctx, node, value.q, cout)


def _conv(ctx: Context, node: onnx.NodeProto, x: ir.Tensor, x_shape: tuple[int, ...],
          w: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray | None, w_axis: int | None,
          bias: np.ndarray | None) -> Accumulator:
    """The accumulator of a Conv / QLinearConv; ``w`` is ONNX ``[Cout, Cin, KH, KW]``."""
    attrs = _attrs(node)
    if len(x_shape) != 4 or w.ndim != 4:
        raise ctx.error(node, "only 2-D convolutions on [1, C, H, W] inputs are supported")
    cout, cin, kh, kw = w.shape
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != [kh, kw]:
        raise ctx.error(node, "kernel_shape does not match the weight")
    stride = _spatial(ctx, node, attrs, (kh, kw))
    if x_shape[1] != cin:
        raise ctx.error(node, f"weight expects {cin} input channels, the input has {x_shape[1]}")
    h, width = x_shape[2], x_shape[3]
    pads = _pads(ctx, node, attrs, (h, width), (kh, kw), stride)
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (width + pads[1] + pads[3] - kw) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ctx.error(node, "the kernel is larger than the padded input")
    w_zero_point, scales = _weight_qparams(ctx, node, w, w_scale, w_zp, w_axis, 0)
    return Accumulator(
        x=x, weight=np.ascontiguousarray(w.transpose(2, 3, 1, 0)), w_zero_point=w_zero_point,
        w_scale=scales, bias=_bias(ctx, node, bias, cout), stride=stride, pads=pads,
        onnx_shape=(1, cout, oh, ow), name=node.name)


def _matmul(ctx: Context, node: onnx.NodeProto, x: ir.Tensor, x_shape: tuple[int, ...],
            w: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray | None, w_axis: int | None,
            bias: np.ndarray | None) -> Accumulator:
    """The accumulator of ``x @ w`` (``w`` is ``[K, N]``) as a 1×1 convolution."""
    if w.ndim != 2 or len(x_shape) not in (2, 3) or x_shape[-1] != w.shape[0]:
        raise ctx.error(node, f"only [1, K] or [1, M, K] @ constant [K, N] is supported, not "
                              f"{list(x_shape)} @ {list(w.shape)}")
    w_zero_point, scales = _weight_qparams(ctx, node, w, w_scale, w_zp, w_axis, 1)
    n = w.shape[1]
    return Accumulator(
        x=x, weight=np.ascontiguousarray(w.reshape(1, 1, *w.shape)), w_zero_point=w_zero_point,
        w_scale=scales, bias=_bias(ctx, node, bias, n), stride=(1, 1), pads=(0, 0, 0, 0),
        onnx_shape=(*x_shape[:-1], n), name=node.name)


def _gemm_weight(ctx: Context, node: onnx.NodeProto, w: np.ndarray, axis: int | None
                 ) -> tuple[np.ndarray, int | None]:
    """Gemm's B as ``[K, N]`` (and its quantization axis), after checking the attributes."""
    attrs = _attrs(node)
    if attrs.get("transA", 0) != 0 or attrs.get("alpha", 1.0) != 1.0 or (
            attrs.get("beta", 1.0) != 1.0 and len(node.input) > 2 and node.input[2]):
        raise ctx.error(node, "only transA=0, alpha=1, beta=1 are supported")
    if attrs.get("transB", 0):
        return w.T, None if axis is None else 1 - axis
    return w, axis


# ------------------------------------------------------------------------------------------------
# Constants

def _constant(ctx: Context, node: onnx.NodeProto) -> None:
    attrs = _attrs(node)
    if "value" not in attrs:
        raise ctx.error(node, "only tensor-valued Constant nodes are supported")
    ctx.values[node.output[0]] = Constant(onnx.numpy_helper.to_array(attrs["value"]))


def _identity(ctx: Context, node: onnx.NodeProto) -> None:
    value = ctx.value(node, 0)
    if value is None:
        raise ctx.error(node, "has no input")
    ctx.values[node.output[0]] = value


# ------------------------------------------------------------------------------------------------
# Quantization boundaries (both formats)

def _quantize_linear(ctx: Context, node: onnx.NodeProto) -> None:
    value = ctx.value(node, 0)
    attrs = _attrs(node)
    if attrs.get("block_size", 0):
        raise ctx.error(node, "blocked quantization is not supported")
    scale, zero_point, signed = ctx.scalar_qparams(node, 1, "output")
    if len(node.input) < 3 and attrs.get("output_dtype") == onnx.TensorProto.INT8:
        signed = True
    out = node.output[0]
    match value:
        case FloatInput():
            if ctx.inputs.get(value.name) is not None:
                raise ctx.error(node, f"graph input {value.name!r} is quantized more than once")
            t = ctx.tensor(node, out, value.onnx_shape, signed, scale, zero_point)
            ctx.inputs[value.name] = ir.IOBinding(value.name, value.onnx_shape, True, t)
            ctx.values[out] = Quantized(t, value.onnx_shape)
        case Accumulator():
            ctx.values[out] = ctx.requantize(node, value, out, scale, zero_point, signed)
        case Dequantized():
            t = value.tensor
            if (scale, zero_point, signed) != (t.scale, t.zero_point, t.signed):
                raise ctx.error(node, f"requantizes {t.name!r} to another scale/zero point; "
                                      "a standalone requantization is not supported")
            ctx.values[out] = Quantized(t, value.onnx_shape)
        case _:
            raise ctx.error(node, "can only quantize a float graph input or the float output of "
                                  "a quantized Conv/Gemm/MatMul/MaxPool/Flatten")


def _dequantize_linear(ctx: Context, node: onnx.NodeProto) -> None:
    value = ctx.value(node, 0)
    out = node.output[0]
    if isinstance(value, Constant):
        q = value.value
        scale = ctx.constant(node, 1, "scale")
        zero_point = ctx.constant(node, 2, "zero point")
        if q.dtype not in (np.int8, np.uint8, np.int32) or scale is None:
            raise ctx.error(node, f"cannot dequantize a {q.dtype} constant")
        axis = int(_attrs(node).get("axis", 1))
        axis = axis + q.ndim if axis < 0 else axis
        ctx.values[out] = DequantizedConstant(
            q, scale, np.zeros(1, q.dtype) if zero_point is None else zero_point, axis)
        return
    x = ctx.quantized_input(node, 0, 1)
    ctx.values[out] = Dequantized(x.tensor, x.onnx_shape)


# ------------------------------------------------------------------------------------------------
# QDQ compute: float ops between DequantizeLinear and QuantizeLinear

def _qdq_operands(ctx: Context, node: onnx.NodeProto) -> tuple[Dequantized, DequantizedConstant]:
    x, w = ctx.value(node, 0), ctx.value(node, 1)
    if not isinstance(x, Dequantized):
        raise ctx.error(node, "input must come from DequantizeLinear of an 8-bit activation")
    if not isinstance(w, DequantizedConstant):
        raise ctx.error(node, "weight must be an initializer behind DequantizeLinear")
    return x, w


def _qdq_conv(ctx: Context, node: onnx.NodeProto) -> None:
    x, w = _qdq_operands(ctx, node)
    cout = w.q.shape[0]
    ctx.values[node.output[0]] = _conv(ctx, node, x.tensor, x.onnx_shape, w.q, w.scale,
                                       w.zero_point, w.axis, _qdq_bias(ctx, node, 2, cout))


def _qdq_gemm(ctx: Context, node: onnx.NodeProto) -> None:
    x, w = _qdq_operands(ctx, node)
    q, axis = _gemm_weight(ctx, node, w.q, w.axis)
    ctx.values[node.output[0]] = _matmul(ctx, node, x.tensor, x.onnx_shape, q, w.scale,
                                         w.zero_point, axis, _qdq_bias(ctx, node, 2, q.shape[1]))


def _qdq_matmul(ctx: Context, node: onnx.NodeProto) -> None:
    x, w = _qdq_operands(ctx, node)
    ctx.values[node.output[0]] = _matmul(ctx, node, x.tensor, x.onnx_shape, w.q, w.scale,
                                         w.zero_point, w.axis, None)


# ------------------------------------------------------------------------------------------------
# QOperator compute: 8-bit in, 8-bit out in one node

def _qop_weight(ctx: Context, node: onnx.NodeProto, index: int
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    w = ctx.constant(node, index, "weight")
    scale = ctx.constant(node, index + 1, "weight scale")
    if w is None or scale is None:
        raise ctx.error(node, "weight and weight scale are required")
    return w, scale, ctx.constant(node, index + 2, "weight zero point")


def _qlinear_conv(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    w, w_scale, w_zp = _qop_weight(ctx, node, 3)
    acc = _conv(ctx, node, x.tensor, x.onnx_shape, w, w_scale, w_zp, 0,
                ctx.constant(node, 8, "bias"))
    scale, zero_point, signed = ctx.scalar_qparams(node, 6, "output")
    ctx.values[node.output[0]] = ctx.requantize(node, acc, node.output[0], scale, zero_point,
                                                signed)


def _qlinear_matmul(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    w, w_scale, w_zp = _qop_weight(ctx, node, 3)
    acc = _matmul(ctx, node, x.tensor, x.onnx_shape, w, w_scale, w_zp, 1, None)
    scale, zero_point, signed = ctx.scalar_qparams(node, 6, "output")
    ctx.values[node.output[0]] = ctx.requantize(node, acc, node.output[0], scale, zero_point,
                                                signed)


def _qgemm(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    w, w_scale, w_zp = _qop_weight(ctx, node, 3)
    if ctx.value(node, 7) is None:
        raise ctx.error(node, "QGemm with a float output is not supported; only requantized "
                              "8-bit outputs are")
    trans_b = bool(_attrs(node).get("transB", 0))
    q, axis = _gemm_weight(ctx, node, w, 0 if trans_b else 1)
    acc = _matmul(ctx, node, x.tensor, x.onnx_shape, q, w_scale, w_zp, axis,
                  ctx.constant(node, 6, "bias"))
    scale, zero_point, signed = ctx.scalar_qparams(node, 7, "output")
    ctx.values[node.output[0]] = ctx.requantize(node, acc, node.output[0], scale, zero_point,
                                                signed)


# ------------------------------------------------------------------------------------------------
# Activations: folded into the requantization clamp

def _activation(ctx: Context, node: onnx.NodeProto, low: float | None,
                high: float | None) -> None:
    """Fold ReLU/Clip with bounds ``low``/``high`` into a requantization clamp.

    On float values (QDQ) the bounds are real numbers; on an 8-bit tensor (an integer Relu/Clip
    in a QOperator graph) they are integers, and the op is on the integers themselves.
    """
    value = ctx.value(node, 0)
    match value:
        case Accumulator():
            lo = low if value.low is None or low is None else max(low, value.low)
            hi = high if value.high is None or high is None else min(high, value.high)
            ctx.values[node.output[0]] = dataclasses.replace(value, low=lo, high=hi)
        case Dequantized():
            t = value.tensor
            ctx.narrow_producer(node, value, None if low is None else quantize_scalar(low, t),
                                None if high is None else quantize_scalar(high, t))
            ctx.values[node.output[0]] = value
        case Quantized():
            ctx.narrow_producer(node, value, None if low is None else math.ceil(low),
                                None if high is None else math.floor(high))
            ctx.values[node.output[0]] = value
        case _:
            raise ctx.error(node, "can only follow a quantized convolution or matrix product")


def _relu(ctx: Context, node: onnx.NodeProto) -> None:
    _activation(ctx, node, 0.0, None)


def _clip(ctx: Context, node: onnx.NodeProto) -> None:
    attrs = _attrs(node)
    bounds: list[float | None] = []
    for index, name in ((1, "min"), (2, "max")):
        bound = ctx.constant(node, index, name)
        if bound is not None:
            bounds.append(float(bound.reshape(())))
        else:
            bounds.append(attrs.get(name))  # opset < 11: attributes
    _activation(ctx, node, bounds[0], bounds[1])


# ------------------------------------------------------------------------------------------------
# Pooling and layout: act on the 8-bit integers, the quantization passes through

def _integer_operand(ctx: Context, node: onnx.NodeProto) -> Quantized | Dequantized:
    value = ctx.value(node, 0)
    if not isinstance(value, Quantized | Dequantized):
        raise ctx.error(node, "input must be an 8-bit activation (or its DequantizeLinear)")
    return value


def _max_pool(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    attrs = _attrs(node)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(node, "the Indices output is not supported")
    kernel = tuple(attrs.get("kernel_shape", ()))
    if len(value.onnx_shape) != 4 or len(kernel) != 2:
        raise ctx.error(node, "only 2-D pooling on [1, C, H, W] is supported")
    stride = _spatial(ctx, node, attrs, kernel)
    _, c, h, w = value.onnx_shape
    top, left, bottom, right = _pads(ctx, node, attrs, (h, w), kernel, stride)
    if max(top, bottom) >= kernel[0] or max(left, right) >= kernel[1]:
        raise ctx.error(node, "padding must be smaller than the kernel")
    out = []
    for n, k, s, begin, end in ((h, kernel[0], stride[0], top, bottom),
                                (w, kernel[1], stride[1], left, right)):
        if attrs.get("ceil_mode", 0):
            o = -(-(n + begin + end - k) // s) + 1
            if (o - 1) * s >= n + begin:  # ONNX drops a last window that starts in the padding
                o -= 1
        else:
            o = (n + begin + end - k) // s + 1
        out.append(o)
    # ceil_mode's extra window is extra end padding, which never wins the max.
    bottom = max(bottom, (out[0] - 1) * stride[0] + kernel[0] - h - top)
    right = max(right, (out[1] - 1) * stride[1] + kernel[1] - w - left)
    x = value.tensor
    shape = (1, c, out[0], out[1])
    y = ctx.tensor(node, node.output[0], shape, x.signed, x.scale, x.zero_point)
    ctx.ops.append(ir.MaxPool(x, y, kernel, stride, (top, left, bottom, right), node.name))
    ctx.values[node.output[0]] = type(value)(y, shape)


def _flatten_to(ctx: Context, node: onnx.NodeProto, value: Quantized | Dequantized,
                shape: tuple[int, ...]) -> None:
    """Reshape ``value`` to ``shape``, which must be ``[1, K]`` (or keep the HWC layout)."""
    x = value.tensor
    if math.prod(shape) != math.prod(value.onnx_shape):
        raise ctx.error(node, f"cannot reshape {list(value.onnx_shape)} to {list(shape)}")
    ctx.check_shape(node, node.output[0], shape)
    if len(shape) == 2 and shape[0] == 1 and len(value.onnx_shape) == 4 and x.shape[:2] != (1, 1):
        y = ctx.tensor(node, node.output[0], shape, x.signed, x.scale, x.zero_point)
        ctx.ops.append(ir.Flatten(x, y, node.name))
        ctx.values[node.output[0]] = type(value)(y, shape)
    elif shape[0] == 1 and len(shape) in (2, 4) and x.shape[:2] == (1, 1) and (
            len(shape) == 2 or shape[2:] == (1, 1)):
        # [1, K] ↔ [1, K, 1, 1]: the same elements in the same order, nothing to do.
        ctx.values[node.output[0]] = type(value)(x, shape)
    else:
        raise ctx.error(node, f"only flattening [1, C, H, W] to [1, C·H·W] is supported, not "
                              f"{list(value.onnx_shape)} to {list(shape)}")


def _flatten(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    axis = int(_attrs(node).get("axis", 1))
    dims = value.onnx_shape
    axis = axis + len(dims) if axis < 0 else axis
    _flatten_to(ctx, node, value, (math.prod(dims[:axis]), math.prod(dims[axis:])))


def _reshape(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    target = ctx.constant(node, 1, "shape")
    assert target is not None
    dims = [int(d) for d in target.reshape(-1)]
    if not _attrs(node).get("allowzero", 0):
        dims = [value.onnx_shape[i] if d == 0 else d for i, d in enumerate(dims)]
    if dims.count(-1) == 1:
        known = math.prod(d for d in dims if d != -1)
        dims[dims.index(-1)] = math.prod(value.onnx_shape) // max(known, 1)
    _flatten_to(ctx, node, value, tuple(dims))


#: Every supported op.
OPS: dict[str, Handler] = {
    # constants
    "Constant": _constant,
    "Identity": _identity,
    # quantization boundaries
    "QuantizeLinear": _quantize_linear,
    "DequantizeLinear": _dequantize_linear,
    # QDQ compute
    "Conv": _qdq_conv,
    "Gemm": _qdq_gemm,
    "MatMul": _qdq_matmul,
    # QOperator compute
    "QLinearConv": _qlinear_conv,
    "QLinearMatMul": _qlinear_matmul,
    "com.microsoft.QGemm": _qgemm,
    # activations
    "Relu": _relu,
    "Clip": _clip,
    # pooling and layout
    "MaxPool": _max_pool,
    "Flatten": _flatten,
    "Reshape": _reshape,
}
