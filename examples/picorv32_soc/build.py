"""A soft RISC-V CPU driving the NPU: build the PicoRV32 SoC (soc.v), run the model on it under
Verilator and check the outputs bit for bit against the golden model.

    python examples/picorv32_soc/build.py [MODEL.onnx --input X.npy] [--runs N] [--work DIR]
                                          [-- GENERATE_OPTIONS...]

Without a model it runs models/digits_cnn_qdq.onnx on the first inputs of its sample file.
The steps (docs/integration.md, "A soft CPU driving the NPU"):

1. ``codesign generate`` the design (Verilog, program, C driver, register map, model header)
   into a temporary OUTDIR (or ``--work``); GENERATE_OPTIONS go to it (``--array 4x4``, ...);
2. compile the firmware (firmware/, the design's C driver and model header, and ``soc_job.h``
   written here with the inputs) for RV32I with ``zig cc`` and turn it into the RAM's
   ``$readmemh`` image;
3. build soc.v + tb_soc.v + picorv32.v (PyPI ``pythondata-cpu-picorv32``) + the NPU with
   ``verilator --binary``, cached under ``$CODESIGN_CACHE/soc/`` (one build per NPU serves
   every firmware);
4. run it until the firmware exits, and read its result block out of the RAM dump;
5. compare the outputs with the golden model (:func:`codesign.reference.run`) and print the
   cycles: the NPU's CYCLES register per run (and the timing model's figure), and the CPU's
   cycles for each driver call.

Exit status: 0 when every output matches, 1 on a mismatch, 2 when anything fails on the way
(the firmware's error code, a fault, a timeout).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from codesign import process
from codesign.design import Design, read_batch
from codesign.sim import runner

HERE = Path(__file__).resolve().parent
FIRMWARE_DIR = HERE / "firmware"
REPO = HERE.parent.parent
DEFAULT_MODEL = REPO / "models" / "digits_cnn_qdq.onnx"
DEFAULT_INPUT = REPO / "models" / "digits_cnn_sample.npy"

#: The memory map (soc.v): the RAM from 0, the NPU's registers, the system device.
RAM_BYTES = 1 << 18
REGS_ADDR = 0x4000_0000
SYS_ADDR = 0x5000_0000

#: zig cc for PicoRV32 as soc.v builds it: RV32I (no M, no C), no operating system.
ZIG_TARGET = ("-target", "riscv32-freestanding-none", "-mcpu=generic_rv32")
CFLAGS = ("-std=c99", "-O2", "-Wall", "-Wextra", "-Werror", "-ffreestanding",
          "-ffunction-sections", "-fdata-sections")
#: The driver's hardware access hooks of this SoC (firmware/npu_config.h).
DRIVER_CONFIG = '-DCODESIGN_NPU_CONFIG="npu_config.h"'
#: The design's files the firmware is compiled with (`codesign generate` writes them).
DESIGN_C_FILES = ("codesign_npu.h", "codesign_npu.c", "npu_regs.h", "npu_model.h")

#: The result block of firmware/main.c: a header of uint32 (magic, status, step, runs,
#: init_cycles, load_cycles), a record of uint32 per run (irq, input_cycles, run_cycles,
#: output_cycles, npu_cycles), then every run's outputs.
RESULT_MAGIC = 0x53435231
_HEADER = struct.Struct("<Iiiiii")
_RECORD = struct.Struct("<5I")
#: firmware/main.c's `enum step`: the driver call that failed.
STEPS = ("none", "codesign_npu_init", "codesign_npu_load", "codesign_npu_irq_enable",
         "codesign_npu_write_input", "codesign_npu_start", "codesign_npu_wait",
         "codesign_npu_read_output")

#: Verilator: the testbench makes its clock (--binary implies --timing); X as in the NPU's
#: own builds (sim/runner.py); picorv32.v sets a timescale, so every other file needs one.
_VERILATOR_FLAGS = ("--binary", "--x-assign", "fast", "--x-initial", "fast", "--timescale",
                    "1ns/1ps", "--build-jobs", "2")
_TOP = "tb_soc"


class SocError(RuntimeError):
    """A step of the flow failed (the message says which, and why)."""


@dataclasses.dataclass(frozen=True)
class RunRecord:
    """One run of the model as the firmware measured it (CPU cycles, from ``rdcycle``)."""
    irq: bool               #: waited for the interrupt (else polled CTRL)
    input_cycles: int       #: codesign_npu_write_input, every input
    run_cycles: int         #: codesign_npu_start to the end of the wait
    output_cycles: int      #: codesign_npu_read_output, every output
    npu_cycles: int         #: the NPU's CYCLES register


@dataclasses.dataclass(frozen=True)
class SocResult:
    """What one simulation of the SoC ended with.

    ``reason`` is how it ended (``exit``: the firmware wrote its exit code ``code``; ``fault``,
    ``trap``, ``timeout``), ``cycles`` the clock cycles from reset to then; the rest is the
    firmware's result block (``status`` the driver's error code, 0 when every call succeeded,
    ``step`` the name of the call that failed) and its console output.
    """
    reason: str
    code: int
    cycles: int
    console: str
    status: int = 0
    step: str = "none"
    init_cycles: int = 0
    load_cycles: int = 0
    runs: tuple[RunRecord, ...] = ()
    outputs: tuple[bytes, ...] = ()      #: per completed run, its outputs' bytes


# -- 1. the design ---------------------------------------------------------------------------------

def generate(model: Path, outdir: Path, options: Sequence[str] = ()) -> Design:
    """``codesign generate MODEL -o OUTDIR OPTIONS`` and the design it wrote."""
    from codesign.cli import main as codesign

    if codesign(["generate", str(model), "-o", str(outdir), *options]) != 0:
        raise SocError(f"codesign generate {model} failed (its message is above)")
    design = Design(outdir)
    if design.config.bus != "native" or design.config.bus_bytes < 4:
        raise SocError("soc.v takes the NPU's native port with a bus of 4 bytes or more (not "
                       f"bus {design.config.bus!r}, {design.config.bus_bytes} bytes)")
    missing = [name for name in DESIGN_C_FILES if not (outdir / name).is_file()]
    if missing:
        raise SocError(f"{outdir} lacks the C driver files {', '.join(missing)} (this codesign's "
                       "generate does not write them)")
    return design


# -- 2. the firmware -------------------------------------------------------------------------------

def _c_bytes(data: bytes) -> str:
    """``data`` as a braced C initializer, 16 bytes a line."""
    return "{\n" + ",\n".join("    " + ", ".join(f"0x{b:02x}" for b in data[i:i + 16])
                               for i in range(0, len(data), 16)) + "\n}"


def job_header(design: Design, batch: Sequence[Sequence[np.ndarray]]) -> str:
    """``soc_job.h``: the inputs of every run (HWC, one byte per value, as the C driver takes
    them) and the byte sizes of the model's inputs and outputs."""
    if not batch:
        raise SocError("no inputs to run")
    in_sizes = [x.size for x in batch[0]]
    out_sizes = [int(np.prod(r.shape)) for r in design.program.outputs]
    runs = ",\n".join(_c_bytes(b"".join(np.ascontiguousarray(x).tobytes() for x in inputs))
                      for inputs in batch)
    return "\n".join([
        "/* Generated by build.py: the inputs of every run. */",
        "#ifndef SOC_JOB_H", "#define SOC_JOB_H", "", "#include <stdint.h>", "",
        f"#define SOC_RUNS {len(batch)}u",
        f"#define SOC_N_INPUTS {len(in_sizes)}u",
        f"#define SOC_N_OUTPUTS {len(out_sizes)}u",
        f"#define SOC_RUN_INPUT_BYTES {sum(in_sizes)}u",
        f"#define SOC_RUN_OUTPUT_BYTES {sum(out_sizes)}u", "",
        f"static const uint32_t soc_input_bytes[] = {{{', '.join(map(str, in_sizes))}}};",
        f"static const uint32_t soc_output_bytes[] = {{{', '.join(map(str, out_sizes))}}};",
        "static const uint8_t soc_inputs[SOC_RUNS][SOC_RUN_INPUT_BYTES] = {", runs, "};", "",
        "#endif /* SOC_JOB_H */", ""])


