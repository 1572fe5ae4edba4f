"""The real C driver runs whole models on the AXI4 and Wishbone NPUs under Verilator, against
cocotb memory models of random latency and random backpressure (tests/sim/npu_system_bench.py)."""

from __future__ import annotations

import dataclasses

import pytest

from codesign import cli
from codesign.cli import DEFAULT_CONFIG
from codesign.sim.testing import run_cocotb
from models import mlperf

from ..modelgen import ZOO, build

pytestmark = pytest.mark.verilator


#: One NPU build in the default run (8x8 AXI4); the Wishbone forms run with -m slow (the
#: Wishbone NPU runs whole models in tests/test_bus.py).
BUSES = ["axi4", pytest.param("wishbone", marks=pytest.mark.slow)]


@pytest.mark.parametrize("bus", BUSES)
def test_c_driver_runs_dscnn_on_the_bus(bus, tmp_path):
    config = dataclasses.replace(DEFAULT_CONFIG, bus=bus)
    outdir = tmp_path / "design"
    cli.generate(mlperf.path("dscnn"), outdir, config)
    log = run_cocotb(outdir, "tests.sim.npu_system_bench", tmp_path / "run",
                     testcase="c_driver_runs_the_model",
                     env={"STALL": "0.2", "SEED": "3", "INFERENCES": "1",
                          "C_DRIVER_DIR": str(tmp_path / "c")})
    assert log.read_text().count("outputs equal the golden model") == 1


@pytest.mark.parametrize("bus", BUSES)
def test_python_driver_runs_a_model_on_the_bus(bus, tmp_path):
    """The Python MMIO driver through codesign.sim.components' hooks, as docs/integration.md
    shows it: two inferences (interrupt, polling) on a small model."""
    config = dataclasses.replace(DEFAULT_CONFIG, bus=bus)
    outdir = tmp_path / "design"
    cli.generate(build(ZOO["conv_relu_pool_fc_qop_u8"]), outdir, config)
    log = run_cocotb(outdir, "tests.sim.npu_system_bench", tmp_path / "run",
                     testcase="python_driver_runs_the_model",
                     env={"STALL": "0.3", "SEED": "5", "INFERENCES": "2"})
    assert log.read_text().count("outputs equal the golden model") == 2
