"""The ``codesign`` command line (also ``python -m codesign``).

    codesign generate MODEL.onnx [-o OUTDIR] [--array RxC] [...]
    codesign simulate OUTDIR --input X.npy [--output Y.npy] [--waves RUN.fst [--cycles A:B]]
                     [--trace INSNS.txt]
    codesign verify MODEL.onnx [--input X.npy | --count N --seed S] [--array RxC] [...]
    codesign synth OUTDIR [--target NAME|FILE] [--seeds N]
    codesign explore MODEL.onnx --target NAME|FILE [-o OUTDIR] [--objective latency|...]
                     [--jobs N | --scheduler tcp://HOST:PORT]

Bad input is reported as one line on stderr with exit code 2 and no traceback (``--debug`` shows
it); a mismatch between the RTL and the golden model (or onnxruntime, in ``verify``) exits 1.
``--quiet`` silences the progress display (:mod:`codesign.progress`). ``--debug`` and
``--quiet`` are accepted before and after the command.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
import textwrap
import time
from pathlib import Path

import numpy as np

from . import __version__, progress
from .design import (
    CONFIG,
    MAX_BATCH,
    MODEL,
    REPORT_JSON,
    REPORT_TXT,
    VERILOG,
    Design,
    join_outputs,
    read_batch,
)
from .errors import InputError, SimulationFailed
from .guides import DOCS, guide
from .isa import BUSES, HwConfig
from .lint import WAIVERS, WAIVERS_TEXT
from .outdir import write_atomically, write_design
from .process import Terminated, exit_status, handling_signals

__all__ = ["main"]

#: The configuration used when the command line names none.
DEFAULT_CONFIG = HwConfig(rows=8, cols=8, bus_bytes=8, act_depth=4096, wgt_depth=2048,
                          acc_depth=1024, prm_depth=64)

# -- generate -------------------------------------------------------------------------------------

def _config_from_args(args) -> HwConfig:
    rows, cols = DEFAULT_CONFIG.rows, DEFAULT_CONFIG.cols
    if args.array:
        try:
            rows, cols = (int(v) for v in args.array.lower().split("x"))
        except ValueError:
            raise InputError(
                f"--array must look like 8x8 (rows x cols), not {args.array!r}") from None

    def given(value, default):
        # 0 is a value the user gave (and HwConfig refuses), not "use the default".
        return default if value is None else value

    fields = dict(rows=rows, cols=cols, bus_bytes=given(args.bus_bytes, min(cols, 8)),
                  act_depth=given(args.act_depth, DEFAULT_CONFIG.act_depth),
                  wgt_depth=given(args.wgt_depth, DEFAULT_CONFIG.wgt_depth),
                  acc_depth=given(args.acc_depth, DEFAULT_CONFIG.acc_depth),
                  prm_depth=given(args.prm_depth, DEFAULT_CONFIG.prm_depth),
                  requant_steps=given(args.requant_steps, DEFAULT_CONFIG.requant_steps),
                  eltwise=not args.no_eltwise, gemv=not args.no_gemv, **_bus_fields(args))
    lanes = args.requant_lanes
    if lanes is not None:
        if lanes < 1 or cols % lanes:
            raise InputError(f"--requant-lanes must divide the array's {cols} columns, "
                             f"not {lanes}")
        fields["requant_groups"] = cols // lanes
    try:
        return HwConfig(**fields)
    except ValueError as err:
        raise InputError(f"invalid hardware configuration: {err}") from None


def _bus_fields(args) -> dict:
    """The HwConfig fields of the bus options that were given."""
    fields = {"bus": args.bus, "max_reads": args.max_reads, "axi_id_bits": args.axi_id_bits,
              "wb_classic": args.wb_classic or None}
    return {name: value for name, value in fields.items() if value is not None}


def _with_bus(config: HwConfig, args) -> HwConfig:
    """``config`` (chosen for a target) with the bus options the command line gives."""
    try:
        return dataclasses.replace(config, **_bus_fields(args))
    except ValueError as err:
        raise InputError(f"invalid hardware configuration: {err}") from None


def _load(model: Path):
    from .frontend import load_model
    return load_model(model)


def _report(graph, config: HwConfig, program, target=None) -> dict:
    """report.json of ``program``: the totals, and the per-layer numbers, instruction mix and
    energy of :func:`codesign.report.analyse` with the memory of ``target`` (if any)."""
    from .report import analyse, report_memory
    from .timing import schedule

    cycles = schedule(program.insns, config).cycles
    numbers = analyse(program, *report_memory(config, target))
    return {
        "codesign": __version__,
        "model": graph.name,
        "macs_per_inference": graph.macs,
        "config": json.loads(config.to_json()),
        # The timing model is cycle-exact (the RTL's CYCLES); `codesign synth` adds the fmax.
        "cycles_per_inference": cycles,
        "mac_utilization": graph.macs / (cycles * config.rows * config.cols),
        "program": {"instructions": len(program.insns),
                    "image_bytes": int(program.image.size),
                    "external_memory_bytes": program.ext_words * config.bus_bytes},
        **numbers,
    }


def _reductions_text(cfg: dict) -> str:
    """What is built smaller than usual: a shared requantizer, no ELTWISE engine or GEMV
    mode."""
    groups, steps = cfg.get("requant_groups", 1), cfg.get("requant_steps", 1)
    lanes = cfg["cols"] // groups
    text = ""
    if (groups, steps) != (1, 1):
        text += f", requantizer {lanes} lane{'s' * (lanes > 1)} with a {steps}-cycle multiply"
    if not cfg.get("eltwise", True):
        text += ", no ELTWISE engine"
    if not cfg.get("gemv", True):
        text += ", no GEMV mode"
    return text


def _bus_cycles_text(report: dict) -> list[str]:
    """The line giving the cycles behind a bus, where the layers' cycles assume one."""
    timing = report["timing"]
    if timing["cycles_per_inference"] == report["cycles_per_inference"]:
        return []
    return [f"with {timing['memory']['description']}: {timing['cycles_per_inference']:,} "
            f"cycles per inference (the layers' cycles below)"]


