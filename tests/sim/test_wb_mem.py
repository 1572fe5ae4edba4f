"""sim/wb_mem.v and sim/wb_check.v under Verilator + cocotb.

A small top (``tb_wb_mem``: clock, wb_mem, wb_check on the same bus) is built once per cycle
form; the cocotb tests below drive its Wishbone port. The pytest functions at the end run them:
random traffic with many requests in flight, random latency, jitter and STALL against a Python
model of the memory (the checker must stay silent and the counters count); the host file
mechanism; an access outside the memory; and masters that break the protocol, one fault per
run, which the checker must flag.

The master is our own (:class:`Master`), not cocotbext-wishbone 2.0.1's: under cocotb 2.1 and
Verilator that one reads STALL just after the rising edge, where the next cycle's value already
shows, and drops STB of a refused request; and it counts each ACK twice, so it drops CYC before
the last ACKs of a cycle (wb_check flagged both here).
"""

from __future__ import annotations

import collections
import os
import random
import sys
from pathlib import Path

import cocotb
import pytest
from cocotb.triggers import ClockCycles, FallingEdge

from codesign.sim import runner
from codesign.sim.wbregs import WishboneBusError, wb_read, wb_write

pytestmark = pytest.mark.verilator

WIDTH = 32
DEPTH_LOG2 = 12
#: Environment variables the pytest side hands to the cocotb tests.
FAULT_ENV = "WB_TEST_FAULT"
FILES_ENV = "WB_TEST_FILES"
CLASSIC_ENV = "WB_TEST_CLASSIC"

_TOP = """
module tb_wb_mem #(parameter WIDTH = 32, parameter DEPTH_LOG2 = 12, parameter ADDR_BITS = 30) (
    output reg clk, input rst, input classic,
    input [ADDR_BITS-1:0] wb_adr, input [WIDTH-1:0] wb_dat_w, output [WIDTH-1:0] wb_dat_r,
    input [WIDTH/8-1:0] wb_sel, input wb_cyc, input wb_stb, output wb_ack, input wb_we,
    input [2:0] wb_cti, input [1:0] wb_bte, output wb_err, output wb_stall,
    input mem_load, input mem_dump, input [31:0] dump_lo, input [31:0] dump_hi,
    output mem_err, output check_err, output [7:0] check_fired,
    output [31:0] beats_read, output [31:0] beats_written,
    // A second checker whose both sides the test drives: the slave's violations.
    input probe_cyc, input probe_stb, input probe_we, input [ADDR_BITS-1:0] probe_adr,
    input probe_ack, input probe_err, input probe_stall, output [7:0] probe_fired
);
    initial clk = 1'b0;
    always #5 clk = ~clk;
    wb_mem #(.WIDTH(WIDTH), .DEPTH_LOG2(DEPTH_LOG2), .ADDR_BITS(ADDR_BITS), .QUEUE_LOG2(4)) mem (
        .clk(clk), .rst(rst), .classic(classic), .wb_adr(wb_adr), .wb_dat_w(wb_dat_w),
        .wb_dat_r(wb_dat_r), .wb_sel(wb_sel), .wb_cyc(wb_cyc), .wb_stb(wb_stb),
        .wb_ack(wb_ack), .wb_we(wb_we),
        .wb_cti(wb_cti), .wb_bte(wb_bte), .wb_err(wb_err), .wb_stall(wb_stall),
        .load_req(mem_load), .dump_req(mem_dump), .dump_lo(dump_lo), .dump_hi(dump_hi),
        .err(mem_err), .beats_read(beats_read), .beats_written(beats_written));
    wb_check #(.ADDR_BITS(ADDR_BITS), .WIDTH(WIDTH), .NAME("wb")) check (
        .clk(clk), .rst(rst), .classic(classic), .adr(wb_adr), .dat_w(wb_dat_w), .sel(wb_sel),
        .cyc(wb_cyc), .stb(wb_stb), .we(wb_we), .ack(wb_ack), .wb_err(wb_err), .stall(wb_stall),
        .err(check_err), .fired(check_fired));
    wb_check #(.ADDR_BITS(ADDR_BITS), .WIDTH(WIDTH), .NAME("probe")) probe (
        .clk(clk), .rst(rst), .classic(classic), .adr(probe_adr), .dat_w({WIDTH{1'b0}}),
        .sel({WIDTH/8{1'b1}}), .cyc(probe_cyc), .stb(probe_stb), .we(probe_we),
        .ack(probe_ack), .wb_err(probe_err), .stall(probe_stall), .err(), .fired(probe_fired));
endmodule
"""

