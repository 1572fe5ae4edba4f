"""The whole NPU running programs out of a modelled external memory, against IsaSim.run."""

from __future__ import annotations

import numpy as np
import pytest

from codesign.hazards import assign_waits
from codesign.isa import Csr, HwConfig, Mem, Opcode, PoolMode, decode, encode, float_to_mult_shift
from codesign.isasim import IsaSim
from codesign.rtl.top import NPU, generate_verilog
from codesign.timing import schedule

from .harness import Harness, csr_read, csr_write, isasim_words, read_memory, simulate
from .test_eltwise import random_eltwise
from .test_pool import random_pool

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=2),
    HwConfig(rows=4, cols=2, bus_bytes=1, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2),
    HwConfig(rows=2, cols=4, bus_bytes=4, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=64, wgt_depth=16, acc_depth=4, prm_depth=2),
    # The extra pipeline registers of an ECP5 NPU: later ports and results, the same programs.
    HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2,
             deep_pipeline=True),
]
#: Reduced NPUs: shared requantizers (lane groups taking turns, multi-cycle multiplies), and one
#: without the ELTWISE engine (only programs without ELTWISE run on it).
REDUCED = [
    HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=2,
             requant_groups=2, requant_steps=4, eltwise=False),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2,
             requant_groups=2, requant_steps=2),
]


def run_system(config: HwConfig, ext: np.ndarray, prog_base: int) -> dict:
    """Run the program at ``prog_base`` on the NPU; returns its final memories (as rows of bytes,
    like :func:`harness.isasim_words`) and CYCLES."""
    h = Harness(NPU(config), IsaSim(config, ext))
    npu = h.dut
    mems = {"act": npu.act_mem, "wgt": npu.wgt_mem, "prm": npu.prm_mem, "acc": npu.acc_mem,
            "ext": h.mems["ext"]}
    state = {}

    async def testbench(ctx):
        await csr_write(ctx, npu, Csr.PROG_BASE, prog_base)
        await csr_write(ctx, npu, Csr.CTRL, 1)
        assert csr_read(ctx, npu, Csr.CTRL) == 0b01
        for _ in range(200_000):
            if ctx.get(npu.done):
                break
            await ctx.tick()
        else:
            raise AssertionError("NPU did not reach END")
        assert csr_read(ctx, npu, Csr.CTRL) == 0b10
        state["cycles"] = csr_read(ctx, npu, Csr.CYCLES)
        state.update((name, read_memory(ctx, mem)) for name, mem in mems.items())

    simulate(h, testbench)
    return state


def check_against_isasim(config: HwConfig, ext: np.ndarray, prog_base: int) -> int:
    """Run on the NPU and on IsaSim, compare every memory; returns CYCLES."""
    ref = IsaSim(config, ext)
    ref.run(prog_base)
    got = run_system(config, ext, prog_base)
    for name in ("act", "wgt", "prm", "acc", "ext"):
        np.testing.assert_array_equal(got[name], isasim_words(ref, name), err_msg=name)
    assert got["cycles"] > 0
    return got["cycles"]


def _image(c: HwConfig, program: list[int], ext_words: int, rng) -> tuple[np.ndarray, int]:
    """External memory: random data with the program at a random word address."""
    ext = rng.integers(0, 256, ext_words * c.bus_bytes, dtype=np.uint8)
    prog = b"".join(insn.to_bytes(32, "little") for insn in program)
    base = int(rng.integers(0, 4))
    ext[base * c.bus_bytes:base * c.bus_bytes + len(prog)] = np.frombuffer(prog, np.uint8)
    return ext, base


def _random_dma(rng, c: HwConfig, store: bool, ext_lo: int, ext_hi: int) -> int:
    mem = Mem.ACT if store else Mem(int(rng.integers(3)))
    total = c.depth(mem) * c.slices(mem)
    while True:
        rows, length = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        sp_stride = int(rng.integers(length, length + 4))
        ext_stride = int(rng.integers(length, length + 4))
        if (rows - 1) * sp_stride + length <= total:
            break
    sp = int(rng.integers(0, total - (rows - 1) * sp_stride - length + 1))
    ext = int(rng.integers(ext_lo, ext_hi - (rows - 1) * ext_stride - length + 1))
    return encode(Opcode.STORE if store else Opcode.LOAD, mem=mem, sp_addr=sp,
                  sp_stride=sp_stride, ext_addr=ext, ext_stride=ext_stride, rows=rows,
                  length=length)


