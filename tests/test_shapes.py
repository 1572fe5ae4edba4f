"""Matrices with M > 1, fixed batches, exact output shapes and 1-D convolution/pooling (issue 15).

Golden model against onnxruntime on randomized shapes (hypothesis), the frontend's layout and
batch decisions and their one-line refusals, and whole models through ``codesign verify`` on
Verilator.
"""

from __future__ import annotations

import functools
import pathlib
import re
import tempfile

import hypothesis
import hypothesis.strategies as st
import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest
import torch

from codesign import cli, reference
from codesign.design import join_outputs, read_batch
from codesign.errors import InputError
from codesign.frontend import load_model
from codesign.opwitness import ort_to_hwc
from codesign.ortwitness import create_session

from . import shapemodels as sm
from .modelgen import Linear, ReLU, Spec, _cache_dir, build


@functools.cache
def _model(builder: str, **options) -> pathlib.Path:
    """``sm.<builder>(**options)``, built once per process (do not modify the file)."""
    directory = _cache_dir() / "shapes"
    directory.mkdir(exist_ok=True)
    return getattr(sm, builder)(directory, **options)


def _golden_vs_ort(path: pathlib.Path, runs: int = 3, seed: int = 0) -> tuple[int, int]:
    """(elements compared, elements where the golden model differs from onnxruntime) on
    ``runs`` random runs of the model (each ``batch`` inferences); also checks that the
    golden outputs, joined as ``simulate`` joins them, have exactly onnxruntime's shape."""
    graph = load_model(path)
    (binding,) = graph.inputs
    session = create_session(path)
    rng = np.random.default_rng(seed)
    compared = differ = 0
    for _ in range(runs):
        if binding.is_float:
            x = rng.standard_normal(binding.model_shape).astype(np.float32)
        else:
            t = binding.tensor
            x = rng.integers(t.qmin, t.qmax + 1, binding.model_shape).astype(t.numpy_dtype)
        ort = session.run(None, {binding.onnx_name: x})
        golden = [reference.run(graph, [binding.quantize(item)])
                  for item in np.split(x, binding.batch)]
        for k, out in enumerate(graph.outputs):
            ys = [g[out.tensor.name] for g in golden]
            joined = join_outputs(out, [out.dequantize(y) for y in ys], stacked=False)
            assert joined.shape == ort[k].shape and joined.dtype == ort[k].dtype
            for y, o in zip(ys, np.split(ort[k], binding.batch), strict=True):
                compared += y.size
                differ += int(np.count_nonzero(ort_to_hwc(out.tensor, o) != y))
    return compared, differ


# -- matrix products with M > 1 ---------------------------------------------------------------

@hypothesis.settings(max_examples=10, deadline=None, derandomize=True, database=None)
@hypothesis.given(m=st.integers(1, 40), k=st.integers(1, 70), n=st.integers(1, 40),
                  signed=st.booleans(), seed=st.integers(0, 2**16))
def test_qlinear_matmul_rows_golden_equals_ort(m, k, n, signed, seed):
    """[M, K] × constant [K, N] QLinearMatMul (8-bit graph input and output), any M."""
    with tempfile.TemporaryDirectory() as d:
        path = sm.qlinear_matmul(pathlib.Path(d), m, k, n, seed, signed)
        graph = load_model(path)
        assert graph.inputs[0].tensor.shape == (1, m, k) and len(graph.ops) == 1
        compared, differ = _golden_vs_ort(path, seed=seed)
    assert compared == 3 * m * n and differ == 0


@pytest.mark.parametrize("fmt, signed", [("qdq", False), ("qop", True)])
def test_linear_on_a_sequence_reshape_gemm_reshape(fmt, signed):
    """nn.Linear with bias on [1, 16, 32] as onnxruntime's pre-processing writes it (Reshape →
    Gemm → Reshape; the float Reshape comes before the input's QuantizeLinear): one
    16-row product."""
    path = _model("linear_sequence", preprocess=True, fmt=fmt, signed=signed)
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("Reshape") == 2 and {"Gemm", "QGemm"} & set(ops)
    graph = load_model(path)
    assert [op.kind.value for op in graph.ops] == ["conv"]
    assert graph.ops[0].x.shape == (1, 16, 32) and graph.outputs[0].onnx_shape == (1, 16, 24)
    assert graph.inputs[0].onnx_shape == (1, 16, 32)
    compared, differ = _golden_vs_ort(path)
    assert compared == 3 * 16 * 24 and differ == 0


