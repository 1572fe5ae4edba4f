"""Add / Sub / Mul (broadcast, constants) on the generated Verilog under Verilator: random
single-op models against the golden model, and whole models made with PyTorch and
onnxruntime's ``quantize_static`` through ``codesign verify``."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codesign import cli, reference, timing
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.compiler.lower import sized_for
from codesign.driver import layer_cycles, run_rtl
from codesign.frontend import load_model
from codesign.verilog import npu_verilog

from .modelgen import Const, Conv, Flatten, Gate, GlobalAvgPool, Linear, ReLU, ReLU6, Spec, build
from .test_binary_ops import build as build_case
from .test_binary_ops import cases
from .test_rtl_ops import CONFIGS, verilog

pytestmark = pytest.mark.verilator

#: Squeeze-excite with MobileNetV3's hard-sigmoid gate written out, x · relu6(se(x) − (−3)) / 6:
#: a Sub of a float constant (onnxruntime's quantizer leaves the Sub in float), a Mul by a
#: scalar 8-bit constant and the broadcast Mul of two activations.
SQUEEZE_EXCITE = Spec((3, 10, 10), (
    Conv(12, 3, padding=1), ReLU(),
    Gate((GlobalAvgPool(), Conv(4, 1), ReLU(), Conv(12, 1), Const("sub", -3.0), ReLU6(),
          Const("mul", 1 / 6))),
    Conv(8, 1), GlobalAvgPool(), Flatten(), Linear(5)))
#: nn.Linear with bias on a [1, 16, 32] sequence: onnxruntime's quantizer leaves MatMul + Add
#: (the bias an 8-bit constant broadcast over the rows).
LINEAR_SEQUENCE = Spec((16, 32), (Linear(24),))


@pytest.mark.parametrize("name", ["4x4", pytest.param("8x4_ecp5", marks=pytest.mark.slow)])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases().filter(lambda c: c.form != "const_float"))  # (a float constant: a LUT)
def test_binary_op_on_rtl_matches_golden(name, case):
    model, feeds = build_case(case)
    graph = load_model(model)
    inputs = [b.quantize(x) for b, x in zip(graph.inputs, feeds, strict=True)]
    program = compile_graph(graph, CONFIGS[name])
    result = run_rtl(program, verilog(name), [inputs])
    want = reference.run(graph, inputs)[graph.outputs[0].tensor.name]
    np.testing.assert_array_equal(result.outputs[0][0], want)


def _verify(capsys, tmp_path, spec: Spec) -> str:
    code = cli.main(["verify", str(build(spec)), "-o", str(tmp_path / "d"), "--count", "3"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out
    lines = out.splitlines()
    row = lines[lines.index(next(line for line in lines if set(line) == {"-"})) + 1]
    assert row.split()[-3] == "0"           # RTL≠golden
    assert int(row.split()[-1]) <= 1        # max |RTL − ORT| in LSB
    return out


@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_squeeze_excite_verifies_on_rtl(capsys, tmp_path, fmt):
    _verify(capsys, tmp_path, Spec(SQUEEZE_EXCITE.input_shape, SQUEEZE_EXCITE.layers, fmt=fmt))


def test_linear_with_bias_on_a_sequence_verifies_on_rtl(capsys, tmp_path):
    _verify(capsys, tmp_path, LINEAR_SEQUENCE)


@pytest.mark.parametrize("spec", [SQUEEZE_EXCITE, LINEAR_SEQUENCE], ids=["se", "linear_seq"])
def test_layer_cycles_match_rtl(spec):
    """The cycle model (codesign.timing) equals the RTL's cycle counter, layer by layer, on the
    squeeze-excite (broadcast Mul; its gate's float chain Sub, ReLU6, Mul by constants is a
    lookup table) and sequence (Add of a row bias) models."""
    graph = load_model(build(spec))
    config = sized_for(graph, DEFAULT_CONFIG)
    program = compile_graph(graph, config)
    rng = np.random.default_rng(0)
    x = [rng.integers(0, 256, b.tensor.shape).astype(np.uint8).view(
        np.int8 if b.tensor.signed else np.uint8) for b in graph.inputs]
    measured = layer_cycles(program, npu_verilog(config), x)
    assert timing.layer_cycles(program) == measured


def test_kept_broadcast_mul_and_sub_on_rtl():
    """The placed paths (operands kept in ACT, a broadcast gate read every pixel) on the RTL:
    every tensor equals the golden model's."""
    from .test_binary_ops import kept_graph
    from .test_rtl_ops import check_on_rtl

    check_on_rtl("4x4", kept_graph(3, 4, 6, False, 7), [7, 8])
