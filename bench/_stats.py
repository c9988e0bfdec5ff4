"""Percentiles and the summary row every benchmark prints (one definition for all of them)."""

from __future__ import annotations

import json
import os
import platform
import statistics
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def pct(values: list[float], p: float) -> float:
    """Percentile with linear interpolation (numpy's default method)."""
    s = sorted(values)
    if not s:
        return float("nan")
    k = (len(s) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "min": min(values),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


def machine(load_before: tuple[float, float, float]) -> dict[str, Any]:
    """Where a benchmark ran: the "machine" entry of its results."""
    return {
        "nproc": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
    }


def print_rows(results: dict[str, Any], keys: Iterable[str], unit: str = "ms") -> None:
    """One summary row per key: n, p50, p95, p99, max."""
    keys = list(keys)
    width = max(len(k) for k in keys) + 4
    print(f"{'path':<{width}}{'n':>5}{'p50':>9}{'p95':>9}{'p99':>9}{'max':>9}  ({unit})")
    for key in keys:
        r = results[key]
        print(
            f"{key:<{width}}{r['n']:>5.0f}{r['p50']:>9.1f}{r['p95']:>9.1f}{r['p99']:>9.1f}"
            f"{r['max']:>9.1f}"
        )


def write_json(path: Path | None, results: dict[str, Any]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2))
    print(f"samples written to {path}")