def test_matmul_on_a_sequence():
    """A bias-free MatMul on [1, 16, 32] (QDQ): 16 rows of one product."""
    path = build(Spec((16, 32), (Linear(24, bias=False),), seed=4))
    graph = load_model(path)
    assert graph.ops[0].x.shape == (1, 16, 32) and graph.outputs[0].onnx_shape == (1, 16, 24)
    assert _golden_vs_ort(path)[1] == 0


# -- fixed and symbolic batches ---------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_fixed_batch_mlp_is_rows_of_one_inference(fmt):
    path = _model("mlp_batch", fmt=fmt)
    graph = load_model(path)
    (binding,) = graph.inputs
    assert binding.batch == 1 and binding.onnx_shape == (4, 64) and binding.tensor.shape == (
        1, 4, 64)
    assert graph.outputs[0].model_shape == (4, 10)
    compared, differ = _golden_vs_ort(path)
    assert compared == 3 * 4 * 10 and differ == 0


def test_fixed_batch_cnn_is_n_inferences():
    """[4, 1, 8, 8] → Conv → MaxPool → Reshape to the fixed [4, 64] → Gemm: 4 inferences of
    one image each (the Reshape's batch becomes 1)."""
    path = _model("cnn_batch")
    graph = load_model(path)
    (binding,) = graph.inputs
    assert binding.batch == 4 and binding.onnx_shape == (1, 1, 8, 8)
    assert binding.model_shape == (4, 1, 8, 8) and graph.outputs[0].model_shape == (4, 10)
    compared, differ = _golden_vs_ort(path)
    assert compared == 3 * 4 * 10 and differ == 0


