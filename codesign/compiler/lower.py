"""Lowering: integer IR → NPU instructions + external memory image.

Memory plan (external word addresses)::

    0 ............ program (instructions, INSN_BITS each)
    ............... constants: per layer, weight tiles then requant parameter words
    ............... activation buffers: one per IR tensor (Flatten outputs alias their input)

Every layer runs as a sequence of *row tiles*: the output rows that fit half the accumulator
(so that MATMULs fill one half while REQUANT drains the other) and, with the input rows they need
(halo included), the ACT scratchpad. For convolutions::

    LOAD input rows → ACT                      (not if the previous layer left them there)
    for each column tile (cols channels), ACC halves alternating:
        for each weight tile (kh, kw, group of `rows` input channels):   ACC (+)= window · tile
        (a 3×3 stride-1 depthwise conv: one depthwise MATMUL of all 9 taps)
        REQUANT ACC → lane group of the output words (HWC) in ACT
    STORE the output rows → external memory    (not if only the next layer reads them)

A tensor stays in ACT until its last reader when every op until then can run with its tensors
whole in ACT around it (:meth:`_Compiler._keep`, which simulates the placements): then its
readers (convolutions, concatenations, adds — the residual shortcut of a ResNet included) read
it in place and it never goes to external memory. Such layers run as row tiles over whole
tensors; an input they load comes in row tile by row tile. A model input read only by a
convolution with few input channels is written by the host unfolded (``Region.unfold``) and
convolved as 1×1.

Weights and requant parameters are loaded once per layer when the whole layer fits the WGT / PRM
scratchpads, otherwise once per (row tile, column tile). Finally :mod:`.prefetch` moves weight
LOADs and input-row LOADs, in chunks, behind earlier MATMULs, and instructions get their
``wait`` bits from :func:`codesign.hazards.assign_waits`.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

from .. import ir
from ..errors import TilingError
from ..hazards import assign_waits
from ..isa import (
    LUT_ENTRIES,
    PRM_LANE,
    Eltwise,
    HwConfig,
    LoadStore,
    Lut,
    MatMul,
    Mem,
    Opcode,
    PoolMode,
    decode,
    encode,
    field_max,
    float_to_mult_shift,
)
from ..resample import conv_transpose_phases
from .prefetch import Item, prefetch
from .program import LayerInfo, Program, Region, insn_bytes

__all__ = ["compile_graph", "sized_for", "MAX_LUT_TABLES"]


#: Fewest output positions of a row tile split off only to overlap its input's LOAD.
_MIN_TILE = 256
#: Shortest GEMV run (WGT words of one MATMUL), in instruction lengths, that gets a LOAD of its
#: own when the layer's weights fit WGT: shorter ones load with the layer (a LOAD each would
#: cost more in instruction fetch than it hides).
_GEMV_RUN_LOAD = 8


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclasses.dataclass
class _Emitter:
    """Accumulates instructions, layer comments and the constant segment of the image."""
    config: HwConfig
    insns: list[int] = dataclasses.field(default_factory=list)
    comments: dict[int, str] = dataclasses.field(default_factory=dict)
    constants: list[np.ndarray] = dataclasses.field(default_factory=list)
    const_words: int = 0

    def emit(self, opcode: Opcode, where: str, **fields) -> None:
        try:
            self.insns.append(encode(opcode, **fields))
        except ValueError as err:
            raise TilingError(f"{where}: does not fit the instruction encoding ({err}); "
                              "the layer is too large for this NPU configuration") from None

    def comment(self, text: str) -> None:
        self.comments[len(self.insns)] = text

    def add_constant(self, data: np.ndarray) -> int:
        """Append bytes to the constant segment; returns their offset in words (relative)."""
        e = self.config.bus_bytes
        data = np.asarray(data, np.uint8).ravel()
        padded = np.zeros(_ceil(len(data), e) * e, np.uint8)
        padded[:len(data)] = data
        offset = self.const_words
        self.constants.append(padded)
        self.const_words += len(padded) // e
        return offset


@dataclasses.dataclass(frozen=True)
class _Source:
    """One input of a layer on the array: where it lives and which K index each of its
    physical channels is (−1 for padding lanes)."""
    buf: _Buffer
    zero_point: int
    signed: bool
    k: np.ndarray


@dataclasses.dataclass(frozen=True)
class _Buffer:
    """Physical home of an IR tensor: HWC with ``cw`` ACT words per pixel."""
    region: Region
    h: int
    w: int
    cw: int           # ACT words per (physical) pixel
    channels: int     # logical channels per physical pixel


@dataclasses.dataclass(frozen=True)
class _Scatter:
    """Where an array layer's output pixel ``(j, i)`` goes: pixel ``(ry + sy·j, rx + sx·i)`` of
    the tensor ``dst`` (a stride phase of a transposed convolution)."""
    dst: _Buffer
    sy: int
    sx: int
    ry: int
    rx: int


class _Compiler:
    def __init__(self, graph: ir.Graph, config: HwConfig, store_all: bool = False):
        self.graph = graph
        self.store_all = store_all
        self.graph_outputs = {b.tensor.name for b in graph.outputs}
        self.readers: dict[str, list[int]] = {}
        for i, op in enumerate(graph.ops):
            for t in ir.op_inputs(op):
                self.readers.setdefault(t.name, []).append(i)
        self.last_reader = {name: max(ops) for name, ops in self.readers.items()}
        # Tensors kept in ACT for later ops: name -> (ACT base, words), until their last reader.
        self.live: dict[str, tuple[int, int]] = {}
        self.unstored: set[str] = set()     # kept in ACT only: no valid external copy
        self.wgt_recent: list[tuple[int, int]] = []     # WGT words of the last two layers
        self.op_index = 0
        self.c = config
        self.e = _Emitter(config)
        self.slices = config.act_bytes // config.bus_bytes  # ext words per ACT word
        self.buffers: dict[str, _Buffer] = {}
        self.next_act_word = 0          # relative to the activation segment (fixed up later)
        self.relocations: list[tuple[int, str]] = []
        # LUT tables resident in the LUT engine: table bytes -> slot; slots in load order.
        self.lut_slots: dict[bytes, int] = {}

    # -- memory plan ----------------------------------------------------------------------------
    def _allocate(self, t: ir.Tensor, unfold: tuple[int, ...] | None = None) -> _Buffer:
        region = Region(t.name, self.next_act_word, t.shape, 0, t.signed, unfold=unfold)
        h, w, c = region.stored_shape
        cw = _ceil(c, self.c.act_bytes)
        region = dataclasses.replace(region, cw=cw)
        self.next_act_word += h * w * cw * self.slices
        buf = _Buffer(region, h, w, cw, c)
        self.buffers[t.name] = buf
        return buf

    def _flatten(self, op: ir.Flatten) -> None:
        src = self.buffers[op.x.name]
        if src.region.flatten_chw:
            raise TilingError(f"{op.name}: Flatten of a Flatten is not supported")
        region = dataclasses.replace(src.region, name=op.y.name, flatten_chw=True)
        self.buffers[op.y.name] = dataclasses.replace(src, region=region)

    # -- shared helpers -------------------------------------------------------------------------
    def _row_tiles(self, out_h: int, rows_fit) -> list[tuple[int, int]]:
        """Split ``out_h`` output rows into tiles of the largest size ``t`` with rows_fit(t)."""
        t = out_h
        while t > 0 and not rows_fit(t):
            t -= 1
        if t == 0:
            return []
        return [(r, min(out_h, r + t)) for r in range(0, out_h, t)]

    # -- tensors kept in ACT from one layer to the next ------------------------------------------
    def _acc_budget(self, ow_n: int) -> int:
        """ACC words a row tile may use: half of ACC when an output row fits it, so that a
        column tile's MATMULs fill one half while the previous tile's REQUANT drains the other."""
        half = self.c.acc_depth // 2
        return half if ow_n <= half else self.c.acc_depth

    def _cw(self, t: ir.Tensor) -> int:
        return _ceil(t.shape[2], self.c.act_bytes)

    def _words(self, t: ir.Tensor) -> int:
        """ACT words of ``t`` as a whole HWC tensor (as stored: unfolded inputs are wider)."""
        buf = self.buffers.get(t.name)
        if buf is not None:
            return buf.h * buf.w * buf.cw
        return t.shape[0] * t.shape[1] * self._cw(t)

    def _placeable(self, op) -> bool:
        """Whether ``op`` can run with its inputs and output as whole tensors in ACT (so that it
        can read kept tensors, and leave its output there): array layers, Add/Sub/Mul of two
        activations and lookup tables, on plain HWC tensors."""
        if not isinstance(op, ir.Conv | ir.Concat | ir.Add | ir.Mul | ir.Lut):
            return False
        if isinstance(op, ir.Add | ir.Mul) and op.b_value is not None:
            return False        # its constant would need a place in ACT too
        return not any(t.name in self.buffers and self.buffers[t.name].region.flatten_chw
                       for t in ir.op_inputs(op))

    def _place(self, live: dict[str, tuple[int, int]], op, keep: bool) -> dict[str, int] | None:
        """ACT bases of ``op``'s inputs and output as whole tensors, around the ``live`` ones
        (which stay where they are); None if they do not fit. A kept output goes to the highest
        gap and everything else to the lowest, so that long-lived tensors collect at the top."""
        depth = self.c.act_depth
        taken = sorted((b, b + n) for b, n in live.values())

        def fit(n: int, top: bool) -> int | None:
            edges = [0] + [e for pair in taken for e in pair] + [depth]
            gaps = [(lo, hi) for lo, hi in zip(edges[::2], edges[1::2], strict=True)
                    if hi - lo >= n]
            if not gaps:
                return None
            lo, hi = gaps[-1] if top else gaps[0]
            return hi - n if top else lo

        bases = {t.name: live[t.name][0] for t in ir.op_inputs(op) if t.name in live}
        for t, top in [(op.y, keep)] + [(t, False) for t in ir.op_inputs(op)]:
            if t.name in bases:
                continue
            n = self._words(t)
            base = fit(n, top)
            if base is None:
                return None
            bases[t.name] = base
            taken = sorted(taken + [(base, base + n)])
        return bases

    def _keep(self, y: ir.Tensor) -> bool:
        """Whether the current op's output ``y`` stays in ACT until its last reader: every
        reader reads it from there, and every op until then runs with its tensors whole in ACT
        around the tensors kept by then (simulated with :meth:`_place`, as they will be)."""
        readers = self.readers.get(y.name, [])
        if not readers:
            return False
        ops = self.graph.ops
        live = dict(self.live)
        for k in range(self.op_index, max(readers) + 1):
            if not self._placeable(ops[k]):
                return False
            bases = self._place(live, ops[k], keep=k == self.op_index)
            if bases is None:
                return False
            if k == self.op_index:
                live[y.name] = (bases[y.name], self._words(y))
            live = {n: v for n, v in live.items() if self.last_reader.get(n, -1) > k}
        return True

    def _must_store(self, y: ir.Tensor, kept: bool) -> bool:
        """Whether ``y`` must go to external memory: it is not kept in ACT, or it is a graph
        output, or every tensor is to be stored."""
        return not kept or self.store_all or y.name in self.graph_outputs

    def _wgt_region(self, words: int) -> int:
        """WGT base for a layer's ``words`` weight words, clear of the previous two layers'
        weights if possible (else of the previous one's), so that the next layers' weights can
        load while earlier ones compute (:func:`~codesign.compiler.prefetch.prefetch`).
        Candidates are the two ends of WGT and the edges of those layers' weights."""
        depth, recent = self.c.wgt_depth, self.wgt_recent
        candidates = [b for b in [0, depth - words] + [e for lo, hi in recent
                                                       for e in (hi, lo - words)]
                      if 0 <= b <= depth - words]

        def clear(base: int, regions: list[tuple[int, int]]) -> bool:
            return all(base + words <= lo or base >= hi for lo, hi in regions)

        base = next((b for k in (2, 1) for b in candidates if clear(b, recent[:k])), 0)
        self.wgt_recent = [(base, base + words)] + recent[:1]
        return base

    def _dma(self, opcode: Opcode, where: str, segment: str, **fields) -> None:
        """Emit a LOAD/STORE whose ``ext_addr`` is relative to ``segment`` ("const" or "act");
        the linker adds the segment's base once the layout of external memory is known."""
        self.e.emit(opcode, where, **fields)
        self.relocations.append((len(self.e.insns) - 1, segment))

    def _load_rows(self, buf: _Buffer, r0: int, r1: int, act_base: int, where: str) -> None:
        """LOAD input rows [r0, r1) of ``buf`` to ACT word ``act_base``."""
        row_slices = buf.w * buf.cw * self.slices
        self._dma(Opcode.LOAD, where, "act", mem=Mem.ACT, sp_addr=act_base * self.slices,
                  sp_stride=row_slices, ext_addr=buf.region.addr + r0 * row_slices,
                  ext_stride=row_slices, rows=r1 - r0, length=row_slices)

    # -- convolution (and everything else the array computes) -----------------------------------
    def _source(self, t: ir.Tensor, k_offset: int) -> _Source:
        """An input of a MATMUL layer whose logical channels are K indices k_offset.."""
        buf = self.buffers[t.name]
        A = self.c.act_bytes
        if buf.region.flatten_chw:
            # A flattened tensor is one "pixel" whose channels are the source's physical words.
            h, w, c = buf.h, buf.w, buf.channels
            k = np.full((h, w, buf.cw * A), -1, np.int64)
            k[:, :, :c] = (np.arange(c)[None, None, :] * h * w
                           + np.arange(h)[:, None, None] * w + np.arange(w)[None, :, None])
            k = k.ravel()
            geometry = _Buffer(buf.region, 1, 1, buf.h * buf.w * buf.cw, 0)
        else:
            k = np.array([i if i < buf.channels else -1 for i in range(buf.cw * A)])
            geometry = buf
        k = np.where(k >= 0, k + k_offset, -1)
        return _Source(geometry, t.zero_point, t.signed, k)

    def _unfolding(self, t: ir.Tensor) -> tuple[int, ...] | None:
        """How the host should write model input ``t`` unfolded (Region.unfold), or None: when
        its only reader is a dense convolution whose taps would each fill few array rows, and
        its unfolded windows fill fewer weight tiles, and it is not also a model output (which
        is read back as a plain HWC tensor)."""
        readers = self.readers.get(t.name, [])
        if len(readers) != 1 or any(b.tensor.name == t.name for b in self.graph.outputs):
            return None
        op = self.graph.ops[readers[0]]
        if not isinstance(op, ir.Conv) or op.groups != 1 or op.x.name != t.name:
            return None
        kh, kw, cin, _ = op.weight.shape
        R = self.c.rows
        if kh * kw == 1 or _ceil(kh * kw * cin, R) >= kh * kw * _ceil(cin, R):
            return None
        return (kh, kw, *op.stride, *op.pads, t.zero_point)

    def _conv(self, op: ir.Conv) -> None:
        kh_n, kw_n, cin_g, cout = op.weight.shape
        if self.buffers[op.x.name].region.unfold is not None:
            # The host wrote the input as im2col windows: a 1×1 convolution over K = kh·kw·cin.
            k = kh_n * kw_n * cin_g
            self._array_layer(op.name, "conv (unfolded input)", [self._source(op.x, 0)], op.y,
                              op.weight.reshape(1, 1, k, cout).astype(np.int16),
                              np.ones((k, cout), bool), op.w_zero_point, op.bias,
                              op.multiplier, (1, 1), (1, 1), (0, 0, 0, 0), op.qrange)
            return
        cin, cout_g = cin_g * op.groups, cout // op.groups
        # Dense [KH, KW, Cin, Cout] weights; channels of other groups hold w_zp (contribute 0).
        dense = np.full((kh_n, kw_n, cin, cout), op.w_zero_point, np.int16)
        connected = np.zeros((cin, cout), bool)
        for g in range(op.groups):
            ins, outs = slice(g * cin_g, (g + 1) * cin_g), slice(g * cout_g, (g + 1) * cout_g)
            dense[:, :, ins, outs] = op.weight[:, :, :, outs]
            connected[ins, outs] = True
        kind = "depthwise conv" if op.groups == cin == cout else (
            f"conv/{op.groups} groups" if op.groups > 1 else "conv")
        ow_n = op.y.shape[1]
        # The array's depthwise mode: 3×3, stride 1, rows of at most dw_width outputs.
        depthwise = (kind == "depthwise conv" and (kh_n, kw_n) == (3, 3)
                     and tuple(op.stride) == (1, 1) and 0 < ow_n <= self.c.dw_width
                     and not self.buffers[op.x.name].region.flatten_chw)
        self._array_layer(op.name, kind, [self._source(op.x, 0)], op.y, dense, connected,
                          op.w_zero_point, op.bias, op.multiplier, (kh_n, kw_n), op.stride,
                          op.pads, op.qrange, depthwise=depthwise)

    def _concat(self, op: ir.Concat) -> None:
        """Concatenation as a 1×1 convolution with identity weights over all inputs: each output
        channel is requantized from its own input with that input's multiplier."""
        sizes = [t.shape[2] for t in op.inputs]
        if any(t.shape[:2] != op.y.shape[:2] for t in op.inputs):
            raise TilingError(f"{op.name}: Concat inputs must share H and W")
        offsets = np.cumsum([0] + sizes)
        sources = [self._source(t, int(k)) for t, k in zip(op.inputs, offsets, strict=False)]
        k_total = int(offsets[-1])
        dense = np.eye(k_total, dtype=np.int16)[None, None]
        multipliers = np.concatenate([np.full(n, m, np.float32)
                                      for n, m in zip(sizes, op.multipliers, strict=True)])
        self._array_layer(op.name, "concat", sources, op.y, dense, np.eye(k_total, dtype=bool),
                          0, np.zeros(k_total, np.int32), multipliers, (1, 1), (1, 1),
                          (0, 0, 0, 0), (op.y.qmin, op.y.qmax))

    def _array_layer(self, name: str, kind: str, sources: list[_Source], y: ir.Tensor,
                     dense: np.ndarray, connected: np.ndarray, w_zp: int, bias: np.ndarray,
                     multiplier: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int],
                     pads: tuple[int, int, int, int], qrange: tuple[int, int],
                     depthwise: bool = False, scatter: _Scatter | None = None) -> None:
        """Lower ``y = requant(Σ_sources window · dense + bias)`` onto the systolic array.

        ``dense`` is ``[KH, KW, K, Cout]`` over the concatenated logical channels of all
        sources; ``connected[k, n]`` says whether channel k feeds output n at all (structurally),
        so weight tiles that feed nothing in a column tile are skipped. With ``depthwise`` (a
        3×3 stride-1 depthwise convolution, K = Cout), each column tile is one depthwise MATMUL
        whose weight tile holds the 9 taps of its ``cols`` channels. With ``scatter``, the
        output pixels go to the scatter's positions of its (already allocated) tensor instead of
        to a tensor of ``y``'s shape (never kept in ACT).
        """
        c, e = self.c, self.e
        R, C, A = c.rows, c.cols, c.act_bytes
        dst = self._allocate(y) if scatter is None else scatter.dst
        kh_n, kw_n, k_total, cout = dense.shape
        (sh, sw), (pt, pl, _, _) = stride, pads
        oh_n, ow_n = y.shape[0], y.shape[1]
        for s in sources:
            if not (s.signed and -128 <= s.zero_point <= 127
                    or not s.signed and 0 <= s.zero_point <= 255) or not -128 <= w_zp <= 127:
                # The array's 9-bit operands hold x - x_zp and w - w_zp only for these.
                raise TilingError(f"{name}: zero points out of the 8-bit range "
                                  f"(x_zp={s.zero_point}, w_zp={w_zp})")
            if len(np.unique(s.k[s.k >= 0])) != (s.k >= 0).sum() or s.k.max() >= k_total:
                raise TilingError(f"{name}: input channels do not match the weights")

        # Weight tiles: (source, kh, kw, R-group of physical channels holding a real one).
        tiles = [(si, kh, kw, g) for si, s in enumerate(sources)
                 for kh in range(kh_n) for kw in range(kw_n)
                 for g in range(len(s.k) // R) if (s.k[g * R:(g + 1) * R] >= 0).any()]
        n_col_tiles = _ceil(cout, C)
        tile_words = c.dw_weight_words if depthwise else R
        col_tiles: list[list[tuple[int, int, int, int]]] = []
        col_blocks: list[list[np.ndarray]] = []     # weight tiles of each column tile
        for nt in range(n_col_tiles):
            cols = slice(nt * C, min(cout, (nt + 1) * C))
            if depthwise:
                # Word t = 3·ky + kx holds tap (ky, kx) of the tile's channels; the words past
                # the ninth (rows >= 9 multiply 0) and padding channels hold w_zp.
                block = np.full((tile_words, C), w_zp, np.int16)
                taps = dense[:, :, cols, cols].diagonal(axis1=2, axis2=3)
                block[:9, :cols.stop - cols.start] = taps.reshape(9, -1)
                col_blocks.append([block])
                # The source's word/lane group of these channels; kh = kw = 0 (all taps).
                col_tiles.append([(0, 0, 0, nt)])
                continue
            mine, blocks = [], []
            for t in tiles:
                ks = sources[t[0]].k[t[3] * R:(t[3] + 1) * R]
                if connected[ks[ks >= 0]][:, cols].any():
                    mine.append(t)
                    # Rows of padding channels hold w_zp, so (w - w_zp) = 0 whatever the
                    # padding lanes of the activations contain.
                    block = np.full((R, C), w_zp, np.int16)
                    for r, k in enumerate(ks):
                        if k >= 0:
                            block[r, :cols.stop - cols.start] = dense[t[1], t[2], k, cols]
                    blocks.append(block)
            if not mine:
                raise TilingError(f"{name}: output channels {cols.start}.. have no inputs")
            col_tiles.append(mine)
            col_blocks.append(blocks)
        first_tile = np.cumsum([0] + [len(m) for m in col_tiles])
        weights_resident = int(first_tile[-1]) * tile_words <= c.wgt_depth
        acc_budget = self._acc_budget(ow_n)

        # One output pixel (a fully connected layer at batch 1) whose weight tiles all feed
        # every column tile: GEMV MATMULs, one per weight tile and group of column tiles, with
        # the group's blocks one after the other in WGT (_gemv_groups).
        gemv_groups = None
        if c.gemv and oh_n * ow_n == 1 and not depthwise and all(
                len(m) == len(tiles) for m in col_tiles):
            size = min(n_col_tiles, acc_budget, field_max(MatMul, "out_w"), c.wgt_depth // R)
            gemv_groups = [range(g0, min(n_col_tiles, g0 + size))
                           for g0 in range(0, n_col_tiles, size)]
            order = [col_blocks[nt][i] for group in gemv_groups for i in range(len(tiles))
                     for nt in group]
        else:
            order = [b for blocks in col_blocks for b in blocks]
        wgt_offset = e.add_constant(np.array(order, np.int16).astype(np.int8).view(np.uint8))
        prm_offset = e.add_constant(self._prm_words(bias, multiplier, n_col_tiles * C))
        wgt_slices, prm_slices = c.slices(Mem.WGT), c.slices(Mem.PRM)

        wgt_home = self._wgt_region(int(first_tile[-1]) * tile_words if weights_resident
                                    else c.wgt_depth // tile_words * tile_words)
        params_resident = n_col_tiles <= c.prm_depth
        # Weight tiles go through WGT in chunks of `chunk` tiles when a layer does not fit.
        chunk = (max(len(m) for m in col_tiles) if weights_resident
                 else c.wgt_depth // tile_words)

        def in_rows(s: _Source, oh0: int, oh1: int) -> tuple[int, int]:
            lo = max(0, oh0 * sh - pt)
            return lo, max(lo, min(s.buf.h, (oh1 - 1) * sh - pt + kh_n))

        def stacked(oh0: int, oh1: int) -> list[int]:
            """ACT bases of a row tile's input rows, one source after the other, then output."""
            sizes = [(lambda r: (r[1] - r[0]) * s.buf.w * s.buf.cw)(in_rows(s, oh0, oh1))
                     for s in sources]
            return [int(v) for v in np.cumsum([0] + sizes)]

        keep = self._keep(y)
        placed = None
        if keep or self.live:
            # The layer's inputs and output as whole HWC tensors in ACT, around the kept ones:
            # its inputs among them are read in place, the others loaded whole.
            op = self.graph.ops[self.op_index]
            placed = self._place(self.live, op, keep)
            if placed is None:
                # _keep checked, when each live tensor was kept, that this layer fits.
                raise TilingError(f"{name}: internal error: layer does not fit around the "
                                  "tensors kept in ACT")

            # An input loaded from external memory comes in with the row tiles, up to 4 of
            # them, so that prefetch() can load each behind the previous tile's MATMULs; but
            # a tile of fewer than _MIN_TILE positions costs more in per-tile overhead (the
            # array drains before each REQUANT) than its load. Inputs already in ACT need no
            # more tiles than ACC asks for.
            loads = any(s.buf.region.name not in self.live for s in sources)
            most = max(_ceil(oh_n, 4), _ceil(_MIN_TILE, ow_n)) if loads else oh_n

            def fits(t: int) -> bool:
                return t * ow_n <= acc_budget and t <= most
        else:
            def fits(t: int) -> bool:
                worst = max(stacked(r, min(oh_n, r + t))[-1] for r in range(0, oh_n, t))
                return t * ow_n <= acc_budget and worst + t * ow_n * dst.cw <= c.act_depth

        row_tiles = self._row_tiles(oh_n, fits)

        def window(s: _Source, oh0: int, oh1: int) -> tuple[int, int]:
            """The rows of ``s`` in ACT for a row tile (all of them when placed whole)."""
            return (0, s.buf.h) if placed is not None else in_rows(s, oh0, oh1)

        def regions(oh0: int, oh1: int) -> list[int]:
            """ACT bases of the row tile's input windows and output rows."""
            if placed is None:
                return stacked(oh0, oh1)
            return ([placed[s.buf.region.name] for s in sources]
                    + [placed[y.name] + oh0 * ow_n * dst.cw])
        if not row_tiles:
            raise TilingError(
                f"{name}: one output row ({ow_n} pixels) with its {kh_n} input rows does not "
                f"fit ACT={c.act_depth}/ACC={c.acc_depth} words; use larger scratchpads")
        where = f"layer {name}"
        e.comment(f"{name}: {kind} {kh_n}x{kw_n}/{sh}x{sw} -> {y.shape}, "
                  f"{len(row_tiles)} row tile(s), {n_col_tiles} column tile(s), "
                  f"{int(first_tile[-1])} weight tile(s)")
        # A GEMV layer's runs load one by one when they do not all fit WGT or are long enough to
        # be worth a LOAD instruction each (_gemv_groups); short ones with the layer.
        run_loads = gemv_groups is not None and (
            not weights_resident or len(gemv_groups[0]) * R >= _GEMV_RUN_LOAD * c.insn_words)
        if weights_resident and not run_loads:
            self._load_const(Mem.WGT, wgt_home * wgt_slices, wgt_offset,
                             int(first_tile[-1]) * tile_words * wgt_slices, where)
        if params_resident:
            self._load_const(Mem.PRM, 0, prm_offset, n_col_tiles * prm_slices, where)

        def matmul(oh0: int, oh1: int, bases: list[int], tile: tuple[int, int, int, int],
                   **fields) -> None:
            """The MATMUL of weight tile ``tile`` over row tile ``oh0..oh1``."""
            si, kh, kw, g = tile
            s = sources[si]
            r0, r1 = window(s, oh0, oh1)
            row_words = s.buf.w * s.buf.cw
            ih0, iw0 = oh0 * sh - pt + kh - r0, kw - pl
            word, lane_group = divmod(g, A // (C if depthwise else R))
            e.emit(Opcode.MATMUL, where, depthwise=int(depthwise), x_signed=int(s.signed),
                   lane_group=lane_group, x_zp=s.zero_point, w_zp=w_zp,
                   act_base=bases[si] + ih0 * row_words + iw0 * s.buf.cw + word,
                   step_w=sw * s.buf.cw, step_h=sh * row_words, out_h=oh1 - oh0,
                   ih0=ih0, iw0=iw0, stride_h=sh, stride_w=sw, in_h=r1 - r0,
                   in_w=s.buf.w, **fields)

        def prm(nt: int) -> int:
            """PRM word of column tile ``nt`` (loaded now if the layer's do not fit)."""
            if params_resident:
                return nt
            self._load_const(Mem.PRM, 0, prm_offset + nt * prm_slices, prm_slices, where)
            return 0

        def requant_pixel(out_base: int, nt: int, acc_row: int) -> None:
            """REQUANT column tile ``nt`` of one output pixel, at ACT ``out_base``."""
            self._requant(nt, prm(nt), y.zero_point, lo, hi, acc_row, 1,
                          out_base + nt * C // A, dst.cw, where)

        lo, hi = qrange
        acc_half = 0
        loaded_to: dict[str, int] = {}      # placed inputs: rows loaded so far
        for oh0, oh1 in row_tiles:
            bases = regions(oh0, oh1)
            # The output rows of the tile, HWC, stored (when needed) after the last column tile.
            out_base, count = bases[-1], (oh1 - oh0) * ow_n
            for s, base in zip(sources, bases, strict=False):
                name = s.buf.region.name
                r0, r1 = in_rows(s, oh0, oh1)
                if placed is not None:
                    # Whole in ACT: only the rows no earlier row tile loaded.
                    r0 = max(r0, loaded_to.get(name, 0))
                    base += r0 * s.buf.w * s.buf.cw
                if r1 > r0 and name not in self.live:
                    self._load_rows(s.buf, r0, r1, base, where)
                    loaded_to[name] = r1
            if gemv_groups is not None:
                self._gemv_groups(gemv_groups, tiles, functools.partial(matmul, oh0, oh1, bases),
                                  functools.partial(requant_pixel, out_base),
                                  wgt_home if weights_resident else None, run_loads,
                                  wgt_offset, acc_budget, where)
            else:
                for nt, mine in enumerate(col_tiles):
                    acc_base = acc_half * acc_budget if acc_budget < c.acc_depth else 0
                    acc_half ^= 1
                    prm_addr = prm(nt)
                    for i, tile in enumerate(mine):
                        index = int(first_tile[nt]) + i
                        if weights_resident:
                            wgt_base = wgt_home + index * tile_words
                        else:
                            wgt_base = (i % chunk) * tile_words
                            if i % chunk == 0:
                                n = min(chunk, len(mine) - i) * tile_words * wgt_slices
                                self._load_const(Mem.WGT, 0,
                                                 wgt_offset + index * tile_words * wgt_slices, n,
                                                 where)
                        matmul(oh0, oh1, bases, tile, accumulate=int(i > 0), wgt_base=wgt_base,
                               acc_base=acc_base, out_w=ow_n)
                    self._requant(nt, prm_addr, y.zero_point, lo, hi, acc_base, count,
                                  out_base + nt * C // A, dst.cw, where)
            if scatter is not None:
                self._store_scattered(scatter, out_base, oh0, oh1, ow_n, where)
            elif self._must_store(y, keep):
                self._contiguous(Opcode.STORE, where, "act", Mem.ACT, out_base * self.slices,
                                 dst.region.addr + oh0 * ow_n * dst.cw * self.slices,
                                 count * dst.cw * self.slices)
        self._kept(y, placed, keep)

    def _gemv_groups(self, groups: list[range], tiles: list, matmul, requant,
                     wgt_home: int | None, run_loads: bool, wgt_offset: int, acc_budget: int,
                     where: str) -> None:
        """A one-pixel layer on the array in GEMV mode: for each group of column tiles, one GEMV
        MATMUL per weight tile (``matmul(tile, **fields)``; accumulating), then the group's
        REQUANTs (``requant(nt, acc_row)``).

        The weights are in the constant segment in the order group, weight tile, column tile;
        one MATMUL's are a *run*. They are in WGT from ``wgt_home``, or, with ``wgt_home``
        None (the layer does not fit), go round WGT as a ring. With ``run_loads`` each run has
        a LOAD of its own, so that prefetch() can move each behind an earlier MATMUL: a fully
        connected layer at batch 1 is bound by that traffic."""
        c = self.c
        slices = c.slices(Mem.WGT)
        offset, ring = 0, 0       # run's words into the layer's weights; its ring position
        acc_half = 0
        for group in groups:
            acc_base = acc_half * acc_budget if acc_budget < c.acc_depth else 0
            acc_half ^= 1
            words = len(group) * c.rows
            for i, tile in enumerate(tiles):
                if wgt_home is not None:
                    wgt_base = wgt_home + offset
                else:
                    ring = 0 if ring + words > c.wgt_depth else ring
                    wgt_base, ring = ring, ring + words
                if run_loads:
                    self._load_const(Mem.WGT, wgt_base * slices, wgt_offset + offset * slices,
                                     words * slices, where)
                matmul(tile, gemv=1, accumulate=int(i > 0), wgt_base=wgt_base,
                       acc_base=acc_base, out_w=len(group))
                offset += words
            for j, nt in enumerate(group):
                requant(nt, acc_base + j)

    def _kept(self, y: ir.Tensor, placed: dict[str, int] | None, keep: bool) -> None:
        """Record that ``y`` stays in ACT (at its placed base) for the ops that read it."""
        if keep:
            self.live[y.name] = (placed[y.name], self._words(y))
            if not self._must_store(y, keep):
                self.unstored.add(y.name)

    def _requant(self, nt: int, prm_addr: int, y_zp: int, lo: int, hi: int, acc_base: int,
                 count: int, out_base: int, out_stride: int, where: str) -> None:
        """REQUANT ``count`` ACC rows from ``acc_base`` into column tile ``nt``'s lanes of the
        ACT words ``out_base + i·out_stride`` (one per pixel)."""
        C, A = self.c.cols, self.c.act_bytes
        self.e.emit(Opcode.REQUANT, where, lane_group=nt * C % A // C, y_zp=y_zp, qmin=lo,
                    qmax=hi, acc_base=acc_base, prm_addr=prm_addr, out_base=out_base,
                    out_stride=out_stride, count=count)

    def _prm_words(self, bias: np.ndarray, multiplier: np.ndarray, lanes: int) -> np.ndarray:
        """Requant parameters (isa.PRM_LANE) of ``lanes`` output channels as bytes; channels
        past ``len(bias)`` are zero (mult 0 → they requantize to the zero point)."""
        prm = np.zeros(lanes, "<u8")
        for n in range(len(bias)):
            mult, shift = float_to_mult_shift(multiplier[n])
            prm[n] = PRM_LANE.const({"bias": int(bias[n]), "mult": mult,
                                     "shift": shift}).as_bits()
        return prm.view(np.uint8)

    def _load_const(self, mem: Mem, sp_word: int, const_word: int, n_slices: int,
                    where: str) -> None:
        """LOAD ``n_slices`` consecutive slices of the constant segment into ``mem``."""
        self._contiguous(Opcode.LOAD, where, "const", mem, sp_word, const_word, n_slices)

    def _contiguous(self, opcode: Opcode, where: str, segment: str, mem: Mem, sp_slice: int,
                    ext_addr: int, n_slices: int) -> None:
        """LOAD/STORE ``n_slices`` consecutive slices, split so that `length` fits its field."""
        step = field_max(LoadStore, "length")
        for first in range(0, n_slices, step):
            self._dma(opcode, where, segment, mem=mem, sp_addr=sp_slice + first, sp_stride=0,
                      ext_addr=ext_addr + first, ext_stride=0, rows=1,
                      length=min(step, n_slices - first))

    def _store_pixels(self, dst: _Buffer, first_pixel: int, count: int, word: int,
                      act_base: int, where: str) -> None:
        """STORE ACT words act_base.. (one per pixel) to channel word ``word`` of pixels
        first_pixel.. of ``dst``."""
        s = self.slices
        self._dma(Opcode.STORE, where, "act", mem=Mem.ACT, sp_addr=act_base * s, sp_stride=s,
                  ext_addr=dst.region.addr + (first_pixel * dst.cw + word) * s,
                  ext_stride=dst.cw * s, rows=count, length=s)

    # -- padding and upsampling ------------------------------------------------------------------
    def _pad(self, op: ir.Pad) -> None:
        """Constant padding as a 1×1 identity layer on the array over the padded extent: the
        MATMUL's source zero point is the pad value, so the out-of-bounds (border) taps, which
        contribute 0, stand for it, and bias = value − x_zp restores it: in-bounds
        ``acc = (x − value) + (value − x_zp)``, border ``acc = value − x_zp``, and the REQUANT
        (multiplier 1, zero point x_zp) gives back x and value exactly."""
        n = op.x.shape[2]
        source = dataclasses.replace(self._source(op.x, 0), zero_point=op.value)
        self._array_layer(op.name, "pad", [source], op.y, np.eye(n, dtype=np.int16)[None, None],
                          np.eye(n, dtype=bool), 0,
                          np.full(n, op.value - op.x.zero_point, np.int64),
                          np.ones(n, np.float32), (1, 1), (1, 1), op.pads,
                          (op.y.qmin, op.y.qmax))

    def _conv_transpose(self, op: ir.ConvTranspose) -> None:
        """Each stride phase (:func:`~codesign.resample.conv_transpose_phases`) as a stride-1
        convolution on the array, its output rows scattered to the phase's pixels by the
        STOREs (:meth:`_store_scattered`)."""
        dst = self._allocate(op.y)
        for phase in conv_transpose_phases(op):
            conv = phase.conv
            kh, kw, cin, cout = conv.weight.shape
            self._array_layer(conv.name, "conv_transpose phase", [self._source(op.x, 0)],
                              conv.y, conv.weight.astype(np.int16),
                              np.ones((cin, cout), bool), conv.w_zero_point, conv.bias,
                              conv.multiplier, (kh, kw), (1, 1), conv.pads, conv.qrange,
                              scatter=_Scatter(dst, *op.stride, phase.ry, phase.rx))

    def _store_scattered(self, scatter: _Scatter, act_base: int, oh0: int, oh1: int,
                         ow_n: int, where: str) -> None:
        """STORE output rows oh0..oh1 (``ow_n`` pixels each, HWC from ACT ``act_base``) to their
        scattered pixels: one STORE per row, one DMA row per pixel when ``sx > 1``."""
        dst, s = scatter.dst, self.slices
        pixel = dst.cw * s
        for oh in range(oh0, oh1):
            sp = (act_base + (oh - oh0) * ow_n * dst.cw) * s
            ext = dst.region.addr + ((scatter.ry + oh * scatter.sy) * dst.w + scatter.rx) * pixel
            if scatter.sx == 1:
                self._contiguous(Opcode.STORE, where, "act", Mem.ACT, sp, ext, ow_n * pixel)
            else:
                self._dma(Opcode.STORE, where, "act", mem=Mem.ACT, sp_addr=sp, sp_stride=pixel,
                          ext_addr=ext, ext_stride=scatter.sx * pixel, rows=ow_n, length=pixel)

    def _resize(self, op: ir.Resize) -> None:
        """Nearest upsampling by DMA alone (input and output share their quantization): the
        LOADs place each input pixel at every fw-th pixel of ACT rows that are output rows
        (fw LOADs per row tile, one per column phase), then each such row is STOREd to its fh
        output rows at once (``sp_stride`` 0)."""
        src = self._pool_source(op)
        dst = self._allocate(op.y)
        (fh, fw), s, cw = op.factors, self.slices, src.cw
        row_words = src.w * fw * cw
        if row_words > self.c.act_depth:
            raise TilingError(f"{op.name}: one upsampled row ({row_words} words) does not fit "
                              f"ACT={self.c.act_depth} words; use larger scratchpads")
        per_tile = min(self.c.act_depth // row_words, field_max(LoadStore, "rows") // src.w)
        where = f"layer {op.name}"
        self.e.comment(f"{op.name}: resize x{fh}x{fw} {op.x.shape} -> {op.y.shape}")
        for r0 in range(0, src.h, per_tile):
            r1 = min(src.h, r0 + per_tile)
            for b in range(fw):
                self._dma(Opcode.LOAD, where, "act", mem=Mem.ACT, sp_addr=b * cw * s,
                          sp_stride=fw * cw * s, ext_addr=src.region.addr + r0 * src.w * cw * s,
                          ext_stride=cw * s, rows=(r1 - r0) * src.w, length=cw * s)
            for r in range(r0, r1):
                self._dma(Opcode.STORE, where, "act", mem=Mem.ACT,
                          sp_addr=(r - r0) * row_words * s, sp_stride=0,
                          ext_addr=dst.region.addr + r * fh * row_words * s,
                          ext_stride=row_words * s, rows=fh, length=row_words * s)

    # -- pooling --------------------------------------------------------------------------------
    def _pool_tiles(self, op, src: _Buffer, out_words: int, uses_acc: bool):
        """Row tiles of a pooling layer: (oh0, oh1, r0, r1) with the input rows [r0, r1) that
        the output rows [oh0, oh1) read, sized so that input rows + ``out_words`` ACT words per
        output pixel fit ACT (and, for sums, one ACC word per output pixel fits ACC)."""
        c = self.c
        (kh_n, _), (sh, _) = op.kernel, _pool_stride(op)
        pt = op.pads[0] if isinstance(op, ir.MaxPool) else 0
        oh_n, ow_n = op.y.shape[0], op.y.shape[1]
        row_words = src.w * src.cw

        def in_rows(oh0: int, oh1: int) -> tuple[int, int]:
            return max(0, oh0 * sh - pt), min(src.h, (oh1 - 1) * sh - pt + kh_n)

        def fits(t: int) -> bool:
            worst = max(in_rows(r, min(oh_n, r + t))[1] - in_rows(r, min(oh_n, r + t))[0]
                        for r in range(0, oh_n, t))
            return (worst * row_words + t * ow_n * out_words <= c.act_depth
                    and (not uses_acc or t * ow_n <= c.acc_depth))

        tiles = self._row_tiles(oh_n, fits)
        if not tiles:
            raise TilingError(f"{op.name}: one pooling row does not fit ACT={c.act_depth} / "
                              f"ACC={c.acc_depth} words; use larger scratchpads")
        return [(oh0, oh1, *in_rows(oh0, oh1)) for oh0, oh1 in tiles]

    def _pool_window(self, op, src: _Buffer, oh0: int, r0: int) -> dict:
        """POOL fields describing the window of the row tile starting at output row oh0."""
        (kh_n, kw_n), (sh, sw) = op.kernel, _pool_stride(op)
        pt, pl = (op.pads[0], op.pads[1]) if isinstance(op, ir.MaxPool) else (0, 0)
        row_words = src.w * src.cw
        ih0, iw0 = oh0 * sh - pt - r0, -pl
        return dict(act_base=ih0 * row_words + iw0 * src.cw, step_w=sw * src.cw,
                    step_h=sh * row_words, row_words=row_words, pix_words=src.cw,
                    out_w=op.y.shape[1], ih0=ih0, iw0=iw0, stride_h=sh, stride_w=sw,
                    k_h=kh_n, k_w=kw_n, in_w=src.w)

    def _pool_source(self, op) -> _Buffer:
        src = self.buffers[op.x.name]
        if src.region.flatten_chw:
            raise TilingError(f"{op.name}: pooling a flattened tensor is not supported")
        return src

    def _maxpool(self, op: ir.MaxPool) -> None:
        e, s = self.e, self.slices
        src = self._pool_source(op)
        dst = self._allocate(op.y)
        (kh_n, kw_n), (pt, pl, pb, pr) = op.kernel, op.pads
        if pt >= kh_n or pb >= kh_n or pl >= kw_n or pr >= kw_n:
            raise TilingError(f"{op.name}: MaxPool padding must be smaller than the kernel")
        cw, ow_n = src.cw, op.y.shape[1]
        where = f"layer {op.name}"
        e.comment(f"{op.name}: maxpool {op.kernel}/{op.stride} {op.x.shape} -> {op.y.shape}")
        for oh0, oh1, r0, r1 in self._pool_tiles(op, src, cw, uses_acc=False):
            self._load_rows(src, r0, r1, 0, where)
            out_base = (r1 - r0) * src.w * cw
            e.emit(Opcode.POOL, where, mode=PoolMode.MAX, x_signed=int(op.x.signed),
                   out_base=out_base, words=cw, out_h=oh1 - oh0, in_h=r1 - r0,
                   **self._pool_window(op, src, oh0, r0))
            self._contiguous(Opcode.STORE, where, "act", Mem.ACT, out_base * s,
                             dst.region.addr + oh0 * ow_n * cw * s, (oh1 - oh0) * ow_n * cw * s)

    def _avgpool(self, op: ir.AvgPool) -> None:
        """Window sums of one column tile of lanes into ACC (POOL SUM), then REQUANT with
        bias = −N·x_zp (the sums are of raw x) and the layer's multiplier."""
        c, e = self.c, self.e
        C, A = c.cols, c.act_bytes
        src = self._pool_source(op)
        dst = self._allocate(op.y)
        n = op.kernel[0] * op.kernel[1]
        # One PRM word serves every column tile: all channels share bias and multiplier.
        prm_offset = e.add_constant(self._prm_words(
            np.full(C, -n * op.x.zero_point, np.int64), np.full(C, op.multiplier), C))
        ow_n = op.y.shape[1]
        where = f"layer {op.name}"
        e.comment(f"{op.name}: avgpool {op.kernel}/{op.stride} {op.x.shape} -> {op.y.shape}")
        self._load_const(Mem.PRM, 0, prm_offset, c.slices(Mem.PRM), where)
        lo, hi = op.qrange
        for oh0, oh1, r0, r1 in self._pool_tiles(op, src, 1, uses_acc=True):
            self._load_rows(src, r0, r1, 0, where)
            out_base, count = (r1 - r0) * src.w * src.cw, (oh1 - oh0) * ow_n
            window = self._pool_window(op, src, oh0, r0)
            for nt in range(_ceil(op.y.shape[2], C)):
                word, lane = divmod(nt * C, A)
                e.emit(Opcode.POOL, where, mode=PoolMode.SUM, x_signed=int(op.x.signed),
                       lane_group=lane // C, out_base=0, words=1, out_h=oh1 - oh0,
                       in_h=r1 - r0, **{**window, "act_base": window["act_base"] + word})
                self._requant(nt, 0, op.y.zero_point, lo, hi, 0, count, out_base, 1, where)
                if (nt + 1) * C % A == 0 or (nt + 1) * C >= dst.channels:
                    self._store_pixels(dst, oh0 * ow_n, count, word, out_base, where)

    # -- element-wise ---------------------------------------------------------------------------
    def _eltwise(self, op: ir.Add | ir.Mul) -> None:
        """Add / Sub / Mul: ELTWISE into ACC, then REQUANT (by 2**−shift, an exact power of two,
        for a sum; by the op's multiplier for a product), in chunks of whole pixels; a and y
        share one layout, so each chunk is a contiguous word range, and so does a full-shape b.
        A b broadcast over H×W (one pixel, ``cw`` words) is read again for every pixel
        (``b_period = cw``); it is loaded once, a constant from the constant segment.

        With tensors kept in ACT (or ``y`` to be kept), a, b and y are whole there and chunks
        alternate ACC halves, so that one chunk's ELTWISE overlaps the previous one's REQUANT;
        otherwise each chunk loads its a (and full b) words and stores its y words."""
        c, e, s = self.c, self.e, self.slices
        C, A = c.cols, c.act_bytes
        what = "Mul" if isinstance(op, ir.Mul) else "Add/Sub"
        if not c.eltwise:
            raise TilingError(f"{op.name}: {what} needs the ELTWISE engine, which this NPU does "
                              "not have (eltwise = false)")
        a = self.buffers[op.a.name]
        b = self.buffers[op.b.name] if op.b_value is None else None
        broadcast = op.b.shape != op.a.shape
        # (A flattened single pixel is laid out as it was: CHW order is HWC order there.)
        if any(buf is not None and buf.region.flatten_chw and (buf.h, buf.w) != (1, 1)
               for buf in (a, b)):
            raise TilingError(f"{op.name}: {what} of a flattened tensor is not supported")
        dst = self._allocate(op.y)
        pixels, cw = a.h * a.w, a.cw
        keep = self._keep(op.y)
        placed = self._place(self.live, op, keep) if keep or self.live else None
        if (keep or self.live) and placed is None:
            raise TilingError(f"{op.name}: internal error: {what} does not fit around the "
                              "tensors kept in ACT")
        # Unplaced: [a chunk | b chunk | y chunk] from 0, a broadcast b at the top of ACT.
        b_top = c.act_depth - cw
        acc_rows = c.acc_depth // 2 if placed is not None else c.acc_depth
        act_rows = (c.act_depth if placed is not None
                    else b_top // 2 if broadcast else c.act_depth // 3)
        per_chunk = min(acc_rows, act_rows, field_max(Eltwise, "count")) // cw
        if per_chunk < 1:
            raise TilingError(f"{op.name}: one pixel ({cw} words) does not fit ACT/ACC; use "
                              "larger scratchpads")
        if isinstance(op, ir.Mul):
            multiplier, fields = op.multiplier, dict(mul=1)
        else:
            multiplier = np.float32(2.0 ** -op.shift)
            fields = dict(a_mult=op.a_mult, b_mult=op.b_mult)
        prm_offset = e.add_constant(self._prm_words(np.zeros(C, np.int64),
                                                    np.full(C, multiplier), C))
        where = f"layer {op.name}"
        e.comment(f"{op.name}: {op.kind.value} {op.a.shape} by {op.b.shape}"
                  f"{' (constant)' if b is None else ''}, {pixels} pixels in chunks of "
                  f"{per_chunk}")
        self._load_const(Mem.PRM, 0, prm_offset, c.slices(Mem.PRM), where)
        if b is None:
            # The constant in the activation layout (channels padded to whole ACT words).
            h, w, ch = op.b_value.shape
            words = np.zeros((h * w, _ceil(ch, A) * A), np.uint8)
            words[:, :ch] = op.b_value.reshape(h * w, ch).view(np.uint8)
            const_word = e.add_constant(words)
        if placed is None and broadcast:
            if b is None:
                self._load_const(Mem.ACT, b_top * s, const_word, cw * s, where)
            else:
                self._contiguous(Opcode.LOAD, where, "act", Mem.ACT, b_top * s, b.region.addr,
                                 cw * s)
        lo, hi = op.qrange
        acc_half = 0
        loaded = set()
        for p0 in range(0, pixels, per_chunk):
            words_n = (min(pixels, p0 + per_chunk) - p0) * cw
            if placed is None:
                a_base, b_base, y_base = 0, words_n, 2 * words_n
                chunks = [(a_base, a.region.addr)]
                if broadcast:
                    b_base, y_base = b_top, words_n
                elif b is not None:
                    chunks.append((b_base, b.region.addr))
                else:
                    self._load_const(Mem.ACT, b_base * s, const_word + p0 * cw * s,
                                     words_n * s, where)
                for base, addr in chunks:
                    self._contiguous(Opcode.LOAD, where, "act", Mem.ACT, base * s,
                                     addr + p0 * cw * s, words_n * s)
            else:
                a_base, y_base = (placed[t.name] + p0 * cw for t in (op.a, op.y))
                b_base = placed[op.b.name] + (0 if broadcast else p0 * cw)
                for t in ir.op_inputs(op):
                    if t.name not in self.live and t.name not in loaded:
                        loaded.add(t.name)
                        self._contiguous(Opcode.LOAD, where, "act", Mem.ACT,
                                         placed[t.name] * s, self.buffers[t.name].region.addr,
                                         self._words(t) * s)
            for group in range(A // C):
                acc_base = acc_half * acc_rows if placed is not None else 0
                acc_half ^= 1
                e.emit(Opcode.ELTWISE, where, lane_group=group, a_signed=int(op.a.signed),
                       b_signed=int(op.b.signed), a_zp=op.a.zero_point, b_zp=op.b.zero_point,
                       a_base=a_base, b_base=b_base, acc_base=acc_base, count=words_n,
                       b_period=cw if broadcast else 0, **fields)
                e.emit(Opcode.REQUANT, where, lane_group=group, y_zp=op.y.zero_point, qmin=lo,
                       qmax=hi, acc_base=acc_base, prm_addr=0, out_base=y_base, out_stride=1,
                       count=words_n)
            if self._must_store(op.y, keep):
                self._contiguous(Opcode.STORE, where, "act", Mem.ACT, y_base * s,
                                 dst.region.addr + p0 * cw * s, words_n * s)
        self._kept(op.y, placed, keep)

    # -- lookup tables --------------------------------------------------------------------------
    def _lut_slot(self, table: np.ndarray, where: str) -> int:
        """The LUT engine slot holding ``table``, loading it (into the least recently loaded
        slot) unless it is resident already."""
        c = self.c
        key = np.asarray(table).view(np.uint8).tobytes()
        if key in self.lut_slots:
            return self.lut_slots[key]
        if len(self.lut_slots) < c.lut_tables:
            slot = len(self.lut_slots)
        else:
            oldest = next(iter(self.lut_slots))
            slot = self.lut_slots.pop(oldest)
        self.lut_slots[key] = slot
        words = LUT_ENTRIES // c.bus_bytes
        offset = self.e.add_constant(np.frombuffer(key, np.uint8))
        self._load_const(Mem.LUT, slot * words, offset, words, where)
        return slot

    def _lut(self, op: ir.Lut) -> None:
        """LUT on whole ACT words (x and y share one layout; padding lanes are mapped too,
        harmlessly: every reader ignores them). With tensors kept in ACT (or ``y`` to be kept),
        x and y are whole there (x loaded once unless kept) and y is written beside x;
        otherwise in place on chunks of words, alternating ACT halves, so that one chunk's
        LOAD overlaps the previous one's LUT and STORE."""
        c, e, s = self.c, self.e, self.slices
        if not c.lut_tables:
            raise TilingError(f"{op.name}: {op.function or 'the lookup table'} needs the LUT "
                              "engine, which this NPU does not have (lut_tables = 0)")
        src = self.buffers[op.x.name]
        if src.region.flatten_chw:
            raise TilingError(f"{op.name}: a lookup table on a flattened tensor is not "
                              "supported")
        dst = self._allocate(op.y)
        total = src.h * src.w * src.cw
        keep = self._keep(op.y)
        placed = self._place(self.live, op, keep) if keep or self.live else None
        if (keep or self.live) and placed is None:
            raise TilingError(f"{op.name}: internal error: the lookup table does not fit around "
                              "the tensors kept in ACT")
        where = f"layer {op.name}"
        e.comment(f"{op.name}: lut {op.function} {op.x.shape}, {total} words"
                  + (" on chip" if placed is not None else ""))
        slot = self._lut_slot(op.table, where)
        step = field_max(Lut, "count")
        if placed is not None:
            x_base, y_base = placed[op.x.name], placed[op.y.name]
            if op.x.name not in self.live:
                self._contiguous(Opcode.LOAD, where, "act", Mem.ACT, x_base * s,
                                 src.region.addr, total * s)
            for w0 in range(0, total, step):
                e.emit(Opcode.LUT, where, table=slot, src_base=x_base + w0,
                       dst_base=y_base + w0, count=min(step, total - w0))
            if self._must_store(op.y, keep):
                self._contiguous(Opcode.STORE, where, "act", Mem.ACT, y_base * s,
                                 dst.region.addr, total * s)
            self._kept(op.y, placed, keep)
            return
        half = max(1, c.act_depth // 2)
        chunk = min(half, step)
        for k, w0 in enumerate(range(0, total, chunk)):
            n = min(chunk, total - w0)
            base = (k % 2) * half
            self._contiguous(Opcode.LOAD, where, "act", Mem.ACT, base * s,
                             src.region.addr + w0 * s, n * s)
            e.emit(Opcode.LUT, where, table=slot, src_base=base, dst_base=base, count=n)
            self._contiguous(Opcode.STORE, where, "act", Mem.ACT, base * s,
                             dst.region.addr + w0 * s, n * s)

    # -- driver ---------------------------------------------------------------------------------
    def run(self) -> Program:
        graph, e = self.graph, self.e
        for binding in graph.inputs:
            self._allocate(binding.tensor, self._unfolding(binding.tensor))
        lowering = {ir.Conv: self._conv, ir.MaxPool: self._maxpool, ir.Flatten: self._flatten,
                    ir.Concat: self._concat, ir.AvgPool: self._avgpool, ir.Add: self._eltwise,
                    ir.Mul: self._eltwise, ir.Pad: self._pad, ir.Resize: self._resize,
                    ir.ConvTranspose: self._conv_transpose, ir.Lut: self._lut}
        layers = []
        for self.op_index, op in enumerate(graph.ops):
            first = len(e.insns)
            lowering[type(op)](op)
            self.live = {n: v for n, v in self.live.items()
                         if self.last_reader.get(n, -1) > self.op_index}
            layers.append(LayerInfo(op.name, op.kind.value, first, len(e.insns) - first,
                                    op.macs if isinstance(op, ir.Conv | ir.ConvTranspose)
                                    else 0, op.y.name))
        layers = self._prefetch(layers)
        e.emit(Opcode.END, "end")
        return self._link(layers)

    def _prefetch(self, layers: list[LayerInfo]) -> list[LayerInfo]:
        """Apply :func:`~codesign.compiler.prefetch.prefetch` to the emitted stream
        (relocations and comments move with their instructions); returns the layers' new
        instruction ranges."""
        e = self.e
        segment = dict(self.relocations)
        per_layer = [[Item(e.insns[i], segment.get(i), e.comments.get(i))
                      for i in range(layer.first_insn, layer.first_insn + layer.n_insns)]
                     for layer in layers]
        e.insns, e.comments, self.relocations, placed = [], {}, [], []
        for layer, items in zip(layers, prefetch(per_layer, self.c), strict=True):
            placed.append(dataclasses.replace(layer, first_insn=len(e.insns),
                                              n_insns=len(items)))
            for item in items:
                if item.comment is not None:
                    e.comments[len(e.insns)] = item.comment
                if item.segment is not None:
                    self.relocations.append((len(e.insns), item.segment))
                e.insns.append(item.word)
        return placed

    def _link(self, layers: list[LayerInfo]) -> Program:
        """Place program, constants and activations; patch the addresses of LOAD/STORE."""
        c, e = self.c, self.e
        prog_words = len(e.insns) * c.insn_words
        const_base = prog_words
        act_base = const_base + e.const_words
        for index, kind in self.relocations:
            opcode, f = decode(e.insns[index])
            fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
            fields["ext_addr"] = int(fields["ext_addr"]) + (
                const_base if kind == "const" else act_base)
            e.insns[index] = encode(opcode, **fields)
        e.insns = assign_waits(e.insns, c)
        ext_words = act_base + self.next_act_word
        limit = 1 << c.ext_addr_bits
        if ext_words > limit:
            raise TilingError(f"model needs {ext_words} external words, more than {limit}")
        image = np.concatenate(
            [np.frombuffer(insn_bytes(e.insns, c), np.uint8)] + e.constants)

        def placed(name: str) -> Region:
            region = self.buffers[name].region
            return dataclasses.replace(region, addr=region.addr + act_base)

        return Program(config=c, insns=e.insns, image=image, prog_base=0,
                       inputs=[placed(b.tensor.name) for b in self.graph.inputs],
                       outputs=[placed(b.tensor.name) for b in self.graph.outputs],
                       layers=layers, comments=e.comments, ext_words=ext_words,
                       tensors=[placed(name) for name in self.buffers
                                if name not in self.unstored
                                and self.buffers[name].region.unfold is None])


def _pool_stride(op) -> tuple[int, int]:
    """A pooling op's stride, 1 along an axis with a single output position (global pooling:
    the stride is never applied there, and a kernel-sized stride would not fit its field)."""
    return tuple(s if n > 1 else 1 for s, n in zip(op.stride, op.y.shape[:2], strict=True))


#: Most LUT tables :func:`sized_for` gives an NPU (each costs act_bytes × 256 bytes of RAM; a
#: model with more distinct tables reloads them, 256 bytes each time).
MAX_LUT_TABLES = 4


def sized_for(graph: ir.Graph, config: HwConfig) -> HwConfig:
    """``config`` with a LUT engine holding the model's distinct tables (up to
    :data:`MAX_LUT_TABLES`) when the model has lookup tables and ``config`` has none; otherwise
    ``config`` itself."""
    tables = {np.asarray(op.table).view(np.uint8).tobytes() for op in graph.ops
              if isinstance(op, ir.Lut)}
    if not tables or config.lut_tables:
        return config
    return dataclasses.replace(config, lut_tables=min(len(tables), MAX_LUT_TABLES))


def compile_graph(graph: ir.Graph, config: HwConfig, store_all: bool = False) -> Program:
    """Compile ``graph`` for ``config``.

    Tensors that one layer passes to the next in ACT are not written to external memory unless
    ``store_all`` (for layer-by-layer comparisons, which read every tensor back); the Program's
    ``tensors`` lists those that are.

    Raises
    ------
    TilingError
        If a layer cannot be mapped onto this NPU (scratchpads or instruction fields too small).
    """
    return _Compiler(graph, config, store_all).run()
