# amaranth: UnusedElaboratable=no
"""MatMulEngine against IsaSim.step on randomized MATMUL instructions."""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Value

from codesign.isa import HwConfig, Opcode, decode, encode
from codesign.isasim import IsaSim
from codesign.rtl.array import SystolicArray
from codesign.rtl.matmul import MatMulEngine
from codesign.timing import _MatMulPipe, engine_cycles

from .harness import Harness, isasim_words, read_memory, simulate

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=48, wgt_depth=6, acc_depth=24, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=1, act_depth=48, wgt_depth=8, acc_depth=20, prm_depth=1),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=40, wgt_depth=9, acc_depth=17, prm_depth=1),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=32, wgt_depth=3, acc_depth=16, prm_depth=1),
    HwConfig(rows=2, cols=8, bus_bytes=8, act_depth=32, wgt_depth=4, acc_depth=16, prm_depth=1),
    HwConfig(rows=8, cols=8, bus_bytes=4, act_depth=32, wgt_depth=10, acc_depth=16, prm_depth=1),
    # The same with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=48, wgt_depth=6, acc_depth=24, prm_depth=1,
             deep_pipeline=True),
]


def _random_matmul(rng, c: HwConfig) -> int:
    """A MATMUL over an NHWC tensor placed somewhere in ACT, with padding, strides and bounds.

    The window may start above/left of the tensor (negative ``ih0``/``iw0`` → negative
    ``act_base``), step past its far edge, or be clipped by ``in_h``/``in_w`` smaller than the
    stored tensor; only in-bounds positions must address real ACT words.
    """
    groups = c.act_bytes // c.rows
    while True:
        cw = int(rng.integers(1, 3))                    # channel words per pixel
        height, width = int(rng.integers(1, 5)), int(rng.integers(1, 5))
        if height * width * cw <= c.act_depth:
            break
    base = int(rng.integers(0, c.act_depth - height * width * cw + 1))
    word = int(rng.integers(0, cw))
    in_h, in_w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
    stride_h, stride_w = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    ih0, iw0 = int(rng.integers(-2, 2)), int(rng.integers(-2, 2))
    if rng.integers(12) == 0:
        ih0 = int(rng.integers(in_h, in_h + 3))         # every position out of bounds
    out_h, out_w = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    while out_h * out_w > c.acc_depth:
        out_h -= 1
    if rng.integers(15) == 0:
        out_h = 0                                       # empty instruction
    x_signed = int(rng.integers(2))
    x_zp = int(rng.integers(-128, 128) if x_signed else rng.integers(0, 256))
    if rng.integers(6) == 0:
        x_zp = int(rng.choice([-128, 127] if x_signed else [0, 255]))
    w_zp = int(rng.choice([0, int(rng.integers(-128, 128)), -128, 127]))
    return encode(
        Opcode.MATMUL,
        accumulate=int(rng.integers(2)), x_signed=x_signed,
        lane_group=int(rng.integers(0, groups)), x_zp=x_zp, w_zp=w_zp,
        act_base=base + (ih0 * width + iw0) * cw + word,
        step_w=stride_w * cw, step_h=stride_h * width * cw,
        wgt_base=int(rng.integers(0, c.wgt_depth - c.rows + 1)),
        acc_base=int(rng.integers(0, c.acc_depth - out_h * out_w + 1)),
        out_h=out_h, out_w=out_w, ih0=ih0, iw0=iw0, stride_h=stride_h, stride_w=stride_w,
        in_h=in_h, in_w=in_w)


