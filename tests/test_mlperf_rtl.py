"""The MLPerf Tiny models end to end on the RTL (codesign verify --per-layer).

DS-CNN and the FC autoencoder run in the default suite; ResNet-8 and MobileNetV1 are longer
whole-model runs and are marked slow (`pytest -m slow`).
"""

import pytest

from codesign import cli
from models import mlperf

pytestmark = pytest.mark.verilator


@pytest.mark.parametrize("name", [
    "dscnn", "fc_autoencoder",
    pytest.param("resnet8", marks=pytest.mark.slow),
    pytest.param("mobilenet_v1_025", marks=pytest.mark.slow),
])
def test_mlperf_model_verifies_on_rtl(capsys, tmp_path, name):
    code = cli.main(["verify", str(mlperf.path(name)), "-o", str(tmp_path / name), "--count",
                     "1", "--per-layer"])
    out = capsys.readouterr().out
    assert code == 0, out
    # PASS with --per-layer means: RTL ≡ golden in every layer, every conv ≡ onnxruntime on
    # its own inputs, float-formulated ops within 1 LSB of it.
    assert "PASS: 1 inference(s) bit-exact on the RTL" in out
    assert "first divergence" in out
