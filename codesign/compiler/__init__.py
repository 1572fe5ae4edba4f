"""IR → driver schedule (instructions + memory image), see :mod:`.lower` and :mod:`.program`."""

from .lower import compile_graph
from .program import LayerInfo, Program, Region, insn_bytes

__all__ = ["compile_graph", "Program", "Region", "LayerInfo", "insn_bytes"]
