"""Generated host files (codesign.hostgen): register maps equal codesign/isa.py's, in C (as the
machine's gcc compiles them, freestanding), in Python and in docs/registers.md; the memory image
forms round-trip; ``generate`` writes them all, byte-stable, and symbols.json's host section."""

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codesign import cli, hostgen
from codesign.compiler.program import DesignFileError, Program
from codesign.design import Design
from codesign.isa import (
    BUSES,
    CSR_FIELDS,
    ISA_VERSION,
    VERSION_MAGIC,
    Csr,
    HwConfig,
    config_id,
    version_word,
)
from codesign.sim.runner import EXT_MEM_BYTES

from .modelgen import ZOO, build

REPO = Path(__file__).resolve().parent.parent
#: How a freestanding target compiles the headers and the driver.
FREESTANDING = ("gcc", "-std=c99", "-ffreestanding", "-nostdlib", "-Wall", "-Wextra", "-Werror",
                "-pedantic", "-c")
#: Warnings stricter projects turn on (the driver is clean under them too).
STRICT = ("-Wconversion", "-Wsign-conversion", "-Wcast-qual", "-Wshadow", "-Wstrict-prototypes",
          "-Wmissing-prototypes", "-Wundef")

CONFIGS = {
    "native-4x4": HwConfig(rows=4, cols=4, bus_bytes=4),
    "axi4-8x8": HwConfig(rows=8, cols=8, bus_bytes=8, bus="axi4", axi_id_bits=6),
    "wishbone-2x16": HwConfig(rows=2, cols=16, bus_bytes=2, bus="wishbone", wb_classic=True,
                              max_reads=4),
}


def isa_constants(config: HwConfig) -> dict[str, int]:
    """Every constant the register map must give, computed from codesign.isa alone."""
    want = {"ISA_VERSION": ISA_VERSION, "VERSION_MAGIC": VERSION_MAGIC,
            "BUS_BYTES": config.bus_bytes, "EXPECTED_VERSION": version_word(config),
            "EXPECTED_CONFIG_ID": config_id(config), "REG_SPAN": 4 * len(Csr)}
    want |= {f"BUS_{bus.upper()}": i for i, bus in enumerate(BUSES)}
    for reg in Csr:
        want[reg.name] = 4 * reg.value
        for f in CSR_FIELDS[reg]:
            want[f"{reg.name}_{f.name}_SHIFT"] = f.lsb
            want[f"{reg.name}_{f.name}_MASK"] = sum(1 << b for b in range(f.lsb, f.lsb + f.width))
    return want


def c_defines(header: str) -> dict[str, int]:
    pattern = rf"#define {hostgen.PREFIX}(\w+) 0x([0-9A-F]+)u"
    return {name: int(value, 16) for name, value in re.findall(pattern, header)}


