"""Beacon's benchmark: ``make bench`` or ``python -m bench`` (``--quick`` for a short run).

See docs/benchmarks.md for the method, the latest numbers and the targets.
"""
