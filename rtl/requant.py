"""Per-channel requantization: int32 accumulators → 8-bit activations, and the REQUANT engine.

:class:`Requantizer` is the integer datapath of :func:`codesign.isa.requantize` (DESIGN.md §3.1),
``lanes`` channels at a time, pipelined over :data:`Requantizer.latency` stages:

====  ============================================================================================
 1    register ``acc`` (it comes straight from the ACC block RAM's read port)
 2    ``a = wrap_int32(acc + bias)``
 3    sign and magnitude ``|a|`` (< 2**31 + 1)
 4    normalize: leading-zero count ``lz`` and ``|a| << lz`` by a 16/8/4/2/1 shifter cascade
      (with ``deep``, stage 4a before it registers the 16 and 8 steps)
 5    round the normalized magnitude to 24 significant bits (RNE) → ``a24 · 2**ea``
 6    the partial products of ``a24 · mult`` (16-bit chunks), registered
 7    their sum, the exact 24×24 product ``p``
 8    round ``p`` to 24 bits (RNE) → ``p24``, and the net exponent ``right``
 9    shift ``p24`` by ``right`` (keeping 25 fraction bits) or left by ``-right``
10    ``r = RNE(…)``, saturated to :data:`_SAT`
11    ``v = ±r + y_zp``
12    ``clamp(v, qmin, qmax)``, low 8 bits
====  ============================================================================================

The per-channel parameters and the per-instruction scalars are not carried down the pipeline:
the REQUANT engine holds them for the whole instruction (a register copy of the PRM word, which
stays on the PRM read port: only this engine reads PRM), and each stage picks its parameter of
its channel. With fewer lanes than columns (:attr:`codesign.isa.HwConfig.requant_groups` > 1)
the ``groups`` lane groups of an ACC word take turns; only the turn number travels with the
data.

With ``steps > 1`` (:attr:`codesign.isa.HwConfig.requant_steps`), stage 6 takes ``steps`` cycles
and one multiplier a quarter (``steps = 4``: 16×16) or half (``steps = 2``: 24×16) the size: the
product is accumulated in stage 7 from the registered partial products of 16-bit chunks of
``a24`` and ``mult``, so that a small FPGA spends one or two DSP blocks per lane instead of four.
Stage 5 then holds its registers until the next input, which may come only ``steps`` cycles
after the previous one.

Stages are split wherever one cycle held a path that limited the NPU's fmax on ECP5 (block RAM
read data straight into an adder or a multiplier, a multiplier straight into the adders of its
partial products, the variable shift with the sticky OR and the rounding, sign + zero point +
clamp: four carry chains; with ``deep``, :attr:`codesign.isa.HwConfig.deep_pipeline`, also the
five steps of the normalize, over stages 4a and 4). Stage 10 saturates the magnitude at
``2**10`` rather than at ``2**31`` as :func:`isa.requantize` does: ``y_zp``, ``qmin`` and
``qmax`` are 9-bit, so any ``|r| >= 512`` already lands on the same clamp bound, and the narrow
value keeps the last stages small.
"""

from __future__ import annotations

import itertools

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from codesign import isa

from .dsp import check_mult_cell, registered_product
from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["Requantizer", "RequantEngine"]

_M = isa.MULT_BITS
#: Saturation bound of the rounded magnitude (any value >= 512 clamps like 2**31 would).
_SAT = 1 << 10


