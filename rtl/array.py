"""Weight-stationary systolic array of int9 × int9 → int32 multiply-accumulate cells.

Geometry
--------
PE ``(r, c)`` holds the weight ``w[r][c]``. Activations enter each row at the left edge and move
one column to the right per cycle through the PEs' ``x`` registers; partial sums move one row down
per cycle through the PEs' ``psum`` registers and leave the array at the bottom of each column.
Each PE multiplies registered operands (its ``x`` register and a weight operand register) and
registers its product before adding it to the partial sum from above (``prod``), so that the
routing to the multiplier block, the multiplier and the adder are in separate cycles: the path
through the multiplier block and the routing to and from it was the NPU's critical path. Every
row's product is two cycles late alike, so the psum chain still lines up and the array's
latency grows by two cycles::

    x[0] ─▶ PE(0,0) ─▶ PE(0,1) ─▶ …        (x registers, left to right)
               │          │
    x[1] ─▶ PE(1,0) ─▶ PE(1,1) ─▶ …        psum registers, top to bottom
               ▼          ▼
            psum[0]    psum[1]

Row ``r`` must see its ``x[r]`` exactly when the partial sum of the same input vector arrives from
row ``r - 1``, so the left edge delays ``x[r]`` by ``r`` cycles (skew); column ``c`` then finishes
``c`` cycles after column 0, so the bottom edge delays column ``c`` by ``cols - 1 - c`` cycles
(de-skew). Seen from outside, the array is a plain pipeline of :attr:`SystolicArray.latency`
cycles that accepts one input vector per cycle.

Weights are double-buffered. They are loaded into *shadow* registers, one row per cycle, entering
at the *bottom* row and shifting up, so that after ``rows`` loads the first row presented sits in
row 0 (multiplied by ``x[0]``) and the last one in row ``rows - 1``. The shadow weights become the
active ones either all at once (``w_switch``, with no input in flight) or, for back-to-back
weight tiles, PE by PE: ``x_switch`` marks the first input vector of the new tile and travels with
it through the skew and the rows, so each PE switches exactly when that vector reaches it while
the previous tile's last vectors still meet the old weights further on. The shadow registers may
be reloaded once the marked vector has passed the last PE, ``rows + cols - 2`` cycles after it
entered the array.

GEMV mode
---------
With ``gemv`` high, the PEs multiply by their *shadow* weights while the words shift through
them, and ``x`` stays the same vector (a fully connected layer at batch 1: one input, many
weight tiles). A word presented at cycle ``a`` sits in row ``r`` in cycle ``a + rows - r``,
while a partial sum started in row 0 at cycle ``u`` is in row ``r`` at cycle ``u + r``: the two
meet when the words of one tile come every other cycle, so the words of two tiles, ``A`` and
``B``, enter interleaved (``A0 B0 A1 B1 …``). The psum that started in row 0 as ``A0`` passed
row 0 meets ``A1`` in row 1, and so on; the next cycle's psum meets the ``B`` words. The array
thus finishes one tile every ``rows`` cycles, all columns at once (they see the same word in the
same cycle and ``x`` does not move), so psums bypass the de-skew: the tile whose first word was
presented at cycle ``p`` is on ``psum`` ``2·rows + 2`` cycles later. ``x`` must have reached
every PE a tile's words meet, and stay: ``x`` needs ``r + c`` cycles to reach PE ``(r, c)``.

Depthwise mode
--------------
With ``depthwise=True`` (``rows >= 8``) and ``dw`` high, the array computes a 3×3 depthwise
convolution with one *channel* per column and one *tap* ``t = 3·ky + kx`` per row: PE ``(t, c)``
multiplies ``w[t][c]`` by lane ``c`` of the vector ``xd[ky]`` present in the same cycle (not by its
left neighbour's ``x``), and rows ``>= 9`` multiply 0. Every column then runs in step, so the
bottom psums bypass the de-skew. An 8-row array has one more multiplier per column, the *tap
lane*, which adds ``xd[2][c] · w[8][c]`` under the bottom row; its weights enter the shift chain
below row 7, so a depthwise weight load takes ``rows + 1`` words (taps 0..8) instead of ``rows``.

Because row ``t`` works on the output whose row 0 started ``t`` cycles earlier, the taps of one
kernel row are the *same* input stream seen ``kx`` cycles apart: feeding ``xd[2]`` with the input
stream of padded rows (row-major, ``W + 2`` wide for ``W`` outputs per row), ``xd[1]`` with that
stream delayed by ``W - 1`` cycles and ``xd[0]`` with it delayed by ``2·(W - 1)`` completes output
``(oh, ow)`` :attr:`SystolicArray.dw_latency` cycles after row 0 saw its first tap, i.e.
``dw_latency - 8`` cycles after the stream carried input ``(oh + 2, ow + 2)``.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from .dsp import check_mult_cell, registered_product

__all__ = ["SystolicArray", "X_SHAPE", "W_SHAPE", "PSUM_SHAPE"]

#: Shape of one activation operand (int8/uint8 minus a zero point).
X_SHAPE = signed(9)
#: Shape of one weight operand (int8 minus a zero point).
W_SHAPE = signed(9)
#: Shape of one output partial sum.
PSUM_SHAPE = signed(32)


def _delay(m: Module, value, cycles: int, *, name: str, reset_less: bool = True):
    """``value`` delayed by ``cycles`` registers (``cycles == 0`` returns ``value`` itself)."""
    for i in range(cycles):
        reg = Signal.like(value, name=f"{name}_d{i}", reset_less=reset_less)
        m.d.sync += reg.eq(value)
        value = reg
    return value


class SystolicArray(wiring.Component):
    """A ``rows`` × ``cols`` weight-stationary systolic array.

    Parameters
    ----------
    rows
        Reduction (K) dimension: number of activations per input vector. 1..64.
    cols
        Output channel (N) dimension: number of partial sums per output vector. 1..64.
    mult_cell
        How the multipliers are built (:func:`codesign.rtl.dsp.registered_product`):
        ``"inferred"`` or ``"MULT18X18D"`` (ECP5 cells with their own operand and product
        registers).

    Attributes
    ----------
    x : In(ArrayLayout(signed(9), rows))
        Input vector; sampled when ``x_valid`` is high.
    x_valid : In(1)
    x_switch : In(1)
        With ``x_valid``: this vector is the first of the weight tile now in the shadow registers.
    w : In(ArrayLayout(signed(9), cols))
        One row of weights, shifted into the shadow registers when ``w_load`` is high. After
        ``rows`` loads, the ``r``-th row presented (0-based) multiplies ``x[r]`` once switched.
    w_load : In(1)
    w_switch : In(1)
        Make every shadow weight active at once (only while no input is in flight).
    gemv : In(1)
        GEMV mode (only with ``gemv=True``): multiply by the shadow weights as they shift;
        change it only with no input in flight.
    psum : Out(ArrayLayout(signed(32), cols))
        ``psum[c] = Σ_r x[r] · w[r][c]`` for the ``x`` presented :attr:`latency` cycles earlier.
    psum_valid : Out(1)
        ``x_valid`` delayed by :attr:`latency` cycles.
    latency : int
        Cycles from an input vector to its output vector: ``rows + cols + 1``.
    dw : In(1)
        Depthwise mode (only with ``depthwise=True``); change it only with no input in flight.
    w_lane : In(1)
        Load through the tap lane: the depthwise weight tile of an 8-row array (``rows + 1``
        words).
    xd : In(ArrayLayout(ArrayLayout(signed(9), cols), 3))
        Depthwise inputs: ``xd[ky]`` feeds rows ``3·ky .. 3·ky + 2``.
    dw_latency : int
        Depthwise mode: cycles from row 0's operand to the output (``max(rows, 9) + 2``).
    """

    def __init__(self, *, rows: int, cols: int, depthwise: bool = False, gemv: bool = True,
                 mult_cell: str = "inferred"):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an int in 1..64, not {value!r}")
        if depthwise and rows < 8:
            raise ValueError(f"depthwise mode needs rows >= 8 (9 taps), not {rows!r}")
        self.rows = rows
        self.cols = cols
        self.depthwise = depthwise
        self.has_gemv = gemv
        self.mult_cell = check_mult_cell(mult_cell)
        # One cycle per row through the psum chain (or the tap lane) plus the operand and the
        # product registers.
        self.dw_latency = max(rows, 9) + 2
        # Skew: row r's x enters PE(r, 0) r cycles late; PE(r, c) sees it c cycles later still,
        # registers its operands then, its product one cycle later and its psum one cycle later
        # again; the bottom row's psum of column c is therefore ready rows + c + 2 cycles after
        # the input, and the de-skew pads every column to rows + cols + 1.
        self.latency = rows + cols + 1
        ports = {
            "x": In(data.ArrayLayout(X_SHAPE, rows)),
            "x_valid": In(1),
            "x_switch": In(1),
            "w": In(data.ArrayLayout(W_SHAPE, cols)),
            "w_load": In(1),
            "w_switch": In(1),
            "psum": Out(data.ArrayLayout(PSUM_SHAPE, cols)),
            "psum_valid": Out(1),
        }
        if gemv:
            ports["gemv"] = In(1)
        if depthwise:
            ports["dw"] = In(1)
            ports["w_lane"] = In(1)
            ports["xd"] = In(data.ArrayLayout(data.ArrayLayout(X_SHAPE, cols), 3))
        super().__init__(ports)

    @staticmethod
    def psum_shape(terms: int):
        """Smallest signed shape holding a sum of ``terms`` products of two ``signed(9)``."""
        # |x·w| <= 256·256 = 2**16 (only for -256·-256), so |sum| <= terms · 2**16.
        return signed((terms << 16).bit_length() + 1)

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols

        # Shadow weights, shifted in from the bottom row upwards (through the tap lane for a
        # depthwise tile on an 8-row array); the active ones are what the PEs multiply by.
        lane = self.depthwise and rows == 8
        shadow = [[Signal(W_SHAPE, name=f"pe_{r}_{c}_ws") for c in range(cols)]
                  for r in range(rows)]
        weight = [[Signal(W_SHAPE, name=f"pe_{r}_{c}_w") for c in range(cols)]
                  for r in range(rows)]
        lane_shadow = [Signal(W_SHAPE, name=f"lane_{c}_ws") for c in range(cols)] if lane else []
        lane_w = [Signal(W_SHAPE, name=f"lane_{c}_w") for c in range(cols)] if lane else []
        with m.If(self.w_load):
            for c in range(cols):
                for r in range(rows):
                    if r < rows - 1:
                        below = shadow[r + 1][c]
                    elif lane:
                        below = Mux(self.w_lane, lane_shadow[c], self.w[c])
                    else:
                        below = self.w[c]
                    m.d.sync += shadow[r][c].eq(below)
                if lane:
                    m.d.sync += lane_shadow[c].eq(self.w[c])
        with m.If(self.w_switch):
            m.d.sync += [a.eq(b) for ra, rb in zip(weight, shadow, strict=True)
                         for a, b in zip(ra, rb, strict=True)]
            m.d.sync += [a.eq(b) for a, b in zip(lane_w, lane_shadow, strict=True)]

        # Left edge: skew row r by r cycles (the switch marker travels along).
        x_edge = [_delay(m, self.x[r], r, name=f"skew_{r}") for r in range(rows)]
        sw_edge = [_delay(m, self.x_switch & self.x_valid, r, name=f"skew_sw_{r}",
                          reset_less=False) for r in range(rows)]

        # The mode select, registered: the lag of one cycle is safe, as `dw` only changes with no
        # input in flight, two cycles before the first input arrives. (One copy per row or per PE
        # would not shorten its fan-out to every PE's input multiplexer: yosys' opt_merge merges
        # registers with the same input back into one.)
        if self.depthwise:
            dw_reg = Signal(name="dw_sel")
            m.d.sync += dw_reg.eq(self.dw)
        gemv = Const(0)
        if self.has_gemv:
            gemv = Signal(name="gemv_sel")
            m.d.sync += gemv.eq(self.gemv)

        # The PE grid. x_in of PE(r, c) is the x register of PE(r, c-1); psum_in is the psum
        # register of PE(r-1, c). Both multiplier operands come straight from registers: PE
        # (r, c)'s own x register (which also feeds its right-hand neighbour; in depthwise mode
        # it holds the PE's own tap input instead, which the neighbour ignores) and a weight
        # operand register after the shadow/active select. Without them, the select and the
        # routing to the multiplier block (placed far from the PE's logic) were in series with
        # the multiplier: the NPU's critical path. Operands are reset-less: only the valid bits
        # need a reset.
        psum_bottom = []
        for c in range(cols):
            psum_above = None
            for r in range(rows):
                x_in, sw_in = x_edge[r], sw_edge[r]
                x_reg = Signal(X_SHAPE, name=f"pe_{r}_{c}_x", reset_less=True)
                if self.depthwise:
                    x_in = Mux(dw_reg, self.xd[r // 3][c] if r < 9 else 0, x_in)
                m.d.sync += x_reg.eq(x_in)
                if c < cols - 1:    # the last column has no right-hand neighbour to feed
                    sw_reg = Signal(name=f"pe_{r}_{c}_sw")
                    m.d.sync += sw_reg.eq(sw_in)
                    x_edge[r], sw_edge[r] = x_reg, sw_reg
                with m.If(sw_in):
                    m.d.sync += weight[r][c].eq(shadow[r][c])
                prod = registered_product(
                    m, x_in, Mux(sw_in | gemv, shadow[r][c], weight[r][c]), width=18,
                    cell=self.mult_cell, name=f"pe_{r}_{c}", a_reg=x_reg)
                psum = Signal(self.psum_shape(r + 1), name=f"pe_{r}_{c}_psum", reset_less=True)
                m.d.sync += psum.eq(prod if psum_above is None else psum_above + prod)
                psum_above = psum
            psum_bottom.append(psum_above)

        # Bottom edge: de-skew column c by cols-1-c cycles; depthwise and GEMV modes bypass it.
        for c in range(cols):
            deskewed = Mux(gemv, psum_bottom[c],
                           _delay(m, psum_bottom[c], cols - 1 - c, name=f"deskew_{c}"))
            if not self.depthwise:
                m.d.comb += self.psum[c].eq(deskewed)
                continue
            dw_out = psum_bottom[c]
            if lane:
                # Registered operands and product, as in the PEs: the tap lane stays in step
                # with row 7.
                lane_prod = registered_product(m, self.xd[2][c], lane_w[c], width=18,
                                               cell=self.mult_cell, name=f"lane_{c}")
                dw_out = Signal(self.psum_shape(9), name=f"lane_{c}_psum", reset_less=True)
                m.d.sync += dw_out.eq(psum_bottom[c] + lane_prod)
            m.d.comb += self.psum[c].eq(Mux(self.dw, dw_out, deskewed))

        m.d.comb += self.psum_valid.eq(
            _delay(m, self.x_valid, self.latency, name="valid", reset_less=False))
        return m
