"""AxiMaster and AxiLiteRegs (codesign.rtl.axi) in the Amaranth simulator.

AxiMaster sits between a randomized model of the core (read and write phases of bursts at
4 KiB-respecting addresses, random command gaps and ``rd_ready`` backpressure, at most
``max_reads`` read beats outstanding, write beats offered before or after their command) and a
Python AXI4 slave with random latency and random stalls on every channel. One testbench loop
drives every input at the start of a cycle, reads the handshakes and advances both models after
the clock edge, so the models see exactly what the RTL does.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field

import pytest
from amaranth.sim import Simulator

from codesign.isa import Csr, HwConfig
from codesign.rtl.axi import (
    AXI_BURST_INCR,
    AXI_RESP_OKAY,
    AXI_RESP_SLVERR,
    AxiLiteRegs,
    AxiMaster,
)

MEM_BYTES = 16 << 10
PAGE = 4096


def _config(bus_bytes: int, max_reads: int) -> HwConfig:
    return HwConfig(rows=4, cols=max(4, bus_bytes), bus_bytes=bus_bytes, bus="axi4",
                    max_reads=max_reads, axi_id_bits=3)


# -------------------------------------------------------------------------------------------------
# The AXI4 slave

@dataclass
class Burst:
    addr: int
    len: int
    due: int
    beat: int = 0


@dataclass
class AxiSlave:
    """AXI4 slave over ``mem``: every accepted burst answers after
    ``1 + min_latency + randint(0, latency)`` cycles; each cycle each ready, and each valid it
    could raise, is withheld with probability ``stall``. ``bad_r`` / ``bad_b``: indices of R
    beats / B responses answered with SLVERR. Checks the master's side of the protocol as it
    goes."""

    rng: random.Random
    mem: bytearray
    bus_bytes: int
    latency: int
    stall: float
    min_latency: int = 0
    bad_r: frozenset = frozenset()
    bad_b: frozenset = frozenset()
    reads: deque = field(default_factory=deque)
    aws: deque = field(default_factory=deque)
    wbeats: deque = field(default_factory=deque)
    bs: deque = field(default_factory=deque)
    rvalid: bool = False
    bvalid: bool = False
    r_beats: int = 0
    b_count: int = 0
    held: dict = field(default_factory=dict)

    def _due(self, cycle: int) -> int:
        """First cycle a response to a request accepted in ``cycle`` may be offered."""
        return cycle + 1 + self.min_latency + self.rng.randint(0, self.latency)

    def _go(self) -> bool:
        return self.rng.random() >= self.stall

    def drive(self, ctx, dut, cycle: int) -> None:
        """Set the slave's outputs for ``cycle``; a raised VALID holds until its handshake."""
        for ch in ("ar", "aw", "w"):
            ctx.set(getattr(dut, f"m_axi_{ch}ready"), self._go())
        if not self.rvalid and self.reads and self.reads[0].due <= cycle and self._go():
            self.rvalid = True
        ctx.set(dut.m_axi_rvalid, self.rvalid)
        if self.rvalid:
            burst = self.reads[0]
            addr = burst.addr + burst.beat * self.bus_bytes
            ctx.set(dut.m_axi_rdata,
                    int.from_bytes(self.mem[addr:addr + self.bus_bytes], "little"))
            ctx.set(dut.m_axi_rlast, burst.beat == burst.len)
            ctx.set(dut.m_axi_rresp,
                    AXI_RESP_SLVERR if self.r_beats in self.bad_r else AXI_RESP_OKAY)
        if not self.bvalid and self.bs and self.bs[0] <= cycle and self._go():
            self.bvalid = True
        ctx.set(dut.m_axi_bvalid, self.bvalid)
        ctx.set(dut.m_axi_bresp,
                AXI_RESP_SLVERR if self.b_count in self.bad_b else AXI_RESP_OKAY)

    def _check_stable(self, ctx, dut, ch: str, names: tuple[str, ...]) -> bool:
        """The master keeps VALID and the payload of channel ``ch`` until READY; returns
        whether a transfer happens this cycle."""
        valid = ctx.get(getattr(dut, f"m_axi_{ch}valid"))
        payload = tuple(ctx.get(getattr(dut, f"m_axi_{ch}{n}")) for n in names)
        if ch in self.held:
            assert valid and payload == self.held[ch], f"{ch} changed before READY"
        fire = valid and ctx.get(getattr(dut, f"m_axi_{ch}ready"))
        if valid and not fire:
            self.held[ch] = payload
        else:
            self.held.pop(ch, None)
        return bool(fire)

    def _check_address(self, addr: int, length: int, size: int, burst: int, ident: int) -> None:
        assert (size, burst, ident) == (self.bus_bytes.bit_length() - 1, AXI_BURST_INCR, 0)
        assert addr % self.bus_bytes == 0
        assert addr // PAGE == (addr + (length + 1) * self.bus_bytes - 1) // PAGE, \
            f"burst at {addr:#x} of {length + 1} beats crosses 4 KiB"

    def sample(self, ctx, dut) -> dict:
        """This cycle's transfers (read before the clock edge)."""
        address = ("addr", "len", "size", "burst", "id", "cache", "lock", "prot")
        fired = {
            "ar": self._check_stable(ctx, dut, "ar", address),
            "aw": self._check_stable(ctx, dut, "aw", address),
            "w": self._check_stable(ctx, dut, "w", ("data", "strb", "last")),
            "r": self.rvalid and bool(ctx.get(dut.m_axi_rready)),
            "b": self.bvalid and bool(ctx.get(dut.m_axi_bready)),
        }
        for ch in ("ar", "aw"):
            if fired[ch]:
                fired[ch] = tuple(ctx.get(getattr(dut, f"m_axi_{ch}{n}")) for n in address[:5])
        if fired["w"]:
            fired["w"] = (ctx.get(dut.m_axi_wdata), ctx.get(dut.m_axi_wstrb),
                          ctx.get(dut.m_axi_wlast))
        return fired

    def update(self, fired: dict, cycle: int) -> None:
        """Advance after the clock edge that ended ``cycle``."""
        if fired["r"]:
            self.rvalid = False
            self.r_beats += 1
            self.reads[0].beat += 1
            if self.reads[0].beat > self.reads[0].len:
                self.reads.popleft()
        if fired["ar"]:
            self._check_address(*fired["ar"])
            self.reads.append(Burst(fired["ar"][0], fired["ar"][1], self._due(cycle)))
        if fired["aw"]:
            self._check_address(*fired["aw"])
            self.aws.append(Burst(fired["aw"][0], fired["aw"][1], 0))
        if fired["w"]:
            self.wbeats.append(fired["w"])
        if fired["b"]:
            self.bvalid = False
            self.b_count += 1
            self.bs.popleft()
        # The W channel may run ahead of AW: a burst is written once all its beats are here.
        while self.aws and len(self.wbeats) > self.aws[0].len:
            burst = self.aws.popleft()
            for beat in range(burst.len + 1):
                data, strb, last = self.wbeats.popleft()
                assert last == (beat == burst.len), "WLAST on the wrong beat"
                assert strb == (1 << self.bus_bytes) - 1
                addr = burst.addr + beat * self.bus_bytes
                self.mem[addr:addr + self.bus_bytes] = data.to_bytes(self.bus_bytes, "little")
            self.bs.append(self._due(cycle))


