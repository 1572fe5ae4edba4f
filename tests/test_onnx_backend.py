"""ONNX's own backend node tests for quantized ops (all 45 of onnx 1.23: every case whose graph has
a QuantizeLinear, DequantizeLinear, QLinear*, *Integer or DynamicQuantizeLinear node), through the
frontend, the golden model, onnxruntime and (the cases that load) the RTL.

onnx 1.23 ships no test data on disk: ``load_model_tests(kind="node")`` collects the test cases
from the generators in ``onnx.backend.test.case.node``, each with its model and data sets
(inputs and expected outputs) in memory. Their models take the weights, scales and zero points as
graph inputs; an NPU bakes those in, so every case is tried twice: as given (refused: they must
be constants) and frozen, with every input but the activation turned into an initializer holding
the data set's value.
"""

from __future__ import annotations

import collections
import functools
import warnings

import numpy as np
import onnx
import onnx.numpy_helper
import pytest

from codesign import ir, reference
from codesign.errors import InputError
from codesign.frontend import load_model
from codesign.ortwitness import create_session

#: The ops whose node tests are "quantized": every case whose graph has one of them (45 in
#: onnx 1.23).
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}

_OPS = "uses ops that codesign does not support"
_8BIT = "inputs must be float32, uint8 or int8"
_CONST_TYPE = "only float32/64/16 and (u)int8/16/32/64 and bool constants"
_F16 = "input scale is float16; only float32 scales are supported"
_PER_TENSOR = "needs a single (per-tensor) scale"
_BATCHED_WEIGHT = "the weight [2, 4, 3] is batched"
_ZP_TYPE = "zero point must be one uint8 or int8 value"
_1D = "only [1, C, H, W], [1, C, L], [1, M, K] and [M, K] activations are supported"

#: Expected status of each case when frozen: "exact" (loads; golden == the data set's expected
#: output == onnxruntime, bit for bit) or a part of the InputError's reason.
EXPECTED = {
    "test_qlinearconv": "exact",
    "test_qlinearmatmul_2D_uint8_float32": "exact",
    "test_qlinearmatmul_2D_int8_float32": "exact",
    "test_qlinearmatmul_2D_uint8_float16": _F16,
    "test_qlinearmatmul_2D_int8_float16": _F16,
    "test_qlinearmatmul_3D_uint8_float32": _BATCHED_WEIGHT,
    "test_qlinearmatmul_3D_int8_float32": _BATCHED_WEIGHT,
    "test_qlinearmatmul_3D_uint8_float16": _F16,
    "test_qlinearmatmul_3D_int8_float16": _F16,
    "test_matmulinteger": f"{_OPS}: MatMulInteger",
    "test_convinteger_with_padding": f"{_OPS}: ConvInteger",
    "test_convinteger_without_padding": f"{_OPS}: ConvInteger",
    "test_dynamicquantizelinear": f"{_OPS}: DynamicQuantizeLinear",
    "test_dynamicquantizelinear_max_adjusted": f"{_OPS}: DynamicQuantizeLinear",
    "test_dynamicquantizelinear_min_adjusted": f"{_OPS}: DynamicQuantizeLinear",
    "test_dynamicquantizelinear_expanded": f"{_OPS}: Cast",
    "test_dynamicquantizelinear_max_adjusted_expanded": f"{_OPS}: Cast",
    "test_dynamicquantizelinear_min_adjusted_expanded": f"{_OPS}: Cast",
    "test_dequantizelinear": f"tensor 'x' has shape [4]; {_1D}",
    "test_quantizelinear": f"tensor 'y' has shape [6]; {_1D}",
    "test_dequantizelinear_axis": f"input {_PER_TENSOR}",
    "test_dequantizelinear_blocked": f"input {_PER_TENSOR}",
    "test_quantizelinear_axis": f"output {_PER_TENSOR}",
    "test_quantizelinear_blocked_asymmetric": "blocked quantization is not supported",
    "test_quantizelinear_blocked_symmetric": "blocked quantization is not supported",
    "test_dequantizelinear_e4m3fn": f"input 'x' is float8_e4m3fn; {_8BIT}",
    "test_dequantizelinear_e4m3fn_float16": f"input 'x' is float8_e4m3fn; {_8BIT}",
    "test_dequantizelinear_e4m3fn_zero_point": _CONST_TYPE,
    "test_dequantizelinear_e5m2": f"input 'x' is float8_e5m2; {_8BIT}",
    "test_dequantizelinear_uint16": f"input 'x' is uint16; {_8BIT}",
    "test_dequantizelinear_int16": f"input 'x' is int16; {_8BIT}",
    "test_dequantizelinear_uint4": _CONST_TYPE,
    "test_dequantizelinear_int4": _CONST_TYPE,
    "test_dequantizelinear_uint2": _CONST_TYPE,
    "test_dequantizelinear_int2": _CONST_TYPE,
    "test_dequantizelinear_float4e2m1": _CONST_TYPE,
    "test_quantizelinear_e4m3fn": _CONST_TYPE,
    "test_quantizelinear_e5m2": _CONST_TYPE,
    "test_quantizelinear_uint4": _CONST_TYPE,
    "test_quantizelinear_int4": _CONST_TYPE,
    "test_quantizelinear_uint2": _CONST_TYPE,
    "test_quantizelinear_int2": _CONST_TYPE,
    "test_quantizelinear_float4e2m1": _CONST_TYPE,
    "test_quantizelinear_uint16": _ZP_TYPE,
    "test_quantizelinear_int16": _ZP_TYPE,
}

