"""The bundled example models: an MLP and a small CNN on scikit-learn's 8×8 digits.

``python -m models.digits`` trains both (seeded, CPU, a few seconds), exports them with the dynamo
ONNX exporter and quantizes them with onnxruntime's ``quantize_static`` (calibrated on the
training split), writing into this directory:

* ``digits_mlp.onnx``, ``digits_cnn.onnx`` — the float models (the accuracy baseline);
* ``digits_mlp_qdq.onnx`` — QDQ, uint8 activations, per-channel int8 weights;
* ``digits_cnn_qop.onnx`` — QOperator, int8 activations, per-channel int8 weights;
* ``digits_cnn_qdq.onnx`` — QDQ, uint8 activations, per-channel int8 weights.

``python -m models.digits --report`` prints test-split accuracy of the float model, onnxruntime's
integer kernels and the golden model; :func:`accuracy_report` takes further columns (e.g. the
RTL simulation) as predict callables.
"""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
from collections.abc import Callable, Iterator, Mapping

import numpy as np
import torch

from models.export import export_onnx

__all__ = [
    "MODELS",
    "DigitsModel",
    "accuracy",
    "accuracy_report",
    "build",
    "golden_predictor",
    "load_split",
    "main",
    "onnxruntime_predictor",
    "rtl_batch_predictor",
    "write_sample",
]

HERE = pathlib.Path(__file__).resolve().parent

#: A predictor: one inference's float input (the ONNX input shape, batch 1) → class scores.
Predict = Callable[[np.ndarray], np.ndarray]
#: A batch predictor: N samples (N × input shape without the batch axis) → N × class scores.
BatchPredict = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class DigitsModel:
    """One bundled model: its float file and its quantized variants (format, signed)."""
    name: str
    input_shape: tuple[int, ...]
    quantized: Mapping[str, tuple[str, bool]]

    @property
    def float_path(self) -> pathlib.Path:
        return HERE / f"{self.name}.onnx"

    def paths(self) -> Iterator[pathlib.Path]:
        """The quantized files."""
        return (HERE / f"{stem}.onnx" for stem in self.quantized)


MODELS = {
    "digits_mlp": DigitsModel("digits_mlp", (64,), {"digits_mlp_qdq": ("qdq", False)}),
    "digits_cnn": DigitsModel("digits_cnn", (1, 8, 8), {"digits_cnn_qop": ("qop", True),
                                                         "digits_cnn_qdq": ("qdq", False)}),
}


def _network(name: str) -> torch.nn.Module:
    if name == "digits_mlp":
        return torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                   torch.nn.Linear(64, 32), torch.nn.ReLU(),
                                   torch.nn.Linear(32, 10))
    # 1×8×8 → 8×8×8 → 16×8×8 → 16×4×4 → 10: about 80 k MACs.
    return torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                               torch.nn.Linear(16 * 4 * 4, 10))


def load_split(model: DigitsModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(x_train, y_train, x_test, y_test)``: a fixed 75/25 split, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32).reshape(-1, *model.input_shape)
    x_train, x_test, y_train, y_test = train_test_split(
        x, digits.target, test_size=0.25, random_state=0, stratify=digits.target)
    return x_train, y_train, x_test, y_test


def _train(model: DigitsModel) -> torch.nn.Module:
    """Train with a fixed seed, one thread and deterministic kernels (reproducible weights)."""
    torch.manual_seed(0)
    net = _network(model.name)
    x_train, y_train, _, _ = load_split(model)
    x, y = torch.from_numpy(x_train), torch.from_numpy(y_train)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    generator = torch.Generator().manual_seed(0)
    for _ in range(40):
        for batch in torch.randperm(len(x), generator=generator).split(64):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(net(x[batch]), y[batch]).backward()
            optimizer.step()
    return net.eval()


def _export(net: torch.nn.Module, model: DigitsModel) -> None:
    export_onnx(net, torch.zeros(1, *model.input_shape), model.float_path)


def _quantize(model: DigitsModel) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    x_train = load_split(model)[0]

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.data = iter({"x": x[None]} for x in x_train[:300])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.data, None)

    for stem, (fmt, signed) in model.quantized.items():
        quantize_static(str(model.float_path), str(HERE / f"{stem}.onnx"), Reader(),
                        quant_format=QuantFormat.QDQ if fmt == "qdq" else QuantFormat.QOperator,
                        activation_type=QuantType.QInt8 if signed else QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)


