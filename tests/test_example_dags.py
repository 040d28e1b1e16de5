"""Every example DAG runs end to end with dag.test() against the emulator: one job per video."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from airflow.models.asset import AssetEvent, AssetModel
from airflow.utils.session import create_session
from airflow.utils.state import DagRunState
from dag_runs import HAS_TASK_STATE_STORE, DagBag, run_fast, xcoms
from hook_setup import both_apis
from sqlalchemy import select

from airflow_provider_kling.core.dialects.ulazai import PRICES
from airflow_provider_kling.emulator import KlingEmulator

pytestmark = [pytest.mark.usefixtures("airflow_db"), both_apis]


def image_sent(job: dict[str, Any]) -> list[str]:
    """The image URLs a job's submit body carried, in either API's names."""
    request = job["request"]
    return list(request["imageUrls"]) if "imageUrls" in request else [request["image"]]


def test_example_dags_import_without_errors(example_dagbag: DagBag) -> None:
    assert example_dagbag.import_errors == {}
    assert {
        "kling_text_to_video",
        "kling_image_to_video",
        "kling_bulk_generation",
        "kling_submit_then_sense",
        "kling_keep_videos",
        "kling_publish_new_videos",
        "kling_taskflow",
        "kling_review",  # run end to end on a real Airflow, its reviews answered (test_end_to_end.py)
    } <= set(example_dagbag.dag_ids)


def test_text_to_video_example_makes_one_video(
    example_dagbag: DagBag, emulator: KlingEmulator, api: str
) -> None:
    dag_run = run_fast(example_dagbag, "kling_text_to_video")
    assert dag_run.state == DagRunState.SUCCESS
    [task_id] = xcoms(dag_run, "generate_clip", key="task_id")
    [result] = xcoms(dag_run, "generate_clip")
    assert result["task_id"] == task_id and result["status"] in ("completed", "succeed")
    assert result["video_url"].endswith(f"{task_id}.mp4")
    if api == "ulazai":  # dag.test() drops a deferral's kwargs: UlazAI's credits come from task_state_store
        assert result["credits_used"] == (PRICES[("5", False)] if HAS_TASK_STATE_STORE else None)
    else:  # Kling's own API says the charge, in units, in the finished job's status
        assert result["credits_used"] == 1.5
    assert xcoms(dag_run, "publish") == [result["video_url"]]
    assert emulator.stats()["jobs_created"] == 1


def test_image_to_video_example_sends_the_image(example_dagbag: DagBag, emulator: KlingEmulator) -> None:
    dag_run = run_fast(example_dagbag, "kling_image_to_video")
    assert dag_run.state == DagRunState.SUCCESS
    [task_id] = xcoms(dag_run, "animate_image", key="task_id")
    [result] = xcoms(dag_run, "animate_image")
    assert result["task_id"] == task_id and result["duration"] == 10
    [job] = emulator.jobs()
    assert job["generation_mode"] == "image_to_video"
    assert image_sent(job) == ["https://example.com/images/dog.jpg"]


def test_bulk_example_makes_one_video_per_prompt(example_dagbag: DagBag, emulator: KlingEmulator) -> None:
    dag_run = run_fast(example_dagbag, "kling_bulk_generation")
    assert dag_run.state == DagRunState.SUCCESS
    task_ids = xcoms(dag_run, "generate", key="task_id")
    results = xcoms(dag_run, "generate")
    assert len(task_ids) == len(results) == 3
    assert [r["task_id"] for r in results] == task_ids
    assert xcoms(dag_run, "report") == [3]
    assert emulator.stats()["jobs_created"] == 3


def test_taskflow_example_makes_one_video_per_subject_for_the_downstream_task(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    dag_run = run_fast(example_dagbag, "kling_taskflow")
    assert dag_run.state == DagRunState.SUCCESS
    jobs = emulator.jobs()
    assert sorted(job["request"]["prompt"].split(" in fresh snow")[0] for job in jobs) == [
        "a mountain hare",
        "a red fox",
        "a snowy owl",
    ]
    [published] = xcoms(dag_run, "publish")
    videos = [f"{emulator.base_url}/_emulator/videos/{job['task_id']}.mp4" for job in jobs]
    assert sorted(published) == sorted(videos)


def test_submit_then_sense_example_waits_on_the_pushed_task_id(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    dag_run = run_fast(example_dagbag, "kling_submit_then_sense")
    assert dag_run.state == DagRunState.SUCCESS
    [task_id] = xcoms(dag_run, "submit")
    assert xcoms(dag_run, "submit", key="task_id") == [task_id]
    [result] = xcoms(dag_run, "wait_for_video")
    assert result["task_id"] == task_id and result["video_url"]
    assert emulator.stats()["jobs_created"] == 1


def test_keep_videos_example_writes_the_file_and_an_asset_event(
    example_dagbag: DagBag, emulator: KlingEmulator, tmp_path: Any
) -> None:
    dag = example_dagbag.dags["kling_keep_videos"]
    dag.get_task("generate_and_keep").poll_interval = 0.2
    dag_run = dag.test(run_conf={"video_dir": str(tmp_path)})
    assert dag_run.state == DagRunState.SUCCESS
    [result] = xcoms(dag_run, "generate_and_keep")
    [video] = list(tmp_path.rglob("*.mp4"))
    assert result["path"] == f"file://{video}"
    assert result["sha256"] == hashlib.sha256(video.read_bytes()).hexdigest()
    with create_session() as session:
        [event] = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .where(AssetModel.uri == result["path"])
        ).all()
        assert event.extra["task_id"] == result["task_id"] and event.extra["sha256"] == result["sha256"]
    assert emulator.stats()["jobs_created"] == 1