def _random_gemv(rng, c: HwConfig) -> int:
    """A GEMV MATMUL: one pixel (out of bounds now and then: x = 0) against up to 5 weight
    tiles, odd and even counts."""
    tiles = int(rng.integers(1, min(5, c.wgt_depth // c.rows) + 1))
    tiles = min(tiles, c.acc_depth)
    f = decode(_random_matmul(rng, c))[1]
    fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
    inside = rng.integers(8) != 0
    fields.update(gemv=1, out_h=1, out_w=tiles, ih0=0 if inside else 1, iw0=0, in_h=1, in_w=1,
                  act_base=int(rng.integers(0, c.act_depth)),
                  wgt_base=int(rng.integers(0, c.wgt_depth - tiles * c.rows + 1)),
                  acc_base=int(rng.integers(0, c.acc_depth - tiles + 1)))
    return encode(Opcode.MATMUL, **fields)


def _random_state(c: HwConfig, rng) -> IsaSim:
    """An ISA model whose ACT, WGT and ACC hold random words."""
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    sim.wgt[:] = rng.integers(0, 256, sim.wgt.shape)
    sim.acc[:] = rng.integers(-2**31, 2**31, sim.acc.shape)
    return sim


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}")
def test_matmul_engine_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols)
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    sim.act[rng.random(sim.act.shape) < 0.1] = 0x80       # int8 -128
    sim.wgt[:] = rng.integers(0, 256, sim.wgt.shape)
    sim.wgt[rng.random(sim.wgt.shape) < 0.1] = 0x80
    sim.acc[:] = rng.integers(-2**31, 2**31, sim.acc.shape)
    sim.acc[rng.random(sim.acc.shape) < 0.1] = 2**31 - 1   # accumulating wraps around
    h = Harness(MatMulEngine(c), sim)
    assert set(h.mems) == {"act", "wgt", "acc"}
    insns = [_random_gemv(rng, c) if rng.integers(4) == 0 else _random_matmul(rng, c)
             for _ in range(32)]
    latencies = h.run(sim, insns)
    for insn, cycles in zip(insns, latencies, strict=True):
        f = decode(insn)[1]
        positions = int(f.out_h) * int(f.out_w)
        if f.gemv:
            assert cycles == engine_cycles(c, Opcode.MATMUL, f)
        else:
            assert cycles == (h.dut.latency + positions if positions else 1)


DW_CONFIGS = [
    HwConfig(rows=8, cols=8, bus_bytes=4, act_depth=64, wgt_depth=20, acc_depth=32, prm_depth=1,
             dw_width=5),
    HwConfig(rows=8, cols=2, bus_bytes=2, act_depth=64, wgt_depth=12, acc_depth=32, prm_depth=1,
             dw_width=1),
    HwConfig(rows=16, cols=4, bus_bytes=4, act_depth=64, wgt_depth=20, acc_depth=32,
             prm_depth=1, dw_width=3),
    # The tap lane with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=8, cols=2, bus_bytes=2, act_depth=64, wgt_depth=12, acc_depth=32, prm_depth=1,
             dw_width=4, deep_pipeline=True),
]


