"""The gallery's page as HTML: what it shows of a generation, and what a hostile value cannot do.

Its access rules and its videos are tested on a real Airflow (test_end_to_end.py); these run on
every supported Airflow, so the page's module imports and renders on the oldest one too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from dag_runs import DagBag, run_fast, xcoms
from fastapi.responses import FileResponse
from sqlalchemy import delete

from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.plugins import gallery_app
from airflow_provider_kling.plugins.gallery_app import (
    Generation,
    create_app,
    generations,
    kept_video_response,
    kling_dags,
    page,
    readable_dags,
    run_spend,
    under_roots,
)

#: The first bytes of an MP4 file: an ftyp box.
MP4 = b"\x00\x00\x00\x18ftypmp42\x00\x00\x00\x00mp42isom" + bytes(64)

TAKE = Generation(
    dag_id="videos",
    run_id="manual__2026-12-02T03:00:00+00:00",
    task_id="generate",
    map_index=-1,
    state="success",
    run_after=datetime(2026, 12, 2, 3, tzinfo=timezone.utc),
    prompt="A fox in the snow",
    mode="text_to_video",
    duration=5,
    sound=False,
    credits=55,
    video_url="https://cdn.example.com/v/abc.mp4",
    kept=None,
)


def render(*shown: Generation, spend: dict[tuple[str, str], dict[str, float]] | None = None) -> str:
    return page(list(shown), spend or {}, sorted({g.dag_id for g in shown}), None, None, None)


def test_a_generation_shows_its_video_prompt_facts_and_links() -> None:
    text = render(TAKE, spend={TAKE.run: {"credits": 110}})
    assert '<video controls preload="metadata" src="https://cdn.example.com/v/abc.mp4">' in text
    assert "A fox in the snow" in text and "text_to_video · 5 s · silent · 55 credits · success" in text
    run = "manual__2026-12-02T03%3A00%3A00%2B00%3A00"
    assert f'href="../dags/videos/runs/{run}/tasks/generate"' in text
    assert f'href="../dags/videos/runs/{run}"' in text
    assert "<td class='n'>1</td><td class='n'>110 credits</td>" in text


def test_a_generation_on_kling_s_own_api_shows_its_charge_in_units_and_a_run_of_both_apis_each() -> None:
    take = replace(TAKE, credits=2.5, unit="units")
    text = render(take, spend={TAKE.run: {"credits": 55, "units": 2.5}})
    assert "text_to_video · 5 s · silent · 2.5 units · success" in text
    assert "<td class='n'>55 credits + 2.5 units</td>" in text


def test_a_prompt_is_shown_as_text_never_as_markup() -> None:
    text = render(replace(TAKE, prompt='"><script>alert(1)</script>'))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_video_url_that_is_not_http_is_never_played() -> None:
    for url in ("javascript:alert(1)", "data:video/mp4;base64,AAAA", "file:///etc/passwd"):
        text = render(replace(TAKE, video_url=url))
        assert "<video" not in text and url not in text and "no video" in text


def test_a_kept_copy_plays_from_the_api_server_named_by_its_task_not_its_path(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__KLING__GALLERY_VIDEO_ROOTS", "/data/videos")
    kept = replace(TAKE, kept=("publish", 3, "file:///data/videos/fox.mp4"))
    text = render(kept)
    run = "manual__2026-12-02T03%3A00%3A00%2B00%3A00"
    assert (
        f'src="videos/videos/{run}/publish/3"' in text
        and "the kept copy: file:///data/videos/fox.mp4" in text
    )
    assert "cdn.example.com" not in text


def test_a_kept_copy_outside_the_video_roots_is_named_but_never_played(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRFLOW__KLING__GALLERY_VIDEO_ROOTS", "/data/videos")
    text = render(replace(TAKE, kept=("publish", 3, "/home/me/fox.mp4")))
    assert 'src="videos/' not in text and 'src="https://cdn.example.com/v/abc.mp4"' in text
    assert "kept at /home/me/fox.mp4, which is not under [kling] gallery_video_roots" in text


@pytest.mark.parametrize(
    ("path", "roots"),
    [
        ("/data/videos/fox.mp4", ["/data/videos"]),
        ("file:///data/videos/2026/fox.mp4", ["/srv/other", "/data/videos/"]),
        ("/data/videos/fox.mp4", ["file:///data/videos"]),
        ("s3://aws_kling@media/videos/fox.mp4", ["s3://aws_kling@media/videos"]),
        ("s3://aws_kling@media/fox.mp4", ["s3://aws_kling@media"]),  # a whole bucket
    ],
)
def test_a_path_under_a_video_root_may_be_served(path: str, roots: list[str]) -> None:
    assert under_roots(path, roots)


@pytest.mark.parametrize(
    ("path", "roots"),
    [
        ("/data/videos/fox.mp4", []),  # no roots configured: nothing is served
        ("/etc/passwd", ["/data/videos"]),
        ("/data/videos-private/fox.mp4", ["/data/videos"]),  # a prefix of the name, not a folder
        ("/data/videos/../secrets/key.mp4", ["/data/videos"]),
        ("file://elsewhere/data/videos/fox.mp4", ["/data/videos"]),
        ("file://localhost/data/videos/fox.mp4", ["/data/videos"]),  # fsspec reads <cwd>/localhost/...
        ("data/videos/fox.mp4", ["/data/videos"]),  # relative: to whichever folder the server is in
        ("~/data/videos/fox.mp4", ["/data/videos"]),
        # fsspec opens what comes before "::", and keeps what urlsplit cuts at "?" and "#"
        ("file:///srv/private/secret.mp4::/../../../data/videos/fox.mp4", ["/data/videos"]),
        ("/srv/private/secret.mp4::file:///../../data/videos/fox.mp4", ["/data/videos"]),
        ("/data/videos/a#/../../../srv/fox.mp4", ["/data/videos"]),
        ("/data/videos/a?/../../../srv/fox.mp4", ["/data/videos"]),
        ("simplecache::s3://aws_kling@media/videos/fox.mp4", ["s3://aws_kling@media/videos"]),
        ("s3://aws_kling@media/videos/../private/fox.mp4", ["s3://aws_kling@media/videos"]),
        ("s3://aws_other@media/videos/fox.mp4", ["s3://aws_kling@media/videos"]),  # another connection
        ("s3://aws_kling@other-bucket/videos/fox.mp4", ["s3://aws_kling@media/videos"]),
        ("gs://aws_kling@media/videos/fox.mp4", ["s3://aws_kling@media/videos"]),
        ("s3://aws_kling@media/videos/fox.mp4?versionId=1", ["s3://aws_kling@media/videos"]),
    ],
)
def test_a_path_outside_the_video_roots_is_never_served(path: str, roots: list[str]) -> None:
    assert not under_roots(path, roots)


def test_a_link_inside_a_video_root_to_a_file_outside_it_is_never_served(tmp_path: Path) -> None:
    root, outside = tmp_path / "videos", tmp_path / "secret.mp4"
    root.mkdir()
    outside.write_bytes(MP4)
    (root / "fox.mp4").symlink_to(outside)
    assert not under_roots(str(root / "fox.mp4"), [str(root)])


def test_a_kept_mp4_under_a_root_is_sent_as_the_file_judged(tmp_path: Path) -> None:
    (tmp_path / "fox.mp4").write_bytes(MP4)
    response = kept_video_response(f"file://{tmp_path}/fox.mp4", [str(tmp_path)])
    assert isinstance(response, FileResponse) and response.media_type == "video/mp4"
    assert Path(response.path) == (tmp_path / "fox.mp4").resolve()


def test_a_chained_url_naming_a_root_opens_nothing_outside_it(tmp_path: Path) -> None:
    root, private = tmp_path / "videos", tmp_path / "private"
    root.mkdir(), private.mkdir()
    (private / "secret.mp4").write_bytes(MP4)
    chained = f"file://{private}/secret.mp4::/../../videos/fox.mp4"
    assert kept_video_response(chained, [str(root)]) is None


def test_a_file_under_a_root_that_is_not_an_mp4_is_never_served(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_bytes(b"api_key = secret\n")
    assert kept_video_response(str(tmp_path / "notes.mp4"), [str(tmp_path)]) is None
    assert kept_video_response(str(tmp_path / "missing.mp4"), [str(tmp_path)]) is None


def test_each_dag_is_judged_with_its_team(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[Any] = []

    class RecordingAuthManager:
        def batch_is_authorized_dag(self, requests: list[Any], *, user: Any) -> bool:
            asked.extend(requests)
            return True

    monkeypatch.setattr(gallery_app, "get_auth_manager", RecordingAuthManager)
    monkeypatch.setattr(gallery_app.DagModel, "get_team_name", lambda dag_id, session: f"team_of_{dag_id}")
    assert readable_dags(None, object(), {"videos"}) == {"videos"}  # type: ignore[arg-type]
    assert {(r["access_entity"].name, r["details"].id, r["details"].team_name) for r in asked} == {
        ("TASK_INSTANCE", "videos", "team_of_videos"),
        ("XCOM", "videos", "team_of_videos"),
    }


def test_a_mapped_generation_links_to_its_map_index() -> None:
    assert "/tasks/generate/mapped/7" in render(replace(TAKE, map_index=7))


def test_the_app_serves_the_page_and_the_kept_videos() -> None:
    paths = {route.path for route in create_app().routes}
    assert {"/gallery", "/videos/{dag_id}/{run_id}/{task_id}/{map_index}"} <= paths


@pytest.mark.usefixtures("airflow_db")
def test_a_runs_generations_are_read_from_airflows_records_with_the_runs_spend(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    dag_run = run_fast(example_dagbag, "kling_bulk_generation")
    results = xcoms(dag_run, "generate")
    with create_session() as session:
        assert "kling_bulk_generation" in kling_dags(session)
        shown = [
            g
            for g in generations(session, {"kling_bulk_generation"}, None, None, 50)
            if g.run_id == dag_run.run_id
        ]
        spend = run_spend(session, shown)
    assert [g.map_index for g in shown] == [0, 1, 2]
    assert [g.video_url for g in shown] == [r["video_url"] for r in results]
    assert all(g.prompt and g.mode == "text_to_video" and g.state == "success" for g in shown)
    assert spend[(dag_run.dag_id, dag_run.run_id)] == {
        "credits": sum(job["credits_used"] for job in emulator.jobs())
    }


@pytest.mark.usefixtures("airflow_db")
def test_taskflow_generations_are_shown_with_the_request_their_function_returned(
    case_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    dag_run = case_dagbag.dags["taskflow_fields"].test()  # tests/dags/kling_taskflow_cases.py
    with create_session() as session:
        [shown] = [
            g for g in generations(session, {"taskflow_fields"}, None, None, 50) if g.run_id == dag_run.run_id
        ]
        spend = run_spend(session, [shown])
    [job] = emulator.jobs()
    [result] = xcoms(dag_run, "fields_clip")
    assert (shown.prompt, shown.duration, shown.video_url) == ("a heron", 10, result["video_url"])
    assert spend[(dag_run.dag_id, dag_run.run_id)] == {"credits": job["credits_used"]}


@pytest.mark.usefixtures("airflow_db")
def test_runs_outside_the_dates_asked_for_are_not_shown(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    run_fast(example_dagbag, "kling_text_to_video")
    with create_session() as session:
        assert generations(session, {"kling_text_to_video"}, None, date(2000, 1, 1), 50) == []
        assert generations(session, {"kling_text_to_video"}, datetime.now(timezone.utc).date(), None, 50)


@pytest.mark.usefixtures("airflow_db")
def test_a_result_of_a_task_that_is_not_a_kling_one_never_names_a_kept_copy(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    # Users allowed to edit XComs can give any task a result that names any file.
    dag_run = run_fast(example_dagbag, "kling_text_to_video")
    [clip] = xcoms(dag_run, "generate_clip")
    forged = {"path": "/etc/passwd", "task_id": clip["task_id"]}  # as a keeper's result names its job
    with create_session() as session:
        session.execute(
            delete(XComModel).where(XComModel.run_id == dag_run.run_id, XComModel.task_id == "publish")
        )
        XComModel.set(
            "return_value",
            forged,
            dag_id=dag_run.dag_id,
            task_id="publish",
            run_id=dag_run.run_id,
            session=session,
        )
    with create_session() as session:
        [shown] = [
            g for g in generations(session, {dag_run.dag_id}, None, None, 50) if g.run_id == dag_run.run_id
        ]
    assert shown.kept is None
