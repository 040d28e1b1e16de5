"""The rate-limit benchmark at its smallest: three modes on the production-shaped deployment.

It checks that the script runs and reports every figure for every mode, and that the adaptive
rate saw every wait through; the figures themselves are the full run's,
`python benchmarks/rate_limit.py` (docs/benchmarks.md).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dag_runs import HAS_TASK_STATE_STORE
from deployment import missing_servers
from script_runs import run_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "rate_limit.py"
WAITS = 8
MODES = {"uncapped", "static_cap", "adaptive"}
FIGURES = {
    "busiest_second", "busiest_second_settled", "share_429", "share_429_settled",
    "waits_finished", "lag_median_s", "lag_p90_s", "wall_seconds",
}  # fmt: skip

pytestmark = [
    pytest.mark.timeout(1500),
    pytest.mark.skipif(bool(missing_servers()), reason=f"needs Debian's {' and '.join(missing_servers())}"),
    pytest.mark.skipif(
        not HAS_TASK_STATE_STORE, reason="run on the newest Airflow only, as the end-to-end tests"
    ),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    figures = tmp_path_factory.mktemp("rate-limit") / "rate-limit.json"
    options = [
        "--waits",
        str(WAITS),
        "--limit",
        "3",
        "--job-seconds",
        "12",
        "--settle",
        "5",
        "--json",
        str(figures),
    ]
    done = run_script(SCRIPT, *options, seconds=1200)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(figures.read_text())


def test_every_mode_ran_and_reported_every_figure(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    assert set(figures["modes"]) == MODES
    for mode in MODES:
        assert set(figures["modes"][mode]) >= FIGURES, mode
        assert figures["modes"][mode]["busiest_second"] > 0


def test_the_adaptive_rate_saw_every_wait_through(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    adaptive = figures["modes"]["adaptive"]
    assert adaptive["run_state"] == "success" and adaptive["waits_finished"] == WAITS


def test_the_table_names_the_machine_command_and_target(run: tuple[str, dict[str, Any]]) -> None:
    output, _ = run
    assert "machine:" in output and "command: rate_limit.py" in output
    assert "target (adaptive, settled)" in output