def _random_depthwise(rng, c: HwConfig) -> int:
    """A depthwise MATMUL: 3×3 stride 1 over a tensor in ACT, with random padding/clipping
    (``ih0``/``iw0`` in -2..1) and ``out_w`` up to the line buffers' ``dw_width``."""
    while True:
        cw = int(rng.integers(1, 3))
        height, width = int(rng.integers(1, 6)), int(rng.integers(1, 6))
        out_h, out_w = int(rng.integers(1, 5)), int(rng.integers(1, c.dw_width + 1))
        if height * width * cw <= c.act_depth and out_h * out_w <= c.acc_depth:
            break
    base = int(rng.integers(0, c.act_depth - height * width * cw + 1))
    ih0, iw0 = int(rng.integers(-2, 2)), int(rng.integers(-2, 2))
    x_signed = int(rng.integers(2))
    return encode(
        Opcode.MATMUL, accumulate=int(rng.integers(2)), depthwise=1, x_signed=x_signed,
        lane_group=int(rng.integers(0, c.act_bytes // c.cols)),
        x_zp=int(rng.integers(-128, 128) if x_signed else rng.integers(0, 256)),
        w_zp=int(rng.integers(-128, 128)),
        act_base=base + (ih0 * width + iw0) * cw + int(rng.integers(0, cw)),
        step_w=cw, step_h=width * cw,
        wgt_base=int(rng.integers(0, c.wgt_depth - c.dw_weight_words + 1)),
        acc_base=int(rng.integers(0, c.acc_depth - out_h * out_w + 1)),
        out_h=out_h, out_w=out_w, ih0=ih0, iw0=iw0, stride_h=1, stride_w=1,
        in_h=int(rng.integers(1, height + 1)), in_w=int(rng.integers(1, width + 1)))


@pytest.mark.parametrize("config", DW_CONFIGS, ids=lambda c: f"{c.rows}x{c.cols}")
def test_matmul_engine_depthwise(config):
    """Depthwise MATMULs interleaved with ordinary ones (mode switches, stale line buffers)."""
    c = config
    rng = np.random.default_rng(c.rows * 7 + c.cols)
    sim = _random_state(c, rng)
    h = Harness(MatMulEngine(c), sim)
    insns = [_random_depthwise(rng, c) if rng.integers(3) else
             _random_gemv(rng, c) if rng.integers(3) == 0 else _random_matmul(rng, c)
             for _ in range(24)]
    latencies = h.run(sim, insns)
    dw_latency = max(c.rows, 9) + 2     # a row per tap, + the PEs' operand and product registers
    for insn, cycles in zip(insns, latencies, strict=True):
        f = decode(insn)[1]
        if f.gemv:
            assert cycles == engine_cycles(c, Opcode.MATMUL, f)
        elif f.depthwise:
            stream = (int(f.out_h) + 2) * (int(f.out_w) + 2)
            # (+ 1: the read registers of a deep pipeline)
            assert cycles == (c.dw_weight_words + stream + dw_latency - 8 + 1 + 3
                              + c.deep_pipeline)
        elif int(f.out_h) * int(f.out_w):
            assert cycles == h.dut.latency + int(f.out_h) * int(f.out_w)


@pytest.mark.parametrize("config", [
    CONFIGS[2], CONFIGS[4], DW_CONFIGS[0], DW_CONFIGS[2],
    # A deep pipeline's read registers move the x stage and the weights' arrival.
    dataclasses.replace(CONFIGS[4], deep_pipeline=True),
    dataclasses.replace(DW_CONFIGS[0], deep_pipeline=True),
], ids=lambda c: f"{c.rows}x{c.cols}" + "_dp" * c.deep_pipeline)
def test_matmul_engine_back_to_back(config):
    """Instructions issued whenever the engine is ready (it takes the next one while the
    previous streams): the final memories equal IsaSim running them one by one, and ready,
    busy and done come exactly when codesign.timing's model of the pipeline says. Small M and
    accumulation into the rows just written exercise the overlap hazards."""
    c = config
    rng = np.random.default_rng(c.rows * 31 + c.cols)
    sim = _random_state(c, rng)
    insns = []
    for _ in range(30):
        if c.dw_width and rng.integers(4) == 0:
            insns.append(_random_depthwise(rng, c))
            continue
        if rng.integers(3) == 0:    # runs of GEMV tiles, accumulating as FC layers do
            for _ in range(int(rng.integers(1, 4))):
                f = decode(_random_gemv(rng, c))[1]
                fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
                fields.update(accumulate=1, acc_base=0)
                insns.append(encode(Opcode.MATMUL, **fields))
            continue
        f = decode(_random_matmul(rng, c))[1]
        fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
        if rng.integers(2):     # tiny tiles accumulating onto the same rows, as FC layers do
            fields.update(out_h=1, out_w=int(rng.integers(1, 3)), accumulate=1,
                          acc_base=int(rng.integers(0, 3)))
        insns.append(encode(Opcode.MATMUL, **fields))
    h = Harness(MatMulEngine(c), sim)
    model = _MatMulPipe(c)

    async def testbench(ctx):
        dut, pending, cycle = h.dut, list(insns), 0
        while pending or ctx.get(dut.busy):
            assert bool(ctx.get(dut.ready)) == model.ready(cycle), cycle
            assert bool(ctx.get(dut.busy)) == model.busy(cycle), cycle
            assert bool(ctx.get(dut.done)) == (cycle == model.done), cycle
            issue = bool(pending) and model.ready(cycle) and rng.random() < 0.8
            if issue:
                insn = pending.pop(0)
                ctx.set(Value.cast(dut.insn), insn)
                model.accept(cycle, 0, 0, decode(insn)[1])
            ctx.set(dut.start, int(issue))
            await ctx.tick()
            ctx.set(dut.start, 0)
            ctx.set(Value.cast(dut.insn), 0)
            cycle += 1
            assert cycle < 100_000
        for insn in insns:
            sim.step(insn)
        for name, mem in h.mems.items():
            np.testing.assert_array_equal(read_memory(ctx, mem), isasim_words(sim, name),
                                          err_msg=name)

    simulate(h, testbench)


def test_matmul_engine_without_gemv():
    """An NPU built without the GEMV mode runs ordinary MATMULs as before (the GEMV logic is
    not built: no gemv port on its array)."""
    c = dataclasses.replace(CONFIGS[2], gemv=False)
    rng = np.random.default_rng(5)
    sim = _random_state(c, rng)
    h = Harness(MatMulEngine(c), sim)
    insns = [_random_matmul(rng, c) for _ in range(12)]
    for insn, cycles in zip(insns, h.run(sim, insns), strict=True):
        assert cycles == engine_cycles(c, Opcode.MATMUL, decode(insn)[1])
    assert "gemv" not in SystolicArray(rows=4, cols=4, gemv=False).signature.members


def test_matmul_rejects_bad_config():
    with pytest.raises(TypeError):
        MatMulEngine(config=(4, 4))


def test_matmul_converts_to_verilog():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verilog.convert(MatMulEngine(HwConfig(rows=4, cols=2, bus_bytes=2)), emit_src=False,
                        name="matmul_engine")
