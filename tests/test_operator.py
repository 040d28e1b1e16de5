"""KlingGenerateOperator and KlingStatusSensor, run with dag.test() against the emulator.

The DAGs are in tests/dags/kling_operator_cases.py, one behaviour each.
"""

from __future__ import annotations

from typing import Any

import pytest
from airflow.utils.state import DagRunState, TaskInstanceState
from dag_runs import HAS_TASK_STATE_STORE, needs_task_state_store, task_instance, xcoms
from hook_setup import both_apis, connect, one_slot_taken_for, only_on

from airflow_provider_kling.core.dialects.ulazai import PRICES
from airflow_provider_kling.emulator import KlingEmulator

pytestmark = [pytest.mark.usefixtures("airflow_db"), both_apis]

#: What the case DAGs' requests cost: 5 s, no sound, the prompt kept private (the operator's default);
#: on Kling's own API, kling-v2-6 in std mode, in units.
PRICE = {"ulazai": PRICES[("5", False)], "klingai": 1.5}
#: The word each API says a finished job with.
COMPLETED = {"ulazai": "completed", "klingai": "succeed"}


def expected_credits(mode: str, api: str) -> dict[str, float | None]:
    """dag.test() drops a deferral's kwargs, so there UlazAI's credits (the submit's answer) come back
    from task_state_store only; Kling's own API says the charge in the finished job's status, and
    nothing of what is left."""
    if api == "klingai":
        return {"credits_used": PRICE[api], "credits_remaining": None}
    if mode == "deferrable" and not HAS_TASK_STATE_STORE:
        return {"credits_used": None, "credits_remaining": None}
    return {"credits_used": PRICE[api], "credits_remaining": 10_000 - PRICE[api]}


def run(case_dagbag: Any, dag_id: str) -> Any:
    return case_dagbag.dags[dag_id].test()


def statuses_polled(emulator: KlingEmulator) -> int:
    return int(emulator.stats()["requests"]["status"])


@pytest.mark.parametrize("mode", ["deferrable", "blocking"])
def test_generate_returns_the_video_and_pushes_the_task_id(
    case_dagbag: Any, emulator: KlingEmulator, mode: str, api: str
) -> None:
    dag_run = run(case_dagbag, f"case_{mode}_generate")
    assert dag_run.state == DagRunState.SUCCESS
    [task_id] = xcoms(dag_run, "generate", key="task_id")
    [result] = xcoms(dag_run, "generate")
    assert result == {
        "task_id": task_id,
        "status": COMPLETED[api],
        "video_url": f"{emulator.base_url}/_emulator/videos/{task_id}.mp4",
        "duration": 5,
        "has_audio": False if api == "ulazai" else None,  # Kling's own API does not say
        **expected_credits(mode, api),
    }
    assert emulator.stats()["jobs_created"] == 1


@only_on("ulazai")  # Kling's own API has no Prompt Directory
def test_the_prompt_is_kept_out_of_the_prompt_directory_by_default(
    case_dagbag: Any, emulator: KlingEmulator
) -> None:
    run(case_dagbag, "case_blocking_generate")
    [job] = emulator.jobs()
    assert job["request"]["prompt_directory_optin"] is False
    assert job["credits_used"] == PRICE["ulazai"]  # the full price: no Prompt Directory discount


def test_video_link_points_at_the_finished_video(case_dagbag: Any, emulator: KlingEmulator) -> None:
    dag_run = run(case_dagbag, "case_deferrable_generate")
    [result] = xcoms(dag_run, "generate")
    assert xcoms(dag_run, "generate", key="_link_KlingVideoLink") == [result["video_url"]]


def test_video_link_is_absent_while_there_is_no_video(case_dagbag: Any, emulator: KlingEmulator) -> None:
    dag_run = run(case_dagbag, "case_submit_only")
    assert xcoms(dag_run, "submit", key="_link_KlingVideoLink") == [""]


@needs_task_state_store
@pytest.mark.parametrize("mode", ["deferrable", "blocking"])
def test_retry_after_a_failed_wait_reattaches_to_the_same_job(
    case_dagbag: Any, emulator: KlingEmulator, mode: str, api: str
) -> None:
    emulator.hold(1)  # until the first try has ended (the DAG's on_retry_callback)
    dag_run = run(case_dagbag, f"case_{mode}_retry_after_timeout")
    assert dag_run.state == DagRunState.SUCCESS
    assert task_instance(dag_run, "generate").try_number >= 2
    [job] = emulator.jobs()
    [result] = xcoms(dag_run, "generate")
    assert result["task_id"] == job["task_id"] and result["credits_used"] == PRICE[api]
    assert emulator.stats()["jobs_created"] == 1


