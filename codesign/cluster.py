"""The Dask cluster that ``explore``, ``generate --target``, ``synth --seeds`` and ``verify``
can spread their work over (``--scheduler tcp://HOST:PORT``).

Start one with ``dask scheduler`` and, on each machine that should work, ``dask worker
tcp://HOST:PORT`` in the same Python environment as codesign (the workers import it). Workers
read and write files where the client says: the Verilator builds in ``$CODESIGN_CACHE`` and
``synth``'s work directory, so workers on other machines need those on a shared file system.

:func:`connect` opens the client; :func:`map_ordered` runs one function over a list on the
workers and gives the results back in the list's order, however they finish; :func:`run_rtl`
splits a batch of simulated inferences over the workers (``verify --scheduler``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence

from .errors import InputError, one_line

__all__ = ["CONNECT_SECONDS", "connect", "map_ordered", "workers", "run_rtl"]

#: How long to wait for a scheduler to answer, and for it to have a worker.
CONNECT_SECONDS = 10


@contextlib.contextmanager
def connect(scheduler: str, timeout: float | None = None) -> Iterator:
    """A :class:`distributed.Client` of the scheduler at ``scheduler`` (``tcp://HOST:PORT``)
    with at least one worker, closed on exit; ``timeout`` defaults to :data:`CONNECT_SECONDS`.

    Raises
    ------
    InputError
        If the address is malformed, no scheduler answers there within ``timeout`` seconds, or
        it has no worker within ``timeout`` seconds.
    """
    from distributed import Client

    timeout = CONNECT_SECONDS if timeout is None else timeout
    if "://" not in scheduler:
        raise InputError(f"--scheduler must look like tcp://HOST:PORT, not {scheduler!r}")
    try:
        client = Client(scheduler, timeout=timeout, set_as_default=False)
    # OSError (refused, timed out), ValueError (unknown protocol, bad port): all "cannot reach".
    except (OSError, ValueError, TypeError) as err:
        raise InputError(f"cannot reach a Dask scheduler at {scheduler} within {timeout:g} s "
                         f"({one_line(err, 200)}); start one with `dask scheduler` and "
                         f"workers with `dask worker {scheduler}`") from None
    try:
        try:
            client.wait_for_workers(1, timeout=timeout)
        except TimeoutError:
            raise InputError(f"the Dask scheduler at {scheduler} has no worker (waited "
                             f"{timeout:g} s); start one with `dask worker {scheduler}`"
                             ) from None
        yield client
    finally:
        client.close()


def workers(client) -> int:
    """How many workers the cluster of ``client`` has now."""
    return len(client.scheduler_info()["workers"])


def map_ordered(client, function: Callable, items: Sequence, *args,
                done: Callable[[int, object], None] | None = None) -> list:
    """``[function(item, *args) for item in items]`` with each call a task on the cluster;
    ``done(index, result)`` is called as each finishes (progress). ``args`` are sent to the
    workers once (scattered), not once per task. The first task to fail raises here, and the
    others are cancelled."""
    from distributed import as_completed

    # Each in a list of one: scatter would send a dict's or a list's items separately.
    shared = client.scatter(list(args), broadcast=True)
    # pure=False: every call is a task of its own, even where two items are equal.
    futures = [client.submit(function, item, *shared, pure=False) for item in items]
    index = {future.key: i for i, future in enumerate(futures)}
    results: list = [None] * len(items)
    try:
        for future in as_completed(futures, loop=client.loop):
            i = index[future.key]
            results[i] = future.result()
            if done is not None:
                done(i, results[i])
    finally:
        client.cancel(futures)
    return results


def _simulate_share(share: list, program, verilog: str, all_tensors: bool):
    from .driver import run_rtl

    return run_rtl(program, verilog, share, all_tensors=all_tensors)


def run_rtl(program, verilog: str, batch: list, scheduler: str, *,
            all_tensors: bool = False):
    """:func:`codesign.driver.run_rtl` with ``batch`` split into one contiguous share per
    worker of the cluster at ``scheduler``, each share one simulation (the workers build the
    Verilator model once into the shared ``$CODESIGN_CACHE``, or find it there); the
    inferences' outputs, cycles and tensors come back in ``batch`` order, as one simulation
    gives them."""
    from . import progress
    from .driver import RunResult

    with connect(scheduler) as client:
        n = max(1, min(workers(client), len(batch)))
        size = -(-len(batch) // n)
        shares = [batch[i:i + size] for i in range(0, len(batch), size)]
        with progress.step(f"simulating {len(batch)} inference(s) in {len(shares)} share(s) "
                           f"on the cluster", total=len(shares)) as advance:
            parts = map_ordered(client, _simulate_share, shares, program, verilog,
                                all_tensors, done=lambda i, part: advance())
    cycles = [c for part in parts for c in part.cycles]
    # The speed of the whole run: all simulated cycles over all the shares' simulation time.
    seconds = sum(sum(part.cycles) / part.sim_cycles_per_second for part in parts
                  if part.sim_cycles_per_second)
    return RunResult([o for part in parts for o in part.outputs], cycles,
                     sum(cycles) / seconds if seconds else 0.0,
                     [t for part in parts for t in part.tensors])
