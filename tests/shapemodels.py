"""Models for the shape tests (tests/test_shapes.py): matrices with M > 1, fixed batches, 1-D nets.

Each is built the way its users make it: PyTorch → ``torch.onnx.export`` → onnxruntime
``quantize_static`` on seeded calibration data, or ``onnx.helper`` for the QOperator matrix
product that the quantizer itself writes as one node. Every builder writes into ``directory`` and
returns the model's path.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
import onnx.helper
import onnx.numpy_helper
import torch

from .modelgen import _quiet_export

__all__ = ["KWS_INPUT", "kws1d", "linear_sequence", "mlp_batch", "cnn_batch", "qlinear_matmul",
           "conv1d_model", "quantize"]

#: The 1-D keyword spotter's input: 10 MFCC-like features over 49 frames.
KWS_INPUT = (1, 10, 49)


def quantize(float_path: pathlib.Path, path: pathlib.Path, shape: tuple[int, ...], seed: int,
             fmt: str = "qdq", signed: bool = False, per_channel: bool = True,
             input_name: str = "x", preprocess: bool = False) -> pathlib.Path:
    """``quantize_static`` of ``float_path`` on 16 seeded unit-normal calibration inputs, after
    onnxruntime's ``quant_pre_process`` when ``preprocess`` (its optimizer fuses a MatMul + Add
    on a 3-D input into Reshape → Gemm → Reshape)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    rng = np.random.default_rng(seed)
    if preprocess:
        from onnxruntime.quantization.shape_inference import quant_pre_process

        prepared = float_path.with_name(f"{float_path.stem}_pre.onnx")
        quant_pre_process(str(float_path), str(prepared))
        float_path = prepared

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter({input_name: rng.standard_normal(shape).astype(np.float32)}
                             for _ in range(16))

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    quantize_static(str(float_path), str(path), Reader(),
                    quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                    activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                    weight_type=QuantType.QInt8, per_channel=per_channel)
    return path


def _export(module: torch.nn.Module, shape: tuple[int, ...], path: pathlib.Path,
            exporter: str = "dynamo") -> pathlib.Path:
    x = torch.zeros(shape)
    with _quiet_export(), torch.no_grad():
        if exporter == "dynamo":
            torch.onnx.export(module.eval(), (x,), dynamo=True, input_names=["x"],
                              output_names=["y"], verbose=False).save(str(path))
        else:
            torch.onnx.export(module.eval(), (x,), str(path), dynamo=False, opset_version=17,
                              input_names=["x"], output_names=["y"])
    return path


def _build(module: torch.nn.Module, shape: tuple[int, ...], directory: pathlib.Path, name: str,
           seed: int, exporter: str = "dynamo", **options) -> pathlib.Path:
    name = "_".join([name, exporter, *(f"{k}{v}" for k, v in sorted(options.items()))])
    float_path = _export(module, shape, directory / f"{name}_float.onnx", exporter)
    return quantize(float_path, directory / f"{name}.onnx", shape, seed, **options)


class _KWS(torch.nn.Module):
    """Conv1d+ReLU, MaxPool1d, Conv1d stride 2 + ReLU, AvgPool1d, global average, Linear."""

    def __init__(self, features: int, classes: int) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv1d(features, 16, 3, padding=1)
        self.pool1 = torch.nn.MaxPool1d(2)
        self.conv2 = torch.nn.Conv1d(16, 24, 3, stride=2)
        self.dw = torch.nn.Conv1d(24, 24, 3, padding=1, groups=24)
        self.pool2 = torch.nn.AvgPool1d(2)
        self.fc = torch.nn.Linear(24, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool1(torch.relu(self.conv1(x)))
        x = torch.relu(self.conv2(x))
        x = torch.relu(self.dw(x))
        x = self.pool2(x)
        x = torch.nn.functional.adaptive_avg_pool1d(x, 1).flatten(1)
        return self.fc(x)


def kws1d(directory: pathlib.Path, seed: int = 0, exporter: str = "dynamo",
          **options) -> pathlib.Path:
    """A small 1-D keyword spotter on ``KWS_INPUT``, 12 classes."""
    torch.manual_seed(seed)
    return _build(_KWS(KWS_INPUT[1], 12), KWS_INPUT, directory, "kws1d", seed,
                  exporter, **options)


class _Conv1d(torch.nn.Module):
    def __init__(self, cin: int, cout: int, k: int, stride: int, padding: int, groups: int,
                 pool: str | None) -> None:
        super().__init__()
        self.conv = torch.nn.Conv1d(cin, cout, k, stride=stride, padding=padding, groups=groups)
        self.pool = {None: None, "max": torch.nn.MaxPool1d(2, 2, padding=1),
                     "avg": torch.nn.AvgPool1d(3, 2)}[pool]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.conv(x))
        return x if self.pool is None else self.pool(x)


