"""The real-triggerer benchmark's DAG: N generations mapped over literal prompts, and a loop-lag probe.

benchmarks/real_triggerer.py sets N in the environment (``KLING_BENCH_WAITS``), which `airflow dags
reserialize` and the triggerer inherit. No task of it ever runs on a worker: the benchmark creates
one run of this DAG with Airflow's own ``trigger_dag`` (which expands the mapped task into N task
instances) and then puts each task instance into the deferred state as a deferring
``KlingGenerateOperator`` does. The triggerer reads the run and this DAG's serialized form when it
builds each trigger's workload. ``lag_probe`` carries the benchmark's loop-lag probe trigger.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator

WAITS = int(os.environ.get("KLING_BENCH_WAITS", "20"))

with DAG(
    dag_id="kling_real_triggerer",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_tasks=max(16, WAITS),
    tags=["kling", "benchmark"],
):
    KlingGenerateOperator.partial(task_id="generate", retries=0).expand(
        prompt=[f"real triggerer benchmark clip {i}" for i in range(WAITS)]
    )

    @task
    def lag_probe() -> None:
        """Never run: the benchmark defers this task instance onto its loop-lag probe trigger."""

    lag_probe()
