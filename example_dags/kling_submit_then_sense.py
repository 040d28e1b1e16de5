"""Submit now, wait elsewhere: the operator only submits, a sensor waits on the task_id it pushed.

Useful when the waiting belongs to another team's DAG, or when several steps run between
submitting and needing the video. The sensor starts and ends in the triggerer: waiting costs no
worker start.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
)
def kling_submit_then_sense() -> None:
    submit = KlingGenerateOperator(
        task_id="submit",
        prompt="Waves rolling onto a black sand beach, aerial shot",
        wait_for_completion=False,  # returns (and pushes to XCom) the vendor task_id at once
    )
    wait = KlingStatusSensor(
        task_id="wait_for_video",
        # map_indexes=-1: one XCom read, which the triggerer answers (it leaves a read of every map
        # index unanswered), so the sensor can start there.
        kling_task_id="{{ ti.xcom_pull(task_ids='submit', key='task_id', map_indexes=-1) }}",
        deferrable=True,
        start_from_trigger=True,  # Airflow 3.3+: no worker start at all; older ones start on a worker
        poke_interval=10,
        timeout=30 * 60,
    )
    submit >> wait


kling_submit_then_sense()
