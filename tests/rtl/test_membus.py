"""The core's memory interface against a memory of random latency and backpressure.

:class:`SlowMemory` is a cycle-level model of any bus behind the core (rtl/membus.py): every
command waits a random number of cycles to be taken, read data come 1..40 cycles after their
command with random gaps, write beats and write completions are held back at random. The DMA
engine and the whole core must compute exactly what IsaSim computes whatever it does, never
have more than ``max_reads`` read beats outstanding and never cross a 4 KiB page in a burst.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
from amaranth.hdl import Value

from codesign.isa import Csr, HwConfig, LoadStore, Opcode, decode
from codesign.isasim import IsaSim
from codesign.rtl.dma import DmaEngine
from codesign.rtl.membus import MAX_BURST, PAGE_BYTES
from codesign.rtl.top import NpuCore

from .harness import Harness, csr_read, csr_write, isasim_words, read_memory, simulate
from .test_dma import random_dma
from .test_top import random_program


class SlowMemory:
    """A byte-addressed memory behind the membus signals of ``dut`` (random timing).

    Parameters
    ----------
    dut
        The component with the membus signals (:func:`codesign.rtl.membus.mem_master`).
    data : bytearray
        External memory; byte ``base + i`` of the bus is ``data[i]``.
    base : int
        Byte address of ``data[0]`` on the bus.
    rng : numpy.random.Generator
    max_latency : int
        Read data come 1..max_latency cycles after their command.
    stall : float
        Probability that a ready / valid / done the memory could give is withheld in a cycle.
    """

    def __init__(self, dut, data: bytearray, base: int, rng, max_latency: int, stall: float):
        self.dut, self.data, self.base = dut, data, base
        self.rng, self.max_latency, self.stall = rng, max_latency, stall
        self.bb = dut.config.bus_bytes
        self.max_reads = dut.config.max_reads
        self.cycle = 0
        self.reads = collections.deque()       # [due cycle, next byte address, beats left]
        self.writes = collections.deque()      # [next byte address, beats left]
        self.completions = collections.deque()  # due cycles of wr_done pulses
        self.outstanding = 0                   # read beats accepted, not yet delivered
        self.peak_outstanding = 0

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    def _check_burst(self, addr: int, length: int) -> int:
        beats = length + 1
        assert addr % self.bb == 0, f"unaligned burst address {addr:#x}"
        assert beats <= MAX_BURST
        assert addr // PAGE_BYTES == (addr + beats * self.bb - 1) // PAGE_BYTES, \
            f"burst of {beats} beats from {addr:#x} crosses a 4 KiB page"
        return beats

    def _bytes(self, addr: int) -> slice:
        start = addr - self.base
        assert 0 <= start <= len(self.data) - self.bb, f"access at {addr:#x} outside memory"
        return slice(start, start + self.bb)

    async def cycle_once(self, ctx) -> bool:
        """Drive the memory's side for one cycle, take what transfers, then tick; returns the
        ``done`` output of the cycle."""
        d = self.dut
        rd_cmd_ready = self._go()
        head = self.reads[0] if self.reads else None
        rd_valid = head is not None and head[0] <= self.cycle and self._go()
        wr_cmd_ready = self._go()
        wr_ready = self._go()
        done = bool(self.completions) and self.completions[0] <= self.cycle
        ctx.set(d.rd_cmd_ready, rd_cmd_ready)
        ctx.set(d.rd_valid, rd_valid)
        ctx.set(d.rd_data, int.from_bytes(self.data[self._bytes(head[1])], "little")
                if rd_valid else int(self.rng.integers(0, 1 << (8 * self.bb))))
        ctx.set(d.wr_cmd_ready, wr_cmd_ready)
        ctx.set(d.wr_ready, wr_ready)
        ctx.set(d.wr_done, done)
        if done:
            self.completions.popleft()
        if rd_valid and ctx.get(d.rd_ready):
            head[1] += self.bb
            head[2] -= 1
            self.outstanding -= 1
            if head[2] == 0:
                self.reads.popleft()
        if rd_cmd_ready and ctx.get(d.rd_cmd_valid):
            beats = self._check_burst(ctx.get(d.rd_cmd_addr), ctx.get(d.rd_cmd_len))
            due = self.cycle + int(self.rng.integers(1, self.max_latency + 1))
            self.reads.append([due, ctx.get(d.rd_cmd_addr), beats])
            self.outstanding += beats
            assert self.outstanding <= self.max_reads, "more read beats outstanding than max_reads"
            self.peak_outstanding = max(self.peak_outstanding, self.outstanding)
        if wr_cmd_ready and ctx.get(d.wr_cmd_valid):
            beats = self._check_burst(ctx.get(d.wr_cmd_addr), ctx.get(d.wr_cmd_len))
            self.writes.append([ctx.get(d.wr_cmd_addr), beats])
        # A write beat goes to the oldest command that still lacks beats; beats may come before
        # their command (the memory holds them until it is taken).
        if wr_ready and ctx.get(d.wr_valid) and self.writes:
            cmd = self.writes[0]
            self.data[self._bytes(cmd[0])] = ctx.get(d.wr_data).to_bytes(self.bb, "little")
            cmd[0] += self.bb
            cmd[1] -= 1
            if cmd[1] == 0:
                self.writes.popleft()
                self.completions.append(self.cycle + int(self.rng.integers(1, 8)))
        elif wr_ready and ctx.get(d.wr_valid):
            ctx.set(d.wr_ready, 0)      # no command yet: hold the beat back
        done_now = ctx.get(d.done)
        await ctx.tick()
        self.cycle += 1
        return done_now


CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2,
             max_reads=4),
    HwConfig(rows=2, cols=4, bus_bytes=4, act_depth=16, wgt_depth=4, acc_depth=4, prm_depth=3,
             max_reads=1),
    HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=12, wgt_depth=5, acc_depth=4, prm_depth=2,
             max_reads=16),
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2,
             deep_pipeline=True, max_reads=8),
]
EXT_WORDS = 64


@pytest.mark.parametrize("latency,stall", [(1, 0.0), (12, 0.3), (40, 0.6)])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_dma_any_latency(config, latency, stall):
    """Random LOADs/STOREs, their external words straddling a 4 KiB page, under random timing:
    every scratchpad and the external memory equal IsaSim's after each instruction."""
    c = config
    rng = np.random.default_rng([c.bus_bytes, c.max_reads, latency])
    sim = IsaSim(c, rng.integers(0, 256, EXT_WORDS * c.bus_bytes, dtype=np.uint8))
    for mem in (sim.act, sim.wgt, sim.prm):
        mem[:] = rng.integers(0, 256, mem.shape)
    dut = DmaEngine(c)
    h = Harness(dut, sim)
    assert set(h.mems) == {"act", "wgt", "prm"}
    page = int(rng.integers(1, 1 << 20))
    # External word 0 sits just below a page boundary, so bursts must split there.
    offset = PAGE_BYTES - EXT_WORDS // 2 * c.bus_bytes
    ext = bytearray(sim.ext.tobytes())
    memory = SlowMemory(dut, ext, page * PAGE_BYTES + offset, rng, latency, stall)
    insns = [random_dma(rng, c, EXT_WORDS) for _ in range(25)]

    async def testbench(ctx):
        ctx.set(dut.base, page)
        for insn in insns:
            # Instructions are relative to external word 0: move them to the offset.
            op, f = decode(insn)
            moved = insn + ((offset // c.bus_bytes) << LoadStore["ext_addr"].offset) \
                if int(f.rows) and int(f.length) else insn
            ctx.set(Value.cast(dut.insn), moved)
            ctx.set(dut.start, 1)
            assert not await memory.cycle_once(ctx)
            ctx.set(dut.start, 0)
            while not await memory.cycle_once(ctx):
                assert memory.cycle < 100_000, "DMA engine hangs"
            assert not ctx.get(dut.busy)
            sim.step(insn)
            for name, mem in h.mems.items():
                np.testing.assert_array_equal(read_memory(ctx, mem), isasim_words(sim, name),
                                              err_msg=f"{name} after {op.name}")
            np.testing.assert_array_equal(np.frombuffer(ext, np.uint8), sim.ext,
                                          err_msg=f"external memory after {op.name}")
        assert not memory.reads and not memory.writes and not memory.completions

    simulate(h, testbench)
    if latency > 1:    # several reads in flight whenever max_reads allows
        assert memory.peak_outstanding >= min(c.max_reads, 4)


CORE_CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=2,
             max_reads=4),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2,
             deep_pipeline=True, max_reads=32),
]


