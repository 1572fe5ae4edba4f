"""Lookup-table activations end to end: a PyTorch model with Sigmoid, HardSigmoid, HardSwish,
Tanh and LeakyReLU layers, exported (torch.onnx.export) and quantized by onnxruntime's
quantize_static (QDQ), through ``codesign verify``: the RTL (Verilator) equals the golden model
bit for bit and the golden model equals onnxruntime (every op, and end to end)."""

from __future__ import annotations

import contextlib
import io
import json

import onnx
import pytest

from codesign import cli
from codesign.frontend import load_model
from codesign.isa import Opcode, decode

from .lutmodels import activation_model

pytestmark = pytest.mark.verilator

@pytest.fixture(scope="module")
def model(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("lut")
    return activation_model(tmp)


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
