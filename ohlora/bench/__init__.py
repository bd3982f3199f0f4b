"""Benchmarks (`ohlora bench ...`): each runs a baseline and ohlora's path side by side in one
process and reports ratios, never timed asserts."""
