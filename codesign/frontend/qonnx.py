"""QONNX (Brevitas ``export_qonnx``) ops: ``Quant``, ``BipolarQuant`` and ``Trunc``.

A QONNX graph is a float graph with quantizers in it: ``Quant(x, scale, zero_point, bit_width)``
outputs the float ``(q − zp) · scale`` of ``q = round(clamp(x / scale + zp, min, max))``. The
frontend maps it onto the same values as a QDQ model's ``QuantizeLinear → DequantizeLinear``:

* on a constant (a weight or a bias) it is folded at load time into the integer weight (2–8 bits,
  stored as int8/uint8) or the int32 bias, with qonnx's own formula and any rounding mode;
  ``BipolarQuant`` of a weight is ±1 (``x >= 0`` → +1) times its scale;
* on an activation (the float output of a Conv/Gemm/MatMul, pooling, Add, or a graph input) it
  is the requantization of the 8-bit datapath with the clamp narrowed to ``[min, max]``
  (``bit_width``, ``signed``, ``narrow``) — which needs ``rounding_mode`` ROUND (half to even,
  the NPU's rounding), a per-tensor float32 scale and an integer zero point.

Everything else (bit widths above 8 for activations, binary activations, ``Trunc``) is refused
in one line saying why.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
import onnx.helper

from codesign import ir
from codesign.frontend.context import Context, is_normal_scale
from codesign.frontend.values import (
    Accumulator,
    Constant,
    Dequantized,
    DequantizedConstant,
    Elementwise,
    FloatInput,
    Quantized,
)

__all__ = ["DOMAINS", "OPS", "is_qonnx"]

#: The domains Brevitas and FINN write QONNX ops in.
DOMAINS = ("qonnx.custom_op.general", "onnx.brevitas", "finn.custom_op.general")

#: qonnx's rounding modes (``qonnx.custom_op.general.intquant.resolve_rounding_mode``).
_ROUNDING = {
    "ROUND": np.round, "HALF_EVEN": np.round, "CEIL": np.ceil, "FLOOR": np.floor,
    "UP": lambda v: np.sign(v) * np.ceil(np.abs(v)), "DOWN": np.fix,
    "HALF_UP": lambda v: np.sign(v) * np.floor(np.abs(v) + 0.5),
}


def is_qonnx(model: onnx.ModelProto) -> bool:
    """Whether ``model`` uses QONNX's custom ops (onnxruntime cannot run it)."""
    return any(node.domain in DOMAINS for node in model.graph.node)


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _flag(ctx: Context, node: onnx.NodeProto, attrs: dict[str, Any], name: str,
          default: int) -> bool:
    value = attrs.get(name, default)
    if value not in (0, 1):
        raise ctx.error(node, f"attribute {name} must be 0 or 1, not {value!r}")
    return bool(value)


def int_range(signed: bool, narrow: bool, bits: int) -> tuple[int, int]:
    """qonnx's ``(min_int, max_int)`` of a ``bits``-bit integer."""
    if signed:
        return -(2 ** (bits - 1)) + int(narrow), 2 ** (bits - 1) - 1
    return 0, 2 ** bits - 1 - int(narrow)


def _scalar(ctx: Context, node: onnx.NodeProto, index: int, what: str) -> np.ndarray:
    value = ctx.constant(node, index, what)
    if value is None:
        raise ctx.error(node, f"needs its {what} input")
    return value


def _per_axis(ctx: Context, node: onnx.NodeProto, a: np.ndarray, shape: tuple[int, ...],
              what: str) -> tuple[np.ndarray, int | None]:
    """A QONNX scale/zero point (broadcast to ``shape``) as 1-D values and their axis (``None``
    per tensor)."""
    if a.size == 1:
        return a.reshape(1), None
    axes = [i for i, n in enumerate(a.shape[::-1]) if n != 1]
    axis = len(shape) - 1 - axes[0] if len(axes) == 1 else -1
    if len(axes) != 1 or a.ndim > len(shape) or not 0 <= axis < len(shape) or (
            a.shape[::-1][axes[0]] != shape[axis]):
        raise ctx.error(node, f"{what} of shape {list(a.shape)} is neither per tensor nor per "
                              f"channel of {list(shape)}")
    return a.reshape(-1), axis


