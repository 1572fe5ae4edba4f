"""The real C driver runs whole models on the AXI4 and Wishbone NPUs under Verilator, against
cocotb memory models of random latency and random backpressure (tests/sim/npu_system_bench.py)."""

from __future__ import annotations

import dataclasses

import pytest

from codesign import cli
from codesign.cli import DEFAULT_CONFIG
from codesign.sim.testing import run_cocotb
from models import mlperf

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("bus", ["axi4", "wishbone"])
def test_c_driver_runs_dscnn_on_the_bus(bus, tmp_path):
    config = dataclasses.replace(DEFAULT_CONFIG, bus=bus)
    outdir = tmp_path / "design"
    cli.generate(mlperf.path("dscnn"), outdir, config)
    log = run_cocotb(outdir, "tests.sim.npu_system_bench", tmp_path / "run",
                     env={"STALL": "0.2", "SEED": "3", "INFERENCES": "1",
                          "C_DRIVER_DIR": str(tmp_path / "c")})
    assert "outputs equal the golden model" in log.read_text()
