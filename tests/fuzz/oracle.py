"""Run one mutant through ``codesign generate`` and classify what happened.

The categories (:data:`CATEGORIES`):

``refused``
    exit 2, exactly one stderr line starting ``codesign: error: ``, no OUTDIR and nothing else
    left beside it, within :attr:`Limits.seconds` and :attr:`Limits.megabytes`.
``slow_refusal``
    a clean refusal that took longer or more memory than that (issue 14: huge declared shapes
    are refused in well under a second and 200 MB).
``dirty_refusal``
    a one-line refusal that left OUTDIR or a hidden staging/lock entry behind.
``accepted_ok``
    exit 0, OUTDIR complete and readable, the instruction-level model of the compiled program
    equal to the golden model on seeded random inputs, and every golden op within its
    documented bound of onnxruntime's kernel for it (plus, for a sample, ``codesign verify``
    on the RTL exits 0: :func:`rtl_verify`).
``accepted_unwitnessed``
    as ``accepted_ok``, but onnxruntime could not run some op alone, so it is not checked.
``accepted_wrong``
    accepted, and the OUTDIR is incomplete, or the ISA model differs from the golden model, or
    an op is outside its bound, or the RTL ``verify`` fails.
``traceback``
    an exception escaped ``cli.main`` (or a check of an accepted model), an exit code other than
    0 and 2, a refusal that is not one ``codesign: error:`` line, or stderr output on success.
``memory``
    ``MemoryError`` under the worker's address-space limit.
``hang``, ``crash``
    no answer within the case's timeout; the worker process died (set by the pool,
    :mod:`tests.fuzz.worker`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

__all__ = ["CATEGORIES", "FAILING", "Limits", "Outcome", "run_case", "rtl_verify"]

CATEGORIES = ("refused", "accepted_ok", "accepted_unwitnessed", "slow_refusal", "dirty_refusal",
              "traceback", "accepted_wrong", "memory", "hang", "crash")
#: The categories a fuzz run must not produce.
FAILING = ("slow_refusal", "dirty_refusal", "traceback", "accepted_wrong", "memory", "hang",
           "crash")

_REPO = Path(__file__).resolve().parents[2]
_PACKAGE = _REPO / "codesign"
#: The array every case is generated for (small: the Verilator build is shared and quick).
ARRAY = "4x4"
#: Files a design directory must hold after ``generate``.
_DESIGN_FILES = ("npu.v", "config.json", "report.json", "report.txt", "model.onnx",
                 "symbols.json", "program.bin", "program.lst", "memory.bin")


@dataclasses.dataclass(frozen=True)
class Limits:
    """Cost above which a refusal is ``slow_refusal``: wall seconds, and megabytes of peak
    resident memory above the worker's at the start of the case."""
    seconds: float = 1.0
    megabytes: float = 200.0


@dataclasses.dataclass
class Outcome:
    """What one case did.

    Attributes
    ----------
    category
        One of :data:`CATEGORIES`.
    detail
        One line: the refusal message, the exception, or what differs.
    where
        For an exception, ``file:line (function)`` of its innermost frame in ``codesign/``
        (else its innermost frame): the root cause's address.
    seconds, megabytes
        ``generate``'s wall time and peak resident memory above the start.
    trace
        The full traceback of an exception (printed when a case is replayed).
    """
    category: str
    detail: str = ""
    where: str = ""
    seconds: float = 0.0
    megabytes: float = 0.0
    trace: str = ""


# ------------------------------------------------------------------------------------------------
# Measuring and capturing

def _status(key: str) -> int:
    """A ``/proc/self/status`` field in kB (0 where there is no procfs)."""
    with contextlib.suppress(OSError), open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


@contextlib.contextmanager
def _peak_memory() -> Iterator[Callable[[], float]]:
    """Measure the peak resident memory of the block above its start, in MB (Linux resets the
    high-water mark on writing 5 to ``clear_refs``)."""
    with contextlib.suppress(OSError), open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    start = _status("VmRSS")
    peak = [0.0]
    try:
        yield lambda: peak[0]
    finally:
        peak[0] = max(0, _status("VmHWM") - start) / 1024


