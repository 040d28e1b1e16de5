"""KlingStatusTrigger: its real async generator against the emulator."""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from airflow.triggers.base import TriggerEvent
from hook_setup import both_apis, connect, only_on, quick_hook

from airflow_provider_kling.core.errors import KlingAuthError, KlingError, KlingJobFailedError
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.waiting import KlingWaitTimeoutError, result_from_event
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.triggers.kling import KlingStatusTrigger

pytestmark = both_apis


def submit(prompt: str = "a fox") -> str:
    return quick_hook().submit(GenerationRequest(prompt)).task_id


def trigger_for(task_id: str, seconds: float = 30, poll_interval: float = 0.1) -> KlingStatusTrigger:
    """A trigger whose hook retries in hundredths of a second (three tries a poll)."""
    trigger = KlingStatusTrigger(
        kling_task_id=task_id, deadline=time.time() + seconds, poll_interval=poll_interval
    )
    trigger.hook = quick_hook()
    return trigger


def run_to_end(trigger: KlingStatusTrigger) -> list[dict[str, Any]]:
    """Drive the trigger as the triggerer does, collecting every event it yields."""

    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return [event.payload for event in asyncio.run(collect())]


def test_completed_job_yields_one_success_event_with_the_video(emulator: KlingEmulator) -> None:
    task_id = submit()
    [event] = run_to_end(trigger_for(task_id))
    assert event["status"] == "success" and event["task_id"] == task_id
    assert event["result"]["video_url"].endswith(f"{task_id}.mp4")
    assert result_from_event(event)["state"] == "completed"


