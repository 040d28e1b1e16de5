"""The worker-slot benchmark at its smallest: it runs both modes on a real Airflow and reports figures.

It checks that the script works and what runs where (one task process per generation, none for a
sensor started in the triggerer), not its timings: those are the full run's,
`python benchmarks/worker_slots.py`. About a minute, most of it `airflow standalone` booting.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from script_runs import run_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "worker_slots.py"
GENERATIONS = 2

pytestmark = pytest.mark.timeout(1200)


@pytest.fixture(scope="module")
def figures(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    output = tmp_path_factory.mktemp("worker-slots") / "figures.json"
    options = ["--generations", str(GENERATIONS), "--slots", "2", "--speed", "30", "--json", str(output)]
    done = run_script(SCRIPT, *options, seconds=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    assert "worker-slot s / task" in done.stdout
    return dict(json.loads(output.read_text()))


@pytest.mark.parametrize("mode", ["deferrable", "non_deferrable"])
def test_every_generation_succeeded_with_one_job(figures: dict[str, Any], mode: str) -> None:
    run = figures["modes"][mode]
    why = json.dumps(run["not_succeeded"], indent=1)  # each failed task instance and its log's end
    assert run["run_state"] == "success", why
    assert run["task_instances"] == run["succeeded"] == GENERATIONS, why
    assert run["jobs_created"] == run["distinct_prompts_submitted"] == GENERATIONS


@pytest.mark.parametrize("mode", ["deferrable", "non_deferrable"])
def test_slot_time_and_wall_time_were_measured(figures: dict[str, Any], mode: str) -> None:
    run = figures["modes"][mode]
    assert run["worker_slot_seconds"] > 0
    assert run["worker_slot_seconds_per_task"] == pytest.approx(run["worker_slot_seconds"] / GENERATIONS)
    assert 0 < run["peak_slots_busy"] <= 2
    assert run["wall_seconds"] > 0


def test_a_generation_runs_one_task_process_deferrable_or_not(figures: dict[str, Any]) -> None:
    assert figures["modes"]["deferrable"]["task_process_runs_audit_log"] == GENERATIONS
    assert figures["modes"]["non_deferrable"]["task_process_runs_audit_log"] == GENERATIONS


def test_a_sensor_started_in_the_triggerer_runs_no_task_process(figures: dict[str, Any]) -> None:
    sensor = figures["modes"]["sensor"]
    assert sensor["run_state"] == "success", json.dumps(sensor["not_succeeded"], indent=1)
    assert sensor["task_instances"] == sensor["succeeded"] == GENERATIONS
    assert sensor["task_process_runs_audit_log"] == 0 and sensor["worker_slot_seconds"] == 0
    assert sensor["jobs_created"] == 0  # they waited on jobs submitted before the run


def test_the_baseline_task_ran_once_each_and_was_measured(figures: dict[str, Any]) -> None:
    baseline = figures["modes"]["baseline"]
    assert baseline["run_state"] == "success"
    assert baseline["task_process_runs_audit_log"] == GENERATIONS
    assert baseline["worker_slot_seconds_per_task"] > 0
    assert figures["ratio_deferrable_to_baseline"] == pytest.approx(
        figures["modes"]["deferrable"]["worker_slot_seconds_per_task"]
        / baseline["worker_slot_seconds_per_task"]
    )


def test_every_busy_worker_second_belongs_to_a_task_of_the_runs(figures: dict[str, Any]) -> None:
    assert figures["warm_up"]["worker_slot_seconds"] > 0
    assert figures["unattributed_worker_seconds"] == pytest.approx(0, abs=0.5)


def test_the_report_says_where_and_how_it_ran(figures: dict[str, Any]) -> None:
    assert {
        "machine",
        "command",
        "settings",
        "ratio_non_deferrable_to_deferrable",
        "ratio_deferrable_to_baseline",
        "benchmark_seconds",
    } <= set(figures)
    assert figures["settings"]["generations"] == GENERATIONS and figures["settings"]["slots"] == 2
