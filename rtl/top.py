"""The NPU top level: scratchpads, controller and engines (docs/rtl-contract.md).

The top owns the four scratchpads (one synchronous read port and one write port each), the
controller and the five engines (DMA, MATMUL, REQUANT, POOL, ELTWISE). Engines run concurrently,
but the controller never lets two of them use one memory port at the same time, and every engine
drives 0 on its memory ports while it is not busy, so the memory ports are simply the OR of the
engines' port outputs."""

from __future__ import annotations

import functools
import operator

from amaranth.back import verilog
from amaranth.hdl import Const, Module, Value
from amaranth.lib.wiring import Out

from codesign.isa import ENGINES, Eltwise, HwConfig, LoadStore, Lut, MatMul, Pool, Requant

from .controller import Controller
from .dma import DmaEngine
from .eltwise import EltwiseEngine
from .lut import LutEngine
from .matmul import MatMulEngine
from .pool import PoolEngine
from .ports import HwComponent, csr_port, ext_port, scratchpad
from .requant import RequantEngine

__all__ = ["NPU", "generate_verilog"]


class NPU(HwComponent):
    """The whole NPU for one :class:`~codesign.isa.HwConfig` (Verilog module ``npu_top``).

    Parameters
    ----------
    config : HwConfig
        The NPU instance.

    Attributes
    ----------
    csr_addr, csr_we, csr_wdata, csr_rdata
        Host CSR port (:class:`codesign.isa.Csr`); ``csr_rdata`` is combinational.
    done : Out(1)
        CTRL.done.
    mem_addr, mem_re, mem_rdata, mem_we, mem_wdata
        External memory port (fixed read latency 1, no stalls).
    act_mem, wgt_mem, prm_mem, acc_mem : Memory
        The scratchpads (exposed so that testbenches can preload and inspect them).
    """

    def __init__(self, config: HwConfig):
        super().__init__(config, lambda c: {
            **csr_port(),
            "done": Out(1),
            **ext_port(c),
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

        # -- CSRs and external memory ----------------------------------------------------------
        m.d.comb += [
            ctrl.csr_addr.eq(self.csr_addr),
            ctrl.csr_we.eq(self.csr_we),
            ctrl.csr_wdata.eq(self.csr_wdata),
            self.csr_rdata.eq(ctrl.csr_rdata),
            self.done.eq(ctrl.done),
            self.mem_addr.eq(merged("mem_addr")),
            self.mem_re.eq(merged("mem_re")),
            self.mem_we.eq(merged("mem_we")),
            self.mem_wdata.eq(merged("mem_wdata")),
        ]
        fan_in("mem_rdata", self.mem_rdata)
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


def generate_verilog(config: HwConfig) -> str:
    """Verilog of :class:`NPU` for ``config`` as module ``npu_top`` (byte-stable: no src attrs)."""
    # NPU rejects anything but a HwConfig.
    return verilog.convert(NPU(config), name="npu_top", emit_src=False)

