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
from codesign.frontend import limits, lut, qonnx
from codesign.frontend.binary import qdq_binary, qlinear_binary
from codesign.frontend.context import Context, hwc_shape, is_normal_scale, quantize_scalar
from codesign.frontend.values import (
    Accumulator,
    Constant,
    Dequantized,
    DequantizedConstant,
    Elementwise,
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
    # String attributes are bytes; an invalid one shows escaped in the refusal that follows.
    return value.decode(errors="backslashreplace") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------------
# Shared pieces: padding, weight quantization, the convolution accumulator

def _pads(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any], size: tuple[int, int],
          kernel: tuple[int, int], stride: tuple[int, int]) -> tuple[int, int, int, int]:
    """``(top, left, bottom, right)`` from ``pads`` or ``auto_pad`` (ONNX Conv/MaxPool rules)."""
    auto_pad = _str(attrs.get("auto_pad", "NOTSET"))
    if auto_pad != "NOTSET" and "pads" in attrs:
        # ONNX: explicit pads cannot be used with auto_pad (onnxruntime refuses the node).
        raise ctx.error(node, f"has both auto_pad {auto_pad!r} and explicit pads; keep one")
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


def _as_2d(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any],
           shape: tuple[int, ...]) -> tuple[dict[str, Any], tuple[int, ...]]:
    """A 1-D convolution's or pooling's attributes and ``[1, C, L]`` input shape as those of the
    2-D op on ``[1, C, 1, L]`` (height 1: kernel, stride and dilation 1, no padding along it)."""
    attrs = dict(attrs)
    for key in ("kernel_shape", "strides", "dilations"):
        if key in attrs:
            values = list(attrs[key])
            if len(values) != 1:
                raise ctx.error(node, f"{key} must have one value for a 1-D input "
                                      f"{list(shape)}, not {values}")
            attrs[key] = [1, values[0]]
    if "pads" in attrs:
        pads = list(attrs["pads"])
        if len(pads) != 2:
            raise ctx.error(node, f"pads must have two values for a 1-D input {list(shape)}, "
                                  f"not {pads}")
        attrs["pads"] = [0, pads[0], 0, pads[1]]
    return attrs, (shape[0], shape[1], 1, shape[2])


def _one_d(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...]) -> bool:
    """Whether a convolution or pooling reads a 1-D activation ``[1, C, L]`` (refusing a 3-D
    input that the frontend holds as rows ``[1, M, K]``)."""
    if len(shape) != 3:
        return False
    if node.input[0] not in ctx.channels_first:
        raise ctx.error(node, f"input {node.input[0]!r} {list(shape)} is held as rows of a "
                              "matrix product, not as a 1-D activation [1, C, L]")
    return True


def _check_padded(ctx: Context, node: onnx.NodeProto, channels: int, size: tuple[int, int],
                  pads: tuple[int, int, int, int]) -> None:
    """Refuse padding that makes the padded input (which the golden model builds) larger than
    an activation may be."""
    top, left, bottom, right = pads
    padded = (1, channels, size[0] + top + bottom, size[1] + left + right)
    problem = limits.check_activation(padded, "the padded input")
    if problem is not None:
        raise ctx.error(node, problem)


def _spatial(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any],
             kernel: tuple[int, int]) -> tuple[int, int]:
    """The strides, after refusing dilations, which the IR has no room for."""
    if len(kernel) != 2:
        raise ctx.error(node, "only 2-D kernels are supported")
    if list(attrs.get("dilations", [1, 1])) != [1, 1]:
        raise ctx.error(node, "dilation is not supported")
    strides = list(attrs.get("strides", [1, 1]))
    if len(strides) != 2 or min(strides) < 1:
        raise ctx.error(node, f"strides must be 2 positive values, not {strides}")
    return strides[0], strides[1]


def _weight_qparams(ctx: Context, node: onnx.NodeProto, q: np.ndarray, scale: np.ndarray,
                    zero_point: np.ndarray | None, axis: int | None,
                    cout_axis: int) -> tuple[np.ndarray, int, np.ndarray]:
    """``(int8 weight, w_zero_point, w_scale[Cout])`` of a weight whose output channels are
    ``cout_axis``.

    ``axis`` is the quantization axis (normalised) when scale is per channel. A uint8 weight is
    shifted to int8 together with its zero point, which leaves every ``w − w_zp`` unchanged.
    """
    cout = q.shape[cout_axis]
    if q.dtype not in (np.int8, np.uint8):
        raise ctx.error(node, f"weights are {q.dtype}; only 8-bit weights are supported "
                              "(quantize with weight_type=QuantType.QInt8)")
    if scale.dtype != np.float32:
        raise ctx.error(node, f"weight scales are {scale.dtype}; only float32 is supported")
    if scale.size == 1:
        w_scale = np.full(cout, scale.reshape(()), np.float32)
    elif scale.shape == (cout,) and axis == cout_axis:
        w_scale = scale.astype(np.float32)
    else:
        raise ctx.error(node, "weight scales must be per tensor or per output channel")
    if not is_normal_scale(w_scale):
        raise ctx.error(node, "weight scales must be positive, finite, normal float32 values")
    if zero_point is not None and zero_point.shape != scale.shape:
        # ONNX gives scale and zero point one shape; onnxruntime refuses such a model.
        raise ctx.error(node, f"weight zero point of shape {list(zero_point.shape)} does not "
                              f"match its scale of shape {list(scale.shape)}")
    zps = np.zeros(1, q.dtype) if zero_point is None else zero_point.reshape(-1)
    if zps.size not in (1, cout) or zps.dtype != q.dtype:
        raise ctx.error(node, "weight zero points must be per tensor or per output channel, of "
                              "the weight's type")
    if np.any(zps != zps[0]):
        raise ctx.error(node, "per-channel weight zero points differ between channels "
                              f"({sorted(set(zps.tolist()))[:4]}...); the NPU needs one weight "
                              "zero point per layer (quantize weights symmetrically)")
    if q.dtype == np.uint8:
        return (q.astype(np.int16) - 128).astype(np.int8), int(zps[0]) - 128, w_scale
    return q, int(zps[0]), w_scale