def test_symbolic_batch_output_has_onnxruntime_shape(tmp_path):
    """A symbolic-batch MLP on a file of 4 inputs: the output is (4, 10) as onnxruntime's, not
    (4, 1, 10); a leading axis of runs stays a leading axis."""
    spec = Spec((20,), (Linear(16), ReLU(), Linear(10)), dynamic_batch=True, seed=2)
    path = build(spec)
    graph = load_model(path)
    x = np.random.default_rng(0).standard_normal((4, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    batch, stacked, raw = read_batch(graph, tmp_path / "x.npy")
    assert len(batch) == 4 and not stacked
    out = graph.outputs[0]
    ys = [out.dequantize(reference.run(graph, inputs)[out.tensor.name]) for inputs in batch]
    (ort,) = create_session(path).run(None, {"x": x})
    assert join_outputs(out, ys, stacked).shape == ort.shape == (4, 10)
    np.save(tmp_path / "x3.npy", x.reshape(4, 1, 20))
    batch, stacked, _ = read_batch(graph, tmp_path / "x3.npy")
    assert stacked and join_outputs(out, ys, stacked).shape == (4, 1, 10)


@pytest.mark.parametrize("shape, runs, stacked", [((4, 1, 8, 8), 1, False),
                                                   ((8, 1, 8, 8), 2, False),
                                                   ((3, 4, 1, 8, 8), 3, True)])
def test_fixed_batch_input_files(tmp_path, shape, runs, stacked):
    """A fixed batch of 4 (N inferences): the model's shape, axis 0 a multiple of 4, or a
    leading axis of runs."""
    graph = load_model(_model("cnn_batch"))
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    batch, got_stacked, raw = read_batch(graph, tmp_path / "x.npy")
    assert len(batch) == 4 * runs and got_stacked == stacked
    assert all(r.shape == (1, 1, 8, 8) for r in raw)


@pytest.mark.parametrize("shape", [(2, 1, 8, 8), (6, 1, 8, 8), (4, 8, 8), (1, 1, 8, 8),
                                   (2, 2, 1, 8, 8)])
def test_fixed_batch_input_files_refused(tmp_path, shape):
    graph = load_model(_model("cnn_batch"))
    np.save(tmp_path / "x.npy", np.zeros(shape, np.float32))
    with pytest.raises(InputError, match=r"does not match the model's \(4, 1, 8, 8\)") as e:
        read_batch(graph, tmp_path / "x.npy")
    assert "\n" not in str(e.value)


def _qlinear_matmul_with_batch(batch: int, rank: int) -> bytes:
    """A QLinearMatMul model whose input is [batch, 6] or [batch, 1, 6], every parameter a
    constant."""
    shape = [batch, 6] if rank == 2 else [batch, 1, 6]
    inits = [onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             onnx.numpy_helper.from_array(np.array(0, np.uint8), "z"),
             onnx.numpy_helper.from_array(np.ones((6, 3), np.int8), "w"),
             onnx.numpy_helper.from_array(np.array(0, np.int8), "wz")]
    node = onnx.helper.make_node("QLinearMatMul", ["x", "s", "z", "w", "s", "wz", "s", "z"],
                                 ["y"])
    graph = onnx.helper.make_graph(
        [node], "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, shape)],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [*shape[:-1], 3])],
        inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_fixed_batch_modes():
    rows = load_model(_qlinear_matmul_with_batch(5, 2))
    assert rows.inputs[0].batch == 1 and rows.inputs[0].tensor.shape == (1, 5, 6)
    runs = load_model(_qlinear_matmul_with_batch(5, 3))
    assert runs.inputs[0].batch == 5 and runs.inputs[0].tensor.shape == (1, 1, 6)
    assert runs.outputs[0].model_shape == (5, 1, 3)


def test_scale_inputs_are_not_batches():
    """onnx's backend tests give scales and zero points as graph inputs of shape [1] or [3]:
    they are refused as non-constants, never for their 'batch'."""
    model = onnx.load_from_string(_qlinear_matmul_with_batch(1, 2))
    graph = model.graph
    scale = graph.initializer[0]
    graph.initializer.remove(scale)
    graph.input.append(onnx.helper.make_tensor_value_info("s", onnx.TensorProto.FLOAT, [3]))
    with pytest.raises(InputError, match="scale must be a constant initializer"):
        load_model(model.SerializeToString())


def test_mixed_batch_refused(tmp_path):
    """A fixed-batch model whose Reshape mixes the batch into the features is not N
    inferences of one sample: refused in one line."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [2, 3, 4, 4])
    inits = [onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             onnx.numpy_helper.from_array(np.array(0, np.uint8), "z"),
             onnx.numpy_helper.from_array(np.array([1, 96], np.int64), "shape"),
             onnx.numpy_helper.from_array(np.ones((96, 3), np.int8), "w"),
             onnx.numpy_helper.from_array(np.array(0.1, np.float32), "ws"),
             onnx.numpy_helper.from_array(np.array(0, np.int8), "wz")]
    nodes = [onnx.helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             onnx.helper.make_node("Reshape", ["q", "shape"], ["r"]),
             onnx.helper.make_node("QLinearMatMul", ["r", "s", "z", "w", "ws", "wz", "s", "z"],
                                   ["y"])]
    graph = onnx.helper.make_graph(nodes, "g", [x], [onnx.helper.make_tensor_value_info(
        "y", onnx.TensorProto.UINT8, [1, 3])], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    with pytest.raises(InputError, match="mixes its batch|ONNX shape inference failed") as e:
        load_model(model.SerializeToString())
    assert "\n" not in str(e.value)


# -- 1-D convolution and pooling --------------------------------------------------------------

@st.composite
def _conv1d_specs(draw):
    cin = draw(st.integers(1, 12))
    groups = draw(st.sampled_from([1, cin]))
    cout = groups * draw(st.integers(1, 3)) if groups > 1 else draw(st.integers(1, 12))
    k = draw(st.integers(1, 5))
    padding = draw(st.integers(0, k // 2))
    stride = draw(st.integers(1, 3))
    length = draw(st.integers(k + 2 * stride + 2, 40))
    return dict(shape=(1, cin, length), cout=cout, k=k, stride=stride, padding=padding,
                groups=groups, pool=draw(st.sampled_from([None, "max", "avg"])),
                fmt=draw(st.sampled_from(["qdq", "qop"])), signed=draw(st.booleans()),
                seed=draw(st.integers(0, 1000)))


@hypothesis.settings(max_examples=8, deadline=None, derandomize=True, database=None)
@hypothesis.given(_conv1d_specs())
def test_conv1d_pool1d_golden_equals_ort(spec):
    """Conv1d (stride, padding, groups/depthwise) + ReLU, then MaxPool1d (padded) or
    AvgPool1d, as PyTorch exports and onnxruntime quantizes them; every 3-D tensor is held
    as [1, C, L] → IR (1, L, C)."""
    with tempfile.TemporaryDirectory() as d:
        path = sm.conv1d_model(pathlib.Path(d), **spec)
        graph = load_model(path)
        assert graph.inputs[0].tensor.channels_first
        assert all(op.x.shape[0] == 1 for op in graph.ops)
        compared, differ = _golden_vs_ort(path, seed=spec["seed"])
    assert compared > 0 and differ == 0


@pytest.mark.parametrize("exporter, fmt", [
    ("dynamo", "qdq"), ("torchscript", "qop"),
    pytest.param("dynamo", "qop", marks=pytest.mark.slow),
    pytest.param("torchscript", "qdq", marks=pytest.mark.slow)])
def test_kws1d_golden_vs_ort(exporter, fmt):
    """Every convolution, pooling and the Linear of the 1-D keyword spotter against
    onnxruntime's own kernel for it: the integer ops bit-exact; the two average pools, which
    onnxruntime computes in float, within their documented 1 LSB (docs/arithmetic.md). An
    end-to-end difference only ever follows an average pool's."""
    from codesign.opwitness import op_witness
    from codesign.perlayer import check_ops

    path = _model("kws1d", exporter=exporter, fmt=fmt)
    graph = load_model(path)
    assert [op.kind.value for op in graph.ops] == [
        "conv", "maxpool", "conv", "conv", "avgpool", "avgpool", "conv"]
    assert graph.inputs[0].tensor.shape == (1, 49, 10)
    assert graph.outputs[0].model_shape == (1, 12)
    (binding,) = graph.inputs
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal(binding.model_shape).astype(np.float32) for _ in range(4)]
    golden = [reference.run(graph, [binding.quantize(x)]) for x in xs]
    checks = check_ops(graph, golden, op_witness(path, graph, golden).outputs)
    assert len(checks) == 7 and all(c.compared == 4 for c in checks)
    for check in checks:
        assert check.max_lsb <= check.bound == (1 if check.kind == "avgpool" else 0), check
    compared, differ = _golden_vs_ort(path, runs=4)
    assert compared == 48
    assert differ == 0 or any(c.mismatches for c in checks if c.kind == "avgpool")


class _KWS2d(torch.nn.Module):
    """The 1-D keyword spotter written with 2-D layers of height 1."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(10, 16, (1, 3), padding=(0, 1))
        self.conv2 = torch.nn.Conv2d(16, 24, (1, 3), stride=(1, 2))
        self.dw = torch.nn.Conv2d(24, 24, (1, 3), padding=(0, 1), groups=24)
        self.fc = torch.nn.Linear(24, 12)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.max_pool2d(torch.relu(self.conv1(x)), (1, 2))
        x = torch.relu(self.dw(torch.relu(self.conv2(x))))
        x = torch.nn.functional.avg_pool2d(x, (1, 2))
        return self.fc(torch.nn.functional.adaptive_avg_pool2d(x, 1).flatten(1))


def test_kws1d_runs_as_the_2d_net_of_height_1(tmp_path):
    """1-D layers compile to exactly the program of the same 2-D layers with H = 1: the same
    IR shapes and the same cycle count (the 2-D path's utilization)."""
    from codesign.compiler import compile_graph
    from codesign.isa import HwConfig
    from codesign.timing import program_cycles

    one = load_model(_model("kws1d"))
    torch.manual_seed(0)
    two = load_model(sm._build(_KWS2d(), (1, 10, 1, 49), tmp_path, "kws2d", 0))
    assert [(op.kind, op.x.shape, op.y.shape) for op in one.ops] == [
        (op.kind, op.x.shape, op.y.shape) for op in two.ops]
    config = HwConfig()
    assert program_cycles(compile_graph(one, config)) == program_cycles(
        compile_graph(two, config))


def _conv1d_then(consumer: str) -> bytes:
    """[1, 4, 6] → QLinearConv 1-D → y, then y read by ``consumer`` (a QLinearMatMul reads it
    as rows; a Transpose first makes it [1, 6, 4] rows)."""
    s = onnx.numpy_helper.from_array(np.array(0.1, np.float32), "s")
    z = onnx.numpy_helper.from_array(np.array(0, np.uint8), "z")
    wz = onnx.numpy_helper.from_array(np.array(0, np.int8), "wz")
    w = onnx.numpy_helper.from_array(np.ones((4, 4, 1), np.int8), "w")
    m = onnx.numpy_helper.from_array(np.ones((6 if consumer == "matmul" else 4, 3), np.int8),
                                     "m")
    nodes = [onnx.helper.make_node("QLinearConv", ["x", "s", "z", "w", "s", "wz", "s", "z"],
                                   ["c"], name="conv")]
    source = "c"
    if consumer == "transpose":
        nodes.append(onnx.helper.make_node("Transpose", ["c"], ["t"], perm=[0, 2, 1]))
        source = "t"
    nodes.append(onnx.helper.make_node("QLinearMatMul", [source, "s", "z", "m", "s", "wz", "s",
                                                         "z"], ["y"], name="mm"))
    graph = onnx.helper.make_graph(
        nodes, "g", [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.UINT8, [1, 4, 6])],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.UINT8, [1, 4 if consumer ==
                                                                          "matmul" else 6, 3])],
        [s, z, wz, w, m])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


