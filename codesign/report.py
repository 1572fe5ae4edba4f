"""The design report: the per-layer numbers of report.json, and report.html rendered from it.

:func:`analyse` computes, when ``generate`` compiles a model, what report.json carries beyond
the model and the configuration: per layer the cycles of the timing model
(:func:`codesign.timing.layer_cycles`), the MAC utilization, the external traffic of its DMA
instructions and its energy (:func:`codesign.dse.energy.energy_per_inference`); the instruction
mix; the energy breakdown; the memory timing those numbers assume and the roofline's two roofs.

:func:`render_html` turns a report.json -- as ``generate`` wrote it and ``simulate`` and
``synth`` extended it -- into one self-contained page: inline CSS and inline SVG plots, no
script, no external URL. It reads nothing but the report, so any of the three commands can
re-render it, and a section whose numbers are absent (a design not yet simulated or
synthesized, a report.json of an older codesign) is left out. :func:`write_reports` replaces
report.json and report.html, each atomically. docs/report.md describes every field.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Iterable
from pathlib import Path

from .isa import ENGINE, HwConfig, Opcode, decode
from .outdir import write_atomically
from .timing import NATIVE, MemoryTiming, bus_timing, layer_cycles, schedule

__all__ = ["REPORT_HTML", "analyse", "report_memory", "render_html", "write_reports",
           "roofline_svg", "energy_svg", "pareto_svg"]

#: The page, beside report.json in OUTDIR.
REPORT_HTML = "report.html"


# -- the numbers ----------------------------------------------------------------------------------

def report_memory(config: HwConfig, target=None) -> tuple[MemoryTiming, str]:
    """The external memory the report's cycles assume, and a phrase describing it: the native
    port (where the timing model is exact); behind a bus, ``target``'s memory
    (:meth:`~codesign.dse.targets.Target.memory_timing`) or, without a target, a memory of read
    latency 1 that streams a word per cycle."""
    if config.bus == "native":
        return NATIVE, "the native port (read latency 1, a word per cycle)"
    if target is not None:
        return target.memory_timing(config), f"{target.name}'s memory behind the {config.bus} bus"
    return bus_timing(config), f"a memory of read latency 1 behind the {config.bus} bus"


def _layer_row(layer, cycles: int, energy, config: HwConfig) -> dict:
    """One entry of report.json's "layers" (the keys of older reports first)."""
    read, written = energy.counts.dram_read_bytes, energy.counts.dram_write_bytes
    ext = read + written
    return {"name": layer.name, "kind": layer.kind, "macs": layer.macs,
            "instructions": layer.n_insns, "cycles": cycles,
            "utilization": layer.macs / (cycles * config.rows * config.cols) if cycles else 0.0,
            "macs_per_cycle": layer.macs / cycles if cycles else 0.0,
            "ext_read_bytes": read, "ext_write_bytes": written, "ext_bytes": ext,
            # MACs per byte of external traffic; None: the layer moves nothing off chip.
            "intensity": layer.macs / ext if ext else None,
            "energy_uj": energy.total_pj * 1e-6}


def _instruction_mix(program, durations: list[int]) -> list[dict]:
    """Count and engine cycles (start to done, :func:`codesign.timing.engine_cycles`) of each
    opcode in one inference, in opcode order."""
    mix: dict[Opcode, list[int]] = {}
    for word, cycles in zip(program.insns, durations + [0], strict=True):
        opcode = decode(word)[0]
        entry = mix.setdefault(opcode, [0, 0])
        entry[0] += 1
        entry[1] += cycles
    return [{"opcode": op.name, "engine": ENGINE.get(op, "controller"), "count": n,
             "engine_cycles": cycles}
            for op, (n, cycles) in sorted(mix.items(), key=lambda item: item[0].value)]


