"""Where a deferrable wait ends, and where a deferrable sensor starts: in the triggerer, when nothing
is left for a worker to do.

A deferrable generation without ``output_path`` ends in the triggerer with Airflow's task-end event,
carrying the XComs a worker would have pushed; every other ending resumes the task on a worker. A
deferrable sensor starts in the triggerer where Airflow renders templated trigger arguments there.
These drive the operator, sensor and trigger directly against the emulator; test_end_to_end.py and
test_restarts.py show the same on a real Airflow, counting the task processes.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import TaskDeferred
from airflow.sdk import DAG, Asset
from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent
from hook_setup import connect, quick_hook
from task_context import FakeStore, context_with, logged

from airflow_provider_kling.core.waiting import TASK_ENDED_EVENT
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor
from airflow_provider_kling.task_end import left_for_worker
from airflow_provider_kling.triggers.kling import KlingStatusTrigger

#: Airflow renders a trigger's templated arguments in the triggerer from 3.3 on.
RENDERS_IN_TRIGGERER = hasattr(BaseTrigger, "render_template_fields")
LINK_KEY = "_link_KlingVideoLink"


def generation(**kwargs: Any) -> KlingGenerateOperator:
    operator = KlingGenerateOperator(
        task_id="generate", prompt="a fox", deferrable=True, poll_interval=0.1, **kwargs
    )
    operator.hook = quick_hook()
    return operator


def deferral(operator: KlingGenerateOperator, context: Any) -> tuple[KlingStatusTrigger, dict[str, Any]]:
    """The trigger ``operator`` defers to (with a quick hook) and the kwargs it resumes with."""
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute(context)
    trigger = deferred.value.trigger
    assert isinstance(trigger, KlingStatusTrigger)
    trigger.hook = quick_hook()
    return trigger, dict(deferred.value.kwargs or {})


def events_of(trigger: KlingStatusTrigger) -> list[TriggerEvent]:
    """Drive the trigger as the triggerer does, collecting every event it yields."""

    async def collect() -> list[TriggerEvent]:
        return [event async for event in trigger.run()]

    return asyncio.run(collect())


def recreated(trigger: KlingStatusTrigger, **changes: Any) -> KlingStatusTrigger:
    """The trigger as the triggerer rebuilds it from its kwargs, with ``changes``."""
    _, kwargs = trigger.serialize()
    copy = KlingStatusTrigger(**(kwargs | changes))
    copy.hook = quick_hook()
    return copy


@pytest.fixture
def pushed(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The XComs pushed through the Task SDK's comms (as the triggerer's runner carries them), by key,
    in the order they were pushed."""
    from airflow.sdk.execution_time import task_runner

    received: dict[str, Any] = {}

    def send(message: Any) -> None:
        assert (message.dag_id, message.run_id, message.task_id, message.map_index) == (
            "d",
            "r",
            "generate",
            3,
        )
        received[message.key] = message.value

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=send), raising=False)
    return received


def in_triggerer(trigger: KlingStatusTrigger) -> KlingStatusTrigger:
    """``trigger`` with the task instance the triggerer gives it."""
    trigger.task_instance = SimpleNamespace(dag_id="d", run_id="r", task_id="generate", map_index=3)  # type: ignore[assignment]
    return trigger


def test_a_ready_video_ends_the_generation_in_the_triggerer_with_what_the_worker_would_push(
    emulator: KlingEmulator, pushed: dict[str, Any]
) -> None:
    operator, context = generation(), context_with(FakeStore())
    trigger, resume_kwargs = deferral(operator, context)
    [ended] = events_of(in_triggerer(trigger))
    # What the worker resumed with the plain event would return: the same job, read the same way.
    [plain] = events_of(recreated(trigger, end_from_trigger=False))
    returned = operator.execute_complete(context, plain.payload, **resume_kwargs)

    assert isinstance(ended, TaskSuccessEvent)
    assert pushed == {"return_value": returned, LINK_KEY: returned["video_url"]}
    assert list(pushed) == ["return_value", LINK_KEY]  # the order a worker's end pushes them in
    assert returned["credits_used"] is not None and returned["video_url"].startswith("http")
    assert emulator.stats()["jobs_created"] == 1


