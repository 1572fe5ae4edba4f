"""Layer-by-layer comparison of the RTL, the golden model and onnxruntime.

Each op of the golden model is checked against onnxruntime's kernel for that op alone, on the
same inputs (:mod:`codesign.opwitness`), so that a difference is pinned to the op that makes it
instead of every op downstream of it (:func:`check_ops`, the verdict of ``codesign verify``:
each op must be within its documented bound, :data:`ORT_BOUND_LSB`).

With ``verify --per-layer`` every IR tensor also has its own buffer in external memory, so one
RTL run yields every layer's output, compared with the golden model run on the same input
(:func:`compare_layers`). The first layer where anything disagrees is the one to debug.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from . import ir

__all__ = ["LayerDiff", "OpCheck", "ORT_BOUND_LSB", "check_ops", "compare_layers",
           "format_layers", "format_checks"]

#: Largest difference in LSB allowed between each golden op and onnxruntime's kernel for it, run
#: on the same inputs (docs/arithmetic.md): 0 where onnxruntime's kernels are integer-exact, 1
#: where it computes in float and the golden model has its own integer formulation.
ORT_BOUND_LSB = {ir.OpKind.CONV: 0, ir.OpKind.MAXPOOL: 0, ir.OpKind.FLATTEN: 0,
                 ir.OpKind.AVGPOOL: 1, ir.OpKind.ADD: 1, ir.OpKind.CONCAT: 1,
                 ir.OpKind.PAD: 0, ir.OpKind.RESIZE: 0, ir.OpKind.CONV_TRANSPOSE: 1,
                 ir.OpKind.LUT: 0,
                 # onnxruntime adds Mul's zero point in float32 before rounding (MLAS qlmul.cpp)
                 ir.OpKind.MUL: 1}


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


def _first(a: np.ndarray, b: np.ndarray) -> tuple[int, ...] | None:
    diff = np.argwhere(a.astype(np.int64) != b.astype(np.int64))
    return tuple(int(i) for i in diff[0]) if len(diff) else None


@dataclasses.dataclass(frozen=True)
class OpCheck:
    """One golden op against onnxruntime's kernel for it alone on the same inputs, over every
    inference; ``compared`` counts the inferences where onnxruntime could run it."""
    layer: str
    kind: str
    bound: int
    compared: int
    mismatches: int
    max_lsb: int

    @property
    def within_bound(self) -> bool:
        return self.compared > 0 and self.max_lsb <= self.bound


def _delta(golden: np.ndarray, ort: np.ndarray) -> np.ndarray:
    return np.abs(golden.astype(np.int64) - ort.astype(np.int64))


def check_ops(graph: ir.Graph, golden: list[dict[str, np.ndarray]],
              ort: list[dict[str, np.ndarray]],
              bounds: dict[ir.OpKind, int] | None = None) -> list[OpCheck]:
    """Per op of ``graph``: the golden op vs onnxruntime's kernel for it alone on the same
    inputs, over the inferences (golden tensors and onnxruntime's op outputs, by name).
    ``bounds`` replaces :data:`ORT_BOUND_LSB` for another witness (qonnx's executor)."""
    bounds = ORT_BOUND_LSB if bounds is None else bounds
    checks = []
    for op in graph.ops:
        compared = mismatches = max_lsb = 0
        for values, outputs in zip(golden, ort, strict=True):
            if op.y.name not in outputs:
                continue
            delta = _delta(values[op.y.name], outputs[op.y.name])
            compared += 1
            mismatches += int(np.count_nonzero(delta))
            max_lsb = max(max_lsb, int(delta.max(initial=0)))
        checks.append(OpCheck(op.name, op.kind.value, bounds[op.kind], compared,
                              mismatches, max_lsb))
    return checks


def format_checks(checks: list[OpCheck], witness: str = "onnxruntime") -> str:
    """The ops that are not within their bound of the witness, one line each (empty if none)."""
    lines = []
    for c in checks:
        if c.within_bound:
            continue
        if not c.compared:
            lines.append(f"op {c.layer} ({c.kind}): {witness} could not run it alone, so it "
                         "is not checked")
        else:
            lines.append(f"op {c.layer} ({c.kind}): {c.mismatches} element(s) differ from "
                         f"{witness} on its own inputs, up to {c.max_lsb} LSB (bound "
                         f"{c.bound})")
    return "\n".join(lines)


def compare_layers(graph: ir.Graph, rtl: dict[str, np.ndarray], golden: dict[str, np.ndarray],
                   ort: dict[str, np.ndarray]) -> list[LayerDiff]:
    """Per op of ``graph``: its RTL output vs the golden model, and the golden op vs
    onnxruntime's kernel for it alone on the same inputs (``ort``: its outputs by name)."""
    rows = []
    for op in graph.ops:
        name = op.y.name
        r, g = rtl[name], golden[name]
        mismatch = int(np.count_nonzero(r.astype(np.int64) != g.astype(np.int64)))
        vs_ort = lsb = None
        where = _first(r, g)
        o = ort.get(name)
        if o is not None:
            delta = _delta(g, o)
            vs_ort, lsb = int(np.count_nonzero(delta)), int(delta.max(initial=0))
            if where is None and vs_ort:
                where = _first(g, o)
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
    lines.append("* the golden op vs onnxruntime's kernel for it alone, on the same inputs")
    first = next((row for row in rows if row.first), None)
    lines.append("first divergence: " + (f"layer {first.layer} ({first.tensor}) at {first.first}"
                                          if first else "none — all layers agree"))
    return "\n".join(lines)