def analyse(program, memory: MemoryTiming = NATIVE, memory_text: str = "") -> dict:
    """The report.json sections of ``program`` (one inference) with external memory behind
    ``memory``: "layers", "timing", "instruction_mix" and "energy"."""
    from .dse.energy import energy_per_inference

    config = program.config
    sched = schedule(program.insns, config, memory=memory)
    per_layer = layer_cycles(program, memory)
    energy = energy_per_inference(program)
    layers = [_layer_row(layer, cycles, e, config) for layer, cycles, e
              in zip(program.layers, per_layer, energy.layers, strict=True)]
    return {
        "layers": layers,
        "timing": {
            "memory": {"description": memory_text, "bus": config.bus,
                       "read_latency": memory.latency,
                       "beats_per_cycle": memory.beats_per_cycle,
                       "write_latency": memory.write_latency},
            "cycles_per_inference": sched.cycles,
            # Outside every layer: the fetch and dispatch of the final END.
            "other_cycles": sched.cycles - sum(per_layer),
            "peak_macs_per_cycle": config.rows * config.cols,
            "bandwidth_bytes_per_cycle": config.bus_bytes * memory.read_rate(config.max_reads),
        },
        "instruction_mix": _instruction_mix(program, sched.durations),
        # (JSON has no infinity: a model without MACs has no energy per MAC.)
        "energy": {"total_uj": energy.total_uj,
                   "pj_per_mac": energy.pj_per_mac if energy.useful_macs else None,
                   "components_pj": energy.energy_pj, "grouped_pj": energy.grouped(),
                   "instruction_fetch_bytes": energy.counts.fetch_bytes},
    }


# -- writing --------------------------------------------------------------------------------------

def write_reports(outdir: Path, report: dict) -> None:
    """Write ``report`` as report.json and render report.html from it, each atomically (both
    rendered before either is replaced)."""
    page = render_html(report)
    write_atomically(outdir / "report.json", json.dumps(report, indent=2) + "\n")
    write_atomically(outdir / REPORT_HTML, page)


# -- SVG ------------------------------------------------------------------------------------------

def _e(value) -> str:
    return html.escape(str(value), quote=True)


class _LogAxes:
    """A log-log plot area of ``width`` x ``height`` pixels (plus margins) over whole decades
    covering ``x`` and ``y``."""

    LEFT, RIGHT, TOP, BOTTOM = 70, 20, 34, 50

    def __init__(self, x: tuple[float, float], y: tuple[float, float], width=640, height=360):
        self.x0, self.x1 = math.floor(math.log10(x[0])), math.ceil(math.log10(x[1]))
        self.y0, self.y1 = math.floor(math.log10(y[0])), math.ceil(math.log10(y[1]))
        self.x1 += self.x1 == self.x0
        self.y1 += self.y1 == self.y0
        self.w, self.h = width, height

    def px(self, x: float) -> float:
        return self.LEFT + (math.log10(x) - self.x0) / (self.x1 - self.x0) * self.w

    def py(self, y: float) -> float:
        return self.TOP + (self.y1 - math.log10(y)) / (self.y1 - self.y0) * self.h

    @property
    def x_max(self) -> float:
        return 10.0 ** self.x1

    @property
    def x_min(self) -> float:
        return 10.0 ** self.x0

    def frame(self, x_label: str, y_label: str) -> list[str]:
        """Grid, decade ticks and axis labels."""
        out = [f'<rect x="{self.LEFT}" y="{self.TOP}" width="{self.w}" height="{self.h}" '
               'class="frame"/>']
        for k in range(self.x0, self.x1 + 1):
            x = self.px(10.0 ** k)
            out.append(f'<line x1="{x:.1f}" y1="{self.TOP}" x2="{x:.1f}" '
                       f'y2="{self.TOP + self.h}" class="grid"/>')
            out.append(f'<text x="{x:.1f}" y="{self.TOP + self.h + 18}" '
                       f'text-anchor="middle">{_decade(k)}</text>')
        for k in range(self.y0, self.y1 + 1):
            y = self.py(10.0 ** k)
            out.append(f'<line x1="{self.LEFT}" y1="{y:.1f}" x2="{self.LEFT + self.w}" '
                       f'y2="{y:.1f}" class="grid"/>')
            out.append(f'<text x="{self.LEFT - 8}" y="{y + 4:.1f}" '
                       f'text-anchor="end">{_decade(k)}</text>')
        out.append(f'<text x="{self.LEFT + self.w / 2:.1f}" y="{self.TOP + self.h + 40}" '
                   f'text-anchor="middle">{_e(x_label)}</text>')
        out.append(f'<text transform="translate(16 {self.TOP + self.h / 2:.1f}) rotate(-90)" '
                   f'text-anchor="middle">{_e(y_label)}</text>')
        return out

    def svg(self, body: Iterable[str], title: str) -> str:
        width, height = self.LEFT + self.w + self.RIGHT, self.TOP + self.h + self.BOTTOM
        return (f'<svg role="img" width="{width}" '
                f'height="{height}" viewBox="0 0 {width} {height}"><title>{_e(title)}</title>'
                + "".join(body) + "</svg>")