_INT32 = np.iinfo(np.int32)
#: A bias scale may differ from f32(x_scale · w_scale[c]) by this many float32 units in the last
#: place: exporters that multiply in float64 and round once land within one.
_BIAS_SCALE_ULPS = 4

Bias = np.ndarray | DequantizedConstant | None


def _bias(ctx: Context, node: onnx.NodeProto, bias: Bias, cout: int, x_scale: np.float32,
          w_scale: np.ndarray) -> np.ndarray:
    """The int32 bias; a float32 bias (PT2E exports) is quantized as onnxruntime does.

    ORT's ``WeightBiasQuantization`` rewrites a float bias of a QDQ Conv/Gemm into
    ``Cast<int32>(Round(bias / Mul(x_scale, w_scale)))``, all float32 and Round half to even,
    before fusing the node into its integer kernel; the same formula keeps the two bit-exact.
    An int32 bias behind DequantizeLinear must have the scale ``x_scale · w_scale``
    (:func:`_check_bias_scale`).
    """
    if bias is None:
        return np.zeros(cout, np.int32)
    if isinstance(bias, DequantizedConstant):
        _check_bias_scale(ctx, node, bias, cout, x_scale, w_scale)
        bias = bias.q
    if bias.shape != (cout,) or bias.dtype not in (np.int32, np.float32):
        raise ctx.error(node, f"bias must be int32 or float32 [{cout}], not {bias.dtype} "
                              f"{list(bias.shape)}")
    if bias.dtype == np.int32:
        return bias
    q = np.rint(bias / (np.float32(x_scale) * w_scale).astype(np.float32))
    if not np.all(np.abs(q) <= _INT32.max):
        raise ctx.error(node, "the float bias does not fit int32 at scale x_scale · w_scale")
    return q.astype(np.int32)


def _check_bias_scale(ctx: Context, node: onnx.NodeProto, bias: DequantizedConstant, cout: int,
                      x_scale: np.float32, w_scale: np.ndarray) -> None:
    """Refuse an int32 bias whose DequantizeLinear scale is not ``f32(x_scale · w_scale[c])``.

    onnxruntime's QDQ Conv/Gemm selectors (``qdq_selectors.cc``) only check that the bias is
    int32, and the fusion (``ConvMoves`` in ``qdq_actions.cc``) moves the int32 into the
    integer kernel and drops the bias scale, which is what the NPU computes too. Unfused (other
    optimization levels, other execution providers, the ONNX definition itself) the bias is
    ``q · bias_scale`` in float, which differs whenever the scale is not ``x_scale · w_scale``;
    such a model means two things, so it is refused.
    """
    scale = np.asarray(bias.scale)
    want = (np.float32(x_scale) * w_scale).astype(np.float32)
    per_channel = scale.shape == (cout,) and bias.axis == 0
    if scale.dtype != np.float32 or not (scale.size == 1 or per_channel):
        raise ctx.error(node, f"bias {node.input[2]!r} needs a float32 scale per tensor or per "
                              f"output channel [{cout}], not {scale.dtype} {list(scale.shape)}")
    have = np.broadcast_to(scale.reshape(-1), want.shape)
    # float64 holds both float32 values and their difference exactly.
    off = np.abs(have.astype(np.float64) - want) > _BIAS_SCALE_ULPS * np.spacing(want)
    bad = np.flatnonzero(off | ~np.isfinite(have))
    if bad.size:
        c = int(bad[0])
        raise ctx.error(node, f"bias {node.input[2]!r} has scale {have[c]} (output channel {c}) "
                              f"but x_scale · w_scale is {want[c]}; the int32 bias must be "
                              "quantized with that scale (re-export the model)")


def _qdq_bias(ctx: Context, node: onnx.NodeProto, index: int) -> Bias:
    """A QDQ model's bias: the int32 behind a ``DequantizeLinear``, a float32 initializer (PT2E),
    or none."""
    value = ctx.value(node, index)
    if value is None:
        return None
    if isinstance(value, Constant) and value.value.dtype == np.float32:
        return value.value
    if not isinstance(value, DequantizedConstant) or value.q.dtype != np.int32 or (
            value.zero_point.dtype != np.int32 or np.any(value.zero_point != 0)):
        raise ctx.error(node, "bias must be a float32 initializer or an int32 one behind "
                              "DequantizeLinear with an int32 zero point 0")
    return value


