"""The MATMUL engine: one weight tile against a strided window of pixels on the systolic array.

Schedule (cycle 0 is the ``start`` cycle, ``R = rows``, ``L = SystolicArray.latency``)::

    1 .. R          read WGT[wgt_base + k]; one cycle later each word is shifted into the array
    R+1 .. R+M      window position j = 0 .. M-1 (oh-major): read its ACT word (if in bounds)
    +1              select the lane group, extend, subtract x_zp, zero if out of bounds → x reg
    +2              x enters the array
    +1+L            read ACC[acc_base + j] (when accumulating), to meet the psum
    +2+L            psum + old ACC word → write register
    +3+L            write ACC[acc_base + j]; ``done`` with the last write

so a MATMUL of ``M = out_h·out_w`` positions takes ``R + M + L + 3`` cycles, one position per
cycle in steady state. Window addresses and bounds come from adders only: ``ih``/``iw`` and the
ACT address advance by ``stride_*`` / ``step_*`` per position and restart at each output row.

A *depthwise* MATMUL (see :mod:`.array`, "Depthwise mode") loads ``config.dw_weight_words``
weight words, streams the ``(out_h + 2) × (out_w + 2)`` positions of the padded input once (stage
0 as above with stride 1; stage 1 takes the ``cols`` lanes of the lane group), and feeds the array
the stream itself plus two copies delayed by ``out_w - 1`` cycles each through two line buffers
(memories of ``dw_width`` words). A stream position ``(sy, sx)`` with ``sy, sx >= 2`` completes
output ``(sy - 2, sx - 2)``, written ``dw_latency - 8`` cycles after its x stage, so a depthwise
MATMUL takes ``dw_weight_words + (out_h + 2)(out_w + 2) + dw_latency - 8 + 3`` cycles.

Operands are 9-bit: ``x - x_zp`` and ``w - w_zp`` are exact for zero points inside the range of
their 8-bit type (int8 for weights and signed activations, uint8 for unsigned ones), which is
what ONNX quantization produces and what the compiler emits.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data
from amaranth.lib.memory import Memory

from codesign import isa

from .array import W_SHAPE, X_SHAPE, SystolicArray
from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["MatMulEngine"]

_COORD = signed(18)     # ih/iw: |ih0| < 2**12, oh·stride_h < 2**16


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
            **scratchpad_read(c, "act"),
            **scratchpad_read(c, "wgt"),
            **scratchpad_read(c, "acc"),
            **scratchpad_write(c, "acc"),
        })
        c = self.config
        self.latency = c.rows + (c.rows + c.cols - 1) + 3

    def elaborate(self, platform):
        m = Module()
        c = self.config
        m.submodules.array = array = SystolicArray(rows=c.rows, cols=c.cols,
                                                   depthwise=c.dw_width > 0)
        lat = array.latency

        insn = Signal(isa.MatMul)
        busy = Signal()
        first = Signal()            # first busy cycle
        m.d.comb += self.busy.eq(busy)

        # ---- weight load -----------------------------------------------------------------------
        wloading = Signal()         # WGT read in this cycle
        wload_first = Signal()      # the first one (first busy cycle)
        wload_run = Signal()        # the others
        wcount = Signal(range(c.rows + 2))
        wgt_addr = Signal(c.addr_bits(c.wgt_depth))

        # ---- window position counters ----------------------------------------------------------
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

        # Depthwise mode: latched from the instruction (constant 0 without the hardware for it).
        dw = Signal()
        wlast = Signal(range(c.rows + 2))    # index of the last weight word to read
        if c.dw_width:
            dw_insn = self.insn.depthwise
            m.d.comb += array.dw.eq(dw)
        else:
            dw_insn = 0
        with m.If(self.start):
            m.d.sync += [
                dw.eq(dw_insn),
                wlast.eq(Mux(dw_insn, c.dw_weight_words - 1, c.rows - 1)),
                insn.eq(self.insn),
                busy.eq(1),
                first.eq(1),
                wcount.eq(0),
                wgt_addr.eq(self.insn.wgt_base),
                oh.eq(0),
                ow.eq(0),
                last_oh.eq(self.insn.out_h - 1 + Mux(dw_insn, 2, 0)),
                last_ow.eq(self.insn.out_w - 1 + Mux(dw_insn, 2, 0)),
                ih.eq(self.insn.ih0),
                iw.eq(self.insn.iw0),
                row_addr.eq(self.insn.act_base),
                addr.eq(self.insn.act_base),
            ]

        with m.If(first):
            m.d.sync += first.eq(0)
            with m.If((insn.out_h == 0) | (insn.out_w == 0)):
                # Nothing to write: done at once (no memory access at all).
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.comb += wload_first.eq(1)
        m.d.comb += wloading.eq(wload_first | wload_run)

        with m.If(wloading):
            m.d.comb += [self.wgt_ren.eq(1), self.wgt_raddr.eq(wgt_addr)]
            m.d.sync += [wgt_addr.eq(wgt_addr + 1), wcount.eq(wcount + 1)]
            with m.If(wcount == wlast):
                m.d.sync += [wload_run.eq(0), streaming.eq(1)]
            with m.Else():
                m.d.sync += wload_run.eq(1)

        # Weight words arrive one cycle after their read: int8 lanes minus w_zp.
        w_arrive = Signal()
        m.d.sync += w_arrive.eq(wloading)
        wgt_word = data.ArrayLayout(signed(8), c.cols)(self.wgt_rdata)
        for col in range(c.cols):
            m.d.comb += array.w[col].eq((wgt_word[col] - insn.w_zp)[:W_SHAPE.width])
        m.d.comb += array.w_load.eq(w_arrive)

        # ---- stage 0: window position → ACT read -----------------------------------------------
        in_bounds = (ih >= 0) & (ih < insn.in_h) & (iw >= 0) & (iw < insn.in_w)
        row_end = ow == last_ow
        last = row_end & (oh == last_oh)
        with m.If(streaming):
            m.d.comb += [self.act_ren.eq(in_bounds), self.act_raddr.eq(Mux(in_bounds, addr, 0))]
            with m.If(row_end):
                m.d.sync += [
                    ow.eq(0),
                    iw.eq(insn.iw0),
                    oh.eq(oh + 1),
                    ih.eq(ih + insn.stride_h),
                    row_addr.eq(row_addr + insn.step_h),
                    addr.eq(row_addr + insn.step_h),
                ]
                with m.If(last):
                    m.d.sync += streaming.eq(0)
            with m.Else():
                m.d.sync += [
                    ow.eq(ow + 1),
                    iw.eq(iw + insn.stride_w),
                    addr.eq(addr + insn.step_w),
                ]

        # ---- stage 1: ACT word → x register ----------------------------------------------------
        # A depthwise stream position completes an output once two rows and two columns of the
        # padded input are in (oh/ow count stream positions there).
        produces = ~dw | ((oh >= 2) & (ow >= 2))
        str1 = Signal()
        v1 = Signal()
        inb1 = Signal()
        last1 = Signal()
        m.d.sync += [str1.eq(streaming), v1.eq(streaming & produces),
                     inb1.eq(streaming & in_bounds), last1.eq(streaming & last)]
        str2 = Signal()
        v2 = Signal()
        last2 = Signal()
        m.d.sync += [str2.eq(str1), v2.eq(v1), last2.eq(last1)]

        def operands(lanes, width: int):
            """``x - x_zp`` of ``width`` lanes, 0 out of bounds, registered."""
            reg = Signal(data.ArrayLayout(X_SHAPE, width))
            for r in range(width):
                value = Mux(insn.x_signed, lanes[r].as_signed(), lanes[r]) - insn.x_zp
                m.d.sync += reg[r].eq(Mux(inb1, value[:X_SHAPE.width], 0))
            return reg

        def lane_groups(width: int):
            groups = c.act_bytes // width
            word = data.ArrayLayout(data.ArrayLayout(unsigned(8), width), groups)(self.act_rdata)
            return word[insn.lane_group] if groups > 1 else word[0]

        m.d.comb += [array.x.eq(operands(lane_groups(c.rows), c.rows)), array.x_valid.eq(v2)]
        if c.dw_width:
            self._line_buffers(m, array, operands(lane_groups(c.cols), c.cols), str2)

        # ---- through the array: track `last`, read ACC one cycle before the psum ---------------
        # The psum of a position is out `lat` cycles after its x stage, or dw_latency - 8 in
        # depthwise mode (its last tap enters the array with the stream; see .array). Each mode
        # has its own tag line, so that tags of one mode still in flight are never read as the
        # other's.
        def tag_line(tag, length: int, name: str) -> list:
            line = [tag]
            for k in range(1, length + 1):
                line.append(Signal(name=f"{name}_d{k}"))
                m.d.sync += line[-1].eq(line[-2])
            return line

        plain = [tag_line(v2 & ~dw, lat, "mm_valid"), tag_line(last2 & ~dw, lat, "mm_last")]
        if c.dw_width:
            dw_lat = array.dw_latency - 8
            depthwise = [tag_line(v2 & dw, dw_lat, "dw_valid"),
                         tag_line(last2 & dw, dw_lat, "dw_last")]

        def at_psum(kind: int, offset: int = 0):
            """valid (kind 0) or last (kind 1) of the psum due ``-offset`` cycles from now."""
            tag = plain[kind][lat + offset]
            return tag | depthwise[kind][dw_lat + offset] if c.dw_width else tag

        acc_bits = c.addr_bits(c.acc_depth)
        racc = Signal(acc_bits)
        wacc = Signal(acc_bits)
        with m.If(self.start):
            m.d.sync += [racc.eq(self.insn.acc_base), wacc.eq(self.insn.acc_base)]
        with m.If(at_psum(0, -1)):
            m.d.comb += [self.acc_ren.eq(insn.accumulate),
                         self.acc_raddr.eq(Mux(insn.accumulate, racc, 0))]
            m.d.sync += racc.eq(racc + 1)

        # ---- psum (+ old ACC) → write register → ACC write ------------------------------------
        acc_word = data.ArrayLayout(signed(32), c.cols)(self.acc_rdata)
        wsum = Signal(data.ArrayLayout(signed(32), c.cols))
        wvalid = Signal()
        wlast = Signal()
        m.d.sync += [wvalid.eq(at_psum(0)), wlast.eq(at_psum(1))]
        for col in range(c.cols):
            old = Mux(insn.accumulate, acc_word[col], 0)
            m.d.sync += wsum[col].eq((array.psum[col] + old)[:32])
        with m.If(wvalid):
            m.d.comb += [self.acc_wen.eq(1), self.acc_waddr.eq(wacc), self.acc_wdata.eq(wsum)]
            m.d.sync += wacc.eq(wacc + 1)
            with m.If(wlast):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        return m

    def _line_buffers(self, m: Module, array: SystolicArray, x, stream: Signal) -> None:
        """Depthwise inputs: ``xd[2]`` is the stream ``x``, ``xd[1]`` and ``xd[0]`` the stream
        delayed by ``D = out_w - 1`` and ``2·D`` cycles, through two circular line buffers."""
        c = self.config
        delay = Signal(range(c.dw_width))
        ptr = Signal(range(c.dw_width))
        ptr_next = Signal(range(c.dw_width))
        with m.If(self.start):
            m.d.sync += [delay.eq(self.insn.out_w - 1), ptr.eq(0)]
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
            stages.append(Mux(delay == 0, stages[-1], rd.data))
        m.d.comb += [array.xd[2].eq(stages[0]), array.xd[1].eq(stages[1]),
                     array.xd[0].eq(stages[2])]
