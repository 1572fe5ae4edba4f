"""An instrumented :class:`~codesign.isasim.IsaSim` that counts what a run actually touches.

The energy model (:mod:`codesign.dse.energy`) derives its counts from instruction fields. This
simulator observes them instead: every scratchpad and the external memory are wrapped in
:class:`CountingMemory`, which records each row (word, DMA slice or bus word) the simulator reads
or writes, and the requantizer calls are counted as they happen. Operation counts that have no
memory access of their own are derived from the accesses observed in the same instruction
(e.g. PE operations = ACC words written x WGT words read x cols), so they rest on the loop bounds
the simulator really executed, not on the model's formulas.

Two places where the numpy model touches memory that the hardware does not:

* out-of-bounds window positions (MATMUL, POOL): IsaSim reads ACT word 0 and then discards it
  (vectorised); the RTL issues no read there (``act_ren = in_bounds``). ``_window`` reports the
  in-bounds mask, and the next ACT read counts only the rows at in-bounds positions.
* a MATMUL with no window positions (never emitted by the compiler) would still read the weight
  tile in IsaSim; the RTL touches nothing.
"""

from __future__ import annotations

import numpy as np

from codesign import isasim
from codesign.dse.energy import Counts
from codesign.isa import INSN_BITS, HwConfig, Mem, Opcode, decode
from codesign.isasim import IsaSim

__all__ = ["CountingMemory", "CountingIsaSim"]


class CountingMemory:
    """A 2-D array (rows = access units) that reports each read and write to ``sim``.

    ``read_bytes`` is what one row read costs in bytes (a DMA slice is read out of a whole
    scratchpad word); writes cost the bytes actually selected (byte enables).
    """

    def __init__(self, array: np.ndarray, sim: CountingIsaSim, name: str, read_bytes: int):
        self.array = array
        self.sim = sim
        self.name = name
        self.read_bytes = read_bytes

    def __len__(self) -> int:
        return len(self.array)

    def _rows(self, key) -> tuple[np.ndarray, object]:
        first, rest = (key[0], key[1:]) if isinstance(key, tuple) else (key, ())
        return np.arange(len(self.array))[first], (rest[0] if rest else slice(None))

    def __getitem__(self, key):
        rows, _ = self._rows(key)
        n = np.size(rows)
        mask = self.sim.pending_mask
        if self.name == "act" and mask is not None:
            self.sim.pending_mask = None
            first = key[0] if isinstance(key, tuple) else key
            if isinstance(first, np.ndarray) and first.shape[:1] == mask.shape:
                n = np.size(first[mask])
        self.sim.record(self.name, "read", n, n * self.read_bytes)
        return self.array[key]

    def __setitem__(self, key, value) -> None:
        rows, cols = self._rows(key)
        per_row = np.arange(self.array.shape[1])[cols].size * self.array.itemsize
        self.sim.record(self.name, "write", np.size(rows), np.size(rows) * per_row)
        self.array[key] = value


class CountingIsaSim(IsaSim):
    """IsaSim that keeps, per executed instruction, the :class:`Counts` it observed
    (``per_insn``: a list of (opcode, counts) in execution order)."""

    def __init__(self, config: HwConfig, ext: np.ndarray):
        super().__init__(config, ext)
        c = config
        self.per_insn: list[tuple[Opcode, Counts]] = []
        self.pending_mask: np.ndarray | None = None
        self._current: Counts | None = None
        self._fetched = 0
        self.act = CountingMemory(self.act, self, "act", c.act_bytes)
        self.wgt = CountingMemory(self.wgt, self, "wgt", c.cols)
        self.prm = CountingMemory(self.prm, self, "prm", 8 * c.cols)
        self.acc = CountingMemory(self.acc, self, "acc", 4 * c.cols)

    # -- memories as IsaSim sees them ----------------------------------------------------------
    def _ext_words(self):
        b = self.config.bus_bytes
        return CountingMemory(self.ext.reshape(-1, b), self, "ext", b)

    def _slices(self, mem: Mem):
        wrapped: CountingMemory = getattr(self, mem.name.lower())
        return CountingMemory(wrapped.array.reshape(-1, self.config.bus_bytes), self,
                              wrapped.name, self.config.word_bytes(mem))

    def _window(self, f, extra=(0, 0), extent=None):
        addr, valid = super()._window(f, extra, extent)
        self.pending_mask = valid
        return addr, valid

    def record(self, name: str, kind: str, rows: int, nbytes: int) -> None:
        n = self._current
        if name == "ext":
            if n is None:                      # outside step(): instruction fetch
                self._fetched += nbytes
            elif kind == "read":
                n.dram_read_bytes += nbytes
            else:
                n.dram_write_bytes += nbytes
            return
        traffic = getattr(n, name)
        if kind == "read":
            traffic.reads += rows
            traffic.read_bytes += nbytes
        else:
            traffic.writes += rows
            traffic.write_bytes += nbytes

    # -- instructions ---------------------------------------------------------------------------
    def _requant(self, f) -> None:
        calls = 0
        original = isasim.requantize

        def counting(*args):
            nonlocal calls
            calls += 1
            return original(*args)

        isasim.requantize = counting
        try:
            super()._requant(f)
        finally:
            isasim.requantize = original
        self._current.requant_ops += calls

    def step(self, insn: int) -> Opcode:
        c = self.config
        n = self._current = Counts(instructions=1)
        self.pending_mask = None
        # A step() without run() (no fetch observed) is charged its fetch like the model does.
        n.fetch_bytes = self._fetched or INSN_BITS // 8
        self._fetched = 0
        try:
            opcode = super().step(insn)
        finally:
            self._current = None
        # Operations observed through the accesses of this instruction.
        if opcode == Opcode.MATMUL and decode(insn)[1].gemv:
            # GEMV: one pixel held while the weight words of two tiles at a time stream past
            # it, every PE multiplying on each of the 2·rows slots per pair of tiles.
            slots = 2 * c.rows * ((n.acc.writes + 1) // 2)
            n.pe_ops = slots * c.rows * c.cols
            n.pe_ops_in_bounds = n.act.reads * n.pe_ops
            n.acc_adds = n.acc.reads * c.cols
            n.x_zp_subs = n.act.reads * c.rows
            n.w_zp_subs = n.wgt.reads * c.cols
        elif opcode == Opcode.MATMUL:
            f = decode(insn)[1]
            # A depthwise MATMUL streams (out_h + 2)(out_w + 2) positions, C lanes each.
            stream = ((int(f.out_h) + 2) * (int(f.out_w) + 2) if f.depthwise
                      else n.acc.writes)
            n.pe_ops = stream * n.wgt.reads * c.cols
            n.pe_ops_in_bounds = n.act.reads * n.wgt.reads * c.cols
            n.acc_adds = n.acc.reads * c.cols
            n.x_zp_subs = stream * (c.cols if f.depthwise else n.wgt.reads)
            n.w_zp_subs = n.wgt.reads * c.cols
        elif opcode == Opcode.POOL:
            if n.acc.writes:
                n.pool_sum_ops = n.act.reads * c.cols
            else:
                n.pool_max_ops = n.act.reads * c.act_bytes
        elif opcode == Opcode.ELTWISE:
            n.eltwise_ops = n.acc.writes * c.cols
        self.per_insn.append((opcode, n))
        return opcode
