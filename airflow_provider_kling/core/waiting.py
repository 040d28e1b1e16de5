"""How a wait for a Kling job ends, as one small event: shared by the trigger, operator and sensor.

Airflow-free, so the operator and sensor read events without importing the trigger at DAG-parse time.
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from airflow_provider_kling.core.errors import WAIT_ERRORS, KlingError, KlingJobFailedError
from airflow_provider_kling.core.responses import JobStatus


class WaitOutcome(str, Enum):
    """The ``status`` of the one event a wait ends with.

    Every event is ``{"status", "task_id", "message", "progress", "result", "error"}``: ``result``
    is the job's status fields (:meth:`JobStatus.as_dict`) for ``success`` and ``failed``, else
    None; ``error`` names the :class:`KlingError` class behind an ``error``, so the resumed task
    raises the same class (an auth error fails at once, an outage may be retried).
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


def check_poll_interval(poll_interval: float) -> None:
    """Every wait sleeps between polls: refuse an interval that would make it spin."""
    if not poll_interval > 0:
        raise ValueError(f"poll_interval must be a positive number of seconds, got {poll_interval!r}")


def video_result(status: dict[str, Any], credits: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON-serialisable result of a finished generation, as the operator and sensor return it."""
    return {
        "task_id": status["task_id"],
        "status": status["status"],
        "video_url": status["video_url"],
        "duration": status["duration"],
        "has_audio": status["has_audio"],
        "credits_used": (credits or {}).get("credits_used"),
        "credits_remaining": (credits or {}).get("credits_remaining"),
    }
