"""The whole NPU running programs out of a modelled external memory, against IsaSim.run."""

from __future__ import annotations

import numpy as np
import pytest
from codesign.rtl.top import NPU, generate_verilog

from codesign.isa import Csr, HwConfig, Mem, Opcode, decode, encode, float_to_mult_shift
from codesign.isasim import IsaError, IsaSim

from .harness import Harness, csr_read, csr_write, isasim_words, read_memory, simulate

CONFIGS = [
    HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=2),
    HwConfig(rows=4, cols=2, bus_bytes=1, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2),
    HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=16, acc_depth=8, prm_depth=2),
    HwConfig(rows=2, cols=4, bus_bytes=4, act_depth=64, wgt_depth=8, acc_depth=8, prm_depth=1),
    HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=64, wgt_depth=16, acc_depth=4, prm_depth=2),
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


def _busy_cycles(c: HwConfig, insn: int) -> int:
    """Engine cycles from start to done for the DMA and MAXPOOL engines (docs of their files)."""
    op, f = decode(insn)
    if op in (Opcode.LOAD, Opcode.STORE):
        return int(f.rows) * int(f.length) + 1
    assert op == Opcode.MAXPOOL
    n = int(f.out_h) * int(f.out_w) * int(f.words) * int(f.k_h) * int(f.k_w)
    return n + 1


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


def _random_maxpool(rng, c: HwConfig) -> int:
    while True:
        in_h, in_w = (int(v) for v in rng.integers(1, 4, 2))
        words = int(rng.integers(1, 3))
        k_h, k_w = (int(v) for v in rng.integers(1, 4, 2))
        s_h, s_w = (int(v) for v in rng.integers(1, 3, 2))
        pt, pl = int(rng.integers(0, k_h)), int(rng.integers(0, k_w))
        out_h = (in_h + pt - k_h) // s_h + 1
        out_w = (in_w + pl - k_w) // s_w + 1
        n_in, n_out = in_h * in_w * words, out_h * out_w * words
        if out_h < 1 or out_w < 1 or n_in + n_out > c.act_depth:
            continue
        in_base = int(rng.integers(0, c.act_depth - n_in - n_out + 1))
        out_base = int(rng.integers(in_base + n_in, c.act_depth - n_out + 1))
        insn = encode(
            Opcode.MAXPOOL, x_signed=int(rng.integers(2)),
            act_base=in_base - pt * in_w * words - pl * words,
            step_w=s_w * words, step_h=s_h * in_w * words, row_words=in_w * words,
            pix_words=words, out_base=out_base, words=words, out_h=out_h, out_w=out_w,
            ih0=-pt, iw0=-pl, stride_h=s_h, stride_w=s_w, k_h=k_h, k_w=k_w,
            in_h=in_h, in_w=in_w)
        try:
            IsaSim(c, np.zeros(c.bus_bytes, np.uint8)).step(insn)
        except IsaError:
            continue
        return insn


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_random_dma_maxpool_programs(config, seed):
    """LOAD/STORE/MAXPOOL programs; also checks CYCLES against the documented timing."""
    c = config
    rng = np.random.default_rng([seed, c.rows, c.cols, c.bus_bytes])
    n_insns = 12
    data_lo = 4 + (n_insns + 1) * c.insn_words   # past the program wherever it is placed
    ext_words = data_lo + c.act_depth * c.slices(Mem.ACT) // 2 + 64
    program = [_random_dma(rng, c, False, 0, ext_words) for _ in range(2)]
    program[0] = encode(Opcode.LOAD, mem=Mem.ACT, sp_addr=0, sp_stride=0, ext_addr=data_lo,
                        ext_stride=0, rows=1, length=c.act_depth * c.slices(Mem.ACT) // 2)
    for _ in range(n_insns - 2):
        kind = int(rng.integers(3))
        if kind == 0:
            program.append(_random_maxpool(rng, c))
        else:
            program.append(_random_dma(rng, c, kind == 2, data_lo, ext_words))
    program.append(encode(Opcode.END))
    ext, base = _image(c, program, ext_words, rng)
    cycles = check_against_isasim(c, ext, base)
    # Per instruction: insn_words fetch reads + 1 cycle read latency + 1 dispatch + engine.
    overhead = c.insn_words + 2
    assert cycles == sum(overhead + _busy_cycles(c, p) for p in program[:-1]) + overhead


def _conv_program(c: HwConfig, rng) -> tuple[list[int], np.ndarray]:
    """A 2x2 convolution, 3x3x``rows`` input -> 2x2x``cols``, as DMA + 4 MATMUL + REQUANT."""
    r, n = c.rows, c.cols
    ab, bb = c.act_bytes, c.bus_bytes
    ext_words = 1024
    data = rng.integers(0, 256, ext_words * bb, dtype=np.uint8)
    # External data layout (word addresses): the program below 600, input at 600, weights at
    # 700, params at 800, output at 900. Input pixels are one ACT word each.
    act_ext, wgt_ext, prm_ext, out_ext = 600, 700, 800, 900
    taps = [(kh, kw) for kh in range(2) for kw in range(2)]
    prm = bytearray()
    for _ in range(n):
        mult, shift = float_to_mult_shift(np.float32(rng.uniform(0.0005, 0.004)))
        bias = int(rng.integers(-2000, 2000))
        prm += ((bias & 0xFFFFFFFF) | (mult << 32) | (shift << 56)).to_bytes(8, "little")
    data[prm_ext * bb:prm_ext * bb + len(prm)] = np.frombuffer(bytes(prm), np.uint8)
    program = [
        encode(Opcode.LOAD, mem=Mem.ACT, sp_addr=0, sp_stride=0, ext_addr=act_ext,
               ext_stride=0, rows=1, length=9 * ab // bb),
        encode(Opcode.LOAD, mem=Mem.WGT, sp_addr=0, sp_stride=0, ext_addr=wgt_ext,
               ext_stride=0, rows=1, length=len(taps) * r * n // bb),
        encode(Opcode.LOAD, mem=Mem.PRM, sp_addr=0, sp_stride=0, ext_addr=prm_ext,
               ext_stride=0, rows=1, length=8 * n // bb),
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


@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: c.name)
def test_conv_program(config):
    """LOAD act/wgt/prm, 4 accumulating MATMULs, REQUANT, STORE, END, vs IsaSim.run."""
    c = config
    rng = np.random.default_rng(11 * c.rows + c.cols)
    program, data = _conv_program(c, rng)
    prog = b"".join(insn.to_bytes(32, "little") for insn in program)
    base = 5
    data[base * c.bus_bytes:base * c.bus_bytes + len(prog)] = np.frombuffer(prog, np.uint8)
    assert (base * c.bus_bytes + len(prog)) // c.bus_bytes < 600
    check_against_isasim(c, data, base)


def test_generate_verilog_is_byte_stable():
    c = HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=8,
                 prm_depth=2)
    first = generate_verilog(c)
    assert first == generate_verilog(c)
    assert "module npu_top(" in first
    for port in ("csr_addr", "csr_we", "csr_wdata", "csr_rdata", "done", "mem_addr", "mem_re",
                 "mem_rdata", "mem_we", "mem_wdata"):
        assert f" {port};" in first, port
