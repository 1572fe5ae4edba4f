"""sim/tb_axi4.v and sim/axil.py around AxiMaster and AxiLiteRegs, under Verilator + cocotb.

Until the AXI4 NPU exists, ``npu_top`` is a stand-in with the AXI4 NPU's ports built from the
real wrappers (:class:`AxiLiteRegs`, :class:`AxiMaster`) around a small core on the membus
contract: started through CTRL, it reads ``BEATS`` words from PROG_BASE in bursts, then writes
them to BASE, raises IRQ_STATUS (and ``irq`` if enabled). The memory is axi_mem with random
latency and stalls, watched by axi_check: the copy must be exact and the checker silent.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out
from cocotb.triggers import ClockCycles

from codesign.isa import Csr, HwConfig
from codesign.rtl.axi import (
    AxiLiteRegs,
    AxiMaster,
    axi_master_port,
    axil_slave_port,
)
from codesign.rtl.membus import mem_master
from codesign.sim import runner
from codesign.sim.axil import axil_init, axil_read, axil_write

from .cocotb_support import build_tb, clock_keepalive, python_path, quiet_cocotbext

# A stand-in npu_top around the real wrappers; the real NPU runs in these testbenches in
# tests/test_bus.py, so these are in the slow run.
pytestmark = [pytest.mark.verilator, pytest.mark.slow]

#: How the pytest side hands the run's files to the cocotb side.
ARGS_ENV = "CODESIGN_TB_AXI4_TEST"
BEATS, BURST = 64, 16
CONFIG = HwConfig(bus="axi4", bus_bytes=4, max_reads=BEATS)
DEPTH_LOG2 = 12
MEM_BYTES = CONFIG.bus_bytes << DEPTH_LOG2
SRC, DST = 0x0400, 0x2000


class CopyCore(wiring.Component):
    """The stand-in core: a register file and a copy engine on the core memory interface."""

    def __init__(self, config: HwConfig):
        self._config = config
        super().__init__({
            **mem_master(config),
            "csr_addr": In(3), "csr_we": In(1), "csr_wdata": In(32), "csr_re": In(1),
            "csr_rdata": Out(32), "irq": Out(1), "bus_error": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        bb = self._config.bus_bytes
        src, dst, cycles = Signal(32), Signal(32), Signal(32)
        busy, done, irq_enable, irq_status = Signal(), Signal(), Signal(), Signal()
        writing = Signal()
        buf = Signal(BEATS * 8 * bb)
        cmds, beats, dones = Signal(8), Signal(8), Signal(8)
        regs = {Csr.CTRL: busy | (done << 1), Csr.PROG_BASE: src, Csr.CYCLES: cycles,
                Csr.VERSION: self.bus_error, Csr.BASE: dst, Csr.IRQ_ENABLE: irq_enable,
                Csr.IRQ_STATUS: irq_status}
        with m.Switch(self.csr_addr):
            for index, value in regs.items():
                with m.Case(index):
                    m.d.comb += self.csr_rdata.eq(value)
        with m.If(self.csr_we):
            with m.Switch(self.csr_addr):
                with m.Case(Csr.PROG_BASE):
                    m.d.sync += src.eq(self.csr_wdata)
                with m.Case(Csr.BASE):
                    m.d.sync += dst.eq(self.csr_wdata)
                with m.Case(Csr.IRQ_ENABLE):
                    m.d.sync += irq_enable.eq(self.csr_wdata[0])
                with m.Case(Csr.IRQ_STATUS):
                    m.d.sync += irq_status.eq(irq_status & ~self.csr_wdata[0])
                with m.Case(Csr.CTRL):
                    with m.If(self.csr_wdata[0] & ~busy):
                        m.d.sync += [busy.eq(1), done.eq(0), writing.eq(0), cmds.eq(0),
                                     beats.eq(0), dones.eq(0), cycles.eq(0)]
        m.d.comb += self.irq.eq(irq_status & irq_enable)
        base = Signal(32)
        m.d.comb += base.eq(cmds * (BURST * bb))
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)
            with m.If(~writing):
                m.d.comb += [
                    self.rd_cmd_valid.eq(cmds < BEATS // BURST),
                    self.rd_cmd_addr.eq(src + base), self.rd_cmd_len.eq(BURST - 1),
                    self.rd_ready.eq(1),
                ]
                with m.If(self.rd_cmd_valid & self.rd_cmd_ready):
                    m.d.sync += cmds.eq(cmds + 1)
                with m.If(self.rd_valid):
                    m.d.sync += [buf.word_select(beats, 8 * bb).eq(self.rd_data),
                                 beats.eq(beats + 1)]
                    with m.If(beats == BEATS - 1):
                        m.d.sync += [writing.eq(1), cmds.eq(0), beats.eq(0)]
            with m.Else():
                m.d.comb += [
                    self.wr_cmd_valid.eq(cmds < BEATS // BURST),
                    self.wr_cmd_addr.eq(dst + base), self.wr_cmd_len.eq(BURST - 1),
                    self.wr_valid.eq(beats < BEATS),
                    self.wr_data.eq(buf.word_select(beats, 8 * bb)),
                ]
                with m.If(self.wr_cmd_valid & self.wr_cmd_ready):
                    m.d.sync += cmds.eq(cmds + 1)
                with m.If(self.wr_valid & self.wr_ready):
                    m.d.sync += beats.eq(beats + 1)
                with m.If(self.wr_done):
                    m.d.sync += dones.eq(dones + 1)
                    with m.If(dones == BEATS // BURST - 1):
                        m.d.sync += [busy.eq(0), done.eq(1), irq_status.eq(1)]
        return m


class StandInNpu(wiring.Component):
    """``npu_top`` of the AXI4 form: AxiLiteRegs -> CopyCore -> AxiMaster."""

    def __init__(self, config: HwConfig):
        self._config = config
        super().__init__({**axil_slave_port(), **axi_master_port(config), "irq": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.regs = regs = AxiLiteRegs()
        m.submodules.core = core = CopyCore(self._config)
        m.submodules.master = master = AxiMaster(self._config)
        for sub, prefix in ((regs, "s_axil_"), (master, "m_axi_")):
            _forward(m, self, sub, prefix)
        for name, member in core.signature.members.items():
            peer = regs if name.startswith("csr_") else master
            if name == "irq":
                m.d.comb += self.irq.eq(core.irq)
            elif member.flow == Out:
                m.d.comb += getattr(peer, name).eq(getattr(core, name))
            else:
                m.d.comb += getattr(core, name).eq(getattr(peer, name))
        return m


def _forward(m: Module, top, sub, prefix: str) -> None:
    """Connect ``sub``'s ports named ``prefix*`` to ``top``'s ports of the same name."""
    for name, member in sub.signature.members.items():
        if name.startswith(prefix):
            if member.flow == Out:
                m.d.comb += getattr(top, name).eq(getattr(sub, name))
            else:
                m.d.comb += getattr(sub, name).eq(getattr(top, name))


# -------------------------------------------------------------------------------------------------
# cocotb side

@cocotb.test(timeout_time=5, timeout_unit="ms")
async def copy_through_registers(dut):
    """Program the copy through axil_write, wait for irq by polling, clear it, check memory."""
    args = json.loads(os.environ[ARGS_ENV])
    axil_init(dut)
    for name in ("mem_load", "mem_dump", "dump_lo", "dump_hi"):
        getattr(dut, name).value = 0
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await axil_write(dut, Csr.PROG_BASE, SRC)
    await axil_write(dut, Csr.BASE, DST)
    assert await axil_read(dut, Csr.PROG_BASE) == SRC
    await axil_write(dut, Csr.IRQ_ENABLE, 1)
    await axil_write(dut, Csr.CTRL, 1)
    for _ in range(2000):
        if dut.irq.value:
            break
        await ClockCycles(dut.clk, 10)
    assert dut.irq.value and await axil_read(dut, Csr.CTRL) == 0b10
    await axil_write(dut, Csr.IRQ_STATUS, 1)
    assert not dut.irq.value and await axil_read(dut, Csr.IRQ_STATUS) == 0
    assert await axil_read(dut, Csr.VERSION) == 0            # the stand-in's bus_error
    assert (int(dut.beats_read.value), int(dut.beats_written.value)) == (BEATS, BEATS)
    dut.dump_lo.value = DST // CONFIG.bus_bytes
    dut.dump_hi.value = DST // CONFIG.bus_bytes + BEATS - 1
    dut.mem_dump.value = 1
    await ClockCycles(dut.clk, 1)
    dut.mem_dump.value = 0
    await ClockCycles(dut.clk, 1)
    dump = runner._read_dump(Path(args["dump"]), BEATS, CONFIG.bus_bytes)
    init = Path(args["init_bytes"]).read_bytes()
    assert dump == init[SRC:SRC + BEATS * CONFIG.bus_bytes]
    assert int(dut.mem_err.value) == 0


def _pauses(rng: random.Random, percent: int):
    """An endless random pause pattern for a cocotbext-axi channel."""
    while True:
        yield rng.randrange(100) < percent


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def copy_with_axiram(dut):
    """The same copy against cocotbext-axi's AxiRam, with random pauses on all five channels
    (the issue's cocotbext-axi memory model), through axi_ram_tb's sampling registers."""
    from cocotbext.axi import AxiBus, AxiRam

    quiet_cocotbext()
    args = json.loads(os.environ[ARGS_ENV])
    rng = random.Random(args["seed"])
    cocotb.start_soon(clock_keepalive(dut))
    axil_init(dut)
    dut.rst.value = 1
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM_BYTES)
    for channel in (ram.write_if.aw_channel, ram.write_if.w_channel, ram.write_if.b_channel,
                    ram.read_if.ar_channel, ram.read_if.r_channel):
        channel.set_pause_generator(_pauses(rng, args["stall"]))
    data = rng.randbytes(BEATS * CONFIG.bus_bytes)
    ram.write(SRC, data)
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await axil_write(dut, Csr.PROG_BASE, SRC)
    await axil_write(dut, Csr.BASE, DST)
    await axil_write(dut, Csr.CTRL, 1)
    for _ in range(2000):
        if await axil_read(dut, Csr.CTRL) == 0b10:
            break
    assert await axil_read(dut, Csr.CTRL) == 0b10
    assert ram.read(DST, len(data)) == data
    assert int(dut.check_err.value) == 0


# -------------------------------------------------------------------------------------------------
# pytest side

def _sources() -> dict[str, str]:
    return {"npu_top.v": verilog.convert(StandInNpu(CONFIG), name="npu_top", emit_src=False),
            **{name: (runner._SIM_DIR / name).read_text()
               for name in ("axi_mem.v", "axi_check.v", "tb_axi4.v")},
            "axi_ram_tb.v": (Path(__file__).parent / "axi_ram_tb.v").read_text()}


_WAIVE = tuple((rule, "npu_top.v") for rule in runner._NPU_WAIVED)


@pytest.fixture(scope="module")
def build() -> Path:
    return build_tb("tb_axi4", _sources(),
                    {"BUS_BYTES": CONFIG.bus_bytes, "DEPTH_LOG2": DEPTH_LOG2,
                     "ID_BITS": CONFIG.axi_id_bits}, waive=_WAIVE)


@pytest.fixture(scope="module")
def ram_build() -> Path:
    return build_tb("axi_ram_tb", _sources(),
                    {"BUS_BYTES": CONFIG.bus_bytes, "ID_BITS": CONFIG.axi_id_bits}, waive=_WAIVE)


@pytest.mark.parametrize("latency,stall,jitter", [(1, 0, 0), (12, 40, 8)])
def test_copy_through_registers(build, tmp_path, latency, stall, jitter):
    init = np.random.default_rng(latency).integers(0, 256, MEM_BYTES, dtype=np.uint8)
    (tmp_path / "init.bin").write_bytes(init.tobytes())
    runner._write_regions(tmp_path / "init.hex", [(0, init)], CONFIG.bus_bytes)
    verilator = runner._Verilator(timeout=300, extra_env={
        ARGS_ENV: json.dumps({"init_bytes": str(tmp_path / "init.bin"),
                              "dump": str(tmp_path / "dump.hex")}),
        "PYTHONPATH": python_path(),
    })
    verilator.test(test_module="tests.sim.test_tb_axi4", testcase="copy_through_registers",
                   hdl_toplevel="tb_axi4", hdl_toplevel_lang="verilog", build_dir=build,
                   test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"),
                   plusargs=[f"+mem_init={tmp_path / 'init.hex'}",
                             f"+mem_dump={tmp_path / 'dump.hex'}", f"+mem_latency={latency}",
                             f"+mem_stall={stall}", f"+mem_jitter={jitter}", "+mem_seed=9"],
                   log_file=tmp_path / "sim.log")


@pytest.mark.parametrize("stall", [0, 40])
def test_copy_with_axiram(ram_build, tmp_path, stall):
    verilator = runner._Verilator(timeout=300, extra_env={
        ARGS_ENV: json.dumps({"seed": stall, "stall": stall}), "PYTHONPATH": python_path()})
    verilator.test(test_module="tests.sim.test_tb_axi4", testcase="copy_with_axiram",
                   hdl_toplevel="axi_ram_tb", hdl_toplevel_lang="verilog", build_dir=ram_build,
                   test_dir=tmp_path, results_xml=str(tmp_path / "results.xml"),
                   log_file=tmp_path / "sim.log")
