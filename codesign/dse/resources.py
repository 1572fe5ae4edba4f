"""Resource model: LUTs, flip-flops, multiplier blocks, block RAMs (and ASIC area) of an NPU
configuration on a target, without running synthesis (explore calls it hundreds of times).

Shape of the model
------------------
* **Logic** (LUTs, FFs; ASIC gate equivalents) is linear in a few structural counts of the
  configuration (:func:`features`): a constant (controller, DMA, CSRs), the PEs (``rows × cols``
  9×9 multipliers with psum adders and operand registers), the columns (accumulator lane and
  de-skew line each), the requantizer lanes and the channels that take turns on them, the
  ELTWISE lanes (none without that engine), the GEMV mode's columns (none without it), the
  ACT word's bytes (POOL lanes), the skew and de-skew triangles (``r(r-1)/2``, ``c(c-1)/2``
  registers), the bus width (DMA) and the scratchpad address bits. The coefficients are
  fitted per device family by ``bench/calibrate_resources.py`` against yosys and stored in
  ``resource_coefficients.json`` together with the configurations and measurements they came
  from.
* **Multiplier blocks** are linear in the multipliers the RTL has (one per PE -- on iCE40 only
  those yosys maps, see ``mapped_pes`` -- one per ELTWISE lane and ninth depthwise tap,
  ``4 / requant_steps`` 16×16 pieces per requantizer lane), fitted the same way and rounded
  to the nearest block (yosys itself leaves the odd small multiplier in LUTs: the same 2×2
  NPU got 6 or 7 SB_MAC16 from two syntheses). Families whose coefficients predate a feature
  give it weight 0 (for the default configuration, where the requantizer and ELTWISE lanes
  equal ``cols``, their ``cols`` term already counts them).
* **iCE40 logic cells** (one LUT4 and one flip-flop each) are what the UP5K runs out of: a
  flip-flop shares a cell with a LUT only when that LUT feeds it, which differs between the
  parts of the NPU, so the cells have their own linear fit on the structural counts, against
  nextpnr's packing (``nextpnr-ice40 --pack-only``) of the same configurations.
* **Block RAM** is computed, not fitted: each scratchpad (width, depth and write granularity
  from :func:`codesign.rtl.ports.scratchpad`) takes the fewest blocks over the device's block
  shapes (:data:`BRAM_SHAPES`) -- a memory ``W`` bits wide and ``D`` deep in ``w × d`` blocks
  needs ``ceil(W / w) · ceil(D / d)`` of them -- except shallow ones that yosys puts in LUT RAM
  (:data:`LUTRAM_MAX_DEPTH`).
* **ASIC area** = gate equivalents × the target's GE area + scratchpad bits × its SRAM bit area.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
from pathlib import Path

from ..isa import LUT_ENTRIES, HwConfig
from .targets import Target

__all__ = ["features", "FEATURES", "estimate", "memories", "bram_blocks", "BRAM_SHAPES",
           "load_coefficients", "COEFFICIENTS_PATH", "budget", "over_budget"]

COEFFICIENTS_PATH = Path(__file__).with_name("resource_coefficients.json")

#: Block RAM shapes ``(width, depth, write-enable group bits or None)`` per family. iCE40
#: SB_RAM40_4K (4 kbit: 256×16 with a per-bit write mask, 512×8, 1024×4, 2048×2); ECP5 DP16KD
#: (18 kbit: 512×36 and 1024×18 with 9-bit byte enables, 2048×9, 4096×4, 8192×2, 16384×1).
BRAM_SHAPES = {
    "ice40": [(16, 256, 1), (8, 512, None), (4, 1024, None), (2, 2048, None)],
    "ecp5": [(36, 512, 9), (18, 1024, 9), (9, 2048, None), (4, 4096, None), (2, 8192, None),
             (1, 16384, None)],
}


#: Deepest memory that yosys puts in distributed (LUT) RAM instead of block RAM: on ECP5 a
#: 16-deep scratchpad maps to TRELLIS_DPR16X4 (16×4 LUT RAM), a 64-deep one to DP16KD (as
#: measured by bench/calibrate_resources.py); iCE40 has no LUT RAM.
LUTRAM_MAX_DEPTH = {"ice40": 0, "ecp5": 16}


def _addr_bits(depth: int) -> int:
    return max(1, math.ceil(math.log2(depth)))


def features(config: HwConfig) -> dict[str, float]:
    """Structural counts of ``config`` that logic grows with (names are the JSON keys)."""
    r, c = config.rows, config.cols
    depths = [v for f in dataclasses.fields(config) if f.name.endswith("_depth")
              for v in [getattr(config, f.name)]]
    lanes = config.requant_lanes
    return {
        "const": 1.0,
        "pes": float(r * c),
        # yosys' iCE40 flow maps the PE multipliers of a 2-row array to SB_MAC16, of a taller
        # one only the first row's (the others' products feed the psum adders in LUTs), as
        # bench/calibrate_resources.py measures.
        "mapped_pes": float(r * c if r <= 2 else c),
        "dw_taps": float(c if config.dw_width and r == 8 else 0),   # the ninth tap's multipliers
        "cols": float(c),
        "rq_lanes": float(lanes),
        "rq_shared": float(c - lanes),
        "rq_mults": float(lanes * 4 // config.requant_steps),
        # The REQUANT engine's register copy of the PRM word (only with a lane per column).
        "rq_prm_copy": float(c if config.requant_groups == 1 else 0),
        "elt_lanes": float(c if config.eltwise else 0),
        # The GEMV mode: the array's psum bypass (a multiplexer per column) and the MATMUL
        # engine's weight-slot and tag counters.
        "gemv_cols": float(c if config.gemv else 0),
        "act_bytes": float(max(r, c)),
        "skew": float(r * (r - 1) // 2),
        "deskew": float(c * (c - 1) // 2),
        "bus_bytes": float(config.bus_bytes),
        "addr_bits": float(sum(_addr_bits(d) for d in depths)),
    }


#: Feature names in a stable order.
FEATURES = list(features(HwConfig()))


def memories(config: HwConfig) -> dict[str, tuple[int, int, int | None]]:
    """``name -> (width, depth, write granularity)`` of every memory, from the RTL: the
    scratchpads and, with the depthwise mode, the MATMUL engine's two line buffers."""
    from ..rtl.array import X_SHAPE
    from ..rtl.ports import SCRATCHPADS, scratchpad
    out = {}
    for name in SCRATCHPADS:
        sp = scratchpad(config, name)
        out[name] = (sp.word_bits, sp.depth, sp.granularity)
    if config.dw_width:
        for i in range(2):      # rtl/matmul.py: `cols` operands per word, dw_width words
            out[f"line_buffer_{i}"] = (X_SHAPE.width * config.cols, config.dw_width, None)
    for lane in range(config.act_bytes if config.lut_tables else 0):
        # rtl/lut.py: a byte-wide copy of the tables per ACT lane
        out[f"lut_table_{lane}"] = (8, config.lut_tables * LUT_ENTRIES, None)
    return out


