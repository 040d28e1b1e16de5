"""The wait for a Kling job, and how it ends as one small event: shared by the trigger, operator
and sensor.

Airflow-free: :func:`wait_for_job` runs over any async status reader and clock (the trigger gives
it the hook's and the wall clock; tests a fake clock), and the operator and sensor read events
without importing the trigger at DAG-parse time.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol, TypeVar

from airflow_provider_kling.core.errors import WAIT_ERRORS, KlingError, KlingJobFailedError, is_transient
from airflow_provider_kling.core.responses import JobState, JobStatus

T = TypeVar("T")
_log = logging.getLogger(__name__)

#: Consecutive polls (each already retried by the hook) that may fail before the wait gives up.
FAILURE_BUDGET = 5


class WaitOutcome(str, Enum):
    """The ``status`` of the one event a wait ends with.

    Every event is ``{"status", "task_id", "message", "progress", "result", "error"}``: ``result``
    is the job's status fields (:meth:`JobStatus.as_dict`) for ``success`` and ``failed``, else
    None; ``error`` names the :class:`KlingError` class behind an ``error``, so the resumed task
    raises the same class (an auth error fails at once, an outage may be retried). A wait's event
    also says how it went, for metrics: ``polls`` (status reads made) and ``seen_late`` (seconds
    from the last read that saw the job running to the one that saw it end; None without both).
    """

    SUCCESS = "success"  # the video is ready
    FAILED = "failed"  # the vendor says the generation failed
    TIMEOUT = "timeout"  # the deadline passed; the job may still be running
    ERROR = "error"  # we could not find out (bad key, unknown task, API down for too long)


class KlingWaitTimeoutError(KlingError):
    """The wait's deadline passed before the job finished."""


def wait_event(
    outcome: WaitOutcome,
    task_id: str,
    message: str,
    *,
    progress: int | None = None,
    status: JobStatus | None = None,
    error: KlingError | None = None,
) -> dict[str, Any]:
    return {
        "status": outcome.value,
        "task_id": task_id,
        "message": message,
        "progress": progress,
        "result": status.as_dict() if status else None,
        "error": type(error).__name__ if error else None,
    }


#: What a task that its trigger ended is resumed with by a runner that resumes it all the same
#: (``dag.test()`` does; a deployed Airflow does not): the task-end event's payload, its state, the
#: result having gone to XCom with the event. The job is known to be complete then.
TASK_ENDED_EVENT = "success"


def result_from_event(event: Any) -> dict[str, Any]:
    """The finished job's fields from a wait event; raises the matching error for any other outcome."""
    if not isinstance(event, dict) or event.get("status") not in {o.value for o in WaitOutcome}:
        raise KlingError(f"Kling wait ended with an event this provider does not know: {event!r}")
    outcome, task_id, message = WaitOutcome(event["status"]), event.get("task_id"), event.get("message")
    if outcome is WaitOutcome.SUCCESS and isinstance(event.get("result"), dict):
        return dict(event["result"])
    if outcome is WaitOutcome.FAILED:
        raise KlingJobFailedError(message or "Kling job failed", task_id=task_id)
    if outcome is WaitOutcome.TIMEOUT:
        raise KlingWaitTimeoutError(message or "Kling wait timed out", task_id=task_id)
    error_class = WAIT_ERRORS.get(str(event.get("error")), KlingError)
    raise error_class(message or f"Kling wait for {task_id} failed", task_id=task_id)


def check_poll_interval(poll_interval: float | None) -> None:
    """Every wait sleeps between polls: refuse an interval that would make it spin (None: adaptive)."""
    if poll_interval is not None and not poll_interval > 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")


def video_result(
    status: dict[str, Any], credits_used: float | None = None, credits_remaining: float | None = None
) -> dict[str, Any]:
    """The JSON-serialisable result of a finished generation, as the operator and sensor return it.
    ``credits_used`` is the submit's answer's, else what the status says the job was charged."""
    return {
        "task_id": status["task_id"],
        "status": status["status"],
        "video_url": status["video_url"],
        "duration": status["duration"],
        "has_audio": status["has_audio"],
        "credits_used": credits_used if credits_used is not None else status.get("charged"),
        "credits_remaining": credits_remaining,
    }


def finished_event(status: JobStatus) -> dict[str, Any] | None:
    """The event a status ends a wait with (the video is ready, or the vendor failed the job), or
    None while the job runs: the one place that says what a status means for a wait."""
    if status.state is JobState.COMPLETED:
        return wait_event(
            WaitOutcome.SUCCESS, status.task_id, f"Video ready: {status.video_url}", status=status
        )
    if status.state is JobState.FAILED:
        said = f": {status.message}" if status.message else ""
        ended = f"Kling job {status.task_id} ended as {status.status!r}{said}"
        return wait_event(WaitOutcome.FAILED, status.task_id, ended, progress=status.progress, status=status)
    return None


