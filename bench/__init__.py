"""Benchmarks (``make bench``): each module writes ``outputs/bench/<name>.json``."""
