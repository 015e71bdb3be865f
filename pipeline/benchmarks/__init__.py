"""Benchmarks behind `rnngrad bench`: each returns a dict of figures, with a baseline timed in the same run."""
