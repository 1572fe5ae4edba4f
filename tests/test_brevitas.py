"""Brevitas models as their users export them: ``export_onnx_qcdq`` (dynamo and TorchScript)
and ``export_qonnx``.

Golden level: the golden model against the reference on random inputs — onnxruntime's exact
integer kernels for QCDQ (bit-exact), qonnx's executor for QONNX (each op within 1 LSB on the
same inputs; the end-to-end difference measured) — over hypothesis-drawn bit widths,
signedness, narrow range, per-tensor/per-channel scales and biases. RTL level: each model end to
end through ``codesign verify`` on Verilator.
"""

import re

import numpy as np
import onnx
import onnx.helper
import onnxruntime as ort
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign import cli, ir, reference
from codesign.errors import InputError
from codesign.frontend import load_model
from codesign.frontend.qonnx import is_qonnx
from codesign.opwitness import ort_to_hwc
from codesign.ortwitness import create_session, open_witness
from codesign.perlayer import check_ops
from codesign.qonnxwitness import BOUND_LSB, qonnx_op_witness, run_qonnx

from . import brevitasgen as bg

INPUTS = 8


def _inputs(graph: ir.Graph, count: int, seed: int) -> list[np.ndarray]:
    """Float inputs beyond the input quantizer's range on both sides (so its clamp matters)."""
    rng = np.random.default_rng(seed)
    t = graph.inputs[0].tensor
    span = float(t.scale) * 20
    return [rng.uniform(-span, span, graph.inputs[0].onnx_shape).astype(np.float32)
            for _ in range(count)]


def _reference(path, graph: ir.Graph):
    """The reference's run on one float input: qonnx's executor for QONNX, else onnxruntime's
    exact-kernel session (as ``verify`` opens it)."""
    name = graph.inputs[0].onnx_name
    if is_qonnx(onnx.load(path)):
        return lambda x: run_qonnx(path, {name: x})[0]
    witness = open_witness(path)
    assert witness.exact, witness.note
    return lambda x: witness.session.run(None, {name: x})[0]


def golden_vs_reference(path, count: int = INPUTS, seed: int = 0
                        ) -> tuple[ir.Graph, int, int, list[dict[str, np.ndarray]]]:
    """The golden model on ``count`` random inputs against the reference: (graph, elements that
    differ, max |Δ| in output LSB, the golden runs)."""
    graph = load_model(path)
    out = graph.outputs[0]
    run = _reference(path, graph)
    bad = worst = 0
    runs = []
    for x in _inputs(graph, count, seed):
        values = reference.run(graph, [graph.inputs[0].quantize(x)])
        runs.append(values)
        delta = np.abs(values[out.tensor.name].astype(np.int64) - ort_to_hwc(out.tensor, run(x)))
        bad += int(np.count_nonzero(delta))
        worst = max(worst, int(delta.max()))
    return graph, bad, worst, runs


# -- golden level -------------------------------------------------------------------------------