def _report_text(report: dict) -> str:
    cfg = report["config"]
    lines = [f"codesign {report['codesign']} — model {report['model']}",
             f"NPU: {cfg['rows']}x{cfg['cols']} MAC array, {cfg['bus_bytes']}-byte bus, "
             f"ACT {cfg['act_depth']} / WGT {cfg['wgt_depth']} / ACC {cfg['acc_depth']} / "
             f"PRM {cfg['prm_depth']} words" + _reductions_text(cfg),
             f"MACs per inference: {report['macs_per_inference']}, cycles per inference "
             f"{report['cycles_per_inference']:,} (MAC utilization "
             f"{100 * report['mac_utilization']:.1f}%)",
             *_bus_cycles_text(report),
             f"program: {report['program']['instructions']} instructions, memory image "
             f"{report['program']['image_bytes']} bytes, external memory "
             f"{report['program']['external_memory_bytes']} bytes", "",
             f"{'layer':<32} {'kind':<8} {'MACs':>10} {'insns':>6} {'cycles':>9} "
             f"{'util':>6} {'ext bytes':>10}"]
    for layer in report["layers"]:
        lines.append(f"{layer['name'][:32]:<32} {layer['kind']:<8} {layer['macs']:>10} "
                     f"{layer['instructions']:>6} {layer['cycles']:>9} "
                     f"{100 * layer['utilization']:>5.1f}% {layer['ext_bytes']:>10}")
    if "target" in report:
        from .dse.explore import resources_text

        t = report["target"]
        lines += ["", f"target {t['name']}: chosen for {t['objective']} out of "
                      f"{t['candidates']} configurations ({t['feasible']} fit); estimated "
                      f"{t['chosen']['latency_ms']:.3f} ms at {t['clock_goal_mhz']:g} MHz, "
                      f"{t['chosen']['energy_uj']:.1f} µJ, "
                      f"{resources_text(t['chosen']['resources'])}"]
    return "\n".join(lines) + "\n"


def _select(model: Path, target_name: str, objective: str, config: HwConfig | None,
            jobs: int = 1, scheduler: str | None = None):
    """The configuration for ``--target``: ``config`` if given (it must fit), else the best
    feasible point of the design space for ``objective`` (evaluated on ``jobs`` processes or
    the Dask cluster at ``scheduler``); the report section saying so; and the target."""
    from .dse import explore, load_target

    graph = _load(model)
    target = load_target(target_name)
    points = ([explore.evaluate(graph, config, target)] if config is not None
              else explore.explore(graph, target, jobs=jobs, scheduler=scheduler))
    ranked = explore.best(points, target, objective)
    chosen = ranked[0]
    section = {
        "name": target.name, "objective": objective, "clock_goal_mhz": target.clock_mhz,
        "candidates": len(points), "feasible": sum(p.feasible for p in points),
        "chosen": chosen.to_json(target),
        "runners_up": [p.to_json(target) for p in ranked[1:4]],
        # For report.html's plot of the front (codesign.report).
        "pareto": [{"label": explore.point_label(p.config), "size": p.size(target),
                    "latency_ms": p.latency_ms, "energy_uj": p.energy_uj,
                    "chosen": p is chosen} for p in explore.pareto(points, target)],
        "capacity": explore.capacity(target),
    }
    return chosen.config, section, target


def _copy_model(model: Path, target: Path) -> None:
    """The model, self-contained: its external data (already proved to fit the frontend's
    size limit) goes inline, so that OUTDIR holds everything ``simulate`` needs."""
    import onnx
    import onnx.external_data_helper

    from .frontend.limits import tensors

    proto = onnx.load(model, load_external_data=False)
    if not any(onnx.external_data_helper.uses_external_data(t)
               for t, _ in tensors(proto.graph)):
        shutil.copyfile(model, target)      # byte for byte what the user gave
        return
    onnx.external_data_helper.load_external_data_for_model(proto, str(model.parent))
    target.write_bytes(proto.SerializeToString())


