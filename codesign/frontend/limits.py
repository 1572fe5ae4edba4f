"""Limits and integrity checks on the parsed ONNX protobuf, before any tensor is materialised.

Everything here reads the protobuf's fields (names, declared dims, data lengths, external-data
entries) and never builds a numpy array, so a hostile file is refused in time and memory
proportional to its own size, whatever sizes it declares. The limits are far above any TinyML
model and still below what the NPU could run (docs/support.md lists them with their reasons):

* the model file plus its external data: :data:`MAX_MODEL_BYTES`;
* nodes and initializers: :data:`MAX_NODES` each;
* every graph input and output: rank <= :data:`MAX_RANK`, dims >= 1, at most
  :data:`MAX_ACTIVATION_ELEMENTS` elements (the loader holds every IR tensor to the same);
* every other declared or inferred tensor (``value_info``; it may be a dequantized weight): at
  most :data:`MAX_CONSTANT_ELEMENTS` elements;
* every constant (initializer, ``Constant`` node): at most :data:`MAX_CONSTANT_ELEMENTS`
  elements, a data type numpy holds exactly, and exactly as many bytes (or values) as its dims
  say, in the file or in an external file inside the model's directory;
* every string is valid UTF-8, and names hold no control or line-break characters (they reach
  messages, ``program.lst``, ``symbols.json`` and ``report.json``).
"""

from __future__ import annotations

import math
import os
import pathlib
import unicodedata
from collections.abc import Iterator

import onnx
import onnx.defs
from google.protobuf.message import Message

from codesign.errors import InputError

__all__ = ["tensors", "MAX_MODEL_BYTES", "MAX_NODES", "MAX_RANK", "MAX_ACTIVATION_ELEMENTS",
           "MAX_CONSTANT_ELEMENTS", "MAX_LAYER_MACS", "check_model_bytes", "check_proto",
           "check_inferred", "check_activation", "printable"]

#: Model file plus external data. The NPU's external memory holds the weights, the program and
#: the activations; 512 MiB is half of what it addresses at the default 4-byte bus (2**28 words)
#: and a thousand times the largest MLPerf Tiny model.
MAX_MODEL_BYTES = 512 * 2 ** 20
#: Nodes, and initializers, of the main graph (MLPerf Tiny models have a few hundred).
MAX_NODES = 2 ** 16
#: Rank of any declared shape (the IR's activations have rank <= 4).
MAX_RANK = 8
#: Elements of one activation (4 Mi: 14 times a 96×96×32 MobileNet tensor). It also keeps every
#: average-pool window sum, at most this many values of |x − x_zp| <= 255, inside int32.
MAX_ACTIVATION_ELEMENTS = 2 ** 22
#: Elements of one constant (16 Mi int8 weights: more than ResNet-18 has in all).
MAX_CONSTANT_ELEMENTS = 2 ** 24

#: Multiply-accumulates of one convolution or matrix product (1 Gi: 40 times MLPerf Tiny's
#: largest whole model); the golden model's float64 convolution takes seconds at this size.
MAX_LAYER_MACS = 2 ** 30

assert MAX_ACTIVATION_ELEMENTS * 255 < 2 ** 31

_T = onnx.TensorProto
#: Data types numpy holds exactly → (bytes per element, the typed field without raw_data).
_STORAGE = {
    _T.FLOAT: (4, "float_data"), _T.DOUBLE: (8, "double_data"), _T.FLOAT16: (2, "int32_data"),
    _T.INT8: (1, "int32_data"), _T.UINT8: (1, "int32_data"), _T.INT16: (2, "int32_data"),
    _T.UINT16: (2, "int32_data"), _T.INT32: (4, "int32_data"), _T.INT64: (8, "int64_data"),
    _T.UINT32: (4, "uint64_data"), _T.UINT64: (8, "uint64_data"), _T.BOOL: (1, "int32_data"),
}
_EXTERNAL_KEYS = {"location", "offset", "length", "checksum"}
#: Unicode categories refused in names: control characters and line/paragraph separators,
#: which would split a one-line message or a listing line.
_BAD_CATEGORIES = {"Cc", "Zl", "Zp"}


