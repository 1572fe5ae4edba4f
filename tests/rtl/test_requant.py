# amaranth: UnusedElaboratable=no
"""Requantizer against isa.requantize, RequantEngine against IsaSim.step."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from amaranth.back import verilog

from codesign import isa
from codesign.isa import HwConfig, Opcode, encode
from codesign.isasim import IsaSim
from codesign.rtl.requant import RequantEngine, Requantizer
from codesign.timing import engine_cycles, requant_latency

from .harness import Harness, simulate

_M = isa.MULT_BITS


def _wrap32(v: int) -> int:
    return (v + 2**31) % 2**32 - 2**31


def _reference(acc, bias, mult, shift, y_zp, qmin, qmax) -> int:
    r = isa.requantize(_wrap32(acc + bias), mult, shift)
    return min(max(r + y_zp, qmin), qmax) & 0xFF


# -------------------------------------------------------------------------------------------------
# Requantizer

def _random_lane(rng) -> tuple[int, int, int, int]:
    """(acc, bias, mult, shift) drawn to hit every corner of the integer algorithm."""
    kind = rng.integers(8)
    bits = int(rng.integers(0, 32))
    if kind == 0:       # anything
        acc = int(rng.integers(-2**31, 2**31))
    elif kind == 1:     # |acc| >= 2**24 with a tie (or near-tie) in the 24-bit rounding
        n = int(rng.integers(25, 32))
        acc = (int(rng.integers(2**23, 2**24)) << (n - 24)) | (1 << (n - 25))
        acc += int(rng.integers(-1, 2))
        acc *= int(rng.choice([-1, 1]))
    elif kind == 2:     # powers of two and their neighbours, int32 extremes
        acc = int(rng.choice([-1, 1])) * (1 << bits) + int(rng.integers(-1, 2))
        acc = int(rng.choice([acc, -2**31, 2**31 - 1, 0, 1, -1]))
    elif kind == 3:     # all-ones mantissas: rounding carries out of 24 bits
        n = int(rng.integers(24, 32))
        acc = int(rng.choice([-1, 1])) * ((1 << n) - int(rng.integers(1, 3)))
    else:               # realistic accumulator magnitudes
        acc = int(rng.integers(-(1 << bits), (1 << bits) + 1))
    acc = _wrap32(acc)

    bias = int(rng.choice([0, 0, int(rng.integers(-2**15, 2**15)),
                           int(rng.integers(-2**31, 2**31))]))
    mkind = rng.integers(10)
    if mkind == 0:
        mult = 0
    elif mkind == 1:
        mult = int(rng.choice([2**23, 2**24 - 1, 3 << 22]))
    elif mkind == 2:    # outside the documented domain: the datapath must still agree (tiny
        # multipliers give products whose left shift does not saturate)
        mult = int(rng.integers(1, int(rng.choice([2**6, 2**12, 2**23]))))
    else:
        mult = int(rng.integers(2**23, 2**24))
    # Mostly shifts that land the result near the 8-bit range (where ties and clamps matter),
    # sometimes any shift at all (huge left shifts saturate, huge right shifts give 0).
    a = abs(_wrap32(acc + bias)) or 1
    target = int(rng.integers(-3, 11))
    shift = a.bit_length() + 23 - target + int(rng.integers(-1, 2))
    if rng.integers(4) == 0 or not 0 <= shift <= 255:
        shift = int(rng.choice([0, 1, 23, 24, 25, 255, int(rng.integers(0, 256))]))
    return acc, bias, mult, shift


def _random_scalars(rng) -> tuple[int, int, int]:
    kind = rng.integers(4)
    if kind == 0:
        return int(rng.integers(-128, 128)), -128, 127
    if kind == 1:
        return int(rng.integers(0, 256)), int(rng.choice([0, int(rng.integers(0, 256))])), 255
    return tuple(int(v) for v in rng.integers(-256, 256, 3))   # incl. qmin > qmax


def _exact(acc: int, mult: int, shift: int) -> int:
    """``RNE(acc · mult · 2**-shift)`` in one rounding (saturated like isa.requantize)."""
    num = abs(acc) * mult
    q, rem = num >> shift, num & ((1 << shift) - 1)
    if shift and (rem > (1 << (shift - 1)) or (rem == 1 << (shift - 1) and q & 1)):
        q += 1
    q = min(q, 2**31)
    return -q if acc < 0 else q


def _double_rounding_lanes(rng, n: int) -> list[tuple[int, int, int, int]]:
    """Lanes where the 24-bit roundings of |acc| and of the product change the result.

    The product is aimed at a final-rounding tie ``(j + 1/2) · 2**right`` so that rounding it to
    24 bits can land exactly on the tie; ``acc`` is the 24-bit value scaled up by ``2**e`` plus an
    offset that its own rounding removes. Only lanes where isa.requantize differs from a single
    exact rounding are kept: there, a datapath that skipped or mis-rounded a middle step fails.
    """
    lanes = []
    while len(lanes) < n // 4:
        lane = _product_tie_lane(rng)
        if lane is not None:
            lanes.append(lane)
    while len(lanes) < n:
        mult = int(rng.integers(2**23, 2**24))
        drop = int(rng.integers(23, 25))
        j = int(rng.integers(0, 256))
        right = (2 * _M - 1 if drop == 24 else 2 * _M - 2) - (drop - 1) \
            - ((2 * j + 1).bit_length() - 1)
        a24 = ((2 * j + 1) << (right + drop - 1)) // mult + int(rng.integers(-1, 3))
        if not 2**23 <= a24 < 2**24 or (a24 * mult >> (2 * _M - 1)) != (drop == 24):
            continue
        e = int(rng.integers(0, 8))
        delta = int(rng.integers(-(1 << e >> 1), (1 << e >> 1) + 1)) if e else 0
        acc = ((a24 << e) + delta) * int(rng.choice([-1, 1]))
        shift = right + drop + e
        if abs(acc) < 2**31 and isa.requantize(acc, mult, shift) != _exact(acc, mult, shift):
            lanes.append((acc, 0, mult, shift))
    return lanes


def _product_tie_lane(rng) -> tuple[int, int, int, int] | None:
    """A lane whose product ``a24 · mult`` is an exact tie of the 24-bit rounding.

    ``p = (2k + 1) · 2**(drop-1)`` rounds to the even ``k``; ``k = (j + 1/2) · 2**right`` with an
    even ``j`` is itself a final tie, so the result is ``j`` where one exact rounding gives
    ``j + 1`` and a product rounding that ignored exact ties would also give ``j + 1``.
    ``a24 = a' · 2**u`` takes a small odd factor ``a'`` of ``2k + 1``; ``mult`` the rest.
    """
    j = 2 * int(rng.integers(0, 128))
    right = _M + 1 - (2 * j + 1).bit_length()
    k = (2 * j + 1) << (right - 1)
    drop = int(rng.integers(23, 25))
    for a_odd in range(3, 64, 2):
        if (2 * k + 1) % a_odd == 0:
            break
    else:
        return None
    mult, t = (2 * k + 1) // a_odd, 0
    while mult < 2**23:
        mult, t = mult << 1, t + 1
    u = drop - 1 - t
    if mult >= 2**24 or u < 0 or not 2**23 <= a_odd << u < 2**24:
        return None
    e = int(rng.integers(0, 8))
    acc = (a_odd << u << e) * int(rng.choice([-1, 1]))
    shift = right + drop + e
    assert isa.requantize(acc, mult, shift) != _exact(acc, mult, shift)
    return acc, 0, mult, shift


def _check_requantizer(batches, rng, *, lanes: int, groups: int = 1, steps: int = 1,
                       deep: bool = False) -> int:
    """Stream ``batches`` through a Requantizer; returns the lanes checked.

    A batch is ``(prm, scalars, inputs)``: ``lanes · groups`` channels' ``(bias, mult, shift)``,
    ``(y_zp, qmin, qmax)``, and a list of ``(turn, accs)``. The parameters change only between
    batches, once every result of the previous batch is out; the inputs come with random gaps
    (at least ``steps`` cycles apart), with garbage on ``acc`` and ``turn`` in between.
    """
    dut = Requantizer(lanes=lanes, groups=groups, steps=steps, deep=deep)
    # The timing model's latency is the RTL's (checked cycle by cycle below).
    assert dut.latency == requant_latency(HwConfig(rows=4, cols=4 * lanes * groups,
                                                   requant_groups=groups, requant_steps=steps,
                                                   deep_pipeline=deep))
    checked = 0

    async def testbench(ctx):
        nonlocal checked
        cycle = 0
        for prm, (y_zp, qmin, qmax), inputs in batches:
            ctx.set(dut.prm, [{"bias": b, "mult": mu, "shift": sh} for b, mu, sh in prm])
            ctx.set(dut.y_zp, y_zp)
            ctx.set(dut.qmin, qmin)
            ctx.set(dut.qmax, qmax)
            sent, got, pending, last = [], [], list(inputs), None
            while len(got) < len(inputs):
                spaced = last is None or cycle - last >= steps
                if pending and spaced and rng.random() < 0.85:
                    turn, accs = pending.pop(0)
                    ctx.set(dut.acc, accs)
                    if groups > 1:
                        ctx.set(dut.turn, turn)
                    ctx.set(dut.valid, 1)
                    want = [_reference(acc, *prm[turn * lanes + i], y_zp, qmin, qmax)
                            for i, acc in enumerate(accs)]
                    sent.append((cycle, want, turn, accs))
                    last = cycle
                else:
                    # Garbage while not valid must not disturb anything.
                    ctx.set(dut.valid, 0)
                    ctx.set(dut.acc, [int(v) for v in rng.integers(-2**31, 2**31, lanes)])
                    if groups > 1:
                        ctx.set(dut.turn, int(rng.integers(groups)))
                if ctx.get(dut.q_valid):
                    got.append((cycle, [int(v) for v in ctx.get(dut.q)]))
                await ctx.tick()
                cycle += 1
            for (t_in, want, turn, accs), (t_out, q) in zip(sent, got, strict=True):
                assert t_out == t_in + dut.latency
                assert q == want, (turn, accs, prm, (y_zp, qmin, qmax))
                checked += lanes

    simulate(dut, testbench)
    return checked


def _random_batches(rng, lanes: int, groups: int, n: int):
    """``n`` batches: each channel's parameters drawn with an accumulator that hits a corner of
    the algorithm with them (one input per turn, in random order), plus a few inputs with
    accumulators drawn independently."""
    batches = []
    for _ in range(n):
        drawn = [_random_lane(rng) for _ in range(lanes * groups)]
        inputs = [(int(t), [acc for acc, *_ in drawn[t * lanes:(t + 1) * lanes]])
                  for t in rng.permutation(groups)]
        inputs += [(int(rng.integers(groups)), [_random_lane(rng)[0] for _ in range(lanes)])
                   for _ in range(int(rng.integers(0, 3)))]
        batches.append(([lane[1:] for lane in drawn], _random_scalars(rng), inputs))
    return batches


def _inputs(batches, lanes: int) -> int:
    return lanes * sum(len(inputs) for _, _, inputs in batches)


def test_requantizer_random_and_edges():
    rng = np.random.default_rng(1)
    batches = _random_batches(rng, 4, 1, 500)
    assert _check_requantizer(batches, rng, lanes=4) == _inputs(batches, 4) > 2000


def test_requantizer_single_lane():
    rng = np.random.default_rng(2)
    batches = _random_batches(rng, 1, 1, 600)
    assert _check_requantizer(batches, rng, lanes=1) == _inputs(batches, 1) > 600


@pytest.mark.parametrize(("lanes", "groups", "steps", "deep"),
                         [(1, 2, 4, False), (2, 4, 2, False), (2, 1, 4, False), (2, 2, 1, True),
                          (1, 2, 4, True)])
def test_requantizer_shared(lanes, groups, steps, deep):
    """Lane groups taking turns on the per-channel parameters, multi-cycle multiplies."""
    rng = np.random.default_rng(10 * lanes + 3 * groups + steps)
    batches = _random_batches(rng, lanes, groups, 250)
    checked = _check_requantizer(batches, rng, lanes=lanes, groups=groups, steps=steps,
                                 deep=deep)
    assert checked == _inputs(batches, lanes) >= 250 * lanes * groups


@pytest.mark.parametrize(("groups", "steps"), [(1, 1), (2, 2), (1, 4)])
def test_requantizer_double_rounding(groups, steps):
    rng = np.random.default_rng(3)
    lanes = _double_rounding_lanes(rng, 800)
    # y_zp = 0 with a wide clamp keeps small results visible; 4 lanes per turn.
    n = 4 * groups
    batches = [([lane[1:] for lane in lanes[i:i + n]], (0, -256, 255),
                [(t, [lane[0] for lane in lanes[i + 4 * t:i + 4 * t + 4]])
                 for t in range(groups)])
               for i in range(0, len(lanes), n)]
    assert _check_requantizer(batches, rng, lanes=4, groups=groups, steps=steps) == 800


@pytest.mark.parametrize("steps", [1, 4])
def test_requantizer_hand_picked(steps):
    """Exact ties at both roundings, saturation, clamp order, mult = 0, tiny mult."""
    cases = [
        # 24-bit rounding ties: |acc| = (2**24 + 1) * 2 rounds down (even), ... + 3 rounds up.
        ((2**24 + 1) * 2 - 1, 0, 2**23, 47, 0, -128, 127),
        (2**25 + 2, 0, 2**23, 46, 0, -128, 127),
        (2**25 + 6, 0, 2**24 - 1, 50, 3, -128, 127),
        (-(2**31), 0, 2**23, 54, 0, -256, 255),
        (2**31 - 1, 0, 2**24 - 1, 55, 0, -256, 255),
        # final rounding ties: acc * 2**-1 = k + 0.5
        (5, 0, 2**23, 24, 0, -128, 127), (7, 0, 2**23, 24, 0, -128, 127),
        (-5, 0, 2**23, 24, 0, -128, 127), (-7, 0, 2**23, 24, 0, -128, 127),
        (1, 0, 2**23, 24, 0, -128, 127), (-1, 0, 2**23, 24, 0, -128, 127),
        (3, 0, 2**23, 25, 0, -128, 127),   # 0.75 → 1
        # saturation both ways, huge shifts
        (1000, 0, 2**23, 0, 0, -128, 127), (-1000, 0, 2**24 - 1, 0, 5, -128, 127),
        (123456, 0, 2**23, 255, 7, -128, 127), (2**31 - 1, 0, 2**24 - 1, 255, 0, -128, 127),
        # bias wrap-around
        (2**31 - 1, 1, 2**23, 40, 0, -128, 127), (-(2**31), -1, 2**23, 40, 0, -128, 127),
        # mult = 0 and acc = 0
        (12345, 0, 0, 20, 9, -128, 127), (0, 0, 2**23, 0, -9, -128, 127),
        # multipliers below the documented range: left shifts that do not saturate
        (10, 0, 7, 0, 0, -256, 255), (3, 0, 5, 2, 0, -256, 255), (-20, 0, 3, 1, 0, -256, 255),
        # qmin > qmax: the result is qmax
        (100, 0, 2**23, 23, 0, 50, 10), (-100, 0, 2**23, 23, 0, 50, 10),
    ]
    dut = Requantizer(lanes=1, steps=steps)

    async def testbench(ctx):
        for acc, bias, mult, shift, y_zp, qmin, qmax in cases:
            ctx.set(dut.acc, [acc])
            ctx.set(dut.prm, [{"bias": bias, "mult": mult, "shift": shift}])
            ctx.set(dut.y_zp, y_zp)
            ctx.set(dut.qmin, qmin)
            ctx.set(dut.qmax, qmax)
            ctx.set(dut.valid, 1)
            await ctx.tick()
            ctx.set(dut.valid, 0)
            await ctx.tick().repeat(dut.latency - 1)
            assert ctx.get(dut.q_valid)
            want = _reference(acc, bias, mult, shift, y_zp, qmin, qmax)
            assert ctx.get(dut.q[0]) == want, (acc, bias, mult, shift, y_zp, qmin, qmax)
            await ctx.tick()

    simulate(dut, testbench)


# -------------------------------------------------------------------------------------------------
# RequantEngine

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=4, acc_depth=12, prm_depth=3),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=20, wgt_depth=4, acc_depth=10, prm_depth=2),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=16, wgt_depth=4, acc_depth=9, prm_depth=2),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=16, wgt_depth=1, acc_depth=8, prm_depth=2),
    # Shared requantizers: lane groups taking turns, multi-cycle multiplies, both.
    HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=16, wgt_depth=2, acc_depth=9, prm_depth=2,
             requant_groups=2, requant_steps=4),
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=4, acc_depth=12, prm_depth=3,
             requant_groups=4),
    HwConfig(rows=8, cols=4, bus_bytes=2, act_depth=20, wgt_depth=9, acc_depth=10, prm_depth=2,
             requant_groups=2, requant_steps=2),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=16, wgt_depth=4, acc_depth=9, prm_depth=2,
             requant_steps=4),
    # The same with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=4, acc_depth=12, prm_depth=3,
             deep_pipeline=True),
]


def _random_requant(rng, c: HwConfig) -> int:
    count = int(rng.integers(0, c.acc_depth + 1)) if rng.integers(8) else 0
    acc_base = int(rng.integers(0, c.acc_depth - count + 1))
    out_stride = int(rng.integers(0, 3))
    span = (count - 1) * out_stride + 1 if count else 1
    if span > c.act_depth:
        out_stride, span = 1, count
    out_base = int(rng.integers(0, c.act_depth - span + 1))
    y_zp, qmin, qmax = _random_scalars(rng)
    return encode(Opcode.REQUANT, lane_group=int(rng.integers(0, c.act_bytes // c.cols)),
                  y_zp=y_zp, qmin=qmin, qmax=qmax, acc_base=acc_base,
                  prm_addr=int(rng.integers(0, c.prm_depth)), out_base=out_base,
                  out_stride=out_stride, count=count)


def _random_state(rng, sim: IsaSim) -> None:
    c = sim.config
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    sim.acc[:] = [[_random_lane(rng)[0] for _ in range(c.cols)] for _ in range(c.acc_depth)]
    for p in range(c.prm_depth):
        lanes = []
        for _ in range(c.cols):
            _, bias, mult, shift = _random_lane(rng)
            if mult and mult < 2**23:
                mult += 2**23           # keep PRM words inside the documented domain
            lanes.append(bias % 2**32 | mult << 32 | shift << 56)
        sim.prm[p] = np.array(lanes, "<u8").view(np.uint8)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_requant_engine_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols + 10 * c.requant_lanes + c.requant_steps)
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    _random_state(rng, sim)
    h = Harness(RequantEngine(c), sim)
    assert set(h.mems) == {"act", "prm", "acc"}
    insns = [_random_requant(rng, c) for _ in range(6)]
    latencies = h.run(sim, insns)
    for insn, cycles in zip(insns, latencies, strict=True):
        opcode, fields = isa.decode(insn)
        assert cycles == engine_cycles(c, opcode, fields)


def test_requant_rejects_bad_args():
    with pytest.raises(ValueError):
        Requantizer(lanes=0)
    with pytest.raises(ValueError, match="groups"):
        Requantizer(lanes=4, groups=32)
    with pytest.raises(ValueError, match="steps"):
        Requantizer(lanes=1, steps=3)
    with pytest.raises(ValueError, match="mult_cell"):
        Requantizer(lanes=1, mult_cell="DSP48")
    with pytest.raises(ValueError, match="deep"):
        Requantizer(lanes=1, deep=1)
    with pytest.raises(TypeError):
        RequantEngine(None)
    with pytest.raises(ValueError, match="requant_groups"):
        HwConfig(rows=2, cols=4, bus_bytes=2, requant_groups=3)
    with pytest.raises(ValueError, match="requant_steps"):
        HwConfig(rows=2, cols=4, bus_bytes=2, requant_steps=8)


def test_requant_converts_to_verilog():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        verilog.convert(Requantizer(lanes=2), emit_src=False, name="requantizer")
        verilog.convert(Requantizer(lanes=1, groups=2, steps=4), emit_src=False,
                        name="requantizer")
        verilog.convert(RequantEngine(HwConfig(rows=2, cols=4, bus_bytes=2)), emit_src=False,
                        name="requant_engine")
