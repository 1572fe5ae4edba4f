"""The whole models of each tool that issue 15's "done when" names, built from PyTorch with the
tool itself (seeded), exactly as a user would export them. Used by tests/test_tool_models.py and
bench/tool_models.py.

Each builder takes a directory, writes the model (and whatever files its tool writes beside it)
there and returns the model's path.
"""

from __future__ import annotations

import pathlib
from collections.abc import Callable

import numpy as np
import torch

from . import brevitasgen, shapemodels
from .archs import UNet, mobilenet_v2, mobilenet_v3_small
from .modelgen import export_float, ort_quantize, pt2e_export, pt2e_quantize

__all__ = ["BUILDERS", "ort_mobilenet_v3_small", "pt2e_mobilenet_v2", "unet"]


def _calibration(shape: tuple[int, ...], seed: int, n: int = 16) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(n)]


def pt2e_mobilenet_v2(directory: pathlib.Path) -> pathlib.Path:
    """A PT2E (XNNPACK, int8, per-channel) MobileNetV2 exported with its weights beside it."""
    example = torch.zeros((1, 3, 32, 32))
    path = directory / "mobilenet_v2.onnx"
    quantized = pt2e_quantize(mobilenet_v2(seed=3), example, _calibration((1, 3, 32, 32), 3))
    pt2e_export(quantized, example, path)
    return path


def ort_mobilenet_v3_small(directory: pathlib.Path) -> pathlib.Path:
    """A MobileNetV3-small-like net (HardSwish, squeeze-excite with HardSigmoid gates) quantized
    by onnxruntime's ``quantize_static`` (QDQ, uint8) with HardSwish and HardSigmoid added to the
    op types to quantize: by default onnxruntime leaves them in float, and the last HardSwish
    then feeds the global average unquantized."""
    example = torch.zeros((1, 3, 32, 32))
    float_path = directory / "mobilenet_v3_small_float.onnx"
    export_float(mobilenet_v3_small(seed=1), example, float_path)
    path = directory / "mobilenet_v3_small.onnx"
    ort_quantize(float_path, path, _calibration((1, 3, 32, 32), 1),
                 extra_op_types=("HardSwish", "HardSigmoid"))
    return path


def unet(directory: pathlib.Path, upsample: str) -> pathlib.Path:
    """The :class:`~tests.archs.UNet` (``upsample``: ``"resize"``, ``"convtranspose"``,
    ``"resize+pad"`` on a 1×15×15 input so that the upsampled tensor is padded to the skip's
    size, or ``"resize-qop"``: QOperator) quantized by ``quantize_static`` (uint8, per channel)."""
    torch.manual_seed(0)
    size = 15 if upsample == "resize+pad" else 16
    shape = (1, 1, size, size)
    float_path = directory / "unet_float.onnx"
    export_float(UNet(upsample.removesuffix("-qop").removesuffix("+pad")).eval(),
                 torch.zeros(shape), float_path)
    path = directory / f"unet_{upsample}.onnx"
    ort_quantize(float_path, path, _calibration(shape, 1),
                 fmt="qop" if upsample.endswith("-qop") else "qdq")
    return path


def _brevitas(form: str, **options) -> Callable[[pathlib.Path], pathlib.Path]:
    def build(directory: pathlib.Path) -> pathlib.Path:
        return brevitasgen.export(brevitasgen.cnn(**options), form,
                                  directory / f"brevitas_{form}.onnx")
    return build


#: Model name → builder: issue 15's "done when" list, with the tool that makes each.
BUILDERS: dict[str, Callable[[pathlib.Path], pathlib.Path]] = {
    "brevitas_w4a4_qcdq": _brevitas("qcdq_dynamo", w_bits=4, a_bits=4),
    "brevitas_w4a4_qonnx": _brevitas("qonnx", w_bits=4, a_bits=4),
    "brevitas_ternary_qcdq": _brevitas("qcdq_dynamo", w_bits=2, a_bits=4),
    "brevitas_ternary_qonnx": _brevitas("qonnx", w_bits=2, a_bits=4),
    "pt2e_mobilenet_v2": pt2e_mobilenet_v2,
    "ort_mobilenet_v3_small": ort_mobilenet_v3_small,
    "ort_kws_1d": shapemodels.kws1d,
    "ort_unet_resize": lambda d: unet(d, "resize"),
    "ort_unet_convtranspose": lambda d: unet(d, "convtranspose"),
    "ort_linear_sequence_matmul_add": shapemodels.linear_sequence,
    "ort_linear_sequence_gemm": lambda d: shapemodels.linear_sequence(d, preprocess=True),
    "qlinear_matmul_16x32x24": shapemodels.qlinear_matmul,
    "ort_mlp_fixed_batch_4": shapemodels.mlp_batch,
}
