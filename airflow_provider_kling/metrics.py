"""Kling metrics through Airflow's own metrics system: StatsD or OpenTelemetry, whichever the
deployment configured (``[metrics] statsd_on`` / ``otel_on``), nothing when neither is.

Names follow Airflow's: dotted, lower case, under Airflow's own prefix (``[metrics]
statsd_prefix``, ``airflow`` by default). Each metric carries the tag ``conn_id``, and where a
task is known ``dag_id`` and ``task_id``: backends with tags (OpenTelemetry, Datadog, StatsD with
``statsd_influxdb_enabled``) keep them, plain StatsD drops them. The README's table lists them.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from airflow_provider_kling.core.waiting import WaitOutcome

_log = logging.getLogger(__name__)
F = TypeVar("F", bound=Callable[..., None])

#: Generations the vendor accepted (counter).
SUBMITTED = "kling.generation.submitted"
#: Credits the accepted generations cost (counter, incremented by each one's credits, tagged
#: ``unit``: UlazAI's whole credits at the submit, Kling's own API's decimal units when a job ends).
CREDITS_USED = "kling.generation.credits_used"
#: The account's credits after the latest submit on the connection (gauge).
CREDITS_REMAINING = "kling.account.credits_remaining"
#: Waits that ended, tagged ``outcome`` (success, failed, timeout, error) (counter).
WAITS_ENDED = "kling.generation.wait_ended"
#: Status reads the waits made (counter, incremented by each wait's reads when it ends).
STATUS_POLLS = "kling.generation.status_polls"
#: From the submit's answer to the status read that saw the video ready (timer).
GENERATION_TIME = "kling.generation.duration"
#: At most how late a wait saw its job end: from the last read that saw it running to the one
#: that saw it end (timer).
DETECTION_LAG = "kling.generation.detection_lag"
#: HTTP 429 answers from the API (counter).
RATE_LIMITED = "kling.api.rate_limited"
#: Calls to the API repeated after a transient failure (counter).
RETRIES = "kling.api.retries"


def _never_fails(report: F) -> F:
    """A metric is never worth a task: one that cannot be sent (a backend that refuses a value, a
    socket error) is logged and dropped. Some are sent between a paid submit and its record."""

    @functools.wraps(report)
    def guarded(*args: Any, **kwargs: Any) -> None:
        try:
            report(*args, **kwargs)
        except Exception as error:
            _log.warning("Could not send the Kling metrics of %s: %r", report.__name__, error)

    return guarded  # type: ignore[return-value]


def _stats() -> Any:
    # Here, not at import: the operator's module stays light at DAG-parse time.
    from airflow.providers.common.compat.sdk import Stats

    return Stats


def task_tags(conn_id: str, task_instance: Any) -> dict[str, str]:
    """The tags of a task's metrics; only ``conn_id`` where no task is known."""
    if task_instance is None:
        return {"conn_id": conn_id}
    return {"conn_id": conn_id, "dag_id": task_instance.dag_id, "task_id": task_instance.task_id}


@_never_fails
def submitted(
    tags: dict[str, str], credits_used: float | None, credits_remaining: float | None, unit: str
) -> None:
    stats = _stats()
    stats.incr(SUBMITTED, tags=tags)
    if credits_used is not None and credits_used >= 0:  # a counter only grows
        stats.incr(CREDITS_USED, count=credits_used, tags=tags | {"unit": unit})
    if credits_remaining is not None:
        stats.gauge(CREDITS_REMAINING, credits_remaining, tags={"conn_id": tags["conn_id"], "unit": unit})


@_never_fails
def wait_ended(tags: dict[str, str], event: dict[str, Any], submitted_at: float | None, now: float) -> None:
    """A wait's end (an event of :func:`~airflow_provider_kling.core.waiting.wait_for_job`)."""
    stats = _stats()
    stats.incr(WAITS_ENDED, tags=tags | {"outcome": event["status"]})
    if event.get("polls"):
        stats.incr(STATUS_POLLS, count=event["polls"], tags=tags)
    if event["status"] == WaitOutcome.SUCCESS.value and submitted_at is not None:
        stats.timing(GENERATION_TIME, timedelta(seconds=max(now - submitted_at, 0)), tags=tags)
    if event.get("seen_late") is not None:
        stats.timing(DETECTION_LAG, timedelta(seconds=event["seen_late"]), tags=tags)
    status = event.get("result") or {}
    if status.get("charged"):  # an API that charges when the job ends, and says what
        stats.incr(CREDITS_USED, count=status["charged"], tags=tags | {"unit": status["charge_unit"]})


@_never_fails
def rate_limited(conn_id: str) -> None:
    _stats().incr(RATE_LIMITED, tags={"conn_id": conn_id})


@_never_fails
def retried(conn_id: str) -> None:
    _stats().incr(RETRIES, tags={"conn_id": conn_id})
