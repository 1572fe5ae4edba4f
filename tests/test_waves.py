"""``simulate --waves/--cycles/--trace`` (issue 17): an FST of the run from the traced build,
limited to a cycle window; the controller's dispatches from the RTL, at the timing model's
cycles; the fast build left as it is."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from codesign import cli
from codesign.design import Design
from codesign.isa import ENGINE, decode
from codesign.sim import runner
from codesign.timing import schedule

from .modelgen import ZOO, build, random_inputs


def _has_lz4_headers() -> bool:
    """Whether the C++ compiler finds lz4.h, which Verilator's FST writer includes."""
    probe = subprocess.run(["g++", "-E", "-x", "c++", "-"], input="#include <lz4.h>\n",
                           capture_output=True, text=True, check=False)
    return probe.returncode == 0


pytestmark = pytest.mark.verilator
#: The traced build of a 2x2 NPU takes one to three minutes on the 2-core machine, and needs
#: the lz4 headers (Debian: liblz4-dev), which a fresh machine lacks.
def traced_build(test):
    return pytest.mark.slow(pytest.mark.skipif(
        not _has_lz4_headers(), reason="the FST writer needs lz4.h (Debian: liblz4-dev)")(test))

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A small model on a 2x2 NPU, and a batch of two inputs."""
    tmp = tmp_path_factory.mktemp("waves")
    outdir = tmp / "d"
    assert cli.main(["generate", str(build(SMALL)), "-o", str(outdir), "--array", "2x2"]) == 0
    np.save(tmp / "x.npy", np.stack(random_inputs(SMALL, 2, seed=7)))
    return outdir, tmp / "x.npy"


def run(capsys, *argv) -> tuple[int, str, str]:
    code = cli.main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@traced_build
def test_trace_is_the_rtl_dispatch_at_the_timing_model_cycles(design, capsys, tmp_path):
    outdir, x = design
    code, out, _ = run(capsys, "simulate", outdir, "--input", x, "--trace", tmp_path / "t.txt")
    assert code == 0 and "bit-exactly" in out
    d = Design(outdir)
    model = schedule(d.program.insns, d.config)
    layers = {k: layer.name for layer in d.program.layers
              for k in range(layer.first_insn, layer.first_insn + layer.n_insns)}
    listing = {line[:5]: line for line in d.program.listing().splitlines() if line[:5].isdigit()}
    rows = [line.split("\t") for line in (tmp_path / "t.txt").read_text().splitlines()
            if not line.startswith("#")]
    for inference in ("0", "1"):
        mine = [r for r in rows if r[0] == inference]
        assert [int(r[1]) for r in mine] == model.starts        # every instruction, same cycle
        for k, (_, _, engine, text, layer) in enumerate(mine):
            assert text == listing[f"{k:05d}"]
            assert engine == ENGINE[decode(d.program.insns[k])[0]]
            assert layer == layers.get(k, "-")
    assert {r[2] for r in rows} >= {"dma", "matmul"}


def _cycles_dumped(path) -> list[int]:
    """The controller's cycle counter at every time step of the FST at ``path`` (read back
    with a real FST reader)."""
    pywellen = pytest.importorskip("pywellen", reason="pywellen reads FST files")
    waves = pywellen.Waveform(str(path))
    [counter] = [v for v in waves.all_vars() if v.full_name.endswith(".ctrl.cycles")]
    return [value for _, value in counter.tv]


@traced_build
def test_waves_whole_run_and_window(design, capsys, tmp_path):
    outdir, x = design
    d = Design(outdir)
    fast = runner.build(d.config, d.verilog)
    marker = (fast / "BUILD_COMPLETE").read_text()
    code, out, _ = run(capsys, "simulate", outdir, "--input", x, "--waves", tmp_path / "all.fst")
    assert code == 0
    cycles = int(out.split("inference 0: ")[1].split()[0])
    whole = _cycles_dumped(tmp_path / "all.fst")
    assert set(whole) == set(range(cycles + 1))                 # every cycle of both runs
    first, last = 1000, 1100
    code, _, _ = run(capsys, "simulate", outdir, "--input", x, "--waves", tmp_path / "w.fst",
                     "--cycles", f"{first}:{last}")
    assert code == 0
    assert _cycles_dumped(tmp_path / "w.fst") == 2 * list(range(first, last))
    assert (tmp_path / "w.fst").stat().st_size < (tmp_path / "all.fst").stat().st_size / 4
    # The traced build is another entry; the fast one is untouched.
    assert (fast / "BUILD_COMPLETE").read_text() == marker
    traced = runner.build(d.config, d.verilog, traced=True)
    assert traced != fast and traced.name.endswith("-trace")
    assert not [p for p in outdir.iterdir() if p.name.startswith("sim-failed")]


def test_bad_cycle_window_is_refused(capsys, tmp_path):
    """Checked first, before the design directory is read."""
    for argv, match in ((["--cycles", "5:9"], "give --waves"),
                        (["--waves", tmp_path / "w.fst", "--cycles", "9:5"], "0 <= A < B"),
                        (["--waves", tmp_path / "w.fst", "--cycles", "x"], "A:B")):
        code, _, err = run(capsys, "simulate", tmp_path / "d", "--input", tmp_path / "x.npy",
                           *argv)
        assert code == 2 and match in err and err.count("\n") == 1, err
    assert not (tmp_path / "w.fst").exists()
