"""Design-space exploration: device budgets (:mod:`.targets`) and cost models
(:mod:`.resources`) that size an NPU for a model without running the tools."""

from .targets import BUILTIN_TARGETS, Target, load_target

__all__ = ["BUILTIN_TARGETS", "Target", "load_target"]
