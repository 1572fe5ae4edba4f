"""ELTWISE engine: a weighted sum or the product of two ACT operands, lane by lane, into ACC.

Semantics (:mod:`codesign.isa`): for ``i < count`` and ``c < cols``, with ``a``/``b`` lane
``lane_group*cols + c`` of ``ACT[a_base + i]`` / ``ACT[b_base + j]`` (int8 or uint8 per
``a_signed`` / ``b_signed``; ``j = i mod b_period``, or ``i`` when ``b_period = 0``)::

    mul = 0:  ACC[acc_base + i][c] = (a - a_zp)*a_mult + (b - b_zp)*b_mult      (int32)
    mul = 1:  ACC[acc_base + i][c] = (a - a_zp)*(b - b_zp)                      (int32)

The single ACT read port reads ``a_i`` and ``b_j`` in consecutive cycles; one multiplier per lane
serves both operands. In a sum, each difference is multiplied by its operand's ``mult``; in a
product, ``a``'s difference is multiplied by 0 and ``b``'s by ``a``'s difference (held in the
multiplier's operand register from the cycle before), so the schedule is the same. Schedule
(cycle 0 is the ``start`` cycle)::

    1, 2, ..., 2n       read ACT[a_base + i] (odd cycles) and ACT[b_base + i] (even cycles)
    +1                  register the read word (block RAM read data feeds only a register)
    +2                  select the lane group, extend, subtract the operand's zero point → d
    +3                  d · (a_mult or b_mult) → p; an a product is held for its b partner
    +4                  write ACC[acc_base + i] = p_a + p_b; ``done`` with the last write

so an ELTWISE of ``n = count`` elements takes ``2n + 4`` cycles (1 if ``count = 0``). A deep
pipeline (:attr:`codesign.isa.HwConfig.deep_pipeline`) drives the shared ports from registers
(the read a cycle later; the write port fans out to every block RAM of ACC) and takes
``2n + 6``. Nothing is
wide enough to wrap: ``|x - zp| <= 511`` and ``|mult| <= 2**15``, so each product fits 25 bits
and the sum 26; a product ``|a - a_zp|·|b - b_zp| <= 511**2`` fits 19 — the int32 result is
exact.

``acc_base`` may be anything (ACC is not read), and the operands may overlap each other.
"""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from codesign import isa

from .dsp import registered_product
from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["EltwiseEngine"]

#: ``x - zp`` for 8-bit ``x`` and a 9-bit signed zero point: [-383, 511].
DIFF_SHAPE = signed(11)
#: An operand's multiplier (``a_mult`` / ``b_mult``) and its product with a difference.
MULT_SHAPE = isa.Eltwise.members["a_mult"]
PRODUCT_SHAPE = signed(DIFF_SHAPE.width + MULT_SHAPE.width)


