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
from cocotb.task import bridge
from cocotb.triggers import ClockCycles

from codesign import cshim
from codesign.mmio import Npu
from codesign.sim.components import (
    AxiMemory,
    GoldenChecker,
    HostMemory,
    HostRegisters,
    WishboneMemory,
    irq_waiter,
    load_design,
    npu_registers,
)
from codesign.sim.testing import DESIGN_ENV
from tests.irgen import random_input

#: Where external word 0 lives on the bus (BASE): not 0, so that BASE matters.
BASE = 0x4000


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
    regs = npu_registers(dut, config.bus, classic=config.wb_classic)
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

    driver = cshim.CDriver(library, program, regs=HostRegisters(regs),
                           mem=HostMemory(memory, BASE), wait_irq=irq_waiter(dut.irq))

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
async def python_driver_runs_the_model(dut):
    """The Python MMIO driver (codesign.mmio.Npu) with the same hooks: init, load, then
    INFERENCES runs, by interrupt and by polling, each bit-exact with the golden model."""
    design = load_design(os.environ[DESIGN_ENV])
    design, memory, regs = await _start(dut, design.config, float(os.environ["STALL"]),
                                        int(os.environ["SEED"]))
    npu = Npu(HostRegisters(regs), HostMemory(memory, BASE), design.config, bus_address=BASE)
    wait = irq_waiter(dut.irq)

    def run_on_host(batch):
        npu.init()
        npu.load(design.program)
        results = []
        for k, inputs in enumerate(batch):
            npu.irq_enable(k % 2 == 0)
            if k % 2 == 0:
                for index, x in enumerate(inputs):
                    npu.write_input(index, x)
                npu.start()
                npu.wait_irq(wait, 10)
                outputs = [npu.read_output(i) for i in range(len(design.program.outputs))]
            else:
                outputs = npu.run(inputs)
            results.append((outputs, npu.cycles()))
        return results

    batch = [random_input(design.graph, seed) for seed in range(int(os.environ["INFERENCES"]))]
    checker = GoldenChecker(design)
    for inputs, (outputs, cycles) in zip(batch, await bridge(run_on_host)(batch), strict=True):
        checker.check(inputs, outputs)
        dut._log.info(f"inference: {cycles} cycles, outputs equal the golden model")
