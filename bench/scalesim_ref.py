"""SCALE-Sim reference cycles for our models: weight-stationary R x C array, per layer and model.

    .venv/bin/python bench/scalesim_ref.py [MODEL ...] [--array 8x8 ...] [--per-layer] [--refresh]

SCALE-Sim (PyPI ``scalesim`` 3.0.0) needs numpy < 2.3, so it runs in its own virtual environment,
``bench/.venv-scalesim``, created on first use (``python -m venv`` + ``pip install``). From our IR
graph this script writes a SCALE-Sim topology CSV and config, runs SCALE-Sim there, and reads its
``COMPUTE_REPORT.csv``. Results are cached in ``bench/scalesim_cache.json`` keyed by the model's
SHA-256, the array and the mapping version, so reruns (and the combined benchmark, which imports
:func:`scalesim_cycles`) do not run SCALE-Sim again.

How our layers become SCALE-Sim layers (docs/energy.md, "SCALE-Sim reference", has the reasons):

* convolution: IFMAP H/W *including padding*, trimmed to the rows/columns the window actually
  reaches, ``(out - 1) * stride + kernel``, because SCALE-Sim computes the output size as
  ``ceil((in - kernel + stride) / stride)``, which overcounts by one when ``in - kernel`` is not a
  multiple of the stride;
* depthwise convolution: SCALE-Sim's own convention, a layer whose name contains ``DP`` with
  ``Channels = C`` and ``Num Filter`` = the depth multiplier; SCALE-Sim splits it into C
  single-channel layers (each a separate pass over the array);
* other grouped convolutions: one layer per group;
* fully connected (Gemm/MatMul): a 1x1 convolution over a 1x1 IFMAP;
* a non-square stride (SCALE-Sim's CSV has one stride column): stride 1 over an IFMAP of
  ``out + kernel - 1``, which has the same GEMM (M, N, K) and so the same compute cycles;
* pooling, Add and Concat are not array work in SCALE-Sim and are left out (listed).

The reported cycles are SCALE-Sim's "Total Cycles" column summed over the layers: compute cycles
of the weight-stationary schedule including array fill and drain per fold, with the memory
interface in bandwidth-estimation mode (``InterfaceBandwidth = CALC``), where stall cycles are
zero. "incl. prefetch" adds the cycles SCALE-Sim charges for loading the first operands from
DRAM before compute starts.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import csv
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesign import ir  # noqa: E402
from codesign.frontend import load_model  # noqa: E402

__all__ = ["scalesim_cycles", "topology", "REFERENCE_8X8"]

BENCH = Path(__file__).resolve().parent
VENV = BENCH / ".venv-scalesim"
CACHE = BENCH / "scalesim_cache.json"
SCALESIM_VERSION = "3.0.0"
#: What goes into SCALE-Sim's venv: the package and the numpy it works with.
REQUIREMENTS = [f"scalesim=={SCALESIM_VERSION}", "numpy<2.3"]
#: Bumped whenever the IR -> topology mapping or the config changes (invalidates the cache).
MAPPING_VERSION = 1
#: SCALE-Sim SRAM sizes (kB). In bandwidth-estimation mode they do not change compute cycles.
SRAM_KB = {"ifmap": 64, "filter": 64, "ofmap": 64}

#: SCALE-Sim cycles for an 8x8 weight-stationary array quoted in issue 4.
REFERENCE_8X8 = {"resnet8": 223_000, "dscnn": 119_000, "mobilenet_v1_025": 405_000}


@dataclasses.dataclass(frozen=True)
class TopoLayer:
    """One row of a SCALE-Sim conv topology CSV (and the IR op it came from)."""
    name: str          # SCALE-Sim layer name ("DP" in it only for depthwise rows)
    op: str            # IR op name
    kind: str          # conv | depthwise | grouped | fc
    ifmap_h: int
    ifmap_w: int
    filter_h: int
    filter_w: int
    channels: int
    filters: int
    stride: int
    macs: int          # our MACs of this row (a grouped op's are split between its rows)

    @property
    def report_rows(self) -> int:
        """COMPUTE_REPORT rows this topology row becomes (SCALE-Sim splits DP rows per channel)."""
        return self.channels if "DP" in self.name else 1

    def csv_row(self) -> str:
        return (f"{self.name}, {self.ifmap_h}, {self.ifmap_w}, {self.filter_h}, {self.filter_w}, "
                f"{self.channels}, {self.filters}, {self.stride},")


def _conv_rows(index: int, op: ir.Conv) -> list[TopoLayer]:
    kh, kw, cin_g, cout = op.weight.shape
    oh, ow = op.y.shape[:2]
    sh, sw = op.stride
    if sh == sw:
        stride, ih, iw = sh, (oh - 1) * sh + kh, (ow - 1) * sw + kw
    else:   # same (M, N, K) with stride 1: same weight-stationary compute cycles
        stride, ih, iw = 1, oh + kh - 1, ow + kw - 1
    cout_g = cout // op.groups
    if op.groups == 1:
        fc = op.x.shape[:2] == (1, 1) and (kh, kw) == (1, 1)
        kind = "fc" if fc else "conv"
        return [TopoLayer(f"L{index:02d}_{kind}", op.name, kind, ih, iw, kh, kw, cin_g, cout,
                          stride, op.macs)]
    if cin_g == 1:
        return [TopoLayer(f"L{index:02d}_dwDP", op.name, "depthwise", ih, iw, kh, kw,
                          op.groups, cout_g, stride, op.macs)]
    return [TopoLayer(f"L{index:02d}_group{g}", op.name, "grouped", ih, iw, kh, kw, cin_g,
                      cout_g, stride, op.macs // op.groups) for g in range(op.groups)]


def topology(graph: ir.Graph) -> tuple[list[TopoLayer], list[str]]:
    """SCALE-Sim topology rows of ``graph`` and the names of the ops left out."""
    rows: list[TopoLayer] = []
    skipped = []
    for index, op in enumerate(graph.ops):
        if isinstance(op, ir.Conv):
            rows += _conv_rows(index, op)
        elif not isinstance(op, ir.Flatten):
            skipped.append(op.name)
    return rows, skipped


def _config_text(rows: int, cols: int) -> str:
    return f"""[general]
