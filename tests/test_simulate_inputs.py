"""What `codesign simulate` reads and writes besides the simulation: the ``--input`` file, the
``--output`` path and the design directory (OUTDIR). Every defect is one line on stderr and exit
code 2, found before the simulation starts (issue 14)."""

import errno
import io
import json
import os
import re
import shutil
import tracemalloc

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from codesign import cli, driver
from codesign.design import MAX_BATCH, Design, read_batch
from codesign.sim.runner import EXT_MEM_BYTES

from .modelgen import ZOO, build, random_inputs

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]          # float in, float out; as tests/test_cli.py
SHAPE = (1, *SMALL.input_shape)                  # the model's input shape


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A generated design of SMALL and a good input for it."""
    root = tmp_path_factory.mktemp("simulate")
    assert cli.main(["generate", str(build(SMALL)), "-o", str(root / "d")]) == 0
    np.save(root / "x.npy", random_inputs(SMALL, 1, seed=3)[0])
    return root / "d", root / "x.npy"


@pytest.fixture
def no_simulation(monkeypatch):
    """Fail the test if the RTL simulation starts: every refusal comes before it."""
    def run_rtl(*args, **kwargs):
        raise AssertionError("the simulation started")
    monkeypatch.setattr(driver, "run_rtl", run_rtl)


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def refused(capsys, *argv) -> str:
    """Run the command line; assert a one-line refusal (exit 2) and return the message."""
    code, out, err = run(capsys, *argv)
    assert code == 2, (out, err)
    assert err.startswith("codesign: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    return err


# -- --input ---------------------------------------------------------------------------------

def npy_header(shape, descr="<f4", version=(1, 0)) -> bytes:
    """A .npy header alone (no data), declaring ``shape``."""
    f = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(f, header)
    else:
        np.lib.format.write_array_header_2_0(f, header)
    return f.getvalue()


def saved(array, allow_pickle=False) -> bytes:
    f = io.BytesIO()
    np.save(f, array, allow_pickle=allow_pickle)
    return f.getvalue()


def npz() -> bytes:
    f = io.BytesIO()
    np.savez(f, x=np.zeros(SHAPE, np.float32))
    return f.getvalue()


def with_nan() -> bytes:
    x = np.zeros((2, *SHAPE), np.float32)
    x[1, 0, 2, 3, 4] = np.nan
    return saved(x)


GOOD = saved(np.zeros(SHAPE, np.float32))

#: (bytes of the --input file, what the message says)
BAD_INPUTS = {
    "npz": (npz(), r"\.npz archive"),
    "empty": (b"", r"is empty"),
    "text": (b"1 2 3\n", r"not a \.npy file"),
    "header-2^40-elements": (npy_header((1 << 40, *SHAPE)), rf"at most {MAX_BATCH}"),
    "header-2^40-wide": (npy_header((1, 3, 11, 1 << 40)), r"does not match the model's"),
    "header-2^40-truncated": (npy_header(SHAPE[:3] + (1 << 40,))[:-1], r"\.npy header"),
    "header-garbage": (GOOD[:10] + b"{'descr': oops" + GOOD[24:128], r"not a valid \.npy header"),
    "header-huge-length": (b"\x93NUMPY\x02\x00" + (1 << 31).to_bytes(4, "little"),
                           r"\.npy header of 2147483648 bytes"),
    "header-negative-dim": (npy_header((1, 3, 11, -11)), r"not a valid \.npy header"),
    "version-3": (b"\x93NUMPY\x03\x00" + GOOD[8:], r"version \(3, 0\) is not supported"),
    "object": (saved(np.empty(SHAPE, object), allow_pickle=True), r"Python objects"),
    "structured": (saved(np.zeros(SHAPE, [("a", "<f4")])), r"takes float input"),
    "int32": (saved(np.zeros(SHAPE, np.int32)), r"takes float input, got int32"),
    "complex": (saved(np.zeros(SHAPE, np.complex64)), r"takes float input"),
    "shape": (saved(np.zeros((2, 2), np.float32)), r"does not match the model's"),
    "scalar": (saved(np.float32(1)), r"does not match the model's"),
    "empty-batch": (saved(np.zeros((0, *SHAPE), np.float32)), r"empty \(N = 0\)"),
    "empty-batch-axis": (saved(np.zeros((0, *SHAPE[1:]), np.float32)), r"empty \(N = 0\)"),
    "batch-too-large": (npy_header((MAX_BATCH + 1, *SHAPE)), rf"at most {MAX_BATCH}"),
    "data-truncated": (GOOD[:-1], r"truncated"),
    "data-missing": (npy_header(SHAPE), r"truncated"),
    "data-trailing": (GOOD + b"\0" * 4, r"damaged"),
    "nan": (with_nan(), r"element \(1, 0, 2, 3, 4\) is NaN"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_input_is_one_line(capsys, tmp_path, design, no_simulation, name):
    data, match = BAD_INPUTS[name]
    path = tmp_path / "x.npy"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        err = refused(capsys, "simulate", design[0], "--input", path, "--output",
                      tmp_path / "y.npy")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert re.search(match, err) and str(path) in err, err
    assert peak < 20 << 20                      # nothing the size of a declared array
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_input_that_is_not_a_file(capsys, tmp_path, design, no_simulation, kind):
    path = tmp_path / "x.npy"
    if kind == "directory":
        path.mkdir()
    err = refused(capsys, "simulate", design[0], "--input", path)
    assert str(path) in err


def test_inf_and_out_of_range_saturate_as_onnxruntime_quantizes(design):
    """±inf and values beyond the range (also beyond float32, in float64) quantize as
    onnxruntime's QuantizeLinear does: they saturate."""
    graph = Design(design[0]).graph
    t = graph.inputs[0].tensor
    values = np.array([np.inf, -np.inf, 1e30, -1e30, 1e300, -1e300, 0.0, t.scale * 3.5])
    x = np.resize(values, SHAPE)
    path = design[0].parent / "inf.npy"
    np.save(path, x)                                       # float64
    batch, _, _ = read_batch(graph, path)
    (ours,) = batch[0]
    node = onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["y"])
    zp_type = onnx.TensorProto.INT8 if t.signed else onnx.TensorProto.UINT8
    model = onnx.helper.make_model(
        onnx.helper.make_graph(
            [node], "q", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, SHAPE)],
            [onnx.helper.make_tensor_value_info("y", zp_type, SHAPE)],
            [onnx.helper.make_tensor("s", onnx.TensorProto.FLOAT, [], [float(t.scale)]),
             onnx.helper.make_tensor("z", zp_type, [], [t.zero_point])]),
        opset_imports=[onnx.helper.make_opsetid("", 13)], ir_version=8)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    with np.errstate(over="ignore"):                       # 1e300 is inf in float32
        (theirs,) = session.run(None, {"x": x.astype(np.float32)})
    np.testing.assert_array_equal(ours, graph.inputs[0].to_hwc(theirs))
    assert ours.max() == t.qmax and ours.min() == t.qmin


