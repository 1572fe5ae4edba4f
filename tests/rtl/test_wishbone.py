"""WishboneMaster against a Python Wishbone slave, WishboneRegs against a Python master.

The slave model answers each request after a random 0..40 cycles (in order), raises STALL at
random (pipelined) and checks the master's side of the protocol every cycle; the core model
issues random read and write bursts in phases (only reads or only writes at a time, as the core
does) with random valid/ready on every core-side handshake. Every byte read is compared with a
reference memory, every request's address and CTI tag with the commands', every ``wr_done``
with the ACK of a command's last beat, and the read data the master holds (ACKed, not yet taken)
with ``max_reads``.
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np
import pytest

from codesign.isa import HwConfig
from codesign.rtl.wishbone import CTI_END, CTI_INCR, WishboneMaster, WishboneRegs

from .harness import simulate

MAX_LATENCY = 40
#: Words of the simulated memory (two 4 KiB pages at the narrowest bus).
MEM_WORDS = 2048


def _config(bus_bytes: int, max_reads: int, classic: bool) -> HwConfig:
    return HwConfig(rows=4, cols=max(4, bus_bytes), bus_bytes=bus_bytes, act_depth=8,
                    wgt_depth=4, acc_depth=4, prm_depth=2, bus="wishbone", max_reads=max_reads,
                    wb_classic=classic)


@dataclasses.dataclass
class Knobs:
    """Randomness of one run: probabilities in 0..1, latency in cycles."""
    max_latency: int = MAX_LATENCY
    stall: float = 0.3
    cmd_valid: float = 0.5
    wr_valid: float = 0.7
    rd_ready: float = 0.7


class Slave:
    """A Wishbone memory that checks the master's side of the protocol as it goes."""

    def __init__(self, dut, rng, mem: np.ndarray, knobs: Knobs, classic: bool):
        self.dut, self.rng, self.mem, self.knobs, self.classic = dut, rng, mem, knobs, classic
        self.queue = collections.deque()        # pipelined: (due cycle, is write, read data)
        self.wait = None                        # classic: wait states left for the held request
        self.held = None                        # the request that must still be on the bus
        self.requests = []                      # (we, adr, cti) of every accepted request
        self.accept_cycles = []
        self.err_at = None                      # index of the request answered with ERR

    def _outputs(self, ctx) -> dict:
        names = ("cyc", "stb", "adr", "we", "dat_w", "sel", "cti", "bte")
        return {n: ctx.get(getattr(self.dut, f"m_wb_{n}")) for n in names}

    def step(self, ctx, cycle: int) -> tuple[bool, bool]:
        """Drive this cycle's slave signals; returns (a beat ends, it is a write)."""
        o = self._outputs(ctx)
        assert o["cyc"] or not o["stb"], "STB without CYC"
        if self.held is not None:
            assert o["stb"], "STB dropped before the request was taken"
            assert all(o[k] == v for k, v in self.held.items()), "request changed while held"
        if self.queue:
            assert o["cyc"], "CYC dropped with requests outstanding"
        ctx.set(self.dut.m_wb_ack, 0)
        ctx.set(self.dut.m_wb_err, 0)
        if self.classic:
            return self._classic(ctx, o, cycle)
        return self._pipelined(ctx, o, cycle)

    def _access(self, o) -> int:
        """Perform the request on the memory; returns the read data (0 for a write)."""
        assert o["sel"] == (1 << len(self.dut.m_wb_sel)) - 1, "a partial write"
        assert o["bte"] == 0, "not a linear burst"
        self.requests.append((o["we"], o["adr"], o["cti"]))
        if o["we"]:
            self.mem[o["adr"]] = o["dat_w"]
            return 0
        return int(self.mem[o["adr"]])

    def _end_beat(self, ctx, data: int) -> None:
        ctx.set(self.dut.m_wb_dat_r, data)
        error = self.err_at is not None and len(self.requests) - len(self.queue) - 1 == \
            self.err_at
        ctx.set(self.dut.m_wb_err if error else self.dut.m_wb_ack, 1)

    def _pipelined(self, ctx, o, cycle: int) -> tuple[bool, bool]:
        stall = bool(self.rng.random() < self.knobs.stall)
        ctx.set(self.dut.m_wb_stall, stall)
        ended = None
        if self.queue and self.queue[0][0] <= cycle:
            _, ended, data = self.queue.popleft()
            self._end_beat(ctx, data)
        self.held = None
        if o["stb"] and stall:
            self.held = {k: o[k] for k in ("adr", "we", "dat_w", "sel")}
        elif o["stb"]:
            due = cycle + 1 + int(self.rng.integers(0, self.knobs.max_latency + 1))
            if self.queue:
                due = max(due, self.queue[-1][0] + 1)
            self.accept_cycles.append(cycle)
            self.queue.append((due, bool(o["we"]), self._access(o)))
        return ended is not None, bool(ended)

    def _classic(self, ctx, o, cycle: int) -> tuple[bool, bool]:
        # STALL does not exist in classic mode: noise on it must change nothing.
        ctx.set(self.dut.m_wb_stall, int(self.rng.integers(2)))
        if not o["stb"]:
            return False, False
        if self.wait is None:
            self.wait = int(self.rng.integers(0, self.knobs.max_latency + 1))
            self.held = {k: o[k] for k in ("adr", "we", "dat_w", "sel", "cti")}
        if self.wait:
            self.wait -= 1
            return False, False
        self.wait, self.held = None, None
        self.accept_cycles.append(cycle)
        self._end_beat(ctx, self._access(o))
        return True, bool(o["we"])


