"""Controller: CSRs, instruction fetch from a modelled external memory, dispatch, CYCLES."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.isa import INSN_BITS, OPCODE_BITS, Csr, HwConfig, Opcode
from codesign.rtl.controller import Controller

from .harness import csr_read, csr_write, simulate

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=1, act_depth=8, wgt_depth=2, acc_depth=2, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=8, wgt_depth=4, acc_depth=2, prm_depth=1),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=8, wgt_depth=4, acc_depth=2, prm_depth=1),
    HwConfig(rows=1, cols=32, bus_bytes=32, act_depth=8, wgt_depth=1, acc_depth=2, prm_depth=1),
]

ENGINE_OF = {Opcode.LOAD: "dma", Opcode.STORE: "dma", Opcode.MATMUL: "matmul",
             Opcode.REQUANT: "requant", Opcode.POOL: "pool", Opcode.ELTWISE: "eltwise"}


def _program(rng, n_insns: int, last_opcode: int) -> list[int]:
    """Random instruction words (random fields) ending with ``last_opcode``; the first ones are
    every engine opcode once, in random order."""
    values = [o.value for o in ENGINE_OF]
    ops = [int(v) for v in rng.permutation(values)][:n_insns]
    ops += [int(rng.choice(values)) for _ in range(n_insns - len(ops))] + [last_opcode]
    words = []
    for op in ops:
        body = int.from_bytes(rng.bytes(INSN_BITS // 8), "little")
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
    c = config
    n = c.insn_words
    rng = np.random.default_rng(c.bus_bytes)
    dut = Controller(c)
    starts = {name: getattr(dut, f"start_{name}") for name in set(ENGINE_OF.values())}

    async def run(ctx, base, program):
        """Start at ``base``; model EXT (latency 1) and engines; returns (dispatched, cycles)."""
        ext = _ext_image(c, base, program)
        await csr_write(ctx, dut, Csr.PROG_BASE, base)
        assert csr_read(ctx, dut, Csr.PROG_BASE) == base
        await csr_write(ctx, dut, Csr.CTRL, 1)
        dispatched, expected_cycles = [], 0
        pending, countdown = None, 0
        for _ in range(100 * len(program) * (n + 8)):
            # Inputs of this cycle: read data of last cycle's request, engine done.
            ctx.set(dut.mem_rdata, ext[pending] if pending is not None
                    else int.from_bytes(rng.bytes(c.bus_bytes), "little"))
            ctx.set(dut.engine_done, countdown == 1)
            busy, done = csr_read(ctx, dut, Csr.CTRL) & 1, csr_read(ctx, dut, Csr.CTRL) >> 1
            assert ctx.get(dut.busy) == busy and ctx.get(dut.done) == done
            if not busy:
                assert done
                break
            re, addr = ctx.get(dut.mem_re), ctx.get(dut.mem_addr)
            if countdown:
                assert not re, "fetch while an engine is busy"
                countdown -= 1
            pulses = [name for name, sig in starts.items() if ctx.get(sig)]
            ctx.set(dut.csr_we, 0)
            if pulses:
                assert len(pulses) == 1 and countdown == 0
                if not dispatched:
                    # A start written while busy is ignored.
                    ctx.set(dut.csr_addr, Csr.CTRL)
                    ctx.set(dut.csr_wdata, 1)
                    ctx.set(dut.csr_we, 1)
                insn = ctx.get(dut.insn)
                dispatched.append((pulses[0], insn))
                latency = int(rng.integers(1, 5))
                countdown = latency
                expected_cycles += n + 2 + latency
            if not re:
                assert addr == 0
            pending = addr if re else None
            await ctx.tick()
        else:
            raise AssertionError("controller did not reach END")
        expected_cycles += n + 2   # fetch and dispatch of the final END
        return dispatched, expected_cycles

    async def testbench(ctx):
        assert csr_read(ctx, dut, Csr.CTRL) == 0
        assert csr_read(ctx, dut, 3) == 0
        for base, n_insns, last in [(3, 8, Opcode.END.value), (0, 0, Opcode.END.value),
                                    (17, 3, 0xF)]:
            program = _program(rng, n_insns, last)
            dispatched, expected_cycles = await run(ctx, base, program)
            assert dispatched == [(ENGINE_OF[Opcode(p & 0xF)], p) for p in program[:-1]]
            assert csr_read(ctx, dut, Csr.CTRL) == 0b10
            assert csr_read(ctx, dut, Csr.CYCLES) == expected_cycles
            # done and CYCLES hold until the next start.
            for _ in range(3):
                await ctx.tick()
            assert csr_read(ctx, dut, Csr.CTRL) == 0b10
            assert csr_read(ctx, dut, Csr.CYCLES) == expected_cycles
            assert ctx.get(dut.mem_re) == 0

    simulate(dut, testbench)
