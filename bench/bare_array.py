"""The fmax reference: a bare int8 MAC array vs the NPU of the same shape on the same device.

The bare array is the least hardware that still is an R×C int8 MAC array: an output-stationary
systolic grid where PE (r, c) registers its int8 operands (activations move right, weights move
down), multiplies them (int8 × int8) and accumulates into an int32 register, whose value is
registered once more as the PE's output. It is synthesized, placed and routed with exactly the
flow of ``codesign synth`` (same harness, yosys script, nextpnr options and clock goal), and so
is the NPU of the same shape (codesign's default memory depths, ``bus_bytes = min(cols, 8)``).

    .venv/bin/python bench/bare_array.py                 # UP5K 2x4, ECP5-25 4x4, ECP5-45 8x8
    .venv/bin/python bench/bare_array.py --only ecp5-25k:4x4
    .venv/bin/python bench/bare_array.py --seeds 4     # the fastest of placer seeds 1..4, each

Prints, per device and shape, fmax bare vs NPU and the NPU's share (goal: >= 90 %), and for the
NPU the start and end of its post-route critical path. A design that does not fit the device is
reported as such, not placed; an ECP5 NPU that does not fit is then measured (with the bare
array) on the largest ECP5 as well.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Module, Signal, signed
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codesign.cli import DEFAULT_CONFIG  # noqa: E402
from codesign.dse import load_target  # noqa: E402
from codesign.dse.resources import over_budget  # noqa: E402
from codesign.isa import HwConfig  # noqa: E402
from codesign.synth import place_and_route_seeds, synthesize  # noqa: E402
from codesign.verilog import npu_verilog  # noqa: E402

#: The comparisons issue 4 asks for: (target, rows, cols).
CASES = [("ice40-up5k", 2, 4), ("ecp5-25k", 4, 4), ("ecp5-45k", 8, 8)]
#: Where an NPU that does not fit its device is placed instead (same family and speed grade):
#: both designs are measured there too, so the ratio stays like for like.
LARGER = {"ecp5-25k": "ecp5-85k", "ecp5-45k": "ecp5-85k"}


class BareMacArray(wiring.Component):
    """``rows`` × ``cols`` output-stationary int8 MAC array (see the module docstring).

    Parameters
    ----------
    rows, cols
        Array shape, 1..64 each.
    """

    def __init__(self, *, rows: int, cols: int):
        for name, value in (("rows", rows), ("cols", cols)):
            if not isinstance(value, int) or not 1 <= value <= 64:
                raise ValueError(f"{name} must be an int in 1..64, not {value!r}")
        self.rows, self.cols = rows, cols
        super().__init__({
            "x": In(data.ArrayLayout(signed(8), rows)),
            "w": In(data.ArrayLayout(signed(8), cols)),
            "acc": Out(data.ArrayLayout(signed(32), rows * cols)),
        })

    def elaborate(self, platform):
        m = Module()
        rows, cols = self.rows, self.cols
        x_in = [self.x[r] for r in range(rows)]
        w_in = [self.w[c] for c in range(cols)]
        for r in range(rows):
            for c in range(cols):
                x = Signal(signed(8), name=f"pe_{r}_{c}_x")
                w = Signal(signed(8), name=f"pe_{r}_{c}_w")
                acc = Signal(signed(32), name=f"pe_{r}_{c}_acc")
                out = Signal(signed(32), name=f"pe_{r}_{c}_out")
                m.d.sync += [x.eq(x_in[r]), w.eq(w_in[c]), acc.eq(acc + x * w), out.eq(acc)]
                m.d.comb += self.acc[r * cols + c].eq(out)
                x_in[r], w_in[c] = x, w     # systolic: x moves right, w moves down
        return m


def bare_verilog(rows: int, cols: int) -> str:
    return verilog.convert(BareMacArray(rows=rows, cols=cols), name="npu_top", emit_src=False)


def npu_config(rows: int, cols: int, target_name: str) -> HwConfig:
    """The NPU of that shape, built for the target (its multiplier cells, pipeline depth)."""
    target = load_target(target_name)
    d = DEFAULT_CONFIG
    return HwConfig(rows=rows, cols=cols, bus_bytes=min(cols, 8), act_depth=d.act_depth,
                    wgt_depth=d.wgt_depth, acc_depth=d.acc_depth, prm_depth=d.prm_depth,
                    mult_cell=target.mult_cell, deep_pipeline=target.deep_pipeline)


def measure(text: str, target_name: str, work: Path, seeds: int = 1) -> dict:
    """Synthesize, check the fit, place and route (placer seeds 1..``seeds``, the fastest kept);
    fmax and critical path (or why not)."""
    target = load_target(target_name)
    start = time.perf_counter()
    syn = synthesize(text, target, work)
    res = syn.resources
    over = over_budget(res, target)
    out = {"resources": res, "over": over, "fmax": None, "path": [], "met": None}
    if not over:
        pnr = place_and_route_seeds(syn, target, work, seeds)
        out.update(fmax=pnr.fmax_mhz, path=pnr.critical_path, met=pnr.timing_met,
                   by_seed=pnr.fmax_by_seed)
    out["seconds"] = time.perf_counter() - start
    return out


def _endpoints(path: list[str]) -> str:
    """First source and last sink cell of a nextpnr critical-path listing."""
    cells = [ln.split()[-1] for ln in path if " Source " in f" {ln} " or ln.startswith("Sink")]
    return f"{cells[0]} -> {cells[-1]}" if cells else "-"


def _modules(path: list[str]) -> str:
    """The RTL blocks (hierarchical name prefixes below the harness) the path runs through."""
    seen: list[str] = []
    for ln in path:
        name = ln.split()[-1]
        if name.startswith("dut."):
            # dut.<block>.<block>.<cell>.<pin>: keep the blocks.
            parts = [p for p in name.split(".")[1:-2] if not p.startswith("$")]
            block = ".".join(parts[:2]) or "(top)"
            if block not in seen:
                seen.append(block)
    return ", ".join(seen) or "-"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", metavar="TARGET:RxC",
                   help="run only this case (repeatable), e.g. ecp5-25k:4x4")
    p.add_argument("--keep", type=Path, help="keep the tool work directories here")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="place and route each design with nextpnr seeds 1..N, keep the fastest")
    args = p.parse_args(argv)
    cases = CASES
    if args.only:
        cases = []
        for spec in args.only:
            name, shape = spec.split(":")
            r, c = (int(v) for v in shape.lower().split("x"))
            cases.append((name, r, c))
    root = args.keep or Path(tempfile.mkdtemp(prefix="bare_array."))
    rows = []
    for target, r, c in cases:
        while target:
            tag = f"{target}_{r}x{c}"
            npu = measure(npu_verilog(npu_config(r, c, target)), target, root / f"{tag}_npu",
                          args.seeds)
            bare = measure(bare_verilog(r, c), target, root / f"{tag}_bare", args.seeds)
            rows.append((target, r, c, bare, npu))
            _print_row(target, r, c, bare, npu)
            target = LARGER.get(target) if npu["over"] else None
    print()
    print(f"{'device':<11} {'shape':>5} {'bare MHz':>9} {'NPU MHz':>8} {'NPU/bare':>8}  "
          f"{'goal 90%':<8} NPU resources")
    for target, r, c, bare, npu in rows:
        ratio = (npu["fmax"] / bare["fmax"]) if npu["fmax"] and bare["fmax"] else None
        verdict = "-" if ratio is None else ("met" if ratio >= 0.9 else "MISSED")
        res = npu["resources"]
        note = f"does not fit ({', '.join(npu['over'])})" if npu["over"] else ""
        print(f"{target:<11} {f'{r}x{c}':>5} {_mhz(bare):>9} {_mhz(npu):>8} "
              f"{'' if ratio is None else f'{100 * ratio:.0f}%':>8}  {verdict:<8} "
              f"LUT {res['lut']} FF {res['ff']} DSP {res['dsp']} BRAM {res['bram']} {note}")
    return 0


def _mhz(m: dict) -> str:
    return "n/a" if m["fmax"] is None else f"{m['fmax']:.1f}"


def _print_row(target, r, c, bare, npu):
    print(f"{target} {r}x{c}: bare {_mhz(bare)} MHz ({bare['seconds']:.0f} s), "
          f"NPU {_mhz(npu)} MHz ({npu['seconds']:.0f} s)"
          + (f", NPU does not fit: {', '.join(npu['over'])}" if npu["over"] else ""), flush=True)
    for name, m in (("bare", bare), ("NPU", npu)):
        if len(m.get("by_seed", {})) > 1:
            print(f"  {name} fmax by placer seed: " + ", ".join(
                f"{seed}: {'-' if f is None else f'{f:.1f}'}" for seed, f in m["by_seed"].items()))
        if m["path"]:
            print(f"  {name} critical path: {_endpoints(m['path'])}\n"
                  f"    through {_modules(m['path'])}; {m['path'][-1]}")


if __name__ == "__main__":
    sys.exit(main())
