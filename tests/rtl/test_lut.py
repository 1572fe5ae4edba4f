# amaranth: UnusedElaboratable=no
"""LutEngine against IsaSim.step on randomized tables and LUT instructions (Amaranth simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import HwConfig, Opcode, decode, encode
from codesign.isasim import IsaSim
from codesign.rtl.lut import LutEngine
from codesign.timing import engine_cycles

from .harness import Harness, read_memory, simulate, to_ints

N_INSNS = 20

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=2, acc_depth=4, prm_depth=1,
             lut_tables=2),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=20, wgt_depth=4, acc_depth=4, prm_depth=1,
             lut_tables=1),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=16, wgt_depth=1, acc_depth=4, prm_depth=1,
             lut_tables=3),
    HwConfig(rows=8, cols=8, bus_bytes=8, act_depth=16, wgt_depth=8, acc_depth=4, prm_depth=1,
             lut_tables=2, deep_pipeline=True),
]


def random_lut(rng, c: HwConfig) -> int:
    """A random LUT, in place or between disjoint word ranges (the encoding's rule)."""
    count = int(rng.integers(0, min(8, c.act_depth // 2) + 1)) if rng.integers(8) else 0
    src = int(rng.integers(0, c.act_depth - count + 1))
    if rng.integers(2):
        dst = src
    else:
        free = [d for d in range(c.act_depth - count + 1) if d + count <= src or d >= src + count]
        dst = int(rng.choice(free)) if free else src
    return encode(Opcode.LUT, table=int(rng.integers(c.lut_tables)), src_base=src, dst_base=dst,
                  count=count)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_lut_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols * 10 + c.bus_bytes)
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    tables = rng.integers(0, 256, sim.lut.shape).astype(np.uint8)
    dut = LutEngine(c)
    h = Harness(dut, sim)
    assert set(h.mems) == {"act"}
    insns = [random_lut(rng, c) for _ in range(N_INSNS)]
    counts = [int(decode(insn)[1].count) for insn in insns]
    assert any(counts) and not all(counts)
    cycles = []

    async def testbench(ctx):
        # The tables come in through the write port as the DMA engine writes them: a slice
        # every bus_bytes cycles, to every lane's copy at once.
        for word, value in enumerate(to_ints(tables)):
            ctx.set(dut.lut_waddr, word)
            ctx.set(dut.lut_wen, 1)
            ctx.set(dut.lut_wdata, value)
            await ctx.tick()
            ctx.set(dut.lut_wen, 0)
            for _ in range(c.bus_bytes - 1):
                await ctx.tick()
        sim.lut[:] = tables
        for mem in dut.tables:
            np.testing.assert_array_equal(read_memory(ctx, mem).reshape(-1), tables.reshape(-1))
        for insn in insns:
            cycles.append(await h.step(ctx, sim, insn))

    simulate(h, testbench)
    # One ACT word per cycle after a four-stage pipeline: the timing model's figure.
    assert cycles == [engine_cycles(c, Opcode.LUT, decode(insn)[1]) for insn in insns]
    assert cycles == [n + 4 if n else 1 for n in counts]


def test_lut_engine_needs_tables():
    with pytest.raises(ValueError, match="lut_tables"):
        LutEngine(HwConfig())


SYSTEM_CONFIGS = [
    HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=32, wgt_depth=2, acc_depth=4, prm_depth=1,
             lut_tables=2),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=32, wgt_depth=4, acc_depth=4, prm_depth=1,
             lut_tables=3, deep_pipeline=True),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=32, wgt_depth=1, acc_depth=4, prm_depth=1,
             lut_tables=1, eltwise=False),
]


@pytest.mark.parametrize("config", SYSTEM_CONFIGS, ids=lambda c: c.name)
def test_random_lut_programs_on_the_npu(config):
    """LOADs of tables (paced by the DMA engine, strided), LOADs of ACT, LUTs and STOREs on the
    whole NPU: memories equal IsaSim's and CYCLES equals the timing model's."""
    from codesign.hazards import assign_waits
    from codesign.isa import Mem
    from codesign.timing import schedule

    from .test_top import _image, _random_dma, check_against_isasim

    c = config
    rng = np.random.default_rng([c.rows, c.bus_bytes, c.lut_tables])
    n_insns = 14
    data_lo = 4 + (n_insns + 2) * c.insn_words
    ext_words = data_lo + c.lut_depth + c.act_depth * c.slices(Mem.ACT) + 64
    program = [encode(Opcode.LOAD, mem=Mem.LUT, sp_addr=0, sp_stride=0, ext_addr=data_lo,
                      ext_stride=0, rows=1, length=c.lut_depth),
               encode(Opcode.LOAD, mem=Mem.ACT, sp_addr=0, sp_stride=0,
                      ext_addr=data_lo + c.lut_depth, ext_stride=0, rows=1,
                      length=c.act_depth * c.slices(Mem.ACT))]
    for _ in range(n_insns - 2):
        kind = int(rng.integers(4))
        if kind == 0:       # a strided LOAD of table slices
            rows, length = int(rng.integers(1, 3)), int(rng.integers(1, 5))
            stride = int(rng.integers(length, length + 3))
            sp = int(rng.integers(0, c.lut_depth - (rows - 1) * stride - length + 1))
            program.append(encode(Opcode.LOAD, mem=Mem.LUT, sp_addr=sp, sp_stride=stride,
                                  ext_addr=int(rng.integers(data_lo, ext_words - 20)),
                                  ext_stride=stride, rows=rows, length=length))
        elif kind == 1:
            program.append(_random_dma(rng, c, bool(rng.integers(2)), data_lo, ext_words))
        else:
            program.append(random_lut(rng, c))
    program = assign_waits(program + [encode(Opcode.END)], c)
    assert sum(decode(i)[0] == Opcode.LUT for i in program) >= 3
    ext, base = _image(c, program, ext_words, rng)
    assert check_against_isasim(c, ext, base) == schedule(program, c).cycles
