"""Proofs, at generate time, that the NPU computes an IR op exactly as the golden model does.

The golden model's arithmetic (DESIGN.md §3.1, docs/arithmetic.md) holds only when

* every requant multiplier is one the requantizer's parameter word encodes
  (:func:`codesign.isa.float_to_mult_shift`: a normal float32 below 2**24), and the product
  ``f32(x_scale · w_scale[c])`` it is made from is a normal float32 too;
* every convolution / matrix-product accumulator stays in int32 for *every* input, which is
  proven from the weights, the bias and the input's integer range (below);
* no Add operand is scaled to nothing (an integer ratio of 0 would drop it).

Average-pool window sums and Add's integer sums cannot leave int32: a window holds at most
:data:`~codesign.frontend.limits.MAX_ACTIVATION_ELEMENTS` values of ``|x − x_zp| <= 255``, and
``|(a − a_zp)·a_mult + (b − b_zp)·b_mult| <= 2 · 255 · (2**15 − 1) < 2**24``
(:data:`codesign.ir.ADD_MULT_BITS`). Concat requantizes single values ``|x − z| <= 255``.
"""

from __future__ import annotations

import numpy as np

from codesign import ir, isa
from codesign.resample import conv_transpose_phases

__all__ = ["op_problem", "accumulator_range", "scale_product_problem"]

_INT32 = (-(2 ** 31), 2 ** 31 - 1)
#: The least normal float32; smaller scales and products lose bits (and runtimes that flush
#: subnormals to zero would disagree).
_NORMAL = float(np.finfo(np.float32).smallest_normal)


def op_problem(op: ir.Op) -> str | None:
    """Why the NPU cannot compute ``op`` exactly as the golden model does (``None``: it can)."""
    if isinstance(op, ir.Conv):
        return _multipliers_problem(op.multiplier) or _acc_problem(op)
    if isinstance(op, ir.AvgPool):
        return _multipliers_problem(np.asarray([op.multiplier]))
    if isinstance(op, ir.Concat):
        return _multipliers_problem(np.asarray(op.multipliers))
    if isinstance(op, ir.ConvTranspose):
        return _multipliers_problem(op.multiplier) or _conv_transpose_problem(op)
    if isinstance(op, ir.Mul):
        # |(a − a_zp)(b − b_zp)| <= 511**2: the accumulator cannot leave int32.
        return _multipliers_problem(np.asarray([op.multiplier]))
    if isinstance(op, ir.Add) and 0 in (op.a_mult, op.b_mult):
        return (f"the scale ratios of the operands ({op.a.scale} and {op.b.scale} to "
                f"{op.y.scale}) differ by more than 2**{ir.ADD_MULT_BITS - 1}; the smaller "
                "operand's integer ratio rounds to 0 and it would be ignored")
    return None


def scale_product_problem(x_scale: np.float32, w_scale: np.ndarray) -> str | None:
    """Refuse ``f32(x_scale · w_scale[c])`` that is not a normal float32 (the multiplier and a
    float bias's quantization are made from it)."""
    products = (np.float32(x_scale) * np.asarray(w_scale, np.float32)).astype(np.float32)
    bad = np.flatnonzero(~(np.isfinite(products) & (products >= _NORMAL)))
    if not bad.size:
        return None
    c = int(bad[0])
    return (f"x_scale · w_scale of output channel {c} is {products[c]}, not a normal float32 "
            f"({x_scale} · {w_scale[c]}); check the scales")


def _multipliers_problem(multipliers: np.ndarray) -> str | None:
    """Refuse multipliers that the requantizer's parameter word cannot hold exactly."""
    for c, m in enumerate(np.asarray(multipliers, np.float32).reshape(-1)):
        try:
            isa.float_to_mult_shift(m)
        except ValueError as e:
            where = f"output channel {c}: " if multipliers.size > 1 else ""
            return (f"{where}{e} (the NPU encodes normal float32 multipliers in "
                    "[2**-126, 2**24)); check the scales")
    return None


