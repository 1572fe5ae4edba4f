"""Issue 15's models, each made by its own tool, through ``codesign verify`` on Verilator: one
row per model with its cycles, MAC utilization and the RTL's distance to the golden model and to
the reference runtime (onnxruntime; qonnx's executor for QONNX).

    .venv/bin/python bench/tool_models.py [--count 8] [--only NAME,...] [--keep DIR]

The builders are tests/toolmodels.py's (the same the tests use). Exits 1 when any model fails
verify.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from codesign import cli  # noqa: E402
from tests.toolmodels import BUILDERS  # noqa: E402

_CYCLES = re.compile(r"^inference 0: (\d+) cycles, MAC utilization ([\d.]+)%")
_ROW = re.compile(r"^(\S+)\s+\((.*?)\)\s+(\d+)\s+(\d+)\s+(\d+|n/a)\s+(\d+|n/a)\s*$")
_WITNESS = re.compile(r"^witness: (.*)$")


def _verify(name: str, directory: Path, count: int) -> dict:
    directory.mkdir(parents=True, exist_ok=True)
    model = BUILDERS[name](directory)
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = cli.main(["verify", str(model), "-o", str(directory / "out"), "--count",
                         str(count)])
    lines = out.getvalue().splitlines()
    cycles = next((m for m in map(_CYCLES.match, lines) if m), None)
    rows = [m for m in map(_ROW.match, lines) if m]
    witness = next((m[1] for m in map(_WITNESS.match, lines) if m), "?")
    return {
        "model": name, "verdict": "PASS" if code == 0 else f"FAIL ({lines[-1][:60]})",
        "cycles": cycles[1] if cycles else "?", "util": f"{cycles[2]}%" if cycles else "?",
        "elements": sum(int(r[3]) for r in rows),
        "rtl_golden": sum(int(r[4]) for r in rows),
        "rtl_ref": sum(int(r[5]) for r in rows if r[5] != "n/a") if rows else "?",
        "max_lsb": max((int(r[6]) for r in rows if r[6] != "n/a"), default="n/a"),
        "reference": "qonnx" if witness.startswith("qonnx") else (
            "ORT exact" if "exact integer kernels" in witness else witness[:30]),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=8, help="inputs per model (default 8)")
    p.add_argument("--only", help="comma-separated model names (default: all)")
    p.add_argument("--keep", type=Path, help="build the models and designs here")
    args = p.parse_args(argv)
    names = args.only.split(",") if args.only else list(BUILDERS)
    unknown = set(names) - set(BUILDERS)
    if unknown:
        p.error(f"unknown model(s) {sorted(unknown)}; choose from {sorted(BUILDERS)}")
    root = args.keep or Path(tempfile.mkdtemp(prefix="codesign-tool-models-"))
    print("| model | reference | cycles | MAC util. | elements | RTL≠golden | RTL≠ref | max "
          "LSB | verify |")
    print("|---|---|---|---|---|---|---|---|---|")
    failed = 0
    for name in names:
        r = _verify(name, root / name, args.count)
        failed += r["verdict"] != "PASS"
        print(f"| {r['model']} | {r['reference']} | {r['cycles']} | {r['util']} | "
              f"{r['elements']} | {r['rtl_golden']} | {r['rtl_ref']} | {r['max_lsb']} | "
              f"{r['verdict']} |", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
