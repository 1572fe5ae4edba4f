"""The Python MMIO driver: the C driver's calls (``codesign/host/codesign_npu.h``) in Python.

PYNQ-style, it drives any pair of objects:

* ``regs``: ``read(offset) -> int`` and ``write(offset, value)`` of the 32-bit registers (byte
  offsets, :data:`~codesign.isa.CSR_FIELDS`), e.g. a ``pynq.MMIO`` or :class:`MmapRegisters`;
* ``mem``: ``read(offset, length) -> bytes`` and ``write(offset, data)`` of the memory the NPU
  sees at BASE (offset 0 = external word 0), e.g. :class:`MmapMemory`;

and packs inputs and unpacks outputs as :meth:`Region.pack` / :meth:`Region.unpack` do.
:class:`MmapRegisters` and :class:`MmapMemory` map them from ``/dev/mem``, a UIO device or any
file.

Examples
--------
>>> npu = Npu(MmapRegisters("/dev/mem", 0x4000_0000), MmapMemory("/dev/mem", 0x8000_0000, 1 << 20),
...           config, bus_address=0x8000_0000)                                # doctest: +SKIP
>>> npu.init(); npu.load(program)                                              # doctest: +SKIP
>>> outputs = npu.run([x])                                                     # doctest: +SKIP
"""

from __future__ import annotations

import mmap
import os
from collections.abc import Callable

import numpy as np

from .compiler.program import Program
from .isa import CSR_ADDR_BITS, CSR_FIELDS, Csr, HwConfig, config_id, version_word

__all__ = ["Npu", "NpuError", "MmapRegisters", "MmapMemory"]


def _field(reg: Csr, name: str) -> tuple[int, int]:
    """(shift, in-place mask) of a register field."""
    field = next(f for f in CSR_FIELDS[reg] if f.name == name)
    return field.lsb, ((1 << field.width) - 1) << field.lsb


_START = _field(Csr.CTRL, "START")[1]
_BUSY = _field(Csr.CTRL, "BUSY")[1]
_DONE = _field(Csr.CTRL, "DONE")[1]
_BASE_ADDR = _field(Csr.BASE, "ADDR")[1]
_IRQ_ENABLE_DONE = _field(Csr.IRQ_ENABLE, "DONE")[1]
_IRQ_STATUS_DONE = _field(Csr.IRQ_STATUS, "DONE")[1]
_CYCLES_SHIFT, _CYCLES_MASK = _field(Csr.CYCLES, "COUNT")


class NpuError(RuntimeError):
    """The NPU is not the expected one, the memory does not fit, or a run did not finish."""


