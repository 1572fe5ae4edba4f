"""Pad, Resize and ConvTranspose on the generated Verilog under Verilator vs the golden model.

Randomized IR graphs ``x → Pad → Resize → ConvTranspose [→ Conv]`` (sizes that are not
multiples of the array, pad values other than the zero point, factors 1–3, kernels 1–4 with
strides 1–3, pads and output_padding), every tensor compared; then two small UNets exported from
PyTorch and quantized with onnxruntime's ``quantize_static`` (QDQ), one upsampling with Resize
and one with ConvTranspose, through ``codesign verify``.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from codesign import cli, ir

from .test_rtl_ops import check_on_rtl

pytestmark = pytest.mark.verilator


@dataclasses.dataclass(frozen=True)
class _Spec:
    h: int
    w: int
    c: int
    pads: tuple[int, int, int, int]
    factors: tuple[int, int]
    k: int
    stride: int
    ct_pads: tuple[int, int, int, int]
    out_pad: int
    cout: int
    signed: bool
    conv_after: bool
    seed: int


@st.composite
def _specs(draw) -> _Spec:
    k, s = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    return _Spec(h=draw(st.integers(1, 3)), w=draw(st.integers(1, 3)), c=draw(st.integers(1, 6)),
                 pads=tuple(draw(st.integers(0, 2)) for _ in range(4)),
                 factors=(draw(st.integers(1, 3)), draw(st.integers(1, 2))), k=k, stride=s,
                 ct_pads=tuple(draw(st.integers(0, k - 1)) for _ in range(4)),
                 out_pad=draw(st.integers(0, s - 1)), cout=draw(st.integers(1, 9)),
                 signed=draw(st.booleans()), conv_after=draw(st.booleans()),
                 seed=draw(st.integers(0, 2 ** 31)))


def _tensor(rng, name: str, shape, signed: bool) -> ir.Tensor:
    zp = int(rng.integers(-20, 20)) if signed else int(rng.integers(0, 60))
    return ir.Tensor(name, tuple(int(v) for v in shape), signed,
                     np.float32(rng.uniform(0.01, 0.1)), zp)


def _graph(spec: _Spec) -> ir.Graph | None:
    rng = np.random.default_rng(spec.seed)
    x = _tensor(rng, "input", (spec.h, spec.w, spec.c), spec.signed)
    top, left, bottom, right = spec.pads
    padded = dataclasses.replace(x, name="padded",
                                 shape=(spec.h + top + bottom, spec.w + left + right, spec.c))
    value = int(rng.integers(x.qmin, x.qmax + 1))
    ops: list[ir.Op] = [ir.Pad(x, padded, spec.pads, value, "pad")]
    fh, fw = spec.factors
    up = dataclasses.replace(padded, name="upsampled",
                             shape=(padded.shape[0] * fh, padded.shape[1] * fw, spec.c))
    ops.append(ir.Resize(padded, up, spec.factors, "resize"))
    k, s = spec.k, spec.stride
    pt, pl, pb, pr = spec.ct_pads
    out = (s * (up.shape[0] - 1) + spec.out_pad + k - pt - pb,
           s * (up.shape[1] - 1) + spec.out_pad + k - pl - pr)
    if min(out) < 1:
        return None
    y = _tensor(rng, "deconv_out", (*out, spec.cout), not spec.signed)
    spread = 128.0 * 128.0 * np.sqrt(k * k * spec.c / s / s)
    ops.append(ir.ConvTranspose(
        x=up, y=y, weight=rng.integers(-128, 128, (k, k, spec.c, spec.cout)).astype(np.int8),
        w_zero_point=int(rng.integers(-3, 4)),
        bias=rng.integers(-20000, 20000, spec.cout).astype(np.int32),
        multiplier=(rng.uniform(20, 120, spec.cout) / spread).astype(np.float32),
        stride=(s, s), pads=(pt, pl), clamp=(y.zero_point, y.qmax) if spec.seed % 2 else None,
        name="deconv"))
    if spec.conv_after:
        # A 3×3 convolution reading the scattered output (through external memory).
        z = _tensor(rng, "conv_out", (*out, 3), spec.signed)
        ops.append(ir.Conv(
            x=y, y=z, weight=rng.integers(-128, 128, (3, 3, spec.cout, 3)).astype(np.int8),
            w_zero_point=0, bias=np.zeros(3, np.int32),
            multiplier=np.full(3, 60 / (128.0 * 128 * 3 * np.sqrt(spec.cout)), np.float32),
            pads=(1, 1, 1, 1), name="conv"))
    last = ops[-1].y
    return ir.Graph(
        name="resample",
        inputs=(ir.IOBinding("input", (1, spec.c, spec.h, spec.w), False, x),),
        outputs=(ir.IOBinding("output", (1, last.shape[2], *last.shape[:2]), False, last),),
        ops=tuple(ops))


@pytest.mark.parametrize("name", ["4x4", "2x8"])
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                HealthCheck.filter_too_much])
@given(spec=_specs())
def test_pad_resize_conv_transpose_on_rtl_match_golden(name, spec):
    graph = _graph(spec)
    if graph is None:
        return
    check_on_rtl(name, graph, [spec.seed])


# ------------------------------------------------------------------------------------------------
# Small UNets from PyTorch, QDQ from onnxruntime's quantize_static, through `codesign verify`

def _unet_model(tmp_path, upsample: str):
    """1×16×16 → Conv+ReLU (skip) → MaxPool → Conv+ReLU → ×2 upsampling (Resize nearest or
    ConvTranspose 2×2/2) → Concat with the skip → Conv+ReLU → 1×1 head."""
    import torch
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    from .modelgen import _quiet_export

    class UNet(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.enc = torch.nn.Conv2d(1, 8, 3, padding=1)
            self.mid = torch.nn.Conv2d(8, 16, 3, padding=1)
            self.up = (torch.nn.Upsample(scale_factor=2, mode="nearest") if upsample == "resize"
                       else torch.nn.ConvTranspose2d(16, 16, 2, stride=2))
            self.dec = torch.nn.Conv2d(24, 8, 3, padding=1)
            self.head = torch.nn.Conv2d(8, 2, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            skip = torch.relu(self.enc(x))
            mid = torch.relu(self.mid(torch.nn.functional.max_pool2d(skip, 2)))
            return self.head(torch.relu(self.dec(torch.cat([skip, self.up(mid)], 1))))

    torch.manual_seed(0)
    float_path, path = tmp_path / "unet_float.onnx", tmp_path / f"unet_{upsample}.onnx"
    with _quiet_export(), torch.no_grad():
        torch.onnx.export(UNet().eval(), (torch.zeros(1, 1, 16, 16),), dynamo=True,
                          input_names=["x"], output_names=["y"]).save(str(float_path))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            rng = np.random.default_rng(1)
            self.data = iter({"x": rng.standard_normal((1, 1, 16, 16)).astype(np.float32)}
                             for _ in range(16))

        def get_next(self):
            return next(self.data, None)

    quantize_static(str(float_path), str(path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    per_channel=True)
    return path


@pytest.mark.parametrize(("upsample", "kind"), [("resize", "resize"),
                                                ("convtranspose", "conv_transpose")])
def test_unet_verifies_on_rtl(capsys, tmp_path, upsample, kind):
    path = _unet_model(tmp_path, upsample)
    code = cli.main(["verify", str(path), "-o", str(tmp_path / "out"), "--per-layer"])
    out = capsys.readouterr().out
    print(out)
    assert code == 0, out
    assert "PASS: 4 inference(s) bit-exact on the RTL" in out
    assert re.search(rf"^\S+\s+{kind}\s+\(16, 16, 16\)\s+0\s+0\s+0$", out, re.M), out
    row = re.search(r"^y\s+\(1, 2, 16, 16\)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)$", out, re.M)
    assert row is not None and row.group(2) == "0", out
