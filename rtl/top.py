"""The NPU: its core (scratchpads, controller, engines, registers) and the native top level.

:class:`NpuCore` owns the four scratchpads (one synchronous read port and one write port each),
the controller, the engines (DMA, MATMUL, REQUANT, POOL, ELTWISE, LUT) and the registers the
controller does not hold (:class:`codesign.isa.Csr`). Engines run concurrently, but the
controller never lets two of them use one memory port at the same time, and every engine drives
0 on its memory ports while it is not busy, so the memory ports are simply the OR of the engines'
port outputs. The core reaches external memory through :mod:`codesign.rtl.membus`; the Verilog
top ``npu_top`` wraps it for the bus :attr:`HwConfig.bus` names (:func:`top_for`): :class:`NPU`
is the native form, the fixed-latency word port of docs/rtl-contract.md."""

from __future__ import annotations

import functools
import operator

from amaranth.back import verilog
from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib.wiring import In, Out

from codesign.isa import (
    ENGINES,
    Csr,
    Eltwise,
    HwConfig,
    LoadStore,
    Lut,
    MatMul,
    Pool,
    Requant,
    config_id,
    version_word,
)

from .controller import Controller
from .dma import BASE_BITS, DmaEngine
from .eltwise import EltwiseEngine
from .lut import LutEngine
from .matmul import MatMulEngine
from .membus import mem_master, mem_slave
from .pool import PoolEngine
from .ports import HwComponent, csr_port, ext_port, scratchpad
from .requant import RequantEngine

__all__ = ["NpuCore", "NPU", "NativeMemory", "BusNPU", "top_for", "generate_verilog"]


