"""Figures the benchmarks share: percentiles, and how a benchmark says what it measured."""

from __future__ import annotations

import json
import os
import platform
import sys
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any


def percentile(values: list[float], share: float) -> float:
    """The value ``share`` (0-1) of the way through ``values`` in order (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def machine() -> str:
    """The machine and the versions a figure was measured with, and how busy it was."""
    return (
        f"{os.cpu_count()} CPUs, {platform.platform()}, Python {platform.python_version()}, "
        f"Airflow {version('apache-airflow')}, Task SDK {version('apache-airflow-task-sdk')}, "
        f"aiohttp {version('aiohttp')}, load average {os.getloadavg()[0]:.2f}"
    )


def command() -> str:
    """The command that ran this benchmark, as typed."""
    return " ".join([Path(sys.executable).name, *sys.argv])


def publish(figures: Any, print_report: Callable[[Any], None], json_path: str | Path | None) -> int:
    """A benchmark's last step: print its report and, with ``--json``, write its figures there."""
    print_report(figures)
    if json_path:
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    return 0