def _write_files(staging: Path, model: Path, config: HwConfig, program, report: dict) -> None:
    from .hostgen import write_host_files
    from .report import REPORT_HTML, render_html
    from .verilog import npu_verilog

    (staging / VERILOG).write_text(npu_verilog(config))
    (staging / WAIVERS).write_text(WAIVERS_TEXT)
    program.write(staging)
    write_host_files(staging, program)
    (staging / CONFIG).write_text(config.to_json())
    (staging / REPORT_JSON).write_text(json.dumps(report, indent=2) + "\n")
    (staging / REPORT_TXT).write_text(_report_text(report))
    (staging / REPORT_HTML).write_text(render_html(report))
    _copy_model(model, staging / MODEL)


def generate(model: Path, outdir: Path, config: HwConfig, store_all: bool = False,
             selection: dict | None = None, target=None) -> dict:
    """Compile ``model`` for ``config`` and write the design directory atomically.

    ``store_all`` writes every tensor to external memory (for ``verify --per-layer``), not only
    those that do not stay on chip from one layer to the next; ``target``'s memory is the one
    the report's per-layer cycles assume behind a bus."""
    from .compiler import compile_graph
    from .compiler.lower import sized_for

    graph = _load(model)
    config = sized_for(graph, config)   # a LUT engine when the model has lookup tables
    program = compile_graph(graph, config, store_all=store_all)
    report = _report(graph, config, program, target)
    if selection is not None:
        report["target"] = selection
    write_design(outdir, lambda staging: _write_files(staging, model, config, program, report))
    return report


# -- simulate -------------------------------------------------------------------------------------

def _simulate(design: Design, batch, all_tensors: bool = False, memory=None,
              scheduler: str | None = None, **sim):
    """Run ``batch`` on the RTL (behind ``memory``, a :class:`codesign.sim.runner.MemoryModel`;
    split over the Dask cluster at ``scheduler`` if given; ``sim``:
    :func:`codesign.driver.run_rtl`'s waveform, trace and failure options, local runs only);
    returns (RunResult, the golden model's tensors by name per inference)."""
    from .driver import run_rtl
    from .reference import run
    if scheduler is not None:
        from . import cluster
        result = cluster.run_rtl(design.program, design.verilog, batch, scheduler,
                                 all_tensors=all_tensors)
    else:
        result = run_rtl(design.program, design.verilog, batch, all_tensors=all_tensors,
                         memory=memory, **sim)
    return result, [run(design.graph, inputs) for inputs in batch]


def _outputs(graph, golden_runs: list[dict[str, np.ndarray]]) -> list[list[np.ndarray]]:
    """The graph outputs of each golden run, in graph order."""
    return [[values[b.tensor.name] for b in graph.outputs] for values in golden_runs]


def _mismatches(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.count_nonzero(np.asarray(a).astype(np.int64) != np.asarray(b).astype(np.int64)))


def _print_cycles(design: Design, result, memory=None) -> None:
    from .timing import bus_timing, program_cycles

    c = design.config
    macs = design.graph.macs
    for i, cycles in enumerate(result.cycles):
        util = macs / (cycles * c.rows * c.cols) if cycles else 0.0
        print(f"inference {i}: {cycles} cycles, MAC utilization {100 * util:.1f}% "
              f"({macs} MACs on {c.rows}x{c.cols})")
    if memory is not None:
        ideal = program_cycles(design.program)
        model = program_cycles(design.program,
                               bus_timing(c, memory.latency, 1.0 - memory.stall))
        print(f"memory: read latency {memory.latency}, stall probability {memory.stall:g}; "
              f"ideal memory: {ideal} cycles per inference; timing model at this memory: "
              f"{model}")
    if result.sim_cycles_per_second:
        print(f"simulation speed: {result.sim_cycles_per_second:,.0f} cycles/s")


def _memory_model(design: Design, latency: int | None, stall: float | None, seed: int):
    """The simulated memory ``simulate --mem-latency/--mem-stall`` asks for, or None."""
    from .sim.runner import MemoryModel

    if latency is None and stall is None:
        return None
    if design.config.bus == "native":
        raise InputError(f"{design.dir}: the native port has a fixed read latency of 1 and "
                         f"no stalls; generate with --bus axi4 or --bus wishbone to simulate a "
                         f"slower memory")
    try:
        return MemoryModel(latency=1 if latency is None else latency,
                           stall=0.0 if stall is None else stall, seed=seed)
    except ValueError as err:
        raise InputError(f"--mem-latency/--mem-stall: {err}") from None


def _cycle_window(text: str | None, waves: Path | None) -> tuple[int, int] | None:
    """``--cycles A:B`` as (A, B)."""
    if text is None:
        return None
    if waves is None:
        raise InputError("--cycles limits the waveforms: give --waves FILE.fst with it")
    first, sep, last = text.partition(":")
    try:
        window = (int(first), int(last))
    except ValueError:
        window = None
    if not sep or window is None or not 0 <= window[0] < window[1]:
        raise InputError(f"--cycles {text!r}: give A:B, two cycle numbers 0 <= A < B (cycles "
                         f"of each inference, as in the --trace file)")
    return window


