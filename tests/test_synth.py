"""`codesign synth`: log parsing, the harness, the whole flow on a tiny design and on a real
generated NPU, and the resource model against a real synthesis."""

import json
import math
import re
import shutil
import time
from pathlib import Path

import pytest

from codesign import cli, synth
from codesign.dse import load_target
from codesign.dse.resources import bram_blocks, estimate, memories
from codesign.isa import HwConfig

from .modelgen import ZOO, build

POST_ROUTE_LOG = """\
Info: Max frequency for clock '$glbnet$clk': 71.23 MHz (PASS at 48.00 MHz)
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info: curr total
Info:  1.0  1.0  Source a.q
Info:  2.0  3.0  Sink b.d
Info: Max frequency for clock '$glbnet$clk': 44.10 MHz (FAIL at 48.00 MHz)
Info: Critical path report for clock '$glbnet$clk' (posedge -> posedge):
Info: curr total
Info:  1.5  1.5  Source c.q
Info:  9.0 10.5  Sink d.d

Info: Program finished normally.
"""


def test_post_route_fmax_is_the_last_report():
    parsed = synth.parse_nextpnr_log(POST_ROUTE_LOG)
    assert parsed["fmax_pre_route_mhz"] == 71.23 and parsed["fmax_mhz"] == 44.10
    assert parsed["timing_met"] is False and parsed["clock"] == "$glbnet$clk"
    path = synth._critical_path(POST_ROUTE_LOG)
    assert path[-1].endswith("Sink d.d") and not any("a.q" in line for line in path)
    assert synth.parse_nextpnr_log("no timing here")["fmax_mhz"] is None


COUNTER = """\
module npu_top(clk, rst, en, step, count, wrapped);
  input clk; input rst; input en;
  input [7:0] step;
  output [23:0] count;
  output wrapped;
  reg [23:0] count;
  assign wrapped = &count;
  always @(posedge clk)
    if (rst) count <= 24'd0; else if (en) count <= count + {16'd0, step};
endmodule
"""


def test_harness_takes_every_port_but_the_clock_and_reset():
    ports = synth.verilog_ports(COUNTER)
    assert ports == [("input", "clk", 1), ("input", "rst", 1), ("input", "en", 1),
                     ("input", "step", 8), ("output", "count", 24), ("output", "wrapped", 1)]
    text = synth.harness_verilog(COUNTER)
    assert "reg [8:0] in_sr;" in text and "reg [24:0] out_sr;" in text
    assert ".clk(clk)" in text and ".rst(rst)" in text and ".step(in_sr[8:1])" in text


def _design(tmp_path, verilog: str, report: dict):
    d = tmp_path / "design"
    d.mkdir()
    (d / "npu.v").write_text(verilog)
    (d / "report.json").write_text(json.dumps(report))
    (d / "report.txt").write_text("model summary\n")
    return d


def _check_outputs(d, report_before: dict, text_before: str = "model summary\n"):
    report = json.loads((d / "report.json").read_text())
    for key, value in report_before.items():
        assert report[key] == value                      # other keys kept
    s = report["synth"]
    for name in ("vivado.tcl", "quartus.qsf", "quartus.sdc"):
        assert (d / name).is_file()
    period = 1000 / s["clock_goal_mhz"]
    assert f"-period {period:.3f}" in (d / "vivado.tcl").read_text()
    assert "synth_design -top npu_top" in (d / "vivado.tcl").read_text()
    assert "TOP_LEVEL_ENTITY npu_top" in (d / "quartus.qsf").read_text()
    assert (d / "synth" / "yosys.log").is_file()
    text = (d / "report.txt").read_text()
    assert text.startswith(text_before.rstrip("\n")) and text.count("== synth ==") == 1
    assert not [p for p in d.parent.iterdir() if p.name.startswith(".")]
    return s


