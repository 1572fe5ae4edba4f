"""Upsampling arithmetic shared by the frontend, the range proofs and the compiler.

* :func:`nearest_indices`: the input index each output index of an ONNX ``Resize`` (mode
  ``nearest``) reads, exactly as the ONNX operator defines it, so that the frontend can accept
  every coordinate transformation / rounding combination that amounts to a pure integer
  replication and refuse the others.
* :func:`conv_transpose_phases`: a stride-``s`` transposed convolution as ``sh·sw`` ordinary
  stride-1 convolutions over the same input, one per output *phase* ``(ry, rx)`` (the outputs
  ``(ry + sh·j, rx + sw·i)``), each with its own sub-kernel (the taps ``k ≡ ry + top (mod s)``,
  flipped). The compiler runs each phase on the array and scatters its outputs to the phase's
  positions; the range proof checks each phase's accumulator like a convolution's.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from codesign import ir

__all__ = ["Phase", "conv_transpose_phases", "nearest_indices"]

#: ONNX Resize ``coordinate_transformation_mode`` → input coordinate of output index ``o``
#: (``scale`` = output / input length, ``n``/``m`` the input/output lengths), in exact rationals.
_TRANSFORMS = {
    "half_pixel": lambda o, scale, n, m: (o + Fraction(1, 2)) / scale - Fraction(1, 2),
    "pytorch_half_pixel": lambda o, scale, n, m: (
        (o + Fraction(1, 2)) / scale - Fraction(1, 2) if m > 1 else Fraction(0)),
    "half_pixel_symmetric": lambda o, scale, n, m: (
        Fraction(n, 2) * (1 - Fraction(m) / (scale * n)) + (o + Fraction(1, 2)) / scale
        - Fraction(1, 2)),
    "align_corners": lambda o, scale, n, m: (
        Fraction(o * (n - 1), m - 1) if m > 1 else Fraction(0)),
    "asymmetric": lambda o, scale, n, m: o / scale,
}


def _round(v: Fraction, mode: str) -> int:
    """ONNX Resize ``nearest_mode`` on an exact coordinate."""
    if mode == "floor":
        return math.floor(v)
    if mode == "ceil":
        return math.ceil(v)
    if v - math.floor(v) == Fraction(1, 2):
        return math.floor(v) if mode == "round_prefer_floor" else math.ceil(v)
    return round(v)  # not a tie: the nearest integer


def nearest_indices(n: int, m: int, scale: Fraction, transform: str,
                    nearest_mode: str) -> np.ndarray | None:
    """The input index of each of the ``m`` outputs of a nearest Resize of ``n`` inputs along
    one axis (clamped to ``[0, n)`` as ONNX does), or None when ``transform`` or
    ``nearest_mode`` is not one ONNX defines for this purpose.

    ``scale`` is the axis's scale (the ``scales`` input, or ``m / n`` when ``sizes`` is given).
    """
    if transform not in _TRANSFORMS or nearest_mode not in (
            "round_prefer_floor", "round_prefer_ceil", "floor", "ceil"):
        return None
    f = _TRANSFORMS[transform]
    return np.array([min(max(_round(f(o, scale, n, m), nearest_mode), 0), n - 1)
                     for o in range(m)], np.int64)


@dataclasses.dataclass(frozen=True)
class Phase:
    """One stride phase of a transposed convolution: an ordinary stride-1 convolution ``conv``
    (output shape ``(ny, nx, Cout)``, pads (top, left) possibly negative: an offset into the
    input) whose output ``(j, i)`` is the transposed convolution's output
    ``(ry + sh·j, rx + sw·i)``."""
    ry: int
    rx: int
    conv: ir.Conv


def _axis_phase(k: int, s: int, pad: int, r: int) -> tuple[list[int], int]:
    """Taps (in the order the stride-1 convolution applies them) and the leading pad of phase
    ``r`` along one axis; no tap at all is one dummy tap −1 (weight w_zp, contributes 0)."""
    k0, q = (r + pad) % s, (r + pad) // s
    count = max(0, -(-(k - k0) // s))
    if count == 0:
        return [-1], 0
    return [k0 + s * (count - 1 - u) for u in range(count)], count - 1 - q


def conv_transpose_phases(op: ir.ConvTranspose) -> list[Phase]:
    """The phases of ``op`` that have outputs, row-major by ``(ry, rx)``.

    Output ``o = r + s·j`` receives input ``i`` through tap ``k`` when ``i·s − pad + k = o``,
    i.e. ``k ≡ r + pad (mod s)``: with ``k = k0 + s·t`` the input is ``j + q − t``
    (``q = (r + pad) // s``), a stride-1 correlation with the taps reversed and leading pad
    ``T − 1 − q`` (:func:`_axis_phase`).
    """
    kh, kw, cin, cout = op.weight.shape
    (sh, sw), (top, left) = op.stride, op.pads
    oh, ow = op.y.shape[0], op.y.shape[1]
    phases = []
    for ry in range(min(sh, oh)):
        taps_y, pad_y = _axis_phase(kh, sh, top, ry)
        for rx in range(min(sw, ow)):
            taps_x, pad_x = _axis_phase(kw, sw, left, rx)
            weight = np.full((len(taps_y), len(taps_x), cin, cout), op.w_zero_point, np.int8)
            for u, ty in enumerate(taps_y):
                for v, tx in enumerate(taps_x):
                    if ty >= 0 and tx >= 0:
                        weight[u, v] = op.weight[ty, tx]
            y = dataclasses.replace(op.y, shape=(-(-(oh - ry) // sh), -(-(ow - rx) // sw), cout))
            conv = ir.Conv(x=op.x, y=y, weight=weight, w_zero_point=op.w_zero_point,
                           bias=op.bias, multiplier=op.multiplier, stride=(1, 1),
                           pads=(pad_y, pad_x, 0, 0), clamp=op.clamp,
                           name=f"{op.name}/phase{ry}{rx}")
            phases.append(Phase(ry, rx, conv))
    return phases
