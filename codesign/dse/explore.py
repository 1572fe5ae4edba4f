"""Design-space exploration: every candidate NPU configuration for one model on one target.

Each point is a :class:`~codesign.isa.HwConfig`: array shape (square and not), DMA width,
scratchpad depths and whether the depthwise mode is built. Where such a configuration is over
the target's budget, its reduced variants are candidates too (:data:`REDUCED`: one requantizer
lane taking turns over the columns, its multiply over 1, 2 or 4 cycles, with or without the
ELTWISE engine) -- on a small device (the iCE40 UP5K's 8 DSP blocks and 5280 logic cells) only
those fit. For each, the model is compiled
(a configuration that cannot run it is infeasible) and costed without running any tool:

* latency: cycles from the cycle-exact timing model (:func:`codesign.timing.schedule`, equal
  to the RTL's CYCLES), at the target's clock goal;
* resources: :func:`codesign.dse.resources.estimate` (LUT/FF/DSP/BRAM, or ASIC area), checked
  against the target's budget;
* energy: :func:`codesign.dse.energy.energy_per_inference`.

The Pareto front is the set of feasible points that no other feasible point beats or equals on
all three of latency, resources (LUTs on FPGAs, mm² on ASICs) and energy.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

from ..compiler import compile_graph
from ..errors import InputError, TilingError
from ..isa import HwConfig
from ..timing import reads_needed, schedule
from .energy import energy_per_inference
from .resources import estimate, over_budget
from .targets import Target

__all__ = ["Point", "OBJECTIVES", "COMPILER_FIELDS", "candidates", "compile_key", "built_for",
           "evaluate", "explore", "pareto", "best", "resources_text", "write_results"]

#: What ``generate --target`` may minimize.
OBJECTIVES = ("latency", "energy", "resources", "edp")

#: Array shapes considered (rows × cols).
SHAPES = [(2, 2), (2, 4), (4, 2), (4, 4), (4, 8), (8, 4), (8, 8), (8, 16), (16, 8), (16, 16)]
#: Scratchpad sets (ACT, WGT, ACC words); PRM is 64 words throughout. (4096, 256, 256) holds a
#: whole DS-CNN activation tensor on a 2-column array in small devices' block RAM.
MEMORIES = [(1024, 256, 256), (2048, 512, 512), (4096, 256, 256), (4096, 2048, 1024),
            (8192, 4096, 2048)]
#: Reduced variants (requantizer lanes, requant_steps, with the ELTWISE engine and the GEMV
#: mode) of a configuration that is over the target's budget, smallest last.
REDUCED = [(1, 1, True), (1, 2, True), (1, 4, True), (1, 1, False), (1, 2, False), (1, 4, False)]


@dataclasses.dataclass
class Point:
    """One evaluated configuration."""
    config: HwConfig
    feasible: bool
    reason: str = ""
    cycles: int = 0
    latency_ms: float = 0.0
    energy_uj: float = 0.0
    resources: dict = dataclasses.field(default_factory=dict)

    def size(self, target: Target) -> float:
        """The resource axis of the front: LUTs on an FPGA, mm² on an ASIC."""
        return self.resources.get("area_mm2" if target.family == "asic" else "lut", 0.0)

    def to_json(self, target: Target) -> dict:
        return {"config": dataclasses.asdict(self.config), "feasible": self.feasible,
                "reason": self.reason, "cycles": self.cycles,
                "latency_ms": self.latency_ms, "energy_uj": self.energy_uj,
                "resources": self.resources, "size": self.size(target)}


def candidates(shapes=SHAPES, memories=MEMORIES, target: Target | None = None
               ) -> list[HwConfig]:
    """The design space: shapes × DMA widths × scratchpad sets × depthwise mode on/off, and
    with a ``target``, the :data:`REDUCED` variants of those over its budget (by the resource
    model: nothing is compiled here)."""
    out = []
    for (rows, cols), (act, wgt, acc) in itertools.product(shapes, memories):
        for bus in sorted({min(cols, 4), min(cols, 8)}):
            for dw in ((0, 64) if rows >= 8 else (0,)):
                try:
                    out.append(HwConfig(rows=rows, cols=cols, bus_bytes=bus, act_depth=act,
                                        wgt_depth=max(wgt, rows + 1), acc_depth=acc,
                                        prm_depth=64, dw_width=dw))
                except ValueError:
                    continue
    if target is None:
        return out
    reduced = []
    for config in out:
        if over_budget(estimate(config, target), target):
            reduced += [dataclasses.replace(config, requant_groups=config.cols // lanes,
                                            requant_steps=steps,
                                            eltwise=full, gemv=full)
                        for lanes, steps, full in REDUCED]
    return out + reduced


def for_memory(config: HwConfig, target: Target) -> HwConfig:
    """``config`` with a bus and enough outstanding reads for ``target``'s memory: a memory
    slower than the native port's needs a bus (AXI4 unless ``config`` names one), and
    ``max_reads`` is sized to stream at the memory's rate."""
    if target.ideal_memory:
        return config
    if config.bus == "native":
        config = dataclasses.replace(config, bus="axi4")
    return dataclasses.replace(config, max_reads=reads_needed(target.memory_timing(config)))


