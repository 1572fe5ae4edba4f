"""Errors that the command line reports as one line and exit code 2 (bad input, not a bug)."""


class InputError(Exception):
    """The user's input (model, arguments, files) cannot be handled; the message says what to do."""


class TilingError(InputError):
    """The model does not fit the chosen hardware (array, scratchpads, instruction fields)."""


class SimulationFailed(RuntimeError):
    """The RTL simulation could not run to completion (build failure, hang, bad access)."""
