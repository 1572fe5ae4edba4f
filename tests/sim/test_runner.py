"""The Verilator/cocotb harness (codesign.sim.runner), exercised through Verilator.

Until the real NPU exists these tests use a tiny Amaranth stand-in with the NPU's top-level port
contract (docs/rtl-contract.md): on start it reads the word at PROG_BASE, waits ``word & 0xff``
cycles, writes ``word + 1`` to PROG_BASE + 1 and raises done; a word with bit 31 set makes it
hang (for the max-cycles guard).
"""

from __future__ import annotations

import os
import time

import numpy as np
import pytest
from amaranth.back import verilog
from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from codesign.isa import CSR_ADDR_BITS, Csr, HwConfig
from codesign.sim import runner
from codesign.sim.runner import Inference, SimulationError, run_program

pytestmark = pytest.mark.verilator


class StandIn(wiring.Component):
    """A stand-in for ``npu_top`` honouring the top-level port contract."""

    def __init__(self, config: HwConfig):
        self._config = config
        super().__init__({
            "csr_addr": In(CSR_ADDR_BITS), "csr_we": In(1), "csr_wdata": In(32),
            "csr_rdata": Out(32), "done": Out(1), "irq": Out(1),
            "mem_addr": Out(config.ext_addr_bits), "mem_re": Out(1),
            "mem_rdata": In(8 * config.bus_bytes),
            "mem_we": Out(1), "mem_wdata": Out(8 * config.bus_bytes),
        })

    def elaborate(self, platform):
        m = Module()
        width = 8 * self._config.bus_bytes
        prog_base = Signal(self._config.ext_addr_bits)
        cycles = Signal(32)
        busy = Signal()
        word = Signal(width)
        wait = Signal(8)

        with m.If(self.csr_we & (self.csr_addr == Csr.PROG_BASE)):
            m.d.sync += prog_base.eq(self.csr_wdata)
        with m.Switch(self.csr_addr):
            with m.Case(Csr.CTRL):
                m.d.comb += self.csr_rdata.eq(busy | (self.done << 1))
            with m.Case(Csr.PROG_BASE):
                m.d.comb += self.csr_rdata.eq(prog_base)
            with m.Case(Csr.CYCLES):
                m.d.comb += self.csr_rdata.eq(cycles)
        with m.If(busy):
            m.d.sync += cycles.eq(cycles + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.csr_we & (self.csr_addr == Csr.CTRL) & self.csr_wdata[0]):
                    m.d.sync += [busy.eq(1), self.done.eq(0), cycles.eq(0)]
                    m.next = "READ"
            with m.State("READ"):
                m.d.comb += [self.mem_addr.eq(prog_base), self.mem_re.eq(1)]
                m.next = "LATCH"
            with m.State("LATCH"):
                m.d.sync += [word.eq(self.mem_rdata), wait.eq(self.mem_rdata[:8])]
                m.next = "WAIT"
            with m.State("WAIT"):
                with m.If(word[31]):
                    pass                                    # hang: the max-cycles guard's job
                with m.Elif(wait == 0):
                    m.next = "WRITE"
                with m.Else():
                    m.d.sync += wait.eq(wait - 1)
            with m.State("WRITE"):
                m.d.comb += [self.mem_addr.eq(prog_base + 1), self.mem_we.eq(1),
                             self.mem_wdata.eq(word + 1)]
                m.d.sync += [busy.eq(0), self.done.eq(1)]
                m.next = "IDLE"
        return m


def standin_verilog(config: HwConfig) -> str:
    return verilog.convert(StandIn(config), name="npu_top", emit_src=False)


