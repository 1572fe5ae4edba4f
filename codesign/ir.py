"""The integer IR: what the frontend produces and the golden model and compiler consume.

A :class:`Graph` is a list of ops in execution order over quantized tensors. Every tensor is one
inference's activation in logical HWC order (height, width, channels), 8-bit, with a per-tensor
scale and zero point. Weights, biases and requant multipliers are constants folded into the op
that uses them. Nothing here knows about the hardware.

Layout conventions
------------------
* ONNX NCHW activations map to HWC (batch dropped; the batch must be 1 per inference).
* A 2-D ``[M, K]`` tensor is ``(1, M, K)`` (``[1, K]`` is ``(1, 1, K)``); a 3-D ``[1, M, K]`` is
  ``(1, M, K)``: rows of a matrix product are pixels, its columns are channels.
* A 3-D ``[1, C, L]`` activation of a 1-D convolution or pooling is ``(1, L, C)``
  (:attr:`Tensor.channels_first`): a 2-D plane of height 1. The frontend decides per tensor,
  from the ops that make and read it, which of the two a 3-D tensor is.
* :class:`Flatten` keeps ONNX's element order: its output channel ``i`` is element ``i`` of the
  input flattened in CHW order.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

__all__ = ["Tensor", "Conv", "MaxPool", "AvgPool", "Add", "Mul", "Concat", "Flatten", "Lut",
           "Op", "OpKind", "IOBinding", "Graph", "add_multipliers", "mul_multiplier", "op_inputs",
           "ADD_MULT_BITS", "Pad", "Resize", "ConvTranspose"]


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
    #: ONNX holds it as a 1-D activation ``[1, C, L]`` (IR ``(1, L, C)``), not as rows
    #: ``[1, M, K]`` (IR ``(1, M, K)``).
    channels_first: bool = False

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
    #: Average pooling without padding: acc = Σ (x − x_zp); y = clamp(round(f32(acc)·M) + y_zp).
    AVGPOOL = "avgpool"
    #: Element-wise sum of two tensors of one shape with integer scale ratios:
    #: acc = (a − a_zp)·a_mult + (b − b_zp)·b_mult; y = clamp(RNE(acc / 2**shift) + y_zp).
    ADD = "add"
    #: Channel concatenation, each input requantized: y = clamp(round(f32(x_i − z_i)·M_i) + y_zp).
    CONCAT = "concat"
    #: Constant padding of H and W on the integers: border pixels hold ``value`` (input and
    #: output share scale and zero point).
    PAD = "pad"
    #: Nearest-neighbour upsampling by integer factors: y[h, w] = x[h // fh, w // fw].
    RESIZE = "resize"
    #: Quantized transposed convolution (groups=1): acc[o] = Σ_{i·s − pad + k = o} (x − x_zp)
    #: (w − w_zp) + bias, requantized as CONV.
    CONV_TRANSPOSE = "conv_transpose"
    #: Element-wise 8-bit → 8-bit function as a 256-entry table: y = table[x] (indexed by the
    #: raw byte: x for uint8, x + 256 for negative int8).
    LUT = "lut"
    #: Element-wise product (b may be broadcast over H×W, or a constant):
    #: acc = (a − a_zp)(b − b_zp); y = clamp(round(f32(acc)·M) + y_zp, lo, hi).
    MUL = "mul"


class _Requantized:
    """An op whose result is requantized into ``y`` and clamped to ``clamp`` (a fused
    ReLU/Clip; ``None``: ``y``'s whole range)."""
    y: Tensor
    clamp: tuple[int, int] | None

    @property
    def qrange(self) -> tuple[int, int]:
        """The output's integer range after the fused activation."""
        return self.clamp if self.clamp is not None else (self.y.qmin, self.y.qmax)


@dataclasses.dataclass(frozen=True)
class Conv(_Requantized):
    """Quantized convolution / fully connected layer.

    ``weight`` is int8 ``[KH, KW, Cin / groups, Cout]`` (output channel ``n`` belongs to group
    ``n // (Cout / groups)`` and sees that group's input channels); ``bias`` int32 ``[Cout]``;
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
    groups: int = 1
    kind = OpKind.CONV

    @property
    def macs(self) -> int:
        kh, kw, cin_per_group, cout = self.weight.shape
        return self.y.shape[0] * self.y.shape[1] * kh * kw * cin_per_group * cout


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
class AvgPool(_Requantized):
    """Average pooling over whole windows (no padding; GlobalAveragePool and ReduceMean over H, W
    are the window = the whole plane). ``multiplier`` is ``f32(f32(x_scale / y_scale) / N)``
    with ``N = kh · kw``."""
    x: Tensor
    y: Tensor
    kernel: tuple[int, int]
    stride: tuple[int, int]
    multiplier: np.float32
    clamp: tuple[int, int] | None = None
    name: str = ""
    kind = OpKind.AVGPOOL


#: Bits of the integer scale ratios of :class:`Add` (signed, so |mult| < 2**15).
ADD_MULT_BITS = 16


def add_multipliers(a_scale, b_scale, y_scale) -> tuple[int, int, int]:
    """Integer form ``(a_mult, b_mult, shift)`` of the ratios ``f32(a_scale / y_scale)`` and
    ``f32(b_scale / y_scale)``: each ratio ≈ ``mult / 2**shift`` with the larger one using the
    full :data:`ADD_MULT_BITS` − 1 bits (relative error < 2**-14, so the sum is within 1 LSB of
    the float formula and usually equal)."""
    ra = float(np.float32(a_scale) / np.float32(y_scale))
    rb = float(np.float32(b_scale) / np.float32(y_scale))
    top = max(ra, rb)
    if not (np.isfinite(top) and top > 0 and min(ra, rb) > 0):
        raise ValueError(f"Add scales must be positive and finite ({a_scale}, {b_scale}, "
                         f"{y_scale})")
    limit = (1 << (ADD_MULT_BITS - 1)) - 1
    shift = ADD_MULT_BITS - 2 - int(np.floor(np.log2(top)))
    while round(top * 2.0 ** shift) > limit:
        shift -= 1
    if not 0 <= shift <= 40:
        raise ValueError(f"Add scale ratio {top} is out of range")
    return int(round(ra * 2.0 ** shift)), int(round(rb * 2.0 ** shift)), shift


@dataclasses.dataclass(frozen=True)
class Add(_Requantized):
    """Element-wise ``a + b``, with :func:`add_multipliers` integer ratios and an optional fused
    ReLU/Clip as ``clamp``. A Sub is an Add with a negated ratio.

    ``b`` has ``a``'s shape or is broadcast over H×W (shape ``(1, 1, C)``: one value per
    channel, the same at every pixel). ``b_value``, when given, is ``b``'s integers (a constant
    operand, HWC in ``b``'s dtype): ``b`` is then no tensor of the graph.
    """
    a: Tensor
    b: Tensor
    y: Tensor
    a_mult: int
    b_mult: int
    shift: int
    clamp: tuple[int, int] | None = None
    name: str = ""
    b_value: np.ndarray | None = None
    kind = OpKind.ADD

    @property
    def x(self) -> Tensor:
        """The first operand (ops with one main input expose it as ``x``)."""
        return self.a


@dataclasses.dataclass(frozen=True)
class Mul(_Requantized):
    """Element-wise ``a · b``: ``acc = (a − a_zp)(b − b_zp)`` (exact), requantized by
    ``multiplier = f32(f32(a_scale · b_scale) / y_scale)`` as a convolution is, with an optional
    fused ReLU/Clip as ``clamp``. ``b`` and ``b_value`` are as for :class:`Add`."""
    a: Tensor
    b: Tensor
    y: Tensor
    multiplier: np.float32
    clamp: tuple[int, int] | None = None
    name: str = ""
    b_value: np.ndarray | None = None
    kind = OpKind.MUL

    @property
    def x(self) -> Tensor:
        return self.a


def mul_multiplier(a_scale, b_scale, y_scale) -> np.float32:
    """``f32(f32(a_scale · b_scale) / y_scale)``: onnxruntime's order (MLAS ``QLinearMul``)."""
    return np.float32(np.float32(np.float32(a_scale) * np.float32(b_scale)) / np.float32(y_scale))


