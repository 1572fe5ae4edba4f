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
        # per cycle, to every lane's copy at once.
        for word, value in enumerate(to_ints(tables)):
            ctx.set(dut.lut_waddr, word)
            ctx.set(dut.lut_wen, 1)
            ctx.set(dut.lut_wdata, value)
            await ctx.tick()
        ctx.set(dut.lut_wen, 0)
        sim.lut[:] = tables
        for mem in dut.tables:
            np.testing.assert_array_equal(read_memory(ctx, mem), tables)
        for insn in insns:
            cycles.append(await h.step(ctx, sim, insn))

    simulate(h, testbench)
    # One ACT word per cycle after a four-stage pipeline: the timing model's figure.
    assert cycles == [engine_cycles(c, Opcode.LUT, decode(insn)[1]) for insn in insns]
    assert cycles == [n + 4 if n else 1 for n in counts]


def test_lut_engine_needs_tables():
    with pytest.raises(ValueError, match="lut_tables"):
        LutEngine(HwConfig())