def test_tensor_used_both_as_1d_activation_and_rows_is_refused():
    with pytest.raises(InputError, match=re.escape(
            "tensor 'c' is used both as a 1-D activation [N, C, L] (by QLinearConv 'conv') and "
            "as rows of a matrix product [N, M, K] (by QLinearMatMul 'mm')")) as e:
        load_model(_conv1d_then("matmul"))
    assert "\n" not in str(e.value)


def test_transpose_from_1d_activation_to_rows_is_a_reinterpretation():
    """[1, C, L] → Transpose → [1, L, C] rows: the IR tensor (1, L, C) is the same data."""
    graph = load_model(_conv1d_then("transpose"))
    conv, matmul = graph.ops
    assert conv.y is matmul.x and conv.y.shape == (1, 6, 4) and conv.y.channels_first
    x = np.random.default_rng(0).integers(0, 30, (1, 4, 6)).astype(np.uint8)
    (ort,) = create_session(_conv1d_then("transpose")).run(None, {"x": x})
    got = reference.run(graph, [graph.inputs[0].quantize(x)])[graph.outputs[0].tensor.name]
    assert np.array_equal(graph.outputs[0].from_hwc(got), ort)


# -- whole models on Verilator ----------------------------------------------------------------

def _verify(capsys, path: pathlib.Path, outdir: pathlib.Path, *args: str,
            exact: bool = True) -> str:
    """``codesign verify``: PASS (RTL = golden model bit for bit, every op within its documented
    bound of onnxruntime); with ``exact``, also RTL = onnxruntime end to end (models whose ops
    are all integer kernels in onnxruntime)."""
    code = cli.main(["verify", str(path), "-o", str(outdir), *args])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS" in out
    lines = out.splitlines()
    row = lines[lines.index(next(line for line in lines if set(line) == {"-"})) + 1].split()
    assert row[-3] == "0", row                                 # RTL≠golden
    if exact:
        assert row[-2:] == ["0", "0"], row                     # RTL≠ORT, max |Δ|
    else:
        assert int(row[-1]) <= 1, row
    return out