# -- --output --------------------------------------------------------------------------------

@pytest.mark.verilator
def test_output_is_exactly_the_path_given(capsys, tmp_path, design):
    out = tmp_path / "y"
    code, _, _ = run(capsys, "simulate", design[0], "--input", design[1], "--output", out)
    assert code == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["y"]      # no y.npy, no leftovers
    y = np.load(out)
    assert y.dtype == np.float32 and y.shape == (1, 7)


@pytest.mark.parametrize("kind", ["directory", "missing-parent", "parent-is-file", "fifo"])
def test_bad_output_is_refused_before_simulating(capsys, tmp_path, design, no_simulation, kind):
    out = {"directory": tmp_path, "missing-parent": tmp_path / "no" / "y.npy",
           "parent-is-file": tmp_path / "f" / "y.npy", "fifo": tmp_path / "pipe"}[kind]
    if kind == "parent-is-file":
        (tmp_path / "f").write_text("")
    if kind == "fifo":
        os.mkfifo(out)
    err = refused(capsys, "simulate", design[0], "--input", design[1], "--output", out)
    assert str(out) in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into any directory")
def test_unwritable_output_directory_is_refused_before_simulating(capsys, tmp_path, design,
                                                                  no_simulation):
    locked = tmp_path / "ro"
    locked.mkdir(mode=0o555)
    err = refused(capsys, "simulate", design[0], "--input", design[1], "--output",
                  locked / "y.npy")
    assert "cannot create files" in err


@pytest.mark.verilator
@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES],
                         ids=errno.errorcode.get)
def test_failed_write_leaves_no_partial_file(capsys, tmp_path, design, monkeypatch, code):
    """A write that fails half way (a full disk, ...) is one line; the previous file stays."""
    out = tmp_path / "y.npy"
    out.write_bytes(b"previous")

    def save(f, array, **kwargs):
        f.write(b"\x93NUMPY\x01\x00")                     # a partial file, then the failure
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(np, "save", save)
    err = refused(capsys, "simulate", design[0], "--input", design[1], "--output", out)
    assert os.strerror(code) in err
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["y.npy"]


# -- a damaged design directory ----------------------------------------------------------------

