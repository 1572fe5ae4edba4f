"""Each op of the golden model against onnxruntime's own kernel for that op, on the same inputs.

For every IR op, the ONNX nodes that compute it (e.g. ``DequantizeLinear → Conv → Relu →
QuantizeLinear`` with the weights' ``DequantizeLinear``, or one ``QLinearConv``) are cut out of
the model into a model of their own whose inputs are the op's 8-bit input tensors and whose
output is its 8-bit output tensor. onnxruntime runs that model on the golden model's values of
the inputs, and its output is compared with the golden op's.

Why not simply add every tensor to the whole model's outputs: an 8-bit tensor that is a graph
output stops onnxruntime's QDQ fusion of the op producing it (on x86 its int8→uint8 conversion
cannot change a graph output's type), so onnxruntime then runs that op in float and differs by
1 LSB near rounding ties — a difference of the observation, not of the kernel that runs the
model. Cut out, each op is fused exactly as in the whole model.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import onnx.shape_inference

from . import ir
from .errors import one_line
from .ortwitness import REASON_CHARS, Witness, open_witness

__all__ = ["OpWitness", "op_witness", "ort_to_hwc", "to_onnx_layout"]


def ort_to_hwc(t: ir.Tensor, value: np.ndarray) -> np.ndarray:
    """An ONNX tensor (NCHW or 2-D/3-D; integers, or the float it dequantizes to) → HWC ints."""
    v = np.asarray(value)
    if np.issubdtype(v.dtype, np.floating):
        v = np.rint(v.astype(np.float64) / np.float64(t.scale)) + t.zero_point
    v = v.astype(np.int64)
    if v.ndim == 4:
        v = v[0].transpose(1, 2, 0)
    elif v.ndim == 3 and t.channels_first:      # [1, C, L] → (1, L, C)
        v = v[0].T
    return v.reshape(t.shape)


def to_onnx_layout(hwc: np.ndarray, onnx_shape: tuple[int, ...],
                   channels_first: bool = False) -> np.ndarray:
    """The inverse of :func:`ort_to_hwc` for an 8-bit tensor of ONNX shape ``onnx_shape``."""
    if len(onnx_shape) == 4 or len(onnx_shape) == 3 and channels_first:
        return np.ascontiguousarray(hwc.transpose(2, 0, 1).reshape(onnx_shape))
    return hwc.reshape(onnx_shape)


def _elem_type(t: ir.Tensor) -> int:
    return onnx.TensorProto.INT8 if t.signed else onnx.TensorProto.UINT8


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How an IR tensor appears in the ONNX graph: its shape and element type (8-bit, or float
    where a QDQ model keeps it dequantized, e.g. around MaxPool and Reshape)."""
    shape: tuple[int, ...]
    elem_type: int

    @property
    def quantized(self) -> bool:
        return self.elem_type != onnx.TensorProto.FLOAT


def _dequantized(t: ir.Tensor, layout: _Layout, hwc: np.ndarray) -> np.ndarray:
    """The golden HWC integers of ``t`` dequantized in ONNX layout: the float input of a cut
    (its QuantizeLinear gives the integers back exactly: the error of the float32 multiply and
    divide is far below half a step)."""
    q = to_onnx_layout(np.asarray(hwc), layout.shape, t.channels_first)
    return ((q.astype(np.int32) - t.zero_point) * np.float32(t.scale)).astype(np.float32)


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    """The element type of every tensor ONNX shape inference knows (as the frontend infers
    them: without the model's own ``value_info``, which it may contradict)."""
    bare = onnx.ModelProto()
    bare.CopyFrom(proto)
    del bare.graph.value_info[:]
    try:
        inferred = onnx.shape_inference.infer_shapes(bare)
    except (onnx.shape_inference.InferenceError, ValueError):
        return {}           # then only onnxruntime's own outputs tell the types
    return {v.name: v.type.tensor_type.elem_type
            for v in [*inferred.graph.value_info, *proto.graph.output]}


