"""Testbench parts shared by the RTL tests (docs/rtl-contract.md).

:class:`Harness` puts memories initialised from an :class:`~codesign.isasim.IsaSim` behind the
memory ports of an engine or of the NPU, wired as in the NPU top; :meth:`Harness.step` runs one
instruction on the engine and on IsaSim and compares every memory afterwards.
"""

from __future__ import annotations

import numpy as np
from amaranth.hdl import Elaboratable, Module, Shape, Value
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.sim import Simulator

from codesign.isa import Csr, decode
from codesign.isasim import IsaSim
from codesign.rtl.membus import mem_master
from codesign.rtl.ports import SCRATCHPADS, ext_port, scratchpad
from codesign.rtl.top import NativeMemory
from codesign.timing import engine_cycles

__all__ = ["Harness", "OnNativePort", "to_ints", "to_bytes", "isasim_words", "read_memory",
           "run_engine", "simulate", "csr_write", "csr_read"]

#: The external memory, as a name next to :data:`codesign.rtl.ports.SCRATCHPADS`.
EXT = "ext"


def to_ints(array: np.ndarray) -> list[int]:
    """Rows of bytes as little-endian words (``Memory`` init values)."""
    return [int.from_bytes(row.tobytes(), "little") for row in array]


def to_bytes(values, width_bytes: int) -> np.ndarray:
    """Little-endian words as rows of ``width_bytes`` bytes (the inverse of :func:`to_ints`)."""
    return np.array([list(int(v).to_bytes(width_bytes, "little")) for v in values], np.uint8)


def isasim_words(sim: IsaSim, name: str) -> np.ndarray:
    """Memory ``name`` (a scratchpad or ``"ext"``) of ``sim`` as rows of bytes, one per word."""
    if name == EXT:
        return sim.ext.reshape(-1, sim.config.bus_bytes)
    words = getattr(sim, name)
    # ACC holds int32 lanes; the RTL word is their little-endian bytes.
    return words.view(np.uint8).reshape(len(words), -1)


def read_memory(ctx, mem: Memory) -> np.ndarray:
    """The simulated contents of ``mem`` as rows of bytes, one per word."""
    width_bytes = Shape.cast(mem.shape).width // 8
    return to_bytes([ctx.get(mem.data[i]) for i in range(mem.depth)], width_bytes)


def _port_names(name: str) -> tuple[tuple[str, str, str], tuple[str, str, str]]:
    """(addr, enable, data) of the read and of the write port of memory ``name``."""
    if name == EXT:
        return ("mem_addr", "mem_re", "mem_rdata"), ("mem_addr", "mem_we", "mem_wdata")
    return (f"{name}_raddr", f"{name}_ren", f"{name}_rdata"), \
        (f"{name}_waddr", f"{name}_wen", f"{name}_wdata")


class OnNativePort(Elaboratable):
    """``dut`` (the DMA engine or the controller) with its memory interface behind the native
    port (:class:`codesign.rtl.top.NativeMemory`), as in the native NPU: it has ``dut``'s
    signals, except the memory interface's, plus ``mem_*``."""

    def __init__(self, dut):
        self.dut = dut
        self.config = dut.config
        self.native = NativeMemory(dut.config)
        bus = mem_master(dut.config)
        self.signature = wiring.Signature({
            **{n: m for n, m in dut.signature.members.items() if n not in bus},
            **ext_port(dut.config)})

    def __getattr__(self, name):
        if name in ext_port(self.__dict__["config"]):
            return getattr(self.__dict__["native"], name)
        return getattr(self.__dict__["dut"], name)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dut = self.dut
        m.submodules.native = self.native
        for name, member in mem_master(self.config).items():
            if name in self.dut.signature.members:
                src, dst = ((self.dut, self.native) if member.flow == wiring.Out
                            else (self.native, self.dut))
                m.d.comb += getattr(dst, name).eq(getattr(src, name))
        return m


