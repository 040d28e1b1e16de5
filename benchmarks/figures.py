"""Figures the benchmarks share."""

from __future__ import annotations


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` (0-1) of the way through ``values`` in order (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]
