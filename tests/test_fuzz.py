"""The model fuzzer (issue 14, deliverable 6): every mutant of a bundled model is refused in one
line, quickly and cleanly, or accepted and computed exactly (ISA model = golden model, every
golden op within its bound of onnxruntime, and for a sample the RTL ``verify`` passes).

A failure prints each failing case's seed, index, mutations and root cause, with the command
that replays it (``bench/fuzz.py --replay SEED:INDEX``); the mutant stays in the test's
temporary directory. ``tests/fuzz/`` holds the engine.
"""

from __future__ import annotations

import collections

import onnx
import pytest

from tests.fuzz import campaign, mutate

#: The default run's seed (any fixed value: the run is reproducible).
SEED = 14

#: One case per distinct bug the fuzzer found, (seed, index) of ``bench/fuzz.py`` with the
#: default models, so that each stays fixed.
REGRESSIONS = {
    (1, 66): "symbolic link as external data: onnx's ValidationError escaped generate",
    (1, 81): "external data accepted, but OUTDIR's model.onnx lost it (simulate cannot read it)",
    (1, 172): "value_info type that shape inference contradicts: InferenceError in op_witness",
}


def _assert_clean(report: campaign.Report) -> None:
    assert not report.failing(), "\n" + report.summary()


def test_mutants_are_deterministic_and_cover_every_kind():
    first = [mutate.mutant(SEED, i) for i in range(300)]
    again = [mutate.mutant(SEED, i) for i in range(300)]
    assert [m.data for m in first] == [m.data for m in again]
    assert len({m.data for m in first}) > 290
    kinds = collections.Counter(k for m in first for k in m.kinds)
    assert set(kinds) == set(mutate.KINDS), kinds


def test_invalid_utf8_names_are_written_as_bytes():
    """protobuf refuses to set invalid UTF-8; the engine patches the serialized model."""
    m = next(m for i in range(2000) if "' renamed invalid UTF-8" in
             (m := mutate.mutant(SEED, i)).describe() and "names: node" in m.describe())
    proto = onnx.ModelProto()
    proto.ParseFromString(m.data)      # the python parser hands undecodable strings out as bytes
    assert any(isinstance(node.name, bytes) for node in proto.graph.node)
    assert b"FZ000" not in m.data


def test_fuzz_default(tmp_path):
    """A few hundred mutants of the digits models within about two minutes."""
    report = campaign.run(SEED, 400, tmp_path, budget=100, rtl=3)
    assert len(report.cases) >= 100, report.summary()
    _assert_clean(report)


def test_fuzz_regressions(tmp_path):
    """Every bug the fuzzer has found stays fixed."""
    seeds = sorted({seed for seed, _ in REGRESSIONS})
    for seed in seeds:
        indices = [i for s, i in REGRESSIONS if s == seed]
        report = campaign.run(seed, 0, tmp_path / str(seed), indices=indices, rtl=len(indices))
        _assert_clean(report)


@pytest.mark.slow
def test_fuzz_thousands(tmp_path):
    """Thousands of mutants, the MLPerf Tiny models among the bases."""
    report = campaign.run(SEED + 1, 5000, tmp_path, models=mutate.SLOW_MODELS, budget=5400,
                          rtl=20, timeout=120)
    assert len(report.cases) >= 2000, report.summary()
    _assert_clean(report)
