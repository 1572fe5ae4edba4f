"""RTL tests: each block against numpy or IsaSim, and the whole NPU against IsaSim."""
