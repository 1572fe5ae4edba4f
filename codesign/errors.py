"""Errors that the command line reports as one line and exit code 2 (bad input, not a bug)."""


def one_line(error: Exception, limit: int | None = None) -> str:
    """``error``'s message on one line (onnx and onnxruntime write theirs over several), cut to
    ``limit`` characters when given."""
    return " ".join(str(error).split())[:limit]


class InputError(Exception):
    """The user's input (model, arguments, files) cannot be handled; the message says what to do."""


class TilingError(InputError):
    """The model does not fit the chosen hardware (array, scratchpads, instruction fields)."""


class SimulationFailed(RuntimeError):
    """The RTL simulation could not run to completion (build failure, hang, bad access)."""
