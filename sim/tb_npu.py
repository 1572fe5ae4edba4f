"""cocotb test that runs a job of NPU inferences (driven by :mod:`codesign.sim.runner`).

The job is a JSON file named by the environment variable ``CODESIGN_JOB`` (written by
:func:`codesign.sim.runner.run_program`). Python stays out of the per-cycle loop: per inference
it loads the input regions into the external memory with one ``$readmemh`` (``mem_load``
strobe), starts the NPU, sleeps until it is done (the native port's ``done``, the bus forms'
interrupt) or the max-cycles timer fires, reads ``CYCLES`` and dumps each output region with
one ``$writememh`` (``mem_dump`` strobe). Registers are reached through the testbench's register
port: the native strobes, AXI4-Lite or Wishbone (:class:`Registers`). The result is a JSON file;
errors are reported there (and fail the test) rather than only in the log.

The clock runs inside ``tb_top`` (period ``clock_ns`` of the job), not as a cocotb ``Clock``:
no Python or VPI work per clock edge.

In a traced build (:func:`codesign.sim.runner.build` with ``traced``) the job may also ask for
waveforms (the testbench top's ``waves_on`` input, which the traced main reads, set for the
job's cycle ``window`` of each inference, or for the whole run) and for the controller's
dispatches: each engine's start pulse wakes a coroutine that notes the controller's cycle
counter (one callback per instruction, not per cycle).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, First, RisingEdge, Timer

from codesign.isa import ENGINES, Csr

from .components import npu_registers

#: Environment variable holding the path of the job file.
JOB_ENV = "CODESIGN_JOB"


class Registers:
    """The NPU's registers through the testbench's register port of the job's bus form
    (:func:`codesign.sim.components.npu_registers`), and the signal that rises when a run is
    done (``done``, or ``irq`` with the interrupt enabled)."""

    def __init__(self, dut, job: dict):
        self.dut = dut
        self.port = npu_registers(dut, job["bus"], classic=job["wb_classic"])
        self.interrupt = job["bus"] != "native"
        self.done = dut.irq if self.interrupt else dut.done

    async def write(self, reg: Csr, value: int) -> None:
        await self.port.write(reg, value)

    async def read(self, reg: Csr) -> int:
        return await self.port.read(reg)

    async def setup(self, prog_base: int) -> None:
        await self.write(Csr.PROG_BASE, prog_base)
        if self.interrupt:
            await self.write(Csr.IRQ_ENABLE, 1)

    async def finish(self) -> None:
        """Acknowledge the run's interrupt."""
        if self.interrupt:
            await self.write(Csr.IRQ_STATUS, 1)


async def _strobe(dut, signal) -> None:
    """One-cycle strobe; returns after the clock edge that acted on it has fully settled."""
    signal.value = 1
    await RisingEdge(dut.clk)
    signal.value = 0
    await FallingEdge(dut.clk)


async def _reset(dut, regs: Registers, prog_base: int) -> None:
    """Hold reset for four cycles (the memory model's too), then set the registers up."""
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)
    await regs.setup(prog_base)


async def _interrupted_run(dut, regs: Registers, job: dict) -> None:
    """Start a run and reset the whole testbench ``reset_after`` cycles into it: the next run
    must not notice (``run_program(reset_after=...)``)."""
    await regs.write(Csr.CTRL, 1)
    await ClockCycles(dut.clk, job["reset_after"])
    await _reset(dut, regs, job["prog_base"])


def _controller(dut):
    """The NPU's controller in the testbench (the native top holds it, a bus form's top holds
    the core that does)."""
    for path in (("npu", "ctrl"), ("npu", "core", "ctrl")):
        handle = dut
        try:
            for name in path:
                handle = getattr(handle, name)
        except AttributeError:
            continue
        return handle
    raise RuntimeError("the testbench has no NPU controller at npu.ctrl or npu.core.ctrl")


async def _watch(ctrl, engine: str, dispatches: list) -> None:
    """Note (cycle, engine) at every start pulse of ``engine``."""
    start = getattr(ctrl, f"start_{engine}")
    while True:
        await RisingEdge(start)
        dispatches.append((int(ctrl.cycles.value), engine))


def _watchers(dut, dispatches: list) -> None:
    """Start a :func:`_watch` per engine the NPU has (a configuration may lack some)."""
    ctrl = _controller(dut)
    for engine in ENGINES:
        if hasattr(ctrl, f"start_{engine}"):
            cocotb.start_soon(_watch(ctrl, engine, dispatches))


async def _window(dut, period: int, first: int, last: int) -> None:
    """Dump waveforms in cycles ``first`` to ``last - 1`` of the inference just started (the
    clock runs in the testbench at a fixed period, so one timer each, no per-cycle work)."""
    if first:
        await Timer(first * period, unit="ns")
    dut.waves_on.value = 1
    await Timer((last - first) * period, unit="ns")
    dut.waves_on.value = 0


@cocotb.test()
async def run_job(dut):
    job = json.loads(Path(os.environ[JOB_ENV]).read_text())
    period = job["clock_ns"]
    results: list[dict] = []
    error: str | None = None
    try:
        regs = Registers(dut, job)
        dut.mem_load.value = 0
        dut.mem_dump.value = 0
        dut.dump_lo.value = 0
        dut.dump_hi.value = 0
        window = job.get("window")
        if job.get("waves") and window is None:
            dut.waves_on.value = 1                  # the whole run
        dispatches: list = []
        if job.get("dispatches"):
            _watchers(dut, dispatches)
        await _reset(dut, regs, job["prog_base"])

        for k, inf in enumerate(job["inferences"]):
            if inf["load"] is not None:
                os.replace(inf["load"], job["load_file"])
                await _strobe(dut, dut.mem_load)
            if k == 0 and job["reset_after"] is not None:
                await _interrupted_run(dut, regs, job)
                if inf["load"] is not None:     # the interrupted run may have used the inputs'
                    await _strobe(dut, dut.mem_load)    # memory as scratch: write them again
            t0 = time.perf_counter()
            dispatches.clear()
            await regs.write(Csr.CTRL, 1)
            dumping = None
            if job.get("waves") and window is not None:
                dumping = cocotb.start_soon(_window(dut, period, *window))
            timeout = Timer(job["max_cycles"] * period, unit="ns")
            fired = await First(RisingEdge(regs.done), timeout)
            wall = time.perf_counter() - t0
            if dumping is not None:
                dumping.cancel()
                dut.waves_on.value = 0
            if fired is timeout:
                raise TimeoutError(f"inference {k}: done did not rise within "
                                   f"{job['max_cycles']} cycles (max_cycles)")
            await FallingEdge(dut.clk)
            if int(dut.mem_err.value):
                raise RuntimeError(f"inference {k}: the NPU accessed external memory out of "
                                   f"range (see the simulation log)")
            cycles = await regs.read(Csr.CYCLES)
            await regs.finish()
            for lo, nwords, path in inf["reads"]:
                dut.dump_lo.value = lo
                dut.dump_hi.value = lo + nwords - 1
                await _strobe(dut, dut.mem_dump)
                os.replace(job["dump_file"], path)
            results.append({"cycles": cycles, "wall": wall, "dispatches": sorted(dispatches)})
            if job.get("progress"):
                with open(job["progress"], "a") as f:
                    f.write(f"{k}\n")
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        raise
    finally:
        Path(job["result"]).write_text(json.dumps({"results": results, "error": error}))
