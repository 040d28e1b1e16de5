"""The production-shaped deployment's DAGs (tests/test_production.py): deferrable generations in bulk.

Each DAG whose id ends in ``_klingai`` runs on Kling's own API (connection ``kling_klingai``), the
others on UlazAI's (``kling_default``): one deployment drives both APIs, one emulator each.
"""

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


#: The connection of each API's DAGs.
CONNECTIONS = {"ulazai": "kling_default", "klingai": "kling_klingai"}


def generations(dag_id: str, count: int, api: str = "ulazai", **operator: object) -> None:
    """``count`` mapped deferrable generations, prompts named after the DAG so jobs can be told apart."""
    with DAG(dag_id=dag_id, **COMMON):
        KlingGenerateOperator.partial(
            task_id="generate", deferrable=True, poll_interval=2, kling_conn_id=CONNECTIONS[api], **operator
        ).expand(prompt=[f"{dag_id} clip {index}: a lighthouse at dusk" for index in range(count)])


for api, suffix in (("ulazai", ""), ("klingai", "_klingai")):
    # Submits under a pool of 6 (deferred waits hold no slot), waits spread over both triggerers.
    generations(f"kling_bulk{suffix}", 20, api, pool="kling_bulk", retries=0)
    generations(f"kling_failover{suffix}", 20, api, retries=0)
    # A worker killed mid-submit: the retry reattaches, or on UlazAI fails as an unconfirmed submit.
    generations(f"kling_worker_kill{suffix}", 8, api, retries=2, retry_delay=timedelta(seconds=2))
# Every create's answer lost after the job was made: Kling's own API finds each job by its id.
generations("kling_lost_answers_klingai", 4, "klingai", retries=0)

# Twelve generations of 55 credits claim at once, on both workers, under a run limit of 300 credits
# set for the whole DAG: five fit (275 credits), seven are refused before sending. On Kling's own API
# the same in units: 1.5 each under 8. The claims are what is shown, so the tasks end once their job
# exists.
for api, suffix, limit in (("ulazai", "", 300), ("klingai", "_klingai", 8)):
    with DAG(
        dag_id=f"kling_budget{suffix}", default_args={"run_credit_limit": limit, "retries": 0}, **COMMON
    ):
        KlingGenerateOperator.partial(
            task_id="generate", wait_for_completion=False, kling_conn_id=CONNECTIONS[api]
        ).expand(prompt=[f"kling_budget{suffix} clip {index}: a lighthouse at dusk" for index in range(12)])
