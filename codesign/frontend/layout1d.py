"""Which 3-D tensors of a model are 1-D activations ``[1, C, L]`` and which are rows ``[1, M, K]``.

ONNX gives both one rank. A 1-D convolution or pooling reads and writes ``[N, C, L]``: channels
C, length L, which the IR holds as ``(1, L, C)`` (a plane of height 1, as 2-D convolutions hold
``[1, C, H, W]``). A matrix product reads ``[1, M, K]`` as M rows of K features, IR
``(1, M, K)``. The frontend must know which one a tensor is before it creates its IR tensor, and
the graph input binding and the outputs must agree with the ops, so the choice is made for the
whole graph first, here, from the ops that make and read each tensor.

Tensors that carry the same values in the same layout (a QDQ model's Q/DQ pairs, Relu/Clip,
Identity, element-wise Add and Concat) form one group; the group is channels-first when any
convolution or pooling reads or writes a member, and it is refused when a matrix product also
does. Layout ops (Reshape, Flatten, Transpose, Squeeze, Unsqueeze) separate groups: their input
and output are mapped independently. A 3-D group that nothing decides is rows, as before,
unless a layout op that makes it would then move data where channels-first only reinterprets
(e.g. ``[1, C, 1, 1]`` → Squeeze → ``[1, C, 1]``): the frontend then flips the group
(:attr:`Layouts.undecided`).
"""

from __future__ import annotations

import dataclasses

import onnx

from codesign.errors import InputError
from codesign.frontend.ops import op_key

__all__ = ["Layouts", "channels_first_tensors"]

#: Ops whose input 0 and output 0 are 1-D activations when 3-D.
_CHANNELS_FIRST = {"Conv", "QLinearConv", "MaxPool", "AveragePool", "GlobalAveragePool",
                   "GlobalMaxPool", "ReduceMean", "com.microsoft.QLinearAveragePool",
                   "com.microsoft.QLinearGlobalAveragePool"}
#: Ops whose input 0 and output 0 are rows when 3-D.
_ROWS = {"MatMul", "Gemm", "QLinearMatMul", "com.microsoft.QGemm"}
#: Ops whose activation inputs (by index; ``None``: every input) and output 0 hold the same
#: layout.
_SAME_LAYOUT: dict[str, tuple[int, ...] | None] = {
    "QuantizeLinear": (0,), "DequantizeLinear": (0,), "Relu": (0,), "Clip": (0,),
    "Identity": (0,), "Add": None, "Concat": None, "com.microsoft.QLinearAdd": (0, 3),
}


class _Groups:
    """Union-find over tensor names."""

    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, name: str) -> str:
        root = name
        while self.parent.get(root, root) != root:
            root = self.parent[root]
        self.parent[name] = root
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[ra] = rb


def _ranks(graph: onnx.GraphProto, known: dict[str, int]) -> dict[str, int]:
    """``known`` completed where ONNX shape inference stops (com.microsoft ops): pooling,
    convolution and same-layout ops keep their input's rank."""
    ranks = dict(known)
    for node in graph.node:
        key = op_key(node)
        if (key in _CHANNELS_FIRST and key != "ReduceMean" or key in _SAME_LAYOUT
                or key == "com.microsoft.QLinearConcat") and node.output and node.input:
            source = node.input[2] if key == "com.microsoft.QLinearConcat" else node.input[0]
            if node.output[0] not in ranks and source in ranks:
                ranks[node.output[0]] = ranks[source]
    return ranks


@dataclasses.dataclass
class Layouts:
    """The layout decisions for one graph.

    ``channels_first``: the names of the 3-D tensors that are 1-D activations ``[N, C, L]``;
    ``undecided``: name → its group, for the tensors that no op decided.
    """
    channels_first: set[str]
    undecided: dict[str, frozenset[str]]


def channels_first_tensors(graph: onnx.GraphProto, ranks: dict[str, int],
                           model_name: str) -> Layouts:
    """Which tensors of ``graph`` are 1-D activations ``[N, C, L]`` (see :class:`Layouts`).

    ``ranks`` holds the rank of every tensor whose shape is known; only 3-D tensors are
    decided by the ops that touch them (a matrix product on a ``[1, C]`` ReduceMean output is
    no conflict).

    Raises
    ------
    InputError
        When one tensor is read or written both by a 1-D convolution/pooling and by a matrix
        product (it cannot be both ``[1, C, L]`` and ``[1, M, K]``).
    """
    groups = _Groups()
    for node in graph.node:
        key = op_key(node)
        if key in _SAME_LAYOUT and node.output and node.output[0]:
            indices = _SAME_LAYOUT[key]
            names = [n for i, n in enumerate(node.input)
                     if n and (indices is None or i in indices)]
            for n in names:
                groups.union(n, node.output[0])
        if key == "com.microsoft.QLinearConcat" and node.output:
            for n in node.input[2::3]:
                if n:
                    groups.union(n, node.output[0])
    ranks = _ranks(graph, ranks)
    # root → (kind, node that decided it)
    decided: dict[str, tuple[str, onnx.NodeProto]] = {}
    for node in graph.node:
        key = op_key(node)
        kind = "1-D" if key in _CHANNELS_FIRST else "rows" if key in _ROWS else None
        if kind is None:
            continue
        for name in (node.input[0] if node.input else "", node.output[0] if node.output else ""):
            if not name or ranks.get(name) != 3:
                continue
            root = groups.find(name)
            seen = decided.setdefault(root, (kind, node))
            if seen[0] != kind:
                first = seen[1] if seen[0] == "1-D" else node
                other = node if first is seen[1] else seen[1]
                raise InputError(
                    f"{model_name}: tensor {name!r} is used both as a 1-D activation "
                    f"[N, C, L] (by {first.op_type} {first.name!r}) and as rows of a matrix "
                    f"product [N, M, K] (by {other.op_type} {other.name!r}); insert a "
                    "Transpose or Reshape between them")
    names = {n for node in graph.node for n in (*node.input, *node.output) if n}
    names.update(v.name for v in graph.input)
    members: dict[str, set[str]] = {}
    for n in names:
        members.setdefault(groups.find(n), set()).add(n)
    return Layouts({n for n in names if decided.get(groups.find(n), ("",))[0] == "1-D"},
                   {n: frozenset(members[groups.find(n)]) for n in names
                    if groups.find(n) not in decided})
