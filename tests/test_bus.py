"""The NPU on a bus, as users reach it: `generate --bus`, `simulate --mem-latency/--mem-stall`,
targets with a real memory, the timing model behind a bus, a reset in mid-run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from codesign import cli
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.design import Design
from codesign.driver import run_rtl
from codesign.dse import BUILTIN_TARGETS, explore
from codesign.frontend import load_model
from codesign.isa import HwConfig
from codesign.reference import run as golden
from codesign.sim.runner import Inference, MemoryModel, run_program
from codesign.timing import NATIVE, MemoryTiming, bus_timing, program_cycles, reads_needed
from codesign.verilog import npu_verilog

from .irgen import random_input
from .modelgen import ZOO, build, random_inputs
from .test_cli import assert_refused, run

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]
#: One small NPU per bus form for the RTL runs below (one Verilator build each): enough read
#: credits for latency 30.
SMALL_NPU = HwConfig(rows=4, cols=4, bus_bytes=4, max_reads=64)


def test_memory_timing_is_checked_and_native_is_exact_only_at_latency_1():
    with pytest.raises(ValueError, match="latency"):
        MemoryTiming(latency=0)
    with pytest.raises(ValueError, match="beats_per_cycle"):
        MemoryTiming(beats_per_cycle=1.5)
    assert bus_timing(HwConfig()) is NATIVE
    with pytest.raises(ValueError, match="native port"):
        bus_timing(HwConfig(), mem_latency=5)
    axi = bus_timing(HwConfig(bus="axi4"), mem_latency=10, beats_per_cycle=0.5)
    assert axi.latency > 10 and axi.beats_per_cycle == 0.5
    # Enough credits to stream: latency x rate beats in flight, and a power of two.
    need = reads_needed(axi)
    assert need >= axi.latency * 0.5 and need & (need - 1) == 0


def test_a_target_with_slow_memory_gets_a_bus_and_credits_and_slower_cycles():
    graph = load_model(build(SMALL))
    ideal = BUILTIN_TARGETS["ecp5-85k"]
    board = BUILTIN_TARGETS["ulx3s-85k"]
    assert ideal.ideal_memory and not board.ideal_memory
    config = dataclasses.replace(DEFAULT_CONFIG, bus_bytes=2)
    fast = explore.evaluate(graph, config, ideal)
    slow = explore.evaluate(graph, config, board)
    assert fast.config.bus == "native" and slow.config.bus == "axi4"
    assert slow.config.max_reads == reads_needed(board.memory_timing(slow.config))
    assert slow.cycles > fast.cycles


def test_generate_bus_options_reach_the_configuration(capsys, tmp_path):
    model = build(SMALL)
    outdir = tmp_path / "w"
    code, _, _ = run(capsys, "generate", model, "-o", outdir, "--bus", "wishbone",
                     "--max-reads", "8", "--wb-classic")
    assert code == 0
    config = json.loads((outdir / "config.json").read_text())
    assert (config["bus"], config["max_reads"], config["wb_classic"]) == ("wishbone", 8, True)
    assert "m_wb_dat_r" in (outdir / "npu.v").read_text()
    assert_refused(capsys, tmp_path / "x", "generate", model, "-o", tmp_path / "x",
                   "--bus", "axi4", "--max-reads", "3", match="max_reads must be a power of two")


def test_simulate_memory_options_need_a_bus(capsys, tmp_path):
    model = build(SMALL)
    native = tmp_path / "n"
    assert run(capsys, "generate", model, "-o", native)[0] == 0
    np.save(tmp_path / "x.npy", random_inputs(SMALL, 1, seed=1)[0])
    code, _, err = run(capsys, "simulate", native, "--input", tmp_path / "x.npy",
                       "--mem-latency", "5")
    assert code == 2 and "--bus axi4" in err and err.count("\n") == 1


#: The default run has one Verilator build of a bus form here (SMALL_NPU with Wishbone), shared
#: by every test below; the others are in the slow run (tests/sim/test_bus_system.py builds
#: SMALL_NPU with AXI4).
DEFAULT_BUS = ["wishbone", pytest.param("axi4", marks=pytest.mark.slow)]


@pytest.mark.verilator
@pytest.mark.parametrize("bus", DEFAULT_BUS)
def test_simulate_behind_a_slow_memory_is_bit_exact(capsys, tmp_path, bus):
    model = build(SMALL)
    outdir = tmp_path / "d"
    cli.generate(model, outdir, dataclasses.replace(SMALL_NPU, bus=bus))  # the build below
    np.save(tmp_path / "x.npy", np.concatenate(random_inputs(SMALL, 2, seed=3)))
    code, out, _ = run(capsys, "simulate", outdir, "--input", tmp_path / "x.npy",
                       "--mem-latency", "17", "--mem-stall", "0.3", "--mem-seed", "5")
    assert code == 0 and "bit-exactly" in out, out
    assert "read latency 17" in out and "ideal memory:" in out
    slow = int(out.split("inference 0: ")[1].split(" cycles")[0])
    ideal = int(out.split("ideal memory: ")[1].split(" cycles")[0])
    assert slow > ideal
    code, _, err = run(capsys, "simulate", outdir, "--input", tmp_path / "x.npy",
                       "--mem-stall", "1.5")
    assert code == 2 and "stall probability" in err


@pytest.mark.verilator
@pytest.mark.parametrize("bus", [*DEFAULT_BUS, pytest.param("native", marks=pytest.mark.slow)])
def test_reset_in_mid_run_leaves_nothing_behind(bus, tmp_path):
    """The testbench is reset 300 cycles into the first run; the runs after it are exact."""
    graph = load_model(build(SMALL))
    config = dataclasses.replace(SMALL_NPU, bus=bus)
    program = compile_graph(graph, config)
    batch = [random_input(graph, seed) for seed in range(2)]
    jobs = [Inference(writes=program.input_writes(x), reads=[(r.addr, r.nbytes(config))
                                                             for r in program.outputs])
            for x in batch]
    results = run_program(config, npu_verilog(config), program.image, program.prog_base, jobs,
                          reset_after=300)
    assert program_cycles(program) > 300
    for x, res in zip(batch, results, strict=True):
        want = golden(graph, x)
        for region, data, binding in zip(program.outputs, res.outputs, graph.outputs,
                                         strict=True):
            np.testing.assert_array_equal(region.unpack(data, config),
                                          want[binding.tensor.name])


@pytest.mark.verilator
@pytest.mark.parametrize("bus", DEFAULT_BUS)
def test_timing_model_predicts_the_rtl_behind_a_slow_memory(bus, tmp_path):
    """Within 5% at three latencies (bench/memory_latency.py has the MLPerf figures, with
    max_reads sized for each latency)."""
    graph = load_model(build(SMALL))
    x = random_input(graph, 0)
    config = dataclasses.replace(SMALL_NPU, bus=bus)
    program = compile_graph(graph, config)
    for latency in (1, 10, 30):
        rtl = run_rtl(program, npu_verilog(config), [x],
                      memory=MemoryModel(latency=latency)).cycles[0]
        model = program_cycles(program, bus_timing(config, latency))
        assert abs(model - rtl) <= 0.05 * rtl, (latency, model, rtl)


def test_design_directory_of_a_bus_form_reads_back(capsys, tmp_path):
    outdir = tmp_path / "a"
    assert run(capsys, "generate", build(SMALL), "-o", outdir, "--bus", "axi4")[0] == 0
    design = Design(outdir)
    assert design.config.bus == "axi4" and "m_axi_arvalid" in design.verilog


@pytest.mark.slow
@pytest.mark.verilator
@pytest.mark.parametrize("bus", ["axi4", "wishbone"])
@pytest.mark.parametrize("model", ["dscnn", "resnet8"])
def test_mlperf_models_behind_a_slow_stalling_memory(bus, model):
    """Whole MLPerf Tiny models on each bus against our memory model (read latency 23, 30%
    stalls on every channel, the protocol checker on): bit-exact with the golden model."""
    from models import mlperf

    graph = load_model(mlperf.path(model))
    config = dataclasses.replace(DEFAULT_CONFIG, bus=bus, max_reads=64)
    program = compile_graph(graph, config)
    batch = [random_input(graph, seed) for seed in range(2)]
    result = run_rtl(program, npu_verilog(config), batch,
                     memory=MemoryModel(latency=23, stall=0.3, seed=7))
    for x, outputs in zip(batch, result.outputs, strict=True):
        want = golden(graph, x)
        for out, binding in zip(outputs, graph.outputs, strict=True):
            np.testing.assert_array_equal(out, want[binding.tensor.name])
    assert min(result.cycles) > program_cycles(program)