def build() -> None:
    """Train, export and quantize every bundled model into ``models/``."""
    torch.use_deterministic_algorithms(True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for model in MODELS.values():
            _export(_train(model), model)
            _quantize(model)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(False)


def onnxruntime_predictor(path: pathlib.Path) -> Predict:
    """Predict with onnxruntime (exact integer kernels for quantized models)."""
    from codesign.ortwitness import create_session

    session = create_session(path)
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})[0]


def golden_predictor(path: pathlib.Path) -> Predict:
    """Predict with the golden model on the frontend's IR."""
    from codesign import reference
    from codesign.frontend import load_model

    graph = load_model(path)
    (inp,), (out,) = graph.inputs, graph.outputs
    return lambda x: out.dequantize(reference.run(graph, [inp.quantize(x)])[out.tensor.name])


def rtl_batch_predictor(path: pathlib.Path) -> BatchPredict:
    """Predict on the RTL: compile for the default NPU and run the whole batch in one Verilator
    simulation (the same path as ``codesign simulate``)."""
    from codesign.cli import DEFAULT_CONFIG
    from codesign.compiler import compile_graph
    from codesign.driver import run_rtl
    from codesign.frontend import load_model
    from codesign.verilog import npu_verilog

    graph = load_model(path)
    (inp,), (out,) = graph.inputs, graph.outputs
    program = compile_graph(graph, DEFAULT_CONFIG)
    verilog = npu_verilog(DEFAULT_CONFIG)

    def predict(xs: np.ndarray) -> np.ndarray:
        result = run_rtl(program, verilog, [[inp.quantize(x[None])] for x in xs])
        return np.stack([out.dequantize(outs[0]) for outs in result.outputs])
    return predict


def accuracy(model: DigitsModel, predict: Predict | None = None,
             batch_predict: BatchPredict | None = None) -> float:
    """Test-split accuracy of ``predict`` (called once per sample, batch 1) or of
    ``batch_predict`` (called once with the whole split)."""
    _, _, x_test, y_test = load_split(model)
    if batch_predict is not None:
        scores = batch_predict(x_test).reshape(len(x_test), -1)
    else:
        assert predict is not None
        scores = np.stack([np.ravel(predict(x[None])) for x in x_test])
    return float(np.mean(np.argmax(scores, axis=1) == y_test))


def write_sample(model: DigitsModel, count: int = 8) -> pathlib.Path:
    """Save the first ``count`` test digits as ``<name>_sample.npy`` (N × input shape without
    the batch axis; ``make demo`` and the model tests use them)."""
    path = HERE / f"{model.name}_sample.npy"
    np.save(path, load_split(model)[2][:count])
    return path


def accuracy_report(columns: Mapping[str, Callable[[pathlib.Path], Predict]] | None = None,
                    batch_columns: Mapping[str, Callable[[pathlib.Path], BatchPredict]]
                    | None = None) -> dict[str, dict[str, float]]:
    """Print and return test accuracy per quantized model: float, onnxruntime, golden, ...

    Parameters
    ----------
    columns, batch_columns
        Extra columns: name → factory making a (batch) predictor from a quantized model's path
        (for example :func:`rtl_batch_predictor`).
    """
    makers = {"onnxruntime": onnxruntime_predictor, "golden": golden_predictor,
              **(columns or {})}
    batch_makers = dict(batch_columns or {})
    results: dict[str, dict[str, float]] = {}
    for model in MODELS.values():
        float_accuracy = accuracy(model, onnxruntime_predictor(model.float_path))
        for path in model.paths():
            row = {"float": float_accuracy}
            row.update({name: accuracy(model, make(path)) for name, make in makers.items()})
            row.update({name: accuracy(model, batch_predict=make(path))
                        for name, make in batch_makers.items()})
            results[path.name] = row
    header = ["model", "float", *makers, *batch_makers]
    print("  ".join(f"{h:>22}" if i == 0 else f"{h:>11}" for i, h in enumerate(header)))
    for name, row in results.items():
        print(f"{name:>22}  " + "  ".join(f"{100 * row[h]:>10.2f}%" for h in header[1:]))
    return results


def main(argv: list[str] | None = None) -> None:
    """``python -m models.digits [--report]``: build the models (and report accuracy)."""
    parser = argparse.ArgumentParser(prog="python -m models.digits", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--report", action="store_true",
                        help="only print the accuracy table of the existing models")
    parser.add_argument("--rtl", action="store_true",
                        help="add an RTL column (whole test split on Verilator, default NPU)")
    args = parser.parse_args(argv)
    if not args.report:
        build()
        for model in MODELS.values():
            write_sample(model)
    accuracy_report(batch_columns={"rtl": rtl_batch_predictor} if args.rtl else None)


if __name__ == "__main__":
    main()
