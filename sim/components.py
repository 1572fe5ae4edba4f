"""Reusable cocotb 2.x components for a codesign NPU inside any testbench (docs/integration.md).

A user's SoC testbench instantiates ``npu_top`` (of any bus form) next to their own logic; these
components give it what our own tests use:

* :func:`npu_registers` — the NPU's registers through its register port (native strobes,
  AXI4-Lite, Wishbone), driven only while an access lasts;
* :class:`AxiMemory` / :class:`WishboneMemory` — external memory on the NPU's master port with a
  random read latency and random backpressure on every channel;
* :class:`HostRegisters`, :class:`HostMemory`, :func:`irq_waiter` — the register, memory and
  interrupt hooks of the real host drivers (the C driver through :mod:`codesign.cshim`, or
  :class:`codesign.mmio.Npu`) running in a thread of cocotb's ``bridge``;
* :class:`GoldenChecker` — the golden model's outputs for the same inputs, and the comparison.

Everything works on a design directory written by ``codesign generate`` (:class:`Design`).
"""

from __future__ import annotations

import random
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from cocotb.task import resume
from cocotb.triggers import ClockCycles, FallingEdge, ReadOnly, RisingEdge

from ..isa import Csr
from .wbregs import wb_access

if TYPE_CHECKING:
    from ..design import Design

__all__ = ["npu_registers", "NativeRegisters", "AxiLiteRegisters", "WishboneRegisters",
           "AxiMemory", "WishboneMemory", "HostRegisters", "HostMemory", "irq_waiter",
           "GoldenChecker", "pauses", "load_design"]


def pauses(probability: float, seed: int) -> Iterator[bool]:
    """A cocotbext-axi pause generator: pause in a cycle with ``probability``."""
    rng = random.Random(seed)
    while True:
        yield rng.random() < probability


# -- registers ---------------------------------------------------------------------------------

class NativeRegisters:
    """The native register port: ``csr_addr``, ``csr_we``, ``csr_wdata``, ``csr_rdata``."""

    def __init__(self, dut, clock):
        self.dut, self.clock = dut, clock
        dut.csr_we.value = 0
        dut.csr_addr.value = 0
        dut.csr_wdata.value = 0

    async def write(self, reg: Csr, value: int) -> None:
        self.dut.csr_addr.value = int(reg)
        self.dut.csr_wdata.value = value
        self.dut.csr_we.value = 1
        await RisingEdge(self.clock)
        self.dut.csr_we.value = 0

    async def read(self, reg: Csr) -> int:
        self.dut.csr_addr.value = int(reg)
        await FallingEdge(self.clock)        # combinational read data: settled mid-cycle
        return int(self.dut.csr_rdata.value)


class AxiLiteRegisters:
    """The AXI4-Lite register slave ``s_axil_*`` of ``dut`` (driven cycle by cycle only while
    an access lasts: :mod:`codesign.sim.axil`)."""

    def __init__(self, dut):
        from .axil import axil_init
        self.dut = dut
        axil_init(dut)

    async def write(self, reg: Csr, value: int) -> None:
        from .axil import axil_write
        await axil_write(self.dut, int(reg), value)

    async def read(self, reg: Csr) -> int:
        from .axil import axil_read
        return await axil_read(self.dut, int(reg))


class WishboneRegisters:
    """The Wishbone register slave ``s_wb_*`` of ``dut`` (:mod:`codesign.sim.wbregs`), in
    classic or pipelined cycles."""

    def __init__(self, dut, classic: bool = False):
        self.dut, self.classic = dut, classic
        for name in ("cyc", "stb", "we", "adr", "dat_w"):
            getattr(dut, f"s_wb_{name}").value = 0
        dut.s_wb_sel.value = 0xF

    async def write(self, reg: Csr, value: int) -> None:
        await wb_access(self.dut, int(reg), value, classic=self.classic)

    async def read(self, reg: Csr) -> int:
        return await wb_access(self.dut, int(reg), classic=self.classic)


def npu_registers(dut, bus: str, clock=None, *, classic: bool = False):
    """The registers of ``dut``'s NPU (``npu_top`` itself, or a testbench exposing its register
    port under the same names, with ``clk``) for bus form ``bus``."""
    if bus == "native":
        return NativeRegisters(dut, clock if clock is not None else dut.clk)
    if bus == "axi4":
        return AxiLiteRegisters(dut)
    if bus == "wishbone":
        return WishboneRegisters(dut, classic)
    raise ValueError(f"unknown bus {bus!r}")


# -- memories ----------------------------------------------------------------------------------

class AxiMemory:
    """Memory on the NPU's AXI4 master ``<prefix>_*``: cocotbext-axi's AxiSlave (which checks
    bursts against the 4 KiB rule) in front of a byte array, with a random read latency of
    ``latency`` = (min, max) cycles before every read that does not continue the previous
    one, and random pauses (``stall``: probability per cycle) on all five channels."""

    def __init__(self, dut, clock, reset, *, size: int, prefix: str = "m_axi",
                 latency: tuple[int, int] = (0, 0), stall: float = 0.0, seed: int = 0):
        from cocotbext.axi import AxiBus, AxiSlave

        # cocotbext-axi 0.1.28 still calls cocotb 2's deprecated setimmediatevalue (at reset,
        # too): not ours to fix, and under PYTHONWARNINGS=error it would end the test.
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")
        self.data = bytearray(size)
        self.clock, self.latency, self.rng = clock, latency, random.Random(seed)
        self._next_read = None
        self.slave = AxiSlave(AxiBus.from_prefix(dut, prefix), clock, reset, target=self)
        if stall:
            channels = (self.slave.read_if.ar_channel, self.slave.read_if.r_channel,
                        self.slave.write_if.aw_channel, self.slave.write_if.w_channel,
                        self.slave.write_if.b_channel)
            for k, channel in enumerate(channels):
                channel.set_pause_generator(pauses(stall, seed * 8 + k))

    # The AxiSlave's target interface (awaited once per beat).
    async def read(self, address: int, length: int) -> bytes:
        if address != self._next_read:
            wait = self.rng.randint(*self.latency)
            if wait:
                await ClockCycles(self.clock, wait)
        self._next_read = address + length
        return bytes(self.data[address:address + length])

    async def write(self, address: int, data: bytes, **kwargs) -> None:
        self.data[address:address + len(data)] = data

    # The host's view (no simulated time).
    def store(self, address: int, data: bytes) -> None:
        self.data[address:address + len(data)] = data

    def load(self, address: int, length: int) -> bytes:
        return bytes(self.data[address:address + length])