def _layouts(proto: onnx.ModelProto, index: _Index,
             graph: ir.Graph) -> tuple[dict[str, _Layout], Witness]:
    """The ONNX layout of every IR tensor (graph inputs and op outputs), and the session that
    told. Shapes come from onnxruntime, which knows the com.microsoft ops that ONNX shape
    inference does not; when it cannot run the model, only the graph inputs' are known."""
    types = dict(index.types)
    exposed = onnx.ModelProto()
    exposed.CopyFrom(proto)
    wanted = [op.y for op in graph.ops if op.y.name in index.producers]
    # A graph input's tensor is its QuantizeLinear's output, which a float Reshape before it
    # (onnxruntime's Reshape → Gemm → Reshape) leaves in another shape than the input's.
    wanted += [b.tensor for b in graph.inputs if b.tensor.name in index.producers]
    for t in wanted:
        types.setdefault(t.name, _elem_type(t))
        if t.name not in index.outputs:
            exposed.graph.output.append(
                onnx.helper.make_tensor_value_info(t.name, types[t.name], None))
    layouts = {b.tensor.name: _Layout(tuple(b.onnx_shape), _elem_type(b.tensor))
               for b in graph.inputs}
    witness = open_witness(exposed.SerializeToString())
    if witness.session is None:
        return layouts, witness
    feeds = {b.onnx_name: np.zeros(b.onnx_shape, np.float32 if b.is_float
                                   else b.tensor.numpy_dtype) for b in graph.inputs}
    names = [t.name for t in wanted]
    try:
        values = witness.session.run(names, feeds)
    except Exception as error:  # ORT raises its own pybind types
        return layouts, Witness(None, False, f"onnxruntime cannot run the model: "
                                             f"{one_line(error, REASON_CHARS)}")
    for name, value in zip(names, values, strict=True):
        layouts[name] = _Layout(tuple(np.shape(value)), types[name])
    return layouts, witness


@dataclasses.dataclass(frozen=True)
class _Index:
    """Who makes and who reads each tensor of the model, built once for all its ops."""
    producers: dict[str, onnx.NodeProto]
    consumers: dict[str, list[onnx.NodeProto]]
    initializers: dict[str, onnx.TensorProto]
    outputs: set[str]
    types: dict[str, int]

    @classmethod
    def of(cls, proto: onnx.ModelProto) -> _Index:
        consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in proto.graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        return cls({name: node for node in proto.graph.node for name in node.output if name},
                   consumers, {i.name: i for i in proto.graph.initializer},
                   {o.name for o in proto.graph.output}, _elem_types(proto))


def _boundary(t: ir.Tensor) -> tuple[list[onnx.TensorProto], str, str]:
    """Initializers holding ``t``'s scale and zero point, and their names."""
    scale, zero_point = f"{t.name}__cut_scale", f"{t.name}__cut_zero_point"
    return ([onnx.numpy_helper.from_array(np.asarray(t.scale, np.float32), scale),
             onnx.numpy_helper.from_array(np.asarray(t.zero_point, t.numpy_dtype), zero_point)],
            scale, zero_point)


def _float_name(name: str) -> str:
    return f"{name}__cut_float"


#: Nodes after an op that the frontend folds into the op's clamp (ReLU/Clip) or that keep its
#: tensor as it is (a QDQ model's DequantizeLinear → Relu → QuantizeLinear at the same scale).
_FOLDED_AFTER = {"Relu", "Clip", "DequantizeLinear", "QuantizeLinear", "Identity"}


def _folded_output(index: _Index, name: str) -> str:
    """The last 8-bit tensor of the chain of single-consumer :data:`_FOLDED_AFTER` nodes that
    starts at ``name``: the ONNX tensor whose values the IR op's output stands for once the
    frontend has folded a following ReLU/Clip into the op's clamp."""
    last = current = name
    while current not in index.outputs and len(index.consumers.get(current, [])) == 1:
        (node,) = index.consumers[current]
        if node.op_type not in _FOLDED_AFTER or node.domain not in ("", "ai.onnx"):
            break
        current = node.output[0]
        if index.types.get(current) in (onnx.TensorProto.INT8, onnx.TensorProto.UINT8):
            last = current
    return last


def _cut_nodes(proto: onnx.ModelProto, index: _Index, op: ir.Op,
               output: str) -> tuple[list[onnx.NodeProto], list[str]]:
    """The nodes computing ``output`` from the op's input tensors, in graph order, and the
    initializers they read (no nodes when they reach a tensor that is not one of those)."""
    inputs = {t.name for t in ir.op_inputs(op)}
    nodes: dict[int, onnx.NodeProto] = {}
    used: set[str] = set()
    pending = [output]
    while pending:
        name = pending.pop()
        if not name or name in inputs:
            continue
        if name in index.initializers:
            used.add(name)
            continue
        node = index.producers.get(name)
        if node is None:
            return [], []                   # reaches a graph input that is not the op's input
        if id(node) not in nodes:
            nodes[id(node)] = node
            pending.extend(node.input)
    return [n for n in proto.graph.node if id(n) in nodes], sorted(used)


