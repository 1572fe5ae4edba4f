"""Faults: kills at random instants, signals, concurrent writers, full disks, damaged caches.

The invariants (issue 14, deliverable 5): OUTDIR is always absent (only if it never existed),
the complete old design or the complete new one; the next ``generate`` leaves nothing beside it;
SIGTERM and Ctrl-C end a command in one line with exit 143 / 130; no child process outlives a
killed command; a damaged cache entry is rebuilt, never used.
"""

import contextlib
import errno
import fcntl
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from codesign import cli, outdir, process, verilog
from codesign.isa import HwConfig
from codesign.rtl.top import generate_verilog

from .modelgen import ZOO, build

ROOT = Path(__file__).resolve().parent.parent
ENV = {**os.environ, "PYTHONWARNINGS": "error"}
# Commands that are killed run with Python's default warning filters, as users run them: with
# warnings as errors, a signal that interrupts an import makes the interpreter report the
# module file it left open (a ResourceWarning, ignored by default) on stderr.
USER_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONWARNINGS"}
OLD_ARGS = ("--array", "4x4")       # the design an existing OUTDIR holds
NEW_ARGS = ("--array", "2x2")       # the design every run writes

# `codesign` with every publishing step (each file written, the swap) slowed down by DELAY
# seconds, so that random kill instants land in each of them as often as in the compilation;
# prints "ready" when main() is about to start.
WRAPPER = """
import sys, time
from pathlib import Path
from codesign import cli, outdir

delay = float(sys.argv[1])
write_text, exchange = Path.write_text, outdir._exchange

def slow_write_text(self, *args, **kwargs):
    time.sleep(delay)
    return write_text(self, *args, **kwargs)

def slow_exchange(a, b):
    time.sleep(delay)
    swapped = exchange(a, b)
    time.sleep(delay)
    return swapped

Path.write_text, outdir._exchange = slow_write_text, slow_exchange
print("ready", flush=True)
sys.exit(cli.main(sys.argv[2:]))
"""
DELAY = 0.04


def _main(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _snapshot(path: Path) -> dict[str, bytes] | None:
    """The files of a design directory, or None if there is none."""
    if not path.exists():
        return None
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


def _beside(path: Path) -> list[str]:
    """What is left beside OUTDIR under its hidden names (staging, old copies, the lock)."""
    return sorted(p.name for p in path.parent.iterdir() if p.name.startswith(f".{path.name}."))


@pytest.fixture(scope="module")
def model() -> Path:
    return build(ZOO["conv_relu_pool_fc_qop_u8"])


@pytest.fixture(scope="module")
def designs(model, tmp_path_factory) -> dict[str, dict[str, bytes]]:
    """Reference generates of the old and the new design."""
    root = tmp_path_factory.mktemp("reference")
    refs = {}
    for name, args in (("old", OLD_ARGS), ("new", NEW_ARGS)):
        assert cli.main(["generate", str(model), "-o", str(root / name), *args]) == 0
        refs[name] = _snapshot(root / name)
    return refs


def _spawn(model: Path, out: Path, args, delay: float = DELAY) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRAPPER, str(delay), "generate", str(model), "-o", str(out),
         *args], cwd=ROOT, env=USER_ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)


def _started(proc: subprocess.Popen) -> None:
    assert proc.stdout.readline() == "ready\n"


# -- OUTDIR under kills ---------------------------------------------------------------------------

def _kill_once(model, out: Path, designs, rng: random.Random, sig: int, existed: bool,
               span: float) -> str:
    """Kill one generate at a random instant; check the invariants; returns what was found."""
    if existed:
        (out.parent / "seed").mkdir(exist_ok=True)
        for name, data in designs["old"].items():
            (out.parent / "seed" / name).write_bytes(data)
        (out.parent / "seed").rename(out)
    proc = _spawn(model, out, NEW_ARGS)
    _started(proc)
    time.sleep(rng.uniform(0.0, span))
    proc.send_signal(sig)
    stdout, err = proc.communicate(timeout=60)
    state = _snapshot(out)
    allowed = [designs["old"] if existed else None, designs["new"]]
    assert state in allowed, (sig, existed, sorted(state or {}))
    # Done, or killed while the interpreter shut down after main() (handlers restored).
    if proc.returncode == 0 or (f"wrote {out}" in stdout and not err):
        assert state == designs["new"]
        return "finished first"
    if sig == signal.SIGTERM:
        assert proc.returncode == 143 and err == "codesign: terminated\n", (proc.returncode, err)
        # Nothing of the interrupted write is left (the lock file may be, if the signal came
        # as it was being opened: harmless, and the next writer removes it).
        assert set(_beside(out)) <= {f".{out.name}.lock"}
    else:
        assert proc.returncode == -signal.SIGKILL
    return "old" if state == designs["old"] else "none" if state is None else "new"


