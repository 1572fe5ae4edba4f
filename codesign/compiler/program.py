"""The driver schedule: instruction stream + external memory image + symbol table.

A :class:`Program` is everything the host needs to run a model on one NPU instance: write
``image`` to external memory at word 0, write each input tensor into its :class:`Region`, set
PROG_BASE to ``prog_base``, start, wait for done, read each output :class:`Region`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import reprlib
import stat
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..isa import OPCODE_BITS, HwConfig, Opcode, config_id, decode, version_word

__all__ = ["Region", "LayerInfo", "Program", "insn_bytes", "host_symbols", "DesignFileError",
           "read_design_file", "read_design_json"]


def insn_bytes(insns: list[int], config: HwConfig) -> bytes:
    """Instructions as stored in external memory: INSN_BITS each, little-endian."""
    n = config.insn_words * config.bus_bytes
    return b"".join(i.to_bytes(n, "little") for i in insns)


@dataclasses.dataclass(frozen=True)
class Region:
    """An activation tensor in external memory: HWC, each pixel's channels padded to ``cw``
    ACT words of ``act_bytes`` bytes, pixel-major, starting at external word ``addr``.

    ``flatten_chw`` marks a tensor that the model sees flattened in CHW order (ir.Flatten): the
    memory still holds the (H, W, C) source layout; :meth:`unpack` applies the flatten.

    ``unfold`` marks a model input that the host writes already unfolded for the convolution
    that reads it (im2col): ``(kh, kw, stride_h, stride_w, pad_t, pad_l, pad_b, pad_r,
    zero_point)``; memory then holds, per output pixel of that convolution, its ``kh·kw·C``
    window values in (ky, kx, c) order, padding positions holding the zero point. A first layer
    with few input channels would otherwise use few rows of the array (DS-CNN: 1 of 8).
    """
    name: str
    addr: int
    shape: tuple[int, int, int]
    cw: int
    signed: bool
    flatten_chw: bool = False
    unfold: tuple[int, ...] | None = None

    def __post_init__(self):
        if self.unfold is not None:    # from JSON: a list
            object.__setattr__(self, "unfold", tuple(self.unfold))

    @property
    def stored_shape(self) -> tuple[int, int, int]:
        """(H, W, C) as laid out in memory (the unfolded shape for ``unfold``)."""
        if self.unfold is None:
            return self.shape
        kh, kw, sh, sw, pt, pl, pb, pr, _ = self.unfold
        h, w, c = self.shape
        return ((h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1, kh * kw * c)

    def nbytes(self, config: HwConfig) -> int:
        h, w, _ = self.stored_shape
        return h * w * self.cw * config.act_bytes

    def pack(self, x: np.ndarray, config: HwConfig) -> bytes:
        """Integer HWC tensor → the bytes to write at ``addr``."""
        if self.flatten_chw:
            raise ValueError(f"{self.name} is a flattened view and cannot be written")
        x = np.asarray(x)
        if x.shape != self.shape:
            raise ValueError(f"{self.name}: expected shape {self.shape}, got {x.shape}")
        x = x.astype(np.int8 if self.signed else np.uint8).view(np.uint8)
        if self.unfold is not None:
            x = self._unfold(x)
        h, w, c = self.stored_shape
        buf = np.zeros((h, w, self.cw * config.act_bytes), np.uint8)
        buf[:, :, :c] = x
        return buf.tobytes()

    def _unfold(self, x: np.ndarray) -> np.ndarray:
        kh, kw, sh, sw, pt, pl, pb, pr, zp = self.unfold
        pad = np.array(zp, np.int8 if self.signed else np.uint8).view(np.uint8)
        padded = np.pad(x, ((pt, pb), (pl, pr), (0, 0)), constant_values=pad)
        oh, ow, _ = self.stored_shape
        windows = [padded[ky:ky + sh * (oh - 1) + 1:sh, kx:kx + sw * (ow - 1) + 1:sw]
                   for ky in range(kh) for kx in range(kw)]
        return np.concatenate(windows, axis=2)

    def unpack(self, data: bytes, config: HwConfig) -> np.ndarray:
        """Bytes read from ``addr`` → the integer tensor (HWC, or flattened (1, 1, N))."""
        if self.unfold is not None:
            raise ValueError(f"{self.name} is stored unfolded and cannot be read back")
        h, w, c = self.shape
        buf = np.frombuffer(data, np.uint8).reshape(h, w, self.cw * config.act_bytes)
        x = buf[:, :, :c].view(np.int8 if self.signed else np.uint8)
        if self.flatten_chw:
            return np.ascontiguousarray(x.transpose(2, 0, 1)).reshape(1, 1, -1)
        return np.ascontiguousarray(x)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LayerInfo:
    """Where one IR op's instructions sit in the stream (for listings and per-layer reports)."""
    name: str
    kind: str
    first_insn: int
    n_insns: int
    macs: int
    output: str


