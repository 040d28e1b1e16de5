"""Text to video: one prompt becomes one Kling clip, then a downstream step uses the video's URL.

Needs a ``kling_default`` connection (host = base URL, password = API key), or the bundled
emulator: see the README.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
    params={"prompt": "A red fox trotting through fresh snow at sunrise, cinematic, slow motion"},
)
def kling_text_to_video() -> None:
    clip = KlingGenerateOperator(
        task_id="generate_clip",
        prompt="{{ params.prompt }}",
        duration=5,
        aspect_ratio="16:9",
        sound=False,
        prompt_directory_optin=False,  # the default: the prompt stays private (True: public, 10 credits off)
        deferrable=True,  # wait in the triggerer, holding no worker slot for the 60-90 s
        retries=2,  # a retry reattaches to the job already paid for, it never submits twice
    )

    @task
    def publish(video: dict) -> str:
        print(f"New clip {video['task_id']}: {video['video_url']} ({video['duration']} s)")
        return video["video_url"]

    publish(clip.output)


kling_text_to_video()