_VLT = '`verilator_config\npublic_flat_rw -module "tb_wb_mem" -var "*"\n'

# -------------------------------------------------------------------------------------------------
# cocotb side


class Master:
    """A Wishbone master of many requests in flight (pipelined) or one at a time (classic).

    Drives and samples at falling edges (see :mod:`codesign.sim.wbregs`). ``fault`` breaks the
    protocol on purpose, once, when the chance arises: ``"change_held"`` changes the address
    of a stalled request, ``"drop_cyc"`` drops CYC with requests outstanding,
    ``"stb_without_cyc"`` presents a request with CYC low.
    """

    def __init__(self, dut, rng: random.Random, *, classic: bool, fault: str | None = None):
        self.dut, self.rng, self.classic, self.fault = dut, rng, classic, fault
        self.faulted = False

    def _present(self, req) -> None:
        we, adr, data = req
        self.dut.wb_adr.value = adr
        self.dut.wb_we.value = we
        self.dut.wb_dat_w.value = data
        self.dut.wb_stb.value = 1

    def _break(self, held: bool, outstanding: int, req) -> bool:
        """Apply the fault if its moment has come; returns whether it did. ``held``: a request
        presented before is not taken yet; ``outstanding``: requests the slave has not
        answered (classic: the one presented)."""
        if self.faulted:
            return False
        if self.fault == "change_held" and held:
            self.dut.wb_adr.value = req[1] ^ 1
        elif self.fault == "drop_cyc" and outstanding:
            self.dut.wb_cyc.value = 0
            self.dut.wb_stb.value = 0
        elif self.fault == "stb_without_cyc" and not held and not outstanding:
            self._present(req)
            self.dut.wb_cyc.value = 0
        else:
            return False
        self.faulted = True
        return True

    async def run(self, requests, *, idle: float = 0.2) -> list[tuple[bool, int, int]]:
        """Issue ``requests`` [(we, adr, data)] in order, with idle cycles between them at
        random; returns the answers in order: (ERR, read data, cycles from the request's
        take (pipelined) or first presentation (classic) to its answer)."""
        self.dut.wb_sel.value = (1 << len(self.dut.wb_sel)) - 1
        run = self._run_classic if self.classic else self._run_pipelined
        answers = await run(collections.deque(requests), idle)
        await FallingEdge(self.dut.clk)
        self.dut.wb_cyc.value = 0
        self.dut.wb_stb.value = 0
        return answers

    def _answer(self) -> tuple[bool, int] | None:
        """This cycle's answer (ERR, data), if any."""
        if self.dut.wb_ack.value or self.dut.wb_err.value:
            return bool(self.dut.wb_err.value), int(self.dut.wb_dat_r.value)
        return None

    async def _run_pipelined(self, todo, idle: float) -> list[tuple[bool, int, int]]:
        dut, edge = self.dut, FallingEdge(self.dut.clk)
        taken_at = collections.deque()
        answers, cycle, held = [], 0, False
        while todo or taken_at:
            await edge
            cycle += 1
            outstanding = len(taken_at)     # an answer now still needs CYC at the coming edge
            if (answer := self._answer()) is not None:
                answers.append((*answer, cycle - taken_at.popleft()))
            present = bool(todo) and (held or self.rng.random() >= idle)
            if present:
                self._present(todo[0])
            else:
                dut.wb_stb.value = 0
            dut.wb_cyc.value = int(present or outstanding > 0)
            if self._break(held, outstanding, todo[0] if todo else (0, 0, 0)):
                return answers
            # STALL now is what the coming edge samples with the request.
            held = present and bool(dut.wb_stall.value)
            if present and not held:
                todo.popleft()
                taken_at.append(cycle)
            assert cycle < 100_000, "the memory does not answer"
        return answers

    async def _run_classic(self, todo, idle: float) -> list[tuple[bool, int, int]]:
        dut, edge = self.dut, FallingEdge(self.dut.clk)
        answers, cycle = [], 0
        for req in todo:
            # The previous answer's cycle has ended: the next request (or nothing) now.
            await edge
            cycle += 1
            while self.rng.random() < idle:
                dut.wb_stb.value = 0
                dut.wb_cyc.value = 0
                await edge
                cycle += 1
            if self._break(False, 0, req):
                return answers
            self._present(req)
            dut.wb_cyc.value = 1
            start = cycle
            while (answer := self._answer()) is None:
                await edge
                cycle += 1
                if self._break(True, 1, req):
                    return answers
                assert cycle - start < 10_000, "the memory does not answer"
            answers.append((*answer, cycle - start))
        return answers


