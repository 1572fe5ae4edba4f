"""Structure-aware mutation of the bundled quantized ONNX models.

A mutant is fully determined by ``(seed, index)`` and the list of base models: the index picks
the base model, a :class:`random.Random` seeded from both picks one to three mutation kinds
(:data:`KINDS`) and what each one changes. Every mutation reads the model's structure (which
initializers are scales, zero points, bias scales, weights; which nodes carry which attributes)
so that most mutants get past the protobuf parser and exercise the checks behind it, and many
stay valid models that ``generate`` must accept and compute exactly.

Edits the protobuf library refuses to make (a string field holding invalid UTF-8) are made on
the serialized bytes: the field gets a placeholder of the same length, replaced after
serialization. External data goes into files (and symbolic links) written beside the model.
"""

from __future__ import annotations

import dataclasses
import math
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import onnx.shape_inference

__all__ = ["REPO", "KINDS", "DEFAULT_MODELS", "SLOW_MODELS", "Mutant", "mutant", "MODEL_FILE"]

REPO = Path(__file__).resolve().parents[2]
#: The small models of the default run (each compiles and checks in about a second).
DEFAULT_MODELS = ("models/digits_cnn_qdq.onnx", "models/digits_cnn_qop.onnx",
                  "models/digits_mlp_qdq.onnx")
#: The default models and the MLPerf Tiny ones (a few seconds to half a minute per case).
SLOW_MODELS = DEFAULT_MODELS + ("models/mlperf/dscnn.onnx", "models/mlperf/fc_autoencoder.onnx",
                                "models/mlperf/resnet8.onnx")
#: The mutant's file name in its case directory (external data lies beside it).
MODEL_FILE = "model.onnx"

_T = onnx.TensorProto
_HUGE = (2 ** 24, 2 ** 31, 2 ** 40)
#: Attribute values that break shapes, overflow int32/int64 consumers or mean nothing.
_BAD_INTS = (-(2 ** 40), -1, 0, 1, 2, 3, 7, 2 ** 31 - 1, 2 ** 40)
_ALL_TYPES = (_T.FLOAT, _T.UINT8, _T.INT8, _T.UINT16, _T.INT16, _T.INT32, _T.INT64, _T.STRING,
              _T.BOOL, _T.FLOAT16, _T.DOUBLE, _T.UINT32, _T.UINT64, _T.COMPLEX64, _T.BFLOAT16,
              _T.FLOAT8E4M3FN, _T.UINT4, _T.INT4, 0, 99)
#: Types a tensor can be re-encoded in with numpy (valid storage, maybe an invalid type).
_NUMPY_TYPES = (_T.FLOAT, _T.UINT8, _T.INT8, _T.INT16, _T.UINT16, _T.INT32, _T.INT64,
                _T.FLOAT16, _T.DOUBLE, _T.BOOL)

#: Inputs that are scales / zero points, by op type (QLinearConcat is handled apart).
_SCALE_AT = {"QuantizeLinear": (1,), "DequantizeLinear": (1,), "QLinearConv": (1, 4, 6),
             "QLinearMatMul": (1, 4, 6), "QGemm": (1, 4, 7), "QLinearAdd": (1, 4, 6),
             "QLinearAveragePool": (1, 3), "QLinearGlobalAveragePool": (1, 3)}
_ZP_AT = {"QuantizeLinear": (2,), "DequantizeLinear": (2,), "QLinearConv": (2, 5, 7),
          "QLinearMatMul": (2, 5, 7), "QGemm": (2, 5, 8), "QLinearAdd": (2, 5, 7),
          "QLinearAveragePool": (2, 4), "QLinearGlobalAveragePool": (2, 4)}


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One mutated model: its bytes, the files beside it and what was done.

    Attributes
    ----------
    seed, index
        What determines it (with the base model list).
    base
        The bundled model it came from (path relative to the repository).
    mutations
        ``(kind, description)`` of each mutation applied, in order.
    data
        The model file's bytes.
    files
        Other files to write beside the model (external data), by relative name.
    links
        Symbolic links to create beside the model: name → target.
    """
    seed: int
    index: int
    base: str
    mutations: tuple[tuple[str, str], ...]
    data: bytes
    files: dict[str, bytes]
    links: dict[str, str]

    @property
    def kinds(self) -> tuple[str, ...]:
        """The distinct mutation kinds applied."""
        return tuple(dict.fromkeys(kind for kind, _ in self.mutations))

    def describe(self) -> str:
        """One line: base model and every mutation."""
        return f"{self.base}: " + "; ".join(f"{k}: {d}" for k, d in self.mutations)

    def write(self, directory: Path) -> Path:
        """Write the model and its files into ``directory`` (created); the model's path."""
        directory.mkdir(parents=True, exist_ok=True)
        for name, data in self.files.items():
            (directory / name).write_bytes(data)
        for name, target in self.links.items():
            os.symlink(target, directory / name)
        path = directory / MODEL_FILE
        path.write_bytes(self.data)
        return path


