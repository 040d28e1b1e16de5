"""DAGs for tests/test_task_end_differential.py: each case twice, its Kling wait ending once where the
triggerer may end it (``<case>_triggerer``: deferrable) and once on a worker (``<case>_worker``: not
deferrable, or a sensor poking), so that everything else those runs leave behind can be compared.

Callbacks write what they saw to ``$KLING_TASK_END_RECORDS/callbacks.jsonl``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pendulum
from airflow.sdk import DAG, Asset, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor

WHERE = ("triggerer", "worker")
#: The connection to the emulator the test starts for these DAGs.
CONN_ID = "kling_task_end"
#: The vendor task_id the sensor cases wait on, read in the triggerer: it must name its map index.
SUBMITTED = "{{ ti.xcom_pull(task_ids='submit', key='task_id', map_indexes=-1) }}"


def record(what: str, entry: dict[str, Any]) -> None:
    """Append ``entry`` to the records file ``what``, for the test to read."""
    folder = Path(os.environ["KLING_TASK_END_RECORDS"])
    with (folder / f"{what}.jsonl").open("a") as records:
        records.write(json.dumps(entry) + "\n")


def on_success(context: Any) -> None:
    ti = context["ti"]
    returned = ti.xcom_pull(task_ids=ti.task_id, map_indexes=ti.map_index)
    record(
        "callbacks",
        {
            "dag_id": ti.dag_id,
            "task_id": ti.task_id,
            "map_index": ti.map_index,
            "result_keys": sorted(returned) if isinstance(returned, dict) else repr(returned),
        },
    )


@task
def publish(video_url: Any) -> Any:
    return video_url


@task
def each(item: Any) -> Any:
    return item


def video_url_of(result: Any) -> Any:
    return result["video_url"]


def generation(where: str, **settings: Any) -> Any:
    """A generation ending where ``where`` says; ``.partial`` when ``settings`` map it."""
    wait = {"deferrable": where == "triggerer", "poll_interval": 0.5, "kling_conn_id": CONN_ID}
    if "prompts" in settings:
        prompts = settings.pop("prompts")
        return KlingGenerateOperator.partial(task_id="generate", **wait, **settings).expand(prompt=prompts)
    return KlingGenerateOperator(task_id="generate", prompt="a fox in the snow", **wait, **settings)


def sensor(where: str, **settings: Any) -> Any:
    """A sensor on a job submitted upstream: started in the triggerer, or poking on a worker."""
    submit = KlingGenerateOperator(
        task_id="submit", prompt="a fox in the snow", wait_for_completion=False, kling_conn_id=CONN_ID
    )
    if where == "triggerer":
        mode: dict[str, Any] = {"deferrable": True, "start_from_trigger": True}
    else:
        mode = {"deferrable": False, "mode": "poke"}
    waiting = KlingStatusSensor(
        task_id="wait",
        kling_task_id=SUBMITTED,
        kling_conn_id=CONN_ID,
        poke_interval=0.5,
        timeout=300,
        **mode,
        **settings,
    )
    submit >> waiting
    return waiting


def multiple_outputs(where: str) -> None:
    publish(generation(where, multiple_outputs=True).output["video_url"])


def key_access(where: str) -> None:
    """The result's video_url read by key where a template renders (a worker, downstream)."""
    generation(where) >> publish("{{ ti.xcom_pull(task_ids='generate')['video_url'] }}")


def expand(where: str) -> None:
    each.expand(item=generation(where).output)


def map_result(where: str) -> None:
    each.expand(item=generation(where, prompts=["a fox", "an owl"]).output.map(video_url_of))


def mapped_generations(where: str) -> None:
    each.expand(item=generation(where, prompts=["a fox", "an owl"]).output)


def labelled_generations(where: str) -> None:
    generation(where, prompts=["a fox", "an owl"], map_index_template="{{ task.prompt }}")


def callback(where: str) -> None:
    generation(where, on_success_callback=on_success)


def outlets(where: str) -> None:
    generation(where, outlets=[Asset("kling://task-end/outlets")])


def sensor_multiple_outputs(where: str) -> None:
    publish(sensor(where, multiple_outputs=True).output["video_url"])


def sensor_expand(where: str) -> None:
    each.expand(item=sensor(where).output)


def plain(where: str) -> None:
    """For the deployment with a listener plugin (every task's success is recorded)."""
    generation(where)


CASES = {
    build.__name__: build
    for build in (
        multiple_outputs,
        key_access,
        expand,
        map_result,
        mapped_generations,
        labelled_generations,
        callback,
        outlets,
        sensor_multiple_outputs,
        sensor_expand,
        plain,
    )
}

for name, build in CASES.items():
    for where in WHERE:
        with DAG(
            f"{name}_{where}",
            schedule=None,
            start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
            catchup=False,
            tags=["kling-task-end"],
        ):
            build(where)
