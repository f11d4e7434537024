"""Benchmarks: ``python -m bench.run`` (HTTP harness, see bench/README.md) and issue-specific scripts."""