def test_nothing_rides_among_the_end_events_xcoms(emulator: KlingEmulator, pushed: dict[str, Any]) -> None:
    # Airflow stores an end event's XComs JSON-encoded twice: downstream tasks would read a string.
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    [ended] = events_of(in_triggerer(trigger))
    assert isinstance(ended, TaskSuccessEvent) and not ended.xcoms


def test_with_multiple_outputs_the_trigger_pushes_each_key_then_the_result(
    emulator: KlingEmulator, pushed: dict[str, Any]
) -> None:
    trigger, _ = deferral(generation(multiple_outputs=True), context_with(FakeStore()))
    assert trigger.end_from_trigger is True
    [ended] = events_of(in_triggerer(trigger))
    result = pushed["return_value"]
    assert isinstance(ended, TaskSuccessEvent)
    assert list(pushed) == [*result, "return_value", LINK_KEY]
    assert {key: pushed[key] for key in result} == result


def refusing(monkeypatch: pytest.MonkeyPatch, key: str, status_code: int) -> dict[str, Any]:
    """As ``pushed``, but the API server refuses the push of ``key`` with ``status_code``."""
    from airflow.sdk.exceptions import AirflowRuntimeError, ErrorType
    from airflow.sdk.execution_time import task_runner
    from airflow.sdk.execution_time.comms import ErrorResponse

    received: dict[str, Any] = {}

    def send(message: Any) -> None:
        if message.key == key:
            detail = {"status_code": status_code, "message": "Server returned error"}
            raise AirflowRuntimeError(ErrorResponse(error=ErrorType.API_SERVER_ERROR, detail=detail))
        received[message.key] = message.value

    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", SimpleNamespace(send=send), raising=False)
    return received