def _zig(*args: str, work: Path) -> None:
    """``python -m ziglang ARGS``, its caches under the codesign cache."""
    cache = runner.cache_dir() / "zig"
    env = {**os.environ, "ZIG_GLOBAL_CACHE_DIR": str(cache), "ZIG_LOCAL_CACHE_DIR": str(cache)}
    out = process.run([sys.executable, "-m", "ziglang", *args], cwd=work, env=env,
                      capture_output=True, text=True, timeout=900)
    if out.returncode:
        raise SocError(f"zig {args[0]} failed with exit code {out.returncode}:\n"
                       f"{out.stderr.strip()}")


def build_firmware(design_dir: Path, job: str, work: Path, bus_bytes: int) -> Path:
    """Compile the firmware with the C driver and model of ``design_dir`` and the job header
    ``job``; returns the RAM image (``$readmemh``, words of ``bus_bytes``, the RAM's width)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "soc_job.h").write_text(job)
    return compile_firmware([FIRMWARE_DIR / "start.S", FIRMWARE_DIR / "main.c",
                             design_dir / "codesign_npu.c"], [work, design_dir], work, bus_bytes)


def compile_firmware(sources: Sequence[Path], include_dirs: Sequence[Path], work: Path,
                     bus_bytes: int) -> Path:
    """Compile and link ``sources`` for the SoC (RV32I, firmware/link.ld, the memory map as
    macros); returns the RAM image ``work/firmware.hex`` (``$readmemh``, words of
    ``bus_bytes``)."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "memory.ld").write_text("/* Generated by build.py: the RAM of soc.v. */\n"
                                    f"MEMORY {{ RAM (rwx) : ORIGIN = 0, LENGTH = {RAM_BYTES} }}\n")
    elf, binary, image = work / "firmware.elf", work / "firmware.bin", work / "firmware.hex"
    _zig("cc", *ZIG_TARGET, *CFLAGS, f"-DSOC_REGS_ADDR={REGS_ADDR:#x}u",
         f"-DSOC_SYS_ADDR={SYS_ADDR:#x}u", DRIVER_CONFIG,
         *(f"-I{d}" for d in (*include_dirs, FIRMWARE_DIR)),
         "-T", str(FIRMWARE_DIR / "link.ld"), "-Wl,--gc-sections", *map(str, sources),
         "-o", str(elf), work=work)
    _zig("objcopy", "-O", "binary", str(elf), str(binary), work=work)
    data = binary.read_bytes()
    data += bytes(-len(data) % bus_bytes)
    words = np.frombuffer(data, np.uint8).reshape(-1, bus_bytes)[:, ::-1]   # MSB first
    image.write_text("".join(w.tobytes().hex() + "\n" for w in words))
    return image