@settings(max_examples=4, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(w_bits=st.integers(2, 8), a_bits=st.integers(2, 8), in_signed=st.booleans(),
       in_narrow=st.booleans(), per_channel=st.booleans(), narrow=st.booleans(),
       form=st.sampled_from(["qcdq_dynamo", "qcdq_torchscript"]), seed=st.integers(0, 99),
       channels=st.tuples(st.integers(1, 9), st.integers(1, 12)))
def test_qcdq_golden_is_onnxruntime_bit_exactly(tmp_path, w_bits, a_bits, in_signed, in_narrow,
                                                per_channel, narrow, form, seed, channels):
    """2–8-bit weights and activations, signed/unsigned narrow/full-range input, per-tensor and
    per-channel weights, with an Int32 bias where the exporter supports one (Brevitas' dynamo
    QCDQ exporter refuses quantized biases)."""
    bias = form == "qcdq_torchscript"
    model = bg.cnn(seed, w_bits=w_bits, a_bits=a_bits, in_signed=in_signed,
                   in_narrow=in_narrow, per_channel=per_channel, narrow=narrow, bias=bias,
                   channels=channels)
    path = bg.export(model, form, tmp_path / f"m_{form}_{seed}.onnx")
    graph, bad, worst, _ = golden_vs_reference(path, seed=seed)
    assert (bad, worst) == (0, 0)
    lo, hi = (-(2 ** (a_bits - 1)) + in_narrow, 2 ** (a_bits - 1) - 1) if in_signed else (
        0, 2 ** a_bits - 1 - in_narrow)
    t = graph.inputs[0].tensor
    assert (graph.inputs[0].clamp or (t.qmin, t.qmax)) == (lo, hi)
    assert graph.ops[0].qrange == (0, 2 ** a_bits - 1)       # QuantReLU: unsigned a_bits


@settings(max_examples=3, deadline=None)
@given(w_bits=st.integers(2, 8), a_bits=st.integers(2, 8), in_signed=st.booleans(),
       per_channel=st.booleans(), bias=st.booleans(), seed=st.integers(0, 99),
       channels=st.tuples(st.integers(1, 9), st.integers(1, 12)))
def test_qonnx_golden_within_one_lsb_of_qonnx_per_op(tmp_path_factory, w_bits, a_bits,
                                                     in_signed, per_channel, bias, seed,
                                                     channels):
    """QONNX: every op within 1 LSB of qonnx's float execution on the same inputs; the
    end-to-end difference is what those steps become downstream (measured, reported)."""
    path = bg.export(bg.cnn(seed, w_bits=w_bits, a_bits=a_bits, in_signed=in_signed,
                            per_channel=per_channel, bias=bias, channels=channels),
                     "qonnx_torchscript", tmp_path_factory.mktemp("q") / "m_qonnx.onnx")
    graph, _, _, runs = golden_vs_reference(path, count=4, seed=seed)
    witness = qonnx_op_witness(path, graph, runs)
    checks = check_ops(graph, runs, witness.outputs, BOUND_LSB)
    assert all(c.compared == 4 and c.max_lsb <= c.bound for c in checks), checks


def test_qonnx_forms_agree_with_qcdq_golden(tmp_path):
    """One Brevitas model, four exports: every form loads to the same integer graph."""
    graphs = {}
    for form in bg.FORMS:
        graphs[form] = load_model(bg.export(bg.cnn(5, per_channel=True), form,
                                            tmp_path / f"m_{form}.onnx"))
    rng = np.random.default_rng(5)
    x = rng.uniform(-2, 2, bg.SHAPE).astype(np.float32)
    outs = {form: reference.run(g, [g.inputs[0].quantize(x)])[g.outputs[0].tensor.name]
            for form, g in graphs.items()}
    first = outs["qcdq_dynamo"]
    assert all(np.array_equal(first, o) for o in outs.values())
    for g in graphs.values():
        assert [op.kind for op in g.ops] == [op.kind for op in graphs["qonnx"].ops]
        assert all(np.array_equal(a.weight, b.weight) for a, b in zip(
            g.ops, graphs["qonnx"].ops, strict=True) if isinstance(a, ir.Conv))


def test_binary_weights_map_to_plus_minus_one(tmp_path):
    path = bg.export(bg.binary_mlp(3), "qonnx", tmp_path / "bin_qonnx.onnx")
    graph, bad, worst, runs = golden_vs_reference(path)
    convs = [op for op in graph.ops if isinstance(op, ir.Conv)]
    assert all(set(np.unique(op.weight).tolist()) == {-1, 1} for op in convs)
    checks = check_ops(graph, runs, qonnx_op_witness(path, graph, runs).outputs, BOUND_LSB)
    assert all(c.compared and c.max_lsb <= c.bound for c in checks), checks


@pytest.mark.parametrize("form", ["qcdq_torchscript", "qonnx_torchscript"])
def test_asymmetric_activations(tmp_path, form):
    """uint8 activations with a zero point, 2–7 bits: clamp [0, 2^b − 1] around it."""
    path = bg.export(bg.shifted_cnn(4), form, tmp_path / f"s_{form}.onnx")
    graph, bad, worst, _ = golden_vs_reference(path)
    assert (bad, worst) == (0, 0)
    assert graph.inputs[0].clamp == (0, 63) and graph.inputs[0].tensor.zero_point != 0
    assert graph.ops[0].qrange == (0, 31) and graph.ops[0].y.zero_point != 0


def test_shared_initializers_get_the_exact_kernels(tmp_path):
    """A Brevitas TorchScript QCDQ export whose shared scale/zero-point initializers make
    onnxruntime 1.31's exact-kernel session fail on the model as written; create_session builds
    it on a copy with one initializer per reader (the witness that ``verify`` opens) and the
    golden model is bit-exact with it."""
    path = bg.export(bg.cnn(587, w_bits=8, a_bits=8, in_signed=False, narrow=True, bias=True,
                            channels=(2, 4)), "qcdq_torchscript", tmp_path / "shared.onnx")
    options = ort.SessionOptions()
    options.add_session_config_entry("session.x64quantprecision", "1")
    with pytest.raises(Exception, match="Attempt to replace the existing tensor"):
        ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    assert open_witness(path).note == "onnxruntime, exact integer kernels"
    create_session(path)
    _, bad, worst, _ = golden_vs_reference(path)
    assert (bad, worst) == (0, 0)


def test_ternary_weights(tmp_path):
    path = bg.export(bg.cnn(1, w_bits=2, a_bits=8), "qcdq_torchscript", tmp_path / "t.onnx")
    graph, bad, worst, _ = golden_vs_reference(path)
    assert (bad, worst) == (0, 0)
    assert all(set(np.unique(op.weight).tolist()) <= {-1, 0, 1} for op in graph.ops
               if isinstance(op, ir.Conv))


# -- QONNX refusals (hand-made nodes: what Brevitas writes, one attribute changed) --------------

def _qonnx_model(node: onnx.NodeProto, inits: list[onnx.TensorProto]) -> bytes:
    """x → Quant(4-bit) → Conv 1×1 → <node> with the node's float output as graph output."""
    f = onnx.TensorProto.FLOAT
    helper = onnx.helper
    nodes = [
        helper.make_node("Quant", ["x", "s", "z", "b4"], ["xq"], domain="qonnx.custom_op.general",
                         signed=1, narrow=0, rounding_mode="ROUND"),
        helper.make_node("Quant", ["w", "s", "z", "b4"], ["wq"], domain="qonnx.custom_op.general",
                         signed=1, narrow=1, rounding_mode="ROUND"),
        helper.make_node("Conv", ["xq", "wq"], ["acc"]),
        node,
    ]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", f, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("y", f, [1, 2, 3, 3])],
        [helper.make_tensor("s", f, [], [0.125]), helper.make_tensor("z", f, [], [0.0]),
         helper.make_tensor("b4", f, [], [4.0]),
         helper.make_tensor("w", f, [2, 2, 1, 1], [0.5, -0.25, 0.125, 0.75]), *inits])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13),
                                                    helper.make_opsetid("qonnx.custom_op.general",
                                                                        1)])
    model.ir_version = 8
    return model.SerializeToString()