#: The :class:`~codesign.isa.HwConfig` fields that :func:`~codesign.compiler.compile_graph`
#: reads (directly or through the derived widths ``act_bytes``, ``word_bytes``, ``slices``,
#: ``depth``, ``lut_depth``, ``insn_words``, ``dw_weight_words``), in the compiler, its
#: prefetch and hazard passes and the GEMV stream length it takes from the timing model. The
#: others -- requantizer sharing (``requant_groups``, ``requant_steps``), ``mult_cell``,
#: ``deep_pipeline`` and the bus wrapper (``bus``, ``max_reads``, ``axi_id_bits``,
#: ``wb_classic``) -- change the hardware and its timing, not the program: configurations that
#: differ only in them share one compilation (tests/test_explore_parallel.py checks both this
#: list against the compiler's source and the programs themselves).
COMPILER_FIELDS = ("rows", "cols", "bus_bytes", "act_depth", "wgt_depth", "acc_depth",
                   "prm_depth", "dw_width", "eltwise", "gemv", "lut_tables")


def compile_key(config: HwConfig) -> tuple:
    """What the program compiled for ``config`` depends on (:data:`COMPILER_FIELDS`)."""
    return tuple(getattr(config, name) for name in COMPILER_FIELDS)


def built_for(graph, config: HwConfig, target: Target) -> HwConfig:
    """``config`` as :func:`evaluate` costs it on ``target``: sized for ``graph`` (a LUT engine
    when it has lookup tables), with the target's multiplier cells, pipeline depth and memory
    (:func:`for_memory`)."""
    from ..compiler.lower import sized_for

    return for_memory(dataclasses.replace(sized_for(graph, config),
                                          mult_cell=target.mult_cell,
                                          deep_pipeline=target.deep_pipeline), target)


def _compiled(graph, config: HwConfig, cache: dict | None):
    """``compile_graph(graph, config)``, or the program last compiled (kept in ``cache``) if
    its configuration had the same :func:`compile_key`, given ``config`` as its own; a
    :class:`TilingError` is remembered likewise. One program is kept (a small array's DS-CNN
    program holds 10^5 instructions): callers evaluate the configurations of one key in a row."""
    if cache is None:
        return compile_graph(graph, config)
    key = compile_key(config)
    if key not in cache:
        cache.clear()
        try:
            cache[key] = compile_graph(graph, config)
        except TilingError as err:
            cache[key] = err
    found = cache[key]
    if isinstance(found, TilingError):
        raise found
    return dataclasses.replace(found, config=config)


def evaluate(graph, config: HwConfig, target: Target, *, cost_all: bool = False,
             cache: dict | None = None) -> Point:
    """Cost ``config``, built for ``target`` (:func:`built_for`), running ``graph`` on it; a
    configuration over the target's budget is not compiled (its latency and energy stay 0)
    unless ``cost_all``. ``cache`` (a dict kept across calls with the same ``graph``) shares one
    compilation between consecutive configurations of one :func:`compile_key`."""
    config = built_for(graph, config, target)
    memory = target.memory_timing(config)
    resources = estimate(config, target)
    over = over_budget(resources, target)
    if over and not cost_all:
        return Point(config, False, "over budget: " + ", ".join(over), resources=resources)
    try:
        program = _compiled(graph, config, cache)
    except TilingError as err:
        return Point(config, False, f"does not map: {err}", resources=resources)
    cycles = schedule(program.insns, config, memory=memory).cycles
    return Point(config, not over, "over budget: " + ", ".join(over) if over else "",
                 cycles, cycles / (target.clock_mhz * 1e3),
                 energy_per_inference(program).total_uj, resources)


