"""The NPU's instruction set, memory layouts and hardware configuration — defined once.

Everything that both the hardware (``codesign.rtl``) and the software (compiler, simulators,
driver) must agree on lives here: the :class:`HwConfig`, the opcodes, the bit layout of every
instruction, the layout of the per-channel requantization parameters and the CSR map. The RTL
decodes instructions with these very ``data.StructLayout`` objects and the compiler encodes them
with ``layout.const(...)``, so the two cannot drift apart.

Machine model
-------------
* **External memory**: word-addressed, ``bus_bytes`` bytes per word, little-endian lanes
  (byte ``i`` of a word is bits ``8i..8i+7``). It holds the program, the weights, the requant
  parameters and every activation tensor.
* **Scratchpads** (on chip), each word-addressed:

  ========  ==================  ========================================================
  name      word                contents
  ========  ==================  ========================================================
  ACT       ``act_bytes`` B     activations: one word = ``act_bytes`` channels of one pixel
  WGT       ``cols`` B          weights: one word = one array row ``W[k, n0 : n0+cols]``
  PRM       ``cols`` × 64 bit   requant parameters of ``cols`` output channels
  ACC       ``cols`` × int32    partial sums of ``cols`` output channels for one pixel
  ========  ==================  ========================================================

  ``act_bytes = max(rows, cols)``. DMA moves data in *slices* of ``bus_bytes`` bytes: a
  scratchpad word of ``B`` bytes is ``B // bus_bytes`` slices, and a DMA *slice address* is
  ``word * (B // bus_bytes) + slice``.
* **Activation tensors** are stored pixel-major (NHWC), the channels of each pixel padded up to a
  whole number of ACT words ("channel words", ``cw = ceil(C / act_bytes)``). The same layout is
  used in external memory (one ACT word = ``act_bytes // bus_bytes`` external words), so DMA is a
  plain 2-D block copy.

Instruction semantics (executable form: :mod:`codesign.isasim`)
--------------------------------------------------------------
Every instruction is :data:`INSN_BITS` wide, stored in external memory as consecutive words
(least significant word first). Its results are those of running the program one instruction at a
time, in order; the hardware may overlap instructions only in ways that cannot change them:

* Instructions run on *engines* (:data:`ENGINE`: LOAD and STORE on the DMA engine, one engine for
  each other kind). An engine runs its instructions one at a time, in program order, and the
  controller dispatches in program order, one instruction at a time.
* An instruction starts only when its engine is free and none of the memory ports it uses
  (:func:`ports_used`) is in use by a running instruction.
* An instruction with ``wait = 1`` starts only once every earlier instruction has finished. The
  compiler sets ``wait`` wherever an instruction touches scratchpad words that an earlier
  instruction still possibly running on *another* engine writes, or writes words it reads
  (:mod:`codesign.hazards`). END always waits.

``LOAD``  for i < rows, j < length: ``SP[mem].slice[sp_addr + i*sp_stride + j] =
          EXT[ext_addr + i*ext_stride + j]``
``STORE`` for i < rows, j < length: ``EXT[ext_addr + i*ext_stride + j] =
          ACT.slice[sp_addr + i*sp_stride + j]``
``MATMUL`` one weight tile (``rows`` WGT words at ``wgt_base``) against a strided window of
          input pixels, for ``m = oh*out_w + ow`` over ``oh < out_h, ow < out_w``::

              ih = ih0 + oh*stride_h ;  iw = iw0 + ow*stride_w
              addr = act_base + oh*step_h + ow*step_w       (signed arithmetic)
              x[r] = 0 if not (0 <= ih < in_h and 0 <= iw < in_w)
                     else byte(ACT[addr], lane_group*rows + r) - x_zp   (x_signed picks int8/uint8)
              psum[c] = sum_r x[r] * (int8(WGT[wgt_base + r], c) - w_zp)
              ACC[acc_base + m][c] = (ACC[acc_base + m][c] if accumulate else 0) + psum[c]

          With ``depthwise = 1`` (only on an NPU with ``HwConfig.dw_width > 0``; ``stride_h =
          stride_w = 1``, ``out_w <= dw_width``) it is instead a 3×3 depthwise window over the
          ``cols`` channels of lane group ``lane_group`` (lanes ``lane_group*cols + c``): tap
          ``t = 3*ky + kx`` of channel ``c`` has the weight ``int8(WGT[wgt_base + t], c) - w_zp``
          and, for output position ``(oh, ow)``, the input at stream position
          ``(sy, sx) = (oh + ky, ow + kx)``::

              ih = ih0 + sy ;  iw = iw0 + sx ;  addr = act_base + sy*step_h + sx*step_w
              x[c] = 0 out of bounds, else byte(ACT[addr], lane_group*cols + c) - x_zp
              psum[c] = sum_t x_t[c] * w_t[c]   (then written to ACC as above)

          With ``gemv = 1`` (matrix × vector: a fully connected layer at batch 1; ``out_h = 1``,
          ``depthwise = 0``) it is instead one input pixel, the window's position (0, 0) (``x``
          as above), against ``out_w`` weight tiles stored one after the other::

              psum_t[c] = sum_r x[r] * (int8(WGT[wgt_base + t*rows + r], c) - w_zp)
              ACC[acc_base + t][c] = (ACC[acc_base + t][c] if accumulate else 0) + psum_t[c]

          for ``t < out_w``. The array streams the weights past a stationary ``x`` at one WGT
          word per cycle instead of holding one tile per instruction (rtl/array.py).

``REQUANT`` for i < count, c < cols: ``a = ACC[acc_base + i][c] + PRM[prm_addr].bias[c]``
          (int32 wrap-around), ``q = clamp(requant(a, mult[c], shift[c]) + y_zp, qmin, qmax)``,
          written to byte ``lane_group*cols + c`` of ``ACT[out_base + i*out_stride]`` (the other
          bytes of that word are left unchanged). ``requant`` is :func:`requantize`.
``POOL``  over output pixels ``oh < out_h, ow < out_w`` and the in-bounds window positions
          ``kh < k_h, kw < k_w`` (bounds as for MATMUL with ``ih = ih0 + oh*stride_h + kh``,
          ``iw = iw0 + ow*stride_w + kw``) of
          ``ACT[act_base + oh*step_h + ow*step_w + kh*row_words + kw*pix_words (+ w)]``:

          * ``mode = MAX``: for each channel word ``w < words``, the lane-wise maximum (signed or
            unsigned per ``x_signed``) goes to ``ACT[out_base + (oh*out_w + ow)*words + w]``. A
            window with no in-bounds position is an encoding error (never emitted).
          * ``mode = SUM``: the lane-wise sums of lanes ``lane_group*cols + c`` (c < cols; signed
            or unsigned per ``x_signed``; ``words`` is not used) go to
            ``ACC[out_base + oh*out_w + ow][c]`` as int32.
``LUT``   for i < count, every lane l < act_bytes: ``byte(ACT[dst_base + i], l) =
          LUTMEM[table*256 + byte(ACT[src_base + i], l)]`` — an 8-bit table lookup of whole ACT
          words (only on an NPU with ``HwConfig.lut_tables > 0``; ``table < lut_tables``). The
          source and destination word ranges are identical (in place) or disjoint.
          ``LUTMEM`` is the table scratchpad (:data:`Mem.LUT`): word ``w`` holds bytes
          ``w*bus_bytes ..`` (one DMA slice per word), ``lut_tables`` tables of 256 bytes.
``ELTWISE`` for i < count, c < cols, with ``a``/``b`` lane ``lane_group*cols + c`` of
          ``ACT[a_base + i]`` / ``ACT[b_base + j]`` (int8/uint8 per ``a_signed``/``b_signed``),
          ``j = i mod b_period`` (``j = i`` when ``b_period = 0``: a broadcast ``b`` of
          ``b_period`` words repeats along ``a``)::

              mul = 0:  ACC[acc_base + i][c] = (a - a_zp)*a_mult + (b - b_zp)*b_mult   (int32)
              mul = 1:  ACC[acc_base + i][c] = (a - a_zp)*(b - b_zp)                   (int32)
``END``   stop; the CSR ``done`` bit rises.
"""

