"""TaskFlow: ``@task.kling`` turns a function that writes a prompt into a Kling clip, mapped here
over the day's subjects, and a downstream task receives every clip.

Needs a ``kling_default`` connection (host = base URL, password = API key), or the bundled
emulator: see the README.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
    params={"subjects": ["a red fox", "a snowy owl", "a mountain hare"]},
)
def kling_taskflow() -> None:
    @task
    def subjects(params: dict | None = None) -> list[str]:
        return list(params["subjects"]) if params else []

    # The decorator takes KlingGenerateOperator's arguments; the function returns the prompt (or a
    # dict of request fields) and runs when the task starts.
    @task.kling(duration=5, deferrable=True, retries=2, max_credits=200)
    def clip(subject: str) -> str:
        return f"{subject} in fresh snow at sunrise, cinematic, slow motion"

    @task
    def publish(videos: list[dict]) -> list[str]:
        for video in videos:
            print(f"New clip {video['task_id']}: {video['video_url']}")
        return [video["video_url"] for video in videos]

    publish(clip.expand(subject=subjects()))


kling_taskflow()
