"""The real C driver runs whole models on the AXI4 and Wishbone NPUs under Verilator, against
cocotb memory models of random latency and random backpressure (tests/sim/npu_system_bench.py)."""

from __future__ import annotations

import dataclasses

import pytest

from codesign import cli
from codesign.cli import DEFAULT_CONFIG
from codesign.sim.testing import run_cocotb
from models import mlperf

from ..modelgen import build
from ..test_bus import SMALL, SMALL_NPU

pytestmark = pytest.mark.verilator


#: The default run builds one NPU here: the small AXI4 NPU of tests/test_bus.py (whose Wishbone
#: form runs there) with the small model; DS-CNN on the 8x8 NPU of each bus with -m slow.
SLOW = pytest.mark.slow
CASES = [pytest.param("axi4", "small", id="axi4-small"),
         pytest.param("axi4", "dscnn", id="axi4-dscnn", marks=SLOW),
         pytest.param("wishbone", "dscnn", id="wishbone-dscnn", marks=SLOW)]


def _design(bus: str, model: str, outdir):
    """Generate ``model`` ("small": the test zoo's CNN on the small NPU; "dscnn": DS-CNN on the
    8x8 NPU) for ``bus`` into ``outdir``."""
    if model == "small":
        cli.generate(build(SMALL), outdir, dataclasses.replace(SMALL_NPU, bus=bus))
    else:
        cli.generate(mlperf.path(model), outdir, dataclasses.replace(DEFAULT_CONFIG, bus=bus))
    return outdir


@pytest.mark.parametrize(("bus", "model"), CASES)
def test_c_driver_runs_a_model_on_the_bus(bus, model, tmp_path):
    outdir = _design(bus, model, tmp_path / "design")
    log = run_cocotb(outdir, "tests.sim.npu_system_bench", tmp_path / "run",
                     testcase="c_driver_runs_the_model",
                     env={"STALL": "0.2", "SEED": "3", "INFERENCES": "1",
                          "C_DRIVER_DIR": str(tmp_path / "c")})
    assert log.read_text().count("outputs equal the golden model") == 1


@pytest.mark.parametrize("bus", ["axi4", pytest.param("wishbone", marks=SLOW)])
def test_python_driver_runs_a_model_on_the_bus(bus, tmp_path):
    """The Python MMIO driver through codesign.sim.components' hooks, as docs/integration.md
    shows it: two inferences (interrupt, polling) on a small model."""
    outdir = _design(bus, "small", tmp_path / "design")
    log = run_cocotb(outdir, "tests.sim.npu_system_bench", tmp_path / "run",
                     testcase="python_driver_runs_the_model",
                     env={"STALL": "0.3", "SEED": "5", "INFERENCES": "2"})
    assert log.read_text().count("outputs equal the golden model") == 2
