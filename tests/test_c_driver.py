"""The C driver (codesign/host/codesign_npu.c, through codesign.cshim) and the Python MMIO driver
(codesign.mmio) against the register model of tests/npumodel.py, whose NPU is the
instruction-level simulator: they pack inputs and unpack outputs exactly as
Program.input_writes / Region.unpack do, run whole models bit-exactly with the golden model, and
report every error by its code."""

import ctypes
import dataclasses
import functools
import queue
import threading

import numpy as np
import pytest

from codesign import cshim, reference
from codesign.cli import DEFAULT_CONFIG
from codesign.compiler import compile_graph
from codesign.frontend import load_model
from codesign.isa import Csr, HwConfig, config_id, version_word
from codesign.mmio import MmapMemory, MmapRegisters, Npu, NpuError
from codesign.timing import program_cycles
from models import mlperf

from .irgen import random_input
from .modelgen import ZOO, Conv, Flatten, ReLU, Spec, build
from .npumodel import BusMemory, IsaSimNpu, Window

#: Where the NPU's memory starts on the bus (BASE): not 0, so that BASE matters.
BUS_BASE = 0x3000

#: Models and NPUs: first-layer unfolding (unsigned, signed with a negative zero point,
#: asymmetric pads), channel padding, a CHW-flattened output, buses of 1..8 bytes.
MODELS = {
    "dscnn-8x8": (lambda: mlperf.path("dscnn"), DEFAULT_CONFIG),
    "asym-pads-u8-4x4": (lambda: build(ZOO["asym_pads_qdq_u8"]),
                         HwConfig(rows=4, cols=4, bus_bytes=2)),
    "asym-pads-s8-4x2": (lambda: build(ZOO["asym_pads_qop_s8_tensor"]),
                         HwConfig(rows=4, cols=2, bus_bytes=1, bus="axi4")),
    "flatten-out-s8-4x4": (lambda: build(Spec((3, 7, 6), (Conv(5, 3, padding=1), ReLU(),
                                                           Flatten()),
                                              signed=True, int_input=True, int_output=True)),
                           HwConfig(rows=4, cols=4, bus_bytes=4, bus="wishbone")),
    "mlp-s8-2x8": (lambda: build(ZOO["mlp_qop_s8"]), HwConfig(rows=2, cols=8, bus_bytes=8)),
}


@functools.cache
def _compiled(name: str, workdir):
    model, config = MODELS[name]
    graph = load_model(model())
    program = compile_graph(graph, config)
    return graph, program, cshim.build(program, workdir / name)


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    root = tmp_path_factory.mktemp("cdriver")
    return lambda name: _compiled(name, root)


def memory_bytes(program) -> int:
    """A bus memory holding the program from BUS_BASE, and a page more."""
    return BUS_BASE + program.ext_words * program.config.bus_bytes + 4096


def connect(program, library, *, run_polls=3, npu_config=None):
    """The C driver on a register model of ``npu_config`` (default: the program's NPU)."""
    size = memory_bytes(program)
    bus = BusMemory(size)
    npu = IsaSimNpu(npu_config or program.config, bus, size, run_polls=run_polls)
    driver = cshim.CDriver(library, program, regs=npu, mem=Window(bus, BUS_BASE),
                           wait_irq=npu.wait_irq)
    return driver, npu, bus


def random_tensor(region, rng) -> np.ndarray:
    dtype = np.int8 if region.signed else np.uint8
    info = np.iinfo(dtype)
    return rng.integers(info.min, info.max + 1, region.shape).astype(dtype)


def golden(graph, inputs) -> list[np.ndarray]:
    values = reference.run(graph, inputs)
    return [values[b.tensor.name] for b in graph.outputs]