def _conv(ctx: Context, node: onnx.NodeProto, x: ir.Tensor, x_shape: tuple[int, ...],
          w: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray | None, w_axis: int | None,
          bias: Bias) -> Accumulator:
    """The accumulator of a Conv / QLinearConv; ``w`` is ONNX ``[Cout, Cin / group, KH, KW]``."""
    attrs = _attrs(node)
    one_d = _one_d(ctx, node, x_shape) and w.ndim == 3
    if one_d:
        attrs, x_shape = _as_2d(ctx, node, attrs, x_shape)
        w = w[:, :, None, :]
    if len(x_shape) != 4 or w.ndim != 4:
        raise ctx.error(node, "only 1-D and 2-D convolutions on [1, C, L] and [1, C, H, W] "
                              "inputs are supported")
    cout, cin, kh, kw = w.shape
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != [kh, kw]:
        raise ctx.error(node, "kernel_shape does not match the weight")
    stride = _spatial(ctx, node, attrs, (kh, kw))
    groups = int(attrs.get("group", 1))
    if groups < 1 or cout % groups or x_shape[1] != cin * groups:
        raise ctx.error(node, f"weight [{cout}, {cin}, {kh}, {kw}] with group={groups} does not "
                              f"fit an input of {x_shape[1]} channels")
    h, width = x_shape[2], x_shape[3]
    pads = _pads(ctx, node, attrs, (h, width), (kh, kw), stride)
    oh = (h + pads[0] + pads[2] - kh) // stride[0] + 1
    ow = (width + pads[1] + pads[3] - kw) // stride[1] + 1
    if oh < 1 or ow < 1:
        raise ctx.error(node, "the kernel is larger than the padded input")
    _check_padded(ctx, node, x_shape[1], (h, width), pads)
    _check_work(ctx, node, (kh, kw, cin * groups, cout), oh * ow * kh * kw * cin * cout)
    q, w_zero_point, scales = _weight_qparams(ctx, node, w, w_scale, w_zp, w_axis, 0)
    return Accumulator(
        x=x, weight=np.ascontiguousarray(q.transpose(2, 3, 1, 0)), w_zero_point=w_zero_point,
        w_scale=scales, bias=_bias(ctx, node, bias, cout, x.scale, scales), stride=stride,
        pads=pads, onnx_shape=(1, cout, ow) if one_d else (1, cout, oh, ow), name=node.name,
        groups=groups)


def _check_work(ctx: Context, node: onnx.NodeProto, dense: tuple[int, ...], macs: int) -> None:
    """Refuse a layer whose dense weights (a grouped convolution is lowered as a dense one) or
    multiply-accumulates exceed codesign's limits."""
    if math.prod(dense) > limits.MAX_CONSTANT_ELEMENTS:
        raise ctx.error(node, f"its weights as a dense convolution {list(dense)} have more than "
                              f"{limits.MAX_CONSTANT_ELEMENTS} elements (codesign's limit)")
    if macs > limits.MAX_LAYER_MACS:
        raise ctx.error(node, f"{macs} multiply-accumulates, more than codesign's limit of "
                              f"{limits.MAX_LAYER_MACS} per layer")


def _matmul(ctx: Context, node: onnx.NodeProto, x: ir.Tensor, x_shape: tuple[int, ...],
            w: np.ndarray, w_scale: np.ndarray, w_zp: np.ndarray | None, w_axis: int | None,
            bias: Bias) -> Accumulator:
    """The accumulator of ``x @ w`` (``w`` is ``[K, N]``) as a 1×1 convolution."""
    if w.ndim > 2:
        raise ctx.error(node, f"the weight {list(w.shape)} is batched (a matrix per batch item); "
                              "only a constant [K, N] weight is supported")
    if w.ndim != 2 or len(x_shape) not in (2, 3) or x_shape[-1] != w.shape[0] or (
            len(x_shape) == 3 and x_shape[0] != 1):
        raise ctx.error(node, f"only [M, K] or [1, M, K] @ constant [K, N] is supported, not "
                              f"{list(x_shape)} @ {list(w.shape)}")
    if len(x_shape) == 3 and node.input[0] in ctx.channels_first:
        raise ctx.error(node, f"input {node.input[0]!r} {list(x_shape)} is a 1-D activation "
                              "[1, C, L], not rows [1, M, K]; transpose it first")
    _check_work(ctx, node, (1, 1, *w.shape), math.prod(x_shape) * w.shape[1])
    q, w_zero_point, scales = _weight_qparams(ctx, node, w, w_scale, w_zp, w_axis, 1)
    n = w.shape[1]
    return Accumulator(
        x=x, weight=np.ascontiguousarray(q.reshape(1, 1, *w.shape)), w_zero_point=w_zero_point,
        w_scale=scales, bias=_bias(ctx, node, bias, n, x.scale, scales), stride=(1, 1),
        pads=(0, 0, 0, 0), onnx_shape=(*x_shape[:-1], n), name=node.name)


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
    if isinstance(value, Constant):
        ctx.values[node.output[0]] = Constant(_quantize_constant(ctx, node, value.value))
        return
    attrs = _attrs(node)
    if attrs.get("block_size", 0):
        raise ctx.error(node, "blocked quantization is not supported")
    scale, zero_point, signed = ctx.scalar_qparams(node, 1, "output")
    output_dtype = attrs.get("output_dtype", 0)
    has_zero_point = len(node.input) > 2 and bool(node.input[2])
    if output_dtype not in (0, onnx.TensorProto.UINT8, onnx.TensorProto.INT8) or (
            has_zero_point and output_dtype and signed != (output_dtype == onnx.TensorProto.INT8)):
        raise ctx.error(node, f"output_dtype {output_dtype} does not give an 8-bit output of the "
                              "zero point's type")
    signed = signed or output_dtype == onnx.TensorProto.INT8
    out = node.output[0]
    match value:
        case FloatInput():
            t = ctx.bind_float_input(node, value, out, scale, zero_point, signed)
            ctx.values[out] = Quantized(t, value.onnx_shape)
        case Accumulator() | Elementwise():
            ctx.values[out] = ctx.requantize(node, value, out, scale, zero_point, signed)
        case Dequantized():
            t = value.tensor
            if (scale, zero_point, signed) == (t.scale, t.zero_point, t.signed):
                ctx.values[out] = Quantized(t, value.onnx_shape)
            else:
                # A standalone requantization, which onnxruntime runs as float DQ then Q: the
                # identity function's lookup table.
                identity = lut.FloatFunction(t, value.onnx_shape, lut.dequantized, (),
                                             node.name)
                ctx.values[out] = lut.lut_after_quantize(ctx, node, identity, scale,
                                                         zero_point, signed)
        case lut.FloatFunction():
            ctx.values[out] = lut.lut_after_quantize(ctx, node, value, scale, zero_point, signed)
        case _:
            raise ctx.error(node, "can only quantize a float constant (a weight), a float graph "
                                  "input or the float output of a quantized Conv/Gemm/MatMul/"
                                  "pooling/Add/Concat/layout op")


