"""Element-wise float functions between one DequantizeLinear and one QuantizeLinear → ir.Lut.

Any chain or DAG of unary element-wise float ops (Sigmoid, Tanh, HardSigmoid, HardSwish,
LeakyRelu, Relu, Clip, ...) and of Add/Sub/Mul/Div with scalar constants, all on one dequantized
8-bit tensor ``x``, is a function of the 256 values ``x`` can take. The frontend evaluates it on
those 256 values exactly as onnxruntime's CPU kernels compute it in float32 (same formulas, same
operation order, the same fused multiply-adds as MLAS's FMA3 kernels, correctly rounded in
numpy) and quantizes the results as QuantizeLinear does: the table is bit-exact with onnxruntime
by construction (tests/test_lut_ort.py checks all 256 entries against onnxruntime running the
real DQ → f → Q model, over many scales and zero points).

The QOperator forms com.microsoft.QLinearSigmoid / QLinearLeakyRelu (which onnxruntime's QDQ
transformer also fuses DQ → Sigmoid/LeakyRelu → Q into) build their table the same way
(``QlinearBuildLookupTable``: dequantize the 256 codes, the float kernel, MlasQuantizeLinear).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import numpy as np
import onnx

from codesign import ir
from codesign.frontend.context import Context
from codesign.frontend.values import Constant, Dequantized, Quantized

__all__ = ["FloatFunction", "HANDLERS", "fma32", "mlas_logistic", "mlas_tanh", "mlas_erf",
           "mlas_exp", "gelu", "table_of", "quantize_linear", "dequantize_codes",
           "lut_after_quantize"]

F32 = np.float32
Fn = Callable[[np.ndarray], np.ndarray]


# ------------------------------------------------------------------------------------------------
# float32 arithmetic as the CPU does it

def _ieee(fn: Fn) -> Fn:
    """Run ``fn`` with IEEE overflow/invalid results (inf, NaN) as the CPU gives them, without
    numpy's warnings: huge inputs overflow in the kernels exactly as in onnxruntime's."""
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        with np.errstate(all="ignore"):
            return fn(*args, **kwargs)
    return wrapped


@_ieee
def fma32(a, b, c) -> np.ndarray:
    """``round_f32(a·b + c)`` with one rounding (an FMA3 ``vfmadd``), for float32 inputs.

    ``a·b`` is exact in float64; ``s = a·b + c`` in float64 may round, and its error ``e`` is
    exact (TwoSum). Rounding ``s`` to float32 is then the correct result unless ``s`` sits
    exactly halfway between two float32 values while ``e ≠ 0``: then the true sum lies on
    ``e``'s side of the halfway point.
    """
    a, b, c = (np.asarray(v, F32).astype(np.float64) for v in (a, b, c))
    p = a * b
    s = p + c
    bb = s - p
    err = (p - (s - bb)) + (c - bb)
    r = s.astype(F32)
    r64 = r.astype(np.float64)
    toward = np.where(s > r64, np.float32(np.inf), np.float32(-np.inf)).astype(F32)
    other = np.nextafter(r, toward)
    halfway = (s != r64) & (s == (r64 + other.astype(np.float64)) / 2) & (err != 0)
    # At a halfway point the float32 cast picked the even one; the true sum is on err's side.
    pick_other = halfway & ((err > 0) == (other.astype(np.float64) > r64))
    return np.where(pick_other, other, r).astype(F32)


# ------------------------------------------------------------------------------------------------
# MLAS kernels (onnxruntime/core/mlas/lib: logistic.cpp constants, x86_64/*Fma3.S order)

_LOGISTIC = dict(lo=F32(-18.0), hi=F32(18.0),
                 alpha=[F32(v) for v in (4.37031012579801e-11, 1.15627324459942e-07,
                                         6.08574864600143e-05, 8.51377133304701e-03,
                                         2.48287947061529e-01)],
                 beta=[F32(v) for v in (6.10247389755681e-13, 5.76102136993427e-09,
                                        6.29106785017040e-06, 1.70198817374094e-03,
                                        1.16817656904453e-01, 9.93151921023180e-01)])


def _horner(x2: np.ndarray, coefficients: list[np.float32]) -> np.ndarray:
    """The polynomial in ``x2`` with ``coefficients`` (highest degree first) by Horner's rule,
    one FMA per step as MLAS's FMA3 kernels do (an FMA's exact product does not depend on the
    order of its factors)."""
    p = fma32(x2, coefficients[0], coefficients[1])
    for k in coefficients[2:]:
        p = fma32(x2, p, k)
    return p


@_ieee
def mlas_logistic(x: np.ndarray) -> np.ndarray:
    """``MlasComputeLogistic`` as ``MlasLogisticKernelFma3`` computes it: clamp to ±18, odd
    rational polynomial with FMAs (Eigen's coefficients), ``p/q + 0.5``, then ``max(·, 0)``."""
    c = _LOGISTIC
    v = np.minimum(c["hi"], np.maximum(c["lo"], np.asarray(x, F32))).astype(F32)
    x2 = (v * v).astype(F32)
    p = (v * _horner(x2, c["alpha"])).astype(F32)
    q = _horner(x2, c["beta"])
    return np.maximum(F32(0), ((p / q).astype(F32) + F32(0.5)).astype(F32)).astype(F32)


_TANH = dict(lo=F32(-9.0), hi=F32(9.0),
             alpha=[F32(v) for v in (-2.76076847742355e-16, 2.00018790482477e-13,
                                     -8.60467152213735e-11, 5.12229709037114e-08,
                                     1.48572235717979e-05, 6.37261928875436e-04,
                                     4.89352455891786e-03)],
             beta=[F32(v) for v in (1.19825839466702e-06, 1.18534705686654e-04,
                                    2.26843463243900e-03, 4.89352518554385e-03)])


@_ieee
def mlas_tanh(x: np.ndarray) -> np.ndarray:
    """``MlasComputeTanh`` as onnxruntime 1.31's x86-64 FMA3 kernel computes it: clamp to ±9,
    Eigen's odd rational polynomial (degree 13 over degree 6) with FMAs, ``p/q``. (Checked
    against onnxruntime's float Tanh on 200,000 random inputs: identical; the same polynomial
    without FMAs differs in a quarter of them.)"""
    c = _TANH
    v = np.minimum(c["hi"], np.maximum(c["lo"], np.asarray(x, F32))).astype(F32)
    x2 = (v * v).astype(F32)
    p = (_horner(x2, c["alpha"]) * v).astype(F32)
    q = _horner(x2, c["beta"])
    return (p / q).astype(F32)


_ERF = dict(upper=3.925, split=0.921875,
            small=(-5.99104969e-4, 4.99339588e-3, -2.67667342e-2, 1.12818025e-1,
                   -3.76124859e-1, 1.28379151e-1),
            big=(1.72948930e-5, -3.83208680e-4, 3.88393435e-3, -2.42545605e-2, 1.06777847e-1,
                 6.34846687e-1, 1.28717512e-1),
            exp_lower=-88.3762626647949, log2_reciprocal=1.44269504088896341,
            log2_hi=-6.93145752e-1, log2_lo=-1.42860677e-6,
            exp=(1.38319808e-3, 8.37550033e-3, 4.16689515e-2, 1.66664466e-1, 4.99999851e-1,
                 1.00000000e+0, 1.00000000e+0),
            exp_c=1.25829120e+7)


@_ieee
def mlas_erf(x: np.ndarray) -> np.ndarray:
    """``MlasComputeErf`` as ``MlasErfKernelFma3`` computes it (erf.cpp's constants): on
    ``|x|`` clamped to 3.725, below 0.921875 an odd polynomial in ``x²``, above it
    ``1 − exp(−poly(|x|))`` with MLAS's own exp (FMAs, ``2^trunc(r)`` by exponent bits); the
    two results merged by bitwise OR, then ``x``'s sign bit."""
    k = {name: (F32(v) if np.isscalar(v) else [F32(c) for c in v]) for name, v in _ERF.items()}
    x = np.asarray(x, F32)
    sign = x.view(np.uint32) & np.uint32(0x80000000)
    a = np.minimum(np.abs(x), k["upper"]).astype(F32)
    s = (a * a).astype(F32)
    small = np.full_like(a, k["small"][0])
    for c in k["small"][1:]:
        small = fma32(s, small, c)
    small = fma32(a, small, a)
    big_side = k["split"] <= a
    small = np.where(big_side, F32(0), small).astype(F32)
    b = np.where(big_side, a, F32(0)).astype(F32)
    r = np.full_like(b, k["big"][0])
    for c in k["big"][1:]:
        r = fma32(b, r, c)
    r = fma32(b, r, b)
    e = np.maximum(-r, k["exp_lower"]).astype(F32)
    t = (fma32(e, k["log2_reciprocal"], k["exp_c"]) - k["exp_c"]).astype(F32)
    f = fma32(t, k["log2_hi"], e)
    f = fma32(t, k["log2_lo"], f)
    y = np.full_like(f, k["exp"][0])
    for c in k["exp"][1:]:
        y = fma32(f, y, c)
    scale = ((np.trunc(t).astype(np.int32) + 127) << 23).astype(np.uint32).view(F32)
    y = (F32(1) - (y * scale).astype(F32)).astype(F32)
    bits = y.view(np.uint32) | small.view(np.uint32) | sign
    return bits.view(F32)


_EXP = dict(lower=-103.9720840454, upper=88.7762626647950, bias=12582912.0,
            log2_reciprocal=1.44269504088896341, log2_high=-6.93145752e-1,
            log2_low=-1.42860677e-6,
            poly=("0x1.694000p-10", "0x1.125edcp-7", "0x1.555b5ap-5", "0x1.555450p-3",
                  "0x1.fffff6p-2", "0x1.000000p+0"))
_EXP_ONE = 0x3F800000               # the exponent field of 1.0: the scales' bias
_EXP_MIN = -(126 << 23)             # the lowest normal scale's exponent, unbiased


@_ieee
def mlas_exp(x: np.ndarray) -> np.ndarray:
    """``MlasComputeExp`` as ``MlasComputeExpF32KernelFma3`` computes it: clamp to
    [−103.97, 88.78], ``m = round(x/ln2)`` by the rounding-bias trick, ``x − m·ln2`` in two FMAs,
    a degree-6 polynomial with FMAs, and ``2^m`` as a normal scale times an overflow scale built
    from exponent bits (onnxruntime's Exp; measured identical on 220 000 inputs)."""
    k = _EXP
    poly = [F32(float.fromhex(c)) for c in k["poly"]]
    x = np.minimum(F32(k["upper"]), np.maximum(F32(k["lower"]), np.asarray(x, F32))).astype(F32)
    biased = fma32(x, F32(k["log2_reciprocal"]), F32(k["bias"]))
    m = (biased - F32(k["bias"])).astype(F32)
    x = fma32(m, F32(k["log2_high"]), x)
    x = fma32(m, F32(k["log2_low"]), x)
    p = fma32(x, poly[0], poly[1])
    for c in poly[2:5]:
        p = fma32(x, p, c)
    # The biased float's low mantissa bits are m: shifted into the exponent field (vpslld).
    e = (biased.view(np.uint32) << np.uint32(23)).view(np.int32).astype(np.int64)
    normal = np.clip(e, _EXP_MIN, _EXP_ONE)
    overflow = (e - normal + _EXP_ONE).astype(np.uint32).view(F32)
    normal = (normal + _EXP_ONE).astype(np.uint32).view(F32)
    p = fma32(x, p, poly[5])
    p = fma32((x * overflow).astype(F32), p, overflow)
    return (p * normal).astype(F32)


@_ieee
def gelu(x: np.ndarray, approximate: str = "none") -> np.ndarray:
    """onnxruntime's Gelu (opset 20 and com.microsoft.Gelu): ``(0.5·x)·(erf(x·√½) + 1)``, or
    with ``approximate = "tanh"`` ``(0.5·x)·(tanh(x·(C·x·x + B)) + 1)``, MLAS's erf/tanh."""
    x = np.asarray(x, F32)
    if approximate == "tanh":
        c, b = F32(0.035677408136300125), F32(0.7978845608028654)
        inner = (x * ((((c * x).astype(F32) * x).astype(F32) + b).astype(F32))).astype(F32)
        t = mlas_tanh(inner)
    else:
        t = mlas_erf((x * F32(np.sqrt(0.5))).astype(F32))
    return ((F32(0.5) * x).astype(F32) * (t + F32(1)).astype(F32)).astype(F32)


@_ieee
def hard_sigmoid(x: np.ndarray, alpha: float, beta: float) -> np.ndarray:
    """onnxruntime's HardSigmoid: ``max(0, min(1, alpha·x + beta))``, a multiply then an add."""
    v = (F32(alpha) * np.asarray(x, F32)).astype(F32)
    return np.maximum(F32(0), np.minimum(F32(1), (v + F32(beta)).astype(F32))).astype(F32)


@_ieee
def leaky_relu(x: np.ndarray, alpha: float) -> np.ndarray:
    x = np.asarray(x, F32)
    return np.where(x >= 0, x, (F32(alpha) * x).astype(F32)).astype(F32)


# ------------------------------------------------------------------------------------------------
# Quantization of the 256 codes

def dequantize_codes(t: ir.Tensor) -> np.ndarray:
    """The real value of each raw byte 0..255 of ``t`` (DequantizeLinear:
    ``f32(q − zp) · scale``), indexed by the raw byte."""
    raw = np.arange(256, dtype=np.uint8)
    q = (raw.view(np.int8) if t.signed else raw).astype(np.int32)
    return ((q - t.zero_point).astype(F32) * F32(t.scale)).astype(F32)


def quantize_linear(v: np.ndarray, t: ir.Tensor) -> np.ndarray:
    """QuantizeLinear (MlasQuantizeLinear): ``v / scale``, clamp to the range less the zero
    point, round half to even, add the zero point; in ``t``'s dtype. NaN gives ``qmin``, as
    the x86 kernel's ``maxps`` against the lower bound does (onnxruntime 1.31 measured)."""
    v = (np.asarray(v, F32) / F32(t.scale)).astype(F32)
    v = np.where(np.isnan(v), F32(t.qmin - t.zero_point), v)
    v = np.minimum(F32(t.qmax - t.zero_point), np.maximum(F32(t.qmin - t.zero_point), v))
    return (np.rint(v).astype(np.int64) + t.zero_point).astype(t.numpy_dtype)


@_ieee
def table_of(fn: Fn, x: ir.Tensor, y: ir.Tensor) -> np.ndarray:
    """The 256-entry table of ``y = Q(fn(DQ(x)))``, indexed by ``x``'s raw byte."""
    return quantize_linear(fn(dequantize_codes(x)), y)


# ------------------------------------------------------------------------------------------------
# The frontend value and handlers

@dataclasses.dataclass(frozen=True)
class FloatFunction:
    """A float tensor that is ``fn(DequantizeLinear(x))`` element by element; ``names`` lists
    the ONNX ops it was built from (for the IR op's ``function``)."""
    x: ir.Tensor
    onnx_shape: tuple[int, ...]
    fn: Fn
    names: tuple[str, ...]
    node_name: str


def _attrs(node: onnx.NodeProto) -> dict:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def dequantized(v: np.ndarray) -> np.ndarray:
    """The identity on the dequantized values (a DequantizeLinear'd tensor's function)."""
    return np.asarray(v, F32)


def _source(ctx: Context, node: onnx.NodeProto, index: int) -> FloatFunction:
    """Input ``index`` as a function of a dequantized 8-bit tensor."""
    value = ctx.value(node, index)
    if isinstance(value, FloatFunction):
        return value
    if isinstance(value, Dequantized):
        return FloatFunction(value.tensor, value.onnx_shape, dequantized, (), node.name)
    raise ctx.error(node, f"input {node.input[index]!r} must be a float function of one "
                          "DequantizeLinear'd 8-bit activation")


def _unary(ctx: Context, node: onnx.NodeProto, fn: Fn, name: str | None = None) -> None:
    src = _source(ctx, node, 0)
    inner = src.fn
    ctx.values[node.output[0]] = FloatFunction(
        src.x, src.onnx_shape, lambda v: fn(inner(v)), src.names + (name or node.op_type,),
        node.name)


def _scalar(ctx: Context, node: onnx.NodeProto, index: int) -> np.float32 | None:
    value = ctx.value(node, index)
    if not isinstance(value, Constant):
        return None
    if value.value.size != 1:
        raise ctx.error(node, f"constant {node.input[index]!r} of shape "
                              f"{list(value.value.shape)} is float and not one value; quantize "
                              "it (an 8-bit initializer behind DequantizeLinear, as "
                              "onnxruntime's quantize_static writes it)")
    if value.value.dtype != np.float32:
        raise ctx.error(node, f"constant {node.input[index]!r} must be float32")
    return F32(value.value.reshape(()))


_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}