from __future__ import annotations

import dataclasses
import enum as py_enum
import functools
import json
import math
import reprlib
import typing
import zlib

import numpy as np
from amaranth.hdl import Shape, signed, unsigned
from amaranth.lib import data, enum

__all__ = [
    "HwConfig", "Opcode", "Port", "ENGINE", "ENGINES", "ports_used", "Mem", "PoolMode", "Csr",
    "CSR_ADDR_BITS", "CsrField", "CSR_FIELDS", "ISA_VERSION", "VERSION_MAGIC", "BUSES",
    "version_word", "config_id",
    "INSN_BITS", "OPCODE_BITS",
    "LoadStore", "MatMul", "Requant", "Pool", "Eltwise", "Lut", "End", "LAYOUTS", "LUT_ENTRIES",
    "PRM_LANE", "MULT_BITS", "field_max", "encode", "decode", "requantize", "float_to_mult_shift",
]

#: Width of every instruction in bits.
INSN_BITS = 256
#: Width of the opcode field, the low bits of every instruction.
OPCODE_BITS = 4
#: Significant bits of the requant multiplier (float32 mantissa incl. the hidden bit).
MULT_BITS = 24


class Opcode(enum.Enum, shape=OPCODE_BITS):
    """Instruction opcodes (the low :data:`OPCODE_BITS` of every instruction)."""
    END = 0
    LOAD = 1
    STORE = 2
    MATMUL = 3
    REQUANT = 4
    POOL = 5
    ELTWISE = 6
    LUT = 7


class Mem(enum.Enum, shape=2):
    """Scratchpad selector of LOAD / STORE."""
    ACT = 0
    WGT = 1
    PRM = 2
    LUT = 3     # lookup tables of the LUT engine (HwConfig.lut_tables of them)


class PoolMode(enum.Enum, shape=1):
    """What POOL computes over a window."""
    MAX = 0   # lane-wise maximum, to ACT
    SUM = 1   # lane-wise int32 sum of one lane group, to ACC


#: The engine that runs each opcode (END runs on none: the controller waits for all engines).
ENGINE: dict[Opcode, str] = {
    Opcode.LOAD: "dma", Opcode.STORE: "dma", Opcode.MATMUL: "matmul",
    Opcode.REQUANT: "requant", Opcode.POOL: "pool", Opcode.ELTWISE: "eltwise",
    # Its own engine rather than a mode of ELTWISE or POOL: it reads and writes one whole ACT
    # word per cycle (the others read one lane group into ACC), so it shares no datapath with
    # them, and as a separate engine it overlaps MATMUL/REQUANT of other row tiles.
    Opcode.LUT: "lut",
}
#: Engine names in a fixed order (controller start/busy/done ports).
ENGINES: tuple[str, ...] = tuple(dict.fromkeys(ENGINE.values()))


