"""The integer IR: what the frontend produces and the golden model and compiler consume.

A :class:`Graph` is a list of ops in execution order over quantized tensors. Every tensor is one
inference's activation in logical HWC order (height, width, channels), 8-bit, with a per-tensor
scale and zero point. Weights, biases and requant multipliers are constants folded into the op
that uses them. Nothing here knows about the hardware.

Layout conventions
------------------
* ONNX NCHW activations map to HWC (batch dropped; the batch must be 1 per inference).
* A 2-D ``[1, K]`` tensor is ``(1, 1, K)``; a 3-D ``[1, M, K]`` is ``(1, M, K)``: rows of a
  matrix product are pixels, its columns are channels.
* :class:`Flatten` keeps ONNX's element order: its output channel ``i`` is element ``i`` of the
  input flattened in CHW order.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

__all__ = ["Tensor", "Conv", "MaxPool", "Flatten", "Op", "OpKind", "IOBinding", "Graph"]


@dataclasses.dataclass(frozen=True)
class Tensor:
    """A quantized 8-bit activation tensor (one inference).

    ``real = scale * (q - zero_point)``; ``signed`` selects int8 (True) or uint8 (False).
    """
    name: str
    shape: tuple[int, int, int]          # (H, W, C)
    signed: bool
    scale: np.float32
    zero_point: int

    @property
    def qmin(self) -> int:
        return -128 if self.signed else 0

    @property
    def qmax(self) -> int:
        return 127 if self.signed else 255

    @property
    def numpy_dtype(self) -> type:
        return np.int8 if self.signed else np.uint8


class OpKind(enum.Enum):
    """Every op the IR knows."""
    #: Quantized 2-D convolution (groups=1), also every Gemm/MatMul (as a 1×1 convolution):
    #: acc = Σ (x − x_zp)(w − w_zp) + bias; y = clamp(round(f32(acc)·M_c) + y_zp, lo, hi).
    CONV = "conv"
    #: Max pooling on the integers (input and output share scale and zero point).
    MAXPOOL = "maxpool"
    #: Layout-only reshape of (H, W, C) to (1, 1, C·H·W) in ONNX CHW order.
    FLATTEN = "flatten"


@dataclasses.dataclass(frozen=True)
class Conv:
    """Quantized convolution / fully connected layer.

    ``weight`` is int8 ``[KH, KW, Cin, Cout]``; ``bias`` int32 ``[Cout]``;
    ``multiplier`` float32 ``[Cout]`` is ``M_c = f32(f32(x_scale · w_scale[c]) / y_scale)``.
    ``pads`` is (top, left, bottom, right). ``clamp`` is the output range after fused
    ReLU/Clip, within the output dtype's range.
    """
    x: Tensor
    y: Tensor
    weight: np.ndarray
    w_zero_point: int
    bias: np.ndarray
    multiplier: np.ndarray
    stride: tuple[int, int] = (1, 1)
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    clamp: tuple[int, int] | None = None
    name: str = ""
    kind = OpKind.CONV

    @property
    def qrange(self) -> tuple[int, int]:
        return self.clamp if self.clamp is not None else (self.y.qmin, self.y.qmax)

    @property
    def macs(self) -> int:
        kh, kw, cin, cout = self.weight.shape
        return self.y.shape[0] * self.y.shape[1] * kh * kw * cin * cout


@dataclasses.dataclass(frozen=True)
class MaxPool:
    """Max pooling; out-of-bounds (padding) positions never win."""
    x: Tensor
    y: Tensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    pads: tuple[int, int, int, int] = (0, 0, 0, 0)
    name: str = ""
    kind = OpKind.MAXPOOL


@dataclasses.dataclass(frozen=True)
class Flatten:
    """(H, W, C) → (1, 1, H·W·C), elements in ONNX CHW order; the quantization is unchanged."""
    x: Tensor
    y: Tensor
    name: str = ""
    kind = OpKind.FLATTEN


Op = Conv | MaxPool | Flatten


@dataclasses.dataclass(frozen=True)
class IOBinding:
    """How a graph input/output relates to the ONNX model's own tensor.

    ``onnx_shape`` is the model's shape with the batch fixed to 1; ``is_float`` says whether the
    ONNX tensor is float32 (quantized/dequantized at the boundary with the tensor's scale and zero
    point, as QuantizeLinear/DequantizeLinear do) or the 8-bit integers themselves.
    """
    onnx_name: str
    onnx_shape: tuple[int, ...]
    is_float: bool
    tensor: Tensor

    def to_hwc(self, x: np.ndarray) -> np.ndarray:
        """One inference's ONNX-layout array → HWC array (same dtype)."""
        x = np.asarray(x).reshape(self.onnx_shape)
        if len(self.onnx_shape) == 4:
            return x[0].transpose(1, 2, 0)
        return x.reshape(self.tensor.shape)

    def from_hwc(self, y: np.ndarray) -> np.ndarray:
        """HWC array → one inference in the ONNX shape (same dtype)."""
        if len(self.onnx_shape) == 4:
            return y.transpose(2, 0, 1).reshape(self.onnx_shape)
        return y.reshape(self.onnx_shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX input values → integer HWC tensor (QuantizeLinear: x/scale, RNE, +zp, saturate)."""
        x = np.asarray(x)
        if not self.is_float:
            return self.to_hwc(x.astype(self.tensor.numpy_dtype))
        t = self.tensor
        q = np.rint(x.astype(np.float32) / np.float32(t.scale)).astype(np.float64) + t.zero_point
        return self.to_hwc(np.clip(q, t.qmin, t.qmax).astype(t.numpy_dtype))

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Integer HWC tensor → ONNX output values (DequantizeLinear when the output is float)."""
        y = self.from_hwc(np.asarray(q, dtype=self.tensor.numpy_dtype))
        if not self.is_float:
            return y
        t = self.tensor
        return ((y.astype(np.int32) - t.zero_point).astype(np.float32)
                * np.float32(t.scale)).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Graph:
    """A quantized model: ops in execution order, from ``inputs`` to ``outputs``."""
    name: str
    inputs: tuple[IOBinding, ...]
    outputs: tuple[IOBinding, ...]
    ops: tuple[Op, ...]

    @property
    def macs(self) -> int:
        return sum(op.macs for op in self.ops if isinstance(op, Conv))