def binary(ctx: Context, node: onnx.NodeProto) -> None:
    """Add/Sub/Mul/Div of a float function with a scalar constant or with another float
    function of the same 8-bit tensor (HardSwish's ``x · HardSigmoid(x)``, GELU's ``x · Φ``)."""
    op = _BINARY[node.op_type]
    consts = [_scalar(ctx, node, i) for i in (0, 1)]
    if consts[0] is not None and consts[1] is not None:
        raise ctx.error(node, "both operands are constants")
    if consts[1] is not None or consts[0] is not None:
        k = 1 if consts[1] is not None else 0
        src, c = _source(ctx, node, 1 - k), consts[k]
        inner = src.fn
        if k == 1:
            def fn(v):
                return op(inner(v), c).astype(F32)
        else:
            def fn(v):
                return op(c, inner(v)).astype(F32)
        ctx.values[node.output[0]] = FloatFunction(src.x, src.onnx_shape, fn,
                                                   src.names + (node.op_type,), node.name)
        return
    a, b = _source(ctx, node, 0), _source(ctx, node, 1)
    if a.x.name != b.x.name or a.onnx_shape != b.onnx_shape:
        raise ctx.error(node, "operands are functions of different tensors; only element-wise "
                              "functions of one 8-bit tensor are supported")
    fa, fb = a.fn, b.fn
    ctx.values[node.output[0]] = FloatFunction(
        a.x, a.onnx_shape, lambda v: op(fa(v), fb(v)).astype(F32),
        tuple(dict.fromkeys(a.names + b.names + (node.op_type,))), node.name)


