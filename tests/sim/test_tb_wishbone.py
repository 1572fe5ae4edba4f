"""sim/tb_wishbone.v and codesign.sim.wbregs, with the Wishbone wrappers in Verilator.

Until the NPU core speaks the new memory interface, ``npu_top`` here is a stand-in built from
the real wrappers (:class:`~codesign.rtl.wishbone.WishboneRegs`,
:class:`~codesign.rtl.wishbone.WishboneMaster`) around a small copy engine: registers 1 SRC,
2 DST (byte addresses), 3 BEATS; a write of 1 to register 0 copies BEATS bus words from SRC to
DST, each plus one, in bursts of ``max_reads`` beats, then raises ``irq`` (register 0 reads
busy in bit 0, done in bit 1). The cocotb tests run copies through the testbench's memory at
several latencies and stall rates, and a reset in the middle of a copy, with both protocol
checkers watching.
"""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import cocotb
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import fifo, wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

from codesign.isa import HwConfig
from codesign.rtl.membus import mem_master
from codesign.rtl.wishbone import WishboneMaster, WishboneRegs, wishbone_port
from codesign.sim import runner
from codesign.sim.wbregs import wb_read, wb_write

# A stand-in npu_top around the real wrappers; the real NPU runs in these testbenches in
# tests/test_bus.py, so these are in the slow run.
pytestmark = [pytest.mark.verilator, pytest.mark.slow]

BUS_BYTES = 4
DEPTH_LOG2 = 14
MAX_READS = 8
#: Environment variables the pytest side hands to the cocotb tests.
FILES_ENV = "WB_TEST_FILES"
CLASSIC_ENV = "WB_TEST_CLASSIC"
SRC, DST, BEATS = 1, 2, 3


