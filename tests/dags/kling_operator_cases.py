"""Small DAGs, one behaviour each, that the operator tests run with dag.test() against the emulator.

Polling is fast (0.2 s) and the emulator's jobs take 1-1.5 s, so each DAG finishes in seconds.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG
from hook_setup import release_the_held_job

from airflow_provider_kling.operators.kling import KlingGenerateOperator
from airflow_provider_kling.sensors.kling import KlingStatusSensor

FAST = {"poll_interval": 0.2, "retry_delay": timedelta(0)}


def case(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)


for mode, deferrable in (("deferrable", True), ("blocking", False)):
    with case(f"case_{mode}_generate"):
        KlingGenerateOperator(task_id="generate", prompt="a fox", deferrable=deferrable, **FAST)

    # The test holds the job running: the first try's wait ends at its 5 s deadline, and the job is
    # let go only then. (With a 0.5 s deadline and no hold, a loaded machine's retries spent theirs
    # before their first read.)
    with case(f"case_{mode}_retry_after_timeout"):
        KlingGenerateOperator(
            task_id="generate", prompt="a fox", deferrable=deferrable, timeout=5, retries=3,
            on_retry_callback=release_the_held_job, **FAST,
        )  # fmt: skip

with case("case_invalid_request"):
    KlingGenerateOperator(task_id="generate", prompt="x" * 2001, duration=7, retries=2, **FAST)

with case("case_wrong_key"):
    KlingGenerateOperator(
        task_id="generate", prompt="a fox", kling_conn_id="kling_wrong_key", retries=2, **FAST
    )

with case("case_job_fails"):
    KlingGenerateOperator(task_id="generate", prompt="a doomed fox", deferrable=True, **FAST)

with case("case_unconfirmed_submit_fails"):
    KlingGenerateOperator(task_id="generate", prompt="a lost fox", retries=2, **FAST)

with case("case_unconfirmed_submit_resubmits"):
    KlingGenerateOperator(
        task_id="generate", prompt="a lost fox", retries=2, on_unconfirmed_submit="resubmit", **FAST
    )

with case("case_submit_only"):
    KlingGenerateOperator(task_id="submit", prompt="a fox", wait_for_completion=False, **FAST)

for mode in ("poke", "reschedule", "deferrable"):
    with case(f"case_sensor_{mode}"):
        submitted = KlingGenerateOperator(task_id="submit", prompt="a fox", wait_for_completion=False)
        submitted >> KlingStatusSensor(
            task_id="wait",
            kling_task_id="{{ ti.xcom_pull(task_ids='submit', key='task_id') }}",
            mode="reschedule" if mode == "reschedule" else "poke",
            deferrable=mode == "deferrable",
            poke_interval=0.2,
            timeout=60,
        )
