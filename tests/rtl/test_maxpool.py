"""MaxPoolEngine against IsaSim.step on randomized MAXPOOL instructions."""

from __future__ import annotations

import numpy as np
import pytest
from codesign.rtl.maxpool import MaxPoolEngine

from codesign.isa import HwConfig, Opcode, encode
from codesign.isasim import IsaError, IsaSim

from .harness import Harness, simulate, to_ints

N_INSNS = 20

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=64, wgt_depth=2, acc_depth=2, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=64, wgt_depth=4, acc_depth=2, prm_depth=1),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=50, wgt_depth=1, acc_depth=2, prm_depth=1),
]


def random_maxpool(rng, c: HwConfig, sim: IsaSim) -> tuple[int, int]:
    """A random, valid MAXPOOL over a random NHWC tensor; returns (insn, window positions)."""
    while True:
        in_h, in_w = (int(v) for v in rng.integers(1, 5, 2))
        words = int(rng.integers(1, 3))
        k_h, k_w = (int(v) for v in rng.integers(1, 4, 2))
        s_h, s_w = (int(v) for v in rng.integers(1, 3, 2))
        pt, pl = int(rng.integers(0, k_h)), int(rng.integers(0, k_w))
        pb, pr = int(rng.integers(0, k_h)), int(rng.integers(0, k_w))
        out_h = (in_h + pt + pb - k_h) // s_h + 1
        out_w = (in_w + pl + pr - k_w) // s_w + 1
        n_in, n_out = in_h * in_w * words, out_h * out_w * words
        if out_h < 1 or out_w < 1 or n_in + n_out > c.act_depth:
            continue
        # Input and output in disjoint regions, in either order.
        if rng.integers(2):
            in_base = int(rng.integers(0, c.act_depth - n_in - n_out + 1))
            out_base = int(rng.integers(in_base + n_in, c.act_depth - n_out + 1))
        else:
            out_base = int(rng.integers(0, c.act_depth - n_in - n_out + 1))
            in_base = int(rng.integers(out_base + n_out, c.act_depth - n_in + 1))
        row_words, pix_words = in_w * words, words
        insn = encode(
            Opcode.MAXPOOL, x_signed=int(rng.integers(2)),
            act_base=in_base - pt * row_words - pl * pix_words,
            step_w=s_w * pix_words, step_h=s_h * row_words,
            row_words=row_words, pix_words=pix_words, out_base=out_base, words=words,
            out_h=out_h, out_w=out_w, ih0=-pt, iw0=-pl, stride_h=s_h, stride_w=s_w,
            k_h=k_h, k_w=k_w, in_h=in_h, in_w=in_w)
        try:
            IsaSim(c, sim.ext).step(insn)   # rejects windows with no in-bounds position
        except IsaError:
            continue
        return insn, n_out * k_h * k_w


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_maxpool_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols * 10 + c.bus_bytes)
    sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
    extremes = np.array([0, 1, 2, 127, 128, 129, 254, 255], np.uint8)

    def fresh_act() -> np.ndarray:
        """Uniform bytes, or only extremes of both signednesses (many ties)."""
        if rng.integers(2):
            return rng.choice(extremes, sim.act.shape)
        return rng.integers(0, 256, sim.act.shape, dtype=np.uint8)

    sim.act[:] = fresh_act()
    h = Harness(MaxPoolEngine(c), sim)
    assert set(h.mems) == {"act"}
    work = []

    async def testbench(ctx):
        for _ in range(N_INSNS):
            insn, positions = random_maxpool(rng, c, sim)
            work.append((positions, await h.step(ctx, sim, insn)))
            # Refresh the input values so later instructions see new data.
            new = fresh_act()
            for i, row in enumerate(to_ints(new)):
                ctx.set(h.mems["act"].data[i], row)
            sim.act[:] = new

    simulate(h, testbench)
    assert len(work) == N_INSNS
    # One window position per cycle: busy for positions + 1 cycles.
    assert all(cycles == positions + 1 for positions, cycles in work), work