def accumulator_range(op: ir.Conv) -> tuple[np.ndarray, np.ndarray]:
    """The least and greatest accumulator of each output channel of ``op`` over every input.

    Every input value lies in the input tensor's ``[qmin, qmax]``, so ``d = x − x_zp`` lies in
    ``[lo, hi]`` with ``lo <= 0 <= hi``, independently per tap. A tap with weight ``c = w − w_zp``
    contributes at most ``hi·c`` (``c > 0``) or ``lo·c`` (``c < 0``), and padding taps contribute
    0 (padded x equals x_zp). The extreme is therefore taken over the rectangles of in-bounds
    taps that the output positions see; the largest rectangle wins unless it never occurs.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        int64 ``[Cout]`` each: ``bias + min Σ`` and ``bias + max Σ``.
    """
    lo, hi = op.x.qmin - op.x.zero_point, op.x.qmax - op.x.zero_point
    c = op.weight.astype(np.int16) - np.int16(op.w_zero_point)
    pos = np.maximum(c, 0).sum(axis=2, dtype=np.int64)         # [KH, KW, Cout]
    neg = np.minimum(c, 0).sum(axis=2, dtype=np.int64)
    most, least = hi * pos + lo * neg, lo * pos + hi * neg
    rows = _tap_ranges(op.x.shape[0], op.weight.shape[0], op.stride[0], op.pads[0],
                       op.y.shape[0])
    cols = _tap_ranges(op.x.shape[1], op.weight.shape[1], op.stride[1], op.pads[1],
                       op.y.shape[1])
    bias = op.bias.astype(np.int64)
    return (bias + _rectangle_sums(least, rows, cols).min(axis=(0, 1)),
            bias + _rectangle_sums(most, rows, cols).max(axis=(0, 1)))


def _tap_ranges(n: int, k: int, stride: int, pad: int, out: int) -> np.ndarray:
    """Distinct ``[first, end)`` in-bounds kernel taps along one axis over the ``out`` output
    positions (input extent ``n``, kernel ``k``, leading padding ``pad``)."""
    start = np.arange(out, dtype=np.int64) * stride - pad
    first = np.clip(-start, 0, k)
    end = np.maximum(np.clip(n - start, 0, k), first)
    return np.unique(np.stack([first, end], axis=1), axis=0)


def _rectangle_sums(taps: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``[len(rows), len(cols), Cout]`` sums of ``taps`` ``[KH, KW, Cout]`` over each rectangle
    of a row range and a column range (2-D prefix sums)."""
    prefix = np.zeros((taps.shape[0] + 1, taps.shape[1] + 1, taps.shape[2]), np.int64)
    prefix[1:, 1:] = taps.cumsum(axis=0).cumsum(axis=1)
    r0, r1 = rows[:, 0, None], rows[:, 1, None]
    c0, c1 = cols[None, :, 0], cols[None, :, 1]
    return prefix[r1, c1] - prefix[r0, c1] - prefix[r1, c0] + prefix[r0, c0]


def _acc_problem(op: ir.Conv) -> str | None:
    """Refuse a convolution whose accumulator can leave int32 for some input."""
    least, most = accumulator_range(op)
    worst = int(np.argmax(np.maximum(most - _INT32[1], _INT32[0] - least)))
    bound = int(most[worst]) if most[worst] > _INT32[1] else int(least[worst])
    if _INT32[0] <= bound <= _INT32[1]:
        return None
    return (f"the int32 accumulator of output channel {worst} reaches {bound} for some input in "
            f"[{op.x.qmin}, {op.x.qmax}], outside int32 [{_INT32[0]}, {_INT32[1]}] (the NPU's "
            "and onnxruntime's accumulator); quantize with smaller weights or bias, or split "
            "the layer")


def _conv_transpose_problem(op: ir.ConvTranspose) -> str | None:
    """Refuse a transposed convolution whose accumulator can leave int32 for some input: each
    stride phase (:func:`codesign.resample.conv_transpose_phases`) is an ordinary convolution
    whose accumulators are exactly the phase's outputs', bounded as :func:`_acc_problem` does."""
    for phase in conv_transpose_phases(op):
        problem = _acc_problem(phase.conv)
        if problem is not None:
            return f"stride phase ({phase.ry}, {phase.rx}): {problem}"
    return None
