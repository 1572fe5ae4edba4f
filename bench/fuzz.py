"""Fuzz ``codesign generate`` with mutated bundled models and count the outcomes.

    .venv/bin/python bench/fuzz.py [--count 1000] [--seed 1] [--budget 1800] [--jobs 2]
                                   [--models default|slow|PATH,...] [--rtl 3] [--keep DIR]
    .venv/bin/python bench/fuzz.py --replay SEED:INDEX [--models ...]

Prints the outcome counts by category and by mutation kind, the RTL sample, and every distinct
root cause of a failing case with a command that replays it (tests/fuzz/ describes the
categories). ``--replay`` reruns one mutant, prints what was done to it, its outcome and the
full traceback, and leaves the mutant in ``--keep`` (default ``build/fuzz-replay``). Exits 1 when
any case fails.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.fuzz import campaign, mutate  # noqa: E402
from tests.fuzz.oracle import FAILING  # noqa: E402


def _models(text: str) -> tuple[str, ...]:
    named = {"default": mutate.DEFAULT_MODELS, "slow": mutate.SLOW_MODELS}
    return named.get(text) or tuple(text.split(","))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=1000, help="mutants to run (default 1000)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--budget", type=float, default=1800.0,
                   help="seconds after which no new mutant starts (default 1800)")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    p.add_argument("--models", type=_models, default=mutate.DEFAULT_MODELS,
                   help="default, slow (adds the MLPerf Tiny models) or comma-separated paths")
    p.add_argument("--kinds", type=lambda s: tuple(s.split(",")), default=mutate.KINDS,
                   help=f"comma-separated mutation kinds (default all: {','.join(mutate.KINDS)})")
    p.add_argument("--rtl", type=int, default=3,
                   help="accepted mutants also checked by verify on the RTL (default 3)")
    p.add_argument("--timeout", type=float, default=60.0, help="least seconds per case")
    p.add_argument("--keep", type=Path, help="directory for the run, emptied first (default "
                   "build/fuzz/seedN; failing cases stay there)")
    p.add_argument("--json", type=Path, help="write every case's outcome here")
    p.add_argument("--replay", help="rerun one case, SEED:INDEX")
    return p


def _replay(args: argparse.Namespace) -> int:
    seed, index = (int(v) for v in args.replay.split(":"))
    root = args.keep or ROOT / "build" / "fuzz-replay" / f"{seed}-{index}"
    shutil.rmtree(root, ignore_errors=True)
    m = mutate.mutant(seed, index, args.models, args.kinds)
    report = campaign.run(seed, index + 1, root, models=args.models, kinds=args.kinds, jobs=1,
                          rtl=args.rtl, timeout=args.timeout, indices=[index])
    (case,) = report.cases
    print(m.describe())
    print(f"{case.outcome.category}: {case.outcome.detail}")
    if case.outcome.where:
        print(f"at {case.outcome.where}")
    print(case.outcome.trace, end="")
    m.write(root / "mutant")
    print(f"mutant in {root / 'mutant' / mutate.MODEL_FILE}")
    return 1 if case.outcome.category in FAILING else 0


def main() -> int:
    args = _parser().parse_args()
    if args.replay:
        return _replay(args)
    root = args.keep or ROOT / "build" / "fuzz" / f"seed{args.seed}"
    shutil.rmtree(root, ignore_errors=True)
    report = campaign.run(args.seed, args.count, root, models=args.models, kinds=args.kinds,
                          jobs=args.jobs, budget=args.budget, timeout=args.timeout,
                          rtl=args.rtl)
    print(report.summary())
    if args.json:
        args.json.write_text(json.dumps(
            [dict(index=c.index, base=c.base, kinds=c.kinds, description=c.description,
                  **dataclasses.asdict(c.outcome)) for c in report.cases], indent=1))
    return 1 if report.failing() else 0


if __name__ == "__main__":
    sys.exit(main())