def _failed_dir(design: Design) -> Path:
    """A new directory in OUTDIR for the files of a failed simulation."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = design.dir / f"sim-failed-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = design.dir / f"sim-failed-{stamp}-{n}"
    return path


def _trace_text(design: Design, dispatches: list) -> str:
    """The ``--trace`` file: a line per dispatched instruction of each inference (the RTL's
    dispatches are in program order, so the k-th is instruction k)."""
    from .isa import ENGINE, Opcode, decode

    program = design.program
    layer_of = {}
    for layer in program.layers:
        for k in range(layer.first_insn, layer.first_insn + layer.n_insns):
            layer_of[k] = layer.name
    lines = ["# inference\tcycle\tengine\tinstruction (program.lst)\tlayer"]
    for i, seen in enumerate(dispatches):
        for k, (cycle, engine) in enumerate(seen):
            opcode = decode(program.insns[k])[0] if k < len(program.insns) else Opcode.END
            if ENGINE.get(opcode) != engine:
                raise SimulationFailed(f"inference {i}: the RTL dispatched instruction {k} to "
                                       f"{engine}, the program has {opcode.name} there")
            lines.append(f"{i}\t{cycle}\t{engine}\t{program.insn_line(k)}\t"
                         f"{layer_of.get(k, '-')}")
    return "\n".join(lines) + "\n"


def _model_cycles(design: Design, memory=None) -> int:
    """The timing model's cycles per inference with the memory that was simulated."""
    from .report import report_memory
    from .timing import bus_timing, program_cycles

    c = design.config
    if memory is not None:
        timing = bus_timing(c, memory.latency, 1.0 - memory.stall)
    else:               # the runner's default memory: read latency 1, no stalls
        timing = report_memory(c)[0]
    return program_cycles(design.program, timing)


def _record_simulation(design: Design, result, mismatches: int, memory=None) -> None:
    """Add the run to report.json (section "simulation") and re-render report.html; a missing
    or unreadable report.json is left alone, with a note (the run itself has succeeded)."""
    from .report import write_reports

    path = design.dir / REPORT_JSON
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        print(f"codesign: note: report.html not updated: cannot read {path} ({err})",
              file=sys.stderr)
        return
    if not isinstance(report, dict):
        print(f"codesign: note: report.html not updated: {path} is not a JSON object",
              file=sys.stderr)
        return
    report["simulation"] = {
        "inferences": len(result.cycles), "cycles_per_inference": list(result.cycles),
        "model_cycles": _model_cycles(design, memory), "mismatches": mismatches,
        "sim_cycles_per_second": result.sim_cycles_per_second,
        "memory": (None if memory is None else
                   {"latency": memory.latency, "stall": memory.stall, "seed": memory.seed})}
    try:
        write_reports(design.dir, report)
    except OSError as err:
        print(f"codesign: note: report.html not updated: {err}", file=sys.stderr)


def simulate(outdir: Path, input_path: Path, output_path: Path | None,
             mem_latency: int | None = None, mem_stall: float | None = None,
             mem_seed: int = 1, waves_path: Path | None = None, cycles: str | None = None,
             trace_path: Path | None = None) -> int:
    """``codesign simulate``; every argument is checked before the simulation starts."""
    from .design import OutputFile
    from .sim.runner import Waves
    output = OutputFile(output_path) if output_path is not None else None
    waves_out = OutputFile(waves_path) if waves_path is not None else None
    trace_out = OutputFile(trace_path) if trace_path is not None else None
    window = _cycle_window(cycles, waves_path)
    design = Design(outdir)
    memory = _memory_model(design, mem_latency, mem_stall, mem_seed)
    batch, stacked, _ = read_batch(design.graph, input_path)
    waves = None if waves_out is None else Waves(waves_out.target, window)
    result, golden_runs = _simulate(design, batch, memory=memory, waves=waves,
                                    dispatches=trace_out is not None,
                                    keep_failed=_failed_dir(design))
    golden = _outputs(design.graph, golden_runs)
    _print_cycles(design, result, memory)
    bad = sum(_mismatches(o, g) for outs, gold in zip(result.outputs, golden, strict=True)
              for o, g in zip(outs, gold, strict=True))
    if output is not None:
        binding = design.graph.outputs[0]
        ys = [binding.dequantize(outs[0]) for outs in result.outputs]
        output.write(join_outputs(binding, ys, stacked))
    if trace_out is not None:
        write_atomically(trace_out.target, _trace_text(design, result.dispatches))
        print(f"wrote {trace_path} ({sum(map(len, result.dispatches))} dispatches)")
    if waves_out is not None:
        print(f"wrote {waves_path}")
    _record_simulation(design, result, bad, memory)
    if bad:
        print(f"MISMATCH: {bad} output element(s) differ from the golden model", file=sys.stderr)
        return 1
    print(f"outputs match the golden model bit-exactly ({len(batch)} inference(s))")
    return 0


# -- verify ---------------------------------------------------------------------------------------

#: Most random inputs ``verify --count`` runs (one simulation holds them all).
MAX_RANDOM_INPUTS = 1000


def _random_inputs(graph, count: int, seed: int) -> list[np.ndarray]:
    """Seeded random inputs of ``count`` model runs (each ``batch`` inferences) spanning the
    input quantization range, one per inference."""
    binding = graph.inputs[0]
    t = binding.tensor
    rng = np.random.default_rng(seed)
    q = rng.integers(t.qmin, t.qmax + 1, (count * binding.batch,) + tuple(binding.onnx_shape))
    if not binding.is_float:
        return [x.astype(t.numpy_dtype) for x in q]
    noise = rng.uniform(-0.45, 0.45, q.shape)
    return [((qi - t.zero_point + ni) * np.float32(t.scale)).astype(np.float32)
            for qi, ni in zip(q, noise, strict=True)]


