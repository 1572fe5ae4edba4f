"""Compiler correctness on the instruction-level model: compiled program ≡ golden model.

Fast (no hardware build), so it covers many shapes on several array configurations, including
scratchpads small enough to force row, column and weight-chunk tiling.
"""

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codesign import reference
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.driver import run_isasim
from codesign.errors import TilingError
from codesign.frontend import load_model
from codesign.isa import HwConfig, Opcode, decode, encode
from codesign.isasim import IsaError, IsaSim
from codesign.timing import program_cycles
from models import mlperf

from .irgen import ConvSpec, block_graph, block_specs, conv_specs, graph_from_spec, random_input

CONFIGS = {
    "4x4": HwConfig(rows=4, cols=4, bus_bytes=4),
    "2x4-tiny": HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=400, wgt_depth=8, acc_depth=24,
                         prm_depth=2),
    "8x2": HwConfig(rows=8, cols=2, bus_bytes=1, act_depth=512),
    "1x1": HwConfig(rows=1, cols=1, bus_bytes=1),
    # Without the GEMV mode, batch-1 fully connected layers run as ordinary weight tiles.
    "4x4-nogemv": HwConfig(rows=4, cols=4, bus_bytes=4, gemv=False),
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


# -- tensors kept in ACT and weight prefetch ---------------------------------------------------

#: 8x8 with 64 kB each of ACT, WGT and ACC (SCALE-Sim's default SRAM sizes, bench/performance.py).
SRAM_64K = HwConfig(rows=8, cols=8, bus_bytes=8, act_depth=8192, wgt_depth=8192, acc_depth=2048,
                    prm_depth=64)


def test_resnet8_keeps_every_intermediate_tensor_on_chip():
    """With 64 kB of ACT, every ResNet-8 tensor read by convolutions and adds stays in ACT until
    its last reader (the residual adds' shortcuts included): only the output and what the
    pooling layer reads and writes (in external memory) are stored, the Add layers load no
    activations, and the program still computes the golden model."""
    from codesign import ir
    from codesign.frontend import load_model
    from codesign.isa import Mem, Opcode, decode
    from models import mlperf

    graph = load_model(mlperf.path("resnet8"))
    program = compile_graph(graph, SRAM_64K)
    pooled = {t.name for op in graph.ops if isinstance(op, ir.AvgPool | ir.Flatten)
              for t in [*ir.op_inputs(op), op.y]}
    stored = {r.name for r in program.tensors}
    assert stored == pooled | {b.tensor.name for b in graph.outputs}, stored
    for layer in program.layers:
        if layer.kind == "add":
            ops = [decode(w) for w in program.insns[layer.first_insn:][:layer.n_insns]]
            assert not [f for op, f in ops if op == Opcode.LOAD and f.mem == Mem.ACT], layer.name
    inputs = random_input(graph, 3)
    got = run_isasim(program, [inputs]).outputs[0]
    values = reference.run(graph, inputs)
    for g, b in zip(got, graph.outputs, strict=True):
        np.testing.assert_array_equal(g, values[b.tensor.name])


def _load(sp: int, ext: int, length: int):
    from codesign.compiler.prefetch import Item
    from codesign.isa import Mem, Opcode, encode
    return Item(encode(Opcode.LOAD, mem=Mem.WGT, sp_addr=sp, sp_stride=0, ext_addr=ext,
                       ext_stride=0, rows=1, length=length), "const")


def _matmul(wgt_base: int, positions: int):
    from codesign.compiler.prefetch import Item
    from codesign.isa import Opcode, encode
    return Item(encode(Opcode.MATMUL, wgt_base=wgt_base, out_h=1, out_w=positions, in_h=1,
                       in_w=positions, stride_h=1, stride_w=1, step_w=1))


def _wgt_loads(items) -> list[tuple[int, int, int]]:
    from codesign.isa import Opcode, decode
    return [(int(f.sp_addr), int(f.ext_addr), int(f.length))
            for op, f in map(decode, (it.word for it in items)) if op == Opcode.LOAD]