def check_model_bytes(size: int, name: str) -> None:
    """Refuse a model file larger than :data:`MAX_MODEL_BYTES` (before reading it)."""
    if size > MAX_MODEL_BYTES:
        raise InputError(f"{name} is {size} bytes, more than codesign's limit of "
                         f"{MAX_MODEL_BYTES} bytes ({MAX_MODEL_BYTES >> 20} MiB); TinyML models "
                         "are far smaller: check the file")


def check_proto(proto: onnx.ModelProto, name: str, base_dir: pathlib.Path | None,
                file_bytes: int) -> None:
    """All checks on a model parsed without its external data.

    Parameters
    ----------
    proto
        The parsed model (``load_external_data=False``).
    name
        How messages name the model.
    base_dir
        The model's directory, where external data must lie; ``None`` when the model was given
        as bytes (external data is then refused).
    file_bytes
        Size of the model file, counted with its external data against the size limit.

    Raises
    ------
    InputError
        On the first violated limit or inconsistency, naming the tensor or node.
    """
    _check_strings(proto, name, "model")
    _check_opsets(proto, name)
    graph = proto.graph
    for what, count in (("nodes", len(graph.node)), ("initializers", len(graph.initializer))):
        if count > MAX_NODES:
            raise InputError(f"{name} has {count} {what}, more than codesign's limit of "
                             f"{MAX_NODES}")
    if graph.sparse_initializer:
        raise InputError(f"{name}: sparse initializers ({graph.sparse_initializer[0].name!r}) "
                         "are not supported; store them dense")
    constants = {t.name for t in graph.initializer}
    for value in [*graph.input, *graph.output]:
        # Old exporters declare initializers as inputs too; constants have their own limits.
        if value.name not in constants:
            _check_declared(value, name, MAX_ACTIVATION_ELEMENTS)
    for value in graph.value_info:
        _check_declared(value, name, MAX_CONSTANT_ELEMENTS)
    _check_outputs(graph, name)
    external = sum(_check_tensor(t, what, name, base_dir) for t, what in tensors(graph))
    if file_bytes + external > MAX_MODEL_BYTES:
        raise InputError(f"{name} with its external data is {file_bytes + external} bytes, "
                         f"more than codesign's limit of {MAX_MODEL_BYTES} bytes")


def check_inferred(graph: onnx.GraphProto, name: str) -> None:
    """Refuse activations that ONNX shape inference found too large (e.g. from huge pads)."""
    for value in graph.output:
        _check_declared(value, name, MAX_ACTIVATION_ELEMENTS)
    for value in graph.value_info:
        _check_declared(value, name, MAX_CONSTANT_ELEMENTS)


def check_activation(shape: tuple[int, ...], what: str,
                     limit: int = MAX_ACTIVATION_ELEMENTS) -> str | None:
    """Why a tensor of ``shape`` is refused (``None`` if it is within the limits): rank at most
    :data:`MAX_RANK`, dims at least 1, at most ``limit`` elements."""
    if len(shape) > MAX_RANK:
        return f"{what} has rank {len(shape)}; at most {MAX_RANK} is supported"
    if any(d < 1 for d in shape):
        return f"{what} has shape {list(shape)}; every dimension must be at least 1"
    if math.prod(shape) > limit:
        return (f"{what} has shape {list(shape)}, {math.prod(shape)} elements, more than "
                f"codesign's limit of {limit} per tensor")
    return None


# ------------------------------------------------------------------------------------------------
# Strings