def word_bytes(value: int, config: HwConfig) -> bytes:
    return value.to_bytes(config.bus_bytes, "little")


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A private build cache for this module (so 'no rebuild' is observable)."""
    return tmp_path_factory.mktemp("cache")


CONFIG = HwConfig(rows=4, cols=8, bus_bytes=8)


def test_preload_inputs_outputs_cycles_and_cache(cache):
    config = CONFIG
    text = standin_verilog(config)
    b = config.bus_bytes
    prog_base = 100
    image = np.zeros(256 * b, np.uint8)
    image[prog_base * b:(prog_base + 1) * b] = np.frombuffer(word_bytes(5, config), np.uint8)
    image[7 * b:8 * b] = np.arange(b, dtype=np.uint8) + 1     # untouched preload, read back

    t0 = time.perf_counter()
    first = run_program(config, text, image, prog_base, [
        Inference(reads=[(prog_base + 1, b), (7, b)]),
        # Second inference: new input word, read a partial word and a two-word region.
        Inference(writes=[(prog_base, word_bytes(0x1234_5600 | 20, config))],
                  reads=[(prog_base, 2 * b), (prog_base + 1, 3)]),
        Inference(writes=[(prog_base, word_bytes(0xAB_0000_0000_0000 | 0, config))],
                  reads=[(prog_base + 1, b)]),
    ], cache_root=cache)
    build_time = time.perf_counter() - t0

    assert first[0].outputs == [word_bytes(6, config), bytes(range(1, b + 1))]
    assert first[1].outputs == [word_bytes(0x1234_5614, config) + word_bytes(0x1234_5615, config),
                                word_bytes(0x1234_5615, config)[:3]]
    assert first[2].outputs == [word_bytes(0xAB_0000_0000_0001, config)]
    # The stand-in is busy for read + latch + (wait + 1) + write cycles.
    assert [r.cycles for r in first] == [5 + 4, 20 + 4, 0 + 4]
    assert all(r.wall_seconds > 0 for r in first)
    assert runner.cycles_per_second(first) > 0

    builds = list((cache / "verilator").iterdir())
    t0 = time.perf_counter()
    again = run_program(config, text, image, prog_base, [Inference(reads=[(prog_base + 1, b)])],
                        cache_root=cache)
    cached_time = time.perf_counter() - t0
    assert again[0].outputs == [word_bytes(6, config)]
    assert list((cache / "verilator").iterdir()) == builds        # no new build entry
    assert [p.name for p in builds if ".tmp-" in p.name] == []    # no leftovers
    print(f"\nfirst run (build + sim) {build_time:.1f} s, cached run {cached_time:.1f} s")
    assert cached_time < build_time / 2


def test_max_cycles_guard_keeps_the_logs(cache, tmp_path):
    config = CONFIG
    b = config.bus_bytes
    image = np.zeros(16 * b, np.uint8)
    image[0:b] = np.frombuffer(word_bytes(1 << 31, config), np.uint8)   # stand-in hangs
    kept = tmp_path / "failed"
    with pytest.raises(SimulationError, match="max_cycles") as failure:
        run_program(config, standin_verilog(config), image, 0, [Inference(reads=[(1, b)])],
                    max_cycles=1000, cache_root=cache, keep_failed=kept)
    assert str(failure.value).splitlines()[0].endswith(f"(logs: {kept})")
    assert "max_cycles" in (kept / "result.json").read_text()
    assert "run_job" in (kept / "sim.log").read_text()
    assert (kept / "job.json").is_file() and not (kept / "image.hex").exists()


# -------------------------------------------------------------------------------------------------
# The real NPU (codesign.rtl.top), against the instruction-level model.

def test_real_npu_load_store_matches_isasim(tmp_path):
    top = pytest.importorskip("codesign.rtl.top")
    from codesign.isa import Mem, Opcode, encode
    from codesign.isasim import IsaSim

    config = HwConfig(rows=4, cols=4, bus_bytes=4, act_depth=64, wgt_depth=16, acc_depth=16,
                      prm_depth=4)
    b = config.bus_bytes
    src, dst, rows, length = 64, 128, 3, 4      # a strided 3x4-word block in, contiguous out
    program = [
        encode(Opcode.LOAD, mem=Mem.ACT, sp_addr=0, sp_stride=length, ext_addr=src,
               ext_stride=5, rows=rows, length=length),
        encode(Opcode.STORE, mem=Mem.ACT, sp_addr=0, sp_stride=length, ext_addr=dst,
               ext_stride=length, rows=rows, length=length),
        encode(Opcode.END),
    ]
    prog_base = 8
    image = np.zeros(256 * b, np.uint8)
    code = b"".join(insn.to_bytes(config.insn_words * b, "little") for insn in program)
    image[prog_base * b:prog_base * b + len(code)] = np.frombuffer(code, np.uint8)

    rng = np.random.default_rng(1)
    n_in = (rows - 1) * 5 + length                # words spanned by the strided source
    inputs = [rng.integers(0, 256, n_in * b, dtype=np.uint8).tobytes() for _ in range(2)]
    results = run_program(
        config, top.generate_verilog(config), image, prog_base,
        [Inference(writes=[(src, x)], reads=[(dst, rows * length * b)]) for x in inputs],
        max_cycles=100_000)

    for x, res in zip(inputs, results, strict=True):
        ext = image.copy()
        ext[src * b:src * b + len(x)] = np.frombuffer(x, np.uint8)
        sim = IsaSim(config, ext)
        sim.run(prog_base)
        expected = sim.ext[dst * b:(dst + rows * length) * b].tobytes()
        assert res.outputs == [expected]
        assert 0 < res.cycles < 100_000
    print(f"\nreal NPU: cycles {[r.cycles for r in results]}, "
          f"{runner.cycles_per_second(results):.0f} cycles/s")


def test_concurrent_builds_share_one_entry(tmp_path):
    """Two processes asking for the same new design: one builds, the other waits and reuses."""
    import subprocess
    import sys
    script = (
        "import sys; from pathlib import Path; "
        "from codesign.sim import runner; from tests.sim.test_runner import CONFIG; "
        "build_into = runner._build_into; "
        "runner._build_into = lambda *a: (print('built'), build_into(*a)); "
        "print(runner.build(CONFIG, Path(sys.argv[1]).read_text(), cache_root=Path(sys.argv[2])))"
    )
    source = tmp_path / "npu_top.v"
    # A distinct design text (a comment is enough) so that neither process finds it cached.
    source.write_text(standin_verilog(CONFIG) + f"// concurrent {time.time_ns()}\n")
    cache = tmp_path / "cache"
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    procs = [subprocess.Popen([sys.executable, "-c", script, str(source), str(cache)], cwd=root,
                              env=env, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0].split() for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    assert sorted(len(out) for out in outs) == [1, 2]          # one of them built
    outs = [out[-1] for out in outs]
    assert outs[0] == outs[1]
    entries = sorted(p.name for p in (cache / "verilator").iterdir()
                     if not p.name.endswith(".lock"))
    assert entries == [os.path.basename(outs[0])]


def test_build_failure_leaves_no_entry(tmp_path):
    bad = standin_verilog(CONFIG).replace("endmodule", "endmodule garbage", 1)
    with pytest.raises(runner.BuildError, match="build log tail"):
        runner.build(CONFIG, bad, cache_root=tmp_path)
    assert [p for p in (tmp_path / "verilator").iterdir() if not p.name.endswith(".lock")] == []


def test_bad_arguments():
    image = np.zeros(8, np.uint8)
    with pytest.raises(ValueError, match="whole"):
        run_program(CONFIG, "", np.zeros(3, np.uint8), 0, [])
    with pytest.raises(ValueError, match="whole"):
        run_program(CONFIG, standin_verilog(CONFIG), image, 0,
                    [Inference(writes=[(0, b"abc")])])
