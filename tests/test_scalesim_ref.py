"""bench/scalesim_ref.py: the IR -> SCALE-Sim topology mapping (fast) and SCALE-Sim itself (slow:
it runs in its own venv, created on first use)."""

import importlib.util
import math
import sys
from pathlib import Path

import pytest

from codesign import ir
from codesign.frontend import load_model
from models import mlperf

ROOT = Path(__file__).resolve().parent.parent


def _load_bench_module():
    spec = importlib.util.spec_from_file_location("scalesim_ref", ROOT / "bench/scalesim_ref.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["scalesim_ref"] = module      # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


scalesim_ref = _load_bench_module()


@pytest.mark.parametrize("name", list(mlperf.MODELS))
def test_topology_reproduces_every_conv(name):
    """Each row gives SCALE-Sim's output size formula our output size, and the rows carry the
    model's MACs (SCALE-Sim's own count, after its per-channel split of DP rows)."""
    graph = load_model(mlperf.path(name))
    rows, skipped = scalesim_ref.topology(graph)
    convs = {op.name: op for op in graph.ops if isinstance(op, ir.Conv)}
    assert {r.op for r in rows} == set(convs)
    assert set(skipped) == {op.name for op in graph.ops
                            if not isinstance(op, ir.Conv | ir.Flatten)}
    scalesim_macs = 0
    for r in rows:
        op = convs[r.op]
        out_h = math.ceil((r.ifmap_h - r.filter_h + r.stride) / r.stride)
        out_w = math.ceil((r.ifmap_w - r.filter_w + r.stride) / r.stride)
        assert (out_h, out_w) == op.y.shape[:2], r
        assert ("DP" in r.name) == (r.kind == "depthwise")
        channels = 1 if "DP" in r.name else r.channels
        scalesim_macs += (r.report_rows * out_h * out_w * r.filter_h * r.filter_w * channels
                          * r.filters)
    assert scalesim_macs == graph.macs
    assert sum(r.macs for r in rows) == graph.macs


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(scalesim_ref.REFERENCE_8X8))
def test_reproduces_the_issue_reference_points(name):
    """SCALE-Sim 3.0.0, 8x8 WS: within 1% of the cycles quoted in issue 4 (uses the cache in
    bench/ when it holds this model; otherwise runs SCALE-Sim, ~15-80 s per model)."""
    result = scalesim_ref.scalesim_cycles(mlperf.path(name), 8, 8)
    reference = scalesim_ref.REFERENCE_8X8[name]
    assert abs(result["total_cycles"] - reference) / reference < 0.01
    assert result["stall_cycles"] == 0
    assert sum(result["by_kind"].values()) == result["total_cycles"]
    assert sum(layer["macs"] for layer in result["layers"]) == load_model(
        mlperf.path(name)).macs


@pytest.mark.slow
def test_runs_scalesim_fresh(tmp_path, monkeypatch):
    """A fresh SCALE-Sim run of the smallest model (into a scratch cache) agrees with itself
    from that cache and with the issue's reference."""
    monkeypatch.setattr(scalesim_ref, "CACHE", tmp_path / "cache.json")
    path = mlperf.path("dscnn")
    fresh = scalesim_ref.scalesim_cycles(path, 8, 8, refresh=True)
    assert (tmp_path / "cache.json").is_file()
    assert scalesim_ref.scalesim_cycles(path, 8, 8) == fresh
    assert abs(fresh["total_cycles"] - 119_000) / 119_000 < 0.01
