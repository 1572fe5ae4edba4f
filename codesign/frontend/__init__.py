"""ONNX frontend: quantized ONNX models (QDQ or QOperator) → the integer IR (:mod:`codesign.ir`).

Use :func:`load_model`; :data:`~codesign.frontend.ops.OPS` lists the supported ops.
"""

from codesign.frontend.onnx_loader import load_model, one_inference

__all__ = ["load_model", "one_inference"]
