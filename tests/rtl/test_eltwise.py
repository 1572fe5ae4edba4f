# amaranth: UnusedElaboratable=no
"""EltwiseEngine against IsaSim.step on randomized ELTWISE instructions."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import HwConfig, Opcode, decode, encode
from codesign.isasim import IsaSim
from codesign.rtl.eltwise import EltwiseEngine
from codesign.timing import engine_cycles

from .harness import Harness

N_INSNS = 24

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=2, acc_depth=12, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=20, wgt_depth=4, acc_depth=10, prm_depth=1),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=16, wgt_depth=1, acc_depth=9, prm_depth=1),
    HwConfig(rows=8, cols=2, bus_bytes=2, act_depth=16, wgt_depth=8, acc_depth=8, prm_depth=1),
    HwConfig(rows=1, cols=8, bus_bytes=8, act_depth=16, wgt_depth=1, acc_depth=8, prm_depth=1),
    # The same with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=24, wgt_depth=2, acc_depth=12, prm_depth=1,
             deep_pipeline=True),
]

#: Extreme zero points (the whole 9-bit field) and multipliers (the whole 16-bit field).
ZPS = [-256, -128, -1, 0, 1, 127, 128, 255]
MULTS = [-32768, -32767, -1, 0, 1, 32767]


def random_eltwise(rng, c: HwConfig, *, max_count: int = 8) -> int:
    """A random ELTWISE; the operands may overlap each other (ACT is only read)."""
    count = int(rng.integers(0, max_count + 1)) if rng.integers(10) else 0
    count = min(count, c.act_depth, c.acc_depth)

    def pick(choices, lo, hi):
        return int(rng.choice(choices)) if rng.integers(3) == 0 else int(rng.integers(lo, hi))

    return encode(
        Opcode.ELTWISE, lane_group=int(rng.integers(c.act_bytes // c.cols)),
        a_signed=int(rng.integers(2)), b_signed=int(rng.integers(2)),
        a_zp=pick(ZPS, -256, 256), b_zp=pick(ZPS, -256, 256),
        a_mult=pick(MULTS, -32768, 32768), b_mult=pick(MULTS, -32768, 32768),
        a_base=int(rng.integers(0, c.act_depth - count + 1)),
        b_base=int(rng.integers(0, c.act_depth - count + 1)),
        acc_base=int(rng.integers(0, c.acc_depth - count + 1)), count=count,
        # A product of the operands in a third of them, a repeating (broadcast) b in half.
        mul=int(rng.integers(3) == 0),
        b_period=int(rng.integers(1, max_count + 2)) if rng.integers(2) else 0)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_eltwise_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols * 10 + c.bus_bytes)
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    # Mostly the extremes of both signednesses, so that products reach their largest magnitudes.
    extremes = np.array([0, 1, 127, 128, 129, 255], np.uint8)
    sim.act[:] = np.where(rng.integers(2, size=sim.act.shape), rng.choice(extremes, sim.act.shape),
                          rng.integers(0, 256, sim.act.shape))
    sim.acc[:] = rng.integers(-2**31, 2**31, sim.acc.shape, dtype=np.int64)
    # The largest magnitudes: uint8 255 and int8 -128 at the far ends of the zero-point and
    # multiplier ranges, ±(255 + 256)·32768 and ±(128 + 255)·32768 for both operands.
    n = min(4, c.act_depth // 2, c.acc_depth)
    sim.act[:n] = 255
    sim.act[n:2 * n] = 128
    extreme = [encode(Opcode.ELTWISE, a_signed=x_signed, b_signed=x_signed, a_zp=zp, b_zp=zp,
                      a_mult=mult, b_mult=mult, a_base=base, b_base=base, acc_base=0, count=n)
               for x_signed, base, zp in ((0, 0, -256), (1, n, 255))
               for mult in (-32768, 32767)]
    # Products at their largest magnitudes: (255 + 256)**2 and (-128 - 255)·(255 + 256).
    extreme += [encode(Opcode.ELTWISE, mul=1, a_signed=a_signed, a_zp=a_zp, b_zp=-256,
                       a_base=base, b_base=0, acc_base=0, count=n, b_period=period)
                for a_signed, base, a_zp in ((0, 0, -256), (1, n, 255)) for period in (0, 1)]
    h = Harness(EltwiseEngine(c), sim)
    assert set(h.mems) == {"act", "acc"}
    insns = [random_eltwise(rng, c) for _ in range(N_INSNS)] + extreme
    cycles = h.run(sim, insns)
    counts = [int(decode(insn)[1].count) for insn in insns]
    assert any(counts) and not all(counts)
    # Two ACT reads per element, then four pipeline stages (six in a deep pipeline): the timing
    # model's figure.
    assert cycles == [engine_cycles(c, Opcode.ELTWISE, decode(insn)[1]) for insn in insns]
    assert cycles == [2 * n + 4 + 2 * c.deep_pipeline if n else 1 for n in counts]