@pytest.mark.parametrize("name", MODELS)
def test_c_driver_packs_and_unpacks_as_the_program(compiled, name):
    """Every byte the C driver writes or reads is where Program.input_writes / Region.unpack
    put or take it; memory outside the regions is not touched."""
    _, program, library = compiled(name)
    c = program.config
    driver, npu, bus = connect(program, library)
    driver.init(mem_bytes=memory_bytes(program) - BUS_BASE, bus_address=BUS_BASE)
    driver.load()
    image = program.image.tobytes()
    assert bus.read(BUS_BASE, len(image)) == image
    assert (npu.values[Csr.BASE], npu.values[Csr.PROG_BASE]) == (BUS_BASE, program.prog_base)
    rng = np.random.default_rng(7)
    for _ in range(3):
        bus.data[:] = rng.integers(0, 256, len(bus.data), dtype=np.uint8).tobytes()
        want = bytearray(bus.data)
        xs = [random_tensor(r, rng) for r in program.inputs]
        for index, x in enumerate(xs):
            driver.write_input(index, x)
        for addr, data in program.input_writes(xs):
            start = BUS_BASE + addr * c.bus_bytes
            want[start:start + len(data)] = data
        assert bus.data == want
        for index, region in enumerate(program.outputs):
            start = BUS_BASE + region.addr * c.bus_bytes
            expected = region.unpack(bytes(bus.data[start:start + region.nbytes(c)]), c)
            got = driver.read_output(index)
            assert got.dtype == expected.dtype
            np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize("name", MODELS)
def test_c_driver_runs_the_model_bit_exact(compiled, name):
    """Two inferences, one waited for by polling and one by interrupt, equal the golden model;
    CYCLES is the cycle model's count."""
    graph, program, library = compiled(name)
    driver, npu, _ = connect(program, library)
    driver.init(mem_bytes=memory_bytes(program) - BUS_BASE, bus_address=BUS_BASE)
    driver.load()
    inputs = random_input(graph, 1)
    for got, want in zip(driver.run(inputs, max_polls=npu.run_polls + 1),
                         golden(graph, inputs), strict=True):
        np.testing.assert_array_equal(got, want)
    assert driver.cycles() == program_cycles(program)
    inputs = random_input(graph, 2)
    for index, x in enumerate(inputs):
        driver.write_input(index, x)
    driver.irq_enable(True)
    driver.start()
    driver.wait_irq(1)
    assert not npu.irq       # the ISR cleared it
    for index, want in enumerate(golden(graph, inputs)):
        np.testing.assert_array_equal(driver.read_output(index), want)
    assert driver.cycles() == program_cycles(program)
    assert npu.runs == 2


def test_c_driver_reports_errors_by_code(compiled):
    graph, program, library = compiled("asym-pads-u8-4x4")
    c = program.config
    mem = memory_bytes(program) - BUS_BASE
    errors = {}

    def code(driver, name, *args) -> int:
        result = driver.call(name, *args)
        errors[result] = driver.strerror(result)
        return result

    other_shape = HwConfig(rows=2, cols=4, bus_bytes=2)
    other_memory = HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=c.act_depth // 2)
    for npu_config, want in ((other_shape, -2), (other_memory, -3), (c, 0)):
        driver, npu, _ = connect(program, library, npu_config=npu_config, run_polls=None)
        assert code(driver, "init", ctypes.c_size_t(0), ctypes.c_size_t(0),
                    ctypes.c_size_t(mem), ctypes.c_uint32(BUS_BASE)) == want
    assert code(driver, "init", ctypes.c_size_t(0), ctypes.c_size_t(0), ctypes.c_size_t(mem),
                ctypes.c_uint32(BUS_BASE + 0x800)) == -4
    x = random_input(graph, 0)[0]
    data = np.ascontiguousarray(x).tobytes()
    with pytest.raises(cshim.CDriverError, match="no model loaded") as err:
        driver.write_input(0, x)
    assert err.value.code == -8
    assert code(driver, "start") == -8
    driver.init(mem_bytes=program.ext_words * c.bus_bytes - 1, bus_address=BUS_BASE)
    with pytest.raises(cshim.CDriverError, match="too small") as err:
        driver.load()
    errors[err.value.code] = str(err.value)
    assert err.value.code == -5
    driver.init(mem_bytes=mem, bus_address=BUS_BASE)
    driver.load()
    assert code(driver, "write_input", ctypes.c_uint32(0), data,
                ctypes.c_size_t(len(data) - 1)) == -6
    assert code(driver, "write_input", ctypes.c_uint32(1), data,
                ctypes.c_size_t(len(data))) == -1
    assert code(driver, "write_input", ctypes.c_uint32(0), None, ctypes.c_size_t(0)) == -1
    driver.write_input(0, x)
    driver.start()
    # The model never finishes on polls (run_polls=None): the wait gives up after exactly its
    # bound, and the NPU stays busy.
    before = len(npu.accesses)
    assert code(driver, "wait", ctypes.c_uint32(50)) == -10
    assert npu.accesses[before:] == [("r", Csr.CTRL, 1)] * 50
    assert code(driver, "start") == -9
    assert code(driver, "write_input", ctypes.c_uint32(0), data, ctypes.c_size_t(len(data))) == -9
    # With the interrupt disabled the run ends (in the first wait) but raises no interrupt.
    assert code(driver, "wait_irq", ctypes.c_uint32(4)) == -10
    assert npu.runs == 1
    driver.wait(1)
    np.testing.assert_array_equal(driver.read_output(0), golden(graph, [x])[0])
    assert sorted(errors) == [-10, -9, -8, -6, -5, -4, -3, -2, -1, 0]
    assert len(set(errors.values())) == len(errors)