@dataclasses.dataclass
class Program:
    """A compiled model for one :class:`HwConfig`."""
    config: HwConfig
    insns: list[int]
    image: np.ndarray                 # uint8, external memory from word 0 (program + constants)
    prog_base: int
    inputs: list[Region]
    outputs: list[Region]
    layers: list[LayerInfo]
    comments: dict[int, str]          # instruction index → comment for the listing
    ext_words: int                    # external words used, including activation buffers
    tensors: list[Region] = dataclasses.field(default_factory=list)  # every IR tensor

    # -- serialisation --------------------------------------------------------------------------
    def program_bytes(self) -> bytes:
        """The instruction stream as stored in memory."""
        return insn_bytes(self.insns, self.config)

    def input_writes(self, inputs: list[np.ndarray]) -> list[tuple[int, bytes]]:
        """(external word address, bytes) that place one inference's inputs."""
        return [(r.addr, r.pack(x, self.config))
                for r, x in zip(self.inputs, inputs, strict=True)]

    def listing(self) -> str:
        """Human-readable disassembly with layer comments."""
        lines = [f"; codesign program for {self.config.name}",
                 f"; prog_base = {self.prog_base} (external word), "
                 f"{len(self.insns)} instructions, {self.config.insn_words} words each", ""]
        for index in range(len(self.insns)):
            if index in self.comments:
                lines.append(f"; {self.comments[index]}")
            lines.append(self.insn_line(index))
        return "\n".join(lines) + "\n"

    def insn_line(self, index: int) -> str:
        """Instruction ``index`` as its line of :meth:`listing`."""
        opcode, fields = decode(self.insns[index])
        args = " ".join(f"{name}={_field_text(getattr(fields, name))}"
                        for name, _ in fields.shape() if name != "opcode")
        return f"{index:05d}  {opcode.name:<8} {args}".rstrip()

    def symbols(self) -> dict:
        return {
            "config": self.config.name,
            "prog_base": self.prog_base,
            "n_insns": len(self.insns),
            "image_words": len(self.image) // self.config.bus_bytes,
            "ext_words": self.ext_words,
            "inputs": [r.to_json() for r in self.inputs],
            "outputs": [r.to_json() for r in self.outputs],
            "tensors": [r.to_json() for r in self.tensors],
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
            "host": host_symbols(self.config, self.prog_base,
                                 len(self.image) // self.config.bus_bytes, self.ext_words,
                                 self.inputs, self.outputs),
        }

    def write(self, outdir: Path) -> None:
        """Write program.bin, program.lst, memory.bin and symbols.json into ``outdir``."""
        (outdir / "program.bin").write_bytes(self.program_bytes())
        (outdir / "program.lst").write_text(self.listing())
        (outdir / "memory.bin").write_bytes(self.image.tobytes())
        (outdir / "symbols.json").write_text(json.dumps(self.symbols(), indent=2) + "\n")

    @classmethod
    def read(cls, outdir: Path, config: HwConfig, *, memory_bytes: int | None = None) -> Program:
        """Load a program written by :meth:`write` (comments are not preserved).

        Everything read is checked first: the files may have been truncated or edited since.

        Parameters
        ----------
        outdir
            The directory :meth:`write` wrote into.
        config
            The configuration the program was compiled for.
        memory_bytes
            Size of the external memory the program is to run in (default: the NPU's whole
            external address space).

        Raises
        ------
        DesignFileError
            Naming the file that is damaged or does not agree with the others or with ``config``.
        """
        if memory_bytes is None:
            memory_bytes = config.bus_bytes << config.ext_addr_bits
        path = outdir / "symbols.json"
        try:
            sym = _checked_symbols(read_design_json(path, SYMBOLS_LIMIT), config, memory_bytes)
        except ValueError as err:
            raise DesignFileError(path, str(err)) from None
        insns = _read_insns(outdir / "program.bin", config, sym["n_insns"], memory_bytes)
        image = _read_image(outdir / "memory.bin", config, sym["image_words"], memory_bytes)
        _check_program_in_image(outdir, config, insns, image, sym["prog_base"])
        # Last: a defect found by the checks above is reported where it lies, not as this.
        if sym["host"] != host_symbols(config, sym["prog_base"], sym["image_words"],
                                       sym["ext_words"], sym["inputs"], sym["outputs"]):
            raise DesignFileError(path, "its host section does not agree with the rest")
        return cls(config=config, insns=insns, image=image, prog_base=sym["prog_base"],
                   inputs=sym["inputs"], outputs=sym["outputs"], layers=sym["layers"],
                   comments={}, ext_words=sym["ext_words"], tensors=sym["tensors"])


