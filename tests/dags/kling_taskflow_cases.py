"""Small TaskFlow DAGs, one behaviour each, for tests/test_decorator.py: ``@task.kling`` run with
dag.test() against the emulator (jobs of 1-1.5 s, polled every 0.2 s)."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, task
from hook_setup import release_the_held_job

FAST: dict[str, Any] = {"poll_interval": 0.2, "retry_delay": timedelta(0)}
#: A new number on every call of a function below: what a function that asks a language model for
#: its prompt looks like to the provider.
takes = itertools.count(1)


def case(dag_id: str) -> DAG:
    return DAG(dag_id, schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)


for mode, deferrable in (("deferrable", True), ("blocking", False)):
    with case(f"taskflow_{mode}_prompt"):

        @task.kling(deferrable=deferrable, **FAST)
        def clip(subject: str) -> str:
            return f"a {subject} in the snow"

        clip("fox")

with case("taskflow_fields"):

    @task.kling(duration=5, **FAST)
    def fields_clip() -> dict[str, Any]:
        return {"prompt": "a heron", "duration": 10, "sound": True, "aspect_ratio": "9:16"}

    fields_clip()

with case("taskflow_invalid_return"):

    @task.kling(retries=2, **FAST)
    def invalid_clip() -> dict[str, Any]:
        return {"prompt": "x" * 2001, "duration": 7, "style": "noir"}

    invalid_clip()

with case("taskflow_not_a_request"):

    @task.kling(retries=2, **FAST)
    def number_clip() -> int:
        return 42

    number_clip()

for mode, deferrable in (("deferrable", True), ("blocking", False)):
    # The test holds the job running: the first try's wait ends at its 5 s deadline, and the job is
    # let go only then; the function would write another prompt for the retry.
    with case(f"taskflow_{mode}_retry_after_timeout"):

        @task.kling(
            deferrable=deferrable, timeout=5, retries=3, on_retry_callback=release_the_held_job, **FAST
        )
        def new_prompt_each_call() -> str:
            return f"a fox, take {next(takes)}"

        new_prompt_each_call()
