"""Whole models as their tools write them, end to end through ``codesign verify`` on Verilator:
RTL = golden model bit for bit and RTL within 1 LSB of the tool's reference runtime.

Each model is built here from PyTorch with the tool itself (seeded), exactly as a user would
export it; the numbers the closing notes quote come from ``bench/tool_models.py``, which runs the
same builders.
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import onnx
import pytest

from codesign import cli

from .toolmodels import ort_mobilenet_v3_small, pt2e_mobilenet_v2

pytestmark = pytest.mark.verilator

#: One row of verify's output table: name, shape, elements, RTL≠golden, RTL≠ref, max |Δ|.
_ROW = re.compile(r"^(\S+)\s+(\(.*?\))\s+(\d+)\s+(\d+)\s+(\d+|n/a)\s+(\d+|n/a)\s*$")


def verify(capsys, model, outdir, *extra) -> tuple[int, str, list[tuple[str, int, int, int]]]:
    """Run ``codesign verify`` and return its exit code, output and table rows
    ``(output, RTL≠golden, RTL≠reference, max |Δ| LSB)``."""
    code = cli.main(["verify", str(model), "-o", str(outdir), *map(str, extra)])
    out, _ = capsys.readouterr()
    rows = [(m[1], int(m[4]), int(m[5]), int(m[6])) for m in map(_ROW.match, out.splitlines())
            if m]
    return code, out, rows


def test_pt2e_mobilenet_v2_with_external_data(capsys, tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    model = pt2e_mobilenet_v2(source)
    assert (source / "mobilenet_v2.onnx.data").is_file(), "the export kept the weights inline"
    code, out, rows = verify(capsys, model, tmp_path / "out", "--count", "3")
    assert code == 0, out
    assert "witness: onnxruntime, exact integer kernels" in out
    ((name, rtl_vs_golden, _, max_lsb),) = rows
    assert (name, rtl_vs_golden) == ("y", 0) and max_lsb <= 1, out
    # OUTDIR is self-contained: simulate works with the exported files gone.
    shutil.rmtree(source)
    x = tmp_path / "x.npy"
    np.save(x, np.random.default_rng(0).standard_normal((1, 3, 32, 32)).astype(np.float32))
    assert cli.main(["simulate", str(tmp_path / "out"), "--input", str(x)]) == 0, \
        capsys.readouterr()


def test_mobilenet_v3_small_with_hardswish_and_squeeze_excite(capsys, tmp_path):
    """HardSwish and HardSigmoid run as lookup tables (exact), squeeze-excite's gate multiplies
    the block's input broadcast over H×W on the ELTWISE engine; the global averages and the
    residual Add are the ops within 1 LSB of onnxruntime."""
    model = ort_mobilenet_v3_small(tmp_path)
    ops = {n.op_type for n in onnx.load(model).graph.node}
    assert {"HardSwish", "HardSigmoid", "Mul"} <= ops
    code, out, rows = verify(capsys, model, tmp_path / "out", "--count", "2")
    assert code == 0, out
    assert "witness: onnxruntime, exact integer kernels" in out
    ((name, rtl_vs_golden, _, max_lsb),) = rows
    assert (name, rtl_vs_golden) == ("y", 0) and max_lsb <= 1, out


def test_an_unquantized_function_before_a_pool_names_the_fix(capsys, tmp_path):
    """By default onnxruntime's quantize_static leaves HardSwish in float; where it feeds the
    global average directly nothing quantizes it, and the refusal says how to."""
    import torch

    from .archs import mobilenet_v3_small
    from .modelgen import export_float, ort_quantize

    float_path, path = tmp_path / "f.onnx", tmp_path / "q.onnx"
    export_float(mobilenet_v3_small(seed=1), torch.zeros((1, 3, 32, 32)), float_path)
    rng = np.random.default_rng(1)
    ort_quantize(float_path, path, [rng.standard_normal((1, 3, 32, 32)).astype(np.float32)
                                    for _ in range(4)])
    assert cli.main(["generate", str(path), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "is HardSwish of an 8-bit tensor, left unquantized" in err
    assert "add HardSwish to quantize_static's op_types_to_quantize" in err
