"""Progress on the terminal for the steps that take more than a few seconds.

Every long step (Verilog emission, a Verilator build, a simulated batch, an exploration, a
synthesis seed) runs inside :func:`step`. On a terminal it shows a spinner, or a bar when the
step knows how many parts it has, on stderr (rich); when stderr is not a terminal, or after
:func:`set_quiet`, nothing is drawn and :func:`step` costs nothing. Steps nest: an inner step
is another line under the outer one, removed when it ends.

    with step("exploring DS-CNN", total=len(configs)) as advance:
        for config in configs:
            ...
            advance()
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator

__all__ = ["step", "set_quiet", "enabled"]

_quiet = False
_lock = threading.Lock()
_live = None            # the rich Progress shown while at least one step is open
_open = 0               # how many steps are open


def set_quiet(quiet: bool = True) -> None:
    """Silence (or restore) every progress display of this process (``--quiet``)."""
    global _quiet
    _quiet = quiet


def enabled() -> bool:
    """Whether progress is drawn: stderr is a terminal, not ``--quiet``, and ``TERM`` is not
    ``dumb``."""
    return (not _quiet and sys.stderr.isatty()
            and os.environ.get("TERM", "") != "dumb")


def _nothing(advance: int = 1) -> None:
    pass


@contextlib.contextmanager
def step(description: str, total: int | None = None) -> Iterator[Callable[[int], None]]:
    """Show ``description`` while the body runs; yields ``advance(n=1)``, which moves the bar
    by ``n`` of ``total`` parts (without ``total`` a spinner and the elapsed time; ``advance``
    does nothing). Safe to call from several threads."""
    if not enabled():
        yield _nothing
        return
    global _live, _open
    with _lock:
        if _live is None:
            _live = _new_display()
            _live.start()
        progress = _live
        _open += 1
        task = progress.add_task(description, total=total)

    def advance(n: int = 1) -> None:
        progress.advance(task, n)

    try:
        yield advance
    finally:
        with _lock:
            progress.remove_task(task)
            _open -= 1
            if _open == 0:
                progress.stop()
                _live = None


def _new_display():
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                    MofNCompleteColumn(), TimeElapsedColumn(),
                    console=Console(stderr=True), transient=True)