def _quantize_constant(ctx: Context, node: onnx.NodeProto, x: np.ndarray) -> np.ndarray:
    """QuantizeLinear of a float constant (a Brevitas weight), folded at load time as ONNX
    defines it: ``saturate(round_half_even(x / scale) + zero_point)``, float32 divide, per
    tensor or per ``axis``."""
    attrs = _attrs(node)
    scale = ctx.constant(node, 1, "scale")
    zero_point = ctx.constant(node, 2, "zero point")
    if x.dtype != np.float32 or scale is None or scale.dtype != np.float32:
        raise ctx.error(node, "can only quantize a float32 constant with a float32 scale")
    if not is_normal_scale(scale):
        raise ctx.error(node, "scales must be positive, finite, normal float32 values")
    if attrs.get("block_size", 0):
        raise ctx.error(node, "blocked quantization is not supported")
    dtype = np.dtype(np.uint8) if zero_point is None else zero_point.dtype
    if dtype not in (np.int8, np.uint8, np.int32) or attrs.get("output_dtype", 0) not in (
            0, onnx.helper.np_dtype_to_tensor_dtype(dtype)):
        raise ctx.error(node, f"quantizes a constant to {dtype}; only int8, uint8 and int32 "
                              "constants are supported")
    axis = int(attrs.get("axis", 1))
    axis = axis + x.ndim if axis < 0 else axis
    shape = [1] * x.ndim
    if scale.size > 1:
        if not 0 <= axis < x.ndim or scale.shape != (x.shape[axis],):
            raise ctx.error(node, f"scale of shape {list(scale.shape)} is neither per tensor nor "
                                  f"per axis {axis} of the constant {list(x.shape)}")
        shape[axis] = scale.size
    zp = np.zeros(1, dtype) if zero_point is None else zero_point
    if zp.size not in (1, scale.size):
        raise ctx.error(node, f"zero point of shape {list(zp.shape)} does not match its scale "
                              f"of shape {list(scale.shape)}")
    info = np.iinfo(dtype)
    with np.errstate(all="ignore"):
        q = np.rint(x / scale.reshape(shape if scale.size > 1 else ())).astype(np.float64)
    q = q + zp.astype(np.float64).reshape(shape if zp.size > 1 else ())
    if np.isnan(q).any():
        raise ctx.error(node, "quantizes a NaN")
    return np.clip(q, info.min, info.max).astype(dtype)


def _dequantize_linear(ctx: Context, node: onnx.NodeProto) -> None:
    value = ctx.value(node, 0)
    out = node.output[0]
    if isinstance(value, Constant):
        q = value.value
        scale = ctx.constant(node, 1, "scale")
        zero_point = ctx.constant(node, 2, "zero point")
        if q.dtype not in (np.int8, np.uint8, np.int32) or scale is None:
            raise ctx.error(node, f"cannot dequantize a {q.dtype} constant")
        if zero_point is not None and (zero_point.size != scale.size or (
                scale.size > 1 and zero_point.shape != scale.shape)):
            # ONNX gives scale and zero point one shape (per tensor: [] and [1] alike);
            # onnxruntime refuses the node otherwise when it runs it.
            raise ctx.error(node, f"{out!r} has a zero point of shape "
                                  f"{list(zero_point.shape)} and a scale of shape "
                                  f"{list(scale.shape)}; they must match")
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
    ctx.values[node.output[0]] = _conv(ctx, node, x.tensor, x.onnx_shape, w.q, w.scale,
                                       w.zero_point, w.axis, _qdq_bias(ctx, node, 2))


def _qdq_gemm(ctx: Context, node: onnx.NodeProto) -> None:
    x, w = _qdq_operands(ctx, node)
    q, axis = _gemm_weight(ctx, node, w.q, w.axis)
    ctx.values[node.output[0]] = _matmul(ctx, node, x.tensor, x.onnx_shape, q, w.scale,
                                         w.zero_point, axis, _qdq_bias(ctx, node, 2))


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


def _qop_bias(ctx: Context, node: onnx.NodeProto, index: int) -> np.ndarray | None:
    """A QOperator node's bias: int32 by its schema (onnxruntime refuses another type)."""
    bias = ctx.constant(node, index, "bias")
    if bias is not None and bias.dtype != np.int32:
        raise ctx.error(node, f"bias must be int32, not {bias.dtype}")
    return bias