class NpuCore(HwComponent):
    """The NPU without its bus: everything one :class:`~codesign.isa.HwConfig` describes.

    Parameters
    ----------
    config : HwConfig
        The NPU instance.

    Attributes
    ----------
    csr_addr, csr_we, csr_wdata, csr_rdata
        Register port (:class:`codesign.isa.Csr` word index); ``csr_rdata`` is combinational
        and reading has no side effects.
    done : Out(1)
        CTRL.done.
    irq : Out(1)
        IRQ_STATUS.DONE & IRQ_ENABLE.DONE.
    bus_error : In(1)
        The bus wrapper's sticky error flag (IRQ_STATUS.BUS_ERROR).
    rd_cmd_*, rd_*, wr_cmd_*, wr_*, wr_done
        The memory interface (:func:`~codesign.rtl.membus.mem_master`).
    act_mem, wgt_mem, prm_mem, acc_mem : Memory
        The scratchpads (exposed so that testbenches can preload and inspect them).
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **csr_port(),
            "done": Out(1),
            "irq": Out(1),
            "bus_error": In(1),
            **mem_master(c),
        })
        c = self.config
        self.act_mem = scratchpad(c, "act").memory()
        self.wgt_mem = scratchpad(c, "wgt").memory()
        self.prm_mem = scratchpad(c, "prm").memory()
        self.acc_mem = scratchpad(c, "acc").memory()

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()

        m.submodules.ctrl = ctrl = Controller(c)
        engines = {
            "dma": (DmaEngine(c), LoadStore),
            "matmul": (MatMulEngine(c), MatMul),
            "requant": (RequantEngine(c), Requant),
            "pool": (PoolEngine(c), Pool),
        }
        if c.eltwise:
            engines["eltwise"] = (EltwiseEngine(c), Eltwise)
        else:
            # No ELTWISE engine: the compiler never emits ELTWISE for this NPU; should one come
            # anyway, it is taken and does nothing.
            m.d.comb += ctrl.ready_eltwise.eq(1)
        if c.lut_tables:
            engines["lut"] = (LutEngine(c), Lut)
        else:
            m.d.comb += ctrl.ready_lut.eq(1)    # as for ELTWISE: never emitted, taken if it is
        assert set(engines) <= set(ENGINES)
        for name, (engine, layout) in engines.items():
            m.submodules[name] = engine
            m.d.comb += [
                engine.start.eq(getattr(ctrl, f"start_{name}")),
                engine.insn.eq(ctrl.insn[:layout.size]),
                getattr(ctrl, f"ready_{name}").eq(
                    engine.ready if "ready" in engine.signature.members else ~engine.busy),
                getattr(ctrl, f"busy_{name}").eq(engine.busy),
                getattr(ctrl, f"done_{name}").eq(engine.done),
            ]

        # Everything that may drive a shared port: the engines plus, for EXT, the controller.
        drivers = [ctrl] + [e for e, _ in engines.values()]

        def merged(name):
            outs = [Value.cast(getattr(d, name)) for d in drivers if name in d.signature.members]
            return functools.reduce(operator.or_, outs, Const(0, 1))

        def fan_in(name, value):
            for d in drivers:
                if name in d.signature.members:
                    m.d.comb += getattr(d, name).eq(value)

        # -- registers and the memory interface -----------------------------------------------
        base = self._registers(m, ctrl)
        m.d.comb += [ctrl.base.eq(base), engines["dma"][0].base.eq(base)]
        for name, member in mem_master(c).items():
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(merged(name))
            else:
                fan_in(name, getattr(self, name))
        if c.lut_tables:    # the DMA engine writes the LUT engine's own table copies
            dma, lut = engines["dma"][0], engines["lut"][0]
            m.d.comb += [lut.lut_waddr.eq(dma.lut_waddr), lut.lut_wen.eq(dma.lut_wen),
                         lut.lut_wdata.eq(dma.lut_wdata)]

        # -- scratchpads -----------------------------------------------------------------------
        memories = {"act": self.act_mem, "wgt": self.wgt_mem, "prm": self.prm_mem,
                    "acc": self.acc_mem}
        for name, mem in memories.items():
            m.submodules[f"{name}_mem"] = mem
            rd = mem.read_port()
            wr = mem.write_port(granularity=scratchpad(c, name).granularity)
            m.d.comb += [
                rd.addr.eq(merged(f"{name}_raddr")),
                rd.en.eq(merged(f"{name}_ren")),
                wr.addr.eq(merged(f"{name}_waddr")),
                wr.en.eq(merged(f"{name}_wen")),
                wr.data.eq(merged(f"{name}_wdata")),
            ]
            fan_in(f"{name}_rdata", rd.data)

        return m

    def _registers(self, m: Module, ctrl: Controller) -> Signal:
        """The registers the controller does not hold; returns BASE's page number."""
        c = self.config
        base = Signal(BASE_BITS, name="reg_base")
        irq_enable = Signal(name="reg_irq_enable")
        irq_status = Signal(name="reg_irq_status")
        done_before = Signal(name="done_before")
        write = {reg: self.csr_we & (self.csr_addr == reg) for reg in Csr}
        m.d.sync += done_before.eq(ctrl.done)
        with m.If(write[Csr.BASE]):
            m.d.sync += base.eq(self.csr_wdata[12:])
        with m.If(write[Csr.IRQ_ENABLE]):
            m.d.sync += irq_enable.eq(self.csr_wdata[0])
        with m.If(ctrl.done & ~done_before):        # a run reached END
            m.d.sync += irq_status.eq(1)
        with m.Elif(write[Csr.IRQ_STATUS] & self.csr_wdata[0]):
            m.d.sync += irq_status.eq(0)
        own = Signal(32, name="reg_rdata")
        with m.Switch(self.csr_addr):
            with m.Case(Csr.VERSION):
                m.d.comb += own.eq(version_word(c))
            with m.Case(Csr.CONFIG_ID):
                m.d.comb += own.eq(config_id(c))
            with m.Case(Csr.BASE):
                m.d.comb += own.eq(base << 12)
            with m.Case(Csr.IRQ_ENABLE):
                m.d.comb += own.eq(irq_enable)
            with m.Case(Csr.IRQ_STATUS):
                m.d.comb += own.eq(Cat(irq_status, self.bus_error))
        m.d.comb += [
            ctrl.csr_addr.eq(self.csr_addr),
            ctrl.csr_we.eq(self.csr_we),
            ctrl.csr_wdata.eq(self.csr_wdata),
            self.csr_rdata.eq(ctrl.csr_rdata | own),
            self.done.eq(ctrl.done),
            self.irq.eq(irq_status & irq_enable),
        ]
        return base


