"""report.html and the per-layer numbers of report.json (codesign/report.py), the Pareto plot.

The page is parsed with html.parser (self-contained, its table equal to report.json) and, where
Debian's chromium is installed, opened in it headless: the DOM it builds and a screenshot.
"""

import collections
import json
import math
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from matplotlib.colors import to_rgba

from codesign import cli, report
from codesign.design import Design
from codesign.dse import explore, load_target
from codesign.dse.resources import budget
from codesign.isa import HwConfig, Opcode, decode

from .modelgen import ZOO, build, random_inputs
from .test_synth import COUNTER

SMALL = ZOO["conv_relu_pool_fc_qop_u8"]
CHROMIUM = shutil.which("chromium")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium on PATH (Debian: apt-get install chromium); the "
                             "page is still checked with html.parser")


class Page(HTMLParser):
    """The parts of a page the tests read: every tag's attributes, and each table's body rows
    as lists of cell texts, by the table's id."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.tables: dict[str, list[list[str]]] = {}
        self._table = self._section = self._row = self._cell = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append((tag, attrs))
        if tag == "table":
            self._table = self.tables.setdefault(attrs.get("id", ""), [])
        elif tag in ("thead", "tbody", "tfoot"):
            self._section = tag
        elif tag == "tr" and self._section == "tbody":
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)

    def count(self, tag: str) -> int:
        return sum(t == tag for t, _ in self.tags)


def _int(text: str) -> int:
    return int(text.replace(",", ""))


@pytest.fixture(scope="module")
def design(tmp_path_factory) -> Path:
    """A 2x2 NPU for the small zoo model, generated (no simulation)."""
    outdir = tmp_path_factory.mktemp("report") / "d"
    assert cli.main(["generate", str(build(SMALL)), "-o", str(outdir), "--array", "2x2"]) == 0
    return outdir


def _dma_bytes(program, layer) -> tuple[int, int]:
    """External bytes read and written by a layer's LOAD and STORE instructions (rows x
    length bus words each, as the ISA defines them)."""
    read = written = 0
    for word in program.insns[layer.first_insn:layer.first_insn + layer.n_insns]:
        opcode, f = decode(word)
        if opcode in (Opcode.LOAD, Opcode.STORE):
            n = int(f.rows) * int(f.length) * program.config.bus_bytes
            read, written = (read + n, written) if opcode == Opcode.LOAD else (read, written + n)
    return read, written


def test_report_json_per_layer_numbers(design):
    data = json.loads((design / "report.json").read_text())
    program = Design(design).program
    c = program.config
    timing = data["timing"]
    # Natively, the layers' cycles and the final END's add up to the program's total.
    assert timing["cycles_per_inference"] == data["cycles_per_inference"]
    assert (sum(layer["cycles"] for layer in data["layers"]) + timing["other_cycles"]
            == data["cycles_per_inference"])
    assert 0 <= timing["other_cycles"] < data["cycles_per_inference"]
    for layer, info in zip(data["layers"], program.layers, strict=True):
        assert (layer["name"], layer["macs"], layer["instructions"]) == (
            info.name, info.macs, info.n_insns)
        assert (layer["ext_read_bytes"], layer["ext_write_bytes"]) == _dma_bytes(program, info)
        assert layer["ext_bytes"] == layer["ext_read_bytes"] + layer["ext_write_bytes"]
        # (A layer without instructions, such as a Flatten, takes no cycles.)
        peak_macs = layer["cycles"] * c.rows * c.cols
        assert math.isclose(layer["utilization"], layer["macs"] / peak_macs if peak_macs else 0)
        assert 0 <= layer["utilization"] <= 1
    assert timing["peak_macs_per_cycle"] == c.rows * c.cols
    assert timing["bandwidth_bytes_per_cycle"] == c.bus_bytes          # the native port
    # The mix counts every instruction of the program once.
    mix = {row["opcode"]: row["count"] for row in data["instruction_mix"]}
    assert mix == dict(collections.Counter(decode(w)[0].name for w in program.insns))
    assert math.isclose(sum(data["energy"]["components_pj"].values()) * 1e-6,
                        data["energy"]["total_uj"])


def test_report_html_is_self_contained_and_equals_report_json(design):
    data = json.loads((design / "report.json").read_text())
    page = Page((design / "report.html").read_text())
    assert page.count("script") == 0 and page.count("link") == 0
    urls = [a[k] for _, a in page.tags for k in ("src", "href") if a.get(k)]
    assert not [u for u in urls if u.startswith(("http:", "https:", "//"))], urls
    rows = page.tables["layers"]
    assert len(rows) == len(data["layers"])
    for row, layer in zip(rows, data["layers"], strict=True):
        assert row[1:3] == [layer["name"], layer["kind"]]
        assert [_int(row[i]) for i in (3, 4, 8, 9, 11)] == [
            layer[k] for k in ("macs", "cycles", "ext_read_bytes", "ext_write_bytes",
                               "instructions")]
        assert abs(float(row[6].rstrip("%")) - 100 * layer["utilization"]) <= 0.05
    assert sum(_int(row[4]) for row in rows) + data["timing"]["other_cycles"] == data[
        "cycles_per_inference"]
    mix = page.tables["mix"]
    assert [(r[0], _int(r[2]), _int(r[4])) for r in mix] == [
        (m["opcode"], m["count"], m["engine_cycles"]) for m in data["instruction_mix"]]
    # One roofline point per spot of the layers with MACs, and the energy bar.
    assert page.count("svg") == 2 and page.count("circle") >= 1


def test_report_survives_reports_without_the_new_sections():
    """synth re-renders report.json files of older codesign versions, and fakes with only a
    model name: the sections whose numbers are absent are left out."""
    text = report.render_html({"model": "counter", "target": "ice40-up5k"})
    page = Page(text)
    assert "counter" in text and "ice40-up5k" in text and not page.tables


@needs_chromium
def test_report_html_renders_in_chromium(design, tmp_path):
    data = json.loads((design / "report.json").read_text())
    dom, log, shot = _chromium(design / "report.html", tmp_path)
    page = Page(dom)
    assert len(page.tables["layers"]) == len(data["layers"])
    assert page.count("svg") == 2 and page.count("circle") >= 1
    _check_log_and_screenshot(log, shot)


def _chromium(html: Path, tmp_path: Path) -> tuple[str, str, Path]:
    """The DOM chromium builds of ``html``, its log, and a screenshot of the page (one run)."""
    shot, dom, log = tmp_path / "page.png", tmp_path / "dom.html", tmp_path / "chromium.log"
    # Into files, not pipes: chromium's helper processes outlive it holding its stdout and
    # stderr, and reading a pipe to its end would wait for them.
    with open(dom, "w") as out, open(log, "w") as err:
        code = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
             "--v=0", f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,1600",
             f"--screenshot={shot}", "--dump-dom", html.resolve().as_uri()],
            stdout=out, stderr=err, timeout=120).returncode
    assert code == 0 and shot.is_file(), log.read_text()[-2000:]
    return dom.read_text(), log.read_text(), shot


def _check_log_and_screenshot(log: str, shot: Path) -> None:
    """No console message or failed load in ``log``; the screenshot shows the roof (the
    roofline's red line: the inline SVG was drawn), the table's bars and text."""
    from PIL import Image

    bad = [ln for ln in log.splitlines()
           if "CONSOLE" in ln or "Uncaught" in ln or "net::ERR" in ln]
    assert not bad, bad
    colours = {rgb for _, rgb in Image.open(shot).convert("RGB").getcolors(1 << 24)}
    assert len(colours) > 50                                         # not blank
    assert (0xdc, 0x26, 0x26) in colours and (0x63, 0x66, 0xf1) in colours


def test_pareto_plot_labels_limits_and_legend():
    """The front's points carry their configuration, the device's LUTs are a vertical line, and
    the legend's swatches look like the points (a fit's colour is its energy)."""
    target = load_target("ecp5-25k")
    configs = [HwConfig(rows=r, cols=c, bus_bytes=min(c, 8), act_depth=1024, wgt_depth=256,
                        acc_depth=256, prm_depth=64) for r, c in ((2, 2), (4, 4), (8, 8))]
    points = [explore.Point(cfg, lut < target.luts, cycles=10_000 // cfg.rows,
                            latency_ms=0.1 / cfg.rows, energy_uj=3.0 + cfg.rows,
                            resources={"lut": lut})
              for cfg, lut in zip(configs, (5_000, 12_000, 30_000), strict=True)]
    front = explore.pareto(points, target)
    fig = explore.pareto_figure(points, front, target)
    ax = fig.axes[0]
    labels = {t.get_text() for t in ax.texts}
    assert {explore.point_label(p.config) for p in front} <= labels
    assert explore.point_label(configs[0]) == "2x2 b2"
    limits = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert [line.get_xdata()[0] for line in limits] == [budget(target)["lut"]]
    assert any(f"{target.luts:,}" in t for t in labels)
    legend = {t.get_text(): h for t, h in zip(ax.get_legend().get_texts(),
                                              ax.get_legend().legend_handles, strict=True)}
    r, g, b, _ = to_rgba(legend["fits (colour: energy)"].get_markerfacecolor())
    assert r == g == b                                               # neutral, not a colormap's
    assert "over budget" in legend and "device capacity" in legend


@pytest.mark.slow
@needs_chromium
def test_dscnn_report_renders_in_chromium(tmp_path):
    """The DS-CNN report (models/mlperf): every layer in the table, the roofline and energy
    plots drawn."""
    outdir = tmp_path / "dscnn"
    assert cli.main(["generate", "models/mlperf/dscnn.onnx", "-o", str(outdir)]) == 0
    data = json.loads((outdir / "report.json").read_text())
    dom, log, shot = _chromium(outdir / "report.html", tmp_path)
    page = Page(dom)
    assert len(page.tables["layers"]) == len(data["layers"]) == 11
    _check_log_and_screenshot(log, shot)


@pytest.mark.verilator
def test_simulate_and_synth_extend_the_report(capsys, tmp_path):
    """simulate adds the RTL's cycles (equal to the timing model's) and synth the resources and
    fmax; each re-renders report.html from report.json."""
    outdir = tmp_path / "d"
    model = build(SMALL)
    assert cli.main(["generate", str(model), "-o", str(outdir)]) == 0  # test_cli's build
    np.save(tmp_path / "x.npy", np.concatenate(random_inputs(SMALL, 1, seed=3)))
    assert cli.main(["simulate", str(outdir), "--input", str(tmp_path / "x.npy")]) == 0
    data = json.loads((outdir / "report.json").read_text())
    sim = data["simulation"]
    assert sim["cycles_per_inference"] == [sim["model_cycles"]] == [data["cycles_per_inference"]]
    assert sim["mismatches"] == 0
    page = (outdir / "report.html").read_text()
    assert "Simulation" in page and f"{sim['model_cycles']:,}" in page
    # synth reads only npu.v and report.json: a counter in the NPU's place keeps it quick.
    (outdir / "npu.v").write_text(COUNTER)
    assert cli.main(["synth", str(outdir), "--target", "ice40-up5k"]) == 0
    data = json.loads((outdir / "report.json").read_text())
    tables = Page((outdir / "report.html").read_text()).tables
    assert len(tables["layers"]) == len(data["layers"])              # still there
    used = {row[0]: _int(row[1]) for row in tables["resources"]}
    assert used["lut"] == data["synth"]["resources"]["lut"]
    assert f"fmax {data['synth']['fmax_mhz']:.2f} MHz" in (outdir / "report.html").read_text()
    capsys.readouterr()


def test_generate_with_target_plots_the_front(tmp_path):
    """generate --target puts the Pareto front (here the one configuration given) into
    report.json and plots it in report.html, labelled, with the target's capacity (an ASIC's
    area budget)."""
    outdir = tmp_path / "d"
    assert cli.main(["generate", str(build(SMALL)), "-o", str(outdir), "--array", "2x2",
                     "--target", "asic"]) == 0
    data = json.loads((outdir / "report.json").read_text())
    target = load_target("asic")
    (point,) = data["target"]["pareto"]
    assert point["chosen"] and point["label"] == explore.point_label(HwConfig(**data["config"]))
    assert data["target"]["capacity"] == {"value": target.area_mm2, "unit": "mm²"}
    text = (outdir / "report.html").read_text()
    assert 'id="pareto"' in text and f">{point['label']}</text>" in text
    assert f"asic: {target.area_mm2:,g} mm²" in text
