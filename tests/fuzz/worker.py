"""Worker processes that run fuzz cases, and the pool that feeds them.

A worker imports codesign, torch and onnxruntime once, limits its own address space
(``RLIMIT_AS``) and then runs the cases it reads from stdin, one JSON line each, answering each
with one JSON line (an :class:`~tests.fuzz.oracle.Outcome`). Its fds 1 and 2 point at a log file
so that nothing codesign or its child processes print can corrupt the answers, which go to a
private copy of the original stdout.

The pool (:class:`Pool`) keeps ``jobs`` workers busy. A worker that does not answer within the
case's timeout is killed (``hang``); one that dies is reported (``crash``; ``memory`` when its
log ends in a ``MemoryError``); either is replaced by a fresh one.

Run as ``python -m tests.fuzz.worker --mem-limit BYTES`` from the repository root.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from .oracle import Limits, Outcome

__all__ = ["Pool", "Request", "MEM_LIMIT"]

_REPO = Path(__file__).resolve().parents[2]
#: Address-space limit of a worker: far above what any bundled model needs (about 1 GB with
#: torch and onnxruntime loaded), far below the machine.
MEM_LIMIT = 3 * 2 ** 30
#: Seconds a fresh worker may take to import everything and say it is ready.
_START_TIMEOUT = 120.0


@dataclasses.dataclass(frozen=True)
class Request:
    """One case for a worker: the mutant's path, a fresh directory, the random inputs, the
    refusal limits, whether to run ``verify`` on the RTL instead, and the timeout."""
    model: str
    workdir: str
    count: int
    seed: int
    limits: Limits
    rtl: bool = False
    timeout: float = 60.0

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))


# ------------------------------------------------------------------------------------------------
# The worker process

def _serve(answers) -> None:
    from .oracle import rtl_verify, run_case

    for line in sys.stdin:
        fields = json.loads(line)
        fields["limits"] = Limits(**fields["limits"])
        req = Request(**fields)
        if req.rtl:
            outcome = rtl_verify(Path(req.model), Path(req.workdir))
        else:
            outcome = run_case(Path(req.model), Path(req.workdir), req.count, req.seed,
                               req.limits)
        answers.write(json.dumps(dataclasses.asdict(outcome)) + "\n")
        answers.flush()


def main(argv: list[str] | None = None) -> None:
    """The worker's entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mem-limit", type=int, default=MEM_LIMIT)
    args = parser.parse_args(argv)
    answers = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)               # the pool points fd 2 at the worker's log
    # Loaded before the limit: what every case shares is not the case's memory.
    import onnxruntime  # noqa: F401
    import torch

    import codesign.cli  # noqa: F401
    from codesign import compiler, driver, opwitness, reference  # noqa: F401
    from codesign.frontend import load_model  # noqa: F401

    torch.set_num_threads(1)    # the pool runs one worker per core
    resource.setrlimit(resource.RLIMIT_AS, (args.mem_limit, resource.RLIM_INFINITY))
    answers.write("ready\n")
    answers.flush()
    _serve(answers)


# ------------------------------------------------------------------------------------------------
# The pool

class _Worker:
    """One worker process and the case it is running."""

    def __init__(self, mem_limit: int, log: Path):
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="error")
        self.log = log
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.fuzz.worker", "--mem-limit", str(mem_limit)],
                cwd=_REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, bufsize=1)
        self.ready = False
        self.key: object = None
        self.deadline = time.monotonic() + _START_TIMEOUT

    def send(self, key: object, req: Request) -> None:
        self.key = key
        self.deadline = time.monotonic() + req.timeout
        assert self.proc.stdin is not None
        self.proc.stdin.write(req.to_json() + "\n")
        self.proc.stdin.flush()

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                pipe.close()

    def death(self) -> Outcome:
        """The outcome of the case it was running when it died."""
        self.kill()
        tail = self.log.read_text(errors="replace").splitlines()[-5:] if self.log.exists() else []
        status = self.proc.returncode
        why = f"signal {-status}" if status < 0 else f"exit {status}"
        category = "memory" if any("MemoryError" in line for line in tail) else "crash"
        return Outcome(category, f"worker died ({why}): {' | '.join(tail)[-300:]}")


class Pool:
    """``jobs`` workers running cases; answers come back as cases finish.

    Parameters
    ----------
    jobs
        Number of worker processes.
    log_dir
        Where each worker's stdout/stderr log goes.
    mem_limit
        Each worker's address-space limit in bytes.
    """

    def __init__(self, jobs: int, log_dir: Path, mem_limit: int = MEM_LIMIT):
        self.jobs, self.log_dir, self.mem_limit = jobs, log_dir, mem_limit
        self.started = 0
        self.workers = [self._spawn() for _ in range(jobs)]

    def _spawn(self) -> _Worker:
        self.started += 1
        return _Worker(self.mem_limit, self.log_dir / f"worker{self.started}.log")

    def close(self) -> None:
        for w in self.workers:
            w.kill()

    def _replace(self, w: _Worker) -> None:
        self.workers[self.workers.index(w)] = self._spawn()

    def _busy(self) -> list[_Worker]:
        """Workers starting or running a case."""
        return [w for w in self.workers if not w.ready or w.key is not None]

    def _wait(self) -> list[tuple[_Worker, str | None]]:
        """Workers that answered (their line) or timed out or died (None)."""
        busy = self._busy()
        sel = selectors.DefaultSelector()
        for w in busy:
            sel.register(w.proc.stdout, selectors.EVENT_READ, w)
        events = sel.select(max(0.0, min(w.deadline for w in busy) - time.monotonic()))
        sel.close()
        answered = [(key.data, key.data.proc.stdout.readline() or None) for key, _ in events]
        now = time.monotonic()
        return answered + [(w, None) for w in busy
                           if now > w.deadline and all(w is not a for a, _ in answered)]

    def _settle(self, w: _Worker, line: str | None) -> tuple[object, Outcome] | None:
        """Handle one worker's answer (or silence); the finished case, if any."""
        if line is not None and not w.ready:
            w.ready = True
            return None
        if line is not None:
            key, w.key = w.key, None
            return key, Outcome(**json.loads(line))
        if w.key is None:
            w.kill()
            raise RuntimeError(f"a fuzz worker did not start; see {w.log}")
        outcome = (Outcome("hang", "no answer within the case's timeout")
                   if w.proc.poll() is None else w.death())
        w.kill()
        self._replace(w)
        return w.key, outcome

    def map(self, cases: Iterable[tuple[object, Request]]) -> Iterator[tuple[object, Outcome]]:
        """Run ``cases`` (key, request) and yield (key, outcome) as they finish; stop taking
        new cases when the iterator ends."""
        pending = iter(cases)
        exhausted = False
        while True:
            for w in self.workers:
                if w.ready and w.key is None and not exhausted:
                    item = next(pending, None)
                    if item is None:
                        exhausted = True
                    else:
                        w.send(*item)
            if exhausted and all(w.key is None for w in self.workers):
                return
            for w, line in self._wait():
                done = self._settle(w, line)
                if done is not None:
                    yield done


if __name__ == "__main__":
    main()