class _Work:
    """A model under mutation: the protobuf, byte edits to make after serializing, files."""

    def __init__(self, model: onnx.ModelProto, rng: random.Random):
        self.model = model
        self.rng = rng
        self.patches: dict[bytes, bytes] = {}
        self.files: dict[str, bytes] = {}
        self.links: dict[str, str] = {}

    @property
    def graph(self) -> onnx.GraphProto:
        return self.model.graph

    def placeholder(self, replacement: bytes) -> str:
        """An ASCII string as long as ``replacement`` that serialization turns into it."""
        tag = f"FZ{len(self.patches):03d}"
        text = (tag + "_" * len(replacement))[:max(len(replacement), len(tag))]
        replacement = replacement.ljust(len(text), b"_")
        self.patches[text.encode()] = replacement
        return text

    def serialize(self) -> bytes:
        data = self.model.SerializeToString(deterministic=True)
        for text, replacement in self.patches.items():
            data = data.replace(text, replacement)
        return data


# ------------------------------------------------------------------------------------------------
# Model structure

def _inits(g: onnx.GraphProto) -> dict[str, onnx.TensorProto]:
    return {t.name: t for t in g.initializer}


def _array(t: onnx.TensorProto) -> np.ndarray | None:
    """The tensor's values, or None when an earlier mutation left them unreadable."""
    try:
        return onnx.numpy_helper.to_array(t)
    except Exception:       # onnx raises assorted types on corrupt tensors
        return None


def _set(t: onnx.TensorProto, value: np.ndarray) -> None:
    t.CopyFrom(onnx.numpy_helper.from_array(np.asarray(value), t.name))


def _qparam_uses(g: onnx.GraphProto, table: dict[str, tuple[int, ...]],
                 concat_offset: int) -> list[tuple[onnx.NodeProto, int]]:
    """(node, input index) of every scale (or zero point) input held in an initializer."""
    inits = _inits(g)
    uses = []
    for node in g.node:
        at = table.get(node.op_type, ())
        if node.op_type == "QLinearConcat":
            at = tuple(range(concat_offset, len(node.input), 3))
        uses += [(node, i) for i in at if i < len(node.input) and node.input[i] in inits]
    return uses


def _scale_uses(g: onnx.GraphProto) -> list[tuple[onnx.NodeProto, int]]:
    return _qparam_uses(g, _SCALE_AT, 0)


def _zp_uses(g: onnx.GraphProto) -> list[tuple[onnx.NodeProto, int]]:
    return _qparam_uses(g, _ZP_AT, 1)


def _target(w: _Work, uses: list[tuple[onnx.NodeProto, int]]) -> onnx.TensorProto | None:
    """The initializer of one use; half the time a copy that only that use reads (so that a
    QuantizeLinear and its DequantizeLinear disagree)."""
    if not uses:
        return None
    node, i = w.rng.choice(uses)
    t = _inits(w.graph)[node.input[i]]
    if w.rng.random() < 0.5:
        return t
    copy = w.graph.initializer.add()
    copy.CopyFrom(t)
    copy.name = f"{t.name}__fuzz{len(w.graph.initializer)}"
    node.input[i] = copy.name
    return copy


def _producers(g: onnx.GraphProto) -> dict[str, onnx.NodeProto]:
    return {o: n for n in g.node for o in n.output}


def _tensor_names(g: onnx.GraphProto) -> list[str]:
    names = [v.name for v in g.input] + [t.name for t in g.initializer]
    return names + [o for n in g.node for o in n.output if o]