def _quant(rounding="ROUND", bits="b4", signed=1):
    return onnx.helper.make_node("Quant", ["acc", "s", "z", bits], ["y"],
                                 domain="qonnx.custom_op.general", signed=signed, narrow=0,
                                 rounding_mode=rounding)


def test_qonnx_activation_quant_is_accepted_and_clamped():
    graph = load_model(_qonnx_model(_quant(signed=0), []))
    assert graph.ops[0].qrange == (0, 15) and graph.inputs[0].clamp == (-8, 7)
    assert graph.outputs[0].is_float


@pytest.mark.parametrize("node, inits, match", [
    (_quant("FLOOR"), [], r"rounding_mode FLOOR on an activation .* rounds half to even"),
    (_quant(bits="b16"), [onnx.helper.make_tensor("b16", onnx.TensorProto.FLOAT, [], [16.0])],
     r"16-bit activations are not supported"),
    (_quant(bits="b1"), [onnx.helper.make_tensor("b1", onnx.TensorProto.FLOAT, [], [1.0])],
     r"bipolar"),
    (onnx.helper.make_node("BipolarQuant", ["acc", "s"], ["y"],
                           domain="qonnx.custom_op.general"), [],
     r"binary \(bipolar\) activations are not supported"),
    (onnx.helper.make_node("Trunc", ["acc", "s", "z", "b4", "b4"], ["y"],
                           domain="qonnx.custom_op.general", rounding_mode="FLOOR"), [],
     r"Trunc .* does not compute"),
    (_quant("SIDEWAYS"), [], r"rounding_mode 'SIDEWAYS' is not one of qonnx's"),
])
def test_qonnx_refusals_say_why(node, inits, match):
    with pytest.raises(InputError, match=match) as e:
        load_model(_qonnx_model(node, inits))
    assert "\n" not in str(e.value)


# -- RTL: each model end to end through `codesign verify` on Verilator ---------------------------