async def _reset(dut) -> None:
    for name in ("wb_cyc", "wb_stb", "wb_we", "wb_adr", "wb_dat_w", "wb_cti", "wb_bte",
                 "mem_load", "mem_dump", "dump_lo", "dump_hi", "probe_cyc", "probe_stb",
                 "probe_we", "probe_adr", "probe_ack", "probe_err", "probe_stall"):
        getattr(dut, name).value = 0
    dut.wb_sel.value = (1 << len(dut.wb_sel)) - 1
    dut.classic.value = _classic()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 3)
    await FallingEdge(dut.clk)
    dut.rst.value = 0


def _classic() -> bool:
    return bool(int(os.environ[CLASSIC_ENV]))


def _init_words() -> list[int]:
    """The words of the +mem_init file (written by the pytest side)."""
    path = Path(os.environ[FILES_ENV]) / "init.hex"
    return [int(line, 16) for line in path.read_text().split()]


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def random_traffic(dut):
    """Random writes then reads, many in flight: data, counters, a silent checker."""
    await _reset(dut)
    rng = random.Random(1)
    model = _init_words()
    words = 1 << DEPTH_LOG2
    writes = [(1, rng.randrange(words), rng.getrandbits(WIDTH)) for _ in range(300)]
    reads = [(0, rng.randrange(words), 0) for _ in range(300)]
    master = Master(dut, rng, classic=_classic())
    answers = await master.run(writes + reads)
    for _, adr, data in writes:
        model[adr] = data
    assert [a[0] for a in answers] == [False] * len(answers), "ERR on an in-range access"
    assert [a[1] for a in answers[len(writes):]] == [model[adr] for _, adr, _ in reads]
    assert int(dut.beats_written.value) == len(writes)
    assert int(dut.beats_read.value) == len(reads)
    latencies = [a[2] for a in answers]
    dut._log.info("answer latencies: min %d max %d", min(latencies), max(latencies))
    # +mem_latency is a lower bound, and the exact latency without jitter and stall.
    latency = int(os.environ["WB_TEST_LATENCY"])
    if os.environ["WB_TEST_EXACT"] == "1":
        assert set(latencies) == {latency}
    assert min(latencies) >= latency
    await ClockCycles(dut.clk, 2)
    assert int(dut.check_err.value) == 0
    assert int(dut.mem_err.value) == 0
    dut.wb_cyc.value = 0


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def host_files(dut):
    """+mem_load and +mem_dump move whole regions, and a host access sees them."""
    await _reset(dut)
    files = Path(os.environ[FILES_ENV])
    rng = random.Random(2)
    region = [rng.getrandbits(WIDTH) for _ in range(64)]
    (files / "load.hex").write_text("@100\n" + "".join(f"{w:08x}\n" for w in region))
    await _strobe(dut, dut.mem_load)
    assert await wb_read(dut, 0x100 + 5, prefix="wb_", classic=_classic()) == region[5]
    await wb_write(dut, 0x100 + 7, 0x1234_5678, prefix="wb_", classic=_classic())
    region[7] = 0x1234_5678
    dut.dump_lo.value = 0x100
    dut.dump_hi.value = 0x100 + len(region) - 1
    await _strobe(dut, dut.mem_dump)
    dumped = [int(ln, 16) for ln in (files / "dump.hex").read_text().split()
              if not ln.startswith(("//", "@"))]
    assert dumped == region
    assert int(dut.check_err.value) == 0


