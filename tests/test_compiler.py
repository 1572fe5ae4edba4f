"""Compiler correctness on the instruction-level model: compiled program ≡ golden model.

Fast (no hardware build), so it covers many shapes on several array configurations, including
scratchpads small enough to force row, column and weight-chunk tiling.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codesign import reference
from codesign.compiler import compile_graph
from codesign.driver import run_isasim
from codesign.errors import TilingError
from codesign.isa import HwConfig

from .irgen import ConvSpec, block_graph, block_specs, conv_specs, graph_from_spec, random_input

CONFIGS = {
    "4x4": HwConfig(rows=4, cols=4, bus_bytes=4),
    "2x4-tiny": HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=400, wgt_depth=8, acc_depth=24,
                         prm_depth=2),
    "8x2": HwConfig(rows=8, cols=2, bus_bytes=1, act_depth=512),
    "1x1": HwConfig(rows=1, cols=1, bus_bytes=1),
}


def check(graph, seed: int, config: HwConfig) -> None:
    """Compile ``graph`` for ``config`` and run it on the ISA model against the golden model."""
    try:
        program = compile_graph(graph, config)
    except TilingError:
        # Only the deliberately tiny configuration may refuse a layer.
        assert config.act_depth < 1000
        return
    inputs = random_input(graph, seed)
    got = run_isasim(program, [inputs]).outputs[0]
    values = reference.run(graph, inputs)
    want = [values[b.tensor.name] for b in graph.outputs]
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=conv_specs())
def test_random_layers_match_golden(name, spec):
    check(graph_from_spec(spec), spec.seed, CONFIGS[name])


def test_tiny_scratchpads_are_refused_clearly():
    spec = ConvSpec(h=9, w=9, cin=20, cout=3, k=(3, 3), stride=(1, 1), pads=(1, 1, 1, 1),
                    x_signed=False, y_signed=False, w_zp=0, relu=False, pool=False, fc=0, seed=1)
    config = HwConfig(rows=2, cols=2, bus_bytes=1, act_depth=16, acc_depth=4)
    with pytest.raises(TilingError, match="does not fit"):
        compile_graph(graph_from_spec(spec), config)


def test_same_inputs_give_identical_programs():
    spec = ConvSpec(h=6, w=5, cin=3, cout=9, k=(3, 2), stride=(2, 1), pads=(1, 0, 1, 1),
                    x_signed=True, y_signed=False, w_zp=3, relu=True, pool=True, fc=5, seed=7)
    a = compile_graph(graph_from_spec(spec), CONFIGS["4x4"])
    b = compile_graph(graph_from_spec(spec), CONFIGS["4x4"])
    assert a.program_bytes() == b.program_bytes()
    assert a.image.tobytes() == b.image.tobytes()
    assert a.listing() == b.listing()


@pytest.mark.parametrize("name", CONFIGS)
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=block_specs())
def test_random_blocks_match_golden(name, spec):
    """Grouped/depthwise conv, residual add or concat, average pooling."""
    check(block_graph(spec), spec.seed, CONFIGS[name])


def test_transfers_longer_than_the_length_field_are_split():
    """A 33×33 max pool on a 64-column NPU with a 1-byte bus stores 69 696 slices at once, more
    than a LOAD/STORE `length` holds: the compiler splits the transfer."""
    import dataclasses

    from codesign import ir

    x = ir.Tensor("x", (66, 66, 3), False, np.float32(0.1), 0)
    y = dataclasses.replace(x, name="y", shape=(33, 33, 3))
    graph = ir.Graph("pool", (ir.IOBinding("x", (1, 3, 66, 66), False, x),),
                     (ir.IOBinding("y", (1, 3, 33, 33), False, y),),
                     (ir.MaxPool(x=x, y=y, kernel=(2, 2), stride=(2, 2), name="pool"),))
    config = HwConfig(rows=1, cols=64, bus_bytes=1, act_depth=8192)
    program = compile_graph(graph, config)
    assert program.listing().count("STORE") >= 2
    inputs = [np.random.default_rng(0).integers(0, 256, (66, 66, 3)).astype(np.uint8)]
    got = run_isasim(program, [inputs]).outputs[0][0]
    np.testing.assert_array_equal(got, reference.run(graph, inputs)["y"])
