"""Controller: the host-visible CSR block, instruction fetch, decode and dispatch.

The host writes ``PROG_BASE`` and then ``CTRL.start``; the controller fetches the instruction at
``PROG_BASE`` (``config.insn_words`` external words, least significant word first), pulses the
``start`` of the engine its opcode names, waits for that engine's ``done``, fetches the next
instruction, and so on until ``END``, which raises ``done``.

Timing per instruction (``n = config.insn_words``): ``n`` cycles issuing fetch reads, one cycle for
the last read's data, one dispatch cycle in which the engine's ``start`` pulses, then the engine's
busy period; the next fetch starts the cycle after the engine's ``done``. So the overhead over the
engine's own busy cycles is ``n + 2`` cycles per instruction. The fetch uses the external memory
port only while no engine is busy, so the top can OR it with the DMA engine's port.

Opcodes that :class:`codesign.isa.Opcode` does not define stop the program like ``END`` (the
software model rejects them; the hardware must not hang on them).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib.wiring import In, Out

from codesign.isa import INSN_BITS, OPCODE_BITS, Csr, HwConfig, Opcode

from .ports import HwComponent, csr_port, ext_read

__all__ = ["Controller"]


class Controller(HwComponent):
    """CSR block + fetch/decode/dispatch.

    Parameters
    ----------
    config : HwConfig
        The NPU instance (bus width, hence words per instruction).

    Attributes
    ----------
    csr_addr, csr_we, csr_wdata, csr_rdata
        Host CSR port (:class:`codesign.isa.Csr` word addresses); ``csr_rdata`` is combinational.
    done : Out(1)
        CTRL.done: END was reached; stays high until the next start.
    busy : Out(1)
        CTRL.busy: from the cycle after the start write up to and including the END dispatch.
    mem_addr, mem_re, mem_rdata
        External memory read port for instruction fetch (0 while not fetching).
    insn : Out(INSN_BITS)
        The current instruction, valid from its dispatch until the engine's ``done``.
    start_dma, start_matmul, start_requant, start_pool, start_eltwise : Out(1)
        One-cycle start pulse of each engine (LOAD and STORE both go to the DMA engine).
    engine_done : In(1)
        The OR of every engine's ``done`` (engines never run concurrently).
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **csr_port(),
            "done": Out(1),
            "busy": Out(1),
            **ext_read(c),
            "insn": Out(INSN_BITS),
            "start_dma": Out(1),
            "start_matmul": Out(1),
            "start_requant": Out(1),
            "start_pool": Out(1),
            "start_eltwise": Out(1),
            "engine_done": In(1),
        })

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        n = c.insn_words
        bus = 8 * c.bus_bytes

        prog_base = Signal(32)
        cycles = Signal(32)
        pc = Signal(c.ext_addr_bits)
        issued = Signal(range(n + 1))
        received = Signal(range(n + 1))
        data_valid = Signal()     # a fetch read was issued last cycle

        # -- CSRs ------------------------------------------------------------------------------
        with m.Switch(self.csr_addr):
            with m.Case(Csr.CTRL):
                m.d.comb += self.csr_rdata.eq(Cat(self.busy, self.done))
            with m.Case(Csr.PROG_BASE):
                m.d.comb += self.csr_rdata.eq(prog_base)
            with m.Case(Csr.CYCLES):
                m.d.comb += self.csr_rdata.eq(cycles)
        with m.If(self.csr_we & (self.csr_addr == Csr.PROG_BASE)):
            m.d.sync += prog_base.eq(self.csr_wdata)
        with m.If(self.busy):
            m.d.sync += cycles.eq(cycles + 1)
        start = Signal()
        m.d.comb += start.eq(self.csr_we & (self.csr_addr == Csr.CTRL) & self.csr_wdata[0]
                             & ~self.busy)

        # -- fetch read pipeline ---------------------------------------------------------------
        m.d.sync += data_valid.eq(self.mem_re)
        with m.If(data_valid):
            # Words arrive least significant first: shift them in from the top.
            m.d.sync += [
                self.insn.eq(Cat(self.insn[bus:], self.mem_rdata)),
                received.eq(received + 1),
            ]

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [
                        self.busy.eq(1),
                        self.done.eq(0),
                        cycles.eq(0),
                        pc.eq(prog_base),
                        issued.eq(0),
                        received.eq(0),
                    ]
                    m.next = "FETCH"
            with m.State("FETCH"):
                with m.If(issued != n):
                    m.d.comb += [
                        self.mem_re.eq(1),
                        self.mem_addr.eq(pc),
                    ]
                    m.d.sync += [
                        pc.eq(pc + 1),
                        issued.eq(issued + 1),
                    ]
                with m.If(data_valid & (received == n - 1)):
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                m.next = "WAIT"
                with m.Switch(self.insn[:OPCODE_BITS]):
                    with m.Case(Opcode.LOAD, Opcode.STORE):
                        m.d.comb += self.start_dma.eq(1)
                    with m.Case(Opcode.MATMUL):
                        m.d.comb += self.start_matmul.eq(1)
                    with m.Case(Opcode.REQUANT):
                        m.d.comb += self.start_requant.eq(1)
                    with m.Case(Opcode.POOL):
                        m.d.comb += self.start_pool.eq(1)
                    with m.Case(Opcode.ELTWISE):
                        m.d.comb += self.start_eltwise.eq(1)
                    with m.Default():   # END (or an undefined opcode)
                        m.d.sync += [
                            self.busy.eq(0),
                            self.done.eq(1),
                        ]
                        m.next = "IDLE"
            with m.State("WAIT"):
                with m.If(self.engine_done):
                    m.d.sync += [
                        issued.eq(0),
                        received.eq(0),
                    ]
                    m.next = "FETCH"

        return m