async def _strobe(dut, signal) -> None:
    await FallingEdge(dut.clk)
    signal.value = 1
    await FallingEdge(dut.clk)
    signal.value = 0


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def out_of_range(dut):
    """An access beyond the memory is answered with ERR and latches mem_err."""
    await _reset(dut)
    with pytest.raises(WishboneBusError):
        await wb_read(dut, 1 << DEPTH_LOG2, prefix="wb_", classic=_classic())
    assert int(dut.mem_err.value) == 1
    assert int(dut.check_err.value) == 0


#: The wb_check rule (bit of ``fired``) each master fault breaks.
FAULT_RULES = {"stb_without_cyc": 1, "drop_cyc": 5, "change_held": 7}


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def broken_master(dut):
    """A master with the fault named by WB_TEST_FAULT: the checker must flag its rule."""
    await _reset(dut)
    rng = random.Random(4)
    requests = [(1, rng.randrange(64), rng.getrandbits(WIDTH)) for _ in range(200)]
    master = Master(dut, rng, classic=_classic(), fault=os.environ[FAULT_ENV])
    await master.run(requests)
    assert master.faulted, "the fault never had its chance"
    await ClockCycles(dut.clk, 2)
    assert int(dut.check_err.value) == 1
    assert int(dut.check_fired.value) >> FAULT_RULES[os.environ[FAULT_ENV]] & 1


async def _probe(dut, cycles) -> int:
    """Drive the probe checker's link with ``cycles`` [{signal: value}] (one dict per cycle,
    the rest 0); returns its ``fired`` bits afterwards."""
    names = ("cyc", "stb", "ack", "err", "stall")
    for values in cycles:
        await FallingEdge(dut.clk)
        for name in names:
            getattr(dut, f"probe_{name}").value = values.get(name, 0)
    await FallingEdge(dut.clk)
    for name in names:
        getattr(dut, f"probe_{name}").value = 0
    await FallingEdge(dut.clk)
    return int(dut.probe_fired.value)


@cocotb.test(timeout_time=5, timeout_unit="ms")
async def slave_violations(dut):
    """The slave's side of the rules, one violation after the other on the probe checker."""
    await _reset(dut)
    request, stalled = {"cyc": 1, "stb": 1}, {"cyc": 1, "stb": 1, "stall": 1}
    # A legal exchange, with a stalled cycle in the pipelined form.
    legal = [request, {"cyc": 1, "stb": 1, "ack": 1}] if _classic() else \
        [stalled, request, {"cyc": 1}, {"cyc": 1, "ack": 1}]
    assert await _probe(dut, legal) == 0
    expected = 0
    for rule, cycles in [
        (3, [{"ack": 1}]),                                  # ACK while CYC is low
        (4, [{"cyc": 1}, {"cyc": 1, "ack": 1}]),            # an ACK for no request
        # ACK and ERR together, for a request (classic: answered in its own cycle).
        (2, [{"cyc": 1, "stb": 1, "ack": 1, "err": 1}] if _classic() else
            [request, {"cyc": 1, "ack": 1, "err": 1}]),
    ]:
        expected |= 1 << rule
        assert await _probe(dut, cycles) == expected, f"rule {rule}"


