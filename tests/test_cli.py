"""The command line as users and scripts see it: files, exit codes, messages (DESIGN.md §3.2)."""

import json
import re
import subprocess
import sys

import numpy as np
import onnx
import pytest

from codesign import cli

from .modelgen import ZOO, Spec, build, float_model, random_inputs

pytestmark = pytest.mark.verilator

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def assert_refused(capsys, outdir, *argv, match: str) -> None:
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("codesign: error: ") and err.count("\n") == 1, err
    assert re.search(match, err), err
    assert not outdir.exists()
    assert not [p for p in outdir.parent.iterdir() if p.name.startswith(f".{outdir.name}")]


def test_generate_writes_everything_and_is_reproducible(capsys, tmp_path):
    model = build(SMALL)
    code, out, _ = run(capsys, "generate", model, "-o", tmp_path / "a", "--array", "4x2")
    assert code == 0 and "instructions" in out
    run(capsys, "generate", model, "-o", tmp_path / "b", "--array", "4x2")
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == sorted(["npu.v", "npu_lint.vlt", "program.bin", "program.lst", "memory.bin",
                            "symbols.json", "config.json", "report.json", "report.txt",
                            "report.html", "model.onnx", "npu_regs.h", "npu_regs.py",
                            "registers.md", "memory.hex",
                            "npu_model.h", "codesign_npu.h", "codesign_npu.c"])
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert (config["rows"], config["cols"]) == (4, 2)
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["macs_per_inference"] == sum(layer["macs"] for layer in report["layers"]) > 0


def test_regenerate_replaces_the_directory(capsys, tmp_path):
    outdir = tmp_path / "d"
    outdir.mkdir()
    (outdir / "stale.txt").write_text("old")
    assert run(capsys, "generate", build(SMALL), "-o", outdir, "--array", "2x2")[0] == 0
    assert not (outdir / "stale.txt").exists() and (outdir / "npu.v").exists()


def test_float_model_is_refused(capsys, tmp_path):
    assert_refused(capsys, tmp_path / "o", "generate", float_model(SMALL), "-o", tmp_path / "o",
                   match="quantize")


def test_truncated_model_is_refused(capsys, tmp_path):
    path = tmp_path / "cut.onnx"
    path.write_bytes(build(SMALL).read_bytes()[:500])
    assert_refused(capsys, tmp_path / "o", "generate", path, "-o", tmp_path / "o",
                   match="not a valid ONNX file")


def test_unsupported_ops_are_all_named(capsys, tmp_path):
    model = onnx.load(build(SMALL))
    graph = model.graph
    last = graph.output[0].name
    extra = [onnx.helper.make_node("Softmax", [last], ["s"]),
             onnx.helper.make_node("Cos", ["s"], ["t"]),       # (Sigmoid and Tanh, the
             onnx.helper.make_node("Sin", ["t"], ["u"])]       # examples before, are supported)
    graph.node.extend(extra)
    graph.output[0].name = "u"
    path = tmp_path / "unsupported.onnx"
    onnx.save(model, path)
    code, _, err = run(capsys, "generate", path, "-o", tmp_path / "o")
    assert code == 2 and err.count("\n") == 1
    assert all(op in err for op in ("Softmax", "Cos", "Sin"))
    assert not (tmp_path / "o").exists()


def test_symbolic_dimension_is_refused(capsys, tmp_path):
    model = onnx.load(build(SMALL))
    model.graph.input[0].type.tensor_type.shape.dim[3].dim_param = "width"
    path = tmp_path / "symbolic.onnx"
    onnx.save(model, path)
    assert_refused(capsys, tmp_path / "o", "generate", path, "-o", tmp_path / "o",
                   match="width")


def test_model_that_cannot_be_tiled_is_refused_and_old_output_kept(capsys, tmp_path):
    outdir = tmp_path / "o"
    assert run(capsys, "generate", build(SMALL), "-o", outdir, "--array", "2x2")[0] == 0
    before = {p.name: p.read_bytes() for p in outdir.iterdir()}
    code, _, err = run(capsys, "generate", build(SMALL), "-o", outdir, "--array", "2x2",
                       "--act-depth", "8", "--acc-depth", "2")
    assert code == 2 and "does not fit" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in outdir.iterdir()} == before


@pytest.mark.parametrize("array", ["3x3", "8", "0x4", "4x4x4"])
def test_bad_array_is_refused(capsys, tmp_path, array):
    assert_refused(capsys, tmp_path / "o", "generate", build(SMALL), "-o", tmp_path / "o",
                   "--array", array, match="--array|hardware configuration")