class WishboneMemory:
    """A Wishbone B4 pipelined slave memory on the NPU's master ``<prefix>_*``: ``stall``
    raised at random, each request acknowledged in order ``latency`` = (min, max) cycles after
    it is taken (classic masters work too: they wait for each acknowledge)."""

    def __init__(self, dut, clock, *, size: int, prefix: str = "m_wb", bus_bytes: int,
                 latency: tuple[int, int] = (1, 1), stall: float = 0.0, seed: int = 0):
        import cocotb
        self.data = bytearray(size)
        self.bb = bus_bytes
        self.clock = clock
        self.s = {name: getattr(dut, f"{prefix}_{name}")
                  for name in ("adr", "dat_w", "dat_r", "sel", "cyc", "stb", "we", "ack",
                               "stall", "err")}
        self.latency, self.stall, self.rng = latency, stall, random.Random(seed)
        self.s["ack"].value = 0
        self.s["stall"].value = 0
        self.s["err"].value = 0
        self.s["dat_r"].value = 0
        self._task = cocotb.start_soon(self._serve())

    def store(self, address: int, data: bytes) -> None:
        self.data[address:address + len(data)] = data

    def load(self, address: int, length: int) -> bytes:
        return bytes(self.data[address:address + length])

    async def _serve(self) -> None:
        s, bb = self.s, self.bb
        pending: list[tuple[int, int]] = []        # (due cycle, read data or None for a write)
        cycle = 0
        while True:
            stalled = self.rng.random() < self.stall
            s["stall"].value = int(stalled)
            due = pending[0] if pending and pending[0][0] <= cycle else None
            s["ack"].value = int(due is not None)
            if due is not None:
                s["dat_r"].value = due[1]
            await RisingEdge(self.clock)
            await ReadOnly()
            if due is not None:
                pending.pop(0)
            if int(s["cyc"].value) and int(s["stb"].value) and not stalled:
                addr = int(s["adr"].value) * bb
                value = 0
                if int(s["we"].value):
                    self.data[addr:addr + bb] = int(s["dat_w"].value).to_bytes(bb, "little")
                else:
                    value = int.from_bytes(self.data[addr:addr + bb], "little")
                wait = max(1, self.rng.randint(*self.latency))
                last = pending[-1][0] if pending else cycle
                pending.append((max(cycle + wait, last + 1), value))
            await FallingEdge(self.clock)
            cycle += 1


# -- the driver and the checker -------------------------------------------------------------------

class HostRegisters:
    """The NPU's registers as a host driver sees them — blocking ``read(offset)`` and
    ``write(offset, value)`` at byte offsets — for a driver (the C driver through
    :mod:`codesign.cshim`, or :class:`codesign.mmio.Npu`) that runs in a thread of cocotb's
    ``bridge``: each access runs on the simulated register port (``resume``)."""

    def __init__(self, registers):
        self.registers = registers

    def read(self, offset: int) -> int:
        return resume(self.registers.read)(Csr(offset // 4))

    def write(self, offset: int, value: int) -> None:
        resume(self.registers.write)(Csr(offset // 4), value)


class HostMemory:
    """The memory as a host driver sees it: offsets from ``base`` (the NPU's BASE), read and
    written directly (a CPU's stores take no NPU bus time)."""

    def __init__(self, memory, base: int):
        self.memory, self.base = memory, base

    def read(self, offset: int, length: int) -> bytes:
        return self.memory.load(self.base + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.memory.store(self.base + offset, bytes(data))


def irq_waiter(irq):
    """A host driver's interrupt wait for a bridged thread: blocks until ``irq`` is high (now
    or at its next rising edge) and says whether it is (``codesign.mmio.Npu.wait_irq``'s and
    the C driver's ``wait`` hook)."""
    async def wait() -> bool:
        if not irq.value:
            await RisingEdge(irq)
        return bool(irq.value)
    return resume(wait)


class GoldenChecker:
    """The golden model (:mod:`codesign.reference`) of a design, as a scoreboard."""

    def __init__(self, design: Design):
        self.design = design

    def expected(self, inputs: list[np.ndarray]) -> list[np.ndarray]:
        from ..reference import run
        values = run(self.design.graph, inputs)
        return [values[b.tensor.name] for b in self.design.graph.outputs]

    def check(self, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> None:
        """Raise AssertionError naming the output and the count of differing elements."""
        for binding, got, want in zip(self.design.graph.outputs, outputs,
                                      self.expected(inputs), strict=True):
            bad = int(np.count_nonzero(np.asarray(got, np.int64) != np.asarray(want, np.int64)))
            if bad:
                raise AssertionError(f"output {binding.tensor.name}: {bad} of {got.size} "
                                     f"elements differ from the golden model")


def load_design(outdir: str | Path) -> Design:
    """The design directory ``outdir`` (checked, as ``codesign simulate`` checks it)."""
    from ..design import Design
    return Design(Path(outdir))
