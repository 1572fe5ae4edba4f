"""Calibrate the resource model (codesign/dse/resources.py) against yosys; rerun after RTL changes.

Synthesizes a set of NPU configurations with yosys (synthesis only: synth_ice40 -dsp,
synth_ecp5, or generic gates for the ASIC model; the same scripts as ``codesign synth``), fits
the model's logic coefficients per family on the *fit* configurations (non-negative least
squares on relative error), and prints model vs yosys for every configuration, the *hold-out*
ones (not used for fitting) included. For iCE40 it also counts the logic cells nextpnr packs
the design into (``--pack-only``; harness included) and fits them on the LUT and FF counts.
Writes the coefficients, configurations and measurements to
codesign/dse/resource_coefficients.json.

    .venv/bin/python bench/calibrate_resources.py                  # ice40 + ecp5, 2 jobs
    .venv/bin/python bench/calibrate_resources.py --families ecp5 ice40 asic --jobs 2
    .venv/bin/python bench/calibrate_resources.py --check          # table only, no refit

Synthesis results are cached per configuration and Verilog text (under $CODESIGN_CACHE), so a
rerun only synthesizes what the RTL change touched. Exits 1 if any configuration is off by more
than 15 % on a resource it uses (LUT, FF, DSP, BRAM, iCE40 logic cells; ASIC gate equivalents).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import hashlib
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from codesign.dse import load_target  # noqa: E402
from codesign.dse.resources import (  # noqa: E402
    COEFFICIENTS_PATH,
    FEATURES,
    estimate,
    features,
)
from codesign.isa import HwConfig  # noqa: E402
from codesign.sim.runner import cache_dir  # noqa: E402
from codesign.synth import TOP, packed_cells, synthesize, yosys_script  # noqa: E402
from codesign.verilog import npu_verilog  # noqa: E402

#: Scratchpad depth sets (act, wgt, acc, prm); U is explore's set for small devices (a large ACT).
DEPTHS = {"S": (1024, 512, 256, 16), "M": (4096, 2048, 1024, 64), "L": (8192, 4096, 2048, 128),
          "U": (4096, 256, 256, 64)}
#: Reduced NPUs: shared requantizer (requant_groups, requant_steps), with or without ELTWISE
#: and GEMV mode.
SHARED = {"g2s1": (2, 1, True, True), "g2s4": (2, 4, True, True), "g4s4": (4, 4, True, True),
          "g2s1-e": (2, 1, False, False), "g4s2-e": (4, 2, False, False),
          "g2s2-e": (2, 2, False, False), "g2s1-g": (2, 1, True, False)}
#: (rows, cols, depth set[, SHARED key]): fitted on FIT, checked on FIT + HOLDOUT.
FIT = [(2, 2, "S"), (2, 4, "M"), (4, 4, "M"), (8, 4, "S"), (8, 8, "M"), (16, 8, "L"),
       (2, 2, "U", "g2s1-e"), (2, 2, "U", "g2s4"), (4, 4, "S", "g4s2-e"), (2, 8, "S", "g4s4"),
       (4, 4, "S", "g2s1-g")]
HOLDOUT = [(4, 8, "M"), (4, 4, "L"), (8, 8, "S"), (2, 8, "M"),
           (2, 2, "S", "g2s2-e"), (4, 8, "S", "g2s1"), (2, 4, "U", "g2s1")]
#: A smaller set for the (slower) generic ASIC synthesis.
ASIC_FIT = [(2, 2, "S"), (4, 4, "M"), (8, 8, "M"), (8, 4, "S"), (2, 4, "M"), (4, 8, "S")]
ASIC_HOLDOUT = [(2, 8, "M"), (8, 8, "S"), (4, 4, "L")]
#: Resources whose model is fitted, and the features each may use.
FITTED = {
    "lut": ["const", "pes", "cols", "rq_lanes", "rq_shared", "elt_lanes", "gemv_cols",
            "act_bytes", "addr_bits"],
    "ff": ["const", "pes", "cols", "rq_lanes", "rq_prm_copy", "elt_lanes", "gemv_cols",
           "act_bytes", "skew", "deskew"],
    "dsp": ["pes", "mapped_pes", "dw_taps", "rq_mults", "elt_lanes"],
    # iCE40 logic cells, fitted on the structural counts directly: how many flip-flops share a
    # cell with the LUT feeding them differs between the parts of the NPU.
    "lc": ["const", "pes", "cols", "rq_lanes", "rq_shared", "rq_prm_copy", "elt_lanes",
           "gemv_cols", "act_bytes", "skew", "deskew", "addr_bits"],
    "ge": ["const", "pes", "cols", "act_bytes", "addr_bits"],
}
TARGET_OF = {"ice40": "ice40-up5k", "ecp5": "ecp5-85k", "asic": "asic"}
TOLERANCE = 0.15


def config_of(rows: int, cols: int, depth: str, shared: str | None = None) -> HwConfig:
    act, wgt, acc, prm = DEPTHS[depth]
    groups, steps, eltwise, gemv = SHARED[shared] if shared else (1, 1, True, True)
    return HwConfig(rows=rows, cols=cols, bus_bytes=min(cols, 8), act_depth=act,
                    wgt_depth=max(wgt, rows), acc_depth=acc, prm_depth=prm,
                    requant_groups=groups, requant_steps=steps, eltwise=eltwise, gemv=gemv)


def measure(config: HwConfig, family: str) -> dict:
    """yosys resources of ``config`` for ``family`` (cached by config + Verilog text)."""
    text = npu_verilog(config)
    target = load_target(TARGET_OF[family])
    script = yosys_script(target, [Path("design.v"), Path("harness.v")], None,
                          Path("stat.json"), TOP)
    cells = "+nextpnr-pack" if family == "ice40" else ""
    key = hashlib.sha256((family + cells + config.to_json() + text + script).encode()
                         ).hexdigest()[:24]
    path = cache_dir() / "synth-calibration" / f"{family}-{config.name}-{key}.json"
    if path.is_file():
        return json.loads(path.read_text())
    with tempfile.TemporaryDirectory(prefix="calib.") as work:
        # iCE40: the packer's logic cells too (see codesign.dse.resources).
        result = synthesize(text, target, Path(work), netlist=family == "ice40")
        if family == "ice40":
            result.resources["lc"] = packed_cells(result, target, Path(work))["ICESTORM_LC"]
    out = {"resources": result.resources, "seconds": round(result.seconds, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=1))
    return out


def fit(rows: list[dict[str, float]], ys: list[float], names: list[str]) -> dict[str, float]:
    """Non-negative least squares on relative error: minimise Σ ((a·f_i − y_i) / y_i)²."""
    from scipy.optimize import nnls

    a = np.array([[r[n] for n in names] for r in rows], dtype=float)
    y = np.array(ys, dtype=float)
    w = 1.0 / np.maximum(y, 1.0)
    coef, _ = nnls(a * w[:, None], y * w)
    return {n: float(c) for n, c in zip(names, coef, strict=True)}


def _shape(c: dict) -> str:
    return f"{c['rows']}x{c['cols']}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--families", nargs="+", default=["ice40", "ecp5"],
                   choices=["ice40", "ecp5", "asic"])
    p.add_argument("--jobs", type=int, default=2, help="parallel yosys runs (default 2)")
    p.add_argument("--check", action="store_true",
                   help="compare the stored coefficients with yosys; do not refit or write")
    p.add_argument("--output", type=Path, default=COEFFICIENTS_PATH)
    args = p.parse_args(argv)

    stored = json.loads(args.output.read_text()) if args.output.is_file() else {"families": {}}
    plan = []
    for family in args.families:
        fit_set, hold = (ASIC_FIT, ASIC_HOLDOUT) if family == "asic" else (FIT, HOLDOUT)
        plan += [(family, config_of(*c), "fit") for c in fit_set]
        plan += [(family, config_of(*c), "holdout") for c in hold]
    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as pool:
        futures = {pool.submit(measure, cfg, fam): (fam, cfg, split) for fam, cfg, split in plan}
        results = {}
        for fut in concurrent.futures.as_completed(futures):
            fam, cfg, split = futures[fut]
            results[(fam, cfg)] = fut.result()
            print(f"  synthesized {fam} {cfg.name} ({results[(fam, cfg)]['seconds']:.0f} s)",
                  flush=True)
    print(f"yosys runs done in {time.perf_counter() - start:.0f} s")

    failed = False
    for family in args.families:
        entries = [(cfg, split, results[(fam, cfg)]["resources"])
                   for fam, cfg, split in plan if fam == family]
        keys = ["ge", "ff"] if family == "asic" else ["lut", "ff", "dsp"]
        if args.check:
            coefs = stored["families"][family]["coefficients"]
        else:
            fit_rows = [(features(cfg), res) for cfg, split, res in entries if split == "fit"]
            coefs = {k: fit([f for f, _ in fit_rows], [r[k] for _, r in fit_rows], FITTED[k])
                     for k in keys}
            if family == "ice40":
                coefs["lc"] = fit([f for f, _ in fit_rows], [r["lc"] for _, r in fit_rows],
                                  FITTED["lc"])
        model_input = {"families": {family: {"coefficients": coefs}}}
        target = load_target(TARGET_OF[family])
        checked = {"asic": ["ge", "ff"], "ice40": ["lut", "ff", "lc", "dsp", "bram"]}.get(
            family, ["lut", "ff", "dsp", "bram"])
        print(f"\n{family} (target {target.name}): model vs yosys, error = model/yosys - 1")
        print(f"{'config':<36} {'split':<8} " + " ".join(f"{k:>22}" for k in checked))
        measurements = []
        for cfg, split, res in entries:
            model = estimate(cfg, target, model_input)
            cells = []
            for k in checked:
                y, m = res[k], model[k]
                err = (m - y) / y if y else (0.0 if m == 0 else float("inf"))
                failed |= abs(err) > TOLERANCE
                cells.append(f"{m:>8.0f} vs {y:>7.0f} {100 * err:+5.1f}%")
            print(f"{cfg.name:<36} {split:<8} " + " ".join(f"{c:>22}" for c in cells))
            measurements.append({"config": dataclasses.asdict(cfg), "split": split,
                                 "yosys": {k: res[k] for k in checked},
                                 "model": {k: model[k] for k in checked}})
        stored["families"][family] = {"target": target.name, "coefficients": coefs,
                                      "measurements": measurements}
    if not args.check:
        stored.update({
            "about": "Resource model coefficients, fitted by bench/calibrate_resources.py "
                     "against yosys on the 'fit' configurations; 'holdout' ones were not "
                     "used for fitting. Rerun the script after changing rtl/.",
            "features": FEATURES,
            "fitted_features": FITTED,
            "tolerance": TOLERANCE,
        })
        args.output.write_text(json.dumps(stored, indent=1, sort_keys=True) + "\n")
        print(f"\nwrote {args.output}")
    print("all within 15%" if not failed else "SOME configurations are off by more than 15%")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
