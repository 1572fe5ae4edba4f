"""POOL engine: lane-wise maximum (MAX) or int32 sum (SUM) over a strided 2-D window of ACT words.

Semantics (:mod:`codesign.isa`), over output pixels ``oh < out_h, ow < out_w`` and the in-bounds
window positions ``kh < k_h, kw < k_w`` of
``ACT[act_base + oh*step_h + ow*step_w + kh*row_words + kw*pix_words (+ w)]``:

* ``mode = MAX``: for each channel word ``w < words`` the lane-wise maximum (signed or unsigned
  per ``x_signed``) is written to ``ACT[out_base + (oh*out_w + ow)*words + w]``.
* ``mode = SUM``: the sums of lanes ``lane_group*cols + c`` (``c < cols``; int8 or uint8 per
  ``x_signed``) are written to ``ACC[out_base + oh*out_w + ow][c]`` as int32. ``words`` is
  ignored (the engine runs the ``w`` loop once).

The engine walks ``(oh, ow, w, kh, kw)`` (``kw`` innermost) with incremental counters and address
registers -- no multipliers. It is a three-stage pipeline: stage 1 issues one ACT read per cycle
(only for in-bounds positions; out-of-bounds positions still take their cycle), stage 2 registers
the returned word (block RAM read data feeds nothing but a register: its clock-to-out is half of
a 100 MHz cycle on ECP5), stage 3 folds it into a running maximum or sum and, at the last window
position, writes the result. An instruction is busy for ``out_h*out_w*words*k_h*k_w + 2`` cycles
in MAX mode and ``out_h*out_w*k_h*k_w + 2`` in SUM mode (1 cycle if that product is 0).

A deep pipeline (:attr:`codesign.isa.HwConfig.deep_pipeline`) drives the shared ports, fanned out
to every block RAM of their scratchpad, from flip-flops: stage 1 registers its read, which is
issued a cycle later, and stage 3 registers its write; two cycles more per instruction.

The output region must not overlap the words the same instruction still has to read (results
are written while later windows are being read); the compiler never pools in place.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data

from codesign.isa import HwConfig, Pool, PoolMode

from .ports import HwComponent, engine_control, scratchpad_read, scratchpad_write

__all__ = ["PoolEngine", "SUM_SHAPE"]

# Input coordinates: ih0 (13-bit signed) + oh*stride_h (< 2**16) + kh (< 2**8) fits easily.
_COORD = signed(20)
# SUM lanes: at most 255*255 window positions of |x| <= 255 each, |sum| < 2**24.
SUM_SHAPE = signed(25)


class PoolEngine(HwComponent):
    """POOL engine.

    Parameters
    ----------
    config : HwConfig
        The NPU instance (ACT word width and depth, ``cols`` lanes per SUM result).

    Attributes
    ----------
    start, insn, busy, done
        Engine interface (:func:`~codesign.rtl.ports.engine_control`) for an ``isa.Pool``; the
        last result word is written in the ``done`` cycle.
    act_raddr, act_ren, act_rdata
        ACT read port.
    act_waddr, act_wen, act_wdata
        ACT write port (MAX results; byte enables, always a whole word).
    acc_waddr, acc_wen, acc_wdata
        ACC write port (SUM results).

    All memory-port outputs are 0 while ``busy`` is low.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **engine_control(Pool),
            **scratchpad_read(c, "act"),
            **scratchpad_write(c, "act"),
            **scratchpad_write(c, "acc"),
        })

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        aw = c.addr_bits(c.act_depth)
        ow_bits = max(aw, c.addr_bits(c.acc_depth))
        f = Pool.members

        # Latched fields. Address arithmetic is modulo 2**aw: exact for every in-range address,
        # including the signed act_base/step_h/step_w.
        summing = Signal()
        x_signed = Signal()
        lane_group = Signal(f["lane_group"])
        step_w = Signal(aw)
        step_h = Signal(aw)
        row_words = Signal(aw)
        pix_words = Signal(aw)
        words = Signal(f["words"])      # words, out_h, out_w, k_h, k_w: minus one
        out_h = Signal(f["out_h"])
        out_w = Signal(f["out_w"])
        k_h = Signal(f["k_h"])
        k_w = Signal(f["k_w"])
        stride_h = Signal(f["stride_h"])
        stride_w = Signal(f["stride_w"])
        in_h = Signal(f["in_h"])
        in_w = Signal(f["in_w"])
        iw0 = Signal(_COORD)

        # Loop counters (kw innermost) and the addresses / coordinates they imply.
        running = Signal()
        oh = Signal.like(out_h, name="oh")
        ow = Signal.like(out_w, name="ow")
        w = Signal.like(words, name="w")
        kh = Signal.like(k_h, name="kh")
        kw = Signal.like(k_w, name="kw")
        # Each counter at its last index (the bound), kept in a register.
        last_kw, last_kh, last_w, last_ow, last_oh = (
            Signal(name=f"last_{n}") for n in ("kw", "kh", "w", "ow", "oh"))
        bound = {"kw": (kw, k_w, last_kw), "kh": (kh, k_h, last_kh), "w": (w, words, last_w),
                 "ow": (ow, out_w, last_ow), "oh": (oh, out_h, last_oh)}
        row_base = Signal(aw)    # act_base + oh*step_h
        pix_base = Signal(aw)    # row_base + ow*step_w
        word_base = Signal(aw)   # pix_base + w
        kh_base = Signal(aw)     # word_base + kh*row_words
        rd_addr = Signal(aw)     # kh_base + kw*pix_words
        ih_base = Signal(_COORD)  # ih0 + oh*stride_h
        iw_base = Signal(_COORD)  # iw0 + ow*stride_w
        ih = Signal(_COORD)      # ih_base + kh
        iw = Signal(_COORD)      # iw_base + kw
        # Whether ih / iw (and ih_base / iw_base / iw0) lie inside the input, registered with the
        # coordinates: compared combinationally from ih/iw, in_bounds fed the ACT read address
        # and enable through two carry chains, the critical path of the engine.
        ih_ok = Signal()
        iw_ok = Signal()
        ih_base_ok = Signal()
        iw_base_ok = Signal()
        iw0_ok = Signal()
        out_addr = Signal(ow_bits)  # out_base + (oh*out_w + ow)*words + w (ACT or ACC word)

        # Stage 2 (read data arriving).
        s2_valid = Signal()
        s2_in = Signal()         # the position was in bounds (its read was issued)
        s2_last_pos = Signal()   # last window position of this output word
        s2_final = Signal()      # last position of the whole instruction
        s2_out = Signal(ow_bits)
        empty = Signal()

        # Stage 3: the same, one cycle later, with the read word registered; the running
        # maximum / sums.
        s3_valid, s3_in, s3_last_pos, s3_final = Signal(), Signal(), Signal(), Signal()
        s3_out = Signal(ow_bits)
        word = Signal(8 * c.act_bytes, reset_less=True)
        best = Signal(8 * c.act_bytes)
        have = Signal()          # best holds at least one in-bounds value
        sums = Signal(data.ArrayLayout(SUM_SHAPE, c.cols))

        # A deep pipeline's read and write port registers (0 when unused: they are the ports).
        deep = c.deep_pipeline
        if deep:
            rd_port, ren_port = Signal.like(self.act_raddr), Signal()
            writes = {name: Signal.like(getattr(self, name), name=f"{name}_reg")
                      for name in ("act_waddr", "act_wen", "act_wdata", "acc_waddr", "acc_wen",
                                   "acc_wdata")}
            final_written = Signal()
            m.d.sync += [rd_port.eq(0), ren_port.eq(0), final_written.eq(0),
                         *(reg.eq(0) for reg in writes.values())]
            m.d.comb += [self.act_raddr.eq(rd_port), self.act_ren.eq(ren_port),
                         *(getattr(self, name).eq(reg) for name, reg in writes.items())]
            m.d.comb += self.done.eq(final_written | empty)
        else:
            writes = {name: getattr(self, name) for name in ("act_waddr", "act_wen", "act_wdata",
                                                             "acc_waddr", "acc_wen", "acc_wdata")}
            m.d.comb += self.done.eq((s3_valid & s3_final) | empty)
        m.d.sync += empty.eq(0)
        with m.If(self.done):
            m.d.sync += self.busy.eq(0)

        def inside(value, size):
            return (value >= 0) & (value < size)

        # While idle, the registers follow the instruction bus (it is valid in the start cycle,
        # and garbage until then): the start pulse, late in its cycle (the controller's dispatch
        # decision), then only sets the few state bits below.
        insn = self.insn
        base = insn.act_base[:aw]
        h0_ok, w0_ok = inside(insn.ih0, insn.in_h), inside(insn.iw0, insn.in_w)
        is_sum = insn.mode == PoolMode.SUM
        # SUM ignores `words`: one pass of the w loop.
        n_words = Mux(is_sum, 1, insn.words)
        with m.If(~self.busy):
            m.d.sync += [
                summing.eq(is_sum),
                x_signed.eq(insn.x_signed),
                lane_group.eq(insn.lane_group),
                step_w.eq(insn.step_w[:aw]),
                step_h.eq(insn.step_h[:aw]),
                row_words.eq(insn.row_words),
                pix_words.eq(insn.pix_words),
                # Loop bounds as their last index (an empty loop never runs): the counters
                # compare with registers, not through a decrement.
                words.eq(n_words - 1),
                out_h.eq(insn.out_h - 1),
                out_w.eq(insn.out_w - 1),
                k_h.eq(insn.k_h - 1),
                k_w.eq(insn.k_w - 1),
                stride_h.eq(insn.stride_h),
                stride_w.eq(insn.stride_w),
                in_h.eq(insn.in_h),
                in_w.eq(insn.in_w),
                iw0.eq(insn.iw0),
                oh.eq(0), ow.eq(0), w.eq(0), kh.eq(0), kw.eq(0),
                last_oh.eq(insn.out_h == 1), last_ow.eq(insn.out_w == 1),
                last_w.eq(n_words == 1), last_kh.eq(insn.k_h == 1), last_kw.eq(insn.k_w == 1),
                row_base.eq(base), pix_base.eq(base), word_base.eq(base),
                kh_base.eq(base), rd_addr.eq(base),
                ih_base.eq(insn.ih0), ih.eq(insn.ih0),
                iw_base.eq(insn.iw0), iw.eq(insn.iw0),
                ih_base_ok.eq(h0_ok), ih_ok.eq(h0_ok),
                iw_base_ok.eq(w0_ok), iw_ok.eq(w0_ok), iw0_ok.eq(w0_ok),
                out_addr.eq(insn.out_base),
                have.eq(0),
                sums.eq(0),
            ]
        with m.If(self.start):
            m.d.sync += self.busy.eq(1)
            with m.If((insn.out_h == 0) | (insn.out_w == 0) | (n_words == 0)
                      | (insn.k_h == 0) | (insn.k_w == 0)):
                m.d.sync += empty.eq(1)
            with m.Else():
                m.d.sync += running.eq(1)

        # -- stage 1: read one window position, advance the counters ---------------------------
        in_bounds = Signal()
        m.d.comb += in_bounds.eq(ih_ok & iw_ok)
        # Whether each counter is at its last index: registers, updated with the counters (the
        # nested conditions below select the next read address; compares in front of them were
        # the engine's critical path on the iCE40).
        def step(name):
            counter, b, flag = bound[name]
            return [counter.eq(counter + 1), flag.eq(counter + 1 == b)]

        def wrap(name):
            counter, b, flag = bound[name]
            return [counter.eq(0), flag.eq(b == 0)]
        m.d.sync += s2_valid.eq(running)
        with m.If(running):
            if deep:
                m.d.sync += [ren_port.eq(in_bounds), rd_port.eq(Mux(in_bounds, rd_addr, 0))]
            else:
                m.d.comb += [
                    self.act_ren.eq(in_bounds),
                    self.act_raddr.eq(Mux(in_bounds, rd_addr, 0)),
                ]
            m.d.sync += [
                s2_in.eq(in_bounds),
                s2_last_pos.eq(last_kw & last_kh),
                s2_final.eq(last_kw & last_kh & last_w & last_ow & last_oh),
                s2_out.eq(out_addr),
            ]
            with m.If(~last_kw):
                m.d.sync += [
                    *step("kw"),
                    rd_addr.eq(rd_addr + pix_words),
                    iw.eq(iw + 1), iw_ok.eq(inside(iw + 1, in_w)),
                ]
            with m.Else():
                m.d.sync += wrap("kw")
                with m.If(~last_kh):
                    nxt = kh_base + row_words
                    m.d.sync += [
                        *step("kh"),
                        kh_base.eq(nxt), rd_addr.eq(nxt),
                        ih.eq(ih + 1), iw.eq(iw_base),
                        ih_ok.eq(inside(ih + 1, in_h)), iw_ok.eq(iw_base_ok),
                    ]
                with m.Else():
                    m.d.sync += [
                        *wrap("kh"),
                        out_addr.eq(out_addr + 1),
                    ]
                    with m.If(~last_w):
                        nxt = word_base + 1
                        m.d.sync += [
                            *step("w"),
                            word_base.eq(nxt), kh_base.eq(nxt), rd_addr.eq(nxt),
                            ih.eq(ih_base), iw.eq(iw_base),
                            ih_ok.eq(ih_base_ok), iw_ok.eq(iw_base_ok),
                        ]
                    with m.Else():
                        m.d.sync += wrap("w")
                        with m.If(~last_ow):
                            nxt = pix_base + step_w
                            nxt_iw = iw_base + stride_w
                            nxt_iw_ok = inside(nxt_iw, in_w)
                            m.d.sync += [
                                *step("ow"),
                                pix_base.eq(nxt), word_base.eq(nxt), kh_base.eq(nxt),
                                rd_addr.eq(nxt),
                                iw_base.eq(nxt_iw), iw.eq(nxt_iw), ih.eq(ih_base),
                                iw_base_ok.eq(nxt_iw_ok), iw_ok.eq(nxt_iw_ok),
                                ih_ok.eq(ih_base_ok),
                            ]
                        with m.Else():
                            nxt = row_base + step_h
                            nxt_ih = ih_base + stride_h
                            nxt_ih_ok = inside(nxt_ih, in_h)
                            m.d.sync += [
                                *wrap("ow"),
                                row_base.eq(nxt), pix_base.eq(nxt), word_base.eq(nxt),
                                kh_base.eq(nxt), rd_addr.eq(nxt),
                                ih_base.eq(nxt_ih), ih.eq(nxt_ih),
                                iw_base.eq(iw0), iw.eq(iw0),
                                ih_base_ok.eq(nxt_ih_ok), ih_ok.eq(nxt_ih_ok),
                                iw_base_ok.eq(iw0_ok), iw_ok.eq(iw0_ok),
                            ]
                            with m.If(~last_oh):
                                m.d.sync += step("oh")
                            with m.Else():
                                m.d.sync += running.eq(0)

        # -- stage 2: register the read word (block RAM read data goes to a register only) ------
        stage2 = [s2_valid, s2_in, s2_last_pos, s2_final, s2_out]
        if deep:    # the read is issued a cycle later, from the port registers
            delayed = [Signal.like(sig, name=f"{sig.name}_d") for sig in stage2]
            m.d.sync += [d.eq(sig) for d, sig in zip(delayed, stage2, strict=True)]
            stage2 = delayed
        s2_valid, s2_in, s2_last_pos, s2_final, s2_out = stage2
        m.d.sync += [
            s3_valid.eq(s2_valid), s3_in.eq(s2_in), s3_last_pos.eq(s2_last_pos),
            s3_final.eq(s2_final), s3_out.eq(s2_out), word.eq(self.act_rdata),
        ]

        # -- stage 3: fold the word into the running maximum / sums, write at the end ---------
        lanes = []
        for lane in range(c.act_bytes):
            a = best[8 * lane:8 * lane + 8]
            b = word[8 * lane:8 * lane + 8]
            # Flipping the sign bit maps int8 order onto uint8 order.
            flip = Cat(Const(0, 7), x_signed)
            take_b = ~have | ((b ^ flip) > (a ^ flip))
            lane_max = Signal(8, name=f"max_lane_{lane}")
            m.d.comb += lane_max.eq(Mux(take_b, b, a))
            lanes.append(lane_max)
        folded = Signal(8 * c.act_bytes)
        m.d.comb += folded.eq(Mux(s3_in, Cat(*lanes), best))

        groups = c.act_bytes // c.cols
        act_word = data.ArrayLayout(data.ArrayLayout(unsigned(8), c.cols), groups)(word)
        group = act_word[lane_group] if groups > 1 else act_word[0]
        summed = Signal(data.ArrayLayout(SUM_SHAPE, c.cols))
        for lane in range(c.cols):
            byte = group[lane]
            value = Mux(x_signed, byte.as_signed(), byte)
            m.d.comb += summed[lane].eq(sums[lane] + Mux(s3_in, value, 0))

        # The write: on the ports, or into their registers in a deep pipeline.
        write = m.d.sync if deep else m.d.comb
        with m.If(s3_valid):
            with m.If(s3_last_pos):
                with m.If(summing):
                    acc_word = data.ArrayLayout(signed(32), c.cols)(writes["acc_wdata"])
                    write += [writes["acc_waddr"].eq(s3_out), writes["acc_wen"].eq(1)]
                    # .eq sign-extends each 25-bit sum to its int32 lane.
                    write += [acc_word[lane].eq(summed[lane]) for lane in range(c.cols)]
                with m.Else():
                    write += [
                        writes["act_waddr"].eq(s3_out),
                        writes["act_wen"].eq((1 << c.act_bytes) - 1),
                        writes["act_wdata"].eq(folded),
                    ]
                if deep:
                    m.d.sync += final_written.eq(s3_final)
                m.d.sync += [have.eq(0), sums.eq(0)]
            with m.Else():
                m.d.sync += [
                    best.eq(folded),
                    have.eq(have | s3_in),
                    sums.eq(summed),
                ]

        return m