class Harness(Elaboratable):
    """``dut`` plus one memory behind each memory port group it has, wired as in the NPU top.

    Parameters
    ----------
    dut : wiring.Component
        An engine or the NPU; its ``config`` fixes the scratchpad write granularities.
    sim : IsaSim
        Initial contents of the memories.

    Attributes
    ----------
    dut : wiring.Component
    mems : dict of str to Memory
        The memories, by scratchpad name (``"act"``, ...) and ``"ext"``, for every memory that
        ``dut`` has a read or write port of.
    """

    def __init__(self, dut, sim: IsaSim):
        self.dut = dut
        self.mems = {}
        members = dut.signature.members
        for name in (*SCRATCHPADS, EXT):
            if any(port in members for ports in _port_names(name) for port in ports):
                words = isasim_words(sim, name)
                self.mems[name] = Memory(shape=8 * words.shape[1], depth=len(words),
                                         init=to_ints(words))

    def elaborate(self, platform) -> Module:
        m = Module()
        dut = self.dut
        m.submodules.dut = dut
        members = dut.signature.members
        for name, mem in self.mems.items():
            m.submodules[name] = mem
            (raddr, ren, rdata), (waddr, wen, wdata) = _port_names(name)
            if ren in members:
                rd = mem.read_port()
                m.d.comb += [
                    rd.addr.eq(getattr(dut, raddr)),
                    rd.en.eq(getattr(dut, ren)),
                    getattr(dut, rdata).eq(rd.data),
                ]
            if wen in members:
                granularity = None if name == EXT else scratchpad(dut.config, name).granularity
                wr = mem.write_port(granularity=granularity)
                m.d.comb += [
                    wr.addr.eq(getattr(dut, waddr)),
                    wr.en.eq(getattr(dut, wen)),
                    wr.data.eq(getattr(dut, wdata)),
                ]
        return m

    async def step(self, ctx, sim: IsaSim, insn: int) -> int:
        """Run ``insn`` on the engine and on ``sim``, compare every memory; returns busy cycles.

        The engine side is :func:`run_engine`, which also checks the start/busy/done protocol;
        the busy cycles must be those of the timing model (:func:`codesign.timing.engine_cycles`).
        """
        cycles = await run_engine(ctx, self.dut, insn)
        assert cycles == engine_cycles(sim.config, *decode(insn)), f"busy cycles of {insn:#x}"
        sim.step(insn)
        # Compare after every instruction: a wrong write must be caught where it happens, not
        # where a later instruction reads it.
        for name, mem in self.mems.items():
            np.testing.assert_array_equal(read_memory(ctx, mem), isasim_words(sim, name),
                                          err_msg=f"{name} after {insn:#x}")
        return cycles

    def run(self, sim: IsaSim, insns: list[int]) -> list[int]:
        """Simulate ``insns`` one after the other with :meth:`step`; returns their busy cycles."""
        cycles = []

        async def testbench(ctx):
            for insn in insns:
                cycles.append(await self.step(ctx, sim, insn))

        simulate(self, testbench)
        return cycles


def _port_outputs(engine) -> list:
    return [getattr(engine, name) for name, member in engine.signature.members.items()
            if member.flow.name == "Out" and name not in ("busy", "done", "ready")]


async def run_engine(ctx, engine, insn: int) -> int:
    """Issue one instruction and check the start/busy/done protocol; returns start→done cycles.

    Also checks that every memory-port output is 0 while the engine is not busy, before
    ``start`` and after ``done`` (the top ORs the engines' ports together).
    """
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


def simulate(design, testbench) -> None:
    """Simulate ``design`` with a 1 MHz clock until ``testbench`` returns."""
    sim = Simulator(design)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


async def csr_write(ctx, dut, addr: Csr, value: int) -> None:
    """One-cycle write strobe on the host CSR port of ``dut``."""
    ctx.set(dut.csr_addr, addr)
    ctx.set(dut.csr_we, 1)
    ctx.set(dut.csr_wdata, value)
    await ctx.tick()
    ctx.set(dut.csr_we, 0)


def csr_read(ctx, dut, addr: Csr) -> int:
    """The (combinational) CSR read data of ``dut`` at ``addr``."""
    ctx.set(dut.csr_addr, addr)
    return ctx.get(dut.csr_rdata)
