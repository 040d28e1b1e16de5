"""KlingStatusTrigger: wait for a Kling job in the triggerer, holding no worker slot.

The trigger only reads status (it never submits, so a triggerer restart cannot pay twice), carries
an absolute deadline (so a restart does not extend the wait), and ends with exactly one event
whose small payload is documented in :class:`~airflow_provider_kling.core.waiting.WaitOutcome`.
With ``end_from_trigger``, a finished video ends the task right here instead (Airflow's
``TaskSuccessEvent``), so no worker starts again only to turn the event into the result.
"""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from airflow_provider_kling import DEFAULT_CONN_ID, metrics
from airflow_provider_kling.core.polling import schedule_for
from airflow_provider_kling.core.request import GenerationMode
from airflow_provider_kling.core.waiting import (
    WaitOutcome,
    check_poll_interval,
    result_from_event,
    video_result,
    wait_for_job,
)
from airflow_provider_kling.links.kling import KlingVideoLink, link_to

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance

    from airflow_provider_kling.hooks.kling import KlingHook


class KlingStatusTrigger(BaseTrigger):
    """Poll ``GET /status/{task_id}/`` until the job ends or ``deadline`` (a Unix time) passes.

    With ``poll_interval`` it polls at that fixed interval. Without one, given when the job was
    ``submitted_at`` (and the ``expected_seconds`` its submit announced), it polls adaptively:
    rarely while the video renders, closely around the end its progress points to.

    :param kling_task_id: the vendor task_id (not ``task_id``, which the triggerer sets to the
        Airflow task's id).
    :param deadline: the Unix time past which the wait ends with a ``timeout`` event; absolute, so
        a triggerer restart does not extend it. None when the task starts in the triggerer, where
        no start time is known yet: Airflow's own trigger timeout then bounds the wait.
    :param poll_interval: a fixed interval in seconds; None to poll adaptively (or every 10 s when
        ``submitted_at`` is unknown).
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API.
    :param submitted_at: the Unix time the job was accepted, for the adaptive schedule.
    :param expected_seconds: the submit's announced duration range (low, high) in seconds; the
        vendor's 60-90 s when not given.
    :param end_from_trigger: end the task here once the video is ready, returning the result
        (``return_value`` XCom) and the "Kling video" link without a worker, for a task that needs
        nothing else of a worker's end (:func:`~airflow_provider_kling.task_end.left_for_worker`).
        Every other ending (failed, timeout, error) still resumes the task on a worker, which
        raises as before.
    :param multiple_outputs: with ``end_from_trigger``, also push each key of the result as an XCom
        of its own, as a worker does for a task with ``multiple_outputs``.
    :param generation_mode: the job's mode (``text_to_video`` or ``image_to_video``), where the API
        reads each mode's jobs at a path of its own (``klingai``); unknown, each path is asked.
    :param credits_used: what the job cost, for the result and the kill warning.
    :param credits_remaining: the account's credits after the submit, for the result.
    """

    def __init__(
        self,
        kling_task_id: str,
        deadline: float | None,
        poll_interval: float | None = None,
        kling_conn_id: str = DEFAULT_CONN_ID,
        submitted_at: float | None = None,
        expected_seconds: tuple[float, float] | list[float] | None = None,
        end_from_trigger: bool = False,
        generation_mode: str | None = None,
        credits_used: int | None = None,
        credits_remaining: int | None = None,
        multiple_outputs: bool = False,
    ):
        super().__init__()
        # Not ``task_id``: BaseTrigger keeps the Airflow task's id there, set by the triggerer.
        self.kling_task_id = kling_task_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.kling_conn_id = kling_conn_id
        self.submitted_at = submitted_at
        self.expected_seconds = list(expected_seconds) if expected_seconds else None
        self.end_from_trigger = end_from_trigger
        self.generation_mode = generation_mode
        self.credits_used = credits_used
        self.credits_remaining = credits_remaining
        self.multiple_outputs = multiple_outputs
        check_poll_interval(poll_interval)

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
                "end_from_trigger": self.end_from_trigger,
                "generation_mode": self.generation_mode,
                "credits_used": self.credits_used,
                "credits_remaining": self.credits_remaining,
                "multiple_outputs": self.multiple_outputs,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = await self.wait()
        tags = metrics.task_tags(self.kling_conn_id, self.task_instance)
        metrics.wait_ended(tags, event, self.submitted_at, time.time())
        if self.end_from_trigger and event["status"] == WaitOutcome.SUCCESS.value:
            result = video_result(result_from_event(event), self.credits_used, self.credits_remaining)
            self.log.info("Kling video ready: %s (the task ends in the triggerer)", result["video_url"])
            if self.task_instance is not None:  # None where dag.test() runs it inline, then resumes the task
                await self._push_result(result, self.task_instance, self.multiple_outputs)
            yield TaskSuccessEvent()
        else:
            yield TriggerEvent(event)

    async def _push_result(self, result: dict[str, Any], ti: TaskInstance, multiple_outputs: bool) -> None:
        """Push what a worker's end pushes, as it pushes it: with ``multiple_outputs`` each key, then
        ``return_value``, through the Task SDK's XCom (and any XCom backend); then the "Kling video"
        link, straight to Airflow's database (``task_end.WORKER_END``).

        None among the end event's XComs: Airflow 3.1-3.3 store those JSON-encoded twice, so a
        downstream task would read a string where a worker's end leaves the value.

        A triggerer that misses its heartbeat (a starved machine) has its waits taken over by another
        while it still runs them: two runs of this wait then push the same values at once, and the
        one whose insert comes second is refused (409). That value is already there, so it goes on.
        """
        from airflow.sdk.execution_time.xcom import XCom

        where = {"dag_id": ti.dag_id, "task_id": ti.task_id, "run_id": ti.run_id, "map_index": ti.map_index}
        for key, value in result.items() if multiple_outputs else ():
            await self._push_unless_pushed(XCom.set, key, value, where)
        await self._push_unless_pushed(XCom.set, "return_value", result, where)
        link = KlingVideoLink()
        await self._push_unless_pushed(
            XCom._set_xcom_in_db, link.xcom_key, link_to(result["video_url"]), where
        )

    async def _push_unless_pushed(self, push: Any, key: str, value: Any, where: dict[str, Any]) -> None:
        """``push(key, value, **where)`` off the event loop, a 409 from the API server (the same XCom
        inserted meanwhile by another run of the same wait) taken as pushed."""
        from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
        from asgiref.sync import sync_to_async

        try:
            # Not asgiref's one shared thread (thread_sensitive): a push waits on the triggerer's busy
            # supervisor, and in that thread it delayed other waits' polls (p99 seen late 1 s -> 33 s).
            await sync_to_async(push, thread_sensitive=False)(key, value, **where)
        except AirflowRuntimeError as refused:
            error = refused.error
            if (
                error.error is not ErrorType.API_SERVER_ERROR
                or (error.detail or {}).get("status_code") != 409
            ):
                raise
            self.log.warning("XCom %r of %s was pushed meanwhile by another run of this wait", key, where)

    async def on_kill(self) -> None:
        """Airflow 3.3+ calls this when a user marks the deferred task failed or success, or clears it."""
        cost = f"its {self.credits_used} credits" if self.credits_used is not None else "its credits"
        self.log.warning(
            "Stopped waiting for Kling job %s (the task was marked or cleared). The job keeps running at "
            "the vendor (the API has no cancel call) and %s are charged.",
            self.kling_task_id,
            cost,
        )

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    async def wait(self) -> dict[str, Any]:
        """The wait itself (the core's :func:`wait_for_job`) on the hook's shared polling session."""
        hook = self.hook
        mode = GenerationMode(self.generation_mode) if self.generation_mode else None
        async with hook.polling_session():  # held for the whole wait, so polls reuse its connections
            return await wait_for_job(
                lambda: hook.aget_status(self.kling_task_id, generation_mode=mode),
                self.kling_task_id,
                math.inf if self.deadline is None else self.deadline,
                schedule_for(self.poll_interval, self.submitted_at, self.expected_seconds),
                log=self.log,
            )
