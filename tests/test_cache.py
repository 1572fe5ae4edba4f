"""Caches that travel (issue 17): a Verilator build is keyed by content only and runs from any
environment with the same Verilator and cocotb, from wherever the cache directory is."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from codesign import cli
from codesign.design import Design
from codesign.sim import runner

from .modelgen import ZOO, build, random_inputs

pytestmark = pytest.mark.verilator

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]
ROOT = Path(__file__).resolve().parent.parent


def _alternative_cocotb(where: Path) -> Path:
    """A copy of cocotb (with its shared libraries) at another path: what another virtual
    environment holds. Returns the directory to put first on PYTHONPATH."""
    import cocotb
    site = Path(cocotb.__file__).resolve().parent.parent
    for package in ("cocotb", "cocotb_tools", "pygpi"):
        shutil.copytree(site / package, where / package,
                        ignore=shutil.ignore_patterns("__pycache__"))
    return where


def test_key_holds_no_path(tmp_path):
    """The key is the same in an environment whose cocotb lives elsewhere (another process
    importing the copy), and differs for the traced build."""
    design_text = "module npu_top; endmodule\n"
    config = cli.DEFAULT_CONFIG
    key = runner._build_key(config, design_text, runner.bench_for(config))
    alt = _alternative_cocotb(tmp_path / "env")
    script = ("import sys, cocotb; from codesign import cli; from codesign.sim import runner; "
              "c = cli.DEFAULT_CONFIG; print(cocotb.__file__); "
              "print(runner._build_key(c, sys.argv[1], runner.bench_for(c)))")
    out = subprocess.run([sys.executable, "-c", script, design_text], cwd=ROOT, check=True,
                         capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(alt)}).stdout.split()
    assert out[0].startswith(str(alt))
    assert out[1] == key
    assert runner._build_key(config, design_text, runner.bench_for(config), traced=True) != key


def test_cached_build_runs_from_another_environment_and_place(tmp_path):
    """A build copied to another cache directory is used there (no rebuild) by a process whose
    cocotb is at another path, and the simulation passes; the binary has no run path into the
    environment that built it."""
    outdir = tmp_path / "d"
    assert cli.main(["generate", str(build(SMALL)), "-o", str(outdir)]) == 0
    design = Design(outdir)
    entry = runner.build(design.config, design.verilog)     # the suite's shared build
    dynamic = subprocess.run(["readelf", "-d", str(entry / "tb_top")], capture_output=True,
                             text=True)
    if dynamic.returncode == 0:
        assert "RPATH" not in dynamic.stdout and "RUNPATH" not in dynamic.stdout
    assert sorted(p.name for p in entry.iterdir()) == ["BUILD_COMPLETE", "build.log", "src",
                                                      "tb_top"]
    moved = tmp_path / "elsewhere" / "verilator" / entry.name
    shutil.copytree(entry, moved)
    np.save(tmp_path / "x.npy", random_inputs(SMALL, 1, seed=3)[0])
    alt = _alternative_cocotb(tmp_path / "env")
    script = ("import sys, cocotb; from codesign import cli; from codesign.sim import runner\n"
              "def rebuild(*args, **kwargs): raise AssertionError('rebuilt')\n"
              "runner._build_into = rebuild\n"
              "print(cocotb.__file__)\n"
              "sys.exit(cli.main(sys.argv[1:]))\n")
    run = subprocess.run([sys.executable, "-c", script, "simulate", str(outdir), "--input",
                          str(tmp_path / "x.npy")], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(alt),
                              runner.CACHE_ENV: str(tmp_path / "elsewhere")})
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith(str(alt)) and "bit-exactly" in run.stdout
    assert sorted(p.name for p in moved.parent.iterdir()
                  if not p.name.endswith(".lock")) == [entry.name]


@pytest.mark.slow
def test_killed_build_leaves_nothing_and_the_next_builds(tmp_path):
    """A build process killed (SIGKILL) in mid-compile: the next call builds cleanly and the
    killed build's temporary directory is gone."""
    from .sim.test_runner import CONFIG, standin_verilog
    source = tmp_path / "npu_top.v"
    source.write_text(standin_verilog(CONFIG) + f"// killed {time.time_ns()}\n")
    cache = tmp_path / "cache"
    script = ("import sys; from pathlib import Path; from codesign.sim import runner; "
              "from tests.sim.test_runner import CONFIG; "
              "runner.build(CONFIG, Path(sys.argv[1]).read_text(), cache_root=Path(sys.argv[2]))")
    proc = subprocess.Popen([sys.executable, "-c", script, str(source), str(cache)], cwd=ROOT)
    deadline = time.monotonic() + 300
    # Mid-compile: the C++ compiler has written an object file into the temporary directory.
    while not list(cache.glob("verilator/*.tmp-*/*.o")):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(1)           # its compilers die with it (codesign.process), a moment later
    assert list(cache.glob("verilator/*.tmp-*"))            # left behind by the killed build
    entry = runner.build(CONFIG, source.read_text(), cache_root=cache)
    assert runner._is_complete(entry, "tb_top")
    assert list(cache.glob("verilator/*.tmp-*")) == []
