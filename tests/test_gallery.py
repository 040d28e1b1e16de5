"""The gallery's page as HTML: what it shows of a generation, and what a hostile value cannot do.

Its access rules and its videos are tested on a real Airflow (test_end_to_end.py); these run on
every supported Airflow, so the page's module imports and renders on the oldest one too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import date, datetime, timezone

import pytest
from airflow.utils.session import create_session
from dag_runs import DagBag, run_fast, xcoms

from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.plugins.gallery_app import (
    Generation,
    create_app,
    generations,
    kling_dags,
    page,
    run_spend,
)

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


def render(*shown: Generation, spend: dict[tuple[str, str], int] | None = None) -> str:
    return page(list(shown), spend or {}, sorted({g.dag_id for g in shown}), None, None, None)


def test_a_generation_shows_its_video_prompt_facts_and_links() -> None:
    text = render(TAKE, spend={TAKE.run: 110})
    assert '<video controls preload="metadata" src="https://cdn.example.com/v/abc.mp4">' in text
    assert "A fox in the snow" in text and "text_to_video · 5 s · silent · 55 credits · success" in text
    run = "manual__2026-12-02T03%3A00%3A00%2B00%3A00"
    assert f'href="../dags/videos/runs/{run}/tasks/generate"' in text
    assert f'href="../dags/videos/runs/{run}"' in text
    assert "<td class='n'>1</td><td class='n'>110</td>" in text


def test_a_prompt_is_shown_as_text_never_as_markup() -> None:
    text = render(replace(TAKE, prompt='"><script>alert(1)</script>'))
    assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_a_video_url_that_is_not_http_is_never_played() -> None:
    for url in ("javascript:alert(1)", "data:video/mp4;base64,AAAA", "file:///etc/passwd"):
        text = render(replace(TAKE, video_url=url))
        assert "<video" not in text and url not in text and "no video" in text


def test_a_kept_copy_plays_from_the_api_server_named_by_its_task_not_its_path() -> None:
    kept = replace(TAKE, kept=("publish", 3, "file:///data/videos/fox.mp4"))
    text = render(kept)
    run = "manual__2026-12-02T03%3A00%3A00%2B00%3A00"
    assert (
        f'src="videos/videos/{run}/publish/3"' in text
        and "the kept copy: file:///data/videos/fox.mp4" in text
    )
    assert "cdn.example.com" not in text


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
    assert spend[(dag_run.dag_id, dag_run.run_id)] == sum(job["credits_used"] for job in emulator.jobs())


@pytest.mark.usefixtures("airflow_db")
def test_runs_outside_the_dates_asked_for_are_not_shown(
    example_dagbag: DagBag, emulator: KlingEmulator
) -> None:
    run_fast(example_dagbag, "kling_text_to_video")
    with create_session() as session:
        assert generations(session, {"kling_text_to_video"}, None, date(2000, 1, 1), 50) == []
        assert generations(session, {"kling_text_to_video"}, datetime.now(timezone.utc).date(), None, 50)
