"""Controller: the host-visible CSR block, instruction fetch, decode and dispatch.

The host writes ``PROG_BASE`` and then ``CTRL.start``; the controller fetches the instruction at
``PROG_BASE`` (``config.insn_words`` external words, least significant word first), dispatches it
(pulses the ``start`` of the engine :data:`codesign.isa.ENGINE` names) as soon as the rules of
:mod:`codesign.isa` allow, and fetches the next one while the engines run, until ``END``, which
raises ``done`` once every engine is idle.

Dispatch rules: the instruction's engine is ready, none of its ports (:func:`isa.ports_used`) is
in use by a running engine, and, if its ``wait`` bit is set (or it is END), every engine is free.
An engine's ports and results are free from the cycle of its ``done`` on: its last memory access
is in that cycle, and a started engine touches memory from the cycle after its ``start`` at the
earliest. Most engines are ready once idle; the MATMUL engine takes the next instruction while
the previous one still streams (rtl/matmul.py).

Timing: the fetch of ``n = config.insn_words`` external words is one burst (or several, if
``max_reads`` or a 4 KiB boundary cuts it) on the core's memory interface
(:mod:`codesign.rtl.membus`); once the last word arrives the instruction waits in the dispatch
stage until it may start; the next fetch starts the cycle after the dispatch. The fetch uses the
memory interface only while the DMA engine is not busy (the top ORs the two). On the native port
(every beat answered the next cycle) that is ``n`` cycles of reads and one for the last word's
data, so a run of instructions that do not wait for each other costs ``n + 2`` cycles each when
their engines are faster than that, and hides the fetch otherwise.

Opcodes that :class:`codesign.isa.Opcode` does not define stop the program like ``END`` (the
software model rejects them; the hardware must not hang on them).
"""

from __future__ import annotations

import functools
import operator

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from codesign.isa import (
    ENGINE,
    ENGINES,
    INSN_BITS,
    LAYOUTS,
    OPCODE_BITS,
    Csr,
    HwConfig,
    Port,
    ports_used,
)

