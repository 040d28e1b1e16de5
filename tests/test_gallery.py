"""The gallery's page as HTML: what it shows of a generation, and what a hostile value cannot do.

Its access rules and its videos are tested on a real Airflow (test_end_to_end.py); these run on
every supported Airflow, so the page's module imports and renders on the oldest one too.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone

from airflow_provider_kling.plugins.gallery_app import Generation, create_app, page

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