def conv1d_model(directory: pathlib.Path, shape: tuple[int, int, int], cout: int, k: int,
                 stride: int, padding: int, groups: int, pool: str | None, seed: int,
                 **options) -> pathlib.Path:
    """One Conv1d (+ReLU), optionally followed by MaxPool1d(2, 2, padding 1) or
    AvgPool1d(3, 2)."""
    torch.manual_seed(seed)
    module = _Conv1d(shape[1], cout, k, stride, padding, groups, pool)
    name = f"conv1d_{'_'.join(map(str, (*shape, cout, k, stride, padding, groups, pool)))}"
    return _build(module, shape, directory, name, seed, **options)


def linear_sequence(directory: pathlib.Path, m: int = 16, k: int = 32, n: int = 24,
                    seed: int = 0, **options) -> pathlib.Path:
    """``nn.Linear(k, n)`` with bias on a ``[1, m, k]`` sequence. The exporters write MatMul +
    Add; with ``preprocess=True`` onnxruntime's pre-processing makes it Reshape → Gemm →
    Reshape."""
    torch.manual_seed(seed)
    return _build(torch.nn.Linear(k, n), (1, m, k), directory, f"linear_seq_{m}_{k}_{n}", seed,
                  **options)


def mlp_batch(directory: pathlib.Path, batch: int = 4, seed: int = 0, **options) -> pathlib.Path:
    """A 64 → 32 → ReLU → 10 MLP exported with a fixed batch: input ``[batch, 64]``."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                 torch.nn.Linear(32, 10))
    return _build(module, (batch, 64), directory, f"mlp_batch{batch}", seed, **options)


def cnn_batch(directory: pathlib.Path, batch: int = 4, seed: int = 0,
              **options) -> pathlib.Path:
    """A small CNN exported with a fixed batch: input ``[batch, 1, 8, 8]``."""
    torch.manual_seed(seed)
    module = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(),
                                 torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                 torch.nn.Linear(64, 10))
    return _build(module, (batch, 1, 8, 8), directory, f"cnn_batch{batch}", seed, **options)


def qlinear_matmul(directory: pathlib.Path, m: int = 16, k: int = 32, n: int = 24,
                   seed: int = 0, signed: bool = False) -> pathlib.Path:
    """A QOperator ``[m, k] × [k, n]`` QLinearMatMul with an 8-bit graph input and output and
    a constant int8 weight (the node onnxruntime's quantizer writes for a MatMul)."""
    rng = np.random.default_rng(seed)
    act = onnx.TensorProto.INT8 if signed else onnx.TensorProto.UINT8
    act_np = np.int8 if signed else np.uint8
    zp = 3 if signed else 128
    inits = [
        onnx.numpy_helper.from_array(np.array(0.02, np.float32), "a_scale"),
        onnx.numpy_helper.from_array(np.array(zp, act_np), "a_zero_point"),
        onnx.numpy_helper.from_array(rng.integers(-127, 128, (k, n)).astype(np.int8), "b"),
        onnx.numpy_helper.from_array(np.array(0.01, np.float32), "b_scale"),
        onnx.numpy_helper.from_array(np.array(0, np.int8), "b_zero_point"),
        onnx.numpy_helper.from_array(np.array(0.25, np.float32), "y_scale"),
        onnx.numpy_helper.from_array(np.array(zp - 5, act_np), "y_zero_point"),
    ]
    node = onnx.helper.make_node(
        "QLinearMatMul", ["a", "a_scale", "a_zero_point", "b", "b_scale", "b_zero_point",
                          "y_scale", "y_zero_point"], ["y"], name="matmul")
    graph = onnx.helper.make_graph([node], "qlinear_matmul",
                                   [onnx.helper.make_tensor_value_info("a", act, [m, k])],
                                   [onnx.helper.make_tensor_value_info("y", act, [m, n])], inits)
    model = onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = directory / f"qlinear_matmul_{m}_{k}_{n}_{'s8' if signed else 'u8'}.onnx"
    onnx.save(model, str(path))
    return path
