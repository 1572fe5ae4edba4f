"""Energy per inference from the operations and memory accesses of a compiled program.

Method (docs/energy.md has the long form):

1. :func:`count_instruction` turns one encoded instruction into :class:`Counts` -- array
   operations, requantizer / pool / element-wise lane operations, scratchpad accesses per memory
   (ACT, WGT, PRM, ACC; in word accesses and bytes) and external-memory bytes -- using the loop
   bounds of the instruction semantics in :mod:`codesign.isa` and the memory ports the RTL drives
   (an out-of-bounds window position costs no ACT read, as in ``rtl/matmul.py`` and
   ``rtl/pool.py``). Nothing is sampled: the counts are exact for the program, and
   ``tests/test_energy.py`` proves them equal to what an instrumented :mod:`codesign.isasim` run
   touches.
2. :func:`count_program` sums the instructions of each layer (``Program.layers``) and of the
   whole inference, including the fetch of every instruction from external memory.
3. :func:`energy_per_inference` prices the counts with per-operation and per-access energies
   (:class:`EnergyTable`, 45 nm figures of Horowitz, ISSCC 2014, with SRAM energy scaled by the
   size of each scratchpad) and returns an :class:`EnergyReport` with a breakdown per component
   and per layer.

Dynamic energy only: leakage, clock tree, control logic and wires are not modelled.

Extending: a new opcode needs one entry in :data:`COUNTERS` (a function of the decoded fields and
the :class:`~codesign.isa.HwConfig` that adds to a :class:`Counts`); instructions whose opcode
has no counter (or that do not decode) are counted in ``Counts.unmodelled`` rather than refused.
Counters read fields by name, so fields added to an instruction are ignored until a counter
uses them.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

from ..isa import INSN_BITS, LUT_ENTRIES, HwConfig, Mem, Opcode, PoolMode, decode

__all__ = [
    "SramTraffic", "Counts", "ProgramCounts", "EnergyTable", "LayerEnergy", "EnergyReport",
    "COUNTERS", "HOROWITZ_2014", "count_instruction", "count_program", "energy_per_inference",
    "sram_pj_per_64bit",
]

#: Bytes of an ACC lane (int32 partial sums).
ACC_LANE_BYTES = 4
#: Bytes of a PRM lane (isa.PRM_LANE: bias, mult, shift).
PRM_LANE_BYTES = 8


# -------------------------------------------------------------------------------------------------
# Counts

@dataclasses.dataclass
class SramTraffic:
    """Accesses to one scratchpad.

    ``reads`` / ``writes`` count port accesses: one per word read, one per (possibly partial,
    byte-enabled) word written -- a DMA slice or a REQUANT lane group is one write of fewer bytes
    than the word. A read always senses the whole word, so ``read_bytes = reads * word_bytes``;
    ``write_bytes`` counts only the bytes whose write enables are set.
    """
    reads: int = 0
    read_bytes: int = 0
    writes: int = 0
    write_bytes: int = 0

    def read(self, words: int, word_bytes: int) -> None:
        self.reads += words
        self.read_bytes += words * word_bytes

    def write(self, words: int, nbytes_each: int) -> None:
        self.writes += words
        self.write_bytes += words * nbytes_each


#: The scratchpads, as named by :class:`Counts` attributes.
SRAMS = ("act", "wgt", "prm", "acc", "lut")


@dataclasses.dataclass
class Counts:
    """Operations and memory traffic of some instructions (per inference when summed over a
    program). All fields are exact integers; ``+`` adds field by field."""
    instructions: int = 0
    #: Instructions with no counter in :data:`COUNTERS` (or that do not decode): not priced.
    unmodelled: int = 0
    #: PE operations (8-bit multiply + 32-bit add): ``rows * cols`` per streamed window position,
    #: whether the position is padding or the lanes hold padding channels.
    pe_ops: int = 0
    #: The part of ``pe_ops`` at in-bounds window positions (padding positions stream zeros).
    pe_ops_in_bounds: int = 0
    #: 32-bit additions of a partial sum into an ACC lane (MATMUL with ``accumulate``).
    acc_adds: int = 0
    #: 8-bit subtractions of activation zero points (``rows`` per streamed position).
    x_zp_subs: int = 0
    #: 8-bit subtractions of weight zero points (``rows * cols`` per weight-tile load).
    w_zp_subs: int = 0
    #: Requantizer lane operations (one int32 accumulator → one 8-bit output).
    requant_ops: int = 0
    #: POOL MAX lane comparisons (one byte lane of one in-bounds window word).
    pool_max_ops: int = 0
    #: POOL SUM lane additions (one of ``cols`` lanes of one in-bounds window word).
    pool_sum_ops: int = 0
    #: ELTWISE lane operations ((a - a_zp)*a_mult + (b - b_zp)*b_mult for one lane, or in the
    #: product mode (a - a_zp)*(b - b_zp): the same two multiplier passes).
    eltwise_ops: int = 0
    act: SramTraffic = dataclasses.field(default_factory=SramTraffic)
    wgt: SramTraffic = dataclasses.field(default_factory=SramTraffic)
    prm: SramTraffic = dataclasses.field(default_factory=SramTraffic)
    acc: SramTraffic = dataclasses.field(default_factory=SramTraffic)
    #: The LUT engine's table copies (one per ACT lane): a lookup reads a byte of one copy, a
    #: LOAD of tables writes every copy.
    lut: SramTraffic = dataclasses.field(default_factory=SramTraffic)
    #: External memory bytes moved by LOAD (read) and STORE (write).
    dram_read_bytes: int = 0
    dram_write_bytes: int = 0
    #: External memory bytes read to fetch the instructions themselves.
    fetch_bytes: int = 0

    def __add__(self, other: Counts) -> Counts:
        return _combine(self, other)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _combine(a, b):
    out = {}
    for field in dataclasses.fields(a):
        x, y = getattr(a, field.name), getattr(b, field.name)
        out[field.name] = _combine(x, y) if dataclasses.is_dataclass(x) else x + y
    return type(a)(**out)


# -------------------------------------------------------------------------------------------------
# Per-instruction counters: the loop bounds of the semantics in codesign.isa

def _in_range(start: int, stride: int, n: int, limit: int) -> int:
    """How many ``k < n`` have ``0 <= start + k*stride < limit``."""
    if n <= 0 or limit <= 0:
        return 0
    if stride == 0:
        return n if 0 <= start < limit else 0
    lo = max(0, -(start // stride))             # first k with start + k*stride >= 0
    hi = min(n - 1, (limit - 1 - start) // stride)  # last k with start + k*stride <= limit-1
    return max(0, hi - lo + 1)


def _window_in_bounds(f, kh: int = 0, kw: int = 0) -> int:
    """In-bounds window positions (oh, ow) of a MATMUL/POOL at window offset (kh, kw); the
    bounds are separable, so this is (rows in range) x (columns in range)."""
    return (_in_range(int(f.ih0) + kh, int(f.stride_h), int(f.out_h), int(f.in_h))
            * _in_range(int(f.iw0) + kw, int(f.stride_w), int(f.out_w), int(f.in_w)))


def _count_load(f, c: HwConfig, n: Counts) -> None:
    slices = int(f.rows) * int(f.length)
    n.dram_read_bytes += slices * c.bus_bytes
    traffic = getattr(n, f.mem.name.lower(), None)
    if traffic is None:       # a scratchpad this model does not know yet
        n.unmodelled += 1
        return
    if f.mem == Mem.LUT:      # every lane's copy of the tables
        traffic.write(slices * c.act_bytes, c.bus_bytes)
        return
    traffic.write(slices, c.bus_bytes)            # slice-enabled partial-word writes


def _count_store(f, c: HwConfig, n: Counts) -> None:
    slices = int(f.rows) * int(f.length)
    n.act.read(slices, c.act_bytes)               # each slice is read out of a whole ACT word
    n.dram_write_bytes += slices * c.bus_bytes


def _count_matmul(f, c: HwConfig, n: Counts) -> None:
    R, C = c.rows, c.cols
    positions = int(f.out_h) * int(f.out_w)
    if positions == 0:
        return                                    # the engine touches no memory at all
    if f.depthwise:
        _count_depthwise(f, c, n)
        return
    if f.gemv:
        _count_gemv(f, c, n)
        return
    valid = _window_in_bounds(f)
    n.wgt.read(R, C)                              # the weight tile, once per instruction
    n.w_zp_subs += R * C
    n.act.read(valid, c.act_bytes)                # no read for padding positions
    n.x_zp_subs += positions * R
    n.pe_ops += positions * R * C
    n.pe_ops_in_bounds += valid * R * C
    if int(f.accumulate):
        n.acc.read(positions, C * ACC_LANE_BYTES)
        n.acc_adds += positions * C
    n.acc.write(positions, C * ACC_LANE_BYTES)


def _count_gemv(f, c: HwConfig, n: Counts) -> None:
    """A GEMV MATMUL reads its pixel once (the port holds it) and its weight tiles once; every
    PE multiplies on every weight slot (``2·rows`` per pair of tiles), though only one row's
    product per slot is kept."""
    R, C = c.rows, c.cols
    tiles = int(f.out_w)
    slots = 2 * R * ((tiles + 1) // 2)
    # 1, or 0 for a pixel out of bounds: the pixel at (ih0, iw0) only (out_w counts tiles).
    valid = _in_range(int(f.ih0), 1, 1, int(f.in_h)) * _in_range(int(f.iw0), 1, 1, int(f.in_w))
    n.wgt.read(tiles * R, C)
    n.w_zp_subs += tiles * R * C
    n.act.read(valid, c.act_bytes)
    n.x_zp_subs += valid * R
    n.pe_ops += slots * R * C
    n.pe_ops_in_bounds += valid * slots * R * C
    if int(f.accumulate):
        n.acc.read(tiles, C * ACC_LANE_BYTES)
        n.acc_adds += tiles * C
    n.acc.write(tiles, C * ACC_LANE_BYTES)


def _count_depthwise(f, c: HwConfig, n: Counts) -> None:
    """A depthwise MATMUL streams the padded input once: every row (and the tap lane) of the
    array multiplies on every stream cycle; padding positions are not read."""
    C, words = c.cols, c.dw_weight_words
    out_h, out_w = int(f.out_h), int(f.out_w)
    stream = (out_h + 2) * (out_w + 2)
    valid = (_in_range(int(f.ih0), 1, out_h + 2, int(f.in_h))
             * _in_range(int(f.iw0), 1, out_w + 2, int(f.in_w)))
    n.wgt.read(words, C)
    n.w_zp_subs += words * C
    n.act.read(valid, c.act_bytes)
    n.x_zp_subs += stream * C
    n.pe_ops += stream * words * C
    n.pe_ops_in_bounds += valid * words * C
    if int(f.accumulate):
        n.acc.read(out_h * out_w, C * ACC_LANE_BYTES)
        n.acc_adds += out_h * out_w * C
    n.acc.write(out_h * out_w, C * ACC_LANE_BYTES)


def _count_requant(f, c: HwConfig, n: Counts) -> None:
    count, C = int(f.count), c.cols
    n.prm.read(1, C * PRM_LANE_BYTES)             # one PRM word per instruction
    n.acc.read(count, C * ACC_LANE_BYTES)
    n.act.write(count, C)                         # one lane group of each output word
    n.requant_ops += count * C


def _count_pool(f, c: HwConfig, n: Counts) -> None:
    outputs = int(f.out_h) * int(f.out_w)
    valid = sum(_window_in_bounds(f, kh, kw)
                for kh in range(int(f.k_h)) for kw in range(int(f.k_w)))
    if f.mode == PoolMode.SUM:
        n.act.read(valid, c.act_bytes)
        n.pool_sum_ops += valid * c.cols
        n.acc.write(outputs, c.cols * ACC_LANE_BYTES)
    else:
        words = int(f.words)
        n.act.read(valid * words, c.act_bytes)
        n.pool_max_ops += valid * words * c.act_bytes
        n.act.write(outputs * words, c.act_bytes)


def _count_eltwise(f, c: HwConfig, n: Counts) -> None:
    count = int(f.count)
    n.act.read(2 * count, c.act_bytes)            # a and b
    n.eltwise_ops += count * c.cols
    n.acc.write(count, c.cols * ACC_LANE_BYTES)


def _count_lut(f, c: HwConfig, n: Counts) -> None:
    count = int(f.count)
    n.act.read(count, c.act_bytes)
    n.lut.read(count * c.act_bytes, 1)            # one table byte per lane
    n.act.write(count, c.act_bytes)


#: Counter of each opcode: ``counter(fields, config, counts)`` adds the instruction's work.
COUNTERS: dict[Opcode, Callable[[object, HwConfig, Counts], None]] = {
    Opcode.END: lambda f, c, n: None,
    Opcode.LOAD: _count_load,
    Opcode.STORE: _count_store,
    Opcode.MATMUL: _count_matmul,
    Opcode.REQUANT: _count_requant,
    Opcode.POOL: _count_pool,
    Opcode.ELTWISE: _count_eltwise,
    Opcode.LUT: _count_lut,
}


def count_instruction(insn: int, config: HwConfig, counts: Counts | None = None) -> Counts:
    """The operations and accesses of one encoded instruction (added to ``counts`` if given),
    including its own fetch from external memory."""
    n = Counts() if counts is None else counts
    n.instructions += 1
    n.fetch_bytes += INSN_BITS // 8
    try:
        opcode, fields = decode(insn)
        counter = COUNTERS[opcode]
    except (ValueError, KeyError):   # an opcode newer than this model
        n.unmodelled += 1
        return n
    counter(fields, config, n)
    return n


@dataclasses.dataclass(frozen=True)
class ProgramCounts:
    """Counts of one inference: per layer (``Program.layers`` order), the instructions outside
    every layer (the final END), and the total."""
    layers: tuple[tuple[str, str, int, Counts], ...]   # (name, kind, useful MACs, counts)
    other: Counts
    total: Counts


def count_program(program) -> ProgramCounts:
    """Count every instruction of ``program`` (a :class:`~codesign.compiler.Program`) once --
    one inference."""
    c = program.config
    per_insn_layer: list[int | None] = [None] * len(program.insns)
    for index, layer in enumerate(program.layers):
        for i in range(layer.first_insn, layer.first_insn + layer.n_insns):
            per_insn_layer[i] = index
    layer_counts = [Counts() for _ in program.layers]
    other = Counts()
    for insn, owner in zip(program.insns, per_insn_layer, strict=True):
        count_instruction(insn, c, other if owner is None else layer_counts[owner])
    total = other
    for n in layer_counts:
        total = total + n
    layers = tuple((layer.name, layer.kind, layer.macs, n)
                   for layer, n in zip(program.layers, layer_counts, strict=True))
    return ProgramCounts(layers=layers, other=other, total=total)


# -------------------------------------------------------------------------------------------------
# Energies

@dataclasses.dataclass(frozen=True, kw_only=True)
class EnergyTable:
    """Per-operation and per-access energies in pJ.

    Defaults (:data:`HOROWITZ_2014`) are M. Horowitz, "1.1 Computing's energy problem (and what
    we can do about it)", ISSCC 2014 Digest of Technical Papers, pp. 10-14, 45 nm, 0.9 V:
    8-bit integer add 0.03 pJ, 32-bit add 0.1 pJ, 8-bit multiply 0.2 pJ, 32-bit multiply
    3.1 pJ; a 64-bit read of an 8 KB / 32 KB / 1 MB SRAM (cache) 10 / 20 / 100 pJ; a 64-bit
    DRAM access 1.3-2.6 nJ (the default takes the middle of that range).
    """
    add8_pj: float = 0.03
    add32_pj: float = 0.1
    mult8_pj: float = 0.2
    mult32_pj: float = 3.1
    #: (size in bytes, pJ per 64-bit access) points; interpolated log-log by size.
    sram_points: tuple[tuple[int, float], ...] = (
        (8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0))
    dram_pj_per_64bit: float = 1950.0

    def mult_pj(self, a_bits: int, b_bits: int) -> float:
        """An ``a_bits`` x ``b_bits`` integer multiply, scaled from the 8-bit one by the product
        of the widths (array-multiplier area; the same rule gives 3.2 pJ for 32 bits against the
        published 3.1 pJ)."""
        return self.mult8_pj * a_bits * b_bits / 64

    # Energy of one counted operation ------------------------------------------------------------
    @property
    def pe_op_pj(self) -> float:
        """One PE step: 8-bit operands (9-bit after the zero point) multiplied, added into the
        32-bit partial sum passing down the column."""
        return self.mult8_pj + self.add32_pj

    @property
    def requant_op_pj(self) -> float:
        """One requantizer lane: 32-bit bias add, 24x24 mantissa multiply, a 32-bit add's worth
        of rounding, shifting and clamping."""
        return 2 * self.add32_pj + self.mult_pj(24, 24)

    @property
    def eltwise_op_pj(self) -> float:
        """One ELTWISE lane: two 8-bit zero-point subtractions, two 9x16-bit multiplies by the
        scale ratios, one 32-bit add."""
        return 2 * self.add8_pj + 2 * self.mult_pj(9, 16) + self.add32_pj


#: Horowitz, ISSCC 2014 (45 nm), the default table.
HOROWITZ_2014 = EnergyTable()


def sram_pj_per_64bit(size_bytes: int, table: EnergyTable = HOROWITZ_2014) -> float:
    """Energy of a 64-bit access to an SRAM of ``size_bytes``: piecewise power law through the
    table's points (energy ~ size**0.5 between 8 KB and 32 KB, ~ size**0.46 up to 1 MB),
    extended beyond the end points with the slope of the nearest segment."""
    if size_bytes <= 0:
        raise ValueError(f"SRAM size must be positive, not {size_bytes!r}")
    points = sorted(table.sram_points)
    if len(points) == 1:
        return points[0][1]
    segment = 0
    while segment < len(points) - 2 and size_bytes > points[segment + 1][0]:
        segment += 1
    (s0, e0), (s1, e1) = points[segment], points[segment + 1]
    slope = math.log(e1 / e0) / math.log(s1 / s0)
    return e0 * (size_bytes / s0) ** slope


def sram_sizes(config: HwConfig) -> dict[str, int]:
    """Bytes of each scratchpad of ``config``."""
    return {"act": config.act_depth * config.word_bytes(Mem.ACT),
            "wgt": config.wgt_depth * config.word_bytes(Mem.WGT),
            "prm": config.prm_depth * config.word_bytes(Mem.PRM),
            "acc": config.acc_depth * config.cols * ACC_LANE_BYTES,
            # one lane's copy of the tables (each access touches one copy)
            "lut": max(1, config.lut_tables * LUT_ENTRIES)}


#: Components of the energy breakdown, in report order.
COMPONENTS = ("mac", "acc_add", "zero_point", "requant", "pool", "eltwise",
              "sram_act", "sram_wgt", "sram_prm", "sram_acc", "sram_lut", "dram_data",
              "dram_fetch")
#: Component groups of :meth:`EnergyReport.grouped`.
GROUPS = {"compute": COMPONENTS[:6], "sram": COMPONENTS[6:11], "dram": COMPONENTS[11:]}


def energy_breakdown(counts: Counts, config: HwConfig,
                     table: EnergyTable = HOROWITZ_2014) -> dict[str, float]:
    """pJ per component (:data:`COMPONENTS`) of ``counts`` on ``config``."""
    sizes = sram_sizes(config)
    dram_pj_per_byte = table.dram_pj_per_64bit / 8
    out = {
        "mac": counts.pe_ops * table.pe_op_pj,
        "acc_add": counts.acc_adds * table.add32_pj,
        "zero_point": (counts.x_zp_subs + counts.w_zp_subs) * table.add8_pj,
        "requant": counts.requant_ops * table.requant_op_pj,
        "pool": counts.pool_max_ops * table.add8_pj + counts.pool_sum_ops * table.add32_pj,
        "eltwise": counts.eltwise_ops * table.eltwise_op_pj,
    }
    for name in SRAMS:
        traffic: SramTraffic = getattr(counts, name)
        pj_per_byte = sram_pj_per_64bit(sizes[name], table) / 8
        out[f"sram_{name}"] = (traffic.read_bytes + traffic.write_bytes) * pj_per_byte
    out["dram_data"] = (counts.dram_read_bytes + counts.dram_write_bytes) * dram_pj_per_byte
    out["dram_fetch"] = counts.fetch_bytes * dram_pj_per_byte
    return out


@dataclasses.dataclass(frozen=True)
class LayerEnergy:
    """One layer's counts and energy."""
    name: str
    kind: str
    useful_macs: int
    counts: Counts
    energy_pj: dict[str, float]

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())


