"""The MATMUL engine: one weight tile against a strided window of pixels on the systolic array.

Schedule (cycle 0 is the ``start`` cycle, ``R = rows``, ``L = SystolicArray.latency``)::

    1 .. R          read WGT[wgt_base + k]; one cycle later each word is shifted into the array
    R+1 .. R+M      window position j = 0 .. M-1 (oh-major): read its ACT word (if in bounds)
    +1              select the lane group, extend, subtract x_zp, zero if out of bounds → x reg
    +2              x enters the array
    +1+L            read ACC[acc_base + j] (when accumulating), to meet the psum
    +2+L            psum + old ACC word → write register
    +3+L            write ACC[acc_base + j]; ``done`` with the last write

(A deep pipeline, :attr:`codesign.isa.HwConfig.deep_pipeline`, registers the block RAMs'
outputs before any logic: the ACT word a cycle before its x stage and each weight word after its
zero point, which puts both one cycle later, and the ACC row, read a cycle earlier. So its
MATMUL takes one cycle more.)

so a MATMUL of ``M = out_h·out_w`` positions takes ``R + M + L + 3`` cycles, one position per
cycle in steady state. Window addresses and bounds come from adders only: ``ih``/``iw`` and the
ACT address advance by ``stride_*`` / ``step_*`` per position and restart at each output row.

A *depthwise* MATMUL (see :mod:`.array`, "Depthwise mode") loads ``config.dw_weight_words``
weight words, streams the ``(out_h + 2) × (out_w + 2)`` positions of the padded input once (stage
0 as above with stride 1; stage 1 takes the ``cols`` lanes of the lane group), and feeds the array
the stream itself plus two copies delayed by ``out_w - 1`` cycles each through two line buffers
(memories of ``dw_width`` words). A stream position ``(sy, sx)`` with ``sy, sx >= 2`` completes
output ``(sy - 2, sx - 2)``, written ``dw_latency - 7`` cycles after its x stage (the three
input vectors are registered once more), so a depthwise MATMUL takes
``dw_weight_words + (out_h + 2)(out_w + 2) + dw_latency - 4`` cycles.

A *GEMV* MATMUL (array "GEMV mode") has no load stage: it streams ``x`` of its one pixel for
:func:`codesign.timing.gemv_stream` positions while reading its ``out_w`` weight tiles, two at a
time interleaved, one word per cycle from stream position ``max(C - R, 0)`` on (``x`` reaches
PE ``(r, c)`` ``r + c`` cycles after its x stage); each tile's tag leaves the stream in the
position whose psum it meets. The next GEMV instruction streams right behind it, so a fully
connected layer at batch 1 reads one WGT word per cycle.

Operands are 9-bit: ``x - x_zp`` and ``w - w_zp`` are exact for zero points inside the range of
their 8-bit type (int8 for weights and signed activations, uint8 for unsigned ones), which is
what ONNX quantization produces and what the compiler emits.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import Out

from codesign import isa

from .array import W_SHAPE, X_SHAPE, SystolicArray
from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["MatMulEngine", "position_layouts"]

_COORD = signed(18)     # ih/iw: |ih0| < 2**12, oh·stride_h < 2**16


def position_layouts(config: isa.HwConfig) -> tuple[data.StructLayout, data.StructLayout]:
    """What a stream position carries past its ACT read: its *tag* (whether and where its psum
    is written) and stage 1's fields, the tag included."""
    tag = data.StructLayout({"valid": 1, "last": 1, "accumulate": 1,
                             "addr": config.addr_bits(config.acc_depth)})
    stage1 = data.StructLayout({"stream": 1, "switch": 1, "inb": 1, "x_signed": 1,
                                "x_zp": signed(9), "lane_group": 6, "tag": tag})
    return tag, stage1


