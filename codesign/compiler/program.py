"""The driver schedule: instruction stream + external memory image + symbol table.

A :class:`Program` is everything the host needs to run a model on one NPU instance: write
``image`` to external memory at word 0, write each input tensor into its :class:`Region`, set
PROG_BASE to ``prog_base``, start, wait for done, read each output :class:`Region`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from ..isa import HwConfig, Opcode, decode

__all__ = ["Region", "LayerInfo", "Program", "insn_bytes"]


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
        for index, word in enumerate(self.insns):
            if index in self.comments:
                lines.append(f"; {self.comments[index]}")
            opcode, fields = decode(word)
            args = " ".join(f"{name}={_field_text(getattr(fields, name))}"
                            for name, _ in fields.shape() if name != "opcode")
            lines.append(f"{index:05d}  {opcode.name:<8} {args}".rstrip())
        return "\n".join(lines) + "\n"

    def symbols(self) -> dict:
        return {
            "prog_base": self.prog_base,
            "n_insns": len(self.insns),
            "image_words": len(self.image) // self.config.bus_bytes,
            "ext_words": self.ext_words,
            "inputs": [r.to_json() for r in self.inputs],
            "outputs": [r.to_json() for r in self.outputs],
            "tensors": [r.to_json() for r in self.tensors],
            "layers": [dataclasses.asdict(layer) for layer in self.layers],
        }

    def write(self, outdir: Path) -> None:
        """Write program.bin, program.lst, memory.bin and symbols.json into ``outdir``."""
        (outdir / "program.bin").write_bytes(self.program_bytes())
        (outdir / "program.lst").write_text(self.listing())
        (outdir / "memory.bin").write_bytes(self.image.tobytes())
        (outdir / "symbols.json").write_text(json.dumps(self.symbols(), indent=2) + "\n")

    @classmethod
    def read(cls, outdir: Path, config: HwConfig) -> Program:
        """Load a program written by :meth:`write` (comments are not preserved)."""
        sym = json.loads((outdir / "symbols.json").read_text())
        raw = (outdir / "program.bin").read_bytes()
        n = config.insn_words * config.bus_bytes
        insns = [int.from_bytes(raw[i:i + n], "little") for i in range(0, len(raw), n)]
        region = lambda d: Region(**{**d, "shape": tuple(d["shape"])})  # noqa: E731
        return cls(config=config, insns=insns,
                   image=np.frombuffer((outdir / "memory.bin").read_bytes(), np.uint8).copy(),
                   prog_base=sym["prog_base"],
                   inputs=[region(d) for d in sym["inputs"]],
                   outputs=[region(d) for d in sym["outputs"]],
                   layers=[LayerInfo(**d) for d in sym["layers"]],
                   comments={}, ext_words=sym["ext_words"],
                   tensors=[region(d) for d in sym["tensors"]])


def _field_text(value) -> str:
    if isinstance(value, Opcode) or hasattr(value, "name"):
        return value.name
    return str(int(value))