def _qlinear_conv(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    w, w_scale, w_zp = _qop_weight(ctx, node, 3)
    acc = _conv(ctx, node, x.tensor, x.onnx_shape, w, w_scale, w_zp, 0,
                _qop_bias(ctx, node, 8))
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
                  _qop_bias(ctx, node, 6))
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
        case Constant() if value.value.dtype in (np.int8, np.uint8, np.int32):
            # A Brevitas 2–7-bit or narrow-range weight: QuantizeLinear → Clip → DequantizeLinear
            q = value.value
            info = np.iinfo(q.dtype)
            lo = int(info.min) if low is None else max(math.ceil(low), int(info.min))
            hi = int(info.max) if high is None else min(math.floor(high), int(info.max))
            if lo > hi:
                raise ctx.error(node, f"bounds [{low}, {high}] leave no values")
            ctx.values[node.output[0]] = Constant(np.clip(q, lo, hi).astype(q.dtype))
        case Accumulator() | Elementwise():
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
        case lut.FloatFunction():
            lut.relu_or_clip(ctx, node, low, high)
        case _:
            raise ctx.error(node, "can only follow a quantized convolution, matrix product, "
                                  "average pool or Add, an integer constant (a weight) or the "
                                  "QuantizeLinear of a graph input")


def _relu(ctx: Context, node: onnx.NodeProto) -> None:
    _activation(ctx, node, 0.0, None)


def _clip(ctx: Context, node: onnx.NodeProto) -> None:
    attrs = _attrs(node)
    bounds: list[float | None] = []
    for index, name in ((1, "min"), (2, "max")):
        bound = ctx.constant(node, index, name)
        if bound is not None:
            if bound.size != 1:
                raise ctx.error(node, f"{name} must be one value, not {list(bound.shape)}")
            bounds.append(float(bound.reshape(())))
        else:
            bounds.append(attrs.get(name))  # opset < 11: attributes
    if any(b is not None and math.isnan(b) for b in bounds):
        raise ctx.error(node, f"bounds {bounds} include NaN")
    _activation(ctx, node, bounds[0], bounds[1])


# ------------------------------------------------------------------------------------------------
# Pooling and element-wise ops. MaxPool acts on the integers (the quantization passes through);
# the others become Elementwise values, requantized by their QuantizeLinear (QDQ)

def _integer_operand(ctx: Context, node: onnx.NodeProto) -> Quantized | Dequantized:
    value = ctx.value(node, 0)
    if not isinstance(value, Quantized | Dequantized):
        raise ctx.error(node, "input must be an 8-bit activation (or its DequantizeLinear)")
    return value


def _dequantized(ctx: Context, node: onnx.NodeProto, index: int) -> Dequantized:
    value = ctx.value(node, index)
    if isinstance(value, lut.FloatFunction):
        last = value.names[-1] if value.names else "the op"
        raise ctx.error(node, f"input {node.input[index]!r} is {', '.join(value.names)} of an "
                              "8-bit tensor, left unquantized; quantize it (e.g. add "
                              f"{last} to quantize_static's op_types_to_quantize)")
    if not isinstance(value, Dequantized):
        raise ctx.error(node, f"input {node.input[index]!r} must come from DequantizeLinear of "
                              "an 8-bit activation")
    return value


def _max_pool(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    attrs = _attrs(node)
    if len(node.output) > 1 and node.output[1]:
        raise ctx.error(node, "the Indices output is not supported")
    in_shape = value.onnx_shape
    one_d = _one_d(ctx, node, in_shape)
    if one_d:
        attrs, in_shape = _as_2d(ctx, node, attrs, in_shape)
    kernel = tuple(attrs.get("kernel_shape", ()))
    if len(in_shape) != 4 or len(kernel) != 2:
        raise ctx.error(node, "only 1-D and 2-D pooling on [1, C, L] and [1, C, H, W] is "
                              "supported")
    stride = _spatial(ctx, node, attrs, kernel)
    _, c, h, w = in_shape
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
    _check_padded(ctx, node, c, (h, w), (top, left, bottom, right))
    x = value.tensor
    shape = (1, c, out[1]) if one_d else (1, c, out[0], out[1])
    y = ctx.tensor(node, node.output[0], shape, x.signed, x.scale, x.zero_point)
    ctx.ops.append(ir.MaxPool(x, y, kernel, stride, (top, left, bottom, right), node.name))
    ctx.values[node.output[0]] = type(value)(y, shape)


def _window(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...],
            attrs: dict[str, Any]) -> tuple[tuple[int, int], tuple[int, int], tuple[int, ...]]:
    """``(kernel, stride, output shape)`` of an AveragePool, which must have no padding.

    The IR's average divides by the whole window; a padded window's divisor depends on
    ``count_include_pad`` and on the position, which the NPU does not model.
    """
    one_d = _one_d(ctx, node, shape)
    if one_d:
        attrs, shape = _as_2d(ctx, node, attrs, shape)
    kernel = tuple(attrs.get("kernel_shape", ()))
    if len(shape) != 4 or len(kernel) != 2:
        raise ctx.error(node, "only 1-D and 2-D pooling on [1, C, L] and [1, C, H, W] is "
                              "supported")
    stride = _spatial(ctx, node, attrs, kernel)
    _, c, h, w = shape
    if _pads(ctx, node, attrs, (h, w), kernel, stride) != (0, 0, 0, 0):
        raise ctx.error(node, "average pooling with padding is not supported (the divisor of "
                              "a padded window varies); pad with a Conv or pool without pads")
    out = [(n - k) // s + 1 for n, k, s in zip((h, w), kernel, stride, strict=True)]
    if min(out) < 1:
        raise ctx.error(node, "the kernel is larger than the input")
    if attrs.get("ceil_mode", 0) and any((n - k) % s for n, k, s in zip((h, w), kernel, stride,
                                                                         strict=True)):
        raise ctx.error(node, "ceil_mode adds a partial window, which is not supported")
    return (kernel[0], kernel[1]), stride, (1, c, out[1]) if one_d else (1, c, out[0], out[1])


def _plane(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...]) -> tuple[int, int]:
    """The whole-plane window of a global average over [1, C, H, W] (or [1, C, L])."""
    if _one_d(ctx, node, shape):
        return 1, shape[2]
    if len(shape) != 4:
        raise ctx.error(node, "only [1, C, H, W] and [1, C, L] inputs are supported")
    return shape[2], shape[3]