def test_errors_have_no_traceback_unless_debug(tmp_path):
    path = tmp_path / "garbage.onnx"
    path.write_bytes(b"not a model")
    cmd = [sys.executable, "-m", "codesign.cli", "generate", str(path), "-o", str(tmp_path / "o")]
    plain = subprocess.run(cmd, capture_output=True, text=True)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().count("\n") == 0
    debug = subprocess.run(cmd[:3] + ["--debug"] + cmd[3:], capture_output=True, text=True)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_simulate_single_and_batch(capsys, tmp_path):
    model = build(SMALL)
    outdir = tmp_path / "d"
    assert run(capsys, "generate", model, "-o", outdir)[0] == 0
    xs = np.concatenate(random_inputs(SMALL, 3, seed=5))            # (3, C, H, W)
    np.save(tmp_path / "one.npy", xs[:1])
    np.save(tmp_path / "batch.npy", xs[:, None])                      # new leading axis
    code, out, _ = run(capsys, "simulate", outdir, "--input", tmp_path / "one.npy",
                       "--output", tmp_path / "y1.npy")
    assert code == 0 and "cycles" in out and "bit-exactly" in out
    code, out, _ = run(capsys, "simulate", outdir, "--input", tmp_path / "batch.npy",
                       "--output", tmp_path / "y3.npy")
    assert code == 0 and out.count("inference ") == 3
    y1, y3 = np.load(tmp_path / "y1.npy"), np.load(tmp_path / "y3.npy")
    assert y1.dtype == np.float32 and y1.shape == (1, 7) and y3.shape == (3, 1, 7)
    np.testing.assert_array_equal(y3[0], y1)


def test_simulate_integer_output_model_writes_integers(capsys, tmp_path):
    spec = ZOO["int_io_qop_s8"]
    outdir = tmp_path / "d"
    assert run(capsys, "generate", build(spec), "-o", outdir)[0] == 0
    x = np.random.default_rng(0).integers(-128, 128, (1,) + spec.input_shape).astype(np.int8)
    np.save(tmp_path / "x.npy", x)
    code, _, _ = run(capsys, "simulate", outdir, "--input", tmp_path / "x.npy",
                     "--output", tmp_path / "y.npy")
    assert code == 0 and np.load(tmp_path / "y.npy").dtype == np.int8


def test_simulate_detects_a_corrupted_design(capsys, tmp_path):
    """A flipped weight byte in the memory image must show up as a mismatch (exit 1)."""
    outdir = tmp_path / "d"
    assert run(capsys, "generate", build(SMALL), "-o", outdir)[0] == 0
    symbols = json.loads((outdir / "symbols.json").read_text())
    image = bytearray((outdir / "memory.bin").read_bytes())
    program_bytes = len((outdir / "program.bin").read_bytes())
    assert symbols["image_words"] * 8 == len(image) > program_bytes
    image[program_bytes:] = bytes(b ^ 0x55 for b in image[program_bytes:])  # every constant
    (outdir / "memory.bin").write_bytes(bytes(image))
    np.save(tmp_path / "x.npy", random_inputs(SMALL, 1, seed=1)[0])
    code, _, err = run(capsys, "simulate", outdir, "--input", tmp_path / "x.npy")
    assert code == 1 and "MISMATCH" in err


def test_simulate_bad_input_is_refused(capsys, tmp_path):
    outdir = tmp_path / "d"
    assert run(capsys, "generate", build(SMALL), "-o", outdir)[0] == 0
    np.save(tmp_path / "x.npy", np.zeros((2, 2), np.float32))
    code, _, err = run(capsys, "simulate", outdir, "--input", tmp_path / "x.npy")
    assert code == 2 and "does not match" in err
    code, _, err = run(capsys, "simulate", tmp_path, "--input", tmp_path / "x.npy")
    assert code == 2 and "not a codesign design directory" in err


def test_verify_third_model_built_here(capsys, tmp_path):
    """A model made the usual way in this test (torch → export → quantize_static, QDQ int8)."""
    spec = Spec((4, 12, 10), (ZOO["asym_pads_qdq_u8"].layers[0],) + SMALL.layers[1:],
                signed=True, seed=11)
    code, out, _ = run(capsys, "verify", build(spec), "-o", tmp_path / "d", "--count", "3",
                       "--array", "4x8")
    assert code == 0, out
    assert "PASS" in out
    lines = out.splitlines()
    row = lines[lines.index(next(line for line in lines if set(line) == {"-"})) + 1]
    assert row.split()[-3:] == ["0", "0", "0"]           # RTL≠golden, RTL≠ORT, max |Δ|


def test_verify_per_layer_table(capsys, tmp_path):
    code, out, _ = run(capsys, "verify", build(SMALL), "-o", tmp_path / "d", "--count", "1",
                       "--per-layer")
    assert code == 0
    assert "first divergence: none" in out
    assert out.count(" conv ") >= 2 and " maxpool " in out


def test_per_layer_names_the_first_diverging_layer_and_element():
    """A single wrong element in the second layer's RTL output must be reported there (and not
    in a later layer that merely inherits it)."""
    from codesign import reference
    from codesign.frontend import load_model
    from codesign.opwitness import op_witness
    from codesign.perlayer import compare_layers, format_layers

    model = build(SMALL)
    graph = load_model(model)
    x = random_inputs(SMALL, 1, seed=3)[0]
    golden = reference.run(graph, [graph.inputs[0].quantize(x)])
    (ort,) = op_witness(model, graph, [golden]).outputs
    rtl = {name: value.copy() for name, value in golden.items()}
    second = graph.ops[1].y.name
    rtl[second][0, 1, 2] ^= 1
    rtl[graph.ops[-1].y.name][0, 0, 0] ^= 1
    rows = compare_layers(graph, rtl, golden, ort)
    assert [row.rtl_vs_golden for row in rows][:2] == [0, 1]
    assert [row.golden_vs_ort for row in rows] == [0] * len(graph.ops)
    text = format_layers(rows)
    assert f"first divergence: layer {graph.ops[1].name} ({second}) at (h, w, c) = (0, 1, 2)" \
        in text