def _bits(ctx: Context, node: onnx.NodeProto) -> int:
    bit_width = _scalar(ctx, node, 3, "bit width")
    bits = float(bit_width.reshape(-1)[0]) if bit_width.size == 1 else float("nan")
    if not (bits == int(bits) and 1 <= bits <= 32):
        raise ctx.error(node, f"bit width must be one integer in 1..32, not {bit_width.tolist()}")
    return int(bits)


def _quant(ctx: Context, node: onnx.NodeProto) -> None:
    """``Quant(x, scale, zero_point, bit_width)``; attributes signed, narrow, rounding_mode."""
    attrs = _attrs(node)
    signed = _flag(ctx, node, attrs, "signed", 1)
    narrow = _flag(ctx, node, attrs, "narrow", 0)
    rounding = attrs.get("rounding_mode", b"ROUND")
    rounding = rounding.decode(errors="backslashreplace") if isinstance(rounding, bytes) else (
        str(rounding))
    if rounding.upper() not in _ROUNDING:
        raise ctx.error(node, f"rounding_mode {rounding!r} is not one of qonnx's "
                              f"({', '.join(_ROUNDING)})")
    bits = _bits(ctx, node)
    scale = _scalar(ctx, node, 1, "scale")
    zero_point = _scalar(ctx, node, 2, "zero point")
    if scale.dtype != np.float32 or not is_normal_scale(scale):
        raise ctx.error(node, "scale must be positive, finite, normal float32 values")
    if not np.all(np.isfinite(zero_point)) or np.any(zero_point != np.round(zero_point)):
        raise ctx.error(node, "zero point must be integer-valued (the NPU's zero points are "
                              "integers)")
    value = ctx.value(node, 0)
    if isinstance(value, Constant):
        ctx.values[node.output[0]] = _quant_constant(ctx, node, value.value, scale, zero_point,
                                                     bits, signed, narrow, rounding.upper())
        return
    if bits == 1 and signed:
        raise ctx.error(node, "1-bit signed Quant of an activation is bipolar (±1); the NPU's "
                              "activations are 2- to 8-bit integers with a zero point")
    if bits > 8:
        raise ctx.error(node, f"{bits}-bit activations are not supported; the NPU's datapath is "
                              "8-bit (quantize activations to 2–8 bits)")
    if rounding.upper() not in ("ROUND", "HALF_EVEN"):
        raise ctx.error(node, f"rounding_mode {rounding} on an activation is not supported: the "
                              "NPU's requantization rounds half to even (export with ROUND)")
    if scale.size != 1 or zero_point.size != 1:
        raise ctx.error(node, "an activation needs a single (per-tensor) scale and zero point")
    lo, hi = int_range(signed, narrow, bits)
    zp = int(zero_point.reshape(()))
    storage = (-128, 127) if signed else (0, 255)
    if not storage[0] <= zp <= storage[1]:
        raise ctx.error(node, f"zero point {zp} does not fit the {'int8' if signed else 'uint8'} "
                              "activation")
    _quant_activation(ctx, node, value, np.float32(scale.reshape(())), zp, signed, (lo, hi))


def _quant_constant(ctx: Context, node: onnx.NodeProto, x: np.ndarray, scale: np.ndarray,
                    zero_point: np.ndarray, bits: int, signed: bool, narrow: bool,
                    rounding: str) -> DequantizedConstant:
    """A weight (≤ 8 bits: int8/uint8) or bias (int32) folded with qonnx's ``int_quant``:
    ``q = round(clamp(x / scale + zp, min, max))`` in float32."""
    if x.dtype != np.float32:
        raise ctx.error(node, f"can only quantize a float32 constant, not {x.dtype}")
    if bits > 8 and not (signed and bits <= 32):
        raise ctx.error(node, f"a {bits}-bit {'signed' if signed else 'unsigned'} constant is "
                              "neither a 2–8-bit weight nor a signed ≤ 32-bit bias")
    dtype = np.int32 if bits > 8 else np.int8 if signed else np.uint8
    info = np.iinfo(dtype)
    if np.any(zero_point < info.min) or np.any(zero_point > info.max):
        raise ctx.error(node, f"zero point {zero_point.reshape(-1)[:4].tolist()} does not fit "
                              f"the {np.dtype(dtype).name} it quantizes to")
    scales, axis = _per_axis(ctx, node, scale, x.shape, "scale")
    zps, zp_axis = _per_axis(ctx, node, zero_point, x.shape, "zero point")
    if zp_axis is not None and zp_axis != axis:
        raise ctx.error(node, "zero point and scale must be per tensor or along one axis")
    with np.errstate(all="ignore"):
        v = (x / scale.astype(np.float32)).astype(np.float32) + zero_point.astype(np.float32)
    if not np.all(np.isfinite(v)):
        raise ctx.error(node, "quantizes a NaN or infinite value")
    if bits == 1 and signed:
        q = np.where(v >= 0, 1, -1)             # qonnx's 1-bit signed Quant is bipolar
    else:
        lo, hi = int_range(signed, narrow, bits)
        q = _ROUNDING[rounding](np.clip(v, lo, hi))
    zps = np.broadcast_to(zps, scales.shape)
    return DequantizedConstant(q.astype(dtype), scales.astype(np.float32), zps.astype(dtype),
                               0 if axis is None else axis)


