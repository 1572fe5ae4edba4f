"""The four MLPerf Tiny v1.x reference architectures, with seeded random weights, quantized.

``python -m models.mlperf`` builds each network in PyTorch, folds its BatchNorms into the
preceding Conv/Linear, exports it with the dynamo ONNX exporter and quantizes it with
onnxruntime's ``quantize_static`` (QDQ, uint8 activations, per-channel int8 weights, calibrated
on 32 seeded random inputs), writing ``models/mlperf/<name>.onnx``; then it prints the MACs and
ONNX op types per model. The weights are random: these files exercise the toolchain at realistic
shapes and sizes, they are not accuracy baselines. The build is deterministic (seeded, one
thread): re-running it reproduces the files byte for byte.

====================  ============  ================================================
name                  input (NCHW)  architecture
====================  ============  ================================================
``dscnn``             1×1×49×10     keyword spotting DS-CNN, 12 classes
``mobilenet_v1_025``  1×3×96×96     visual wake words MobileNetV1 ×0.25, 2 classes
``resnet8``           1×3×32×32     image classification ResNet-8, 10 classes
``fc_autoencoder``    1×640         anomaly detection dense autoencoder, 640 → 8 → 640
====================  ============  ================================================

Every network ends in logits (no Softmax). Where the Keras reference pads "same"
asymmetrically, the PyTorch model pads symmetrically with the same output size (one plain Conv
node instead of Pad + Conv); that shifts border taps only and leaves every shape and MAC count
as in the reference.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import pathlib
import tempfile
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from models.export import export_onnx

__all__ = ["MODELS", "MlperfModel", "build", "count_macs", "main", "network", "op_types", "path"]

HERE = pathlib.Path(__file__).resolve().parent
OUT_DIR = HERE / "mlperf"

#: Calibration samples per model (seeded).
CALIBRATION_SAMPLES = 32


@dataclasses.dataclass(frozen=True)
class MlperfModel:
    """One MLPerf Tiny reference model.

    Attributes
    ----------
    name
        File stem under ``models/mlperf/`` and key in :data:`MODELS`.
    task
        The MLPerf Tiny benchmark it stands for.
    input_shape
        ONNX input shape including the batch axis of 1.
    builder
        Makes the float PyTorch network (with BatchNorms, unfolded) from the current torch seed.
    calibration
        Distribution of the calibration inputs: ``"normal"`` (unit normal, standardized
        features) or ``"uniform"`` (uniform [0, 1], images).
    """
    name: str
    task: str
    input_shape: tuple[int, ...]
    builder: Callable[[], nn.Module]
    calibration: str

    @property
    def path(self) -> pathlib.Path:
        """The quantized model file."""
        return OUT_DIR / f"{self.name}.onnx"


def _conv_bn(c_in: int, c_out: int, kernel: int | tuple[int, int], stride: int = 1,
             padding: int | tuple[int, int] = 0, groups: int = 1,
             relu: bool = True) -> nn.Sequential:
    """Conv (no bias: the BN supplies it) + BatchNorm [+ ReLU], as in the Keras references."""
    layers: list[nn.Module] = [nn.Conv2d(c_in, c_out, kernel, stride, padding, groups=groups,
                                         bias=False), nn.BatchNorm2d(c_out)]
    if relu:
        layers.append(nn.ReLU())
    return nn.Sequential(*layers)


def _separable(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    """Depthwise 3×3 (group = channels) + BN + ReLU, then pointwise 1×1 + BN + ReLU."""
    return nn.Sequential(_conv_bn(c_in, c_in, 3, stride, 1, groups=c_in), _conv_bn(c_in, c_out, 1))


def _dscnn() -> nn.Module:
    # Keras: Conv2D(64, (10, 4), strides=2, padding="same") pads H by (4, 5) and W by (1, 1);
    # padding (5, 1) gives the same 25×5 map without a separate Pad node.
    return nn.Sequential(_conv_bn(1, 64, (10, 4), 2, (5, 1)),
                         *(_separable(64, 64) for _ in range(4)),
                         nn.AvgPool2d((25, 5)), nn.Flatten(), nn.Linear(64, 12))


def _mobilenet_v1_025() -> nn.Module:
    # The standard MobileNetV1 schedule (out channels, stride) at width 1.0, scaled by 0.25.
    schedule = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), *[(512, 1)] * 5,
                (1024, 2), (1024, 1)]
    layers: list[nn.Module] = [_conv_bn(3, 8, 3, 2, 1)]
    c_in = 8
    for c_out, stride in schedule:
        layers.append(_separable(c_in, c_out // 4, stride))
        c_in = c_out // 4
    # 96 / 32 = 3: the pool covers the whole final 3×3 map (AveragePool, not ReduceMean).
    return nn.Sequential(*layers, nn.AvgPool2d(3), nn.Flatten(), nn.Linear(c_in, 2))


class _ResidualBlock(nn.Module):
    """conv3×3-BN-ReLU-conv3×3-BN plus the shortcut (identity, or 1×1 strided conv without BN as
    in the EEMBC reference), added, then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(_conv_bn(c_in, c_out, 3, stride, 1),
                                  _conv_bn(c_out, c_out, 3, 1, 1, relu=False))
        self.shortcut: nn.Module = (nn.Identity() if stride == 1 and c_in == c_out
                                    else nn.Conv2d(c_in, c_out, 1, stride))
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _resnet8() -> nn.Module:
    return nn.Sequential(_conv_bn(3, 16, 3, 1, 1), _ResidualBlock(16, 16, 1),
                         _ResidualBlock(16, 32, 2), _ResidualBlock(32, 64, 2),
                         nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, 10))


