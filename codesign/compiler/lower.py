"""Lowering: integer IR → NPU instructions + external memory image.

Memory plan (external word addresses)::

    0 ............ program (instructions, INSN_BITS each)
    ............... constants: per layer, weight tiles then requant parameter words
    ............... activation buffers: one per IR tensor (Flatten outputs alias their input)

Every layer runs as a sequence of *row tiles*: the output rows that fit the accumulator and, with
the input rows they need (halo included), the ACT scratchpad. For convolutions::

    LOAD input rows → ACT
    for each output word (act_bytes channels) and each column tile (cols channels) in it:
        for each weight tile (kh, kw, group of `rows` input channels):   ACC (+)= window · tile
        REQUANT ACC → lane group of the output word in ACT
    STORE output words → external memory

Weights and requant parameters are loaded once per layer when the whole layer fits the WGT / PRM
scratchpads, otherwise once per (row tile, column tile).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .. import ir
from ..errors import TilingError
from ..isa import (
    PRM_LANE,
    HwConfig,
    Mem,
    Opcode,
    PoolMode,
    decode,
    encode,
    float_to_mult_shift,
)
from .program import LayerInfo, Program, Region

__all__ = ["compile_graph"]


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
class _Buffer:
    """Physical home of an IR tensor: HWC with ``cw`` ACT words per pixel."""
    region: Region
    h: int
    w: int
    cw: int           # ACT words per (physical) pixel
    channels: int     # logical channels per physical pixel


class _Compiler:
    def __init__(self, graph: ir.Graph, config: HwConfig):
        self.graph = graph
        self.c = config
        self.e = _Emitter(config)
        self.slices = config.act_bytes // config.bus_bytes  # ext words per ACT word
        self.buffers: dict[str, _Buffer] = {}
        self.next_act_word = 0          # relative to the activation segment (fixed up later)
        self.const_fixups: list[tuple[int, str]] = []

    # -- memory plan ----------------------------------------------------------------------------
    def _allocate(self, t: ir.Tensor) -> _Buffer:
        h, w, c = t.shape
        cw = _ceil(c, self.c.act_bytes)
        region = Region(t.name, self.next_act_word, t.shape, cw, t.signed)
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

    def _load_rows(self, buf: _Buffer, r0: int, r1: int, act_base: int, where: str) -> None:
        """LOAD input rows [r0, r1) of ``buf`` to ACT word ``act_base``."""
        row_slices = buf.w * buf.cw * self.slices
        self.e.emit(Opcode.LOAD, where, mem=Mem.ACT, sp_addr=act_base * self.slices,
                    sp_stride=row_slices, ext_addr=buf.region.addr + r0 * row_slices,
                    ext_stride=row_slices, rows=r1 - r0, length=row_slices)
        self.const_fixups.append((len(self.e.insns) - 1, "act"))

    # -- convolution ----------------------------------------------------------------------------
    def _conv(self, op: ir.Conv) -> None:
        c, e = self.c, self.e
        R, C, A = c.rows, c.cols, c.act_bytes
        src = self.buffers[op.x.name]
        dst = self._allocate(op.y)
        kh_n, kw_n, cin, cout = op.weight.shape
        (sh, sw), (pt, pl, _, _) = op.stride, op.pads
        oh_n, ow_n = op.y.shape[0], op.y.shape[1]
        if src.region.flatten_chw:
            # A flattened tensor is one "pixel" whose channels are the source's physical words.
            ih_n, iw_n, cw_in = 1, 1, src.h * src.w * src.cw
            phys_to_logical = self._flatten_channel_map(src)
        else:
            ih_n, iw_n, cw_in = src.h, src.w, src.cw
            phys_to_logical = np.array([k if k < cin else -1 for k in range(cw_in * A)])
        if len(phys_to_logical) != cw_in * A or phys_to_logical.max() + 1 != cin:
            raise TilingError(f"{op.name}: input channels do not match the weights")

        # Weight tiles: groups of R physical input channels that hold at least one real one.
        groups = [g for g in range(cw_in * A // R)
                  if (phys_to_logical[g * R:(g + 1) * R] >= 0).any()]
        tiles = [(kh, kw, g) for kh in range(kh_n) for kw in range(kw_n) for g in groups]
        n_col_tiles = _ceil(cout, C)
        wq = op.weight.astype(np.int16)
        # Rows of padding channels hold w_zp, so that (w - w_zp) = 0 whatever the padding lanes
        # of the activations contain.
        tile_data = np.full((n_col_tiles, len(tiles), R, C), op.w_zero_point, np.int8)
        for t, (kh, kw, g) in enumerate(tiles):
            logical = phys_to_logical[g * R:(g + 1) * R]
            for r, k in enumerate(logical):
                if k >= 0:
                    row = np.zeros(n_col_tiles * C, np.int16)
                    row[:cout] = wq[kh, kw, k, :]
                    tile_data[:, t, r, :] = row.reshape(n_col_tiles, C)
        wgt_words_per_col_tile = len(tiles) * R
        wgt_offset = e.add_constant(tile_data.view(np.uint8))

        prm = np.zeros(n_col_tiles * C, "<u8")   # one isa.PRM_LANE per output channel
        for n in range(cout):
            mult, shift = float_to_mult_shift(op.multiplier[n])
            prm[n] = PRM_LANE.const({"bias": int(op.bias[n]), "mult": mult,
                                     "shift": shift}).as_bits()
        prm_offset = e.add_constant(prm.view(np.uint8))
        wgt_slices, prm_slices = c.slices(Mem.WGT), c.slices(Mem.PRM)

        weights_resident = n_col_tiles * wgt_words_per_col_tile <= c.wgt_depth
        params_resident = n_col_tiles <= c.prm_depth
        # Weight tiles go through WGT in chunks of `chunk` tiles when a layer does not fit.
        chunk = len(tiles) if weights_resident else min(len(tiles), c.wgt_depth // R)

        row_words = iw_n * cw_in

        def in_rows(oh0: int, oh1: int) -> tuple[int, int]:
            lo = max(0, oh0 * sh - pt)
            hi = min(ih_n, (oh1 - 1) * sh - pt + kh_n)
            return lo, max(lo, hi)

        def fits(t: int) -> bool:
            worst = max(in_rows(r, min(oh_n, r + t))[1] - in_rows(r, min(oh_n, r + t))[0]
                        for r in range(0, oh_n, t))
            return t * ow_n <= c.acc_depth and worst * row_words + t * ow_n <= c.act_depth

        row_tiles = self._row_tiles(oh_n, fits)
        if not row_tiles:
            raise TilingError(
                f"{op.name}: one output row ({ow_n} pixels) with its {kh_n} input rows of "
                f"{row_words} ACT words does not fit ACT={c.act_depth}/ACC={c.acc_depth} words; "
                "use larger scratchpads")

        where = f"layer {op.name}"
        e.comment(f"{op.name}: conv {kh_n}x{kw_n}/{sh}x{sw} {op.x.shape} -> {op.y.shape}, "
                  f"{len(row_tiles)} row tile(s), {n_col_tiles} column tile(s), "
                  f"{len(tiles)} weight tile(s) each")
        if weights_resident:
            self._load_const(Mem.WGT, 0, wgt_offset,
                             n_col_tiles * wgt_words_per_col_tile * wgt_slices, where)
        if params_resident:
            self._load_const(Mem.PRM, 0, prm_offset, n_col_tiles * prm_slices, where)
        x_zp, w_zp = op.x.zero_point, op.w_zero_point
        # The array's 9-bit operands hold x - x_zp and w - w_zp only for in-range zero points.
        if not (op.x.qmin <= x_zp <= op.x.qmax and -128 <= w_zp <= 127):
            raise TilingError(f"{op.name}: zero points out of the 8-bit range "
                              f"(x_zp={x_zp}, w_zp={w_zp})")
        lo, hi = op.qrange
        for oh0, oh1 in row_tiles:
            r0, r1 = in_rows(oh0, oh1)
            out_base = (r1 - r0) * row_words
            count = (oh1 - oh0) * ow_n
            if r1 > r0:
                self._load_rows(_Buffer(src.region, ih_n, iw_n, cw_in, 0), r0, r1, 0, where)
            for nt in range(n_col_tiles):
                if params_resident:
                    prm_addr = nt
                else:
                    prm_addr = 0
                    self._load_const(Mem.PRM, 0, prm_offset + nt * prm_slices, prm_slices, where)
                for t, (kh, kw, g) in enumerate(tiles):
                    if weights_resident:
                        wgt_base = (nt * len(tiles) + t) * R
                    else:
                        wgt_base = (t % chunk) * R
                        if t % chunk == 0:
                            n = min(chunk, len(tiles) - t) * R * wgt_slices
                            first = (nt * len(tiles) + t) * R * wgt_slices
                            self._load_const(Mem.WGT, 0, wgt_offset + first, n, where)
                    ih0 = oh0 * sh - pt + kh - r0
                    iw0 = kw - pl
                    word, lane_group = divmod(g, A // R)
                    e.emit(Opcode.MATMUL, where, accumulate=int(t > 0),
                           x_signed=int(op.x.signed), lane_group=lane_group, x_zp=x_zp,
                           w_zp=w_zp, act_base=ih0 * row_words + iw0 * cw_in + word,
                           step_w=sw * cw_in, step_h=sh * row_words,
                           wgt_base=wgt_base, acc_base=0, out_h=oh1 - oh0,
                           out_w=ow_n, ih0=ih0, iw0=iw0, stride_h=sh, stride_w=sw,
                           in_h=r1 - r0, in_w=iw_n)
                out_word, out_lane = divmod(nt * C, A)
                e.emit(Opcode.REQUANT, where, lane_group=out_lane // C, y_zp=op.y.zero_point,
                       qmin=lo, qmax=hi, acc_base=0, prm_addr=prm_addr,
                       out_base=out_base, out_stride=1, count=count)
                last_in_word = nt == n_col_tiles - 1 or (nt + 1) * C % A == 0
                if last_in_word:
                    self._store_pixels(dst, oh0 * ow_n, count, out_word, out_base, where)

    def _flatten_channel_map(self, src: _Buffer) -> np.ndarray:
        """Physical channel (h, w, padded c) of a flattened tensor → its ONNX CHW index or -1."""
        A = self.c.act_bytes
        h, w, c = src.h, src.w, src.channels
        idx = np.full((h, w, src.cw * A), -1, np.int64)
        idx[:, :, :c] = (np.arange(c)[None, None, :] * h * w
                         + np.arange(h)[:, None, None] * w + np.arange(w)[None, :, None])
        return idx.ravel()

    def _load_const(self, mem: Mem, sp_word: int, const_word: int, n_slices: int,
                    where: str) -> None:
        """LOAD ``n_slices`` consecutive slices of the constant segment into ``mem``."""
        # Split into rows so that `length` fits its field.
        step = 1 << 15
        for first in range(0, n_slices, step):
            n = min(step, n_slices - first)
            self.e.emit(Opcode.LOAD, where, mem=mem, sp_addr=sp_word + first, sp_stride=0,
                        ext_addr=const_word + first, ext_stride=0, rows=1, length=n)
            self.const_fixups.append((len(self.e.insns) - 1, "const"))

    def _store_pixels(self, dst: _Buffer, first_pixel: int, count: int, word: int,
                      act_base: int, where: str) -> None:
        """STORE ACT words act_base.. (one per pixel) to channel word ``word`` of pixels
        first_pixel.. of ``dst``."""
        s = self.slices
        self.e.emit(Opcode.STORE, where, mem=Mem.ACT, sp_addr=act_base * s, sp_stride=s,
                    ext_addr=dst.region.addr + (first_pixel * dst.cw + word) * s,
                    ext_stride=dst.cw * s, rows=count, length=s)
        self.const_fixups.append((len(self.e.insns) - 1, "act"))

    # -- max pooling ----------------------------------------------------------------------------
    def _maxpool(self, op: ir.MaxPool) -> None:
        c, e = self.c, self.e
        src = self.buffers[op.x.name]
        if src.region.flatten_chw:
            raise TilingError(f"{op.name}: MaxPool of a flattened tensor is not supported")
        dst = self._allocate(op.y)
        (kh_n, kw_n), (sh, sw), (pt, pl, pb, pr) = op.kernel, op.stride, op.pads
        if pt >= kh_n or pb >= kh_n or pl >= kw_n or pr >= kw_n:
            raise TilingError(f"{op.name}: MaxPool padding must be smaller than the kernel")
        ih_n, iw_n, cw = src.h, src.w, src.cw
        oh_n, ow_n = op.y.shape[0], op.y.shape[1]
        row_words = iw_n * cw

        def in_rows(oh0: int, oh1: int) -> tuple[int, int]:
            return max(0, oh0 * sh - pt), min(ih_n, (oh1 - 1) * sh - pt + kh_n)

        def fits(t: int) -> bool:
            worst = max(in_rows(r, min(oh_n, r + t))[1] - in_rows(r, min(oh_n, r + t))[0]
                        for r in range(0, oh_n, t))
            return worst * row_words + t * ow_n * cw <= c.act_depth

        row_tiles = self._row_tiles(oh_n, fits)
        if not row_tiles:
            raise TilingError(f"{op.name}: one pooling row does not fit ACT={c.act_depth} "
                              "words; use a larger --act-depth")
        where = f"layer {op.name}"
        e.comment(f"{op.name}: maxpool {kh_n}x{kw_n}/{sh}x{sw} {op.x.shape} -> {op.y.shape}")
        s = self.slices
        for oh0, oh1 in row_tiles:
            r0, r1 = in_rows(oh0, oh1)
            self._load_rows(src, r0, r1, 0, where)
            out_base = (r1 - r0) * row_words
            ih0, iw0 = oh0 * sh - pt - r0, -pl
            e.emit(Opcode.POOL, where, mode=PoolMode.MAX, x_signed=int(op.x.signed),
                   act_base=ih0 * row_words + iw0 * cw, step_w=sw * cw, step_h=sh * row_words,
                   row_words=row_words, pix_words=cw, out_base=out_base, words=cw,
                   out_h=oh1 - oh0, out_w=ow_n, ih0=ih0, iw0=iw0, stride_h=sh, stride_w=sw,
                   k_h=kh_n, k_w=kw_n, in_h=r1 - r0, in_w=iw_n)
            n = (oh1 - oh0) * ow_n * cw * s
            e.emit(Opcode.STORE, where, mem=Mem.ACT, sp_addr=out_base * s, sp_stride=0,
                   ext_addr=dst.region.addr + oh0 * ow_n * cw * s, ext_stride=0, rows=1,
                   length=n)
            self.const_fixups.append((len(e.insns) - 1, "act"))

    # -- driver ---------------------------------------------------------------------------------
    def run(self) -> Program:
        graph, e = self.graph, self.e
        for binding in graph.inputs:
            self._allocate(binding.tensor)
        layers = []
        for op in graph.ops:
            first = len(e.insns)
            if isinstance(op, ir.Conv):
                self._conv(op)
            elif isinstance(op, ir.MaxPool):
                self._maxpool(op)
            elif isinstance(op, ir.Flatten):
                self._flatten(op)
            else:  # pragma: no cover - the IR has no other ops
                raise TilingError(f"no lowering for {type(op).__name__}")
            layers.append(LayerInfo(op.name, op.kind.value, first, len(e.insns) - first,
                                    op.macs if isinstance(op, ir.Conv) else 0, op.y.name))
        e.emit(Opcode.END, "end")
        return self._link(layers)

    def _link(self, layers: list[LayerInfo]) -> Program:
        """Place program, constants and activations; patch the addresses of LOAD/STORE."""
        c, e = self.c, self.e
        prog_words = len(e.insns) * c.insn_words
        const_base = prog_words
        act_base = const_base + e.const_words
        for index, kind in self.const_fixups:
            opcode, f = decode(e.insns[index])
            fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
            fields["ext_addr"] = int(fields["ext_addr"]) + (
                const_base if kind == "const" else act_base)
            e.insns[index] = encode(opcode, **fields)
        ext_words = act_base + self.next_act_word
        limit = 1 << c.ext_addr_bits
        if ext_words > limit:
            raise TilingError(f"model needs {ext_words} external words, more than {limit}")
        image = np.concatenate(
            [np.frombuffer(b"".join(i.to_bytes(c.insn_words * c.bus_bytes, "little")
                                    for i in e.insns), np.uint8)] + e.constants)

        def placed(name: str) -> Region:
            region = self.buffers[name].region
            return dataclasses.replace(region, addr=region.addr + act_base)

        return Program(config=c, insns=e.insns, image=image, prog_base=0,
                       inputs=[placed(b.tensor.name) for b in self.graph.inputs],
                       outputs=[placed(b.tensor.name) for b in self.graph.outputs],
                       layers=layers, comments=e.comments, ext_words=ext_words)


def compile_graph(graph: ir.Graph, config: HwConfig) -> Program:
    """Compile ``graph`` for ``config``.

    Raises
    ------
    TilingError
        If a layer cannot be mapped onto this NPU (scratchpads or instruction fields too small).
    """
    return _Compiler(graph, config).run()
