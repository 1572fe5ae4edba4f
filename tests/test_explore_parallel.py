"""Exploration, synthesis seeds and verification spread over local processes and a real Dask
cluster (a ``distributed.LocalCluster``: a scheduler and two worker processes on localhost):
the same results as one process, byte for byte; the compilation shared between configurations
that differ only in fields the compiler does not read; the errors of a bad scheduler."""

import ast
import contextlib
import dataclasses
import functools
import inspect
import json
from pathlib import Path

import numpy as np
import pytest

from codesign import cli, cluster, isa, synth
from codesign.compiler import compile_graph
from codesign.dse import explore, load_target, parallel
from codesign.dse.parallel import chunks
from codesign.frontend import load_model

from .modelgen import ZOO, build
from .test_cli import run
from .test_synth import COUNTER

MODEL = "models/digits_cnn_qop.onnx"
#: A small design space with over-budget configurations (and so their reduced variants, which
#: share compilations) on the ECP5-25k.
SPACE_SHAPES = [(2, 2), (4, 4), (8, 8)]
SPACE_MEMORIES = [(1024, 256, 256), (4096, 2048, 1024)]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a LocalCluster of two single-threaded worker processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as local:
        yield local.scheduler_address


@functools.cache
def _space():
    """DIGITS_CNN, the ECP5-25k and a small design space on it."""
    target = load_target("ecp5-25k")
    return (load_model(MODEL), target,
            explore.candidates(SPACE_SHAPES, SPACE_MEMORIES, target=target))


@pytest.fixture
def space():
    return _space()


@functools.cache
def _reference() -> list[explore.Point]:
    """Every configuration of :func:`_space` compiled afresh, one after the other (no cache)."""
    graph, target, configs = _space()
    return [explore.evaluate(graph, config, target) for config in configs]


def _results(points, target, outdir: Path) -> dict[str, bytes]:
    """explore.json and pareto.md as ``explore`` writes them."""
    explore.write_results(points, explore.pareto(points, target), target, outdir)
    return {name: (outdir / name).read_bytes() for name in ("explore.json", "pareto.md")}


def test_pool_and_cluster_give_the_serial_results_byte_for_byte(space, scheduler, tmp_path,
                                                                monkeypatch):
    graph, target, configs = space
    reference = _reference()
    assert sum(p.feasible for p in reference) > 1 and any(not p.feasible for p in reference)
    bars = []

    @contextlib.contextmanager
    def step(description, total=None):
        bars.append([description, total, 0])

        def advance(n=1):
            bars[-1][2] += n
        yield advance

    monkeypatch.setattr(parallel.progress, "step", step)
    serial = explore.explore(graph, target, configs)
    pool = explore.explore(graph, target, configs, jobs=2)
    dask = explore.explore(graph, target, configs, scheduler=scheduler)
    assert serial == reference and pool == reference and dask == reference
    # One progress bar per run, over the configurations, full at the end.
    n = len(configs)
    assert bars == [[f"exploring {n} configurations of {graph.name} on ecp5-25k", n, n]] * 3
    expected = _results(reference, target, tmp_path / "reference")
    for name, points in (("pool", pool), ("dask", dask)):
        assert _results(points, target, tmp_path / name) == expected


def test_chunks_keep_compilations_together_and_cover_every_configuration(space):
    graph, target, configs = space
    work = chunks(configs, graph, target, 5)
    assert sorted(i for chunk in work for i in chunk) == list(range(len(configs)))
    keys = [{explore.compile_key(explore.built_for(graph, configs[i], target)) for i in chunk}
            for chunk in work]
    for a in range(len(keys)):
        for b in range(a + 1, len(keys)):
            assert not keys[a] & keys[b]        # one key's configurations in one chunk
    shared = len(configs) - len(set().union(*keys))
    assert shared > 0                           # the reduced variants share compilations


# -- what the compiler reads ----------------------------------------------------------------------

#: The modules compile_graph runs (the compiler, its prefetch and hazard passes, the Program).
_COMPILER_SOURCES = ["codesign/compiler/lower.py", "codesign/compiler/prefetch.py",
                     "codesign/compiler/program.py", "codesign/hazards.py"]


def _attributes(source: str) -> set[str]:
    return {node.attr for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Attribute)}


