"""One way to export the bundled models: torch's dynamo ONNX exporter, silenced narrowly."""

from __future__ import annotations

import logging
import pathlib
import warnings

import torch

__all__ = ["export_onnx"]


def export_onnx(net: torch.nn.Module, example: torch.Tensor, path: pathlib.Path) -> None:
    """Export ``net`` (one input ``x``, one output ``logits``) to ``path``."""
    logger = logging.getLogger("torch.onnx._internal.exporter._registration")
    level = logger.level
    logger.setLevel(logging.ERROR)  # "torchvision is not installed": irrelevant here
    try:
        with warnings.catch_warnings(), torch.no_grad():
            # torch 2.13's dynamo exporter trips over its own pytree deprecation.
            warnings.filterwarnings("ignore", r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                                    FutureWarning)
            program = torch.onnx.export(net, (example,), dynamo=True, input_names=["x"],
                                        output_names=["logits"], verbose=False)
            assert program is not None  # dynamo=True always returns the program
            program.save(str(path))
    finally:
        logger.setLevel(level)
