"""qonnx's executor as the witness of QONNX models (Brevitas ``export_qonnx``).

onnxruntime cannot run QONNX's custom ops (``Quant``, ``BipolarQuant``, ``Trunc``), so
``codesign verify`` runs such models with ``qonnx.core.onnx_exec`` instead: qonnx computes its
``Quant`` nodes in numpy float32 (``round(clamp(x / scale + zp)) − zp) · scale``) and every other
node (Conv, Gemm, Relu, ...) as a one-node float model in onnxruntime. It is a *float* witness:
the golden model keeps the NPU's integer arithmetic (exact int32 accumulation, one requantization
multiplier ``M = f32(f32(x_scale · w_scale) / y_scale)``), while qonnx accumulates the
dequantized products in float32 and divides by the output scale. The two agree except where the
real value lies within float32 rounding error of a rounding tie, so each op is within 1 LSB of
qonnx on the same inputs (:data:`BOUND_LSB`); end to end, a 1-LSB step early in a low-bit network
is amplified by the following layers (docs/arithmetic.md, "QONNX").

qonnx's executor builds its one-node models with onnx's newest IR version (14 with onnx 1.23),
which onnxruntime 1.31 refuses; :func:`_onnxruntime_ir` lowers it to 10 while qonnx runs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import onnx

from . import ir
from .opwitness import OpWitness, _cut_nodes, _Index, ort_to_hwc
from .ortwitness import Witness

__all__ = ["BOUND_LSB", "NOTE", "qonnx_op_witness", "run_qonnx"]

#: Largest difference in LSB between each golden op and qonnx's float execution of its nodes on
#: the same inputs: 0 for ops on the integers themselves, 1 where qonnx computes in float.
BOUND_LSB = {kind: 0 if kind in (ir.OpKind.MAXPOOL, ir.OpKind.FLATTEN, ir.OpKind.PAD,
                                  ir.OpKind.RESIZE) else 1 for kind in ir.OpKind}

#: What the witness is, for ``verify``'s output.
NOTE = ("qonnx.core.onnx_exec (onnxruntime cannot run QONNX's custom ops): a float execution, "
        "each op within 1 LSB of the golden model's integer arithmetic on the same inputs")

#: The newest IR version onnxruntime 1.31 runs.
_ORT_IR_VERSION = 10


@contextlib.contextmanager
def _onnxruntime_ir() -> Iterator[None]:
    """While qonnx executes: its one-node models get an IR version onnxruntime accepts, and its
    imports' and executor's warnings (deprecations, shape notes) stay out of the caller's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import qonnx.core.onnx_exec as onnx_exec

        make_model = onnx_exec.qonnx_make_model

        def lowered(*args: object, **kwargs: object) -> onnx.ModelProto:
            model = make_model(*args, **kwargs)
            model.ir_version = min(model.ir_version, _ORT_IR_VERSION)
            return model

        onnx_exec.qonnx_make_model = lowered
        try:
            yield
        finally:
            onnx_exec.qonnx_make_model = make_model


def _wrapper(model: str | os.PathLike[str]):
    """The model as qonnx's ModelWrapper with every tensor's shape inferred."""
    from qonnx.core.modelwrapper import ModelWrapper
    from qonnx.transformation.infer_shapes import InferShapes

    return ModelWrapper(onnx.load(Path(model))).transform(InferShapes())


def run_qonnx(model: str | os.PathLike[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Run ``model`` on ``feeds`` with qonnx's executor; outputs in graph order."""
    with _onnxruntime_ir():
        from qonnx.core.onnx_exec import execute_onnx

        wrapper = _wrapper(model)
        names = {i.name for i in wrapper.graph.input} - {i.name for i in
                                                         wrapper.graph.initializer}
        if set(feeds) != names:
            # qonnx's executor silently runs on zeros for an input it is not given.
            raise ValueError(f"feeds {sorted(feeds)} are not the model's inputs {sorted(names)}")
        outputs = execute_onnx(wrapper, {k: np.asarray(v, np.float32) for k, v in feeds.items()})
        return [outputs[o.name] for o in wrapper.graph.output]


def _dequantize(t: ir.Tensor, hwc: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """An IR tensor's integers as the float tensor the QONNX graph holds: (q − zp) · scale."""
    q = hwc.transpose(2, 0, 1)[None] if len(shape) == 4 else hwc
    return ((q.astype(np.int32) - t.zero_point).astype(np.float32)
            * np.float32(t.scale)).reshape(shape).astype(np.float32)


def qonnx_op_witness(model: str | os.PathLike[str], graph: ir.Graph,
                     golden: Iterable[dict[str, np.ndarray]]) -> OpWitness:
    """qonnx's execution of each op's nodes alone on the golden model's inputs to it, per
    inference (HWC integers by IR tensor name), as :func:`codesign.opwitness.op_witness` does
    with onnxruntime."""
    golden = list(golden)
    outputs: list[dict[str, np.ndarray]] = [{} for _ in golden]
    with _onnxruntime_ir():
        from qonnx.core.onnx_exec import execute_node

        wrapper = _wrapper(model)
        proto = wrapper.model
        index = _Index.of(proto)
        opsets = {o.domain: o.version for o in proto.opset_import}
        empty = wrapper.make_empty_exec_context()
        shapes = {name: tuple(a.shape) for name, a in empty.items() if a is not None}
        for op in graph.ops:
            nodes, _ = _cut_nodes(proto, index, op, op.y.name)
            inputs = {t.name: t for t in ir.op_inputs(op)}
            if not nodes or not all(name in shapes for name in [*inputs, op.y.name]):
                continue
            for values, out in zip(golden, outputs, strict=True):
                context = dict(empty)
                for name, t in inputs.items():
                    context[name] = _dequantize(t, values[name], shapes[name])
                for node in nodes:
                    execute_node(node, context, proto.graph, opsets.get(node.domain, 1))
                out[op.y.name] = ort_to_hwc(op.y, context[op.y.name])
    return OpWitness(outputs, Witness(None, True, NOTE))