class Port(py_enum.IntFlag):
    """Memory ports of the NPU: two running instructions never share one."""
    EXT = 1 << 0
    ACT_R = 1 << 1
    ACT_W = 1 << 2
    WGT_R = 1 << 3
    WGT_W = 1 << 4
    PRM_R = 1 << 5
    PRM_W = 1 << 6
    ACC_R = 1 << 7
    ACC_W = 1 << 8
    LUT_R = 1 << 9
    LUT_W = 1 << 10


def ports_used(opcode: Opcode, f):
    """The :class:`Port` mask an instruction uses while it runs.

    ``f`` is a view of its fields: a decoded constant (the result is an ``int``) or an Amaranth
    view of the instruction register (the result is an Amaranth value, used by the controller),
    so that hardware and software share this one definition.
    """
    if opcode == Opcode.LOAD:
        return (Port.EXT | Port.ACT_W * (f.mem == Mem.ACT) | Port.WGT_W * (f.mem == Mem.WGT)
                | Port.PRM_W * (f.mem == Mem.PRM) | Port.LUT_W * (f.mem == Mem.LUT))
    if opcode == Opcode.STORE:
        return Port.EXT | Port.ACT_R
    if opcode == Opcode.MATMUL:
        return Port.ACT_R | Port.WGT_R | Port.ACC_W | Port.ACC_R * f.accumulate
    if opcode == Opcode.REQUANT:
        return Port.ACC_R | Port.PRM_R | Port.ACT_W
    if opcode == Opcode.POOL:
        return Port.ACT_R | Port.ACT_W * (f.mode == PoolMode.MAX) | Port.ACC_W * (
            f.mode == PoolMode.SUM)
    if opcode == Opcode.ELTWISE:
        return Port.ACT_R | Port.ACC_W
    if opcode == Opcode.LUT:
        return Port.ACT_R | Port.ACT_W | Port.LUT_R
    return 0


class Csr(py_enum.IntEnum):
    """Word index of each host-visible register (32 bits each; byte offset ``4 * index`` on the
    AXI4-Lite and Wishbone register ports). :data:`CSR_FIELDS` gives their bit fields; the C
    header, the Python register module and the Markdown table are generated from both
    (:mod:`codesign.hostgen`).

    CTRL        write bit 0 = 1: start executing at PROG_BASE. read: bit 0 busy, bit 1 done
                (done stays set until the next start).
    PROG_BASE   word address (relative to BASE) of the first instruction.
    CYCLES      clock cycles from start to END of the last run (counts while busy).
    VERSION     read only: :func:`version_word` (magic, ISA version, array shape, bus).
    CONFIG_ID   read only: :func:`config_id`, the CRC-32 of the whole HwConfig; a driver checks
                it against the image's before it loads the image.
    BASE        byte address of external word 0 in the host's address space, added to every
                external address the NPU issues; aligned to 4 KiB (the low 12 bits read 0).
    IRQ_ENABLE  bit 0: raise ``irq`` while IRQ_STATUS.done is set.
    IRQ_STATUS  bit 0 done: set when a run reaches END; write 1 to clear. Bit 1: the bus
                answered an error (sticky until reset).
    """
    CTRL = 0
    PROG_BASE = 1
    CYCLES = 2
    VERSION = 3
    CONFIG_ID = 4
    BASE = 5
    IRQ_ENABLE = 6
    IRQ_STATUS = 7


#: Width of the register word index (``csr_addr``).
CSR_ADDR_BITS = 3


class CsrField(typing.NamedTuple):
    """One bit field of a register: ``[lsb, lsb + width)``, its access and what it means."""
    name: str
    lsb: int
    width: int
    access: str     # "r", "w", "rw" or "w1c" (write 1 to clear)
    doc: str


#: The bit fields of every register (one source for the RTL, the drivers and the docs).
CSR_FIELDS: dict[Csr, tuple[CsrField, ...]] = {
    Csr.CTRL: (CsrField("START", 0, 1, "w", "write 1: start at PROG_BASE (ignored while busy)"),
               CsrField("BUSY", 0, 1, "r", "running"),
               CsrField("DONE", 1, 1, "r", "END reached; cleared by the next start")),
    Csr.PROG_BASE: (CsrField("ADDR", 0, 32, "rw", "word address of the first instruction"),),
    Csr.CYCLES: (CsrField("COUNT", 0, 32, "r", "cycles of the last run"),),
    Csr.VERSION: (CsrField("BUS_BYTES_LOG2", 0, 3, "r", "log2 of the bus width in bytes"),
                  CsrField("ROWS_LOG2", 3, 3, "r", "log2 of the array rows"),
                  CsrField("COLS_LOG2", 6, 3, "r", "log2 of the array columns"),
                  CsrField("BUS", 9, 2, "r", "0 native, 1 AXI4, 2 Wishbone"),
                  CsrField("ISA", 16, 8, "r", "ISA version (ISA_VERSION)"),
                  CsrField("MAGIC", 24, 8, "r", "0xCD")),
    Csr.CONFIG_ID: (CsrField("CRC", 0, 32, "r", "CRC-32 of the HwConfig's JSON"),),
    Csr.BASE: (CsrField("ADDR", 12, 20, "rw", "bits 31:12 of external word 0's byte address"),),
    Csr.IRQ_ENABLE: (CsrField("DONE", 0, 1, "rw", "interrupt on IRQ_STATUS.DONE"),),
    Csr.IRQ_STATUS: (CsrField("DONE", 0, 1, "w1c", "a run reached END"),
                     CsrField("BUS_ERROR", 1, 1, "r",
                              "the bus answered an error (AXI SLVERR/DECERR, Wishbone ERR); "
                              "sticky until reset")),
}

