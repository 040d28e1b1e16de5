"""``@task.kling``: TaskFlow functions that write the request, run with dag.test() against the
emulator. The DAGs are in tests/dags/kling_taskflow_cases.py, one behaviour each. Mapped over a list
with a downstream task: the TaskFlow example (test_example_dags.py), and on a real Airflow, ending in
the triggerer and retrying onto its jobs (test_restarts.py)."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.sdk import task
from airflow.utils.state import DagRunState, TaskInstanceState
from dag_runs import needs_task_state_store, task_instance, xcoms

from airflow_provider_kling.decorators.kling import KlingDecoratedOperator
from airflow_provider_kling.emulator import KlingEmulator

pytestmark = pytest.mark.usefixtures("airflow_db")


def run(case_dagbag: Any, dag_id: str) -> Any:
    return case_dagbag.dags[dag_id].test()


def test_task_kling_is_registered_by_the_provider() -> None:
    @task.kling(task_id="clip")
    def clip() -> str:
        return "a fox"

    assert isinstance(clip().operator, KlingDecoratedOperator)


@pytest.mark.parametrize("mode", ["deferrable", "blocking"])
def test_the_returned_string_is_the_prompt_and_the_task_returns_the_video(
    case_dagbag: Any, emulator: KlingEmulator, mode: str
) -> None:
    dag_run = run(case_dagbag, f"taskflow_{mode}_prompt")
    assert dag_run.state == DagRunState.SUCCESS
    [job] = emulator.jobs()
    assert job["request"]["prompt"] == "a fox in the snow"
    [result] = xcoms(dag_run, "clip")
    assert (result["task_id"], result["status"]) == (job["task_id"], "completed")
    assert xcoms(dag_run, "clip", key="task_id") == [job["task_id"]]


def test_returned_fields_win_over_the_decorator_arguments(case_dagbag: Any, emulator: KlingEmulator) -> None:
    assert run(case_dagbag, "taskflow_fields").state == DagRunState.SUCCESS
    [job] = emulator.jobs()
    assert {name: job["request"][name] for name in ("prompt", "duration", "sound", "aspectRatio")} == {
        "prompt": "a heron",
        "duration": "10",
        "sound": True,
        "aspectRatio": "9:16",
    }


def test_an_invalid_return_fails_at_once_naming_every_rule_and_sends_nothing(
    case_dagbag: Any, emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run(case_dagbag, "taskflow_invalid_return")
    ti = task_instance(dag_run, "invalid_clip")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)
    assert emulator.stats()["requests"] == {"submit": 0, "status": 0, "video": 0}
    logged = "".join(capfd.readouterr())
    assert "style: is not a request field" in logged
    assert "duration: must be 5 or 10 (seconds) (got 7)" in logged
    assert "prompt: must be at most 2000 characters" in logged


def test_a_return_that_is_neither_prompt_nor_fields_fails_at_once(
    case_dagbag: Any, emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    dag_run = run(case_dagbag, "taskflow_not_a_request")
    ti = task_instance(dag_run, "number_clip")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)
    assert emulator.stats()["requests"]["submit"] == 0
    assert "the function's return value: must be the prompt (a str) or a dict of request fields (got 42)" in (
        "".join(capfd.readouterr())
    )


@needs_task_state_store
@pytest.mark.parametrize("mode", ["deferrable", "blocking"])
def test_a_retry_sends_the_first_tries_request_and_reattaches_to_its_job(
    case_dagbag: Any, emulator: KlingEmulator, mode: str
) -> None:
    emulator.hold(1)  # until the first try has ended (the DAG's on_retry_callback)
    dag_run = run(case_dagbag, f"taskflow_{mode}_retry_after_timeout")
    assert dag_run.state == DagRunState.SUCCESS
    assert task_instance(dag_run, "new_prompt_each_call").try_number >= 2
    [job] = emulator.jobs()
    [result] = xcoms(dag_run, "new_prompt_each_call")
    assert result["task_id"] == job["task_id"]
