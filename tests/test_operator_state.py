"""What KlingGenerateOperator does with the submission it keeps in task_state_store, try after try.

These drive ``execute`` directly with a dict-backed store (the real one needs a running Airflow,
which test_operator.py and test_end_to_end.py use) and the emulator as the API.
"""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import AssetAlias
from dag_runs import connect, needs_task_state_store

from airflow_provider_kling.core.api import RetryPolicy
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmitUncertainError,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.waiting import WaitOutcome, wait_event
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.hooks.kling import KlingHook
from airflow_provider_kling.operators.kling import KlingGenerateOperator

KEY = KlingGenerateOperator.external_id_key


class FakeStore(dict[str, Any]):
    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


@dataclass
class FakeTaskInstance:
    try_number: int = 1
    dag_id: str = "videos"
    run_id: str = "manual_1"
    task_id: str = "generate"
    stats_tags: dict[str, str] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value


class FakeAliasEvents:
    def __init__(self) -> None:
        self.added: list[tuple[str, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset.uri, extra or {}))


class FakeOutletEvents(defaultdict[str, FakeAliasEvents]):
    """context["outlet_events"], keyed by alias name (an AssetAlias is not hashable on Airflow 3.1)."""

    def __init__(self) -> None:
        super().__init__(FakeAliasEvents)

    def __getitem__(self, alias: Any) -> FakeAliasEvents:
        return super().__getitem__(alias.name)


def logged(capfd: pytest.CaptureFixture[str]) -> str:
    """What the task logged: Airflow's task logger writes to the process's output, not to caplog."""
    out, err = capfd.readouterr()
    return out + err


def context_with(store: FakeStore, try_number: int = 1) -> Any:
    return {
        "task_state_store": store,
        "ti": FakeTaskInstance(try_number=try_number),
        "outlet_events": FakeOutletEvents(),
    }


def operator(prompt: str = "a fox", **kwargs: Any) -> KlingGenerateOperator:
    return KlingGenerateOperator(
        task_id="generate", prompt=prompt, poll_interval=0.1, deferrable=False, **kwargs
    )


@pytest.fixture
def emulator(kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch) -> KlingEmulator:
    connect(monkeypatch, kling_emulator)
    return kling_emulator


@needs_task_state_store
def test_the_submission_is_kept_with_its_fingerprint_and_credits(emulator: KlingEmulator) -> None:
    store = FakeStore()
    before = time.time()
    result = operator().execute(context_with(store))
    assert store[KEY] == {
        "task_id": result["task_id"],
        "fingerprint": GenerationRequest("a fox").fingerprint(),
        "credits_used": 45,
        "credits_remaining": 10_000 - 45,
        "submitted_at": pytest.approx(before, abs=1),
        "expected_seconds": [1.0, 1.5],
    }