def _kill_loop(model, tmp_path, designs, kills: int, seed: int, capsys) -> dict[str, int]:
    # The span of the kill instants: a whole run from "ready" to its exit (the faster of two:
    # the first may be slowed by a cold disk cache).
    out = tmp_path / "out"
    span = min(_run_time(model, out) for _ in range(2))
    rng = random.Random(seed)
    found: dict[str, int] = {}
    for k in range(kills):
        sig = (signal.SIGKILL, signal.SIGTERM)[k % 2]
        existed = k % 4 >= 2
        what = _kill_once(model, out, designs, rng, sig, existed, span)
        found[what] = found.get(what, 0) + 1
        # The next generate completes and leaves nothing beside OUTDIR.
        assert _main(capsys, "generate", model, "-o", out, *NEW_ARGS)[0] == 0
        assert _snapshot(out) == designs["new"] and _beside(out) == []
        shutil.rmtree(out)
    print(f"\n{kills} kills (seed {seed}, span {span:.2f} s): {found}")
    return found


def _run_time(model, out: Path) -> float:
    proc = _spawn(model, out, NEW_ARGS)
    _started(proc)
    start = time.monotonic()
    proc.communicate(timeout=60)
    shutil.rmtree(out)
    return time.monotonic() - start


def test_kills_never_lose_outdir(model, tmp_path, designs, capsys):
    """SIGKILL and SIGTERM at random instants of generate, with and without an old OUTDIR."""
    found = _kill_loop(model, tmp_path, designs, kills=12, seed=14, capsys=capsys)
    assert found.get("finished first", 0) <= 6      # most kills land inside the runs


@pytest.mark.slow
def test_kills_never_lose_outdir_long(model, tmp_path, designs, capsys):
    _kill_loop(model, tmp_path, designs, kills=120, seed=1414, capsys=capsys)


def test_concurrent_generates_end_with_one_complete_design(model, tmp_path, designs):
    out = tmp_path / "out"
    outcomes = []
    for _ in range(10):
        procs = [_spawn(model, out, args, delay=0.01) for args in (OLD_ARGS, NEW_ARGS)]
        results = [p.communicate(timeout=120) for p in procs]
        codes = [p.returncode for p in procs]
        for code, (_, err) in zip(codes, results, strict=True):
            assert code == 0 or (code == 2 and err.startswith("codesign: error: another codesign "
                                                             "is writing")), (code, err)
        assert 0 in codes
        assert _snapshot(out) in (designs["old"], designs["new"])
        assert _beside(out) == []
        outcomes.append(tuple(codes))
    print(f"\n10 rounds of two generates into one OUTDIR, exit codes: {outcomes}")


