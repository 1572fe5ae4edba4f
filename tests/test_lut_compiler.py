"""ir.Lut through the compiler: the ISA model of the compiled program equals the golden model.

Random graphs: a lookup table on the model input, a convolution, then a chain of lookup tables
with more distinct tables than the NPU holds (so tables are evicted and reloaded), on shapes
that are not multiples of the ACT word and, on the tiny configuration, larger than ACT."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign import ir, reference
from codesign.compiler import compile_graph
from codesign.driver import run_isasim
from codesign.errors import TilingError
from codesign.isa import HwConfig, Opcode, decode
from codesign.timing import program_cycles

from .irgen import _conv, _tensor

CONFIGS = {
    "4x4-l2": HwConfig(rows=4, cols=4, bus_bytes=4, lut_tables=2),
    "2x4-tiny-l1": HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=120, wgt_depth=8,
                            acc_depth=24, prm_depth=2, lut_tables=1),
    "8x2-b1-l3": HwConfig(rows=8, cols=2, bus_bytes=1, act_depth=512, lut_tables=3),
}


def _lut(rng, name: str, x: ir.Tensor, signed: bool) -> ir.Lut:
    y = _tensor(rng, f"{name}_out", x.shape, signed)
    table = rng.integers(y.qmin, y.qmax + 1, 256).astype(y.numpy_dtype)
    return ir.Lut(x=x, y=y, table=table, function="random", name=name)


def lut_graph(h: int, w: int, c: int, cout: int, chain: int, repeat: bool, seed: int
              ) -> ir.Graph:
    rng = np.random.default_rng(seed)
    x = _tensor(rng, "input", (h, w, c), bool(rng.integers(2)))
    ops: list[ir.Op] = [_lut(rng, "lut_in", x, bool(rng.integers(2)))]
    ops.append(_conv(rng, "conv", ops[-1].y, cout, (1, 1), (1, 1), (0, 0, 0, 0),
                     bool(rng.integers(2)), 0, False))
    for k in range(chain):
        op = _lut(rng, f"lut_{k}", ops[-1].y, bool(rng.integers(2)))
        if repeat and k >= 2:       # a table used before: resident or reloaded
            first = ops[2]
            op = dataclasses.replace(op, table=first.table.astype(op.y.numpy_dtype),
                                     y=dataclasses.replace(op.y, signed=first.y.signed))
        ops.append(op)
    y = ops[-1].y
    return ir.Graph(name="lut", inputs=(ir.IOBinding("input", (1, c, h, w), False, x),),
                    outputs=(ir.IOBinding("output", (1, y.shape[2], h, w), False, y),),
                    ops=tuple(ops))


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 9), w=st.integers(1, 9), c=st.integers(1, 13), cout=st.integers(1, 19),
       chain=st.integers(0, 5), repeat=st.booleans(), seed=st.integers(0, 2**31))
def test_lut_layers_match_golden(name, h, w, c, cout, chain, repeat, seed):
    config = CONFIGS[name]
    graph = lut_graph(h, w, c, cout, chain, repeat, seed)
    program = compile_graph(graph, config)
    rng = np.random.default_rng(seed + 1)
    t = graph.inputs[0].tensor
    x = [rng.integers(t.qmin, t.qmax + 1, t.shape).astype(t.numpy_dtype)]
    got = run_isasim(program, [x]).outputs[0][0]
    np.testing.assert_array_equal(got, reference.run(graph, x)[graph.outputs[0].tensor.name])
    luts = [f for op, f in map(decode, program.insns) if op == Opcode.LUT]
    assert luts and all(int(f.table) < config.lut_tables for f in luts)
    assert program_cycles(program) > 0


def test_lut_needs_the_lut_engine():
    graph = lut_graph(2, 2, 3, 2, 0, False, 0)
    with pytest.raises(TilingError, match="lut_tables = 0"):
        compile_graph(graph, HwConfig(rows=4, cols=4, bus_bytes=4))


def test_resource_model_counts_the_lut_engine():
    """A byte-wide table copy per ACT lane (one block RAM each while the tables fit one), and
    the engine's logic, on top of the fitted model of the rest of the NPU."""
    import dataclasses

    from codesign.dse import load_target
    from codesign.dse.resources import estimate, lut_engine_logic

    base = HwConfig(rows=8, cols=8, bus_bytes=8)
    for target, tables in (("ecp5-25k", 8), ("ice40-up5k", 2)):
        without = estimate(base, load_target(target))
        with_lut = estimate(dataclasses.replace(base, lut_tables=tables), load_target(target))
        luts, ffs = lut_engine_logic(dataclasses.replace(base, lut_tables=tables))
        assert with_lut["bram"] - without["bram"] == base.act_bytes
        assert (with_lut["lut"] - without["lut"], with_lut["ff"] - without["ff"]) == (luts, ffs)
    wide = lut_engine_logic(HwConfig(rows=16, cols=16, bus_bytes=8, lut_tables=1))
    assert wide > lut_engine_logic(dataclasses.replace(base, lut_tables=1))


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(h=st.integers(1, 8), w=st.integers(1, 8), c=st.integers(1, 12), seed=st.integers(0, 2**31))
def test_residual_across_a_lut_matches_golden(name, h, w, c, seed):
    """t = conv(x); y = t + conv(lut(t)): t stays in ACT across the lookup table (when it fits)
    for the Add."""
    config = CONFIGS[name]
    rng = np.random.default_rng(seed)
    x = _tensor(rng, "input", (h, w, c), bool(rng.integers(2)))
    signed = bool(rng.integers(2))
    conv1 = _conv(rng, "conv1", x, c, (1, 1), (1, 1), (0, 0, 0, 0), signed, 0, False)
    lut = _lut(rng, "lut", conv1.y, signed)
    conv2 = _conv(rng, "conv2", lut.y, c, (1, 1), (1, 1), (0, 0, 0, 0), signed, 0, False)
    y = _tensor(rng, "sum", (h, w, c), signed)
    a_mult, b_mult, shift = ir.add_multipliers(conv1.y.scale, conv2.y.scale, y.scale)
    add = ir.Add(conv1.y, conv2.y, y, a_mult, b_mult, shift, name="add")
    graph = ir.Graph(name="residual", inputs=(ir.IOBinding("input", (1, c, h, w), False, x),),
                     outputs=(ir.IOBinding("output", (1, c, h, w), False, y),),
                     ops=(conv1, lut, conv2, add))
    program = compile_graph(graph, config)
    xs = [rng.integers(x.qmin, x.qmax + 1, x.shape).astype(x.numpy_dtype)]
    got = run_isasim(program, [xs]).outputs[0][0]
    np.testing.assert_array_equal(got, reference.run(graph, xs)["sum"])
