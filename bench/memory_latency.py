"""An MLPerf Tiny model on the NPU behind a real bus: cycles at several memory latencies.

For each bus form and read latency L, in one run: the NPU is generated with the bus and with
``max_reads`` sized for L (codesign.timing.reads_needed), the model runs one inference under
Verilator against the testbench's memory of that latency (and stall probability), and the table
sets the RTL's cycles beside the timing model's prediction (codesign.timing.bus_timing) and the
ideal-memory figure (the native port, latency 1).

    .venv/bin/python bench/memory_latency.py [--model dscnn] [--latencies 1 10 30]
        [--buses axi4 wishbone] [--stall 0.0]

The Markdown table goes to stdout; docs/performance.md holds a run of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]

from codesign.cli import DEFAULT_CONFIG  # noqa: E402
from codesign.compiler import compile_graph  # noqa: E402
from codesign.driver import run_rtl  # noqa: E402
from codesign.frontend import load_model  # noqa: E402
from codesign.sim.runner import MemoryModel  # noqa: E402
from codesign.timing import bus_timing, program_cycles, reads_needed  # noqa: E402
from codesign.verilog import npu_verilog  # noqa: E402


def _input(graph, seed: int = 0) -> list[np.ndarray]:
    """One random inference's integer HWC inputs."""
    rng = np.random.default_rng(seed)
    inputs = []
    for binding in graph.inputs:
        t = binding.tensor
        inputs.append(rng.integers(t.qmin, t.qmax + 1, t.shape).astype(t.numpy_dtype))
    return inputs


def measure(model: Path, bus: str, latency: int, stall: float) -> dict:
    graph = load_model(model)
    base = dataclasses.replace(DEFAULT_CONFIG, bus=bus)
    memory = bus_timing(base, latency, 1.0 - stall)
    config = dataclasses.replace(base, max_reads=reads_needed(memory))
    program = compile_graph(graph, config)
    result = run_rtl(program, npu_verilog(config), [_input(graph)],
                     memory=MemoryModel(latency=latency, stall=stall))
    model_cycles = program_cycles(program, bus_timing(config, latency, 1.0 - stall))
    rtl = result.cycles[0]
    return {"bus": bus, "latency": latency, "max_reads": config.max_reads, "rtl": rtl,
            "model": model_cycles, "error": (model_cycles - rtl) / rtl,
            "ideal": program_cycles(compile_graph(graph, DEFAULT_CONFIG))}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dscnn", help="a models/mlperf model name")
    p.add_argument("--latencies", type=int, nargs="+", default=[1, 10, 30])
    p.add_argument("--buses", nargs="+", default=["axi4", "wishbone"])
    p.add_argument("--stall", type=float, default=0.0)
    args = p.parse_args()
    model = ROOT / "models" / "mlperf" / f"{args.model}.onnx"
    print(f"{args.model} on {DEFAULT_CONFIG.rows}x{DEFAULT_CONFIG.cols}, "
          f"{DEFAULT_CONFIG.bus_bytes}-byte bus, stall probability {args.stall:g}\n")
    print("| bus | read latency | max_reads | RTL cycles | model cycles | model error "
          "| ideal memory | slowdown |")
    print("|---|---|---|---|---|---|---|---|")
    for bus in args.buses:
        for latency in args.latencies:
            r = measure(model, bus, latency, args.stall)
            print(f"| {r['bus']} | {r['latency']} | {r['max_reads']} | {r['rtl']:,} | "
                  f"{r['model']:,} | {100 * r['error']:+.1f}% | {r['ideal']:,} | "
                  f"{r['rtl'] / r['ideal']:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