class Npu:
    """One NPU of configuration ``config`` and the memory it reaches at ``bus_address`` (BASE).

    Parameters
    ----------
    regs
        Its registers: ``read(offset) -> int``, ``write(offset, value)``.
    mem
        The memory: ``read(offset, length) -> bytes``, ``write(offset, data)``.
    config
        The configuration the driver expects (:meth:`init` checks VERSION and CONFIG_ID).
    bus_address
        Where the NPU reaches ``mem``'s offset 0: a multiple of 4 KiB.
    mem_bytes
        Size of ``mem`` (None: unchecked).
    """

    def __init__(self, regs, mem, config: HwConfig, *, bus_address: int,
                 mem_bytes: int | None = None):
        if bus_address & ~_BASE_ADDR or bus_address < 0:
            raise ValueError(f"bus_address must be a 32-bit multiple of 4 KiB, "
                             f"not {bus_address:#x}")
        self.regs, self.mem, self.config = regs, mem, config
        self.bus_address, self.mem_bytes = bus_address, mem_bytes
        self.program: Program | None = None
        self.irq_done = False

    def _read(self, reg: Csr) -> int:
        return int(self.regs.read(4 * reg.value)) & 0xFFFFFFFF

    def _write(self, reg: Csr, value: int) -> None:
        self.regs.write(4 * reg.value, value)

    def _loaded(self) -> Program:
        if self.program is None:
            raise NpuError("no program loaded")
        return self.program

    def _idle(self) -> None:
        if self._read(Csr.CTRL) & _BUSY:
            raise NpuError("the NPU is running")

    # -- the calls of codesign_npu.h ------------------------------------------------------------
    def init(self) -> None:
        """Check VERSION and CONFIG_ID against ``config`` and reset the interrupt state."""
        for reg, want in ((Csr.VERSION, version_word(self.config)),
                          (Csr.CONFIG_ID, config_id(self.config))):
            if (got := self._read(reg)) != want:
                raise NpuError(f"{reg.name} is {got:#010x}, the NPU {self.config.name} has "
                               f"{want:#010x}")
        self.program = None
        self._write(Csr.IRQ_ENABLE, 0)
        self._write(Csr.IRQ_STATUS, _IRQ_STATUS_DONE)

    def load(self, program: Program) -> None:
        """Copy ``program``'s image into the memory and set BASE and PROG_BASE."""
        if program.config != self.config:
            raise NpuError(f"the program is compiled for {program.config.name}, not "
                           f"{self.config.name}")
        need = program.ext_words * self.config.bus_bytes
        if self.mem_bytes is not None and need > self.mem_bytes:
            raise NpuError(f"the program needs {need} bytes of memory, there are "
                           f"{self.mem_bytes}")
        self._idle()
        self.program = None
        self.mem.write(0, np.asarray(program.image, np.uint8).tobytes())
        self._write(Csr.BASE, self.bus_address)
        self._write(Csr.PROG_BASE, program.prog_base)
        self.program = program

    def write_input(self, index: int, x: np.ndarray) -> None:
        """Write input ``index`` (an integer HWC tensor), packed as the NPU reads it."""
        region = self._loaded().inputs[index]
        data = region.pack(x, self.config)
        self._idle()
        self.mem.write(region.addr * self.config.bus_bytes, data)

    def start(self) -> None:
        self._loaded()
        self._idle()
        self.irq_done = False
        self._write(Csr.CTRL, _START)

    def wait(self, max_polls: int) -> None:
        """Poll CTRL until the run is done, at most ``max_polls`` reads."""
        for _ in range(max_polls):
            ctrl = self._read(Csr.CTRL)
            if ctrl & _DONE and not ctrl & _BUSY:
                return
        raise NpuError(f"the run did not finish within {max_polls} polls")

    def irq_enable(self, enable: bool) -> None:
        """Interrupt on completion or not; clears a pending one either way."""
        self._write(Csr.IRQ_STATUS, _IRQ_STATUS_DONE)
        self.irq_done = False
        self._write(Csr.IRQ_ENABLE, _IRQ_ENABLE_DONE if enable else 0)

    def isr(self) -> bool:
        """The interrupt handler's part: True (and the interrupt cleared) if the NPU raised it."""
        if not self._read(Csr.IRQ_STATUS) & _IRQ_STATUS_DONE:
            return False
        self._write(Csr.IRQ_STATUS, _IRQ_STATUS_DONE)
        self.irq_done = True
        return True

    def wait_irq(self, wait: Callable[[], bool], max_waits: int) -> None:
        """Until :meth:`isr` has seen the run's end, call ``wait()`` (it waits for an interrupt
        and says whether ``irq`` is high; then the handler runs), at most ``max_waits`` times."""
        for _ in range(max_waits):
            if self.irq_done:
                return
            if wait():
                self.isr()
        if not self.irq_done:
            raise NpuError(f"no interrupt within {max_waits} waits")

    def read_output(self, index: int) -> np.ndarray:
        """Output ``index`` as :meth:`Region.unpack` gives it."""
        region = self._loaded().outputs[index]
        self._idle()
        data = self.mem.read(region.addr * self.config.bus_bytes, region.nbytes(self.config))
        return region.unpack(bytes(data), self.config)

    def cycles(self) -> int:
        """Clock cycles of the last run."""
        return (self._read(Csr.CYCLES) & _CYCLES_MASK) >> _CYCLES_SHIFT

    def run(self, inputs: list[np.ndarray], max_polls: int = 1 << 32) -> list[np.ndarray]:
        """One inference: write ``inputs``, start, wait by polling, read every output."""
        for index, x in enumerate(inputs):
            self.write_input(index, x)
        self.start()
        self.wait(max_polls)
        return [self.read_output(i) for i in range(len(self._loaded().outputs))]


# -- memory-mapped files --------------------------------------------------------------------------

class _Mapping:
    """``size`` bytes of ``path`` from byte ``address``, mapped shared (the map starts at the page
    that holds ``address``: mmap offsets must be page aligned)."""

    def __init__(self, path: str | os.PathLike, address: int, size: int):
        if address < 0 or size < 1:
            raise ValueError(f"need a non-negative address and a positive size, not "
                             f"{address:#x}, {size}")
        skew = address % mmap.ALLOCATIONGRANULARITY
        # O_SYNC: uncached access on /dev/mem, as device registers need.
        fd = os.open(path, os.O_RDWR | os.O_SYNC)
        try:
            self._map = mmap.mmap(fd, skew + size, mmap.MAP_SHARED,
                                  mmap.PROT_READ | mmap.PROT_WRITE, offset=address - skew)
        finally:
            os.close(fd)
        self._view = memoryview(self._map)[skew:skew + size]
        self.size = size

    def _span(self, offset: int, length: int) -> slice:
        if offset < 0 or length < 0 or offset + length > self.size:
            raise IndexError(f"{length} bytes at offset {offset:#x} lie outside the "
                             f"{self.size}-byte mapping")
        return slice(offset, offset + length)

    def close(self) -> None:
        self._view.release()
        self._map.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class MmapRegisters(_Mapping):
    """The NPU's registers mapped from ``path`` at ``address``: 32-bit reads and writes."""

    def __init__(self, path: str | os.PathLike, address: int):
        if address % 4:
            raise ValueError(f"the register block's address must be 4-byte aligned, "
                             f"not {address:#x}")
        super().__init__(path, address, 4 << CSR_ADDR_BITS)
        self._words = self._view.cast("I")     # one aligned 32-bit access per register access

    def _index(self, offset: int) -> int:
        if offset % 4:
            raise ValueError(f"register offset {offset:#x} is not a multiple of 4")
        self._span(offset, 4)
        return offset // 4

    def read(self, offset: int) -> int:
        return self._words[self._index(offset)]

    def write(self, offset: int, value: int) -> None:
        self._words[self._index(offset)] = value & 0xFFFFFFFF

    def close(self) -> None:
        self._words.release()
        super().close()


class MmapMemory(_Mapping):
    """``size`` bytes of memory mapped from ``path`` at ``address``: byte reads and writes."""

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._view[self._span(offset, length)])

    def write(self, offset: int, data) -> None:
        data = memoryview(data).cast("B")
        self._view[self._span(offset, len(data))] = data