#: Version of the instruction set and register map; VERSION.ISA. Bump on any change to either.
ISA_VERSION = 2
#: VERSION.MAGIC.
VERSION_MAGIC = 0xCD
#: Bus forms (:attr:`HwConfig.bus`), in VERSION.BUS order.
BUSES = ("native", "axi4", "wishbone")


def version_word(config: HwConfig) -> int:
    """The VERSION register of ``config``'s NPU (fields in :data:`CSR_FIELDS`)."""
    lg = int.bit_length
    return (lg(config.bus_bytes) - 1 | (lg(config.rows) - 1) << 3 | (lg(config.cols) - 1) << 6
            | BUSES.index(config.bus) << 9 | ISA_VERSION << 16 | VERSION_MAGIC << 24)


def config_id(config: HwConfig) -> int:
    """The CONFIG_ID register: CRC-32 of :meth:`HwConfig.to_json`."""
    return zlib.crc32(config.to_json().encode())


# Field widths. Generous enough for the MLPerf Tiny models at 96×96; the compiler checks every
# value against its field before encoding (see :func:`encode`).
_SP_ADDR = 20      # scratchpad word or slice address
_EXT_ADDR = 28     # external word address
_COUNT = 16        # loop counts
_DIM = 12          # spatial extents / coordinates
_LANE = 6          # lane group index

LoadStore = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "mem": Mem,                     # LOAD: destination; STORE: must be ACT
    "sp_addr": unsigned(_SP_ADDR),  # slice address
    "sp_stride": unsigned(_SP_ADDR),
    "ext_addr": unsigned(_EXT_ADDR),
    "ext_stride": unsigned(_EXT_ADDR),
    "rows": unsigned(_COUNT),
    "length": unsigned(_COUNT),     # slices per row
})

MatMul = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "accumulate": unsigned(1),
    "depthwise": unsigned(1),
    "gemv": unsigned(1),                # x-stationary: one pixel against out_w weight tiles
    "x_signed": unsigned(1),
    "lane_group": unsigned(_LANE),
    "x_zp": signed(9),
    "w_zp": signed(9),
    "act_base": signed(_SP_ADDR + 2),   # address of window position (oh, ow) = (0, 0)
    "step_w": signed(_SP_ADDR + 2),     # ACT words per output column
    "step_h": signed(_SP_ADDR + 2),     # ACT words per output row
    "wgt_base": unsigned(_SP_ADDR),
    "acc_base": unsigned(_SP_ADDR),
    "out_h": unsigned(_DIM),
    "out_w": unsigned(_DIM),
    "ih0": signed(_DIM + 1),
    "iw0": signed(_DIM + 1),
    "stride_h": unsigned(4),
    "stride_w": unsigned(4),
    "in_h": unsigned(_DIM),
    "in_w": unsigned(_DIM),
})

Requant = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "lane_group": unsigned(_LANE),
    "y_zp": signed(9),
    "qmin": signed(9),
    "qmax": signed(9),
    "acc_base": unsigned(_SP_ADDR),
    "prm_addr": unsigned(_SP_ADDR),
    "out_base": unsigned(_SP_ADDR),
    "out_stride": unsigned(_SP_ADDR),
    "count": unsigned(_COUNT),
})

Pool = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "mode": PoolMode,
    "x_signed": unsigned(1),
    "lane_group": unsigned(_LANE),      # SUM only
    "act_base": signed(_SP_ADDR + 2),
    "step_w": signed(_SP_ADDR + 2),
    "step_h": signed(_SP_ADDR + 2),
    "row_words": unsigned(_SP_ADDR),    # ACT words per input row (window step in kh)
    "pix_words": unsigned(_SP_ADDR),    # ACT words per input pixel (window step in kw)
    "out_base": unsigned(_SP_ADDR),     # ACT word (MAX) or ACC word (SUM)
    "words": unsigned(_DIM),            # MAX: channel words per pixel
    "out_h": unsigned(_DIM),
    "out_w": unsigned(_DIM),
    "ih0": signed(_DIM + 1),
    "iw0": signed(_DIM + 1),
    "stride_h": unsigned(4),
    "stride_w": unsigned(4),
    "k_h": unsigned(8),                 # global pooling windows reach tens of rows
    "k_w": unsigned(8),
    "in_h": unsigned(_DIM),
    "in_w": unsigned(_DIM),
})

