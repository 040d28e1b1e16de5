"""Keep the videos: download each one to object storage, and let another DAG run on new videos.

``output_path`` takes any ObjectStoragePath URL (``file://``, ``s3://``, ``gs://``...). The
operator writes the file atomically and announces it as an Asset event through the
``kling_videos`` AssetAlias, with the job's facts (task_id, duration, has_audio, credits_used,
bytes, sha256) in the event's extra. ``kling_publish_new_videos`` is scheduled on that alias.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import AssetAlias, dag, task

from airflow_provider_kling.operators.kling import KlingGenerateOperator

VIDEOS = AssetAlias("kling_videos")


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
    params={"video_dir": "/tmp/kling-videos"},
)
def kling_keep_videos() -> None:
    KlingGenerateOperator(
        task_id="generate_and_keep",
        prompt="Paper boats drifting down a rainy street gutter, macro lens",
        output_path="file://{{ params.video_dir }}/{{ ds }}/{{ ts_nodash }}.mp4",
        outlets=[VIDEOS],
        deferrable=True,
        retries=2,  # a failed download is retried on the same job: it never generates twice
    )


@dag(
    schedule=[VIDEOS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["kling", "example"],
)
def kling_publish_new_videos() -> None:
    @task
    def publish(triggering_asset_events: dict | None = None) -> list[str]:
        published = []
        for asset, events in (triggering_asset_events or {}).items():
            for event in events:
                facts = event.extra
                print(f"New video {asset.uri}: {facts.get('duration')} s, sha256 {facts.get('sha256')}")
                published.append(asset.uri)
        return published

    publish()


kling_keep_videos()
kling_publish_new_videos()
