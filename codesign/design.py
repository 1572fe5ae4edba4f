"""A generated design directory as `simulate` and `verify` read it back, and their input and
output files.

Everything here is read from files a user may have edited, truncated or swapped; every defect is
an :class:`InputError` naming the file, found before a simulation is started.
"""

from __future__ import annotations

import contextlib
import math
import os
import reprlib
import secrets
import stat
from pathlib import Path

import numpy as np

from .compiler.program import DesignFileError, Program, read_design_file
from .errors import InputError
from .frontend import load_model
from .isa import HwConfig, Mem

__all__ = ["Design", "read_batch", "join_outputs", "OutputFile", "MAX_BATCH", "VERILOG", "CONFIG",
           "REPORT_JSON",
           "REPORT_TXT", "MODEL"]

#: Files of a generated design directory.
VERILOG, CONFIG, REPORT_JSON, REPORT_TXT, MODEL = (
    "npu.v", "config.json", "report.json", "report.txt", "model.onnx")

#: Largest config.json and npu.v read back (a 64x64 array's Verilog is some 100 MB).
CONFIG_LIMIT, VERILOG_LIMIT = 1 << 20, 1 << 30

#: Most inferences in one ``--input`` file. One simulation runs them all, each exchanging its
#: input and outputs with the simulator through files; more is a job for several runs.
MAX_BATCH = 1024


class Design:
    """A generated design directory, loaded and checked.

    Parameters
    ----------
    outdir
        A directory that ``codesign generate`` wrote.

    Raises
    ------
    InputError
        If ``outdir`` is not a design directory, or (:class:`DesignFileError`) one of its files
        is damaged, or does not agree with the others.
    """

    def __init__(self, outdir: Path):
        from .sim.runner import EXT_MEM_BYTES
        missing = [f for f in (VERILOG, CONFIG, MODEL, "symbols.json", "program.bin",
                               "memory.bin") if not (outdir / f).is_file()]
        if missing:
            raise InputError(f"{outdir} is not a codesign design directory (missing "
                             f"{', '.join(missing)}); run `codesign generate` first")
        self.dir = outdir
        self.config = _read_config(outdir / CONFIG)
        # The simulated external memory must hold the image and every activation buffer.
        self.program = Program.read(outdir, self.config, memory_bytes=EXT_MEM_BYTES)
        self.verilog = _read_verilog(outdir / VERILOG, self.config)
        self.graph = _read_model(outdir / MODEL)
        _check_model_matches(outdir / MODEL, self.graph, self.program)


def _read_config(path: Path) -> HwConfig:
    """config.json, checked by :meth:`HwConfig.from_json`."""
    try:
        return HwConfig.from_json(read_design_file(path, CONFIG_LIMIT).decode())
    except ValueError as err:           # UnicodeDecodeError included
        raise DesignFileError(path, str(err)) from None


def _read_verilog(path: Path, config: HwConfig) -> str:
    """npu.v, checked to be whole (structurally: its content is checked by Verilator)."""
    try:
        text = read_design_file(path, VERILOG_LIMIT).decode()
    except UnicodeDecodeError:
        raise DesignFileError(path, "is not Verilog text") from None
    if "\nmodule npu_top(" not in text or not text.rstrip().endswith("endmodule"):
        raise DesignFileError(path, "is truncated or not the NPU's Verilog")
    # The bus and the memories tell the Verilog of another configuration apart (the rest of
    # its content is Verilator's to check).
    for declaration in _declarations(config):
        if declaration not in text:
            raise DesignFileError(path, f"is not the Verilog of the NPU in {CONFIG} (it lacks "
                                        f"`{declaration}`)")
    return text


#: The read-data input of each bus form's memory port (its width is the bus width).
_READ_DATA = {"native": "mem_rdata", "axi4": "m_axi_rdata", "wishbone": "m_wb_dat_r"}