class MatMulEngine(HwComponent):
    """Executes MATMUL (see :mod:`codesign.isa` and docs/rtl-contract.md).

    Parameters
    ----------
    config
        The NPU's :class:`~codesign.isa.HwConfig`; the array is ``rows`` × ``cols``.

    Attributes
    ----------
    latency : int
        Cycles from ``start`` to ``done`` minus the number of window positions ``M``
        (``done`` comes ``latency + M`` cycles after ``start``; 1 cycle when ``M = 0``).
    """

    def __init__(self, config: isa.HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(isa.MatMul),
            "ready": Out(1),
            **scratchpad_read(c, "act"),
            **scratchpad_read(c, "wgt"),
            **scratchpad_read(c, "acc"),
            **scratchpad_write(c, "acc"),
        })
        c = self.config
        # R + SystolicArray.latency + 3 (+ 1: the read registers of a deep pipeline)
        self.latency = c.rows + (c.rows + c.cols + 1) + 3 + c.deep_pipeline

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.array = array = SystolicArray(rows=c.rows, cols=c.cols,
                                                   depthwise=c.dw_width > 0, gemv=c.gemv,
                                                   mult_cell=c.mult_cell)
        lat = array.latency
        acc_bits = c.addr_bits(c.acc_depth)

        # ---- instructions in flight: at most one loading its weights, one streaming, and the
        # tails of earlier ones in the array. `flight` counts them all.
        flight = Signal(range(8))
        wrote_last = Signal()       # an instruction's last ACC write is in this cycle
        empty_insn = Signal()       # an empty instruction arrived while idle: done next cycle
        m.d.sync += empty_insn.eq(0)
        is_empty = (self.insn.out_h == 0) | (self.insn.out_w == 0)
        accepted = self.start & ~is_empty
        m.d.sync += flight.eq(flight + accepted - wrote_last)
        with m.If(self.start & is_empty & (flight == 0)):
            m.d.sync += empty_insn.eq(1)
        m.d.comb += [
            self.busy.eq((flight != 0) | empty_insn),
            # All taken instructions complete (a start in this cycle begins a new busy period).
            self.done.eq(empty_insn | (wrote_last & (flight == 1))),
        ]

        # ---- stage L: the next instruction's weights → the array's shadow registers ----------
        ld = Signal(isa.MatMul)
        ld_valid = Signal()
        ld_reading = Signal()
        ld_loaded = Signal()
        wcount = Signal(range(c.rows + 2))
        wgt_addr = Signal(c.addr_bits(c.wgt_depth))
        m.d.comb += self.ready.eq(~ld_valid)
        load = [ld.eq(self.insn), ld_reading.eq(0), ld_loaded.eq(0), wcount.eq(0),
                wgt_addr.eq(self.insn.wgt_base)]
        if c.deep_pipeline:
            # While the load stage is empty its registers follow the instruction bus (valid in
            # the start cycle): the start pulse, late in its cycle (the controller's dispatch
            # decision), then only sets ld_valid.
            with m.If(~ld_valid):
                m.d.sync += load
            with m.If(accepted):
                m.d.sync += ld_valid.eq(1)
        else:
            with m.If(accepted):
                # (In this order, that of the statements before the deep pipeline: the Verilog
                # of NPUs without it stays byte-identical.)
                m.d.sync += [load[0], ld_valid.eq(1), *load[1:]]
        ld_dw = ld.depthwise if c.dw_width else 0
        ld_gemv = ld.gemv if c.gemv else Const(0)
        n_words = Mux(ld_dw, c.dw_weight_words, c.rows) if c.dw_width else c.rows

        # The shadow registers are free once the previous tile's switch marker has passed the
        # last PE; a depthwise tile (switched all at once) or a change of mode needs the array
        # empty: nothing in flight but this instruction.
        dw = Signal()               # mode of the instruction streaming last
        gemv = Signal(name="gemv_mode") if c.gemv else Const(0)
        sw_wait = Signal(range(c.rows + c.cols + 1))
        with m.If(sw_wait != 0):
            m.d.sync += sw_wait.eq(sw_wait - 1)
        alone = flight == 1
        may_load = ld_valid & ~ld_gemv & ~ld_reading & ~ld_loaded & (sw_wait == 0) & (
            alone | ~(ld_dw | dw | gemv))
        reading = Signal()
        m.d.comb += reading.eq(may_load | ld_reading)
        last_read = reading & (wcount == n_words - 1)
        with m.If(reading):
            m.d.comb += [self.wgt_ren.eq(1), self.wgt_raddr.eq(wgt_addr)]
            m.d.sync += [wgt_addr.eq(wgt_addr + 1), wcount.eq(wcount + 1), ld_reading.eq(1)]
            with m.If(last_read):
                m.d.sync += [ld_reading.eq(0), ld_loaded.eq(1)]
        # Weight words arrive one cycle after their read (the load stage's, or a streaming
        # GEMV instruction's; never both): int8 lanes minus the w_zp of their instruction.
        # A GEMV instruction's weight slot (see below); none without the GEMV mode.
        gv_reading = Signal(name="gv_reading") if c.gemv else Const(0)
        w_arrive = Signal()
        w_zp = Signal(signed(9))
        m.d.sync += w_arrive.eq(reading | gv_reading)
        wgt_word = data.ArrayLayout(signed(8), c.cols)(self.wgt_rdata)
        w_values = [(wgt_word[col] - w_zp)[:W_SHAPE.width] for col in range(c.cols)]
        if c.deep_pipeline:
            # Registered once more: the block RAM's output met the array's bottom shadow row
            # through the subtractor. The x stage follows a cycle later as well (stage 1x).
            w_reg = Signal(data.ArrayLayout(W_SHAPE, c.cols))
            w_load = Signal()
            m.d.sync += [w_load.eq(w_arrive), *(w_reg[col].eq(w_values[col])
                                                 for col in range(c.cols))]
            m.d.comb += [array.w.eq(w_reg), array.w_load.eq(w_load)]
        else:
            for col in range(c.cols):
                m.d.comb += array.w[col].eq(w_values[col])
            m.d.comb += array.w_load.eq(w_arrive)
        if c.dw_width and not c.deep_pipeline:
            m.d.comb += array.w_lane.eq(ld.depthwise)

        # ---- stage 0: window position → ACT read -----------------------------------------------
        st = Signal(isa.MatMul)
        streaming = Signal()
        oh = Signal(unsigned(12))
        ow = Signal(unsigned(12))
        last_oh = Signal(unsigned(12))
        last_ow = Signal(unsigned(12))
        ih = Signal(_COORD)
        iw = Signal(_COORD)
        act_bits = c.addr_bits(c.act_depth)
        row_addr = Signal(act_bits)     # ACT address of (oh, 0), modulo 2**act_bits
        addr = Signal(act_bits)         # ACT address of (oh, ow)
        acc_addr = Signal(acc_bits)     # ACC row of the next output position
        first = Signal()                # the first position of the streaming instruction

        # Whether ih / iw (and iw0) lie inside the input, registered with the coordinates
        # (compared on their next value): compared from ih/iw here, they fed the ACT read address
        # and enable through two carry chains.
        ih_ok = Signal()
        iw_ok = Signal()
        iw0_ok = Signal()

        def inside(value, size):
            return (value >= 0) & (value < size)

        in_bounds = ih_ok & iw_ok
        # Whether the position is the last of its row / in the last row, registered (compared
        # on the next position): compared here, they fed the take decision, whose fanout is the
        # whole instruction register, through a 12-bit comparator.
        row_end = Signal()
        last_row = Signal()

        if c.gemv:
            # GEMV: stream position k reads weight slot k - lead_r (the A and B tiles of a pair
            # alternate, slot j of a pair being word j // 2 of tile A or B), and the tags of a
            # pair's two tiles leave at positions lead_t + 2·R·pair (+ 1): see
            # codesign.timing.gemv_stream. Slots of a missing B tile (an odd last one) shift the
            # array without reading.
            R = c.rows
            lead_r, lead_t = max(0, c.cols - R), max(0, R - c.cols)
            wgt_bits = c.addr_bits(c.wgt_depth)
            lead = max(lead_r, lead_t)
            gv_lead = Signal(range(lead + 1))       # stream positions so far, up to the lead
            gv_slot = Signal(range(2 * R))          # weight slot within the pair
            gv_pairs = Signal(unsigned(12))         # pairs left to read, this one included
            gv_a = Signal(wgt_bits)                 # next word of tile A / B
            gv_b = Signal(wgt_bits)
            gv_phase = Signal(range(2 * R))         # tag position within the pair
            gv_tag_pairs = Signal(unsigned(12))     # pairs left to tag
            gv_odd = Signal()                       # out_w is odd: the last pair has no B tile
            read_on = (gv_lead >= lead_r) if lead_r else Const(1)
            tag_on = (gv_lead >= lead_t) if lead_t else Const(1)
            slot_b = gv_slot[0]
            b_read = ~(gv_odd & (gv_pairs == 1))
            b_tag = ~(gv_odd & (gv_tag_pairs == 1))
            tag_a = tag_on & (gv_phase == 0) & (gv_tag_pairs != 0)
            tag_b = tag_on & (gv_phase == 1) & (gv_tag_pairs != 0) & b_tag
            gv_tag_last = (gv_tag_pairs == 1) & (tag_b | (tag_a & gv_odd))
            gv_last = read_on & (gv_slot == 2 * R - 1) & (gv_pairs == 1)
            m.d.comb += gv_reading.eq(streaming & gemv & read_on)
            with m.If(gv_reading & (~slot_b | b_read)):
                m.d.comb += [self.wgt_ren.eq(1), self.wgt_raddr.eq(Mux(slot_b, gv_b, gv_a))]
            with m.If(streaming & gemv):
                if lead:
                    with m.If(gv_lead != lead):
                        m.d.sync += gv_lead.eq(gv_lead + 1)
                with m.If(read_on):
                    m.d.sync += gv_slot.eq(gv_slot + 1)
                    with m.If(gv_slot == 2 * R - 1):
                        # Tile A of the next pair follows tile B of this one.
                        m.d.sync += [gv_pairs.eq(gv_pairs - 1), gv_a.eq(gv_b + 1),
                                     gv_b.eq(gv_b + 1 + R)]
                    with m.Elif(slot_b):
                        m.d.sync += gv_b.eq(gv_b + 1)
                    with m.Else():
                        m.d.sync += gv_a.eq(gv_a + 1)
                with m.If(tag_on):
                    m.d.sync += gv_phase.eq(gv_phase + 1)
                    # (On a wide array the stream outlasts the tags by the read lead.)
                    with m.If((gv_phase == 2 * R - 1) & (gv_tag_pairs != 0)):
                        m.d.sync += gv_tag_pairs.eq(gv_tag_pairs - 1)
            gv_start = [gv_slot.eq(0), gv_phase.eq(0), gv_odd.eq(ld.out_w[0]),
                        gv_pairs.eq((ld.out_w + 1) >> 1), gv_tag_pairs.eq((ld.out_w + 1) >> 1),
                        gv_a.eq(ld.wgt_base), gv_b.eq(ld.wgt_base + R)]
            if lead:
                gv_start.append(gv_lead.eq(0))
        else:
            tag_a = tag_b = gv_tag_last = gv_last = Const(0)
            gv_start = []
        # The zero point of the words read this cycle, for their arrival next cycle.
        m.d.sync += w_zp.eq(Mux(gv_reading, st.w_zp, ld.w_zp))
        if c.dw_width and c.deep_pipeline:
            # Whether they go through the tap lane, likewise, for the weight register after
            # their arrival: ld follows the instruction bus once its instruction is taken.
            w_lane = Signal()
            w_lane_reg = Signal()
            m.d.sync += [w_lane.eq(Mux(gv_reading, st.depthwise, ld.depthwise)),
                         w_lane_reg.eq(w_lane)]
            m.d.comb += array.w_lane.eq(w_lane_reg)

        last = streaming & Mux(gemv, gv_last, row_end & last_row)
        # A depthwise stream position completes an output once two rows and two columns of the
        # padded input are in (oh/ow count stream positions there); a GEMV tile at its tag.
        produces = Mux(gemv, tag_a | tag_b, ~dw | ((oh >= 2) & (ow >= 2)))

        # The loaded instruction starts streaming when the stream is (about to be) free. One that
        # accumulates waits two more cycles (three in a deep pipeline): its first ACC read must
        # come after the previous instruction's last ACC write (reads are one cycle (two)
        # before, writes one after, the psum).
        gap = 2 + c.deep_pipeline
        quiet = Signal(range(gap + 1), init=gap)    # cycles since the last stream position
        with m.If(last):
            m.d.sync += quiet.eq(1)
        with m.Elif(~streaming & (quiet != gap)):
            m.d.sync += quiet.eq(quiet + 1)
        stream_free = Mux(ld.accumulate, ~streaming & (quiet == gap), ~streaming | last)
        # A GEMV instruction needs no load; it follows another one directly, anything else
        # once the array is empty.
        take = ld_valid & stream_free & Mux(ld_gemv, gemv | alone, ld_loaded | last_read)
        if c.gemv:
            m.d.comb += array.gemv.eq(gemv)
        if c.dw_width:
            m.d.comb += array.dw.eq(dw)
        # A depthwise tile switches all at once (nothing in flight), one cycle into its stream:
        # its last weight word is shifted in at the end of the first stream cycle (two cycles
        # and the second in a deep pipeline, whose x stage is a cycle later too).
        switch_all = Signal()
        m.d.sync += switch_all.eq(streaming & first & dw)
        if c.deep_pipeline:
            switch_late = Signal()
            m.d.sync += switch_late.eq(switch_all)
            m.d.comb += array.w_switch.eq(switch_late)
        else:
            m.d.comb += array.w_switch.eq(switch_all)

        with m.If(streaming):
            # A GEMV instruction reads its pixel once: the port's output holds it (no other
            # instruction uses the port meanwhile).
            m.d.comb += [self.act_ren.eq(in_bounds & (first | ~gemv)),
                         self.act_raddr.eq(Mux(in_bounds, addr, 0))]
            m.d.sync += first.eq(0)
            with m.If(produces):
                m.d.sync += acc_addr.eq(acc_addr + 1)
        with m.If(streaming & ~gemv):    # GEMV: x stays the window's first pixel
            with m.If(row_end):
                m.d.sync += [
                    ow.eq(0),
                    iw.eq(st.iw0),
                    oh.eq(oh + 1),
                    row_end.eq(last_ow == 0), last_row.eq(oh + 1 == last_oh),
                    ih.eq(ih + st.stride_h),
                    ih_ok.eq(inside(ih + st.stride_h, st.in_h)), iw_ok.eq(iw0_ok),
                    row_addr.eq(row_addr + st.step_h),
                    addr.eq(row_addr + st.step_h),
                ]
            with m.Else():
                m.d.sync += [
                    ow.eq(ow + 1),
                    row_end.eq(ow + 1 == last_ow),
                    iw.eq(iw + st.stride_w),
                    iw_ok.eq(inside(iw + st.stride_w, st.in_w)),
                    addr.eq(addr + st.step_w),
                ]

        # After the advance above, so that a take in the last position's cycle wins.
        with m.If(last & ~take):
            m.d.sync += streaming.eq(0)
        extra = Mux(ld_dw, 2, 0)
        end_ow, end_oh = ld.out_w - 1 + extra, ld.out_h - 1 + extra
        taken = [ld_valid.eq(0), ld_loaded.eq(0), streaming.eq(1), first.eq(1), dw.eq(ld_dw)]
        stream_regs = [
            oh.eq(0), ow.eq(0),
            last_oh.eq(end_oh), last_ow.eq(end_ow),
            row_end.eq(end_ow == 0), last_row.eq(end_oh == 0),
            ih.eq(ld.ih0), iw.eq(ld.iw0),
            ih_ok.eq(inside(ld.ih0, ld.in_h)), iw_ok.eq(inside(ld.iw0, ld.in_w)),
            iw0_ok.eq(inside(ld.iw0, ld.in_w)),
            row_addr.eq(ld.act_base), addr.eq(ld.act_base), acc_addr.eq(ld.acc_base),
        ]
        # Regular tiles switch PE by PE; the next load waits for the marker to pass.
        switch_wait = sw_wait.eq(Mux(ld_dw | ld_gemv, 0, c.rows + c.cols))
        gemv_mode = [gemv.eq(ld_gemv)] if c.gemv else []
        if c.deep_pipeline:
            # The stream's registers (and st) follow the load stage whenever the stream is
            # free, used or not: only a few state bits wait for the take decision, which
            # otherwise fanned out to all of them.
            with m.If(~streaming | last):
                m.d.sync += [st.eq(ld), *stream_regs, *gv_start]
            with m.If(take):
                m.d.sync += [*taken, switch_wait, *gemv_mode]
        else:
            with m.If(take):
                # (In the order of the statements before the deep pipeline, see the load.)
                m.d.sync += [st.eq(ld), *taken, *stream_regs, switch_wait, *gv_start]
                m.d.sync += gemv_mode

        # ---- stage 1: ACT word → x register ----------------------------------------------------
        # Everything stages 1.. need travels with the position: the next instruction may be
        # streaming by the time it gets there.
        tag, stage1 = position_layouts(c)
        s1 = Signal(stage1)
        m.d.sync += [
            s1.stream.eq(streaming), s1.switch.eq(streaming & first & ~dw & ~gemv),
            s1.inb.eq(streaming & in_bounds), s1.x_signed.eq(st.x_signed), s1.x_zp.eq(st.x_zp),
            s1.lane_group.eq(st.lane_group),
            s1.tag.valid.eq(streaming & produces),
            s1.tag.last.eq(Mux(gemv, streaming & gv_tag_last, last)),
            s1.tag.accumulate.eq(st.accumulate), s1.tag.addr.eq(acc_addr),
        ]
        act_rdata = self.act_rdata
        if c.deep_pipeline:
            # ---- stage 1x: the ACT word registered as it arrives, stage 1 a cycle later ---
            # (the block RAM's clock-to-output met the lane select and the zero point.)
            s1x = Signal.like(s1, name="s1x")
            act_rdata = Signal.like(self.act_rdata, name="act_word")
            m.d.sync += [s1x.eq(s1), act_rdata.eq(self.act_rdata)]
            s1 = s1x
        str2 = Signal()
        sw2 = Signal()
        tag2 = Signal(tag)
        m.d.sync += [str2.eq(s1.stream), sw2.eq(s1.switch), tag2.eq(s1.tag)]

        def operands(lanes, width: int):
            """``x - x_zp`` of ``width`` lanes, 0 out of bounds, registered."""
            reg = Signal(data.ArrayLayout(X_SHAPE, width))
            for r in range(width):
                value = Mux(s1.x_signed, lanes[r].as_signed(), lanes[r]) - s1.x_zp
                m.d.sync += reg[r].eq(Mux(s1.inb, value[:X_SHAPE.width], 0))
            return reg

        def lane_groups(width: int):
            groups = c.act_bytes // width
            word = data.ArrayLayout(data.ArrayLayout(unsigned(8), width), groups)(act_rdata)
            return word[s1.lane_group] if groups > 1 else word[0]

        m.d.comb += [array.x.eq(operands(lane_groups(c.rows), c.rows)), array.x_valid.eq(str2),
                     array.x_switch.eq(sw2)]
        if c.dw_width:
            # The line buffers restart the cycle after the take, from st (the line buffers sit
            # by the array, far from the take logic); their stream comes two cycles later
            # (three in a deep pipeline).
            restart = Signal()
            m.d.sync += restart.eq(take & ld_dw)
            self._line_buffers(m, array, operands(lane_groups(c.cols), c.cols), str2,
                               st.out_w, restart)

        # ---- through the array: the tag of a position meets its psum ---------------------------
        # The psum of a position is out `lat` cycles after its x stage, or dw_latency - 8 in
        # depthwise mode (its last tap enters the array with the stream; see .array). Each mode
        # has its own tag line (modes never overlap: a change waits for an empty array).
        def tag_line(first_tag, length: int, name: str) -> list:
            line = [first_tag]
            for k in range(1, length + 1):
                line.append(Signal(tag, name=f"{name}_d{k}"))
                m.d.sync += line[-1].eq(line[-2])
            return line

        plain = tag_line(Mux(dw, 0, tag2.as_value()), lat, "mm_tag")
        if c.dw_width:
            dw_lat = array.dw_latency - 8 + 1      # + the register after the line buffers
            depthwise = tag_line(Mux(dw, tag2.as_value(), 0), dw_lat, "dw_tag")

        def at_psum(offset: int = 0):
            """The tag of the psum due ``-offset`` cycles from now."""
            if not c.dw_width:
                return tag(plain[lat + offset])
            return tag(Mux(dw, depthwise[dw_lat + offset], plain[lat + offset]))

        before = at_psum(-1 - c.deep_pipeline)
        with m.If(before.valid & before.accumulate):
            m.d.comb += [self.acc_ren.eq(1), self.acc_raddr.eq(before.addr)]

        # ---- psum (+ old ACC) → write register → ACC write ------------------------------------
        acc_word = data.ArrayLayout(signed(32), c.cols)(self.acc_rdata)
        wsum = Signal(data.ArrayLayout(signed(32), c.cols))
        wtag = Signal(tag)
        now = at_psum()
        m.d.sync += wtag.eq(now)
        if c.deep_pipeline:     # the old word registered as it arrives, 0 when not accumulating
            old_word = Signal(data.ArrayLayout(signed(32), c.cols))
            m.d.sync += old_word.eq(Mux(at_psum(-1).accumulate, self.acc_rdata, 0))
        for col in range(c.cols):
            old = old_word[col] if c.deep_pipeline else Mux(now.accumulate, acc_word[col], 0)
            m.d.sync += wsum[col].eq((array.psum[col] + old)[:32])
        with m.If(wtag.valid):
            m.d.comb += [self.acc_wen.eq(1), self.acc_waddr.eq(wtag.addr),
                         self.acc_wdata.eq(wsum), wrote_last.eq(wtag.last)]
        return m

    def _line_buffers(self, m: Module, array: SystolicArray, x, stream: Signal, out_w,
                      restart) -> None:
        """Depthwise inputs: ``xd[2]`` is the stream ``x``, ``xd[1]`` and ``xd[0]`` the stream
        delayed by ``D = out_w - 1`` and ``2·D`` cycles, through two circular line buffers, all
        three registered once more (the memories' outputs would otherwise feed the PE
        multipliers directly: the critical path). ``restart``: a depthwise instruction with
        ``out_w`` has started streaming (its first ``stream`` cycle is still to come)."""
        c = self.config
        delay = Signal(range(c.dw_width))
        no_delay = Signal()
        ptr = Signal(range(c.dw_width))
        ptr_next = Signal(range(c.dw_width))
        with m.If(restart):
            m.d.sync += [ptr.eq(0), delay.eq(out_w - 1), no_delay.eq(out_w == 1)]
        m.d.comb += ptr_next.eq(Mux(ptr + 1 >= delay, 0, ptr + 1))
        with m.If(stream):
            m.d.sync += ptr.eq(ptr_next)
        stages = [x]
        for i in range(2):
            mem = Memory(shape=data.ArrayLayout(X_SHAPE, c.cols), depth=c.dw_width, init=[])
            m.submodules[f"line_buffer_{i}"] = mem
            wr = mem.write_port()
            # Transparent, so that a delay of one (read address = write address) works too.
            rd = mem.read_port(transparent_for=(wr,))
            # Reading the next slot now gives, next cycle, the word written `delay` cycles
            # before that cycle.
            m.d.comb += [wr.en.eq(stream), wr.addr.eq(ptr), wr.data.eq(stages[-1]),
                         rd.addr.eq(ptr_next)]
            stages.append(Mux(no_delay, stages[-1], rd.data))
        for k, stage in enumerate(reversed(stages)):
            xd = Signal.like(stage, name=f"dw_x{k}")
            m.d.sync += xd.eq(stage)
            m.d.comb += array.xd[k].eq(xd)