def explore(graph, target: Target, configs: list[HwConfig] | None = None, *, jobs: int = 1,
            scheduler: str | None = None) -> list[Point]:
    """Evaluate every candidate (by default :func:`candidates` for ``target``), in candidate
    order: in this process (``jobs=1``), on ``jobs`` local processes, or on the Dask cluster
    whose scheduler is at ``scheduler`` (:mod:`codesign.dse.parallel`); the points are the
    same whichever runs them."""
    from .parallel import evaluate_all

    return evaluate_all(graph, configs or candidates(target=target), target, jobs=jobs,
                        scheduler=scheduler)


def pareto(points: list[Point], target: Target) -> list[Point]:
    """Feasible points not dominated on (latency, size, energy), fastest first."""
    feasible = [p for p in points if p.feasible]

    def key(p):
        return (p.cycles, p.size(target), p.energy_uj)

    front = [p for p in feasible
             if not any(all(a <= b for a, b in zip(key(q), key(p), strict=True))
                        and key(q) != key(p) for q in feasible)]
    return sorted(front, key=key)


def best(points: list[Point], target: Target, objective: str) -> list[Point]:
    """Feasible points ordered by ``objective`` (ties broken by the other costs).

    Raises
    ------
    InputError
        If no point fits the target.
    """
    if objective not in OBJECTIVES:
        raise InputError(f"--objective must be one of {', '.join(OBJECTIVES)}, "
                         f"not {objective!r}")
    feasible = [p for p in points if p.feasible]
    if not feasible:
        reasons = sorted({p.reason.split(":")[0] for p in points})
        smallest = min(points, key=lambda p: p.size(target))
        raise InputError(
            f"no NPU configuration fits {target.name} for this model ({'; '.join(reasons)}); "
            f"the smallest needs {resources_text(smallest.resources)}: choose a larger target")
    keys = {
        "latency": lambda p: (p.cycles, p.size(target), p.energy_uj),
        "energy": lambda p: (p.energy_uj, p.cycles, p.size(target)),
        "resources": lambda p: (p.size(target), p.cycles, p.energy_uj),
        "edp": lambda p: (p.energy_uj * p.cycles, p.size(target)),
    }
    return sorted(feasible, key=keys[objective])


def resources_text(resources: dict) -> str:
    """``lut 123, ff 45, ...`` (floats with 3 significant digits)."""
    return ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in resources.items())


def table(points: list[Point], target: Target) -> str:
    """A Markdown table of ``points``."""
    size = "area mm²" if target.family == "asic" else "LUT"
    head = (f"| array | bus B | ACT/WGT/ACC words | dw | requant lanes×steps | cycles | "
            f"latency ms @ {target.clock_mhz:g} MHz | energy µJ | {size} | resources |")
    lines = [head, "|" + "---|" * 10]
    for p in points:
        c = p.config
        lines.append(f"| {c.rows}x{c.cols} | {c.bus_bytes} | {c.act_depth}/{c.wgt_depth}/"
                     f"{c.acc_depth} | {c.dw_width} | {c.requant_lanes}×{c.requant_steps} | "
                     f"{p.cycles:,} | {p.latency_ms:.3f} | "
                     f"{p.energy_uj:.1f} | {p.size(target):.4g} | "
                     f"{resources_text(p.resources)} |")
    return "\n".join(lines) + "\n"


#: Most front points labelled with their configuration (more would overlap unreadably).
MAX_LABELS = 12


def point_label(config: HwConfig) -> str:
    """A short name of a configuration for a plot: ``8x8 b8``, with ``r1x4`` for a requantizer
    of 1 lane taking 4 cycles and ``-e`` when the ELTWISE engine is left out."""
    text = f"{config.rows}x{config.cols} b{config.bus_bytes}"
    if (config.requant_lanes, config.requant_steps) != (config.cols, 1):
        text += f" r{config.requant_lanes}x{config.requant_steps}"
    return text + ("" if config.eltwise else " -e")


def _labelled(front: list[Point]) -> list[tuple[Point, str]]:
    """The front points to label and their labels: at most :data:`MAX_LABELS` spread along it,
    and of neighbours with the same label (they differ in scratchpads only) the first."""
    if len(front) > MAX_LABELS:
        step = (len(front) - 1) / (MAX_LABELS - 1)
        front = [front[round(i * step)] for i in range(MAX_LABELS)]
    out: list[tuple[Point, str]] = []
    for p in front:
        label = point_label(p.config)
        if not out or out[-1][1] != label:
            out.append((p, label))
    return out