@dataclasses.dataclass(frozen=True)
class Concat:
    """Channel concatenation; input ``i`` is requantized with ``multipliers[i] =
    f32(scale_i / y_scale)`` (an exact copy when scales and zero points agree)."""
    inputs: tuple[Tensor, ...]
    y: Tensor
    multipliers: tuple[np.float32, ...]
    name: str = ""
    kind = OpKind.CONCAT

    @property
    def x(self) -> Tensor:
        return self.inputs[0]


@dataclasses.dataclass(frozen=True)
class Flatten:
    """(H, W, C) → (1, 1, H·W·C), elements in ONNX CHW order; the quantization is unchanged."""
    x: Tensor
    y: Tensor
    name: str = ""
    kind = OpKind.FLATTEN


@dataclasses.dataclass(frozen=True)
class Pad:
    """Constant padding: ``y`` is ``x`` with ``pads`` = (top, left, bottom, right) pixels of
    the integer ``value`` (every channel) around it; quantization unchanged."""
    x: Tensor
    y: Tensor
    pads: tuple[int, int, int, int]
    value: int
    name: str = ""
    kind = OpKind.PAD


@dataclasses.dataclass(frozen=True)
class Resize:
    """Nearest-neighbour upsampling by integer ``factors`` (fh, fw):
    ``y[h, w] = x[h // fh, w // fw]``; quantization unchanged."""
    x: Tensor
    y: Tensor
    factors: tuple[int, int]
    name: str = ""
    kind = OpKind.RESIZE