def host_symbols(config: HwConfig, prog_base: int, image_words: int, ext_words: int,
                 inputs: list[Region], outputs: list[Region]) -> dict:
    """The ``host`` section of symbols.json: what a host program (C, say) needs to run the
    program, in bytes where it addresses memory (offsets from external word 0, i.e. from BASE).
    Derived from the rest; :meth:`Program.read` checks that it still is."""
    b = config.bus_bytes
    return {"config_id": config_id(config), "version": version_word(config), "bus_bytes": b,
            "act_bytes": config.act_bytes, "prog_base": prog_base, "image_bytes": image_words * b,
            "memory_bytes": ext_words * b,
            "inputs": [_host_region(r, config) for r in inputs],
            "outputs": [_host_region(r, config) for r in outputs]}


def _host_region(region: Region, config: HwConfig) -> dict:
    """A region as the host addresses it (in the order of ``inputs`` or ``outputs``):
    ``layout`` "hwc" (pixels of ``pixel_bytes``, the channels then zero padding), "unfolded"
    (the same, of the im2col windows of ``unfold``) or "flatten_chw" (read back, then
    flattened in CHW order)."""
    layout = ("unfolded" if region.unfold is not None
              else "flatten_chw" if region.flatten_chw else "hwc")
    return {"word_addr": region.addr,
            "offset": region.addr * config.bus_bytes, "bytes": region.nbytes(config),
            "stored_shape": list(region.stored_shape),
            "pixel_bytes": region.cw * config.act_bytes, "layout": layout}


# -- reading back: every value of a written design is checked before it is used ---------------

#: Largest symbols.json read (a few kB per layer; far above any model the NPU runs).
SYMBOLS_LIMIT = 64 << 20


class DesignFileError(InputError):
    """A file of a generated design directory is damaged, or does not agree with the others."""

    def __init__(self, path: Path, what: str):
        super().__init__(f"{path}: {what}; regenerate with `codesign generate`")


def read_design_file(path: Path, limit: int) -> bytes:
    """The bytes of ``path``, refused before reading unless a regular file of <= ``limit`` bytes.

    Raises
    ------
    DesignFileError
        If the file cannot be read, is not a regular file or is larger than ``limit``.
    """
    try:
        # O_NONBLOCK: opening a FIFO put in place of the file must not wait for a writer.
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise DesignFileError(path, "is not a regular file")
            if info.st_size > limit:
                raise DesignFileError(path, f"has {info.st_size} bytes, more than the {limit} "
                                            "it can have")
            data = f.read(info.st_size + 1)
    except OSError as err:
        raise DesignFileError(path, f"cannot be read ({err.strerror})") from None
    if len(data) != info.st_size:
        raise DesignFileError(path, "changed while it was read")
    return data