def test_the_compiler_reads_no_configuration_field_outside_the_compile_key():
    """The fields that the cache leaves out of its key (and the properties made of them) appear
    nowhere in the compiler's source, nor in the one timing function it calls."""
    from codesign import timing

    fields = {f.name for f in dataclasses.fields(isa.HwConfig)}
    derived = {"requant_lanes"}                 # cols // requant_groups
    left_out = (fields - set(explore.COMPILER_FIELDS)) | derived
    assert set(explore.COMPILER_FIELDS) <= fields
    read = set().union(*(_attributes(Path(p).read_text()) for p in _COMPILER_SOURCES))
    read |= _attributes(inspect.getsource(timing.gemv_stream))
    assert not read & left_out, sorted(read & left_out)
    for path in _COMPILER_SOURCES:               # no field read by name either
        text = Path(path).read_text()
        assert not [name for name in left_out if f'"{name}"' in text]
    # What else compile_graph runs: of the timing model only gemv_stream (rows, cols), and
    # the two functions of the whole configuration only where a Program is written, not built.
    imports = {(node.module, alias.name) for path in _COMPILER_SOURCES
               for node in ast.walk(ast.parse(Path(path).read_text()))
               if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert {name for module, name in imports if module == "timing"} == {"gemv_stream"}
    assert {module for module, _ in imports} <= {None, "__future__", "typing", "pathlib",
                                                 "ir", "errors", "hazards", "isa", "resample",
                                                 "timing", "prefetch", "program"}
    program = ast.parse(Path("codesign/compiler/program.py").read_text())
    for function in ast.walk(program):
        if isinstance(function, ast.FunctionDef):
            called = {n.func.id for n in ast.walk(function)
                      if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)}
            if called & {"config_id", "version_word"}:
                assert function.name == "host_symbols"


def test_programs_equal_whatever_the_fields_outside_the_key():
    graph = load_model(MODEL)
    base = isa.HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=4096, wgt_depth=2048,
                        acc_depth=1024, prm_depth=64)
    variants = [dict(requant_groups=4, requant_steps=4), dict(mult_cell="MULT18X18D"),
                dict(deep_pipeline=True), dict(bus="axi4", max_reads=64, axi_id_bits=2),
                dict(bus="wishbone", wb_classic=True)]
    reference = compile_graph(graph, base)
    for fields in variants:
        config = dataclasses.replace(base, **fields)
        assert explore.compile_key(config) == explore.compile_key(base)
        program = compile_graph(graph, config)
        assert program.insns == reference.insns
        assert np.array_equal(program.image, reference.image)
        assert dataclasses.replace(program, config=base, image=None) == dataclasses.replace(
            reference, image=None)


def test_isa_encode_and_decode_agree_with_amaranth():
    """The plain-integer packing gives amaranth's bits and field values for every layout."""
    rng = np.random.default_rng(7)
    for opcode, layout in isa.LAYOUTS.items():
        for _ in range(200):
            fields = {}
            for name, field in layout:
                if name == "opcode" or rng.random() < 0.2:
                    continue
                shape = field.shape
                if isinstance(shape, type) and issubclass(shape, isa.py_enum.Enum):
                    fields[name] = list(shape)[rng.integers(len(shape))]
                else:
                    lo, hi = isa._field_range(shape)
                    fields[name] = int(rng.integers(lo, hi, endpoint=True))
            word = isa.encode(opcode, **fields)
            expected = layout.const({"opcode": opcode, **fields})
            assert word == expected.as_bits()
            decoded_opcode, view = isa.decode(word)
            assert decoded_opcode == opcode and view == expected
            for name, _ in layout:
                value, want = getattr(view, name), getattr(expected, name)
                assert value == want and type(value) is type(want)
        with pytest.raises(ValueError, match="does not fit"):
            name, field = next((n, f) for n, f in layout
                               if n != "opcode" and not isinstance(f.shape, type))
            isa.encode(opcode, **{name: isa._field_range(field.shape)[1] + 1})


# -- the command line -----------------------------------------------------------------------------