class Schedule(Protocol):
    def first_delay(self, now: float) -> float: ...
    def next_delay(self, now: float, progress: int | None) -> float: ...


class Clock(Protocol):
    def now(self) -> float: ...
    async def sleep(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class SystemClock:
    """Unix time and asyncio's sleep."""

    def now(self) -> float:
        return time.time()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def _within(seconds: float, call: Coroutine[Any, Any, T]) -> T:
    """``call`` cut off after ``seconds`` (TimeoutError): with ``asyncio.timeout`` where there is one
    (Python 3.11+), which costs a timer, not a task per poll as ``wait_for`` does there."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)


@dataclass
class _Wait:
    """One wait's state: what it last saw, and how many polls in a row failed."""

    task_id: str
    deadline: float
    log: logging.Logger | Any
    progress: int | None = None
    failures: int = 0
    read_once: bool = False
    polls: int = 0
    last_running_at: float | None = None

    def timed_out(self) -> dict[str, Any]:
        seen = f"{self.progress}%" if self.progress is not None else "unknown"
        return wait_event(
            WaitOutcome.TIMEOUT,
            self.task_id,
            f"Stopped waiting for Kling job {self.task_id} at its deadline (last progress {seen}). "
            "The job was not cancelled (the API has no cancel call): it may still finish, and is charged.",
            progress=self.progress,
        )

    def failed_poll(self, error: KlingError) -> dict[str, Any] | None:
        """The error event when the wait gives up on ``error``, else None (poll again)."""
        self.failures += 1
        if is_transient(error) and self.failures < FAILURE_BUDGET:
            self.log.warning(
                "Kling status poll failed (%d of %d allowed): %s", self.failures, FAILURE_BUDGET, error
            )
            return None
        tried = f" after {self.failures} failed polls" if is_transient(error) else ""
        unread = f"Could not read Kling job {self.task_id}{tried}: {error}"
        return wait_event(WaitOutcome.ERROR, self.task_id, unread, progress=self.progress, error=error)

    def tallied(self, event: dict[str, Any], now: float) -> dict[str, Any]:
        """``event`` with how the wait went: its reads, and how late it saw the end."""
        seen_late = None
        seen_end = event["status"] in (WaitOutcome.SUCCESS.value, WaitOutcome.FAILED.value)
        if seen_end and self.last_running_at is not None:
            seen_late = round(now - self.last_running_at, 3)
        return event | {"polls": self.polls, "seen_late": seen_late}

    def read(self, status: JobStatus) -> dict[str, Any] | None:
        """The event ``status`` ends the wait with, else None. Logs the first reading and the end at
        INFO, and each change of progress between them at DEBUG: in a triggerer every line crosses
        to its supervisor, the largest part of a poll's cost there (docs/benchmarks.md, section 6)."""
        self.failures = 0
        ended = status.state is not JobState.RUNNING
        if status.progress != self.progress or ended or not self.read_once:
            shown = f", progress {status.progress}%" if status.progress is not None else ""
            log = self.log.info if ended or not self.read_once else self.log.debug
            log("Kling job %s: %s%s", self.task_id, status.status, shown)
        self.read_once = True
        self.progress = status.progress if status.progress is not None else self.progress
        return finished_event(status)


async def wait_for_job(
    read_status: Callable[[], Coroutine[Any, Any, JobStatus]],
    task_id: str,
    deadline: float,
    schedule: Schedule,
    *,
    clock: Clock = SystemClock(),
    log: logging.Logger | Any = _log,
) -> dict[str, Any]:
    """Poll ``read_status`` on ``schedule`` until the job ends or ``deadline`` (a time of ``clock``)
    passes, and say how it ended as one event. A failed read is forgiven up to
    :data:`FAILURE_BUDGET` times in a row when transient; no read runs past the deadline."""
    wait = _Wait(task_id, deadline, log)
    delay = schedule.first_delay(clock.now())
    while True:
        if delay > 0:
            await clock.sleep(min(delay, max(deadline - clock.now(), 0)))
        remaining = deadline - clock.now()
        if remaining <= 0:
            return wait.tallied(wait.timed_out(), clock.now())
        wait.polls += 1
        try:
            # The reader's own retries must not carry the wait past its deadline.
            status = await _within(remaining, read_status())
        except asyncio.TimeoutError:
            return wait.tallied(wait.timed_out(), clock.now())
        except KlingError as error:
            event = wait.failed_poll(error)
        else:
            event = wait.read(status)
            if event is None:
                wait.last_running_at = clock.now()
        if event is not None:
            return wait.tallied(event, clock.now())
        delay = schedule.next_delay(clock.now(), wait.progress)