def _rename_everywhere(g: onnx.GraphProto, old: str, new: str) -> None:
    for n in g.node:
        for seq in (n.input, n.output):
            for i, name in enumerate(seq):
                if name == old:
                    seq[i] = new
    for v in [*g.input, *g.output, *g.value_info, *g.initializer]:
        if v.name == old:
            v.name = new


# ------------------------------------------------------------------------------------------------
# Scales, zero points, bias scales

def _scale_value(rng: random.Random, a: np.ndarray) -> tuple[np.ndarray, str]:
    """A new value for the float32 scale array ``a``, and what it is."""
    choices: list[tuple[str, Callable[[np.ndarray], np.ndarray]]] = [
        ("0", lambda x: np.zeros_like(x)), ("negative", lambda x: -x),
        ("NaN", lambda x: np.full_like(x, np.nan)), ("+inf", lambda x: np.full_like(x, np.inf)),
        ("-inf", lambda x: np.full_like(x, -np.inf)),
        ("subnormal", lambda x: np.full_like(x, 1e-40)),
        ("1e-30", lambda x: np.full_like(x, 1e-30)), ("1e30", lambda x: np.full_like(x, 1e30)),
        ("+1 ulp", lambda x: np.nextafter(x, np.float32(np.inf))),
    ]
    choices += [(f"x{f:g}", lambda x, f=f: x * np.float32(f)) for f in (2, 0.5, 1.5, 3, 1 / 7)]
    name, fn = rng.choice(choices)
    with np.errstate(all="ignore"):
        new = fn(a.astype(np.float32)).astype(np.float32)
    if a.ndim and a.size > 1 and rng.random() < 0.5:
        # One channel only: the others keep their value.
        c = rng.randrange(a.size)
        one = a.astype(np.float32).copy()
        one.flat[c] = new.flat[c]
        return one, f"{name} on channel {c}"
    return new, name


def _reshape_qparam(rng: random.Random, a: np.ndarray) -> tuple[np.ndarray, str]:
    """Per-tensor ↔ per-channel, or a per-channel array of the wrong length."""
    if a.ndim == 0:
        n = rng.choice((1, 2, 8, 16))
        return np.full(n, a, a.dtype), f"scalar -> per-channel [{n}]"
    if rng.random() < 0.5:
        return a.reshape(-1)[0].copy(), "per-channel -> scalar"
    n = max(1, a.size + rng.choice((-1, 1)))
    return np.resize(a, n), f"per-channel [{a.size}] -> [{n}]"


def _scales(w: _Work) -> str | None:
    t = _target(w, _scale_uses(w.graph))
    a = None if t is None else _array(t)
    if t is None or a is None or a.dtype != np.float32:
        return None
    new, what = (_reshape_qparam(w.rng, a) if w.rng.random() < 0.25
                 else _scale_value(w.rng, a))
    _set(t, new)
    if w.rng.random() < 0.4:
        # Keep the model valid where it can be: other multipliers, exactly computed.
        for dq, exact in _exact_bias_scales(w.graph):
            _set(_inits(w.graph)[dq.input[1]], exact)
        what += ", bias scales recomputed"
    return f"{t.name} {what}"


def _zp_value(rng: random.Random, t: onnx.TensorProto, a: np.ndarray) -> str:
    """Out-of-range values written into the typed field (numpy would wrap them)."""
    info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else np.iinfo(np.int8)
    value = rng.choice((info.max + 1, info.min - 1, 1000, -1000, 2 ** 31 - 1))
    n = max(1, a.size)
    t.ClearField("raw_data")
    del t.int32_data[:]
    t.int32_data.extend([value] * n)
    return f"{value} (out of range)"


def _zp_type(rng: random.Random, t: onnx.TensorProto, a: np.ndarray) -> str:
    dtype = rng.choice([d for d in (np.int8, np.uint8, np.int16, np.int32, np.float32, np.uint16)
                        if d != a.dtype])
    with np.errstate(all="ignore"):
        _set(t, a.astype(dtype))
    return f"retyped {a.dtype} -> {np.dtype(dtype)}"