Eltwise = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "lane_group": unsigned(_LANE),
    "a_signed": unsigned(1),
    "b_signed": unsigned(1),
    "a_zp": signed(9),
    "b_zp": signed(9),
    "a_mult": signed(16),
    "b_mult": signed(16),
    "a_base": unsigned(_SP_ADDR),
    "b_base": unsigned(_SP_ADDR),
    "acc_base": unsigned(_SP_ADDR),
    "count": unsigned(_COUNT),
    "mul": unsigned(1),                 # the product of the operands (a_mult, b_mult unused)
    "b_period": unsigned(_DIM),         # b repeats every b_period words (0: no repeat)
})

#: Entries of one LUT table (every value of an 8-bit lane).
LUT_ENTRIES = 256

Lut = data.StructLayout({
    "opcode": Opcode,
    "wait": unsigned(1),
    "table": unsigned(4),               # < HwConfig.lut_tables
    "src_base": unsigned(_SP_ADDR),
    "dst_base": unsigned(_SP_ADDR),
    "count": unsigned(_COUNT),
})

End = data.StructLayout({"opcode": Opcode, "wait": unsigned(1)})

#: Layout of each opcode's instruction.
LAYOUTS: dict[Opcode, data.StructLayout] = {
    Opcode.END: End,
    Opcode.LOAD: LoadStore,
    Opcode.STORE: LoadStore,
    Opcode.MATMUL: MatMul,
    Opcode.REQUANT: Requant,
    Opcode.POOL: Pool,
    Opcode.ELTWISE: Eltwise,
    Opcode.LUT: Lut,
}
for _op, _layout in LAYOUTS.items():
    assert _layout.size <= INSN_BITS, (_op, _layout.size)

#: Requant parameters of one output channel; a PRM word holds ``cols`` of these, lane ``c`` at
#: bits ``64c .. 64c+63``.
PRM_LANE = data.StructLayout({
    "bias": signed(32),
    "mult": unsigned(MULT_BITS),   # 0, or in [2**23, 2**24): the float32 mantissa of M
    "shift": unsigned(8),          # M = mult * 2**-shift
})
assert PRM_LANE.size == 64


