"""The shared real Airflow's DAGs on Kling's own API (tests/test_end_to_end.py), through the
connection kling_klingai, to an emulator of its own speaking that API."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG

from airflow_provider_kling.operators.kling import KlingGenerateOperator

with DAG(
    "klingai_text_to_video",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "klingai"],
):
    # As the text-to-video example, on Kling's own API: pro mode, so that its charge is 2.5 units.
    KlingGenerateOperator(
        task_id="generate_clip",
        prompt="A red fox trotting through fresh snow at sunrise, cinematic",
        mode="pro",
        kling_conn_id="kling_klingai",
        deferrable=True,
        retries=2,
    )
