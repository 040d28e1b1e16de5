"""KlingStatusSensor: wait for any Kling job, e.g. one submitted upstream without waiting."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
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
from airflow_provider_kling.core.request import GenerationMode
from airflow_provider_kling.core.waiting import (
    TASK_ENDED_EVENT,
    KlingWaitTimeoutError,
    finished_event,
    result_from_event,
    video_result,
)
from airflow_provider_kling.links.kling import VIDEO_URL_ATTRIBUTE, KlingVideoLink

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.triggers.base import StartTriggerArgs

    from airflow_provider_kling.hooks.kling import KlingHook
    from airflow_provider_kling.triggers.kling import KlingStatusTrigger


class _MadeWhenAsked:
    """An attribute each instance computes when it is read; read on the class (as ``partial()``
    reads a mapped sensor's defaults), it is None, as BaseOperator's own default."""

    def __init__(self, make: Callable[[Any], Any]) -> None:
        self.make = make

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        return None if instance is None else self.make(instance)


class KlingStatusSensor(BaseSensorOperator):
    """Wait until the Kling job ``kling_task_id`` has its video; return the same result as the operator.

    ``kling_task_id`` is templated, e.g. ``"{{ ti.xcom_pull(task_ids='submit', key='task_id') }}"``.
    A failed job fails the sensor at once: no retry can make a failed generation succeed.
    Works in poke, reschedule and deferrable modes (``timeout`` bounds each of them).

    Deferrable, a ready video ends it in the triggerer: it costs one worker start, to render
    ``kling_task_id`` and defer. With ``start_from_trigger`` it costs none where Airflow can render
    ``kling_task_id`` in the triggerer (3.3+, a sensor that is not mapped, ``kling_task_id`` a string);
    elsewhere it starts on a worker, as without. A failed job or a timeout resumes it on a worker,
    which raises as in the other modes.

    :param kling_task_id: (templated) the vendor task_id to wait for.
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API.
    :param generation_mode: the job's mode, ``"text_to_video"`` or ``"image_to_video"``, where the API
        reads each mode's jobs at a path of its own (Kling's own API): each read then asks one path.
        Unset, each read asks the paths in turn.
    :param deferrable: wait in the triggerer, holding no worker slot (default
        ``[operators] default_deferrable``).
    :param start_from_trigger: with ``deferrable``, start in the triggerer, which renders
        ``kling_task_id`` there (Airflow 3.3+). An ``xcom_pull`` in it must then name
        ``map_indexes`` (e.g. ``map_indexes=-1``): Airflow 3.3.2's triggerer leaves a read of all
        map indexes unanswered, which would hang the wait, so the sensor refuses that at parse time.
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
        generation_mode: str | None = None,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        start_from_trigger: bool = False,
        poke_interval: float | timedelta = 10.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(poke_interval=poke_interval, **kwargs)
        self.kling_task_id = kling_task_id
        self.kling_conn_id = kling_conn_id
        self.generation_mode = GenerationMode(generation_mode) if generation_mode else None
        self.deferrable = deferrable
        if start_from_trigger and deferrable and isinstance(kling_task_id, str):
            self._start_in_triggerer(kling_task_id)

    def _trigger(self, deadline: float | None, ti: Any, log: Any = None) -> KlingStatusTrigger:
        from airflow_provider_kling.task_end import trigger_ending
        from airflow_provider_kling.triggers.kling import KlingStatusTrigger

        return KlingStatusTrigger(
            kling_task_id=self.kling_task_id,
            deadline=deadline,
            poll_interval=self.poke_interval,
            kling_conn_id=self.kling_conn_id,
            generation_mode=self.generation_mode.value if self.generation_mode else None,
            **trigger_ending(self, ti, log),
        )

    def _start_in_triggerer(self, kling_task_id: str) -> None:
        """Have the scheduler hand the wait straight to the triggerer, where Airflow renders templated
        trigger arguments there (3.3+); elsewhere ``execute`` defers from a worker, as before."""
        from airflow.triggers.base import BaseTrigger

        if not hasattr(BaseTrigger, "render_template_fields"):
            return
        if "xcom_pull" in kling_task_id and "map_indexes" not in kling_task_id:
            raise ValueError(
                "kling_task_id with start_from_trigger=True: an xcom_pull rendered in the triggerer must "
                "name map_indexes (e.g. map_indexes=-1), since Airflow's triggerer does not answer a read "
                f"of all map indexes and the wait would hang; got {kling_task_id!r}"
            )
        self.start_from_trigger = True

    def _start_trigger_args(self) -> StartTriggerArgs | None:
        """The trigger the scheduler starts the sensor with. Made when asked, which Airflow does as it
        serializes the DAG, once the DAG is whole: whether the task may end in the triggerer depends
        on its downstream tasks too."""
        if not self.start_from_trigger:
            return None
        from airflow.triggers.base import StartTriggerArgs

        # No deadline of the trigger's own: none is known before the task starts, so Airflow's
        # trigger timeout (the sensor's) bounds the wait, and the worker resumes to raise it.
        classpath, trigger_kwargs = self._trigger(deadline=None, ti=None).serialize()
        return StartTriggerArgs(
            trigger_cls=classpath,
            trigger_kwargs=trigger_kwargs,
            next_method="execute_complete",
            next_kwargs=None,
            timeout=timedelta(seconds=self.timeout),
        )

    start_trigger_args = _MadeWhenAsked(_start_trigger_args)

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            self._started = time.monotonic()
            return super().execute(context)
        trigger = self._trigger(time.time() + self.timeout, context["ti"], self.log)
        self.defer(trigger=trigger, method_name="execute_complete")

    def _time_left(self) -> float | None:
        """What is left of ``timeout`` since this execution began: a poke may not outlast it.

        (In reschedule mode that counts from the current try's start, which bounds it as well.)
        """
        started = getattr(self, "_started", None)
        return None if started is None else self.timeout - (time.monotonic() - started)

    def poke(self, context: Context) -> PokeReturnValue | bool:
        try:
            status = self.hook.get_status(
                self.kling_task_id, timeout=self._time_left(), generation_mode=self.generation_mode
            )
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

    def execute_complete(self, context: Context, event: Any) -> Any:
        try:
            if event == TASK_ENDED_EVENT:  # the trigger ended the task, and dag.test() resumed it
                status = self.hook.get_status(self.kling_task_id, generation_mode=self.generation_mode)
                return self._video(status.as_dict())
            return self._video(result_from_event(event))
        except KlingWaitTimeoutError as timeout:
            raise AirflowSensorTimeout(str(timeout)) from timeout
        except KlingError as error:
            raise AirflowFailException(str(error)) from error
