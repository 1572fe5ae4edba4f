"""DMA engine: LOAD (external memory -> ACT/WGT/PRM) and STORE (ACT -> external memory).

Both directions are 2-D strided block copies of *slices* (``bus_bytes`` bytes each), see
:mod:`codesign.isa`::

    for i < rows, j < length:
        LOAD:  SP[mem].slice[sp_addr + i*sp_stride + j] = EXT[ext_addr + i*ext_stride + j]
        STORE: EXT[ext_addr + i*ext_stride + j]         = ACT.slice[sp_addr + i*sp_stride + j]

The engine is a two-stage pipeline. Stage 1 issues the read of the source (EXT for LOAD, ACT for
STORE) and advances the ``(i, j)`` counters; stage 2, one cycle later when the synchronous read
data arrives, issues the write of the destination. Steady state therefore moves one bus word per
cycle: an instruction moving ``N = rows*length`` slices is busy for ``N + 1`` cycles. A LOAD of
LUT tables (:data:`~codesign.isa.Mem.LUT`) moves one slice every ``bus_bytes`` cycles, as fast
as the LUT engine writes its byte-wide tables, and takes ``N * bus_bytes + 1``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib.wiring import Out

from codesign.isa import HwConfig, LoadStore, Mem, Opcode

from .lut import table_write
from .ports import HwComponent, engine_control, ext_port, scratchpad_read, scratchpad_write

__all__ = ["DmaEngine", "slice_addr_bits"]


def _log2(value: int) -> int:
    assert value > 0 and value & (value - 1) == 0, value
    return value.bit_length() - 1


def slice_addr_bits(config: HwConfig) -> int:
    """Width of the DMA engine's scratchpad slice addresses: just wide enough for the largest
    scratchpad (wrap-around arithmetic below that width is exact for every in-range address)."""
    c = config
    return max(c.addr_bits(c.depth(mem)) + _log2(c.slices(mem)) for mem in _targets(c))


def _targets(config: HwConfig) -> tuple[Mem, ...]:
    """The scratchpads a LOAD can write (the LUT tables only on an NPU with a LUT engine)."""
    return (Mem.ACT, Mem.WGT, Mem.PRM) + ((Mem.LUT,) if config.lut_tables else ())


class DmaEngine(HwComponent):
    """LOAD / STORE engine (``insn.opcode`` selects the direction).

    Parameters
    ----------
    config : HwConfig
        The NPU instance; fixes the bus width and the scratchpad geometries.

    Attributes
    ----------
    start, insn, busy, done
        Engine interface (:func:`~codesign.rtl.ports.engine_control`) for an
        ``isa.LoadStore``; the last write is issued in the ``done`` cycle.
    mem_addr, mem_re, mem_rdata, mem_we, mem_wdata
        External memory port (read latency 1).
    act_raddr, act_ren, act_rdata
        ACT read port (STORE).
    act_waddr, act_wen, act_wdata
        ACT write port with byte enables (LOAD).
    wgt_waddr, wgt_wen, wgt_wdata
        WGT write port with slice enables (LOAD).
    prm_waddr, prm_wen, prm_wdata
        PRM write port with slice enables (LOAD).
    lut_waddr, lut_wen, lut_wdata
        LUT table write port, one slice per word (LOAD; only with ``lut_tables > 0``).

    All memory-port outputs are 0 while ``busy`` is low.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(LoadStore),
            **ext_port(c),
            **scratchpad_read(c, "act"),
            **scratchpad_write(c, "act"),
            **scratchpad_write(c, "wgt"),
            **scratchpad_write(c, "prm"),
            **(table_write(c, Out) if c.lut_tables else {}),
        })

    def _split(self, mem: Mem, slice_addr):
        """(word address, slice index or None) of a slice address in scratchpad ``mem``."""
        c = self.config
        sbits = _log2(c.slices(mem))
        word = slice_addr[sbits:sbits + c.addr_bits(c.depth(mem))]
        return word, (slice_addr[:sbits] if sbits else None)

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        bus = 8 * c.bus_bytes

        sp_width = slice_addr_bits(c)
        ext_width = c.ext_addr_bits

        # Latched instruction fields.
        is_store = Signal(name="is_store")
        mem_sel = Signal(Mem, name="mem_sel")
        sp_stride = Signal(sp_width)
        ext_stride = Signal(ext_width)
        rows = Signal(LoadStore.members["rows"])        # rows - 1
        length = Signal(LoadStore.members["length"])    # length - 1

        # Stage 1: loop counters and row bases.
        running = Signal()
        i = Signal.like(rows, name="i")
        j = Signal.like(length, name="j")
        sp_row = Signal(sp_width)
        ext_row = Signal(ext_width)
        sp_cur = Signal(sp_width)
        ext_cur = Signal(ext_width)
        # The current addresses are row base + j; a deep pipeline keeps them in registers of
        # their own (an adder between a register and the shared ACT read port, fanned out to
        # every block RAM of the scratchpad, limited the NPU's fmax on the ECP5).
        deep = c.deep_pipeline
        if not deep:
            m.d.comb += [
                sp_cur.eq(sp_row + j),
                ext_cur.eq(ext_row + j),
            ]

        # Stage 2: the transfer whose read was issued in the previous cycle.
        s2_valid = Signal()
        s2_last = Signal()
        s2_sp = Signal(sp_width)
        s2_ext = Signal(ext_width)
        empty = Signal()   # an instruction that moves nothing: done the cycle after start

        # A LOAD of LUT tables moves a slice every bus_bytes cycles (the LUT engine writes its
        # byte-wide table copies one entry per cycle, rtl/lut.py) and is done when the engine
        # writes the last slice's last byte, bus_bytes - 1 cycles after the slice's port write.
        paced = bool(c.lut_tables) and c.bus_bytes > 1
        lut_load = Signal(name="lut_load")
        pace = Signal(range(max(2, c.bus_bytes)), name="pace")
        tail = Signal(range(max(2, c.bus_bytes)), name="tail")
        advance = Signal(name="advance")        # stage 1 moves a slice this cycle
        if paced:
            m.d.comb += [
                advance.eq(running & (pace == 0)),
                self.done.eq((s2_valid & s2_last & ~lut_load) | empty | (tail == 1)),
            ]
            with m.If(running & lut_load):
                m.d.sync += pace.eq(Mux(pace == c.bus_bytes - 1, 0, pace + 1))
            with m.If(s2_valid & s2_last & lut_load):
                m.d.sync += tail.eq(c.bus_bytes - 1)
            with m.Elif(tail != 0):
                m.d.sync += tail.eq(tail - 1)
        else:
            m.d.comb += [advance.eq(running), self.done.eq((s2_valid & s2_last) | empty)]
        m.d.sync += empty.eq(0)
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)

        # While idle, the registers follow the instruction bus (it is valid in the start cycle,
        # and garbage until then): the start pulse, late in its cycle (the controller's dispatch
        # decision), then only sets the few state bits below.
        insn = self.insn
        with m.If(~self.busy):
            m.d.sync += [
                is_store.eq(insn.opcode == Opcode.STORE),
                mem_sel.eq(insn.mem),
                sp_stride.eq(insn.sp_stride),
                ext_stride.eq(insn.ext_stride),
                # The last indices (an empty instruction never runs the loop): the counters
                # compare with registers, not through a decrement.
                rows.eq(insn.rows - 1),
                length.eq(insn.length - 1),
                i.eq(0),
                j.eq(0),
                sp_row.eq(insn.sp_addr),
                ext_row.eq(insn.ext_addr),
                lut_load.eq((insn.opcode == Opcode.LOAD) & (insn.mem == Mem.LUT)),
                pace.eq(0),
            ]
            if deep:
                m.d.sync += [sp_cur.eq(insn.sp_addr), ext_cur.eq(insn.ext_addr)]
        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
            with m.If((insn.rows == 0) | (insn.length == 0)):
                m.d.sync += empty.eq(1)
            with m.Else():
                m.d.sync += running.eq(1)
        if deep:
            # A STORE's ACT reads come from port registers set a cycle ahead (cycle-neutral):
            # the enable and address logic, then the merge of all engines' ports, then the
            # fanout to every block RAM of ACT were too long a route for one cycle.
            act_ren = Signal(name="act_ren_port")
            act_raddr = Signal.like(self.act_raddr, name="act_raddr_port")
            m.d.comb += [self.act_ren.eq(act_ren), self.act_raddr.eq(act_raddr)]
            m.d.sync += [act_ren.eq(0), act_raddr.eq(0)]

            def read_next(slice_addr):
                m.d.sync += [act_ren.eq(1), act_raddr.eq(self._split(Mem.ACT, slice_addr)[0])]

            with m.If(self.start & (insn.opcode == Opcode.STORE) & (insn.rows != 0)
                      & (insn.length != 0)):
                read_next(insn.sp_addr)

        # -- stage 1: issue the source read and advance (i, j) ---------------------------------
        last_j = Signal()
        last_i = Signal()
        m.d.comb += [
            last_j.eq(j == length),
            last_i.eq(i == rows),
        ]
        m.d.sync += s2_valid.eq(advance)
        with m.If(advance):
            m.d.sync += [
                s2_sp.eq(sp_cur),
                s2_ext.eq(ext_cur),
                s2_last.eq(last_i & last_j),
            ]
            with m.If(is_store):
                if deep:
                    with m.If(~(last_i & last_j)):
                        read_next(Mux(last_j, sp_row + sp_stride, sp_cur + 1))
                else:
                    word, _ = self._split(Mem.ACT, sp_cur)
                    m.d.comb += [
                        self.act_ren.eq(1),
                        self.act_raddr.eq(word),
                    ]
            with m.Else():
                m.d.comb += [
                    self.mem_re.eq(1),
                    self.mem_addr.eq(ext_cur),
                ]
            with m.If(last_j):
                m.d.sync += [
                    j.eq(0),
                    i.eq(i + 1),
                    sp_row.eq(sp_row + sp_stride),
                    ext_row.eq(ext_row + ext_stride),
                ]
                if deep:
                    m.d.sync += [sp_cur.eq(sp_row + sp_stride), ext_cur.eq(ext_row + ext_stride)]
                with m.If(last_i):
                    m.d.sync += running.eq(0)
            with m.Else():
                m.d.sync += j.eq(j + 1)
                if deep:
                    m.d.sync += [sp_cur.eq(sp_cur + 1), ext_cur.eq(ext_cur + 1)]

        # -- stage 2: issue the destination write ----------------------------------------------
        with m.If(s2_valid & is_store):
            _, sl = self._split(Mem.ACT, s2_sp)
            data = self.act_rdata if sl is None else self.act_rdata.word_select(sl, bus)
            m.d.comb += [
                self.mem_we.eq(1),
                self.mem_addr.eq(s2_ext),
                self.mem_wdata.eq(data),
            ]
        # A LOAD's scratchpad write address and enables are computed in stage 1 and registered,
        # so that the write ports (shared with the other engines, fanned out to every block RAM
        # of the scratchpad) are driven straight from flip-flops; only the data, which arrives
        # from EXT in stage 2, passes a gate (by a registered valid: ports are 0 when unused).
        targets = {
            Mem.ACT: (self.act_waddr, self.act_wen, self.act_wdata, c.bus_bytes),
            Mem.WGT: (self.wgt_waddr, self.wgt_wen, self.wgt_wdata, 1),
            Mem.PRM: (self.prm_waddr, self.prm_wen, self.prm_wdata, 1),
        }
        if c.lut_tables:    # the LUT engine's tables: one slice per word
            targets[Mem.LUT] = (self.lut_waddr, self.lut_wen, self.lut_wdata, 1)
        for mem, (waddr, wen, wdata, per_slice) in targets.items():
            name = mem.name.lower()
            s2_waddr = Signal.like(waddr, name=f"s2_{name}_waddr")
            s2_wen = Signal.like(wen, name=f"s2_{name}_wen")
            s2_write = Signal(name=f"s2_{name}_write")
            word, sl = self._split(mem, sp_cur)
            # Every slice of the word carries the bus word; the enables pick one.
            enables = [Const(1, 1) if sl is None else sl == s for s in range(c.slices(mem))]
            m.d.sync += [s2_waddr.eq(0), s2_wen.eq(0), s2_write.eq(0)]
            with m.If(advance & ~is_store & (mem_sel == mem)):
                m.d.sync += [
                    s2_waddr.eq(word),
                    s2_wen.eq(Cat(*(en for en in enables for _ in range(per_slice)))),
                    s2_write.eq(1),
                ]
            m.d.comb += [
                waddr.eq(s2_waddr),
                wen.eq(s2_wen),
                wdata.eq(Mux(s2_write, Cat(*([self.mem_rdata] * c.slices(mem))), 0)),
            ]

        return m