run_name = codesign

[run_presets]
InterfaceBandwidth = CALC
UseRamulatorTrace = False

[architecture_presets]
ArrayHeight = {rows}
ArrayWidth = {cols}
IfmapSramSzkB = {SRAM_KB["ifmap"]}
FilterSramSzkB = {SRAM_KB["filter"]}
OfmapSramSzkB = {SRAM_KB["ofmap"]}
IfmapOffset = 0
FilterOffset = 10000000
OfmapOffset = 20000000
Dataflow = ws
Bandwidth = 10
ReadRequestBuffer = 32
WriteRequestBuffer = 32

[layout]
IfmapCustomLayout = False
FilterCustomLayout = False
IfmapSRAMBankBandwidth = 10
IfmapSRAMBankNum = 1
IfmapSRAMBankPort = 2
FilterSRAMBankBandwidth = 10
FilterSRAMBankNum = 1
FilterSRAMBankPort = 2

[sparsity]
SparsitySupport = false
SparseRep = ellpack_block
OptimizedMapping = false
BlockSize = 8
RandomNumberGeneratorSeed = 40
"""


# Runs inside SCALE-Sim's venv: argv = config, topology, layout, output directory.
_RUNNER = """
import sys
from scalesim.scale_sim import scalesim
config, topology, layout, out = sys.argv[1:5]
sim = scalesim(save_disk_space=True, verbose=False, config=config, topology=topology,
               layout=layout, input_type_gemm=False)
sim.run_scale(top_path=out)
"""


def _foreign_env() -> dict[str, str]:
    """Environment for SCALE-Sim's venv and pip: third-party code, so our warning policy
    (PYTHONWARNINGS=error in the tests) and import paths are not its business."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