#: Why the refused cases are refused, for the report (docs/support.md): reason part → summary.
CATEGORIES = {
    _OPS: "dynamic quantization / integer-output ops (ConvInteger, MatMulInteger, "
          "DynamicQuantizeLinear and its expansion)",
    _8BIT: "non-8-bit types (float8, float4, 2/4/16-bit integers)",
    _CONST_TYPE: "non-8-bit types (float8, float4, 2/4/16-bit integers)",
    _ZP_TYPE: "non-8-bit types (float8, float4, 2/4/16-bit integers)",
    _F16: "float16 scales",
    _PER_TENSOR: "per-axis or blocked activation quantization",
    "blocked quantization": "per-axis or blocked activation quantization",
    _BATCHED_WEIGHT: "3-D (batched) weights",
    _1D: "a lone 1-D tensor with no compute",
}


@functools.cache
def _cases() -> dict[str, tuple[onnx.ModelProto, list, list[np.ndarray]]]:
    """name → (model, inputs, expected outputs) of the quantized node tests."""
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        # Collecting imports every generator; some divide by zero on purpose, others warn.
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    selected = {}
    for case in cases:
        if QUANTIZED_OPS.intersection(node.op_type for node in case.model.graph.node):
            (inputs, outputs), *_ = case.data_sets
            selected[case.name] = (case.model, list(inputs), list(outputs))
    return selected


def _freeze(model: onnx.ModelProto, inputs: list) -> bytes:
    """``model`` with every graph input but the first as an initializer of its data set value
    (types numpy cannot hold, e.g. float8, come as TensorProtos)."""
    frozen = onnx.ModelProto()
    frozen.CopyFrom(model)
    graph = frozen.graph
    for value, data in zip(list(graph.input)[1:], inputs[1:], strict=True):
        if isinstance(data, onnx.TensorProto):
            tensor = onnx.TensorProto()
            tensor.CopyFrom(data)
            tensor.name = value.name
        else:
            tensor = onnx.numpy_helper.from_array(np.asarray(data), value.name)
        graph.initializer.append(tensor)
        graph.input.remove(value)
    return frozen.SerializeToString()


