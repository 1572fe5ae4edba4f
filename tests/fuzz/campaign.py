"""A fuzz run: baselines, mutants through the worker pool, an RTL sample, and the tables.

:func:`run` first generates each unmutated base model (it must be ``accepted_ok``; its cost sets
the refusal limits and the case timeout for its mutants), then mutants ``0, 1, 2, ...`` of the
seed until ``count`` or the time budget, then ``codesign verify`` on the RTL for the first
``rtl`` accepted mutants (by index, so the sample does not depend on timing). The case
directories of failing cases are kept (the mutant and its external files, for replay); the
others are removed.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import shutil
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from . import mutate
from .oracle import CATEGORIES, FAILING, Limits, Outcome
from .worker import MEM_LIMIT, Pool, Request

__all__ = ["Case", "Report", "run", "run_mutants", "replay_command"]

#: Seconds allowed for a case that runs ``verify`` on the RTL (the first one may build the
#: Verilator model: a minute or two).
RTL_TIMEOUT = 900.0


@dataclasses.dataclass
class Case:
    """One mutant and what it did (``outcome`` is the RTL verdict's when that failed)."""
    index: int
    base: str
    kinds: tuple[str, ...]
    description: str
    outcome: Outcome
    kept: Path | None = None


@dataclasses.dataclass
class Report:
    """A finished run."""
    seed: int
    models: tuple[str, ...]
    cases: list[Case]
    rtl_checked: list[int]
    seconds: float

    def by_category(self) -> collections.Counter[str]:
        return collections.Counter(c.outcome.category for c in self.cases)

    def failing(self) -> list[Case]:
        return [c for c in self.cases if c.outcome.category in FAILING]

    def root_causes(self) -> dict[tuple[str, str], list[Case]]:
        """Failing cases grouped by (category, cause): an exception's innermost codesign frame
        and type, else the detail with its numbers blurred."""
        groups: dict[tuple[str, str], list[Case]] = {}
        for c in self.failing():
            o = c.outcome
            if o.where:
                exc = o.detail.split(": ")[1] if ": " in o.detail else ""
                cause = f"{o.where} {exc}"
            else:
                cause = re.sub(r"\d+(\.\d+)?", "#", o.detail)[:90]
            groups.setdefault((o.category, cause), []).append(c)
        return groups

    def table(self) -> str:
        """Outcome counts: overall, then by mutation kind (a case counts once per kind in it)."""
        cats = [k for k in CATEGORIES if any(c.outcome.category == k for c in self.cases)]
        head = f"{'kind':<14} {'cases':>6} " + " ".join(f"{k:>{max(len(k), 5)}}" for k in cats)
        lines = [head, "-" * len(head)]

        def row(label: str, cases: list[Case]) -> str:
            n = collections.Counter(c.outcome.category for c in cases)
            return f"{label:<14} {len(cases):>6} " + " ".join(
                f"{n[k]:>{max(len(k), 5)}}" for k in cats)

        for kind in mutate.KINDS:
            lines.append(row(kind, [c for c in self.cases if kind in c.kinds]))
        lines.append("-" * len(head))
        lines.append(row("all", self.cases))
        return "\n".join(lines)

    def summary(self) -> str:
        """The tables, the RTL sample and every root cause with one reproducer."""
        lines = [f"fuzz seed {self.seed}: {len(self.cases)} mutants of {len(self.models)} "
                 f"model(s) in {self.seconds:.0f} s; RTL verify on {len(self.rtl_checked)} "
                 f"accepted mutant(s) {self.rtl_checked}", "", self.table()]
        causes = self.root_causes()
        if causes:
            lines += ["", f"{len(causes)} distinct root cause(s) of failing cases:"]
        for (category, cause), cases in sorted(causes.items(), key=lambda kv: -len(kv[1])):
            first = cases[0]
            # Hand-written cases (tests/test_fuzz.py) are not made from a seed.
            replay = ("" if "regression" in first.kinds
                      else f" ({replay_command(self.seed, first.index, self.models)})")
            lines += [f"- {category} x{len(cases)}: {cause}",
                      f"    e.g. case {first.index}{replay}",
                      f"    {first.description[:200]}", f"    -> {first.outcome.detail[:200]}"]
            if first.kept is not None:
                lines.append(f"    kept in {first.kept}")
        return "\n".join(lines)


def replay_command(seed: int, index: int, models: tuple[str, ...]) -> str:
    """The command that reruns one case."""
    named = {mutate.DEFAULT_MODELS: "", mutate.SLOW_MODELS: " --models slow"}
    extra = named.get(models, f" --models {','.join(models)}")
    return f"python bench/fuzz.py --replay {seed}:{index}{extra}"


# ------------------------------------------------------------------------------------------------
# Running

@dataclasses.dataclass(frozen=True)
class _Budget:
    """Per base model: refusal limits and case timeout, from its unmutated run."""
    limits: Limits
    timeout: float


def _baselines(pool: Pool, models: tuple[str, ...], root: Path,
               timeout: float) -> dict[str, _Budget]:
    """Run every unmutated model; refusals may cost twice what the model's own generate does
    (at least 1 s and 200 MB), a case five times its whole check (at least ``timeout``)."""
    requests = []
    for k, model in enumerate(models):
        workdir = root / "baseline" / str(k)
        workdir.mkdir(parents=True)
        path = workdir / mutate.MODEL_FILE
        shutil.copyfile(mutate.REPO / model, path)
        requests.append((model, Request(str(path), str(workdir), 1, 0, Limits(), False,
                                        RTL_TIMEOUT)))
    budgets = {}
    started = {model: time.monotonic() for model in models}
    for model, outcome in pool.map(requests):
        if outcome.category != "accepted_ok":
            raise RuntimeError(f"unmutated {model} is {outcome.category}: {outcome.detail}")
        wall = time.monotonic() - started[model]
        budgets[model] = _Budget(Limits(max(1.0, 2 * outcome.seconds),
                                        max(200.0, 2 * outcome.megabytes)),
                                 max(timeout, 5 * wall))
    return budgets


def _requests(mutants: Iterable[mutate.Mutant], root: Path, budgets: dict[str, _Budget],
              inputs: int, deadline: float,
              made: dict[int, mutate.Mutant]) -> Iterator[tuple[int, Request]]:
    """``mutants`` as requests until ``deadline`` (``made`` collects them by index)."""
    for m in mutants:
        if time.monotonic() > deadline:
            return
        made[m.index] = m
        workdir = root / "cases" / f"{m.index:05d}"
        path = m.write(workdir)
        budget = budgets[m.base]
        yield m.index, Request(str(path), str(workdir), inputs, m.seed * 100_003 + m.index,
                               budget.limits, False, budget.timeout)


def _rtl_sample(pool: Pool, cases: list[Case], made: dict[int, mutate.Mutant], root: Path,
                rtl: int) -> list[int]:
    """``verify`` on the RTL for the first ``rtl`` accepted_ok cases; a failure replaces the
    case's outcome. Returns the indices checked."""
    chosen = [c for c in cases if c.outcome.category == "accepted_ok"][:rtl]
    requests = []
    for c in chosen:
        workdir = root / "rtl" / f"{c.index:05d}"
        path = made[c.index].write(workdir)
        requests.append((c.index, Request(str(path), str(workdir), 2, 0, Limits(), True,
                                          RTL_TIMEOUT)))
    by_index = {c.index: c for c in chosen}
    for index, outcome in pool.map(requests):
        if outcome.category != "accepted_ok":
            by_index[index].outcome = outcome
            by_index[index].kept = root / "rtl" / f"{index:05d}"
        else:
            shutil.rmtree(root / "rtl" / f"{index:05d}")
    return [c.index for c in chosen]


def run(seed: int, count: int, root: Path, *, models: tuple[str, ...] = mutate.DEFAULT_MODELS,
        kinds: tuple[str, ...] = mutate.KINDS, indices: Sequence[int] | None = None,
        **options) -> Report:
    """Fuzz ``count`` mutants of ``models`` (fewer if the time budget runs out).

    Parameters
    ----------
    seed
        The run's seed: mutant ``i`` is :func:`tests.fuzz.mutate.mutant` ``(seed, i)``.
    count
        Most mutants to run.
    root
        An empty directory for case directories and worker logs.
    models, kinds
        Base models and mutation kinds.
    indices
        Run these mutants instead of ``0 .. count-1`` (to replay them).
    **options
        As :func:`run_mutants`.

    Returns
    -------
    Report
    """
    mutants = (mutate.mutant(seed, i, models, kinds)
               for i in (range(count) if indices is None else indices))
    return run_mutants(mutants, root, seed=seed, models=models, **options)


def run_mutants(mutants: Iterable[mutate.Mutant], root: Path, *, seed: int = 0,
                models: tuple[str, ...] = mutate.DEFAULT_MODELS, jobs: int = 2,
                budget: float = 600.0, timeout: float = 60.0, rtl: int = 3, inputs: int = 3,
                mem_limit: int = MEM_LIMIT) -> Report:
    """Run ``mutants`` (made lazily, distinct indices) and classify each.

    Parameters
    ----------
    mutants
        The cases; their base models must be among ``models``.
    root
        An empty directory for case directories and worker logs.
    seed, models
        The run's seed (for the report) and the base models (run unmutated first).
    jobs
        Worker processes.
    budget
        Seconds after which no new mutant is started (the RTL sample runs after).
    timeout
        Least seconds a case may take before it is a ``hang``.
    rtl
        Accepted mutants checked by ``verify`` on the RTL.
    inputs
        Random inputs each accepted mutant is checked on.
    mem_limit
        Each worker's address-space limit in bytes.

    Returns
    -------
    Report
    """
    start = time.monotonic()
    (root / "logs").mkdir(parents=True)
    pool = Pool(jobs, root / "logs", mem_limit)
    made: dict[int, mutate.Mutant] = {}
    cases = []
    try:
        budgets = _baselines(pool, models, root, timeout)
        for index, outcome in pool.map(_requests(mutants, root, budgets, inputs,
                                                 start + budget, made)):
            m = made[index]
            workdir = root / "cases" / f"{index:05d}"
            kept = workdir if outcome.category in FAILING else None
            if kept is None:
                shutil.rmtree(workdir)
            cases.append(Case(index, m.base, m.kinds, m.describe(), outcome, kept))
        cases.sort(key=lambda c: c.index)
        checked = _rtl_sample(pool, cases, made, root, rtl)
    finally:
        pool.close()
    return Report(seed, models, cases, checked, time.monotonic() - start)