class Requantizer(wiring.Component):
    """``lanes`` parallel requantizers, pipelined (one vector every ``steps`` cycles).

    Parameters
    ----------
    lanes
        Number of channels processed in parallel. 1..64.
    groups
        Number of lane groups taking turns: ``prm`` holds ``lanes · groups`` channels.
    steps
        Cycles per multiply: 1, 2 or 4 (see the module docstring). ``valid`` may be high at
        most once in any ``steps`` consecutive cycles.
    deep
        Normalize over two stages (4a and 4) instead of one: one cycle more.

    Attributes
    ----------
    acc : In(ArrayLayout(signed(32), lanes))
    turn : In(range(groups))
        The lane group of ``acc``: lane ``i`` is channel ``turn · lanes + i`` (only with
        ``groups > 1``).
    valid : In(1)
        ``acc`` and ``turn`` are sampled in the cycle ``valid`` is high.
    prm : In(ArrayLayout(isa.PRM_LANE, lanes · groups))
        Per-channel ``bias``, ``mult``, ``shift``.
    y_zp, qmin, qmax : In(signed(9))
        ``prm`` and these must not change from an input's ``valid`` to its ``q_valid``.
    q : Out(ArrayLayout(unsigned(8), lanes))
        Low 8 bits of ``clamp(isa.requantize(wrap_int32(acc + bias), mult, shift) + y_zp,
        qmin, qmax)`` (``min(max(v, qmin), qmax)``) of the inputs sampled :attr:`latency`
        cycles earlier.
    q_valid : Out(1)
    latency : int
        Cycles from input to output: ``11 + steps`` (``12 + steps`` with ``deep``).
    """

    def __init__(self, *, lanes: int, groups: int = 1, steps: int = 1,
                 mult_cell: str = "inferred", deep: bool = False):
        if not isinstance(lanes, int) or not 1 <= lanes <= 64:
            raise ValueError(f"lanes must be an int in 1..64, not {lanes!r}")
        if not isinstance(groups, int) or not 1 <= groups <= 64 // lanes:
            raise ValueError(f"groups must be an int in 1..{64 // lanes}, not {groups!r}")
        if steps not in (1, 2, 4):
            raise ValueError(f"steps must be 1, 2 or 4, not {steps!r}")
        self.lanes = lanes
        self.groups = groups
        self.steps = steps
        if not isinstance(deep, bool):
            raise ValueError(f"deep must be a bool, not {deep!r}")
        self.mult_cell = check_mult_cell(mult_cell)
        self.deep = deep
        self.latency = 11 + steps + deep
        super().__init__({
            "acc": In(data.ArrayLayout(signed(32), lanes)),
            **({"turn": In(range(groups))} if groups > 1 else {}),
            "valid": In(1),
            "prm": In(data.ArrayLayout(isa.PRM_LANE, lanes * groups)),
            "y_zp": In(signed(9)),
            "qmin": In(signed(9)),
            "qmax": In(signed(9)),
            "q": Out(data.ArrayLayout(unsigned(8), lanes)),
            "q_valid": Out(1),
        })

    def elaborate(self, platform):
        m = Module()

        def reg(value, name, shape=None, en=None):
            """A pipeline register holding ``value`` (operands need no reset); with ``en``, it
            loads only in the cycles ``en`` is high."""
            sig = Signal(shape if shape is not None else value.shape(), name=name,
                         reset_less=True)
            if en is None:
                m.d.sync += sig.eq(value)
            else:
                with m.If(en):
                    m.d.sync += sig.eq(value)
            return sig

        def rne24(keep, round_bit, sticky):
            """The 24-bit ``keep`` rounded half-to-even given the first dropped bit and the OR of
            the rest, as (24-bit mantissa, carry out): on a carry out the mantissa is
            ``2**23`` (the exponent grows by one). ``keep + 1`` is computed alongside the
            round and sticky bits, which only pick it."""
            inc = round_bit & (sticky | keep[0])
            carry = keep.all()
            up = Mux(carry, 1 << (_M - 1), (keep + 1)[:_M])
            return Mux(inc, up, keep), inc & carry

        # Valid bits: valid_s<s> is high when the stage-s registers hold an input; stage 5
        # holds its registers for the `steps` cycles of the multiply, mult_phase<k> being high
        # in its k-th (its 0th is valid_s5); with deep, valid_s4a follows valid_s3.
        S = self.steps
        names = [f"mult_phase{t - 5}" if 5 < t < 5 + S else f"valid_s{t if t <= 5 else t - S + 1}"
                 for t in range(1, self.latency - self.deep + 1)]
        if self.deep:
            names.insert(names.index("valid_s3") + 1, "valid_s4a")
        chain, valid = {}, self.valid
        for name in names:
            chain[name] = Signal(name=name)
            m.d.sync += chain[name].eq(valid)
            valid = chain[name]
        m.d.comb += self.q_valid.eq(valid)
        phase = [chain["valid_s5"]] + [chain[f"mult_phase{k}"] for k in range(1, S)]
        # Stage 5 holds its input while stage 6 multiplies it over several cycles.
        hold5 = chain["valid_s4"] if S > 1 else None

        # The turn travels to stage 5, where the last parameter (mult) is picked.
        turns = data.ArrayLayout(data.ArrayLayout(isa.PRM_LANE, self.lanes),
                                 self.groups)(self.prm)
        if self.groups > 1:
            turn = [self.turn]
            for s in range(1, 6):
                prev = reg(turn[-1], "turn_s4a") if s == 4 and self.deep else turn[-1]
                turn.append(reg(prev, f"turn_s{s}", en=hold5 if s == 5 else None))

        def param(i, s):
            """The parameters of lane ``i``'s channel for the input in stage ``s``."""
            return (turns[turn[s]] if self.groups > 1 else turns[0])[i]

        # qmin > qmax (then every output is qmax), registered: the bounds are steady for the
        # whole instruction, so this is never stale when an input reaches the clamp.
        bounds_crossed = reg(self.qmin > self.qmax, "bounds_crossed")

        for i in range(self.lanes):
            def lreg(value, name, shape=None, en=None, i=i):
                return reg(value, f"lane{i}_{name}", shape, en)

            # Stage 1: register the input (straight from a block RAM's read port).
            acc1 = lreg(self.acc[i], "s1_acc", signed(32))

            # Stage 2: add the bias, wrapping to int32.
            a = lreg((acc1 + param(i, 1).bias)[:32], "s2_a", signed(32))

            # Stage 3: sign/magnitude. |-2**31| = 2**31 still fits 32 unsigned bits.
            neg3 = lreg(a[31], "s3_neg")
            mag3 = lreg(Mux(a[31], -a, a)[:32], "s3_mag", unsigned(32))

            # Stage 4: normalize so that bit 31 is set (unless |a| = 0), counting the shift.
            # With deep, stage 4a registers the first two steps: five dependent steps (a zero
            # test, then a 32-bit mux) in one cycle limited the NPU's fmax on the ECP5.
            norm, lz_bits = mag3, []
            for k in (16, 8, 4, 2, 1):
                if k == 4 and self.deep:
                    neg3 = lreg(neg3, "s4a_neg")
                    norm = lreg(norm, "s4a_norm", unsigned(32))
                    lz_bits = [lreg(b, f"s4a_lz{j}") for j, b in enumerate(lz_bits)]
                top_zero = norm[32 - k:] == 0
                lz_bits.append(top_zero)
                norm = Mux(top_zero, (norm << k)[:32], norm)
            neg4 = lreg(neg3, "s4_neg")
            norm4 = lreg(norm, "s4_norm", unsigned(32))
            lz4 = lreg(Cat(*reversed(lz_bits)), "s4_lz", unsigned(5))  # 0..31; |a| = 0 → 31

            # Stage 5: round to 24 significant bits: a24 · 2**ea with ea = (32 - lz) - 24 + ovf.
            # For |a| < 2**24 the 8 dropped bits are zero and a24 = |a| << (24 - n) exactly.
            a24, ovf_a = rne24(norm4[8:], norm4[7], norm4[:7] != 0)
            neg5 = lreg(neg4, "s5_neg", en=hold5)
            # The multiply's operands (multiplier cells register stage 4's themselves).
            cells = S == 1 and self.mult_cell != "inferred"
            if not cells:
                a24_5 = lreg(a24, "s5_a24", unsigned(_M), hold5)
                mult5 = param(i, 5).mult
            # e1 = shift - ea; the final right shift is e1 - ep (ep from stage 8). Both values
            # of the rounding carry ovf_a are computed alongside the rounding.
            e1 = Signal(signed(10), name=f"lane{i}_s5_e1_next")
            m.d.comb += e1.eq(param(i, 4).shift - 8 + lz4)
            e1_5 = lreg(Mux(ovf_a, e1 - 1, e1), "s5_e1", signed(10), hold5)

            # Stages 6 and 7: the exact 48-bit product; its partial products are registered
            # (stage 6) before they are summed or accumulated (stage 7).
            neg6, e1_6 = lreg(neg5, "s6_neg"), lreg(e1_5, "s6_e1")
            neg7 = lreg(neg6, "s7_neg")
            if cells:
                p7 = self._cell_product(m, lreg, a24, param(i, 4).mult, f"lane{i}")
            elif S == 1:
                p7 = self._product(m, lreg, a24_5, mult5)
            else:
                p7 = self._multiply(m, a24_5, mult5, phase, chain["valid_s6"],
                                    f"lane{i}_s7_p")
            # The net right shift is right = shift - ea - ep = e1 - 23 - d, where the product's
            # exponent ep = 23 + d and d = top + ovf_p in {0, 1, 2} is only known in stage 8,
            # after the product's rounding. What stage 9 needs of right is computed in stage 7
            # for each d, so that stage 8 only picks one (no subtractor or comparator after the
            # rounding's carry chain); the comparisons are of e1 with constants, beside the
            # narrow subtractions, not after them:
            #   going_right = right > 0; rs = min(right, 25) (any right >= 25 rounds every
            #   p24 < 2**24 to 0); left = -right, 0..34 (any nonzero p24 shifted left by >= 10
            #   saturates: left_big). With mult in its documented range p24 >= 2**23 and every
            #   left shift saturates, but the datapath agrees with isa.requantize for any mult.
            shifts7 = []
            for d in range(3):
                bias = _M - 1 + d           # right = e1_6 - bias
                shifts7.append(Cat(
                    lreg(e1_6 > bias, f"s7_right{d}"),
                    lreg(Mux(e1_6 > bias + 25, 25, (e1_6[:5] - bias)[:5]), f"s7_rs{d}",
                         unsigned(5)),
                    lreg((bias - e1_6[:4])[:4], f"s7_left{d}", unsigned(4)),
                    lreg(e1_6 <= bias - 10, f"s7_left_big{d}")))

            # Stage 8: round the product to 24 bits, dropping 24 bits if bit 47 is set, else 23.
            top = p7[2 * _M - 1]
            keep = Mux(top, p7[_M:2 * _M], p7[_M - 1:2 * _M - 1])
            round_bit = Mux(top, p7[_M - 1], p7[_M - 2])
            sticky = Mux(top, p7[:_M - 1] != 0, p7[:_M - 2] != 0)
            p24, ovf_p = rne24(keep, round_bit, sticky)
            neg8 = lreg(neg7, "s8_neg")
            p24_8 = lreg(p24, "s8_p24", unsigned(_M))
            shift8 = Mux(ovf_p, Mux(top, shifts7[2], shifts7[1]),
                         Mux(top, shifts7[1], shifts7[0]))
            going_right8 = lreg(shift8[0], "s8_right")
            rs8 = lreg(shift8[1:6], "s8_rs", unsigned(5))
            left8 = lreg(shift8[6:10], "s8_left", unsigned(4))
            left_big8 = lreg(shift8[10], "s8_left_big")

            # Stage 9: the shift, right (keeping 25 fraction bits for the round/sticky bits)
            # or left.
            frac9 = lreg((Cat(Const(0, 25), p24_8) >> rs8)[:25 + _M], "s9_frac",
                         unsigned(25 + _M))
            r_left = (p24_8 << left8)[:_M + 16]
            left_sat9 = lreg((p24_8 != 0) & (left_big8 | (r_left >= _SAT)), "s9_left_sat")
            r_left9 = lreg(Mux(r_left >= _SAT, _SAT, r_left), "s9_r_left", range(_SAT + 1))
            going_right9 = lreg(going_right8, "s9_right")
            neg9 = lreg(neg8, "s9_neg")

            # Stage 10: round the right-shifted value (RNE) and saturate to _SAT = 2**10: only
            # the low 10 integer bits take the rounding increment; any higher bit saturates.
            low = frac9[25:35]
            r_low = low + (frac9[24] & ((frac9[:24] != 0) | low[0]))    # 11 bits
            sat = (frac9[35:] != 0) | r_low[10]
            r = Signal(range(_SAT + 1), name=f"lane{i}_s10_r_next")
            with m.If(going_right9):
                m.d.comb += r.eq(Mux(sat, _SAT, r_low))
            with m.Else():
                m.d.comb += r.eq(Mux(left_sat9, _SAT, r_left9))
            neg10 = lreg(neg9, "s10_neg")
            r10 = lreg(r, "s10_r")

            # Stage 11: apply the sign and the zero point (two adders side by side, one picked).
            v11 = lreg(Mux(neg10, self.y_zp - r10, self.y_zp + r10), "s11_v", signed(12))

            # Stage 12: clamp, min(max(v, qmin), qmax), with both comparisons side by side:
            # the result is qmax when v > qmax or qmin > qmax (then max(v, qmin) > qmax too).
            to_max = (v11 > self.qmax) | bounds_crossed
            to_min = v11 < self.qmin
            m.d.sync += self.q[i].eq(Mux(to_max, self.qmax, Mux(to_min, self.qmin, v11))[:8])

        return m

    @staticmethod
    def _product(m, lreg, a24, mult):
        """``a24 · mult`` in two cycles: the four partial products of 16-bit chunks (low 16
        bits, high 8) registered, then summed (:meth:`_sum`)."""
        a_lo, a_hi, m_lo, m_hi = a24[:16], a24[16:], mult[:16], mult[16:]
        return Requantizer._sum(lreg, {
            "ll": lreg(a_lo * m_lo, "s6_ll", unsigned(32)),
            "lh": lreg(a_lo * m_hi, "s6_lh", unsigned(_M)),
            "hl": lreg(a_hi * m_lo, "s6_hl", unsigned(_M)),
            "hh": lreg(a_hi * m_hi, "s6_hh", unsigned(16))})

    @staticmethod
    def _sum(lreg, parts):
        """The 48-bit product from its partial products (``"ll"`` of the low chunks, ``"lh"``
        of a's low and mult's high one, ...). The low and high products do not overlap, so the
        sum is one concatenation and two additions."""
        return lreg(Cat(parts["ll"], parts["hh"]) + ((parts["lh"] + parts["hl"]) << 16),
                    "s7_p", unsigned(2 * _M))

    def _cell_product(self, m, lreg, a24, mult, name):
        """:meth:`_product` on multiplier cells (:func:`~codesign.rtl.dsp.registered_product`)
        from the operands one stage earlier: the cells' operand registers stand for stage 5's
        ``a24`` and ``mult``, their product registers for stage 6's partial products."""
        chunks = {"lo": (0, 16), "hi": (16, _M)}
        parts = {}
        for (ka, (a0, a1)), (kb, (b0, b1)) in itertools.product(chunks.items(), repeat=2):
            width = (a1 - a0) + (b1 - b0)
            # The chunks are unsigned: a zero sign bit makes them the cell's signed operands.
            product = registered_product(
                m, Cat(a24[a0:a1], Const(0, 1)).as_signed(),
                Cat(mult[b0:b1], Const(0, 1)).as_signed(), width=width + 1,
                cell=self.mult_cell, name=f"{name}_s6_{ka[0]}{kb[0]}")
            parts[ka[0] + kb[0]] = product[:width]
        return self._sum(lreg, parts)

    def _multiply(self, m, a24, mult, phase, after, name):
        """``a24 · mult`` (24 × 24 bits) from one partial product per ``phase`` cycle, each
        registered and accumulated in the next cycle, into a register that holds the product
        from two cycles after the last phase (``after`` is high the cycle after it).

        ``mult`` is split into 16-bit chunks (low 16 bits, high 8), and with 4 steps ``a24`` as
        well, so that each cycle's multiplier is 24×16 (2 steps) or 16×16 (4 steps)."""
        a_chunks = [(0, _M)] if self.steps == 2 else [(0, 16), (16, _M)]
        m_chunks = [(0, 16), (16, _M)]
        plan = [(a, b) for b in m_chunks for a in a_chunks]
        assert len(plan) == self.steps
        # The chunks of this cycle's partial product, and the weight of the registered one
        # (of the previous cycle's phase).
        a_hi = Cat(*[ph for ph, (a, _) in zip(phase, plan, strict=True) if a[0]]).any()
        m_hi = Cat(*[ph for ph, (_, b) in zip(phase, plan, strict=True) if b[0]]).any()
        a_op = Mux(a_hi, a24[16:], a24[:16]) if len(a_chunks) > 1 else a24
        m_op = Mux(m_hi, mult[16:], mult[:16])
        product = Signal(2 * _M, name=f"{name}_part", reset_less=True)
        m.d.sync += product.eq(a_op * m_op)
        held = phase[1:] + [after]      # high in the cycle after each phase
        offsets = sorted({a[0] + b[0] for a, b in plan})
        term = product << offsets[0]
        for off in offsets[1:]:
            at_off = Cat(*[ph for ph, (a, b) in zip(held, plan, strict=True)
                           if a[0] + b[0] == off]).any()
            term = Mux(at_off, product << off, term)
        p = Signal(unsigned(2 * _M), name=name, reset_less=True)
        with m.If(held[0]):
            m.d.sync += p.eq(term)
        with m.Elif(Cat(*held[1:]).any()):
            m.d.sync += p.eq(p + term)
        return p


