"""Which instructions may overlap: scratchpad footprints and the ``wait`` bits (see codesign.isa).

The controller dispatches in order but lets an instruction start while earlier ones still run on
other engines, unless its ``wait`` bit is set. This module decides those bits. An instruction
needs ``wait`` when one of the instructions that may still be running when it starts (those since
the last instruction with ``wait``, that one included) runs on another engine and touches the
same scratchpad words, one of the two writing them. Instructions of one engine never need it:
the engine runs them in order. External memory needs no check either: only the DMA engine
touches it.

Footprints are conservative word intervals per scratchpad: a window's bounding box (a MATMUL's,
of its in-bounds positions only), whether or not every position in it is read.
"""

from __future__ import annotations

from typing import NamedTuple

from .isa import ENGINE, LUT_ENTRIES, HwConfig, Mem, Opcode, PoolMode, decode, encode

__all__ = ["Access", "footprint", "conflicts", "assign_waits", "check_waits"]


class Access(NamedTuple):
    """Scratchpad words ``lo..hi`` (inclusive) of ``mem`` ("act", "wgt", "prm", "acc", "lut")."""
    mem: str
    lo: int
    hi: int
    write: bool


def _span(base: int, *terms: tuple[int, int]) -> tuple[int, int]:
    """Min and max of ``base + Σ step·i`` over ``0 <= i < count`` for (step, count) terms."""
    lo = hi = base
    for step, count in terms:
        lo += min(0, step * (count - 1))
        hi += max(0, step * (count - 1))
    return lo, hi


