"""What the frontend knows about each ONNX tensor while it walks the graph.

The frontend evaluates the ONNX graph symbolically: every tensor name maps to one of the value
kinds below. A QDQ model's float subgraph ``DequantizeLinear → Conv → (Relu) → QuantizeLinear``
becomes :class:`Dequantized` → :class:`Accumulator` → (narrower clamp) → :class:`Quantized`, at
which point the IR convolution is emitted; a QOperator model's ``QLinearConv`` takes the same
path in one node. Average pools, Add and Concat on dequantized tensors are an :class:`Elementwise`
until their QuantizeLinear (QOperator's ``QLinearAdd`` etc. again in one node). Float tensors that
are not one of these kinds never reach the IR.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from codesign import ir


@dataclasses.dataclass(frozen=True)
class Constant:
    """An initializer or a ``Constant`` node's value."""
    value: np.ndarray


@dataclasses.dataclass(frozen=True)
class DequantizedConstant:
    """``DequantizeLinear`` of a constant: a quantized weight or bias (``axis`` normalised)."""
    q: np.ndarray
    scale: np.ndarray
    zero_point: np.ndarray
    axis: int


@dataclasses.dataclass(frozen=True)
class FloatInput:
    """A float graph input; only a QuantizeLinear may consume it (or a layout op that only
    reinterprets it: ``input_shape`` is then the graph input's own shape)."""
    name: str
    onnx_shape: tuple[int, ...]
    input_shape: tuple[int, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Quantized:
    """An 8-bit activation tensor of the ONNX graph, mapped to an IR tensor."""
    tensor: ir.Tensor
    onnx_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Dequantized:
    """The float ``DequantizeLinear`` of an 8-bit activation (a QDQ model's float view)."""
    tensor: ir.Tensor
    onnx_shape: tuple[int, ...]


@dataclasses.dataclass(frozen=True)
class Accumulator:
    """The float output of a convolution / matrix product on quantized operands, not yet
    requantized: everything of an :class:`ir.Conv` except the output tensor.

    ``weight`` is already in IR layout ``[KH, KW, Cin / groups, Cout]``; ``w_scale`` is float32
    ``[Cout]``. ``low``/``high`` are real-valued bounds of fused ReLU/Clip (``None``: unbounded).
    """
    x: ir.Tensor
    weight: np.ndarray
    w_zero_point: int
    w_scale: np.ndarray
    bias: np.ndarray
    stride: tuple[int, int]
    pads: tuple[int, int, int, int]
    onnx_shape: tuple[int, ...]
    name: str
    groups: int = 1
    low: float | None = None
    high: float | None = None
    #: A ConvTranspose's: ``weight`` is ``[KH, KW, Cin, Cout]`` and ``pads[:2]`` the output's
    #: offset into the full result (:class:`ir.ConvTranspose`).
    transposed: bool = False


@dataclasses.dataclass(frozen=True)
class Elementwise:
    """The float output of an average pool, Add, Sub, Mul or Concat on 8-bit tensors, not yet
    requantized.

    ``kind`` is the IR op it becomes (:attr:`ir.OpKind.AVGPOOL`, ``ADD``, ``MUL`` or ``CONCAT``);
    ``inputs`` its 8-bit operands; ``kernel``/``stride`` only matter for pooling. ``low``/``high``
    are as for :class:`Accumulator`.
    """
    kind: ir.OpKind
    inputs: tuple[ir.Tensor, ...]
    onnx_shape: tuple[int, ...]
    name: str
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    low: float | None = None
    high: float | None = None
    #: Add/Mul: the second operand's integers when it is a constant (:attr:`ir.Add.b_value`).
    b_value: np.ndarray | None = None
    #: Add: the signs of the operands' ratios (a Sub negates one).
    signs: tuple[int, int] = (1, 1)


Value = (Constant | DequantizedConstant | FloatInput | Quantized | Dequantized | Accumulator
         | Elementwise)