def test_prefetch_spreads_a_layers_weights_over_earlier_matmuls():
    """The second layer's 100 weight words move, as chunks of at most the slot size, behind the
    first layer's MATMULs (whose weights are elsewhere); together the chunks load exactly
    the original words, in order. A load into words a MATMUL reads stays after it."""
    from codesign.compiler.prefetch import _slot_slices, prefetch
    from codesign.isa import decode

    config = HwConfig(rows=4, cols=4, bus_bytes=4)
    first = [_load(0, 0, 16)] + [_matmul(0, 40)] * 4
    second = [_load(16, 16, 100), _matmul(16, 40)]
    out = prefetch([first, second], config)
    room = _slot_slices(config, decode(first[1].word)[1])
    assert 0 < room < 100
    moved = _wgt_loads(out[0][1:])
    assert all(n <= room for _, _, n in moved)
    chunks = moved + _wgt_loads(out[1])
    assert [c[2] for c in chunks] and sum(c[2] for c in chunks) == 100
    offsets = np.cumsum([0] + [n for _, _, n in chunks[:-1]]).tolist()
    assert [(sp - 16, ext - 16) for sp, ext, _ in chunks] == [(o, o) for o in offsets]
    # Into the words the first layer's MATMULs read: nothing moves.
    clash = [_load(0, 16, 100), _matmul(0, 40)]
    assert prefetch([first, clash], config) == [first, clash]


def test_prefetch_keeps_an_activation_load_after_the_store_it_reads():
    """An ACT LOAD reads external words that an earlier STORE may have written (a tensor going
    through external memory): it may move behind MATMULs before that STORE only if it reads
    other words."""
    from codesign.compiler.prefetch import Item, prefetch
    from codesign.isa import Mem, Opcode, encode

    config = HwConfig(rows=4, cols=4, bus_bytes=4)

    def dma(opcode, sp, ext, length):
        return Item(encode(opcode, mem=Mem.ACT, sp_addr=sp, sp_stride=0, ext_addr=ext,
                           ext_stride=0, rows=1, length=length), "act")

    layer = [_matmul(0, 200), dma(Opcode.STORE, 500, 100, 50), dma(Opcode.LOAD, 1000, 120, 20)]
    assert prefetch([layer], config) == [layer]
    elsewhere = [*layer[:2], dma(Opcode.LOAD, 1000, 150, 20)]
    moved = prefetch([elsewhere], config)[0]
    assert [it.word for it in moved] == [elsewhere[i].word for i in (0, 2, 1)]


def test_batch1_fully_connected_layers_use_gemv_mode_when_built():
    """The FC autoencoder (one pixel throughout) compiles to GEMV MATMULs on an NPU with the
    mode and to ordinary tiles without it; both compute the golden model, and the GEMV program
    is at least 3× faster (it reads one weight word per cycle instead of a tile per vector)."""
    graph = load_model(mlperf.path("fc_autoencoder"))
    inputs = random_input(graph, 3)
    want = reference.run(graph, inputs)[graph.outputs[0].tensor.name]
    cycles = {}
    for gemv in (True, False):
        config = dataclasses.replace(DEFAULT_CONFIG, gemv=gemv)
        program = compile_graph(graph, config)
        matmuls = [f for op, f in map(decode, program.insns) if op == Opcode.MATMUL]
        assert all(bool(f.gemv) == gemv for f in matmuls)
        np.testing.assert_array_equal(run_isasim(program, [inputs]).outputs[0][0], want)
        cycles[gemv] = program_cycles(program)
    assert 3 * cycles[True] < cycles[False], cycles
    lean = dataclasses.replace(DEFAULT_CONFIG, gemv=False)
    with pytest.raises(IsaError, match="without GEMV"):
        IsaSim(lean, np.zeros(8, np.uint8)).step(
            encode(Opcode.MATMUL, gemv=1, out_h=1, out_w=1, in_h=1, in_w=1))
