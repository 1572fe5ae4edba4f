"""Prefetch: LOADs move, in chunks, behind earlier MATMULs, so the array does not wait for them.

A layer starts by loading its weights into WGT, and with nothing else to do the array waits for
them (ResNet-8's last 3×3 layer: 4,608 cycles on an 8×8 with an 8-byte bus); a first layer
waits likewise for each row tile of its input. The DMA engine and the MATMUL engine share no
port (LOAD writes WGT or ACT; MATMUL reads ACT and WGT, writes ACC), so those LOADs can run
while earlier MATMULs compute — but a LOAD holds the external port, and instruction fetch waits
for it. This pass therefore splits each such LOAD into chunks, each short enough for the
controller to fetch the chunk, run it, and fetch the next MATMUL before the array runs dry
(:func:`_slot_slices`), and places one chunk after each earlier MATMUL (this layer's or the
previous layers'), as far back as no instruction there touches the chunk's words.

Moving a LOAD earlier past instructions that neither touch the scratchpad words it writes nor
store the external words it reads keeps the program's meaning (the instruction-level model runs
instructions in order); the ``wait`` bits are assigned after
this pass. The weights of consecutive layers sit in different WGT words
(``_Compiler._wgt_region``), so usually nothing stops a layer's weights before the previous
layer's first MATMUL.
"""

from __future__ import annotations

import dataclasses
import functools

from ..hazards import conflicts, footprint
from ..isa import HwConfig, LoadStore, Mem, Opcode, decode, encode, field_max
from ..timing import gemv_stream

__all__ = ["Item", "prefetch"]


@dataclasses.dataclass
class Item:
    """One instruction of a layer: its word, the external segment its ``ext_addr`` is relative
    to (None: not a DMA instruction), and the listing comment before it."""
    word: int
    segment: str | None = None
    comment: str | None = None


def _slot_slices(config: HwConfig, f) -> int:
    """External words a LOAD placed right after this MATMUL may move without stalling the array.

    The controller fetches the LOAD, starts it, waits for it to release the external port,
    then fetches the next MATMUL; all of that must fit in the MATMUL's stream positions, less
    the next MATMUL's own weight load into the array (``rows`` cycles) and a margin for the
    fetch and dispatch stages."""
    if f.gemv:
        # GEMV MATMULs are bound by their weight traffic, not the array: one that loads as
        # many words as it streams keeps the external port busy.
        return gemv_stream(config, int(f.out_w))[0]
    if f.depthwise:
        positions = (int(f.out_h) + 2) * (int(f.out_w) + 2)
    else:
        positions = int(f.out_h) * int(f.out_w)
    return max(0, positions - config.rows - 2 * config.insn_words - 8)


def _movable(item: Item) -> bool:
    """A LOAD of one contiguous run of words: weights or LUT tables from the constant segment, or
    activations (whose rows may be strided, but back to back in both memories)."""
    opcode, f = decode(item.word)
    if opcode != Opcode.LOAD:
        return False
    if f.mem in (Mem.WGT, Mem.LUT) and item.segment == "const":
        return int(f.rows) == 1 and int(f.sp_stride) == 0 and int(f.ext_stride) == 0
    if f.mem == Mem.ACT and item.segment == "act":
        n = int(f.length)
        return int(f.rows) == 1 and int(f.sp_stride) == 0 and int(f.ext_stride) == 0 or (
            int(f.sp_stride) == int(f.ext_stride) == n
            and int(f.rows) * n <= field_max(LoadStore, "length"))
    return False


def _external(item: Item) -> tuple[str | None, int, int]:
    """Segment and first and last external word (relative to it) of a LOAD or STORE."""
    _, f = decode(item.word)
    rows, length = int(f.rows), int(f.length)
    first = int(f.ext_addr)
    return item.segment, first, first + max(0, (rows - 1) * int(f.ext_stride)) + length - 1


def _chunk(item: Item, first: int, n: int) -> Item:
    """Slices ``first .. first+n`` of a contiguous LOAD."""
    _, f = decode(item.word)
    fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
    fields.update(sp_addr=int(f.sp_addr) + first, ext_addr=int(f.ext_addr) + first,
                  sp_stride=0, ext_stride=0, rows=1, length=n, wait=0)
    return Item(encode(Opcode.LOAD, **fields), item.segment)


def prefetch(layers: list[list[Item]], config: HwConfig) -> list[list[Item]]:
    """``layers`` (each layer's instructions, in order) with their movable LOADs spread over
    the MATMULs before them."""
    decoded = [[decode(it.word) for it in layer] for layer in layers]
    # Per layer and MATMUL index: external words that may still load after that MATMUL.
    room = [{i: _slot_slices(config, f) for i, (op, f) in enumerate(layer)
             if op == Opcode.MATMUL} for layer in decoded]
    # Footprints depend on the word alone; the scans below ask for each many times.
    accesses = functools.lru_cache(maxsize=None)(
        lambda word: footprint(config, *decode(word)))
    after: list[dict[int, list[Item]]] = [{} for _ in layers]   # chunks moved after index i
    keep: list[dict[int, Item]] = [{} for _ in layers]          # what stays at index i
    for li, layer in enumerate(layers):
        for ii, item in enumerate(layer):
            opcode, f = decoded[li][ii]
            keep[li][ii] = item
            if not _movable(item):
                continue
            writes = footprint(config, opcode, f)
            source = _external(item)

            def touches(it: Item, writes=writes, source=source) -> bool:
                """Whether ``it`` must stay before the LOAD: it touches the words the LOAD
                writes, or it is a STORE of the external words the LOAD reads."""
                if it.segment == source[0] and decode(it.word)[0] == Opcode.STORE:
                    lo, hi = _external(it)[1:]
                    if lo <= source[2] and source[1] <= hi:
                        return True
                return conflicts(writes, accesses(it.word))

            # The MATMULs after the last instruction (or moved chunk) that touches its words.
            slots: list[tuple[int, int]] = []
            for lj in range(li, -1, -1):
                before = ii if lj == li else len(layers[lj])
                hits = [i for i, it in keep[lj].items() if i < before and touches(it)]
                hits += [i for i, chunks in after[lj].items()
                         if i < before and any(map(touches, chunks))]
                last = max(hits, default=-1)
                slots = [(lj, i) for i in room[lj] if last < i < before] + slots
                if hits:
                    break
            total = int(f.rows) * int(f.length)
            # A LOAD of LUT tables holds the external port bus_bytes cycles per slice.
            cost = config.bus_bytes if f.mem == Mem.LUT else 1
            done = 0
            for lj, i in slots:
                n = min(room[lj][i] // cost, total - done)
                if n > 0:
                    after[lj].setdefault(i, []).append(_chunk(item, done, n))
                    room[lj][i] -= n * cost
                    done += n
            if done == total:
                del keep[li][ii]
            elif done:
                keep[li][ii] = _chunk(item, done, total - done)
    out = []
    for li, layer in enumerate(layers):
        items, comment = [], None
        for i, item in enumerate(layer):
            comment = comment or item.comment          # a moved opening LOAD's comment stays
            if i in keep[li]:
                items.append(dataclasses.replace(keep[li][i], comment=comment))
                comment = None
            items.extend(after[li].get(i, []))
        out.append(items)
    return out
