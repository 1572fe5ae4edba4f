"""What the AXI cocotb tests share: cached Verilator builds of their test benches, and two
workarounds for cocotbext-axi under cocotb 2.1 on Verilator.

:func:`build_tb` works like :func:`codesign.sim.runner.build` for ``tb_top``: one build per
content, kept under ``$CODESIGN_CACHE/verilator/<top>-<hash>``, made in a temporary directory and
renamed into place when complete, so a second run of the tests (or a concurrent one) does not
rebuild.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import cocotb
from cocotb.triggers import RisingEdge

from codesign.sim import runner

__all__ = ["build_tb", "ROOT", "python_path", "clock_keepalive", "quiet_cocotbext"]

#: The repository root, put on the simulator's PYTHONPATH so it imports ``tests.sim.*``.
ROOT = Path(__file__).resolve().parent.parent.parent
_COMPLETE = "BUILD_COMPLETE"


def python_path() -> str:
    """PYTHONPATH for a simulator that imports a test module of this package."""
    return os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))


def build_tb(top: str, sources: dict[str, str], parameters: dict[str, int], *,
             waive: tuple[tuple[str, str], ...] = ()) -> Path:
    """The build directory of test bench ``top`` from ``sources`` (file name -> Verilog text).

    Only ``top``'s signals are public to cocotb; ``waive`` holds ``(rule, file name)`` lint
    waivers (for Amaranth's generated Verilog).
    """
    vlt = "`verilator_config\n" + "".join(
        f'lint_off -rule {rule} -file "*/{name}"\n' for rule, name in waive
    ) + f'public_flat_rw -module "{top}" -var "*"\n'
    key = hashlib.sha256(json.dumps([
        sources, vlt, parameters, runner._VERILATOR_FLAGS, runner._MAKE_FLAGS,
        runner._verilator_version(), cocotb.__version__,
        str(Path(cocotb.__file__).resolve().parent),
    ], sort_keys=True).encode()).hexdigest()[:24]
    root = runner.cache_dir() / "verilator"
    final = root / f"{top}-{key}"
    if (final / _COMPLETE).exists():
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{top}-{key}.tmp-", dir=root))
    try:
        (tmp / "tb.vlt").write_text(vlt)
        for name, text in sources.items():
            (tmp / name).write_text(text)
        verilator = runner._Verilator(timeout=600, extra_env={"TMPDIR": str(tmp)})
        verilator.build(sources=[tmp / "tb.vlt", *(tmp / name for name in sources)],
                        hdl_toplevel=top, parameters=parameters,
                        build_args=list(runner._VERILATOR_FLAGS), build_dir=tmp,
                        timescale=("1ns", "1ps"), log_file=tmp / "build.log")
        (tmp / _COMPLETE).write_text("")
        if not final.exists():          # a concurrent run may have finished first
            os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


async def clock_keepalive(dut) -> None:
    """Wait on ``dut.clk`` forever (start it with ``cocotb.start_soon``).

    A workaround: with the clock generated inside the Verilog (``--timing``), cocotb 2.1 on
    Verilator 5.049 stopped waking cocotbext-axi's coroutines after some hundred cycles in which
    none of them waited on the clock (the simulation ran on, the transfers hung; reproduced with
    test_axi_mem's ``random_traffic``); one coroutine always waiting on RisingEdge prevents it.
    """
    while True:
        await RisingEdge(dut.clk)


def quiet_cocotbext() -> None:
    """Ignore the DeprecationWarnings of cocotbext-axi's use of cocotb 1 APIs, and only those
    (the simulator inherits PYTHONWARNINGS=error from the test run)."""
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"cocotbext\.")
