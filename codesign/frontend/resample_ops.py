"""Op handlers for padding and upsampling: Pad, Resize (nearest), ConvTranspose.

Pad and Resize move integers: on a QDQ model's dequantized tensor (``DQ → Pad → Q``, which the
QuantizeLinear must give back the same quantization) or on an 8-bit tensor (QOperator models),
as MaxPool does. ConvTranspose is a convolution on quantized operands whose QuantizeLinear emits
:class:`ir.ConvTranspose`. :func:`fold_pads` folds a Pad into the Conv or MaxPool that is its
only reader where that is exactly equivalent. :data:`OPS` joins the op table of
:mod:`codesign.frontend.ops`.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np
import onnx

from codesign import ir
from codesign.frontend import limits, ranges
from codesign.frontend.context import Context, quantize_scalar
from codesign.frontend.ops import (
    _attrs,
    _bias,
    _check_work,
    _integer_operand,
    _qdq_bias,
    _qdq_operands,
    _str,
    _weight_qparams,
)
from codesign.frontend.values import Accumulator, Constant, Dequantized, Quantized
from codesign.resample import nearest_indices

__all__ = ["OPS", "fold_pads"]


def _output(ctx: Context, node: onnx.NodeProto, value: Quantized | Dequantized,
            shape: tuple[int, ...]) -> ir.Tensor:
    """A new 8-bit tensor of ``shape`` quantized as ``value`` (the op moves integers)."""
    x = value.tensor
    y = ctx.tensor(node, node.output[0], shape, x.signed, x.scale, x.zero_point)
    ctx.values[node.output[0]] = type(value)(y, shape)
    return y


# ------------------------------------------------------------------------------------------------
# Pad

def _pad_amounts(ctx: Context, node: onnx.NodeProto, rank: int) -> list[int]:
    """ONNX ``pads`` ([begin per axis, end per axis]) over all ``rank`` axes."""
    attrs = _attrs(node)
    pads = ctx.constant(node, 1, "pads")
    listed = list(attrs.get("pads", [])) if pads is None else [int(p) for p in pads.reshape(-1)]
    axes = ctx.constant(node, 3, "axes")
    if axes is None:
        if len(listed) != 2 * rank:
            raise ctx.error(node, f"pads must have {2 * rank} values, not {listed}")
        return listed
    axes_list = [int(a) % rank for a in axes.reshape(-1)]
    if len(listed) != 2 * len(axes_list) or len(set(axes_list)) != len(axes_list):
        raise ctx.error(node, f"pads {listed} do not match axes {axes_list}")
    full = [0] * (2 * rank)
    for i, a in enumerate(axes_list):
        full[a], full[rank + a] = listed[i], listed[len(axes_list) + i]
    return full


def _pad_value(ctx: Context, node: onnx.NodeProto, value: Quantized | Dequantized) -> int:
    """The pad value as an integer of the tensor: a real value quantized (QDQ: the float Pad's
    value goes through the QuantizeLinear that follows) or the 8-bit constant itself."""
    x = value.tensor
    constant = ctx.constant(node, 2, "constant_value")
    if constant is None:
        real = float(_attrs(node).get("value", 0.0))
        return quantize_scalar(real, x) if isinstance(value, Dequantized) else int(real)
    if constant.size != 1:
        raise ctx.error(node, "constant_value must be one value")
    if isinstance(value, Dequantized):
        if constant.dtype != np.float32:
            raise ctx.error(node, f"constant_value of a float Pad must be float32, not "
                                  f"{constant.dtype}")
        return quantize_scalar(float(constant.reshape(())), x)
    if constant.dtype != x.numpy_dtype:
        raise ctx.error(node, f"constant_value must be {np.dtype(x.numpy_dtype)} like the padded "
                              f"tensor, not {constant.dtype}")
    return int(constant.reshape(()))


def _pad(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    mode = _str(_attrs(node).get("mode", "constant"))
    if mode != "constant":
        raise ctx.error(node, f"mode {mode!r} is not supported; only constant padding is")
    if len(value.onnx_shape) != 4:
        raise ctx.error(node, "only padding of [1, C, H, W] tensors is supported")
    pads = _pad_amounts(ctx, node, 4)
    if pads[0] or pads[1] or pads[4] or pads[5]:
        raise ctx.error(node, f"pads {pads} pad the batch or the channels; only H and W can be "
                              "padded")
    top, left, bottom, right = pads[2], pads[3], pads[6], pads[7]
    if min(top, left, bottom, right) < 0:
        raise ctx.error(node, f"negative pads {pads} crop the tensor, which is not supported")
    _, c, h, w = value.onnx_shape
    x = value.tensor
    if top == left == bottom == right == 0:
        ctx.check_shape(node, node.output[0], value.onnx_shape)
        ctx.values[node.output[0]] = value      # no padding: the same tensor
        return
    y = _output(ctx, node, value, (1, c, h + top + bottom, w + left + right))
    ctx.ops.append(ir.Pad(x, y, (top, left, bottom, right), _pad_value(ctx, node, value),
                          node.name))


def fold_pads(ops: list[ir.Op], outputs: set[str]) -> list[ir.Op]:
    """``ops`` with each Pad folded into the Conv or MaxPool that is its only reader, where that
    computes the same: a Conv pads with its input zero point (the real value 0, contributing 0
    to every sum), so a Pad of that value folds into its ``pads``; MaxPool padding never wins,
    so a Pad of the type's least value folds when the combined padding stays smaller than the
    kernel (ONNX's rule). Other Pads stay and run on the NPU."""
    readers: dict[str, list[int]] = {}
    for i, op in enumerate(ops):
        for t in ir.op_inputs(op):
            readers.setdefault(t.name, []).append(i)
    result = list(ops)
    dropped = set()
    for i, pad in enumerate(ops):
        if not isinstance(pad, ir.Pad) or pad.y.name in outputs:
            continue
        mine = readers.get(pad.y.name, [])
        if len(mine) != 1:
            continue
        j = mine[0]
        reader = result[j]
        pads = tuple(a + b for a, b in zip(pad.pads, reader.pads, strict=True)) if isinstance(
            reader, ir.Conv | ir.MaxPool) else None
        if isinstance(reader, ir.Conv) and pad.value == pad.x.zero_point:
            folded = dataclasses.replace(reader, x=pad.x, pads=pads)
            if ranges.op_problem(folded) is not None:
                continue
        elif (isinstance(reader, ir.MaxPool) and pad.value == pad.x.qmin
              and max(pads[0], pads[2]) < reader.kernel[0]
              and max(pads[1], pads[3]) < reader.kernel[1]):
            folded = dataclasses.replace(reader, x=pad.x, pads=pads)
        else:
            continue
        result[j] = folded
        dropped.add(i)
    return [op for i, op in enumerate(result) if i not in dropped]


# ------------------------------------------------------------------------------------------------
# Resize (nearest, integer factors)

def _resize_scales(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...]
                   ) -> tuple[list[int], list[Fraction]]:
    """Output sizes and the scales that ONNX's coordinate transformations use, per axis."""
    scales = ctx.constant(node, 2, "scales")
    sizes = ctx.constant(node, 3, "sizes")
    if scales is not None and scales.size == 0:
        scales = None
    if (scales is None) == (sizes is None or sizes.size == 0):
        raise ctx.error(node, "needs exactly one of scales and sizes")
    if scales is not None:
        if scales.shape != (4,) or scales.dtype != np.float32:
            raise ctx.error(node, f"scales must be 4 float32 values, not {scales.dtype} "
                                  f"{list(scales.shape)}")
        factors = [Fraction(float(s)) for s in scales]
        if min(factors) <= 0:
            raise ctx.error(node, f"scales {scales.tolist()} must be positive")
        return [math.floor(n * f) for n, f in zip(shape, factors, strict=True)], factors
    assert sizes is not None
    if sizes.shape != (4,):
        raise ctx.error(node, f"sizes must be 4 values, not {list(sizes.shape)}")
    policy = _str(_attrs(node).get("keep_aspect_ratio_policy", "stretch"))
    if policy != "stretch":
        raise ctx.error(node, f"keep_aspect_ratio_policy {policy!r} is not supported")
    out = [int(m) for m in sizes]
    if min(out) < 1:
        raise ctx.error(node, f"sizes {out} must be positive")
    return out, [Fraction(m, n) for m, n in zip(out, shape, strict=True)]


