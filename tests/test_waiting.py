"""The core wait (``wait_for_job``) on a fake clock: how a wait ends, without a server or real time."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from types import SimpleNamespace
from typing import Any

import pytest

from airflow_provider_kling.core.errors import KlingAuthError, KlingServerError
from airflow_provider_kling.core.polling import FixedPolling
from airflow_provider_kling.core.responses import JobState, JobStatus
from airflow_provider_kling.core.waiting import wait_for_job

START = 1_000_000.0


class FakeClock:
    """Time that passes only when the wait sleeps; records each sleep."""

    def __init__(self) -> None:
        self.time = START
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self.time

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.time += seconds


def running(progress: int) -> JobStatus:
    return JobStatus(task_id="job", status="processing", state=JobState.RUNNING, progress=progress)


COMPLETED = JobStatus(
    task_id="job", status="completed", state=JobState.COMPLETED, video_url="https://cdn.example.com/v.mp4"
)
FAILED = JobStatus(task_id="job", status="failed", state=JobState.FAILED, message="content policy")


class Reader:
    """Answers each read with the next of ``answers`` (a status, or an error to raise)."""

    def __init__(self, answers: Iterable[JobStatus | Exception]) -> None:
        self.answers = list(answers)
        self.reads = 0

    async def __call__(self) -> JobStatus:
        answer = self.answers[min(self.reads, len(self.answers) - 1)]
        self.reads += 1
        if isinstance(answer, Exception):
            raise answer
        return answer


def wait(reader: Reader, clock: FakeClock, seconds: float = 60, interval: float = 5) -> dict[str, Any]:
    return asyncio.run(wait_for_job(reader, "job", START + seconds, FixedPolling(interval), clock=clock))


def test_a_completed_job_ends_the_wait_with_its_video() -> None:
    event = wait(Reader([running(10), running(60), COMPLETED]), FakeClock())
    assert event["status"] == "success" and event["result"]["video_url"] == COMPLETED.video_url


def test_a_failed_job_ends_the_wait_with_the_vendors_words() -> None:
    event = wait(Reader([running(10), FAILED]), FakeClock())
    assert event["status"] == "failed" and "ended as 'failed': content policy" in event["message"]


def test_the_deadline_ends_the_wait_with_the_last_progress_seen() -> None:
    clock = FakeClock()
    event = wait(Reader([running(42)]), clock, seconds=30)
    assert event["status"] == "timeout" and event["progress"] == 42
    assert clock.time == START + 30  # the last sleep stopped at the deadline, not past it


def test_transient_failures_are_forgiven_until_the_budget_in_a_row() -> None:
    reader = Reader([KlingServerError("down", http_status=503)])
    event = wait(reader, FakeClock(), seconds=3600)
    assert event["status"] == "error" and event["error"] == "KlingServerError"
    assert reader.reads == 5 and "after 5 failed polls" in event["message"]


def test_a_successful_read_forgives_the_failures_before_it() -> None:
    outage = [KlingServerError("down", http_status=503)] * 4
    event = wait(Reader([*outage, running(50), *outage, COMPLETED]), FakeClock(), seconds=3600)
    assert event["status"] == "success"


def test_an_error_no_retry_can_cure_ends_the_wait_at_once() -> None:
    reader = Reader([KlingAuthError("bad key", http_status=401)])
    event = wait(reader, FakeClock())
    assert event["status"] == "error" and event["error"] == "KlingAuthError" and reader.reads == 1


def test_polls_follow_the_schedule() -> None:
    clock = FakeClock()
    wait(Reader([running(10), running(20), COMPLETED]), clock, interval=7)
    assert clock.sleeps == [7, 7]  # a fixed interval reads at once, then every 7 s


@pytest.mark.parametrize("answers", [[running(5)], [KlingServerError("down", http_status=503)]])
def test_no_read_starts_after_the_deadline(answers: list[Any]) -> None:
    clock = FakeClock()
    reader = Reader(answers)
    wait(reader, clock, seconds=12, interval=5)
    assert reader.reads == 3  # at 0, 5 and 10 s; the 15 s one would be past the deadline
    assert clock.time == START + 12


def test_the_first_reading_and_the_end_are_logged_at_info_progress_between_at_debug() -> None:
    lines: list[tuple[str, str]] = []
    log = SimpleNamespace(
        info=lambda text, *args: lines.append(("info", text % args)),
        debug=lambda text, *args: lines.append(("debug", text % args)),
        warning=lambda text, *args: lines.append(("warning", text % args)),
    )
    reader = Reader([running(10), running(10), running(60), COMPLETED])
    asyncio.run(wait_for_job(reader, "job", START + 60, FixedPolling(5), clock=FakeClock(), log=log))
    assert lines == [
        ("info", "Kling job job: processing, progress 10%"),
        ("debug", "Kling job job: processing, progress 60%"),
        ("info", "Kling job job: completed"),
    ]


def test_the_wait_counts_its_reads_and_how_late_it_saw_the_end() -> None:
    answers = [running(10), running(60), KlingServerError("busy", http_status=503), COMPLETED]
    event = wait(Reader(answers), FakeClock())
    assert event["polls"] == 4
    assert event["seen_late"] == 10  # from the last read that saw it running (a failed read saw nothing)


def test_a_wait_that_never_saw_the_job_running_cannot_say_how_late_it_saw_the_end() -> None:
    event = wait(Reader([COMPLETED]), FakeClock())
    assert (event["polls"], event["seen_late"]) == (1, None)