def _per_layer_table(graph, golden_runs, result, ort_ops) -> None:
    """Print the layer-by-layer comparison of the first inference that diverges anywhere (or
    of the first inference)."""
    from .perlayer import compare_layers, format_layers

    chosen = None
    for i, golden in enumerate(golden_runs):
        rows = compare_layers(graph, result.tensors[i], golden, ort_ops[i])
        if chosen is None or any(row.first for row in rows):
            chosen = (i, rows)
        if any(row.first for row in rows):
            break
    assert chosen is not None
    print(f"per layer, inference {chosen[0]}:")
    print(format_layers(chosen[1]))


def _output_table(graph, result, golden, ort_outputs, label: str = "ORT") -> int:
    """Print RTL vs golden model and vs the witness (onnxruntime; ``label`` names another) per
    graph output; returns the number of RTL elements that differ from the golden model."""
    from .opwitness import ort_to_hwc

    header = (f"{'output':<24} {'shape':<16} {'elements':>9} {'RTL≠golden':>11} "
              f"{'RTL≠' + label:>8} {'max|Δ| LSB':>10}")
    print(header)
    print("-" * len(header))
    total = 0
    for k, binding in enumerate(graph.outputs):
        n = rtl_vs_golden = rtl_vs_ort = max_lsb = 0
        for i, outs in enumerate(result.outputs):
            ours = outs[k]
            rtl_vs_golden += _mismatches(ours, golden[i][k])
            n += ours.size
            if ort_outputs is not None:
                ort_q = ort_to_hwc(binding.tensor, ort_outputs[i][k])
                diff = np.abs(ours.astype(np.int64) - ort_q.astype(np.int64))
                rtl_vs_ort += int(np.count_nonzero(diff))
                max_lsb = max(max_lsb, int(diff.max(initial=0)))
        ort_text = (f"{rtl_vs_ort:>8} {max_lsb:>10}" if ort_outputs is not None
                    else f"{'n/a':>8} {'n/a':>10}")
        print(f"{binding.onnx_name[:24]:<24} {str(tuple(binding.model_shape)):<16} {n:>9} "
              f"{rtl_vs_golden:>11} {ort_text}")
        total += rtl_vs_golden
    return total


def _ort_runs(session, graph, raw: list[np.ndarray]) -> list[list[np.ndarray]]:
    """onnxruntime's outputs per inference: one run per inference, or, for a model with a fixed
    batch of N inferences, one run per N of them, its outputs split along axis 0."""
    binding = graph.inputs[0]
    n = binding.batch
    per_inference = []
    for start in range(0, len(raw), n):
        outs = session.run(None, {binding.onnx_name: np.concatenate(raw[start:start + n])})
        per_inference += [list(items) for items in zip(*(np.split(np.asarray(o), n)
                                                         for o in outs), strict=True)]
    return per_inference


def _verdict(n: int, rtl_vs_golden: int, witness, checks, name: str = "onnxruntime") -> bool:
    """Print the verdict line; PASS only when the RTL equals the golden model and every golden
    op is within its documented bound of the witness (onnxruntime's kernel for it, or ``name``)
    on the same inputs."""
    from .perlayer import format_checks

    if not witness.exact:
        print(f"op witness: {witness.note}")
    off = format_checks(checks, name)
    if off:
        print(off)
    if rtl_vs_golden:
        print(f"FAIL: {rtl_vs_golden} output element(s) of the RTL differ from the golden model")
    elif not any(c.compared for c in checks):
        print(f"FAIL: no witness ({witness.note}); the RTL equals the golden model bit for bit "
              f"on {n} inference(s), but the golden model is not checked against {name}")
    elif off:
        print(f"FAIL: {off.count(chr(10)) + 1} op(s) of the golden model are not within their "
              f"documented bound of {name} ({guide('arithmetic.md')})")
    else:
        print(f"PASS: {n} inference(s) bit-exact on the RTL; every op within its documented "
              f"bound of {name}")
        return True
    return False


def _qonnx_witness(model: Path, graph, golden_runs, raw) -> tuple:
    """verify's witness of a QONNX model, which onnxruntime cannot run: qonnx's executor, per
    op and end to end (:mod:`codesign.qonnxwitness`)."""
    from .errors import one_line
    from .opwitness import OpWitness
    from .ortwitness import REASON_CHARS, Witness
    from .perlayer import check_ops

    try:
        from .qonnxwitness import BOUND_LSB, NOTE, qonnx_op_witness, run_qonnx

        ops = qonnx_op_witness(model, graph, golden_runs)
        outputs = [run_qonnx(model, {graph.inputs[0].onnx_name: x}) for x in raw]
    # No qonnx (a test dependency), or qonnx failing on the model: no witness, no traceback.
    except Exception as error:
        note = (f"qonnx's executor cannot run the model ({one_line(error, REASON_CHARS)}); "
                "onnxruntime cannot run QONNX's custom ops either (install qonnx==1.0.0 with "
                "pip's --no-deps, see requirements-nodeps.txt)")
        print(f"witness: none: {note}")
        ops = OpWitness([{} for _ in golden_runs], Witness(None, True, note))
        return ops, check_ops(graph, golden_runs, ops.outputs), None
    print(f"witness: {NOTE}")
    return ops, check_ops(graph, golden_runs, ops.outputs, BOUND_LSB), outputs