def printable(text: str) -> str:
    """``text`` with control and line-break characters and undecodable bytes of a file name
    (surrogate escapes) written as backslash escapes: safe in one-line messages and UTF-8 files.
    """
    return "".join(ascii(c)[1:-1] if unicodedata.category(c) in _BAD_CATEGORIES | {"Cs"} else c
                   for c in text)


def _check_strings(message: Message, name: str, path: str) -> None:
    """Refuse strings that are not valid UTF-8 (protobuf then hands out ``bytes``) and names
    with control or line-break characters, anywhere in ``message``."""
    for field, value in message.ListFields():
        values = value if field.is_repeated else [value]
        where = f"{path}.{field.name}"
        if field.type == field.TYPE_MESSAGE:
            for i, item in enumerate(values):
                item_path = f"{where}[{i}]" if field.is_repeated else where
                if field.name == "metadata_props":
                    # Free text, like doc strings: may span lines, must still be UTF-8.
                    for text in (item.key, item.value):
                        _check_string(text, True, name, item_path)
                else:
                    _check_strings(item, name, item_path)
        elif field.type == field.TYPE_STRING:
            for item in values:
                _check_string(item, field.name == "doc_string", name, where)


def _check_string(text: str | bytes, free_text: bool, name: str, where: str) -> None:
    if not isinstance(text, str):
        raise InputError(f"{name}: {where} {bytes(text)[:40]!r} is not valid UTF-8; rename it")
    if not free_text and any(unicodedata.category(c) in _BAD_CATEGORIES for c in text):
        raise InputError(f"{name}: {where} {text[:40]!r} contains control or line-break "
                         "characters; rename it")


# ------------------------------------------------------------------------------------------------
# Graph structure and declared shapes

def _check_opsets(proto: onnx.ModelProto, name: str) -> None:
    """Refuse an ONNX opset newer than the installed onnx defines: its ops' meaning is unknown
    (onnx.checker lets it through)."""
    known = onnx.defs.onnx_opset_version()
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx") and opset.version > known:
            raise InputError(f"{name} uses ONNX opset {opset.version}; the installed onnx knows "
                             f"opsets up to {known}: export with an older opset")


def _check_outputs(graph: onnx.GraphProto, name: str) -> None:
    """Outputs exist and are distinct (onnx.checker checks that nodes produce them, SSA form and
    topological order, but not these)."""
    if not graph.output:
        raise InputError(f"{name} is not a valid ONNX file: the graph has no outputs")
    seen = set()
    for value in graph.output:
        if value.name in seen:
            raise InputError(f"{name} is not a valid ONNX file: output {value.name!r} is listed "
                             "twice")
        seen.add(value.name)


def _check_declared(value: onnx.ValueInfoProto, name: str, limit: int) -> None:
    """A declared tensor shape: concrete dims within :func:`check_activation`'s limits with
    ``limit`` elements (symbolic dims count as 1: the loader fixes the batch and refuses the
    rest)."""
    if value.type.WhichOneof("value") is None:
        return  # untyped: shape inference types it
    if not value.type.HasField("tensor_type"):
        raise InputError(f"{name}: {value.name!r} is not a tensor ({value.type.WhichOneof('value')}"
                         "); only tensors are supported")
    t = value.type.tensor_type
    if t.elem_type == onnx.TensorProto.UNDEFINED or t.elem_type not in (
            onnx.TensorProto.DataType.values()):
        raise InputError(f"{name}: tensor {value.name!r} has element type {t.elem_type}, which "
                         "ONNX does not define")
    if not t.HasField("shape"):
        return
    concrete = tuple(d.dim_value if d.HasField("dim_value") else 1 for d in t.shape.dim)
    problem = check_activation(concrete, f"tensor {value.name!r}", limit)
    if problem is not None:
        raise InputError(f"{name}: {problem}")


# ------------------------------------------------------------------------------------------------
# Constants