def test_a_result_another_run_of_the_wait_pushed_first_still_ends_the_task(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two triggerers run the wait when one missed its heartbeat: the second insert is refused (409).
    pushed = refusing(monkeypatch, "return_value", 409)
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    [ended] = events_of(in_triggerer(trigger))
    assert isinstance(ended, TaskSuccessEvent)
    assert list(pushed) == [LINK_KEY]


def test_a_push_refused_for_another_reason_fails_the_trigger(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk.exceptions import AirflowRuntimeError

    refusing(monkeypatch, "return_value", 500)
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    with pytest.raises(AirflowRuntimeError, match="500"):
        events_of(in_triggerer(trigger))


def test_a_generation_marked_as_its_dags_result_resumes_on_a_worker() -> None:
    generate = generation()
    generate.returns_dag_result = True  # as TaskFlow's returns_dag_result=True sets it
    assert left_for_worker(generate, mapped=False) == [
        "the result marked as the DAG's result (returns_dag_result)"
    ]


def test_a_generation_whose_result_a_downstream_task_maps_over_resumes_on_a_worker(
    emulator: KlingEmulator,
) -> None:
    # The worker records how many items the downstream task maps over (its task map).
    with DAG("mapped_downstream", schedule=None):
        generate = generation()
        KlingStatusSensor.partial(task_id="each").expand(kling_task_id=generate.output)
    trigger, _ = deferral(generate, context_with(FakeStore()))
    assert trigger.end_from_trigger is False


def test_a_mapped_generation_with_a_mapped_downstream_task_ends_in_the_triggerer() -> None:
    # A mapped task's downstream maps over its map indexes: the worker records no task map for it.
    with DAG("mapped_both", schedule=None):
        generate = generation()
        KlingStatusSensor.partial(task_id="each").expand(kling_task_id=generate.output)
    assert left_for_worker(generate, mapped=True) == []
    assert left_for_worker(generate, mapped=False) == [
        "the task map that a downstream .expand() or .map() over the result reads"
    ]


@pytest.mark.skipif(not RENDERS_IN_TRIGGERER, reason="Airflow renders trigger templates from 3.3 on")
def test_a_sensor_started_in_the_triggerer_is_judged_once_its_dag_is_whole() -> None:
    with DAG("sensor_then_map", schedule=None):
        waiting = sensor()
        assert waiting.start_trigger_args is not None
        assert (waiting.start_trigger_args.trigger_kwargs or {})["end_from_trigger"] is True
        KlingStatusSensor.partial(task_id="each").expand(kling_task_id=waiting.output)
    assert (waiting.start_trigger_args.trigger_kwargs or {})["end_from_trigger"] is False


@pytest.mark.parametrize(
    "settings",
    [
        {"output_path": "file:///tmp/kling-task-end/fox.mp4"},
        {"outlets": [Asset("s3://videos/fox.mp4")]},
        {"do_xcom_push": False},
        {"on_success_callback": lambda context: None},
        {"post_execute": lambda context, result: None},
        {"map_index_template": "{{ task.prompt }}"},
    ],
    ids=["output_path", "outlets", "no_xcom_push", "callback", "post_execute", "map_index_template"],
)
def test_a_generation_with_work_left_for_the_worker_resumes_there(
    emulator: KlingEmulator, settings: dict[str, Any]
) -> None:
    trigger, _ = deferral(generation(**settings), context_with(FakeStore()))
    assert trigger.end_from_trigger is False
    [event] = events_of(trigger)
    assert type(event) is TriggerEvent and event.payload["status"] == "success"


def test_a_failed_job_resumes_the_task_on_the_worker(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator_factory(job_failure_rate=1.0))
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    [event] = events_of(trigger)
    assert type(event) is TriggerEvent and event.payload["status"] == "failed"


def test_a_timeout_resumes_the_task_on_the_worker(emulator: KlingEmulator) -> None:
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    [event] = events_of(recreated(trigger, deadline=time.time() + 0.2))
    assert type(event) is TriggerEvent and event.payload["status"] == "timeout"


def test_a_task_resumed_after_its_trigger_ended_it_returns_the_same_result(emulator: KlingEmulator) -> None:
    # dag.test() resumes even a task whose trigger ended it, with the end event's state as the event.
    operator, context = generation(), context_with(FakeStore())
    trigger, resume_kwargs = deferral(operator, context)
    [plain] = events_of(recreated(trigger, end_from_trigger=False))
    assert operator.execute_complete(context, TASK_ENDED_EVENT, **resume_kwargs) == (
        operator.execute_complete(context, plain.payload, **resume_kwargs)
    )


def test_a_trigger_with_no_deadline_of_its_own_waits_for_the_video(emulator: KlingEmulator) -> None:
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    [event] = events_of(recreated(trigger, deadline=None, end_from_trigger=False))
    assert event.payload["status"] == "success"


def test_killing_the_deferred_task_warns_that_the_job_goes_on_and_is_charged(
    capfd: pytest.CaptureFixture[str],
) -> None:
    trigger = KlingStatusTrigger(kling_task_id="kling-123", deadline=time.time() + 60, credits_used=70)
    asyncio.run(trigger.on_kill())
    [line] = [line for line in logged(capfd).splitlines() if "warning" in line]
    assert "kling-123" in line and "70 credits" in line
    assert "keeps running at the vendor" in line and "no cancel call" in line


# -- the sensor's start ----------------------------------------------------------------------------

TEMPLATED_TASK_ID = "{{ dag_run.conf['kling_task_id'] }}"


def sensor(**kwargs: Any) -> KlingStatusSensor:
    settings = {
        "kling_task_id": TEMPLATED_TASK_ID,
        "deferrable": True,
        "start_from_trigger": True,
        "poke_interval": 5,
        "timeout": 600,
    }
    return KlingStatusSensor(task_id="wait", **(settings | kwargs))


@pytest.mark.skipif(not RENDERS_IN_TRIGGERER, reason="Airflow renders trigger templates from 3.3 on")
def test_a_sensor_told_to_start_from_the_trigger_starts_in_the_triggerer_and_ends_there() -> None:
    waiting = sensor()
    args = waiting.start_trigger_args
    assert waiting.start_from_trigger is True and args is not None
    assert args.trigger_cls == "airflow_provider_kling.triggers.kling.KlingStatusTrigger"
    assert (args.next_method, args.timeout) == ("execute_complete", timedelta(seconds=600))
    assert args.trigger_kwargs is not None
    assert args.trigger_kwargs | {"kling_task_id": TEMPLATED_TASK_ID} == args.trigger_kwargs
    assert (args.trigger_kwargs["poll_interval"], args.trigger_kwargs["deadline"]) == (5, None)
    assert args.trigger_kwargs["end_from_trigger"] is True


@pytest.mark.skipif(not RENDERS_IN_TRIGGERER, reason="Airflow renders trigger templates from 3.3 on")
def test_the_triggerer_renders_the_sensors_templated_task_id() -> None:
    waiting = sensor()
    assert waiting.start_trigger_args is not None
    trigger = KlingStatusTrigger(**(waiting.start_trigger_args.trigger_kwargs or {}))
    # What the triggerer does for a task started there: give the trigger its task, then render.
    trigger.task_instance = SimpleNamespace(task_id="wait", task=waiting)  # type: ignore[assignment]
    trigger.render_template_fields(context={"dag_run": SimpleNamespace(conf={"kling_task_id": "kling-9"})})  # type: ignore[arg-type]
    assert trigger.kling_task_id == "kling-9"


@pytest.mark.skipif(RENDERS_IN_TRIGGERER, reason="Airflow 3.3+ starts it in the triggerer")
def test_before_airflow_3_3_a_sensor_told_to_start_from_the_trigger_defers_from_a_worker() -> None:
    assert sensor().start_from_trigger is False


def test_a_deferrable_sensor_starts_on_a_worker_unless_told_otherwise() -> None:
    assert sensor(start_from_trigger=False).start_from_trigger is False


@pytest.mark.skipif(not RENDERS_IN_TRIGGERER, reason="Airflow renders trigger templates from 3.3 on")
def test_an_xcom_pull_of_every_map_index_is_refused_before_it_hangs_the_triggerer() -> None:
    template = "{{ ti.xcom_pull(task_ids='submit', key='task_id') }}"
    with pytest.raises(ValueError, match="map_indexes") as refused:
        sensor(kling_task_id=template)
    assert template in str(refused.value)
    one_index = "{{ ti.xcom_pull(task_ids='submit', key='task_id', map_indexes=-1) }}"
    assert sensor(kling_task_id=one_index).start_from_trigger is True


def test_a_sensor_waiting_on_an_upstream_output_defers_from_a_worker() -> None:
    with DAG("upstream_output", schedule=None):
        submit = KlingGenerateOperator(task_id="submit", prompt="a fox", wait_for_completion=False)
        waiting = KlingStatusSensor(
            task_id="wait", kling_task_id=submit.output, deferrable=True, start_from_trigger=True
        )
    assert waiting.start_from_trigger is False


@pytest.mark.parametrize("start_from_trigger", [True, False])
def test_a_dag_with_a_mapped_sensor_serializes(start_from_trigger: bool) -> None:
    # partial() reads the sensor class's start_trigger_args: None there, as BaseOperator's.
    try:
        from airflow.serialization.serialized_objects import DagSerialization as dags
    except ImportError:  # Airflow 3.1
        from airflow.serialization.serialized_objects import SerializedDAG as dags

    with DAG("mapped_sensor", schedule=None) as dag:
        KlingStatusSensor.partial(
            task_id="each", deferrable=True, start_from_trigger=start_from_trigger
        ).expand(kling_task_id=["kling-1", "kling-2"])
    [serialized] = dags.to_dict(dag)["dag"]["tasks"]
    assert "start_trigger_args" not in serialized["__var"]


@pytest.mark.parametrize("mode", ["poke", "reschedule"])
def test_a_sensor_that_is_not_deferrable_starts_on_a_worker(mode: str) -> None:
    assert sensor(deferrable=False, mode=mode).start_from_trigger is False


@pytest.fixture
def openlineage_listening() -> Any:
    """OpenLineage's listener registered with the task runner's listeners, as its plugin does when on."""
    from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

    try:
        from airflow.sdk.listener import get_listener_manager
    except ImportError:  # Airflow 3.1
        from airflow.listeners.listener import get_listener_manager  # type: ignore[no-redef]
    manager = get_listener_manager()
    listener = get_openlineage_listener()
    manager.add_listener(listener)
    yield listener
    manager.pm.unregister(listener)


def test_with_openlineage_on_a_generation_resumes_on_the_worker_to_report_its_lineage(
    emulator: KlingEmulator, openlineage_listening: Any
) -> None:
    trigger, _ = deferral(generation(), context_with(FakeStore()))
    assert trigger.end_from_trigger is False


def test_with_openlineage_on_a_sensor_resumes_on_the_worker(openlineage_listening: Any) -> None:
    assert left_for_worker(sensor(), mapped=False) == [
        "listeners told of the task's success (on_task_instance_success: OpenLineage and others)"
    ]
