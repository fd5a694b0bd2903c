"""Benchmarks runnable through `swarmd bench ...`."""
