"""Moorage benchmark: one interleaved workload against Moorage and Distribution 2.8.2."""
