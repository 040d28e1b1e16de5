"""A smoke run of benchmarks/polling_schedule.py: it runs and reports both schedules (no timing asserted).

The full run and its figures: `python benchmarks/polling_schedule.py` and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "polling_schedule.py"


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_the_polling_benchmark_reports_both_schedules_for_every_job(tmp_path: Path, api: str) -> None:
    figures_file = tmp_path / "polling.json"
    options = ["--jobs", "20", "--speed", "30", "--api", api, "--json", str(figures_file)]
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *options],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "adaptive/fixed:" in done.stdout

    figures = json.loads(figures_file.read_text())
    assert [row["schedule"] for row in figures] == ["fixed 10 s", "adaptive"]
    for row in figures:
        assert row["succeeded"] == row["jobs"] == 20
        assert row["requests_per_job"] >= 1
        assert row["lag_max"] >= row["lag_median"] >= 0