def _sigmoid(ctx, node):
    _unary(ctx, node, mlas_logistic)


def _tanh(ctx, node):
    _unary(ctx, node, mlas_tanh)


def _hard_sigmoid(ctx, node):
    attrs = _attrs(node)
    alpha, beta = attrs.get("alpha", 0.2), attrs.get("beta", 0.5)
    _unary(ctx, node, lambda v: hard_sigmoid(v, alpha, beta))


def _hard_swish(ctx, node):
    # ONNX's function body: x · HardSigmoid(x; alpha = 1/6, beta = 0.5).
    _unary(ctx, node, lambda v: (np.asarray(v, F32)
                                 * hard_sigmoid(v, 1.0 / 6.0, 0.5)).astype(F32))


def _leaky_relu(ctx, node):
    alpha = _attrs(node).get("alpha", 0.01)
    _unary(ctx, node, lambda v: leaky_relu(v, alpha))


def _exp(ctx, node):
    _unary(ctx, node, mlas_exp)


def _erf(ctx, node):
    _unary(ctx, node, mlas_erf)


def _gelu(ctx, node):
    approximate = _attrs(node).get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    if approximate not in ("none", "tanh"):
        raise ctx.error(node, f"approximate {approximate!r} is not 'none' or 'tanh'")
    _unary(ctx, node, lambda v: gelu(v, approximate))


