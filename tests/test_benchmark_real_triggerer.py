"""The real-triggerer benchmark at its smallest: one `airflow triggerer` holds a few waits and it reports.

It checks that the script works and reports its figures, not their values: those are the full run's,
`python benchmarks/real_triggerer.py`. About a minute: PostgreSQL, `airflow db migrate`, the
triggerer's start, then 20 waits on jobs run 10 times faster, and benchmark 1 at the same size on a
1 s interval.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from deployment import missing_servers
from script_runs import run_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "real_triggerer.py"
WAITS = 20

pytestmark = [
    pytest.mark.timeout(1200),
    pytest.mark.skipif(bool(missing_servers()), reason="needs PostgreSQL (apt-get install postgresql)"),
]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], str]:
    output = tmp_path_factory.mktemp("real-triggerer") / "figures.json"
    options = ["--waits", str(WAITS), "--speed", "10", "--density-interval", "1", "--json", str(output)]
    done = run_script(SCRIPT, *options, seconds=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    return dict(json.loads(output.read_text())), done.stdout


def test_every_wait_ended_with_its_success_event(run: tuple[dict[str, Any], str]) -> None:
    real = run[0]["real"]
    assert real["outcomes"] == {"success": WAITS}
    assert real["all_finished"] and run[0]["targets_met"]["all_finished"]
    assert real["jobs_at_emulator"] == WAITS
    assert real["polls"] >= WAITS and real["polls_per_job"]["min"] >= 1


def test_one_triggerer_held_every_wait_and_started_each_trigger(run: tuple[dict[str, Any], str]) -> None:
    real = run[0]["real"]
    assert 0 < real["peak_held"] <= WAITS
    assert real["triggers_started_seen"] == WAITS
    assert real["all_started_after_seconds"] is not None and real["pick_up_median_s"] is not None
    assert {"supervisor", "runner"} <= set(real["cpu_seconds"])


def test_the_figures_were_measured(run: tuple[dict[str, Any], str]) -> None:
    real = run[0]["real"]
    assert real["cpu_us_per_poll"] > 0
    assert real["rss_bytes_per_wait"] is not None
    assert real["lag_samples"] > 0 and real["lag_p99_ms"] is not None and real["lag_max_ms"] is not None
    assert isinstance(real["blocked_warnings"], int)


def test_benchmark_1_ran_beside_it_at_the_same_size(run: tuple[dict[str, Any], str]) -> None:
    beside = run[0]["benchmark_1"]
    assert beside["variant"] == "kling" and beside["size"] == WAITS and beside["all_as_expected"]
    assert beside["cpu_us_per_poll"] > 0


def test_the_report_says_where_and_how_it_ran(run: tuple[dict[str, Any], str]) -> None:
    figures, printed = run
    assert {"machine", "command", "targets", "targets_met", "benchmark_seconds"} <= set(figures)
    for label in (
        "CPU per poll",
        "RSS per wait",
        "loop lag p99",
        "pick-up per trigger",
        "every wait finished",
    ):
        assert label in printed