def _where(err: BaseException) -> str:
    """The innermost frame of ``err`` in the codesign package, else its innermost frame."""
    frames = traceback.extract_tb(err.__traceback__)
    ours = [f for f in frames if Path(f.filename).resolve().is_relative_to(_PACKAGE)]
    frame = (ours or frames)[-1] if frames else None
    if frame is None:
        return ""
    path = Path(frame.filename).resolve()
    shown = path.relative_to(_REPO) if path.is_relative_to(_REPO) else path
    return f"{shown}:{frame.lineno} ({frame.name})"


def _one_line(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _exception(category: str, err: BaseException, stage: str) -> Outcome:
    return Outcome(category, _one_line(f"{stage}: {type(err).__name__}: {err}"), _where(err),
                   trace="".join(traceback.format_exception(err)))


@dataclasses.dataclass
class _Run:
    """One in-process ``cli.main`` call."""
    rc: int | None
    stdout: str
    stderr: str
    error: BaseException | None
    seconds: float
    megabytes: float


def _cli(argv: list[str]) -> _Run:
    """``codesign.cli.main(argv)`` with stdout and stderr captured; exceptions caught."""
    from codesign import cli

    out, err = io.StringIO(), io.StringIO()
    rc, error = None, None
    start = time.perf_counter()
    with _peak_memory() as peak, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            rc = cli.main(argv)
        except (Exception, SystemExit) as e:   # SystemExit: argparse's own exits
            error = e
    return _Run(rc, out.getvalue(), err.getvalue(), error, time.perf_counter() - start, peak())


# ------------------------------------------------------------------------------------------------
# Classifying

def _leftovers(outdir: Path, keep: bool) -> list[str]:
    """Entries beside ``outdir`` in its (otherwise empty) parent, and ``outdir`` itself unless
    ``keep``."""
    return sorted(p.name for p in outdir.parent.iterdir() if not (keep and p == outdir))


def _refusal(run: _Run, outdir: Path, limits: Limits) -> Outcome:
    lines = run.stderr.splitlines()
    cost = dict(seconds=run.seconds, megabytes=run.megabytes)
    if len(lines) != 1 or not lines[0].startswith("codesign: error: "):
        return Outcome("traceback", _one_line(f"exit 2 with stderr {run.stderr!r}"), **cost)
    message = lines[0].removeprefix("codesign: error: ")
    left = _leftovers(outdir, keep=False)
    if left:
        return Outcome("dirty_refusal", _one_line(f"left {left}: {message}"), **cost)
    if run.seconds > limits.seconds or run.megabytes > limits.megabytes:
        return Outcome("slow_refusal", _one_line(
            f"{run.seconds:.2f} s, {run.megabytes:.0f} MB: {message}"), **cost)
    return Outcome("refused", _one_line(message), **cost)


def _incomplete(outdir: Path) -> str | None:
    """Why ``outdir`` is not a complete, readable design directory (None if it is)."""
    from codesign.design import Design

    left = _leftovers(outdir, keep=True)
    if left:
        return f"left {left} beside OUTDIR"
    missing = [f for f in _DESIGN_FILES if not (outdir / f).is_file()]
    if missing:
        return f"OUTDIR lacks {missing}"
    try:
        Design(outdir)
    except Exception as e:          # any error reading back what generate wrote is the finding
        return f"OUTDIR unreadable: {type(e).__name__}: {e}"
    return None


def _inputs(graph, count: int, seed: int) -> tuple[list[list[np.ndarray]], list]:
    """Seeded random inputs for every graph input: the integer HWC batch and the ONNX values."""
    from types import SimpleNamespace

    from codesign.cli import _random_inputs

    per_input = [_random_inputs(SimpleNamespace(inputs=[b]), count, seed + k)
                 for k, b in enumerate(graph.inputs)]
    raw = [list(values) for values in zip(*per_input, strict=True)]
    batch = [[b.quantize(x) for b, x in zip(graph.inputs, xs, strict=True)] for xs in raw]
    return batch, raw


def _differences(graph, isa, golden) -> int:
    """Output elements where the ISA model and the golden model differ, over the batch."""
    bad = 0
    for outs, values in zip(isa.outputs, golden, strict=True):
        for k, binding in enumerate(graph.outputs):
            bad += int(np.count_nonzero(np.asarray(outs[k]).astype(np.int64)
                                        != values[binding.tensor.name].astype(np.int64)))
    return bad


def _config(model: Path):
    from codesign import cli
    return cli._config_from_args(cli._parser().parse_args(
        ["generate", str(model), "--array", ARRAY]))


def _check_accepted(model: Path, count: int, seed: int) -> Outcome:
    """The ISA model against the golden model, and each golden op against onnxruntime."""
    from codesign import reference
    from codesign.compiler import compile_graph
    from codesign.driver import run_isasim
    from codesign.frontend import load_model
    from codesign.opwitness import op_witness
    from codesign.perlayer import check_ops

    graph = load_model(model)
    batch, _ = _inputs(graph, count, seed)
    isa = run_isasim(compile_graph(graph, _config(model)), batch)
    golden = [reference.run(graph, inputs) for inputs in batch]
    bad = _differences(graph, isa, golden)
    if bad:
        return Outcome("accepted_wrong", f"ISA model differs from the golden model in {bad} "
                                         f"output element(s) over {count} input(s)")
    witness = op_witness(model, graph, golden)
    checks = check_ops(graph, golden, witness.outputs)
    off = [c for c in checks if c.compared and not c.within_bound]
    if off:
        return Outcome("accepted_wrong", _one_line("; ".join(
            f"op {c.layer} ({c.kind}) {c.max_lsb} LSB off onnxruntime (bound {c.bound})"
            for c in off)))
    unchecked = [c.layer for c in checks if not c.compared]
    if unchecked:
        return Outcome("accepted_unwitnessed", _one_line(
            f"onnxruntime cannot run {unchecked} alone: {witness.witness.note}"))
    return Outcome("accepted_ok", f"{len(checks)} op(s) within bound, ISA = golden")


def run_case(model: Path, workdir: Path, count: int, seed: int, limits: Limits) -> Outcome:
    """Generate ``model`` into ``workdir/out/design`` and classify the result.

    Parameters
    ----------
    model
        The mutant's path.
    workdir
        A fresh directory for this case (``out/`` is created in it).
    count, seed
        Random inputs an accepted model is checked on.
    limits
        Cost above which a refusal is ``slow_refusal``.

    Returns
    -------
    Outcome
    """
    outdir = workdir / "out" / "design"
    outdir.parent.mkdir(parents=True)
    run = _cli(["generate", str(model), "-o", str(outdir), "--array", ARRAY])
    cost = dict(seconds=run.seconds, megabytes=run.megabytes)
    if isinstance(run.error, MemoryError):
        return dataclasses.replace(_exception("memory", run.error, "generate"), **cost)
    if run.error is not None:
        return dataclasses.replace(_exception("traceback", run.error, "generate"), **cost)
    if run.rc == 2:
        return _refusal(run, outdir, limits)
    if run.rc != 0:
        return Outcome("traceback", _one_line(f"exit {run.rc}: {run.stderr}"), **cost)
    if run.stderr:
        return Outcome("traceback", _one_line(f"exit 0 with stderr {run.stderr!r}"), **cost)
    problem = _incomplete(outdir)
    if problem is not None:
        return Outcome("accepted_wrong", _one_line(problem), **cost)
    try:
        outcome = _check_accepted(model, count, seed)
    except MemoryError as e:
        outcome = _exception("memory", e, "after acceptance")
    except Exception as e:          # an accepted model the tool then cannot handle
        outcome = _exception("traceback", e, "after acceptance")
    return dataclasses.replace(outcome, **cost)


def rtl_verify(model: Path, workdir: Path, count: int = 2) -> Outcome:
    """``codesign verify`` of an accepted model on the RTL: ``accepted_ok`` when it exits 0."""
    outdir = workdir / "rtl" / "design"
    outdir.parent.mkdir(parents=True)
    run = _cli(["verify", str(model), "-o", str(outdir), "--array", ARRAY,
                "--count", str(count)])
    if run.error is not None:
        return _exception("traceback", run.error, "verify")
    if run.rc == 0:
        return Outcome("accepted_ok", "RTL verify PASS", seconds=run.seconds)
    verdict = [line for line in run.stdout.splitlines() if line.startswith(("FAIL", "op "))]
    return Outcome("accepted_wrong" if run.rc == 1 else "traceback",
                   _one_line(f"verify exit {run.rc}: {' | '.join(verdict)} {run.stderr}"),
                   seconds=run.seconds)