def _in_bounds(first: int, stride: int, count: int, size: int) -> range:
    """The positions ``i < count`` whose input index ``first + i·stride`` lies in [0, size)."""
    if stride <= 0:
        return range(count) if 0 <= first < size else range(0)
    lo = max(0, -(first // stride))
    hi = min(count - 1, (size - 1 - first) // stride) if size - 1 - first >= 0 else -1
    return range(lo, hi + 1)


def footprint(config: HwConfig, opcode: Opcode, f) -> list[Access]:
    """The scratchpad words an instruction reads and writes (empty loops touch nothing)."""
    c = config
    if opcode in (Opcode.LOAD, Opcode.STORE):
        rows, length = int(f.rows), int(f.length)
        if not rows or not length:
            return []
        mem = Mem.ACT if opcode == Opcode.STORE else f.mem
        per_word = c.slices(mem)
        lo, hi = _span(int(f.sp_addr), (int(f.sp_stride), rows), (1, length))
        return [Access(mem.name.lower(), lo // per_word, hi // per_word,
                       opcode == Opcode.LOAD)]
    if opcode == Opcode.MATMUL:
        out_h, out_w = int(f.out_h), int(f.out_w)
        if not out_h or not out_w:
            return []
        extra = 2 if f.depthwise else 0
        words = c.dw_weight_words if f.depthwise else c.rows
        outputs = out_h * out_w
        if f.gemv:          # one pixel against out_w weight tiles, one ACC row each
            words, out_h, out_w = out_w * c.rows, 1, 1
        acc = (int(f.acc_base), int(f.acc_base) + outputs - 1)
        # Only in-bounds positions are read (padding positions read no word that matters), so
        # a tensor may sit right next to the words this one's padding would address.
        rows = _in_bounds(int(f.ih0), int(f.stride_h), out_h + extra, int(f.in_h))
        cols = _in_bounds(int(f.iw0), int(f.stride_w), out_w + extra, int(f.in_w))
        accesses = [
            Access("wgt", int(f.wgt_base), int(f.wgt_base) + words - 1, False),
            Access("acc", *acc, True),
        ]
        if rows and cols:
            first = int(f.act_base) + rows.start * int(f.step_h) + cols.start * int(f.step_w)
            accesses.append(Access("act", *_span(first, (int(f.step_h), len(rows)),
                                                 (int(f.step_w), len(cols))), False))
        return accesses + ([Access("acc", *acc, False)] if f.accumulate else [])
    if opcode == Opcode.REQUANT:
        count = int(f.count)
        if not count:
            return []
        return [Access("acc", int(f.acc_base), int(f.acc_base) + count - 1, False),
                Access("prm", int(f.prm_addr), int(f.prm_addr), False),
                Access("act", *_span(int(f.out_base), (int(f.out_stride), count)), True)]
    if opcode == Opcode.POOL:
        out_h, out_w = int(f.out_h), int(f.out_w)
        if not out_h or not out_w:
            return []
        summing = f.mode == PoolMode.SUM
        words = 1 if summing else int(f.words)
        read = _span(int(f.act_base), (int(f.step_h), out_h), (int(f.step_w), out_w),
                     (int(f.row_words), int(f.k_h)), (int(f.pix_words), int(f.k_w)),
                     (1, words))
        n_out = out_h * out_w * words
        return [Access("act", *read, False),
                Access("acc" if summing else "act", int(f.out_base),
                       int(f.out_base) + n_out - 1, True)]
    if opcode == Opcode.ELTWISE:
        count = int(f.count)
        if not count:
            return []
        return [Access("act", int(f.a_base), int(f.a_base) + count - 1, False),
                Access("act", int(f.b_base),
                       int(f.b_base) + min(count, int(f.b_period) or count) - 1, False),
                Access("acc", int(f.acc_base), int(f.acc_base) + count - 1, True)]
    if opcode == Opcode.LUT:
        count = int(f.count)
        if not count:
            return []
        words = LUT_ENTRIES // c.bus_bytes      # LUT scratchpad words of one table
        return [Access("act", int(f.src_base), int(f.src_base) + count - 1, False),
                Access("lut", int(f.table) * words, (int(f.table) + 1) * words - 1, False),
                Access("act", int(f.dst_base), int(f.dst_base) + count - 1, True)]
    return []


def conflicts(a: list[Access], b: list[Access]) -> bool:
    """Whether two footprints touch a common word with at least one of them writing it."""
    return any(x.mem == y.mem and (x.write or y.write) and x.lo <= y.hi and y.lo <= x.hi
               for x in a for y in b)


class _InFlight:
    """The instructions that may still run when the next one starts."""

    def __init__(self):
        self.window: list[tuple[str | None, list[Access]]] = []

    def needs_wait(self, engine: str | None, accesses: list[Access]) -> bool:
        if engine is None:      # END
            return True
        return any(other != engine and conflicts(accesses, theirs)
                   for other, theirs in self.window)

    def add(self, engine: str | None, accesses: list[Access], wait: bool) -> None:
        if wait:
            self.window.clear()
        self.window.append((engine, accesses))


def assign_waits(insns: list[int], config: HwConfig) -> list[int]:
    """``insns`` with each ``wait`` bit set exactly where the rule of the module docstring
    requires it."""
    state = _InFlight()
    out = []
    for word in insns:
        opcode, f = decode(word)
        accesses = footprint(config, opcode, f)
        engine = ENGINE.get(opcode)
        wait = state.needs_wait(engine, accesses)
        state.add(engine, accesses, wait)
        fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
        out.append(encode(opcode, **{**fields, "wait": int(wait)}))
    return out


def check_waits(config: HwConfig):
    """A checker for a program run one instruction at a time: call it with each (opcode,
    fields); it raises ``ValueError`` when an instruction without ``wait`` could overlap an
    earlier one it depends on."""
    state = _InFlight()

    def check(opcode: Opcode, f) -> None:
        accesses = footprint(config, opcode, f)
        engine = ENGINE.get(opcode)
        wait = bool(f.wait) or opcode == Opcode.END
        if not wait and state.needs_wait(engine, accesses):
            raise ValueError(f"{opcode.name} without wait may overlap an instruction it "
                             "depends on")
        state.add(engine, accesses, wait)

    return check
