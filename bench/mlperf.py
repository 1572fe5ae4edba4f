"""MLPerf Tiny models on the RTL: MACs, cycles, utilization (overall and depthwise), times.

    .venv/bin/python bench/mlperf.py [--array 8x8] [MODEL ...]

For each model: `generate` wall time (compile + Verilog), one bit-exact inference on Verilator
(checked against the golden model), its cycles and MAC utilization MACs / (cycles · R · C), the
same for the depthwise layers alone (per-layer cycles from `driver.layer_cycles`), and the
simulation wall time. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesign import ir, reference  # noqa: E402
from codesign.cli import DEFAULT_CONFIG  # noqa: E402
from codesign.compiler import compile_graph  # noqa: E402
from codesign.driver import layer_cycles, run_rtl  # noqa: E402
from codesign.frontend import load_model  # noqa: E402
from codesign.rtl.top import generate_verilog  # noqa: E402
from models import mlperf  # noqa: E402


def measure(name: str, config) -> dict:
    start = time.perf_counter()
    graph = load_model(mlperf.path(name))
    program = compile_graph(graph, config)
    verilog = generate_verilog(config)
    generate_s = time.perf_counter() - start
    binding = graph.inputs[0]
    rng = np.random.default_rng(0)
    t = binding.tensor
    x = [rng.integers(t.qmin, t.qmax + 1, t.shape).astype(t.numpy_dtype)]
    start = time.perf_counter()
    result = run_rtl(program, verilog, [x])
    sim_s = time.perf_counter() - start
    golden = reference.run(graph, x)
    exact = all(np.array_equal(o, golden[b.tensor.name])
                for o, b in zip(result.outputs[0], graph.outputs, strict=True))
    per_layer = layer_cycles(program, verilog, x)
    pes = config.rows * config.cols
    dw_macs = dw_cycles = 0
    for op, cycles in zip(graph.ops, per_layer, strict=True):
        if isinstance(op, ir.Conv) and op.groups > 1 and op.groups == op.weight.shape[3]:
            dw_macs += op.macs
            dw_cycles += cycles
    cycles = result.cycles[0]
    return {"model": name, "macs": graph.macs, "cycles": cycles,
            "util": graph.macs / (cycles * pes), "exact": exact,
            "dw_util": dw_macs / (dw_cycles * pes) if dw_cycles else None,
            "dw_share": dw_cycles / cycles, "generate_s": generate_s, "sim_s": sim_s,
            "sim_rate": result.sim_cycles_per_second}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(mlperf.MODELS))
    parser.add_argument("--array", default="8x8")
    args = parser.parse_args(argv)
    rows, cols = (int(v) for v in args.array.split("x"))
    config = dataclasses.replace(DEFAULT_CONFIG, rows=rows, cols=cols,
                                 bus_bytes=min(cols, DEFAULT_CONFIG.bus_bytes))
    print(f"array {rows}x{cols}, bus {config.bus_bytes} B, ACT {config.act_depth} / WGT "
          f"{config.wgt_depth} / ACC {config.acc_depth} words\n")
    print("| model | MACs | cycles/inference | utilization | depthwise utilization "
          "(share of cycles) | bit-exact | generate s | simulation s | sim cycles/s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name in args.models:
        m = measure(name, config)
        dw = (f"{100 * m['dw_util']:.1f}% ({100 * m['dw_share']:.0f}%)"
              if m["dw_util"] is not None else "—")
        print(f"| {m['model']} | {m['macs']:,} | {m['cycles']:,} | {100 * m['util']:.1f}% | "
              f"{dw} | {'yes' if m['exact'] else 'NO'} | {m['generate_s']:.1f} | "
              f"{m['sim_s']:.1f} | {m['sim_rate']:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