class CopyCore(wiring.Component):
    """The stand-in core on the core memory interface (see the module docstring)."""

    def __init__(self, config: HwConfig):
        self._config = config
        super().__init__({
            **mem_master(config),
            "csr_addr": In(3), "csr_we": In(1), "csr_wdata": In(32), "csr_re": In(1),
            "csr_rdata": Out(32), "irq": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        m.submodules.buf = buf = fifo.SyncFIFO(width=8 * c.bus_bytes, depth=c.max_reads)
        regs = [Signal(32, name=f"reg{i}") for i in range(4)]
        busy, done = Signal(), Signal()
        src, dst, left = Signal(32), Signal(32), Signal(32)
        chunk, count = Signal(range(c.max_reads + 1)), Signal(range(c.max_reads + 1))
        m.d.comb += [regs[0].eq(busy | done << 1), self.irq.eq(done)]
        with m.Switch(self.csr_addr):
            for i, reg in enumerate(regs):
                with m.Case(i):
                    m.d.comb += self.csr_rdata.eq(reg)
        for i in (SRC, DST, BEATS):
            with m.If(self.csr_we & (self.csr_addr == i)):
                m.d.sync += regs[i].eq(self.csr_wdata)
        m.d.comb += chunk.eq(c.max_reads)
        with m.If(left < c.max_reads):
            m.d.comb += chunk.eq(left)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.csr_we & (self.csr_addr == 0) & self.csr_wdata[0]):
                    m.d.sync += [busy.eq(1), done.eq(0), src.eq(regs[SRC]), dst.eq(regs[DST]),
                                 left.eq(regs[BEATS])]
                    m.next = "CMD_R"
            with m.State("CMD_R"):
                with m.If(left == 0):
                    m.d.sync += [busy.eq(0), done.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += [self.rd_cmd_valid.eq(1), self.rd_cmd_addr.eq(src),
                                 self.rd_cmd_len.eq(chunk - 1)]
                    with m.If(self.rd_cmd_ready):
                        m.d.sync += count.eq(chunk)
                        m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.rd_ready.eq(1), buf.w_en.eq(self.rd_valid),
                             buf.w_data.eq(self.rd_data)]
                with m.If(self.rd_valid):
                    m.d.sync += count.eq(count - 1)
                    with m.If(count == 1):
                        m.next = "CMD_W"
            with m.State("CMD_W"):
                m.d.comb += [self.wr_cmd_valid.eq(1), self.wr_cmd_addr.eq(dst),
                             self.wr_cmd_len.eq(chunk - 1)]
                with m.If(self.wr_cmd_ready):
                    m.next = "WRITE"
            with m.State("WRITE"):
                m.d.comb += [self.wr_valid.eq(buf.r_rdy), self.wr_data.eq(buf.r_data + 1),
                             buf.r_en.eq(self.wr_ready)]
                with m.If(buf.level == 0):
                    m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(self.wr_done):
                    m.d.sync += [left.eq(left - chunk), src.eq(src + chunk * c.bus_bytes),
                                 dst.eq(dst + chunk * c.bus_bytes)]
                    m.next = "CMD_R"
        return m


class StandInTop(wiring.Component):
    """``npu_top`` of a Wishbone NPU: the wrappers around :class:`CopyCore`."""

    def __init__(self, config: HwConfig):
        self._config = config
        lg = config.bus_bytes.bit_length() - 1
        super().__init__({
            "irq": Out(1),
            **{n: mbr.flip() for n, mbr in wishbone_port("s_wb_", 4, 30).items()},
            **wishbone_port("m_wb_", config.bus_bytes, 32 - lg),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = CopyCore(self._config)
        m.submodules.regs = regs = WishboneRegs()
        m.submodules.master = master = WishboneMaster(self._config)
        m.d.comb += self.irq.eq(core.irq)
        for name in ("csr_addr", "csr_we", "csr_wdata", "csr_re"):
            m.d.comb += getattr(core, name).eq(getattr(regs, name))
        m.d.comb += regs.csr_rdata.eq(core.csr_rdata)
        # The buses: the testbench drives what is In from this top's view.
        for name, member in self.signature.members.items():
            inner = {"s_wb_": regs, "m_wb_": master}.get(name[:5])
            if inner is not None:
                src, dst = (self, inner) if member.flow == In else (inner, self)
                m.d.comb += getattr(dst, name).eq(getattr(src, name))
        # The core memory interface: the core drives what is Out from its view.
        for name, member in mem_master(self._config).items():
            src, dst = (core, master) if member.flow == Out else (master, core)
            m.d.comb += getattr(dst, name).eq(getattr(src, name))
        return m


# -------------------------------------------------------------------------------------------------
# cocotb side


def _classic() -> bool:
    return bool(int(os.environ[CLASSIC_ENV]))


async def _reset(dut) -> None:
    for name in ("s_wb_cyc", "s_wb_stb", "s_wb_we", "s_wb_adr", "s_wb_dat_w", "s_wb_sel",
                 "s_wb_cti", "s_wb_bte", "mem_load", "mem_dump", "dump_lo", "dump_hi"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


async def _copy(dut, src_word: int, dst_word: int, beats: int) -> None:
    classic = _classic()
    await wb_write(dut, SRC, src_word * BUS_BYTES, classic=classic)
    await wb_write(dut, DST, dst_word * BUS_BYTES, classic=classic)
    await wb_write(dut, BEATS, beats, classic=classic)
    assert await wb_read(dut, BEATS, classic=classic) == beats
    await wb_write(dut, 0, 1, classic=classic)


async def _wait_irq(dut, cycles: int) -> None:
    if not int(dut.irq.value):
        fired = await First(RisingEdge(dut.irq), Timer(10 * cycles, unit="ns"))
        assert fired is not None and int(dut.irq.value), "no irq"


async def _dump(dut, lo: int, count: int) -> list[int]:
    dut.dump_lo.value = lo
    dut.dump_hi.value = lo + count - 1
    await FallingEdge(dut.clk)
    dut.mem_dump.value = 1
    await FallingEdge(dut.clk)
    dut.mem_dump.value = 0
    path = Path(os.environ[FILES_ENV]) / "dump.hex"
    return [int(ln, 16) for ln in path.read_text().split() if not ln.startswith(("//", "@"))]


def _assert_clean(dut) -> None:
    """No out-of-range access, no protocol violation on either bus."""
    fired = int(dut.m_check_fired.value), int(dut.s_check_fired.value)
    assert fired == (0, 0), f"wb_check rules broken (m_wb, s_wb): {fired}"
    assert int(dut.mem_err.value) == 0


def _init_words() -> list[int]:
    path = Path(os.environ[FILES_ENV]) / "init.hex"
    return [int(line, 16) for line in path.read_text().split()]


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def copy(dut):
    """A copy of 100 words: data, beat counters, irq, the done bit, silent checkers."""
    await _reset(dut)
    init = _init_words()
    src, dst, beats = 0x200, 0x1000, 100
    await _copy(dut, src, dst, beats)
    await _wait_irq(dut, 100_000)
    assert await wb_read(dut, 0, classic=_classic()) == 0b10
    assert await _dump(dut, dst, beats) == [(w + 1) % (1 << 8 * BUS_BYTES)
                                            for w in init[src:src + beats]]
    assert int(dut.beats_read.value) == beats
    assert int(dut.beats_written.value) == beats
    _assert_clean(dut)


@cocotb.test(timeout_time=10, timeout_unit="ms")
async def reset_mid_copy(dut):
    """A reset in the middle of a copy, with requests in flight: the next copy is exact."""
    await _reset(dut)
    init = _init_words()
    await _copy(dut, 0x400, 0x2000, 200)
    await ClockCycles(dut.clk, random.Random(5).randrange(20, 200))
    await _reset(dut)
    src, dst, beats = 0x800, 0x3000, 64
    await _copy(dut, src, dst, beats)
    await _wait_irq(dut, 100_000)
    assert await _dump(dut, dst, beats) == [(w + 1) % (1 << 8 * BUS_BYTES)
                                            for w in init[src:src + beats]]
    _assert_clean(dut)


# -------------------------------------------------------------------------------------------------
# pytest side

#: The runner's waivers for Amaranth's Verilog, and VPI access to the testbench's signals.
_VLT = "`verilator_config\n" + "".join(
    f'lint_off -rule {rule} -file "*/npu_top.v"\n' for rule in runner._NPU_WAIVED
) + 'public_flat_rw -module "tb_wishbone" -var "*"\n'


@pytest.fixture(scope="module", params=[False, True], ids=["pipelined", "classic"])
def build(request, tmp_path_factory) -> tuple[Path, bool]:
    """(build directory, classic) of tb_wishbone around the stand-in, per cycle form."""
    classic = request.param
    config = HwConfig(bus_bytes=BUS_BYTES, bus="wishbone", max_reads=MAX_READS,
                      wb_classic=classic)
    build_dir = tmp_path_factory.mktemp("tb_wishbone_build")
    src = build_dir / "src"
    src.mkdir()
    (src / "npu_top.v").write_text(verilog.convert(StandInTop(config), name="npu_top",
                                                   emit_src=False))
    (src / "tb.vlt").write_text(_VLT)
    sim_dir = Path(runner.__file__).parent
    sim = runner._Verilator(timeout=600, extra_env={"TMPDIR": str(build_dir)})
    sim.build(sources=[src / "tb.vlt", src / "npu_top.v",
                       *(sim_dir / f for f in ("wb_mem.v", "wb_check.v", "tb_wishbone.v"))],
              hdl_toplevel="tb_wishbone",
              parameters={"BUS_BYTES": BUS_BYTES, "DEPTH_LOG2": DEPTH_LOG2,
                          "CLASSIC": int(classic)},
              build_args=list(runner._VERILATOR_FLAGS), build_dir=build_dir,
              timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    return build_dir, classic


@pytest.mark.parametrize("latency,jitter,stall", [(1, 0, 0), (7, 5, 30)])
def test_copy_through_wrappers(build, tmp_path, latency, jitter, stall):
    build_dir, classic = build
    rng = random.Random(latency)
    (tmp_path / "init.hex").write_text(
        "".join(f"{rng.getrandbits(8 * BUS_BYTES):08x}\n" for _ in range(1 << DEPTH_LOG2)))
    here = str(Path(__file__).resolve().parent)
    sim = runner._Verilator(timeout=300, extra_env={
        "PYTHONPATH": os.pathsep.join([here, *sys.path]), FILES_ENV: str(tmp_path),
        CLASSIC_ENV: str(int(classic))})
    sim.test(test_module=Path(__file__).stem, hdl_toplevel="tb_wishbone",
             hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=tmp_path,
             plusargs=[f"+mem_init={tmp_path / 'init.hex'}", f"+mem_dump={tmp_path / 'dump.hex'}",
                       f"+mem_latency={latency}", f"+mem_jitter={jitter}",
                       f"+mem_stall={stall}", "+mem_seed=3"],
             log_file=tmp_path / "sim.log")