def read_design_json(path: Path, limit: int) -> dict:
    """The JSON object in ``path`` (see :func:`read_design_file`)."""
    try:
        value = json.loads(read_design_file(path, limit))
    except (ValueError, RecursionError) as err:    # RecursionError: absurdly deep nesting
        raise DesignFileError(path, f"is not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise DesignFileError(path, f"holds a JSON {type(value).__name__}, not an object")
    return value


def _fields(value, names: tuple[str, ...], what: str) -> dict:
    """``value`` if it is a JSON object with exactly the keys ``names``."""
    if not isinstance(value, dict):
        raise ValueError(f"{what} is not a JSON object")
    if missing := [name for name in names if name not in value]:
        raise ValueError(f"{what} lacks {', '.join(missing)}")
    if unknown := sorted(value.keys() - set(names)):
        # Shortened and quoted: a tampered key may be long or hold a newline.
        raise ValueError(f"{what} has unknown {', '.join(map(reprlib.repr, unknown))}")
    return value


def _int(value, what: str, lo: int = 0, hi: int = 1 << 62) -> int:
    """``value`` if it is a JSON integer (not a boolean) in ``lo..hi``."""
    if type(value) is not int or not lo <= value <= hi:
        raise ValueError(f"{what} must be an integer in {lo}..{hi}, not {reprlib.repr(value)}")
    return value


def _typed(value, kind: type, what: str):
    """``value`` if it is exactly of type ``kind`` (bool or str)."""
    if type(value) is not kind:
        raise ValueError(f"{what} must be a {kind.__name__}, not {reprlib.repr(value)}")
    return value


#: The keys of :meth:`Program.symbols`.
_SYMBOLS = ("config", "prog_base", "n_insns", "image_words", "ext_words", "inputs", "outputs",
            "tensors", "layers", "host")


def _checked_symbols(sym: dict, config: HwConfig, memory_bytes: int) -> dict:
    """symbols.json with its regions and layers as objects, checked against ``config``."""
    sym = dict(_fields(sym, _SYMBOLS, "the symbol table"))
    if sym["config"] != config.name:
        raise ValueError(f"the program was compiled for the NPU {reprlib.repr(sym['config'])}, "
                         f"config.json describes {config.name}")
    ext = _int(sym["ext_words"], "ext_words", 1)
    if ext * config.bus_bytes > memory_bytes:
        raise ValueError(f"the program needs {ext * config.bus_bytes} bytes of external memory, "
                         f"more than the {memory_bytes} there are")
    image = _int(sym["image_words"], "image_words", 1, ext)
    n_insns = _int(sym["n_insns"], "n_insns", 1, image // config.insn_words)
    _int(sym["prog_base"], "prog_base", 0, image - n_insns * config.insn_words)
    for key in ("inputs", "outputs", "tensors", "layers"):
        if not isinstance(sym[key], list):
            raise ValueError(f"{key} must be a list")
    if not sym["inputs"] or not sym["outputs"]:
        raise ValueError("the program has no inputs or no outputs")
    # Activation buffers follow the image (program and constants) in external memory.
    for key in ("inputs", "outputs", "tensors"):
        sym[key] = [_region(d, f"{key}[{i}]", config, image, ext, key != "inputs")
                    for i, d in enumerate(sym[key])]
    sym["layers"] = [_layer(d, f"layers[{i}]", n_insns) for i, d in enumerate(sym["layers"])]
    return sym


def _region(d, what: str, config: HwConfig, lo: int, hi: int, read_back: bool) -> Region:
    """A :class:`Region` lying in external words ``lo..hi``; one the host writes
    (``read_back`` false) is not a flattened view, one it reads is not stored unfolded."""
    d = _fields(d, tuple(f.name for f in dataclasses.fields(Region)), what)
    shape = d["shape"]
    if not isinstance(shape, list) or len(shape) != 3:
        raise ValueError(f"{what}: shape must be a list of three dimensions")
    region = Region(name=_typed(d["name"], str, f"{what}: name"),
                    addr=_int(d["addr"], f"{what}: addr"),
                    shape=tuple(_int(n, f"{what}: shape", 1, 1 << 32) for n in shape),
                    cw=_int(d["cw"], f"{what}: cw", 1, 1 << 32),
                    signed=_typed(d["signed"], bool, f"{what}: signed"),
                    flatten_chw=_typed(d["flatten_chw"], bool, f"{what}: flatten_chw"),
                    unfold=_unfold(d["unfold"], d["signed"], what))
    if (region.unfold if read_back else region.flatten_chw):
        raise ValueError(f"{what} cannot be " + ("read back" if read_back else "written"))
    height, width, channels = region.stored_shape
    if height < 1 or width < 1:
        raise ValueError(f"{what}: the unfold window is larger than the padded input")
    if region.cw * config.act_bytes < channels:
        raise ValueError(f"{what}: {region.cw} words of {config.act_bytes} bytes per pixel do "
                         f"not hold its {channels} channels")
    end = region.addr + region.nbytes(config) // config.bus_bytes
    if region.addr < lo or end > hi:
        raise ValueError(f"{what} at external words {region.addr}..{end} lies outside the "
                         f"activation buffers ({lo}..{hi}, after the image)")
    return region


def _unfold(value, signed: bool, what: str) -> tuple[int, ...] | None:
    """A region's ``unfold`` parameters, checked (see :class:`Region`)."""
    if value is None:
        return None
    if not isinstance(value, list) or len(value) != 9:
        raise ValueError(f"{what}: unfold must be null or a list of nine integers")
    sizes = [_int(v, f"{what}: unfold", 1, 1 << 16) for v in value[:4]]    # kernel, stride
    pads = [_int(v, f"{what}: unfold", 0, 1 << 16) for v in value[4:8]]
    zero_point = _int(value[8], f"{what}: unfold zero point", -128 if signed else 0,
                      127 if signed else 255)
    return (*sizes, *pads, zero_point)


def _layer(d, what: str, n_insns: int) -> LayerInfo:
    """A :class:`LayerInfo` whose instructions lie within the program's ``n_insns``."""
    d = _fields(d, tuple(f.name for f in dataclasses.fields(LayerInfo)), what)
    first = _int(d["first_insn"], f"{what}: first_insn", 0, n_insns)
    return LayerInfo(name=_typed(d["name"], str, f"{what}: name"),
                     kind=_typed(d["kind"], str, f"{what}: kind"),
                     first_insn=first,
                     n_insns=_int(d["n_insns"], f"{what}: n_insns", 0, n_insns - first),
                     macs=_int(d["macs"], f"{what}: macs"),
                     output=_typed(d["output"], str, f"{what}: output"))


def _read_units(path: Path, unit: int, what: str, count: int, memory_bytes: int) -> bytes:
    """A file of ``count`` whole ``unit``-byte ``what``, as symbols.json says it holds."""
    raw = read_design_file(path, memory_bytes)
    if len(raw) % unit:
        raise DesignFileError(path, f"{len(raw)} bytes are not a whole number of {unit}-byte "
                                    f"{what}")
    if len(raw) // unit != count:
        raise DesignFileError(path, f"holds {len(raw) // unit} {what}, symbols.json says "
                                    f"{count}")
    return raw


def _read_insns(path: Path, config: HwConfig, n_insns: int, memory_bytes: int) -> list[int]:
    """The instructions in program.bin: whole ones, as many as symbols.json says."""
    n = config.insn_words * config.bus_bytes
    raw = _read_units(path, n, "instructions", n_insns, memory_bytes)
    insns = [int.from_bytes(raw[i:i + n], "little") for i in range(0, len(raw), n)]
    opcodes = [word & ((1 << OPCODE_BITS) - 1) for word in insns]
    if bad := sorted(set(opcodes) - {op.value for op in Opcode}):
        raise DesignFileError(path, f"instruction {opcodes.index(bad[0])} has no valid opcode")
    if opcodes[-1] != Opcode.END.value:
        raise DesignFileError(path, "the program does not end with END")
    return insns


def _read_image(path: Path, config: HwConfig, image_words: int, memory_bytes: int) -> np.ndarray:
    """The memory image in memory.bin: whole bus words, as many as symbols.json says."""
    raw = _read_units(path, config.bus_bytes, "bus words", image_words, memory_bytes)
    return np.frombuffer(raw, np.uint8).copy()


def _check_program_in_image(outdir: Path, config: HwConfig, insns: list[int],
                            image: np.ndarray, prog_base: int) -> None:
    """The image holds program.bin's instructions at ``prog_base`` (the NPU runs those)."""
    start = prog_base * config.bus_bytes
    code = insn_bytes(insns, config)
    if image[start:start + len(code)].tobytes() != code:
        raise DesignFileError(outdir / "program.bin", "differs from the program in memory.bin")


def _field_text(value) -> str:
    if isinstance(value, Opcode) or hasattr(value, "name"):
        return value.name
    return str(int(value))