def _fc_autoencoder() -> nn.Module:
    widths = [640, 128, 128, 128, 128, 8, 128, 128, 128, 128]
    layers: list[nn.Module] = []
    for w_in, w_out in zip(widths, widths[1:], strict=False):
        layers += [nn.Linear(w_in, w_out), nn.BatchNorm1d(w_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(128, 640))


MODELS: dict[str, MlperfModel] = {m.name: m for m in [
    MlperfModel("dscnn", "keyword spotting", (1, 1, 49, 10), _dscnn, "normal"),
    MlperfModel("mobilenet_v1_025", "visual wake words", (1, 3, 96, 96), _mobilenet_v1_025,
                "uniform"),
    MlperfModel("resnet8", "image classification", (1, 3, 32, 32), _resnet8, "uniform"),
    MlperfModel("fc_autoencoder", "anomaly detection", (1, 640), _fc_autoencoder, "normal"),
]}


def path(name: str) -> pathlib.Path:
    """The quantized ONNX file of model ``name`` (a key of :data:`MODELS`)."""
    return MODELS[name].path


def _randomize(net: nn.Module) -> None:
    """He-normal weights and non-trivial BN statistics, from the current torch seed.

    PyTorch's default init shrinks activations by ~√6 per ReLU layer, so by MobileNet's 27th layer
    they would be all but constant; He init keeps their scale, giving every layer a useful
    quantization range. Random BN statistics make the folding non-trivial.
    """
    for module in net.modules():
        if isinstance(module, nn.Conv2d | nn.Linear):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            if module.bias is not None:
                nn.init.normal_(module.bias, std=0.1)
        elif isinstance(module, nn.BatchNorm1d | nn.BatchNorm2d):
            nn.init.uniform_(module.weight, 0.5, 1.5)
            nn.init.normal_(module.bias, std=0.1)
            assert module.running_mean is not None and module.running_var is not None
            module.running_mean.normal_(std=0.1)
            module.running_var.uniform_(0.5, 1.5)


def _fold_batchnorm(net: nn.Module) -> nn.Module:
    """Fold every BatchNorm into the Conv2d/Linear just before it (in the same Sequential) and
    drop it, so the exported graph has no BatchNormalization node."""
    for seq in [m for m in net.modules() if isinstance(m, nn.Sequential)]:
        for i in range(len(seq) - 1):
            layer, bn = seq[i], seq[i + 1]
            if isinstance(layer, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                seq[i] = torch.nn.utils.fusion.fuse_conv_bn_eval(layer, bn)
            elif isinstance(layer, nn.Linear) and isinstance(bn, nn.BatchNorm1d):
                seq[i] = torch.nn.utils.fusion.fuse_linear_bn_eval(layer, bn)
            else:
                continue
            seq[i + 1] = nn.Identity()  # traced away: no node in the ONNX graph
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())
    return net


def network(model: MlperfModel, seed: int = 0) -> nn.Module:
    """The float network of ``model`` in eval mode with its BatchNorms folded, weights seeded by
    ``seed`` (independent of what was built before)."""
    torch.manual_seed(seed)
    net = model.builder()
    _randomize(net)
    return _fold_batchnorm(net.eval())


def count_macs(model: MlperfModel) -> int:
    """Multiply-accumulates of one inference, from the architecture.

    Conv: ``H_out·W_out·K_h·K_w·C_in/groups·C_out``; Linear: ``in·out``. Element-wise ops
    (ReLU, Add, pooling) are not counted.
    """
    macs = 0

    def hook(module: nn.Module, _inputs: object, output: torch.Tensor) -> None:
        nonlocal macs
        weight = module.weight  # Conv: C_out × C_in/groups × K_h × K_w; Linear: out × in
        assert isinstance(weight, torch.Tensor)
        spatial = output.shape[2:].numel() if isinstance(module, nn.Conv2d) else 1
        macs += spatial * weight.numel()

    net = network(model)
    handles = [m.register_forward_hook(hook) for m in net.modules()
               if isinstance(m, nn.Conv2d | nn.Linear)]
    try:
        with torch.no_grad():
            net(torch.zeros(model.input_shape))
    finally:
        for handle in handles:
            handle.remove()
    return macs


def _export(net: nn.Module, model: MlperfModel, float_path: pathlib.Path) -> None:
    export_onnx(net, torch.zeros(model.input_shape), float_path)
    _strip_metadata(float_path)


def _strip_metadata(onnx_path: pathlib.Path) -> None:
    """Drop the exporter's metadata (stack traces with absolute paths, ``__main__`` vs
    ``models.mlperf`` class names, export signatures), which the quantizer would carry into the
    output: the files must not depend on the checkout's location or on how the build was run."""
    import onnx

    proto = onnx.load(onnx_path)
    graph = proto.graph
    for item in [proto, graph, *graph.node, *graph.value_info, *graph.input, *graph.output,
                 *graph.initializer]:
        del item.metadata_props[:]
    onnx.save(proto, onnx_path)


def calibration_inputs(model: MlperfModel, seed: int = 0) -> np.ndarray:
    """``CALIBRATION_SAMPLES`` seeded inputs (N × input shape) in the model's input range."""
    rng = np.random.default_rng(seed)
    shape = (CALIBRATION_SAMPLES, *model.input_shape)
    data = rng.random(shape) if model.calibration == "uniform" else rng.standard_normal(shape)
    return data.astype(np.float32)


def _quantize(model: MlperfModel, float_path: pathlib.Path, out_path: pathlib.Path) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    samples = calibration_inputs(model)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter({"x": x} for x in samples)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    def not_preprocessing_advice(record: logging.LogRecord) -> bool:
        # ORT advises quant_pre_process (shape inference + graph optimization) on the root
        # logger; the exported graphs are already shaped and BN-free, and its fusions would
        # only make them less plain.
        return not record.getMessage().startswith("Please consider")

    out_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    root.addFilter(not_preprocessing_advice)
    try:
        quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        per_channel=True)
    finally:
        root.removeFilter(not_preprocessing_advice)


