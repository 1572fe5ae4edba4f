"""The cycle model (codesign.timing) against the RTL, layer by layer, on real models.

The controller and engine tests check the model cycle by cycle on random programs; here whole
MLPerf Tiny models run on Verilator, truncated after each layer (driver.layer_cycles), on three
array shapes, one of them not square, and DS-CNN on the 2x2 NPU with a shared requantizer and
no ELTWISE engine that fits the iCE40 UP5K. The model is exact, so the comparison is equality
(the issue asks for 5%)."""

import dataclasses

import numpy as np
import pytest

from codesign import timing
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.driver import layer_cycles
from codesign.frontend import load_model
from codesign.isa import HwConfig
from codesign.verilog import npu_verilog
from models import mlperf

pytestmark = pytest.mark.verilator

SHAPES = {"8x8": DEFAULT_CONFIG,
          "4x4": dataclasses.replace(DEFAULT_CONFIG, rows=4, cols=4, bus_bytes=4, dw_width=0),
          "16x8": dataclasses.replace(DEFAULT_CONFIG, rows=16, cols=8),
          # A UP5K-sized NPU: one requantizer lane over 4 cycles per ACC word (2 turns of a
          # 2-cycle multiply), no ELTWISE engine, no GEMV mode.
          "2x2-up5k": HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=4096, wgt_depth=256,
                               acc_depth=256, prm_depth=64, requant_groups=2, requant_steps=2,
                               eltwise=False, gemv=False)}


def _cases():
    """(model, shape) pairs: DS-CNN and the FC autoencoder (batch-1 fully connected layers: GEMV
    MATMULs) at 8×8 in the default suite, the rest (16×8 too) slow; ResNet-8's adds need the
    ELTWISE engine, which the UP5K's NPU does not have."""
    for name in ["dscnn", "fc_autoencoder", "resnet8", "mobilenet_v1_025"]:
        for shape in SHAPES:
            if name == "resnet8" and not SHAPES[shape].eltwise:
                continue
            fast = name in ("dscnn", "fc_autoencoder") and shape == "8x8"
            yield pytest.param(name, shape, id=f"{name}-{shape}",
                               marks=[] if fast else [pytest.mark.slow])


@pytest.mark.parametrize("name,shape", list(_cases()))
def test_layer_cycles_match_rtl(name, shape):
    config = SHAPES[shape]
    graph = load_model(mlperf.path(name))
    program = compile_graph(graph, config)
    rng = np.random.default_rng(0)
    x = [rng.integers(0, 256, b.tensor.shape).astype(np.uint8).view(
        np.int8 if b.tensor.signed else np.uint8) for b in graph.inputs]
    measured = layer_cycles(program, npu_verilog(config), x)
    modelled = timing.layer_cycles(program)
    assert modelled == measured, [(layer.name, m, r) for layer, m, r in
                                  zip(program.layers, modelled, measured, strict=True) if m != r]


@pytest.mark.slow       # about a minute; the default suite runs DS-CNN's layers on the RTL
def test_resnet8_with_64k_scratchpads_on_rtl():
    """ResNet-8 on an 8×8 with 64 kB scratchpads (SCALE-Sim's SRAM sizes, the benchmark's
    comparison point): every tensor read by a convolution or add stays on chip, weights
    prefetch behind earlier layers, and the RTL computes the golden model in exactly the
    modelled cycles."""
    from codesign import reference
    from codesign.driver import run_rtl

    config = dataclasses.replace(DEFAULT_CONFIG, act_depth=8192, wgt_depth=8192, acc_depth=2048)
    graph = load_model(mlperf.path("resnet8"))
    program = compile_graph(graph, config)
    rng = np.random.default_rng(1)
    x = [rng.integers(0, 256, b.tensor.shape).astype(np.uint8).view(
        np.int8 if b.tensor.signed else np.uint8) for b in graph.inputs]
    result = run_rtl(program, npu_verilog(config), [x])
    values = reference.run(graph, x)
    for got, b in zip(result.outputs[0], graph.outputs, strict=True):
        np.testing.assert_array_equal(got, values[b.tensor.name])
    assert result.cycles[0] == timing.program_cycles(program)


@pytest.mark.parametrize("shape", ["8x8", pytest.param("4x4", marks=pytest.mark.slow)])
def test_lut_layer_cycles_match_rtl(shape, tmp_path):
    """The LUT instruction (and its table LOADs) in the cycle model: a PyTorch model with
    Sigmoid, HardSigmoid, HardSwish, Tanh and LeakyReLU layers, on an NPU holding 4 tables
    (8x8; the Verilator build `codesign verify` of tests/test_lut_rtl.py uses too) and one
    holding a single table (4x4: every layer reloads its table; slow, its own build)."""
    from .lutmodels import activation_model

    graph = load_model(activation_model(tmp_path))
    config = dataclasses.replace(SHAPES[shape], lut_tables=4 if shape == "8x8" else 1)
    program = compile_graph(graph, config)
    rng = np.random.default_rng(2)
    x = [rng.integers(0, 256, b.tensor.shape).astype(np.uint8) for b in graph.inputs]
    measured = layer_cycles(program, npu_verilog(config), x)
    modelled = timing.layer_cycles(program)
    assert modelled == measured, [(layer.name, m, r) for layer, m, r in
                                  zip(program.layers, modelled, measured, strict=True) if m != r]
