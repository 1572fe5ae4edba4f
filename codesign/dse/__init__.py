"""Design-space exploration: device budgets (:mod:`.targets`), cost models of an NPU
configuration running a compiled program (:mod:`.resources`, :mod:`.energy`, and the cycle model
:mod:`codesign.timing`), and the search over configurations (:mod:`.explore`)."""

from .targets import BUILTIN_TARGETS, Target, load_target

__all__ = ["BUILTIN_TARGETS", "Target", "load_target"]
