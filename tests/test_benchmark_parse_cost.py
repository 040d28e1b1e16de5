"""A smoke run of benchmarks/parse_cost.py: it measures a regular install and reports (no timing asserted).

The full run and its figures: `python benchmarks/parse_cost.py` and docs/benchmarks.md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def test_the_parse_cost_benchmark_measures_a_regular_install_of_the_provider(tmp_path: Path) -> None:
    figures_file = tmp_path / "parse.json"
    done = subprocess.run(
        [
            sys.executable,
            str(CHECKOUT / "benchmarks" / "parse_cost.py"),
            "--runs",
            "1",
            "--json",
            str(figures_file),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr

    figures = json.loads(figures_file.read_text())
    assert not figures["imported_from"].startswith(str(CHECKOUT))
    assert figures["provider_inside_ms"][0] > 0
    assert figures["heavy_loaded"] == []
    assert set(figures["top_level_added"]) <= {"airflow", "airflow_provider_kling"}
