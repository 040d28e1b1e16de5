"""KlingStatusTrigger: wait for a Kling job in the triggerer, holding no worker slot.

The trigger only reads status (it never submits, so a triggerer restart cannot pay twice), carries
an absolute deadline (so a restart does not extend the wait), and ends with exactly one event
whose small payload is documented in :class:`~airflow_provider_kling.core.waiting.WaitOutcome`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kling import DEFAULT_CONN_ID
from airflow_provider_kling.core.errors import KlingError, is_transient
from airflow_provider_kling.core.polling import VENDOR_EXPECTED_SECONDS, AdaptivePolling, FixedPolling
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.core.waiting import WaitOutcome, check_poll_interval, wait_event

T = TypeVar("T")

#: The interval of a wait told neither an interval nor when its job was submitted: the vendor's.
DEFAULT_POLL_INTERVAL = 10.0
#: Consecutive polls (each already retried by the hook) that may fail before the wait gives up.
FAILURE_BUDGET = 5


async def _within(seconds: float, call: Coroutine[Any, Any, T]) -> T:
    """``call`` cut off after ``seconds`` (TimeoutError): with ``asyncio.timeout`` where there is one
    (Python 3.11+), which costs a timer, not a task per poll as ``wait_for`` does there."""
    if sys.version_info >= (3, 11):
        async with asyncio.timeout(seconds):
            return await call
    return await asyncio.wait_for(call, seconds)


class KlingStatusTrigger(BaseTrigger):
    """Poll ``GET /status/{task_id}/`` until the job ends or ``deadline`` (a Unix time) passes.

    With ``poll_interval`` it polls at that fixed interval. Without one, given when the job was
    ``submitted_at`` (and the ``expected_seconds`` its submit announced), it polls adaptively:
    rarely while the video renders, closely around the end its progress points to.

    :param kling_task_id: the vendor task_id (not ``task_id``, which the triggerer sets to the
        Airflow task's id).
    :param deadline: the Unix time past which the wait ends with a ``timeout`` event; absolute, so
        a triggerer restart does not extend it.
    :param poll_interval: a fixed interval in seconds; None to poll adaptively (or every 10 s when
        ``submitted_at`` is unknown).
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API.
    :param submitted_at: the Unix time the job was accepted, for the adaptive schedule.
    :param expected_seconds: the submit's announced duration range (low, high) in seconds; the
        vendor's 60-90 s when not given.
    """

    def __init__(
        self,
        kling_task_id: str,
        deadline: float,
        poll_interval: float | None = None,
        kling_conn_id: str = DEFAULT_CONN_ID,
        submitted_at: float | None = None,
        expected_seconds: tuple[float, float] | list[float] | None = None,
    ):
        super().__init__()
        if poll_interval is not None:
            check_poll_interval(poll_interval)
        # Not ``task_id``: BaseTrigger keeps the Airflow task's id there, set by the triggerer.
        self.kling_task_id = kling_task_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.kling_conn_id = kling_conn_id
        self.submitted_at = submitted_at
        self.expected_seconds = list(expected_seconds) if expected_seconds else None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "kling_task_id": self.kling_task_id,
                "deadline": self.deadline,
                "poll_interval": self.poll_interval,
                "kling_conn_id": self.kling_conn_id,
                "submitted_at": self.submitted_at,
                "expected_seconds": self.expected_seconds,
            },
        )

    def _schedule(self) -> AdaptivePolling | FixedPolling:
        if self.poll_interval is None and self.submitted_at is not None:
            expected = self.expected_seconds or VENDOR_EXPECTED_SECONDS
            return AdaptivePolling(self.submitted_at, (expected[0], expected[-1]))
        return FixedPolling(self.poll_interval or DEFAULT_POLL_INTERVAL)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.wait())

    async def wait(self) -> dict[str, Any]:
        """The wait itself, as a plain coroutine: the operator's non-deferrable path runs it too."""
        from airflow_provider_kling.hooks._aio import shared_for_loop
        from airflow_provider_kling.hooks.kling import KlingHook

        hook = KlingHook(self.kling_conn_id)
        schedule = self._schedule()
        progress: int | None = None
        failures = 0
        async with shared_for_loop():  # held for the whole wait, so polls reuse its connections
            delay = schedule.first_delay(time.time())
            while True:
                if delay > 0:
                    await asyncio.sleep(min(delay, max(self.deadline - time.time(), 0)))
                remaining = self.deadline - time.time()
                if remaining <= 0:
                    return self._timed_out(progress)
                try:
                    # The hook's own retries must not carry the wait past its deadline.
                    status = await _within(remaining, hook.aget_status(self.kling_task_id))
                except asyncio.TimeoutError:
                    return self._timed_out(progress)
                except KlingError as error:
                    failures += 1
                    if not is_transient(error) or failures >= FAILURE_BUDGET:
                        tried = f" after {failures} failed polls" if is_transient(error) else ""
                        return wait_event(
                            WaitOutcome.ERROR,
                            self.kling_task_id,
                            f"Could not read Kling job {self.kling_task_id}{tried}: {error}",
                            progress=progress,
                            error=error,
                        )
                    self.log.warning(
                        "Kling status poll failed (%d of %d allowed): %s", failures, FAILURE_BUDGET, error
                    )
                else:
                    failures = 0
                    if status.progress != progress or status.state is not JobState.RUNNING:
                        shown = f", progress {status.progress}%" if status.progress is not None else ""
                        self.log.info("Kling job %s: %s%s", self.kling_task_id, status.status, shown)
                    progress = status.progress if status.progress is not None else progress
                    if status.state is JobState.COMPLETED:
                        return wait_event(
                            WaitOutcome.SUCCESS,
                            self.kling_task_id,
                            f"Video ready: {status.video_url}",
                            status=status,
                        )
                    if status.state is JobState.FAILED:
                        said = f": {status.message}" if status.message else ""
                        return wait_event(
                            WaitOutcome.FAILED,
                            self.kling_task_id,
                            f"Kling job {self.kling_task_id} ended as {status.status!r}{said}",
                            progress=progress,
                            status=status,
                        )
                delay = schedule.next_delay(time.time(), progress)

    def _timed_out(self, progress: int | None) -> dict[str, Any]:
        seen = f"{progress}%" if progress is not None else "unknown"
        return wait_event(
            WaitOutcome.TIMEOUT,
            self.kling_task_id,
            f"Stopped waiting for Kling job {self.kling_task_id} at its deadline (last progress {seen}). "
            "The job was not cancelled (the API has no cancel call): it may still finish, and is charged.",
            progress=progress,
        )
