"""A model of the NPU's host interface for driver tests: the register map of codesign/isa.py in
front of the instruction-level simulator (:class:`codesign.isasim.IsaSim`), on a bus memory.

The registers behave as docs/registers.md says: a start makes CTRL busy for ``run_polls`` reads of
CTRL (so that a driver's polling loop runs), then the program runs on the ISA model out of the
memory at BASE, CYCLES takes the cycle model's count of the instructions run (codesign.timing),
and IRQ_STATUS.DONE rises (``irq`` with IRQ_ENABLE.DONE).
"""

from __future__ import annotations

import numpy as np

from codesign.isa import CSR_FIELDS, Csr, HwConfig, Opcode, config_id, decode, version_word
from codesign.isasim import IsaSim
from codesign.timing import schedule


def _mask(reg: Csr, name: str) -> int:
    field = next(f for f in CSR_FIELDS[reg] if f.name == name)
    return ((1 << field.width) - 1) << field.lsb


class BusMemory:
    """``size`` bytes of memory on the bus, from bus address 0."""

    def __init__(self, size: int):
        self.data = bytearray(size)

    def read(self, address: int, length: int) -> bytes:
        if address < 0 or address + length > len(self.data):
            raise IndexError(f"bus read of {length} bytes at {address:#x}")
        return bytes(self.data[address:address + length])

    def write(self, address: int, data: bytes) -> None:
        if address < 0 or address + len(data) > len(self.data):
            raise IndexError(f"bus write of {len(data)} bytes at {address:#x}")
        self.data[address:address + len(data)] = data


class Window:
    """``memory`` as a driver's ``mem`` sees it: offset 0 at bus address ``base``."""

    def __init__(self, memory, base: int):
        self.memory, self.base = memory, base

    def read(self, offset: int, length: int) -> bytes:
        return self.memory.read(self.base + offset, length)

    def write(self, offset: int, data: bytes) -> None:
        self.memory.write(self.base + offset, data)


class IsaSimNpu:
    """The NPU's registers (``read(offset)``, ``write(offset, value)``) over the ISA model.

    Parameters
    ----------
    config
        The NPU modelled (VERSION, CONFIG_ID, the ISA model's configuration).
    memory
        The bus memory (``read(address, length)``, ``write(address, data)``); the NPU's
        external memory is ``memory`` from BASE to its end.
    size
        Bytes of that memory.
    run_polls
        Reads of CTRL that see a run busy before it ends (None: it ends only when
        :meth:`wait_irq` is called).
    """

    def __init__(self, config: HwConfig, memory, size: int, *, run_polls: int | None = 3):
        self.config, self.memory, self.size, self.run_polls = config, memory, size, run_polls
        self.values = {reg: 0 for reg in Csr}
        self.values[Csr.VERSION] = version_word(config)
        self.values[Csr.CONFIG_ID] = config_id(config)
        self.running = False
        self._polls_left: int | None = None     # None: until wait_irq
        self.runs = 0
        self.accesses: list[tuple[str, Csr, int]] = []

    @property
    def irq(self) -> bool:
        return bool(self.values[Csr.IRQ_ENABLE] & self.values[Csr.IRQ_STATUS] & 1)

    def _reg(self, offset: int) -> Csr:
        if offset % 4 or not 0 <= offset < 4 * len(Csr):
            raise ValueError(f"no register at offset {offset:#x}")
        return Csr(offset // 4)

    def read(self, offset: int) -> int:
        reg = self._reg(offset)
        if reg == Csr.CTRL and self.running and self._polls_left is not None:
            if self._polls_left == 0:
                self._finish()
            else:
                self._polls_left -= 1
        value = self._ctrl() if reg == Csr.CTRL else self.values[reg]
        self.accesses.append(("r", reg, value))
        return value

    def write(self, offset: int, value: int) -> None:
        reg = self._reg(offset)
        self.accesses.append(("w", reg, value))
        if reg == Csr.CTRL:
            if value & _mask(Csr.CTRL, "START") and not self.running:
                self.values[Csr.CTRL] = 0       # done clears on start
                self.running = True
                self._polls_left = self.run_polls
        elif reg == Csr.IRQ_STATUS:
            self.values[reg] &= ~value
        elif reg in (Csr.PROG_BASE, Csr.IRQ_ENABLE, Csr.BASE):
            field = CSR_FIELDS[reg][0]
            self.values[reg] = value & ((1 << field.width) - 1) << field.lsb

    def _ctrl(self) -> int:
        busy = _mask(Csr.CTRL, "BUSY") if self.running else 0
        return busy | self.values[Csr.CTRL]

    def wait_irq(self) -> bool:
        """An interrupt wait: the running program ends now; whether ``irq`` is high."""
        if self.running:
            self._finish()
        return self.irq

    def _finish(self) -> None:
        c = self.config
        base = self.values[Csr.BASE]
        span = (self.size - base) // c.bus_bytes * c.bus_bytes
        ext = np.frombuffer(self.memory.read(base, span), np.uint8)
        sim = IsaSim(c, ext)
        prog_base = self.values[Csr.PROG_BASE]
        sim.run(prog_base)
        self.memory.write(base, sim.ext.tobytes())
        self.values[Csr.CYCLES] = schedule(self._insns(ext, prog_base), c).cycles
        self.values[Csr.CTRL] = _mask(Csr.CTRL, "DONE")
        self.values[Csr.IRQ_STATUS] |= _mask(Csr.IRQ_STATUS, "DONE")
        self.running = False
        self.runs += 1

    def _insns(self, ext: np.ndarray, prog_base: int) -> list[int]:
        """The instructions from ``prog_base`` to END."""
        n = self.config.insn_words * self.config.bus_bytes
        insns, at = [], prog_base * self.config.bus_bytes
        while True:
            insns.append(int.from_bytes(ext[at:at + n].tobytes(), "little"))
            if decode(insns[-1])[0] == Opcode.END:
                return insns
            at += n
