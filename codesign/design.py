"""A generated design directory as `simulate` and `verify` read it back, and their input files.

Everything here is read from files a user may have edited, truncated or swapped; every defect is
an :class:`InputError` naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .frontend import load_model
from .isa import HwConfig

__all__ = ["Design", "read_batch", "VERILOG", "CONFIG", "REPORT_JSON", "REPORT_TXT", "MODEL"]

#: Files of a generated design directory.
VERILOG, CONFIG, REPORT_JSON, REPORT_TXT, MODEL = (
    "npu.v", "config.json", "report.json", "report.txt", "model.onnx")


class Design:
    """A generated design directory, loaded."""

    def __init__(self, outdir: Path):
        from .compiler import Program
        missing = [f for f in (VERILOG, CONFIG, MODEL, "symbols.json", "program.bin",
                               "memory.bin") if not (outdir / f).is_file()]
        if missing:
            raise InputError(f"{outdir} is not a codesign design directory (missing "
                             f"{', '.join(missing)}); run `codesign generate` first")
        self.dir = outdir
        self.config = HwConfig.from_json((outdir / CONFIG).read_text())
        self.program = Program.read(outdir, self.config)
        self.verilog = (outdir / VERILOG).read_text()
        self.graph = load_model(outdir / MODEL)


def read_batch(graph, path: Path) -> tuple[list[list[np.ndarray]], bool, list[np.ndarray]]:
    """Input file → (quantized HWC inputs per inference, had a batch axis, raw per inference)."""
    if len(graph.inputs) != 1:
        raise InputError("models with several inputs are not supported by --input yet")
    binding = graph.inputs[0]
    try:
        x = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as err:
        raise InputError(f"{path}: cannot read a .npy array ({err})") from None
    shape = tuple(binding.onnx_shape)
    if x.shape == shape:
        batched, items = False, [x]
    elif x.shape[1:] == shape:                       # N × model shape
        batched, items = True, list(x)
    elif shape and shape[0] == 1 and x.shape[1:] == shape[1:]:   # the batch axis itself is N
        batched, items = True, [xi[None] for xi in x]
    else:
        raise InputError(f"{path}: input shape {x.shape} does not match the model's {shape} "
                         f"(or N×{shape} for a batch)")
    want = np.float32 if binding.is_float else binding.tensor.numpy_dtype
    if binding.is_float and not np.issubdtype(x.dtype, np.floating):
        raise InputError(f"{path}: the model takes float input, got {x.dtype}")
    if not binding.is_float and x.dtype != want:
        raise InputError(f"{path}: the model takes {np.dtype(want)} input, got {x.dtype}")
    items = [np.asarray(i, want).reshape(shape) for i in items]
    return [[binding.quantize(i)] for i in items], batched, items
