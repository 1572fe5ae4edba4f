"""Running many independent evaluations on local processes or on a Dask cluster.

:func:`evaluate_all` costs the configurations of an exploration (:func:`.explore.evaluate`) in
this process, on a pool of ``jobs`` local processes, or on the workers of a Dask cluster
(``dask scheduler`` / ``dask worker tcp://HOST:PORT``, PyPI ``dask[distributed]``). The
configurations go out in chunks of whole :func:`~.explore.compile_key` groups, so that a worker
compiles each distinct program once; the parsed graph goes to each worker once (the pool's
initializer, Dask's ``scatter``); the points come back in candidate order whatever order the
chunks finish in, so the results are the same as a serial run's, byte for byte.

The Dask client comes from :func:`codesign.cluster.connect`, as for the other commands that
fan out (``synth --seeds``, ``verify``). Local pools fork their workers (from a forkserver
when this process runs threads: a script that then calls :func:`evaluate_all` with
``jobs > 1`` needs the usual ``if __name__ == "__main__":`` guard).
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Callable

from .. import progress
from ..cluster import connect, map_ordered, workers
from ..errors import InputError
from ..isa import HwConfig
from .explore import Point, compile_key, evaluate
from .resources import estimate, over_budget
from .targets import Target

__all__ = ["default_jobs", "chunks", "evaluate_chunk", "evaluate_all"]

#: Chunks per worker: enough that a slow chunk (a small array compiles 10^5 instructions) does
#: not leave the others idle at the end, few enough that shipping them costs nothing.
CHUNKS_PER_WORKER = 4


def default_jobs() -> int:
    """The CPUs this process may run on (``--jobs``' default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _cost(graph, config: HwConfig, target: Target) -> float:
    """A rough relative cost of evaluating ``config`` (as built for ``target``): compiling
    (once per group) and costing its program take time in proportion to its instructions,
    about one per array-sized tile of work; a configuration over the budget is not compiled."""
    if over_budget(estimate(config, target), target):
        return 0.0
    return 1.0 + graph.macs / (config.rows * config.cols)


def chunks(configs: list[HwConfig], graph, target: Target, n: int) -> list[list[int]]:
    """Indices of ``configs`` in at most ``n`` chunks of about equal cost, each made of whole
    groups of one :func:`~.explore.compile_key` (of the configuration as built for
    ``target``), the costliest chunk first (the longest tasks start first, so that none is
    left running alone at the end)."""
    from .explore import built_for

    groups: dict[tuple, list[int]] = {}
    costs: dict[tuple, float] = {}
    for i, config in enumerate(configs):
        built = built_for(graph, config, target)
        key = compile_key(built)
        groups.setdefault(key, []).append(i)
        costs[key] = costs.get(key, 0.0) + _cost(graph, built, target)
    n = max(1, min(n, len(groups)))
    out: list[list[int]] = [[] for _ in range(n)]
    load = [0.0] * n
    # Longest processing time first: each group to the least loaded chunk (ties: by size).
    for key in sorted(groups, key=lambda k: -costs[k]):
        k = min(range(n), key=lambda j: (load[j], len(out[j])))
        out[k].extend(groups[key])
        load[k] += costs[key] + 1e-3 * len(groups[key])
    order = sorted(range(n), key=lambda j: -load[j])
    return [out[j] for j in order if out[j]]


def evaluate_chunk(configs: list[HwConfig], graph, target: Target) -> list[Point]:
    """:func:`~.explore.evaluate` each of ``configs``, sharing compilations between them."""
    cache: dict = {}
    return [evaluate(graph, config, target, cache=cache) for config in configs]


# -- local processes ------------------------------------------------------------------------------

_worker_graph = None


def _init_worker(graph, quiet: bool) -> None:
    """Pool initializer: keep the graph (sent once per worker, not once per chunk)."""
    global _worker_graph
    _worker_graph = graph
    progress.set_quiet(quiet)


def _pool_chunk(configs: list[HwConfig], target: Target) -> list[Point]:
    return evaluate_chunk(configs, _worker_graph, target)


def _context():
    """How to start the pool's workers: fork this process while it runs no other thread
    (instant: everything is imported); else from a forkserver that imports the explorer once
    (forking a process with threads, e.g. a progress display's, could copy a held lock into a
    child)."""
    if threading.active_count() == 1:
        return multiprocessing.get_context("fork")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__, "codesign.frontend"])
    return context


def _run_pool(graph, target: Target, configs: list[HwConfig], jobs: int,
              done: Callable, title: str) -> None:
    work = chunks(configs, graph, target, CHUNKS_PER_WORKER * jobs)
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(work)), mp_context=_context(),
                                                initializer=_init_worker,
                                                initargs=(graph, True)) as pool:
        # Every chunk submitted (and so every worker started) before the progress display
        # starts its thread.
        futures = {pool.submit(_pool_chunk, [configs[i] for i in chunk], target): chunk
                   for chunk in work}
        try:
            with progress.step(title, total=len(configs)) as advance:
                for future in concurrent.futures.as_completed(futures):
                    done(futures[future], future.result())
                    advance(len(futures[future]))
        finally:
            for future in futures:
                future.cancel()


# -- Dask -----------------------------------------------------------------------------------------

def _run_dask(graph, target: Target, configs: list[HwConfig], scheduler: str,
              done: Callable, title: str) -> None:
    with connect(scheduler) as client:
        work = chunks(configs, graph, target, CHUNKS_PER_WORKER * workers(client))
        with progress.step(title, total=len(configs)) as advance:

            def finished(k: int, results: list[Point]) -> None:
                done(work[k], results)
                advance(len(results))

            map_ordered(client, evaluate_chunk, [[configs[i] for i in chunk] for chunk in work],
                        graph, target, done=finished)


# -- the entry point ------------------------------------------------------------------------------

def evaluate_all(graph, configs: list[HwConfig], target: Target, *, jobs: int = 1,
                 scheduler: str | None = None) -> list[Point]:
    """Every configuration of ``configs`` evaluated (:func:`~.explore.evaluate`), in order: on
    the Dask cluster at ``scheduler`` if given, else on ``jobs`` local processes (in this
    process when ``jobs`` is 1).

    Raises
    ------
    InputError
        If ``jobs`` is less than 1, or the scheduler cannot be reached
        (:func:`codesign.cluster.connect`).
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise InputError(f"--jobs must be a positive integer, not {jobs!r}")
    points: list[Point | None] = [None] * len(configs)
    title = f"exploring {len(configs)} configurations of {graph.name} on {target.name}"

    def done(indices: list[int], results: list[Point]) -> None:
        for i, point in zip(indices, results, strict=True):
            points[i] = point

    if scheduler is not None:
        _run_dask(graph, target, configs, scheduler, done, title)
    elif jobs > 1:
        _run_pool(graph, target, configs, jobs, done, title)
    else:
        cache: dict = {}
        with progress.step(title, total=len(configs)) as advance:
            for chunk in chunks(configs, graph, target, 1):
                for i in chunk:
                    done([i], [evaluate(graph, configs[i], target, cache=cache)])
                    advance()
    return points