def _zp_in_range(rng: random.Random, t: onnx.TensorProto, a: np.ndarray) -> str:
    """A valid but different zero point: the accepted model must still be computed exactly."""
    info = np.iinfo(a.dtype) if a.dtype.kind in "iu" else np.iinfo(np.int8)
    value = rng.choice((info.min, info.max, rng.randint(info.min, info.max)))
    _set(t, np.full_like(a, value))
    return f"{value} (in range)"


def _zero_points(w: _Work) -> str | None:
    t = _target(w, _zp_uses(w.graph))
    a = None if t is None else _array(t)
    if t is None or a is None:
        return None
    roll = w.rng.random()
    if roll < 0.3:
        what = _zp_value(w.rng, t, a)
    elif roll < 0.5:
        what = _zp_type(w.rng, t, a)
    elif roll < 0.7:
        new, what = _reshape_qparam(w.rng, a)
        _set(t, new)
    else:
        what = _zp_in_range(w.rng, t, a)
    return f"{t.name} {what}"


def _bias_dqs(g: onnx.GraphProto) -> list[tuple[onnx.NodeProto, float, np.ndarray]]:
    """Each bias DequantizeLinear of a QDQ Conv/Gemm with the x_scale and w_scale it should
    agree with."""
    inits, producers = _inits(g), _producers(g)
    found = []
    for node in g.node:
        if node.op_type not in ("Conv", "Gemm") or len(node.input) < 3:
            continue
        dq_b, dq_x, dq_w = (producers.get(node.input[i]) for i in (2, 0, 1))
        if not all(n is not None and n.op_type == "DequantizeLinear" and len(n.input) > 1
                   and n.input[1] in inits for n in (dq_b, dq_x, dq_w)):
            continue
        x_scale, w_scale = (_array(inits[n.input[1]]) for n in (dq_x, dq_w))
        if x_scale is not None and w_scale is not None and x_scale.size == 1:
            found.append((dq_b, float(x_scale.reshape(())), w_scale))
    return found


def _exact_bias_scales(g: onnx.GraphProto) -> list[tuple[onnx.NodeProto, np.ndarray]]:
    """Each bias DequantizeLinear and the scale it should have: float32 x_scale · w_scale."""
    with np.errstate(all="ignore"):
        return [(dq, (np.float32(x) * ws.astype(np.float32)).astype(np.float32))
                for dq, x, ws in _bias_dqs(g)]


def _bias_scale(w: _Work) -> str | None:
    found = _exact_bias_scales(w.graph)
    if not found:
        return None
    dq, exact = w.rng.choice(found)
    t = w.graph.initializer.add()
    t.name = f"{dq.input[1]}__fuzz{len(w.graph.initializer)}"
    dq.input[1] = t.name
    if w.rng.random() < 0.3:
        ulps = w.rng.choice((0, 1, -1, 2))
        value = exact
        for _ in range(abs(ulps)):
            value = np.nextafter(value, np.float32(np.inf if ulps > 0 else 0))
        _set(t, value)
        return f"{t.name} = x_scale*w_scale {ulps:+d} ulp"
    value, what = _scale_value(w.rng, exact)
    _set(t, value)
    return f"{t.name} = x_scale*w_scale {what}"


# ------------------------------------------------------------------------------------------------
# Dims, data types, raw data

def _dim_edit(rng: random.Random, dims: list[int]) -> tuple[list[int | str], str]:
    """New dims (ints, or strings for symbolic ones) and what changed."""
    if not dims:
        return [rng.choice((1, 2, 0))], "scalar -> [n]"
    dims = list(dims)
    axis = rng.randrange(len(dims))
    roll = rng.random()
    if roll < 0.45:
        value = rng.choice((0, -1, *_HUGE, 2, dims[axis] + 1))
        dims[axis] = value
        return dims, f"axis {axis} = {value}"
    if roll < 0.6 and len(dims) > 1:
        other = (axis + 1) % len(dims)
        dims[axis], dims[other] = dims[other], dims[axis]
        return dims, f"swap axes {axis}, {other}"
    if roll < 0.75:
        return [*dims[:axis], "N", *dims[axis + 1:]], f"axis {axis} symbolic"
    if roll < 0.9:
        return [*dims, 1], "extra axis"
    return dims[:-1], "axis dropped"


