"""The C driver (``codesign/host/codesign_npu.c``) run from Python, for testing it.

:func:`build` compiles the driver, exactly as shipped, into a shared library whose hardware access
macros call function pointers (``codesign/host/codesign_shim.h``); :class:`CDriver` loads it with
:mod:`ctypes` and points them at Python objects — the same objects the Python driver
(:mod:`codesign.mmio`) takes:

* ``regs``: ``read(offset) -> int`` and ``write(offset, value)`` of 32-bit registers;
* ``mem``: ``read(offset, length) -> bytes`` and ``write(offset, data)`` of the memory the NPU
  sees at BASE (offset 0 = external word 0);
* ``wait_irq``: a callable that waits for an interrupt and says whether the NPU's ``irq`` is high.

Behind them may be a model of the NPU or a simulation of its RTL (a cocotb test calls the
blocking driver from a thread and its callbacks resume the simulator); only those objects change.
"""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Callable
from pathlib import Path

import numpy as np

from . import process
from .compiler.program import Program
from .hostgen import HOST_DIR, MODEL_HEADER, REGS_HEADER, model_header, regs_header

__all__ = ["build", "CDriver", "CDriverError", "COMPILE_FLAGS"]

#: The flags every build uses: C99, all warnings as errors.
COMPILE_FLAGS = ("-std=c99", "-Wall", "-Wextra", "-Werror")
_LIBRARY = "libcodesign_npu.so"


class CDriverError(RuntimeError):
    """A driver call returned an error code (``code``), or the library did not build."""

    def __init__(self, message: str, code: int = 0):
        super().__init__(message)
        self.code = code


def build(program: Program, workdir: Path, *, cc: str = "gcc", hooks: bool = True) -> Path:
    """Compile the C driver with ``program``'s register map and model into a shared library in
    ``workdir``; returns its path.

    With ``hooks`` false the driver keeps its default hardware access (volatile loads and stores
    at the addresses given to ``codesign_npu_init``) instead of calling the callbacks.

    Raises
    ------
    CDriverError
        If the compiler fails (its messages in the error).
    """
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / REGS_HEADER).write_text(regs_header(program.config))
    (workdir / MODEL_HEADER).write_text(model_header(program))
    library = workdir / _LIBRARY
    config = ['-DCODESIGN_NPU_CONFIG="codesign_shim.h"'] if hooks else []
    cmd = [cc, *COMPILE_FLAGS, "-O1", "-shared", "-fPIC", f"-I{workdir}", f"-I{HOST_DIR}",
           *config, str(HOST_DIR / "codesign_npu.c"), str(HOST_DIR / "codesign_shim.c"), "-o",
           str(library)]
    result = process.run(cmd, capture_output=True, text=True, timeout=600)
    if result.returncode:
        raise CDriverError(f"{cc} failed with exit code {result.returncode}:\n{result.stderr}")
    return library


_READ32 = ctypes.CFUNCTYPE(ctypes.c_uint32, ctypes.c_size_t)
_WRITE32 = ctypes.CFUNCTYPE(None, ctypes.c_size_t, ctypes.c_uint32)
_MEM_WRITE = ctypes.CFUNCTYPE(None, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_size_t)
_MEM_READ = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
_WAIT = ctypes.CFUNCTYPE(ctypes.c_int)


