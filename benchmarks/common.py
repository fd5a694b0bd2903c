"""Helpers shared by the benchmarks: timing, medians and JSON output."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from typing import Any


def best_of(repeat: int, run: Callable[[], float]) -> tuple[float, list[float]]:
    """Run `run` (returning seconds) `repeat` times; return the median and all samples."""
    samples = [run() for _ in range(repeat)]
    return statistics.median(samples), samples


def percentile(values: list[float], fraction: float) -> float:
    """The value at `fraction` (0..1) of the sorted values (nearest rank); 0 when empty."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


def timed(function: Callable[[], Any]) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def emit(result: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for key, value in result.items():
            print(f"{key:32} {value}")