@pytest.mark.verilator
def test_qlinear_matmul_16x32x24_verifies(capsys, tmp_path):
    """The plain [16, 32] × [32, 24] QLinearMatMul: one 16-row product on the array."""
    out = _verify(capsys, _model("qlinear_matmul"), tmp_path / "d", "--count", "2")
    assert "PASS: 2 inference(s)" in out and "(16, 24)" in out


@pytest.mark.verilator
def test_linear_on_sequence_verifies(capsys, tmp_path):
    out = _verify(capsys, _model("linear_sequence", preprocess=True), tmp_path / "d",
                  "--count", "2")
    assert "(1, 16, 24)" in out


@pytest.mark.verilator
def test_fixed_batch_mlp_verifies(capsys, tmp_path):
    """An MLP with a fixed batch of 4: 4 rows of one inference per run."""
    out = _verify(capsys, _model("mlp_batch"), tmp_path / "d", "--count", "2")
    assert "PASS: 2 inference(s)" in out and "(4, 10)" in out


@pytest.mark.verilator
def test_fixed_batch_cnn_verifies(capsys, tmp_path):
    """A CNN with a fixed batch of 4: 4 inferences per run."""
    out = _verify(capsys, _model("cnn_batch"), tmp_path / "d", "--count", "1")
    assert "PASS: 4 inference(s)" in out and "(4, 10)" in out


