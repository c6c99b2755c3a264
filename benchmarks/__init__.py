"""Benchmarks: run with `python3 tasks.py bench` (not part of the test suite)."""