def test_writer_waits_for_the_lock_then_gives_up(model, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    monkeypatch.setattr(outdir, "LOCK_WAIT", 0.3)
    with open(tmp_path / ".out.lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        code, _, err = _main(capsys, "generate", model, "-o", out, *NEW_ARGS)
    assert code == 2
    assert err == (f"codesign: error: another codesign is writing {out.resolve()}; try again "
                   "when it has finished\n")
    assert not out.exists() and _beside(out) == [".out.lock"]


# -- the swap and its leftovers -------------------------------------------------------------------

def _exchange_works(tmp_path: Path) -> bool:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    swapped = outdir._exchange(tmp_path / "a", tmp_path / "b")
    (tmp_path / "a").rmdir()
    (tmp_path / "b").rmdir()
    return swapped


def test_replacement_is_one_exchange(tmp_path, monkeypatch):
    if not _exchange_works(tmp_path):
        pytest.skip("renameat2(RENAME_EXCHANGE) is not available here")
    out = tmp_path / "out"
    outdir.write_design(out, lambda d: (d / "f").write_text("old"))

    def no_rename(*args):
        raise AssertionError("the exchange needs no rename")

    monkeypatch.setattr(os, "rename", no_rename)
    outdir.write_design(out, lambda d: (d / "f").write_text("new"))
    assert (out / "f").read_text() == "new" and _beside(out) == []


def test_two_renames_where_there_is_no_exchange(tmp_path, monkeypatch):
    monkeypatch.setattr(outdir, "_renameat2", lambda: None)
    out = tmp_path / "out"
    for text in ("old", "new"):
        outdir.write_design(out, lambda d, text=text: (d / "f").write_text(text))
        assert (out / "f").read_text() == text and _beside(out) == []


def test_leftovers_of_interrupted_runs_are_removed(tmp_path):
    out = tmp_path / "a"
    mine = [".a.stage-0123abcd", ".a.old-89abcdef", ".a.k2_x9qpz", ".a.old.k2_x9qpz"]
    others = [".a.b.stage-0123abcd", ".ab.stage-0123abcd", ".a.stage-notmine"]
    for name in mine + others:
        (tmp_path / name).mkdir()
        (tmp_path / name / "npu.v").write_text("partial")
    outdir.write_design(out, lambda d: (d / "f").write_text("new"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["a", *others])


def test_outdir_has_the_usual_permissions(tmp_path):
    out = tmp_path / "out"
    outdir.write_design(out, lambda d: (d / "f").write_text("x"))
    (tmp_path / "plain").mkdir()
    assert out.stat().st_mode == (tmp_path / "plain").stat().st_mode


# -- signals --------------------------------------------------------------------------------------

@pytest.mark.parametrize("sig, status, line", [(signal.SIGTERM, 143, "terminated"),
                                               (signal.SIGINT, 130, "interrupted")])
def test_signal_during_publishing_exits_cleanly(model, tmp_path, designs, capsys, monkeypatch,
                                                sig, status, line):
    out = tmp_path / "out"
    assert _main(capsys, "generate", model, "-o", out, *OLD_ARGS)[0] == 0
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    publish = outdir._publish

    def signalled(staging, target):
        os.kill(os.getpid(), sig)
        publish(staging, target)

    monkeypatch.setattr(outdir, "_publish", signalled)
    code, _, err = _main(capsys, "generate", model, "-o", out, *NEW_ARGS)
    assert (code, err) == (status, f"codesign: {line}\n")
    assert _snapshot(out) == designs["old"] and _beside(out) == []
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


# -- full disks and forbidden directories ---------------------------------------------------------

@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES])
def test_write_error_is_one_line_and_leaves_nothing(model, tmp_path, designs, capsys,
                                                    monkeypatch, code):
    out = tmp_path / "out"
    assert _main(capsys, "generate", model, "-o", out, *OLD_ARGS)[0] == 0
    write_text = Path.write_text

    def failing(self, *args, **kwargs):
        if ".stage-" in str(self) and self.name == "report.json":
            write_text(self, "{\n  \"codesign\"")    # a partial file first, as a full disk does
            raise OSError(code, os.strerror(code))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", failing)
    status, _, err = _main(capsys, "generate", model, "-o", out, *NEW_ARGS)
    assert (status, err) == (2, f"codesign: error: {out.resolve()}: {os.strerror(code)}\n")
    assert _snapshot(out) == designs["old"] and _beside(out) == []
    with pytest.raises(OSError):
        cli.main(["--debug", "generate", str(model), "-o", str(out), *NEW_ARGS])


def test_unwritable_verilog_cache_is_only_slower(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path))

    def full(*args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    # Only the cache's own os.replace fails (the Verilog backend may use the real one).
    monkeypatch.setattr(verilog, "os", SimpleNamespace(fdopen=os.fdopen, unlink=os.unlink,
                                                       replace=full))
    config = HwConfig(rows=2, cols=2, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=16,
                      prm_depth=2)
    assert verilog.npu_verilog(config) == generate_verilog(config)
    assert list((tmp_path / "verilog").iterdir()) == []     # no temporary file either


# -- damaged caches -------------------------------------------------------------------------------

def test_damaged_cached_verilog_is_emitted_afresh(model, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "out"
    assert _main(capsys, "generate", model, "-o", out, *NEW_ARGS)[0] == 0
    fresh = (out / "npu.v").read_bytes()
    (cached,) = (tmp_path / "cache" / "verilog").iterdir()
    whole = cached.read_bytes()
    cached.write_bytes(whole[: len(whole) // 2])        # truncated, as by a full disk
    assert _main(capsys, "generate", model, "-o", out, *NEW_ARGS)[0] == 0
    assert (out / "npu.v").read_bytes() == fresh
    assert cached.read_bytes() == whole


# -- child processes ------------------------------------------------------------------------------

#: A command that writes its process group to the file $1 names, then sleeps in two processes.
SLEEPERS = ["sh", "-c", 'cut -d" " -f5 /proc/$$/stat > "$1"; sleep 60 & sleep 60', "sh"]


def _group(path: Path) -> int:
    deadline = time.monotonic() + 30
    while not (path.exists() and path.read_text().strip()):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return int(path.read_text())


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
def test_timeout_kills_the_whole_group(tmp_path):
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        process.run([*SLEEPERS, str(tmp_path / "group")], timeout=0.5)
    assert time.monotonic() - start < 10
    assert not process.group_running(_group(tmp_path / "group"))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_children_die_with_a_sigkilled_parent(tmp_path):
    script = f"import sys; from codesign import process; process.run({SLEEPERS!r} + sys.argv[1:])"
    parent = subprocess.Popen([sys.executable, "-c", script, str(tmp_path / "group")], cwd=ROOT,
                              env=ENV)
    group = _group(tmp_path / "group")
    assert process.group_running(group)
    parent.kill()
    parent.wait()
    _assert_gone([group])


def _cmdline(proc: Path) -> str:
    with contextlib.suppress(OSError):
        return proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    return ""


def _assert_gone(groups, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while any(process.group_running(g) for g in groups):
        assert time.monotonic() < deadline, f"process groups {groups} outlived their parent"
        time.sleep(0.05)


# -- simulate: kills during the Verilator build and the run, a damaged cached binary --------------

def _descendant_groups(pid: int) -> set[int]:
    """Process groups of ``pid``'s descendants (the children run in groups of their own)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError):
            fields = stat.read_text().rpartition(")")[2].split()
            parents[int(stat.parent.name)] = (int(fields[1]), int(fields[2]))
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, (ppid, _) in parents.items() if ppid in frontier}
        found |= {parents[p][1] for p in frontier}
    return found - {os.getpgid(pid)}


def _simulate(outdir_: Path, batch: Path, cache: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "codesign.cli", "simulate", str(outdir_), "--input", str(batch)],
        cwd=ROOT, env={**USER_ENV, "CODESIGN_CACHE": str(cache)}, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(proc: subprocess.Popen, what) -> set[int]:
    """Wait until ``what(groups)`` holds of ``proc``'s children; returns their groups."""
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.communicate()
        groups = _descendant_groups(proc.pid)
        if what(groups):
            return groups
        assert time.monotonic() < deadline
        time.sleep(0.05)


def _running(name: str):
    def check(groups) -> bool:
        return any(_cmdline(stat.parent).split(" ")[0].endswith(name)
                   for stat in Path("/proc").glob("[0-9]*/stat")
                   if _pgrp(stat) in groups)
    return check


def _pgrp(stat: Path) -> int:
    with contextlib.suppress(OSError):
        return int(stat.read_text().rpartition(")")[2].split()[2])
    return -1


def _kill_simulate(proc, sig, groups) -> None:
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    if sig == signal.SIGTERM:
        assert (proc.returncode, err) == (143, "codesign: terminated\n")
    else:
        assert proc.returncode == -signal.SIGKILL
    _assert_gone(groups | {proc.pid})


@pytest.fixture(scope="module")
def cold(model, tmp_path_factory) -> tuple[Path, Path]:
    """A 2x2 design and a build cache of its own, empty: its first simulate builds (20-30 s)."""
    root = tmp_path_factory.mktemp("cold")
    assert cli.main(["generate", str(model), "-o", str(root / "out"), *NEW_ARGS]) == 0
    return root / "out", root / "cache"


def _inputs(path: Path, n: int) -> Path:
    import numpy as np

    rng = np.random.default_rng(n)
    np.save(path, rng.uniform(-1, 1, (n, 1, 3, 11, 11)).astype(np.float32))
    return path


@pytest.mark.verilator
def test_killed_simulate_leaves_no_process_and_no_build(cold, tmp_path):
    """SIGKILL and SIGTERM during the Verilator build (make and the compiler running), then
    during the run of the simulation binary."""
    out, cache = cold
    builds = cache / "verilator"
    one = _inputs(tmp_path / "one.npy", 1)
    for sig in (signal.SIGKILL, signal.SIGTERM):
        proc = _simulate(out, one, cache)
        groups = _wait_for(proc, _running("cc1plus"))
        time.sleep(random.Random(sig).uniform(0.0, 2.0))
        _kill_simulate(proc, sig, _descendant_groups(proc.pid) | groups)
        if sig == signal.SIGTERM:
            assert not list(builds.glob("*.tmp-*"))
    proc = _simulate(out, one, cache)
    assert proc.communicate(timeout=600)[0] and proc.returncode == 0
    assert not list(builds.glob("*.tmp-*"))             # the SIGKILLed build's is removed
    # A long batch keeps the simulation binary busy for seconds.
    many = _inputs(tmp_path / "many.npy", 1000)
    for sig in (signal.SIGKILL, signal.SIGTERM):
        proc = _simulate(out, many, cache)
        groups = _wait_for(proc, _running("tb_top"))
        time.sleep(random.Random(sig).uniform(0.0, 1.0))
        _kill_simulate(proc, sig, groups)


@pytest.mark.verilator
def test_damaged_cached_simulator_is_rebuilt(cold, tmp_path):
    out, cache = cold
    one = _inputs(tmp_path / "one.npy", 1)
    if not list((cache / "verilator").glob("*/tb_top")):    # run alone: build it first
        first = _simulate(out, one, cache)
        first.communicate(timeout=600)
        assert first.returncode == 0
    (binary,) = (cache / "verilator").glob("*/tb_top")
    binary.write_bytes(binary.read_bytes()[:4096])          # truncated, as by a full disk
    proc = _simulate(out, one, cache)
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr
    assert "match the golden model" in stdout
    assert binary.stat().st_size > 4096
