"""cocotb tests of the NPU on its bus, run by tests/sim/test_bus_system.py (not collected by
pytest: it needs a simulator).

``npu_top`` (AXI4 or Wishbone form) is the top level; its memory is a cocotb model with a random
read latency and random backpressure on every channel (:mod:`codesign.sim.components`), and the
host is the real C driver (codesign_npu.c through :mod:`codesign.cshim`), blocking in a thread
(cocotb's ``bridge``) while each of its register accesses runs on the simulated register bus
(``resume``). The outputs must equal the golden model's.
"""

from __future__ import annotations

import os
from pathlib import Path

import cocotb
from cocotb.clock import Clock
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, RisingEdge

from codesign import cshim
from codesign.isa import Csr
from codesign.sim.components import (
    AxiMemory,
    GoldenChecker,
    NpuDriver,
    WishboneMemory,
    load_design,
    npu_registers,
)
from codesign.sim.testing import DESIGN_ENV
from tests.irgen import random_input

#: Where external word 0 lives on the bus (BASE): not 0, so that BASE matters.
BASE = 0x4000


class _HostWindow:
    """The memory as the C driver's ``mem`` callbacks see it: offsets from BASE, no sim time."""

    def __init__(self, memory, base: int):
        self.memory, self.base = memory, base

    def read(self, offset: int, length: int) -> bytes:
        return self.memory.load(self.base + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.memory.store(self.base + offset, data)


class _BusRegisters:
    """The C driver's register callbacks (byte offsets), each run on the simulated bus."""

    def __init__(self, regs):
        self.regs = regs

    def read(self, offset: int) -> int:
        return resume(self.regs.read)(Csr(offset // 4))

    def write(self, offset: int, value: int) -> None:
        resume(self.regs.write)(Csr(offset // 4), value)


async def _start(dut, config, stall: float, seed: int):
    """Clock, reset, the memory model and the register driver of ``config``'s bus form."""
    design = load_design(os.environ[DESIGN_ENV])
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    size = BASE + design.program.ext_words * config.bus_bytes
    if config.bus == "axi4":
        memory = AxiMemory(dut, dut.clk, dut.rst, size=size, latency=(0, 40), stall=stall,
                           seed=seed)
    else:
        memory = WishboneMemory(dut, dut.clk, size=size, bus_bytes=config.bus_bytes,
                                latency=(1, 40), stall=stall, seed=seed)
    regs = npu_registers(dut, config.bus, dut.clk, dut.rst)
    await ClockCycles(dut.clk, 5)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)
    return design, memory, regs


@cocotb.test()
async def c_driver_runs_the_model(dut):
    """The C driver: init (VERSION, CONFIG_ID), load, write input, start, wait for the
    interrupt, read output — bit-exact with the golden model, for INFERENCES inputs."""
    design = load_design(os.environ[DESIGN_ENV])
    design, memory, regs = await _start(dut, design.config, float(os.environ["STALL"]),
                                        int(os.environ["SEED"]))
    program = design.program
    library = cshim.build(program, Path(os.environ["C_DRIVER_DIR"]))

    async def irq_high() -> bool:
        if not dut.irq.value:
            await RisingEdge(dut.irq)
        return bool(dut.irq.value)

    driver = cshim.CDriver(library, program, regs=_BusRegisters(regs),
                           mem=_HostWindow(memory, BASE), wait_irq=resume(irq_high))

    def run_on_host(inputs_list):
        driver.init(mem_bytes=program.ext_words * design.config.bus_bytes, bus_address=BASE)
        driver.load()
        driver.irq_enable(True)
        results = []
        for inputs in inputs_list:
            for index, x in enumerate(inputs):
                driver.write_input(index, x)
            driver.start()
            driver.wait_irq(10)
            results.append(([driver.read_output(i) for i in range(len(program.outputs))],
                            driver.cycles()))
        return results

    batch = [random_input(design.graph, seed) for seed in range(int(os.environ["INFERENCES"]))]
    results = await bridge(run_on_host)(batch)
    checker = GoldenChecker(design)
    for inputs, (outputs, cycles) in zip(batch, results, strict=True):
        checker.check(inputs, outputs)
        dut._log.info(f"inference: {cycles} cycles, outputs equal the golden model")


@cocotb.test()
async def components_run_the_model(dut):
    """The Python components alone (docs/integration.md's example): NpuDriver checks the
    hardware, loads the image at BASE, runs INFERENCES inputs (by interrupt, then by polling)
    and the GoldenChecker agrees."""
    design = load_design(os.environ[DESIGN_ENV])
    design, memory, regs = await _start(dut, design.config, float(os.environ["STALL"]),
                                        int(os.environ["SEED"]))
    npu = NpuDriver(design, regs, memory, base=BASE)
    await npu.init()
    await npu.load_image()
    checker = GoldenChecker(design)
    for seed in range(int(os.environ["INFERENCES"])):
        inputs = random_input(design.graph, seed)
        outputs, cycles = await npu.run(inputs, irq=dut.irq if seed % 2 == 0 else None,
                                        clock=dut.clk)
        checker.check(inputs, outputs)
        dut._log.info(f"inference: {cycles} cycles, outputs equal the golden model")
