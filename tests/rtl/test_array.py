# amaranth: UnusedElaboratable=no
"""SystolicArray against numpy: random and extreme operands, back-to-back inputs and gaps."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal, signed, unsigned

from codesign.isa import HwConfig
from codesign.rtl.array import SystolicArray
from codesign.rtl.dsp import registered_product

from .harness import simulate

SHAPES = [(1, 1), (2, 4), (4, 2), (4, 4), (8, 8)]


def _operands(rng, rows: int, cols: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` input vectors and one weight matrix, mixing uniform values with ±256/255 extremes."""
    x = rng.integers(-256, 256, (n, rows))
    x[rng.random((n, rows)) < 0.2] = -256
    x[rng.random((n, rows)) < 0.1] = 255
    x[: n // 8] = -256                      # all-extreme vectors: the largest |psum|
    w = rng.integers(-256, 256, (rows, cols))
    if rng.integers(2):
        w[:] = -256
    else:
        w[rng.random((rows, cols)) < 0.3] = -256
    return x, w


def _run(array: SystolicArray, weight_sets, inputs, rng) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stream each weight set's inputs (with random gaps) back to back: the next set is loaded
    into the shadow registers as soon as allowed (rows + cols - 1 cycles after the current
    set's first input, while that set still streams) and its first input carries x_switch."""
    R, C = array.rows, array.cols
    results = []

    async def testbench(ctx):
        loaded, switched_at = 0, None       # weight sets in shadow so far; last x_switch cycle
        load_row = 0
        tile, pending = -1, []
        sent, got = [], []
        cycle = 0
        while len(got) < sum(len(x) for x in inputs):
            # Load the next set row by row once the shadow registers are free.
            may_load = loaded < len(weight_sets) and loaded == tile + 1 and (
                switched_at is None or cycle >= switched_at + R + C - 1)
            if may_load:
                ctx.set(array.w, [int(v) for v in weight_sets[loaded][load_row]])
                ctx.set(array.w_load, 1)
                load_row += 1
                if load_row == R:
                    loaded, load_row = loaded + 1, 0
            else:
                ctx.set(array.w, [int(v) for v in rng.integers(-256, 256, C)])
                ctx.set(array.w_load, 0)
            # Stream: move to the next set once the current one is sent and the next is loaded.
            if not pending and tile + 1 < loaded and not may_load:
                tile += 1
                pending = [(tile, i) for i in range(len(inputs[tile]))]
            first = bool(pending) and pending[0][1] == 0
            if pending and (first or rng.random() < 0.75):
                t, i = pending.pop(0)
                ctx.set(array.x, [int(v) for v in inputs[t][i]])
                ctx.set(array.x_valid, 1)
                ctx.set(array.x_switch, int(first))
                if first:
                    switched_at = cycle
                sent.append((cycle, t))
            else:
                # Garbage while not valid must not disturb anything.
                ctx.set(array.x, [int(v) for v in rng.integers(-256, 256, R)])
                ctx.set(array.x_valid, 0)
                ctx.set(array.x_switch, int(rng.integers(2)))
            if ctx.get(array.psum_valid):
                got.append((cycle, [int(v) for v in ctx.get(array.psum)]))
            await ctx.tick()
            cycle += 1
            assert cycle < 20 * sum(len(x) for x in inputs) + 100
        ctx.set(array.x_valid, 0)
        assert [c for c, _ in got] == [s + array.latency for s, _ in sent]
        for t, (w, x) in enumerate(zip(weight_sets, inputs, strict=True)):
            mine = [p for (_, p), (_, k) in zip(got, sent, strict=True) if k == t]
            results.append((np.array(mine), x @ w))

    simulate(array, testbench)
    return results


@pytest.mark.parametrize("rows,cols", SHAPES, ids=lambda v: str(v))
def test_array_matches_numpy(rows, cols):
    rng = np.random.default_rng(rows * 10 + cols)
    array = SystolicArray(rows=rows, cols=cols)
    assert array.latency == rows + cols + 1
    n = 40 if rows * cols < 64 else 24
    weights, inputs = [], []
    for _ in range(3):      # reloading weights replaces the previous set completely
        x, w = _operands(rng, rows, cols, n)
        weights.append(w)
        inputs.append(x)
    for got, want in _run(array, weights, inputs, rng):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("rows,cols", [(1, 1), (2, 4), (4, 2), (8, 8)], ids=lambda v: str(v))
def test_array_gemv_mode(rows, cols):
    """GEMV mode as the array docstring states it: with ``x`` held since ``r + c`` cycles
    before PE (r, c) needs it, tiles A and B whose words enter interleaved from cycle ``p``
    leave on ``psum`` at ``p + 2·rows + 2`` and one cycle later, all columns at once."""
    rng = np.random.default_rng(rows * 3 + cols)
    array = SystolicArray(rows=rows, cols=cols)
    R = rows
    x, _ = _operands(rng, rows, cols, 1)
    tiles = [_operands(rng, rows, cols, 1)[1] for _ in range(6)]
    p0 = cols + 1           # x enters at cycle 0 and reaches PE(r, c) at r + c
    words = {p0 + 2 * R * (t // 2) + 2 * r + t % 2: tiles[t][r]
             for t in range(len(tiles)) for r in range(R)}
    due = {p0 + 2 * R * (t // 2) + 2 * R + 2 + t % 2: t for t in range(len(tiles))}

    async def testbench(ctx):
        ctx.set(array.gemv, 1)
        ctx.set(array.x, [int(v) for v in x[0]])
        for cycle in range(max(due) + 1):
            word = words.get(cycle)
            ctx.set(array.w_load, int(word is not None))
            ctx.set(array.w, [int(v) for v in (word if word is not None
                                                  else rng.integers(-256, 256, cols))])
            ctx.set(array.x_valid, int(rng.integers(2)))    # not used in GEMV mode
            if cycle in due:
                want = x[0] @ tiles[due[cycle]]
                np.testing.assert_array_equal(ctx.get(array.psum), want, err_msg=str(cycle))
            await ctx.tick()

    simulate(array, testbench)


def test_array_extreme_sum():
    """Every product = (-256)·(-256): the largest psum the array can produce."""
    rows, cols = 8, 2
    array = SystolicArray(rows=rows, cols=cols)
    x = np.full((3, rows), -256)
    w = np.full((rows, cols), -256)
    [(got, want)] = _run(array, [w], [x], np.random.default_rng(0))
    np.testing.assert_array_equal(got, want)
    assert got[0, 0] == rows * 65536


@pytest.mark.parametrize("kwargs", [dict(rows=0, cols=1), dict(rows=1, cols=65),
                                    dict(rows=2.0, cols=2),
                                    dict(rows=2, cols=2, mult_cell="SB_MAC16")])
def test_array_rejects_bad_shape(kwargs):
    with pytest.raises(ValueError):
        SystolicArray(**kwargs)


def test_array_converts_to_verilog():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        text = verilog.convert(SystolicArray(rows=2, cols=4), emit_src=False, name="array")
    assert "pe_1_3_psum" in text


def test_mult18_cell_takes_only_what_fits_it():
    m = Module()
    with pytest.raises(ValueError, match="operands are signed and at most 18"):
        registered_product(m, Signal(signed(19)), Signal(signed(9)), width=18,
                           cell="MULT18X18D", name="wide")
    with pytest.raises(ValueError, match="operands are signed"):
        registered_product(m, Signal(unsigned(8)), Signal(signed(9)), width=18,
                           cell="MULT18X18D", name="unsigned")
    with pytest.raises(ValueError, match="at most 36"):
        registered_product(m, Signal(signed(18)), Signal(signed(18)), width=37,
                           cell="MULT18X18D", name="long")
    with pytest.raises(ValueError, match="cell must be one of"):
        registered_product(m, Signal(signed(9)), Signal(signed(9)), width=18, cell="DSP48",
                           name="other")
    with pytest.raises(ValueError, match="mult_cell"):
        HwConfig(mult_cell="DSP48")