# -- 3. the simulator ------------------------------------------------------------------------------

def _picorv32() -> Path:
    import pythondata_cpu_picorv32

    return Path(pythondata_cpu_picorv32.data_location) / "picorv32.v"


def _vlt() -> str:
    """Lint waivers: none for soc.v and tb_soc.v; the NPU's as in its own builds; PicoRV32 is
    not ours to change."""
    rules = "".join(f'lint_off -rule {rule} -file "*/npu.v"\n' for rule in runner._NPU_WAIVED)
    return f'`verilator_config\n{rules}lint_off -file "*/picorv32.v"\n'


def build_simulator(design: Design, *, cache_root: Path | None = None,
                    timeout: float = 3600) -> Path:
    """The Verilator binary of the SoC around ``design``'s NPU (built, or found in the cache).

    Parameters
    ----------
    design
        The NPU (its Verilog and bus width).
    cache_root
        The cache (default :func:`codesign.sim.runner.cache_dir`); builds go to ``soc/``.
    timeout
        Wall-clock limit of the build in seconds.
    """
    config = design.config
    sources = {"soc.vlt": _vlt(), "npu.v": design.verilog,
               **{name: (runner._SIM_DIR / name).read_text()
                  for name in runner._CELL_MODELS[config.mult_cell]},
               "picorv32.v": _picorv32().read_text(),
               "soc.v": (HERE / "soc.v").read_text(), "tb_soc.v": (HERE / "tb_soc.v").read_text()}
    parameters = {"BUS_BYTES": config.bus_bytes, "NPU_ADDR_BITS": config.ext_addr_bits,
                  "RAM_BYTES": RAM_BYTES, "REGS_ADDR": REGS_ADDR, "SYS_ADDR": SYS_ADDR}
    key = hashlib.sha256(json.dumps([sources, parameters, _VERILATOR_FLAGS,
                                     runner._MAKE_FLAGS, runner._verilator_version()])
                         .encode()).hexdigest()
    root = (Path(cache_root) if cache_root is not None else runner.cache_dir()) / "soc"
    final = root / f"{config.name}-{key[:24]}"
    if (final / _TOP).is_file():
        return final / _TOP
    root.mkdir(parents=True, exist_ok=True)
    with runner._locked(root / f"{final.name}.lock"):
        if (final / _TOP).is_file():        # another process built it while we waited
            return final / _TOP
        tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=root))
        try:
            for name, text in sources.items():
                (tmp / name).write_text(text)
            _verilate(tmp, [tmp / name for name in sources], parameters, timeout)
            os.rename(tmp, final)           # complete builds only: the binary is made last
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final / _TOP


