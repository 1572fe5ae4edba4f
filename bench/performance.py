"""MLPerf Tiny on codesign NPUs of several array shapes, side by side with SCALE-Sim.

For each model and array shape, in one run: ideal cycles (MACs / (R·C)), SCALE-Sim's
weight-stationary cycles (bench/scalesim_ref.py, cached), the cycle model's cycles
(codesign.timing), the RTL's cycles (Verilator, one inference), MAC utilization, post-route fmax
and resources of that NPU on the FPGA target (yosys + nextpnr, cached per Verilog), latency at
that fmax, and the energy estimate (codesign.dse.energy). A second table sets the batch-1
fully connected layers (one output pixel: GEMV MATMULs) against their memory-bandwidth bound:
the bytes they must move over the external bus (weights, requantization parameters, input and
output) divided by the bus width.

    .venv/bin/python bench/performance.py [--shapes 4x4 8x8 16x16] [--target ecp5-85k]
        [--models dscnn ...] [--scratchpads scalesim|default] [--no-synth]

The Markdown table goes to stdout; docs/performance.md holds a run of it.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from scalesim_ref import SRAM_KB, scalesim_cycles  # noqa: E402

from codesign import ir  # noqa: E402
from codesign.cli import DEFAULT_CONFIG  # noqa: E402
from codesign.compiler import compile_graph  # noqa: E402
from codesign.driver import run_rtl  # noqa: E402
from codesign.dse import load_target  # noqa: E402
from codesign.dse.energy import energy_per_inference  # noqa: E402
from codesign.frontend import load_model  # noqa: E402
from codesign.isa import PRM_LANE  # noqa: E402
from codesign.sim.runner import cache_dir  # noqa: E402
from codesign.timing import layer_cycles, program_cycles  # noqa: E402
from codesign.verilog import npu_verilog  # noqa: E402
from models import mlperf  # noqa: E402


def config_for(shape: str, scratchpads: str = "scalesim"):
    """DEFAULT_CONFIG (bus, depthwise mode) with another array shape, and scratchpads either of
    SCALE-Sim's SRAM sizes ("scalesim": ACT = ifmap, WGT = filter, ACC = ofmap bytes, so both
    simulate the same array with the same on-chip memory) or codesign's defaults ("default")."""
    rows, cols = (int(v) for v in shape.split("x"))
    config = dataclasses.replace(DEFAULT_CONFIG, rows=rows, cols=cols,
                                 bus_bytes=min(cols, DEFAULT_CONFIG.bus_bytes), dw_width=None)
    if scratchpads == "default":
        return config
    return dataclasses.replace(config, act_depth=SRAM_KB["ifmap"] * 1024 // config.act_bytes,
                               wgt_depth=SRAM_KB["filter"] * 1024 // cols,
                               acc_depth=SRAM_KB["ofmap"] * 1024 // (4 * cols))


def synth_results(config, target, seeds: int = 1) -> dict:
    """Post-route fmax (the fastest of placer seeds 1..``seeds``) and resources of ``config`` on
    ``target``, cached per Verilog text."""
    from codesign.dse.resources import over_budget
    from codesign.synth import place_and_route_seeds, synthesize

    verilog = npu_verilog(config)
    key = hashlib.sha256(verilog.encode() + json.dumps(target.to_dict()).encode()
                         + (f"seeds={seeds}".encode() if seeds > 1 else b"")).hexdigest()
    path = cache_dir() / "bench-synth" / f"{key[:24]}.json"
    if path.is_file():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory() as work:
        start = time.perf_counter()
        result = synthesize(verilog, target, Path(work))
        out = {"fmax_mhz": None, "timing_met": None, "resources": result.resources,
               "over": over_budget(result.resources, target)}
        if not out["over"]:     # as codesign synth: a design that does not fit is not placed
            pnr = place_and_route_seeds(result, target, Path(work), seeds)
            out.update(fmax_mhz=pnr.fmax_mhz, timing_met=pnr.timing_met)
        out["seconds"] = time.perf_counter() - start
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2))
    return out


def measure(name: str, shape: str, scratchpads: str, target, synth: bool, seeds: int = 1) -> dict:
    # Built for the target, as `codesign generate --target` builds it (its multiplier cells).
    config = dataclasses.replace(config_for(shape, scratchpads), mult_cell=target.mult_cell,
                                 deep_pipeline=target.deep_pipeline)
    graph = load_model(mlperf.path(name))
    program = compile_graph(graph, config)
    rng = np.random.default_rng(0)
    x = [rng.integers(0, 256, b.tensor.shape).astype(np.uint8).view(
        np.int8 if b.tensor.signed else np.uint8) for b in graph.inputs]
    rtl = run_rtl(program, npu_verilog(config), [x]).cycles[0]
    row = {
        "model": name, "shape": shape, "macs": graph.macs,
        "ideal": graph.macs / (config.rows * config.cols),
        "scalesim": scalesim_cycles(mlperf.path(name), config.rows, config.cols)["total_cycles"],
        "model_cycles": program_cycles(program), "rtl_cycles": rtl,
        "utilization": graph.macs / (rtl * config.rows * config.cols),
        "energy_uj": energy_per_inference(program).total_uj,
    }
    if synth:
        s = synth_results(config, target, seeds)
        row.update(fmax=s["fmax_mhz"], resources=s["resources"], over=s.get("over"),
                   latency_ms=rtl / (s["fmax_mhz"] * 1e3) if s["fmax_mhz"] else None)
    return row


