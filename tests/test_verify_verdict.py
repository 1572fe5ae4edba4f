"""`codesign verify`'s verdict: PASS only when the RTL equals the golden model bit for bit and
every golden op is within its documented bound of onnxruntime's kernel for it alone, on the same
inputs."""

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import pytest

from codesign import cli, ir, opwitness, ortwitness, perlayer, reference
from codesign.frontend import load_model
from codesign.ortwitness import Witness

from .modelgen import ELEMENTWISE_ZOO, PT2E_ZOO, ZOO, build
from .test_cli import SMALL, assert_refused, run

pytestmark = pytest.mark.verilator


def _verify(capsys, tmp_path, *extra):
    return run(capsys, "verify", build(SMALL), "-o", tmp_path / "d", "--count", "2", *extra)


def test_pass_names_the_witness_and_prints_the_end_to_end_difference(capsys, tmp_path):
    code, out, _ = _verify(capsys, tmp_path)
    assert code == 0, out
    assert "witness: onnxruntime, exact integer kernels" in out
    assert "RTL≠ORT" in out and out.splitlines()[-1].startswith("PASS: 2 inference(s)")


def test_an_op_off_onnxruntime_fails_although_the_rtl_equals_the_golden_model(
        capsys, tmp_path, monkeypatch):
    """The per-op check decides the verdict: a golden op one LSB off onnxruntime on its own
    inputs (here: made so) is FAIL with the op named, even though RTL = golden."""
    real = opwitness.op_witness
    graph = load_model(build(SMALL))
    first = graph.ops[0]

    def off_by_one(model, graph, golden):
        result = real(model, graph, golden)
        for outputs in result.outputs:
            outputs[first.y.name] = outputs[first.y.name] + 1
        return result

    monkeypatch.setattr(opwitness, "op_witness", off_by_one)
    code, out, _ = _verify(capsys, tmp_path)
    assert code == 1
    assert f"op {first.name} (conv):" in out and "(bound 0)" in out
    assert out.splitlines()[-1].startswith("FAIL: 1 op(s)")


def test_no_witness_is_not_a_pass(capsys, tmp_path, monkeypatch):
    none = Witness(None, False, "onnxruntime cannot run the model: (test)")
    monkeypatch.setattr(opwitness, "open_witness", lambda model: none)
    monkeypatch.setattr(ortwitness, "open_witness", lambda model: none)
    code, out, _ = _verify(capsys, tmp_path)
    assert code == 1
    assert out.splitlines()[-1].startswith("FAIL: no witness (onnxruntime cannot run the model")
    assert "n/a" in out


ALL_MODELS = ZOO | ELEMENTWISE_ZOO | PT2E_ZOO


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
def test_every_zoo_op_is_within_its_bound_of_onnxruntime(name):
    """Ops computed in float by onnxruntime are held to 1 LSB, integer kernels to 0, and every
    op of every zoo model is comparable (onnxruntime exposes its inputs and output)."""
    model = build(ALL_MODELS[name])
    graph = load_model(model)
    raw = cli._random_inputs(graph, 3, seed=5)
    golden = [reference.run(graph, [graph.inputs[0].quantize(x)]) for x in raw]
    ops = opwitness.op_witness(model, graph, golden)
    checks = perlayer.check_ops(graph, golden, ops.outputs)
    assert [c.compared for c in checks] == [3] * len(graph.ops), ops.witness.note
    for check, op in zip(checks, graph.ops, strict=True):
        assert check.bound == (0 if op.kind in (ir.OpKind.CONV, ir.OpKind.MAXPOOL,
                                                ir.OpKind.FLATTEN) else 1)
        assert check.within_bound, check


def _with_clip_after_first_conv(path, tmp_path):
    """The model with ``DequantizeLinear → Clip(0.1, 0.4) → QuantizeLinear`` (same scale and
    zero point) inserted after its first convolution: the frontend folds the Clip into that
    convolution's clamp."""
    model = onnx.load(path)
    nodes = model.graph.node
    conv = next(n for n in nodes if n.op_type == "Conv")
    q = next(n for n in nodes if n.op_type == "QuantizeLinear" and n.input[0] in conv.output)
    dq = next(n for n in nodes if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0])
    clipped, requantized = "clip_out", "clip_quantized"
    model.graph.initializer.extend([
        onnx.numpy_helper.from_array(np.array(0.1, np.float32), "clip_min"),
        onnx.numpy_helper.from_array(np.array(0.4, np.float32), "clip_max")])
    extra = [onnx.helper.make_node("Clip", [dq.output[0], "clip_min", "clip_max"], [clipped]),
             onnx.helper.make_node("QuantizeLinear", [clipped, *q.input[1:]], [requantized]),
             onnx.helper.make_node("DequantizeLinear", [requantized, *dq.input[1:]],
                                   ["clip_dequantized"])]
    for node in nodes:
        node.input[:] = ["clip_dequantized" if i == dq.output[0] else i for i in node.input]
    index = list(nodes).index(dq) + 1
    for k, node in enumerate(extra):
        nodes.insert(index + k, node)
    out = tmp_path / "clipped.onnx"
    onnx.save(model, out)
    return out


def test_a_clip_folded_into_the_op_before_it_is_witnessed_after_the_clip(tmp_path):
    model = _with_clip_after_first_conv(build(ZOO["conv_relu_pool_fc_qdq_u8"]), tmp_path)
    graph = load_model(model)
    assert graph.ops[0].clamp is not None and graph.ops[0].clamp[0] > graph.ops[0].y.qmin
    raw = cli._random_inputs(graph, 2, seed=1)
    golden = [reference.run(graph, [graph.inputs[0].quantize(x)]) for x in raw]
    checks = perlayer.check_ops(graph, golden, opwitness.op_witness(model, graph, golden).outputs)
    assert all(c.within_bound and c.compared == 2 for c in checks), checks


@pytest.mark.parametrize("argv, match", [
    (("verify", "--count", "0"), r"--count must be (at least 1|in 1\.\.1000)"),
    (("verify", "--count", "100000"), r"--count must be in 1\.\.1000"),
    (("verify", "--seed", "-1"), "--seed must be a non-negative integer"),
    (("generate", "--bus-bytes", "0"), "bus_bytes must be a power of two"),
    (("generate", "--act-depth", "0"), "act_depth must be an int in"),
    (("generate", "--prm-depth", "0"), "prm_depth must be an int in"),
])
def test_bad_options_are_one_line(capsys, tmp_path, argv, match):
    """0 is a value the user gave, never a silent "use the default"; out-of-range counts and
    seeds are refused before anything is generated."""
    command, *options = argv
    assert_refused(capsys, tmp_path / "o", command, build(SMALL), "-o", tmp_path / "o", *options,
                   match=match)