def _resize(ctx: Context, node: onnx.NodeProto) -> None:
    value = _integer_operand(ctx, node)
    attrs = _attrs(node)
    if len(node.input) < 3:
        raise ctx.error(node, "Resize before opset 11 is not supported; export with opset >= 11")
    mode = _str(attrs.get("mode", "nearest"))
    if mode != "nearest":
        raise ctx.error(node, f"mode {mode!r} is not supported: its interpolation weights are "
                              "fractions that onnxruntime applies in float, which the NPU does "
                              "not reproduce exactly; use mode 'nearest' with integer scales")
    if "axes" in attrs:
        raise ctx.error(node, "the axes attribute is not supported; give scales for all 4 axes")
    shape = value.onnx_shape
    if len(shape) != 4:
        raise ctx.error(node, "only [1, C, H, W] tensors can be resized")
    out, scales = _resize_scales(ctx, node, shape)
    transform = _str(attrs.get("coordinate_transformation_mode", "half_pixel"))
    nearest = _str(attrs.get("nearest_mode", "round_prefer_floor"))
    if out[:2] != list(shape[:2]):
        raise ctx.error(node, f"resizes the batch or the channels ({list(shape)} → {out})")
    factors = []
    for axis in (2, 3):
        n, m = shape[axis], out[axis]
        index = nearest_indices(n, m, scales[axis], transform, nearest)
        if index is None:
            raise ctx.error(node, f"coordinate_transformation_mode {transform!r} with "
                                  f"nearest_mode {nearest!r} is not supported")
        f = m // n
        if m % n or not np.array_equal(index, np.arange(m) // f):
            raise ctx.error(node, f"axis {axis} ({n} → {m}) with {transform!r}/{nearest!r} is "
                                  "not an integer replication (each input repeated equally); "
                                  "only integer upsampling factors whose nearest neighbours "
                                  "repeat each input are supported (e.g. asymmetric/floor)")
        factors.append(f)
    x = value.tensor
    if factors == [1, 1]:
        ctx.check_shape(node, node.output[0], shape)
        ctx.values[node.output[0]] = value      # factor 1: the same tensor
        return
    y = _output(ctx, node, value, (1, shape[1], out[2], out[3]))
    ctx.ops.append(ir.Resize(x, y, (factors[0], factors[1]), node.name))


# ------------------------------------------------------------------------------------------------
# ConvTranspose

def _conv_transpose(ctx: Context, node: onnx.NodeProto) -> None:
    """QDQ ConvTranspose: an :class:`Accumulator` marked ``transposed``, requantized to an
    :class:`ir.ConvTranspose` by its QuantizeLinear."""
    weight = ctx.value(node, 1)
    if isinstance(weight, Constant) and weight.value.dtype == np.float32:
        # onnxruntime's QOperator quantizer leaves ConvTranspose in float, weights included.
        raise ctx.error(node, "has a float weight (onnxruntime's QOperator quantizer leaves "
                              "ConvTranspose in float); quantize with QuantFormat.QDQ")
    x, w = _qdq_operands(ctx, node)
    attrs = _attrs(node)
    if len(x.onnx_shape) != 4 or w.q.ndim != 4:
        raise ctx.error(node, "only 2-D transposed convolutions on [1, C, H, W] are supported")
    cin, cout, kh, kw = w.q.shape
    if int(attrs.get("group", 1)) != 1:
        raise ctx.error(node, "group > 1 is not supported")
    if list(attrs.get("dilations", [1, 1])) != [1, 1]:
        raise ctx.error(node, "dilation is not supported")
    if _str(attrs.get("auto_pad", "NOTSET")) != "NOTSET" or "output_shape" in attrs:
        raise ctx.error(node, "auto_pad and output_shape are not supported; give pads and "
                              "output_padding")
    if "kernel_shape" in attrs and list(attrs["kernel_shape"]) != [kh, kw]:
        raise ctx.error(node, "kernel_shape does not match the weight")
    strides = list(attrs.get("strides", [1, 1]))
    pads = list(attrs.get("pads", [0, 0, 0, 0]))
    extra = list(attrs.get("output_padding", [0, 0]))
    if len(strides) != 2 or min(strides) < 1 or max(strides) > 15:
        raise ctx.error(node, f"strides must be 2 values in [1, 15], not {strides}")
    if len(pads) != 4 or min(pads) < 0 or len(extra) != 2 or min(extra) < 0 or any(
            e >= s for e, s in zip(extra, strides, strict=True)):
        raise ctx.error(node, f"pads {pads} / output_padding {extra} must be non-negative, "
                              "output_padding smaller than the stride")
    if x.onnx_shape[1] != cin:
        raise ctx.error(node, f"weight [{cin}, {cout}, {kh}, {kw}] does not fit an input of "
                              f"{x.onnx_shape[1]} channels")
    h, width = x.onnx_shape[2], x.onnx_shape[3]
    oh = strides[0] * (h - 1) + extra[0] + kh - pads[0] - pads[2]
    ow = strides[1] * (width - 1) + extra[1] + kw - pads[1] - pads[3]
    if oh < 1 or ow < 1:
        raise ctx.error(node, "the padding removes the whole output")
    _check_work(ctx, node, (kh, kw, cin, cout), h * width * kh * kw * cin * cout)
    q, w_zero_point, scales = _weight_qparams(ctx, node, w.q, w.scale, w.zero_point, w.axis, 1)
    problem = limits.check_activation((1, cout, oh, ow), f"output {node.output[0]!r}")
    if problem is not None:
        raise ctx.error(node, problem)
    ctx.values[node.output[0]] = Accumulator(
        x=x.tensor, weight=np.ascontiguousarray(q.transpose(2, 3, 0, 1)),
        w_zero_point=w_zero_point, w_scale=scales,
        bias=_bias(ctx, node, _qdq_bias(ctx, node, 2), cout, x.tensor.scale, scales),
        stride=(strides[0], strides[1]), pads=(pads[0], pads[1], pads[2], pads[3]),
        onnx_shape=(1, cout, oh, ow), name=node.name, transposed=True)


#: The handlers of this module, joined to :data:`codesign.frontend.ops.OPS`.
OPS = {
    "Pad": _pad,
    "Resize": _resize,
    "ConvTranspose": _conv_transpose,
}
