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

def _unet_model(tmp_path, upsample: str):
    """1×16×16 → Conv+ReLU (skip) → MaxPool → Conv+ReLU → ×2 upsampling (Resize nearest or
    ConvTranspose 2×2/2) → Concat with the skip → Conv+ReLU → 1×1 head. ``"resize+pad"``: a
    1×15×15 input, whose 14×14 upsampled tensor is padded (F.pad, bottom and right) to the
    skip's 15×15, as UNets do for odd sizes (a Pad the Concat reads: it runs on the NPU).
    ``"resize-qop"``: the Resize UNet in QOperator form (QLinearConv, QLinearConcat and a Resize
    on the uint8 tensor)."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .modelgen import _quiet_export

    class UNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.mid = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.up = (torch.nn.ConvTranspose2d(16, 16, 2, stride=2)
                       if upsample == "convtranspose"
                       else torch.nn.Upsample(scale_factor=2, mode="nearest"))
            self.dec = torch.nn.Conv2d(24, 8, 3, padding=1)
            self.head = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = torch.relu(self.enc(x))
            mid = torch.relu(self.mid(torch.nn.functional.max_pool2d(skip, 2)))
            up = self.up(mid)
            up = torch.nn.functional.pad(up, (0, skip.shape[3] - up.shape[3], 0,
                                              skip.shape[2] - up.shape[2]))
            return self.head(torch.relu(self.dec(torch.cat([skip, up], 1))))

    torch.manual_seed(0)
    size = 15 if upsample == "resize+pad" else 16
    float_path, path = tmp_path / "unet_float.onnx", tmp_path / f"unet_{upsample}.onnx"
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(UNet().eval(), (torch.zeros(1, 1, size, size),), dynamo=True,
                          input_names=["x"], output_names=["y"]).save(str(float_path))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.data = iter({"x": rng.standard_normal((1, 1, size, size)).astype(np.float32)}
                             for _ in range(16))

        def get_next(self):
            return next(self.data, None)

    fmt = QuantFormat.QOperator if upsample.endswith("-qop") else QuantFormat.QDQ
    quantize_static(str(float_path), str(path), Reader(), quant_format=fmt,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    return path


@pytest.mark.parametrize(("upsample", "kinds"), [
    ("resize", ["resize"]), ("convtranspose", ["conv_transpose"]),
    ("resize+pad", ["resize", "pad"]),
    pytest.param("resize-qop", ["resize"], marks=pytest.mark.slow)])
def test_unet_verifies_on_rtl(capsys, tmp_path, upsample, kinds):
    """RTL = golden bit for bit (per layer too), every op within its bound of onnxruntime."""
    path = _unet_model(tmp_path, upsample)
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
