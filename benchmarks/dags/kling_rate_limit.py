"""The rate-limit benchmark's DAGs: the same waits, one DAG a mode, each on a connection of its own.

benchmarks/rate_limit.py submits the jobs itself and passes their task_ids as the run's conf, so
only the waits (deferrable sensors polling every second) meet the account's limit.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_kling.sensors.kling import KlingStatusSensor

MODES = ("uncapped", "static_cap", "adaptive")

for mode in MODES:
    with DAG(
        dag_id=f"kling_rate_limit_{mode}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        is_paused_upon_creation=False,
        max_active_tasks=1000,
        tags=["kling", "benchmark"],
    ):

        @task
        def task_ids(**context: Any) -> list[str]:
            return list(context["dag_run"].conf["task_ids"])

        KlingStatusSensor.partial(
            task_id="wait", deferrable=True, poke_interval=1, timeout=900, kling_conn_id=f"kling_{mode}"
        ).expand(kling_task_id=task_ids())
