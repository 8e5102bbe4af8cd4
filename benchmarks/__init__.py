"""Hot-path and load benchmarks; each module runs with ``python -m benchmarks.<name>``."""