def test_bad_scheduler_and_jobs_are_refused_in_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_SECONDS", 1)
    out = tmp_path / "x"
    for args, match in [(["--scheduler", "tcp://127.0.0.1:9"], "cannot reach a Dask scheduler "
                          "at tcp://127.0.0.1:9 within 1 s"),
                        (["--scheduler", "localhost"], "must look like tcp://HOST:PORT"),
                        (["--jobs", "0"], "--jobs must be a positive integer")]:
        code, _, err = run(capsys, "explore", MODEL, "--target", "ecp5-25k", "-o", out, *args)
        assert code == 2 and err.startswith("codesign: error: ") and err.count("\n") == 1, err
        assert match in err, err
        assert not out.exists()
    # verify asks before it generates, synth before minutes of synthesis.
    code, _, err = run(capsys, "verify", MODEL, "-o", out, "--scheduler", "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach a Dask scheduler" in err and not out.exists(), err
    design = tmp_path / "design"
    design.mkdir()
    (design / "npu.v").write_text(COUNTER)
    (design / "report.json").write_text("{}")
    code, _, err = run(capsys, "synth", design, "--target", "ice40-up5k", "--scheduler",
                       "tcp://127.0.0.1:9")
    assert code == 2 and "cannot reach a Dask scheduler" in err, err
    assert sorted(p.name for p in design.iterdir()) == ["npu.v", "report.json"]


def test_explore_command_on_the_cluster(capsys, scheduler, tmp_path, monkeypatch):
    """The command line's --scheduler reaches the explorer (a reduced space keeps it short)."""
    _, target, configs = _space()
    monkeypatch.setattr(explore, "candidates", lambda target=None: configs)
    code, out, _ = run(capsys, "explore", MODEL, "--target", "ecp5-25k", "-o", tmp_path / "d",
                       "--scheduler", scheduler)
    assert code == 0, out
    assert out.startswith(f"{len(configs)} configurations of ")
    expected = _results(_reference(), target, tmp_path / "reference")
    assert (tmp_path / "d" / "explore.json").read_bytes() == expected["explore.json"]
    assert expected["pareto.md"].decode() in out


# -- synth and verify on the cluster --------------------------------------------------------------

def test_synth_seeds_on_the_cluster_keep_the_local_result(capsys, scheduler, tmp_path):
    target = load_target("ice40-up5k")
    result = synth.synthesize(COUNTER, target, tmp_path / "yosys")
    local = synth.place_and_route_seeds(result, target, tmp_path / "local", 2)
    assert sorted(local.fmax_by_seed) == [1, 2]
    design = tmp_path / "design"
    design.mkdir()
    (design / "npu.v").write_text(COUNTER)
    (design / "report.json").write_text("{}")
    code, out, _ = run(capsys, "synth", design, "--target", "ice40-up5k", "--seeds", "2",
                       "--scheduler", scheduler)
    assert code == 0, out
    section = json.loads((design / "report.json").read_text())["synth"]
    assert section["fmax_by_seed"] == {str(k): v for k, v in local.fmax_by_seed.items()}
    assert (section["placer_seed"], section["fmax_mhz"]) == (local.seed, local.fmax_mhz)
    assert (synth.parse_nextpnr_log((design / "synth" / "nextpnr.log").read_text())["fmax_mhz"]
            == local.fmax_mhz)                  # the kept placement's log


@pytest.mark.slow        # ~50 s: generate, three simulations and the witnesses
@pytest.mark.verilator
def test_verify_on_the_cluster_gives_the_local_outputs(capsys, scheduler, tmp_path):
    from codesign.design import Design
    from codesign.driver import run_rtl

    model = build(ZOO["conv_relu_pool_fc_qop_u8"])
    code, out, _ = run(capsys, "verify", model, "-o", tmp_path / "d", "--count", "5",
                       "--scheduler", scheduler)
    assert code == 0 and "PASS: 5 inference(s)" in out, out
    design = Design(tmp_path / "d")
    binding = design.graph.inputs[0]
    batch = [[binding.quantize(x)] for x in cli._random_inputs(design.graph, 5, seed=3)]
    local = run_rtl(design.program, design.verilog, batch)
    remote = cluster.run_rtl(design.program, design.verilog, batch, scheduler)
    assert remote.cycles == local.cycles
    for a, b in zip(remote.outputs, local.outputs, strict=True):
        assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
