"""Add, Sub and Mul of two 8-bit operands: activations (one may be broadcast over H×W) or an
8-bit constant (``DequantizeLinear`` of an initializer in QDQ, a QOperator initializer input).

These are the forms onnxruntime fuses into QLinearAdd / QLinearMul; an op with a float
constant (``x − 0.5``, which its quantizer leaves in float) is a lookup table instead
(``ops._arithmetic``, :mod:`codesign.frontend.lut`).

Both forms end as an :class:`~codesign.frontend.values.Elementwise` whose first operand is an
activation of the output's shape; the second is an activation of the same shape, one broadcast
over H×W (IR shape ``(1, 1, C)``), or a constant (per tensor, per channel, or whole). A Sub is an
Add with a negated ratio; when the first operand is the broadcast or constant one, the operands
swap (and a Sub's signs with them).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx

from codesign import ir
from codesign.frontend.context import Context, hwc_shape, is_normal_scale
from codesign.frontend.values import (
    Constant,
    Dequantized,
    DequantizedConstant,
    Elementwise,
    Quantized,
)

__all__ = ["qdq_binary", "qlinear_binary"]


@dataclasses.dataclass(frozen=True)
class _Const8:
    """An 8-bit constant operand with its per-tensor quantization (``name`` for messages)."""
    name: str
    q: np.ndarray
    scale: np.float32
    zero_point: int


_Operand = Quantized | Dequantized | _Const8


def _const8(ctx: Context, node: onnx.NodeProto, index: int, q: np.ndarray, scale: np.ndarray,
            zero_point: np.ndarray) -> _Const8:
    name = node.input[index]
    if q.dtype not in (np.uint8, np.int8):
        raise ctx.error(node, f"constant {name!r} is {q.dtype}; only an 8-bit (uint8/int8) "
                              "constant operand is supported")
    if scale.size != 1 or zero_point.size != 1:
        raise ctx.error(node, f"constant {name!r} needs a single (per-tensor) scale and zero "
                              "point")
    if scale.dtype != np.float32 or not is_normal_scale(scale):
        raise ctx.error(node, f"constant {name!r} needs a positive, finite, normal float32 "
                              "scale")
    if zero_point.dtype != q.dtype:
        raise ctx.error(node, f"constant {name!r}: zero point type {zero_point.dtype} differs "
                              f"from {q.dtype}")
    return _Const8(name, q, np.float32(scale.reshape(())), int(zero_point.reshape(())))


def _qdq_operand(ctx: Context, node: onnx.NodeProto, index: int) -> _Operand:
    value = ctx.value(node, index)
    if isinstance(value, Dequantized):
        return value
    if isinstance(value, DequantizedConstant):
        return _const8(ctx, node, index, value.q, value.scale, value.zero_point)
    raise ctx.error(node, f"input {node.input[index]!r} must come from DequantizeLinear of an "
                          "8-bit activation or constant")


def _qop_operand(ctx: Context, node: onnx.NodeProto, index: int) -> _Operand:
    value = ctx.value(node, index)
    if isinstance(value, Constant):
        scale = ctx.constant(node, index + 1, "input scale")
        zero_point = ctx.constant(node, index + 2, "input zero point")
        if scale is None:
            raise ctx.error(node, f"constant {node.input[index]!r} has no scale")
        if zero_point is None:
            zero_point = np.zeros((), np.uint8)
        return _const8(ctx, node, index, value.value, scale, zero_point)
    return ctx.quantized_input(node, index, index + 1)


def _tensor_of(c: _Const8, hwc: tuple[int, int, int]) -> ir.Tensor:
    return ir.Tensor(c.name, hwc, c.q.dtype == np.int8, c.scale, c.zero_point)


def _constant_b(ctx: Context, node: onnx.NodeProto, shape: tuple[int, ...],
                c: _Const8) -> tuple[ir.Tensor, np.ndarray]:
    """The IR tensor and HWC integers of the constant ``c`` broadcast to the activation shape
    ``shape``: ``(1, 1, C)`` when it is the same at every pixel, else whole."""
    try:
        out = np.broadcast_shapes(shape, c.q.shape)
    except ValueError:
        out = None
    if out != shape:
        raise ctx.error(node, f"constant {c.name!r} of shape {list(c.q.shape)} does not "
                              f"broadcast to the activation's shape {list(shape)}")
    full = np.broadcast_to(c.q, shape)
    hwc = (full[0].transpose(1, 2, 0) if len(shape) == 4
           else full.reshape(hwc_shape(shape, f"tensor {c.name!r}")))
    if np.all(hwc == hwc[:1, :1, :]):
        hwc = hwc[:1, :1, :]
    hwc = np.ascontiguousarray(hwc)
    return _tensor_of(c, hwc.shape), hwc


def _broadcast_over_plane(big: tuple[int, ...], small: tuple[int, ...]) -> bool:
    """Whether ``small`` is ``big`` with every axis but the channels 1 (``[1, C, 1, 1]`` on
    ``[1, C, H, W]``, ``[1, 1, N]`` on ``[1, M, N]``) once padded to ``big``'s rank."""
    if len(small) > len(big):
        return False
    padded = (1,) * (len(big) - len(small)) + tuple(small)
    channel = 1 if len(big) == 4 else len(big) - 1
    return all(n == (big[i] if i == channel else 1) for i, n in enumerate(padded))


