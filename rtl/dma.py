"""DMA engine: LOAD (external memory -> ACT/WGT/PRM/LUT) and STORE (ACT -> external memory).

Both directions are 2-D strided block copies of *slices* (``bus_bytes`` bytes each), see
:mod:`codesign.isa`::

    for i < rows, j < length:
        LOAD:  SP[mem].slice[sp_addr + i*sp_stride + j] = EXT[ext_addr + i*ext_stride + j]
        STORE: EXT[ext_addr + i*ext_stride + j]         = ACT.slice[sp_addr + i*sp_stride + j]

External memory is reached through the core's memory interface (:mod:`codesign.rtl.membus`):
each row is one or more bursts, so the engine works against any read latency and any stall
pattern. Three independent parts run at once:

* the *command* side walks the rows and issues the bursts (no more than ``max_reads`` read
  beats outstanding);
* for a LOAD, the *receive* side writes each beat to the scratchpad as it arrives;
* for a STORE, the *read* side reads ACT (synchronous, one cycle) into a two-slice skid buffer
  (the read port's own output register and one more) that feeds the write beats.

Against a memory that takes every command and beat at once and answers a read the next cycle
(the native port) this is the old two-stage pipeline, cycle for cycle: an instruction moving
``N = rows*length`` slices is busy for ``N + 1`` cycles. A LOAD of LUT tables
(:data:`~codesign.isa.Mem.LUT`) moves one slice every ``bus_bytes`` cycles, as fast as the LUT
engine writes its byte-wide tables, and takes ``N * bus_bytes + 1``.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal
from amaranth.lib.wiring import In, Out

from codesign.isa import HwConfig, LoadStore, Mem, Opcode

from .lut import table_write
from .membus import burst_beats, byte_address, mem_master, read_burst_cap
from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["DmaEngine", "slice_addr_bits", "BASE_BITS"]

#: Width of the BASE register's page number (bits 31:12 of a byte address).
BASE_BITS = 20


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


class _Walk:
    """Counters of a 2-D walk over slice addresses ``row_base + i*stride + j``: ``cur`` is the
    current address; :meth:`step` moves to the next (row-major)."""

    def __init__(self, name: str, width: int, rows: Signal, length: Signal, stride: Signal):
        self.i = Signal.like(rows, name=f"{name}_i")
        self.j = Signal.like(length, name=f"{name}_j")
        self.row = Signal(width, name=f"{name}_row")
        self.cur = Signal(width, name=f"{name}_cur")
        self.last_j = self.j == length
        self.last = self.last_j & (self.i == rows)
        self._stride = stride

    def next_cur(self):
        return Mux(self.last_j, self.row + self._stride, self.cur + 1)

    def reset(self, m: Module, base) -> list:
        return [self.i.eq(0), self.j.eq(0), self.row.eq(base), self.cur.eq(base)]

    def step(self, m: Module) -> None:
        with m.If(self.last_j):
            m.d.sync += [self.j.eq(0), self.i.eq(self.i + 1), self.row.eq(self.row + self._stride)]
        with m.Else():
            m.d.sync += self.j.eq(self.j + 1)
        m.d.sync += self.cur.eq(self.next_cur())


class DmaEngine(HwComponent):
    """LOAD / STORE engine (``insn.opcode`` selects the direction).

    Parameters
    ----------
    config : HwConfig
        The NPU instance; fixes the bus width, ``max_reads`` and the scratchpad geometries.

    Attributes
    ----------
    start, insn, busy, done
        Engine interface (:func:`~codesign.rtl.ports.engine_control`) for an
        ``isa.LoadStore``; a LOAD is done when its last beat is written to the scratchpad, a
        STORE when the memory has completed its last write command.
    rd_cmd_*, rd_*, wr_cmd_*, wr_*, wr_done
        The core's memory interface (:func:`~codesign.rtl.membus.mem_master`).
    base : In(BASE_BITS)
        The BASE register: the 4 KiB page of external word 0.
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

    All memory outputs (commands, beats, scratchpad ports) are 0 while unused.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(LoadStore),
            **mem_master(c),
            "base": In(BASE_BITS),
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
        sp_width = slice_addr_bits(c)
        insn = self.insn

        # Latched instruction fields. While idle the registers follow the instruction bus (it
        # is valid in the start cycle, and garbage until then): the start pulse, late in its
        # cycle (the controller's dispatch decision), then only sets the few state bits below.
        f = {
            "is_store": Signal(name="is_store"),
            "lut_load": Signal(name="lut_load"),
            "mem_sel": Signal(Mem, name="mem_sel"),
            "sp_stride": Signal(sp_width, name="sp_stride"),
            "ext_stride": Signal(c.ext_addr_bits, name="ext_stride"),
            "rows": Signal(LoadStore.members["rows"], name="rows"),        # rows - 1
            "last_j": Signal(LoadStore.members["length"], name="last_j"),  # length - 1
            "length": Signal(LoadStore.members["length"], name="length"),
        }
        with m.If(~self.busy):
            m.d.sync += [
                f["is_store"].eq(insn.opcode == Opcode.STORE),
                f["lut_load"].eq((insn.opcode == Opcode.LOAD) & (insn.mem == Mem.LUT)),
                f["mem_sel"].eq(insn.mem),
                f["sp_stride"].eq(insn.sp_stride),
                f["ext_stride"].eq(insn.ext_stride),
                # The last indices: the counters compare with registers, not a decrement.
                f["rows"].eq(insn.rows - 1),
                f["last_j"].eq(insn.length - 1),
                f["length"].eq(insn.length),
            ]
        empty = Signal()   # an instruction that moves nothing: done the cycle after start
        nonempty = (insn.rows != 0) & (insn.length != 0)
        m.d.sync += empty.eq(0)
        with m.If(self.start):
            m.d.sync += [self.busy.eq(1), empty.eq(~nonempty)]
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)

        # A LOAD of LUT tables moves a slice every bus_bytes cycles (the LUT engine writes its
        # byte-wide table copies one entry per cycle, rtl/lut.py) and is done when the engine
        # writes the last slice's last byte, bus_bytes - 1 cycles after the slice's port write.
        paced = bool(c.lut_tables) and c.bus_bytes > 1
        load_done = Signal(name="load_done")
        store_done = Signal(name="store_done")
        tail = Signal(range(max(2, c.bus_bytes)), name="tail")
        if paced:
            m.d.comb += self.done.eq((load_done & ~f["lut_load"]) | store_done | empty
                                     | (tail == 1))
            with m.If(load_done & f["lut_load"]):
                m.d.sync += tail.eq(c.bus_bytes - 1)
            with m.Elif(tail != 0):
                m.d.sync += tail.eq(tail - 1)
        else:
            m.d.comb += self.done.eq(load_done | store_done | empty)

        cmd_fire, cmd_last = self._commands(m, f, nonempty)
        self._receive(m, f, load_done, paced)
        self._store_reads(m, f, nonempty)

        # A STORE is complete when every write command it issued is acknowledged.
        pending = Signal(range(2 * c.max_reads + 2), name="wr_pending")  # commands not done
        cmds_left = Signal(name="cmds_left")
        m.d.sync += pending.eq(pending + (cmd_fire & f["is_store"]) - self.wr_done)
        with m.If(self.start):
            m.d.sync += cmds_left.eq(nonempty)
        with m.Elif(cmd_fire & cmd_last):
            m.d.sync += cmds_left.eq(0)
        m.d.comb += store_done.eq(
            self.busy & f["is_store"] & ~(cmds_left & ~(cmd_fire & cmd_last))
            & (pending + (cmd_fire & f["is_store"]) - self.wr_done == 0))
        return m

    def _commands(self, m: Module, f: dict, nonempty) -> tuple:
        """Issue the bursts of every row; return (a command is accepted, it is the last).

        The next command (address, beats, whether it ends its row or the instruction) is kept
        in registers, computed when the one before it is accepted: the burst arithmetic (4 KiB
        page, caps) stays off the path from the handshake to the bus.
        """
        c = self.config
        lg = _log2(c.bus_bytes)
        insn = self.insn
        run = Signal(name="cmd_run")
        row_i = Signal.like(f["rows"], name="cmd_i")
        rem = Signal.like(f["length"], name="cmd_rem")            # beats of the row from addr
        addr = Signal(32, name="cmd_addr")                        # the command's byte address
        next_row = Signal(32, name="cmd_next_row")                # the next row's byte address
        beats = Signal(9, name="cmd_beats")
        row_end = Signal(name="cmd_row_end")
        last = Signal(name="cmd_last")

        def next_beats(at, left, store, lut):
            return Mux(store, burst_beats(c, at, left, 256),
                       Mux(lut, 1, burst_beats(c, at, left, read_burst_cap(c))))

        def load(at, left, first_row, last_row):
            """Make the command at ``at`` with ``left`` beats of its row the next one."""
            b = Signal(9, name=f"cmd_beats_{'row' if first_row else 'on'}")
            m.d.comb += b.eq(next_beats(at, left, f["is_store"], f["lut_load"]))
            m.d.sync += [addr.eq(at), rem.eq(left), beats.eq(b), row_end.eq(b == left),
                         last.eq((b == left) & last_row)]

        # Read beats accepted in a command and not yet received: never above max_reads.
        outstanding = Signal(range(c.max_reads + 1), name="reads_outstanding")
        received = self.rd_valid & self.rd_ready
        after = Signal(range(c.max_reads + 258), name="reads_after")
        m.d.comb += after.eq(outstanding + beats)
        credit = (after <= c.max_reads) | (received & (after == c.max_reads + 1))
        # LUT loads: one single-beat command every bus_bytes cycles (see the class docstring).
        gap = Signal(range(max(2, c.bus_bytes)), name="lut_gap")
        valid = Signal(name="cmd_valid")
        m.d.comb += valid.eq(run & (f["is_store"] | (credit & (gap == 0))))
        rd = valid & ~f["is_store"]
        wr = valid & f["is_store"]
        m.d.comb += [
            self.rd_cmd_valid.eq(rd),
            self.rd_cmd_addr.eq(Mux(rd, addr, 0)),
            self.rd_cmd_len.eq(Mux(rd, beats - 1, 0)),
            self.wr_cmd_valid.eq(wr),
            self.wr_cmd_addr.eq(Mux(wr, addr, 0)),
            self.wr_cmd_len.eq(Mux(wr, beats - 1, 0)),
        ]
        fire = Signal(name="cmd_fire")
        m.d.comb += fire.eq((rd & self.rd_cmd_ready) | (wr & self.wr_cmd_ready))
        m.d.sync += outstanding.eq(outstanding - received + Mux(fire & rd, beats, 0))
        with m.If(fire & f["lut_load"]):
            m.d.sync += gap.eq(c.bus_bytes - 1)
        with m.Elif(gap != 0):
            m.d.sync += gap.eq(gap - 1)

        stride = Signal(32, name="cmd_stride")                    # ext_stride in bytes
        m.d.comb += stride.eq(f["ext_stride"] << lg)
        with m.If(~self.busy):
            # The registers follow the instruction bus: the first command is ready at start.
            first = Signal(32, name="cmd_first")
            b = Signal(9, name="cmd_beats_first")
            store = insn.opcode == Opcode.STORE
            m.d.comb += [
                first.eq(byte_address(c, self.base, insn.ext_addr)),
                b.eq(next_beats(first, insn.length, store,
                                (insn.opcode == Opcode.LOAD) & (insn.mem == Mem.LUT))),
            ]
            m.d.sync += [row_i.eq(0), addr.eq(first), rem.eq(insn.length), beats.eq(b),
                         next_row.eq(first + (insn.ext_stride << lg)),
                         row_end.eq(b == insn.length),
                         last.eq((b == insn.length) & (insn.rows == 1))]
        with m.If(self.start):
            m.d.sync += run.eq(nonempty)
        with m.If(fire):
            with m.If(last):
                m.d.sync += run.eq(0)
            with m.If(row_end):
                m.d.sync += [row_i.eq(row_i + 1), next_row.eq(next_row + stride)]
                load(next_row, f["length"], True, row_i + 1 == f["rows"])
            with m.Else():
                load((addr + (beats << lg))[:32], rem - beats, False, row_i == f["rows"])
        return fire, last

    def _receive(self, m: Module, f: dict, load_done, paced: bool) -> None:
        """LOAD: write each arriving beat to its scratchpad slice."""
        c = self.config
        insn = self.insn
        walk = _Walk("rx", slice_addr_bits(c), f["rows"], f["last_j"], f["sp_stride"])
        # The LUT engine takes a slice every bus_bytes cycles.
        wpace = Signal(range(max(2, c.bus_bytes)), name="lut_pace")
        m.d.comb += self.rd_ready.eq(self.busy & ~f["is_store"] & (~f["lut_load"] | (wpace == 0)))
        fire = self.rd_valid & self.rd_ready
        m.d.comb += load_done.eq(fire & walk.last)
        if paced:
            with m.If(fire & f["lut_load"]):
                m.d.sync += wpace.eq(c.bus_bytes - 1)
            with m.Elif(wpace != 0):
                m.d.sync += wpace.eq(wpace - 1)

        # The write address and enables of the next beat are kept in registers, so that the
        # write ports (shared with the other engines, fanned out to every block RAM of the
        # scratchpad) are driven from flip-flops gated only by the arriving beat.
        next_cur = Signal.like(walk.cur, name="rx_next")
        m.d.comb += next_cur.eq(Mux(~self.busy, insn.sp_addr, walk.next_cur()))
        with m.If(~self.busy):
            m.d.sync += walk.reset(m, insn.sp_addr)
        with m.Elif(fire):
            walk.step(m)
        targets = {
            Mem.ACT: (self.act_waddr, self.act_wen, self.act_wdata, c.bus_bytes),
            Mem.WGT: (self.wgt_waddr, self.wgt_wen, self.wgt_wdata, 1),
            Mem.PRM: (self.prm_waddr, self.prm_wen, self.prm_wdata, 1),
        }
        if c.lut_tables:    # the LUT engine's tables: one slice per word
            targets[Mem.LUT] = (self.lut_waddr, self.lut_wen, self.lut_wdata, 1)
        for mem, (waddr, wen, wdata, per_slice) in targets.items():
            name = mem.name.lower()
            reg_addr = Signal.like(waddr, name=f"rx_{name}_waddr")
            reg_en = Signal.like(wen, name=f"rx_{name}_wen")
            word, sl = self._split(mem, next_cur)
            # Every slice of the word carries the bus word; the enables pick one.
            enables = [Const(1, 1) if sl is None else sl == s for s in range(c.slices(mem))]
            with m.If(~self.busy | fire):
                m.d.sync += [reg_addr.eq(word),
                             reg_en.eq(Cat(*(en for en in enables for _ in range(per_slice))))]
            write = Signal(name=f"rx_{name}_write")
            m.d.comb += [
                write.eq(fire & (f["mem_sel"] == mem)),
                waddr.eq(Mux(write, reg_addr, 0)),
                wen.eq(Mux(write, reg_en, 0)),
                wdata.eq(Mux(write, Cat(*([self.rd_data] * c.slices(mem))), 0)),
            ]

    def _store_reads(self, m: Module, f: dict, nonempty) -> None:
        """STORE: read ACT slices into a two-slice skid buffer that feeds the write beats.

        A read is *decided* when fewer than two slices are decided and not yet written. The
        read port's output register holds the last read's word until the next read, so it is
        the buffer's first slot (``rdv``); ``hold`` takes that word's slice when another read
        would overwrite it before it is written. With a deep pipeline the read itself comes
        from port registers a cycle after the decision, the first one in the start cycle.
        """
        c = self.config
        bus = 8 * c.bus_bytes
        insn = self.insn
        deep = c.deep_pipeline
        walk = _Walk("st", slice_addr_bits(c), f["rows"], f["last_j"], f["sp_stride"])
        run = Signal(name="st_run")
        used = Signal(range(3), name="st_used")         # decided, not yet written
        write = self.wr_valid & self.wr_ready
        decide = Signal(name="st_decide")
        m.d.comb += decide.eq(run & ((used < 2) | write))
        m.d.sync += used.eq(used + decide - write)

        read = Signal(name="st_read")                   # an ACT read on the port this cycle
        read_slice = Signal(range(max(2, c.slices(Mem.ACT))), name="st_read_slice")
        if deep:
            # The enable and address logic, then the merge of all engines' ports, then the
            # fanout to every block RAM of ACT were too long a route for one cycle.
            port_addr = Signal.like(self.act_raddr, name="act_raddr_port")
            port_slice = Signal.like(read_slice, name="act_rslice_port")
            m.d.sync += [read.eq(0), port_addr.eq(0)]
            first = self.start & (insn.opcode == Opcode.STORE) & nonempty

            def issue(slice_addr):
                word, sl = self._split(Mem.ACT, slice_addr)
                m.d.sync += [read.eq(1), port_addr.eq(word)]
                if sl is not None:
                    m.d.sync += port_slice.eq(sl)

            with m.If(first):
                issue(insn.sp_addr)
            with m.Elif(decide):
                issue(walk.cur)
            m.d.comb += [self.act_ren.eq(read), self.act_raddr.eq(port_addr),
                         read_slice.eq(port_slice)]
            # The start cycle's decision counts; the walk starts at the second slice.
            with m.If(first):
                m.d.sync += used.eq(1)
                single = (insn.rows == 1) & (insn.length == 1)
                start_walk = Signal.like(walk.cur, name="st_second")
                m.d.comb += start_walk.eq(Mux(insn.length == 1, insn.sp_addr + insn.sp_stride,
                                              insn.sp_addr + 1))
                m.d.sync += [walk.i.eq(insn.length == 1), walk.j.eq(insn.length != 1),
                             walk.row.eq(Mux(insn.length == 1, start_walk, insn.sp_addr)),
                             walk.cur.eq(start_walk), run.eq(~single)]
        else:
            word, sl = self._split(Mem.ACT, walk.cur)
            m.d.comb += [read.eq(decide), self.act_ren.eq(decide),
                         self.act_raddr.eq(Mux(decide, word, 0))]
            if sl is not None:
                m.d.comb += read_slice.eq(sl)
            with m.If(self.start & (insn.opcode == Opcode.STORE)):
                m.d.sync += [*walk.reset(m, insn.sp_addr), run.eq(nonempty)]
        with m.If(decide):
            walk.step(m)
            with m.If(walk.last):
                m.d.sync += run.eq(0)

        rdv = Signal(name="st_rdv")          # the read port's output holds an unwritten slice
        rdv_slice = Signal.like(read_slice, name="st_rdv_slice")
        hold = Signal(bus, name="st_hold")
        holdv = Signal(name="st_holdv")
        port_slice_data = (self.act_rdata if c.slices(Mem.ACT) == 1
                           else self.act_rdata.word_select(rdv_slice, bus))
        from_port = write & ~holdv           # the port's slice is written this cycle
        m.d.sync += rdv.eq(read | (rdv & ~from_port))
        with m.If(read):
            m.d.sync += rdv_slice.eq(read_slice)
        with m.If(read & rdv & ~from_port):  # overwritten next cycle: keep its slice
            m.d.sync += [hold.eq(port_slice_data), holdv.eq(1)]
        with m.Elif(write & holdv):
            m.d.sync += holdv.eq(0)
        m.d.comb += [
            self.wr_valid.eq(self.busy & f["is_store"] & (holdv | rdv)),
            self.wr_data.eq(Mux(self.wr_valid, Mux(holdv, hold, port_slice_data), 0)),
        ]
