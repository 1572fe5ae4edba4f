"""Load a quantized ONNX model, validate it and convert it to the integer IR."""

from __future__ import annotations

import collections
import dataclasses
import os
import pathlib

import numpy as np
import onnx
import onnx.external_data_helper
import onnx.numpy_helper
import onnx.shape_inference

from codesign import ir
from codesign.errors import InputError, one_line
from codesign.frontend import limits, qonnx
from codesign.frontend.context import Context
from codesign.frontend.layout1d import channels_first_tensors
from codesign.frontend.ops import OPS, op_key
from codesign.frontend.resample_ops import fold_pads
from codesign.frontend.values import Constant, Dequantized, FloatInput, Quantized

__all__ = ["load_model", "one_inference"]

#: Ops whose presence means the model is quantized at all (a float model has none of them).
_QUANTIZATION_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
                     "com.microsoft.QGemm", "ConvInteger", "MatMulInteger",
                     "DynamicQuantizeLinear", "com.microsoft.QLinearAdd",
                     "com.microsoft.QLinearAveragePool", "com.microsoft.QLinearGlobalAveragePool",
                     "com.microsoft.QLinearConcat", "com.microsoft.QLinearSigmoid",
                     "com.microsoft.QLinearLeakyRelu", "com.microsoft.QLinearMul", *qonnx.OPS}