def _value_infos(g: onnx.GraphProto) -> list[tuple[str, onnx.ValueInfoProto]]:
    inits = _inits(g)
    return ([("input", v) for v in g.input if v.name not in inits]
            + [("value_info", v) for v in g.value_info] + [("output", v) for v in g.output])


def _dims(w: _Work) -> str | None:
    infos = [(what, v) for what, v in _value_infos(w.graph)
             if v.type.tensor_type.HasField("shape")]
    if infos and w.rng.random() < 0.6:
        what, v = w.rng.choice(infos)
        shape = v.type.tensor_type.shape
        dims, how = _dim_edit(w.rng, [d.dim_value for d in shape.dim])
        shape.ClearField("dim")
        for d in dims:
            if isinstance(d, str):
                shape.dim.add().dim_param = d
            else:
                shape.dim.add().dim_value = d
        return f"{what} {v.name!r} {how}"
    t = w.rng.choice(list(w.graph.initializer))
    dims, how = _dim_edit(w.rng, list(t.dims))
    del t.dims[:]
    t.dims.extend(d if isinstance(d, int) else 1 for d in dims)
    return f"initializer {t.name!r} {how}"


def _dtypes(w: _Work) -> str | None:
    roll = w.rng.random()
    if roll < 0.35:
        t = w.rng.choice(list(w.graph.initializer))
        old, t.data_type = t.data_type, w.rng.choice(_ALL_TYPES)
        return f"initializer {t.name!r} data_type {old} -> {t.data_type} (data kept)"
    if roll < 0.7:
        t = w.rng.choice(list(w.graph.initializer))
        a = _array(t)
        if a is None:
            return None
        new = w.rng.choice(_NUMPY_TYPES)
        with np.errstate(all="ignore"):
            _set(t, a.astype(onnx.helper.tensor_dtype_to_np_dtype(new)))
        return f"initializer {t.name!r} re-encoded {a.dtype} -> {t.data_type}"
    what, v = w.rng.choice(_value_infos(w.graph))
    old = v.type.tensor_type.elem_type
    v.type.tensor_type.elem_type = w.rng.choice(_ALL_TYPES)
    return f"{what} {v.name!r} elem_type {old} -> {v.type.tensor_type.elem_type}"


def _typed(t: onnx.TensorProto, a: np.ndarray) -> None:
    """Store ``t`` in its typed field instead of raw_data (the same values)."""
    t.CopyFrom(onnx.helper.make_tensor(t.name, t.data_type, list(t.dims),
                                       a.reshape(-1).tolist(), raw=False))