class RequantEngine(HwComponent):
    """Executes REQUANT (see :mod:`codesign.isa` and docs/rtl-contract.md).

    Reads the PRM word once (it stays on the PRM read port, which no other engine reads), then
    streams ``count`` ACC words through a :class:`Requantizer` of ``config.requant_lanes``
    lanes: each word in ``G = config.requant_groups`` turns of that many channels, one turn
    every ``S = config.requant_steps`` cycles (the ACC word is read again for each turn, so
    nothing holds it). Each turn's results are written with byte enables into their bytes of
    lane group ``lane_group`` of ``ACT[out_base + i*out_stride]`` (the other bytes of the word
    are left unchanged). Turn ``k`` reads ACC in cycle ``2 + k·S`` and is written
    ``1 + Requantizer.latency`` cycles later, so ``done`` comes ``count·G·S + 3 +
    Requantizer.latency - S`` ``= count·G·S + 14`` cycles after ``start`` (``+ 15`` with
    ``config.deep_pipeline``; 1 if count = 0;
    :func:`codesign.timing.engine_cycles`).
    """

    def __init__(self, config: isa.HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(isa.Requant),
            **scratchpad_read(c, "acc"),
            **scratchpad_read(c, "prm"),
            **scratchpad_write(c, "act"),
        })

    def elaborate(self, platform):
        m = Module()
        c = self.config
        lanes, groups, steps = c.requant_lanes, c.requant_groups, c.requant_steps
        m.submodules.requantizer = rq = Requantizer(lanes=lanes, groups=groups, steps=steps,
                                                    mult_cell=c.mult_cell, deep=c.deep_pipeline)

        insn = Signal(isa.Requant)
        busy = Signal()
        prm_phase = Signal()        # first busy cycle: read the PRM word
        reading = Signal()          # ACC reads in flight
        read_left = Signal(unsigned(16))
        write_left = Signal(unsigned(16))
        # write_left == 1 and count == 0, kept in registers: done goes to the controller's
        # dispatch decision, so it comes from flip-flops with no comparator in between.
        last_write = Signal()
        no_work = Signal()
        acc_addr = Signal(c.addr_bits(c.acc_depth))
        act_addr = Signal(c.addr_bits(c.act_depth))
        data_valid = Signal()       # acc_rdata holds a word requested in the previous cycle
        m.d.comb += self.busy.eq(busy)

        def counter(n, name):
            """A counter modulo ``n`` (a power of two), cleared while idle; and whether it is
            at ``n - 1`` (always, for ``n = 1``)."""
            if n == 1:
                return None, Const(1)
            value = Signal(range(n), name=name)
            with m.If(~busy):
                m.d.sync += value.eq(0)
            return value, value == n - 1

        # The turn (requantizer lane group) being read and being written; cycles since a read.
        read_turn, read_last = counter(groups, "read_turn")
        write_turn, write_last = counter(groups, "write_turn")
        gap, _ = counter(steps, "gap")

        # While idle, the registers follow the instruction bus (it is valid in the start cycle,
        # and garbage until then): the start pulse, late in its cycle (the controller's dispatch
        # decision), then only sets two state bits.
        with m.If(~busy):
            m.d.sync += [
                insn.eq(self.insn),
                read_left.eq(self.insn.count),
                write_left.eq(self.insn.count),
                last_write.eq(self.insn.count == 1),
                no_work.eq(self.insn.count == 0),
                acc_addr.eq(self.insn.acc_base),
                act_addr.eq(self.insn.out_base),
            ]
        with m.If(self.start):
            m.d.sync += [busy.eq(1), prm_phase.eq(1)]

        # Cycle 1: request the PRM word (on prm_rdata from cycle 2); cycle 2: start the ACC
        # stream.
        with m.If(prm_phase):
            m.d.sync += prm_phase.eq(0)
            m.d.comb += [self.prm_ren.eq(1), self.prm_raddr.eq(insn.prm_addr)]
            with m.If(no_work):
                m.d.comb += self.done.eq(1)
                m.d.sync += busy.eq(0)
            with m.Else():
                m.d.sync += reading.eq(1)

        # One turn every `steps` cycles; a word's address advances after its last turn.
        issue = Signal()
        m.d.comb += issue.eq(reading if gap is None else reading & (gap == 0))
        if gap is not None:
            with m.If(reading):
                m.d.sync += gap.eq(gap + 1)         # wraps: steps is a power of two
        with m.If(issue):
            m.d.comb += [self.acc_ren.eq(1), self.acc_raddr.eq(acc_addr)]
            if read_turn is not None:
                m.d.sync += read_turn.eq(read_turn + 1)
            with m.If(read_last):
                m.d.sync += [acc_addr.eq(acc_addr + 1), read_left.eq(read_left - 1)]
                with m.If(read_left == 1):
                    m.d.sync += reading.eq(0)
        m.d.sync += data_valid.eq(issue)
        acc_turns = data.ArrayLayout(data.ArrayLayout(signed(32), lanes), groups)(self.acc_rdata)
        if read_turn is None:
            m.d.comb += rq.acc.eq(acc_turns[0])
        else:
            data_turn = Signal.like(read_turn, name="data_turn")
            m.d.sync += data_turn.eq(read_turn)
            m.d.comb += [rq.acc.eq(acc_turns[data_turn]), rq.turn.eq(data_turn)]
        # The PRM word, registered: it is on prm_rdata from cycle 2 (until the next PRM read, by
        # the next REQUANT), so the copy holds it from cycle 3, when the first ACC word reaches
        # the requantizer, which then needs no path from the block RAM's output. A shared
        # requantizer (small devices, where logic cells run out before timing does) reads the
        # port's output directly: 64 flip-flops per column fewer, the same cycles.
        prm = self.prm_rdata
        if c.requant_groups == 1:
            prm = Signal.like(self.prm_rdata, name="prm", reset_less=True)
            m.d.sync += prm.eq(self.prm_rdata)
        m.d.comb += [
            rq.prm.eq(prm),
            rq.y_zp.eq(insn.y_zp),
            rq.qmin.eq(insn.qmin),
            rq.qmax.eq(insn.qmax),
            rq.valid.eq(data_valid),
        ]

        # Write: the q bytes are replicated over the ACT word; the byte enables pick the turn's
        # bytes in lane group `lane_group` (byte lane_group*cols + turn*lanes + j).
        slot = insn.lane_group if write_turn is None else Cat(write_turn, insn.lane_group)
        slots = c.act_bytes // lanes
        with m.If(rq.q_valid):
            m.d.comb += [
                self.act_waddr.eq(act_addr),
                self.act_wdata.eq(Cat(*([rq.q] * slots))),
                self.act_wen.eq(Cat(*[(slot == g).replicate(lanes) for g in range(slots)])),
            ]
            if write_turn is not None:
                m.d.sync += write_turn.eq(write_turn + 1)
            with m.If(write_last):
                m.d.sync += [act_addr.eq(act_addr + insn.out_stride),
                             write_left.eq(write_left - 1), last_write.eq(write_left == 2)]
                with m.If(last_write):
                    m.d.comb += self.done.eq(1)
                    m.d.sync += busy.eq(0)
        return m