def lut_engine_logic(config: HwConfig) -> tuple[int, int]:
    """(LUTs, flip-flops) of the LUT engine (``lut_tables > 0``; the fitted coefficients are
    of NPUs without it), from the RTL's widths: the flip-flops are its instruction fields, read
    and output words, pipeline flags and the pending entries of a table slice (yosys on an 8×8,
    8-byte bus: 251 for 4 tables on the ECP5, 249 for 2 on the iCE40, against 251 and 250
    here); the LUTs are the output word's gating and the write-data merge (two per bit), the
    pending-entry shift, and two per counter and address bit (286 and 274 + 42 carries
    measured, 284 and 282 here)."""
    c = config
    if not c.lut_tables:
        return 0, 0
    act = c.addr_bits(c.act_depth)
    table = c.addr_bits(c.lut_tables * LUT_ENTRIES)
    counters = 16 + 2 * act + table
    pending = 8 * (c.bus_bytes - 1)
    ffs = 4 + counters - table + 16 * c.act_bytes + 10 + pending + table + 3
    luts = 16 * c.act_bytes + pending + 2 * counters
    return luts, ffs


def bram_blocks(width: int, depth: int, granularity: int | None, family: str) -> int:
    """Fewest blocks of ``family`` holding a ``width`` × ``depth`` memory whose writes have
    ``granularity`` bits (None: whole words)."""
    if depth <= LUTRAM_MAX_DEPTH[family]:
        return 0
    best = None
    for w, d, group in BRAM_SHAPES[family]:
        deep = math.ceil(depth / d)
        if granularity is None or granularity >= width:
            n = math.ceil(width / w) * deep
        elif group is not None:
            # Each write lane takes whole enable groups; a block has w // group of them.
            lanes = math.ceil(width / granularity)
            groups = lanes * math.ceil(granularity / group)
            n = math.ceil(groups / (w // group)) * deep
        else:
            # No enables: a block holds bits of one write lane only.
            n = math.ceil(width / granularity) * math.ceil(granularity / w) * deep
        best = n if best is None else min(best, n)
    return best or 0


@functools.cache
def _coefficients(path: str) -> dict:
    return json.loads(Path(path).read_text())


def load_coefficients(path: Path | None = None) -> dict:
    """The fitted coefficients (``resource_coefficients.json``)."""
    return _coefficients(str(path or COEFFICIENTS_PATH))


def _linear(coefs: dict[str, float], feats: dict[str, float]) -> float:
    return sum(coefs.get(k, 0.0) * v for k, v in feats.items())


def _ffs_in_mult_cells(config: HwConfig, f: dict[str, float]) -> int:
    """Flip-flops that MULT18X18D cells hold instead of the fabric (``mult_cell``; the
    coefficients are fitted on inferred multipliers): each PE's weight operand and product, the
    last column's activation operand (the others move on to a neighbour and stay), each tap
    lane's operands and product, each ELTWISE lane's multiplier operand and product (its
    difference stays in the fabric: the product mode's multiplier operand is the difference
    of the cycle before), and with one-cycle requantizer multiplies each lane's rounded
    magnitude and partial products.
    ``f``: the configuration's :func:`features`."""
    if config.mult_cell == "inferred":
        return 0
    from ..isa import MULT_BITS
    from ..rtl.array import W_SHAPE, X_SHAPE
    from ..rtl.eltwise import MULT_SHAPE, PRODUCT_SHAPE
    x, w, p = X_SHAPE.width, W_SHAPE.width, X_SHAPE.width + W_SHAPE.width
    # a24 (MULT_BITS), and the partial products of its 16 + 8-bit chunks by mult's: 32 + 24 +
    # 24 + 16 bits, 4 · MULT_BITS.
    requant = MULT_BITS + 4 * MULT_BITS if config.requant_steps == 1 else 0
    return round(f["pes"] * (w + p) + config.rows * x + f["dw_taps"] * (x + w + p)
                 + f["elt_lanes"] * (MULT_SHAPE.width + PRODUCT_SHAPE.width)
                 + f["rq_lanes"] * requant)


def _ffs_of_deep_pipeline(config: HwConfig) -> int:
    """Flip-flops the deep pipeline adds (:attr:`HwConfig.deep_pipeline`; the coefficients are
    fitted without it), from the RTL widths: the DMA engine's current addresses, POOL's read
    and write port registers and its delayed stage-2 flags, ELTWISE's read and write port
    registers, MATMUL's old ACC word, read ACT word with its stage-1 fields, weight register
    and its load, switch and tap-lane flags, and per requantizer lane the normalize's middle
    stage.
    A sign-extended lane of a write register counts its distinct bits only (yosys merges the
    copies of its sign bit), POOL's ACT byte enables (all or none) as one."""
    if not config.deep_pipeline:
        return 0
    from ..rtl.array import W_SHAPE
    from ..rtl.dma import slice_addr_bits
    from ..rtl.eltwise import PRODUCT_SHAPE
    from ..rtl.matmul import position_layouts
    from ..rtl.pool import SUM_SHAPE

    c = config
    act, acc = c.addr_bits(c.act_depth), c.addr_bits(c.acc_depth)
    dma = slice_addr_bits(c) + c.ext_addr_bits
    pool = ((act + 1) + (4 + max(act, acc))                     # read port; delayed flags
            + (act + 1 + 8 * c.act_bytes) + (acc + 1 + SUM_SHAPE.width * c.cols) + 1)   # writes
    eltwise = ((act + 4) + (2 + acc + (PRODUCT_SHAPE.width + 1) * c.cols)) if c.eltwise else 0
    matmul = (32 * c.cols + 8 * c.act_bytes + position_layouts(c)[1].size
              + W_SHAPE.width * c.cols + 2 + (2 if c.dw_width else 0))
    # Per lane the sign, the magnitude and two leading-zero bits; the valid bit; the turn.
    requant = c.requant_lanes * (1 + 32 + 2) + 1 + (c.requant_groups - 1).bit_length()
    return dma + pool + eltwise + matmul + requant


def estimate(config: HwConfig, target: Target, coefficients: dict | None = None) -> dict:
    """Estimated resources of ``config`` on ``target``.

    FPGA targets: ``{"lut", "ff", "dsp", "bram", "spram"}`` (iCE40 LUT = SB_LUT4, ECP5 LUT =
    LUT4 + 2 per CCU2C, as :func:`codesign.synth.fpga_resources` counts yosys' cells), and on
    iCE40 ``"lc"``: logic cells (LUT4 + flip-flop), as nextpnr packs them, harness included.
    ASIC: ``{"ge", "ff", "memory_bits", "logic_mm2", "sram_mm2", "area_mm2"}``.
    """
    families = (coefficients or load_coefficients())["families"]
    if target.family not in families:
        raise ValueError(f"no resource coefficients for family {target.family!r}; run "
                         f"bench/calibrate_resources.py --families {target.family}")
    coefs = families[target.family]["coefficients"]
    feats = features(config)
    mems = memories(config)
    if target.family == "asic":
        ge = _linear(coefs["ge"], feats)
        bits = sum(w * d for w, d, _ in mems.values())
        logic = ge * target.ge_um2 * 1e-6
        sram = bits * target.sram_um2_per_bit * 1e-6
        ff = round(_linear(coefs["ff"], feats)) + lut_engine_logic(config)[1]
        return {"ge": round(ge), "ff": ff, "memory_bits": bits,
                "logic_mm2": logic, "sram_mm2": sram, "area_mm2": logic + sram}
    out = {key: round(_linear(coefs[key], feats)) for key in ("lut", "ff")}
    out["ff"] += _ffs_of_deep_pipeline(config) - _ffs_in_mult_cells(config, feats)
    lut_luts, lut_ffs = lut_engine_logic(config)
    out["lut"] += lut_luts
    out["ff"] += lut_ffs
    if "lc" in coefs:
        # iCE40 logic cells (nextpnr's packing): a LUT and a flip-flop share one only when the
        # LUT feeds the flip-flop, which differs between the parts of the NPU, so the cells
        # have their own fit on the structural counts.
        # The LUT engine's cells: counted as if none of its LUTs shared a cell with a
        # flip-flop (an upper bound; not measured with nextpnr).
        out["lc"] = round(_linear(coefs["lc"], feats)) + lut_luts + lut_ffs
    out["dsp"] = round(_linear(coefs["dsp"], feats))
    out["bram"] = sum(bram_blocks(w, d, g, target.family) for w, d, g in mems.values())
    out["spram"] = 0
    return out


def budget(target: Target) -> dict[str, float]:
    """What ``target`` offers, in the keys of :func:`estimate` (and of ``codesign synth``)."""
    if target.family == "asic":
        return {"area_mm2": target.area_mm2}
    cells = {"lc": target.luts} if target.family == "ice40" else {}
    return {"lut": target.luts, "ff": target.ffs, **cells, "dsp": target.dsps,
            "bram": target.bram_blocks, "spram": target.spram_blocks}


def over_budget(resources: dict, target: Target) -> list[str]:
    """The resources of ``resources`` that exceed ``target`` (``"dsp 104 > 72"``); empty when
    the design fits."""
    return [f"{k} {resources[k]:g} > {v:g}" for k, v in budget(target).items()
            if resources.get(k, 0) > v]
