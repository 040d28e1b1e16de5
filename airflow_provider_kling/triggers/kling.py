"""KlingStatusTrigger: wait for a Kling job in the triggerer, holding no worker slot.

The trigger only reads status (it never submits, so a triggerer restart cannot pay twice), carries
an absolute deadline (so a restart does not extend the wait), and ends with exactly one event
whose small payload is documented in :class:`~airflow_provider_kling.core.waiting.WaitOutcome`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_kling import DEFAULT_CONN_ID
from airflow_provider_kling.core.polling import schedule_for
from airflow_provider_kling.core.waiting import check_poll_interval, wait_for_job

if TYPE_CHECKING:
    from airflow_provider_kling.hooks.kling import KlingHook


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
        # Not ``task_id``: BaseTrigger keeps the Airflow task's id there, set by the triggerer.
        self.kling_task_id = kling_task_id
        self.deadline = deadline
        self.poll_interval = poll_interval
        self.kling_conn_id = kling_conn_id
        self.submitted_at = submitted_at
        self.expected_seconds = list(expected_seconds) if expected_seconds else None
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
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        yield TriggerEvent(await self.wait())

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    async def wait(self) -> dict[str, Any]:
        """The wait itself (the core's :func:`wait_for_job`) on the hook's shared polling session."""
        hook = self.hook
        async with hook.polling_session():  # held for the whole wait, so polls reuse its connections
            return await wait_for_job(
                lambda: hook.aget_status(self.kling_task_id),
                self.kling_task_id,
                self.deadline,
                schedule_for(self.poll_interval, self.submitted_at, self.expected_seconds),
                log=self.log,
            )
