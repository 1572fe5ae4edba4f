"""Weight prefetch: a layer's weight LOADs move into the previous layers' MATMUL streams.

A layer starts by loading its weights into WGT, and with nothing else to do the array waits for
them (ResNet-8's last 3×3 layer: 4,608 cycles on an 8×8 with an 8-byte bus). The DMA engine and
the MATMUL engine share no port (LOAD → WGT writes WGT, MATMUL reads ACT and WGT, writes ACC), so
those LOADs can run while earlier layers compute — but a LOAD holds the external port, and
instruction fetch waits for it. This pass therefore splits each such LOAD into chunks, each
short enough for the controller to fetch the chunk, run it, and fetch the next MATMUL before the
array runs dry (:func:`_slot_words`), and places one chunk after each MATMUL of the earlier
layers, as far back as no instruction there touches the chunk's WGT words.

Moving a LOAD earlier past instructions that do not touch its words keeps the program's meaning
(the instruction-level model runs instructions in order); the ``wait`` bits are assigned after
this pass. The weights of consecutive layers sit in different WGT words
(``_Compiler._wgt_region``), so usually nothing stops a chunk before the previous layer's first
MATMUL.
"""

from __future__ import annotations

import dataclasses

from ..hazards import conflicts, footprint
from ..isa import HwConfig, Mem, Opcode, decode, encode

__all__ = ["Item", "prefetch_weights"]


@dataclasses.dataclass
class Item:
    """One instruction of a layer: its word, the external segment its ``ext_addr`` is relative
    to (None: not a DMA instruction), and the listing comment before it."""
    word: int
    segment: str | None = None
    comment: str | None = None


def _slot_words(config: HwConfig, f) -> int:
    """WGT words a LOAD placed right after this MATMUL may move without stalling the array.

    The controller fetches the LOAD, starts it, waits for it to release the external port,
    then fetches the next MATMUL; all of that must fit in the MATMUL's stream positions, less
    the next MATMUL's own weight load into the array (``rows`` cycles) and a margin for the
    fetch and dispatch stages."""
    positions = (int(f.out_h) + 2) * (int(f.out_w) + 2) if f.depthwise else (
        int(f.out_h) * int(f.out_w))
    slices = positions - config.rows - 2 * config.insn_words - 8
    return max(0, slices // config.slices(Mem.WGT))


def _is_weight_load(item: Item) -> bool:
    opcode, f = decode(item.word)
    return (opcode == Opcode.LOAD and f.mem == Mem.WGT and item.segment == "const"
            and int(f.rows) == 1 and int(f.sp_stride) == 0 and int(f.ext_stride) == 0)


def _chunk(item: Item, first: int, n: int) -> Item:
    """Slices ``first .. first+n`` of a contiguous LOAD."""
    _, f = decode(item.word)
    fields = {name: getattr(f, name) for name, _ in f.shape() if name != "opcode"}
    fields.update(sp_addr=int(f.sp_addr) + first, ext_addr=int(f.ext_addr) + first,
                  length=n, wait=0)
    return Item(encode(Opcode.LOAD, **fields), item.segment)


def prefetch_weights(layers: list[list[Item]], config: HwConfig) -> list[list[Item]]:
    """``layers`` (each layer's instructions, in order) with the weight LOADs that open a layer
    (those before its first MATMUL) spread over the MATMULs of the layers before it."""
    slices = config.slices(Mem.WGT)
    decoded = [[decode(it.word) for it in layer] for layer in layers]
    # Per layer and MATMUL index: WGT slices that may still load after that MATMUL.
    room = [{i: _slot_words(config, f) * slices for i, (op, f) in enumerate(layer)
             if op == Opcode.MATMUL} for layer in decoded]
    after: list[dict[int, list[Item]]] = [{} for _ in layers]   # chunks moved after index i
    keep: list[dict[int, Item]] = [{} for _ in layers]          # what stays at index i
    for li, layer in enumerate(layers):
        first_matmul = next(iter(room[li]), len(layer))
        for ii, item in enumerate(layer):
            opcode, f = decoded[li][ii]
            keep[li][ii] = item
            if ii >= first_matmul or not _is_weight_load(item):
                continue
            writes = footprint(config, opcode, f)

            def touches(it: Item, writes=writes) -> bool:
                return conflicts(writes, footprint(config, *decode(it.word)))

            if any(touches(it) for i, it in keep[li].items() if i < ii):
                continue
            # The MATMULs after the last instruction (or moved chunk) that touches its words.
            slots: list[tuple[int, int]] = []
            for lj in range(li - 1, -1, -1):
                hits = [i for i, it in keep[lj].items() if touches(it)]
                hits += [i for i, chunks in after[lj].items() if any(map(touches, chunks))]
                last = max(hits, default=-1)
                slots = [(lj, i) for i in room[lj] if i > last] + slots
                if hits:
                    break
            total, done = int(f.length), 0
            for lj, i in slots:
                n = min(room[lj][i], total - done)
                if n > 0:
                    after[lj].setdefault(i, []).append(_chunk(item, done, n))
                    room[lj][i] -= n
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
