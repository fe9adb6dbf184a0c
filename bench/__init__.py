"""Benchmarks for the design's §6 targets, against the real daemon process.

`python -m bench [--quick] [--only NAME ...]` runs them and prints one JSON
object per line: `{"name", "params", "figures", "target", "checks", "pass"}`.
Full mode judges each target (`pass` true or false; the exit code is 1 if any
failed). Quick mode runs the same code at small counts for a smoke test: its
figures are printed and its `checks` computed, but `pass` is null because
those counts are too small to judge a target. Either mode exits 2 if a
benchmark crashed. See docs/benchmarks.md.
"""
