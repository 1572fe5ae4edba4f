"""sim/axi_mem.v and sim/axi_check.v under Verilator + cocotb (test benches in axi_tb.v).

cocotbext-axi's ``AxiMaster`` drives random concurrent bursts (unaligned addresses and lengths,
so partial WSTRB too) into ``axi_mem`` under several latency / stall / jitter settings: every
byte read equals a shadow of the memory, the beat counters match, the host dump equals the shadow,
and the protocol checker stays silent. Then a small Verilog master that breaks the protocol on
purpose, and forged slave responses, prove the checker fires (and stays silent on the same
master's legal run).

The functions decorated with ``@cocotb.test`` run inside the simulator (this module is the cocotb
test module); the ``test_*`` functions are the pytest side that builds and launches it.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, RisingEdge

from codesign.sim import runner

from .cocotb_support import build_tb, clock_keepalive, python_path, quiet_cocotbext

pytestmark = pytest.mark.verilator

_HERE = Path(__file__).resolve().parent
_SOURCES = (runner._SIM_DIR / "axi_mem.v", runner._SIM_DIR / "axi_check.v", _HERE / "axi_tb.v")
#: How the pytest side hands the run's settings to the cocotb side.
ARGS_ENV = "CODESIGN_AXI_MEM_TEST"
#: Memory of the test bench: 2**12 words.
DEPTH_LOG2 = 12
WIDTH_BYTES = 4
MEM_BYTES = WIDTH_BYTES << DEPTH_LOG2


# -------------------------------------------------------------------------------------------------
# cocotb side

def _args() -> dict:
    """The run's settings (and cocotbext-axi's deprecation warnings silenced)."""
    quiet_cocotbext()
    return json.loads(os.environ[ARGS_ENV])


async def _reset(dut) -> None:
    cocotb.start_soon(clock_keepalive(dut))
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def _words(addr: int, length: int) -> int:
    """Bus words touched by ``length`` bytes at ``addr``: the beats of the transfer."""
    return (addr + length - 1) // WIDTH_BYTES - addr // WIDTH_BYTES + 1


@cocotb.test(timeout_time=20, timeout_unit="ms")
async def random_traffic(dut):
    """Rounds of concurrent writes and reads at disjoint random places, checked against a
    shadow of the memory (initialised from +mem_init), then the whole memory dumped."""
    from cocotbext.axi import AxiBus, AxiMaster

    args = _args()
    rng = random.Random(args["seed"])
    shadow = bytearray(Path(args["init_bytes"]).read_bytes())
    for name in ("mem_load", "mem_dump", "dump_lo", "dump_hi"):
        getattr(dut, name).value = 0
    await _reset(dut)
    axi = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
    slot = MEM_BYTES // 16
    beats = {"read": 0, "write": 0}
    for _ in range(args["rounds"]):
        ops = []
        for place in rng.sample(range(16), 8):
            length = rng.randint(1, slot)
            addr = place * slot + rng.randint(0, slot - length)
            kind = rng.choice(("read", "write"))
            beats[kind] += _words(addr, length)
            if kind == "write":
                data = rng.randbytes(length)
                shadow[addr:addr + length] = data
                ops.append((None, cocotb.start_soon(axi.write(addr, data))))
            else:
                ops.append((bytes(shadow[addr:addr + length]),
                            cocotb.start_soon(axi.read(addr, length))))
        for want, task in ops:
            result = await task
            if want is not None:
                assert bytes(result.data) == want, f"read of {len(want)} bytes differs"
    await ClockCycles(dut.clk, 2)
    assert (int(dut.beats_read.value), int(dut.beats_written.value)) == \
        (beats["read"], beats["write"])
    dut.dump_hi.value = MEM_BYTES // WIDTH_BYTES - 1
    dut.mem_dump.value = 1
    await RisingEdge(dut.clk)
    dut.mem_dump.value = 0
    await RisingEdge(dut.clk)
    dump = runner._read_dump(Path(args["dump"]), MEM_BYTES // WIDTH_BYTES, WIDTH_BYTES)
    assert dump == bytes(shadow)
    assert int(dut.check_err.value) == 0 and int(dut.mem_err.value) == 0


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def latency_and_throughput(dut):
    """Without stalls: the first R beat comes exactly +mem_latency cycles after the AR
    handshake, and a 256-beat burst's beats take consecutive cycles."""
    from cocotbext.axi import AxiBus, AxiMaster

    args = _args()
    for name in ("mem_load", "mem_dump", "dump_lo", "dump_hi"):
        getattr(dut, name).value = 0
    await _reset(dut)
    axi = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
    cycles = {"ar": [], "r": []}

    async def watch():
        cycle = 0
        while True:
            await RisingEdge(dut.clk)
            cycle += 1
            if dut.s_axi_arvalid.value and dut.s_axi_arready.value:
                cycles["ar"].append(cycle)
            if dut.s_axi_rvalid.value and dut.s_axi_rready.value:
                cycles["r"].append(cycle)

    watcher = cocotb.start_soon(watch())
    await axi.read(0, 256 * WIDTH_BYTES)
    watcher.cancel()
    assert len(cycles["ar"]) == 1 and len(cycles["r"]) == 256
    assert cycles["r"][0] - cycles["ar"][0] == args["latency"]
    assert cycles["r"] == list(range(cycles["r"][0], cycles["r"][0] + 256))
    assert int(dut.check_err.value) == 0 and int(dut.mem_err.value) == 0