def verify(model: Path, outdir: Path, config: HwConfig, input_path: Path | None,
           count: int, seed: int, per_layer: bool = False, scheduler: str | None = None) -> int:
    import onnx

    from .frontend.qonnx import is_qonnx
    from .opwitness import op_witness
    from .ortwitness import open_witness
    from .perlayer import check_ops

    if not 1 <= count <= MAX_RANDOM_INPUTS:
        raise InputError(f"--count must be in 1..{MAX_RANDOM_INPUTS}, not {count}")
    if seed < 0:
        raise InputError(f"--seed must be a non-negative integer, not {seed}")
    if scheduler is not None:
        from .cluster import connect

        with connect(scheduler):    # an absent cluster is refused before anything is written
            pass
    start = time.perf_counter()
    generate(model, outdir, config, store_all=per_layer)
    print(f"generate: {time.perf_counter() - start:.2f} s -> {outdir}")
    design = Design(outdir)
    graph = design.graph
    if input_path is None and count * graph.inputs[0].batch > MAX_BATCH:
        raise InputError(f"--count {count} runs of a batch of {graph.inputs[0].batch} are more "
                         f"than {MAX_BATCH} inferences; lower --count")
    if input_path is not None:
        batch, _, raw = read_batch(graph, input_path)
    else:
        raw = _random_inputs(graph, count, seed)
        batch = [[graph.inputs[0].quantize(x)] for x in raw]
    result, golden_runs = _simulate(design, batch, all_tensors=per_layer, scheduler=scheduler)
    _print_cycles(design, result)
    if is_qonnx(onnx.load(model, load_external_data=False)):
        ops, checks, outputs = _qonnx_witness(model, graph, golden_runs, raw)
        if per_layer:
            _per_layer_table(graph, golden_runs, result, ops.outputs)
            print("(op≠ORT* here: the golden op vs qonnx's executor of its nodes alone)")
        rtl_vs_golden = _output_table(graph, result, _outputs(graph, golden_runs), outputs,
                                      "qonnx")
        return 0 if _verdict(len(raw), rtl_vs_golden, ops.witness, checks,
                             "qonnx's executor") else 1
    # Every op of the golden model against onnxruntime's kernel for it, on the same inputs.
    ops = op_witness(model, graph, golden_runs)
    checks = check_ops(graph, golden_runs, ops.outputs)
    if per_layer:
        _per_layer_table(graph, golden_runs, result, ops.outputs)
    # The end-to-end difference, from a session on the whole model.
    whole = open_witness(model)
    print(f"witness: {whole.note}")
    ort_outputs = (_ort_runs(whole.session, graph, raw) if whole.session is not None
                   else None)
    rtl_vs_golden = _output_table(graph, result, _outputs(graph, golden_runs), ort_outputs)
    return 0 if _verdict(len(raw), rtl_vs_golden, ops.witness, checks) else 1


# -- entry point ----------------------------------------------------------------------------------

def _add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--array", metavar="RxC", help="systolic array rows x cols (default 8x8)")
    p.add_argument("--bus-bytes", type=int, help="external bus width in bytes (default min(C, 8))")
    p.add_argument("--act-depth", type=int, help="ACT scratchpad words")
    p.add_argument("--wgt-depth", type=int, help="WGT scratchpad words")
    p.add_argument("--acc-depth", type=int, help="accumulator words")
    p.add_argument("--prm-depth", type=int, help="requant parameter words")
    p.add_argument("--requant-lanes", type=int,
                   help="channels requantized in parallel (default C, one per column)")
    p.add_argument("--requant-steps", type=int, choices=(1, 2, 4),
                   help="cycles per requant multiply: 1, 2 or 4 (4, 2 or 1 DSP blocks per "
                        "lane; default 1)")
    p.add_argument("--no-eltwise", action="store_true",
                   help="leave out the ELTWISE engine (models without residual adds)")
    p.add_argument("--no-gemv", action="store_true",
                   help="leave out the array's GEMV mode (batch-1 fully connected layers then "
                        "run as ordinary weight tiles)")
    p.add_argument("--bus", choices=BUSES,
                   help="the NPU's outside: native (fixed-latency word port, the default), axi4 "
                        "(AXI4 master + AXI4-Lite registers) or wishbone (B4 master + register "
                        "slave); the guide bus.md")
    p.add_argument("--max-reads", type=int, metavar="N",
                   help="read beats kept outstanding on the bus (a power of two; default 16, "
                        "or what --target's memory needs)")
    p.add_argument("--axi-id-bits", type=int, metavar="N", help="AXI4 ID width (default 4)")
    p.add_argument("--wb-classic", action="store_true",
                   help="Wishbone classic cycles instead of B4 pipelined")


