"""Random integer-IR graphs for differential tests (compiler, ISA model and RTL vs golden model).

Shapes are drawn with hypothesis so that failures shrink to small layers; weights, biases and
scales come from a numpy generator seeded by a drawn integer.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from hypothesis import strategies as st

from codesign import ir


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    h: int
    w: int
    cin: int
    cout: int
    k: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    x_signed: bool
    y_signed: bool
    w_zp: int
    relu: bool
    pool: bool          # follow with a 2x2/2 max pool
    fc: int             # >0: follow with flatten + fully connected layer of this width
    seed: int


@st.composite
def conv_specs(draw, max_hw: int = 9, max_c: int = 20) -> ConvSpec:
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    pads = tuple(draw(st.integers(0, k[i % 2] - 1)) for i in range(4))
    h = draw(st.integers(max(1, k[0] - pads[0] - pads[2]), max_hw))
    w = draw(st.integers(max(1, k[1] - pads[1] - pads[3]), max_hw))
    return ConvSpec(
        h=h, w=w, cin=draw(st.integers(1, max_c)), cout=draw(st.integers(1, max_c)), k=k,
        stride=(draw(st.integers(1, 2)), draw(st.integers(1, 2))), pads=pads,
        x_signed=draw(st.booleans()), y_signed=draw(st.booleans()),
        w_zp=draw(st.sampled_from([0, 0, 3, -5])), relu=draw(st.booleans()),
        pool=draw(st.booleans()), fc=draw(st.sampled_from([0, 0, 1, 5, 17])),
        seed=draw(st.integers(0, 2**31)))


def _tensor(rng, name: str, shape, signed: bool) -> ir.Tensor:
    zp = int(rng.integers(-20, 20)) if signed else int(rng.integers(0, 60))
    return ir.Tensor(name, tuple(int(v) for v in shape), signed,
                     np.float32(rng.uniform(0.01, 0.1)), zp)


def _conv(rng, name, x: ir.Tensor, cout, k, stride, pads, y_signed, w_zp, relu) -> ir.Conv:
    h, w, cin = x.shape
    oh = (h + pads[0] + pads[2] - k[0]) // stride[0] + 1
    ow = (w + pads[1] + pads[3] - k[1]) // stride[1] + 1
    y = _tensor(rng, f"{name}_out", (oh, ow, cout), y_signed)
    # Scale the multiplier to the accumulator's spread so outputs use the whole 8-bit range.
    spread = 128.0 * 128.0 * np.sqrt(k[0] * k[1] * cin)
    return ir.Conv(
        x=x, y=y, name=name,
        weight=rng.integers(-128, 128, (k[0], k[1], cin, cout)).astype(np.int8),
        w_zero_point=w_zp, bias=rng.integers(-20000, 20000, cout).astype(np.int32),
        multiplier=(rng.uniform(20, 120, cout) / spread).astype(np.float32),
        stride=stride, pads=pads, clamp=(y.zero_point, y.qmax) if relu else None)


def graph_from_spec(spec: ConvSpec) -> ir.Graph:
    """conv [→ maxpool] [→ flatten → fc] as an IR graph with one input and one output."""
    rng = np.random.default_rng(spec.seed)
    x = _tensor(rng, "input", (spec.h, spec.w, spec.cin), spec.x_signed)
    ops: list[ir.Op] = [_conv(rng, "conv", x, spec.cout, spec.k, spec.stride, spec.pads,
                              spec.y_signed, spec.w_zp, spec.relu)]
    y = ops[-1].y
    if spec.pool and y.shape[0] >= 2 and y.shape[1] >= 2:
        shape = (y.shape[0] // 2, y.shape[1] // 2, y.shape[2])
        ops.append(ir.MaxPool(x=y, y=dataclasses.replace(y, name="pool_out", shape=shape),
                              kernel=(2, 2), stride=(2, 2), name="pool"))
        y = ops[-1].y
    if spec.fc:
        flat = dataclasses.replace(y, name="flat_out", shape=(1, 1, int(np.prod(y.shape))))
        ops.append(ir.Flatten(x=y, y=flat, name="flatten"))
        ops.append(_conv(rng, "fc", flat, spec.fc, (1, 1), (1, 1), (0, 0, 0, 0),
                         spec.y_signed, 0, False))
        y = ops[-1].y
    h, w, c = y.shape
    out_shape = (1, c) if spec.fc else (1, c, h, w)
    return ir.Graph(
        name="random",
        inputs=(ir.IOBinding("input", (1, spec.cin, spec.h, spec.w), False, x),),
        outputs=(ir.IOBinding("output", out_shape, False, y),),
        ops=tuple(ops))


def random_input(graph: ir.Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    t = graph.inputs[0].tensor
    return [rng.integers(t.qmin, t.qmax + 1, t.shape).astype(t.numpy_dtype)]


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """depthwise/grouped conv → two 1×1 branches → Add or Concat → average pool → fc."""
    h: int
    w: int
    c: int
    groups_depthwise: bool   # True: depthwise (groups = c); False: groups = 1 or 2
    branch: int              # output channels of each 1×1 branch
    stride: int
    join: str                # "add" or "concat"
    pool: tuple[int, int]    # average pool kernel = stride (0, 0: global)
    signed: bool
    seed: int


@st.composite
def block_specs(draw, max_hw: int = 8, max_c: int = 12) -> BlockSpec:
    c = draw(st.integers(1, max_c))
    return BlockSpec(
        h=draw(st.integers(2, max_hw)), w=draw(st.integers(2, max_hw)), c=c,
        groups_depthwise=draw(st.booleans()), branch=draw(st.integers(1, max_c)),
        stride=draw(st.integers(1, 2)), join=draw(st.sampled_from(["add", "concat"])),
        pool=draw(st.sampled_from([(0, 0), (1, 1), (2, 1), (2, 2)])),
        signed=draw(st.booleans()), seed=draw(st.integers(0, 2**31)))


def block_graph(spec: BlockSpec) -> ir.Graph:
    rng = np.random.default_rng(spec.seed)
    x = _tensor(rng, "input", (spec.h, spec.w, spec.c), spec.signed)
    groups = spec.c if spec.groups_depthwise else (2 if spec.c % 2 == 0 else 1)
    dw = _conv(rng, "dw", x, spec.c, (3, 3), (spec.stride, spec.stride), (1, 1, 1, 1),
               spec.signed, 0, True)
    dw = dataclasses.replace(dw, groups=groups, weight=dw.weight[:, :, :spec.c // groups, :])
    a = _conv(rng, "branch_a", dw.y, spec.branch, (1, 1), (1, 1), (0, 0, 0, 0), spec.signed, 0,
              False)
    b = _conv(rng, "branch_b", dw.y, spec.branch, (1, 1), (1, 1), (0, 0, 0, 0), spec.signed, 0,
              True)
    ops: list[ir.Op] = [dw, a, b]
    if spec.join == "add":
        y = _tensor(rng, "sum", a.y.shape, spec.signed)
        am, bm, shift = ir.add_multipliers(a.y.scale, b.y.scale, y.scale)
        ops.append(ir.Add(a=a.y, b=b.y, y=y, a_mult=am, b_mult=bm, shift=shift,
                          clamp=(y.zero_point, y.qmax), name="add"))
    else:
        shape = a.y.shape[:2] + (2 * spec.branch,)
        y = _tensor(rng, "cat", shape, spec.signed)
        ops.append(ir.Concat(inputs=(a.y, b.y), y=y, name="concat", multipliers=tuple(
            np.float32(np.float32(t.scale) / np.float32(y.scale)) for t in (a.y, b.y))))
    y = ops[-1].y
    kernel = spec.pool if spec.pool != (0, 0) else y.shape[:2]
    kernel = (min(kernel[0], y.shape[0]), min(kernel[1], y.shape[1]))
    shape = ((y.shape[0] - kernel[0]) // kernel[0] + 1, (y.shape[1] - kernel[1]) // kernel[1] + 1,
             y.shape[2])
    pooled = _tensor(rng, "pooled", shape, spec.signed)
    ops.append(ir.AvgPool(x=y, y=pooled, kernel=kernel, stride=kernel, name="avgpool",
                          multiplier=np.float32(np.float32(np.float32(y.scale) / pooled.scale)
                                                / np.float32(kernel[0] * kernel[1]))))
    flat = dataclasses.replace(pooled, name="flat", shape=(1, 1, int(np.prod(shape))))
    ops.append(ir.Flatten(x=pooled, y=flat, name="flatten"))
    ops.append(_conv(rng, "fc", flat, 5, (1, 1), (1, 1), (0, 0, 0, 0), spec.signed, 0, False))
    return ir.Graph(
        name="block",
        inputs=(ir.IOBinding("input", (1, spec.c, spec.h, spec.w), False, x),),
        outputs=(ir.IOBinding("output", (1, 5), False, ops[-1].y),), ops=tuple(ops))