def _neg(ctx, node):
    _unary(ctx, node, lambda v: (-np.asarray(v, F32)).astype(F32))


def _abs(ctx, node):
    _unary(ctx, node, lambda v: np.abs(np.asarray(v, F32)))


def relu_or_clip(ctx: Context, node: onnx.NodeProto, low: float | None,
                 high: float | None) -> None:
    """A Relu/Clip after a float function narrows its table (``max``/``min`` in float32 are
    exact, so composing them is onnxruntime's result)."""
    lo = None if low is None else F32(low)
    hi = None if high is None else F32(high)

    def clamp(v):
        v = np.asarray(v, F32)
        if lo is not None:
            v = np.maximum(v, lo)
        if hi is not None:
            v = np.minimum(v, hi)
        return v.astype(F32)

    _unary(ctx, node, clamp)


def _qlinear_lookup(ctx: Context, node: onnx.NodeProto, fn: Fn, name: str) -> None:
    """com.microsoft.QLinearSigmoid / QLinearLeakyRelu: X, X_scale, X_zp, Y_scale, Y_zp."""
    x = ctx.quantized_input(node, 0, 1)
    scale, zero_point, signed = ctx.scalar_qparams(node, 3, "output")
    y = ctx.tensor(node, node.output[0], x.onnx_shape, signed, scale, zero_point)
    ctx.ops.append(ir.Lut(x.tensor, y, table_of(fn, x.tensor, y), name, node.name))
    ctx.values[node.output[0]] = Quantized(y, x.onnx_shape)


