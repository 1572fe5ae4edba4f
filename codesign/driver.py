"""The host driver: runs a compiled :class:`Program` on a model of the NPU.

Two back ends share the same memory protocol (image at word 0, inputs written to their regions,
outputs read from theirs): the instruction-level model (:mod:`codesign.isasim`, fast, used to
check the compiler) and the generated Verilog under Verilator (:mod:`codesign.sim.runner`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from .compiler import Program
from .isasim import IsaSim

__all__ = ["RunResult", "run_isasim", "run_rtl"]


@dataclasses.dataclass
class RunResult:
    """Outputs (one list of integer HWC tensors per inference) and cycles per inference."""
    outputs: list[list[np.ndarray]]
    cycles: list[int]
    sim_cycles_per_second: float = 0.0
    #: With ``all_tensors``: every IR tensor by name, per inference.
    tensors: list[dict[str, np.ndarray]] = dataclasses.field(default_factory=list)
    #: With ``dispatches``: ``(cycle, engine)`` of each dispatched instruction, per inference.
    dispatches: list[tuple[tuple[int, str], ...]] = dataclasses.field(default_factory=list)


def _memory(program: Program, inputs: list[np.ndarray]) -> np.ndarray:
    c = program.config
    ext = np.zeros(program.ext_words * c.bus_bytes, np.uint8)
    ext[:len(program.image)] = program.image
    for addr, data in program.input_writes(inputs):
        start = addr * c.bus_bytes
        ext[start:start + len(data)] = np.frombuffer(data, np.uint8)
    return ext


def run_isasim(program: Program, batch: list[list[np.ndarray]]) -> RunResult:
    """Run each inference of ``batch`` (a list of per-input HWC tensors) on the ISA model."""
    c = program.config
    outputs = []
    for inputs in batch:
        sim = IsaSim(c, _memory(program, inputs))
        sim.run(program.prog_base)
        outs = []
        for region in program.outputs:
            start = region.addr * c.bus_bytes
            outs.append(region.unpack(sim.ext[start:start + region.nbytes(c)].tobytes(), c))
        outputs.append(outs)
    return RunResult(outputs, [0] * len(batch))


def run_rtl(program: Program, verilog: str, batch: list[list[np.ndarray]],
            all_tensors: bool = False, memory=None, *, waves=None, dispatches: bool = False,
            keep_failed=None) -> RunResult:
    """Run ``batch`` in one Verilator simulation of ``verilog`` (built once per design), against
    ``memory`` (a :class:`codesign.sim.runner.MemoryModel`; default: the ideal one).

    Every IR tensor keeps its own external buffer, so with ``all_tensors`` the values of every
    layer are read back after each inference (for per-layer comparisons). ``waves``,
    ``dispatches`` and ``keep_failed`` are :func:`codesign.sim.runner.run_program`'s."""
    from .sim.runner import Inference, cycles_per_second, run_program

    c = program.config
    regions = program.outputs + (program.tensors if all_tensors else [])
    reads = [(r.addr, r.nbytes(c)) for r in regions]
    jobs = [Inference(writes=program.input_writes(inputs), reads=reads) for inputs in batch]
    results = run_program(c, verilog, program.image, program.prog_base, jobs, memory=memory,
                          waves=waves, dispatches=dispatches, keep_failed=keep_failed)
    values = [[r.unpack(data, c) for r, data in zip(regions, res.outputs, strict=True)]
              for res in results]
    n = len(program.outputs)
    tensors = [{r.name: v for r, v in zip(regions[n:], vs[n:], strict=True)} for vs in values]
    return RunResult([vs[:n] for vs in values], [res.cycles for res in results],
                     cycles_per_second(results), tensors if all_tensors else [],
                     [res.dispatches for res in results] if dispatches else [])


def layer_cycles(program: Program, verilog: str, inputs: list[np.ndarray]) -> list[int]:
    """Cycles spent in each layer on the RTL, measured in one simulation.

    Inference k runs the program truncated after layer k (an END written over the instruction
    that follows it, the previous truncation restored), so the differences of consecutive
    CYCLES readings are the layers' own cycles, including their instruction fetches.
    """
    from .compiler import insn_bytes
    from .isa import Opcode, encode
    from .sim.runner import Inference, run_program

    c = program.config
    end = insn_bytes([encode(Opcode.END)], c)
    writes_input = program.input_writes(inputs)
    # The first run is END alone: the fixed cost that every truncated run includes.
    boundaries = [0] + [layer.first_insn + layer.n_insns for layer in program.layers]
    jobs, previous = [], None
    for b in boundaries:
        writes = list(writes_input)
        if previous is not None and previous != b:
            writes.append((program.prog_base + previous * c.insn_words,
                           insn_bytes([program.insns[previous]], c)))
        writes.append((program.prog_base + b * c.insn_words, end))
        jobs.append(Inference(writes=writes, reads=[]))
        previous = b
    totals = [res.cycles for res in run_program(c, verilog, program.image, program.prog_base,
                                                jobs)]
    return [t - p for t, p in zip(totals[1:], totals[:-1], strict=True)]