def test_invalid_request_fails_at_once_and_sends_nothing(case_dagbag: Any, emulator: KlingEmulator) -> None:
    dag_run = run(case_dagbag, "case_invalid_request")
    ti = task_instance(dag_run, "generate")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)
    assert emulator.stats()["requests"] == {"submit": 0, "status": 0, "video": 0}


def test_wrong_key_fails_at_once_without_retries(
    case_dagbag: Any, emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, conn_id="kling_wrong_key", api_key="not-the-key")
    dag_run = run(case_dagbag, "case_wrong_key")
    ti = task_instance(dag_run, "generate")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)
    assert emulator.stats()["jobs_created"] == 0


def test_failed_job_fails_the_task(
    case_dagbag: Any, kling_emulator_factory: Any, monkeypatch: Any, api: str
) -> None:
    failing = kling_emulator_factory(job_failure_rate=1.0, api=api)
    connect(monkeypatch, failing)
    dag_run = run(case_dagbag, "case_job_fails")
    assert task_instance(dag_run, "generate").state == TaskInstanceState.FAILED
    assert failing.stats()["jobs_created"] == 1


@only_on("ulazai")
def test_unconfirmed_submit_fails_instead_of_paying_twice(case_dagbag: Any, emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    dag_run = run(case_dagbag, "case_unconfirmed_submit_fails")
    ti = task_instance(dag_run, "generate")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)
    assert emulator.stats()["jobs_created"] == 1


@only_on("klingai")
def test_an_unconfirmed_submit_is_found_by_its_external_task_id_and_costs_one_job(
    case_dagbag: Any, emulator: KlingEmulator
) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    dag_run = run(case_dagbag, "case_unconfirmed_submit_fails")  # on_unconfirmed_submit="fail": moot
    assert dag_run.state == DagRunState.SUCCESS
    [job] = emulator.jobs()
    assert xcoms(dag_run, "generate", key="task_id") == [job["task_id"]]
    assert job["external_task_id"].startswith("airflow-")


@only_on("ulazai")
def test_unconfirmed_submit_resubmits_when_told_to(case_dagbag: Any, emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    dag_run = run(case_dagbag, "case_unconfirmed_submit_resubmits")
    assert dag_run.state == DagRunState.SUCCESS
    assert task_instance(dag_run, "generate").try_number == 2
    assert emulator.stats()["jobs_created"] == 2


def test_submit_only_returns_the_task_id_without_polling(case_dagbag: Any, emulator: KlingEmulator) -> None:
    dag_run = run(case_dagbag, "case_submit_only")
    [job] = emulator.jobs()
    assert xcoms(dag_run, "submit") == [job["task_id"]]
    assert xcoms(dag_run, "submit", key="task_id") == [job["task_id"]]
    assert statuses_polled(emulator) == 0


@pytest.mark.parametrize("mode", ["poke", "reschedule", "deferrable"])
def test_sensor_waits_for_a_task_id_from_upstream(
    case_dagbag: Any, emulator: KlingEmulator, mode: str, api: str
) -> None:
    dag_run = run(case_dagbag, f"case_sensor_{mode}")
    assert dag_run.state == DagRunState.SUCCESS
    [task_id] = xcoms(dag_run, "submit")
    [result] = xcoms(dag_run, "wait")
    assert result["task_id"] == task_id and result["status"] == COMPLETED[api]
    assert emulator.stats()["jobs_created"] == 1


def test_sensor_fails_at_once_on_a_failed_job(
    case_dagbag: Any, kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    failing = kling_emulator_factory(job_failure_rate=1.0, api=api)
    connect(monkeypatch, failing)
    dag_run = run(case_dagbag, "case_sensor_poke")
    ti = task_instance(dag_run, "wait")
    assert (ti.state, ti.try_number) == (TaskInstanceState.FAILED, 1)


def test_a_deferred_generation_logs_no_error_on_its_way_to_success(
    case_dagbag: Any,
    emulator: KlingEmulator,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    dag_run = run(case_dagbag, "case_deferrable_generate")
    assert dag_run.state == DagRunState.SUCCESS
    out, err = capfd.readouterr()
    logged = out + err + caplog.text
    error_lines = [line for line in logged.splitlines() if "[error" in line or line.startswith("ERROR")]
    assert error_lines == []


@only_on("klingai")
def test_a_deferred_submit_refused_for_the_accounts_running_jobs_waits_in_the_triggerer_then_goes(
    case_dagbag: Any, kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with one_slot_taken_for(3.0, kling_emulator_factory, monkeypatch) as emulator:
        dag_run = run(case_dagbag, "case_deferrable_generate")
    assert dag_run.state == DagRunState.SUCCESS
    assert task_instance(dag_run, "generate").try_number == 1  # no try failed for it
    assert emulator.stats()["jobs_created"] == 2