@dataclasses.dataclass(frozen=True)
class EnergyReport:
    """Energy of one inference of a program on its :class:`~codesign.isa.HwConfig`.

    ``energy_pj`` maps each component of :data:`COMPONENTS` to pJ; ``layers`` has the same per
    layer, and ``other`` the instructions outside every layer (the final END).
    """
    config: HwConfig
    table: EnergyTable
    counts: Counts
    energy_pj: dict[str, float]
    useful_macs: int
    layers: tuple[LayerEnergy, ...]
    other: LayerEnergy

    @property
    def total_pj(self) -> float:
        return sum(self.energy_pj.values())

    @property
    def total_uj(self) -> float:
        return self.total_pj * 1e-6

    @property
    def pj_per_mac(self) -> float:
        """Total energy per useful (model) MAC."""
        return self.total_pj / self.useful_macs if self.useful_macs else math.inf

    def grouped(self) -> dict[str, float]:
        """pJ of compute, on-chip SRAM and external memory."""
        return {g: sum(self.energy_pj[k] for k in keys) for g, keys in GROUPS.items()}

    def as_dict(self) -> dict:
        return {
            "config": dataclasses.asdict(self.config),
            "table": dataclasses.asdict(self.table),
            "total_pj": self.total_pj,
            "useful_macs": self.useful_macs,
            "energy_pj": self.energy_pj,
            "grouped_pj": self.grouped(),
            "counts": self.counts.as_dict(),
            "layers": [{"name": layer.name, "kind": layer.kind, "useful_macs": layer.useful_macs,
                        "total_pj": layer.total_pj, "energy_pj": layer.energy_pj,
                        "counts": layer.counts.as_dict()} for layer in self.layers],
        }

    def format_layers(self) -> str:
        """A markdown table: per layer, nJ per group and its share of the inference."""
        lines = ["| layer | kind | MACs | PE ops | compute nJ | SRAM nJ | DRAM nJ | total nJ "
                 "| share |", "|---|---|---|---|---|---|---|---|---|"]
        total = self.total_pj
        for layer in (*self.layers, self.other):
            g = {name: sum(layer.energy_pj[k] for k in keys) for name, keys in GROUPS.items()}
            lines.append(
                f"| {layer.name} | {layer.kind} | {layer.useful_macs:,} | "
                f"{layer.counts.pe_ops:,} | {g['compute'] / 1e3:.1f} | {g['sram'] / 1e3:.1f} | "
                f"{g['dram'] / 1e3:.1f} | {layer.total_pj / 1e3:.1f} | "
                f"{100 * layer.total_pj / total:.1f}% |")
        if self.counts.unmodelled:
            lines.append(f"\n{self.counts.unmodelled} instruction(s) not modelled (not priced)")
        return "\n".join(lines)


def energy_per_inference(program, table: EnergyTable = HOROWITZ_2014) -> EnergyReport:
    """Energy of one inference of ``program`` (a :class:`~codesign.compiler.Program`), with a
    breakdown per component and per layer."""
    c = program.config
    counted = count_program(program)
    layers = tuple(LayerEnergy(name, kind, macs, n, energy_breakdown(n, c, table))
                   for name, kind, macs, n in counted.layers)
    other = LayerEnergy("(other)", "-", 0, counted.other,
                        energy_breakdown(counted.other, c, table))
    return EnergyReport(config=c, table=table, counts=counted.total,
                        energy_pj=energy_breakdown(counted.total, c, table),
                        useful_macs=sum(layer.useful_macs for layer in layers),
                        layers=layers, other=other)