class NativeMemory(HwComponent):
    """The native memory port: the membus bursts as one word access per cycle.

    Reads: the word address presented with ``mem_re`` in cycle t has its data on ``mem_rdata``
    in cycle t+1 (fixed latency 1, no stalls). Writes: ``mem_we`` with ``mem_wdata``. A command
    is accepted together with its first beat (the next command waits for the last beat), so a
    burst of ``n`` beats takes ``n`` cycles and bursts follow each other without a gap.
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **mem_slave(c),
            **ext_port(c),
        })

    def elaborate(self, platform) -> Module:
        c = self.config
        m = Module()
        lg = c.bus_bytes.bit_length() - 1

        def word(byte_addr):
            return byte_addr[lg:lg + c.ext_addr_bits]

        # Reads: the first beat with the command, the rest from registers.
        r_active = Signal(name="rd_active")
        r_addr = Signal(c.ext_addr_bits, name="rd_next")
        r_left = Signal(8, name="rd_left")
        re = Signal()
        addr = Signal(c.ext_addr_bits)
        m.d.comb += self.rd_cmd_ready.eq(~r_active)
        with m.If(r_active):
            m.d.comb += [re.eq(1), addr.eq(r_addr)]
            m.d.sync += [r_addr.eq(r_addr + 1), r_left.eq(r_left - 1)]
            with m.If(r_left == 1):
                m.d.sync += r_active.eq(0)
        with m.Elif(self.rd_cmd_valid):
            m.d.comb += [re.eq(1), addr.eq(word(self.rd_cmd_addr))]
            m.d.sync += [r_addr.eq(word(self.rd_cmd_addr) + 1), r_left.eq(self.rd_cmd_len),
                         r_active.eq(self.rd_cmd_len != 0)]
        m.d.sync += self.rd_valid.eq(re)
        m.d.comb += self.rd_data.eq(self.mem_rdata)

        # Writes: a beat whenever one is offered; the command is taken with its first beat.
        w_active = Signal(name="wr_active")
        w_addr = Signal(c.ext_addr_bits, name="wr_next")
        w_left = Signal(8, name="wr_left")
        we = Signal()
        m.d.comb += self.wr_cmd_ready.eq(~w_active & self.wr_valid)
        with m.If(w_active & self.wr_valid):
            m.d.comb += [we.eq(1), addr.eq(w_addr), self.wr_done.eq(w_left == 1)]
            m.d.sync += [w_addr.eq(w_addr + 1), w_left.eq(w_left - 1)]
            with m.If(w_left == 1):
                m.d.sync += w_active.eq(0)
        with m.Elif(~w_active & self.wr_valid & self.wr_cmd_valid):
            m.d.comb += [we.eq(1), addr.eq(word(self.wr_cmd_addr)),
                         self.wr_done.eq(self.wr_cmd_len == 0)]
            m.d.sync += [w_addr.eq(word(self.wr_cmd_addr) + 1), w_left.eq(self.wr_cmd_len),
                         w_active.eq(self.wr_cmd_len != 0)]
        m.d.comb += [
            self.wr_ready.eq(we),
            self.mem_re.eq(re),
            self.mem_we.eq(we),
            self.mem_addr.eq(addr),
            self.mem_wdata.eq(Mux(we, self.wr_data, 0)),
        ]
        return m


class NPU(HwComponent):
    """The native NPU (Verilog module ``npu_top`` for ``bus="native"``): the core behind the
    fixed-latency word port (:class:`NativeMemory`) and the strobe register port.

    Parameters
    ----------
    config : HwConfig
        The NPU instance.

    Attributes
    ----------
    csr_addr, csr_we, csr_wdata, csr_rdata
        Register port (:class:`codesign.isa.Csr`); ``csr_rdata`` is combinational.
    done, irq : Out(1)
        CTRL.done; the interrupt.
    mem_addr, mem_re, mem_rdata, mem_we, mem_wdata
        External memory port (fixed read latency 1, no stalls).
    act_mem, wgt_mem, prm_mem, acc_mem : Memory
        The core's scratchpads (for testbenches).
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **csr_port(),
            "done": Out(1),
            "irq": Out(1),
            **ext_port(c),
        })
        self.core = NpuCore(self.config)
        self.act_mem = self.core.act_mem
        self.wgt_mem = self.core.wgt_mem
        self.prm_mem = self.core.prm_mem
        self.acc_mem = self.core.acc_mem

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.core = core = self.core
        m.submodules.memory = memory = NativeMemory(self.config)
        for name, member in mem_master(self.config).items():
            if member.flow == Out:
                m.d.comb += getattr(memory, name).eq(getattr(core, name))
            else:
                m.d.comb += getattr(core, name).eq(getattr(memory, name))
        for name in ("csr_addr", "csr_we", "csr_wdata"):
            m.d.comb += getattr(core, name).eq(getattr(self, name))
        for name in ("csr_rdata", "done", "irq"):
            m.d.comb += getattr(self, name).eq(getattr(core, name))
        for name, member in ext_port(self.config).items():
            if member.flow == Out:
                m.d.comb += getattr(self, name).eq(getattr(memory, name))
            else:
                m.d.comb += getattr(memory, name).eq(getattr(self, name))
        return m


