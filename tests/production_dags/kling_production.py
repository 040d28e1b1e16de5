"""The production-shaped deployment's DAGs (tests/test_production.py): deferrable generations in bulk."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import DAG

from airflow_provider_kling.operators.kling import KlingGenerateOperator

COMMON = {
    "schedule": None,
    "start_date": pendulum.datetime(2026, 1, 1, tz="UTC"),
    "catchup": False,
    "max_active_tasks": 64,
    "tags": ["kling", "production"],
}


def generations(dag_id: str, count: int, **operator: object) -> None:
    """``count`` mapped deferrable generations, prompts named after the DAG so jobs can be told apart."""
    with DAG(dag_id=dag_id, **COMMON):
        KlingGenerateOperator.partial(
            task_id="generate", deferrable=True, poll_interval=2, **operator
        ).expand(prompt=[f"{dag_id} clip {index}: a lighthouse at dusk" for index in range(count)])


# Submits under a pool of 6 (deferred waits hold no slot), waits spread over both triggerers.
generations("kling_bulk", 20, pool="kling_bulk", retries=0)
generations("kling_failover", 20, retries=0)
# A worker killed mid-submit: the retry reattaches, or fails as an unconfirmed submit.
generations("kling_worker_kill", 8, retries=2, retry_delay=timedelta(seconds=2))

# Twelve generations of 55 credits claim at once, on both workers, under a run limit of 300 credits
# set for the whole DAG: five fit (275 credits), seven are refused before sending. The claims are what
# is shown, so the tasks end once their job exists.
with DAG(dag_id="kling_budget", default_args={"run_credit_limit": 300, "retries": 0}, **COMMON):
    KlingGenerateOperator.partial(task_id="generate", wait_for_completion=False).expand(
        prompt=[f"kling_budget clip {index}: a lighthouse at dusk" for index in range(12)]
    )
