"""Pad, Resize and ConvTranspose on the generated Verilog under Verilator vs the golden model.

Randomized IR graphs ``x → Pad → Resize → ConvTranspose [→ Conv]`` (sizes that are not
multiples of the array, pad values other than the zero point, factors 1–3, kernels 1–4 with
strides 1–3, pads and output_padding), every tensor compared; then two small UNets exported from
PyTorch and quantized with onnxruntime's ``quantize_static`` (QDQ), one upsampling with Resize
and one with ConvTranspose, through ``codesign verify``.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from codesign import cli, timing
from codesign.compiler import compile_graph
from codesign.driver import layer_cycles

from .resamplegen import resample_graph, resample_specs
from .test_rtl_ops import CONFIGS, check_on_rtl, verilog
from .toolmodels import unet

pytestmark = pytest.mark.verilator


# The non-square array in the slow suite only, for the default run's time (about 50 s).
@pytest.mark.parametrize("name", ["4x4", pytest.param("2x8", marks=pytest.mark.slow)])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.filter_too_much])
@given(spec=resample_specs())
def test_pad_resize_conv_transpose_on_rtl_match_golden(name, spec):
    graph = resample_graph(spec)
    if graph is None:
        return
    check_on_rtl(name, graph, [spec.seed])


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.filter_too_much])
@given(spec=resample_specs())
def test_cycle_model_matches_rtl_layer_by_layer(spec):
    """codesign.timing against the RTL's cycle counter on these layers (scattered and
    replicating STOREs, strided LOADs, the phases' MATMULs): equal."""
    graph = resample_graph(spec)
    if graph is None:
        return
    program = compile_graph(graph, CONFIGS["4x4"])
    x = [np.random.default_rng(spec.seed).integers(b.tensor.qmin, b.tensor.qmax + 1,
                                                   b.tensor.shape).astype(b.tensor.numpy_dtype)
         for b in graph.inputs]
    assert timing.layer_cycles(program) == layer_cycles(program, verilog("4x4"), x)


# ------------------------------------------------------------------------------------------------
# Small UNets from PyTorch, QDQ from onnxruntime's quantize_static, through `codesign verify`

@pytest.mark.parametrize(("upsample", "kinds"), [
    ("resize", ["resize"]), ("convtranspose", ["conv_transpose"]),
    ("resize+pad", ["resize", "pad"]),
    pytest.param("resize-qop", ["resize"], marks=pytest.mark.slow)])
def test_unet_verifies_on_rtl(capsys, tmp_path, upsample, kinds):
    """RTL = golden bit for bit (per layer too), every op within its bound of onnxruntime."""
    path = unet(tmp_path, upsample)
    code = cli.main(["verify", str(path), "-o", str(tmp_path / "out"), "--per-layer"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "PASS: 4 inference(s) bit-exact on the RTL" in out
    for kind in kinds:   # the layer ran, RTL = golden, golden = onnxruntime's op
        assert re.search(rf"^\S+\s+{kind}\s+\(1[4-6], 1[4-6], 16\)\s+0\s+0\s+0$", out,
                         re.M), out
    row = re.search(r"^y\s+\(1, 2, 1[56], 1[56]\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out,
                    re.M)
    assert row is not None and row.group(2) == "0", out