@dataclasses.dataclass(frozen=True)
class ConvTranspose(_Requantized):
    """Quantized transposed convolution, one group.

    ``weight`` is int8 ``[KH, KW, Cin, Cout]`` (ONNX's ``[Cin, Cout, KH, KW]`` transposed);
    input pixel ``(i, j)`` and tap ``(kh, kw)`` feed output ``(i·sh − top + kh, j·sw − left +
    kw)`` when that lies in ``y``'s (H, W) (which is where ONNX's ``output_padding`` shows).
    ``bias``, ``multiplier`` and ``clamp`` as for :class:`Conv`.
    """
    x: Tensor
    y: Tensor
    weight: np.ndarray
    w_zero_point: int
    bias: np.ndarray
    multiplier: np.ndarray
    stride: tuple[int, int]
    pads: tuple[int, int]           # (top, left): the output's offset into the full result
    clamp: tuple[int, int] | None = None
    name: str = ""
    kind = OpKind.CONV_TRANSPOSE

    @property
    def macs(self) -> int:
        """Multiply-accumulates that land in the output (taps cropped away are not counted)."""
        kh, kw, cin, cout = self.weight.shape
        per_axis = []
        for n, k, s, pad, out in zip(self.x.shape[:2], (kh, kw), self.stride, self.pads,
                                     self.y.shape[:2], strict=True):
            o = np.arange(n)[:, None] * s - pad + np.arange(k)[None, :]
            per_axis.append(int(((o >= 0) & (o < out)).sum()))
        return per_axis[0] * per_axis[1] * cin * cout


@dataclasses.dataclass(frozen=True, eq=False)
class Lut:
    """``y = table[x]`` element by element: any 8-bit → 8-bit function (Sigmoid, Tanh, ...),
    tabulated by the frontend from the model's scales. ``table`` is 256 bytes of ``y``'s dtype,
    indexed by ``x``'s raw byte (``x & 0xFF``); ``function`` names what it computes."""
    x: Tensor
    y: Tensor
    table: np.ndarray
    function: str = ""
    name: str = ""
    kind = OpKind.LUT


