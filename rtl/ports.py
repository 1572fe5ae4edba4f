"""The port groups of docs/rtl-contract.md, defined once for the engines, controller and top.

Every port function returns a dict of :mod:`amaranth.lib.wiring` signature members named as seen
from an engine (``Out`` is driven by the engine). A component's signature is the union of the
groups it uses, in the order it lists them; :class:`HwComponent` checks the config first::

    super().__init__(config, lambda c: {**engine_control(isa.Eltwise),
                                        **scratchpad_read(c, "act"), **scratchpad_write(c, "acc")})

The top relies on these names being the same in every component: it ORs the outputs of all
engines that share a name and fans each input out to all of them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from codesign.isa import CSR_ADDR_BITS, HwConfig

__all__ = [
    "SCRATCHPADS", "Scratchpad", "HwComponent", "check_config", "scratchpad", "scratchpad_read",
    "scratchpad_write", "ext_read", "ext_port", "csr_port", "engine_control",
]

#: Scratchpad names, the prefix of their port signals (``act_raddr``, ...).
SCRATCHPADS = ("act", "wgt", "prm", "acc")


class Scratchpad(NamedTuple):
    """Geometry of one scratchpad (docs/rtl-contract.md, "Memory port signals").

    Attributes
    ----------
    word_bits : int
        Width of one word.
    depth : int
        Number of words.
    granularity : int or None
        Bits per write enable; ``None`` for one enable per whole word.
    """

    word_bits: int
    depth: int
    granularity: int | None

    def memory(self, init=()) -> Memory:
        """A :class:`~amaranth.lib.memory.Memory` of this geometry holding ``init``.

        No engine reads a word in the cycle it is written (docs/rtl-contract.md), so the
        memory is marked ``no_rw_check``: yosys then maps it to block RAM without the
        registers and multiplexers that would emulate a read-old-data collision.
        """
        return Memory(shape=self.word_bits, depth=self.depth, init=init,
                      attrs={"no_rw_check": 1})


def check_config(config: HwConfig) -> HwConfig:
    """Return ``config`` after checking that it is a :class:`~codesign.isa.HwConfig`.

    Raises
    ------
    TypeError
        If it is anything else; a component built from the wrong object would otherwise fail
        deep inside its signature with an unrelated ``AttributeError``.
    """
    if not isinstance(config, HwConfig):
        raise TypeError(f"config must be a HwConfig, not {config!r}")
    return config


class HwComponent(wiring.Component):
    """Base of the NPU's components: a signature sized by one checked ``HwConfig``.

    Parameters
    ----------
    config : HwConfig
        The NPU instance; checked with :func:`check_config`.
    members : callable
        ``members(config)`` returns the signature members; it is called only once ``config`` is
        known to be a ``HwConfig``.

    Attributes
    ----------
    config : HwConfig
        Read-only.
    """

    def __init__(self, config: HwConfig, members: Callable[[HwConfig], dict]):
        self._config = check_config(config)
        super().__init__(members(self._config))

    @property
    def config(self) -> HwConfig:
        return self._config


def scratchpad(config: HwConfig, name: str) -> Scratchpad:
    """Geometry of scratchpad ``name`` (one of :data:`SCRATCHPADS`) of ``config``.

    ACT has byte enables (REQUANT writes one lane group), WGT and PRM have one enable per
    ``bus_bytes`` slice (the DMA writes one slice per cycle), ACC is only written whole.
    """
    c = config
    return {
        "act": Scratchpad(8 * c.act_bytes, c.act_depth, 8),
        "wgt": Scratchpad(8 * c.cols, c.wgt_depth, 8 * c.bus_bytes),
        "prm": Scratchpad(64 * c.cols, c.prm_depth, 8 * c.bus_bytes),
        "acc": Scratchpad(32 * c.cols, c.acc_depth, None),
    }[name]


def scratchpad_read(config: HwConfig, name: str) -> dict:
    """Synchronous read port of scratchpad ``name``: ``<name>_raddr``, ``_ren``, ``_rdata``."""
    sp = scratchpad(config, name)
    return {
        f"{name}_raddr": Out(config.addr_bits(sp.depth)),
        f"{name}_ren": Out(1),
        f"{name}_rdata": In(sp.word_bits),
    }


def scratchpad_write(config: HwConfig, name: str) -> dict:
    """Write port of scratchpad ``name``: ``<name>_waddr``, ``_wen``, ``_wdata``.

    ``_wen`` has one bit per :attr:`Scratchpad.granularity` bits of the word.
    """
    sp = scratchpad(config, name)
    return {
        f"{name}_waddr": Out(config.addr_bits(sp.depth)),
        f"{name}_wen": Out(1 if sp.granularity is None else sp.word_bits // sp.granularity),
        f"{name}_wdata": Out(sp.word_bits),
    }


def ext_read(config: HwConfig) -> dict:
    """Read half of the external memory port: ``mem_addr``, ``mem_re``, ``mem_rdata``."""
    return {
        "mem_addr": Out(config.ext_addr_bits),
        "mem_re": Out(1),
        "mem_rdata": In(8 * config.bus_bytes),
    }


def ext_port(config: HwConfig) -> dict:
    """The whole external memory port: :func:`ext_read` plus ``mem_we``, ``mem_wdata``."""
    return {
        **ext_read(config),
        "mem_we": Out(1),
        "mem_wdata": Out(8 * config.bus_bytes),
    }


def csr_port() -> dict:
    """Host CSR port: ``csr_addr``, ``csr_we``, ``csr_wdata``, ``csr_rdata``.

    ``csr_addr`` is a :class:`codesign.isa.Csr` word address.
    """
    return {
        "csr_addr": In(CSR_ADDR_BITS),
        "csr_we": In(1),
        "csr_wdata": In(32),
        "csr_rdata": Out(32),
    }


def engine_control(layout) -> dict:
    """Engine interface: ``start``, ``insn``, ``busy``, ``done`` (docs/rtl-contract.md).

    ``start`` pulses for one cycle, in which ``insn`` (an :mod:`codesign.isa` instruction
    ``layout``) is valid; ``busy`` is high from the next cycle up to and including the ``done``
    pulse, and every memory-port output of the engine is 0 while ``busy`` is low.
    """
    return {
        "start": In(1),
        "insn": In(layout),
        "busy": Out(1),
        "done": Out(1),
    }