class Core:
    """The core's side: bursts in phases of reads and writes, checked against ``ref``."""

    def __init__(self, dut, rng, ref: np.ndarray, knobs: Knobs, max_reads: int, polite: bool):
        self.dut, self.rng, self.ref, self.knobs = dut, rng, ref, knobs
        self.max_reads, self.polite = max_reads, polite
        self.acked_reads = 0        # read beats ENDED on the bus (their data are in the master)
        self.taken = 0
        self.expected = []          # (we, adr, cti) in the order the slave must see them

    async def run_phase(self, ctx, slave: Slave, write: bool, bursts, cycle: int) -> int:
        """Run one phase of ``bursts`` [(word address, beats)]; returns the cycle after it."""
        for adr, beats in bursts:
            self.expected += [(int(write), adr + i, CTI_END if i == beats - 1 else CTI_INCR)
                              for i in range(beats)]
        cmds = collections.deque(bursts)
        addrs = [a + i for a, n in bursts for i in range(n)]
        if write:
            data = [_random_word(self.rng, len(self.dut.m_wb_sel)) for _ in addrs]
            beats = collections.deque(data)
            ends = set(np.cumsum([n for _, n in bursts]).tolist())
            self.ref[addrs] = data
        else:
            reads = collections.deque(int(self.ref[a]) for a in addrs)
        outstanding, acked_writes, done, cmd_on, beat_on = 0, 0, 0, False, False
        prefix = "wr" if write else "rd"
        while cmds or (done < len(bursts) if write else reads):
            # Command: once valid, held with its payload until taken.
            if cmds and not cmd_on:
                fits = not self.polite or write or outstanding + cmds[0][1] <= self.max_reads
                cmd_on = fits and bool(self.rng.random() < self.knobs.cmd_valid)
            ctx.set(getattr(self.dut, f"{prefix}_cmd_valid"), cmd_on)
            if cmd_on:
                adr, n = cmds[0]
                ctx.set(getattr(self.dut, f"{prefix}_cmd_addr"),
                        adr * len(self.dut.m_wb_sel))
                ctx.set(getattr(self.dut, f"{prefix}_cmd_len"), n - 1)
            cmd_taken = cmd_on and ctx.get(getattr(self.dut, f"{prefix}_cmd_ready"))
            if write:
                if beats and not beat_on:
                    beat_on = bool(self.rng.random() < self.knobs.wr_valid)
                ctx.set(self.dut.wr_valid, beat_on)
                if beat_on:
                    ctx.set(self.dut.wr_data, beats[0])
                beat_taken = beat_on and ctx.get(self.dut.wr_ready)
            else:
                ready = bool(self.rng.random() < self.knobs.rd_ready)
                ctx.set(self.dut.rd_ready, ready)
                if ready and ctx.get(self.dut.rd_valid):
                    assert ctx.get(self.dut.rd_data) == reads.popleft(), "read data"
                    self.taken += 1
                    outstanding -= 1
            ended, ended_write = slave.step(ctx, cycle)
            if ended and ended_write:
                acked_writes += 1
            self.acked_reads += ended and not ended_write
            wr_done = ctx.get(self.dut.wr_done)
            assert wr_done == (ended and ended_write and acked_writes in ends if write else 0), \
                f"wr_done at cycle {cycle}"
            done += wr_done
            await ctx.tick()
            cycle += 1
            if cmd_taken:
                outstanding += cmds.popleft()[1]
                cmd_on = False
            if write and beat_taken:
                beats.popleft()
                beat_on = False
            assert self.acked_reads - self.taken <= self.max_reads, "read FIFO overflow"
            assert cycle < 20_000, "the master hangs"
        ctx.set(getattr(self.dut, f"{prefix}_cmd_valid"), 0)
        ctx.set(self.dut.wr_valid, 0)
        ctx.set(self.dut.rd_ready, 0)
        return cycle