Op = Conv | MaxPool | AvgPool | Add | Mul | Concat | Flatten | Pad | Resize | ConvTranspose | Lut


def op_inputs(op: Op) -> tuple[Tensor, ...]:
    """The tensors ``op`` reads (a constant operand is not one)."""
    if isinstance(op, Add | Mul):
        return (op.a,) if op.b_value is not None else (op.a, op.b)
    if isinstance(op, Concat):
        return op.inputs
    return (op.x,)


@dataclasses.dataclass(frozen=True)
class IOBinding:
    """How a graph input/output relates to the ONNX model's own tensor.

    ``onnx_shape`` is one inference's shape: the model's shape with a batch fixed to 1 (a
    symbolic batch, or a fixed one run as ``batch`` inferences); ``is_float`` says whether the
    ONNX tensor is float32 (quantized/dequantized at the boundary with the tensor's scale and zero
    point, as QuantizeLinear/DequantizeLinear do) or the 8-bit integers themselves.

    ``batch`` is the model's fixed batch N when one run of the ONNX model is N inferences of the
    NPU (a fixed batch on a graph that is not row-wise; ``onnx_shape[0]`` is then 1). A fixed
    batch of a row-wise graph (``[N, K]`` through matrix products) is N rows of one inference
    instead, and ``batch`` is 1.

    ``clamp`` narrows an input's integer range below its 8-bit type's (a Brevitas/QONNX 2–7-bit
    input quantizer: QuantizeLinear → Clip(lo, hi), or a QONNX ``Quant``); ``None``: the whole
    type.
    """
    onnx_name: str
    onnx_shape: tuple[int, ...]
    is_float: bool
    tensor: Tensor
    batch: int = dataclasses.field(default=1, kw_only=True)
    clamp: tuple[int, int] | None = dataclasses.field(default=None, kw_only=True)

    @property
    def model_shape(self) -> tuple[int, ...]:
        """The shape of the tensor in one run of the ONNX model (``batch`` inferences)."""
        return (self.batch * self.onnx_shape[0], *self.onnx_shape[1:])

    def to_hwc(self, x: np.ndarray) -> np.ndarray:
        """One inference's ONNX-layout array → HWC array (same dtype)."""
        x = np.asarray(x).reshape(self.onnx_shape)
        if len(self.onnx_shape) == 4 or self.tensor.channels_first:
            return x[0].transpose(1, 2, 0) if x.ndim == 4 else x[0].T.reshape(self.tensor.shape)
        return x.reshape(self.tensor.shape)

    def from_hwc(self, y: np.ndarray) -> np.ndarray:
        """HWC array → one inference in the ONNX shape (same dtype)."""
        if len(self.onnx_shape) == 4 or self.tensor.channels_first:
            return y.transpose(2, 0, 1).reshape(self.onnx_shape)
        return y.reshape(self.onnx_shape)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """ONNX input values → integer HWC tensor (QuantizeLinear: x/scale, RNE, +zp, saturate;
        then :attr:`clamp`)."""
        x = np.asarray(x)
        t = self.tensor
        lo, hi = self.clamp if self.clamp is not None else (t.qmin, t.qmax)
        if not self.is_float:
            q = x.astype(t.numpy_dtype)
            return self.to_hwc(q if self.clamp is None else np.clip(q, lo, hi).astype(q.dtype))
        q = np.rint(x.astype(np.float32) / np.float32(t.scale)).astype(np.float64) + t.zero_point
        return self.to_hwc(np.clip(q, lo, hi).astype(t.numpy_dtype))

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
        return sum(op.macs for op in self.ops if isinstance(op, Conv | ConvTranspose))
