"""Random IR graphs ``x → Pad → Resize → ConvTranspose [→ Conv]`` for the compiler, ISA model,
cycle model and RTL tests of the upsampling ops: sizes that are not multiples of the array, pad
values other than the zero point, factors 1–3, kernels 1–4 with strides 1–3, pads and
output_padding."""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import strategies as st

from codesign import ir

__all__ = ["ResampleSpec", "resample_graph", "resample_specs"]


@dataclasses.dataclass(frozen=True)
class ResampleSpec:
    h: int
    w: int
    c: int
    pads: tuple[int, int, int, int]
    factors: tuple[int, int]
    k: int
    stride: int
    ct_pads: tuple[int, int, int, int]
    out_pad: int
    cout: int
    signed: bool
    conv_after: bool
    seed: int


@st.composite
def resample_specs(draw) -> ResampleSpec:
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    return ResampleSpec(
        h=draw(st.integers(1, 3)), w=draw(st.integers(1, 3)), c=draw(st.integers(1, 6)),
        pads=tuple(draw(st.integers(0, 2)) for _ in range(4)),
        factors=(draw(st.integers(1, 3)), draw(st.integers(1, 2))), k=k, stride=s,
        ct_pads=tuple(draw(st.integers(0, k - 1)) for _ in range(4)),
        out_pad=draw(st.integers(0, s - 1)), cout=draw(st.integers(1, 9)),
        signed=draw(st.booleans()), conv_after=draw(st.booleans()),
        seed=draw(st.integers(0, 2 ** 31)))


def _tensor(rng, name: str, shape, signed: bool) -> ir.Tensor:
    zp = int(rng.integers(-20, 20)) if signed else int(rng.integers(0, 60))
    return ir.Tensor(name, tuple(int(v) for v in shape), signed,
                     np.float32(rng.uniform(0.01, 0.1)), zp)


def resample_graph(spec: ResampleSpec) -> ir.Graph | None:
    rng = np.random.default_rng(spec.seed)
    x = _tensor(rng, "input", (spec.h, spec.w, spec.c), spec.signed)
    top, left, bottom, right = spec.pads
    padded = dataclasses.replace(x, name="padded",
                                 shape=(spec.h + top + bottom, spec.w + left + right, spec.c))
    value = int(rng.integers(x.qmin, x.qmax + 1))
    ops: list[ir.Op] = [ir.Pad(x, padded, spec.pads, value, "pad")]
    fh, fw = spec.factors
    up = dataclasses.replace(padded, name="upsampled",
                             shape=(padded.shape[0] * fh, padded.shape[1] * fw, spec.c))
    ops.append(ir.Resize(padded, up, spec.factors, "resize"))
    k, s = spec.k, spec.stride
    pt, pl, pb, pr = spec.ct_pads
    out = (s * (up.shape[0] - 1) + spec.out_pad + k - pt - pb,
           s * (up.shape[1] - 1) + spec.out_pad + k - pl - pr)
    if min(out) < 1:
        return None
    y = _tensor(rng, "deconv_out", (*out, spec.cout), not spec.signed)
    spread = 128.0 * 128.0 * np.sqrt(k * k * spec.c / s / s)
    ops.append(ir.ConvTranspose(
        x=up, y=y, weight=rng.integers(-128, 128, (k, k, spec.c, spec.cout)).astype(np.int8),
        w_zero_point=int(rng.integers(-3, 4)),
        bias=rng.integers(-20000, 20000, spec.cout).astype(np.int32),
        multiplier=(rng.uniform(20, 120, spec.cout) / spread).astype(np.float32),
        stride=(s, s), pads=(pt, pl), clamp=(y.zero_point, y.qmax) if spec.seed % 2 else None,
        name="deconv"))
    if spec.conv_after:
        # A 3×3 convolution reading the scattered output (through external memory).
        z = _tensor(rng, "conv_out", (*out, 3), spec.signed)
        ops.append(ir.Conv(
            x=y, y=z, weight=rng.integers(-128, 128, (3, 3, spec.cout, 3)).astype(np.int8),
            w_zero_point=0, bias=np.zeros(3, np.int32),
            multiplier=np.full(3, 60 / (128.0 * 128 * 3 * np.sqrt(spec.cout)), np.float32),
            pads=(1, 1, 1, 1), name="conv"))
    last = ops[-1].y
    return ir.Graph(
        name="resample",
        inputs=(ir.IOBinding("input", (1, spec.c, spec.h, spec.w), False, x),),
        outputs=(ir.IOBinding("output", (1, last.shape[2], *last.shape[:2]), False, last),),
        ops=tuple(ops))