def _pooled(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The output shape of a global pool (keepdims) of ``shape``."""
    return (*shape[:2], *(1 for _ in shape[2:]))


def _qdq_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = _dequantized(ctx, node, 0)
    kernel, stride, shape = _window(ctx, node, x.onnx_shape, _attrs(node))
    ctx.values[node.output[0]] = Elementwise(ir.OpKind.AVGPOOL, (x.tensor,), shape, node.name,
                                             kernel, stride)


def _qdq_global_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = _dequantized(ctx, node, 0)
    kernel = _plane(ctx, node, x.onnx_shape)
    ctx.values[node.output[0]] = Elementwise(ir.OpKind.AVGPOOL, (x.tensor,),
                                             _pooled(x.onnx_shape), node.name, kernel)


def _qdq_reduce_mean(ctx: Context, node: onnx.NodeProto) -> None:
    """ReduceMean over H and W: a global average pool (``keepdims=0`` gives ``[1, C]``)."""
    x = _dequantized(ctx, node, 0)
    attrs = _attrs(node)
    axes = ctx.constant(node, 1, "axes")
    listed = attrs.get("axes", []) if axes is None else axes.reshape(-1).tolist()
    kernel = _plane(ctx, node, x.onnx_shape)
    rank = len(x.onnx_shape)
    reduced = {a % rank for a in listed}
    # A mean over H and W, or over the one of them that is longer than 1 (dynamo exports an
    # adaptive 1-D average as Unsqueeze → ReduceMean over the last axis → Squeeze).
    if not listed or not reduced <= set(range(2, rank)) or any(
            x.onnx_shape[a] > 1 for a in range(2, rank) if a not in reduced):
        raise ctx.error(node, f"only the mean over H and W (axes 2, 3) or over L (axis 2 of "
                              f"[1, C, L]) is supported, not axes {listed}")
    shape = (_pooled(x.onnx_shape) if attrs.get("keepdims", 1) else
             tuple(d for a, d in enumerate(x.onnx_shape) if a not in reduced))
    ctx.values[node.output[0]] = Elementwise(ir.OpKind.AVGPOOL, (x.tensor,), shape, node.name,
                                             kernel)


def _arithmetic(ctx: Context, node: onnx.NodeProto) -> None:
    """Add / Sub / Mul / Div on float tensors, QDQ.

    What onnxruntime does decides where each form goes. Its QDQ transformer fuses an op whose
    operands are all DequantizeLinear outputs (two activations, or an activation and an 8-bit
    constant) into QLinearAdd / QLinearMul: the ELTWISE engine's integer formula
    (:mod:`codesign.frontend.binary`). Anything else (a float constant, or an operand that is
    already a float function of a tensor: ``x − 0.5``, HardSwish's ``x · HardSigmoid(x)``) it
    runs in float, and when every operand is a function of the same 8-bit tensor the whole
    chain is one lookup table, exact by construction (:mod:`codesign.frontend.lut`).
    """
    values = [ctx.value(node, i) for i in range(len(node.input))]
    fused = (node.op_type != "Div" and len(values) == 2
             and all(isinstance(v, Dequantized | DequantizedConstant) for v in values))
    if fused:
        qdq_binary(ctx, node)
    else:
        lut.binary(ctx, node)


def _channel_axis(shape: tuple[int, ...], channels_first: bool) -> int:
    """The ONNX axis of the IR's channels: 1 for [1, C, H, W] and [1, C, L], else the last."""
    return 1 if len(shape) == 4 or channels_first else len(shape) - 1


def _concat_axis(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...],
                 channels_first: bool = False) -> None:
    """Refuse a Concat along anything but the channels (the IR's innermost axis)."""
    axis = int(_attrs(node).get("axis", 1))
    if axis % len(shape) != _channel_axis(shape, channels_first):
        raise ctx.error(node, f"only concatenation along the channels is supported, not axis "
                              f"{axis} of {list(shape)}")


def _concatenated(ctx: Context, node: onnx.NodeProto,
                  values: list[Quantized | Dequantized]) -> Elementwise:
    shapes = [v.onnx_shape for v in values]
    first = values[0].tensor.channels_first
    _concat_axis(ctx, node, shapes[0], first)
    channel = _channel_axis(shapes[0], first)
    rest = {s[:channel] + s[channel + 1:] for s in shapes}
    if len(rest) != 1:
        raise ctx.error(node, f"inputs differ in more than the channels: {shapes}")
    shape = list(shapes[0])
    shape[channel] = sum(s[channel] for s in shapes)
    return Elementwise(ir.OpKind.CONCAT, tuple(v.tensor for v in values), tuple(shape),
                       node.name)


def _qdq_concat(ctx: Context, node: onnx.NodeProto) -> None:
    values: list[Quantized | Dequantized] = [_dequantized(ctx, node, i)
                                             for i in range(len(node.input))]
    ctx.values[node.output[0]] = _concatenated(ctx, node, values)


# ------------------------------------------------------------------------------------------------
# QOperator element-wise ops (com.microsoft): 8-bit in, 8-bit out in one node

def _qop_output(ctx: Context, node: onnx.NodeProto, value: Elementwise, scale_index: int) -> None:
    scale, zero_point, signed = ctx.scalar_qparams(node, scale_index, "output")
    ctx.values[node.output[0]] = ctx.requantize(node, value, node.output[0], scale, zero_point,
                                                signed)


def _channels_first(ctx: Context, node: onnx.NodeProto) -> dict[str, Any]:
    attrs = _attrs(node)
    if attrs.get("channels_last", 0):
        raise ctx.error(node, "channels_last=1 is not supported")
    return attrs


def _qlinear_binary(ctx: Context, node: onnx.NodeProto) -> None:
    """QLinearAdd / QLinearMul (:mod:`codesign.frontend.binary`)."""
    _qop_output(ctx, node, qlinear_binary(ctx, node), 6)


def _qlinear_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    kernel, stride, shape = _window(ctx, node, x.onnx_shape,
                                    _channels_first(ctx, node))
    _qop_output(ctx, node, Elementwise(ir.OpKind.AVGPOOL, (x.tensor,), shape, node.name, kernel,
                                       stride), 3)


def _qlinear_global_average_pool(ctx: Context, node: onnx.NodeProto) -> None:
    x = ctx.quantized_input(node, 0, 1)
    _channels_first(ctx, node)
    kernel = _plane(ctx, node, x.onnx_shape)
    _qop_output(ctx, node, Elementwise(ir.OpKind.AVGPOOL, (x.tensor,), _pooled(x.onnx_shape),
                                       node.name, kernel), 3)


def _qlinear_concat(ctx: Context, node: onnx.NodeProto) -> None:
    """Inputs: ``Y_scale, Y_zero_point``, then ``X, X_scale, X_zero_point`` per operand."""
    if len(node.input) < 5 or (len(node.input) - 2) % 3:
        raise ctx.error(node, "expects Y_scale, Y_zero_point and (X, X_scale, X_zero_point) "
                              "triples")
    values: list[Quantized | Dequantized] = [ctx.quantized_input(node, i, i + 1)
                                             for i in range(2, len(node.input), 3)]
    _qop_output(ctx, node, _concatenated(ctx, node, values), 0)


# ------------------------------------------------------------------------------------------------
# Layout: only reinterpretations that move no data (and the IR's CHW Flatten)

def _hwc_of_onnx(a: np.ndarray, channels_first: bool = False) -> np.ndarray:
    """An ONNX-layout array (one inference) as the IR's HWC array."""
    if a.ndim == 4:
        return a[0].transpose(1, 2, 0)
    if a.ndim == 3 and channels_first:
        return a[0].T[None]
    return a.reshape(hwc_shape(a.shape, "tensor"))


def _layout(ctx: Context, node: onnx.NodeProto, move: Callable[[np.ndarray], np.ndarray]) -> None:
    """Apply the layout op ``move`` (on ONNX-layout arrays) to input 0.

    Tracing element indices through ``move`` tells what the op does to the IR's HWC tensor: the
    same elements in the same order is a reinterpretation (no IR op; also allowed on float
    values not yet requantized); ONNX's flatten of [1, C, H, W] to [1, C·H·W] is
    :class:`ir.Flatten`; anything else would move data and is refused.
    """
    value = ctx.value(node, 0)
    if not isinstance(value, Quantized | Dequantized | Accumulator | Elementwise | FloatInput):
        raise ctx.error(node, "input must be an 8-bit activation (or its DequantizeLinear)")
    src_first = node.input[0] in ctx.channels_first and len(value.onnx_shape) == 3
    src = hwc_shape(value.onnx_shape, f"input {node.input[0]!r}", src_first)
    # A convolution's shape is not yet an IR tensor's, whose limits would bound it.
    problem = limits.check_activation(value.onnx_shape, f"input {node.input[0]!r}")
    if problem is not None:
        raise ctx.error(node, problem)
    order = np.arange(math.prod(src)).reshape(src)
    onnx_order = (order.transpose(2, 0, 1).reshape(value.onnx_shape)
                  if len(value.onnx_shape) == 4 or src_first else order.reshape(value.onnx_shape))
    try:
        moved = move(onnx_order)
    except ValueError as e:
        raise ctx.error(node, f"cannot apply to {list(value.onnx_shape)}: {e}") from None
    shape = tuple(moved.shape)
    ctx.check_shape(node, node.output[0], shape)
    out = node.output[0]
    dst_first = out in ctx.channels_first and len(shape) == 3
    dst = hwc_shape(shape, f"output {out!r}", dst_first)
    hwc = _hwc_of_onnx(moved, dst_first)
    if not (dst == src and np.array_equal(hwc, order)) and len(shape) == 3 and _flip(ctx, out):
        # Nothing decided the output's layout, and as a 1-D activation it is the same data.
        dst_first = True
        dst = hwc_shape(shape, f"output {out!r}", dst_first)
        hwc = _hwc_of_onnx(moved, dst_first)
        if dst == src and np.array_equal(hwc, order):
            group = ctx.undecided[out]
            ctx.channels_first.update(group)
            for name in group:
                del ctx.undecided[name]
    if dst == src and np.array_equal(hwc, order):
        if isinstance(value, FloatInput):
            ctx.values[out] = dataclasses.replace(value, onnx_shape=shape,
                                                  input_shape=value.input_shape
                                                  or value.onnx_shape)
            return
        ctx.values[out] = dataclasses.replace(value, onnx_shape=shape)
    elif (isinstance(value, Quantized | Dequantized) and len(shape) == 2
          and np.array_equal(hwc.reshape(-1), order.transpose(2, 0, 1).reshape(-1))):
        x = value.tensor
        y = ctx.tensor(node, out, shape, x.signed, x.scale, x.zero_point)
        ctx.ops.append(ir.Flatten(x, y, node.name))
        ctx.values[out] = type(value)(y, shape)
    else:
        raise ctx.error(node, f"{list(value.onnx_shape)} → {list(shape)} moves data; only layout-"
                              "only changes (e.g. [1, C, 1, 1] → [1, C]) and flattening "
                              "[1, C, H, W] to [1, C·H·W] on 8-bit tensors are supported")


def _flip(ctx: Context, name: str) -> bool:
    """Whether the undecided tensor ``name`` may still become a 1-D activation: none of its
    group has a value yet."""
    group = ctx.undecided.get(name)
    return group is not None and not any(n in ctx.values for n in group if n != name)


def _axes(ctx: Context, node: onnx.NodeProto) -> list[int] | None:
    """The ``axes`` input (opset ≥ 13) or attribute of Squeeze/Unsqueeze."""
    axes = ctx.constant(node, 1, "axes")
    if axes is not None:
        return [int(a) for a in axes.reshape(-1)]
    listed = _attrs(node).get("axes")
    return None if listed is None else list(listed)


def _flatten(ctx: Context, node: onnx.NodeProto) -> None:
    axis = int(_attrs(node).get("axis", 1))
    _layout(ctx, node, lambda a: a.reshape(math.prod(a.shape[:axis]), -1))


def _reshape(ctx: Context, node: onnx.NodeProto) -> None:
    target = ctx.constant(node, 1, "shape")
    assert target is not None
    dims = [int(d) for d in target.reshape(-1)]
    allow_zero = _attrs(node).get("allowzero", 0)

    def move(a: np.ndarray) -> np.ndarray:
        # ONNX's 0 copies the input dimension unless allowzero; numpy has no such rule.
        return a.reshape([a.shape[i] if d == 0 and not allow_zero else d
                          for i, d in enumerate(dims)])

    _layout(ctx, node, move)


def _transpose(ctx: Context, node: onnx.NodeProto) -> None:
    perm = _attrs(node).get("perm")
    value = ctx.value(node, 0)
    if isinstance(value, DequantizedConstant):
        # A weight transposed after its DequantizeLinear (Brevitas' TorchScript QCDQ and QONNX
        # QuantLinear without bias: MatMul(x, Transpose(W))); the quantization axis moves along.
        order = list(range(value.q.ndim))[::-1] if perm is None else list(perm)
        if sorted(order) != list(range(value.q.ndim)):
            raise ctx.error(node, f"perm {order} is not a permutation of {value.q.ndim} axes")
        ctx.values[node.output[0]] = dataclasses.replace(
            value, q=np.ascontiguousarray(value.q.transpose(order)), axis=order.index(value.axis))
        return
    _layout(ctx, node, lambda a: a.transpose(perm))


def _squeeze(ctx: Context, node: onnx.NodeProto) -> None:
    axes = _axes(ctx, node)
    _layout(ctx, node, lambda a: a.squeeze(None if axes is None else tuple(axes)))


def _unsqueeze(ctx: Context, node: onnx.NodeProto) -> None:
    axes = _axes(ctx, node)
    if axes is None:
        raise ctx.error(node, "needs axes")
    _layout(ctx, node, lambda a: np.expand_dims(a, tuple(axes)))


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
    # pooling (max pooling also on QOperator's 8-bit tensors)
    "MaxPool": _max_pool,
    "AveragePool": _qdq_average_pool,
    "GlobalAveragePool": _qdq_global_average_pool,
    "ReduceMean": _qdq_reduce_mean,
    "com.microsoft.QLinearAveragePool": _qlinear_average_pool,
    "com.microsoft.QLinearGlobalAveragePool": _qlinear_global_average_pool,
    # element-wise
    "Add": _arithmetic,
    "Sub": _arithmetic,
    "Mul": _arithmetic,
    "Div": _arithmetic,
    "Concat": _qdq_concat,
    "com.microsoft.QLinearAdd": _qlinear_binary,
    "com.microsoft.QLinearConcat": _qlinear_concat,
    "com.microsoft.QLinearMul": _qlinear_binary,
    # layout
    "Flatten": _flatten,
    "Reshape": _reshape,
    "Transpose": _transpose,
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
    # element-wise float functions of one tensor, DequantizeLinear to QuantizeLinear: ir.Lut
    # (codesign/frontend/lut.py; Add/Sub/Mul/Div, Relu and Clip above hand float functions
    # to it)
    **lut.HANDLERS,
    # QONNX (Brevitas export_qonnx): Quant, BipolarQuant, Trunc (codesign/frontend/qonnx.py)
    **qonnx.OPS,
}

# Padding and upsampling (Pad, Resize, ConvTranspose) live in their own module, which uses the
# helpers above.
from codesign.frontend.resample_ops import OPS as _RESAMPLE_OPS  # noqa: E402

OPS.update(_RESAMPLE_OPS)