def _random_word(rng, nbytes: int) -> int:
    return int.from_bytes(rng.bytes(nbytes), "little")


def _random_bursts(rng, bus_bytes: int, max_beats: int, count: int) -> list[tuple[int, int]]:
    """``count`` bursts of 1..``max_beats`` beats inside ``MEM_WORDS``, none crossing 4 KiB."""
    page = 4096 // bus_bytes
    bursts = []
    for _ in range(count):
        beats = int(rng.integers(1, max_beats + 1))
        start = int(rng.integers(0, MEM_WORDS - beats + 1))
        if start // page != (start + beats - 1) // page:
            start = (start + beats - 1) // page * page
        bursts.append((start, beats))
    return bursts


def run_master(config: HwConfig, seed: int, *, knobs: Knobs, polite: bool = True,
               phases: int = 6, bursts: int = 4, max_beats: int | None = None,
               err_at: int | None = None):
    """Simulate random phases; returns the slave model (requests, accept cycles) and dut."""
    rng = np.random.default_rng(seed)
    dut = WishboneMaster(config)
    ref = np.array([_random_word(rng, config.bus_bytes) for _ in range(MEM_WORDS)], dtype=object)
    slave = Slave(dut, rng, ref.copy(), knobs, config.wb_classic)
    slave.err_at = err_at
    core = Core(dut, rng, ref, knobs, config.max_reads, polite)
    if max_beats is None:
        max_beats = config.max_reads if polite else 3 * config.max_reads

    async def testbench(ctx):
        cycle = 0
        for p in range(phases):
            # Writes: long bursts; reads: many bursts of up to max_beats.
            plan = _random_bursts(rng, config.bus_bytes, max_beats if p % 2 else 64,
                                  4 * bursts if p % 2 else bursts)
            cycle = await core.run_phase(ctx, slave, bool(p % 2 == 0), plan, cycle)
            if err_at is not None:
                assert ctx.get(dut.bus_error) == (len(slave.requests) > err_at)
        # Drain: no request may follow the last command.
        for _ in range(MAX_LATENCY + 5):
            slave.step(ctx, cycle)
            await ctx.tick()
            cycle += 1

    simulate(dut, testbench)
    np.testing.assert_array_equal(slave.mem, ref)
    assert slave.requests == core.expected
    return slave


MASTER_CASES = [
    # (bus_bytes, max_reads, classic)
    (4, 16, False), (1, 4, False), (8, 1, False), (2, 2, False), (32, 8, False),
    (4, 16, True), (1, 2, True),
]


@pytest.mark.parametrize("bus_bytes,max_reads,classic", MASTER_CASES)
def test_master_random(bus_bytes, max_reads, classic):
    config = _config(bus_bytes, max_reads, classic)
    run_master(config, seed=bus_bytes * 1000 + max_reads * 10 + classic, knobs=Knobs())


@pytest.mark.parametrize("classic", [False, True])
def test_master_greedy_core(classic):
    """A core that ignores the ``max_reads`` rule (bursts up to 3 x max_reads, no waiting)
    still loses no read beat: the master's own issue logic keeps its FIFO from overflowing."""
    run_master(_config(4, 4, classic), seed=7 + classic, polite=False,
               knobs=Knobs(rd_ready=0.3))


def test_master_one_beat_per_cycle():
    """Pipelined, a slave that never stalls and ACKs in the next cycle: every beat of a long
    run of bursts is requested in consecutive cycles."""
    knobs = Knobs(max_latency=0, stall=0.0, cmd_valid=1.0, wr_valid=1.0, rd_ready=1.0)
    config = _config(4, 16, False)
    slave = run_master(config, seed=3, knobs=knobs, phases=2, bursts=8, max_beats=4)
    writes = sum(we for we, _, _ in slave.requests)
    for run in (slave.accept_cycles[:writes], slave.accept_cycles[writes:]):
        gaps = np.diff(run)
        # The first beats wait for the pipeline to fill; after that, one beat per cycle.
        assert (gaps[8:] == 1).all(), gaps