def edit_json(name, change):
    def tamper(outdir):
        path = outdir / name
        value = json.loads(path.read_text())
        change(value)
        path.write_text(json.dumps(value))
    return tamper


def write(name, data):
    def tamper(outdir):
        (outdir / name).write_bytes(data(outdir) if callable(data) else data)
    return tamper


def truncate(name, keep):
    """Keep ``keep(size)`` bytes of a file."""
    def tamper(outdir):
        path = outdir / name
        path.write_bytes(path.read_bytes()[:keep(path.stat().st_size)])
    return tamper


def config_field(key, value):
    return edit_json("config.json", lambda c: c.__setitem__(key, value))


def symbol(key, value):
    return edit_json("symbols.json", lambda s: s.__setitem__(key, value))


def region(key, index, field, value):
    return edit_json("symbols.json", lambda s: s[key][index].__setitem__(field, value))


def symbols_value(outdir, key):
    return json.loads((outdir / "symbols.json").read_text())[key]


def flip_instruction(name):
    def tamper(outdir):
        data = bytearray((outdir / name).read_bytes())
        data[32 + 5] ^= 0x10                       # inside the second instruction
        (outdir / name).write_bytes(bytes(data))
    return tamper


def other_model(outdir):
    shutil.copyfile(build(ZOO["mlp_qop_u8"]), outdir / "model.onnx")


def other_memories(outdir):
    path = outdir / "npu.v"
    path.write_text(path.read_text().replace("act_mem [4095:0]", "act_mem [2047:0]"))


def huge_memory(outdir):
    with open(outdir / "memory.bin", "r+b") as f:
        f.truncate(EXT_MEM_BYTES + 8)


def deep(outdir):
    (outdir / "symbols.json").write_text("[" * 100_000)


