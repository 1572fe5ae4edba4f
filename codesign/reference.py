"""The golden model: executes the IR with exactly the hardware's arithmetic (DESIGN.md §3.1).

Everything is integer except the requantization, which is the float32 formula the hardware's
integer unit reproduces bit for bit::

    acc = Σ (x − x_zp)(w − w_zp) + bias                     exact (checked to fit int32)
    q   = clamp(round_half_even(f32(acc) · M_c) + y_zp, lo, hi)

ConvTranspose has Conv's formula over the taps that land on each output. Pad and Resize
move integers (Pad fills the border with its integer value). AvgPool uses the same formula on
window sums of (x − x_zp); Concat on (x_i − z_i) with
M_i = f32(s_i / s_y); Add uses integer ratios, acc = (a − a_zp)·a_mult + (b − b_zp)·b_mult and
q = clamp(RNE(acc / 2**shift) + y_zp) (see docs/arithmetic.md); Mul the requantization of
acc = (a − a_zp)(b − b_zp) with M = f32(f32(a_scale · b_scale) / y_scale).

The sum is computed by a float64 convolution, exact because every partial sum is an integer far
below 2**53 (checked per op from the kernel size).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from codesign import ir

__all__ = ["conv_accumulator", "conv_transpose_accumulator", "run"]

_INT32 = (-(2 ** 31), 2 ** 31 - 1)


def _to_nchw(x: np.ndarray) -> torch.Tensor:
    """An integer HWC array → float64 ``[1, C, H, W]`` (exact for 8-bit and int32 values)."""
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1))).to(torch.float64)[None]


def conv_accumulator(op: ir.Conv, x: np.ndarray) -> torch.Tensor:
    """The exact int64 accumulator ``[H, W, Cout]`` of ``op`` on the integer HWC input ``x``.

    Raises
    ------
    OverflowError
        If an accumulator leaves the int32 range (the hardware's accumulator width).
    """
    kh, kw, cin, _ = op.weight.shape
    # |partial sum| ≤ K · 255 · 255 + |bias| must stay below 2**53 for float64 to be exact.
    assert kh * kw * cin * 255 * 255 + 2 ** 31 < 2 ** 53, "kernel too large for exact float64"
    centered = _to_nchw(x) - op.x.zero_point
    top, left, bottom, right = op.pads
    # Padding is the real value 0, i.e. x_zp before centering and 0 after.
    centered = F.pad(centered, (left, right, top, bottom))
    weight = torch.from_numpy(op.weight.astype(np.float64) - op.w_zero_point)
    acc = F.conv2d(centered, weight.permute(3, 2, 0, 1), stride=op.stride, groups=op.groups)
    acc = acc[0].permute(1, 2, 0).to(torch.int64) + torch.from_numpy(op.bias.astype(np.int64))
    if acc.numel() and (int(acc.min()) < _INT32[0] or int(acc.max()) > _INT32[1]):
        raise OverflowError(f"conv {op.name!r}: accumulator leaves the int32 range")
    return acc


def _conv(op: ir.Conv, x: np.ndarray) -> np.ndarray:
    return _requant(conv_accumulator(op, x), op.multiplier, op.y.zero_point, op.qrange,
                    op.y.numpy_dtype)


def _maxpool(op: ir.MaxPool, x: np.ndarray) -> np.ndarray:
    top, left, bottom, right = op.pads
    # float32 holds every 8-bit value exactly; −inf padding never wins the max.
    padded = F.pad(_to_nchw(x).to(torch.float32), (left, right, top, bottom),
                   value=float("-inf"))
    y = F.max_pool2d(padded, op.kernel, op.stride)
    return y[0].permute(1, 2, 0).numpy().astype(op.y.numpy_dtype)


def _requant(acc: torch.Tensor, multiplier, zero_point: int, qrange, dtype) -> np.ndarray:
    """``clamp(round_half_even(f32(acc) · M) + zp)`` — the one requantization formula."""
    m = torch.from_numpy(np.asarray(multiplier, dtype=np.float32))
    q = torch.round(acc.to(torch.int32).to(torch.float32) * m).add(zero_point).clamp(*qrange)
    return q.numpy().astype(dtype)


def _avgpool(op: ir.AvgPool, x: np.ndarray) -> np.ndarray:
    # Window sums of (x − x_zp) are exact in float64 (|sum| ≤ kh·kw·255).
    centered = _to_nchw(x) - op.x.zero_point
    acc = F.avg_pool2d(centered, op.kernel, op.stride, divisor_override=1)
    acc = acc[0].permute(1, 2, 0).round().to(torch.int64)
    return _requant(acc, op.multiplier, op.y.zero_point, op.qrange, op.y.numpy_dtype)


def _add(op: ir.Add, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # A broadcast b ((1, 1, C)) is repeated over H×W by torch's broadcasting.
    acc = ((torch.from_numpy(a.astype(np.int64)) - op.a.zero_point) * op.a_mult
           + (torch.from_numpy(b.astype(np.int64)) - op.b.zero_point) * op.b_mult)
    # RNE(acc / 2**shift): exact in float64 (|acc| < 2**25), the hardware's power-of-two requant.
    y = torch.round(acc.to(torch.float64) / 2.0 ** op.shift).to(torch.int64) + op.y.zero_point
    return y.clamp(*op.qrange).numpy().astype(op.y.numpy_dtype)


def _mul(op: ir.Mul, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # |acc| <= 511**2: exact in int64, and in the float32 of the requantization.
    acc = ((torch.from_numpy(a.astype(np.int64)) - op.a.zero_point)
           * (torch.from_numpy(b.astype(np.int64)) - op.b.zero_point))
    return _requant(acc, op.multiplier, op.y.zero_point, op.qrange, op.y.numpy_dtype)


def _operand_b(op: ir.Add | ir.Mul, values: dict[str, np.ndarray]) -> np.ndarray:
    """``op``'s second operand: its constant, or the tensor."""
    return op.b_value if op.b_value is not None else values[op.b.name]


def _concat(op: ir.Concat, xs: list[np.ndarray]) -> np.ndarray:
    parts = [_requant(torch.from_numpy(x.astype(np.int64)) - t.zero_point, m, op.y.zero_point,
                      (op.y.qmin, op.y.qmax), op.y.numpy_dtype)
             for x, t, m in zip(xs, op.inputs, op.multipliers, strict=True)]
    return np.concatenate(parts, axis=2)


def _flatten(op: ir.Flatten, x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(op.y.shape)


def _pad(op: ir.Pad, x: np.ndarray) -> np.ndarray:
    top, left, bottom, right = op.pads
    return np.pad(x, ((top, bottom), (left, right), (0, 0)), constant_values=op.value)


def _resize(op: ir.Resize, x: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(x, op.factors[0], axis=0), op.factors[1], axis=1)


def conv_transpose_accumulator(op: ir.ConvTranspose, x: np.ndarray) -> torch.Tensor:
    """The exact int64 accumulator ``[H, W, Cout]`` of ``op`` on the integer HWC input ``x``.

    The full transposed convolution (``(H − 1)·s + K`` rows) is computed in float64 (exact:
    every partial sum is an integer far below 2**53), then the output window starting at
    ``pads`` is cut out of it; output rows past its end (``output_padding``) get no taps.

    Raises
    ------
    OverflowError
        If an accumulator leaves the int32 range.
    """
    kh, kw, cin, _ = op.weight.shape
    assert kh * kw * cin * 255 * 255 + 2 ** 31 < 2 ** 53, "kernel too large for exact float64"
    centered = _to_nchw(x) - op.x.zero_point
    weight = torch.from_numpy(op.weight.astype(np.float64) - op.w_zero_point)
    full = F.conv_transpose2d(centered, weight.permute(2, 3, 0, 1), stride=op.stride)[0]
    oh, ow, cout = op.y.shape
    top, left = op.pads
    # Zero rows/columns after the full result cover output_padding beyond its end.
    full = F.pad(full, (0, max(0, left + ow - full.shape[2]), 0, max(0, top + oh - full.shape[1])))
    acc = full[:, top:top + oh, left:left + ow].permute(1, 2, 0).to(torch.int64)
    acc = acc + torch.from_numpy(op.bias.astype(np.int64))
    if acc.numel() and (int(acc.min()) < _INT32[0] or int(acc.max()) > _INT32[1]):
        raise OverflowError(f"conv_transpose {op.name!r}: accumulator leaves the int32 range")
    return acc


def _conv_transpose(op: ir.ConvTranspose, x: np.ndarray) -> np.ndarray:
    return _requant(conv_transpose_accumulator(op, x), op.multiplier, op.y.zero_point,
                    op.qrange, op.y.numpy_dtype)


def _lut(op: ir.Lut, x: np.ndarray) -> np.ndarray:
    """``table[x]``, indexed by the raw byte (what the LUT engine does)."""
    return np.asarray(op.table).astype(op.y.numpy_dtype)[x.view(np.uint8)]


def run(graph: ir.Graph, inputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Run one inference of ``graph``.

    Parameters
    ----------
    graph
        The IR graph.
    inputs
        One integer HWC array per graph input, in ``graph.inputs`` order (see
        :meth:`ir.IOBinding.quantize`).

    Returns
    -------
    dict[str, numpy.ndarray]
        Every tensor (inputs, intermediates, outputs) by IR tensor name, integer HWC in the
        tensor's numpy dtype.
    """
    if len(inputs) != len(graph.inputs):
        raise ValueError(f"{graph.name} takes {len(graph.inputs)} inputs, not {len(inputs)}")
    values: dict[str, np.ndarray] = {}
    for binding, x in zip(graph.inputs, inputs, strict=True):
        t = binding.tensor
        x = np.asarray(x)
        if x.shape != t.shape or x.dtype != t.numpy_dtype:
            raise ValueError(f"input {t.name!r} must be {np.dtype(t.numpy_dtype)} {t.shape}, not "
                             f"{x.dtype} {x.shape}")
        values[t.name] = x
    with torch.no_grad():
        for op in graph.ops:
            x = values[op.x.name]
            if isinstance(op, ir.Conv):
                y = _conv(op, x)
            elif isinstance(op, ir.MaxPool):
                y = _maxpool(op, x)
            elif isinstance(op, ir.AvgPool):
                y = _avgpool(op, x)
            elif isinstance(op, ir.Add):
                y = _add(op, x, _operand_b(op, values))
            elif isinstance(op, ir.Mul):
                y = _mul(op, x, _operand_b(op, values))
            elif isinstance(op, ir.Concat):
                y = _concat(op, [values[t.name] for t in op.inputs])
            elif isinstance(op, ir.Pad):
                y = _pad(op, x)
            elif isinstance(op, ir.Resize):
                y = _resize(op, x)
            elif isinstance(op, ir.ConvTranspose):
                y = _conv_transpose(op, x)
            elif isinstance(op, ir.Lut):
                y = _lut(op, x)
            else:
                y = _flatten(op, x)
            assert y.shape == op.y.shape, (op.name, y.shape, op.y.shape)
            values[op.y.name] = y
    return values