@needs_task_state_store
def test_a_finished_job_is_reused_by_a_later_try(emulator: KlingEmulator) -> None:
    store = FakeStore()
    first = operator().execute(context_with(store))
    again = operator().execute(context_with(store, try_number=2))
    assert again == first
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
def test_changed_parameters_submit_a_new_job(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore()
    first = operator("a fox").execute(context_with(store))
    second = operator("a whale at sunset").execute(context_with(store, try_number=2))
    assert second["task_id"] != first["task_id"]
    assert store[KEY]["task_id"] == second["task_id"]
    assert "other parameters" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 2


@needs_task_state_store
def test_a_job_the_vendor_no_longer_knows_is_submitted_anew(emulator: KlingEmulator) -> None:
    fingerprint = GenerationRequest("a fox").fingerprint()
    store = FakeStore({KEY: {"task_id": "purged-long-ago", "fingerprint": fingerprint}})
    result = operator().execute(context_with(store, try_number=2))
    assert result["status"] == "completed"
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
def test_an_unconfirmed_submit_fails_the_retry_without_sending(emulator: KlingEmulator) -> None:
    store = FakeStore({KEY: {"pending": GenerationRequest("a fox").fingerprint()}})
    with pytest.raises(AirflowFailException, match="state-store/kling_submission"):
        operator().execute(context_with(store, try_number=2))
    assert emulator.stats()["requests"]["submit"] == 0


@needs_task_state_store
def test_an_unconfirmed_submit_is_sent_again_when_told_to(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore({KEY: {"pending": GenerationRequest("a fox").fingerprint()}})
    operator(on_unconfirmed_submit="resubmit").execute(context_with(store, try_number=2))
    assert "may be paid twice" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
def test_a_lost_answer_leaves_the_pending_mark_for_the_next_try(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    store = FakeStore()
    with pytest.raises(KlingSubmitUncertainError):
        operator(on_unconfirmed_submit="resubmit").execute(context_with(store))
    assert store[KEY] == {"pending": GenerationRequest("a fox").fingerprint()}


@needs_task_state_store
def test_a_submit_refused_outright_clears_the_mark_so_a_retry_may_send_it(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "rate_limit", count=3, retry_after=0)
    store = FakeStore()
    with pytest.raises(KlingRateLimitError):
        operator().execute(context_with(store))
    assert KEY not in store
    result = operator().execute(context_with(store, try_number=2))
    assert result["status"] == "completed"
    assert emulator.stats()["jobs_created"] == 1


def test_without_a_store_a_retry_warns_that_it_pays_again(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    context = context_with(FakeStore(), try_number=2)
    context["task_state_store"] = None
    operator().execute(context)
    assert "paying again" in logged(capfd)


def test_over_budget_request_fails_before_sending(emulator: KlingEmulator) -> None:
    with pytest.raises(AirflowFailException, match=r"max_credits.*220 credits"):
        operator(duration=10, sound=True, prompt_directory_optin=False, max_credits=100).execute(
            context_with(FakeStore())
        )
    assert emulator.stats()["requests"]["submit"] == 0


def test_an_auth_error_seen_by_the_trigger_fails_the_task_without_retries() -> None:
    event = wait_event(WaitOutcome.ERROR, "t1", "Kling API refused the key", error=KlingAuthError("x"))
    with pytest.raises(AirflowFailException, match="refused the key"):
        operator().execute_complete(context_with(FakeStore()), event)


def test_an_outage_seen_by_the_trigger_leaves_the_task_to_its_retries() -> None:
    event = wait_event(WaitOutcome.ERROR, "t1", "API down", error=KlingRateLimitError("x"))
    with pytest.raises(KlingRateLimitError):
        operator().execute_complete(context_with(FakeStore()), event)


@pytest.mark.parametrize("poll_interval", [0, -1])
def test_poll_interval_must_be_positive(poll_interval: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        KlingGenerateOperator(task_id="generate", prompt="a", poll_interval=poll_interval)


def test_output_path_keeps_the_video_and_announces_it(emulator: KlingEmulator, tmp_path: Any) -> None:
    context = context_with(FakeStore())
    result = operator(output_path=f"file://{tmp_path}/clip.mp4").execute(context)
    events = context["outlet_events"][AssetAlias("kling_videos")]
    assert result["path"] == f"file://{tmp_path}/clip.mp4"
    assert result["sha256"] == hashlib.sha256((tmp_path / "clip.mp4").read_bytes()).hexdigest()
    [(uri, extra)] = events.added
    assert uri == f"file://{tmp_path}/clip.mp4"
    assert extra == {
        "task_id": result["task_id"],
        "duration": 5,
        "has_audio": False,
        "credits_used": 45,
        "bytes": result["bytes"],
        "sha256": result["sha256"],
    }


def test_output_path_adds_the_default_asset_alias_outlet() -> None:
    assert AssetAlias("kling_videos") in operator(output_path="file:///videos/a.mp4").outlets
    assert operator().outlets == []


@needs_task_state_store
def test_a_failed_download_is_retried_by_the_next_try_without_a_second_job(
    emulator: KlingEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        KlingHook, "status_retry_policy", RetryPolicy(attempts=2, initial_wait=0.01, max_wait=0.02)
    )
    store = FakeStore()
    emulator.inject("video", "server_error", count=2)
    with pytest.raises(KlingServerError):
        operator(output_path=f"file://{tmp_path}/clip.mp4").execute(context_with(store))
    assert list(tmp_path.iterdir()) == []
    result = operator(output_path=f"file://{tmp_path}/clip.mp4").execute(context_with(store, try_number=2))
    assert (tmp_path / "clip.mp4").stat().st_size == result["bytes"]
    assert emulator.stats()["jobs_created"] == 1