def _decade(k: int) -> str:
    return f"{10.0 ** k:g}" if -3 <= k <= 4 else f"1e{k}"


def roofline_svg(report: dict) -> str | None:
    """Each layer's operational intensity (MACs per external byte) against its MACs per cycle,
    under the array's peak and the memory's bandwidth; None if no layer has MACs."""
    timing = report["timing"]
    peak, bandwidth = timing["peak_macs_per_cycle"], timing["bandwidth_bytes_per_cycle"]
    layers = [(i, layer) for i, layer in enumerate(report["layers"], 1)
              if layer["macs"] and layer["cycles"]]
    if not layers:
        return None
    ridge = peak / bandwidth
    finite = [layer["intensity"] for _, layer in layers if layer["intensity"] is not None]
    ys = [layer["macs_per_cycle"] for _, layer in layers]
    ax = _LogAxes((min(finite + [ridge]) / 2, max(finite + [ridge]) * 4),
                  (min(ys + [peak]) / 2, peak * 2))
    body = ax.frame("operational intensity (MACs per byte of external traffic)",
                    "MACs per cycle")
    # The roof: bandwidth x intensity up to the ridge, then the array's peak.
    low = max(ax.x_min, 10.0 ** ax.y0 / bandwidth)
    body.append(f'<polyline class="roof" points="{ax.px(low):.1f},{ax.py(low * bandwidth):.1f} '
                f'{ax.px(ridge):.1f},{ax.py(peak):.1f} {ax.px(ax.x_max):.1f},{ax.py(peak):.1f}"/>')
    body.append(f'<text class="rooflabel" x="{ax.LEFT}" y="{ax.TOP - 8}">roof: the '
                f'{_e(report["config"]["rows"])}x{_e(report["config"]["cols"])} array\'s peak '
                f'{peak:g} MACs/cycle, external memory {bandwidth:.3g} B/cycle (ridge at '
                f'{ridge:.3g} MACs/byte)</text>')
    # Layers at the same spot (repeated blocks) share one point and one label.
    spots: dict[tuple[float, float], list[int]] = {}
    for index, layer in layers:
        on_chip = layer["intensity"] is None
        x = ax.px(ax.x_max) - 8 if on_chip else ax.px(layer["intensity"])
        spot = (round(x, 1), round(ax.py(layer["macs_per_cycle"]), 1))
        spots.setdefault(spot, []).append(index)
    for (x, y), indices in spots.items():
        tips = [_point_tip(i, report["layers"][i - 1]) for i in indices]
        on_chip = report["layers"][indices[0] - 1]["intensity"] is None
        body.append(f'<g class="{"onchip" if on_chip else "layer"}">'
                    f'<title>{_e(chr(10).join(tips))}</title>'
                    f'<circle cx="{x:.1f}" cy="{y:.1f}" r="5"/>'
                    f'<text x="{x + 7:.1f}" y="{y - 6:.1f}">{",".join(map(str, indices))}</text>'
                    '</g>')
    return ax.svg(body, "roofline: each layer against the array's peak and the memory bandwidth")


