"""Image to video: animate one still image; the mode is inferred from the image URL."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from airflow_provider_kling.operators.kling import KlingGenerateOperator


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
    params={
        "image_url": "https://example.com/images/dog.jpg",
        "prompt": "The dog turns its head towards the camera and wags its tail",
    },
)
def kling_image_to_video() -> None:
    KlingGenerateOperator(
        task_id="animate_image",
        prompt="{{ params.prompt }}",
        image_urls=["{{ params.image_url }}"],
        duration=10,  # 110 credits on UlazAI's API, 3 units on Kling's own
        # sound=True adds native audio: twice the price on UlazAI's API; on Kling's own API it needs
        # mode="pro" (a field UlazAI's API refuses), 10 units for 10 s.
        deferrable=True,
        retries=2,
    )


kling_image_to_video()
