"""DmaEngine against IsaSim.step on randomized LOAD/STORE instructions."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import HwConfig, Mem, Opcode, decode, encode
from codesign.isasim import IsaSim
from codesign.rtl.dma import DmaEngine

from .harness import Harness, OnNativePort

EXT_WORDS = 64

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2),
    HwConfig(rows=2, cols=4, bus_bytes=4, act_depth=16, wgt_depth=4, acc_depth=4, prm_depth=3),
    HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=12, wgt_depth=5, acc_depth=4, prm_depth=2),
    # The same with the extra pipeline registers of an ECP5 NPU.
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=4, acc_depth=4, prm_depth=2,
             deep_pipeline=True),
]


def _random_span(rng, total: int, rows: int, length: int) -> tuple[int, int]:
    """(base, stride) of ``rows`` non-overlapping runs of ``length`` inside ``total``."""
    max_stride = (total - length) // max(rows - 1, 1) if rows > 1 else length
    stride = int(rng.integers(length, max(max_stride, length) + 1)) if rows > 1 else \
        int(rng.integers(0, 4))
    used = (rows - 1) * stride + length
    return int(rng.integers(0, total - used + 1)), stride


def random_dma(rng, c: HwConfig, ext_words: int, store: bool | None = None) -> int:
    store = bool(rng.integers(2)) if store is None else store
    mem = Mem.ACT if store else Mem(int(rng.integers(3)))
    total = c.depth(mem) * c.slices(mem)
    while True:
        rows = int(rng.integers(1, 4))
        length = int(rng.integers(1, 7))
        if rows * length <= min(total, ext_words):
            break
    if rng.integers(10) == 0:
        rows, length = (0, 3) if rng.integers(2) else (2, 0)
        sp, sp_stride, ext, ext_stride = 0, 0, 0, 0
    else:
        sp, sp_stride = _random_span(rng, total, rows, length)
        ext, ext_stride = _random_span(rng, ext_words, rows, length)
    return encode(Opcode.STORE if store else Opcode.LOAD, mem=mem, sp_addr=sp,
                  sp_stride=sp_stride, ext_addr=ext, ext_stride=ext_stride, rows=rows,
                  length=length)


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_dma_random(config):
    c = config
    rng = np.random.default_rng(c.rows * 100 + c.cols * 10 + c.bus_bytes)
    sim = IsaSim(c, rng.integers(0, 256, EXT_WORDS * c.bus_bytes, dtype=np.uint8))
    sim.act[:] = rng.integers(0, 256, sim.act.shape)
    sim.wgt[:] = rng.integers(0, 256, sim.wgt.shape)
    sim.prm[:] = rng.integers(0, 256, sim.prm.shape)
    h = Harness(OnNativePort(DmaEngine(c)), sim)
    assert set(h.mems) == {"act", "wgt", "prm", "ext"}
    insns = [random_dma(rng, c, EXT_WORDS) for _ in range(30)]
    latencies = h.run(sim, insns)
    assert len(latencies) == len(insns)
    # One bus word per cycle in steady state: N slices take N + 1 busy cycles.
    for insn, cycles in zip(insns, latencies, strict=True):
        _, f = decode(insn)
        n = int(f.rows) * int(f.length)
        assert cycles == n + 1, (n, cycles)
