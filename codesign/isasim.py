"""Instruction-level model of the NPU: the executable form of the semantics in :mod:`codesign.isa`.

It runs a program out of an external-memory image exactly as the RTL does, but one instruction at
a time in numpy. Its uses: checking the compiler without building hardware (fast, every test), and
serving as the reference that every RTL block's randomized tests compare against.
"""

from __future__ import annotations

import numpy as np

from .hazards import check_waits
from .isa import LUT_ENTRIES, HwConfig, Mem, Opcode, PoolMode, decode, requantize

__all__ = ["IsaSim", "IsaError"]


class IsaError(RuntimeError):
    """The program did something the hardware does not define (out-of-range address, ...)."""


class IsaSim:
    """Architectural state of one NPU plus an external memory of ``ext_words`` words."""

    def __init__(self, config: HwConfig, ext: np.ndarray):
        self.config = config
        if ext.dtype != np.uint8 or ext.size % config.bus_bytes:
            raise ValueError("ext must be a uint8 array of whole bus words")
        self.ext = ext.copy()
        c = config
        self.act = np.zeros((c.act_depth, c.act_bytes), np.uint8)
        self.wgt = np.zeros((c.wgt_depth, c.cols), np.uint8)
        self.prm = np.zeros((c.prm_depth, 8 * c.cols), np.uint8)
        self.acc = np.zeros((c.acc_depth, c.cols), np.int32)
        self.lut = np.zeros((c.lut_depth, c.bus_bytes), np.uint8)    # LUT tables, by slice
        self.executed = 0

    # -- helpers --------------------------------------------------------------------------------
    def _ext_words(self) -> np.ndarray:
        return self.ext.reshape(-1, self.config.bus_bytes)

    def _slices(self, mem: Mem) -> np.ndarray:
        """View of a scratchpad as DMA slices of ``bus_bytes`` bytes."""
        arr = {Mem.ACT: self.act, Mem.WGT: self.wgt, Mem.PRM: self.prm, Mem.LUT: self.lut}[mem]
        return arr.reshape(-1, self.config.bus_bytes)

    @staticmethod
    def _check(index: np.ndarray, size: int, what: str) -> None:
        if index.size and (index.min() < 0 or index.max() >= size):
            raise IsaError(f"{what} address out of range: [{index.min()}, {index.max()}] "
                           f"vs size {size}")

    def _dma_index(self, f) -> tuple[np.ndarray, np.ndarray]:
        i = np.arange(int(f.rows))[:, None]
        j = np.arange(int(f.length))[None, :]
        sp = (int(f.sp_addr) + i * int(f.sp_stride) + j).ravel()
        ext = (int(f.ext_addr) + i * int(f.ext_stride) + j).ravel()
        return sp, ext

    def _window(self, f, extra: tuple[int, int] = (0, 0), extent: tuple[int, int] | None = None):
        """(addresses, in-bounds mask) of MATMUL/POOL window positions, oh-major; ``extent``
        replaces (out_h, out_w) (the input stream of a depthwise MATMUL)."""
        h, w = extent or (int(f.out_h), int(f.out_w))
        oh = np.arange(h)[:, None]
        ow = np.arange(w)[None, :]
        ih = int(f.ih0) + oh * int(f.stride_h) + extra[0]
        iw = int(f.iw0) + ow * int(f.stride_w) + extra[1]
        valid = (ih >= 0) & (ih < int(f.in_h)) & (iw >= 0) & (iw < int(f.in_w))
        addr = int(f.act_base) + oh * int(f.step_h) + ow * int(f.step_w)
        return addr.ravel(), valid.ravel()

    # -- instructions ---------------------------------------------------------------------------
    def _load(self, f) -> None:
        mem = f.mem
        sp, ext = self._dma_index(f)
        slices = self._slices(mem)
        self._check(sp, len(slices), f"LOAD {mem.name}")
        self._check(ext, len(self._ext_words()), "LOAD external")
        slices[sp] = self._ext_words()[ext]

    def _store(self, f) -> None:
        if f.mem != Mem.ACT:
            raise IsaError("STORE reads only the ACT scratchpad")
        sp, ext = self._dma_index(f)
        slices = self._slices(Mem.ACT)
        self._check(sp, len(slices), "STORE ACT")
        self._check(ext, len(self._ext_words()), "STORE external")
        self._ext_words()[ext] = slices[sp]

    def _matmul(self, f) -> None:
        c = self.config
        if f.gemv:
            psum, positions = self._gemv(f)
        elif f.depthwise:
            psum, positions = self._depthwise(f)
        else:
            addr, valid = self._window(f)
            self._check(addr[valid], c.act_depth, "MATMUL ACT")
            x = self._operands(f, addr, valid, c.rows)
            w = self._weights(f, c.rows)
            psum, positions = x @ w, len(addr)
        m = int(f.acc_base) + np.arange(positions)
        self._check(m, c.acc_depth, "MATMUL ACC")
        prev = self.acc[m].astype(np.int64) if f.accumulate else 0
        self.acc[m] = ((prev + psum + 2**31) % 2**32 - 2**31).astype(np.int32)

    def _operands(self, f, addr: np.ndarray, valid: np.ndarray, width: int) -> np.ndarray:
        """``x - x_zp`` of lane group ``lane_group`` (``width`` lanes) at ACT ``addr``; 0 where
        not ``valid``. Shape (positions, width)."""
        c = self.config
        lanes = slice(int(f.lane_group) * width, (int(f.lane_group) + 1) * width)
        if lanes.stop > c.act_bytes:
            raise IsaError("MATMUL lane group out of range")
        raw = self.act[np.where(valid, addr, 0), lanes]
        x = (raw.view(np.int8) if f.x_signed else raw).astype(np.int64) - int(f.x_zp)
        x[~valid] = 0
        return x

    def _weights(self, f, words: int) -> np.ndarray:
        """``w - w_zp`` of WGT words ``wgt_base ..`` (``words`` of them), shape (words, cols)."""
        c = self.config
        wb = int(f.wgt_base)
        self._check(np.array([wb, wb + words - 1]), c.wgt_depth, "MATMUL WGT")
        return self.wgt[wb:wb + words].view(np.int8).astype(np.int64) - int(f.w_zp)

    def _gemv(self, f) -> tuple[np.ndarray, int]:
        """psum of a GEMV MATMUL: the window's first pixel against ``out_w`` weight tiles."""
        c = self.config
        if not c.gemv:
            raise IsaError("GEMV MATMUL on an NPU without GEMV mode")
        if int(f.out_h) != 1 or f.depthwise:
            raise IsaError("GEMV MATMUL needs out_h = 1 and depthwise = 0")
        tiles = int(f.out_w)
        addr, valid = self._window(f, extent=(1, 1))
        if valid[0]:
            self._check(addr, c.act_depth, "MATMUL ACT")
        x = self._operands(f, addr, valid, c.rows)[0]
        w = self._weights(f, tiles * c.rows).reshape(tiles, c.rows, c.cols)
        return np.einsum("r,trc->tc", x, w), tiles

    def _depthwise(self, f) -> tuple[np.ndarray, int]:
        """psum of a depthwise MATMUL (3×3 taps, one channel per column), oh-major. Like the
        hardware, it reads each in-bounds position of the padded input stream once."""
        c = self.config
        if not c.dw_width:
            raise IsaError("depthwise MATMUL on an NPU without depthwise mode")
        out_h, out_w = int(f.out_h), int(f.out_w)
        if int(f.stride_h) != 1 or int(f.stride_w) != 1 or out_w > c.dw_width:
            raise IsaError("depthwise MATMUL needs stride 1 and out_w <= dw_width")
        w = self._weights(f, c.dw_weight_words)
        addr, valid = self._window(f, extent=(out_h + 2, out_w + 2))
        self._check(addr[valid], c.act_depth, "MATMUL ACT")
        stream = self._operands(f, addr, valid, c.cols).reshape(out_h + 2, out_w + 2, c.cols)
        psum = np.zeros((out_h, out_w, c.cols), np.int64)
        for t in range(9):
            ky, kx = divmod(t, 3)
            psum += stream[ky:ky + out_h, kx:kx + out_w] * w[t]
        return psum.reshape(-1, c.cols), out_h * out_w

    def _requant(self, f) -> None:
        c = self.config
        count = int(f.count)
        rows = int(f.acc_base) + np.arange(count)
        self._check(rows, c.acc_depth, "REQUANT ACC")
        out = int(f.out_base) + np.arange(count) * int(f.out_stride)
        self._check(out, c.act_depth, "REQUANT ACT")
        self._check(np.array([int(f.prm_addr)]), c.prm_depth, "REQUANT PRM")
        lanes = self.prm[int(f.prm_addr)].view("<u8")
        bias = (lanes & 0xFFFFFFFF).astype(np.int64)
        bias = np.where(bias >= 2**31, bias - 2**32, bias)
        mult = ((lanes >> 32) & 0xFFFFFF).astype(np.int64)
        shift = (lanes >> 56).astype(np.int64)
        g = int(f.lane_group) * c.cols
        if g + c.cols > c.act_bytes:
            raise IsaError("REQUANT lane group out of range")
        lo, hi, zp = int(f.qmin), int(f.qmax), int(f.y_zp)
        for i in range(count):
            a = self.acc[rows[i]].astype(np.int64) + bias
            a = (a + 2**31) % 2**32 - 2**31
            q = [min(max(requantize(int(a[k]), int(mult[k]), int(shift[k])) + zp, lo), hi)
                 for k in range(c.cols)]
            self.act[out[i], g:g + c.cols] = np.array(q, np.int64).astype(np.uint8)

    def _pool(self, f) -> None:
        c = self.config
        words, n_out = int(f.words), int(f.out_h) * int(f.out_w)
        summing = f.mode == PoolMode.SUM
        if summing:
            g = int(f.lane_group) * c.cols
            if g + c.cols > c.act_bytes:
                raise IsaError("POOL lane group out of range")
            words, lanes = 1, slice(g, g + c.cols)
        else:
            lanes = slice(0, c.act_bytes)
        width = lanes.stop - lanes.start
        best = np.full((n_out, words, width), 0 if summing else np.iinfo(np.int64).min, np.int64)
        seen = np.zeros(n_out, bool)
        for kh in range(int(f.k_h)):
            for kw in range(int(f.k_w)):
                addr, valid = self._window(f, (kh, kw))
                addr = addr + kh * int(f.row_words) + kw * int(f.pix_words)
                idx = addr[:, None] + np.arange(words)[None, :]
                self._check(idx[valid], c.act_depth, "POOL ACT")
                raw = self.act[np.where(valid[:, None], idx, 0)][:, :, lanes]
                val = (raw.view(np.int8) if f.x_signed else raw).astype(np.int64)
                if summing:
                    best += np.where(valid[:, None, None], val, 0)
                else:
                    best = np.where(valid[:, None, None], np.maximum(best, val), best)
                seen |= valid
        if summing:
            out = int(f.out_base) + np.arange(n_out)
            self._check(out, c.acc_depth, "POOL ACC out")
            self.acc[out] = ((best[:, 0] + 2**31) % 2**32 - 2**31).astype(np.int32)
            return
        if not seen.all():
            raise IsaError("POOL (MAX) window with no in-bounds position")
        out = int(f.out_base) + np.arange(n_out * words)
        self._check(out, c.act_depth, "POOL ACT out")
        self.act[out] = best.reshape(-1, c.act_bytes).astype(np.uint8)

    def _eltwise(self, f) -> None:
        c = self.config
        count = int(f.count)
        g = int(f.lane_group) * c.cols
        if g + c.cols > c.act_bytes:
            raise IsaError("ELTWISE lane group out of range")
        rows = np.arange(count)
        period = int(f.b_period)
        diffs, mults = [], (int(f.a_mult), int(f.b_mult))
        for base, signed, zp, index in ((f.a_base, f.a_signed, f.a_zp, rows),
                                        (f.b_base, f.b_signed, f.b_zp,
                                         rows % period if period else rows)):
            addr = int(base) + index
            self._check(addr, c.act_depth, "ELTWISE ACT")
            raw = self.act[addr, g:g + c.cols]
            val = (raw.view(np.int8) if signed else raw).astype(np.int64)
            diffs.append(val - int(zp))
        out = int(f.acc_base) + rows
        self._check(out, c.acc_depth, "ELTWISE ACC")
        total = (diffs[0] * diffs[1] if f.mul
                 else diffs[0] * mults[0] + diffs[1] * mults[1])
        self.acc[out] = ((total + 2**31) % 2**32 - 2**31).astype(np.int32)

    def _lut(self, f) -> None:
        c = self.config
        table = int(f.table)
        if table >= c.lut_tables:
            raise IsaError(f"LUT table {table} on an NPU with {c.lut_tables} tables")
        count, src, dst = int(f.count), int(f.src_base), int(f.dst_base)
        if src != dst and src < dst + count and dst < src + count:
            raise IsaError("LUT source and destination overlap without being identical")
        self._check(np.arange(src, src + count), c.act_depth, "LUT ACT source")
        self._check(np.arange(dst, dst + count), c.act_depth, "LUT ACT destination")
        entries = self.lut.reshape(-1)[table * LUT_ENTRIES:(table + 1) * LUT_ENTRIES]
        self.act[dst:dst + count] = entries[self.act[src:src + count]]

    # -- driver ---------------------------------------------------------------------------------
    def step(self, insn: int) -> Opcode:
        """Execute one encoded instruction (END does nothing); returns its opcode."""
        opcode, fields = decode(insn)
        handlers = {Opcode.LOAD: self._load, Opcode.STORE: self._store,
                    Opcode.MATMUL: self._matmul, Opcode.REQUANT: self._requant,
                    Opcode.POOL: self._pool, Opcode.ELTWISE: self._eltwise,
                    Opcode.LUT: self._lut}
        if opcode != Opcode.END:
            handlers[opcode](fields)
        self.executed += 1
        return opcode

    def run(self, prog_base: int, max_insns: int = 10_000_000) -> int:
        """Execute from ``prog_base`` (external word address) to END; returns instructions run.

        Also checks the ``wait`` bits: a program whose instructions could overlap on the
        hardware in a way that changes its results is an error (:mod:`codesign.hazards`).
        """
        c = self.config
        words = self._ext_words()
        pc = prog_base
        check = check_waits(c)
        for _ in range(max_insns):
            if pc + c.insn_words > len(words):
                raise IsaError(f"instruction fetch past the end of memory at {pc}")
            insn = int.from_bytes(words[pc:pc + c.insn_words].reshape(-1).tobytes(), "little")
            try:
                check(*decode(insn))
            except ValueError as err:
                raise IsaError(f"instruction at {pc}: {err}") from None
            if self.step(insn) == Opcode.END:
                return self.executed
            pc += c.insn_words
        raise IsaError("program did not reach END")
