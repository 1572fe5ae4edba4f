"""Cycle-exact timing model of the NPU: engine busy times and the controller's dispatch.

:func:`engine_cycles` is each engine's time from ``start`` to ``done`` (docs/rtl-contract.md;
the engine tests check the RTL against it), and :func:`schedule` replays the controller of
``codesign.rtl.controller``: in-order fetch (``insn_words`` reads that wait while the DMA engine
holds the external port), dispatch once the engine is idle, the ports it uses are free and, for
``wait``, every engine is free. With both, the cycles of a whole program are known without
simulating it (the controller test checks :func:`schedule` against the RTL cycle by cycle).

Cycle 0 is the first cycle after the host's start write; CYCLES counts up to and including the
cycle in which END is dispatched.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .isa import ENGINE, ENGINES, HwConfig, Opcode, PoolMode, decode, ports_used

__all__ = ["engine_cycles", "schedule", "Schedule", "program_cycles"]


def engine_cycles(config: HwConfig, opcode: Opcode, f) -> int:
    """Cycles from an engine's ``start`` to its ``done`` for one instruction."""
    c = config
    if opcode in (Opcode.LOAD, Opcode.STORE):
        return int(f.rows) * int(f.length) + 1
    if opcode == Opcode.MATMUL:
        out_h, out_w = int(f.out_h), int(f.out_w)
        if not out_h or not out_w:
            return 1
        if f.depthwise:
            dw_latency = max(c.rows, 9)
            return c.dw_weight_words + (out_h + 2) * (out_w + 2) + dw_latency - 8 + 3
        return out_h * out_w + 2 * c.rows + c.cols + 2
    if opcode == Opcode.REQUANT:
        return int(f.count) + 10 if int(f.count) else 1
    if opcode == Opcode.POOL:
        n = int(f.out_h) * int(f.out_w) * int(f.k_h) * int(f.k_w)
        return n * (1 if f.mode == PoolMode.SUM else int(f.words)) + 1
    if opcode == Opcode.ELTWISE:
        return 2 * int(f.count) + 3 if int(f.count) else 1
    return 0


@dataclasses.dataclass
class Schedule:
    """Start cycle and busy time of every instruction, and the total cycles (CSR CYCLES)."""
    starts: list[int]
    durations: list[int]
    cycles: int


def schedule(insns: list[int], config: HwConfig,
             duration: Callable[[Opcode, object], int] | None = None) -> Schedule:
    """Replay the controller on ``insns`` (ending with END).

    ``duration(opcode, fields)`` gives each instruction's engine time (default
    :func:`engine_cycles`); the controller test passes the latencies of its model engines.
    """
    n = config.insn_words
    if duration is None:
        def duration(opcode, f):
            return engine_cycles(config, opcode, f)
    # Per engine: the start cycle and duration of its latest instruction, and its ports.
    last: dict[str, tuple[int, int, int]] = {}
    starts, durations = [], []
    fetch_from = 0

    def busy(e: str, t: int) -> bool:           # start+1 .. done
        return e in last and last[e][0] < t <= last[e][0] + last[e][1]

    def free(e: str, t: int) -> bool:           # idle, or in its done cycle
        return e not in last or not last[e][0] < t < last[e][0] + last[e][1]

    for word in insns:
        try:
            opcode, f = decode(word)
        except ValueError:                      # an undefined opcode stops like END
            opcode, f = Opcode.END, None
        # Fetch: n read cycles from fetch_from, skipping those in which the DMA engine is busy.
        t, reads = fetch_from, 0
        while True:
            if not busy("dma", t):
                reads += 1
                if reads == n:
                    break
            t += 1
        t += 2                                   # last read's data, then the dispatch stage
        engine = ENGINE.get(opcode)
        if engine is None:                       # END: once every engine is free
            t = max([t] + [s + d for s, d, _ in last.values()])
            return Schedule(starts, durations, t + 1)
        ports = int(ports_used(opcode, f))
        while True:
            in_use = 0
            for e in ENGINES:
                if not free(e, t) and e in last:
                    in_use |= last[e][2]
            if (not busy(engine, t) and not ports & in_use
                    and (not f.wait or all(free(e, t) for e in ENGINES))):
                break
            t += 1
        d = duration(opcode, f)
        last[engine] = (t, d, ports)
        starts.append(t)
        durations.append(d)
        fetch_from = t + 1
    raise ValueError("program does not end with END")


def program_cycles(program) -> int:
    """Cycles of one inference of a compiled :class:`~codesign.compiler.program.Program`."""
    return schedule(program.insns, program.config).cycles
