"""Controller: CSRs, instruction fetch from a modelled external memory, dispatch, CYCLES."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import (
    ENGINE,
    ENGINES,
    INSN_BITS,
    OPCODE_BITS,
    Csr,
    HwConfig,
    LoadStore,
    Mem,
    Opcode,
    decode,
    ports_used,
)
from codesign.rtl.controller import Controller
from codesign.timing import schedule

from .harness import OnNativePort, csr_read, csr_write, simulate

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=2, acc_depth=2, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=8, wgt_depth=4, acc_depth=2, prm_depth=1),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=8, wgt_depth=4, acc_depth=2, prm_depth=1),
    HwConfig(rows=1, cols=32, bus_bytes=32, act_depth=8, wgt_depth=1, acc_depth=2, prm_depth=1),
]


def _program(rng, n_insns: int, last_opcode: int) -> list[int]:
    """Random instruction words (random fields) ending with ``last_opcode``; the first ones are
    every engine opcode once, in random order."""
    values = [o.value for o in ENGINE]
    ops = [int(v) for v in rng.permutation(values)][:n_insns]
    ops += [int(rng.choice(values)) for _ in range(n_insns - len(ops))] + [last_opcode]
    words = []
    mem = LoadStore["mem"]
    for op in ops:
        body = int.from_bytes(rng.bytes(INSN_BITS // 8), "little")
        # A LOAD/STORE names a real scratchpad (the controller reads `mem` for the ports).
        body &= ~(((1 << mem.width) - 1) << mem.offset)
        body |= int(rng.choice([m.value for m in Mem])) << mem.offset
        words.append((body & ~((1 << OPCODE_BITS) - 1)) | op)
    return words


def _ext_image(c: HwConfig, base: int, program: list[int]) -> dict[int, int]:
    ext = {}
    mask = (1 << (8 * c.bus_bytes)) - 1
    for k, insn in enumerate(program):
        for w in range(c.insn_words):
            ext[base + k * c.insn_words + w] = (insn >> (8 * c.bus_bytes * w)) & mask
    return ext


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_controller_runs_programs(config):
    """Random programs (random fields and wait bits) against model engines of random latency:
    every dispatch happens in exactly the cycle codesign.timing.schedule predicts, two running
    engines never hold one port, fetch never overlaps a busy DMA engine, and CYCLES is exact."""
    c = config
    n = c.insn_words
    rng = np.random.default_rng(c.bus_bytes)
    dut = OnNativePort(Controller(c))

    async def run(ctx, base, program):
        ext = _ext_image(c, base, program)
        latencies = [int(rng.integers(1, 3 * n)) for _ in program]
        await csr_write(ctx, dut, Csr.PROG_BASE, base)
        assert csr_read(ctx, dut, Csr.PROG_BASE) == base
        await csr_write(ctx, dut, Csr.CTRL, 1)
        dispatched, starts = [], []
        running = {}                     # engine -> (start cycle, latency, ports)
        pending = None
        for cycle in range(100 * len(program) * (n + 8)):
            ctx.set(dut.mem_rdata, ext[pending] if pending is not None
                    else int.from_bytes(rng.bytes(c.bus_bytes), "little"))
            for e in ENGINES:
                s, lat, _ = running.get(e, (-10**9, 0, 0))
                ctx.set(getattr(dut, f"busy_{e}"), s < cycle <= s + lat)
                ctx.set(getattr(dut, f"ready_{e}"), not s < cycle <= s + lat)
                ctx.set(getattr(dut, f"done_{e}"), cycle == s + lat)
            ctrl = csr_read(ctx, dut, Csr.CTRL)
            busy, done = ctrl & 1, ctrl >> 1
            if not busy:
                assert done
                break
            re, addr = ctx.get(dut.mem_re), ctx.get(dut.mem_addr)
            dma_s, dma_lat, _ = running.get("dma", (-10**9, 0, 0))
            assert not (re and dma_s < cycle <= dma_s + dma_lat), "fetch while DMA is busy"
            pulses = [e for e in ENGINES if ctx.get(getattr(dut, f"start_{e}"))]
            ctx.set(dut.csr_we, 0)
            if pulses:
                assert len(pulses) == 1
                if not dispatched:
                    # A start written while busy is ignored.
                    ctx.set(dut.csr_addr, Csr.CTRL)
                    ctx.set(dut.csr_wdata, 1)
                    ctx.set(dut.csr_we, 1)
                insn = ctx.get(dut.insn)
                opcode, fields = decode(insn)
                ports = int(ports_used(opcode, fields))
                for s, lat, held in running.values():
                    if s < cycle < s + lat:
                        assert not ports & held, "two engines on one port"
                dispatched.append((pulses[0], insn))
                starts.append(cycle)
                running[pulses[0]] = (cycle, latencies[len(starts) - 1], ports)
            if not re:
                assert addr == 0
            pending = addr if re else None
            await ctx.tick()
        else:
            raise AssertionError("controller did not reach END")
        order = iter(latencies)
        expected = schedule(program, c, duration=lambda opcode, f: next(order))
        assert starts == expected.starts
        return dispatched, expected.cycles

    async def testbench(ctx):
        assert csr_read(ctx, dut, Csr.CTRL) == 0
        assert csr_read(ctx, dut, 3) == 0
        for base, n_insns, last in [(3, 12, Opcode.END.value), (0, 0, Opcode.END.value),
                                    (17, 5, 0xF)]:
            program = _program(rng, n_insns, last)
            dispatched, expected_cycles = await run(ctx, base, program)
            assert dispatched == [(ENGINE[Opcode(p & 0xF)], p) for p in program[:-1]]
            assert csr_read(ctx, dut, Csr.CTRL) == 0b10
            assert csr_read(ctx, dut, Csr.CYCLES) == expected_cycles
            # done and CYCLES hold until the next start.
            for _ in range(3):
                await ctx.tick()
            assert csr_read(ctx, dut, Csr.CTRL) == 0b10
            assert csr_read(ctx, dut, Csr.CYCLES) == expected_cycles
            assert ctx.get(dut.mem_re) == 0

    simulate(dut, testbench)
