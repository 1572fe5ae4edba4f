"""Energy per inference of the MLPerf Tiny models (codesign.dse.energy), with its breakdown.

    .venv/bin/python bench/energy.py [MODEL ...] [--array 8x8] [--per-layer] [--counts]

Compiles each model for the default configuration (``codesign.cli.DEFAULT_CONFIG``, array shape
from ``--array``), counts operations and memory accesses from the instruction stream and prices
them with Horowitz (ISSCC 2014, 45 nm) energies; docs/energy.md describes the method. Prints
markdown tables (µJ per inference; nJ per layer).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesign.cli import DEFAULT_CONFIG  # noqa: E402
from codesign.compiler import compile_graph  # noqa: E402
from codesign.dse.energy import COMPONENTS, energy_per_inference, sram_sizes  # noqa: E402
from codesign.frontend import load_model  # noqa: E402
from models import mlperf  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(mlperf.MODELS))
    parser.add_argument("--array", default="8x8")
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument("--counts", action="store_true", help="also print the raw counts")
    args = parser.parse_args(argv)
    rows, cols = (int(v) for v in args.array.lower().split("x"))
    config = dataclasses.replace(DEFAULT_CONFIG, rows=rows, cols=cols,
                                 bus_bytes=min(cols, DEFAULT_CONFIG.bus_bytes))
    sizes = ", ".join(f"{k.upper()} {v // 1024} KB" for k, v in sram_sizes(config).items())
    print(f"array {rows}x{cols}, bus {config.bus_bytes} B, scratchpads {sizes}\n")
    reports = [(name, energy_per_inference(compile_graph(load_model(mlperf.path(name)), config)))
               for name in args.models]

    print("| model | MACs | PE ops | µJ/inference | pJ/MAC | compute | SRAM | DRAM "
          "(of which instruction fetch) |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in reports:
        g = r.grouped()
        share = {k: f"{g[k] * 1e-6:.2f} ({100 * g[k] / r.total_pj:.0f}%)" for k in g}
        fetch = r.energy_pj["dram_fetch"] * 1e-6
        print(f"| {name} | {r.useful_macs:,} | {r.counts.pe_ops:,} | {r.total_uj:.1f} | "
              f"{r.pj_per_mac:.1f} | {share['compute']} | {share['sram']} | {share['dram']} "
              f"({fetch:.2f}) |")

    print("\nµJ per inference by component:\n")
    print("| model | " + " | ".join(COMPONENTS) + " |")
    print("|---|" + "---|" * len(COMPONENTS))
    for name, r in reports:
        print(f"| {name} | " + " | ".join(f"{r.energy_pj[k] * 1e-6:.3f}" for k in COMPONENTS)
              + " |")

    if args.counts:
        print("\nCounts per inference:\n")
        print("| model | PE ops (in bounds) | requant | pool | eltwise | ACT r/w KB | WGT r/w KB "
              "| PRM r/w KB | ACC r/w KB | DRAM r/w KB | fetch KB |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name, r in reports:
            c = r.counts
            kb = lambda t: f"{t.read_bytes / 1024:.0f} / {t.write_bytes / 1024:.0f}"  # noqa: E731
            print(f"| {name} | {c.pe_ops:,} ({c.pe_ops_in_bounds:,}) | {c.requant_ops:,} | "
                  f"{c.pool_max_ops + c.pool_sum_ops:,} | {c.eltwise_ops:,} | {kb(c.act)} | "
                  f"{kb(c.wgt)} | {kb(c.prm)} | {kb(c.acc)} | "
                  f"{c.dram_read_bytes / 1024:.0f} / {c.dram_write_bytes / 1024:.0f} | "
                  f"{c.fetch_bytes / 1024:.0f} |")

    if args.per_layer:
        for name, r in reports:
            print(f"\n{name}\n")
            print(r.format_layers())


if __name__ == "__main__":
    main()
