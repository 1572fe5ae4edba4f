"""PoolEngine against IsaSim.step on randomized POOL instructions (MAX and SUM)."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import HwConfig, Opcode, PoolMode, decode, encode
from codesign.isasim import IsaError, IsaSim
from codesign.rtl.pool import PoolEngine
from codesign.timing import engine_cycles

from .harness import Harness, simulate, to_ints

N_INSNS = 24

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=64, wgt_depth=2, acc_depth=16, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=128, wgt_depth=4, acc_depth=16, prm_depth=1),
    HwConfig(rows=1, cols=1, bus_bytes=1, act_depth=50, wgt_depth=1, acc_depth=12, prm_depth=1),
    HwConfig(rows=8, cols=2, bus_bytes=2, act_depth=125, wgt_depth=8, acc_depth=9, prm_depth=1),
    # The same with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=64, wgt_depth=2, acc_depth=16, prm_depth=1,
             deep_pipeline=True),
]


def random_pool(rng, c: HwConfig, mode: PoolMode, *, max_in: int = 4) -> tuple[int, int]:
    """A random, valid POOL over a random NHWC tensor; returns (insn, window positions).

    MAX reads every channel word of a pixel and writes to ACT, in a region disjoint from the
    input (either order). SUM reads one channel word (a random one of the pixel) and one lane
    group of it, writes to ACC, gets a random (ignored) ``words`` field, and may have padding as
    large as the window, so that some windows have no in-bounds position (their sum is 0).
    """
    summing = mode == PoolMode.SUM
    while True:
        in_h, in_w = (int(v) for v in rng.integers(1, max_in + 1, 2))
        words = int(rng.integers(1, 3))
        k_h, k_w = (int(v) for v in rng.integers(1, 4, 2))
        s_h, s_w = (int(v) for v in rng.integers(1, 3, 2))
        pads = [int(rng.integers(0, k + summing)) for k in (k_h, k_w, k_h, k_w)]
        pt, pl, pb, pr = pads
        out_h = (in_h + pt + pb - k_h) // s_h + 1
        out_w = (in_w + pl + pr - k_w) // s_w + 1
        n_in = in_h * in_w * words
        n_out = out_h * out_w * (1 if summing else words)
        if out_h < 1 or out_w < 1:
            continue
        if summing:
            if n_in > c.act_depth or n_out > c.acc_depth:
                continue
            in_base = int(rng.integers(0, c.act_depth - n_in + 1))
            out_base = int(rng.integers(0, c.acc_depth - n_out + 1))
            in_base += int(rng.integers(words))        # the channel word to sum
        elif n_in + n_out > c.act_depth:
            continue
        elif rng.integers(2):
            in_base = int(rng.integers(0, c.act_depth - n_in - n_out + 1))
            out_base = int(rng.integers(in_base + n_in, c.act_depth - n_out + 1))
        else:
            out_base = int(rng.integers(0, c.act_depth - n_in - n_out + 1))
            in_base = int(rng.integers(out_base + n_out, c.act_depth - n_in + 1))
        row_words, pix_words = in_w * words, words
        insn = encode(
            Opcode.POOL, mode=mode, x_signed=int(rng.integers(2)),
            lane_group=int(rng.integers(c.act_bytes // c.cols)),
            act_base=in_base - pt * row_words - pl * pix_words,
            step_w=s_w * pix_words, step_h=s_h * row_words,
            row_words=row_words, pix_words=pix_words, out_base=out_base,
            words=int(rng.integers(4)) if summing else words,
            out_h=out_h, out_w=out_w, ih0=-pt, iw0=-pl, stride_h=s_h, stride_w=s_w,
            k_h=k_h, k_w=k_w, in_h=in_h, in_w=in_w)
        try:
            IsaSim(c, np.zeros(c.bus_bytes, np.uint8)).step(insn)   # rejects empty MAX windows
        except IsaError:
            continue
        return insn, n_out * k_h * k_w


def _global_sum(in_h: int, in_w: int, lane_group: int, x_signed: int, out_base: int) -> int:
    """SUM over a whole ``in_h`` × ``in_w`` one-word-per-pixel tensor at ACT[0] (global pooling)."""
    return encode(
        Opcode.POOL, mode=PoolMode.SUM, x_signed=x_signed, lane_group=lane_group, act_base=0,
        step_w=0, step_h=0, row_words=in_w, pix_words=1, out_base=out_base, words=0,
        out_h=1, out_w=1, ih0=0, iw0=0, stride_h=1, stride_w=1, k_h=in_h, k_w=in_w,
        in_h=in_h, in_w=in_w)


class _Bench:
    """A PoolEngine in a Harness, with fresh random ACT contents between instructions."""

    extremes = np.array([0, 1, 2, 127, 128, 129, 254, 255], np.uint8)

    def __init__(self, c: HwConfig, seed: int):
        self.rng = np.random.default_rng(seed)
        self.sim = IsaSim(c, np.zeros(c.bus_bytes, np.uint8))
        self.sim.act[:] = self.fresh_act()
        self.h = Harness(PoolEngine(c), self.sim)
        assert set(self.h.mems) == {"act", "acc"}

    def fresh_act(self) -> np.ndarray:
        """Uniform bytes, only extremes of both signednesses (many ties), or one constant."""
        shape, kind = self.sim.act.shape, self.rng.integers(3)
        if kind == 0:
            return self.rng.choice(self.extremes, shape)
        if kind == 1:
            return np.full(shape, self.rng.choice(self.extremes), np.uint8)
        return self.rng.integers(0, 256, shape, dtype=np.uint8)

    def run(self, insns) -> list[int]:
        """Run ``insns`` (each against IsaSim); returns their busy cycles."""
        cycles = []

        async def testbench(ctx):
            for insn in insns:
                cycles.append(await self.h.step(ctx, self.sim, insn))
                # Refresh the input values so later instructions see new data.
                new = self.fresh_act()
                for i, row in enumerate(to_ints(new)):
                    ctx.set(self.h.mems["act"].data[i], row)
                self.sim.act[:] = new

        simulate(self.h, testbench)
        return cycles


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_pool_random(config):
    c = config
    bench = _Bench(c, c.rows * 100 + c.cols * 10 + c.bus_bytes)
    rng = bench.rng
    work = [random_pool(rng, c, PoolMode(int(rng.integers(2)))) for _ in range(N_INSNS)]
    assert {decode(insn)[1].mode for insn, _ in work} == set(PoolMode)
    # Empty instructions (no output pixel) finish at once.
    empty = encode(Opcode.POOL, mode=PoolMode.SUM, out_h=0, out_w=1, k_h=1, k_w=1, in_h=1,
                   in_w=1)
    work.append((empty, 0))
    cycles = bench.run([insn for insn, _ in work])
    # One window position per cycle, then the read register and the fold: busy for
    # positions + 2 cycles (the timing model's figure; a deep pipeline's read and write
    # registers add two), 1 when there is nothing to do.
    assert cycles == [engine_cycles(c, Opcode.POOL, decode(insn)[1]) for insn, _ in work]
    extra = 2 + 2 * c.deep_pipeline
    assert cycles == [positions + extra if positions else 1 for _, positions in work]


@pytest.mark.parametrize("config", [CONFIGS[1], CONFIGS[3]], ids=lambda c: c.name)
def test_pool_global_sum(config):
    """Global average pooling's sum: one window over the whole tensor, every lane group."""
    c = config
    bench = _Bench(c, 7 * c.rows + c.cols)
    shapes = [(25, 5), (5, 25), (1, 1), (13, 4), (8, 8)]
    insns = []
    for k, (in_h, in_w) in enumerate(shapes):
        if in_h * in_w > c.act_depth:
            continue
        for group in range(c.act_bytes // c.cols):
            insns.append(_global_sum(in_h, in_w, group, k % 2, group % c.acc_depth))
    cycles = bench.run(insns)
    assert cycles == [engine_cycles(c, Opcode.POOL, decode(insn)[1]) for insn in insns]
    assert cycles == [int(decode(insn)[1].k_h) * int(decode(insn)[1].k_w) + 2 + 2 * c.deep_pipeline
                      for insn in insns]