def test_synth_flow_on_a_tiny_design(capsys, tmp_path):
    """The whole flow (harness, yosys, nextpnr, parsing, report, scripts) in seconds."""
    before = {"model": "counter", "target": "ice40-up5k"}
    d = _design(tmp_path, COUNTER, before)
    assert cli.main(["synth", str(d)]) == 0                       # target from report.json
    out = capsys.readouterr().out
    s = _check_outputs(d, before)
    assert s["target"]["name"] == "ice40-up5k" and "fmax" in out
    res = s["resources"]
    assert res["ff"] >= 24 and 0 < res["lut"] < 200 and res["dsp"] == 0
    assert s["fits"] and s["fmax_mhz"] > 0 and s["fmax_pre_route_mhz"] > 0
    assert isinstance(s["timing_met"], bool) and s["critical_path"]
    placed = s["placed_utilisation"]["ICESTORM_LC"]
    assert placed["available"] == load_target("ice40-up5k").luts and placed["used"] >= res["ff"]
    assert s["placer_seed"] == 1 and s["fmax_by_seed"] == {"1": s["fmax_mhz"]}
    # A rerun replaces the section and the summary instead of appending another one; with
    # three placer seeds it keeps the fastest placement, and that placement's log.
    assert cli.main(["synth", str(d), "--target", "ice40-up5k", "--seeds", "3"]) == 0
    s = _check_outputs(d, before)
    by_seed = s["fmax_by_seed"]
    assert sorted(by_seed) == ["1", "2", "3"] and s["fmax_mhz"] == max(by_seed.values())
    assert by_seed[str(s["placer_seed"])] == s["fmax_mhz"]
    assert f"placer seed {s['placer_seed']}, the fastest of" in capsys.readouterr().out
    log = (d / "synth" / "nextpnr.log").read_text()
    assert synth.parse_nextpnr_log(log)["fmax_mhz"] == s["fmax_mhz"]
    assert cli.main(["synth", str(d), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_clock_on_the_dedicated_clock_pin(capsys, tmp_path):
    """ECP5: the harness clock is placed on the target's PCLK ball (on the 85F an unconstrained
    clock pad could not be routed to the global network)."""
    target = load_target("ecp5-85k")
    d = _design(tmp_path, COUNTER, {"model": "counter"})
    assert cli.main(["synth", str(d), "--target", "ecp5-85k"]) == 0
    s = json.loads((d / "report.json").read_text())["synth"]
    assert s["fmax_mhz"] > 0
    lpf = (d / "synth" / "pins.lpf").read_text()
    assert lpf == f'LOCATE COMP "clk" SITE "{target.clock_pin}";\n'
    log = (d / "synth" / "nextpnr.log").read_text()
    assert re.search(r"pin 'clk\$tr_io' constrained to Bel", log)


def test_tool_failure_is_an_input_error_and_leaves_nothing(capsys, tmp_path):
    d = _design(tmp_path, COUNTER.replace("endmodule", "garbage endmodule"), {"model": "x"})
    before = sorted(p.name for p in d.iterdir())
    assert cli.main(["synth", str(d), "--target", "ice40-up5k"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("codesign: error: yosys failed") and err.count("\n") == 1
    log = Path(re.search(r"\(log: (.+)\)$", err.strip()).group(1))
    assert "garbage" in log.read_text() or "syntax error" in log.read_text()
    shutil.rmtree(log.parent)
    assert sorted(p.name for p in d.iterdir()) == before
    assert json.loads((d / "report.json").read_text()) == {"model": "x"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def _multiplier_verilog(cell: str) -> str:
    """A module that only multiplies (codesign.rtl.dsp), as Verilog module ``npu_top``."""
    from amaranth.back import verilog
    from amaranth.hdl import Module, signed
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from codesign.rtl.dsp import registered_product

    class Multiplier(wiring.Component):
        a: In(signed(9))
        b: In(signed(16))
        p: Out(signed(25))

        def elaborate(self, platform):
            m = Module()
            m.d.comb += self.p.eq(registered_product(m, self.a, self.b, width=25, cell=cell,
                                                     name="mul"))
            return m

    return verilog.convert(Multiplier(), name="npu_top", emit_src=False)


def test_mult18_cells_synthesize_on_ecp5_only(capsys, tmp_path):
    """A design with MULT18X18D cells (the operand and product registers inside them) places
    and routes on an ECP5; other targets are refused up front, and no Vivado or Quartus script
    is written for it."""
    before = {"model": "mul", "config": {"mult_cell": "MULT18X18D"}}
    d = _design(tmp_path, _multiplier_verilog("MULT18X18D"), before)
    assert cli.main(["synth", str(d), "--target", "ice40-up5k"]) == 2
    err = capsys.readouterr().err
    assert "MULT18X18D" in err and "ice40-up5k" in err
    assert json.loads((d / "report.json").read_text()) == before

    assert cli.main(["synth", str(d), "--target", "ecp5-25k"]) == 0
    assert "no Vivado or Quartus scripts" in capsys.readouterr().out
    s = json.loads((d / "report.json").read_text())["synth"]
    assert s["resources"]["dsp"] == 1 and s["fmax_mhz"] > 0
    # Inferred, the same multiply keeps its 9 + 16 operand and 25 product bits in the fabric.
    inferred = synth.synthesize(_multiplier_verilog("inferred"), load_target("ecp5-25k"),
                                tmp_path / "inferred", netlist=False).resources
    assert inferred["dsp"] == 1 and inferred["ff"] - s["resources"]["ff"] == 9 + 16 + 25
    assert not [n for n in ("vivado.tcl", "quartus.qsf", "quartus.sdc") if (d / n).exists()]


def test_bram_blocks_follow_the_block_geometry():
    # One block holds what fits; twice as deep or wide needs twice the blocks.
    assert bram_blocks(36, 512, None, "ecp5") == 1
    assert bram_blocks(72, 512, None, "ecp5") == 2 and bram_blocks(36, 1024, None, "ecp5") == 2
    assert bram_blocks(16, 256, 8, "ice40") == 1                  # per-bit mask in 256x16
    assert bram_blocks(8, 4096, 8, "ice40") == math.ceil(8 * 4096 / 4096)
    c = HwConfig(rows=4, cols=4, bus_bytes=4)
    assert set(memories(c)) == {"act", "wgt", "prm", "acc"}


# The default run synthesizes the NPU as built for the ECP5 (cells, deep pipeline); the other
# multiplier and pipeline forms with -m slow.
@pytest.mark.parametrize(("mult_cell", "deep"), [
    pytest.param("inferred", False, marks=pytest.mark.slow),
    pytest.param("MULT18X18D", False, marks=pytest.mark.slow), ("MULT18X18D", True)])
def test_resource_model_against_a_real_synthesis(tmp_path, mult_cell, deep):
    """A configuration the model was not fitted on (bench/calibrate_resources.py), synthesized
    with yosys for ECP5, with either form of the multipliers, and as built for the ECP5 (cells
    and deep pipeline, whose flip-flops the model counts from the RTL widths): every modelled
    resource within 15 %."""
    from codesign.verilog import npu_verilog

    config = HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=2048, wgt_depth=256,
                      acc_depth=512, prm_depth=64, mult_cell=mult_cell, deep_pipeline=deep)
    target = load_target("ecp5-85k")
    measured = synth.synthesize(npu_verilog(config), target, tmp_path, netlist=False).resources
    model = estimate(config, target)
    for key in ("lut", "ff", "dsp", "bram"):
        assert abs(model[key] - measured[key]) <= 0.15 * measured[key], (key, model, measured)


def test_ice40_resource_model_on_a_reduced_npu(tmp_path):
    """A reduced NPU (shared requantizer) the model was not fitted on, synthesized for iCE40 and
    packed by nextpnr: LUTs, flip-flops, logic cells, DSP blocks and block RAM within 15 %."""
    from codesign.verilog import npu_verilog

    config = HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=2048, wgt_depth=256,
                      acc_depth=512, prm_depth=64, requant_groups=2, requant_steps=2)
    target = load_target("ice40-up5k")
    result = synth.synthesize(npu_verilog(config), target, tmp_path)
    measured = {**result.resources,
                "lc": synth.packed_cells(result, target, tmp_path)["ICESTORM_LC"]}
    model = estimate(config, target)
    for key in ("lut", "ff", "lc", "dsp", "bram"):
        assert abs(model[key] - measured[key]) <= 0.15 * measured[key], (key, model, measured)


@pytest.fixture(scope="module")
def generated_npu(tmp_path_factory):
    """A real generated design: a small model on a 2x2 NPU with small scratchpads."""
    d = tmp_path_factory.mktemp("npu") / "small"
    model = build(ZOO["conv_relu_pool_fc_qop_u8"])
    assert cli.main(["generate", str(model), "-o", str(d), "--array", "2x2"]) == 0
    return d


@pytest.mark.slow
def test_synth_generated_npu_end_to_end_and_resource_model(capsys, generated_npu):
    """generate -> synth on a real NPU: resources, post-route fmax, scripts; and the resource
    model within 15 % of this synthesis."""
    before = json.loads((generated_npu / "report.json").read_text())
    text_before = (generated_npu / "report.txt").read_text()
    start = time.perf_counter()
    assert cli.main(["synth", str(generated_npu), "--target", "ecp5-25k"]) == 0
    seconds = time.perf_counter() - start
    s = _check_outputs(generated_npu, before, text_before)
    assert s["fits"] and s["fmax_mhz"] > 0 and s["seconds"]["yosys"] < seconds
    config = HwConfig.from_json((generated_npu / "config.json").read_text())
    model = estimate(config, load_target("ecp5-25k"))
    for key in ("lut", "ff", "dsp", "bram"):
        measured = s["resources"][key]
        assert abs(model[key] - measured) <= 0.15 * measured, (key, model[key], measured)


MEMORY = """\
module npu_top(clk, we, waddr, raddr, wdata, rdata);
  input clk; input we; input [7:0] waddr; input [7:0] raddr;
  input [15:0] wdata; output [15:0] rdata;
  reg [15:0] mem [0:255];
  reg [15:0] rdata;
  always @(posedge clk) begin
    if (we) mem[waddr] <= wdata;
    rdata <= mem[raddr];
  end
endmodule
"""


def test_asic_area_counts_gates_and_memory_bits(tmp_path):
    target = load_target("asic")
    for name, verilog in (("counter", COUNTER), ("memory", MEMORY)):
        d = tmp_path / name
        d.mkdir()
        (d / "npu.v").write_text(verilog)
        (d / "report.json").write_text("{}")
        s = synth.synth(d, "asic")
        res = s["resources"]
        assert res["area_mm2"] == pytest.approx(res["logic_mm2"] + res["sram_mm2"], abs=1e-3)
        assert res["logic_mm2"] == pytest.approx(res["ge"] * target.ge_um2 * 1e-6, abs=1e-4)
        if name == "counter":
            assert res["memory_bits"] == 0 and res["ff"] == 24 and res["ge"] > res["ff"] * 4
        else:
            assert res["memory_bits"] == 16 * 256 and res["sram_mm2"] > 0
        assert s["fits"] == (res["area_mm2"] <= target.area_mm2)


def test_asic_estimate_adds_gates_and_scratchpad_bits():
    target = load_target("asic")
    small, big = HwConfig(rows=2, cols=2, bus_bytes=2), HwConfig(rows=8, cols=8, bus_bytes=8)
    for config in (small, big):
        est = estimate(config, target)
        bits = sum(w * d for w, d, _ in memories(config).values())
        assert est["memory_bits"] == bits
        assert est["area_mm2"] == pytest.approx(
            est["ge"] * target.ge_um2 * 1e-6 + bits * target.sram_um2_per_bit * 1e-6, rel=1e-3)
    assert estimate(big, target)["ge"] > estimate(small, target)["ge"]
    with pytest.raises(ValueError, match="calibrate_resources"):
        estimate(small, target, {"families": {}})
