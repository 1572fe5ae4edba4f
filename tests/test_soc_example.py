"""The PicoRV32 SoC example (examples/picorv32_soc): an RV32I soft CPU runs the C driver against
the NPU under Verilator, and its outputs are the golden model's, bit for bit."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from codesign.design import read_batch
from codesign.isa import config_id, version_word
from codesign.reference import run as reference
from codesign.timing import program_cycles

_ROOT = Path(__file__).resolve().parent.parent
_MLP = _ROOT / "models" / "digits_mlp_qdq.onnx"
_MLP_INPUTS = _ROOT / "models" / "digits_mlp_sample.npy"


def _load_example():
    spec = importlib.util.spec_from_file_location(
        "picorv32_soc_build", _ROOT / "examples" / "picorv32_soc" / "build.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module     # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


soc = _load_example()
pytestmark = pytest.mark.verilator


@pytest.fixture(scope="module")
def hardware(tmp_path_factory):
    """The MLP's design and the simulator of the SoC around its NPU."""
    design = soc.generate(_MLP, tmp_path_factory.mktemp("soc") / "design")
    return design, soc.build_simulator(design)


def _run(design, simulator, firmware_design, batch, work: Path):
    """Firmware built from ``firmware_design`` (its driver, register map and model) with
    ``batch`` as its inputs, run on the SoC of ``design``."""
    image = soc.build_firmware(firmware_design.dir, soc.job_header(firmware_design, batch),
                               work, design.config.bus_bytes)
    output_bytes = sum(r.shape[0] * r.shape[1] * r.shape[2] for r in design.program.outputs)
    return soc.run(simulator, image, work, bus_bytes=design.config.bus_bytes,
                   n_runs=len(batch), output_bytes=output_bytes)


def test_firmware_runs_the_model_bit_exactly(hardware, tmp_path):
    design, simulator = hardware
    batch = read_batch(design.graph, _MLP_INPUTS)[0][:2]
    result = _run(design, simulator, design, batch, tmp_path)
    assert (result.reason, result.code, result.status, result.step) == ("exit", 0, 0, "none")
    # Run 0 polls CTRL, run 1 waits for the interrupt: both must see the whole run.
    assert [r.irq for r in result.runs] == [False, True]
    for inputs, got, record in zip(batch, result.outputs, result.runs, strict=True):
        values = reference(design.graph, inputs)
        want = b"".join(np.ascontiguousarray(values[b.tensor.name]).tobytes()
                        for b in design.graph.outputs)
        assert got == want
        # The native port is cycle exact: CYCLES is the timing model's figure.
        assert record.npu_cycles == program_cycles(design.program)
        assert record.run_cycles > record.npu_cycles
    assert "done" in result.console


def test_wrong_config_id_is_reported(hardware, tmp_path):
    """Firmware built for an NPU that differs only in its ACT depth: VERSION agrees, CONFIG_ID
    does not, and codesign_npu_init says so before anything is loaded."""
    design, simulator = hardware
    other = soc.generate(_MLP, tmp_path / "other",
                         ["--act-depth", str(design.config.act_depth // 2)])
    assert version_word(other.config) == version_word(design.config)
    assert config_id(other.config) != config_id(design.config)
    batch = read_batch(other.graph, _MLP_INPUTS)[0][:1]
    result = _run(design, simulator, other, batch, tmp_path / "run")
    errors = {name: value for value, name in soc.driver_errors(other.dir).items()}
    assert result.reason == "exit"
    assert result.status == result.code == errors["CODESIGN_NPU_ERR_CONFIG"]
    assert result.step == "codesign_npu_init"
    assert result.runs == ()
    assert "codesign_npu error" in result.console


def test_command_line(tmp_path, capsys):
    assert soc.main([str(_MLP), "--input", str(_MLP_INPUTS), "--runs", "1",
                     "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "outputs match the golden model bit-exactly (1 run(s))" in out
    npu_cycles = re.search(r"NPU CYCLES (\d+) \(timing model (\d+)\)", out)
    assert npu_cycles and npu_cycles[1] == npu_cycles[2]


@pytest.mark.slow
def test_command_line_runs_the_default_model(tmp_path, capsys):
    """build.py with no model: the CNN, whose unfolded first layer the driver packs (im2col)
    on the CPU: some two million cycles of RV32I."""
    assert soc.main(["--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "outputs match the golden model bit-exactly (2 run(s))" in out



@pytest.mark.parametrize("code, reason", [
    (f"li t0, {soc.SYS_ADDR + 16:#x}\n    sw zero, 0(t0)", "fault"),  # past the devices
    (".word 0", "trap"),                                             # an illegal instruction
    ("", "timeout"),                                                 # never exits
], ids=["fault", "trap", "timeout"])
def test_firmware_that_does_not_exit_ends_the_simulation(hardware, tmp_path, code, reason):
    design, simulator = hardware
    source = tmp_path / "start.S"
    source.write_text(f'    .section .text.start, "ax"\n    .global _start\n_start:\n'
                      f'    {code}\n1:\n    j 1b\n')
    image = soc.compile_firmware([source], [], tmp_path, design.config.bus_bytes)
    result = soc.run(simulator, image, tmp_path, bus_bytes=design.config.bus_bytes, n_runs=1,
                     output_bytes=1, max_cycles=10_000)
    assert result.reason == reason
    assert result.runs == ()
    assert result.cycles < 10_000 if reason != "timeout" else result.cycles == 10_000
