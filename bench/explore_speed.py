"""Exploration speed: configurations evaluated per second, serial before and now, on a local
process pool and on a Dask LocalCluster, side by side in one run.

    .venv/bin/python bench/explore_speed.py [--model dscnn] [--target ecp5-45k] [--every K]
        [--workers 2] [--baseline-rev REV]

"serial, before" runs the code of ``--baseline-rev`` (default: main before issue 17's explore
work) in a subprocess, from a ``git archive`` of that commit: ``evaluate`` on every configuration,
one after the other, as ``explore`` did then. The other rows run this tree's ``explore``: in
this process (``--jobs 1``), on a pool of ``--workers`` processes (worker start-up included),
and on LocalClusters of 1 and ``--workers`` worker processes (cluster start-up excluded, printed
apart). Every row's points must equal the serial run's; the bench stops if one does not.
``--every K`` takes every K-th candidate (a shorter run with the same mix of configurations).
The CPU seconds (this process and its workers) show what parallel runs cost when the wall clock
cannot show their speed-up: on a machine whose cores are busy with other work.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: main before issue 17's explore work (process pool, compile cache, plain-integer ISA), with the
#: resource model's coefficients of this tree (refitted just before that work was merged), so
#: that both runs cost every configuration alike.
BASELINE_REV = "c53868a"

#: Run in the baseline's subprocess: import codesign from the unpacked tree (its rtl/ and sim/
#: mapped into the package as the editable install maps this tree's), then time the evaluation.
_BASELINE = """
import importlib.abc, importlib.util, json, sys, time
from pathlib import Path
root = Path(sys.argv[1])
places = {"codesign": root / "codesign", "codesign.rtl": root / "rtl",
          "codesign.sim": root / "sim"}

class Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name in places:
            return importlib.util.spec_from_file_location(
                name, places[name] / "__init__.py",
                submodule_search_locations=[str(places[name])])
        return None

sys.meta_path.insert(0, Finder())
import codesign
assert Path(codesign.__file__).parent == places["codesign"], codesign.__file__
from codesign.dse import explore, load_target
from codesign.frontend import load_model
graph = load_model(sys.argv[2])
target = load_target(sys.argv[3])
configs = explore.candidates(target=target)[::int(sys.argv[4])]
start = time.perf_counter()
points = [explore.evaluate(graph, config, target) for config in configs]
seconds = time.perf_counter() - start
print(json.dumps({"seconds": seconds, "points": [p.to_json(target) for p in points]}))
"""


def _baseline(rev: str, model: Path, target: str, every: int) -> tuple[float, list]:
    with tempfile.TemporaryDirectory(prefix="explore-baseline-") as tmp:
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True,
                                 capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(tmp, filter="data")
        out = subprocess.run([sys.executable, "-c", _BASELINE, tmp, str(model), target,
                              str(every)], check=True, capture_output=True, text=True,
                             cwd=tmp).stdout
    result = json.loads(out)
    return result["seconds"], result["points"]


def _cpu() -> float:
    """CPU seconds of this process and of its children that have ended (pool and cluster
    workers, the baseline's subprocess)."""
    own, children = (resource.getrusage(who) for who in (resource.RUSAGE_SELF,
                                                         resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _timed(run) -> tuple[float, float, list]:
    """Wall-clock and CPU seconds of ``run()``, and its result."""
    start, cpu = time.perf_counter(), _cpu()
    points = run()
    return time.perf_counter() - start, _cpu() - cpu, points


def main() -> None:
    from distributed import LocalCluster

    from codesign.dse import explore, load_target
    from codesign.frontend import load_model

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="dscnn", help="a models/mlperf/*.onnx model name")
    p.add_argument("--target", default="ecp5-45k")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="evaluate every K-th candidate (default 1: all)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--baseline-rev", default=BASELINE_REV)
    args = p.parse_args()

    model = ROOT / "models" / "mlperf" / f"{args.model}.onnx"
    target = load_target(args.target)
    graph = load_model(model)
    configs = explore.candidates(target=target)[::args.every]
    print(f"{len(configs)} configurations of {args.model} on {target.name}", flush=True)

    rows = []

    def row(name: str, seconds: float, cpu: float) -> None:
        rows.append((name, seconds, cpu))
        print(f"  {name}: {seconds:.1f} s, {cpu:.1f} CPU s", flush=True)

    cpu = _cpu()
    seconds, before = _baseline(args.baseline_rev, model, args.target, args.every)
    # The subprocess's CPU includes its imports; its own timer covers the evaluation alone.
    row(f"serial, before ({args.baseline_rev})", seconds, _cpu() - cpu)
    seconds, cpu, serial = _timed(lambda: explore.explore(graph, target, configs))
    row("serial, now", seconds, cpu)
    if before != [point.to_json(target) for point in serial]:
        sys.exit("the serial run's points differ from the baseline's")

    def check(name: str, seconds: float, cpu: float, points) -> None:
        if points != serial:
            sys.exit(f"{name}: the points differ from the serial run's")
        row(name, seconds, cpu)

    check(f"process pool, {args.workers} workers (start-up included)",
          *_timed(lambda: explore.explore(graph, target, configs, jobs=args.workers)))
    for n in sorted({1, args.workers}):
        start, cpu = time.perf_counter(), _cpu()
        with LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as local:
            up = time.perf_counter() - start
            seconds, _, points = _timed(lambda local=local: explore.explore(
                graph, target, configs, scheduler=local.scheduler_address))
        # The workers' CPU counts once they have ended: start-up and shut-down included.
        check(f"LocalCluster, {n} worker{'s' * (n > 1)} (+{up:.0f} s start-up)", seconds,
              _cpu() - cpu, points)

    base, now = rows[0][1], rows[1][1]
    print(f"\nload average at the end: {', '.join(f'{v:.1f}' for v in os.getloadavg())} "
          f"on {os.cpu_count()} CPUs")
    print("\n| run | seconds | configurations/s | × before | × serial now | CPU s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, seconds, cpu in rows:
        print(f"| {name} | {seconds:.1f} | {len(configs) / seconds:.2f} | "
              f"{base / seconds:.2f} | {now / seconds:.2f} | {cpu:.1f} |")


if __name__ == "__main__":
    main()
