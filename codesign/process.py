"""Child processes that never outlive the command, and signals that end it cleanly.

Every tool codesign starts (Verilator, make and the C++ compiler, the simulation binary, yosys,
nextpnr) runs through :func:`run`: in a process group of its own, killed as a whole when the
command is interrupted or times out. On Linux the group's leader is a one-line shell script that
the kernel signals when codesign dies, even by SIGKILL (``PR_SET_PDEATHSIG``), and which then
kills its group: a direct child alone could be signalled that way, but not the compiler
processes that make starts.

:func:`handling_signals` turns SIGTERM and SIGINT into exceptions (:class:`Terminated`,
:class:`KeyboardInterrupt`) so that ``finally`` blocks remove what a command was writing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["Terminated", "handling_signals", "signals_held", "exit_status", "run",
           "kill_children", "group_running"]

#: The signals that end a command cleanly.
_SIGNALS = (signal.SIGINT, signal.SIGTERM)

# The group leader on Linux: it dies with its parent's SIGTERM from the kernel, killing the
# group with it. The command runs in the background because a shell runs traps only between
# commands, and `wait` returns as soon as a trapped signal arrives.
_LEADER = 'trap "kill -KILL 0" TERM; "$@" & wait $!'
_PR_SET_PDEATHSIG = 1

#: Process groups of the running children (group id = leader's pid); a set so that the signal
#: handler, which runs in the main thread, can kill those that worker threads started.
_groups: set[int] = set()


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived. A :class:`KeyboardInterrupt` so that it unwinds everything a Ctrl-C
    does: ``except Exception`` clauses let it through, cleanup code treats it alike."""


@functools.cache
def _prctl():
    """libc's ``prctl``, or None where there is none (not Linux)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


def _die_with(parent: int, prctl) -> None:
    """In the child between fork and exec: ask for SIGTERM when ``parent`` dies, and die now if
    it already has (it may have died before the request, which would then never fire)."""
    prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGKILL)


def _popen(cmd: Sequence[str], **kwargs) -> subprocess.Popen:
    prctl = _prctl()
    if prctl is None:
        return subprocess.Popen(cmd, start_new_session=True, **kwargs)
    parent = os.getpid()
    return subprocess.Popen(["/bin/sh", "-c", _LEADER, "sh", *cmd], start_new_session=True,
                            preexec_fn=functools.partial(_die_with, parent, prctl), **kwargs)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def _await_group(pgid: int, timeout: float = 5.0) -> None:
    """Wait until no process of the killed group ``pgid`` runs any more, so that the caller can
    remove the files they were writing."""
    deadline = time.monotonic() + timeout
    while group_running(pgid) and time.monotonic() < deadline:
        time.sleep(0.01)


def group_running(pgid: int) -> bool:
    """Whether a process of group ``pgid`` is running. Zombies do not count on Linux: init may
    take a while to reap the orphans of a killed group."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:         # the process has gone meanwhile
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def kill_children() -> None:
    """Kill every process group :func:`run` has started and not yet seen end."""
    for pgid in list(_groups):
        _kill_group(pgid)


def run(cmd: Sequence[str], *, timeout: float | None = None, capture_output: bool = False,
        **kwargs) -> subprocess.CompletedProcess:
    """:func:`subprocess.run` (without ``check``) in a process group of its own.

    The whole group is killed if the timeout expires (:class:`subprocess.TimeoutExpired` is
    raised as usual) or the caller is interrupted, and on Linux if this process dies. On Linux
    the command's standard input is empty (it runs as a shell's background job), and a command
    that a signal killed is reported with the shell's status, 128 + the signal number.
    """
    if capture_output:
        kwargs.update(stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    with _popen(cmd, **kwargs) as proc:
        _groups.add(proc.pid)
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            _await_group(proc.pid)
            raise
        finally:
            _groups.discard(proc.pid)
    return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)


def _on_signal(signum: int, frame) -> None:
    # Later signals are ignored: the first one's cleanup must not be cut short. Children are
    # killed here, not only as the exception unwinds, because threads waiting for theirs
    # (synth's placer seeds) would otherwise keep the main thread waiting at their join.
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    kill_children()
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Defer SIGINT and SIGTERM to the end of the block (SIGKILL cannot be deferred)."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


@contextlib.contextmanager
def handling_signals() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated` and SIGINT :class:`KeyboardInterrupt` inside the
    block; the previous handlers are restored after it. A no-op outside the main thread, where
    Python cannot install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _on_signal) for sig in _SIGNALS}
    try:
        yield
    finally:
        # A signal arriving meanwhile goes to the restored handlers, not to ours half-removed.
        with signals_held():
            for sig, handler in previous.items():
                # None: the handler was not installed from Python; the default is the best guess.
                signal.signal(sig, signal.SIG_DFL if handler is None else handler)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The conventional exit status after ``interrupt``: 128 + the signal number."""
    return 128 + (signal.SIGTERM if isinstance(interrupt, Terminated) else signal.SIGINT)
