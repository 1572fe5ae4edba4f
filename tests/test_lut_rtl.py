"""Lookup-table activations end to end: a PyTorch model with Sigmoid, HardSigmoid, HardSwish,
Tanh and LeakyReLU layers, exported (torch.onnx.export) and quantized by onnxruntime's
quantize_static (QDQ), through ``codesign verify``: the RTL (Verilator) equals the golden model
bit for bit and the golden model equals onnxruntime (every op, and end to end)."""

from __future__ import annotations

import contextlib
import io
import json
import warnings

import numpy as np
import onnx
import pytest
import torch

from codesign import cli
from codesign.frontend import load_model
from codesign.isa import Opcode, decode

pytestmark = pytest.mark.verilator

ACTIVATIONS = [torch.nn.Sigmoid, torch.nn.Hardsigmoid, torch.nn.Hardswish, torch.nn.Tanh,
               lambda: torch.nn.LeakyReLU(0.1)]


def _export(path) -> None:
    torch.manual_seed(3)
    layers: list[torch.nn.Module] = []
    channels = 3
    for k, act in enumerate(ACTIVATIONS):
        out = 6 + 3 * k
        layers += [torch.nn.Conv2d(channels, out, 3 if k == 0 else 1,
                                   padding=1 if k == 0 else 0), act()]
        channels = out
    module = torch.nn.Sequential(*layers).eval()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(1, 3, 6, 5),), str(path), dynamo=False,
                          opset_version=17, input_names=["x"], output_names=["y"])


def _quantize(src, dst) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            rng = np.random.default_rng(5)
            self.data = iter({"x": rng.standard_normal((1, 3, 6, 5)).astype(np.float32)}
                             for _ in range(8))

        def get_next(self):
            return next(self.data, None)

    quantize_static(str(src), str(dst), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lut")
    _export(tmp / "float.onnx")
    _quantize(tmp / "float.onnx", tmp / "model.onnx")
    return tmp / "model.onnx"


def test_quantizer_output_becomes_one_table_per_activation(model):
    ops = [n.op_type for n in onnx.load(str(model)).graph.node]
    for name in ("Sigmoid", "HardSigmoid", "HardSwish", "Tanh", "LeakyRelu"):
        assert name in ops
    luts = [op for op in load_model(model).ops if op.kind.value == "lut"]
    assert [op.function for op in luts] == ["Sigmoid", "HardSigmoid", "HardSwish", "Tanh",
                                            "LeakyRelu"]


def test_verify_rtl_equals_golden_and_onnxruntime(model, tmp_path):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(["verify", str(model), "-o", str(tmp_path / "build"), "--count", "2"])
    text = out.getvalue()
    assert code == 0, text
    assert "PASS" in text, text
    config = json.loads((tmp_path / "build" / "config.json").read_text())
    assert config["lut_tables"] == 4        # five distinct tables: one is reloaded
    insns = (tmp_path / "build" / "program.bin").read_bytes()
    width = 32
    opcodes = [decode(int.from_bytes(insns[i:i + width], "little"))[0]
               for i in range(0, len(insns), width)]
    assert opcodes.count(Opcode.LUT) >= 5
