"""The state of one ONNX → IR conversion, shared by the op handlers."""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import onnx

from codesign import ir
from codesign.errors import InputError
from codesign.frontend import limits, ranges
from codesign.frontend.values import (
    Accumulator,
    Constant,
    Dequantized,
    Elementwise,
    FloatInput,
    Quantized,
    Value,
)


def hwc_shape(onnx_shape: tuple[int, ...], what: str,
              channels_first: bool = False) -> tuple[int, int, int]:
    """The IR ``(H, W, C)`` of one inference's ONNX activation shape (see :mod:`codesign.ir`);
    ``channels_first`` says that a 3-D shape is a 1-D activation ``[1, C, L]``."""
    match onnx_shape:
        case (1, c, h, w):
            return (h, w, c)
        case (1, c, length) if channels_first:
            return (1, length, c)
        case (1, m, k):
            return (1, m, k)
        case (m, k):
            return (1, m, k)
    raise InputError(f"{what} has shape {list(onnx_shape)}; only [1, C, H, W], [1, C, L], "
                     "[1, M, K] and [M, K] activations are supported")


def quantize_scalar(real: float, tensor: ir.Tensor) -> int:
    """``QuantizeLinear`` of one real value to ``tensor``'s quantization (float32 divide, RNE)."""
    q = float(np.rint(np.float32(real) / np.float32(tensor.scale))) + tensor.zero_point
    return int(min(max(q, tensor.qmin), tensor.qmax))


def is_normal_scale(scale: np.ndarray | np.float32) -> bool:
    """Whether every element of ``scale`` is a positive, finite, normal float32.

    Subnormal scales lose bits, and runtimes that flush subnormals to zero disagree on them.
    """
    s = np.asarray(scale, np.float32)
    return bool(np.all(np.isfinite(s) & (s >= np.finfo(np.float32).smallest_normal)))


