"""codesign: quantized ONNX model → sized NPU (Amaranth) + driver schedule, verified bit-exactly."""

__version__ = "0.1.0"