def _declarations(config: HwConfig) -> list[str]:
    """Lines that the Verilog of ``config`` has: the bus port and the four memories."""
    memories = [("act_mem", config.word_bytes(Mem.ACT), config.act_depth),
                ("wgt_mem", config.word_bytes(Mem.WGT), config.wgt_depth),
                ("acc_mem", 4 * config.cols, config.acc_depth),     # an int32 per column
                ("prm_mem", config.word_bytes(Mem.PRM), config.prm_depth)]
    return [f"input [{8 * config.bus_bytes - 1}:0] {_READ_DATA[config.bus]};"] + [
        f"reg [{8 * width - 1}:0] {name} [{depth - 1}:0];" for name, width, depth in memories]


def _read_model(path: Path):
    """model.onnx as the golden model runs it (the frontend checks it as on ``generate``)."""
    try:
        return load_model(path)
    except InputError as err:          # its message names the file already
        raise InputError(f"{err}; regenerate with `codesign generate`") from None


def _check_model_matches(path: Path, graph, program: Program) -> None:
    """The model's inputs and outputs are the tensors the program reads and writes, so that
    the golden model is the model that was compiled."""
    for kind, bindings, regions in (("input", graph.inputs, program.inputs),
                                    ("output", graph.outputs, program.outputs)):
        if len(bindings) != len(regions):
            raise DesignFileError(path, f"has {len(bindings)} {kind}(s), the program "
                                        f"{len(regions)}")
        for binding, region in zip(bindings, regions, strict=True):
            t = binding.tensor
            shape = (1, 1, math.prod(region.shape)) if region.flatten_chw else region.shape
            # An unfolded input pads with the zero point: the one place the program holds it.
            zero_point = region.unfold[-1] if region.unfold else t.zero_point
            if (region.name, shape, region.signed, zero_point) != (
                    t.name, t.shape, t.signed, t.zero_point):
                raise DesignFileError(
                    path, f"its {kind} {reprlib.repr(t.name)} {t.shape} is not the program's "
                          f"{reprlib.repr(region.name)} {shape}")


# -- --input ---------------------------------------------------------------------------------

def read_batch(graph, path: Path) -> tuple[list[list[np.ndarray]], bool, list[np.ndarray]]:
    """Read an ``--input`` .npy file: one input of the model's shape, or k of them.

    The header is checked (format, dtype, shape, batch size, file length) before the data is
    read, so a small file declaring a huge array is refused without allocating it. With S the
    model's input shape (its ONNX shape; a symbolic batch counts as 1), the file holds

    * S: one run of the model;
    * S with axis 0 multiplied by k (``[k·S[0], ...]``): k runs, as onnxruntime would take them
      with a symbolic batch; the output's axis 0 is likewise k times the model's;
    * ``[k, *S]``: k runs on a leading axis; the output gets that axis too.

    One run is one inference of the NPU, except for a model with a fixed batch N that is not
    row-wise, whose run is N inferences (one per item of its batch); a row-wise model's fixed
    batch of N rows (``[N, K]`` inputs) is one inference. Anything else is refused; at most
    :data:`MAX_BATCH` inferences.

    A float model takes any float dtype; the values are cast to float32 and quantized as
    onnxruntime's QuantizeLinear does (x / scale, round half to even, + zero point, saturate),
    so ±inf and values beyond the range saturate exactly as there. NaN is refused: it has no
    quantized value (onnxruntime's x86 kernel gives the type's minimum, not the zero point).
    An integer model takes exactly its input's integer type.

    Returns
    -------
    batch
        Per inference, the quantized HWC tensor of each model input.
    stacked
        Whether the file had a leading axis of k runs (the output then gets one too; see
        :func:`join_outputs`).
    raw
        Per inference, the input as the ONNX model takes it (float32 or its integer type).

    Raises
    ------
    InputError
        On any defect of the file, naming it.
    """
    if len(graph.inputs) != 1:
        raise InputError("models with several inputs are not supported by --input yet")
    binding = graph.inputs[0]
    shape = tuple(binding.onnx_shape)
    want = np.float32 if binding.is_float else binding.tensor.numpy_dtype
    with _open_regular(path) as f:
        got, fortran, dtype = _npy_header(f, path)
        _check_dtype(path, dtype, binding.is_float, want)
        n, stacked = _inferences(path, got, binding.model_shape, binding.batch)
        x = _npy_data(f, path, got, fortran, dtype)
    if binding.is_float and np.isnan(x).any():
        where = tuple(int(i) for i in np.argwhere(np.isnan(x))[0])
        raise InputError(f"{path}: element {where} is NaN, which has no quantized value; "
                         "replace it with a number")
    # Beyond float32's range is ±inf, and x / scale may overflow to it: both saturate.
    with np.errstate(over="ignore"):
        x = np.asarray(x, want)
        items = list(x.reshape((n, *shape)))
        batch = [[binding.quantize(i)] for i in items]
    return batch, stacked, items