def scalesim_python() -> Path:
    """The Python of SCALE-Sim's venv, creating the venv on first use."""
    python = VENV / "bin" / "python"
    stamp = VENV / ".installed"
    if stamp.is_file() and stamp.read_text() == " ".join(REQUIREMENTS):
        return python
    print(f"creating {VENV} ({' '.join(REQUIREMENTS)}) ...", file=sys.stderr, flush=True)
    env = _foreign_env()
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, env=env)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *REQUIREMENTS], check=True,
                   env=env)
    stamp.write_text(" ".join(REQUIREMENTS))
    return python


def _run(layers: list[TopoLayer], rows: int, cols: int) -> list[list[str]]:
    """Run SCALE-Sim on ``layers``; returns the COMPUTE_REPORT rows (without the header)."""
    python = scalesim_python()
    with tempfile.TemporaryDirectory(prefix="scalesim-") as tmp:
        work = Path(tmp)
        (work / "scale.cfg").write_text(_config_text(rows, cols))
        header = ("Layer name, IFMAP Height, IFMAP Width, Filter Height, Filter Width, Channels, "
                  "Num Filter, Strides,")
        (work / "topology.csv").write_text(
            "\n".join([header] + [layer.csv_row() for layer in layers]) + "\n")
        (work / "layout.csv").write_text(header + "\n")   # no custom layouts: header only
        done = subprocess.run(
            [str(python), "-c", _RUNNER, "scale.cfg", "topology.csv", "layout.csv", "out"],
            cwd=work, capture_output=True, text=True, env=_foreign_env())
        report = work / "out" / "codesign" / "COMPUTE_REPORT.csv"
        if done.returncode or not report.is_file():
            raise RuntimeError(f"SCALE-Sim failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
        with report.open() as f:
            return [row for row in csv.reader(f)][1:]


def _model_key(model_path: Path, rows: int, cols: int) -> tuple[str, str]:
    digest = hashlib.sha256(model_path.read_bytes()).hexdigest()
    return digest, f"{digest[:16]}:{rows}x{cols}:v{MAPPING_VERSION}"


def _load_cache() -> dict:
    try:
        return json.loads(CACHE.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


_CACHE_LOCK = threading.Lock()


def _store(key: str, result: dict) -> None:
    """Add one result to the cache file (re-read first: other runs may have added some)."""
    with _CACHE_LOCK:
        cache = _load_cache()
        cache[key] = result
        tmp = CACHE.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(cache, indent=1, sort_keys=True) + "\n")
        tmp.replace(CACHE)


def scalesim_cycles(model_path, rows: int, cols: int, refresh: bool = False) -> dict:
    """SCALE-Sim weight-stationary cycles of one inference of the model on a rows x cols array.

    Returns a dict with ``total_cycles`` (SCALE-Sim "Total Cycles" summed over the layers),
    ``total_cycles_incl_prefetch``, ``stall_cycles``, ``by_kind`` (cycles per layer kind:
    conv, depthwise, grouped, fc), ``layers`` (per IR op: name, kind, cycles, MACs, SCALE-Sim
    layers), ``not_modelled`` (ops SCALE-Sim does not see) and ``seconds`` (SCALE-Sim's run time
    when the result was computed). Cached in bench/scalesim_cache.json.
    """
    model_path = Path(model_path)
    digest, key = _model_key(model_path, rows, cols)
    if not refresh and key in (cache := _load_cache()):
        return cache[key]
    layers, skipped = topology(load_model(model_path))
    start = time.perf_counter()
    report = _run(layers, rows, cols)
    seconds = time.perf_counter() - start
    expected = sum(layer.report_rows for layer in layers)
    if len(report) != expected:
        raise RuntimeError(f"SCALE-Sim reported {len(report)} layers, expected {expected}")
    per_op: dict[str, dict] = {}
    position = 0
    for layer in layers:
        part = report[position:position + layer.report_rows]
        position += layer.report_rows
        entry = per_op.setdefault(layer.op, {
            "name": layer.op, "kind": layer.kind, "macs": 0, "cycles": 0,
            "cycles_incl_prefetch": 0, "stall_cycles": 0, "scalesim_layers": 0})
        entry["macs"] += layer.macs
        entry["cycles"] += sum(int(r[2]) for r in part)
        entry["cycles_incl_prefetch"] += sum(int(r[1]) for r in part)
        entry["stall_cycles"] += sum(int(r[3]) for r in part)
        entry["scalesim_layers"] += len(part)
    ops = list(per_op.values())
    by_kind: dict[str, int] = {}
    for entry in ops:
        by_kind[entry["kind"]] = by_kind.get(entry["kind"], 0) + entry["cycles"]
    result = {
        "model": model_path.stem, "model_sha256": digest, "array": f"{rows}x{cols}",
        "rows": rows, "cols": cols, "dataflow": "ws", "scalesim_version": SCALESIM_VERSION,
        "total_cycles": sum(e["cycles"] for e in ops),
        "total_cycles_incl_prefetch": sum(e["cycles_incl_prefetch"] for e in ops),
        "stall_cycles": sum(e["stall_cycles"] for e in ops),
        "by_kind": by_kind, "layers": ops, "not_modelled": skipped, "seconds": seconds,
    }
    _store(key, result)
    return result


def main(argv: list[str] | None = None) -> None:
    from models import mlperf

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", default=list(mlperf.MODELS),
                        help="MLPerf Tiny model names or .onnx paths")
    parser.add_argument("--array", action="append", help="RxC (repeatable; default 8x8)")
    parser.add_argument("--per-layer", action="store_true")
    parser.add_argument("--refresh", action="store_true", help="ignore the cache")
    args = parser.parse_args(argv)
    arrays = [tuple(int(v) for v in a.lower().split("x")) for a in (args.array or ["8x8"])]
    paths = [Path(m) if m.endswith(".onnx") else mlperf.path(m) for m in args.models]
    jobs = [(p, r, c) for p in paths for r, c in arrays]
    cache = _load_cache()
    if args.refresh or any(_model_key(*job)[1] not in cache for job in jobs):
        scalesim_python()       # create the venv once, before running in parallel
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = list(pool.map(lambda j: scalesim_cycles(*j, refresh=args.refresh), jobs))

    kinds = sorted({k for r in results for k in r["by_kind"]})
    print("| model | array | SCALE-Sim cycles | " + " | ".join(kinds) +
          " | incl. prefetch | issue reference | difference | SCALE-Sim run s |")
    print("|---|---|---|" + "---|" * len(kinds) + "---|---|---|---|")
    for r in results:
        ref = REFERENCE_8X8.get(r["model"]) if r["array"] == "8x8" else None
        diff = f"{100 * (r['total_cycles'] - ref) / ref:+.1f}%" if ref else "—"
        print(f"| {r['model']} | {r['array']} | {r['total_cycles']:,} | " +
              " | ".join(f"{r['by_kind'].get(k, 0):,}" for k in kinds) +
              f" | {r['total_cycles_incl_prefetch']:,} | {f'{ref:,}' if ref else '—'} | {diff} "
              f"| {r['seconds']:.1f} |")
    if args.per_layer:
        for r in results:
            print(f"\n{r['model']} {r['array']} (not modelled: "
                  f"{', '.join(r['not_modelled']) or 'none'})\n")
            print("| layer | kind | MACs | SCALE-Sim layers | cycles | MACs/(cycles·R·C) |")
            print("|---|---|---|---|---|---|")
            pes = r["rows"] * r["cols"]
            for e in r["layers"]:
                print(f"| {e['name']} | {e['kind']} | {e['macs']:,} | {e['scalesim_layers']} | "
                      f"{e['cycles']:,} | {100 * e['macs'] / (e['cycles'] * pes):.1f}% |")


if __name__ == "__main__":
    main()