@dataclasses.dataclass
class Context:
    """Everything the handlers read and write while one graph is converted.

    Attributes
    ----------
    model_name
        Used in error messages.
    values
        ONNX tensor name → what the frontend knows about it.
    inferred
        ONNX tensor name → shape from ONNX shape inference, where it knows one.
    uses
        ONNX tensor name → number of node inputs and graph outputs that read it.
    ops
        The IR ops emitted so far, in execution order.
    inputs
        The graph inputs' bindings, in ONNX graph input order (``None`` until bound).
    """
    model_name: str
    values: dict[str, Value] = dataclasses.field(default_factory=dict)
    inferred: dict[str, tuple[int, ...]] = dataclasses.field(default_factory=dict)
    uses: collections.Counter[str] = dataclasses.field(default_factory=collections.Counter)
    ops: list[ir.Op] = dataclasses.field(default_factory=list)
    inputs: dict[str, ir.IOBinding | None] = dataclasses.field(default_factory=dict)
    #: Names of the 3-D tensors that are 1-D activations [1, C, L] (see frontend.layout1d).
    channels_first: set[str] = dataclasses.field(default_factory=set)
    #: The tensors whose layout no op decided, each with its group (frontend.layout1d).
    undecided: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)
    #: A fixed batch run as that many inferences (the bindings' ``batch``), else 1.
    batch: int = 1

    def error(self, node: onnx.NodeProto, message: str) -> InputError:
        """An :class:`InputError` about ``node`` (returned, for the caller to raise)."""
        return InputError(f"{self.model_name}: {node.op_type} node {node.name!r}: {message}")

    def layer_error(self, layer: str, output: str, message: str) -> InputError:
        """An :class:`InputError` about the IR op ``layer`` (a node name, maybe empty) that
        writes the tensor ``output``."""
        return InputError(f"{self.model_name}: layer {layer!r} (output {output!r}): {message}")

    def value(self, node: onnx.NodeProto, index: int) -> Value | None:
        """The value of ``node``'s input ``index``; ``None`` for an absent optional input."""
        if index >= len(node.input) or not node.input[index]:
            return None
        try:
            return self.values[node.input[index]]
        except KeyError:
            raise self.error(node, f"input {node.input[index]!r} is not produced by any "
                                   "node, initializer or graph input") from None

    def constant(self, node: onnx.NodeProto, index: int, what: str) -> np.ndarray | None:
        """Input ``index`` of ``node``, which must be a constant (``None`` when absent)."""
        value = self.value(node, index)
        if value is None:
            return None
        if not isinstance(value, Constant):
            raise self.error(node, f"{what} must be a constant initializer")
        return value.value

    def scalar_qparams(self, node: onnx.NodeProto, scale_index: int,
                       what: str) -> tuple[np.float32, int, bool]:
        """A per-tensor ``(scale, zero_point, signed)`` from inputs ``scale_index`` and the next.

        The zero point's type gives the 8-bit type (uint8 when it is absent, as in ONNX).
        """
        scale = self.constant(node, scale_index, f"{what} scale")
        zero_point = self.constant(node, scale_index + 1, f"{what} zero point")
        if scale is None or scale.size != 1:
            raise self.error(node, f"{what} needs a single (per-tensor) scale")
        if scale.dtype != np.float32:
            # The requantization multipliers are defined on float32 scales; another type would
            # round them differently from the runtimes.
            raise self.error(node, f"{what} scale is {scale.dtype}; only float32 scales are "
                                   "supported")
        if zero_point is None:
            zero_point = np.zeros((), np.uint8)
        if zero_point.size != 1 or zero_point.dtype not in (np.uint8, np.int8):
            raise self.error(node, f"{what} zero point must be one uint8 or int8 value, not "
                                   f"{zero_point.dtype} of shape {list(zero_point.shape)}")
        scale32 = np.float32(scale.reshape(()))
        if not is_normal_scale(scale32):
            raise self.error(node, f"{what} scale must be a positive, finite, normal float32 "
                                   f"(>= {np.finfo(np.float32).smallest_normal}), not {scale32}")
        return scale32, int(zero_point.reshape(())), zero_point.dtype == np.int8

    def check_shape(self, node: onnx.NodeProto, name: str, shape: tuple[int, ...]) -> None:
        """Refuse a model whose shape inference disagrees with the frontend's own shapes."""
        inferred = self.inferred.get(name)
        if inferred is not None and inferred != shape:
            raise self.error(node, f"output {name!r} has shape {list(inferred)} in the model but "
                                   f"{list(shape)} by the operator's definition")

    def tensor(self, node: onnx.NodeProto, name: str, onnx_shape: tuple[int, ...],
               signed: bool, scale: np.float32, zero_point: int) -> ir.Tensor:
        """A new IR tensor for the 8-bit ONNX tensor ``name``."""
        self.check_shape(node, name, onnx_shape)
        problem = limits.check_activation(onnx_shape, f"tensor {name!r}")
        if problem is not None:
            raise self.error(node, problem)
        first = len(onnx_shape) == 3 and name in self.channels_first
        return ir.Tensor(name, hwc_shape(onnx_shape, f"tensor {name!r}", first), signed,
                         np.float32(scale), zero_point, first)

    def bind_float_input(self, node: onnx.NodeProto, value: FloatInput, name: str,
                         scale: np.float32, zero_point: int, signed: bool,
                         clamp: tuple[int, int] | None = None) -> ir.Tensor:
        """The IR tensor ``name`` that quantizes the float graph input ``value`` (its
        QuantizeLinear or QONNX ``Quant``), bound as the graph's input; ``clamp`` narrows the
        quantization's integer range (a 2–7-bit input quantizer)."""
        if self.inputs.get(value.name) is not None:
            raise self.error(node, f"graph input {value.name!r} is quantized more than once")
        t = self.tensor(node, name, value.onnx_shape, signed, scale, zero_point)
        shape = value.onnx_shape if value.input_shape is None else value.input_shape
        if value.input_shape is not None and t.channels_first != (
                len(shape) == 3 and value.name in self.channels_first):
            raise self.error(node, f"graph input {value.name!r} is reshaped between a 1-D "
                                   "activation [1, C, L] and rows [1, M, K] before it is "
                                   "quantized; quantize it first")
        self.inputs[value.name] = ir.IOBinding(value.name, shape, True, t, batch=self.batch,
                                                 clamp=clamp)
        return t

    def quantized_input(self, node: onnx.NodeProto, index: int, scale_index: int) -> Quantized:
        """Input ``index``, an 8-bit activation quantized as inputs ``scale_index``/+1 say."""
        value = self.value(node, index)
        if not isinstance(value, Quantized):
            raise self.error(node, f"input {node.input[index]!r} must be an 8-bit activation")
        scale, zero_point, signed = self.scalar_qparams(node, scale_index, "input")
        t = value.tensor
        if (scale, zero_point, signed) != (t.scale, t.zero_point, t.signed):
            raise self.error(node, f"input {t.name!r} is quantized differently by its producer")
        return value

    def requantize(self, node: onnx.NodeProto, value: Accumulator | Elementwise, name: str,
                   scale: np.float32, zero_point: int, signed: bool) -> Quantized:
        """Emit the IR op that turns ``value`` into the 8-bit tensor ``name``."""
        y = self.tensor(node, name, value.onnx_shape, signed, scale, zero_point)
        low = y.qmin if value.low is None else quantize_scalar(value.low, y)
        high = y.qmax if value.high is None else quantize_scalar(value.high, y)
        clamp = None if (low, high) == (y.qmin, y.qmax) else (low, high)
        y_scale = np.float32(scale)
        op: ir.Op
        if isinstance(value, Accumulator):
            x_scale = np.float32(value.x.scale)
            problem = ranges.scale_product_problem(x_scale, value.w_scale)
            if problem is not None:
                raise self.layer_error(value.name, name, problem)
            multiplier = ((x_scale * value.w_scale).astype(np.float32) / y_scale).astype(
                np.float32)
            if value.transposed:
                op = ir.ConvTranspose(
                    x=value.x, y=y, weight=value.weight, w_zero_point=value.w_zero_point,
                    bias=value.bias, multiplier=multiplier, stride=value.stride,
                    pads=value.pads[:2], clamp=clamp, name=value.name)
            else:
                op = ir.Conv(x=value.x, y=y, weight=value.weight,
                             w_zero_point=value.w_zero_point, bias=value.bias,
                             multiplier=multiplier, stride=value.stride, pads=value.pads,
                             clamp=clamp, name=value.name, groups=value.groups)
        elif value.kind is ir.OpKind.AVGPOOL:
            (x,) = value.inputs
            n = np.float32(value.kernel[0] * value.kernel[1])
            op = ir.AvgPool(x, y, value.kernel, value.stride,
                            np.float32(np.float32(x.scale / y_scale) / n), clamp, value.name)
        elif value.kind is ir.OpKind.ADD:
            a, b = value.inputs
            try:
                a_mult, b_mult, shift = ir.add_multipliers(a.scale, b.scale, y_scale)
            except ValueError as e:
                raise self.layer_error(value.name, name, str(e)) from None
            sa, sb = value.signs
            op = ir.Add(a, b, y, sa * a_mult, sb * b_mult, shift, clamp, value.name,
                        value.b_value)
        elif value.kind is ir.OpKind.MUL:
            a, b = value.inputs
            op = ir.Mul(a, b, y, ir.mul_multiplier(a.scale, b.scale, y_scale), clamp, value.name,
                        value.b_value)
        else:
            if clamp is not None:
                raise self.error(node, "a ReLU/Clip after Concat is not supported; apply it to "
                                       "the inputs")
            op = ir.Concat(value.inputs, y,
                           tuple(np.float32(t.scale / y_scale) for t in value.inputs), value.name)
        problem = ranges.op_problem(op)
        if problem is not None:
            raise self.layer_error(op.name, name, problem)
        self.ops.append(op)
        return Quantized(y, value.onnx_shape)

    def narrow_producer(self, node: onnx.NodeProto, value: Quantized | Dequantized,
                        low: int | None, high: int | None) -> None:
        """Fold a ReLU/Clip on an 8-bit tensor (integer bounds ``low``/``high``) into the clamp
        of the op producing it (a convolution, average pool or Add).

        Only sound when nothing else reads the unclamped tensor.
        """
        t = value.tensor
        index = next((i for i, op in enumerate(self.ops)
                      if isinstance(op, ir.Conv | ir.AvgPool | ir.Add | ir.Mul | ir.ConvTranspose
                                    | ir.Lut)
                      and op.y is t), None)
        if index is None:
            if self.narrow_input(node, value, low, high):
                return
            raise self.error(node, "can only follow a convolution, matrix product, average pool, "
                                   "Add, Sub or Mul, or the QuantizeLinear of a graph input")
        op = self.ops[index]
        assert isinstance(op, ir.Conv | ir.AvgPool | ir.Add | ir.Mul | ir.ConvTranspose | ir.Lut)
        readers = {node.input[0], t.name}
        if any(self.uses[name] != 1 for name in readers) or any(
                r is t for o in self.ops for r in ir.op_inputs(o)):
            raise self.error(node, "the tensor before it is also used elsewhere; cannot fuse")
        if isinstance(op, ir.Lut):      # e.g. an integer Relu after QLinearSigmoid: clamp the table
            table = np.asarray(op.table).astype(np.int64).clip(
                t.qmin if low is None else low, t.qmax if high is None else high)
            self.ops[index] = dataclasses.replace(op, table=table.astype(t.numpy_dtype))
            return
        lo, hi = op.qrange
        lo = lo if low is None else max(lo, low)
        hi = hi if high is None else min(hi, high)
        self.ops[index] = dataclasses.replace(
            op, clamp=None if (lo, hi) == (t.qmin, t.qmax) else (lo, hi))

    def narrow_input(self, node: onnx.NodeProto, value: Quantized | Dequantized,
                     low: int | None, high: int | None) -> bool:
        """Fold a Clip on a graph input's 8-bit tensor (a Brevitas 2–7-bit input quantizer,
        ``QuantizeLinear → Clip(lo, hi) → DequantizeLinear``) into the input's clamp; whether
        ``value`` is a graph input's tensor.

        Only sound when nothing else reads the unclamped tensor.
        """
        t = value.tensor
        name, binding = next(((n, b) for n, b in self.inputs.items()
                              if b is not None and b.tensor is t), (None, None))
        if binding is None or name is None:
            return False
        if self.uses[node.input[0]] != 1 or any(r is t for o in self.ops
                                                for r in ir.op_inputs(o)):
            raise self.error(node, "the tensor before it is also used elsewhere; cannot fuse")
        lo, hi = binding.clamp if binding.clamp is not None else (t.qmin, t.qmax)
        lo = lo if low is None else max(lo, low)
        hi = hi if high is None else min(hi, high)
        if lo > hi:
            raise self.error(node, f"its bounds leave no values of input {name!r}")
        self.inputs[name] = dataclasses.replace(
            binding, clamp=None if (lo, hi) == (t.qmin, t.qmax) else (lo, hi))
        return True