# -------------------------------------------------------------------------------------------------
# The core

def random_bursts(rng: random.Random, bus_bytes: int, max_beats: int, count: int):
    """``count`` (byte address, beats) bursts inside the memory, none crossing 4 KiB."""
    bursts = []
    for _ in range(count):
        beats = rng.randint(1, min(max_beats, 256, PAGE // bus_bytes))
        page = rng.randrange(MEM_BYTES // PAGE)
        offset = rng.randrange(0, PAGE - beats * bus_bytes + 1, bus_bytes)
        bursts.append((page * PAGE + offset, beats))
    return bursts


@dataclass
class Core:
    """The core's side of the memory interface (membus contract), one phase at a time.

    ``shadow`` is what memory must hold: reads are checked against it, writes applied to it.
    ``busy`` is the probability of holding back a command, a write beat or ``rd_ready``.
    """

    rng: random.Random
    shadow: bytearray
    bus_bytes: int
    max_reads: int
    busy: float
    phases: deque = field(default_factory=deque)
    cmds: deque = field(default_factory=deque)
    beats: deque = field(default_factory=deque)
    expect: deque = field(default_factory=deque)
    outstanding: int = 0
    writes_open: int = 0
    cmd_up: bool = False
    beat_up: bool = False
    read_beats: int = 0
    write_beats: int = 0

    def add_phase(self, kind: str, bursts) -> None:
        self.phases.append((kind, bursts))

    @property
    def done(self) -> bool:
        return not (self.phases or self.cmds or self.beats or self.expect or self.writes_open)

    def _start_phase(self) -> None:
        kind, bursts = self.phases.popleft()
        for addr, beats in bursts:
            self.cmds.append((kind, addr, beats))
            if kind == "write":
                data = bytes(self.rng.randrange(256) for _ in range(beats * self.bus_bytes))
                self.shadow[addr:addr + len(data)] = data
                self.beats.extend(data[i:i + self.bus_bytes]
                                  for i in range(0, len(data), self.bus_bytes))
                self.writes_open += 1

    def drive(self, ctx, dut) -> None:
        # A phase starts once the previous one is over: the core does only reads or only
        # writes at a time, and a STORE waits for all its wr_done.
        if self.phases and not (self.cmds or self.beats or self.expect or self.writes_open):
            self._start_phase()
        kind, addr, beats = self.cmds[0] if self.cmds else (None, 0, 1)
        if not self.cmd_up and self.cmds and self.rng.random() >= self.busy:
            self.cmd_up = kind == "write" or self.outstanding + beats <= self.max_reads
        for k in ("rd", "wr"):
            up = self.cmd_up and kind == ("read" if k == "rd" else "write")
            ctx.set(getattr(dut, f"{k}_cmd_valid"), up)
            ctx.set(getattr(dut, f"{k}_cmd_addr"), addr)
            ctx.set(getattr(dut, f"{k}_cmd_len"), beats - 1)
        if not self.beat_up and self.beats and self.rng.random() >= self.busy:
            self.beat_up = True
        ctx.set(dut.wr_valid, self.beat_up)
        ctx.set(dut.wr_data, int.from_bytes(self.beats[0], "little") if self.beat_up else 0)
        ctx.set(dut.rd_ready, self.rng.random() >= self.busy)

    def sample(self, ctx, dut) -> dict:
        fired = {k: bool(ctx.get(getattr(dut, f"{k}_valid")) and
                         ctx.get(getattr(dut, f"{k}_ready")))
                 for k in ("rd_cmd", "wr_cmd", "rd", "wr")}
        fired["rd_data"] = ctx.get(dut.rd_data)
        fired["wr_done"] = bool(ctx.get(dut.wr_done))
        return fired

    def update(self, fired: dict) -> None:
        if fired["rd_cmd"] or fired["wr_cmd"]:
            kind, addr, beats = self.cmds.popleft()
            self.cmd_up = False
            if kind == "read":
                self.outstanding += beats
                self.expect.extend(bytes(self.shadow[a:a + self.bus_bytes]) for a in
                                   range(addr, addr + beats * self.bus_bytes, self.bus_bytes))
        if fired["rd"]:
            want = self.expect.popleft()
            assert fired["rd_data"].to_bytes(self.bus_bytes, "little") == want, \
                f"read beat {self.read_beats} differs"
            self.outstanding -= 1
            self.read_beats += 1
        if fired["wr"]:
            self.beats.popleft()
            self.beat_up = False
            self.write_beats += 1
        if fired["wr_done"]:
            assert self.writes_open > 0, "wr_done with no write outstanding"
            self.writes_open -= 1


def run_master(config: HwConfig, core: Core, slave: AxiSlave, *, max_cycles: int,
               watch=None) -> dict:
    """Run ``core`` and ``slave`` around an AxiMaster until the core is done; returns the
    cycles of every R and W transfer and ``watch(ctx, dut)``'s value per cycle."""
    dut = AxiMaster(config)
    trace = {"r": [], "w": [], "watch": []}

    async def testbench(ctx):
        for cycle in range(max_cycles):
            if core.done and not slave.bs and not slave.bvalid:
                return
            slave.drive(ctx, dut, cycle)
            core.drive(ctx, dut)
            seen, done = slave.sample(ctx, dut), core.sample(ctx, dut)
            if watch is not None:
                trace["watch"].append(watch(ctx, dut))
            await ctx.tick()
            for ch in ("r", "w"):
                if seen[ch]:
                    trace[ch].append(cycle)
            slave.update(seen, cycle)
            core.update(done)
        raise AssertionError(f"not done after {max_cycles} cycles")

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    return trace


def _mem(rng: random.Random) -> bytearray:
    return bytearray(rng.randbytes(MEM_BYTES))


@pytest.mark.parametrize("bus_bytes,max_reads,seed", [
    (4, 16, 1), (1, 4, 2), (8, 256, 3), (16, 32, 4),
])
def test_master_random(bus_bytes, max_reads, seed):
    """Random read and write phases under random latency 0..40 and stalls on every channel:
    every byte read equals memory, every byte written lands, one wr_done per burst."""
    rng = random.Random(seed)
    config = _config(bus_bytes, max_reads)
    mem = _mem(rng)
    core = Core(rng, bytearray(mem), bus_bytes, max_reads, busy=0.3)
    slave = AxiSlave(rng, mem, bus_bytes, latency=40, stall=0.3)
    writes = 0
    for phase in range(8):
        count = rng.randint(1, 6)
        core.add_phase("write" if phase % 2 else "read",
                       random_bursts(rng, bus_bytes, max_reads, count))
        writes += count if phase % 2 else 0
    run_master(config, core, slave, max_cycles=40_000)
    assert core.read_beats > 0 and core.write_beats > 0
    assert slave.b_count == writes and not slave.reads
    assert mem == core.shadow


@pytest.mark.parametrize("kind", ["read", "write"])
def test_master_full_throughput(kind):
    """A slave that never stalls gets one beat per cycle across back-to-back bursts: the R (W)
    transfers occupy consecutive cycles."""
    rng = random.Random(7)
    bus_bytes, latency, bursts = 4, 6, 6
    config = _config(bus_bytes, 256)
    mem = _mem(rng)
    core = Core(rng, bytearray(mem), bus_bytes, 256, busy=0.0)
    slave = AxiSlave(rng, mem, bus_bytes, latency=0, stall=0.0, min_latency=latency)
    core.add_phase(kind, [(i * 16 * bus_bytes, 16) for i in range(bursts)])
    trace = run_master(config, core, slave, max_cycles=2_000)
    ch = "r" if kind == "read" else "w"
    cycles = trace[ch]
    assert len(cycles) == 16 * bursts
    assert cycles == list(range(cycles[0], cycles[0] + len(cycles)))
    assert mem == core.shadow


@pytest.mark.parametrize("channel", ["r", "b"])
def test_master_bus_error(channel):
    """A SLVERR on one R beat (one B response) sets bus_error from the next cycle on, for
    good; before it bus_error is 0."""
    rng = random.Random(11)
    bus_bytes = 4
    config = _config(bus_bytes, 16)
    mem = _mem(rng)
    core = Core(rng, bytearray(mem), bus_bytes, 16, busy=0.2)
    bad = frozenset({5})
    slave = AxiSlave(rng, mem, bus_bytes, latency=5, stall=0.2,
                     bad_r=bad if channel == "r" else frozenset(),
                     bad_b=bad if channel == "b" else frozenset())
    core.add_phase("read" if channel == "r" else "write",
                   [(i * 64, 4) for i in range(10)])
    trace = run_master(config, core, slave, max_cycles=5_000,
                       watch=lambda ctx, dut: (ctx.get(dut.bus_error),
                                               slave.r_beats if channel == "r"
                                               else slave.b_count))
    errors = [e for e, _ in trace["watch"]]
    first = errors.index(1)
    assert set(errors[first:]) == {1}
    # bus_error rises the cycle after the bad transfer: the count has just passed it.
    assert [n for _, n in trace["watch"]][first] == 6


# -------------------------------------------------------------------------------------------------
# AxiLiteRegs

class LiteHost:
    """An AXI4-Lite master and the core's register file behind AxiLiteRegs.

    The register file answers ``csr_rdata`` combinationally from ``csr_addr`` and applies
    ``csr_we`` at the clock edge, as the core does; ``reads`` counts ``csr_re`` strobes.
    """

    def __init__(self, dut: AxiLiteRegs, rng: random.Random):
        self.dut = dut
        self.rng = rng
        self.regs = [rng.getrandbits(32) for _ in Csr]
        self.reads = 0

    async def cycle(self, ctx) -> None:
        d = self.dut
        index = ctx.get(d.csr_addr)
        ctx.set(d.csr_rdata, self.regs[index])
        we, wdata, re = ctx.get(d.csr_we), ctx.get(d.csr_wdata), ctx.get(d.csr_re)
        await ctx.tick()
        if we:
            self.regs[index] = wdata
        self.reads += re

    async def _channels(self, ctx, offers: dict) -> None:
        """Offer each channel's payload from its start cycle until its handshake."""
        d = self.dut
        pending = dict(offers)
        t = 0
        while pending:
            up = {ch: ch in pending and t >= pending[ch][0] for ch in offers}
            for ch, (_, payload) in offers.items():
                ctx.set(getattr(d, f"s_axil_{ch}valid"), up[ch])
                for name, value in payload.items():
                    ctx.set(getattr(d, f"s_axil_{ch}{name}"), value)
            fired = [ch for ch in pending if up[ch] and ctx.get(getattr(d, f"s_axil_{ch}ready"))]
            await self.cycle(ctx)
            for ch in fired:
                del pending[ch]
            t += 1
        for ch in offers:
            ctx.set(getattr(self.dut, f"s_axil_{ch}valid"), 0)

    async def response(self, ctx, ch: str, names: tuple[str, ...]) -> tuple[int, ...]:
        """Wait for channel ``ch``'s response, with a randomly late READY."""
        d = self.dut
        for _ in range(100):
            ready = self.rng.random() < 0.5
            ctx.set(getattr(d, f"s_axil_{ch}ready"), ready)
            valid = ctx.get(getattr(d, f"s_axil_{ch}valid"))
            values = tuple(ctx.get(getattr(d, f"s_axil_{ch}{n}")) for n in names)
            await self.cycle(ctx)
            if valid and ready:
                ctx.set(getattr(d, f"s_axil_{ch}ready"), 0)
                return values
        raise AssertionError(f"no {ch} response")

    async def offer_write(self, ctx, index: int, value: int, *, strb: int = 0b1111,
                          w_delay: int = 0) -> None:
        """Hand AW and W of a write over, W offered ``w_delay`` cycles after AW (before it if
        negative)."""
        await self._channels(ctx, {
            "aw": (max(0, w_delay), {"addr": 4 * index, "prot": 0}),
            "w": (max(0, -w_delay), {"data": value, "strb": strb}),
        })

    async def write(self, ctx, index: int, value: int, *, strb: int = 0b1111,
                    w_delay: int = 0) -> int:
        """Write ``value`` to register ``index`` (see :meth:`offer_write`); returns BRESP."""
        await self.offer_write(ctx, index, value, strb=strb, w_delay=w_delay)
        (resp,) = await self.response(ctx, "b", ("resp",))
        return resp

    async def read(self, ctx, index: int) -> int:
        await self._channels(ctx, {"ar": (0, {"addr": 4 * index, "prot": 0})})
        data, resp = await self.response(ctx, "r", ("data", "resp"))
        assert resp == AXI_RESP_OKAY
        return data


def _run_lite(body) -> None:
    dut = AxiLiteRegs()
    host = LiteHost(dut, random.Random(5))

    async def testbench(ctx):
        await body(ctx, host)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()


@pytest.mark.parametrize("w_delay", [-3, -1, 0, 1, 4])
def test_lite_write_orders(w_delay):
    """AW first, W first or both together: the register is written, OKAY, read back."""
    async def body(ctx, host):
        for index in Csr:
            value = host.rng.getrandbits(32)
            assert await host.write(ctx, index, value, w_delay=w_delay) == AXI_RESP_OKAY
            assert host.regs[index] == value
            assert await host.read(ctx, index) == value
        assert host.reads == len(Csr)
    _run_lite(body)


def test_lite_strobes():
    """No strobe: nothing written, OKAY; some strobes: nothing written, SLVERR."""
    async def body(ctx, host):
        before = list(host.regs)
        assert await host.write(ctx, Csr.BASE, 0x1234, strb=0) == AXI_RESP_OKAY
        assert await host.write(ctx, Csr.BASE, 0x1234, strb=0b0011) == AXI_RESP_SLVERR
        assert host.regs == before
    _run_lite(body)


def test_lite_random_reads():
    """Random reads return the register file's current value, one csr_re strobe each."""
    async def body(ctx, host):
        indices = [host.rng.randrange(len(Csr)) for _ in range(20)]
        for index in indices:
            assert await host.read(ctx, index) == host.regs[index]
        assert host.reads == len(indices)
    _run_lite(body)


def test_lite_writes_in_flight():
    """A second write handed over while the first one's response waits is held until that
    response is taken: both are written and both are answered."""
    async def body(ctx, host):
        values = [host.rng.getrandbits(32) for _ in range(2)]
        await host.offer_write(ctx, Csr.BASE, values[0])
        await host.offer_write(ctx, Csr.PROG_BASE, values[1])
        for _ in range(5):
            await host.cycle(ctx)
        for _ in values:
            assert await host.response(ctx, "b", ("resp",)) == (AXI_RESP_OKAY,)
        assert [host.regs[Csr.BASE], host.regs[Csr.PROG_BASE]] == values
    _run_lite(body)
