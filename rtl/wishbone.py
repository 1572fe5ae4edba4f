"""Wishbone B4 wrappers around the NPU core (docs/bus-wishbone.md).

:class:`WishboneMaster` turns the core's memory interface (valid/ready read and write burst
commands and beats, :mod:`codesign.rtl.membus`) into a Wishbone B4 master,
pipelined or classic; :class:`WishboneRegs` turns a Wishbone slave access into one cycle of the
core's register port. Signal names follow LiteX (``adr`` is a word address, ``dat_w``/``dat_r``,
``cti``/``bte``), prefixed ``m_wb_`` and ``s_wb_`` so that both ports sit on one Verilog module.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out

from codesign.isa import HwConfig

from .membus import mem_slave
from .ports import HwComponent

__all__ = ["WishboneMaster", "WishboneRegs", "wishbone_port", "CTI_INCR",
           "CTI_END"]

#: Cycle type identifier of every beat of a burst but its last (incrementing burst).
CTI_INCR = 0b010
#: Cycle type identifier of the last beat of a burst (end of burst).
CTI_END = 0b111


def wishbone_port(prefix: str, data_bytes: int, adr_bits: int) -> dict:
    """A Wishbone B4 master port with LiteX signal names (``Out`` = master drives it).

    ``adr`` is a word address; ``sel`` has one bit per byte of ``dat_w``.
    """
    return {
        f"{prefix}adr": Out(adr_bits), f"{prefix}dat_w": Out(8 * data_bytes),
        f"{prefix}dat_r": In(8 * data_bytes), f"{prefix}sel": Out(data_bytes),
        f"{prefix}cyc": Out(1), f"{prefix}stb": Out(1), f"{prefix}ack": In(1),
        f"{prefix}we": Out(1), f"{prefix}cti": Out(3), f"{prefix}bte": Out(2),
        f"{prefix}err": In(1), f"{prefix}stall": In(1),
    }


def _flipped(members: dict) -> dict:
    return {name: member.flip() for name, member in members.items()}


def _master_members(config: HwConfig) -> dict:
    lg = config.bus_bytes.bit_length() - 1
    return {
        **mem_slave(config),
        **wishbone_port("m_wb_", config.bus_bytes, 32 - lg),
        "bus_error": Out(1),
    }


class WishboneMaster(HwComponent):
    """The core's memory interface as a Wishbone B4 master.

    Parameters
    ----------
    config : HwConfig
        ``bus_bytes`` fixes the data width (``m_wb_adr`` is the byte address over ``bus_bytes``,
        ``32 - log2(bus_bytes)`` bits), ``max_reads`` the read-data FIFO, ``wb_classic`` the
        cycle form.

    Notes
    -----
    A command is taken into a one-entry queue behind the burst being issued, so consecutive
    bursts follow each other without a gap. Each beat is one Wishbone request with its own
    address (``cti`` 010, 111 on a command's last beat, ``bte`` 0).

    *Pipelined* (default): a request is accepted in a cycle of ``stb & ~stall``; the next one
    follows in the next cycle. Requests stay outstanding until their ACK (or ERR); reads and
    writes are never outstanding together. Wishbone cannot hold read data back, so read data
    go into a FIFO of ``max_reads`` words that feeds ``rd_valid``/``rd_data``, and a read is
    requested only while the beats accepted and not yet taken by the core are fewer than
    ``max_reads``: the FIFO can never overflow, whatever the core does. ``cyc`` is high while
    a request is presented or outstanding.

    *Classic* (``wb_classic``): ``stb`` is held until the request's ACK, one request at a time;
    ``stall`` is ignored.

    ``wr_done`` pulses with the ACK of a write command's last beat. ERR ends a beat like ACK
    (a read's data are then whatever ``dat_r`` holds) and sets the sticky ``bus_error``.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, _master_members)

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self.config
        lg = c.bus_bytes.bit_length() - 1
        adr_bits = 32 - lg
        # Read data: Wishbone has no read backpressure. Buffered: block RAM of max_reads words
        # and an output register. Its depth counts the register, but a word moving from the
        # RAM to the register does not free the RAM's place in that cycle: only with depth
        # max_reads + 1 does it take every word while fewer than max_reads + 1 are held.
        m.submodules.rd_fifo = rd_fifo = fifo.SyncFIFOBuffered(width=8 * c.bus_bytes,
                                                               depth=c.max_reads + 1)
        # Write data: decouples the core's write beats (which may precede their command) from
        # the bus, and keeps wr_ready free of a combinational path from m_wb_stall.
        m.submodules.wr_fifo = wr_fifo = fifo.SyncFIFO(width=8 * c.bus_bytes, depth=2)

        cur = _Burst(adr_bits, "cur")
        pend = _Burst(adr_bits, "pend")
        # Read beats accepted on the bus and not yet taken by the core: FIFO room reserved.
        reserved = Signal(range(c.max_reads + 1))

        stb, accept = Signal(), Signal()
        room = reserved < c.max_reads
        m.d.comb += [
            self.m_wb_adr.eq(cur.adr),
            self.m_wb_we.eq(cur.we),
            self.m_wb_dat_w.eq(wr_fifo.r_data),
            self.m_wb_sel.eq(-1),
            self.m_wb_bte.eq(0),
            self.m_wb_stb.eq(stb),
            self.m_wb_cti.eq(CTI_INCR),
        ]
        with m.If(cur.left == 0):
            m.d.comb += self.m_wb_cti.eq(CTI_END)
        ready_beat = cur.valid & (cur.we & wr_fifo.r_rdy | ~cur.we & room)

        if c.wb_classic:
            m.d.comb += [
                stb.eq(ready_beat),
                self.m_wb_cyc.eq(stb),
                accept.eq(stb & (self.m_wb_ack | self.m_wb_err)),
                self.wr_done.eq(accept & cur.we & (cur.left == 0)),
                rd_fifo.w_en.eq(accept & ~cur.we),
            ]
        else:
            self._pipelined(m, cur, ready_beat, stb, accept, rd_fifo)

        m.d.comb += [
            rd_fifo.w_data.eq(self.m_wb_dat_r),
            self.rd_valid.eq(rd_fifo.r_rdy),
            self.rd_data.eq(rd_fifo.r_data),
            rd_fifo.r_en.eq(self.rd_ready),
            wr_fifo.w_en.eq(self.wr_valid),
            wr_fifo.w_data.eq(self.wr_data),
            self.wr_ready.eq(wr_fifo.w_rdy),
            wr_fifo.r_en.eq(accept & cur.we),
        ]
        taken = rd_fifo.r_rdy & self.rd_ready
        m.d.sync += reserved.eq(reserved + (accept & ~cur.we) - taken)
        with m.If(self.m_wb_cyc & self.m_wb_err):
            m.d.sync += self.bus_error.eq(1)
        self._commands(m, cur, pend, accept, lg)
        return m

    def _pipelined(self, m, cur, ready_beat, stb, accept, rd_fifo) -> None:
        """Requests and their ACKs in pipelined mode: a FIFO of the outstanding requests'
        (we, last beat of a command) tells what each ACK ends."""
        c = self.config
        m.submodules.pending = pending = fifo.SyncFIFO(width=2, depth=c.max_reads)
        head_we, head_last = pending.r_data[0], pending.r_data[1]
        beat_end = Signal()
        # Reads and writes are not outstanding together: a slave may order them freely.
        same_kind = ~pending.r_rdy | (head_we == cur.we)
        m.d.comb += [
            stb.eq(ready_beat & pending.w_rdy & same_kind),
            self.m_wb_cyc.eq(stb | pending.r_rdy),
            accept.eq(stb & ~self.m_wb_stall),
            pending.w_en.eq(accept),
            pending.w_data.eq(cur.we | (cur.left == 0) << 1),
            beat_end.eq(pending.r_rdy & (self.m_wb_ack | self.m_wb_err)),
            pending.r_en.eq(beat_end),
            self.wr_done.eq(beat_end & head_we & head_last),
            rd_fifo.w_en.eq(beat_end & ~head_we),
        ]

    def _commands(self, m, cur, pend, accept, lg) -> None:
        """The burst being issued (``cur``) and the one queued behind it (``pend``)."""
        new_valid = Signal()
        new = _Burst(cur.adr.shape().width, "new")
        m.d.comb += [
            self.rd_cmd_ready.eq(~pend.valid),
            self.wr_cmd_ready.eq(~pend.valid & ~self.rd_cmd_valid),
            new_valid.eq(~pend.valid & (self.rd_cmd_valid | self.wr_cmd_valid)),
            new.valid.eq(new_valid),
            new.we.eq(~self.rd_cmd_valid),
            new.adr.eq(self.rd_cmd_addr[lg:]),
            new.left.eq(self.rd_cmd_len),
        ]
        with m.If(~self.rd_cmd_valid):
            m.d.comb += [new.adr.eq(self.wr_cmd_addr[lg:]), new.left.eq(self.wr_cmd_len)]

        with m.If(~cur.valid | accept & (cur.left == 0)):
            with m.If(pend.valid):
                m.d.sync += cur.load(pend)
                m.d.sync += pend.load(new)
            with m.Else():
                m.d.sync += cur.load(new)
        with m.Else():
            with m.If(accept):
                m.d.sync += [cur.adr.eq(cur.adr + 1), cur.left.eq(cur.left - 1)]
            with m.If(new_valid):
                m.d.sync += pend.load(new)


class _Burst:
    """Registers of one burst command: word address of its next beat, beats left - 1."""

    def __init__(self, adr_bits: int, name: str):
        self.valid = Signal(name=f"{name}_valid")
        self.we = Signal(name=f"{name}_we")
        self.adr = Signal(adr_bits, name=f"{name}_adr")
        self.left = Signal(8, name=f"{name}_left")

    def load(self, other: _Burst) -> list:
        return [self.valid.eq(other.valid), self.we.eq(other.we), self.adr.eq(other.adr),
                self.left.eq(other.left)]


class WishboneRegs(wiring.Component):
    """A 32-bit Wishbone B4 slave (``s_wb_*``) onto the core's register port.

    Works for classic and pipelined masters: a request (``cyc & stb``, no ACK pending) drives
    the register port for that cycle (``csr_we`` for a write, ``csr_re`` for a read) and is
    ACKed in the next cycle with the read data registered; ``stall`` is high while the ACK is
    pending, so a pipelined master issues at most one request per two cycles. ``adr`` is a word
    address; its low three bits select the register (the interconnect decodes the rest).
    Writes are whole words (``sel`` is ignored); ``err`` is never raised.
    """

    def __init__(self):
        super().__init__({
            **_flipped(wishbone_port("s_wb_", 4, 30)),
            "csr_addr": Out(3), "csr_we": Out(1), "csr_wdata": Out(32), "csr_re": Out(1),
            "csr_rdata": In(32),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        request = self.s_wb_cyc & self.s_wb_stb & ~self.s_wb_ack
        m.d.comb += [
            self.csr_addr.eq(self.s_wb_adr[:3]),
            self.csr_wdata.eq(self.s_wb_dat_w),
            self.csr_we.eq(request & self.s_wb_we),
            self.csr_re.eq(request & ~self.s_wb_we),
            self.s_wb_stall.eq(self.s_wb_ack),
            self.s_wb_err.eq(0),
        ]
        m.d.sync += self.s_wb_ack.eq(request)
        with m.If(request):
            m.d.sync += self.s_wb_dat_r.eq(self.csr_rdata)
        return m
