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

from .archs import mobilenet_v2, mobilenet_v3_small
from .modelgen import export_float, ort_quantize, pt2e_export, pt2e_quantize

__all__ = ["BUILDERS", "pt2e_mobilenet_v2", "ort_mobilenet_v3_small"]


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


#: Model name → builder.
BUILDERS: dict[str, Callable[[pathlib.Path], pathlib.Path]] = {
    "pt2e_mobilenet_v2": pt2e_mobilenet_v2,
    "ort_mobilenet_v3_small": ort_mobilenet_v3_small,
}