def _point_tip(index: int, layer: dict) -> str:
    where = ("no external traffic" if layer["intensity"] is None
             else f'{layer["intensity"]:.3g} MACs/byte')
    return (f'{index}. {layer["name"]} ({layer["kind"]}): {layer["macs_per_cycle"]:.3g} '
            f'MACs/cycle, {where}')


#: Colours of the energy groups and components (compute warm, SRAM green, DRAM blue).
_GROUP_COLOURS = {"compute": ("#c2410c", "#ea580c", "#f97316", "#fb923c", "#fdba74", "#fed7aa"),
                  "sram": ("#15803d", "#16a34a", "#22c55e", "#4ade80", "#86efac"),
                  "dram": ("#1d4ed8", "#60a5fa")}


def _component_colours() -> dict[str, str]:
    from .dse.energy import GROUPS

    return {name: colours[i % len(colours)] for group, colours in _GROUP_COLOURS.items()
            for i, name in enumerate(GROUPS[group])}


def energy_svg(report: dict) -> str:
    """One horizontal bar: the inference's energy split into its components."""
    components = report["energy"]["components_pj"]
    total = sum(components.values()) or 1.0
    colours = _component_colours()
    width, x = 640.0, 10.0
    body = []
    for name, pj in components.items():
        w = width * pj / total
        if w <= 0:
            continue
        body.append(f'<rect x="{x:.2f}" y="10" width="{w:.2f}" height="36" '
                    f'fill="{colours.get(name, "#888")}"><title>{_e(name)}: {pj / 1e3:.4g} nJ '
                    f'({100 * pj / total:.1f}%)</title></rect>')
        x += w
    return ('<svg role="img" width="660" height="56" '
            'viewBox="0 0 660 56"><title>energy per inference by component</title>'
            + "".join(body) + "</svg>")


