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

Operands are 9-bit: ``x - x_zp`` and ``w - w_zp`` are exact for zero points inside the range of
their 8-bit type (int8 for weights and signed activations, uint8 for unsigned ones), which is
what ONNX quantization produces and what the compiler emits.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

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
        m.submodules.array = array = SystolicArray(rows=c.rows, cols=c.cols)
        lat = array.latency

        insn = Signal(isa.MatMul)
        busy = Signal()
        first = Signal()            # first busy cycle
        m.d.comb += self.busy.eq(busy)

        # ---- weight load -----------------------------------------------------------------------
        wloading = Signal()         # WGT read in this cycle
        wload_first = Signal()      # the first one (first busy cycle)
        wload_run = Signal()        # the others
        wcount = Signal(range(c.rows + 1))
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

        with m.If(self.start):
            m.d.sync += [
                insn.eq(self.insn),
                busy.eq(1),
                first.eq(1),
                wcount.eq(0),
                wgt_addr.eq(self.insn.wgt_base),
                oh.eq(0),
                ow.eq(0),
                last_oh.eq(self.insn.out_h - 1),
                last_ow.eq(self.insn.out_w - 1),
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
            with m.If(wcount == c.rows - 1):
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
        v1 = Signal()
        inb1 = Signal()
        last1 = Signal()
        m.d.sync += [v1.eq(streaming), inb1.eq(streaming & in_bounds), last1.eq(streaming & last)]
        groups = c.act_bytes // c.rows
        act_word = data.ArrayLayout(data.ArrayLayout(unsigned(8), c.rows), groups)(self.act_rdata)
        lanes = act_word[insn.lane_group] if groups > 1 else act_word[0]
        x_reg = Signal(data.ArrayLayout(X_SHAPE, c.rows))
        v2 = Signal()
        last2 = Signal()
        m.d.sync += [v2.eq(v1), last2.eq(last1)]
        for r in range(c.rows):
            byte = lanes[r]
            value = Mux(insn.x_signed, byte.as_signed(), byte) - insn.x_zp
            m.d.sync += x_reg[r].eq(Mux(inb1, value[:X_SHAPE.width], 0))
        m.d.comb += [array.x.eq(x_reg), array.x_valid.eq(v2)]

        # ---- through the array: track `last`, read ACC one cycle before the psum ---------------
        valid_line = [v2]
        last_line = [last2]
        for k in range(1, lat + 1):
            v, lst = Signal(name=f"mm_valid_d{k}"), Signal(name=f"mm_last_d{k}")
            m.d.sync += [v.eq(valid_line[-1]), lst.eq(last_line[-1])]
            valid_line.append(v)
            last_line.append(lst)

        acc_bits = c.addr_bits(c.acc_depth)
        racc = Signal(acc_bits)
        wacc = Signal(acc_bits)
        with m.If(self.start):
            m.d.sync += [racc.eq(self.insn.acc_base), wacc.eq(self.insn.acc_base)]
        with m.If(valid_line[lat - 1]):
            m.d.comb += [self.acc_ren.eq(insn.accumulate),
                         self.acc_raddr.eq(Mux(insn.accumulate, racc, 0))]
            m.d.sync += racc.eq(racc + 1)

        # ---- psum (+ old ACC) → write register → ACC write ------------------------------------
        acc_word = data.ArrayLayout(signed(32), c.cols)(self.acc_rdata)
        wsum = Signal(data.ArrayLayout(signed(32), c.cols))
        wvalid = Signal()
        wlast = Signal()
        m.d.sync += [wvalid.eq(valid_line[lat]), wlast.eq(last_line[lat])]
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