def table(rows: list[dict], target_name: str) -> str:
    lines = [f"| model | array | ideal cycles | SCALE-Sim | model cycles | RTL cycles | RTL / "
             f"SCALE-Sim | MAC util. | fmax MHz ({target_name}) | latency ms | LUT / FF / "
             f"MULT18 / EBR | energy µJ |",
             "|" + "---|" * 12]
    for r in rows:
        res = r.get("resources") or {}
        fmax = (f"{r['fmax']:.1f}" if r.get("fmax") else
                f"does not fit ({', '.join(r['over'])})" if r.get("over") else "—")
        latency = f"{r['latency_ms']:.2f}" if r.get("latency_ms") else "—"
        resources = (f"{res.get('lut', 0):,} / {res.get('ff', 0):,} / {res.get('dsp', 0)} / "
                     f"{res.get('bram', 0)}" if res else "—")
        lines.append(
            f"| {r['model']} | {r['shape']} | {r['ideal']:,.0f} | {r['scalesim']:,} | "
            f"{r['model_cycles']:,} | {r['rtl_cycles']:,} | "
            f"{r['rtl_cycles'] / r['scalesim']:.2f} | {100 * r['utilization']:.1f}% | {fmax} | "
            f"{latency} | {resources} | {r['energy_uj']:.1f} |")
    return "\n".join(lines) + "\n"


def fc_rows(name: str, shape: str, scratchpads: str) -> list[dict]:
    """The one-pixel array layers of ``name``: bandwidth bound and modelled cycles (equal to
    the RTL's: tests/test_timing.py), and the whole model's when it is all such layers."""
    config = config_for(shape, scratchpads)
    graph = load_model(mlperf.path(name))
    program = compile_graph(graph, config)
    ops = {op.name: op for op in graph.ops}
    rows = []
    for layer, cycles in zip(program.layers, layer_cycles(program), strict=True):
        op = ops[layer.name]
        if isinstance(op, ir.Conv) and op.y.shape[:2] == (1, 1):
            moved = (op.weight.size + op.y.shape[2] * PRM_LANE.size // 8
                     + int(np.prod(op.x.shape)) + int(np.prod(op.y.shape)))
            rows.append({"model": name, "shape": shape, "layer": layer.name,
                         "shape_kn": f"{op.weight.shape[2]}×{op.weight.shape[3]}",
                         "bound": moved / config.bus_bytes, "cycles": cycles})
    if len(rows) == len(program.layers) - sum(isinstance(op, ir.Flatten) for op in graph.ops):
        rows.append({"model": name, "shape": shape, "layer": "whole model", "shape_kn": "",
                     "bound": sum(r["bound"] for r in rows),
                     "cycles": program_cycles(program)})
    return rows


def fc_table(rows: list[dict]) -> str:
    lines = ["| model | array | layer | K×N | bandwidth bound (cycles) | model cycles | ratio |",
             "|" + "---|" * 7]
    for r in rows:
        lines.append(f"| {r['model']} | {r['shape']} | {r['layer']} | {r['shape_kn']} | "
                     f"{r['bound']:,.0f} | {r['cycles']:,} | {r['cycles'] / r['bound']:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["dscnn", "resnet8", "mobilenet_v1_025",
                                                        "fc_autoencoder"])
    parser.add_argument("--shapes", nargs="*", default=["4x4", "8x8", "16x16"])
    parser.add_argument("--target", default="ecp5-85k")
    parser.add_argument("--scratchpads", choices=["scalesim", "default"], default="scalesim",
                        help="SCALE-Sim's SRAM sizes (64 kB each) or codesign's defaults")
    parser.add_argument("--no-synth", action="store_true", help="skip yosys + nextpnr")
    parser.add_argument("--seeds", type=int, default=1, metavar="N",
                        help="place and route with nextpnr seeds 1..N, keep the fastest")
    args = parser.parse_args(argv)
    target = load_target(args.target)
    rows = [measure(m, s, args.scratchpads, target, not args.no_synth, args.seeds)
            for m in args.models for s in args.shapes]
    print(table(rows, target.name), end="")
    print()
    print(fc_table([r for m in args.models for s in args.shapes
                    for r in fc_rows(m, s, args.scratchpads)]), end="")


if __name__ == "__main__":
    main()