class CDriver:
    """One NPU driven by the C driver of a library :func:`build` made for ``program``; ``regs``
    and ``mem`` may be None for a library built without ``hooks``.

    Drivers of one library take turns: its callbacks are global (one NPU at a time).
    The methods are the C calls (``codesign_npu_<name>``) with Python buffers; each raises
    :class:`CDriverError` with the C error code when the call fails, and re-raises an exception
    that a callback raised (ctypes would otherwise print it and carry on).
    """

    def __init__(self, library: Path, program: Program, *, regs=None, mem=None,
                 wait_irq: Callable[[], bool] | None = None):
        self.program = program
        self._lib = ctypes.CDLL(str(library))
        self._error: BaseException | None = None

        def write32(addr, value):
            regs.write(addr, value)

        def mem_write(addr, src, n):
            mem.write(addr, ctypes.string_at(src, n))

        def mem_read(dst, addr, n):
            data = bytes(mem.read(addr, n))
            if len(data) != n:
                raise ValueError(f"memory read of {n} bytes at {addr:#x} returned {len(data)}")
            ctypes.memmove(dst, data, n)

        def wait() -> int:
            return int(bool(wait_irq())) if wait_irq is not None else 0

        # Kept referenced: the C side holds raw pointers to these trampolines.
        self._callbacks = (_READ32(self._guard(lambda addr: regs.read(addr) & 0xFFFFFFFF, 0)),
                           _WRITE32(self._guard(write32)), _MEM_WRITE(self._guard(mem_write)),
                           _MEM_READ(self._guard(mem_read)), _WAIT(self._guard(wait, 0)))
        self._lib.codesign_shim_model.restype = ctypes.c_void_p
        self._lib.codesign_shim_npu_bytes.restype = ctypes.c_size_t
        self._lib.codesign_npu_cycles.restype = ctypes.c_uint32
        self._lib.codesign_npu_strerror.restype = ctypes.c_char_p
        self._npu = ctypes.create_string_buffer(self._lib.codesign_shim_npu_bytes())

    def _guard(self, func, failed=None):
        """``func``, with an exception kept for :meth:`call` instead of raised into C."""
        @functools.wraps(func)
        def guarded(*args):
            try:
                return func(*args)
            except BaseException as err:    # noqa: B036 - re-raised by call
                if self._error is None:
                    self._error = err
                return failed
        return guarded

    def call(self, name: str, *args) -> int:
        """``codesign_npu_<name>(npu, *args)`` as it is: its return value (ctypes arguments)."""
        self._error = None
        # The callbacks are the library's globals, and every CDriver of one library file shares
        # the library: each call connects its own (drivers take turns, never run at once).
        self._lib.codesign_shim_connect(*self._callbacks)
        code = getattr(self._lib, f"codesign_npu_{name}")(self._npu, *args)
        if self._error is not None:
            raise self._error
        return code

    def _checked(self, name: str, *args) -> None:
        code = self.call(name, *args)
        if code:
            raise CDriverError(f"codesign_npu_{name}: {self.strerror(code)}", code)

    def strerror(self, code: int) -> str:
        return self._lib.codesign_npu_strerror(code).decode()

    def init(self, *, mem_bytes: int, bus_address: int, regs: int = 0, mem: int = 0) -> None:
        """``codesign_npu_init``; ``regs`` and ``mem`` are the addresses the callbacks get
        offsets from (0: they get plain offsets)."""
        self._checked("init", ctypes.c_size_t(regs), ctypes.c_size_t(mem),
                      ctypes.c_size_t(mem_bytes), ctypes.c_uint32(bus_address))

    def load(self) -> None:
        """``codesign_npu_load`` of the library's model (its npu_model.h)."""
        self._checked("load", ctypes.c_void_p(self._lib.codesign_shim_model()))

    def write_input(self, index: int, x: np.ndarray) -> None:
        """``codesign_npu_write_input`` of an integer HWC tensor (one byte per value)."""
        region = self.program.inputs[index]
        data = np.ascontiguousarray(x, np.int8 if region.signed else np.uint8).tobytes()
        self._checked("write_input", ctypes.c_uint32(index), data, ctypes.c_size_t(len(data)))

    def read_output(self, index: int) -> np.ndarray:
        """``codesign_npu_read_output``, shaped as :meth:`Region.unpack` returns it."""
        region = self.program.outputs[index]
        buf = ctypes.create_string_buffer(int(np.prod(region.shape)))
        self._checked("read_output", ctypes.c_uint32(index), buf, ctypes.c_size_t(len(buf)))
        values = np.frombuffer(buf.raw, np.int8 if region.signed else np.uint8)
        return values.reshape((1, 1, -1) if region.flatten_chw else region.shape)

    def start(self) -> None:
        self._checked("start")

    def wait(self, max_polls: int) -> None:
        self._checked("wait", ctypes.c_uint32(max_polls))

    def irq_enable(self, enable: bool) -> None:
        self._checked("irq_enable", ctypes.c_int(int(enable)))

    def wait_irq(self, max_waits: int) -> None:
        self._checked("wait_irq", ctypes.c_uint32(max_waits))

    def cycles(self) -> int:
        return self.call("cycles")

    def run(self, inputs: list[np.ndarray], max_polls: int = (1 << 32) - 1) -> list[np.ndarray]:
        """One inference as :meth:`codesign.mmio.Npu.run` does it: write ``inputs``, start, wait
        by polling, read every output."""
        for index, x in enumerate(inputs):
            self.write_input(index, x)
        self.start()
        self.wait(max_polls)
        return [self.read_output(i) for i in range(len(self.program.outputs))]
