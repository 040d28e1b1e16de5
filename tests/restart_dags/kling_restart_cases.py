"""DAGs for tests/test_restarts.py: jobs take 10-15 s there, time enough to kill things and to
watch where each step runs."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor


def case(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)


# The restarts of each API: UlazAI's through kling_default, Kling's own through kling_klingai (its
# DAG ids end in _klingai), each with an emulator of its own.
for suffix, conn_id in (("", "kling_default"), ("_klingai", "kling_klingai")):
    # Each case's task "generate": polling every second, through its API's connection.
    generate = {"task_id": "generate", "poll_interval": 1, "kling_conn_id": conn_id}

    with case(f"restart_deferred{suffix}"):
        KlingGenerateOperator.partial(**generate, deferrable=True).expand(
            prompt=[f"triggerer restart {n}" for n in range(3)]
        )

    with case(f"restart_deadline{suffix}"):
        # The job takes 10-15 s; the wait gives up 6 s after deferring, whatever happens to the triggerer.
        KlingGenerateOperator(
            **generate,
            prompt="deadline",
            deferrable=True,
            timeout=6,
        )

    with case(f"restart_worker{suffix}"):
        KlingGenerateOperator(
            **generate,
            prompt="worker killed",
            deferrable=False,
            retries=1,
            retry_delay=timedelta(seconds=1),
        )

    with case(f"restart_emulator{suffix}"):
        KlingGenerateOperator(
            **generate,
            prompt="emulator restart",
            deferrable=True,
        )

    with case(f"one_task_start{suffix}"):
        KlingGenerateOperator(
            **generate,
            prompt="one task start",
            deferrable=True,
        )

    with case(f"resume_on_worker{suffix}"):
        # The wait's 8 s end before the 10-15 s job: the timeout resumes the task on a worker, which
        # raises; the retry reattaches to the job and waits again, and its ready video ends it.
        KlingGenerateOperator(
            **generate,
            prompt="timeout then retry",
            deferrable=True,
            timeout=8,
            retries=2,
            retry_delay=timedelta(seconds=1),
        )

    with case(f"kill_deferred{suffix}"):
        KlingGenerateOperator(
            **generate,
            prompt="marked failed",
            deferrable=True,
        )

    with case(f"submit_then_sense{suffix}"):
        submit = KlingGenerateOperator(
            task_id="submit", prompt="sensed", wait_for_completion=False, kling_conn_id=conn_id
        )
        KlingStatusSensor(
            task_id="wait",
            kling_task_id="{{ ti.xcom_pull(task_ids='submit', key='task_id', map_indexes=-1) }}",
            kling_conn_id=conn_id,
            generation_mode="text_to_video",
            deferrable=True,
            start_from_trigger=True,
            poke_interval=1,
        ).set_upstream(submit)

    with case(f"taskflow_retry{suffix}"):
        # Each try's wait ends 8 s after it defers, and the jobs are held until both have retried: each
        # retry reattaches to its map index's job, and the triggerer ends it once the video is ready.
        @task.kling(
            deferrable=True,
            poll_interval=1,
            timeout=8,
            retries=3,
            retry_delay=timedelta(seconds=1),
            kling_conn_id=conn_id,
        )
        def taskflow_clip(subject: str) -> str:
            return f"taskflow {subject} {uuid.uuid4().hex}"  # a new prompt on every call

        @task
        def collect(results: list[dict[str, Any]]) -> list[str]:
            return [result["task_id"] for result in results]

        collect(taskflow_clip.expand(subject=["fox", "owl"]))