#: Dynamic quantization's ops, refused with an explanation.
_INT32_OUTPUT_OPS = {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"}

#: Ops whose inputs 1 and 2 are the scale and zero point of their 8-bit input 0: they tell how
#: an 8-bit graph input is quantized.
_INPUT_QPARAMS = {"DequantizeLinear", "QLinearConv", "QLinearMatMul", "com.microsoft.QGemm",
                  "com.microsoft.QLinearAdd", "com.microsoft.QLinearAveragePool",
                  "com.microsoft.QLinearGlobalAveragePool", "com.microsoft.QLinearSigmoid",
                  "com.microsoft.QLinearLeakyRelu", "com.microsoft.QLinearMul"}


def load_model(model: str | os.PathLike[str] | bytes) -> ir.Graph:
    """Load a quantized ONNX model (a path or the file's bytes) as an integer :class:`ir.Graph`.

    Parameters
    ----------
    model
        Path of an ``.onnx`` file, or its contents.

    Returns
    -------
    ir.Graph
        Ops in execution order. A symbolic batch is fixed to 1. A fixed batch N > 1 of a
        row-wise graph (``[N, K]`` inputs through matrix products) is N rows of one inference;
        of any other graph, N inferences (the bindings' ``batch``).

    Raises
    ------
    InputError
        If the file is not a valid ONNX model, the model is not quantized, uses unsupported
        ops or shapes, or is quantized in a way the NPU cannot compute exactly.
    """
    proto, name = _read(model)
    _check_quantized(proto, name)
    _check_attributes(proto, name)
    # A file's stem names the graph as users know it; bytes only have the exporter's name.
    graph_name = (proto.graph.name or "model") if isinstance(model, bytes) else limits.printable(
        pathlib.Path(model).stem)
    batch, rank = _data_batch(proto, name)
    if batch > 1 and rank == 2:
        # [N, K] inputs: try the graph as N rows of one inference (row-wise graphs only).
        try:
            return _load(_copy(proto), name, graph_name, 1)
        except InputError:
            pass
    return _load(proto, name, graph_name, batch)


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def _infer(proto: onnx.ModelProto, name: str) -> onnx.ModelProto:
    try:
        return onnx.shape_inference.infer_shapes(proto, check_type=True, strict_mode=True)
    # onnx raises ValueError for fields its C++ cannot read (e.g. unknown tensor types).
    except (onnx.shape_inference.InferenceError, ValueError) as e:
        raise InputError(f"{name}: ONNX shape inference failed: {one_line(e)}") from None


def _load(proto: onnx.ModelProto, name: str, graph_name: str, batch: int) -> ir.Graph:
    """Convert ``proto`` with its data inputs' fixed batch ``batch`` > 1 run as that many
    inferences (1: every fixed size as it is, a symbolic batch as 1)."""
    declared = _declared_types(proto)
    original = _infer(_fix_batch(_copy(proto), name, 1), name) if batch > 1 else None
    if original is not None:
        _rebatch_reshapes(proto, original, batch)
    _fix_batch(proto, name, batch)
    proto = _infer(proto, name)
    _check_declared_types(declared, proto, name)
    limits.check_inferred(proto.graph, name)
    if original is not None:
        _check_batch_free(original, proto, batch, name)
    # Scales are data: float32 overflow to inf and underflow to 0 are the IEEE results that the
    # handlers' checks then refuse, not errors (nor warnings) of their own.
    with np.errstate(all="ignore"):
        return _convert(proto, name, graph_name, batch)


def one_inference(proto: onnx.ModelProto, batch: int) -> None:
    """Make ``proto``, a model with a fixed batch ``batch`` > 1 that the frontend runs as that
    many inferences, the model of one inference, in place (as the frontend reads it): its data
    inputs' batch and its Reshapes' fixed batch become 1."""
    name = "the model"
    _rebatch_reshapes(proto, _infer(_fix_batch(_copy(proto), name, 1), name), batch)
    _fix_batch(proto, name, batch)


def _rebatch_reshapes(proto: onnx.ModelProto, original: onnx.ModelProto, batch: int) -> None:
    """Give each Reshape of a batch-``batch`` tensor to a constant shape that starts with
    ``batch`` (an exporter's fixed batch, e.g. dynamo's ``x.view(x.size(0), -1)``) the shape of
    one inference (axis 0 = 1), in a new initializer."""
    shapes = {v.name: _shape(v) for v in [*original.graph.value_info, *original.graph.input]}
    initializers = {i.name: i for i in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type != "Reshape" or node.domain not in ("", "ai.onnx") or len(node.input) < 2:
            continue
        source, target = shapes.get(node.input[0]), initializers.get(node.input[1])
        if source is None or target is None or source[:1] != (batch,):
            continue
        dims = onnx.numpy_helper.to_array(target).copy()
        if dims.ndim != 1 or not dims.size or dims[0] != batch:
            continue
        dims[0] = 1
        fixed = f"{node.input[1]}__one_inference"
        if fixed not in initializers:
            initializers[fixed] = onnx.numpy_helper.from_array(dims, fixed)
            proto.graph.initializer.append(initializers[fixed])
        node.input[1] = fixed


def _check_batch_free(original: onnx.ModelProto, single: onnx.ModelProto, batch: int,
                      name: str) -> None:
    """Refuse a fixed-batch model whose tensors are not those of one inference with a leading
    batch axis (e.g. a Reshape to a fixed batch, or an op across the batch): running it as
    ``batch`` inferences would compute another model."""
    shapes = {v.name: _shape(v) for v in [*original.graph.value_info, *original.graph.output]}
    data = {v.name for v in _data_inputs(original)}
    for node in original.graph.node:
        if data.intersection(node.input):
            data.update(o for o in node.output if o)
    for tensor, shape in shapes.items():
        if tensor in data and shape and shape[0] != batch:
            raise InputError(
                f"{name}: tensor {limits.printable(tensor)!r} is {list(shape)} in a model of "
                f"batch {batch}; the graph mixes its batch (e.g. a Reshape across it): export "
                "it with batch 1 or a symbolic batch")
    for value in [*single.graph.value_info, *single.graph.output]:
        one, full = _shape(value), shapes.get(value.name)
        if one is None or full is None or one == full:
            continue
        if not (one[:1] == (1,) and full[:1] == (batch,) and one[1:] == full[1:]):
            raise InputError(
                f"{name}: tensor {limits.printable(value.name)!r} is {list(full)} at the "
                f"model's batch of {batch} but {list(one)} for one inference; the graph mixes "
                "its batch (e.g. a Reshape to a fixed batch): export it with batch 1 or a "
                "symbolic batch")


_A = onnx.AttributeProto
#: The type of every attribute the op handlers read. onnx.checker checks the default domain's
#: against their schemas; the com.microsoft ops have none in onnx, and onnxruntime refuses a
#: mistyped one where the handlers would read e.g. a float 1.0 as true.
_ATTRIBUTE_TYPES = {
    "transA": _A.INT, "transB": _A.INT, "alpha": _A.FLOAT, "beta": _A.FLOAT,
    "group": _A.INT, "channels_last": _A.INT, "ceil_mode": _A.INT, "count_include_pad": _A.INT,
    "storage_order": _A.INT, "keepdims": _A.INT, "allowzero": _A.INT, "axis": _A.INT,
    "auto_pad": _A.STRING, "kernel_shape": _A.INTS, "strides": _A.INTS, "pads": _A.INTS,
    "dilations": _A.INTS, "perm": _A.INTS, "axes": _A.INTS,
}
#: Attributes that are flags: 0 or 1 (onnxruntime refuses other values of these).
_FLAGS = {"transA", "transB", "channels_last", "ceil_mode", "count_include_pad",
          "storage_order", "keepdims", "allowzero"}


def _check_attributes(proto: onnx.ModelProto, name: str) -> None:
    """Refuse an attribute of the wrong type, or a flag other than 0 or 1."""
    for node in proto.graph.node:
        for attribute in node.attribute:
            want = _ATTRIBUTE_TYPES.get(attribute.name)
            where = (f"{name}: {limits.printable(node.op_type)} node "
                     f"{limits.printable(node.name)!r}: attribute {attribute.name}")
            if want is not None and attribute.type != want:
                raise InputError(f"{where} must be {_A.AttributeType.Name(want)}, not "
                                 f"{_A.AttributeType.Name(attribute.type)}")
            if attribute.name in _FLAGS and attribute.i not in (0, 1):
                raise InputError(f"{where} must be 0 or 1, not {attribute.i}")


def _declared_types(proto: onnx.ModelProto) -> dict[str, int]:
    """The element types the model's ``value_info`` declares (which :func:`_fix_batch` drops
    so that inference redoes their shapes)."""
    return {v.name: v.type.tensor_type.elem_type for v in proto.graph.value_info
            if v.type.HasField("tensor_type") and v.type.tensor_type.elem_type}


def _check_declared_types(declared: dict[str, int], proto: onnx.ModelProto, name: str) -> None:
    """Refuse a ``value_info`` type that the graph contradicts: onnxruntime refuses such a
    model, so nothing could witness what the NPU computes for it."""
    for value in proto.graph.value_info:
        want = declared.get(value.name)
        got = value.type.tensor_type.elem_type
        if want is not None and got and want != got:
            raise InputError(
                f"{name}: value_info declares {limits.printable(value.name)!r} as "
                f"{onnx.TensorProto.DataType.Name(want)}, but the graph computes it as "
                f"{onnx.TensorProto.DataType.Name(got)}")


def _check_output_type(value: onnx.ValueInfoProto, binding: ir.IOBinding, name: str) -> None:
    """Refuse a graph output declared with another element type than the graph computes for it
    (shape inference cannot tell past a com.microsoft op; onnxruntime refuses such a model)."""
    declared = value.type.tensor_type.elem_type
    computed = (onnx.TensorProto.FLOAT if binding.is_float else
                onnx.TensorProto.INT8 if binding.tensor.signed else onnx.TensorProto.UINT8)
    if declared and declared != computed:
        raise InputError(f"{name}: output {limits.printable(value.name)!r} is declared "
                         f"{onnx.TensorProto.DataType.Name(declared)}, but the graph computes "
                         f"{onnx.TensorProto.DataType.Name(computed)}")


def _read(model: str | os.PathLike[str] | bytes) -> tuple[onnx.ModelProto, str]:
    """The parsed and checked model, and how to name it in messages.

    The limits come first: the file's size before it is read, then every declared size and
    data length of the protobuf before its external data is read or any tensor is built.
    """
    name = "the model" if isinstance(model, bytes) else limits.printable(str(model))
    if isinstance(model, bytes):
        size, base_dir = len(model), None
    else:
        path = pathlib.Path(model)
        if not path.is_file():
            raise InputError(f"{name}: " + ("is a directory; give the model's .onnx file"
                                            if path.is_dir() else "no such file"))
        size, base_dir = path.stat().st_size, path.parent
    limits.check_model_bytes(size, name)
    try:
        proto = (onnx.load_model_from_string(model) if isinstance(model, bytes)
                 else onnx.load(model, load_external_data=False))
    # protobuf and onnx raise assorted types for corrupt or truncated files; all mean the same.
    except Exception as e:
        raise InputError(f"{name} is not a valid ONNX file: {one_line(e)}") from None
    limits.check_proto(proto, name, base_dir, size)
    if base_dir is not None:
        # check_proto proved every external tensor's file, offset and length; onnx refuses
        # what else it does not read (a symbolic link, even to a file beside the model).
        try:
            onnx.external_data_helper.load_external_data_for_model(proto, str(base_dir))
        except (onnx.checker.ValidationError, OSError) as e:
            raise InputError(f"{name}: its external data cannot be read: {one_line(e)}; keep "
                             "the data as a regular file beside the model") from None
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise InputError(f"{name} is not a valid ONNX file: {one_line(e)}") from None
    if not proto.graph.node:
        raise InputError(f"{name} is not a valid ONNX file: the graph has no nodes")
    return proto, name


def _check_quantized(proto: onnx.ModelProto, name: str) -> None:
    """Refuse float models and unsupported ops, naming every unsupported op at once."""
    keys = [op_key(node) for node in proto.graph.node]
    integer_inputs = [i for i in proto.graph.input if i.type.tensor_type.elem_type in
                      (onnx.TensorProto.UINT8, onnx.TensorProto.INT8)]
    if not integer_inputs and not _QUANTIZATION_OPS.intersection(keys):
        raise InputError(f"{name} is a float model; quantize it first (onnxruntime.quantization."
                         "quantize_static, QDQ or QOperator format, int8 weights)")
    unsupported = collections.Counter(k for k in keys if k not in OPS)
    if unsupported:
        listed = ", ".join(f"{k} (×{n})" if n > 1 else k for k, n in sorted(unsupported.items()))
        message = f"{name} uses ops that codesign does not support: {listed}"
        if _INT32_OUTPUT_OPS.intersection(unsupported):
            message += ("; ConvInteger/MatMulInteger produce int32 outputs (dynamic quantization) "
                        "and only ops with requantized 8-bit outputs are supported for now: "
                        "quantize with onnxruntime's quantize_static")
        raise InputError(message)


#: Inputs of these ops (by index) that are parameters (scales, zero points, weights, biases,
#: shapes, bounds), not data; ``None``: every input but input 0.
_PARAMETER_INPUTS: dict[str, tuple[int, ...] | None] = {
    "QuantizeLinear": None, "DequantizeLinear": None, "Conv": None, "Gemm": None,
    "MatMul": None, "QLinearConv": None, "QLinearMatMul": None, "com.microsoft.QGemm": None,
    "ConvInteger": None, "MatMulInteger": None, "Reshape": None, "Squeeze": None,
    "Unsqueeze": None, "Clip": None, "ReduceMean": None,
    "com.microsoft.QLinearAveragePool": None, "com.microsoft.QLinearGlobalAveragePool": None,
    "com.microsoft.QLinearAdd": (1, 2, 4, 5, 6, 7),
}


def _data_inputs(proto: onnx.ModelProto) -> list[onnx.ValueInfoProto]:
    """The graph inputs that some node reads as data (an activation), not as a parameter: the
    batch rules apply to those only, never to a scale, zero point or weight given as an input
    (which is refused later: it must be a constant)."""
    data: set[str] = {o.name for o in proto.graph.output}
    for node in proto.graph.node:
        key = op_key(node)
        params = _PARAMETER_INPUTS.get(key, ())
        if key == "com.microsoft.QLinearConcat":
            params = tuple(i for i in range(len(node.input)) if i < 2 or (i - 2) % 3)
        for index, input_name in enumerate(node.input):
            if not (index > 0 if params is None else index in params):
                data.add(input_name)
    initializers = {i.name for i in proto.graph.initializer}
    return [v for v in proto.graph.input if v.name in data and v.name not in initializers]


def _data_batch(proto: onnx.ModelProto, name: str) -> tuple[int, int]:
    """``(N, rank)``: the fixed batch N > 1 of the data inputs (1 when none has one) and the
    rank of those that do. Refuses a symbolic dimension other than the batch, and inputs
    with different fixed batches."""
    fixed: dict[int, list[int]] = {}
    for value in _data_inputs(proto):
        dims = value.type.tensor_type.shape.dim
        for axis, dim in enumerate(dims):
            if not dim.HasField("dim_value") and axis > 0:
                raise InputError(
                    f"{name}: input {value.name!r} has symbolic dimension "
                    f"{dim.dim_param or '?'!r} (axis {axis}); only the batch (axis 0) may be "
                    "symbolic: export with fixed sizes")
        if len(dims) >= 2 and dims[0].HasField("dim_value") and dims[0].dim_value > 1:
            fixed.setdefault(dims[0].dim_value, []).append(len(dims))
    if len(fixed) > 1:
        raise InputError(f"{name}: inputs have different batches {sorted(fixed)}; give them one "
                         "batch")
    if not fixed:
        return 1, 0
    ((batch, ranks),) = fixed.items()
    return batch, max(ranks)


def _fix_batch(proto: onnx.ModelProto, name: str, batch: int) -> onnx.ModelProto:
    """Fix a symbolic batch of the data inputs (axis 0 of 2 dimensions or more) to 1, and a
    fixed batch of ``batch`` > 1 to 1 too (run as that many inferences); returns ``proto``."""
    for value in _data_inputs(proto):
        dims = value.type.tensor_type.shape.dim
        if len(dims) >= 2 and (not dims[0].HasField("dim_value")
                               or batch > 1 and dims[0].dim_value == batch):
            dims[0].dim_value = 1
    # Shapes recorded by the exporter still carry the symbolic batch; let inference redo them.
    del proto.graph.value_info[:]
    for value in proto.graph.output:
        value.type.tensor_type.ClearField("shape")
    return proto


def _shape(value: onnx.ValueInfoProto) -> tuple[int, ...] | None:
    t = value.type.tensor_type
    if not t.HasField("shape") or not all(d.HasField("dim_value") for d in t.shape.dim):
        return None
    return tuple(d.dim_value for d in t.shape.dim)


def _input_qparams(ctx: Context, graph: onnx.GraphProto, name: str) -> Quantized:
    """An 8-bit graph input, quantized as its first consumer says."""
    for node in graph.node:
        if node.input and node.input[0] == name and op_key(node) in _INPUT_QPARAMS:
            scale, zero_point, signed = ctx.scalar_qparams(node, 1, "input")
            break
    else:
        raise InputError(f"{ctx.model_name}: 8-bit input {name!r} is not consumed by "
                         "DequantizeLinear or a QLinear op, so its scale is unknown")
    value = next(v for v in graph.input if v.name == name)
    shape = _shape(value)
    if shape is None:
        raise InputError(f"{ctx.model_name}: input {name!r} has no fixed shape; export it with "
                         "fixed sizes")
    if signed != (value.type.tensor_type.elem_type == onnx.TensorProto.INT8):
        raise InputError(f"{ctx.model_name}: input {name!r} and its zero point differ in type")
    t = ctx.tensor(node, name, shape, signed, scale, zero_point)
    ctx.inputs[name] = ir.IOBinding(name, shape, False, t, batch=ctx.batch)
    return Quantized(t, shape)


def _convert(proto: onnx.ModelProto, name: str, graph_name: str, batch: int) -> ir.Graph:
    graph = proto.graph
    ctx = Context(model_name=name, batch=batch)
    for value in [*graph.value_info, *graph.output]:
        shape = _shape(value)
        if shape is not None:
            ctx.inferred[value.name] = shape
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             [*graph.value_info, *graph.output, *graph.input]
             if v.type.tensor_type.HasField("shape")}
    layouts = channels_first_tensors(graph, ranks, name)
    ctx.channels_first, ctx.undecided = layouts.channels_first, layouts.undecided
    for node in graph.node:
        ctx.uses.update(i for i in node.input if i)
    ctx.uses.update(o.name for o in graph.output)
    for init in graph.initializer:
        ctx.values[init.name] = Constant(onnx.numpy_helper.to_array(init))
    # Inputs read only as parameters (scales, zero points, weights: onnx's backend tests give
    # them as inputs) are no model inputs of the NPU; the handlers refuse them as non-constants.
    data = {v.name for v in _data_inputs(proto)}
    for value in graph.input:
        if value.name not in ctx.values and value.name not in data:
            ctx.values[value.name] = FloatInput(value.name, _shape(value) or ())
    # Float inputs first: an 8-bit input's scale may itself be a (float) graph input, and the
    # error should then say that it must be a constant.
    ctx.inputs.update((v.name, None) for v in graph.input if v.name not in ctx.values)
    float_first = sorted(graph.input,
                         key=lambda v: v.type.tensor_type.elem_type != onnx.TensorProto.FLOAT)
    for value in float_first:
        if value.name in ctx.values:
            continue
        elem_type = value.type.tensor_type.elem_type
        if elem_type == onnx.TensorProto.FLOAT:
            shape = _shape(value)
            if shape is None:
                raise InputError(f"{name}: input {value.name!r} has no fixed shape; export it "
                                 "with fixed sizes")
            ctx.values[value.name] = FloatInput(value.name, shape)
        elif elem_type in (onnx.TensorProto.UINT8, onnx.TensorProto.INT8):
            ctx.values[value.name] = _input_qparams(ctx, graph, value.name)
        else:
            raise InputError(f"{name}: input {value.name!r} is "
                             f"{onnx.helper.tensor_dtype_to_np_dtype(elem_type)}; inputs must be "
                             "float32, uint8 or int8")

    for node in graph.node:
        OPS[op_key(node)](ctx, node)

    inputs = []
    for input_name, binding in ctx.inputs.items():
        if binding is None:
            raise InputError(f"{name}: float input {input_name!r} is not quantized by a "
                             "QuantizeLinear")
        inputs.append(binding)
    outputs = []
    for value in graph.output:
        result = ctx.values.get(value.name)
        if isinstance(result, Quantized | Dequantized):
            tensor = result.tensor
            # A reinterpreting layout op (e.g. [1, C, L] → Transpose → [1, L, C]) leaves the
            # producer's tensor under another ONNX layout: the binding maps the output's.
            first = len(result.onnx_shape) == 3 and value.name in ctx.channels_first
            if tensor.channels_first != first:
                tensor = dataclasses.replace(tensor, channels_first=first)
            outputs.append(ir.IOBinding(value.name, result.onnx_shape,
                                        isinstance(result, Dequantized), tensor, batch=batch))
        else:
            raise InputError(f"{name}: output {value.name!r} is neither an 8-bit tensor nor the "
                             "DequantizeLinear of one")
        _check_output_type(value, outputs[-1], name)
    ctx.ops[:] = fold_pads(ctx.ops, {b.tensor.name for b in outputs})
    for op in ctx.ops:
        if (isinstance(op, ir.Conv | ir.AvgPool | ir.Add | ir.Mul | ir.ConvTranspose)
                and op.clamp is not None
                and op.clamp[0] > op.clamp[1]):
            raise InputError(f"{name}: the ReLU/Clip after {op.name!r} leaves no output values")
    return ir.Graph(graph_name, tuple(inputs), tuple(outputs), tuple(ctx.ops))

