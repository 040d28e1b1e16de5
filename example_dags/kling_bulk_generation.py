"""Bulk generation: one mapped task per prompt, with a pool capping the videos in flight.

Create the pool once, counting deferred tasks::

    airflow pools set kling_generations 4 "Kling videos in flight" --include-deferred

``--include-deferred`` matters: a generating video is a *deferred* task (it waits in the
triggerer), so a pool that did not count deferred tasks would cap only the few seconds of
submitting and let every prompt into the vendor's queue at once. Counting them caps what
matters: jobs running (and credits committed) at the vendor at any one time.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator

POOL = "kling_generations"


@dag(
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
)
def kling_bulk_generation() -> None:
    @task
    def todays_prompts(ds: str | None = None) -> list[str]:
        # In a real pipeline: rows from a table, a CMS export, an LLM's output...
        subjects = ["a lighthouse in a storm", "a koi pond in autumn", "a night market in the rain"]
        return [f"{subject}, cinematic, {ds}" for subject in subjects]

    videos = KlingGenerateOperator.partial(
        task_id="generate",
        pool=POOL,
        duration=5,
        aspect_ratio="9:16",
        deferrable=True,
        retries=2,
    ).expand(prompt=todays_prompts())

    @task
    def report(results: list[dict]) -> int:
        for video in results:
            print(f"{video['task_id']}: {video['video_url']}")
        return len(results)

    report(videos.output)


kling_bulk_generation()