def _verilate(build_dir: Path, sources: list[Path], parameters: dict[str, int],
              timeout: float) -> None:
    cmd = [str(runner._verilator_root() / "bin" / "verilator"), *_VERILATOR_FLAGS,
           "--top-module", _TOP, "--Mdir", "obj", "-o", f"../{_TOP}",
           *(f"-G{name}={value}" for name, value in parameters.items()),
           *(arg for flag in runner._MAKE_FLAGS for arg in ("-MAKEFLAGS", flag)),
           *map(str, sources)]
    env = runner._verilator_env({**os.environ, "TMPDIR": str(build_dir)})
    try:
        out = process.run(cmd, cwd=build_dir, env=env, capture_output=True, text=True,
                          timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SocError(f"the Verilator build did not finish within {timeout} s") from None
    if out.returncode:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-40:])
        raise SocError(f"the Verilator build failed (exit code {out.returncode}):\n{tail}")


# -- 4. the run ------------------------------------------------------------------------------------

_EXIT_LINE = re.compile(r"^SOC_EXIT reason=(\w+) code=(-?\d+) result=0x([0-9a-fA-F]+) "
                        r"cycles=(\d+)$", re.M)


def run(simulator: Path, firmware: Path, work: Path, *, bus_bytes: int, n_runs: int,
        output_bytes: int, max_cycles: int = 20_000_000, timeout: float = 1800) -> SocResult:
    """Simulate the SoC with ``firmware`` in its RAM until the firmware exits.

    ``n_runs`` and ``output_bytes`` (per run) size the result block; ``bus_bytes`` is the RAM's
    word width.
    """
    dump = work / "ram.hex"
    try:
        out = process.run([str(simulator), f"+firmware={firmware}", f"+dump={dump}",
                           f"+max_cycles={max_cycles}"], cwd=work, capture_output=True,
                          text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise SocError(f"the simulation did not finish within {timeout} s") from None
    lines = _EXIT_LINE.findall(out.stdout)
    if out.returncode or not lines:
        raise SocError(f"the simulator failed (exit code {out.returncode}):\n"
                       f"{(out.stdout + out.stderr)[-3000:]}")
    reason, code, address, cycles = lines[-1]
    console = out.stdout[:out.stdout.rfind("SOC_EXIT")]
    result = SocResult(reason=reason, code=int(code), cycles=int(cycles), console=console)
    if reason != "exit":
        return result
    return _read_result(result, _read_ram(dump, bus_bytes), int(address, 16), n_runs,
                        output_bytes)


def _read_ram(dump: Path, bus_bytes: int) -> bytes:
    """The RAM from the testbench's ``$writememh`` dump (words of ``bus_bytes``, MSB first)."""
    words = [ln for ln in dump.read_text().split() if not ln.startswith(("//", "@"))]
    if len(words) * bus_bytes != RAM_BYTES:
        raise SocError(f"{dump} holds {len(words)} words, not the RAM's "
                       f"{RAM_BYTES // bus_bytes}")
    return b"".join(bytes.fromhex(w)[::-1] for w in words)


def _read_result(result: SocResult, ram: bytes, address: int, n_runs: int,
                 output_bytes: int) -> SocResult:
    """``result`` with the firmware's result block at ``address`` of ``ram``."""
    size = _HEADER.size + n_runs * (_RECORD.size + output_bytes)
    if not 0 < address <= len(ram) - size:
        raise SocError(f"the firmware gave no result block in the RAM (address {address:#x})")
    magic, status, step, runs, init_cycles, load_cycles = _HEADER.unpack_from(ram, address)
    if magic != RESULT_MAGIC or not 0 <= step < len(STEPS) or not 0 <= runs <= n_runs:
        raise SocError(f"the result block at {address:#x} is not the firmware's")
    records = address + _HEADER.size
    outputs = records + n_runs * _RECORD.size
    return dataclasses.replace(
        result, status=status, step=STEPS[step], init_cycles=init_cycles,
        load_cycles=load_cycles,
        runs=tuple(RunRecord(bool(irq), *rest) for irq, *rest in
                   (_RECORD.unpack_from(ram, records + k * _RECORD.size) for k in range(runs))),
        outputs=tuple(ram[outputs + k * output_bytes:outputs + (k + 1) * output_bytes]
                      for k in range(runs)))


# -- 5. the check ----------------------------------------------------------------------------------

def golden_bytes(design: Design, inputs: Sequence[np.ndarray]) -> bytes:
    """One run's outputs as the firmware stores them, by the golden model: every output of the
    model in order, as the C driver reads it back (HWC, or CHW-flattened), a byte per value."""
    from codesign.reference import run as reference

    values = reference(design.graph, list(inputs))
    return b"".join(np.ascontiguousarray(values[b.tensor.name]).tobytes()
                    for b in design.graph.outputs)


def driver_errors(design_dir: Path) -> dict[int, str]:
    """The C driver's error codes by value (``CODESIGN_NPU_ERR_*`` of its header)."""
    text = (design_dir / "codesign_npu.h").read_text()
    return {int(value): name for name, value in
            re.findall(r"#define (CODESIGN_NPU_(?:OK|ERR_\w+)) \(?(-?\d+)\)?", text)}


def _report(design: Design, result: SocResult) -> None:
    from codesign.timing import program_cycles

    print(f"SoC: {result.cycles} cycles from reset to exit; CPU: codesign_npu_init "
          f"{result.init_cycles}, codesign_npu_load {result.load_cycles} cycles")
    model = program_cycles(design.program)
    for k, r in enumerate(result.runs):
        print(f"run {k} ({'interrupt' if r.irq else 'polling'}): NPU CYCLES {r.npu_cycles} "
              f"(timing model {model}); CPU cycles: write_input {r.input_cycles}, start to "
              f"done {r.run_cycles}, read_output {r.output_cycles}")


# -- the command line ------------------------------------------------------------------------------

def _parse(argv: Sequence[str]) -> tuple[argparse.Namespace, list[str]]:
    argv = list(argv)
    split = argv.index("--") if "--" in argv else len(argv)
    parser = argparse.ArgumentParser(
        prog="build.py", description="Run a model on the PicoRV32 + NPU SoC under Verilator "
        "and compare with the golden model. Options after -- go to `codesign generate`.")
    parser.add_argument("model", nargs="?", type=Path, default=DEFAULT_MODEL)
    parser.add_argument("--input", type=Path, help=".npy of inputs, as `codesign simulate` "
                        "takes them (default: the bundled model's sample file)")
    parser.add_argument("--runs", type=int, default=2,
                        help="inferences to run, the first of the input file (default 2: one "
                             "polled, one by interrupt)")
    parser.add_argument("--work", type=Path, help="keep the design, firmware and RAM dump here")
    parser.add_argument("--max-cycles", type=int, default=20_000_000,
                        help="clock cycles the SoC may run (default 20 million)")
    args = parser.parse_args(argv[:split])
    if args.input is None:
        if args.model != DEFAULT_MODEL:
            parser.error("--input is needed with a model of your own")
        args.input = DEFAULT_INPUT
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args, argv[split + 1:]


def simulate(args: argparse.Namespace, generate_options: Sequence[str], work: Path) -> int:
    """Steps 1 to 5 in ``work``; returns the exit status."""
    design = generate(args.model, work / "design", generate_options)
    batch = read_batch(design.graph, args.input)[0][:args.runs]
    image = build_firmware(design.dir, job_header(design, batch), work / "firmware",
                           design.config.bus_bytes)
    simulator = build_simulator(design)
    expected = [golden_bytes(design, inputs) for inputs in batch]
    result = run(simulator, image, work, bus_bytes=design.config.bus_bytes,
                 n_runs=len(batch), output_bytes=len(expected[0]), max_cycles=args.max_cycles)
    print(result.console, end="")
    if result.reason != "exit":
        print(f"FAILED: the simulation ended by {result.reason} after {result.cycles} cycles "
              "(fault: an access outside the RAM and the devices; trap: the CPU halted)",
              file=sys.stderr)
        return 2
    if result.status:
        error = driver_errors(design.dir).get(result.status, str(result.status))
        print(f"FAILED: {result.step} returned {error}", file=sys.stderr)
        return 2
    _report(design, result)
    bad = sum(got != want for run_got, run_want in zip(result.outputs, expected, strict=True)
              for got, want in zip(run_got, run_want, strict=True))
    if bad:
        print(f"MISMATCH: {bad} output byte(s) differ from the golden model", file=sys.stderr)
        return 1
    print(f"outputs match the golden model bit-exactly ({len(batch)} run(s))")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, generate_options = _parse(sys.argv[1:] if argv is None else argv)
    try:
        if args.work is not None:
            return simulate(args, generate_options, args.work)
        with tempfile.TemporaryDirectory(prefix="codesign-soc-") as work:
            return simulate(args, generate_options, Path(work))
    except SocError as err:
        print(f"build.py: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
