"""DmaEngine against IsaSim.step on randomized LOAD/STORE instructions."""

from __future__ import annotations

import numpy as np
import pytest
from amaranth.hdl import Elaboratable, Module, Value
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from codesign.isa import HwConfig, Mem, Opcode, decode, encode
from codesign.isasim import IsaSim
from codesign.rtl.dma import DmaEngine

EXT_WORDS = 64

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2),
    HwConfig(rows=2, cols=4, bus_bytes=4, act_depth=16, wgt_depth=4, acc_depth=4, prm_depth=3),
    HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=12, wgt_depth=5, acc_depth=4, prm_depth=2),
]


def _to_ints(array: np.ndarray) -> list[int]:
    return [int.from_bytes(row.tobytes(), "little") for row in array]


def _to_bytes(values: list[int], width_bytes: int) -> np.ndarray:
    return np.array([list(v.to_bytes(width_bytes, "little")) for v in values], np.uint8)


class _Harness(Elaboratable):
    """The engine plus its scratchpads and an external memory, wired as in the NPU top."""

    def __init__(self, config: HwConfig, sim: IsaSim):
        self.dut = DmaEngine(config)
        c = config
        self.mems = {
            "act": (Memory(shape=8 * c.act_bytes, depth=c.act_depth, init=_to_ints(sim.act)), 8),
            "wgt": (Memory(shape=8 * c.cols, depth=c.wgt_depth, init=_to_ints(sim.wgt)),
                    8 * c.bus_bytes),
            "prm": (Memory(shape=64 * c.cols, depth=c.prm_depth, init=_to_ints(sim.prm)),
                    8 * c.bus_bytes),
        }
        ext = sim.ext.reshape(-1, c.bus_bytes)
        self.ext = Memory(shape=8 * c.bus_bytes, depth=len(ext), init=_to_ints(ext))

    def elaborate(self, platform):
        m = Module()
        dut = m.submodules.dut = self.dut
        for name, (mem, granularity) in self.mems.items():
            m.submodules[name] = mem
            wr = mem.write_port(granularity=granularity)
            m.d.comb += [
                wr.addr.eq(getattr(dut, f"{name}_waddr")),
                wr.en.eq(getattr(dut, f"{name}_wen")),
                wr.data.eq(getattr(dut, f"{name}_wdata")),
            ]
        rd = self.mems["act"][0].read_port()
        m.d.comb += [rd.addr.eq(dut.act_raddr), rd.en.eq(dut.act_ren), dut.act_rdata.eq(rd.data)]
        m.submodules.ext = self.ext
        ext_rd = self.ext.read_port()
        ext_wr = self.ext.write_port()
        m.d.comb += [
            ext_rd.addr.eq(dut.mem_addr), ext_rd.en.eq(dut.mem_re), dut.mem_rdata.eq(ext_rd.data),
            ext_wr.addr.eq(dut.mem_addr), ext_wr.en.eq(dut.mem_we),
            ext_wr.data.eq(dut.mem_wdata),
        ]
        return m


def _port_outputs(engine) -> list:
    return [getattr(engine, name) for name, member in engine.signature.members.items()
            if member.flow.name == "Out" and name not in ("busy", "done")]


async def run_engine(ctx, engine, insn: int) -> int:
    """Issue one instruction, check the start/busy/done protocol; returns the busy cycles."""
    outputs = _port_outputs(engine)
    ctx.set(Value.cast(engine.insn), insn)
    ctx.set(engine.start, 1)
    assert ctx.get(engine.busy) == 0
    assert all(ctx.get(o) == 0 for o in outputs), "port driven while not busy"
    await ctx.tick()
    ctx.set(engine.start, 0)
    ctx.set(Value.cast(engine.insn), 0)
    cycles = 1
    while not ctx.get(engine.done):
        assert ctx.get(engine.busy) == 1
        await ctx.tick()
        cycles += 1
        assert cycles < 10_000, "engine hangs"
    assert ctx.get(engine.busy) == 1
    await ctx.tick()
    assert ctx.get(engine.busy) == 0 and ctx.get(engine.done) == 0
    assert all(ctx.get(o) == 0 for o in outputs), "port driven while not busy"
    return cycles


def _random_span(rng, total: int, rows: int, length: int) -> tuple[int, int]:
    """(base, stride) of ``rows`` non-overlapping runs of ``length`` inside ``total``."""
    max_stride = (total - length) // max(rows - 1, 1) if rows > 1 else length
    stride = int(rng.integers(length, max(max_stride, length) + 1)) if rows > 1 else \
        int(rng.integers(0, 4))
    used = (rows - 1) * stride + length
    return int(rng.integers(0, total - used + 1)), stride


def random_dma(rng, c: HwConfig, ext_words: int, store: bool | None = None) -> int:
    store = bool(rng.integers(2)) if store is None else store
    mem = Mem.ACT if store else Mem(int(rng.integers(3)))
    total = c.depth(mem) * c.slices(mem)
    while True:
        rows = int(rng.integers(1, 4))
        length = int(rng.integers(1, 7))
        if rows * length <= min(total, ext_words):
            break
    if rng.integers(10) == 0:
        rows, length = (0, 3) if rng.integers(2) else (2, 0)
        sp, sp_stride, ext, ext_stride = 0, 0, 0, 0
    else:
        sp, sp_stride = _random_span(rng, total, rows, length)
        ext, ext_stride = _random_span(rng, ext_words, rows, length)
    return encode(Opcode.STORE if store else Opcode.LOAD, mem=mem, sp_addr=sp,
                  sp_stride=sp_stride, ext_addr=ext, ext_stride=ext_stride, rows=rows,
                  length=length)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_dma_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols * 10 + c.bus_bytes)
    sim = IsaSim(c, rng.integers(0, 256, EXT_WORDS * c.bus_bytes, dtype=np.uint8))
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    sim.wgt[:] = rng.integers(0, 256, sim.wgt.shape)
    sim.prm[:] = rng.integers(0, 256, sim.prm.shape)
    h = _Harness(c, sim)
    insns = [random_dma(rng, c, EXT_WORDS) for _ in range(30)]
    results = []

    async def testbench(ctx):
        for insn in insns:
            cycles = await run_engine(ctx, h.dut, insn)
            sim.step(insn)
            results.append((insn, cycles))
            mems = {"act": (sim.act, c.act_bytes), "wgt": (sim.wgt, c.cols),
                    "prm": (sim.prm, 8 * c.cols)}
            for name, (expected, width) in mems.items():
                mem = h.mems[name][0]
                got = _to_bytes([ctx.get(mem.data[i]) for i in range(mem.depth)], width)
                np.testing.assert_array_equal(got, expected, err_msg=f"{name} after {insn:#x}")
            got = _to_bytes([ctx.get(h.ext.data[i]) for i in range(h.ext.depth)], c.bus_bytes)
            np.testing.assert_array_equal(got, sim.ext.reshape(-1, c.bus_bytes))

    simulator = Simulator(h)
    simulator.add_clock(1e-6)
    simulator.add_testbench(testbench)
    simulator.run()
    assert len(results) == len(insns)
    # One bus word per cycle in steady state: N slices take N + 1 busy cycles.
    for insn, cycles in results:
        _, f = decode(insn)
        n = int(f.rows) * int(f.length)
        assert cycles == n + 1, (n, cycles)