def join_outputs(binding, ys: list[np.ndarray], stacked: bool) -> np.ndarray:
    """One output of every inference (each in ``binding.onnx_shape``) as the model gives it
    for the ``--input`` file (see :func:`read_batch`): concatenated along axis 0 (a fixed batch
    of N inferences is one run of shape ``binding.model_shape``), with a leading axis of runs
    when the input had one."""
    y = np.concatenate([np.asarray(v) for v in ys], axis=0)
    return y.reshape((-1, *binding.model_shape)) if stacked else y


@contextlib.contextmanager
def _open_regular(path: Path):
    """``path`` opened for reading, if it is a regular file."""
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer.
        f = os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb")
    except OSError as err:
        raise InputError(f"{path}: cannot read ({err.strerror})") from None
    with f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise InputError(f"{path}: not a regular file; --input takes a .npy file")
        yield f


#: .npy format version → (bytes of its header length field, its header reader).
_HEADERS = {(1, 0): (2, np.lib.format.read_array_header_1_0),
            (2, 0): (4, np.lib.format.read_array_header_2_0)}

#: Longest .npy header read (numpy's own default limit).
_HEADER_LIMIT = 10_000


def _npy_header(f, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """(shape, Fortran order, dtype) from the header of the .npy file ``f``."""
    start = f.read(6)
    if not start:
        raise InputError(f"{path}: the file is empty; --input takes a .npy file")
    if start[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: a .npz archive; --input takes one array saved with "
                         "numpy.save (.npy)")
    if start != b"\x93NUMPY":
        raise InputError(f"{path}: not a .npy file (no .npy magic string)")
    f.seek(0)
    try:
        version = np.lib.format.read_magic(f)
        if version not in _HEADERS:
            raise InputError(f"{path}: .npy format version {version} is not supported "
                             "(numpy.save writes 1.0)")
        length_field, read = _HEADERS[version]
        # numpy reads a header of any declared length before it checks its limit.
        length = int.from_bytes(f.read(length_field), "little")
        if length > _HEADER_LIMIT:
            raise InputError(f"{path}: a .npy header of {length} bytes; numpy.save writes "
                             f"a few hundred")
        f.seek(-length_field, os.SEEK_CUR)
        shape, fortran, dtype = read(f)
    except ValueError as err:       # a damaged header; numpy's messages run over lines
        raise InputError(f"{path}: not a valid .npy header ({str(err).splitlines()[0]})") from None
    if any(d < 0 for d in shape):
        raise InputError(f"{path}: not a valid .npy header (shape {shape})")
    return shape, fortran, dtype


def _inferences(path: Path, got: tuple[int, ...], shape: tuple[int, ...],
                per_run: int) -> tuple[int, bool]:
    """``(inferences, stacked)`` for a file of shape ``got`` and a model of input shape
    ``shape`` whose run is ``per_run`` inferences (see :func:`read_batch`)."""
    if len(got) == len(shape) and got[1:] == shape[1:] and got[0] % shape[0] == 0:
        runs, stacked = got[0] // shape[0], False
    elif len(got) == len(shape) + 1 and got[1:] == shape:
        runs, stacked = got[0], True
    else:
        first = f"{shape[0]}·k" if shape[0] > 1 else "k"
        raise InputError(f"{path}: input shape {got} does not match the model's {shape} (give "
                         f"{shape}, [{first}, {', '.join(map(str, shape[1:]))}] or "
                         f"[k, {', '.join(map(str, shape))}] for k runs)")
    if runs == 0:
        raise InputError(f"{path}: the batch is empty (N = 0); there is nothing to simulate")
    if runs * per_run > MAX_BATCH:
        raise InputError(f"{path}: {runs * per_run} inferences; at most {MAX_BATCH} are "
                         "simulated in one run, split the file")
    return runs * per_run, stacked


def _check_dtype(path: Path, dtype: np.dtype, is_float: bool, want: type) -> None:
    """Any float dtype for a float model, exactly ``want`` for an integer one; never objects."""
    if dtype.hasobject:
        raise InputError(f"{path}: holds Python objects (a pickle), which are not loaded; save "
                         "a numeric array")
    if is_float and not np.issubdtype(dtype, np.floating):
        raise InputError(f"{path}: the model takes float input, got {dtype}")
    if not is_float and dtype != want:
        raise InputError(f"{path}: the model takes {np.dtype(want)} input, got {dtype}")


def _npy_data(f, path: Path, shape: tuple[int, ...], fortran: bool,
              dtype: np.dtype) -> np.ndarray:
    """The array after the header, if the file holds exactly its bytes."""
    count = math.prod(shape)
    have = os.fstat(f.fileno()).st_size - f.tell()
    if have != count * dtype.itemsize:
        raise InputError(f"{path}: holds {have} bytes of data, its header declares "
                         f"{count * dtype.itemsize}; the file is truncated or damaged")
    data = np.fromfile(f, dtype, count)
    if data.size != count:           # the file shrank since
        raise InputError(f"{path}: the file is truncated")
    return data.reshape(shape, order="F" if fortran else "C")


# -- --output --------------------------------------------------------------------------------

class OutputFile:
    """Where ``--output`` is written: checked when created (before a simulation is spent on it),
    written by :meth:`write` atomically.

    Exactly ``path`` is written (no ".npy" appended); through a symbolic link, its target.

    Raises
    ------
    InputError
        If ``path`` is a directory or another non-regular file, or its directory does not
        exist or is not writable.
    """

    def __init__(self, path: Path):
        self.path = path
        self.target = Path(os.path.realpath(path))
        if self.target.is_dir():
            raise InputError(f"{path}: is a directory; --output takes a file name")
        if self.target.exists() and not self.target.is_file():
            raise InputError(f"{path}: exists and is not a regular file")
        parent = self.target.parent
        if not parent.is_dir():
            raise InputError(f"{path}: directory {parent} does not exist")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise InputError(f"{path}: cannot create files in {parent}")

    def write(self, array: np.ndarray) -> None:
        """Write ``array`` as a .npy file.

        Raises
        ------
        InputError
            On any OSError (a full disk, a read-only file system, no permission): the file
            is then left as it was, and no partial or temporary file remains.
        """
        tmp = self.target.with_name(f".{self.target.name}.{secrets.token_hex(4)}.tmp")
        try:
            _write_replace(tmp, self.target, array)
        except OSError as err:
            raise InputError(f"{self.path}: cannot write the output "
                             f"({err.strerror or err})") from None


def _write_replace(tmp: Path, target: Path, array: np.ndarray) -> None:
    """Write ``tmp`` in full, then rename it to ``target`` (one step: old or new file)."""
    try:
        with open(tmp, "xb") as f:       # a file object: np.save appends .npy to a name
            np.save(f, array)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