def random_program(c: HwConfig, rng, n_insns: int = 12) -> tuple[list[int], np.ndarray, int]:
    """A random LOAD/STORE/POOL/ELTWISE program with its waits; returns (program, external
    memory holding it and its data, program base)."""
    data_lo = 4 + (n_insns + 1) * c.insn_words   # past the program wherever it is placed
    ext_words = data_lo + c.act_depth * c.slices(Mem.ACT) // 2 + 64
    program = [_random_dma(rng, c, False, 0, ext_words) for _ in range(2)]
    program[0] = encode(Opcode.LOAD, mem=Mem.ACT, sp_addr=0, sp_stride=0, ext_addr=data_lo,
                        ext_stride=0, rows=1, length=c.act_depth * c.slices(Mem.ACT) // 2)
    for _ in range(n_insns - 2):
        kind = int(rng.integers(5))
        if kind < 2:
            program.append(random_pool(rng, c, PoolMode(kind), max_in=3)[0])
        elif kind == 2:
            program.append(random_eltwise(rng, c, max_count=4))
        else:
            program.append(_random_dma(rng, c, kind == 4, data_lo, ext_words))
    program = assign_waits(program + [encode(Opcode.END)], c)
    ext, base = _image(c, program, ext_words, rng)
    return program, ext, base


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_random_dma_pool_eltwise_programs(config, seed):
    """LOAD/STORE/POOL/ELTWISE programs; also checks CYCLES against the timing model."""
    c = config
    program, ext, base = random_program(c, np.random.default_rng([seed, c.rows, c.cols,
                                                                  c.bus_bytes]))
    assert check_against_isasim(c, ext, base) == schedule(program, c).cycles


def _load(c: HwConfig, mem: Mem, ext_addr: int, words: int) -> int:
    """LOAD of ``words`` whole scratchpad words from ``ext_addr`` to word 0 of ``mem``."""
    return encode(Opcode.LOAD, mem=mem, sp_addr=0, sp_stride=0, ext_addr=ext_addr,
                  ext_stride=0, rows=1, length=words * c.slices(mem))


def _put_prm(c: HwConfig, rng, data: np.ndarray, ext_addr: int, scale: tuple[float, float],
             bias: int = 2000) -> int:
    """Random requant parameters (multipliers uniform in ``scale``, biases in ``±bias``) written
    to ``data`` at external word ``ext_addr``; returns the LOAD that puts them into PRM word 0."""
    prm = bytearray()
    for _ in range(c.cols):
        mult, shift = float_to_mult_shift(np.float32(rng.uniform(*scale)))
        b = int(rng.integers(-bias, bias))
        prm += ((b & 0xFFFFFFFF) | (mult << 32) | (shift << 56)).to_bytes(8, "little")
    start = ext_addr * c.bus_bytes
    data[start:start + len(prm)] = np.frombuffer(bytes(prm), np.uint8)
    return _load(c, Mem.PRM, ext_addr, 1)


def _conv_program(c: HwConfig, rng) -> tuple[list[int], np.ndarray]:
    """A 2x2 convolution, 3x3x``rows`` input -> 2x2x``cols``, as DMA + 4 MATMUL + REQUANT."""
    r = c.rows
    ab, bb = c.act_bytes, c.bus_bytes
    ext_words = 1024
    data = rng.integers(0, 256, ext_words * bb, dtype=np.uint8)
    # External data layout (word addresses): the program below 600, input at 600, weights at
    # 700, params at 800, output at 900. Input pixels are one ACT word each.
    act_ext, wgt_ext, prm_ext, out_ext = 600, 700, 800, 900
    taps = [(kh, kw) for kh in range(2) for kw in range(2)]
    program = [
        _load(c, Mem.ACT, act_ext, 9),
        _load(c, Mem.WGT, wgt_ext, len(taps) * r),
        _put_prm(c, rng, data, prm_ext, (0.0005, 0.004)),
    ]
    x_signed = int(rng.integers(2))
    x_zp = int(rng.integers(-5, 5)) if x_signed else int(rng.integers(0, 10))
    w_zp = int(rng.integers(-3, 3))
    for t, (kh, kw) in enumerate(taps):
        program.append(encode(
            Opcode.MATMUL, accumulate=int(t > 0), x_signed=x_signed, lane_group=0,
            x_zp=x_zp, w_zp=w_zp, act_base=kh * 3 + kw, step_w=1, step_h=3,
            wgt_base=t * r, acc_base=0, out_h=2, out_w=2, ih0=kh, iw0=kw,
            stride_h=1, stride_w=1, in_h=3, in_w=3))
    program += [
        encode(Opcode.REQUANT, lane_group=0, y_zp=int(rng.integers(-10, 10)), qmin=-128,
               qmax=127, acc_base=0, prm_addr=0, out_base=20, out_stride=1, count=4),
        encode(Opcode.STORE, mem=Mem.ACT, sp_addr=20 * ab // bb, sp_stride=0,
               ext_addr=out_ext, ext_stride=0, rows=1, length=4 * ab // bb),
        encode(Opcode.END),
    ]
    return program, data


def _vector_program(c: HwConfig, rng) -> tuple[list[int], np.ndarray]:
    """ELTWISE + REQUANT (a residual add) and POOL(SUM) + REQUANT (an average pool) on a 3x3
    input, one random lane group each, then STORE of both results."""
    ext_words = 1024
    data = rng.integers(0, 256, ext_words * c.bus_bytes, dtype=np.uint8)
    act_ext, prm_ext, out_ext = 600, 800, 900   # program below 600
    groups = c.act_bytes // c.cols
    x_signed = int(rng.integers(2))

    def zp():
        return int(rng.integers(-128, 128) if x_signed else rng.integers(0, 256))

    def mult():
        return int(rng.choice([-1, 1]) * rng.integers(2**11, 2**13))

    def requant(out_base, group):
        return encode(Opcode.REQUANT, lane_group=group, y_zp=int(rng.integers(-10, 10)),
                      qmin=-128, qmax=127, acc_base=0, prm_addr=0, out_base=out_base,
                      out_stride=1, count=4)

    program = [
        _load(c, Mem.ACT, act_ext, 9),
        _put_prm(c, rng, data, prm_ext, (2**-14, 2**-12)),
        encode(Opcode.ELTWISE, lane_group=int(rng.integers(groups)), a_signed=x_signed,
               b_signed=x_signed, a_zp=zp(), b_zp=zp(), a_mult=mult(), b_mult=mult(),
               a_base=0, b_base=3, acc_base=0, count=4),
        requant(20, int(rng.integers(groups))),
        _put_prm(c, rng, data, prm_ext + 8 * c.cols // c.bus_bytes, (0.05, 0.3), bias=200),
        # 2x2 windows, stride 1, over the 3x3 input at ACT[0]: 2x2 sums to ACC[0..4).
        encode(Opcode.POOL, mode=PoolMode.SUM, x_signed=x_signed,
               lane_group=int(rng.integers(groups)), act_base=0, step_w=1, step_h=3,
               row_words=3, pix_words=1, out_base=0, out_h=2, out_w=2, ih0=0, iw0=0,
               stride_h=1, stride_w=1, k_h=2, k_w=2, in_h=3, in_w=3),
        requant(24, int(rng.integers(groups))),
        encode(Opcode.STORE, mem=Mem.ACT, sp_addr=20 * c.slices(Mem.ACT), sp_stride=0,
               ext_addr=out_ext, ext_stride=0, rows=1, length=8 * c.slices(Mem.ACT)),
        encode(Opcode.END),
    ]
    return program, data


@pytest.mark.parametrize("config", CONFIGS + [c for c in REDUCED if c.eltwise],
                         ids=lambda c: c.name)
def test_vector_program(config):
    """LOAD, ELTWISE, REQUANT, LOAD, POOL(SUM), REQUANT, STORE, END vs IsaSim.run; CYCLES."""
    c = config
    rng = np.random.default_rng(13 * c.rows + c.cols + c.bus_bytes)
    program, data = _vector_program(c, rng)
    program = assign_waits(program, c)
    prog = b"".join(insn.to_bytes(32, "little") for insn in program)
    base = 3
    data[base * c.bus_bytes:base * c.bus_bytes + len(prog)] = np.frombuffer(prog, np.uint8)
    assert check_against_isasim(c, data, base) == schedule(program, c).cycles
    # The requantized outputs are not all saturated (the scales above are meaningful).
    ref = IsaSim(c, data)
    ref.run(base)
    for rq in (program[3], program[6]):
        f = decode(rq)[1]
        g = int(f.lane_group) * c.cols
        out = ref.act[int(f.out_base):int(f.out_base) + 4, g:g + c.cols].view(np.int8)
        assert len(np.unique(out)) > min(3, c.cols), out


@pytest.mark.parametrize("config", CONFIGS + REDUCED, ids=lambda c: c.name)
def test_conv_program(config):
    """LOAD act/wgt/prm, 4 accumulating MATMULs, REQUANT, STORE, END, vs IsaSim.run."""
    c = config
    rng = np.random.default_rng(11 * c.rows + c.cols)
    program, data = _conv_program(c, rng)
    program = assign_waits(program, c)
    prog = b"".join(insn.to_bytes(32, "little") for insn in program)
    base = 5
    data[base * c.bus_bytes:base * c.bus_bytes + len(prog)] = np.frombuffer(prog, np.uint8)
    assert (base * c.bus_bytes + len(prog)) // c.bus_bytes < 600
    assert check_against_isasim(c, data, base) == schedule(program, c).cycles


def test_generate_verilog_is_byte_stable():
    c = HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8,
                 prm_depth=2)
    first = generate_verilog(c)
    assert first == generate_verilog(c)
    assert "module npu_top(" in first
    for port in ("csr_addr", "csr_we", "csr_wdata", "csr_rdata", "done", "mem_addr", "mem_re",
                 "mem_rdata", "mem_we", "mem_wdata"):
        assert f" {port};" in first, port