def _qlinear_sigmoid(ctx, node):
    _qlinear_lookup(ctx, node, mlas_logistic, "Sigmoid")


def _qlinear_leaky_relu(ctx, node):
    alpha = _attrs(node).get("alpha", 0.01)
    _qlinear_lookup(ctx, node, lambda v: leaky_relu(v, alpha), "LeakyRelu")


def lut_after_quantize(ctx: Context, node: onnx.NodeProto, value: FloatFunction,
                       scale: np.float32, zero_point: int, signed: bool) -> Quantized:
    """QuantizeLinear of a float function: the IR lookup table."""
    out = node.output[0]
    y = ctx.tensor(node, out, value.onnx_shape, signed, scale, zero_point)
    name = "+".join(value.names) or "Requantize"
    ctx.ops.append(ir.Lut(value.x, y, table_of(value.fn, value.x, y), name, value.node_name))
    return Quantized(y, value.onnx_shape)


#: Handlers of the ops that only make float functions (Add/Mul/Sub/Div, Relu/Clip share their
#: handlers in ops.py, which call :func:`binary` / :func:`relu_or_clip` on float functions).
HANDLERS = {
    "Sigmoid": _sigmoid,
    "Tanh": _tanh,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _hard_swish,
    "LeakyRelu": _leaky_relu,
    "Erf": _erf,
    "Exp": _exp,
    "Gelu": _gelu,
    "com.microsoft.Gelu": _gelu,
    "Neg": _neg,
    "Abs": _abs,
    "com.microsoft.QLinearSigmoid": _qlinear_sigmoid,
    "com.microsoft.QLinearLeakyRelu": _qlinear_leaky_relu,
}