@pytest.mark.parametrize("latency,stall", [(3, 0.2), (40, 0.5)])
@pytest.mark.parametrize("config", CORE_CONFIGS, ids=lambda c: c.name)
def test_core_any_latency(config, latency, stall):
    """The whole core runs random programs (fetch + every engine) under random timing, at a
    random BASE, with the interrupt: every memory equals IsaSim's."""
    c = config
    rng = np.random.default_rng([c.bus_bytes, latency])
    program, ext, prog_base = random_program(c, rng)
    ref = IsaSim(c, ext)
    ref.run(prog_base)
    core = NpuCore(c)
    data = bytearray(ext.tobytes())
    page = int(rng.integers(0, 1 << 20))
    memory = SlowMemory(core, data, page * PAGE_BYTES, rng, latency, stall)
    got = {}

    async def testbench(ctx):
        await csr_write(ctx, core, Csr.BASE, page * PAGE_BYTES + 0xABC)    # low bits ignored
        assert csr_read(ctx, core, Csr.BASE) == page * PAGE_BYTES
        await csr_write(ctx, core, Csr.IRQ_ENABLE, 1)
        await csr_write(ctx, core, Csr.PROG_BASE, prog_base)
        await csr_write(ctx, core, Csr.CTRL, 1)
        assert not ctx.get(core.irq)
        while not await memory.cycle_once(ctx):
            assert memory.cycle < 200_000, "core hangs"
        assert ctx.get(core.irq) and csr_read(ctx, core, Csr.IRQ_STATUS) == 1
        await csr_write(ctx, core, Csr.IRQ_STATUS, 1)
        assert not ctx.get(core.irq)
        got.update((name, read_memory(ctx, mem)) for name, mem in
                   {"act": core.act_mem, "wgt": core.wgt_mem, "prm": core.prm_mem,
                    "acc": core.acc_mem}.items())

    simulate(core, testbench)
    for name in ("act", "wgt", "prm", "acc"):
        np.testing.assert_array_equal(got[name], isasim_words(ref, name), err_msg=name)
    np.testing.assert_array_equal(np.frombuffer(data, np.uint8), ref.ext, err_msg="ext")
    assert any(decode(insn)[0] == Opcode.STORE for insn in program)