def capacity(target: Target) -> dict:
    """The target's capacity on the front's size axis (:meth:`Point.size`): ``value`` (LUTs,
    or the area budget in mm²; 0 if it has none) and its ``unit``."""
    from .resources import budget

    key, unit = ("area_mm2", "mm²") if target.family == "asic" else ("lut", "LUTs")
    return {"value": budget(target).get(key, 0), "unit": unit}


def _device_limit(ax, target: Target) -> bool:
    """The target's capacity on the size axis (:func:`capacity`) as a labelled vertical line;
    False if it has none."""
    limit, unit = (capacity(target)[k] for k in ("value", "unit"))
    if not limit:
        return False
    ax.axvline(limit, color="0.25", linestyle="--", linewidth=1)
    ax.annotate(f"{target.name}: {limit:,g} {unit}", (limit, 0),
                xycoords=("data", "axes fraction"), xytext=(-4, 4), textcoords="offset points",
                rotation=90, ha="right", va="bottom", fontsize=8, color="0.25")
    return True


def plot(points: list[Point], front: list[Point], target: Target, path: Path) -> None:
    """:func:`pareto_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = pareto_figure(points, front, target)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)


def pareto_figure(points: list[Point], front: list[Point], target: Target):
    """Latency vs resources (colour: energy) with the Pareto front, its points labelled with
    their configuration (:func:`point_label`), and the device's capacity: a matplotlib
    figure (the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    feasible = [p for p in points if p.feasible]
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    others = [p for p in points if not p.feasible and p.cycles]
    if others:
        ax.scatter([p.size(target) for p in others], [p.latency_ms for p in others],
                   marker="x", color="0.7")
    sc = ax.scatter([p.size(target) for p in feasible], [p.latency_ms for p in feasible],
                    c=[p.energy_uj for p in feasible], cmap="viridis", s=18)
    by_size = sorted(front, key=lambda p: p.size(target))
    ax.plot([p.size(target) for p in by_size], [p.latency_ms for p in by_size],
            color="crimson", marker="o", fillstyle="none")
    for i, (p, label) in enumerate(_labelled(by_size)):
        # Alternately right and left of the front so that neighbours do not overlap.
        ax.annotate(label, (p.size(target), p.latency_ms), xytext=(-6 if i % 2 else 6, 0),
                    textcoords="offset points", ha="right" if i % 2 else "left", va="center",
                    fontsize=7, color="crimson")
    limited = _device_limit(ax, target)
    fig.colorbar(sc, ax=ax, label="energy per inference (µJ)")
    ax.set_xlabel("area (mm²)" if target.family == "asic" else "LUTs (estimated)")
    ax.set_ylabel(f"latency (ms at {target.clock_mhz:g} MHz)")
    ax.set_yscale("log")
    ax.set_title(f"design space on {target.name}")
    # Legend entries drawn as the points look: a fit's colour is its energy (the colour bar),
    # so its swatch is a neutral dot that says so.
    handles = [Line2D([], [], linestyle="", marker="o", color="0.45", markersize=5,
                      label="fits (colour: energy)"),
               Line2D([], [], color="crimson", marker="o", fillstyle="none",
                      label="Pareto front")]
    if limited:
        handles.append(Line2D([], [], color="0.25", linestyle="--", label="device capacity"))
    if others:
        handles.insert(1, Line2D([], [], linestyle="", marker="x", color="0.7",
                                 label="over budget"))
    # Below the plot: inside it, it would hide points or the capacity line.
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.13),
              ncol=len(handles), fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


def write_results(points: list[Point], front: list[Point], target: Target,
                  outdir: Path) -> None:
    """explore.json (every point), pareto.md (the front) and pareto.png into ``outdir``."""
    outdir.mkdir(parents=True, exist_ok=True)
    (outdir / "explore.json").write_text(json.dumps(
        {"target": target.to_dict(), "points": [p.to_json(target) for p in points],
         "pareto": [points.index(p) for p in front]}, indent=2) + "\n")
    (outdir / "pareto.md").write_text(table(front, target))
    plot(points, front, target, outdir / "pareto.png")