def _field_range(shape) -> tuple[int, int]:
    if shape.signed:
        return -(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1
    return 0, (1 << shape.width) - 1


def field_max(layout: data.StructLayout, name: str) -> int:
    """The largest value a field of ``layout`` holds (the compiler sizes loops by it)."""
    return _field_range(layout.members[name])[1]


def _packing(layout: data.StructLayout) -> dict[str, tuple[int, int, int, int, type | None]]:
    """Each field of ``layout`` as plain integers (offset, mask, lowest and highest value, enum
    class or None), so that :func:`encode` packs an instruction without building amaranth
    constants (a DS-CNN compile encodes ~10^5 instructions)."""
    table = {}
    for name, field in layout:
        shape = field.shape
        if isinstance(shape, type) and issubclass(shape, py_enum.Enum):
            width = Shape.cast(shape).width
            table[name] = (field.offset, (1 << width) - 1, 0, (1 << width) - 1, shape)
        else:
            table[name] = (field.offset, (1 << shape.width) - 1, *_field_range(shape), None)
    return table


_PACKING = {opcode: _packing(layout) for opcode, layout in LAYOUTS.items()}


def encode(opcode: Opcode, **fields) -> int:
    """Encode one instruction as an :data:`INSN_BITS`-bit integer: the bits that
    ``LAYOUTS[opcode].const({"opcode": opcode, **fields}).as_bits()`` gives, with fields not
    given zero.

    Raises
    ------
    ValueError
        If a field is unknown or its value does not fit the field (the compiler turns this into a
        "cannot be tiled onto this array" error rather than emitting a wrapped value).
    """
    packing = _PACKING[opcode]
    unknown = fields.keys() - packing.keys()
    if unknown:
        raise ValueError(f"{opcode.name} has no field(s) {sorted(unknown)}")
    word = Opcode(opcode).value
    for name, value in fields.items():
        offset, mask, lo, hi, kind = packing[name]
        if kind is not None:
            value = kind(value).value
        elif not lo <= int(value) <= hi:
            raise ValueError(f"{opcode.name}.{name} = {value} does not fit in [{lo}, {hi}]")
        word |= (int(value) & mask) << offset
    return word


class _Decoded(data.Const):
    """A decoded instruction: the :class:`amaranth.lib.data.Const` of its layout, with every
    field already read out as an instance attribute (the timing, hazard and energy passes read
    ~10^6 fields per exploration; a plain attribute costs no amaranth slicing)."""

    def __init__(self, layout: data.StructLayout, word: int, values: dict):
        super().__init__(layout, word)
        self.__dict__.update(values)


def _field_value(word: int, offset: int, mask: int, lo: int, kind: type | None):
    """The value of one field of ``word`` as :class:`amaranth.lib.data.Const` gives it: an enum
    member, or a plain (sign-extended when ``lo < 0``) integer."""
    bits = (word >> offset) & mask
    if kind is not None:
        return kind(bits)
    return bits - (mask + 1) if lo < 0 and bits > (mask >> 1) else bits


@functools.lru_cache(maxsize=1 << 14)
def decode(word: int) -> tuple[Opcode, data.Const]:
    """Decode an instruction into its opcode and a view of its fields (``view.field``).

    The result is shared between calls with the same word (an instruction is decoded by each
    compiler pass and cost model in turn); do not change it."""
    opcode = Opcode(word & ((1 << OPCODE_BITS) - 1))
    layout = LAYOUTS[opcode]
    word &= (1 << layout.size) - 1
    values = {name: _field_value(word, offset, mask, lo, kind)
              for name, (offset, mask, lo, _, kind) in _PACKING[opcode].items()}
    return opcode, _Decoded(layout, word, values)


# -------------------------------------------------------------------------------------------------
# Requantization: the integer form of DESIGN.md §3.1, shared by every model of the hardware.

def float_to_mult_shift(m: np.float32) -> tuple[int, int]:
    """Split a positive float32 multiplier into ``(mult, shift)`` with ``M = mult * 2**-shift``.

    ``mult`` is the 24-bit mantissa including the hidden bit, so the split is exact.

    Raises
    ------
    ValueError
        For zero/negative/non-finite multipliers, subnormals, or ``M >= 2**23`` / ``M < 2**-231``
        (shift would not fit 8 bits); no real quantized model has those.
    """
    m = np.float32(m)
    if not np.isfinite(m) or m <= 0:
        raise ValueError(f"requant multiplier must be a positive finite float32, not {m!r}")
    bits = int(np.array(m, dtype=np.float32).view(np.uint32))
    exponent = (bits >> 23) & 0xFF
    if exponent == 0:
        raise ValueError(f"requant multiplier {m!r} is subnormal")
    mult = (bits & 0x7FFFFF) | (1 << 23)
    shift = 150 - exponent  # value = mult * 2**(exponent - 127 - 23)
    if not 0 <= shift <= 255:
        raise ValueError(f"requant multiplier {m!r} is out of range")
    return mult, shift


def _round_shift(value: int, shift: int) -> int:
    """``round_half_even(value / 2**shift)`` for ``value >= 0``, ``shift >= 0``."""
    if shift == 0:
        return value
    q, r = value >> shift, value & ((1 << shift) - 1)
    half = 1 << (shift - 1)
    return q + (1 if r > half or (r == half and q & 1) else 0)


def requantize(acc: int, mult: int, shift: int) -> int:
    """``round_half_even(f32(f32(acc) * M))`` with ``M = mult * 2**-shift``, in integers.

    This is exactly ``torch.round(acc.float() * M)`` (DESIGN.md §3.1), written as the hardware
    computes it: round ``|acc|`` to 24 significant bits, take the exact 48-bit product with the
    mantissa, round that to 24 bits (RNE), then shift right with RNE. Results are saturated to
    ±2**31 (the caller clamps to the output range anyway).
    """
    if acc == 0 or mult == 0:
        return 0
    a = abs(acc)
    n = a.bit_length()
    if n > MULT_BITS:
        a24 = _round_shift(a, n - MULT_BITS)
        ea = n - MULT_BITS
        if a24 >> MULT_BITS:
            a24 >>= 1
            ea += 1
    else:
        a24 = a << (MULT_BITS - n)
        ea = n - MULT_BITS
    p = a24 * mult                                  # in [2**46, 2**48)
    drop = MULT_BITS if p >> (2 * MULT_BITS - 1) else MULT_BITS - 1
    p24 = _round_shift(p, drop)
    ep = drop
    if p24 >> MULT_BITS:
        p24 >>= 1
        ep += 1
    right = shift - ep - ea                         # value = p24 * 2**-right
    r = p24 << -right if right <= 0 else _round_shift(p24, right)
    r = min(r, 1 << 31)
    return -r if acc < 0 else r


# -------------------------------------------------------------------------------------------------

#: Values of :attr:`HwConfig.mult_cell`.
MULT_CELLS = ("inferred", "MULT18X18D")


@dataclasses.dataclass(frozen=True, kw_only=True)
class HwConfig:
    """One NPU instance: array shape, memory sizes, bus width, requantizer sharing, engines.

    Parameters
    ----------
    rows, cols
        Systolic array shape: ``rows`` is the reduction (K) dimension, ``cols`` the output
        channel (N) dimension. Powers of two, 1..64.
    bus_bytes
        External memory word width in bytes; a power of two <= 32 that divides ``cols``.
    act_depth, wgt_depth, acc_depth, prm_depth
        Scratchpad depths in words (see the module docstring for word widths).
    dw_width
        Widest output row (``out_w``) of a depthwise MATMUL: the depth of the two line buffers of
        the array's depthwise mode. 0 means no depthwise mode; it needs ``rows >= 8`` (9 taps:
        rows 0..8, where an 8-row array has a ninth, per-column tap multiplier). ``None`` picks
        64 when ``rows >= 8`` and WGT holds a depthwise weight tile, and 0 otherwise.
    requant_groups
        Lane groups that take turns on the requantizer: a power of two dividing ``cols``. The
        REQUANT engine requantizes ``requant_lanes = cols // requant_groups`` channels in
        parallel; 1 (the default) is one requantizer lane per column, ``cols`` a single lane.
    requant_steps
        Cycles of one requantizer multiply (the exact 24×24-bit product of DESIGN.md §3.1):
        1 (each lane has a 24×24 multiplier: four 16×16 DSP blocks), 2 (24×16 over two
        cycles: two blocks) or 4 (16×16 over four cycles: one block). A lane takes a new
        channel every ``requant_steps`` cycles, so REQUANT takes
        ``count · requant_groups · requant_steps + 14`` cycles (``+ 15`` with
        ``deep_pipeline``). Small FPGAs (the iCE40 UP5K has 8 DSP blocks) need fewer lanes and
        more steps.
    gemv
        Whether the array has its GEMV mode (batch-1 fully connected layers at the external
        bus's speed, see :mod:`codesign.rtl.array`). Without it the NPU is a little smaller
        (the mode's weight addressing and the array's psum bypass), and one-pixel layers run as
        ordinary weight tiles.
    mult_cell
        How the array's multipliers are built: ``"inferred"`` (by synthesis from ``*``, with
        fabric registers around them; any device) or ``"MULT18X18D"`` (ECP5 multiplier cells
        that hold the operand and product registers themselves: a faster array on the ECP5, but
        only the ECP5 and simulation models know the cell). See :mod:`codesign.rtl.dsp`.
    eltwise
        Whether the NPU has the ELTWISE engine (residual adds). Without it the NPU is smaller
        (``cols`` multipliers and their registers fewer), and the compiler refuses models
        that need it.
    lut_tables
        Lookup tables resident in the LUT engine (:data:`Opcode.LUT`): 0 (no LUT engine, the
        default) to 16. Every ACT lane has its own copy of the tables (one read per lane per
        cycle), so the engine costs ``act_bytes`` RAMs of ``lut_tables`` × 256 bytes.
    deep_pipeline
        Extra pipeline registers on the long paths of a large FPGA (chosen for ECP5 targets):
        the requantizer normalizes over two stages, POOL registers its ACT read and its writes,
        ELTWISE its ACC write, MATMUL the old ACC word it accumulates onto, and the DMA engine
        keeps its current addresses in registers. It costs a cycle per REQUANT and ELTWISE, two
        per POOL and one more between accumulating MATMULs (:mod:`codesign.timing`), and
        logic cells a full small FPGA does not have.
    bus
        The NPU's outside (:data:`BUSES`): ``"native"`` (the word-wide memory port of fixed read
        latency 1 and the strobe register port, docs/rtl-contract.md), ``"axi4"`` (AXI4 master
        + AXI4-Lite register slave) or ``"wishbone"`` (Wishbone B4 master + register slave).
        The core is the same; only the wrapper differs.
    max_reads
        Read beats the NPU keeps outstanding on its memory bus (a power of two, 1..256): to
        stream one beat per cycle from a memory of read latency ``L`` it needs ``L + 1``.
    axi_id_bits
        Width of the AXI4 ID signals (the NPU uses ID 0 only).
    wb_classic
        Wishbone classic cycles (one access per ACK, no STALL) instead of B4 pipelined.
    """
    rows: int = 4
    cols: int = 4
    bus_bytes: int = 4
    act_depth: int = 4096
    wgt_depth: int = 1024
    acc_depth: int = 1024
    prm_depth: int = 64
    dw_width: int | None = None
    requant_groups: int = 1
    requant_steps: int = 1
    eltwise: bool = True
    gemv: bool = True
    mult_cell: str = "inferred"
    deep_pipeline: bool = False
    lut_tables: int = 0
    bus: str = "native"
    max_reads: int = 16
    axi_id_bits: int = 4
    wb_classic: bool = False

    def __post_init__(self):
        if self.dw_width is None:
            able = self.rows >= 8 and self.wgt_depth >= self.rows + (self.rows == 8)
            object.__setattr__(self, "dw_width", 64 if able else 0)
        for name in ("rows", "cols"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= 64 or value & (value - 1):
                raise ValueError(f"{name} must be a power of two in 1..64, not {value!r}")
        b = self.bus_bytes
        if not isinstance(b, int) or b < 1 or b > 32 or b & (b - 1) or self.cols % b:
            raise ValueError(
                f"bus_bytes must be a power of two <= 32 dividing cols={self.cols}, not {b!r}")
        for name in ("act_depth", "wgt_depth", "acc_depth", "prm_depth"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 1 <= value <= (1 << _SP_ADDR) // 64:
                raise ValueError(f"{name} must be an int in 1..{(1 << _SP_ADDR) // 64}, "
                                 f"not {value!r}")
        dw = self.dw_width
        if not isinstance(dw, int) or not 0 <= dw <= 4093 or (dw and self.rows < 8):
            raise ValueError(f"dw_width must be 0, or 1..4093 on an array with rows >= 8, "
                             f"not {dw!r} (rows={self.rows})")
        g = self.requant_groups
        if not isinstance(g, int) or g < 1 or g & (g - 1) or self.cols % g:
            raise ValueError(f"requant_groups must be a power of two dividing cols={self.cols}, "
                             f"not {g!r}")
        if self.requant_steps not in (1, 2, 4):
            raise ValueError(f"requant_steps must be 1, 2 or 4, not {self.requant_steps!r}")
        for name in ("eltwise", "gemv", "deep_pipeline"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a bool, not {getattr(self, name)!r}")
        lt = self.lut_tables
        if not isinstance(lt, int) or isinstance(lt, bool) or not 0 <= lt <= 16:
            raise ValueError(f"lut_tables must be an int in 0..16, not {lt!r}")
        if self.bus not in BUSES:
            raise ValueError(f"bus must be one of {BUSES}, not {self.bus!r}")
        mr = self.max_reads
        if not isinstance(mr, int) or isinstance(mr, bool) or not 1 <= mr <= 256 or mr & (mr - 1):
            raise ValueError(f"max_reads must be a power of two in 1..256, not {mr!r}")
        ib = self.axi_id_bits
        if not isinstance(ib, int) or isinstance(ib, bool) or not 1 <= ib <= 8:
            raise ValueError(f"axi_id_bits must be an int in 1..8, not {ib!r}")
        if not isinstance(self.wb_classic, bool):
            raise ValueError(f"wb_classic must be a bool, not {self.wb_classic!r}")
        if self.mult_cell not in MULT_CELLS:
            raise ValueError(f"mult_cell must be one of {MULT_CELLS}, not {self.mult_cell!r}")
        tile = self.dw_weight_words if dw else self.rows
        if self.wgt_depth < tile:
            raise ValueError(f"wgt_depth must hold one weight tile ({tile} words), "
                             f"not {self.wgt_depth!r}")

    # Derived widths ------------------------------------------------------------------------------
    @property
    def dw_weight_words(self) -> int:
        """WGT words of one depthwise weight tile: one per array row, plus the ninth tap's on an
        8-row array."""
        return self.rows + (self.rows == 8)

    @property
    def requant_lanes(self) -> int:
        """Channels the requantizer works on in parallel."""
        return self.cols // self.requant_groups

    @property
    def act_bytes(self) -> int:
        """Bytes (= channels) per ACT word."""
        return max(self.rows, self.cols)

    def word_bytes(self, mem: Mem) -> int:
        """Bytes per word of a DMA-reachable scratchpad."""
        return {Mem.ACT: self.act_bytes, Mem.WGT: self.cols, Mem.PRM: 8 * self.cols,
                Mem.LUT: self.bus_bytes}[mem]

    def slices(self, mem: Mem) -> int:
        """DMA slices (``bus_bytes`` each) per word of a scratchpad."""
        return self.word_bytes(mem) // self.bus_bytes

    def depth(self, mem: Mem) -> int:
        return {Mem.ACT: self.act_depth, Mem.WGT: self.wgt_depth, Mem.PRM: self.prm_depth,
                Mem.LUT: self.lut_depth}[mem]

    @property
    def lut_depth(self) -> int:
        """Words (DMA slices) of the LUT scratchpad: ``lut_tables`` tables of 256 bytes."""
        return self.lut_tables * LUT_ENTRIES // self.bus_bytes

    @property
    def insn_words(self) -> int:
        """External words per instruction."""
        return INSN_BITS // (8 * self.bus_bytes)

    @property
    def ext_addr_bits(self) -> int:
        return _EXT_ADDR

    @staticmethod
    def addr_bits(depth: int) -> int:
        return max(1, math.ceil(math.log2(depth)))

    # Serialisation -------------------------------------------------------------------------------
    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> HwConfig:
        """The configuration that :meth:`to_json` wrote.

        Raises
        ------
        ValueError
            If ``text`` is not a JSON object with exactly the fields of :class:`HwConfig`, each of
            the type :meth:`to_json` writes, with values the constructor accepts. A missing field
            is refused rather than defaulted: it would silently describe another NPU.
        """
        try:
            fields = json.loads(text)
        except (ValueError, RecursionError) as err:     # RecursionError: absurdly deep nesting
            raise ValueError(f"not valid JSON ({err})") from None
        if not isinstance(fields, dict):
            raise ValueError(f"expected a JSON object, not a {type(fields).__name__}")
        # A default instance gives each field's JSON type (dw_width resolved from None to int).
        reference = dataclasses.asdict(cls())
        if missing := sorted(reference.keys() - fields):
            raise ValueError(f"missing {', '.join(missing)}")
        if unknown := sorted(fields.keys() - reference):
            # Shortened and quoted: a tampered key may be long or hold a newline.
            raise ValueError(f"unknown {', '.join(map(reprlib.repr, unknown))}")
        for name, value in fields.items():
            # Exact types: JSON true is not the integer 1, nor 8.0 the integer 8.
            if type(value) is not type(reference[name]):
                raise ValueError(f"{name} must be of type {type(reference[name]).__name__}, "
                                 f"not {type(value).__name__}")
            if isinstance(value, int) and value.bit_length() > 32:
                raise ValueError(f"{name} is out of range")
        return cls(**fields)

    @property
    def name(self) -> str:
        """A short stable identifier (used for Verilog module and build-cache names)."""
        shared = (f"_q{self.requant_lanes}s{self.requant_steps}"
                  if (self.requant_groups, self.requant_steps) != (1, 1) else "")
        return (f"npu_{self.rows}x{self.cols}_b{self.bus_bytes}_a{self.act_depth}"
                f"_w{self.wgt_depth}_c{self.acc_depth}_p{self.prm_depth}_d{self.dw_width}"
                + shared + ("" if self.eltwise else "_noelt") + ("" if self.gemv else "_nogemv")
                + ("" if self.mult_cell == "inferred" else "_m18")
                + ("_dp" if self.deep_pipeline else "")
                + (f"_l{self.lut_tables}" if self.lut_tables else "")
                + self._bus_suffix)

    @property
    def _bus_suffix(self) -> str:
        """The bus part of :attr:`name` (empty for the native port, whatever its other fields)."""
        if self.bus == "native":
            return ""
        extra = (f"_id{self.axi_id_bits}" if self.bus == "axi4"
                 else "_classic" if self.wb_classic else "")
        return f"_{self.bus}_r{self.max_reads}" + extra