def build(names: list[str] | None = None, out_dir: pathlib.Path = OUT_DIR) -> None:
    """Export and quantize the models ``names`` (default: all) into ``out_dir``.

    The float models only live in a temporary directory: with random weights they are no
    accuracy baseline worth keeping.
    """
    deterministic = torch.are_deterministic_algorithms_enabled()
    threads = torch.get_num_threads()
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)  # float reductions in one fixed order: reproducible calibration
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name in names or list(MODELS):
                model = MODELS[name]
                float_path = pathlib.Path(tmp) / f"{name}_float.onnx"
                _export(network(model), model, float_path)
                _quantize(model, float_path, out_dir / f"{name}.onnx")
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(deterministic)


def op_types(onnx_path: pathlib.Path) -> list[str]:
    """The sorted distinct op types of an ONNX graph (what a frontend must support)."""
    import onnx

    return sorted({node.op_type for node in onnx.load(onnx_path).graph.node})


def main(argv: list[str] | None = None) -> None:
    """``python -m models.mlperf [--report] [NAME ...]``: build the models, print their MACs."""
    parser = argparse.ArgumentParser(prog="python -m models.mlperf", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"models to build (default: all of {', '.join(MODELS)})")
    parser.add_argument("--report", action="store_true",
                        help="only print the table for the existing files")
    args = parser.parse_args(argv)
    names = args.names or list(MODELS)
    if unknown := sorted(set(names) - set(MODELS)):
        parser.error(f"unknown model(s): {', '.join(unknown)}")
    if not args.report:
        build(names)
    print(f"{'model':<18} {'input':<14} {'MACs':>12} {'bytes':>8}  op types")
    for name in names:
        model = MODELS[name]
        shape = "×".join(map(str, model.input_shape))
        size = model.path.stat().st_size if model.path.exists() else 0
        ops = ", ".join(op_types(model.path)) if model.path.exists() else "(not built)"
        print(f"{name:<18} {shape:<14} {count_macs(model):>12,} {size:>8}  {ops}")


if __name__ == "__main__":
    main()
