"""A pytest helper: a generated NPU inside the user's own cocotb test (docs/integration.md).

:func:`run_cocotb` builds a design directory's ``npu.v`` with the user's Verilog (their SoC, or
nothing: ``npu_top`` itself as the top) under Verilator, cached like our own builds
(:func:`codesign.sim.runner.build`), and runs their cocotb test module on it; the test finds the
design directory in ``$CODESIGN_DESIGN`` and drives the NPU with :mod:`codesign.sim.components`.
A failing cocotb test fails the calling pytest test with the end of the simulation log.
"""

from __future__ import annotations

import os
import sys
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path

from ..design import Design
from .runner import Bench, _tail, _Verilator, build

__all__ = ["DESIGN_ENV", "run_cocotb"]

#: The environment variable that names the design directory inside the cocotb test.
DESIGN_ENV = "CODESIGN_DESIGN"


def run_cocotb(design_dir: str | Path, test_module: str, work_dir: str | Path, *,
               toplevel: str = "npu_top", sources: Sequence[str | Path] = (),
               python_path: Sequence[str | Path] = (), env: dict[str, str] | None = None,
               testcase: str | None = None, timeout: float | None = 1800) -> Path:
    """Run cocotb ``test_module`` on ``design_dir``'s NPU (``toplevel`` from ``sources`` around
    it, or ``npu_top`` alone).

    Parameters
    ----------
    design_dir
        A directory ``codesign generate`` wrote.
    test_module
        The cocotb test module's name, importable from ``python_path``.
    work_dir
        Where the run's files go (its log: ``sim.log``; cocotb's ``results.xml``).
    sources
        The user's Verilog files, their top module's last.
    testcase
        Run only this test of the module (default: all).

    Returns
    -------
    Path
        The simulation log.

    Raises
    ------
    AssertionError
        If any cocotb test fails (with the log's tail).
    """
    design = Design(Path(design_dir))
    bench = Bench(tuple(Path(s).resolve() for s in sources), toplevel)
    build_dir = build(design.config, design.verilog, bench=bench)
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    log = work / "sim.log"
    results = work / "results.xml"
    extra = {DESIGN_ENV: str(Path(design_dir).resolve()), **(env or {}),
             "PYTHONPATH": os.pathsep.join([*(str(Path(p).resolve()) for p in python_path),
                                            *sys.path])}
    runner = _Verilator(timeout=timeout, extra_env=extra)
    try:
        runner.test(test_module=test_module, hdl_toplevel=toplevel, hdl_toplevel_lang="verilog",
                    build_dir=build_dir, test_dir=work, results_xml=str(results), log_file=log,
                    testcase=testcase)
    except (RuntimeError, SystemExit) as exc:
        raise AssertionError(f"cocotb test {test_module} failed ({exc!r}); log tail:\n"
                             f"{_tail(log)}") from None
    failures = ElementTree.parse(results).getroot().iter("failure")
    if any(True for _ in failures):
        raise AssertionError(f"cocotb test {test_module} failed; log tail:\n{_tail(log)}")
    return log