# -------------------------------------------------------------------------------------------------
# pytest side


@pytest.fixture(scope="module")
def build_dir(tmp_path_factory) -> Path:
    """tb_wb_mem built once: the cycle form is an input, so the build serves both."""
    build_dir = tmp_path_factory.mktemp("wb_mem_build")
    src = build_dir / "src"
    src.mkdir()
    (src / "tb_wb_mem.v").write_text(_TOP)
    (src / "tb.vlt").write_text(_VLT)
    sim_dir = Path(runner.__file__).parent
    sim = runner._Verilator(timeout=600, extra_env={"TMPDIR": str(build_dir)})
    sim.build(sources=[src / "tb.vlt", sim_dir / "wb_mem.v", sim_dir / "wb_check.v",
                       src / "tb_wb_mem.v"],
              hdl_toplevel="tb_wb_mem", build_args=list(runner._VERILATOR_FLAGS),
              build_dir=build_dir, timescale=("1ns", "1ps"), log_file=build_dir / "build.log")
    return build_dir


def _run(build_dir: Path, tmp_path: Path, classic: bool, testcase: str, plusargs=(),
         env=None) -> None:
    rng = random.Random(0)
    (tmp_path / "init.hex").write_text(
        "".join(f"{rng.getrandbits(WIDTH):08x}\n" for _ in range(1 << DEPTH_LOG2)))
    here = str(Path(__file__).resolve().parent)
    sim = runner._Verilator(timeout=300, extra_env={
        "PYTHONPATH": os.pathsep.join([here, *sys.path]), FILES_ENV: str(tmp_path),
        CLASSIC_ENV: str(int(classic)), **(env or {})})
    sim.test(test_module=Path(__file__).stem, testcase=testcase, hdl_toplevel="tb_wb_mem",
             hdl_toplevel_lang="verilog", build_dir=build_dir, test_dir=tmp_path,
             plusargs=[f"+mem_init={tmp_path / 'init.hex'}",
                       f"+mem_load={tmp_path / 'load.hex'}",
                       f"+mem_dump={tmp_path / 'dump.hex'}", *plusargs],
             log_file=tmp_path / "sim.log")


FORMS = pytest.mark.parametrize("classic", [False, True], ids=["pipelined", "classic"])


@FORMS
@pytest.mark.parametrize("latency,jitter,stall", [pytest.param(1, 0, 0, marks=pytest.mark.slow),
                                                 pytest.param(3, 0, 0, marks=pytest.mark.slow),
                                                 (2, 20, 40)])
def test_random_traffic(build_dir, tmp_path, classic, latency, jitter, stall):
    _run(build_dir, tmp_path, classic, "random_traffic",
         [f"+mem_latency={latency}", f"+mem_jitter={jitter}", f"+mem_stall={stall}",
          "+mem_seed=9"],
         {"WB_TEST_LATENCY": str(latency), "WB_TEST_EXACT": str(int(jitter == stall == 0))})


@FORMS
def test_checker_flags_broken_slave(build_dir, tmp_path, classic):
    _run(build_dir, tmp_path, classic, "slave_violations")


@FORMS
def test_host_files_and_errors(build_dir, tmp_path, classic):
    _run(build_dir, tmp_path, classic, "host_files,out_of_range",
         ["+mem_latency=2", "+mem_stall=30"])


@FORMS
@pytest.mark.parametrize("fault", ["change_held", "drop_cyc", "stb_without_cyc"])
def test_checker_flags_broken_master(build_dir, tmp_path, classic, fault):
    _run(build_dir, tmp_path, classic, "broken_master", ["+mem_latency=4", "+mem_stall=50"],
         {FAULT_ENV: fault})