def _binary(ctx: Context, node: onnx.NodeProto, kind: ir.OpKind, first: _Operand,
            second: _Operand, signs: tuple[int, int]) -> Elementwise:
    """The Elementwise of ``first (op) second`` with an activation of the output's shape first."""
    if isinstance(first, _Const8) and isinstance(second, _Const8):
        raise ctx.error(node, "both operands are constants; fold them before quantizing")
    a, b = first, second
    if isinstance(a, _Const8) or (not isinstance(b, _Const8)
                                  and len(b.onnx_shape) >= len(a.onnx_shape)
                                  and b.onnx_shape != a.onnx_shape
                                  and _broadcast_over_plane(b.onnx_shape, a.onnx_shape)):
        a, b, signs = b, a, (signs[1], signs[0])
    assert not isinstance(a, _Const8)
    shape = a.onnx_shape
    if isinstance(b, _Const8):
        b_tensor, b_value = _constant_b(ctx, node, shape, b)
        return Elementwise(kind, (a.tensor, b_tensor), shape, node.name, b_value=b_value,
                           signs=signs)
    if b.onnx_shape != shape and not _broadcast_over_plane(shape, b.onnx_shape):
        raise ctx.error(node, f"operands of shapes {list(a.onnx_shape)} and {list(b.onnx_shape)}"
                              ": only one shape, or one operand broadcast over H×W ([1, C, 1, 1]"
                              " on [1, C, H, W]), is supported")
    return Elementwise(kind, (a.tensor, b.tensor), shape, node.name, signs=signs)


#: Element-wise op type → (IR op, signs of the operands).
_KINDS = {"Add": (ir.OpKind.ADD, (1, 1)), "Sub": (ir.OpKind.ADD, (1, -1)),
          "Mul": (ir.OpKind.MUL, (1, 1)), "QLinearAdd": (ir.OpKind.ADD, (1, 1)),
          "QLinearMul": (ir.OpKind.MUL, (1, 1))}


def qdq_binary(ctx: Context, node: onnx.NodeProto) -> None:
    """QDQ ``Add``/``Sub``/``Mul`` of two DequantizeLinear outputs."""
    kind, signs = _KINDS[node.op_type]
    if len(node.input) != 2:
        raise ctx.error(node, "needs two inputs")
    ctx.values[node.output[0]] = _binary(ctx, node, kind, _qdq_operand(ctx, node, 0),
                                         _qdq_operand(ctx, node, 1), signs)


def qlinear_binary(ctx: Context, node: onnx.NodeProto) -> Elementwise:
    """com.microsoft ``QLinearAdd``/``QLinearMul``: ``A, A_scale, A_zp, B, B_scale, B_zp,
    C_scale, C_zp``; the caller requantizes the result to ``C``."""
    kind, signs = _KINDS[node.op_type]
    return _binary(ctx, node, kind, _qop_operand(ctx, node, 0), _qop_operand(ctx, node, 3),
                   signs)