def _raw_data(w: _Work) -> str | None:
    t = w.rng.choice(list(w.graph.initializer))
    a = _array(t)
    if not t.HasField("raw_data"):
        if a is None or w.rng.random() < 0.3:
            t.raw_data = bytes(w.rng.randrange(3))
            return f"{t.name!r} typed + raw_data {len(t.raw_data)} bytes"
        _set(t, a)
        return f"{t.name!r} typed -> raw_data"
    raw = t.raw_data
    variants: list[tuple[str, Callable[[], bytes]]] = [
        ("truncated by 1", lambda: raw[:-1]), ("halved", lambda: raw[:len(raw) // 2]),
        ("emptied", lambda: b""), ("extended by 1", lambda: raw + b"\x01"),
        ("doubled", lambda: raw + raw),
        ("random bytes", lambda: w.rng.randbytes(len(raw))),
    ]
    if a is not None and w.rng.random() < 0.25:
        _typed(t, a)
        return f"{t.name!r} raw_data -> typed fields"
    what, fn = w.rng.choice(variants)
    t.raw_data = fn()
    return f"{t.name!r} raw_data {what}"


# ------------------------------------------------------------------------------------------------
# Attributes

#: Attributes a node of each type may gain, with plausible and implausible values.
_NEW_ATTRS: dict[str, list[tuple[str, object]]] = {
    "Conv": [("group", 2), ("dilations", [2, 2]), ("strides", [2, 2]), ("pads", [1, 1, 1, 1]),
             ("auto_pad", "SAME_UPPER"), ("kernel_shape", [5, 5])],
    "QLinearConv": [("group", 2), ("dilations", [2, 2]), ("strides", [3, 3]),
                    ("auto_pad", "SAME_LOWER")],
    "MaxPool": [("ceil_mode", 1), ("dilations", [2, 2]), ("storage_order", 1),
                ("strides", [1, 1]), ("pads", [0, 0, 1, 1])],
    "Gemm": [("transA", 1), ("transB", 0), ("alpha", 2.0), ("beta", 0.5)],
    "QGemm": [("transA", 1), ("transB", 0), ("alpha", 0.5)],
    "DequantizeLinear": [("axis", 1), ("axis", -1), ("axis", 7), ("block_size", 2)],
    "QuantizeLinear": [("axis", 0), ("saturate", 0), ("output_dtype", 3)],
    "Reshape": [("allowzero", 1)],
}
_AUTO_PAD = ("SAME_UPPER", "SAME_LOWER", "VALID", "NOTSET", "garbage", "")
_BAD_FLOATS = (0.0, -1.0, 2.0, 0.5, math.nan, math.inf)


def _set_attr_value(rng: random.Random, a: onnx.AttributeProto) -> str:
    A = onnx.AttributeProto
    if a.type == A.INT:
        a.i = rng.choice(_BAD_INTS)
        return f"= {a.i}"
    if a.type == A.FLOAT:
        a.f = rng.choice(_BAD_FLOATS)
        return f"= {a.f}"
    if a.type == A.STRING:
        a.s = rng.choice(_AUTO_PAD).encode()
        return f"= {a.s!r}"
    if a.type == A.INTS:
        values = list(a.ints)
        if values and rng.random() < 0.6:
            values[rng.randrange(len(values))] = rng.choice(_BAD_INTS)
        else:
            values = values + [1] if rng.random() < 0.5 else values[:-1]
        del a.ints[:]
        a.ints.extend(values)
        return f"= {values}"
    return "unchanged (unhandled type)"


def _attributes(w: _Work) -> str | None:
    nodes = [n for n in w.graph.node if n.attribute or n.op_type in _NEW_ATTRS]
    node = w.rng.choice(nodes)
    label = f"{node.op_type} {node.name!r}"
    roll = w.rng.random()
    if node.attribute and roll < 0.5:
        a = w.rng.choice(list(node.attribute))
        return f"{label} {a.name} {_set_attr_value(w.rng, a)}"
    if node.attribute and roll < 0.6:
        a = w.rng.choice(list(node.attribute))
        node.attribute.remove(a)
        return f"{label} {a.name} removed"
    if node.attribute and roll < 0.7:
        copy = node.attribute.add()
        copy.CopyFrom(w.rng.choice(list(node.attribute)[:-1]))
        _set_attr_value(w.rng, copy)
        return f"{label} {copy.name} duplicated"
    if node.attribute and roll < 0.8:
        a = w.rng.choice(list(node.attribute))
        new = onnx.helper.make_attribute(a.name, w.rng.choice((1.5, "x", [1, 2], 3)))
        a.CopyFrom(new)
        return f"{label} {a.name} retyped to {onnx.AttributeProto.AttributeType.Name(a.type)}"
    name, value = w.rng.choice(_NEW_ATTRS.get(node.op_type, [("fuzz_unknown", 1)]))
    for old in [a for a in node.attribute if a.name == name]:
        node.attribute.remove(old)
    node.attribute.append(onnx.helper.make_attribute(name, value))
    return f"{label} {name} set to {value!r}"


# ------------------------------------------------------------------------------------------------
# Names

def _bad_utf8(rng: random.Random) -> bytes:
    return rng.choice((b"\xff\xfe", b"\xc3\x28", b"\x80", b"\xed\xa0\x80", b"\xf8\x88\x80\x80",
                       b"ok\xe2\x82")) + b"_name"


def _new_name(w: _Work) -> tuple[str, str]:
    """A hostile name and what it is."""
    names = _tensor_names(w.graph)
    choices: list[tuple[str, Callable[[], str]]] = [
        ("invalid UTF-8", lambda: w.placeholder(_bad_utf8(w.rng))),
        ("empty", lambda: ""), ("duplicate", lambda: w.rng.choice(names)),
        ("very long", lambda: "n" * w.rng.choice((1000, 100_000, 1_000_000))),
    ]
    choices += [(repr(s), lambda s=s: s) for s in (
        "a\x00b", "a\nb", "\x1b[31mred", "tab\there", "line\u2028sep", "é✓日本😀",
        "a b", "../../etc/passwd", "`define X", "module", "$finish;", "back\\slash", 'q"uote',
        "// comment", "1starts_with_digit")]
    what, fn = w.rng.choice(choices)
    return fn(), what


def _names(w: _Work) -> str | None:
    name, what = _new_name(w)
    g = w.graph
    roll = w.rng.random()
    if roll < 0.2:
        node = w.rng.choice(list(g.node))
        old, node.name = node.name, name
        return f"node {old!r} renamed {what}"
    if roll < 0.55:
        old = w.rng.choice(_tensor_names(g))
        _rename_everywhere(g, old, name)
        return f"tensor {old!r} renamed {what} everywhere"
    if roll < 0.7:
        node = w.rng.choice([n for n in g.node if n.output])
        old = node.output[0]
        node.output[0] = name
        return f"output {old!r} of {node.op_type} renamed {what} (readers not)"
    if roll < 0.8:
        g.name = name
        return f"graph name {what}"
    if roll < 0.9:
        g.doc_string = name
        return f"graph doc_string {what}"
    entry = w.model.metadata_props.add()
    entry.key, entry.value = name, name
    return f"metadata_props key/value {what}"


# ------------------------------------------------------------------------------------------------
# Graph structure

def _new_output(w: _Work) -> str | None:
    """Add an intermediate tensor as a graph output, typed as shape inference says."""
    try:
        inferred = onnx.shape_inference.infer_shapes(w.model)
    except Exception:       # an earlier mutation broke inference; the output stays untyped
        inferred = w.model
    types = {v.name: v.type for v in inferred.graph.value_info}
    present = {o.name for o in w.graph.output}
    candidates = [o for n in w.graph.node for o in n.output if o and o not in present]
    if not candidates:
        return None
    name = w.rng.choice(candidates)
    out = w.graph.output.add()
    out.name = name
    if name in types:
        out.type.CopyFrom(types[name])
    return f"graph output {name!r} added"


def _structure(w: _Work) -> str | None:
    g = w.graph
    nodes = list(g.node)
    rng = w.rng
    i = rng.randrange(len(nodes))
    node = nodes[i]
    label = f"node {i} ({node.op_type})"
    roll = rng.random()
    if roll < 0.12:
        g.node.remove(node)
        return f"{label} deleted"
    if roll < 0.2:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        g.node.insert(i + 1, copy)
        return f"{label} duplicated (same outputs)"
    if roll < 0.28:
        copy = g.node.add()
        copy.CopyFrom(node)
        copy.name = f"{node.name}_dead"
        del copy.output[:]
        copy.output.extend(f"{o}__dead" for o in node.output)
        return f"{label} duplicated as a dead node"
    if roll < 0.38 and len(nodes) > 1:
        j = rng.randrange(len(nodes))
        a, b = onnx.NodeProto(), onnx.NodeProto()
        a.CopyFrom(nodes[i])
        b.CopyFrom(nodes[j])
        g.node[i].CopyFrom(b)
        g.node[j].CopyFrom(a)
        return f"nodes {i} and {j} swapped"
    if roll < 0.55 and node.input:
        k = rng.randrange(len(node.input))
        old, node.input[k] = node.input[k], rng.choice(_tensor_names(g))
        return f"{label} input {k} rewired {old!r} -> {node.input[k]!r}"
    if roll < 0.63 and node.input:
        later = [o for n in nodes[i:] for o in n.output if o]
        k = rng.randrange(len(node.input))
        node.input[k] = rng.choice(later)
        return f"{label} input {k} reads a later output (cycle)"
    if roll < 0.71 and g.output:
        g.output.remove(rng.choice(list(g.output)))
        return "a graph output dropped"
    if roll < 0.76:
        del g.output[:]
        return "all graph outputs removed"
    if roll < 0.86:
        return _new_output(w)
    if roll < 0.93:
        extra = g.input.add()
        extra.CopyFrom(g.input[0])
        extra.name = f"{g.input[0].name}_extra"
        return "an unused graph input added"
    del g.input[:]
    return "all graph inputs removed"


# ------------------------------------------------------------------------------------------------
# External data

def _external_location(w: _Work, valid: str) -> tuple[str, str]:
    """A location entry (maybe escaping the model's directory) and what it is."""
    choices = [("valid", valid), ("parent", f"../{valid}"), ("absolute", "/etc/hostname"),
               ("/dev/zero", "/dev/zero"),
               ("/proc/self/environ", "/proc/self/environ"), ("empty", ""), ("dot", "."),
               ("missing file", "nothing.bin"), ("via subdir", f"sub/../{valid}"),
               ("link outside", "outside.lnk"), ("link inside", "inside.lnk")]
    what, location = w.rng.choice(choices)
    if location == "outside.lnk":
        w.links[location] = "/etc/hostname"
    elif location == "inside.lnk":
        w.links[location] = valid
    return location, what


def _external_data(w: _Work) -> str | None:
    inits = [t for t in w.graph.initializer if t.HasField("raw_data") and t.raw_data]
    if not inits:
        return None
    t = w.rng.choice(inits)
    file = f"{t.name.replace('/', '_')}.bin"
    pad = w.rng.choice((0, 0, 16, 4096))
    w.files[file] = bytes(pad) + t.raw_data
    entries = {"location": file, "offset": str(pad), "length": str(len(t.raw_data))}
    roll = w.rng.random()
    what = "valid"
    if roll < 0.35:
        entries["location"], what = _external_location(w, file)
    elif roll < 0.5:
        entries["offset"] = str(w.rng.choice((-1, len(w.files[file]), 2 ** 40, 1)))
        what = f"offset {entries['offset']}"
    elif roll < 0.65:
        entries["length"] = w.rng.choice(("0", str(2 ** 40), str(len(t.raw_data) + 1), "-5",
                                          "abc", "1e3"))
        what = f"length {entries['length']}"
    elif roll < 0.72:
        del entries["location"]
        what = "no location"
    elif roll < 0.78:
        entries["fuzz_key"] = "1"
        what = "unknown key"
    elif roll < 0.85:
        w.files[file] = w.files[file][:len(w.files[file]) // 2]
        what = "file truncated"
    keep_raw = roll >= 0.92
    if not keep_raw:
        t.ClearField("raw_data")
    else:
        what += ", raw_data kept"
    t.data_location = _T.EXTERNAL
    for key, value in entries.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return f"{t.name!r} -> {file}: {what}"


#: Mutation kinds and the function making one mutation of each (None: does not apply).
_MUTATORS: dict[str, Callable[[_Work], str | None]] = {
    "dims": _dims, "dtypes": _dtypes, "raw_data": _raw_data, "scales": _scales,
    "zero_points": _zero_points, "bias_scale": _bias_scale, "attributes": _attributes,
    "names": _names, "structure": _structure, "external_data": _external_data,
}
KINDS = tuple(_MUTATORS)


def mutant(seed: int, index: int, models: tuple[str, ...] = DEFAULT_MODELS,
           kinds: tuple[str, ...] = KINDS) -> Mutant:
    """The mutant ``index`` of run ``seed``: base model ``models[index % len(models)]`` with one
    to three mutations of the given kinds.

    Parameters
    ----------
    seed, index
        Determine the mutant (with ``models`` and ``kinds``).
    models
        Base models, paths relative to the repository (or absolute).
    kinds
        Mutation kinds to draw from (:data:`KINDS`).

    Returns
    -------
    Mutant
    """
    base = models[index % len(models)]
    rng = random.Random(f"{seed}:{index}")
    w = _Work(onnx.load(REPO / base), rng)
    done: list[tuple[str, str]] = []
    for _ in range(rng.randint(1, 3)):
        for _attempt in range(10):
            kind = rng.choice(kinds)
            try:
                what = _MUTATORS[kind](w)
            except (IndexError, ValueError):
                what = None             # an earlier mutation removed what this one needs
            if what is not None:
                # Names may have become a megabyte long; descriptions stay one short line.
                done.append((kind, what if len(what) <= 160 else what[:157] + "..."))
                break
    return Mutant(seed, index, base, tuple(done), w.serialize(), dict(w.files), dict(w.links))
