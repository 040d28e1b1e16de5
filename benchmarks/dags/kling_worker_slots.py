"""The worker-slot benchmark's DAGs: the same mapped generations, deferrable and not; sensors
waiting on known jobs; a trivial task as the baseline; and a warm-up.

benchmarks/worker_slots.py sets the sizes in the environment, which the
dag-processor and every task process inherit. The mapped lists are then literals, so no upstream
task takes a worker slot, and both generation DAGs ask for exactly the same prompts. The sensors
are one task each (Airflow starts no mapped task in the triggerer), reading their job's task_id
from the run's conf.
"""

from __future__ import annotations

import os
import time

import pendulum
from airflow.sdk import DAG, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor

GENERATIONS = int(os.environ.get("KLING_BENCH_GENERATIONS", "8"))
SLOTS = int(os.environ.get("KLING_BENCH_SLOTS", "4"))
PROMPTS = [f"worker-slot benchmark clip {i}: a paper boat on a rainy street" for i in range(GENERATIONS)]
COMMON = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "is_paused_upon_creation": False,  # the benchmark only triggers
    "max_active_tasks": max(16, GENERATIONS),  # the executor's slots are the limit being measured
    "tags": ["kling", "benchmark"],
}

for mode, deferrable in (("deferrable", True), ("non_deferrable", False)):
    with DAG(dag_id=f"kling_worker_slots_{mode}", **COMMON):
        KlingGenerateOperator.partial(
            task_id="generate",
            deferrable=deferrable,
            retries=0,  # a failure shows as one, not as a retry's second job
        ).expand(prompt=PROMPTS)

with DAG(dag_id="kling_worker_slots_sensor", **COMMON):
    for index in range(GENERATIONS):
        KlingStatusSensor(
            task_id=f"sense_{index}",
            kling_task_id=f"{{{{ dag_run.conf['task_ids'][{index}] }}}}",
            deferrable=True,
            start_from_trigger=True,
            retries=0,
        )

with DAG(dag_id="kling_worker_slots_baseline", **COMMON):

    @task
    def baseline(index: int) -> int:
        """Return at once: what a task start costs a worker slot, with no work of its own."""
        return index

    baseline.expand(index=list(range(GENERATIONS)))

with DAG(dag_id="kling_worker_slots_warm_up", **COMMON):

    @task
    def warm_up(index: int) -> None:
        """Occupy one worker for a second, so that every idle worker takes exactly one of these."""
        time.sleep(1)

    warm_up.expand(index=list(range(SLOTS)))