@pytest.mark.verilator
def test_kws1d_verifies(capsys, tmp_path):
    """The 1-D keyword spotter: RTL = golden; RTL vs onnxruntime within the average pools'
    1 LSB (onnxruntime computes them in float)."""
    out = _verify(capsys, _model("kws1d"), tmp_path / "d", "--count", "4", exact=False)
    assert "(1, 12)" in out


@pytest.mark.verilator
@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["qdq", "qop"])
def test_kws1d_torchscript_verifies(capsys, tmp_path, fmt):
    _verify(capsys, _model("kws1d", exporter="torchscript", fmt=fmt), tmp_path / "d",
            "--count", "4", exact=False)


@pytest.mark.verilator
def test_simulate_fixed_batch_writes_the_model_output_shape(capsys, tmp_path):
    """``simulate`` on a fixed batch of 4 (N inferences) with the model's own input shape
    writes onnxruntime's output shape and values."""
    path = _model("cnn_batch")
    assert cli.main(["generate", str(path), "-o", str(tmp_path / "d")]) == 0
    x = np.random.default_rng(5).standard_normal((4, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["simulate", str(tmp_path / "d"), "--input", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "y.npy")])
    assert code == 0, capsys.readouterr()
    (ort,) = create_session(path).run(None, {"x": x})
    y = np.load(tmp_path / "y.npy")
    assert y.shape == ort.shape == (4, 10) and y.dtype == ort.dtype
    assert np.array_equal(y, ort)


@pytest.mark.verilator
def test_simulate_symbolic_batch_writes_the_model_output_shape(capsys, tmp_path):
    """``simulate`` on a symbolic-batch MLP given 4 inputs as onnxruntime takes them ([4, 20])
    writes (4, 10), onnxruntime's shape and values (it used to write (4, 1, 10))."""
    path = build(Spec((20,), (Linear(16), ReLU(), Linear(10)), dynamic_batch=True, seed=2))
    assert cli.main(["generate", str(path), "-o", str(tmp_path / "d")]) == 0
    x = np.random.default_rng(6).standard_normal((4, 20)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    code = cli.main(["simulate", str(tmp_path / "d"), "--input", str(tmp_path / "x.npy"),
                     "--output", str(tmp_path / "y.npy")])
    out = capsys.readouterr().out
    assert code == 0 and "bit-exactly (4 inference(s))" in out, out
    (ort,) = create_session(path).run(None, {"x": x})
    y = np.load(tmp_path / "y.npy")
    assert y.shape == ort.shape == (4, 10) and np.array_equal(y, ort)