# -- HTML -----------------------------------------------------------------------------------------

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1f2937;margin:0;
background:#f8fafc}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid
#cbd5e1;padding-bottom:4px}
.sub{color:#64748b}
.cards{display:flex;flex-wrap:wrap;gap:10px;margin:14px 0}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:8px 12px;min-width:130px}
.card b{display:block;font-size:18px}.card span{color:#64748b;font-size:12px}
table{border-collapse:collapse;background:#fff;font-variant-numeric:tabular-nums}
th,td{border:1px solid #e2e8f0;padding:3px 8px;text-align:right}td{white-space:nowrap}
th{background:#f1f5f9}td.l,th.l{text-align:left}
tfoot td{font-weight:600;background:#f8fafc}
.bar{display:inline-block;height:9px;background:#6366f1;vertical-align:middle;margin-left:6px}
svg{background:#fff;border:1px solid #e2e8f0;font:12px system-ui,sans-serif}
svg .frame{fill:none;stroke:#94a3b8}svg .grid{stroke:#e2e8f0}
svg .roof{fill:none;stroke:#dc2626;stroke-width:2}svg .rooflabel{fill:#dc2626}
svg .layer circle{fill:#4f46e5}svg .onchip circle{fill:#059669}
svg .front{fill:none;stroke:#dc2626;stroke-width:1.5}svg .point circle{fill:#dc2626}
svg .chosen circle{fill:#dc2626;stroke:#111827;stroke-width:3}
svg .limit{stroke:#374151;stroke-dasharray:6 4}svg .limittext{fill:#374151}
.swatch{display:inline-block;width:11px;height:11px;margin-right:4px;vertical-align:-1px}
.legend span.item{margin-right:14px;white-space:nowrap}
.note{color:#64748b;font-size:12px;max-width:900px}
"""


def _num(value, digits: int = 3) -> str:
    """Integers with thousands separators, floats to ``digits`` significant digits."""
    if value is None:
        return "–"
    if isinstance(value, int):
        return f"{value:,}"
    if abs(value) >= 10 ** digits:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def _card(value: str, label: str) -> str:
    return f'<div class="card"><b>{_e(value)}</b><span>{_e(label)}</span></div>'


def _config_text(cfg: dict) -> str:
    text = (f"{cfg['rows']}x{cfg['cols']} MAC array, {cfg['bus_bytes']}-byte "
            f"{cfg.get('bus', 'native')} bus, ACT {cfg['act_depth']} / WGT {cfg['wgt_depth']} / "
            f"ACC {cfg['acc_depth']} / PRM {cfg['prm_depth']} words")
    return text + (", depthwise mode" if cfg.get("dw_width") else "")


def _clock(report: dict) -> tuple[float, str] | None:
    """The clock to state latency at: the routed fmax, else the target's clock goal."""
    synth = report.get("synth")
    if isinstance(synth, dict) and synth.get("fmax_mhz"):
        return synth["fmax_mhz"], "post-route fmax"
    target = report.get("target")
    if isinstance(target, dict) and target.get("clock_goal_mhz"):
        return target["clock_goal_mhz"], f"{target.get('name', 'target')} clock goal"
    return None


def _header(report: dict) -> list[str]:
    cfg = report.get("config")
    target = report.get("target")
    target_name = target.get("name") if isinstance(target, dict) else target
    out = [f"<h1>codesign report: {_e(report.get('model', '(unnamed model)'))}</h1>",
           f'<p class="sub">codesign {_e(report.get("codesign", "?"))}'
           + (f" · NPU: {_e(_config_text(cfg))}" if isinstance(cfg, dict) and "rows" in cfg
              else "")
           + (f" · target {_e(target_name)}" if target_name else "") + "</p>"]
    cards = []
    if "macs_per_inference" in report:
        cards.append(_card(_num(report["macs_per_inference"]), "MACs per inference"))
    # The timing section's cycles are those of the memory the layers assume (behind a bus,
    # more than the top-level native-port figure).
    cycles = report.get("timing", {}).get("cycles_per_inference",
                                          report.get("cycles_per_inference"))
    if cycles:
        cards.append(_card(_num(cycles), "cycles per inference (timing model)"))
        if "macs_per_inference" in report and isinstance(cfg, dict) and "rows" in cfg:
            peak = cfg["rows"] * cfg["cols"]
            cards.append(_card(_pct(report["macs_per_inference"] / (cycles * peak)),
                               "MAC utilization"))
    clock = _clock(report)
    if clock is not None and cycles:
        cards.append(_card(f"{cycles / (clock[0] * 1e3):.4g} ms",
                           f"latency at {clock[0]:.4g} MHz ({clock[1]})"))
    if "energy" in report:
        cards.append(_card(f"{report['energy']['total_uj']:.4g} µJ", "energy per inference"))
    if cards:
        out.append('<div class="cards">' + "".join(cards) + "</div>")
    return out


_LAYER_COLUMNS = ("#", "layer", "kind", "MACs", "cycles", "share of cycles", "MAC utilization",
                  "MACs/cycle", "ext. read B", "ext. write B", "MACs/byte", "instructions",
                  "energy µJ")


def _layers_table(report: dict) -> list[str]:
    layers = report["layers"]
    timing = report["timing"]
    total = timing["cycles_per_inference"]
    head = "".join(f'<th class="{"l" if c in ("layer", "kind") else ""}">{_e(c)}</th>'
                   for c in _LAYER_COLUMNS)
    rows = []
    for i, layer in enumerate(layers, 1):
        share = layer["cycles"] / total if total else 0.0
        rows.append(
            f'<tr><td>{i}</td><td class="l">{_e(layer["name"])}</td>'
            f'<td class="l">{_e(layer["kind"])}</td><td>{_num(layer["macs"])}</td>'
            f'<td>{_num(layer["cycles"])}</td><td>{_pct(share)}'
            f'<span class="bar" style="width:{60 * share:.1f}px"></span></td>'
            f'<td>{_pct(layer["utilization"])}</td><td>{_num(layer["macs_per_cycle"])}</td>'
            f'<td>{_num(layer["ext_read_bytes"])}</td><td>{_num(layer["ext_write_bytes"])}</td>'
            f'<td>{_num(layer["intensity"])}</td><td>{_num(layer["instructions"])}</td>'
            f'<td>{_num(layer["energy_uj"])}</td></tr>')
    macs = sum(layer["macs"] for layer in layers)
    peak = timing["peak_macs_per_cycle"]
    foot = (f'<tr><td></td><td class="l">(the final END)</td><td></td><td></td>'
            f'<td>{_num(timing["other_cycles"])}</td><td colspan="8"></td></tr>'
            f'<tr><td></td><td class="l">total</td><td></td><td>{_num(macs)}</td>'
            f'<td>{_num(total)}</td><td>100.0%</td>'
            f'<td>{_pct(macs / (total * peak) if total else 0.0)}</td>'
            f'<td>{_num(macs / total if total else 0.0)}</td>'
            f'<td>{_num(sum(ly["ext_read_bytes"] for ly in layers))}</td>'
            f'<td>{_num(sum(ly["ext_write_bytes"] for ly in layers))}</td><td></td>'
            f'<td>{_num(sum(ly["instructions"] for ly in layers))}</td>'
            f'<td>{_num(sum(ly["energy_uj"] for ly in layers))}</td></tr>')
    return ["<h2>Layers</h2>",
            f'<p class="note">Cycles: the cycle-exact timing model with external memory behind '
            f'{_e(timing["memory"]["description"])}; a layer\'s cycles are what it adds to the '
            f'total (as <code>verify --per-layer</code> measures on the RTL). MAC utilization = '
            f'MACs / (cycles × {peak}). External traffic: the bytes of the layer\'s LOAD and '
            f'STORE instructions (instruction fetch excluded).</p>',
            f'<table id="layers"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody>'
            f'<tfoot>{foot}</tfoot></table>']


def _roofline(report: dict) -> list[str]:
    svg = roofline_svg(report)
    if svg is None:
        return []
    skipped = [f"{i}. {layer['name']}" for i, layer in enumerate(report["layers"], 1)
               if not layer["macs"]]
    onchip = any(layer["intensity"] is None and layer["macs"] for layer in report["layers"])
    note = ("Points are numbered as the layers in the table. "
            + ("Green points at the right edge move no external data (infinite intensity). "
               if onchip else "")
            + (f"Not plotted (no MACs): {', '.join(skipped)}." if skipped else ""))
    return ["<h2>Roofline</h2>", f'<div id="roofline">{svg}</div>',
            f'<p class="note">{_e(note)}</p>']


def _mix_section(report: dict) -> list[str]:
    mix = report["instruction_mix"]
    n = sum(row["count"] for row in mix) or 1
    rows = "".join(
        f'<tr><td class="l">{_e(row["opcode"])}</td><td class="l">{_e(row["engine"])}</td>'
        f'<td>{_num(row["count"])}</td><td>{_pct(row["count"] / n)}</td>'
        f'<td>{_num(row["engine_cycles"])}</td></tr>' for row in mix)
    return ["<h2>Instruction mix</h2>",
            '<table id="mix"><thead><tr><th class="l">opcode</th><th class="l">engine</th>'
            '<th>count</th><th>share</th><th>engine cycles</th></tr></thead>'
            f"<tbody>{rows}</tbody></table>",
            '<p class="note">Engine cycles: from each instruction\'s start to its done, summed; '
            'engines run concurrently, so these add up to more than the total.</p>']


def _energy(report: dict) -> list[str]:
    energy = report["energy"]
    components = energy["components_pj"]
    total = sum(components.values()) or 1.0
    colours = _component_colours()
    legend = "".join(f'<span class="item"><span class="swatch" style="background:'
                     f'{colours.get(name, "#888")}"></span>{_e(name)} {_num(pj / 1e3)} nJ '
                     f'({100 * pj / total:.1f}%)</span> '
                     for name, pj in components.items() if pj > 0)
    groups = " · ".join(f"{name} {_num(pj / 1e3)} nJ" for name, pj in energy["grouped_pj"].items())
    return ["<h2>Energy per inference</h2>",
            f'<p>{energy["total_uj"]:.4g} µJ ({_num(energy["pj_per_mac"])} pJ per MAC): '
            f"{_e(groups)}</p>",
            f'<div id="energy">{energy_svg(report)}</div><p class="legend">{legend}</p>',
            '<p class="note">Dynamic energy from the program\'s exact operation and access '
            'counts priced at 45 nm figures (docs/energy.md); leakage, clock tree and control '
            'are not modelled.</p>']


def _simulation(report: dict) -> list[str]:
    sim = report.get("simulation")
    if not isinstance(sim, dict):
        return []
    cycles = sim["cycles_per_inference"]
    items = [f"<li>{len(cycles)} inference(s) on the RTL (Verilator): "
             f"{_e(', '.join(_num(c) for c in cycles))} cycles each; the timing model: "
             f"{_num(sim['model_cycles'])}</li>",
             f"<li>outputs {'match' if not sim['mismatches'] else 'DO NOT match'} the golden "
             f"model" + (f" ({sim['mismatches']} element(s) differ)" if sim["mismatches"]
                         else " bit for bit") + "</li>"]
    if sim.get("sim_cycles_per_second"):
        items.append(f"<li>simulation speed {sim['sim_cycles_per_second']:,.0f} cycles/s</li>")
    memory = sim.get("memory")
    if memory:
        items.append(f"<li>simulated memory: read latency {memory['latency']}, stall "
                     f"probability {memory['stall']:g} (seed {memory['seed']})</li>")
    return ["<h2>Simulation</h2>", f'<ul id="simulation">{"".join(items)}</ul>']


def _synthesis(report: dict) -> list[str]:
    s = report.get("synth")
    if not isinstance(s, dict) or "resources" not in s:
        return []
    res, avail = s["resources"], s.get("available", {})
    rows = "".join(
        f'<tr><td class="l">{_e(k)}</td><td>{_num(v)}</td><td>{_num(avail.get(k))}</td>'
        f'<td>{_pct(v / avail[k]) if avail.get(k) else "–"}</td></tr>'
        for k, v in res.items() if isinstance(v, (int, float)) and (v or avail.get(k)))
    target = s.get("target", {})
    lines = [f"<p>target {_e(target.get('name', '?'))} ({_e(target.get('part', ''))}): "
             + ("fits" if s.get("fits") else "does NOT fit: " + _e(", ".join(s.get("over", []))))
             + "</p>"]
    if s.get("fmax_mhz") is not None:
        lines.append(f"<p>fmax {s['fmax_mhz']:.2f} MHz post-route (timing "
                     f"{'met' if s.get('timing_met') else 'FAILED'} at "
                     f"{s.get('clock_goal_mhz', 0):g} MHz)"
                     + (f"; latency {s['latency_ms']:.4g} ms per inference at fmax"
                        if "latency_ms" in s else "") + "</p>")
    return ["<h2>Synthesis</h2>", *lines,
            '<table id="resources"><thead><tr><th class="l">resource</th><th>used</th>'
            f"<th>available</th><th>utilisation</th></tr></thead><tbody>{rows}</tbody></table>"]


def _nice_step(rough: float) -> float:
    """The smallest of 1, 2, 5 times a power of ten that is at least ``rough``."""
    power = 10.0 ** math.floor(math.log10(rough))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= rough)


def pareto_svg(target: dict) -> str:
    """The Pareto front of ``generate --target`` (report.json's "target" section): latency
    (log) against size (linear, from 0 to past the device's capacity), the points labelled
    with their configuration, the chosen one ringed, the capacity a dashed line."""
    front, cap = target["pareto"], target["capacity"]
    left, top, w, h = 70, 20, 640, 300
    x_max = 1.08 * max([cap["value"]] + [p["size"] for p in front]) or 1.0
    y0 = math.floor(math.log10(min(p["latency_ms"] for p in front)))
    y1 = max(math.ceil(math.log10(max(p["latency_ms"] for p in front))), y0 + 1)

    def px(x: float) -> float:
        return left + x / x_max * w

    def py(y: float) -> float:
        return top + (y1 - math.log10(y)) / (y1 - y0) * h

    body = [f'<rect x="{left}" y="{top}" width="{w}" height="{h}" class="frame"/>']
    for k in range(y0, y1 + 1):
        body.append(f'<line x1="{left}" y1="{py(10.0 ** k):.1f}" x2="{left + w}" '
                    f'y2="{py(10.0 ** k):.1f}" class="grid"/><text x="{left - 8}" '
                    f'y="{py(10.0 ** k) + 4:.1f}" text-anchor="end">{_decade(k)}</text>')
    if cap["value"]:
        x = px(cap["value"])
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + h}" class="limit"/>'
                    f'<text x="{x - 4:.1f}" y="{top + 14}" text-anchor="end" class="limittext">'
                    f'{_e(target["name"])}: {cap["value"]:,g} {_e(cap["unit"])}</text>')
    ordered = sorted(front, key=lambda p: p["size"])
    body.append('<polyline class="front" points="' + " ".join(
        f'{px(p["size"]):.1f},{py(p["latency_ms"]):.1f}' for p in ordered) + '"/>')
    for i, p in enumerate(ordered):
        x, y = px(p["size"]), py(p["latency_ms"])
        dx, anchor = (-8, "end") if i % 2 else (8, "start")
        body.append(f'<g class="{"chosen" if p["chosen"] else "point"}"><title>{_e(p["label"])}: '
                    f'{p["latency_ms"]:.4g} ms, {p["size"]:,.4g} {_e(cap["unit"])}, '
                    f'{p["energy_uj"]:.4g} µJ</title><circle cx="{x:.1f}" cy="{y:.1f}" r="5"/>'
                    f'<text x="{x + dx:.1f}" y="{y + 4:.1f}" text-anchor="{anchor}">'
                    f'{_e(p["label"])}</text></g>')
    body.append(f'<text x="{left + w / 2}" y="{top + h + 36}" text-anchor="middle">'
                f'{_e(cap["unit"])} (estimated)</text><text transform="translate(16 '
                f'{top + h / 2}) rotate(-90)" text-anchor="middle">latency (ms at '
                f'{target["clock_goal_mhz"]:g} MHz)</text>')
    step = _nice_step(x_max / 5)
    for k in range(int(x_max / step) + 1):
        body.append(f'<text x="{px(k * step):.1f}" y="{top + h + 18}" text-anchor="middle">'
                    f'{k * step:,.6g}</text>')
    width, height = left + w + 20, top + h + 50
    return (f'<svg role="img" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
            '<title>the Pareto front of latency, size and energy</title>' + "".join(body)
            + "</svg>")


def _selection(report: dict) -> list[str]:
    t = report.get("target")
    if not isinstance(t, dict) or "chosen" not in t:
        return []
    chosen = t["chosen"]
    out = ["<h2>Configuration choice</h2>",
           f"<p>Chosen for {_e(t['objective'])} out of {_num(t['candidates'])} configurations "
           f"({_num(t['feasible'])} fit {_e(t['name'])}): estimated "
           f"{chosen['latency_ms']:.4g} ms at {t['clock_goal_mhz']:g} MHz, "
           f"{chosen['energy_uj']:.4g} µJ.</p>"]
    if t.get("pareto"):
        out += [f'<div id="pareto">{pareto_svg(t)}</div>',
                '<p class="note">The Pareto front (no configuration is better on latency, size '
                'and energy at once; the chosen one is ringed); configuration labels as in '
                "explore's pareto.png (README, The report).</p>"]
    return out


def render_html(report: dict) -> str:
    """report.html of ``report`` (a report.json object): self-contained, no script."""
    sections = _header(report)
    if isinstance(report.get("layers"), list) and "timing" in report:
        sections += _layers_table(report) + _roofline(report)
    if "instruction_mix" in report:
        sections += _mix_section(report)
    if "energy" in report:
        sections += _energy(report)
    sections += _simulation(report) + _synthesis(report) + _selection(report)
    title = f"codesign report: {report.get('model', '')}"
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head>\n<body><main>\n"
            + "\n".join(sections) + "\n</main></body></html>\n")