def _add_target_args(p: argparse.ArgumentParser, help_text: str, required: bool = False) -> None:
    from .dse.explore import OBJECTIVES

    p.add_argument("--target", required=required, metavar="NAME|FILE",
                   help=f"{help_text}: ice40-up5k, ecp5-25k, ecp5-45k, ecp5-85k, ulx3s-85k "
                        "(ECP5-85k with a 16-bit SDRAM), asic, or a .toml/.json target file")
    p.add_argument("--objective", default="latency", choices=OBJECTIVES,
                   help="what the chosen configuration minimizes (default latency)")


def _add_parallel_args(p: argparse.ArgumentParser, what: str) -> None:
    """``--jobs N`` and ``--scheduler tcp://HOST:PORT``: where ``what`` runs."""
    p.add_argument("--jobs", type=int, metavar="N",
                   help=f"{what} on N local processes (default: this machine's CPUs; 1: in "
                        f"this process)")
    _add_scheduler_arg(p, what)


def _add_scheduler_arg(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--scheduler", metavar="tcp://HOST:PORT",
                   help=f"{what} on the Dask cluster of this scheduler (`dask scheduler`, "
                        f"`dask worker tcp://HOST:PORT`; see the README's Dask section)")


def _jobs(args) -> int:
    """``--jobs``, or the CPUs this process may use."""
    from .dse.parallel import default_jobs

    return default_jobs() if args.jobs is None else args.jobs


def explore_cmd(model: Path, target_name: str, objective: str, outdir: Path, jobs: int = 1,
                scheduler: str | None = None) -> int:
    from .dse import explore, load_target

    graph = _load(model)
    target = load_target(target_name)
    start = time.perf_counter()
    points = explore.explore(graph, target, jobs=jobs, scheduler=scheduler)
    front = explore.pareto(points, target)
    explore.write_results(points, front, target, outdir)
    print(f"{len(points)} configurations of {graph.name} on {target.name} in "
          f"{time.perf_counter() - start:.1f} s: {sum(p.feasible for p in points)} fit; "
          f"Pareto front (latency, {'area' if target.family == 'asic' else 'LUTs'}, energy):")
    print(explore.table(front, target), end="")
    chosen = explore.best(points, target, objective)[0].config
    print(f"best for {objective}: {chosen.rows}x{chosen.cols}, bus {chosen.bus_bytes} B, "
          f"ACT/WGT/ACC {chosen.act_depth}/{chosen.wgt_depth}/{chosen.acc_depth}, "
          f"depthwise {'on' if chosen.dw_width else 'off'}"
          + _reductions_text(dataclasses.asdict(chosen)))
    print(f"wrote {outdir}/explore.json, pareto.md, pareto.png")
    return 0


_DESCRIPTION = ("From a quantized ONNX model to an NPU that runs it: Verilog and driver schedule "
                "(generate), bit-exact RTL simulation (simulate, verify), FPGA synthesis "
                "(synth) and design-space exploration (explore).")


def _epilog() -> str:
    """Where the guides that help texts name are; wrapped here, where a path is not broken at
    its hyphens (argparse would)."""
    names = ", ".join(sorted(path.name for path in DOCS.glob("*.md")))
    text = (f"`codesign COMMAND --help` lists a command's options. Documentation: the README "
            f"(the package's long description) and the guides {names}, installed in {DOCS}")
    return textwrap.fill(text, width=78, break_on_hyphens=False, break_long_words=False)


def _add_common_args(p: argparse.ArgumentParser, default: bool | str) -> None:
    """The options every command takes, before or after its name. A command's parser gives
    them ``default=SUPPRESS``: its defaults would overwrite what was given before the name."""
    p.add_argument("--debug", action="store_true", default=default,
                   help="show the traceback of an error")
    p.add_argument("--quiet", action="store_true", default=default,
                   help="no progress display (it is shown only when stderr is a terminal)")


