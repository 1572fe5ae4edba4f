"""Each op on the generated Verilog under Verilator vs the golden model, on randomized shapes.

Three array shapes (square and both non-square), layer sizes that are not multiples of the array,
padding, strides, zero points, fused ReLU, max pooling and flatten + fully connected layers. One
Verilator build per configuration (cached across runs); each example is a real compiled program
run on the real NPU.
"""

import functools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codesign import reference
from codesign.compiler import compile_graph
from codesign.driver import run_rtl
from codesign.isa import HwConfig, Opcode, decode
from codesign.rtl.top import generate_verilog

from .irgen import BlockSpec, block_graph, block_specs, conv_specs, graph_from_spec, random_input

pytestmark = pytest.mark.verilator

CONFIGS = {
    "4x4": HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=1024, wgt_depth=256, acc_depth=128,
                    prm_depth=4),
    "2x8": HwConfig(rows=2, cols=8, bus_bytes=2, act_depth=1024, wgt_depth=64, acc_depth=64,
                    prm_depth=2),
    "8x2": HwConfig(rows=8, cols=2, bus_bytes=1, act_depth=512, wgt_depth=128, acc_depth=256,
                    prm_depth=16),
    # An NPU built for the ECP5: the multipliers (codesign.rtl.dsp) of the array, its tap lane
    # and ELTWISE on MULT18X18D cells, simulated with the cell's model (sim/MULT18X18D.v), and
    # the extra pipeline registers (HwConfig.deep_pipeline).
    "8x4_ecp5": HwConfig(rows=8, cols=4, bus_bytes=4, act_depth=512, wgt_depth=128,
                         acc_depth=256, prm_depth=16, mult_cell="MULT18X18D",
                         deep_pipeline=True),
}


@functools.cache
def verilog(name: str) -> str:
    return generate_verilog(CONFIGS[name])


def check_on_rtl(name: str, graph, seeds: list[int]) -> None:
    """Run ``graph`` on the RTL of configuration ``name`` for one inference per seed; every
    tensor (not only the outputs) must equal the golden model's."""
    program = compile_graph(graph, CONFIGS[name])
    batch = [random_input(graph, seed) for seed in seeds]
    result = run_rtl(program, verilog(name), batch, all_tensors=True)
    for inputs, tensors, cycles in zip(batch, result.tensors, result.cycles, strict=True):
        values = reference.run(graph, inputs)
        for tensor, got in tensors.items():
            np.testing.assert_array_equal(got, values[tensor], err_msg=tensor)
        assert cycles > 0


# The 8x2's random layers run in the slow suite only, for the default run's time (about 90 s);
# the block test below still runs the 8x2 by default.
@pytest.mark.parametrize("name", [pytest.param(name, marks=[pytest.mark.slow] * (name == "8x2"))
                                  for name in CONFIGS])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs(max_hw=8, max_c=12))
def test_op_on_rtl_matches_golden(name, spec):
    check_on_rtl(name, graph_from_spec(spec), [spec.seed, spec.seed + 1])


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=block_specs(max_hw=6, max_c=10))
def test_block_on_rtl_matches_golden(name, spec):
    """Depthwise/grouped conv, residual add or concat, average pooling on the RTL."""
    check_on_rtl(name, block_graph(spec), [spec.seed])


def test_mult18_cells_on_rtl_in_every_multiplier_role():
    """The MULT18X18D form in each role its cells take: the PEs, in the array's depthwise mode
    the tap lane (8 rows), ELTWISE (a residual add) and the requantizer (four partial products
    per lane)."""
    config = CONFIGS["8x4_ecp5"]
    cells = verilog("8x4_ecp5").count("MULT18X18D ")
    # PEs, tap lane, ELTWISE lanes, requantizer lanes.
    assert cells == config.rows * config.cols + 2 * config.cols + 4 * config.requant_lanes
    spec = BlockSpec(h=6, w=5, c=4, groups_depthwise=True, branch=4, stride=1, join="add",
                     pool=(2, 2), signed=False, seed=11)
    graph = block_graph(spec)
    program = compile_graph(graph, config)
    decoded = [decode(insn) for insn in program.insns]
    assert any(op == Opcode.ELTWISE for op, _ in decoded)
    assert any(op == Opcode.MATMUL and f.depthwise for op, f in decoded)
    check_on_rtl("8x4_ecp5", graph, [spec.seed, spec.seed + 1])
