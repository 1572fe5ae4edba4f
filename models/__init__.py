"""Example models: scripts that train, export and quantize them, and the small .onnx files."""
