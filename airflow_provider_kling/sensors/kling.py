"""KlingStatusSensor: wait for any Kling job, e.g. one submitted upstream without waiting."""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.providers.common.compat.sdk import (
    AirflowFailException,
    AirflowSensorTimeout,
    BaseSensorOperator,
    PokeReturnValue,
    conf,
)

from airflow_provider_kling import DEFAULT_CONN_ID
from airflow_provider_kling.core.errors import KlingError, is_transient
from airflow_provider_kling.core.waiting import (
    KlingWaitTimeoutError,
    finished_event,
    result_from_event,
    video_result,
)
from airflow_provider_kling.links.kling import VIDEO_URL_ATTRIBUTE, KlingVideoLink

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kling.hooks.kling import KlingHook


class KlingStatusSensor(BaseSensorOperator):
    """Wait until the Kling job ``kling_task_id`` has its video; return the same result as the operator.

    ``kling_task_id`` is templated, e.g. ``"{{ ti.xcom_pull(task_ids='submit', key='task_id') }}"``.
    A failed job fails the sensor at once: no retry can make a failed generation succeed.
    Works in poke, reschedule and deferrable modes (``timeout`` bounds each of them).

    :param kling_task_id: (templated) the vendor task_id to wait for.
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API.
    :param deferrable: wait in the triggerer, holding no worker slot (default
        ``[operators] default_deferrable``).
    :param poke_interval: seconds between status reads (the vendor suggests 10).
    :param kwargs: the usual sensor arguments: ``timeout`` (bounds every mode and each poke's own
        request), ``mode`` ("poke" or "reschedule"), ``soft_fail``...
    """

    template_fields: Sequence[str] = ("kling_task_id",)
    ui_color = "#f2e6ff"
    operator_extra_links = (KlingVideoLink(),)

    def __init__(
        self,
        *,
        kling_task_id: str,
        kling_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poke_interval: float | timedelta = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.kling_task_id = kling_task_id
        self.kling_conn_id = kling_conn_id
        self.deferrable = deferrable

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            self._started = time.monotonic()
            return super().execute(context)
        from airflow_provider_kling.triggers.kling import KlingStatusTrigger  # not at DAG-parse time

        self.defer(
            trigger=KlingStatusTrigger(
                kling_task_id=self.kling_task_id,
                deadline=time.time() + self.timeout,
                poll_interval=self.poke_interval,
                kling_conn_id=self.kling_conn_id,
            ),
            method_name="execute_complete",
        )

    def _time_left(self) -> float | None:
        """What is left of ``timeout`` since this execution began: a poke may not outlast it.

        (In reschedule mode that counts from the current try's start, which bounds it as well.)
        """
        started = getattr(self, "_started", None)
        return None if started is None else self.timeout - (time.monotonic() - started)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            status = self.hook.get_status(self.kling_task_id, timeout=self._time_left())
        except KlingError as error:
            if is_transient(error):
                self.log.warning("Kling status unavailable, poking again later: %s", error)
                return False
            raise AirflowFailException(str(error)) from error
        self.log.info("Kling job %s: %s, progress %s%%", status.task_id, status.status, status.progress)
        event = finished_event(status)
        if event is None:
            return False
        try:
            return PokeReturnValue(is_done=True, xcom_value=self._video(result_from_event(event)))
        except KlingError as failed:  # the vendor failed the job: no retry can make it succeed
            raise AirflowFailException(str(failed)) from failed

    def _video(self, status: dict[str, Any]) -> dict[str, Any]:
        result = video_result(status)
        setattr(self, VIDEO_URL_ATTRIBUTE, result["video_url"])  # for the "Kling video" link
        return result

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        try:
            return self._video(result_from_event(event))
        except KlingWaitTimeoutError as timeout:
            raise AirflowSensorTimeout(str(timeout)) from timeout
        except KlingError as error:
            raise AirflowFailException(str(error)) from error
