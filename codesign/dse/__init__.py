"""Design-space exploration: cost models of an NPU configuration running a compiled program."""
