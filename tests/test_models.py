"""The bundled digits models end to end on the RTL, through the command line."""

import pathlib

import pytest

from codesign import cli

pytestmark = pytest.mark.verilator

MODELS = pathlib.Path(__file__).resolve().parent.parent / "models"


@pytest.mark.parametrize("name", ["digits_mlp_qdq", "digits_cnn_qop", "digits_cnn_qdq"])
def test_bundled_model_verifies_on_rtl(capsys, tmp_path, name):
    code = cli.main(["verify", str(MODELS / f"{name}.onnx"), "-o", str(tmp_path / name),
                     "--input", str(MODELS / f"{name.rsplit('_', 1)[0]}_sample.npy")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "PASS: 8 inference(s) bit-exact on the RTL" in out
