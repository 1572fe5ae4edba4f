"""Layer-by-layer comparison of the RTL, the golden model and onnxruntime.

Every IR tensor has its own buffer in external memory, so one RTL run yields every layer's
output; it is compared with the golden model run on the same input (the RTL must be exact).
onnxruntime is asked for the same tensors by adding them as graph outputs, and each op of the
golden model is also run *on onnxruntime's own inputs to that op*, so that a difference is pinned
to the op that makes it instead of every op downstream of it. The first layer where anything
disagrees is the one to debug.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import onnx

from . import ir, reference
from .ortwitness import create_session

__all__ = ["LayerDiff", "onnxruntime_tensors", "ort_to_hwc", "compare_layers", "format_layers"]


@dataclasses.dataclass(frozen=True)
class LayerDiff:
    """One layer's output compared three ways (counts of differing elements)."""
    layer: str
    kind: str
    tensor: str
    shape: tuple[int, ...]
    rtl_vs_golden: int
    golden_vs_ort: int | None          # the op on ORT's inputs vs ORT; None: not comparable
    max_lsb_vs_ort: int | None
    first: str | None                  # first differing element, described


def onnxruntime_tensors(model: Path, feeds: list[dict[str, np.ndarray]], graph: ir.Graph
                        ) -> list[dict[str, np.ndarray]]:
    """Per feed: the IR tensors that exist under the same name in the ONNX graph, as HWC
    integers (one onnxruntime session for all feeds)."""
    proto = onnx.load(model)
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type for v in list(inferred.graph.value_info) + list(proto.graph.output)}
    wanted = {op.y.name: op.y for op in graph.ops if op.y.name in types}
    known = {o.name for o in proto.graph.output}
    for name in wanted:
        if name not in known:
            proto.graph.output.append(onnx.ValueInfoProto(name=name, type=types[name]))
    session = create_session(proto.SerializeToString())
    names = [o.name for o in session.get_outputs() if o.name in wanted]
    return [{name: ort_to_hwc(wanted[name], value)
             for name, value in zip(names, session.run(names, feed), strict=True)}
            for feed in feeds]


def ort_to_hwc(t: ir.Tensor, value: np.ndarray) -> np.ndarray:
    """An ONNX tensor (NCHW or 2-D/3-D; integers, or the float it dequantizes to) → HWC ints."""
    v = np.asarray(value)
    if np.issubdtype(v.dtype, np.floating):
        v = np.rint(v.astype(np.float64) / np.float64(t.scale)) + t.zero_point
    v = v.astype(np.int64)
    if v.ndim == 4:
        v = v[0].transpose(1, 2, 0)
    return v.reshape(t.shape)


def _first(a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    diff = np.argwhere(a.astype(np.int64) != b.astype(np.int64))
    return tuple(int(i) for i in diff[0]) if len(diff) else None


def _golden_op(op: ir.Op, values: dict[str, np.ndarray]) -> np.ndarray:
    """The golden model of ``op`` alone on the given input values."""
    tensors = ir.op_inputs(op)
    graph = ir.Graph(op.name, tuple(ir.IOBinding(t.name, t.shape, False, t) for t in tensors),
                     (ir.IOBinding(op.y.name, op.y.shape, False, op.y),), (op,))
    inputs = [np.asarray(values[t.name]).astype(t.numpy_dtype) for t in tensors]
    return reference.run(graph, inputs)[op.y.name]


def compare_layers(graph: ir.Graph, rtl: dict[str, np.ndarray], golden: dict[str, np.ndarray],
                   ort: dict[str, np.ndarray]) -> list[LayerDiff]:
    """Per op of ``graph``: its RTL output vs the golden model, and the golden op on ORT's
    inputs vs ORT's output."""
    known = {b.tensor.name: golden[b.tensor.name] for b in graph.inputs} | ort
    rows = []
    for op in graph.ops:
        name = op.y.name
        r, g = rtl[name], golden[name]
        mismatch = int(np.count_nonzero(r.astype(np.int64) != g.astype(np.int64)))
        vs_ort = lsb = None
        where = _first(r, g)
        o = known.get(name)
        if o is not None and all(t.name in known for t in ir.op_inputs(op)):
            isolated = _golden_op(op, known).astype(np.int64)
            delta = np.abs(isolated - o)
            vs_ort, lsb = int(np.count_nonzero(delta)), int(delta.max(initial=0))
            if where is None and vs_ort:
                where, g = _first(isolated, o), isolated
        first = None
        if where is not None:
            first = (f"(h, w, c) = {where}: RTL {int(r[where])}, golden {int(g[where])}"
                     + (f", onnxruntime {int(o[where])}" if o is not None else ""))
        rows.append(LayerDiff(op.name, op.kind.value, name, op.y.shape, mismatch, vs_ort, lsb,
                              first))
    return rows


def format_layers(rows: list[LayerDiff]) -> str:
    """A table plus the first diverging layer and element."""
    head = (f"{'layer':<28} {'kind':<8} {'shape':<14} {'RTL≠golden':>10} {'op≠ORT*':>10} "
            f"{'max|Δ|':>6}")
    lines = [head, "-" * len(head)]
    for row in rows:
        ort = "n/a" if row.golden_vs_ort is None else str(row.golden_vs_ort)
        lsb = "" if row.max_lsb_vs_ort is None else str(row.max_lsb_vs_ort)
        lines.append(f"{row.layer[:28]:<28} {row.kind:<8} {str(row.shape):<14} "
                     f"{row.rtl_vs_golden:>10} {ort:>10} {lsb:>6}")
    lines.append("* the golden op run on onnxruntime's own inputs to it, vs onnxruntime's output")
    first = next((row for row in rows if row.first), None)
    lines.append("first divergence: " + (f"layer {first.layer} ({first.tensor}) at {first.first}"
                                          if first else "none — all layers agree"))
    return "\n".join(lines)
