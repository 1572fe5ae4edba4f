"""LUT engine: every 8-bit lane of ACT words mapped through a 256-entry table, ACT → ACT.

Semantics (:mod:`codesign.isa`): for ``i < count`` and every lane ``l < act_bytes``::

    byte(ACT[dst_base + i], l) = LUTMEM[table*256 + byte(ACT[src_base + i], l)]

It is an engine of its own (not a mode of ELTWISE or POOL): it moves whole ACT words, one per
cycle, at the lane rate of the array, where those engines read one lane group into ACC.

The tables live in the engine: ``act_bytes`` copies of the table scratchpad (``lut_tables`` ×
256 bytes), one per lane, so that every lane looks up its byte in the same cycle. Each copy is
byte-wide (``lut_tables * 256`` deep: one block RAM per lane for up to 2 tables on an iCE40, 8 on
an ECP5; a copy as wide as a DMA slice took 2-4 times the blocks). The DMA engine writes all
copies at once through the ``lut_w*`` inputs (a LOAD to :data:`codesign.isa.Mem.LUT`): a slice
of ``bus_bytes`` entries every ``bus_bytes`` cycles, entry ``k`` of the slice written ``k``
cycles after the slice (rtl/dma.py paces the LOAD accordingly). Schedule (cycle 0 =
``start``)::

    1 .. n      read ACT[src_base + i]
    +1          register the read word (block RAM read data feeds only a register)
    +2          each lane reads its table copy at table*256 + byte
    +3          register the output word (the entries)
    +4          write ACT[dst_base + i], all bytes; ``done`` with the last write

so a LUT of ``n = count`` words takes ``n + 4`` cycles (1 if ``count = 0``), in every
configuration: the ACT ports are driven by registers already. In place (``dst_base =
src_base``) is safe: word ``i`` is written four cycles after it is read, and words are read in
order, so no word is written before its read.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In

from codesign import isa

from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["LutEngine", "table_write"]


def table_write(config: isa.HwConfig, flow=In) -> dict:
    """The table write port (``lut_waddr``, ``lut_wen``, ``lut_wdata``): one slice per word.

    ``flow`` is ``In`` for the LUT engine (it owns the tables) and ``Out`` for the DMA engine.
    """
    c = config
    return {
        "lut_waddr": flow(c.addr_bits(c.lut_depth)),
        "lut_wen": flow(1),
        "lut_wdata": flow(8 * c.bus_bytes),
    }


class LutEngine(HwComponent):
    """Executes LUT (see :mod:`codesign.isa`); only for ``config.lut_tables > 0``.

    Parameters
    ----------
    config : HwConfig
        The NPU instance.

    Attributes
    ----------
    start, insn, busy, done
        Engine interface (:func:`~codesign.rtl.ports.engine_control`) for an ``isa.Lut``; the
        last ACT word is written in the ``done`` cycle.
    act_raddr, act_ren, act_rdata
        ACT read port.
    act_waddr, act_wen, act_wdata
        ACT write port (all byte enables together).
    lut_waddr, lut_wen, lut_wdata
        Table write port (inputs, from the DMA engine): writes every lane's copy.
    tables : list of Memory
        The per-lane table copies (exposed for testbenches).

    All memory-port outputs are 0 while ``busy`` is low.
    """

    def __init__(self, config: isa.HwConfig):
        if config.lut_tables < 1:
            raise ValueError("a LUT engine needs lut_tables >= 1")
        super().__init__(config, lambda c: {
            **engine_control(isa.Lut),
            **scratchpad_read(c, "act"),
            **scratchpad_write(c, "act"),
            **table_write(c),
        })
        c = self.config
        self.tables = [Memory(shape=8, depth=c.lut_tables * isa.LUT_ENTRIES, init=(),
                              attrs={"no_rw_check": 1}) for _ in range(c.act_bytes)]

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        aw = c.addr_bits(c.act_depth)

        busy = Signal()
        first = Signal()
        no_work = Signal()
        table = Signal.like(self.insn.table)
        m.d.comb += self.busy.eq(busy)

        reading = Signal()
        left = Signal(unsigned(isa.Lut.members["count"].width))
        src = Signal(aw)
        dst = Signal(aw)
        with m.If(~busy):
            m.d.sync += [
                no_work.eq(self.insn.count == 0),
                left.eq(self.insn.count),
                src.eq(self.insn.src_base),
                dst.eq(self.insn.dst_base),
                table.eq(self.insn.table),
            ]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), first.eq(1), reading.eq(self.insn.count != 0)]
        with m.If(first):
            m.d.sync += first.eq(0)
            with m.If(no_work):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)

        # ---- reads ---------------------------------------------------------------------------
        with m.If(reading):
            m.d.comb += [self.act_ren.eq(1), self.act_raddr.eq(src)]
            m.d.sync += [src.eq(src + 1), left.eq(left - 1)]
            with m.If(left == 1):
                m.d.sync += reading.eq(0)
        last_read = reading & (left == 1)

        # ---- stage 0: register the read word -------------------------------------------------
        r, last_r = Signal(), Signal()          # the read data is on the port
        m.d.sync += [r.eq(reading), last_r.eq(last_read)]
        v0, last0 = Signal(), Signal()          # ... and in the word register
        m.d.sync += [v0.eq(r), last0.eq(last_r)]
        word = Signal(data.ArrayLayout(unsigned(8), c.act_bytes), reset_less=True)
        m.d.sync += word.eq(self.act_rdata)

        # ---- table writes: a slice's entries one per cycle ----------------------------------
        waddr, wdata, wen = self._table_writes(m)

        # ---- stage 1: table reads ------------------------------------------------------------
        v1, last1 = Signal(), Signal()
        m.d.sync += [v1.eq(v0), last1.eq(last0)]
        entries = []
        for lane, mem in enumerate(self.tables):
            m.submodules[f"table_{lane}"] = mem
            wr = mem.write_port()
            m.d.comb += [wr.addr.eq(waddr), wr.en.eq(wen), wr.data.eq(wdata)]
            rd = mem.read_port()
            m.d.comb += [rd.en.eq(v0), rd.addr.eq(Cat(word[lane], table))]
            entries.append(rd.data)

        # ---- stage 2: pick the entries, register the output word -----------------------------
        v2, last2 = Signal(), Signal()
        out = Signal(8 * c.act_bytes, name="out_word")
        m.d.sync += [v2.eq(v1), last2.eq(last1), out.eq(Mux(v1, Cat(*entries), 0))]

        # ---- stage 3: write ACT --------------------------------------------------------------
        with m.If(v2):
            m.d.comb += [self.act_wen.eq(-1), self.act_waddr.eq(dst), self.act_wdata.eq(out)]
            m.d.sync += dst.eq(dst + 1)
            with m.If(last2):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        return m

    def _table_writes(self, m):
        """(address, entry, enable) of the table copies' write port: entry ``k`` of a slice
        written by the DMA engine in cycle ``t`` goes to entry ``slice*bus_bytes + k`` in cycle
        ``t + k`` (the DMA engine sends the next slice ``bus_bytes`` cycles later)."""
        c = self.config
        bb = c.bus_bytes
        aw = c.addr_bits(c.lut_tables * isa.LUT_ENTRIES)
        if bb == 1:
            return self.lut_waddr, self.lut_wdata, self.lut_wen
        sbits = (bb - 1).bit_length()
        pending = Signal(8 * (bb - 1), name="pending_entries")
        next_addr = Signal(aw, name="pending_addr")
        left = Signal(range(bb), name="pending_left")
        with m.If(self.lut_wen):
            m.d.sync += [pending.eq(self.lut_wdata[8:]), left.eq(bb - 1),
                         next_addr.eq(Cat(Const(1, sbits), self.lut_waddr))]
        with m.Elif(left != 0):
            m.d.sync += [pending.eq(pending >> 8), left.eq(left - 1), next_addr.eq(next_addr + 1)]
        waddr, wdata, wen = Signal(aw, name="table_waddr"), Signal(8, name="table_wdata"), Signal()
        m.d.comb += [
            wen.eq(self.lut_wen | (left != 0)),
            waddr.eq(Mux(self.lut_wen, Cat(Const(0, sbits), self.lut_waddr), next_addr)),
            wdata.eq(Mux(self.lut_wen, self.lut_wdata[:8], pending[:8])),
        ]
        return waddr, wdata, wen
