"""Cycle-exact timing model of the NPU: engine busy times and the controller's dispatch.

:func:`engine_cycles` is each engine's time from ``start`` to ``done`` (docs/rtl-contract.md;
the engine tests check the RTL against it), and :func:`schedule` replays the controller of
``codesign.rtl.controller``: in-order fetch (``insn_words`` reads that wait while the DMA engine
holds the external port), dispatch once the engine is idle, the ports it uses are free and, for
``wait``, every engine is free. With both, the cycles of a whole program are known without
simulating it (the controller test checks :func:`schedule` against the RTL cycle by cycle).

Cycle 0 is the first cycle after the host's start write; CYCLES counts up to and including the
cycle in which END is dispatched.

External memory enters through a :class:`MemoryTiming`. The default is the native port (every
read answered the next cycle, no stalls), where the model is exact. Behind a real bus (AXI4,
Wishbone) with a memory of some latency and bandwidth the DMA engine and the fetch wait for it;
the model then predicts the RTL's cycles (docs/performance.md gives the measured error).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from .isa import ENGINE, ENGINES, HwConfig, Mem, Opcode, PoolMode, decode, encode, ports_used

__all__ = ["engine_cycles", "schedule", "Schedule", "program_cycles", "layer_cycles",
           "MemoryTiming", "NATIVE", "bus_timing", "reads_needed", "BUS_READ_OVERHEAD",
           "BUS_WRITE_OVERHEAD"]


@dataclasses.dataclass(frozen=True)
class MemoryTiming:
    """External memory as the NPU core sees it (through its bus wrapper).

    Parameters
    ----------
    latency
        Cycles from a read command to its first beat at the core (1 on the native port).
    beats_per_cycle
        Sustained bus words per cycle (1.0 at full width; a 16-bit SDRAM behind a 32-bit bus
        gives at most 0.5; random stalls with probability P give 1 - P).
    write_latency
        Cycles from a burst's last write beat to its completion (AXI's B response).
    """
    latency: int = 1
    beats_per_cycle: float = 1.0
    write_latency: int = 0

    def __post_init__(self):
        if not isinstance(self.latency, int) or self.latency < 1:
            raise ValueError(f"latency must be an int >= 1, not {self.latency!r}")
        if not 0 < self.beats_per_cycle <= 1:
            raise ValueError(f"beats_per_cycle must be in (0, 1], not {self.beats_per_cycle!r}")
        if not isinstance(self.write_latency, int) or self.write_latency < 0:
            raise ValueError(f"write_latency must be an int >= 0, not {self.write_latency!r}")

    def read_rate(self, max_reads: int) -> float:
        """Read beats per cycle: the bus's rate, or what ``max_reads`` credits allow. A burst
        of ``B = max(1, max_reads // 2)`` beats (rtl/membus.py ``read_burst_cap``) is issued
        once all its beats have credits; its last credit returns ``latency + B - 1`` cycles
        after it is spent, so ``max_reads`` beats go round in that time."""
        burst = max(1, max_reads // 2)
        return min(self.beats_per_cycle, max_reads / (self.latency + burst - 1))

    def read_cycles(self, beats: int, max_reads: int, gap: int = 1) -> int:
        """Cycles from the first read command to the last beat's arrival (inclusive), beats at
        least ``gap`` cycles apart."""
        per_beat = max(gap, 1 / self.read_rate(max_reads))
        return self.latency + math.ceil((beats - 1) * per_beat)

    def write_cycles(self, beats: int) -> int:
        """Cycles from the first write beat to the completion of the last."""
        return 1 + math.ceil((beats - 1) / self.beats_per_cycle) + self.write_latency


#: The native port: the timing model is exact.
NATIVE = MemoryTiming()

#: Cycles each bus form adds to a read's latency (command at the core to the first beat back
#: at the core, beyond the memory's own latency): the AXI4 master's AR register; the Wishbone
#: master's command queue, request register and read FIFO. Measured on the RTL.
BUS_READ_OVERHEAD = {"native": 0, "axi4": 1, "wishbone": 3}
#: Cycles from a burst's last write beat at the core to its ``wr_done``: the AXI4 master's W
#: register and the B response (our memory model answers B the cycle after the last beat);
#: Wishbone's acknowledge comes the memory's latency after the request, plus the request
#: register (:data:`WRITE_ACK_WAITS_FOR_MEMORY`).
BUS_WRITE_OVERHEAD = {"native": 0, "axi4": 3, "wishbone": 1}
WRITE_ACK_WAITS_FOR_MEMORY = {"native": False, "axi4": False, "wishbone": True}


def bus_timing(config: HwConfig, mem_latency: int = 1, beats_per_cycle: float = 1.0
               ) -> MemoryTiming:
    """A memory of read latency ``mem_latency`` (bus request to first data) and
    ``beats_per_cycle`` as ``config``'s core sees it through its bus (:attr:`HwConfig.bus`)."""
    if config.bus == "native":
        if (mem_latency, beats_per_cycle) != (1, 1.0):
            raise ValueError("the native port has read latency 1 and no stalls; a slower "
                             "memory needs a bus (HwConfig.bus = 'axi4' or 'wishbone')")
        return NATIVE
    write = BUS_WRITE_OVERHEAD[config.bus] + mem_latency * WRITE_ACK_WAITS_FOR_MEMORY[config.bus]
    return MemoryTiming(mem_latency + BUS_READ_OVERHEAD[config.bus], beats_per_cycle, write)


def reads_needed(memory: MemoryTiming) -> int:
    """The smallest ``max_reads`` (a power of two, at most 256) that streams at ``memory``'s
    full rate (:meth:`MemoryTiming.read_rate`)."""
    reads = 1
    while reads < 256 and memory.read_rate(reads) < memory.beats_per_cycle:
        reads *= 2
    return reads


def _dw_write_delay(config: HwConfig) -> int:
    """Cycles from a depthwise stream position's x stage to its psum: the array's depthwise
    latency (``max(rows, 9)`` rows + the PEs' operand and product registers), less the 8 rows
    its last tap skips, plus the line buffers' output register."""
    return max(config.rows, 9) + 2 - 8 + 1


def _array_latency(config: HwConfig) -> int:
    """``SystolicArray.latency``: the input reaches the last PE ``rows + cols - 2`` cycles
    after it enters, and that PE's operand, product and psum registers add three."""
    return config.rows + config.cols + 1


def _read_registers(config: HwConfig) -> int:
    """Cycles a deep pipeline adds between MATMUL's ACT and WGT reads and the array: their
    words are registered before any logic (rtl/matmul.py)."""
    return int(config.deep_pipeline)


def gemv_stream(config: HwConfig, tiles: int) -> tuple[int, int]:
    """A GEMV MATMUL of ``tiles`` weight tiles (rtl/matmul.py): its stream positions, and the
    stream position whose tag meets the last tile's psum.

    The weight words of two tiles enter the array interleaved, one per cycle (``2·rows`` per
    pair of tiles, an odd last tile alone), after a lead of ``cols - rows`` cycles on a wide
    array (the stationary input must reach the far column first); a pair's psums leave the
    array ``max(rows - cols, 0) + 2·rows·pair`` and one more positions into the stream."""
    r, c = config.rows, config.cols
    pairs = (tiles + 1) // 2
    stream = max(0, c - r) + 2 * r * pairs
    last_tag = max(0, r - c) + 2 * r * (pairs - 1) + (1 - tiles % 2)
    return stream, last_tag


def _dma_cycles(config: HwConfig, opcode: Opcode, f, memory: MemoryTiming) -> int:
    """LOAD / STORE: commands from the cycle after start, the last beat written (LOAD) or
    completed (STORE) in the done cycle (rtl/dma.py)."""
    c = config
    n = int(f.rows) * int(f.length)
    if not n:
        return 1
    if opcode == Opcode.STORE:
        return 1 + memory.write_cycles(n)       # the first beat waits for its ACT read
    if f.mem == Mem.LUT:
        # a slice every bus_bytes cycles, as the LUT engine writes its tables, done when it
        # has written the last one
        return memory.read_cycles(n, c.max_reads, gap=c.bus_bytes) + c.bus_bytes
    return 1 + memory.read_cycles(n, c.max_reads)


def engine_cycles(config: HwConfig, opcode: Opcode, f, memory: MemoryTiming = NATIVE) -> int:
    """Cycles from an engine's ``start`` to its ``done`` for one instruction (the DMA
    engine's behind ``memory``)."""
    c = config
    if opcode in (Opcode.LOAD, Opcode.STORE):
        return _dma_cycles(c, opcode, f, memory)
    if opcode == Opcode.MATMUL:
        out_h, out_w = int(f.out_h), int(f.out_w)
        if not out_h or not out_w:
            return 1
        if f.gemv:
            # Taken the cycle after start, streams from the next; the last tile's write comes
            # the array latency + 3 after its stream position.
            return 2 + gemv_stream(c, out_w)[1] + _array_latency(c) + 3 + _read_registers(c)
        if f.depthwise:
            return (c.dw_weight_words + (out_h + 2) * (out_w + 2) + _dw_write_delay(c) + 3
                    + _read_registers(c))
        # Weight load (rows) + positions + array latency + 3 (rtl/matmul.py).
        return c.rows + out_h * out_w + _array_latency(c) + 3 + _read_registers(c)
    if opcode == Opcode.REQUANT:
        # A turn of the requantizer lanes every S = requant_steps cycles: turn k reads ACC in
        # cycle 2 + k·S and is written 1 + latency cycles later (rtl/requant.py).
        turns = int(f.count) * c.requant_groups
        if not turns:
            return 1
        return 2 + (turns - 1) * c.requant_steps + 1 + requant_latency(c)
    if opcode == Opcode.POOL:
        n = int(f.out_h) * int(f.out_w) * int(f.k_h) * int(f.k_w)
        # A read per window position (and word, for MAX), then the read word's register and
        # the fold; a deep pipeline registers the read and the write as well.
        reads = n * (1 if f.mode == PoolMode.SUM else int(f.words))
        return reads + 2 + 2 * c.deep_pipeline if reads else 1
    if opcode == Opcode.ELTWISE:
        # Two reads per element, then the read register, zero point, multiply, sum and write
        # (and the read and write port registers of a deep pipeline).
        return 2 * int(f.count) + 4 + 2 * c.deep_pipeline if int(f.count) else 1
    if opcode == Opcode.LUT:
        # A read per ACT word, then the read register, the table read, the entry register and
        # the write (rtl/lut.py).
        return int(f.count) + 4 if int(f.count) else 1
    return 0


@dataclasses.dataclass
class Schedule:
    """Start cycle and engine time (:func:`engine_cycles`) of every instruction, and the total
    cycles (CSR CYCLES)."""
    starts: list[int]
    durations: list[int]
    cycles: int


class _Engine:
    """An engine that runs one instruction at a time: busy from the cycle after its start up
    to and including its done cycle, ready for the next start the cycle after."""

    def __init__(self):
        self.start, self.done, self.ports = -10, -10, 0

    def ready(self, t: int) -> bool:
        return not self.start < t <= self.done

    def free(self, t: int) -> bool:         # idle, or in its done cycle
        return not self.start < t < self.done

    def busy(self, t: int) -> bool:
        return self.start < t <= self.done

    def accept(self, t: int, cycles: int, ports: int, f) -> None:
        self.start, self.done, self.ports = t, t + cycles, ports


class _MatMulPipe(_Engine):
    """The MATMUL engine of rtl/matmul.py: an instruction loads its weights into the array's
    shadow registers while the previous one streams (once that one's switch marker has passed
    the last PE), then streams right behind it. Depthwise tiles and changes of mode (regular,
    depthwise, GEMV) wait for an empty engine; a GEMV instruction has no load stage and streams
    right behind a previous GEMV one. Busy from the cycle after a start until the last write of
    the last instruction in flight."""

    def __init__(self, config: HwConfig):
        super().__init__()
        c = config
        self.c = c
        self.lat = _array_latency(c) + _read_registers(c)
        self.dw_lat = _dw_write_delay(c) + _read_registers(c)
        self.ready_at = 0           # first cycle the load stage is free
        self.stream_last = -10      # cycle of the last stream position issued so far
        self.shadow_free = 0        # first cycle a new weight load may begin
        self.last_write = -10       # last ACC write of everything accepted
        self.mode = "regular"       # mode of the instruction that streamed last

    def ready(self, t: int) -> bool:
        return t >= self.ready_at

    def accept(self, t: int, cycles: int, ports: int, f) -> None:
        c = self.c
        out_h, out_w = int(f.out_h), int(f.out_w)
        if not out_h or not out_w:
            if not self.busy(t):    # an empty instruction alone: done the next cycle
                self.start, self.done, self.ports = t, t + 1, ports
            return
        if not self.busy(t) or t == self.done:
            self.start, self.ports = t, ports
        else:
            self.ports |= ports
        mode = "gemv" if f.gemv else "depthwise" if f.depthwise else "regular"
        # An accumulating instruction's first ACC read (one cycle before its first psum, two
        # in a deep pipeline) must follow the last write before it (one cycle after that one's
        # last psum).
        stream_free = self.stream_last + ((2 + c.deep_pipeline) if f.accumulate else 0)
        if mode == "gemv":
            take = max(t + 1, stream_free)
            if self.mode != "gemv":     # the array must be empty: all earlier writes done
                take = max(take, self.last_write + 1)
            positions, last_tag = gemv_stream(c, out_w)
        else:
            load = max(t + 1, self.shadow_free)
            if mode == "depthwise" or self.mode != "regular":
                load = max(load, self.last_write + 1)
            words = c.dw_weight_words if mode == "depthwise" else c.rows
            take = max(load + words - 1, stream_free)
            positions = (out_h + 2) * (out_w + 2) if mode == "depthwise" else out_h * out_w
            last_tag = positions - 1
        first = take + 1
        self.stream_last = first + positions - 1
        self.ready_at = take + 1
        self.shadow_free = first + c.rows + c.cols if mode == "regular" else first
        delay = self.dw_lat if mode == "depthwise" else self.lat
        self.last_write = first + last_tag + 3 + delay
        self.mode = mode
        self.done = self.last_write


def schedule(insns: list[int], config: HwConfig,
             duration: Callable[[Opcode, object], int] | None = None,
             memory: MemoryTiming = NATIVE) -> Schedule:
    """Replay the controller on ``insns`` (ending with END), external memory behind ``memory``.

    By default the engines are those of the RTL (:func:`engine_cycles`, and the pipelined MATMUL
    engine); the controller test instead passes ``duration(opcode, fields)``, the latencies of its
    model engines, each running one instruction at a time.
    """
    n = config.insn_words
    if duration is None:
        engines = {e: _Engine() for e in ENGINES} | {"matmul": _MatMulPipe(config)}

        def duration(opcode, f):
            return engine_cycles(config, opcode, f, memory)
    else:
        engines = {e: _Engine() for e in ENGINES}
    starts, durations = [], []
    fetch_from = 0

    for word in insns:
        try:
            opcode, f = decode(word)
        except ValueError:                      # an undefined opcode stops like END
            opcode, f = Opcode.END, None
        # Fetch: one burst of n reads from the first cycle the DMA engine is not busy (it
        # cannot start during the fetch), the last word's data, then the dispatch stage.
        t = fetch_from
        while engines["dma"].busy(t):
            t += 1
        t += memory.read_cycles(n, config.max_reads) + 1
        engine = ENGINE.get(opcode)
        if engine is None:                       # END: once every engine is free
            t = max([t] + [e.done for e in engines.values()])
            return Schedule(starts, durations, t + 1)
        ports = int(ports_used(opcode, f))
        while True:
            in_use = 0          # by the other engines (an engine orders its own instructions)
            for name, e in engines.items():
                if name != engine and not e.free(t):
                    in_use |= e.ports
            if (engines[engine].ready(t) and not ports & in_use
                    and (not f.wait or all(e.free(t) for e in engines.values()))):
                break
            t += 1
        d = duration(opcode, f)
        engines[engine].accept(t, d, ports, f)
        starts.append(t)
        durations.append(d)
        fetch_from = t + 1
    raise ValueError("program does not end with END")


def program_cycles(program, memory: MemoryTiming = NATIVE) -> int:
    """Cycles of one inference of a compiled :class:`~codesign.compiler.program.Program`."""
    return schedule(program.insns, program.config, memory=memory).cycles


def layer_cycles(program, memory: MemoryTiming = NATIVE) -> list[int]:
    """Cycles of each layer, as :func:`codesign.driver.layer_cycles` measures them on the RTL:
    the growth of the total when the program ends (END, which waits for every engine) after
    that layer instead of the one before."""
    end = encode(Opcode.END)
    totals = [schedule(program.insns[:b] + [end], program.config, memory=memory).cycles
              for b in [0] + [layer.first_insn + layer.n_insns for layer in program.layers]]
    return [t - p for t, p in zip(totals[1:], totals[:-1], strict=True)]


#: Pipeline stages of the requantizer (rtl/requant.py) besides the ``requant_steps`` cycles of
#: its multiply: input register, bias, sign, normalize, round to 24 bits, sum of the partial
#: products, round the product, shift, round, sign and zero point, clamp (and the first half of
#: the normalize in a deep pipeline, :attr:`HwConfig.deep_pipeline`).
REQUANT_STAGES = 11


def requant_latency(config: HwConfig) -> int:
    """Cycles from a requantizer input to its output (``Requantizer.latency``): the
    :data:`REQUANT_STAGES` stages, one more in a deep pipeline, and the ``requant_steps`` cycles
    of the multiply."""
    return REQUANT_STAGES + config.deep_pipeline + config.requant_steps
