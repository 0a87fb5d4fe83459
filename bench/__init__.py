"""Benchmarks: programs, never tests. Each prints ratios against the database's floor."""