def _quant_activation(ctx: Context, node: onnx.NodeProto, value: object, scale: np.float32,
                      zero_point: int, signed: bool, bounds: tuple[int, int]) -> None:
    """Quantize the float activation ``value`` on the 8-bit datapath, clamped to ``bounds``."""
    out = node.output[0]
    shape = getattr(value, "onnx_shape", ())
    storage = (-128, 127) if signed else (0, 255)
    clamp = None if bounds == storage else bounds
    match value:
        case FloatInput():
            t = ctx.bind_float_input(node, value, out, scale, zero_point, signed, clamp)
        case Accumulator() | Elementwise():
            t = ctx.requantize(node, value, out, scale, zero_point, signed).tensor
            op = ctx.ops[-1]
            if clamp is not None:
                if not isinstance(op, ir.Conv | ir.AvgPool | ir.Add):
                    raise ctx.error(node, "a narrower than 8-bit Quant after Concat is not "
                                          "supported; quantize its inputs")
                lo, hi = op.qrange
                ctx.ops[-1] = dataclasses.replace(op, clamp=(max(lo, bounds[0]),
                                                             min(hi, bounds[1])))
        case Dequantized() | Quantized():
            t = value.tensor
            if (scale, zero_point, signed) != (t.scale, t.zero_point, t.signed):
                raise ctx.error(node, f"requantizes {t.name!r} to another scale/zero point; a "
                                      "standalone requantization is not supported")
            if clamp is not None:       # the same quantization again: nothing to do
                ctx.narrow_producer(node, value, bounds[0], bounds[1])
        case _:
            raise ctx.error(node, "can only quantize a float constant (a weight or bias), a "
                                  "float graph input or the float output of a Conv/Gemm/MatMul/"
                                  "pooling/Add/Concat/layout op")
    ctx.values[out] = Dequantized(t, shape)


def _bipolar_quant(ctx: Context, node: onnx.NodeProto) -> None:
    """``BipolarQuant(x, scale)``: ±1 (``x >= 0`` → +1) times scale; weights only."""
    value = ctx.value(node, 0)
    scale = _scalar(ctx, node, 1, "scale")
    if not isinstance(value, Constant):
        raise ctx.error(node, "binary (bipolar) activations are not supported: the NPU's "
                              "activations are 2- to 8-bit integers; binarize weights only")
    if value.value.dtype != np.float32 or scale.dtype != np.float32 or not is_normal_scale(
            scale):
        raise ctx.error(node, "needs a float32 constant and positive, finite, normal float32 "
                              "scales")
    scales, axis = _per_axis(ctx, node, scale, value.value.shape, "scale")
    q = np.where(value.value >= 0, 1, -1).astype(np.int8)
    ctx.values[node.output[0]] = DequantizedConstant(q, scales.astype(np.float32),
                                                     np.zeros(scales.shape, np.int8),
                                                     0 if axis is None else axis)


def _trunc(ctx: Context, node: onnx.NodeProto) -> None:
    raise ctx.error(node, "Trunc (Brevitas' TruncAvgPool / accumulator truncation) drops low "
                          "bits with its own rounding after an unscaled sum, which the NPU's "
                          "requantization (round half to even of acc · M) does not compute; "
                          "export the average pool with a float-scaled output quantizer")


#: The QONNX ops, under every domain they are written in (see :data:`DOMAINS`).
OPS = {f"{domain}.{name}": handler for domain in DOMAINS
       for name, handler in (("Quant", _quant), ("IntQuant", _quant),
                             ("BipolarQuant", _bipolar_quant), ("Trunc", _trunc))}