#: The register slave's side of the register port (its read strobe ``csr_re`` goes nowhere:
#: no register has a side effect on read).
_REGISTER_PORT = ("csr_addr", "csr_we", "csr_wdata", "csr_rdata", "csr_re")


class BusNPU(HwComponent):
    """The core behind a bus: a memory *master* (the core's memory interface to the bus, with
    a sticky ``bus_error``) and a register *slave* (the bus to the core's register port).

    Parameters
    ----------
    config : HwConfig
    master, slave
        The wrapper components (``AxiMaster(config)`` and ``AxiLiteRegs()``, or the
        Wishbone pair). Every signal of theirs that is not the core's becomes a port of the top,
        under its own name, with ``irq``.
    """

    def __init__(self, config: HwConfig, master, slave):
        bus = mem_master(config)
        self._master, self._slave = master, slave
        super().__init__(config, lambda c: {
            **{n: m for n, m in master.signature.members.items()
               if n not in bus and n != "bus_error"},
            **{n: m for n, m in slave.signature.members.items() if n not in _REGISTER_PORT},
            "irq": Out(1),
        })
        self.core = NpuCore(self.config)

    def elaborate(self, platform) -> Module:
        m = Module()
        core, master, slave = self.core, self._master, self._slave
        m.submodules.core = core
        m.submodules.master = master
        m.submodules.regs = slave
        for name, member in mem_master(self.config).items():
            src, dst = (core, master) if member.flow == Out else (master, core)
            m.d.comb += getattr(dst, name).eq(getattr(src, name))
        m.d.comb += [
            core.bus_error.eq(master.bus_error),
            core.csr_addr.eq(slave.csr_addr),
            core.csr_we.eq(slave.csr_we),
            core.csr_wdata.eq(slave.csr_wdata),
            slave.csr_rdata.eq(core.csr_rdata),
            self.irq.eq(core.irq),
        ]
        for part, skip in ((master, {*mem_master(self.config), "bus_error"}),
                           (slave, set(_REGISTER_PORT))):
            for name, member in part.signature.members.items():
                if name in skip or name not in self.signature.members:
                    continue
                if member.flow == Out:
                    m.d.comb += getattr(self, name).eq(getattr(part, name))
                else:
                    m.d.comb += getattr(part, name).eq(getattr(self, name))
        return m


def top_for(config: HwConfig) -> HwComponent:
    """The top level of ``config``'s bus form (:attr:`HwConfig.bus`)."""
    if config.bus == "axi4":
        from .axi import AxiLiteRegs, AxiMaster
        return BusNPU(config, AxiMaster(config), AxiLiteRegs())
    if config.bus == "wishbone":
        from .wishbone import WishboneMaster, WishboneRegs
        return BusNPU(config, WishboneMaster(config), WishboneRegs())
    return NPU(config)


def generate_verilog(config: HwConfig) -> str:
    """Verilog of :class:`NPU` for ``config`` as module ``npu_top`` (byte-stable: no src attrs)."""
    # top_for rejects anything but a HwConfig.
    return verilog.convert(top_for(config), name="npu_top", emit_src=False)

