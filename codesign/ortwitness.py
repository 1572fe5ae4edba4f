"""onnxruntime as the witness: run a quantized model with ORT's exact integer kernels.

On x86 without VNNI, ORT's default U8S8 kernels saturate int16 pair sums and can be wrong by tens
of LSB. ``session.x64quantprecision=1`` selects exact kernels. ORT applies the U8S8 path to every
model with uint8 activations *and* to QDQ models with int8 activations (its QDQ transformer turns
S8S8 into U8S8 on x86), so the option is set for all of those. Only S8S8 QOperator models run
their own S8S8 kernels, which are exact, and the option breaks them: with it, ORT has no kernel
for ``com.microsoft.QGemm`` on int8 activations and session creation fails. So
:func:`create_session` asks for exact kernels first and, only when ORT reports a missing kernel,
falls back to the default (exact) S8S8 kernels.
"""

from __future__ import annotations

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
    options.log_severity_level = 3  # errors only: ORT's optimizer warnings are not ours
    options.intra_op_num_threads = 1  # results must not depend on the machine's thread count
    if exact_u8s8:
        options.add_session_config_entry(_PRECISION_KEY, "1")
    return options


def create_session(model: str | os.PathLike[str] | bytes) -> ort.InferenceSession:
    """A CPU session whose integer Conv/Gemm/MatMul kernels are exact (see the module notes)."""
    source = model if isinstance(model, bytes) else os.fspath(model)
    try:
        return ort.InferenceSession(source, _options(True), providers=["CPUExecutionProvider"])
    except OrtNotImplemented:
        # S8S8 QOperator model: the option removes the int8 kernels it needs; the default
        # S8S8 kernels are exact.
        return ort.InferenceSession(source, _options(False), providers=["CPUExecutionProvider"])


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
    unshared = unshare_initializers(source)
    if unshared is not None:
        try:
            return Witness(create_session(unshared), True, "onnxruntime, exact integer kernels "
                                                           "(on the model with its shared "
                                                           "initializers copied per use)")
        except Exception:
            pass
    try:
        session = ort.InferenceSession(source, _options(False),
                                       providers=["CPUExecutionProvider"])
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
    session = ort.InferenceSession(model.SerializeToString(), _options(False),
                                   providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})[0]


def unshare_initializers(model: str | bytes) -> bytes | None:
    """``model`` with every initializer that several node inputs read copied once per use (the
    same computation), or ``None`` when none is shared or the model cannot be read.

    onnxruntime 1.31's QDQ fusion fails to create the exact-kernel session of some models whose
    DequantizeLinear/Clip nodes share a scale or zero point initializer ("Attempt to replace the
    existing tensor" in ``AddInitializerWithOrtValue``; Brevitas' TorchScript QCDQ exporter
    shares them); with a copy per use it builds the session.
    """
    try:
        proto = (onnx.load_model_from_string(model) if isinstance(model, bytes)
                 else onnx.load(model))
    except Exception:
        return None
    initializers = {i.name: i for i in proto.graph.initializer}
    uses: dict[str, int] = {}
    for node in proto.graph.node:
        for name in node.input:
            if name in initializers:
                uses[name] = uses.get(name, 0) + 1
    if all(n == 1 for n in uses.values()):
        return None
    seen: dict[str, int] = {}
    for node in proto.graph.node:
        for j, name in enumerate(node.input):
            if uses.get(name, 0) > 1:
                seen[name] = seen.get(name, 0) + 1
                if seen[name] > 1:
                    copy = onnx.TensorProto()
                    copy.CopyFrom(initializers[name])
                    copy.name = f"{name}__use{seen[name]}"
                    proto.graph.initializer.append(copy)
                    node.input[j] = copy.name
    return proto.SerializeToString()