def _unique_inputs(op: ir.Op) -> list[ir.Tensor]:
    """The op's input tensors, each once (an Add may read one tensor twice)."""
    return list({t.name: t for t in ir.op_inputs(op)}.values())


def _cut(proto: onnx.ModelProto, index: _Index, op: ir.Op,
         layouts: dict[str, _Layout]) -> onnx.ModelProto | None:
    """The nodes computing ``op.y`` from the op's input tensors as a model of their own, with
    float inputs and output (``None`` when the op's tensors are not all in the ONNX graph).

    The cut's 8-bit boundary tensors are made by a QuantizeLinear and read by a
    DequantizeLinear, as in the whole model: were they graph inputs or outputs, onnxruntime
    could not retype them to uint8 on x86 and would not fuse the op into its integer kernel.
    """
    tensors = [*ir.op_inputs(op), op.y]
    if not all(t.name in layouts for t in tensors):
        return None
    last = _folded_output(index, op.y.name)
    nodes, used = _cut_nodes(proto, index, op, last)
    if not nodes:
        return None
    extra_nodes, extra_inits, inputs = [], [], []
    for t in _unique_inputs(op):
        layout = layouts[t.name]
        source = _float_name(t.name) if layout.quantized else t.name
        inputs.append(onnx.helper.make_tensor_value_info(source, onnx.TensorProto.FLOAT,
                                                         list(layout.shape)))
        if layout.quantized:
            inits, scale, zero_point = _boundary(t)
            extra_inits += inits
            extra_nodes.append(onnx.helper.make_node(
                "QuantizeLinear", [source, scale, zero_point], [t.name]))
    output = last
    if last != op.y.name or layouts[op.y.name].quantized:
        inits, scale, zero_point = _boundary(op.y)
        extra_inits += inits
        output = _float_name(last)
        nodes = [*nodes, onnx.helper.make_node("DequantizeLinear",
                                               [last, scale, zero_point], [output])]
    graph = onnx.helper.make_graph(
        [*extra_nodes, *nodes], f"op_{op.name}", inputs,
        [onnx.helper.make_tensor_value_info(output, onnx.TensorProto.FLOAT, None)],
        [*(index.initializers[name] for name in used), *extra_inits])
    model = onnx.helper.make_model(graph, opset_imports=proto.opset_import)
    model.ir_version = proto.ir_version
    return model


def _one_inference(proto: onnx.ModelProto, graph: ir.Graph) -> None:
    """A model with a fixed batch run as N inferences, as the frontend reads it: the model of
    one inference (the frontend has checked that nothing else in it depends on the batch)."""
    from .frontend import one_inference

    batch = max(b.batch for b in graph.inputs)
    if batch > 1:
        one_inference(proto, batch)


@dataclasses.dataclass(frozen=True)
class OpWitness:
    """onnxruntime's output of each op alone on the golden model's inputs to it, per inference
    (HWC integers, by IR tensor name; ops it could not run are missing), and the session kind
    used (its ``note`` says why an op could not be run, when none could)."""
    outputs: list[dict[str, np.ndarray]]
    witness: Witness


def op_witness(model: str | os.PathLike[str], graph: ir.Graph,
               golden: Iterable[dict[str, np.ndarray]]) -> OpWitness:
    """Run every op of ``graph`` alone on onnxruntime, once per golden run in ``golden`` (the
    golden model's tensors of one inference, by name)."""
    proto = onnx.load(Path(model))
    _one_inference(proto, graph)
    golden = list(golden)
    index = _Index.of(proto)
    layouts, witness = _layouts(proto, index, graph)
    outputs: list[dict[str, np.ndarray]] = [{} for _ in golden]
    if witness.session is not None:
        witness = Witness(None, False, "no op of the model could be cut out for onnxruntime")
    exact = True
    for op in graph.ops:
        cut = _cut(proto, index, op, layouts)
        if cut is None:
            continue
        w = open_witness(cut.SerializeToString())
        if w.session is None:
            witness = w if witness.session is None else witness
            continue
        witness, exact = w, exact and w.exact
        names = [i.name for i in cut.graph.input]
        for values, out in zip(golden, outputs, strict=True):
            feeds = {name: _dequantized(t, layouts[t.name], values[t.name])
                     for name, t in zip(names, _unique_inputs(op), strict=True)}
            try:
                (y,) = w.session.run(None, feeds)
            except Exception:   # an op onnxruntime cannot run alone stays unchecked
                break
            out[op.y.name] = ort_to_hwc(op.y, y)
    if witness.session is not None:
        witness = dataclasses.replace(witness, exact=exact)
    return OpWitness(outputs, witness)
