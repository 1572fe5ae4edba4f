"""AXI4 bus wrappers of the NPU core: a memory master and an AXI4-Lite register slave.

:class:`AxiMaster` turns the core's memory interface (``rd_cmd``/``rd``/``wr_cmd``/``wr``/
``wr_done``, docs/bus.md "AXI4") into an AXI4 master port ``m_axi_*``: every command becomes one
INCR burst of ID 0, beats of the full bus width. :class:`AxiLiteRegs` turns an AXI4-Lite slave
port ``s_axil_*`` into the core's register port (``csr_*``).

Both put registers on the AXI outputs without costing throughput: the AR, AW and W channels
each go through a two-entry skid buffer (:func:`skid_buffer`), whose ready towards the core is a
register too, so no combinational path runs from an AXI input to the core or back. Read data and
write responses pass straight through (R) or through one register (B).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from codesign.isa import CSR_ADDR_BITS, HwConfig

from .membus import mem_slave
from .ports import HwComponent

__all__ = ["AxiMaster", "AxiLiteRegs", "axi_master_port", "axil_slave_port",
           "skid_buffer", "AXI_BURST_INCR",
           "AXI_CACHE", "AXI_RESP_OKAY", "AXI_RESP_SLVERR", "AXIL_ADDR_BITS"]

#: AxBURST of an incrementing burst.
AXI_BURST_INCR = 0b01
#: AxCACHE: normal non-cacheable bufferable memory (the value AXI interconnects expect from a
#: DMA master; 0 would forbid an interconnect to merge or buffer the writes).
AXI_CACHE = 0b0011
#: xRESP codes.
AXI_RESP_OKAY = 0b00
AXI_RESP_SLVERR = 0b10
#: Address width of the AXI4-Lite register port: eight 32-bit registers.
AXIL_ADDR_BITS = 5
#: Write-command lengths the master remembers for the W channel (commands accepted whose beats
#: are not all sent yet); a STORE rarely has more than two bursts in flight.
_WLEN_DEPTH = 4


def axi_master_port(config: HwConfig) -> dict:
    """AXI4 master port ``m_axi_*`` (``Out`` = driven by the master), channels in the AXI
    specification's order: AW, W, B, AR, R. Part of the signature of :class:`AxiMaster` and of
    an AXI4 NPU's top."""
    width, ids = 8 * config.bus_bytes, config.axi_id_bits

    def address(ch: str) -> dict:
        return {
            f"m_axi_{ch}id": Out(ids), f"m_axi_{ch}addr": Out(32), f"m_axi_{ch}len": Out(8),
            f"m_axi_{ch}size": Out(3), f"m_axi_{ch}burst": Out(2), f"m_axi_{ch}lock": Out(1),
            f"m_axi_{ch}cache": Out(4), f"m_axi_{ch}prot": Out(3), f"m_axi_{ch}valid": Out(1),
            f"m_axi_{ch}ready": In(1),
        }

    return {
        **address("aw"),
        "m_axi_wdata": Out(width), "m_axi_wstrb": Out(width // 8), "m_axi_wlast": Out(1),
        "m_axi_wvalid": Out(1), "m_axi_wready": In(1),
        "m_axi_bid": In(ids), "m_axi_bresp": In(2), "m_axi_bvalid": In(1),
        "m_axi_bready": Out(1),
        **address("ar"),
        "m_axi_rid": In(ids), "m_axi_rdata": In(width), "m_axi_rresp": In(2),
        "m_axi_rlast": In(1), "m_axi_rvalid": In(1), "m_axi_rready": Out(1),
    }


def axil_slave_port() -> dict:
    """AXI4-Lite slave port ``s_axil_*`` (``In`` = driven by the master): 32-bit data,
    :data:`AXIL_ADDR_BITS`-bit byte address. Part of the signature of :class:`AxiLiteRegs` and
    of an AXI4 NPU's top."""
    return {
        "s_axil_awaddr": In(AXIL_ADDR_BITS), "s_axil_awprot": In(3),
        "s_axil_awvalid": In(1), "s_axil_awready": Out(1),
        "s_axil_wdata": In(32), "s_axil_wstrb": In(4), "s_axil_wvalid": In(1),
        "s_axil_wready": Out(1),
        "s_axil_bresp": Out(2), "s_axil_bvalid": Out(1), "s_axil_bready": In(1),
        "s_axil_araddr": In(AXIL_ADDR_BITS), "s_axil_arprot": In(3),
        "s_axil_arvalid": In(1), "s_axil_arready": Out(1),
        "s_axil_rdata": Out(32), "s_axil_rresp": Out(2), "s_axil_rvalid": Out(1),
        "s_axil_rready": In(1),
    }


def skid_buffer(m: Module, name: str, *, in_valid: Value, in_ready: Signal, in_data: Value,
                out_valid: Signal, out_ready: Value, out_data: Signal) -> None:
    """A two-entry register slice between a valid/ready source and sink, added to ``m``.

    ``out_valid``, ``out_data`` and ``in_ready`` are all registers (``in_ready`` is driven here),
    so the slice cuts every combinational path between its two sides, and it passes one item
    per cycle for as long as the sink takes them: the second entry holds the item that arrives
    in the cycle the sink first stalls (the source only sees the stall one cycle later).
    """
    skid_valid = Signal(name=f"{name}_skid_valid")
    skid_data = Signal(len(out_data), name=f"{name}_skid_data")
    m.d.comb += in_ready.eq(~skid_valid)
    with m.If(~out_valid | out_ready):
        with m.If(skid_valid):
            m.d.sync += [out_data.eq(skid_data), out_valid.eq(1), skid_valid.eq(0)]
        with m.Else():
            m.d.sync += [out_data.eq(in_data), out_valid.eq(in_valid)]
    with m.Elif(in_valid & ~skid_valid):
        m.d.sync += [skid_data.eq(in_data), skid_valid.eq(1)]


class AxiMaster(HwComponent):
    """AXI4 master for the core's memory interface.

    Parameters
    ----------
    config : HwConfig
        ``bus_bytes`` fixes the data width (``8 * bus_bytes`` bits, beats of AxSIZE
        ``log2(bus_bytes)``), ``axi_id_bits`` the ID width.

    Attributes
    ----------
    rd_cmd_*, rd_*, wr_cmd_*, wr_*, wr_done
        The core's memory interface (:func:`codesign.rtl.membus.mem_slave`): this side
        receives commands.
    m_axi_*
        AXI4 master port. Every command is one INCR burst of ID 0 (the core never crosses
        4 KiB); reads may be outstanding without limit here (the core bounds its beats by
        ``max_reads``); ``m_axi_rready`` is the core's ``rd_ready`` and ``m_axi_bready`` is 1.
    bus_error : Out(1)
        Set by any R beat or B response whose xRESP is not OKAY; stays set until reset (the
        core cannot retry, so the host must learn of it).

    A write beat is accepted (``wr_ready``) only once the command of its burst has been: WLAST
    needs the burst's length. The core must therefore never make ``wr_cmd_valid`` wait for
    ``wr_ready``.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **mem_slave(c),
            **axi_master_port(c),
            "bus_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        size = c.bus_bytes.bit_length() - 1
        for ch in ("ar", "aw"):
            m.d.comb += [
                getattr(self, f"m_axi_{ch}id").eq(0),
                getattr(self, f"m_axi_{ch}size").eq(size),
                getattr(self, f"m_axi_{ch}burst").eq(AXI_BURST_INCR),
                getattr(self, f"m_axi_{ch}lock").eq(0),
                getattr(self, f"m_axi_{ch}cache").eq(AXI_CACHE),
                getattr(self, f"m_axi_{ch}prot").eq(0),
            ]
        self._read(m)
        wlen = self._write_commands(m)
        self._write_data(m, wlen)
        self._responses(m)
        return m

    def _read(self, m: Module) -> None:
        """AR through a skid buffer; R straight to the core (the core has the backpressure)."""
        skid_buffer(m, "ar", in_valid=self.rd_cmd_valid, in_ready=self.rd_cmd_ready,
                    in_data=Cat(self.rd_cmd_addr, self.rd_cmd_len),
                    out_valid=self.m_axi_arvalid, out_ready=self.m_axi_arready,
                    out_data=Cat(self.m_axi_araddr, self.m_axi_arlen))
        m.d.comb += [
            self.rd_valid.eq(self.m_axi_rvalid),
            self.rd_data.eq(self.m_axi_rdata),
            self.m_axi_rready.eq(self.rd_ready),
        ]

    def _write_commands(self, m: Module) -> SyncFIFO:
        """AW through a skid buffer; each accepted command's length also goes to a FIFO that
        the W channel reads to place WLAST. Returns the FIFO."""
        m.submodules.wlen = wlen = SyncFIFO(width=8, depth=_WLEN_DEPTH)
        aw_ready = Signal()
        take = self.wr_cmd_valid & aw_ready & wlen.w_rdy
        skid_buffer(m, "aw", in_valid=self.wr_cmd_valid & wlen.w_rdy, in_ready=aw_ready,
                    in_data=Cat(self.wr_cmd_addr, self.wr_cmd_len),
                    out_valid=self.m_axi_awvalid, out_ready=self.m_axi_awready,
                    out_data=Cat(self.m_axi_awaddr, self.m_axi_awlen))
        m.d.comb += [
            self.wr_cmd_ready.eq(aw_ready & wlen.w_rdy),
            wlen.w_en.eq(take),
            wlen.w_data.eq(self.wr_cmd_len),
        ]
        return wlen

    def _write_data(self, m: Module, wlen: SyncFIFO) -> None:
        """W through a skid buffer, WLAST computed on the way in from the current burst's
        length (the head of ``wlen``); WSTRB all ones (the core writes whole words)."""
        beat = Signal(8)
        last = Signal()
        w_ready = Signal()
        m.d.comb += [
            last.eq(beat == wlen.r_data),
            self.wr_ready.eq(w_ready & wlen.r_rdy),
            self.m_axi_wstrb.eq(Const(-1, len(self.m_axi_wstrb))),
        ]
        skid_buffer(m, "w", in_valid=self.wr_valid & wlen.r_rdy, in_ready=w_ready,
                    in_data=Cat(self.wr_data, last),
                    out_valid=self.m_axi_wvalid, out_ready=self.m_axi_wready,
                    out_data=Cat(self.m_axi_wdata, self.m_axi_wlast))
        with m.If(self.wr_valid & self.wr_ready):
            m.d.sync += beat.eq(Mux(last, 0, beat + 1))
            m.d.comb += wlen.r_en.eq(last)

    def _responses(self, m: Module) -> None:
        """B always taken; ``wr_done`` one cycle after each; error responses latched."""
        m.d.comb += self.m_axi_bready.eq(1)
        m.d.sync += self.wr_done.eq(self.m_axi_bvalid)
        r_bad = self.m_axi_rvalid & self.m_axi_rready & (self.m_axi_rresp != AXI_RESP_OKAY)
        b_bad = self.m_axi_bvalid & (self.m_axi_bresp != AXI_RESP_OKAY)
        with m.If(r_bad | b_bad):
            m.d.sync += self.bus_error.eq(1)


class AxiLiteRegs(wiring.Component):
    """AXI4-Lite slave ``s_axil_*`` in front of the core's register port ``csr_*``.

    Register ``i`` is at byte offset ``4 * i`` (the two low address bits are ignored). AW and W
    are taken in either order (or together) into one register each; the write happens when both
    are held and the previous response has been taken, and its response follows the next cycle.
    A write with WSTRB all ones writes the register; one with no strobe writes nothing (OKAY);
    one with some strobes writes nothing and answers SLVERR, since the core's registers have no
    byte enables and a read-modify-write would re-trigger write-one-to-clear bits. A read
    samples ``csr_rdata`` (with ``csr_re`` high for that cycle) into the registered RDATA. One
    write and one read may be in flight at a time; a write has priority over a read for the
    shared ``csr_addr`` in the cycle both are ready.

    Attributes
    ----------
    s_axil_*
        AXI4-Lite slave port (:func:`axil_slave_port`).
    csr_addr, csr_we, csr_wdata, csr_re, csr_rdata
        The core's register port, flipped (``csr_rdata`` is combinational from ``csr_addr``).
    """

    def __init__(self):
        super().__init__({
            **axil_slave_port(),
            "csr_addr": Out(CSR_ADDR_BITS), "csr_we": Out(1), "csr_wdata": Out(32),
            "csr_re": Out(1), "csr_rdata": In(32),
        })

    def elaborate(self, platform):
        m = Module()
        do_write, write_index = self._write(m)
        self._read(m, do_write, write_index)
        return m

    def _write(self, m: Module) -> tuple[Value, Value]:
        """AW and W into holding registers; the write and B. Returns the cycle's write strobe
        and the register it writes."""
        aw_full, w_full = Signal(), Signal()
        aw_index = Signal(CSR_ADDR_BITS)
        w_data, w_strb = Signal(32), Signal(4)
        do_write = Signal()
        m.d.comb += [
            self.s_axil_awready.eq(~aw_full),
            self.s_axil_wready.eq(~w_full),
            do_write.eq(aw_full & w_full & ~self.s_axil_bvalid),
            self.csr_wdata.eq(w_data),
            self.csr_we.eq(do_write & (w_strb == 0b1111)),
        ]
        with m.If(self.s_axil_awvalid & ~aw_full):
            m.d.sync += [aw_full.eq(1), aw_index.eq(self.s_axil_awaddr[2:])]
        with m.If(self.s_axil_wvalid & ~w_full):
            m.d.sync += [w_full.eq(1), w_data.eq(self.s_axil_wdata),
                         w_strb.eq(self.s_axil_wstrb)]
        with m.If(self.s_axil_bvalid & self.s_axil_bready):
            m.d.sync += self.s_axil_bvalid.eq(0)
        with m.If(do_write):
            partial = (w_strb != 0) & (w_strb != 0b1111)
            m.d.sync += [
                aw_full.eq(0), w_full.eq(0), self.s_axil_bvalid.eq(1),
                self.s_axil_bresp.eq(Mux(partial, AXI_RESP_SLVERR, AXI_RESP_OKAY)),
            ]
        return do_write, aw_index

    def _read(self, m: Module, do_write: Value, write_index: Value) -> None:
        """AR into a holding register; the read (when no write needs ``csr_addr``) and R."""
        ar_full = Signal()
        ar_index = Signal(CSR_ADDR_BITS)
        m.d.comb += [
            self.s_axil_arready.eq(~ar_full),
            self.s_axil_rresp.eq(AXI_RESP_OKAY),
            self.csr_re.eq(ar_full & ~self.s_axil_rvalid & ~do_write),
            self.csr_addr.eq(Mux(do_write, write_index, ar_index)),
        ]
        with m.If(self.s_axil_arvalid & ~ar_full):
            m.d.sync += [ar_full.eq(1), ar_index.eq(self.s_axil_araddr[2:])]
        with m.If(self.s_axil_rvalid & self.s_axil_rready):
            m.d.sync += self.s_axil_rvalid.eq(0)
        with m.If(self.csr_re):
            m.d.sync += [ar_full.eq(0), self.s_axil_rvalid.eq(1),
                         self.s_axil_rdata.eq(self.csr_rdata)]