def test_failed_job_yields_a_failed_event_with_the_vendor_message(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    connect(monkeypatch, kling_emulator_factory(job_failure_rate=1.0, api=api))
    [event] = run_to_end(trigger_for(submit()))
    assert event["status"] == "failed" and "failed (emulated)" in event["message"]
    with pytest.raises(KlingJobFailedError):
        result_from_event(event)


def test_deadline_yields_a_timeout_event_that_says_the_job_goes_on(emulator: KlingEmulator, api: str) -> None:
    task_id = submit()
    started = time.monotonic()
    [event] = run_to_end(trigger_for(task_id, seconds=0.3))
    assert time.monotonic() - started < 1.0
    assert event["status"] == "timeout"
    assert (event["progress"] is not None) is (api == "ulazai")  # Kling's own API reports none
    assert "not cancelled" in event["message"]
    with pytest.raises(KlingWaitTimeoutError):
        result_from_event(event)


def test_a_burst_of_server_errors_is_ridden_out(emulator: KlingEmulator) -> None:
    task_id = submit()
    emulator.inject("status", "server_error", count=6)
    [event] = run_to_end(trigger_for(task_id))
    assert event["status"] == "success"


def test_too_many_failed_polls_in_a_row_end_the_wait_as_an_error(emulator: KlingEmulator) -> None:
    task_id = submit()
    emulator.inject("status", "server_error", count=1000)
    [event] = run_to_end(trigger_for(task_id, poll_interval=0.01))
    assert event["status"] == "error" and "503" in event["message"]
    polls = emulator.stats()["requests"]["status"]
    assert polls == 5 * 3  # five failed polls in a row, each tried three times


def test_wrong_key_fails_at_once(emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    task_id = submit()
    connect(monkeypatch, emulator, api_key="not-the-key")
    [event] = run_to_end(trigger_for(task_id))
    assert event["status"] == "error" and "401" in event["message"]
    assert emulator.stats()["requests"]["status"] == 1
    with pytest.raises(KlingError):
        result_from_event(event)


def test_unknown_task_fails_at_once(emulator: KlingEmulator) -> None:
    [event] = run_to_end(trigger_for("no-such-task"))
    assert event["status"] == "error" and "404" in event["message"]
    # Told no generation mode, a wait on Kling's own API asks each mode's path once.
    assert emulator.stats()["requests"]["status"] == len(quick_hook().dialect.status_paths("x", None))


def test_serialised_kwargs_hold_no_key_and_only_primitives(emulator: KlingEmulator) -> None:
    classpath, kwargs = trigger_for("abc").serialize()
    assert classpath == "airflow_provider_kling.triggers.kling.KlingStatusTrigger"
    assert set(kwargs) == {
        "kling_task_id",
        "deadline",
        "poll_interval",
        "kling_conn_id",
        "submitted_at",
        "expected_seconds",
        "end_from_trigger",
        "generation_mode",
        "credits_used",
        "credits_remaining",
        "multiple_outputs",
    }
    assert emulator.api_key not in repr(kwargs)
    assert json.loads(json.dumps(kwargs)) == kwargs


@only_on("ulazai")  # it extrapolates the progress, which only UlazAI's API reports
def test_an_adaptive_wait_polls_a_few_times_and_sees_the_end_soon_after(emulator: KlingEmulator) -> None:
    # The emulator's jobs take 1-1.5 s and it announces so: the vendor's 60-90 s, 60 times faster.
    submitted_at = time.time()
    task_id = submit()
    trigger = KlingStatusTrigger(
        kling_task_id=task_id, deadline=time.time() + 30, submitted_at=submitted_at, expected_seconds=[1, 1.5]
    )
    [event] = run_to_end(trigger)
    detected_at = time.time()

    assert event["status"] == "success"
    [job] = emulator.jobs()
    assert 2 <= len(job["status_polls"]) <= 6
    assert job["status_polls"][0] >= submitted_at + 0.8
    assert 0 <= detected_at - job["ready_at"] < 1.0  # the fixed 10 s would be 0-10 s late


def test_trigger_recreated_from_its_kwargs_finishes_the_same_job(emulator: KlingEmulator) -> None:
    task_id = submit()
    original = trigger_for(task_id, seconds=0.2)
    [first] = run_to_end(original)  # the "triggerer" stops before the job is done
    assert first["status"] == "timeout"
    _, kwargs = original.serialize()
    recreated = KlingStatusTrigger(**{**kwargs, "deadline": time.time() + 30})
    [event] = run_to_end(recreated)
    assert event["status"] == "success" and event["task_id"] == task_id
    assert emulator.stats()["jobs_created"] == 1


def test_the_same_trigger_run_twice_at_once_ends_with_the_same_event(emulator: KlingEmulator) -> None:
    # A triggerer failover can briefly run one trigger in two triggerers: polling only reads, so
    # both copies see the same job end and say so in the same words, and nothing is submitted.
    # Each copy runs in its own event loop and thread, sharing no session, settings or pacer.
    task_id = submit()
    _, kwargs = trigger_for(task_id).serialize()
    with ThreadPoolExecutor(max_workers=2) as triggerers:
        first, second = triggerers.map(lambda _: run_to_end(KlingStatusTrigger(**kwargs)), range(2))

    # Only how each copy's wait went (its reads, how late it saw the end) may differ.
    def said(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{k: v for k, v in event.items() if k not in ("polls", "seen_late")} for event in events]

    assert said(first) == said(second)
    assert first[0]["status"] == "success"
    assert emulator.stats()["jobs_created"] == 1


def test_restart_keeps_the_original_deadline(emulator: KlingEmulator) -> None:
    _, kwargs = trigger_for(submit(), seconds=0.3).serialize()
    time.sleep(0.3)  # the deadline passes while the "triggerer" is down
    [event] = run_to_end(KlingStatusTrigger(**kwargs))
    assert event["status"] == "timeout"
    assert emulator.stats()["requests"]["status"] == 0


def test_unexpected_event_is_a_clear_error() -> None:
    with pytest.raises(KlingError, match="does not know"):
        result_from_event({"status": "teleported"})


def test_a_poll_stuck_in_retries_does_not_carry_the_wait_past_its_deadline(emulator: KlingEmulator) -> None:
    task_id = submit()
    emulator.inject("status", "rate_limit", count=4, retry_after=3)
    started = time.monotonic()
    [event] = run_to_end(trigger_for(task_id, seconds=1.0))
    assert event["status"] == "timeout"
    assert time.monotonic() - started < 2.0


def test_the_error_event_names_the_error_class(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = submit()
    connect(monkeypatch, emulator, api_key="not-the-key")
    [event] = run_to_end(trigger_for(task_id))
    assert event["error"] == "KlingAuthError"
    with pytest.raises(KlingAuthError):
        result_from_event(event)


@pytest.mark.parametrize("poll_interval", [0, -5])
def test_poll_interval_must_be_positive(poll_interval: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        trigger_for("abc", poll_interval=poll_interval)