@cocotb.test(timeout_time=1, timeout_unit="ms")
async def rogue(dut):
    """The rogue master's run: the checker fires exactly when the mode breaks the protocol."""
    args = _args()
    await _reset(dut)
    await ClockCycles(dut.clk, 200)
    assert int(dut.check_err.value) == int(args["mode"] != 0)


# -------------------------------------------------------------------------------------------------
# pytest side

@pytest.fixture(scope="module")
def builds() -> dict[str, Path]:
    sources = {path.name: path.read_text() for path in _SOURCES}
    return {
        "axi_mem_tb": build_tb("axi_mem_tb", sources, {"WIDTH": 8 * WIDTH_BYTES,
                                                       "DEPTH_LOG2": DEPTH_LOG2}),
        "axi_rogue_tb": build_tb("axi_rogue_tb", sources, {}),
    }


def _run(build_dir: Path, top: str, testcase: str, run_dir: Path, plusargs: list[str],
         args: dict) -> None:
    verilator = runner._Verilator(timeout=300, extra_env={
        ARGS_ENV: json.dumps(args),
        "PYTHONPATH": python_path(),
    })
    verilator.test(test_module="tests.sim.test_axi_mem", testcase=testcase, hdl_toplevel=top,
                   hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=run_dir,
                   results_xml=str(run_dir / "results.xml"), plusargs=plusargs,
                   log_file=run_dir / "sim.log")


@pytest.mark.parametrize("latency,stall,jitter,seed", [
    pytest.param(1, 0, 0, 1, marks=pytest.mark.slow), (4, 30, 10, 2),
    pytest.param(20, 60, 40, 3, marks=pytest.mark.slow),
])
def test_random_traffic(builds, tmp_path, latency, stall, jitter, seed):
    init = np.random.default_rng(seed).integers(0, 256, MEM_BYTES, dtype=np.uint8)
    (tmp_path / "init.bin").write_bytes(init.tobytes())
    runner._write_regions(tmp_path / "init.hex", [(0, init)], WIDTH_BYTES)
    _run(builds["axi_mem_tb"], "axi_mem_tb", "random_traffic", tmp_path,
         [f"+mem_init={tmp_path / 'init.hex'}", f"+mem_dump={tmp_path / 'dump.hex'}",
          f"+mem_latency={latency}", f"+mem_stall={stall}", f"+mem_jitter={jitter}",
          f"+mem_seed={seed}"],
         {"seed": seed, "rounds": 6, "init_bytes": str(tmp_path / "init.bin"),
          "dump": str(tmp_path / "dump.hex")})


@pytest.mark.parametrize("latency", [1, 7])
def test_latency_and_throughput(builds, tmp_path, latency):
    _run(builds["axi_mem_tb"], "axi_mem_tb", "latency_and_throughput", tmp_path,
         [f"+mem_latency={latency}"], {"latency": latency})


#: What the checker must report first on each mode of axi_rogue_master (0: nothing).
ROGUE_REPORTS = {
    0: None,
    1: "AR VALID dropped before READY",
    2: "AR payload changed before READY",
    3: "WLAST on the wrong beat",
    4: "AR INCR burst crosses 4 KiB",
    5: "AR FIXED/WRAP burst over 16 beats",
    6: "R beat with no outstanding read for its ID",
    7: "B with no completed write for its ID",
    8: "RLAST on the wrong beat",
}


@pytest.mark.parametrize("mode", sorted(ROGUE_REPORTS))
def test_checker_fires_on_a_rogue_master(builds, tmp_path, mode):
    """The checker's err rises (and its first report names the violation) exactly on the
    broken modes; the master's legal mode passes silently through the same memory."""
    _run(builds["axi_rogue_tb"], "axi_rogue_tb", "rogue", tmp_path,
         [f"+rogue={mode}", "+mem_stall=50", "+mem_seed=5"], {"mode": mode})
    reports = [line.partition("axi_check: ")[2] for line in
               (tmp_path / "sim.log").read_text().splitlines() if "axi_check: " in line]
    if ROGUE_REPORTS[mode] is None:
        assert reports == []
    else:
        assert reports and reports[0].startswith(ROGUE_REPORTS[mode])
