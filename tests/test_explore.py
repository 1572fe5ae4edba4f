"""Design-space exploration and `generate --target`: the front, the choice, the refusal."""

import json

import pytest

from codesign import cli
from codesign.dse import explore, load_target
from codesign.dse.resources import estimate, over_budget
from codesign.frontend import load_model
from codesign.timing import program_cycles

from .test_cli import assert_refused, run

MODEL = "models/digits_cnn_qop.onnx"
SPACE = explore.candidates(shapes=[(2, 2), (4, 4), (4, 8), (8, 8)],
                           memories=[(1024, 256, 256), (4096, 2048, 1024)])


def test_pareto_front_is_the_non_dominated_feasible_set():
    target = load_target("ecp5-45k")
    points = explore.explore(load_model(MODEL), target, SPACE)
    front = explore.pareto(points, target)
    feasible = [p for p in points if p.feasible]
    assert front

    def key(p):
        return (p.cycles, p.size(target), p.energy_uj)

    for p in feasible:
        dominated = any(all(a <= b for a, b in zip(key(q), key(p), strict=True))
                        and key(q) != key(p) for q in feasible)
        assert dominated == (p not in front)
    for p in points:
        # Feasible means: maps onto the NPU and the estimate is inside the budget.
        assert p.feasible == (p.cycles > 0 and not over_budget(p.resources, target))
        assert p.resources == estimate(p.config, target)
    fastest = explore.best(points, target, "latency")[0]
    assert fastest.cycles == min(p.cycles for p in feasible)
    assert explore.best(points, target, "energy")[0].energy_uj == min(
        p.energy_uj for p in feasible)


def test_explore_command_writes_table_json_and_plot(capsys, tmp_path):
    code, out, _ = run(capsys, "explore", MODEL, "--target", "ecp5-25k", "-o", tmp_path)
    assert code == 0, out
    data = json.loads((tmp_path / "explore.json").read_text())
    assert data["target"]["name"] == "ecp5-25k" and data["pareto"]
    assert (tmp_path / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    front = [data["points"][i] for i in data["pareto"]]
    assert all(p["feasible"] for p in front)
    assert "best for latency:" in out and (tmp_path / "pareto.md").read_text() in out


def test_generate_with_target_records_the_choice(capsys, tmp_path):
    outdir = tmp_path / "d"
    code, out, _ = run(capsys, "generate", MODEL, "-o", outdir, "--target", "ecp5-85k",
                       "--objective", "energy")
    assert code == 0, out
    report = json.loads((outdir / "report.json").read_text())
    section = report["target"]
    assert section["name"] == "ecp5-85k" and section["objective"] == "energy"
    chosen = section["chosen"]
    assert chosen["config"] == report["config"] and chosen["feasible"]
    # Built for the ECP5: its multiplier cells hold the operand and product registers, and the
    # extra pipeline registers shorten its long routes.
    assert report["config"]["mult_cell"] == "MULT18X18D" and report["config"]["deep_pipeline"]
    assert "MULT18X18D " in (outdir / "npu.v").read_text()
    assert all(chosen["energy_uj"] <= p["energy_uj"] for p in section["runners_up"])
    # The recorded cycles are those of the generated program (and so of the RTL).
    assert chosen["cycles"] == report["cycles_per_inference"]
    assert report["cycles_per_inference"] == program_cycles(
        cli.Design(outdir).program)


def test_generate_refuses_when_nothing_fits(capsys, tmp_path):
    tiny = tmp_path / "tiny.toml"
    tiny.write_text('name = "tiny"\nfamily = "ice40"\ndevice = "up5k"\npackage = "sg48"\n'
                    'luts = 500\nffs = 500\ndsps = 1\nbram_blocks = 2\nbram_bits = 4096\n')
    assert_refused(capsys, tmp_path / "d", "generate", MODEL, "-o", tmp_path / "d",
                   "--target", tiny, match="no NPU configuration fits tiny.*larger target")


@pytest.mark.slow
def test_up5k_gets_a_reduced_npu_for_dscnn(capsys, tmp_path):
    """No full NPU fits the iCE40 UP5K (each column's requantizer alone takes 4 of its 8 DSP
    blocks); generate --target finds a reduced one (shared requantizer or no ELTWISE engine)
    inside every budget, the logic cells included."""
    outdir = tmp_path / "d"
    code, out, _ = run(capsys, "generate", "models/mlperf/dscnn.onnx", "-o", outdir,
                       "--target", "ice40-up5k")
    assert code == 0, out
    report = json.loads((outdir / "report.json").read_text())
    config = cli.HwConfig(**report["config"])
    assert config.requant_lanes < config.cols or not config.eltwise
    assert config.mult_cell == "inferred"     # synth_ice40 -dsp packs the registers itself
    assert not config.deep_pipeline           # no logic cells to spare
    target = load_target("ice40-up5k")
    chosen = report["target"]["chosen"]
    assert chosen["resources"] == estimate(config, target) and "lc" in chosen["resources"]
    assert not over_budget(chosen["resources"], target)
    assert chosen["cycles"] == report["cycles_per_inference"]