from .dma import BASE_BITS
from .membus import burst_beats, byte_address, mem_reader, read_burst_cap
from .ports import HwComponent, csr_port

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
    rd_cmd_*, rd_*
        The read half of the core's memory interface (instruction fetch; 0 while not
        fetching).
    base : In(BASE_BITS)
        The BASE register (the 4 KiB page of external word 0).
    insn : Out(INSN_BITS)
        The instruction being dispatched; valid in the cycle of its engine's ``start`` only.
    start_<engine> : Out(1)
        One-cycle start pulse of each engine of :data:`codesign.isa.ENGINES`.
    ready_<engine>, busy_<engine>, done_<engine> : In(1)
        Each engine's ``ready`` (takes a start now), ``busy`` and ``done``
        (docs/rtl-contract.md).
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **csr_port(),
            "done": Out(1),
            "busy": Out(1),
            **mem_reader(c),
            "base": In(BASE_BITS),
            "insn": Out(INSN_BITS),
            **{f"start_{e}": Out(1) for e in ENGINES},
            **{f"ready_{e}": In(1) for e in ENGINES},
            **{f"busy_{e}": In(1) for e in ENGINES},
            **{f"done_{e}": In(1) for e in ENGINES},
        })

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        n = c.insn_words
        bus = 8 * c.bus_bytes

        prog_base = Signal(32)
        cycles = Signal(32)
        # The next fetch burst, kept in registers (its address and beats are computed when the
        # burst before it is accepted, or the fetch starts): the burst arithmetic stays off the
        # path from the handshake to the bus.
        lg = c.bus_bytes.bit_length() - 1
        fetch_addr = Signal(32, name="fetch_addr")
        beats = Signal(range(n + 1), name="fetch_beats")
        first = Signal(32, name="fetch_first")          # the program's first word on the bus
        issued = Signal(range(n + 1))
        received = Signal(range(n + 1))

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

        m.d.comb += first.eq(byte_address(c, self.base, prog_base))

        # -- fetch read pipeline ---------------------------------------------------------------
        # Only fetch beats are taken here: the DMA engine's all arrive while it is busy.
        m.d.comb += self.rd_ready.eq(received != issued)
        arrives = self.rd_valid & self.rd_ready
        with m.If(arrives):
            # Words arrive least significant first: shift them in from the top.
            m.d.sync += [
                self.insn.eq(Cat(self.insn[bus:], self.rd_data)),
                received.eq(received + 1),
            ]

        # -- engines: free, and the ports they hold ------------------------------------------------
        # An engine takes a start when ready; its ports and results are free from its done cycle
        # on (done: every instruction it took is complete).
        ready = {e: getattr(self, f"ready_{e}") for e in ENGINES}
        free = {e: ~getattr(self, f"busy_{e}") | getattr(self, f"done_{e}") for e in ENGINES}
        all_free = functools.reduce(operator.and_, free.values())
        holds = {e: Signal(len(Port), name=f"ports_{e}") for e in ENGINES}

        # -- decode of the fetched instruction -------------------------------------------------
        opcode = self.insn[:OPCODE_BITS]
        wait = self.insn[OPCODE_BITS]
        ports = Signal(len(Port), name="insn_ports")     # the ports the instruction would use
        with m.Switch(opcode):
            for op in ENGINE:
                with m.Case(op):
                    m.d.comb += ports.eq(ports_used(op, LAYOUTS[op](self.insn[:LAYOUTS[op].size])))
        # Whether an engine holds one of those ports, from registers only; the engines' busy and
        # done come late in the cycle (done is the end of an engine's own logic), so they enter
        # the dispatch decision last: an engine blocks the instruction unless it is free.
        clash = {e: (holds[e] & ports).any() for e in ENGINES}
        blocks = {e: clash[e] & ~free[e] for e in ENGINES}
        may_start = Signal()
        with m.Switch(opcode):
            for op, engine in ENGINE.items():
                with m.Case(op):
                    # An engine's own next instruction may share its ports: the engine orders
                    # them.
                    others = Cat(*(blocks[e] for e in ENGINES if e != engine))
                    m.d.comb += may_start.eq(ready[engine] & ~others.any() & (~wait | all_free))

        with m.FSM(name="ctrl"):
            with m.State("IDLE"):
                with m.If(start):
                    m.d.sync += [
                        self.busy.eq(1),
                        self.done.eq(0),
                        cycles.eq(0),
                        fetch_addr.eq(first),
                        beats.eq(burst_beats(c, first, n, read_burst_cap(c))),
                        issued.eq(0),
                        received.eq(0),
                    ]
                    m.next = "FETCH"
            with m.State("FETCH"):
                # The DMA engine owns the memory interface while it is busy.
                # No more than max_reads beats outstanding (a burst of the words to come).
                after = Signal(range(c.max_reads + n + 1), name="fetch_after")
                m.d.comb += after.eq((issued - received) + beats)
                credit = (after <= c.max_reads) | (arrives & (after == c.max_reads + 1))
                with m.If((issued != n) & ~self.busy_dma & credit):
                    m.d.comb += [
                        self.rd_cmd_valid.eq(1),
                        self.rd_cmd_addr.eq(fetch_addr),
                        self.rd_cmd_len.eq(beats - 1),
                    ]
                    with m.If(self.rd_cmd_ready):
                        following = (fetch_addr + (beats << lg))[:32]
                        m.d.sync += [
                            fetch_addr.eq(following),
                            beats.eq(burst_beats(c, following, n - issued - beats,
                                                 read_burst_cap(c))),
                            issued.eq(issued + beats),
                        ]
                with m.If(arrives & (received == n - 1)):
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):
                with m.Switch(opcode):
                    for op, engine in ENGINE.items():
                        with m.Case(op):
                            with m.If(may_start):
                                m.d.comb += getattr(self, f"start_{engine}").eq(1)
                                # A pipelined engine holds the ports of all it runs.
                                m.d.sync += [
                                    holds[engine].eq(Mux(free[engine], ports,
                                                         holds[engine] | ports)),
                                    issued.eq(0),
                                    received.eq(0),
                                    beats.eq(burst_beats(c, fetch_addr, n,
                                                         read_burst_cap(c))),
                                ]
                                m.next = "FETCH"
                    with m.Default():   # END (or an undefined opcode): once all is done
                        with m.If(all_free):
                            m.d.sync += [
                                self.busy.eq(0),
                                self.done.eq(1),
                            ]
                            m.next = "IDLE"

        return m