def _status(data: bytes) -> tuple[str, ir.Graph | None]:
    try:
        return "loads", load_model(data)
    except InputError as e:
        return str(e).removeprefix("the model: ").removeprefix("the model "), None


def _golden(graph: ir.Graph, x: np.ndarray) -> np.ndarray:
    (inp,), (out,) = graph.inputs, graph.outputs
    return out.dequantize(reference.run(graph, [inp.quantize(x)])[out.tensor.name])


def test_cases_are_all_known() -> None:
    assert sorted(_cases()) == sorted(EXPECTED) and len(EXPECTED) == 45


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_as_given_is_refused(name: str) -> None:
    """The weights and scales are runtime inputs: refused in one line, never for a "batch"
    (the batch rules apply to data inputs only, not to scales, zero points or 1-D tensors)."""
    model, _, _ = _cases()[name]
    with pytest.raises(InputError) as e:
        load_model(model.SerializeToString())
    message = str(e.value)
    assert "\n" not in message and "batch" not in message, message
    assert any(reason in message for reason in (
        "must be a constant initializer", _OPS, _8BIT, "blocked quantization")), message


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_frozen(name: str) -> None:
    model, inputs, outputs = _cases()[name]
    frozen = _freeze(model, inputs)
    status, graph = _status(frozen)
    if EXPECTED[name] == "exact":
        assert graph is not None, status
        (want,) = outputs
        got = _golden(graph, inputs[0])
        assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
        (ort,) = create_session(frozen).run(None, {graph.inputs[0].onnx_name: inputs[0]})
        assert got.tobytes() == ort.tobytes()
    else:
        assert graph is None and EXPECTED[name] in status, status
        assert "has batch" not in status         # the old refusal of a data batch


def _given_category(status: str) -> str:
    reasons = {"must be a constant initializer": "parameters are graph inputs", _OPS: "ops",
               _8BIT: "input type", "blocked quantization": "blocked quantization"}
    return next(summary for reason, summary in reasons.items() if reason in status)


def _category(status: str) -> str:
    return next(summary for reason, summary in CATEGORIES.items() if reason in status)


def test_report() -> None:
    """Print the table of cases and statuses, and the counts docs/support.md gives."""
    counts: collections.Counter[str] = collections.Counter()
    print(f"\n{'case':48s} {'as given':10s} frozen")
    for name in sorted(EXPECTED):
        model, inputs, _ = _cases()[name]
        given, _ = _status(model.SerializeToString())
        frozen, graph = _status(_freeze(model, inputs))
        counts["accepted as given" if given == "loads" else
               f"refused as given: {_given_category(given)}"] += 1
        counts["exact" if graph is not None else f"refused: {_category(frozen)}"] += 1
        print(f"{name:48s} {'loads' if given == 'loads' else 'refused':10s} "
              f"{'exact' if graph is not None else 'refused: ' + frozen}")
    for key, n in sorted(counts.items()):
        print(f"{n:3d}  {key}")
    assert counts["exact"] == sum(status == "exact" for status in EXPECTED.values())


@pytest.mark.verilator
@pytest.mark.parametrize("name", sorted(n for n, status in EXPECTED.items() if status == "exact"))
def test_frozen_on_rtl(name: str) -> None:
    """The cases that load, compiled and run on the generated Verilog under Verilator."""
    from codesign.compiler import compile_graph
    from codesign.driver import run_rtl
    from codesign.isa import HwConfig
    from codesign.rtl.top import generate_verilog

    model, inputs, outputs = _cases()[name]
    graph = load_model(_freeze(model, inputs))
    config = HwConfig(rows=4, cols=4, bus_bytes=4)
    program = compile_graph(graph, config)
    (inp,), (out,) = graph.inputs, graph.outputs
    result = run_rtl(program, generate_verilog(config), [[inp.quantize(inputs[0])]])
    (got,) = result.outputs[0]
    assert out.dequantize(got).tobytes() == outputs[0].tobytes()
