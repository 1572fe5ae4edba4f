"""Small Brevitas models, built and exported here as their users would (seeded).

Each builder returns a calibrated ``nn.Sequential`` of Brevitas layers on a ``[1, 1, 12, 12]``
input; :func:`export` writes it with ``export_onnx_qcdq`` (the dynamo or the TorchScript
exporter) or ``export_qonnx``. Brevitas warns on import (optional packages) and the exporters
warn about torch internals: both are silenced here, so that the tests can run with
``PYTHONWARNINGS=error`` on everything of codesign's.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path

import torch
from torch import nn

SHAPE = (1, 1, 12, 12)
#: ``export_onnx_qcdq`` with each exporter; ``export_qonnx`` (dynamo, its default) and with the
#: TorchScript exporter.
FORMS = ("qcdq_dynamo", "qcdq_torchscript", "qonnx", "qonnx_torchscript")


def _brevitas():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import brevitas.nn as qnn
        import brevitas.quant as quant
    return qnn, quant


def _calibrate(model: nn.Module, seed: int) -> nn.Module:
    """A few training-mode passes set the activation scales from statistics, as after training."""
    generator = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(4):
            model(torch.rand((8, *SHAPE[1:]), generator=generator) * 2 - 0.5)
    return model.eval()


def cnn(seed: int = 0, *, w_bits: int = 4, a_bits: int = 4, in_bits: int | None = None,
        in_signed: bool = True, in_narrow: bool = False, per_channel: bool = False,
        narrow: bool = True, bias: bool = False, channels: tuple[int, int] = (4, 8)
        ) -> nn.Module:
    """``QuantIdentity → QuantConv 3×3 → QuantReLU → QuantConv 3×3 /2 → QuantReLU → Flatten →
    QuantLinear → QuantIdentity(8)``: 2 conv layers and a linear head.

    ``w_bits``/``a_bits``: weight and activation bit widths (the input's: ``in_bits``,
    default ``a_bits``); ``narrow``: narrow-range weights (2 bits: ternary); ``bias``: an Int32
    bias on every layer (then activations carry their scale as quant tensors)."""
    qnn, quant = _brevitas()
    torch.manual_seed(seed)
    wq = quant.Int8WeightPerChannelFloat if per_channel else quant.Int8WeightPerTensorFloat
    layer = dict(weight_quant=wq, weight_bit_width=w_bits, weight_narrow_range=narrow,
                 bias=bias, **({"bias_quant": quant.Int32Bias} if bias else {}))
    c1, c2 = channels
    return _calibrate(nn.Sequential(
        qnn.QuantIdentity(bit_width=in_bits or a_bits, signed=in_signed, narrow_range=in_narrow,
                          return_quant_tensor=True),
        qnn.QuantConv2d(1, c1, 3, **layer),
        qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True),
        qnn.QuantConv2d(c1, c2, 3, stride=2, **layer),
        qnn.QuantReLU(bit_width=a_bits, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(c2 * 4 * 4, 10, **layer),
        qnn.QuantIdentity(bit_width=8),
    ), seed)


def shifted_cnn(seed: int = 0) -> nn.Module:
    """Asymmetric activations (Brevitas' ``ShiftedUint8ActPerTensorFloat``: uint8 with a zero
    point) of 6 and 5 bits, then a 4-bit ReLU, on the same layers as :func:`cnn`."""
    qnn, quant = _brevitas()
    torch.manual_seed(seed)
    shifted = dict(act_quant=quant.ShiftedUint8ActPerTensorFloat, return_quant_tensor=True)
    return _calibrate(nn.Sequential(
        qnn.QuantIdentity(bit_width=6, **shifted),
        qnn.QuantConv2d(1, 4, 3, weight_bit_width=5, bias=False),
        qnn.QuantIdentity(bit_width=5, **shifted),
        qnn.QuantConv2d(4, 8, 3, stride=2, weight_bit_width=4, bias=False),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(8 * 4 * 4, 10, weight_bit_width=4, bias=False),
        qnn.QuantIdentity(bit_width=8),
    ), seed)


def binary_mlp(seed: int = 0) -> nn.Module:
    """Binary (±1) weights, 4-bit activations: ``QuantIdentity → QuantLinear → QuantReLU →
    QuantLinear → QuantIdentity(8)`` on the flattened input."""
    qnn, quant = _brevitas()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.quant.binary import SignedBinaryWeightPerTensorConst
    torch.manual_seed(seed)
    layer = dict(weight_quant=SignedBinaryWeightPerTensorConst, bias=False)
    return _calibrate(nn.Sequential(
        qnn.QuantIdentity(bit_width=4, return_quant_tensor=True),
        nn.Flatten(),
        qnn.QuantLinear(144, 16, **layer),
        qnn.QuantReLU(bit_width=4, return_quant_tensor=True),
        qnn.QuantLinear(16, 10, **layer),
        qnn.QuantIdentity(bit_width=8),
    ), seed)


def export(model: nn.Module, form: str, path: Path) -> Path:
    """Export ``model`` as ``form`` (one of :data:`FORMS`) to ``path``; returns ``path``.

    A failed export can leave Brevitas' export mode on in ``model``: build a new one to retry.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from brevitas.export import export_onnx_qcdq, export_qonnx

        x = torch.zeros(SHAPE)
        # The exporters print progress; keep it out of the tests' captured output.
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if form.startswith("qonnx"):
                export_qonnx(model, x, export_path=str(path), dynamo=form == "qonnx")
            else:
                export_onnx_qcdq(model, x, export_path=str(path),
                                 dynamo=form == "qcdq_dynamo")
    return path