def tensors(graph: onnx.GraphProto) -> Iterator[tuple[onnx.TensorProto, str]]:
    """Every TensorProto of ``graph`` and its subgraphs, with how to name it."""
    for t in graph.initializer:
        yield t, f"initializer {t.name!r}"
    for node in graph.node:
        for a in node.attribute:
            if a.HasField("t"):
                yield a.t, f"attribute {a.name!r} of node {node.name!r}"
            for t in a.tensors:
                yield t, f"attribute {a.name!r} of node {node.name!r}"
            for g in ([a.g] if a.HasField("g") else []) + list(a.graphs):
                yield from tensors(g)


def _check_tensor(t: onnx.TensorProto, what: str, name: str,
                  base_dir: pathlib.Path | None) -> int:
    """Refuse a constant that numpy could not hold as declared; its external bytes (or 0)."""
    if t.data_type not in _STORAGE:
        type_name = onnx.TensorProto.DataType.Name(t.data_type) if (
            t.data_type in onnx.TensorProto.DataType.values()) else str(t.data_type)
        raise InputError(f"{name}: {what} has data type {type_name}; only float32/64/16 and "
                         "(u)int8/16/32/64 and bool constants are supported")
    dims = list(t.dims)
    if len(dims) > MAX_RANK or any(d < 0 for d in dims):
        raise InputError(f"{name}: {what} has dims {dims[:MAX_RANK + 1]}; dims must be "
                         f"non-negative and at most {MAX_RANK}")
    count = math.prod(dims)
    if count > MAX_CONSTANT_ELEMENTS:
        raise InputError(f"{name}: {what} has {count} elements, more than codesign's limit of "
                         f"{MAX_CONSTANT_ELEMENTS} per constant")
    if t.HasField("segment"):
        raise InputError(f"{name}: {what} is segmented, which is not supported")
    itemsize, field = _STORAGE[t.data_type]
    if t.data_location == onnx.TensorProto.EXTERNAL:
        return _check_external(t, what, name, base_dir, count * itemsize)
    if t.HasField("raw_data"):
        have, want, unit = len(t.raw_data), count * itemsize, "bytes"
    else:
        have, want, unit = len(getattr(t, field)), count, "values"
    if have != want:
        raise InputError(f"{name}: {what} holds {have} {unit} but its dims {dims} need {want}; "
                         "the file is corrupt")
    return 0


def _check_external(t: onnx.TensorProto, what: str, name: str, base_dir: pathlib.Path | None,
                    want: int) -> int:
    """The external-data entries of ``t``: a file inside the model's directory that holds
    exactly ``want`` bytes at ``offset``; returns ``want``."""
    if base_dir is None:
        raise InputError(f"{name}: {what} has external data, which needs the model's path (the "
                         "model was given as bytes)")
    entries = {e.key: e.value for e in t.external_data}
    unknown = set(entries) - _EXTERNAL_KEYS
    if unknown or "location" not in entries:
        raise InputError(f"{name}: {what} has external-data keys {sorted(entries)}; it needs "
                         f"'location' and only {sorted(_EXTERNAL_KEYS)} are known")
    try:
        offset, length = (int(entries.get(k, default)) for k, default in (("offset", "0"),
                                                                           ("length", "-1")))
    except ValueError:
        raise InputError(f"{name}: {what} has a non-integer external-data offset or "
                         "length") from None
    base = base_dir.resolve()
    location = entries["location"]
    path = (base / location).resolve()
    if pathlib.PurePath(location).is_absolute() or not path.is_relative_to(base):
        raise InputError(f"{name}: {what}'s external data {location!r} lies outside the model's "
                         "directory")
    if not path.is_file():
        raise InputError(f"{name}: {what}'s external data file {location!r} does not exist")
    size = os.stat(path).st_size
    length = size - offset if length == -1 else length
    if offset < 0 or length != want or offset + length > size:
        raise InputError(f"{name}: {what}'s external data (offset {offset}, length {length}) "
                         f"does not match its {want} bytes within {location!r} ({size} bytes)")
    return want