#: A damaged design: (what is done to the directory, the file the message names)
TAMPERINGS = {
    # config.json
    "config-truncated": (truncate("config.json", lambda n: n // 2), "config.json"),
    "config-empty": (write("config.json", b""), "config.json"),
    "config-list": (write("config.json", b"[1, 2]"), "config.json"),
    "config-not-utf8": (write("config.json", b"{\"rows\": \xff}"), "config.json"),
    "config-deep": (write("config.json", b"[" * 100_000), "config.json"),
    "config-missing-key": (edit_json("config.json", lambda c: c.pop("rows")), "config.json"),
    "config-extra-key": (config_field("rows\nextra", 1), "config.json"),
    "config-string": (config_field("act_depth", "4096"), "config.json"),
    "config-bool": (config_field("rows", True), "config.json"),
    "config-float": (config_field("rows", 8.0), "config.json"),
    "config-negative-depth": (config_field("act_depth", -1), "config.json"),
    "config-huge-depth": (config_field("acc_depth", 10 ** 30), "config.json"),
    "config-bad-enum": (config_field("mult_cell", ["inferred"]), "config.json"),
    "config-other-npu": (config_field("act_depth", 2048), "symbols.json"),
    # symbols.json
    "symbols-truncated": (truncate("symbols.json", lambda n: n // 2), "symbols.json"),
    "symbols-empty": (write("symbols.json", b""), "symbols.json"),
    "symbols-list": (write("symbols.json", b"[]"), "symbols.json"),
    "symbols-deep": (deep, "symbols.json"),
    "symbols-missing-key": (edit_json("symbols.json", lambda s: s.pop("ext_words")),
                            "symbols.json"),
    "symbols-extra-key": (symbol("extra", 0), "symbols.json"),
    "symbols-prog-base-negative": (symbol("prog_base", -1), "symbols.json"),
    "symbols-prog-base-beyond": (symbol("prog_base", 1 << 27), "symbols.json"),
    "symbols-prog-base-string": (symbol("prog_base", "0"), "symbols.json"),
    "symbols-n-insns": (edit_json("symbols.json", lambda s: s.__setitem__(
        "n_insns", s["n_insns"] - 1)), "program.bin"),
    "symbols-image-words": (edit_json("symbols.json", lambda s: s.__setitem__(
        "image_words", s["image_words"] - 1)), "memory.bin"),
    "symbols-ext-words-huge": (symbol("ext_words", 1 << 40), "symbols.json"),
    "symbols-ext-words-beyond-sim": (symbol("ext_words", EXT_MEM_BYTES // 8 + 1),
                                     "symbols.json"),
    "symbols-no-inputs": (symbol("inputs", []), "symbols.json"),
    "symbols-layers-object": (symbol("layers", {}), "symbols.json"),
    "symbols-config": (symbol("config", "npu_1x1"), "symbols.json"),
    "region-in-image": (region("inputs", 0, "addr", 0), "symbols.json"),
    "region-beyond-memory": (region("outputs", 0, "addr", 1 << 40), "symbols.json"),
    "region-shape-rank": (region("inputs", 0, "shape", [11, 11]), "symbols.json"),
    "region-shape-negative": (region("outputs", 0, "shape", [1, -1, 7]), "symbols.json"),
    "region-shape-huge": (region("tensors", 0, "shape", [1 << 20] * 3), "symbols.json"),
    "region-cw-zero": (region("inputs", 0, "cw", 0), "symbols.json"),
    "region-signed-string": (region("outputs", 0, "signed", "no"), "symbols.json"),
    "region-unfold-stride-0": (region("inputs", 0, "unfold", [3, 3, 0, 0, 1, 1, 1, 1, 0]),
                               "symbols.json"),
    "region-unfold-window": (region("inputs", 0, "unfold", [99, 99, 1, 1, 0, 0, 0, 0, 0]),
                             "symbols.json"),
    "region-unfold-short": (region("inputs", 0, "unfold", [3, 3]), "symbols.json"),
    "region-output-unfolded": (region("outputs", 0, "unfold", [1, 1, 1, 1, 0, 0, 0, 0, 0]),
                               "symbols.json"),
    "region-input-flattened": (region("inputs", 0, "flatten_chw", True), "symbols.json"),
    "region-extra-key": (region("inputs", 0, "extra", 1), "symbols.json"),
    "region-not-object": (symbol("outputs", [7]), "symbols.json"),
    "region-renamed": (region("outputs", 0, "name", "other"), "model.onnx"),
    "layer-beyond-program": (edit_json("symbols.json", lambda s: s["layers"][0].__setitem__(
        "first_insn", 10 ** 6)), "symbols.json"),
    # memory.bin
    "memory-partial-word": (truncate("memory.bin", lambda n: n - 3), "memory.bin"),
    "memory-word-short": (truncate("memory.bin", lambda n: n - 8), "memory.bin"),
    "memory-empty": (write("memory.bin", b""), "memory.bin"),
    "memory-larger-than-simulated": (huge_memory, "memory.bin"),
    "memory-program-edited": (flip_instruction("memory.bin"), "program.bin"),
    # program.bin
    "program-partial": (truncate("program.bin", lambda n: n - 5), "program.bin"),
    "program-one-short": (truncate("program.bin", lambda n: n - 32), "program.bin"),
    "program-empty": (write("program.bin", b""), "program.bin"),
    "program-edited": (flip_instruction("program.bin"), "program.bin"),
    "program-extra": (write("program.bin", lambda d: (d / "program.bin").read_bytes() * 2),
                      "program.bin"),
    # model.onnx
    "model-truncated": (truncate("model.onnx", lambda n: n // 3), "model.onnx"),
    "model-empty": (write("model.onnx", b""), "model.onnx"),
    "model-garbage": (write("model.onnx", b"\xff" * 100), "model.onnx"),
    "model-other": (other_model, "model.onnx"),
    # npu.v
    "verilog-truncated": (truncate("npu.v", lambda n: n // 2), "npu.v"),
    "verilog-empty": (write("npu.v", b""), "npu.v"),
    "verilog-binary": (write("npu.v", b"\xff\xfe" * 10), "npu.v"),
    "verilog-other-npu": (other_memories, "npu.v"),
}


@pytest.mark.parametrize("name", TAMPERINGS)
def test_damaged_design_is_one_line(capsys, tmp_path, design, no_simulation, name):
    tamper, culprit = TAMPERINGS[name]
    outdir = tmp_path / "d"
    shutil.copytree(design[0], outdir)
    tamper(outdir)
    err = refused(capsys, "simulate", outdir, "--input", design[1])
    assert re.search(rf"{outdir / culprit}\b.*; regenerate with `codesign generate`$", err), err


@pytest.mark.parametrize("name", ["npu.v", "config.json", "model.onnx", "symbols.json",
                                  "program.bin", "memory.bin"])
def test_design_missing_a_file(capsys, tmp_path, design, no_simulation, name):
    outdir = tmp_path / "d"
    shutil.copytree(design[0], outdir)
    (outdir / name).unlink()
    err = refused(capsys, "simulate", outdir, "--input", design[1])
    assert f"missing {name}" in err and "not a codesign design directory" in err


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_outdir_that_is_not_a_directory(capsys, tmp_path, design, no_simulation, kind):
    outdir = tmp_path / "d"
    if kind == "file":
        outdir.write_text("")
    err = refused(capsys, "simulate", outdir, "--input", design[1])
    assert "not a codesign design directory" in err
