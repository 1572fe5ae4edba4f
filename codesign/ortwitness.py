"""onnxruntime as the witness: run a quantized model with ORT's exact integer kernels.

On x86 without VNNI, ORT's default U8S8 kernels saturate int16 pair sums and can be wrong by tens
of LSB. ``session.x64quantprecision=1`` selects exact kernels. ORT applies the U8S8 path to every
model with uint8 activations *and* to QDQ models with int8 activations (its QDQ transformer turns
S8S8 into U8S8 on x86), so the option is set for all of those. Only S8S8 QOperator models run
their own S8S8 kernels, which are exact, and the option breaks them: with it, ORT has no kernel
for ``com.microsoft.QGemm`` on int8 activations and session creation fails. So
:func:`create_session` asks for exact kernels first and, only when ORT reports a missing kernel,
falls back to the default (exact) S8S8 kernels.

With exact kernels, onnxruntime 1.31's QDQ transformers fail on models whose Q/DQ nodes share
one scale or zero-point initializer (PT2E exports deduplicate constants): "Attempt to replace the
existing tensor". A copy of the model in which every reader of an initializer has its own copy
means exactly the same and builds, so :func:`create_session` retries with it.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import os

import numpy as np
import onnx
import onnx.helper
import onnxruntime as ort
from onnxruntime.capi.onnxruntime_pybind11_state import NotImplemented as OrtNotImplemented

from .errors import one_line

__all__ = ["REASON_CHARS", "Witness", "create_session", "open_witness", "quantize_linear",
           "run_onnxruntime"]

_PRECISION_KEY = "session.x64quantprecision"


def _options(exact_u8s8: bool) -> ort.SessionOptions:
    options = ort.SessionOptions()
    # Fatal only: a failed session raises an exception that callers report in their own words;
    # ORT's optimizer warnings and its log of that same failure are not ours.
    options.log_severity_level = 4
    options.intra_op_num_threads = 1  # results must not depend on the machine's thread count
    if exact_u8s8:
        options.add_session_config_entry(_PRECISION_KEY, "1")
    return options


def _session(source: str | bytes, exact_u8s8: bool) -> ort.InferenceSession:
    return ort.InferenceSession(source, _options(exact_u8s8), providers=["CPUExecutionProvider"])


def _unshared(source: str | bytes) -> bytes:
    """The model with a private copy of each initializer for every node input that reads it."""
    model = onnx.load_from_string(source) if isinstance(source, bytes) else onnx.load(source)
    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    readers: collections.Counter[str] = collections.Counter()
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name not in initializers:
                continue
            readers[name] += 1
            if readers[name] > 1:
                twin = copy.deepcopy(initializers[name])
                twin.name = f"{name}__reader{readers[name]}"
                while twin.name in initializers:
                    twin.name += "_"
                initializers[twin.name] = twin
                graph.initializer.append(twin)
                node.input[i] = twin.name
    return model.SerializeToString()


def create_session(model: str | os.PathLike[str] | bytes) -> ort.InferenceSession:
    """A CPU session whose integer Conv/Gemm/MatMul kernels are exact (see the module notes)."""
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return _session(source, True)
    except OrtNotImplemented:
        # S8S8 QOperator model: the option removes the int8 kernels it needs; the default
        # S8S8 kernels are exact.
        return _session(source, False)
    except Exception as error:  # ORT raises its own pybind types (Fail, InvalidGraph, ...)
        if "Attempt to replace the existing tensor" not in str(error):
            raise
    return _session(_unshared(source), True)


@dataclasses.dataclass(frozen=True)
class Witness:
    """The onnxruntime session that witnesses a model, or why there is none.

    ``exact`` tells whether its integer Conv/Gemm/MatMul kernels are the exact ones (the
    verdict's 0-LSB bound for those ops is only meaningful then); ``note`` says which session it
    is, or why none could be built (``session`` is then ``None``).
    """
    session: ort.InferenceSession | None
    exact: bool
    note: str


#: Characters of an onnxruntime error kept in a witness note (its messages run to kilobytes).
REASON_CHARS = 300


def open_witness(model: str | os.PathLike[str] | bytes) -> Witness:
    """A session on ``model`` as :func:`create_session` makes it; when onnxruntime refuses the
    exact kernels for any other reason, its default session (exact for S8S8, possibly off by a
    few LSB on U8S8 without VNNI); when it refuses the model altogether, none. Never raises for
    a model onnxruntime cannot run."""
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return Witness(create_session(source), True, "onnxruntime, exact integer kernels")
    except Exception as exact_error:  # ORT raises its own pybind types (Fail, InvalidGraph, ...)
        reason = one_line(exact_error, REASON_CHARS)
    try:
        session = _session(source, False)
    except Exception as error:
        return Witness(None, False, f"onnxruntime cannot run the model: "
                                    f"{one_line(error, REASON_CHARS)}")
    return Witness(session, False, "onnxruntime default kernels (the exact-kernel session "
                                   f"failed: {reason}); U8S8 results may be off by a few LSB")


def run_onnxruntime(model_path: str | os.PathLike[str] | bytes,
                    feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model_path`` on ``feeds`` (ONNX input name → array); outputs in graph order."""
    return create_session(model_path).run(None, feeds)


def quantize_linear(x: np.ndarray, scale: np.float32, zero_point: int,
                    signed: bool) -> np.ndarray:
    """``x`` quantized by onnxruntime's own QuantizeLinear kernel (per tensor).

    The reference for :meth:`codesign.ir.IOBinding.quantize`, which must agree bit for bit.
    """
    dtype = onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8
    x = np.asarray(x, dtype=np.float32)
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("QuantizeLinear", ["x", "scale", "zero_point"], ["y"])],
        "quantize_linear",
        [onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, list(x.shape))],
        [onnx.helper.make_tensor_value_info("y", dtype, list(x.shape))],
        [onnx.helper.make_tensor("scale", onnx.TensorProto.FLOAT, [], [float(scale)]),
         onnx.helper.make_tensor("zero_point", dtype, [], [int(zero_point)])])
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    return _session(model.SerializeToString(), False).run(None, {"x": x})[0]