class EltwiseEngine(HwComponent):
    """Executes ELTWISE (see :mod:`codesign.isa` and docs/rtl-contract.md).

    Parameters
    ----------
    config : HwConfig
        The NPU instance; one ACC word holds ``cols`` int32 lanes.

    Attributes
    ----------
    start, insn, busy, done
        Engine interface (:func:`~codesign.rtl.ports.engine_control`) for an ``isa.Eltwise``;
        the last ACC word is written in the ``done`` cycle.
    act_raddr, act_ren, act_rdata
        ACT read port (two reads per element).
    acc_waddr, acc_wen, acc_wdata
        ACC write port.

    All memory-port outputs are 0 while ``busy`` is low.
    """

    def __init__(self, config: isa.HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(isa.Eltwise),
            **scratchpad_read(c, "act"),
            **scratchpad_write(c, "acc"),
        })

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        aw = c.addr_bits(c.act_depth)

        insn = Signal(isa.Eltwise)
        busy = Signal()
        first = Signal()            # first busy cycle
        no_work = Signal()          # count == 0
        m.d.comb += self.busy.eq(busy)

        # ---- reads: a_i, b_i, a_{i+1}, ... -----------------------------------------------------
        reading = Signal()
        read_b = Signal()           # this cycle reads the b operand
        left = Signal(unsigned(16))  # elements whose b read is still to come
        a_addr = Signal(aw)
        b_addr = Signal(aw)
        b_pos = Signal.like(self.insn.b_period)   # j = i mod b_period of the next b read

        # While idle, the registers follow the instruction bus (it is valid in the start cycle,
        # and garbage until then): the start pulse, late in its cycle (the controller's dispatch
        # decision), then only sets the state bits.
        with m.If(~busy):
            m.d.sync += [
                insn.eq(self.insn),
                no_work.eq(self.insn.count == 0),   # done comes from registers only
                read_b.eq(0),
                left.eq(self.insn.count),
                a_addr.eq(self.insn.a_base),
                b_addr.eq(self.insn.b_base),
                b_pos.eq(0),
            ]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), first.eq(1), reading.eq(self.insn.count != 0)]
        with m.If(first):
            m.d.sync += first.eq(0)
            with m.If(no_work):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)

        last = Signal()
        m.d.comb += last.eq(read_b & (left == 1))
        # The read of this cycle: on the port, or a cycle later from its registers.
        issued = [reading, reading & read_b, reading & last]
        if c.deep_pipeline:
            ren, raddr = Signal(name="ren_port"), Signal(aw, name="raddr_port")
            m.d.sync += [ren.eq(reading), raddr.eq(Mux(reading, Mux(read_b, b_addr, a_addr), 0))]
            m.d.comb += [self.act_ren.eq(ren), self.act_raddr.eq(raddr)]
            late = [Signal(name=f"{name}_port") for name in ("v", "b", "last")]
            m.d.sync += [reg.eq(now) for reg, now in zip(late, issued, strict=True)]
            issued = late
        with m.If(reading):
            if not c.deep_pipeline:
                m.d.comb += [self.act_ren.eq(1), self.act_raddr.eq(Mux(read_b, b_addr, a_addr))]
            m.d.sync += read_b.eq(~read_b)
            with m.If(read_b):
                m.d.sync += left.eq(left - 1)
                # A broadcast b starts over after b_period words.
                with m.If((insn.b_period != 0) & (b_pos + 1 == insn.b_period)):
                    m.d.sync += [b_addr.eq(insn.b_base), b_pos.eq(0)]
                with m.Else():
                    m.d.sync += [b_addr.eq(b_addr + 1), b_pos.eq(b_pos + 1)]
                with m.If(left == 1):
                    m.d.sync += reading.eq(0)
            with m.Else():
                m.d.sync += a_addr.eq(a_addr + 1)

        # ---- stage 0: register the read word (block RAM read data feeds only a register) ------
        v0, b0, last0 = Signal(), Signal(), Signal()
        m.d.sync += [v0.eq(issued[0]), b0.eq(issued[1]), last0.eq(issued[2])]
        word = Signal.like(self.act_rdata, name="word", reset_less=True)
        m.d.sync += word.eq(self.act_rdata)

        # ---- stage 1: select the lane group, subtract the zero point ---------------------------
        v1, b1, last1 = Signal(), Signal(), Signal()
        m.d.sync += [v1.eq(v0), b1.eq(b0), last1.eq(last0)]
        groups = c.act_bytes // c.cols
        act_word = data.ArrayLayout(data.ArrayLayout(unsigned(8), c.cols), groups)(word)
        lanes = act_word[insn.lane_group] if groups > 1 else act_word[0]
        is_signed = Mux(b1, insn.b_signed, insn.a_signed)
        zp = Mux(b1, insn.b_zp, insn.a_zp)
        # The difference and the multiplier (a's or b's) are the operands of stage 2's multiply,
        # registered by it (:func:`~codesign.rtl.dsp.registered_product`). In a product the
        # multiplier of b's difference is a's, registered the cycle before (a's own is 0).
        diff = Signal(data.ArrayLayout(DIFF_SHAPE, c.cols))
        diff_reg = Signal(data.ArrayLayout(DIFF_SHAPE, c.cols), reset_less=True)
        weight = Mux(b1, insn.b_mult, insn.a_mult)
        m.d.sync += diff_reg.eq(diff)

        # ---- stage 2: multiply ----------------------------------------------------------------
        v2, b2, last2 = Signal(), Signal(), Signal()
        m.d.sync += [v2.eq(v1), b2.eq(b1), last2.eq(last1)]
        prod = Signal(data.ArrayLayout(PRODUCT_SHAPE, c.cols))
        for lane in range(c.cols):
            byte = lanes[lane]
            m.d.comb += diff[lane].eq(Mux(is_signed, byte.as_signed(), byte) - zp)
            mult = Signal(MULT_SHAPE, name=f"lane_{lane}_mult")
            m.d.comb += mult.eq(Mux(insn.mul, Mux(b1, diff_reg[lane], 0), weight))
            m.d.comb += prod[lane].eq(registered_product(
                m, diff[lane], mult, width=PRODUCT_SHAPE.width, cell=c.mult_cell,
                name=f"lane_{lane}", a_reg=diff_reg[lane]))

        # ---- stage 3: add the a product held from the previous cycle, write ACC ------------------
        v3, b3, last3 = Signal(), Signal(), Signal()
        m.d.sync += [v3.eq(v2), b3.eq(b2), last3.eq(last2)]
        held = Signal(data.ArrayLayout(PRODUCT_SHAPE, c.cols))
        acc_addr = Signal(c.addr_bits(c.acc_depth))
        with m.If(~busy):
            m.d.sync += acc_addr.eq(self.insn.acc_base)
        with m.If(v3 & ~b3):
            m.d.sync += held.eq(prod)
        # .eq sign-extends each (26-bit) sum to its int32 lane.
        sums = [held[lane] + prod[lane] for lane in range(c.cols)]
        if c.deep_pipeline:
            self._write_from_registers(m, v3 & b3, last3, acc_addr, sums, busy)
            return m
        with m.If(v3 & b3):
            acc_word = data.ArrayLayout(signed(32), c.cols)(self.acc_wdata)
            m.d.comb += [self.acc_wen.eq(1), self.acc_waddr.eq(acc_addr)]
            m.d.comb += [acc_word[lane].eq(sums[lane]) for lane in range(c.cols)]
            m.d.sync += acc_addr.eq(acc_addr + 1)
            with m.If(last3):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
        return m

    def _write_from_registers(self, m, write, last, acc_addr, sums, busy):
        """Stage 4 of a deep pipeline: the ACC write registered (``write`` and ``last`` of the
        stage before, its address and lane sums), so that the port is driven by registers,
        which hold 0 when there is no write; ``done`` with the write."""
        c = self.config
        wen, wlast, waddr = Signal(name="wen4"), Signal(name="last4"), Signal.like(acc_addr)
        wdata = Signal(data.ArrayLayout(signed(32), c.cols), name="wdata4")
        m.d.sync += [wen.eq(0), wlast.eq(0), waddr.eq(0), wdata.eq(0)]
        with m.If(write):
            m.d.sync += [wen.eq(1), wlast.eq(last), waddr.eq(acc_addr)]
            m.d.sync += [wdata[lane].eq(sums[lane]) for lane in range(c.cols)]
            m.d.sync += acc_addr.eq(acc_addr + 1)
        m.d.comb += [self.acc_wen.eq(wen), self.acc_waddr.eq(waddr), self.acc_wdata.eq(wdata)]
        with m.If(wlast):
            m.d.comb += self.done.eq(1)
            m.d.sync += busy.eq(0)
