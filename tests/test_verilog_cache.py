"""The Verilog cache returns exactly what a fresh emission gives, and reacts to the config."""

from codesign.isa import HwConfig
from codesign.rtl.top import generate_verilog
from codesign.verilog import npu_verilog


def test_cached_verilog_is_identical_to_fresh(tmp_path, monkeypatch):
    monkeypatch.setenv("CODESIGN_CACHE", str(tmp_path))
    config = HwConfig(rows=2, cols=4, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=16,
                      prm_depth=2)
    first = npu_verilog(config)
    cached = list((tmp_path / "verilog").iterdir())
    assert len(cached) == 1
    assert npu_verilog(config) == first == generate_verilog(config)
    other = HwConfig(rows=4, cols=2, bus_bytes=2, act_depth=64, wgt_depth=8, acc_depth=16,
                     prm_depth=2)
    assert npu_verilog(other) != first
    assert len(list((tmp_path / "verilog").iterdir())) == 2