def _parser() -> argparse.ArgumentParser:
    epilog = _epilog()
    p = argparse.ArgumentParser(prog="codesign", description=_DESCRIPTION, epilog=epilog,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"codesign {__version__}")
    _add_common_args(p, False)
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="model -> Verilog + driver schedule + report")
    g.add_argument("model", type=Path)
    g.add_argument("-o", "--outdir", type=Path)
    _add_config_args(g)
    _add_target_args(g, "size the NPU for this device: the best configuration that fits "
                        "(with --array: check that it fits)")
    _add_parallel_args(g, "with --target: evaluate the configurations")

    x = sub.add_parser("explore", help="evaluate the design space of a model on a target")
    x.add_argument("model", type=Path)
    x.add_argument("-o", "--outdir", type=Path, help="default build/<model>-explore")
    _add_target_args(x, "device whose budget the configurations must fit", required=True)
    _add_parallel_args(x, "evaluate the configurations")

    s = sub.add_parser("simulate", help="run a generated design under Verilator")
    s.add_argument("outdir", type=Path)
    s.add_argument("--input", type=Path, required=True,
                   help=".npy: the model's input shape S, S with axis 0 times k, or [k, *S] "
                        "(k runs; at most 1024 inferences); the output has the model's output "
                        "shape likewise; float input is quantized as QuantizeLinear does "
                        "(±inf saturates, NaN is refused)")
    s.add_argument("--output", type=Path,
                   help="write the model output(s) to exactly this file (.npy format), replaced "
                        "atomically")
    s.add_argument("--mem-latency", type=int, metavar="L",
                   help="(AXI4 / Wishbone designs) the simulated memory's read latency in "
                        "cycles, from a bus request to its data (default 1)")
    s.add_argument("--mem-stall", type=float, metavar="P",
                   help="(AXI4 / Wishbone designs) probability that the memory withholds each "
                        "ready/valid/acknowledge in a cycle (default 0)")
    s.add_argument("--mem-seed", type=int, default=1, help="seed of the random stalls")
    s.add_argument("--waves", type=Path, metavar="FILE.fst",
                   help="write every signal to this FST waveform file (GTKWave, Surfer), from "
                        "a traced Verilator build cached beside the fast one (slower to build "
                        "and to run)")
    s.add_argument("--cycles", metavar="A:B",
                   help="with --waves: only cycles A to B of each inference (counted from its "
                        "start, as in --trace)")
    s.add_argument("--trace", type=Path, metavar="FILE",
                   help="write a line per instruction the NPU's controller dispatches: "
                        "inference, cycle, engine, the instruction as in program.lst, layer "
                        "(uses the traced build)")

    v = sub.add_parser("verify", help="generate + simulate + compare with golden model and ORT")
    v.add_argument("model", type=Path)
    v.add_argument("-o", "--outdir", type=Path)
    v.add_argument("--input", type=Path, help=".npy input(s); default: seeded random inputs")
    v.add_argument("--count", type=int, default=4,
                   help="random model runs (default 4; a run of a model with a fixed batch of N "
                        "inferences is N inferences)")
    v.add_argument("--seed", type=int, default=0)
    v.add_argument("--per-layer", action="store_true",
                   help="compare every layer's output (RTL, golden, onnxruntime) and name the "
                        "first layer and element where they diverge")
    _add_scheduler_arg(v, "simulate the inputs, split into one share per worker,")
    _add_config_args(v)

    y = sub.add_parser("synth", help="yosys + nextpnr on a generated design: resources, fmax")
    y.add_argument("outdir", type=Path)
    y.add_argument("--target", help="built-in target name or a .toml/.json target file "
                                    "(default: the design's, else ecp5-45k)")
    y.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="place and route with nextpnr seeds 1..N, two at a time (with "
                        "--scheduler: one task per seed), and keep the fastest (default 1)")
    _add_scheduler_arg(y, "place and route the seeds")
    for command in sub.choices.values():
        _add_common_args(command, argparse.SUPPRESS)
        command.epilog = epilog
        command.formatter_class = argparse.RawDescriptionHelpFormatter
    return p


def _default_outdir(model: Path) -> Path:
    return Path("build") / model.stem


def main(argv: list[str] | None = None) -> int:
    # SIGTERM and Ctrl-C raise inside, so that whatever a command was writing is removed; they
    # end it in one line (an interrupt is no bug: no traceback, even with --debug).
    with handling_signals():
        try:
            return _main(argv)
        except KeyboardInterrupt as err:
            print(f"codesign: {'terminated' if isinstance(err, Terminated) else 'interrupted'}",
                  file=sys.stderr)
            return exit_status(err)


def _main(argv: list[str] | None) -> int:
    args = _parser().parse_args(argv)
    progress.set_quiet(args.quiet)
    try:
        if args.command == "generate":
            config = _config_from_args(args)
            outdir = args.outdir or _default_outdir(args.model)
            start = time.perf_counter()
            selection = target = None
            if args.target:
                config, selection, target = _select(args.model, args.target, args.objective,
                                                    config if args.array else None, _jobs(args),
                                                    args.scheduler)
                config = _with_bus(config, args)
            report = generate(args.model, outdir, config, selection=selection, target=target)
            print(_report_text(report), end="")
            print(f"wrote {outdir} in {time.perf_counter() - start:.2f} s")
            return 0
        if args.command == "simulate":
            return simulate(args.outdir, args.input, args.output, args.mem_latency,
                            args.mem_stall, args.mem_seed, args.waves, args.cycles, args.trace)
        if args.command == "verify":
            return verify(args.model, args.outdir or _default_outdir(args.model),
                          _config_from_args(args), args.input, args.count, args.seed,
                          args.per_layer, args.scheduler)
        if args.command == "synth":
            from .synth import main as synth_main
            return synth_main(args)
        if args.command == "explore":
            return explore_cmd(args.model, args.target, args.objective,
                               args.outdir or Path("build") / f"{args.model.stem}-explore",
                               _jobs(args), args.scheduler)
    except InputError as err:
        if args.debug:
            raise
        print(f"codesign: error: {err}", file=sys.stderr)
        return 2
    except SimulationFailed as err:
        if args.debug:
            raise
        print(f"codesign: simulation failed: {str(err).splitlines()[0]}", file=sys.stderr)
        return 1
    except OSError as err:          # a full disk, a read-only or forbidden directory, ...
        if args.debug:
            raise
        where = f"{err.filename}: " if err.filename is not None else ""
        print(f"codesign: error: {where}{err.strerror or err}", file=sys.stderr)
        return 2
    return 2  # pragma: no cover - argparse enforces a command


if __name__ == "__main__":
    sys.exit(main())