def test_c_driver_raises_a_callback_exception(compiled):
    _, program, library = compiled("asym-pads-u8-4x4")

    class Broken:
        def read(self, offset):
            raise OSError(f"bus error at {offset:#x}")

        def write(self, offset, value):
            raise AssertionError("not reached")

    driver = cshim.CDriver(library, program, regs=Broken(), mem=BusMemory(16))
    with pytest.raises(OSError, match="bus error at 0xc"):
        driver.init(mem_bytes=1 << 20, bus_address=0)


# -- the Python MMIO driver -----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["dscnn-8x8", "asym-pads-s8-4x2", "flatten-out-s8-4x4"])
def test_python_driver_runs_the_model_bit_exact(compiled, name):
    graph, program, _ = compiled(name)
    size = memory_bytes(program)
    bus = BusMemory(size)
    regs = IsaSimNpu(program.config, bus, size)
    npu = Npu(regs, Window(bus, BUS_BASE), program.config, bus_address=BUS_BASE,
              mem_bytes=size - BUS_BASE)
    npu.init()
    npu.load(program)
    assert bus.read(BUS_BASE, len(program.image)) == program.image.tobytes()
    inputs = random_input(graph, 3)
    for got, want in zip(npu.run(inputs, max_polls=regs.run_polls + 1), golden(graph, inputs),
                         strict=True):
        np.testing.assert_array_equal(got, want)
    assert npu.cycles() == program_cycles(program)
    # By interrupt, on other inputs.
    inputs = random_input(graph, 4)
    npu.write_input(0, inputs[0])
    npu.irq_enable(True)
    npu.start()
    npu.wait_irq(regs.wait_irq, 1)
    assert not regs.irq
    np.testing.assert_array_equal(npu.read_output(0), golden(graph, inputs)[0])