def compile_freestanding(tmp_path: Path, files: dict[str, str], source: str,
                         *flags: str) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    out = subprocess.run([*FREESTANDING, *flags, f"-I{tmp_path}", str(tmp_path / source), "-o",
                          str(tmp_path / "out.o")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def _compiles(*flags: str) -> bool:
    """Whether gcc builds an empty file with ``flags`` (-m32 needs a multilib install)."""
    out = subprocess.run(["gcc", *flags, "-x", "c", "-c", "-", "-o", "/dev/null"],
                         input="int x;\n", capture_output=True, text=True)
    return out.returncode == 0


@pytest.mark.parametrize("name", CONFIGS)
def test_c_header_compiles_freestanding_with_the_isa_values(tmp_path, name):
    """gcc itself checks every constant against isa.py: a negative array size fails to compile
    (C99 has no static assertion)."""
    config = CONFIGS[name]
    header = hostgen.regs_header(config)
    want = isa_constants(config)
    assert c_defines(header) == want
    checks = "".join(f"typedef char check_{k}[({hostgen.PREFIX}{k}) == {v}u ? 1 : -1];\n"
                     for k, v in want.items())
    compile_freestanding(tmp_path, {"npu_regs.h": header, "check.c": '#include "npu_regs.h"\n'
                                    '#include "npu_regs.h"\n' + checks}, "check.c")


@pytest.mark.parametrize("name", CONFIGS)
def test_python_module_has_the_same_constants(name):
    config = CONFIGS[name]
    namespace: dict = {}
    exec(hostgen.regs_python(config), namespace)
    values = {k: v for k, v in namespace.items() if k.isupper() and k != "CONFIG_NAME"}
    assert values == isa_constants(config)
    assert namespace["CONFIG_NAME"] == config.name
    assert f'"{config.name}"' in hostgen.regs_header(config)


def test_the_configurations_differ_where_isa_says():
    """VERSION and CONFIG_ID tell the three configurations apart; offsets and fields agree."""
    maps = [c_defines(hostgen.regs_header(c)) for c in CONFIGS.values()]
    for key in ("EXPECTED_VERSION", "EXPECTED_CONFIG_ID", "BUS_BYTES"):
        assert len({m[key] for m in maps}) == len(maps), key
    shared = maps[0].keys() - {"EXPECTED_VERSION", "EXPECTED_CONFIG_ID", "BUS_BYTES"}
    assert all(m[k] == maps[0][k] for m in maps for k in shared)


def test_docs_registers_md_is_current():
    assert (REPO / "docs" / "registers.md").read_text() == hostgen.regs_markdown(), (
        "regenerate with `python -m codesign.hostgen docs/registers.md`")


def test_markdown_tables_list_every_register_and_field():
    rows = [line.split(" | ") for line in hostgen.regs_markdown().splitlines()
            if line.startswith("| ") and not line.startswith("| offset")
            and not line.startswith("| register")]
    registers = [(r[0], r[1]) for r in rows if r[0].startswith("| 0x")]
    assert registers == [(f"| 0x{4 * reg.value:02X}", reg.name) for reg in Csr]
    fields = [(r[0][2:], r[1], r[3]) for r in rows if not r[0].startswith("| 0x")]
    assert fields == [(reg.name, f.name, f.access) for reg in Csr for f in CSR_FIELDS[reg]]


@pytest.mark.parametrize("bus_bytes", [1, 2, 4, 8, 16, 32])
def test_hex_image_round_trips_in_the_testbench_format(bus_bytes):
    from codesign.sim import runner

    rng = np.random.default_rng(bus_bytes)
    image = rng.integers(0, 256, 37 * bus_bytes, dtype=np.uint8)
    text = hostgen.image_hex(image, bus_bytes)
    lines = text.splitlines()
    assert len(lines) == 37 and {len(line) for line in lines} == {2 * bus_bytes}
    back = b"".join(int(line, 16).to_bytes(bus_bytes, "little") for line in lines)
    assert back == image.tobytes()
    # The lines the simulation testbench writes for $readmemh, byte for byte.
    assert text.encode() == runner._hex_words(image, bus_bytes)
    if bus_bytes > 1:
        with pytest.raises(ValueError, match="whole"):
            hostgen.image_hex(image[:-1], bus_bytes)


@pytest.fixture(scope="module")
def design(tmp_path_factory):
    """A model generated twice into two directories (a 4x2 array: two channel words per ACT
    word of the 4-channel input)."""
    model = build(ZOO["asym_pads_qop_s8_tensor"])
    root = tmp_path_factory.mktemp("gen")
    config = HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=512, wgt_depth=256,
                      acc_depth=256, prm_depth=16)
    for name in ("a", "b"):
        cli.generate(model, root / name, config)
    return root / "a", root / "b"


def test_generate_writes_the_host_files_byte_stable(design):
    a, b = design
    names = {hostgen.REGS_HEADER, hostgen.REGS_PYTHON, hostgen.REGS_MARKDOWN, hostgen.MEMORY_HEX,
             hostgen.MODEL_HEADER, *hostgen.DRIVER_FILES}
    assert names <= {p.name for p in a.iterdir()}
    for name in names:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    for name in hostgen.DRIVER_FILES:
        assert (a / name).read_bytes() == (hostgen.HOST_DIR / name).read_bytes()
    loaded = Design(a)
    program, config = loaded.program, loaded.config
    assert (a / hostgen.REGS_HEADER).read_text() == hostgen.regs_header(config)
    assert (a / hostgen.MODEL_HEADER).read_text() == hostgen.model_header(program)
    assert (a / hostgen.REGS_MARKDOWN).read_text() == hostgen.regs_markdown()
    image = (a / "memory.bin").read_bytes()
    assert image == program.image.tobytes()
    assert (a / hostgen.MEMORY_HEX).read_text() == hostgen.image_hex(program.image,
                                                                     config.bus_bytes)


@pytest.mark.parametrize("word", ["-m64", "-m32"])
def test_generated_directory_compiles_freestanding(design, tmp_path, word):
    """The driver, with the design's npu_regs.h and npu_model.h, as a freestanding target
    builds it (a user's file takes the model), with 64- and 32-bit pointers."""
    if not _compiles(word):
        pytest.skip(f"gcc cannot compile {word} here")
    for path in design[0].iterdir():
        shutil.copy(path, tmp_path)
    user = ('#include "npu_model.h"\n' "int run(codesign_npu *npu);\n"
            "int run(codesign_npu *npu) { return codesign_npu_load(npu, &codesign_model); }\n")
    compile_freestanding(tmp_path, {"user.c": user}, "user.c", word, *STRICT)
    compile_freestanding(tmp_path, {}, "codesign_npu.c", word, *STRICT)


def test_symbols_host_section(design):
    outdir = design[0]
    symbols = json.loads((outdir / "symbols.json").read_text())
    host = symbols["host"]
    program = Design(outdir).program
    c = program.config
    assert (host["config_id"], host["version"]) == (config_id(c), version_word(c))
    assert host["prog_base"] == symbols["prog_base"] == program.prog_base
    assert host["image_bytes"] == len(program.image)
    assert host["memory_bytes"] == program.ext_words * c.bus_bytes
    for kind in ("inputs", "outputs"):
        for entry, region in zip(host[kind], getattr(program, kind), strict=True):
            assert entry["offset"] == entry["word_addr"] * c.bus_bytes == region.addr * c.bus_bytes
            assert entry["bytes"] == region.nbytes(c)
            h, w, _ = entry["stored_shape"]
            assert h * w * entry["pixel_bytes"] == entry["bytes"]
    assert [e["layout"] for e in host["inputs"]] == ["unfolded"]
    assert [e["layout"] for e in host["outputs"]] == ["hwc"]


def test_a_host_section_that_disagrees_is_refused(design, tmp_path):
    outdir = tmp_path / "d"
    shutil.copytree(design[0], outdir)
    symbols = json.loads((outdir / "symbols.json").read_text())
    symbols["host"]["inputs"][0]["offset"] += 2
    (outdir / "symbols.json").write_text(json.dumps(symbols))
    config = Design(design[0]).config
    with pytest.raises(DesignFileError, match="symbols.json: its host section"):
        Program.read(outdir, config, memory_bytes=EXT_MEM_BYTES)
