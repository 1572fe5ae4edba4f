"""Device budgets: what an NPU may use on one FPGA or ASIC, and how to run the tools for it.

A :class:`Target` is the resources of one device (LUTs, flip-flops, multiplier blocks, block RAM,
single-port RAM), the strings ``codesign synth`` passes to yosys / nextpnr, and a default clock
goal. The built-ins are in :data:`BUILTIN_TARGETS`; :func:`load_target` also reads a user's TOML or
JSON file with the same fields::

    name = "ecp5-25k-csfbga"
    family = "ecp5"
    part = "LFE5U-25F"
    device = "25k"            # nextpnr-ecp5 --25k
    package = "CSFBGA285"
    clock_pin = ""            # let nextpnr pick (give a PCLK ball of the package if it fails)
    luts = 24288
    ffs = 24288
    dsps = 28
    bram_blocks = 56
    bram_bits = 18432
    clock_mhz = 100

Numbers and where they come from
--------------------------------
* iCE40 UltraPlus: Lattice, *iCE40 UltraPlus Family Data Sheet*, FPGA-DS-02008 (Table 1.1,
  iCE40UP5K): 5280 logic cells (one LUT4 + one flip-flop each), 8 DSP blocks (SB_MAC16),
  30 EBR blocks of 4 kbit (120 kbit), 4 SPRAM blocks of 256 kbit (1024 kbit); package SG48.
  nextpnr-ice40 reports the same totals (ICESTORM_LC 5280, _DSP 8, _RAM 30, _SPRAM 4).
* ECP5: Lattice, *ECP5 and ECP5-5G Family Data Sheet*, FPGA-DS-02012 (Table 1.1): LFE5U-25F /
  45F / 85F have 24K / 44K / 84K LUTs, 56 / 108 / 208 sysMEM EBR blocks of 18 kbit and
  28 / 72 / 156 18×18 multipliers. The exact LUT counts (24288 / 43848 / 83640, one flip-flop
  per LUT) are the totals nextpnr-ecp5 reports for TRELLIS_COMB / TRELLIS_FF on those devices;
  the multiplier and EBR totals agree with its MULT18X18D / DP16KD counts. CABGA256 is offered
  for the 25F and 45F, CABGA381 for all three (prjtrellis ``devices.json``). The clock input is
  put on a primary clock ball (ECP5 data sheet: PCLKT pins reach the global clock network over
  dedicated routing): A7 (PCLKT0_0) on CABGA256, G2 (PCLKT6_1) on CABGA381. Left to nextpnr,
  the clock pad could land on an ordinary I/O, from which router2 sometimes finds no path to the
  global buffer (``Failed to route arc 0.0 of net 'clk$TRELLIS_IO_IN'`` on the 85F).
* ASIC: a generic standard-cell target. Area is estimated from yosys generic synthesis: the
  transistor count of each gate is yosys' own CMOS cost table (``kernel/cost.h``,
  ``CellCosts::cmos_gate_cost``: NOT 2, NAND/NOR 4, AND/OR 6, XOR/XNOR 12, MUX 12, ...; a D
  flip-flop counts 16, as ``stat -tech cmos`` does), converted to gate equivalents (GE) at 4
  transistors per GE (a CMOS NAND2), one GE being the area of a NAND2 with drive 1:
  3.7536 µm² for SkyWater ``sky130_fd_sc_hd__nand2_1`` (``sky130_fd_sc_hd__tt_025C_1v80.lib``).
  Scratchpads are SRAM macros, not gates: 23.2 µm² per bit, the OpenRAM sky130 256×32 (1RW1R)
  macro of the SkyWater PDK (479 × 397 µm for 8192 bits). The default budget (10 mm²) and clock
  (50 MHz) are a small multi-project-wafer slot in sky130; give your own in a target file.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..timing import MemoryTiming, bus_timing

__all__ = ["Target", "BUILTIN_TARGETS", "FAMILIES", "load_target"]

#: Device families ``codesign synth`` knows how to run.
FAMILIES = ("ice40", "ecp5", "asic")


@dataclass(frozen=True)
class Target:
    """One device's budget and tool settings.

    Parameters
    ----------
    name
        Short identifier (``ecp5-45k``).
    family
        ``"ice40"``, ``"ecp5"`` or ``"asic"``: picks the yosys script and the nextpnr binary.
    part
        The vendor's part name (for reports and vendor project scripts).
    device, package
        nextpnr device option without the dashes (``up5k`` → ``--up5k``, ``45k`` → ``--45k``) and
        its ``--package`` value. Empty for ASIC targets.
    clock_pin
        Package pin (ball) of the clock input, a dedicated clock pin; empty: nextpnr picks one.
    luts, ffs
        Logic cells / LUT4s and flip-flops.
    dsps
        Hard multiplier blocks: SB_MAC16 (iCE40) or MULT18X18D (ECP5).
    bram_blocks, bram_bits
        Block RAMs and bits per block (EBR: 4096 on iCE40, 18432 on ECP5).
    spram_blocks, spram_bits
        Single-port RAM blocks (iCE40 UltraPlus SPRAM) and bits per block; 0 where absent.
    clock_mhz
        Default clock goal passed to nextpnr as ``--freq``.
    area_mm2, ge_um2, sram_um2_per_bit
        ASIC only: the area budget, the area of one gate equivalent (NAND2) and of one SRAM bit.
    mem_latency
        The external memory's read latency in NPU cycles, from a read request on the bus to its
        first data (1: an ideal memory on the native port, the default).
    mem_bytes_per_cycle
        Its sustained bandwidth in bytes per NPU cycle (0: the NPU's bus width, full speed);
        e.g. 2 for a 16-bit SDRAM clocked with the NPU.
    """

    name: str
    family: str
    part: str = ""
    device: str = ""
    package: str = ""
    clock_pin: str = ""
    luts: int = 0
    ffs: int = 0
    dsps: int = 0
    bram_blocks: int = 0
    bram_bits: int = 0
    spram_blocks: int = 0
    spram_bits: int = 0
    clock_mhz: float = 100.0
    area_mm2: float = 0.0
    ge_um2: float = 0.0
    sram_um2_per_bit: float = 0.0
    mem_latency: int = 1
    mem_bytes_per_cycle: float = 0.0

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name:
            raise ValueError("name must be a non-empty string")
        if self.family not in FAMILIES:
            raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {self.family!r}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type == "int" and (not isinstance(value, int) or isinstance(value, bool)
                                    or value < 0):
                raise ValueError(f"{f.name} must be a non-negative integer, not {value!r}")
            if f.type == "float" and (not isinstance(value, int | float)
                                      or isinstance(value, bool) or value < 0):
                raise ValueError(f"{f.name} must be a non-negative number, not {value!r}")
            if f.type == "str" and not isinstance(value, str):
                raise ValueError(f"{f.name} must be a string, not {value!r}")
        if self.clock_mhz <= 0:
            raise ValueError(f"clock_mhz must be positive, not {self.clock_mhz!r}")
        if self.mem_latency < 1:
            raise ValueError(f"mem_latency must be at least 1, not {self.mem_latency!r}")
        if self.is_fpga:
            for name in ("device", "package", "luts", "ffs", "bram_blocks", "bram_bits"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required for a {self.family} target")
            if bool(self.spram_blocks) != bool(self.spram_bits):
                raise ValueError("spram_blocks and spram_bits must be given together")
        else:
            for name in ("area_mm2", "ge_um2", "sram_um2_per_bit"):
                if not getattr(self, name):
                    raise ValueError(f"{name} is required for an asic target")

    @property
    def is_fpga(self) -> bool:
        return self.family != "asic"

    @property
    def mult_cell(self) -> str:
        """How an NPU built for this target makes its multipliers
        (:attr:`codesign.isa.HwConfig.mult_cell`): the ECP5's MULT18X18D cells hold their
        operand and product registers only when instantiated; elsewhere synthesis does as well
        from ``*`` (``synth_ice40 -dsp`` packs the registers into the SB_MAC16)."""
        return "MULT18X18D" if self.family == "ecp5" else "inferred"

    @property
    def deep_pipeline(self) -> bool:
        """Whether an NPU built for this target has the extra pipeline registers of
        :attr:`codesign.isa.HwConfig.deep_pipeline`: on the ECP5 they shorten the paths that
        limit its fmax (long routes to block RAMs spread over the die); a small iCE40 has no
        logic cells to spare for them, and an ASIC's area model does not need them."""
        return self.family == "ecp5"

    @property
    def ideal_memory(self) -> bool:
        """Whether the target's memory answers like the native port (latency 1, full width)."""
        return self.mem_latency == 1 and not self.mem_bytes_per_cycle

    def memory_timing(self, config) -> MemoryTiming:
        """The target's memory as ``config``'s core sees it through its bus
        (:class:`codesign.timing.MemoryTiming`)."""
        rate = (1.0 if not self.mem_bytes_per_cycle
                else min(1.0, self.mem_bytes_per_cycle / config.bus_bytes))
        return bus_timing(config, self.mem_latency, rate)

    @property
    def bram_total_bits(self) -> int:
        return self.bram_blocks * self.bram_bits

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: A primary clock (PCLKT) ball of each ECP5 package the built-ins use (module docstring).
_ECP5_CLOCK_PIN = {"CABGA256": "A7", "CABGA381": "G2"}


def _ecp5(size: str, luts: int, dsps: int, ebr: int, package: str) -> Target:
    return Target(name=f"ecp5-{size}", family="ecp5", part=f"LFE5U-{size[:-1]}F", device=size,
                  package=package, clock_pin=_ECP5_CLOCK_PIN[package], luts=luts, ffs=luts,
                  dsps=dsps, bram_blocks=ebr, bram_bits=18 * 1024, clock_mhz=100.0)


#: The built-in targets by name (numbers: see the module docstring).
BUILTIN_TARGETS: dict[str, Target] = {t.name: t for t in (
    Target(name="ice40-up5k", family="ice40", part="iCE40UP5K", device="up5k", package="sg48",
           luts=5280, ffs=5280, dsps=8, bram_blocks=30, bram_bits=4 * 1024,
           spram_blocks=4, spram_bits=256 * 1024, clock_mhz=48.0),
    _ecp5("25k", luts=24288, dsps=28, ebr=56, package="CABGA256"),
    _ecp5("45k", luts=43848, dsps=72, ebr=108, package="CABGA256"),
    _ecp5("85k", luts=83640, dsps=156, ebr=208, package="CABGA381"),
    # A ULX3S-like board: the ECP5-85k with a 16-bit SDR SDRAM (a controller's read latency of
    # about 10 cycles; 2 bytes per cycle).
    dataclasses.replace(_ecp5("85k", luts=83640, dsps=156, ebr=208, package="CABGA381"),
                        name="ulx3s-85k", mem_latency=10, mem_bytes_per_cycle=2.0),
    Target(name="asic", family="asic", part="generic standard cells (sky130 areas)",
           clock_mhz=50.0, area_mm2=10.0, ge_um2=3.7536, sram_um2_per_bit=23.2),
)}

_FIELDS = {f.name for f in dataclasses.fields(Target)}


def _from_mapping(data, source: str) -> Target:
    if not isinstance(data, dict):
        raise InputError(f"{source}: a target file must hold one table of fields, "
                         f"not {type(data).__name__}")
    unknown = sorted(set(data) - _FIELDS)
    if unknown:
        raise InputError(f"{source}: unknown target field(s) {', '.join(unknown)} "
                         f"(known: {', '.join(sorted(_FIELDS))})")
    missing = [k for k in ("name", "family") if k not in data]
    if missing:
        raise InputError(f"{source}: target field(s) {', '.join(missing)} missing")
    try:
        return Target(**data)
    except ValueError as err:
        raise InputError(f"{source}: {err}") from None


def load_target(name_or_path: str | Path) -> Target:
    """A built-in target by name, or a user target from a ``.toml`` / ``.json`` file.

    Raises
    ------
    InputError
        Unknown name, unreadable or malformed file, or invalid fields (one-line message).
    """
    if isinstance(name_or_path, str) and name_or_path in BUILTIN_TARGETS:
        return BUILTIN_TARGETS[name_or_path]
    path = Path(name_or_path)
    if path.suffix.lower() not in (".toml", ".json"):
        raise InputError(f"unknown target {str(name_or_path)!r}: use one of "
                         f"{', '.join(BUILTIN_TARGETS)} or a .toml/.json target file")
    try:
        text = path.read_text()
    except OSError as err:
        raise InputError(f"{path}: cannot read target file ({err.strerror or err})") from None
    try:
        if path.suffix.lower() == ".toml":
            data = tomllib.loads(text)
        else:
            data = json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as err:
        first = str(err).splitlines()[0]
        raise InputError(f"{path}: not valid {path.suffix[1:].upper()} ({first})") from None
    return _from_mapping(data, str(path))