def test_python_driver_errors(compiled):
    graph, program, _ = compiled("asym-pads-u8-4x4")
    size = memory_bytes(program)
    bus = BusMemory(size)
    other = HwConfig(rows=4, cols=4, bus_bytes=2, act_depth=program.config.act_depth // 2)
    for config, message in ((HwConfig(rows=2, cols=4, bus_bytes=2), "VERSION"),
                            (other, "CONFIG_ID")):
        with pytest.raises(NpuError, match=message):
            Npu(IsaSimNpu(config, bus, size), Window(bus, BUS_BASE), program.config,
                bus_address=BUS_BASE).init()
    with pytest.raises(ValueError, match="4 KiB"):
        Npu(None, None, program.config, bus_address=BUS_BASE + 4)
    regs = IsaSimNpu(program.config, bus, size, run_polls=None)
    npu = Npu(regs, Window(bus, BUS_BASE), program.config, bus_address=BUS_BASE,
              mem_bytes=size - BUS_BASE)
    npu.init()
    with pytest.raises(NpuError, match="no program"):
        npu.start()
    with pytest.raises(NpuError, match="compiled for"):
        npu.load(compile_graph(graph, HwConfig(rows=4, cols=4, bus_bytes=4)))
    small = Npu(regs, Window(bus, BUS_BASE), program.config, bus_address=BUS_BASE,
                mem_bytes=program.ext_words * program.config.bus_bytes - 1)
    with pytest.raises(NpuError, match="needs"):
        small.load(program)
    npu.load(program)
    npu.write_input(0, random_input(graph, 0)[0])
    npu.start()
    with pytest.raises(NpuError, match="within 20 polls"):
        npu.wait(20)
    with pytest.raises(NpuError, match="running"):
        npu.start()
    with pytest.raises(NpuError, match="no interrupt within 3"):
        npu.wait_irq(regs.wait_irq, 3)


def test_mmap_registers_and_memory(tmp_path):
    """Both map a file at an address that is not page aligned; registers are 32-bit little-endian
    words at their offsets, memory plain bytes."""
    path = tmp_path / "mem"
    path.write_bytes(bytes(4 << 12))
    address = 0x1010
    with MmapRegisters(path, address) as regs:
        for reg in Csr:
            regs.write(4 * reg.value, 0x01020300 + reg.value)
        assert [regs.read(4 * reg.value) for reg in Csr] == [0x01020300 + r.value for r in Csr]
        with pytest.raises(ValueError, match="multiple of 4"):
            regs.read(2)
        with pytest.raises(IndexError):
            regs.write(4 * len(Csr), 0)
    raw = path.read_bytes()
    assert raw[address:address + 4] == bytes([0, 3, 2, 1])
    assert raw[address + 4 * len(Csr):address + 4 * len(Csr) + 4] == bytes(4)
    with MmapMemory(path, 0x2fff, 0x1001) as mem:
        mem.write(0, b"abc")
        mem.write(0x1000, b"z")
        assert mem.read(0, 3) == b"abc" and mem.read(0x1000, 1) == b"z"
        with pytest.raises(IndexError):
            mem.read(0x1000, 2)
    assert path.read_bytes()[0x2fff:0x3002] == b"abc"


def test_python_driver_on_a_memory_mapped_file(compiled, tmp_path):
    """The NPU's memory is a mapped file (as /dev/mem would be): the run is bit-exact."""
    graph, program, _ = compiled("asym-pads-s8-4x2")
    size = memory_bytes(program)
    path = tmp_path / "dram"
    path.write_bytes(bytes(size))
    with MmapMemory(path, 0, size) as bus, MmapMemory(path, BUS_BASE, size - BUS_BASE) as mem:
        regs = IsaSimNpu(program.config, bus, size)
        npu = Npu(regs, mem, program.config, bus_address=BUS_BASE, mem_bytes=size - BUS_BASE)
        npu.init()
        npu.load(program)
        inputs = random_input(graph, 5)
        outputs = npu.run(inputs, max_polls=regs.run_polls + 1)
    np.testing.assert_array_equal(outputs[0], golden(graph, inputs)[0])
    image = path.read_bytes()[BUS_BASE:BUS_BASE + len(program.image)]
    assert image == program.image.tobytes()


def test_c_driver_default_access_is_volatile_loads_and_stores(compiled, tmp_path):
    """Built without the hooks, the driver reads and writes registers and memory at the
    addresses given to init: here two ctypes arrays standing in for the register block (a
    plain memory: what the driver writes stays, what a test puts there is what it reads) and
    the NPU's memory."""
    graph, program, _ = compiled("flatten-out-s8-4x4")
    c = program.config
    library = cshim.build(program, tmp_path, hooks=False)
    driver = cshim.CDriver(library, program)
    regs = (ctypes.c_uint32 * len(Csr))()
    regs[Csr.VERSION] = version_word(c)
    regs[Csr.CONFIG_ID] = config_id(c)
    regs[Csr.IRQ_ENABLE] = 1
    size = program.ext_words * c.bus_bytes
    mem = (ctypes.c_uint8 * size)()
    driver.init(regs=ctypes.addressof(regs), mem=ctypes.addressof(mem), mem_bytes=size,
                bus_address=BUS_BASE)
    assert (regs[Csr.IRQ_ENABLE], regs[Csr.IRQ_STATUS]) == (0, 1)
    driver.load()
    assert bytes(mem)[:len(program.image)] == program.image.tobytes()
    assert (regs[Csr.BASE], regs[Csr.PROG_BASE]) == (BUS_BASE, program.prog_base)
    x = random_input(graph, 6)
    driver.write_input(0, x[0])
    (addr, data), = program.input_writes(x)
    assert bytes(mem)[addr * c.bus_bytes:addr * c.bus_bytes + len(data)] == data
    driver.start()
    assert regs[Csr.CTRL] == 1                  # START
    regs[Csr.CTRL] = 2                          # DONE, as the NPU would set it
    regs[Csr.CYCLES] = 123456
    driver.wait(1)
    assert driver.cycles() == 123456
    region = program.outputs[0]
    raw = np.random.default_rng(8).integers(0, 256, region.nbytes(c), dtype=np.uint8).tobytes()
    ctypes.memmove(ctypes.addressof(mem) + region.addr * c.bus_bytes, raw, len(raw))
    np.testing.assert_array_equal(driver.read_output(0), region.unpack(raw, c))


class Forwarded:
    """``target``'s ``read``/``write``, each call handed to the thread that serves ``requests``
    and waited for: how a cocotb test serves the driver's callbacks in the simulator's thread
    (cocotb's ``bridge`` runs the blocking driver in a thread, ``resume`` waits in it)."""

    def __init__(self, target, requests: queue.Queue):
        self.target, self.requests = target, requests

    def _call(self, name: str, *args):
        reply: queue.Queue = queue.Queue(1)
        self.requests.put((getattr(self.target, name), args, reply))
        return reply.get()

    def read(self, *args):
        return self._call("read", *args)

    def write(self, *args):
        return self._call("write", *args)


def test_c_driver_in_a_thread_with_its_callbacks_served_by_another(compiled):
    graph, program, library = compiled("asym-pads-s8-4x2")
    size = memory_bytes(program)
    bus = BusMemory(size)
    npu = IsaSimNpu(program.config, bus, size)
    requests: queue.Queue = queue.Queue()
    driver = cshim.CDriver(library, program, regs=Forwarded(npu, requests),
                           mem=Forwarded(Window(bus, BUS_BASE), requests))
    inputs = random_input(graph, 9)
    results: list = []

    def host():
        try:
            driver.init(mem_bytes=size - BUS_BASE, bus_address=BUS_BASE)
            driver.load()
            results.append(driver.run(inputs, max_polls=npu.run_polls + 1))
        except BaseException as err:    # noqa: B036 - reported by the serving thread
            results.append(err)

    thread = threading.Thread(target=host)
    thread.start()
    served = 0
    while thread.is_alive() or not requests.empty():
        try:
            func, args, reply = requests.get(timeout=0.01)
        except queue.Empty:
            continue
        reply.put(func(*args))
        served += 1
    thread.join()
    (outputs,) = results
    assert isinstance(outputs, list), outputs
    np.testing.assert_array_equal(outputs[0], golden(graph, inputs)[0])
    assert served >= len(npu.accesses) > 0


def test_c_driver_refuses_a_flattened_input_and_an_unfolded_output(compiled, tmp_path):
    """Tables the compiler never makes (a hand-edited npu_model.h could): the driver refuses to
    write a flattened view or to read back an unfolded input."""
    _, program, _ = compiled("flatten-out-s8-4x4")
    swapped = dataclasses.replace(program, inputs=program.outputs, outputs=program.inputs)
    driver, _, _ = connect(swapped, cshim.build(swapped, tmp_path))
    driver.init(mem_bytes=memory_bytes(program) - BUS_BASE, bus_address=BUS_BASE)
    driver.load()
    for call, region in (("write_input", swapped.inputs[0]), ("read_output", swapped.outputs[0])):
        buf = ctypes.create_string_buffer(int(np.prod(region.shape)))
        assert driver.call(call, ctypes.c_uint32(0), buf, ctypes.c_size_t(len(buf))) == -7
