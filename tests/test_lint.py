"""The generated Verilog passes ``verilator --lint-only -Wall`` with the waivers ``generate``
writes beside it (npu_lint.vlt): no warning at all, on every bus form."""

import os
import subprocess
from pathlib import Path

import pytest

from codesign import cli
from codesign.isa import HwConfig
from codesign.lint import WAIVERS, WAIVERS_TEXT
from codesign.sim import runner
from codesign.verilog import npu_verilog

from .modelgen import ZOO, build

pytestmark = pytest.mark.verilator

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]
MULT_MODEL = Path(runner.__file__).parent / "MULT18X18D.v"


def lint(design: Path, *files: str | Path) -> str:
    """Verilator's lint of ``files`` (default npu.v) with the waivers, run in ``design`` as a
    user would; the output, after checking that it passed."""
    verilator = runner._verilator_root() / "bin" / "verilator"
    done = subprocess.run([str(verilator), "--lint-only", "-Wall", "--quiet-stats", WAIVERS,
                           *map(str, files or ["npu.v"])], cwd=design, capture_output=True,
                          text=True, env=runner._verilator_env(dict(os.environ)), timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[:3000]
    return output


@pytest.mark.parametrize("options", [["--array", "2x2"], [],
                                     ["--array", "2x2", "--bus", "axi4"],
                                     ["--array", "2x2", "--bus", "wishbone"]],
                         ids=["2x2", "8x8", "2x2-axi4", "2x2-wishbone"])
def test_generated_verilog_lints_clean_with_its_waivers(capsys, tmp_path, options):
    outdir = tmp_path / "d"
    assert cli.main(["generate", str(build(SMALL)), "-o", str(outdir), *options]) == 0
    capsys.readouterr()
    assert (outdir / WAIVERS).read_text() == WAIVERS_TEXT
    assert "%Warning" not in lint(outdir)


def test_waivers_are_for_npu_v_only(tmp_path):
    """A module with an unused input bit lints clean as npu.v and fails as any other file."""
    (tmp_path / WAIVERS).write_text(WAIVERS_TEXT)
    text = "module top(input [1:0] a, output b);\n  assign b = a[0];\nendmodule\n"
    (tmp_path / "npu.v").write_text(text)
    (tmp_path / "top.v").write_text(text)
    assert "%Warning" not in lint(tmp_path, "npu.v")
    with pytest.raises(AssertionError, match="UNUSEDSIGNAL.*top.v"):
        lint(tmp_path, "top.v")


@pytest.mark.slow
@pytest.mark.parametrize("config", [
    HwConfig(rows=2, cols=4, bus_bytes=4, wgt_depth=256, acc_depth=256, requant_groups=2),
    HwConfig(rows=4, cols=4, requant_groups=4, requant_steps=2, eltwise=False, gemv=False),
    HwConfig(rows=4, cols=4, wgt_depth=2048, lut_tables=1),
    HwConfig(rows=8, cols=8, bus_bytes=8, wgt_depth=2048, bus="wishbone", max_reads=8,
             wb_classic=True),
    HwConfig(rows=8, cols=4, act_depth=8192, wgt_depth=4096, acc_depth=2048,
             mult_cell="MULT18X18D", deep_pipeline=True, bus="axi4"),
], ids=lambda config: config.name)
def test_reduced_lut_and_dsp_designs_lint_clean(tmp_path, config):
    """The other kinds of hardware: a shared requantizer, no ELTWISE/GEMV, a LUT engine, classic
    Wishbone, ECP5 multiplier cells (with their model, as the waiver file says)."""
    (tmp_path / "npu.v").write_text(npu_verilog(config))
    (tmp_path / WAIVERS).write_text(WAIVERS_TEXT)
    extra = [MULT_MODEL] if config.mult_cell == "MULT18X18D" else []
    assert "%Warning" not in lint(tmp_path, "npu.v", *extra)