@pytest.mark.parametrize("classic", [False, True])
def test_master_bus_error(classic):
    """ERR ends the beat (no hang) and sets the sticky ``bus_error`` from then on."""
    run_master(_config(4, 4, classic), seed=11, knobs=Knobs(), phases=2, err_at=5)


# -------------------------------------------------------------------------------------------------
# Register slave


async def _reg_access(ctx, dut, regs: list[int], rng, *, classic: bool, adr: int,
                      write: int | None) -> int | None:
    """One access by a Python master; returns the data read (None for a write). Checks the
    register port strobes against the access."""
    ctx.set(dut.s_wb_cyc, 1)
    ctx.set(dut.s_wb_stb, 1)
    ctx.set(dut.s_wb_adr, adr)
    ctx.set(dut.s_wb_we, write is not None)
    ctx.set(dut.s_wb_dat_w, write or 0)
    ctx.set(dut.s_wb_sel, 0xF)
    strobes, data = 0, None
    for _ in range(10):
        ctx.set(dut.csr_rdata, regs[ctx.get(dut.csr_addr)])
        if ctx.get(dut.csr_we) or ctx.get(dut.csr_re):
            assert ctx.get(dut.csr_addr) == adr % 8
            assert ctx.get(dut.csr_we) == (write is not None)
            assert ctx.get(dut.csr_re) == (write is None)
            if write is not None:
                assert ctx.get(dut.csr_wdata) == write
                regs[adr % 8] = write
            strobes += 1
        accepted = classic or not ctx.get(dut.s_wb_stall)
        if ctx.get(dut.s_wb_ack):
            data = ctx.get(dut.s_wb_dat_r)
            break
        await ctx.tick()
        if accepted and not classic:
            ctx.set(dut.s_wb_stb, 0)           # pipelined: one request, then wait for ACK
    else:
        raise AssertionError("no ACK")
    assert not ctx.get(dut.s_wb_err)
    assert strobes == 1, "one register strobe per access"
    await ctx.tick()
    ctx.set(dut.s_wb_stb, 0)
    ctx.set(dut.s_wb_cyc, 0)
    for _ in range(int(rng.integers(0, 3))):
        await ctx.tick()
    return None if write is not None else data


@pytest.mark.parametrize("classic", [False, True])
def test_regs_random(classic):
    rng = np.random.default_rng(5 + classic)
    dut = WishboneRegs()
    regs = [int(v) for v in rng.integers(0, 1 << 32, 8, dtype=np.uint64)]

    async def testbench(ctx):
        model = list(regs)
        for _ in range(60):
            adr = int(rng.integers(0, 1 << 30))
            if rng.integers(2):
                value = int(rng.integers(0, 1 << 32, dtype=np.uint64))
                await _reg_access(ctx, dut, regs, rng, classic=classic, adr=adr, write=value)
                model[adr % 8] = value
            else:
                got = await _reg_access(ctx, dut, regs, rng, classic=classic, adr=adr,
                                        write=None)
                assert got == model[adr % 8]
        assert ctx.get(dut.s_wb_ack) == 0

    simulate(dut, testbench)


def test_regs_back_to_back_pipelined():
    """A pipelined master holding STB: every request is taken once, STALL spaces them."""
    dut = WishboneRegs()
    regs = list(range(100, 108))

    async def testbench(ctx):
        ctx.set(dut.s_wb_cyc, 1)
        ctx.set(dut.s_wb_stb, 1)
        issued, acks, adr = 0, [], 0
        for _ in range(20):
            ctx.set(dut.s_wb_adr, adr)
            ctx.set(dut.csr_rdata, regs[ctx.get(dut.csr_addr)])
            if ctx.get(dut.s_wb_ack):
                acks.append(ctx.get(dut.s_wb_dat_r))
            taken = not ctx.get(dut.s_wb_stall)
            await ctx.tick()
            if taken:
                issued += 1
                adr = (adr + 1) % 8
        assert acks == [regs[i % 8] for i in range(len(acks))]
        assert issued - len(acks) in (0, 1)
        assert len(acks) == 10

    simulate(dut, testbench)