def _verify(capsys, path, outdir) -> tuple[str, list[str]]:
    code = cli.main(["verify", str(path), "-o", str(outdir), "--count", "4"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "PASS" in out
    lines = out.splitlines()
    row = lines[lines.index(next(line for line in lines if set(line) == {"-"})) + 1]
    return out, row.split()[-3:]                 # RTL≠golden, RTL≠reference, max |Δ|


RTL_MODELS = {
    "w4a4_qcdq": (lambda: bg.cnn(0), "qcdq_dynamo"),
    "w4a4_qonnx": (lambda: bg.cnn(0), "qonnx"),
    "ternary_qcdq": (lambda: bg.cnn(1, w_bits=2, a_bits=8), "qcdq_dynamo"),
    "w8a8_pc_int32bias_qcdq": (lambda: bg.cnn(2, w_bits=8, a_bits=8, per_channel=True,
                                              bias=True), "qcdq_torchscript"),
}
SLOW_MODELS = {
    "w4a4_qcdq_torchscript": (lambda: bg.cnn(0), "qcdq_torchscript"),
    "ternary_qonnx": (lambda: bg.cnn(1, w_bits=2, a_bits=8), "qonnx"),
    "w8a8_pc_int32bias_qonnx": (lambda: bg.cnn(2, w_bits=8, a_bits=8, per_channel=True,
                                               bias=True), "qonnx"),
    "binary_qonnx": (lambda: bg.binary_mlp(3), "qonnx"),
}


@pytest.mark.verilator
@pytest.mark.parametrize("name", [*RTL_MODELS, *(pytest.param(n, marks=pytest.mark.slow)
                                                 for n in SLOW_MODELS)])
def test_verify_on_verilator(capsys, tmp_path, name):
    build, form = {**RTL_MODELS, **SLOW_MODELS}[name]
    path = bg.export(build(), form, tmp_path / f"{name}.onnx")
    capsys.readouterr()
    out, (rtl_vs_golden, rtl_vs_ref, max_lsb) = _verify(capsys, path, tmp_path / "d")
    assert rtl_vs_golden == "0"
    assert int(max_lsb) <= 1
    if "qonnx" in form:
        assert "witness: qonnx.core.onnx_exec" in out
    else:
        assert "witness: onnxruntime, exact integer kernels" in out
        assert (rtl_vs_ref, max_lsb) == ("0", "0")
    assert re.search(r"inference 0: \d+ cycles, MAC utilization", out)


def test_qonnx_witness_runs_hand_made_model_and_refuses_misnamed_feeds(tmp_path):
    """qonnx's executor (its one-node models lowered to an IR version onnxruntime runs) agrees
    with the golden model; a feed under another name is refused, not silently run on zeros."""
    path = tmp_path / "q.onnx"
    path.write_bytes(_qonnx_model(_quant(signed=0), []))
    graph, bad, worst, _ = golden_vs_reference(path)
    assert (bad, worst) == (0, 0)
    with pytest.raises(ValueError, match="are not the model's inputs"):
        run_qonnx(path, {"input": np.zeros((1, 2, 3, 3), np.float32)})


@pytest.mark.verilator
def test_verify_qonnx_without_a_working_qonnx_is_one_line_fail(capsys, tmp_path, monkeypatch):
    """No qonnx (it is a test dependency) or qonnx failing: verify still compares the RTL with the
    golden model and says FAIL: no witness, without a traceback."""
    import codesign.qonnxwitness

    def missing(*args, **kwargs):
        raise ImportError("No module named 'qonnx'")

    monkeypatch.setattr(codesign.qonnxwitness, "qonnx_op_witness", missing)
    path = tmp_path / "q.onnx"
    path.write_bytes(_qonnx_model(_quant(signed=0), []))
    code = cli.main(["verify", str(path), "-o", str(tmp_path / "d"), "--count", "1",
                     "--per-layer"])
    out, err = capsys.readouterr()
    assert code == 1 and not err
    assert "witness: none: qonnx's executor cannot run the model (No module named 'qonnx')" in out
    assert re.search(r"FAIL: no witness .* the RTL equals the golden model bit for bit", out)


def test_qonnx_weight_zero_point_must_fit_its_type():
    model = onnx.load_model_from_string(_qonnx_model(_quant(), []))
    weight_quant = next(n for n in model.graph.node if n.output[0] == "wq")
    weight_quant.input[2] = "z300"
    model.graph.initializer.append(onnx.helper.make_tensor("z300", onnx.TensorProto.FLOAT, [],
                                                           [300.0]))
    with pytest.raises(InputError, match=r"zero point \[300.0\] does not fit the int8"):
        load_model(model.SerializeToString())
