"""Device targets: built-ins, user TOML/JSON files, and one-line errors for bad files."""

import dataclasses
import json
import re

import pytest

from codesign import cli
from codesign.dse import BUILTIN_TARGETS, Target, load_target
from codesign.errors import InputError

ECP5_25K = dataclasses.asdict(BUILTIN_TARGETS["ecp5-25k"])


def _toml(fields: dict) -> str:
    def value(v):
        return json.dumps(v) if isinstance(v, str) else repr(v)
    return "".join(f"{k} = {value(v)}\n" for k, v in fields.items())


def test_builtins_are_the_issue_s_devices():
    assert {"ice40-up5k", "ecp5-25k", "ecp5-45k", "ecp5-85k", "asic"} <= set(BUILTIN_TARGETS)
    for name, t in BUILTIN_TARGETS.items():
        assert load_target(name) is t and t.name == name
        if t.is_fpga:
            assert t.luts and t.ffs and t.dsps and t.bram_blocks and t.device and t.package
        else:
            assert t.area_mm2 > 0 and t.ge_um2 > 0 and t.sram_um2_per_bit > 0
    up5k = BUILTIN_TARGETS["ice40-up5k"]
    assert up5k.spram_blocks * up5k.spram_bits == 1024 * 1024           # 1 Mbit SPRAM
    assert up5k.bram_total_bits == 120 * 1024                             # 120 kbit EBR
    ecp5 = [BUILTIN_TARGETS[f"ecp5-{s}"] for s in ("25k", "45k", "85k")]
    assert [t.luts for t in ecp5] == sorted(t.luts for t in ecp5)         # bigger is bigger
    assert all(t.spram_blocks == 0 for t in ecp5)


def test_toml_and_json_files_give_the_same_target(tmp_path):
    fields = dict(ECP5_25K, name="my-board", package="CSFBGA285", clock_mhz=75.5)
    (tmp_path / "t.toml").write_text(_toml(fields))
    (tmp_path / "t.json").write_text(json.dumps(fields))
    a, b = load_target(tmp_path / "t.toml"), load_target(str(tmp_path / "t.json"))
    assert a == b == Target(**fields)
    assert a.package == "CSFBGA285" and a.clock_mhz == 75.5


def test_asic_file_with_only_the_asic_fields(tmp_path):
    path = tmp_path / "chip.toml"
    path.write_text('name = "chip"\nfamily = "asic"\narea_mm2 = 2.5\nge_um2 = 1.0\n'
                    'sram_um2_per_bit = 0.5\nclock_mhz = 200\n')
    t = load_target(path)
    assert not t.is_fpga and t.area_mm2 == 2.5 and t.clock_mhz == 200


@pytest.mark.parametrize("content, suffix, match", [
    ('name = "x"\nfamily = "ecp5"\nluts = \n', ".toml", r"not valid TOML"),
    ("{not json", ".json", r"not valid JSON"),
    ("[1, 2]", ".json", r"one table of fields"),
    (_toml(dict(ECP5_25K, lutz=5)), ".toml", r"unknown target field\(s\) lutz"),
    (_toml({k: v for k, v in ECP5_25K.items() if k != "family"}), ".toml",
     r"family missing"),
    (_toml(dict(ECP5_25K, family="xilinx")), ".toml", r"family must be one of"),
    (_toml(dict(ECP5_25K, luts="many")), ".toml", r"luts must be a non-negative integer"),
    (_toml(dict(ECP5_25K, dsps=-1)), ".toml", r"dsps must be a non-negative integer"),
    (_toml(dict(ECP5_25K, package="")), ".toml", r"package is required for a ecp5 target"),
    (_toml(dict(ECP5_25K, clock_mhz=0)), ".toml", r"clock_mhz must be positive"),
    ('name = "c"\nfamily = "asic"\n', ".toml", r"area_mm2 is required for an asic target"),
])
def test_bad_files_are_one_line_input_errors(tmp_path, content, suffix, match):
    path = tmp_path / f"bad{suffix}"
    path.write_text(content)
    with pytest.raises(InputError, match=match) as info:
        load_target(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(str(path))


def test_unknown_name_and_missing_file():
    with pytest.raises(InputError, match=r"unknown target 'ecp5-12k'.*ice40-up5k"):
        load_target("ecp5-12k")
    with pytest.raises(InputError, match=r"cannot read target file"):
        load_target("/nonexistent/board.toml")


def test_cli_synth_refuses_bad_input_in_one_line(capsys, tmp_path):
    code = cli.main(["synth", str(tmp_path / "nothing")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "no such design directory" in err
    design = tmp_path / "d"
    design.mkdir()
    (design / "report.json").write_text("{}")
    code = cli.main(["synth", str(design)])
    err = capsys.readouterr().err
    assert code == 2 and re.search(r"missing npu\.v", err) and err.count("\n") == 1
    (design / "npu.v").write_text("module npu_top(clk); input clk; endmodule\n")
    code = cli.main(["synth", str(design), "--target", "nope"])
    err = capsys.readouterr().err
    assert code == 2 and "unknown target 'nope'" in err and err.count("\n") == 1
    assert sorted(p.name for p in design.iterdir()) == ["npu.v", "report.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
