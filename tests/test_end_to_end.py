"""End to end on a real Airflow: its api-server, scheduler, dag-processor and triggerer, each a process
of its own, run the examples against the emulator running as its own process. (Not `airflow
standalone`, which forces the simple auth manager: the gallery's access tests need one that keeps a
user from a DAG.)

It shows what the README promises: the generate task passes through ``deferred`` (no worker slot
held while the video renders), the triggerer does the polling (every status call reaches the
emulator while the task is deferred), and exactly one job is created.
"""

from __future__ import annotations

import html
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from dag_runs import task_logs_of
from deployment import wait_until
from emulator_process import EmulatorProcess
from standalone import API_KEYS, Standalone, StatsdListener

DAG_ID = "kling_text_to_video"

#: The first test waits for its real Airflow to start too: on a machine running two suites at once,
#: that and the test took more than the default 300 s (as in the production-shaped tests).
pytestmark = pytest.mark.timeout(900)
#: The examples' connection is kling_default; its key, found anywhere, has leaked.
API_KEY = API_KEYS["kling_default"]
TASK_ID = "generate_clip"


@pytest.fixture(scope="module")
def airflow(standalone_airflow: Standalone) -> Standalone:
    """The Airflow the end-to-end tests share (tests/standalone.py)."""
    return standalone_airflow


@pytest.fixture(scope="module")
def emulator(standalone_airflow: Standalone) -> EmulatorProcess:
    """The emulator behind the examples' kling_default: this file's alone."""
    return standalone_airflow.emulators["kling_default"]


@pytest.fixture(scope="module")
def finished_run(airflow: Standalone, emulator: EmulatorProcess) -> dict[str, Any]:
    """Trigger the example once and watch its generate task's state until the run ends."""
    # Only this one is unpaused: the other examples stay paused.
    run_id = airflow.trigger(DAG_ID, airflow.has_dag, token=airflow.as_user("admin"))

    observed_states: list[tuple[float, str | None]] = []

    def run_state() -> str | None:
        rows = airflow.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", DAG_ID, run_id)
        task_rows = airflow.query(
            "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? AND task_id = ?",
            DAG_ID,
            run_id,
            TASK_ID,
        )
        observed_states.append((time.time(), task_rows[0][0] if task_rows else None))
        return rows[0][0] if rows else None

    airflow.wait_for(lambda: run_state() in ("success", "failed"), 240, f"the {DAG_ID} run to end")
    return {"run_id": run_id, "state": run_state(), "observed_states": observed_states}


def test_example_dag_run_succeeds(finished_run: dict[str, Any], airflow: Standalone) -> None:
    assert finished_run["state"] == "success", task_logs_of(airflow.home, DAG_ID, finished_run["run_id"])


def test_statsd_receives_the_generations_credits_polls_and_times(
    finished_run: dict[str, Any], statsd: StatsdListener, emulator: EmulatorProcess
) -> None:
    job = clip_job(emulator)
    tags = f"conn_id=kling_default,dag_id={DAG_ID},task_id={TASK_ID}"
    expected = [
        f"airflow.kling.generation.submitted,{tags}",  # from the worker
        f"airflow.kling.generation.credits_used,{tags},unit=credits",
        "airflow.kling.account.credits_remaining,conn_id=kling_default,unit=credits",
        f"airflow.kling.generation.wait_ended,{tags},outcome=success",  # from the triggerer
        f"airflow.kling.generation.status_polls,{tags}",
        f"airflow.kling.generation.duration,{tags}",
        f"airflow.kling.generation.detection_lag,{tags}",
    ]
    try:
        wait_until(lambda: set(expected) <= statsd.kling().keys(), 30, "the StatsD lines")
    finally:
        received = statsd.kling()
        assert set(expected) <= received.keys(), f"missing {set(expected) - received.keys()} of {received}"
    assert received[f"airflow.kling.generation.submitted,{tags}"] == "1|c"
    assert (
        received[f"airflow.kling.generation.credits_used,{tags},unit=credits"] == f"{job['credits_used']}|c"
    )
    assert received["airflow.kling.account.credits_remaining,conn_id=kling_default,unit=credits"].endswith(
        "|g"
    )
    polls, kind = received[f"airflow.kling.generation.status_polls,{tags}"].split("|")
    assert int(polls) == len(job["status_polls"]) and kind == "c"
    assert received[f"airflow.kling.generation.duration,{tags}"].endswith("|ms")
    assert received[f"airflow.kling.generation.detection_lag,{tags}"].endswith("|ms")


def test_generate_task_waited_in_the_deferred_state(
    finished_run: dict[str, Any], airflow: Standalone
) -> None:
    assert "deferred" in [state for _, state in finished_run["observed_states"]]


def test_the_triggerer_did_the_polling(
    finished_run: dict[str, Any], airflow: Standalone, emulator: EmulatorProcess
) -> None:
    states = finished_run["observed_states"]
    deferred_at = [i for i, (_, state) in enumerate(states) if state == "deferred"]
    # The deferral began after the last sample before it and ended before the first sample after it.
    window_start = states[deferred_at[0] - 1][0] if deferred_at[0] > 0 else states[0][0]
    window_end = states[deferred_at[-1] + 1][0]
    job = clip_job(emulator)
    assert job["status_polls"], "nobody polled the job"
    assert all(window_start <= poll <= window_end for poll in job["status_polls"]), (
        window_start,
        job["status_polls"],
        window_end,
    )


def test_exactly_one_job_was_created(finished_run: dict[str, Any], emulator: EmulatorProcess) -> None:
    assert emulator.stats()["jobs_created"] == 1


def test_progress_lines_reach_the_task_log(finished_run: dict[str, Any], airflow: Standalone) -> None:
    logs = [
        path.read_text(errors="replace")
        for path in (airflow.home / "logs").rglob("*")
        if path.is_file() and f"run_id={finished_run['run_id']}" in str(path) and TASK_ID in str(path)
    ]
    assert any("Kling job" in text and "progress" in text for text in logs)


def test_example_dags_have_no_import_errors(airflow: Standalone) -> None:
    # Asked through the REST API: in a load run, the `airflow dags list-import-errors` process
    # (importing Airflow on two busy cores) went past its 180 s.
    listed = airflow.api("GET", "/api/v2/importErrors", token=airflow.as_user("admin"))
    assert listed.status_code == 200, listed.text
    assert listed.json()["import_errors"] == []


def test_the_api_server_lists_the_provider(airflow: Standalone) -> None:
    # The providers page's list. `airflow providers list` is the release tests' (tests/test_release.py):
    # here, in a load run, its process went past its 180 s.
    listed = airflow.api("GET", "/api/v2/providers", token=airflow.as_user("admin"))
    assert listed.status_code == 200, listed.text
    assert "airflow-provider-kling" in [provider["package_name"] for provider in listed.json()["providers"]]


def test_connection_added_with_the_cli_passes_airflow_connection_test(
    airflow: Standalone, emulator: EmulatorProcess
) -> None:
    airflow.cli(
        "connections", "add", "kling_from_cli",
        "--conn-type", "kling", "--conn-host", emulator.url, "--conn-password", API_KEY,
    )  # fmt: skip
    before = emulator.stats()
    assert "Connection success!" in airflow.cli("connections", "test", "kling_from_cli")
    after = emulator.stats()
    # Our test_connection asked for a task that cannot exist (a 404 proves the key works), spending nothing.
    assert after["responses"]["status"]["404"] == before["responses"]["status"].get("404", 0) + 1
    assert after["jobs_created"] == before["jobs_created"]


def test_connection_test_reports_a_wrong_key(airflow: Standalone, emulator: EmulatorProcess) -> None:
    airflow.cli(
        "connections", "add", "kling_wrong_key",
        "--conn-type", "kling", "--conn-host", emulator.url, "--conn-password", "not-the-key",
    )  # fmt: skip
    done = airflow.run_cli("connections", "test", "kling_wrong_key")
    assert "401" in done.stdout + done.stderr


# -- in a real browser: headless Chromium (Debian's, driven by Playwright) against the same Airflow --

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Where screenshots go; point it at docs/screenshots to refresh the README's pictures.
SCREENSHOTS = os.environ.get("KLING_SCREENSHOTS")
#: How long a page action or expectation may wait: a hang guard, not a speed check. On a 2-core
#: machine running the whole suite, a starved Chromium once took over 30 s (Playwright's default) to
#: click a button it had found visible and stable.
UI_PATIENCE_MS = 180_000


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, started once for the module's UI tests."""
    from playwright.sync_api import expect, sync_playwright

    assert CHROMIUM.exists(), "the UI test needs Debian's chromium: apt-get install chromium"
    expect.set_options(timeout=UI_PATIENCE_MS)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
    expect.set_options(timeout=None)


@pytest.fixture
def browser_page(browser: Any, airflow: Standalone) -> Iterator[Any]:
    """A page logged into Airflow as the admin (with the token the login page would set), closed after
    its test: an open Airflow page keeps asking the api-server for news, and a gallery page keeps
    playing its videos, on the CPU the tests after it need."""
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    context.add_cookies([{"name": "_token", "value": airflow.as_user("admin"), "url": airflow.api_url}])
    context.set_default_timeout(UI_PATIENCE_MS)
    yield context.new_page()
    context.close()


def screenshot(page: Any, name: str, tmp_path_factory: pytest.TempPathFactory, element: Any = None) -> None:
    """Capture the page, or just ``element``, once the UI has settled: no CSS animation or transition
    still running (endless ones, spinners, aside), and any that starts meanwhile finished at once."""
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path_factory.getbasetemp()
    folder.mkdir(parents=True, exist_ok=True)
    page.wait_for_function(
        """() => document.getAnimations().every((a) => a.playState !== "running" || !a.effect
            || a.effect.getComputedTiming().iterations === Infinity)"""
    )
    (element or page).screenshot(path=str(folder / f"{name}.png"), animations="disabled")


#: The connection list's pictures: small enough that the README shows a toast's text at its own size.
TOAST_VIEWPORT = {"width": 1000, "height": 600}


def settled_test_result(page: Any, conn_id: str, message: str) -> Any:
    """The Test button's toast for ``conn_id``, once it has slid fully into view with all of ``message``,
    the row's icon uncovered by it and by the button's tooltip."""
    from playwright.sync_api import expect

    expect(page.get_by_role("tooltip")).to_have_count(0)  # shown while the button had the focus
    toast = page.get_by_role("status").filter(has_text=message)
    expect(toast).to_be_in_viewport(ratio=1)
    description = toast.locator("[data-part=description]")
    assert description.evaluate("e => e.scrollHeight <= e.clientHeight && e.scrollWidth <= e.clientWidth")
    row = page.get_by_role("row").filter(has_text=conn_id).bounding_box()
    assert row["y"] + row["height"] <= toast.bounding_box()["y"], "the toast covers the row"
    return toast


def no_toast_left(page: Any) -> None:
    """Wait out the Save button's toast, so that the Test button's is the only one in the picture."""
    page.mouse.move(0, 0)  # a toast under the pointer would pause its timer
    page.get_by_role("status").filter(has_text="Create Connection Request Submitted").wait_for(
        state="detached"
    )


def add_kling_connection(
    page: Any, airflow: Standalone, conn_id: str, emulator: EmulatorProcess, api_key: str
) -> None:
    """Fill the Add Connection form as a person would, and save it."""
    emulator_port = emulator.url.rsplit(":", 1)[1]
    page.goto(f"{airflow.api_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    page.locator("input[name=connection_id]").fill(conn_id)
    page.get_by_role("combobox").click()
    page.keyboard.type("kling")
    page.get_by_role("option", name="Kling AI video").click()
    page.locator("input[name=host]").fill("http://127.0.0.1")
    # The port goes in its own field: Airflow 3.3.2's Test button refuses a connection without one
    # (it sends port 0 for a NULL port; apache/airflow#73298).
    page.locator("input[name=port]").fill(emulator_port)
    page.locator("input[name=password]").fill(api_key)
    page.get_by_role("button", name="Save").click()
    page.get_by_role("row").filter(has_text=conn_id).wait_for()


def click_test(page: Any, conn_id: str) -> dict[str, Any]:
    row = page.get_by_role("row").filter(has_text=conn_id)
    with page.expect_response(lambda response: response.url.endswith("/api/v2/connections/test")) as answer:
        # The keyboard, not the mouse: a pointer resting on the button while it is disabled for the test
        # can leave its tooltip open afterwards, over the row below (Airflow 3.3.2's Chakra UI).
        row.get_by_role("button", name="Test Connection").press("Enter")
    return dict(answer.value.json())


def test_add_connection_form_offers_kling_with_its_labels(
    browser_page: Any, airflow: Standalone, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from airflow_provider_kling.get_provider_info import get_provider_info

    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{airflow.api_url}/connections")
    page.get_by_role("button", name="Add Connection").click()
    page.get_by_role("combobox").click()
    page.keyboard.type("kling")
    page.get_by_role("option", name="Kling AI video").click()
    labels = " ".join(page.locator("label").all_inner_texts())
    for label in (
        "Base URL",
        "Access Key (klingai)",
        "API key (ulazai) / Secret Key (klingai)",
        "Warn below credits",
        "Max status polls per second",
        "Allowed video hosts",
    ):
        assert label in labels
    assert page.locator("input[name=host]").get_attribute("placeholder") == "https://ulazai.com"
    assert page.locator("input[name=password]").get_attribute("type") == "password"
    assert page.locator("input[name=schema]").count() == 0
    form = page.get_by_role("dialog")
    page.locator("input[name=port]").wait_for()  # the last of the Standard Fields
    screenshot(page, "add-connection-form", tmp_path_factory, form)
    page.get_by_text("Extra Fields", exact=True).click()  # where the form shows the provider's own fields
    [kling] = get_provider_info()["connection-types"]
    fields = [page.get_by_text(extra["label"], exact=True) for extra in kling["conn-fields"].values()]
    for label in fields:
        label.wait_for()
    fields[-1].scroll_into_view_if_needed()
    page.locator("input[name=host]").wait_for(state="hidden")  # the Standard Fields folded away
    # Unfolded, not mid-animation: the section is as tall as its fields, none of them clipped.
    assert fields[-1].evaluate(
        "e => { const s = e.closest('[data-part=item-content]'); return s.scrollHeight <= s.clientHeight; }"
    )
    screenshot(page, "add-connection-extra-fields", tmp_path_factory, form)


def test_test_button_reports_success_against_the_emulator(
    browser_page: Any,
    airflow: Standalone,
    emulator: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.set_viewport_size(TOAST_VIEWPORT)
    jobs_before = emulator.stats()["jobs_created"]
    add_kling_connection(page, airflow, "kling_from_the_ui", emulator, API_KEY)
    no_toast_left(page)
    answer = click_test(page, "kling_from_the_ui")
    assert answer["status"] is True and "API key was accepted" in answer["message"]
    icon = (
        page.get_by_role("row")
        .filter(has_text="kling_from_the_ui")
        .get_by_role("button", name="Test Connection")
    )
    expect(icon.locator("svg")).to_have_attribute("color", "green")
    settled_test_result(page, "kling_from_the_ui", answer["message"])
    screenshot(page, "test-connection-success", tmp_path_factory)
    assert emulator.stats()["jobs_created"] == jobs_before  # testing spends nothing


def test_test_button_reports_a_wrong_key(
    browser_page: Any,
    airflow: Standalone,
    emulator: EmulatorProcess,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    from playwright.sync_api import expect

    page = browser_page
    page.set_viewport_size(TOAST_VIEWPORT)
    add_kling_connection(page, airflow, "kling_with_a_wrong_key", emulator, "not-the-key")
    no_toast_left(page)
    answer = click_test(page, "kling_with_a_wrong_key")
    assert answer["status"] is False and "HTTP 401" in answer["message"]
    row = page.get_by_role("row").filter(has_text="kling_with_a_wrong_key")
    expect(row.get_by_role("button", name="Test Connection").locator("svg")).to_have_attribute("color", "red")
    toast = settled_test_result(page, "kling_with_a_wrong_key", answer["message"])
    assert "Kling API refused the API key" in toast.inner_text()
    screenshot(page, "test-connection-wrong-key", tmp_path_factory)


def test_task_page_links_to_the_finished_video(
    browser_page: Any,
    airflow: Standalone,
    emulator: EmulatorProcess,
    finished_run: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{airflow.api_url}/dags/{DAG_ID}/runs/{finished_run['run_id']}/tasks/{TASK_ID}/details")
    link = page.get_by_role("link", name="Kling video")
    link.wait_for()
    job = clip_job(emulator)
    assert link.get_attribute("href") == f"{emulator.url}/_emulator/videos/{job['task_id']}.mp4"
    screenshot(page, "task-video-link", tmp_path_factory)


# -- a person reviews each video (example_dags/kling_review.py), answering through the REST API ------

REVIEW_DAG = "kling_review"
REVIEW_PROMPT = "A lighthouse at dusk, waves breaking on the rocks, slow aerial orbit"
REVIEW_NOTE = "warmer light, slower camera"


def hitl_path(run_id: str, task_id: str) -> str:
    return f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{run_id}/taskInstances/{task_id}/-1/hitlDetails"


def awaiting_review(airflow: Standalone, run_id: str, task_id: str, token: str) -> dict[str, Any]:
    """The review ``task_id`` asks of a reviewer, once it waits for the answer and the scheduler has
    seen its process end. (Airflow 3.3.2 fails a review answered before then: the executor's late
    report of the paused process finds the task queued again. A person is never that quick.)"""
    seen: dict[str, Any] = {}
    paused = f"TaskInstance Finished: dag_id={REVIEW_DAG}, task_id={task_id}, run_id={run_id},"

    def asking() -> bool:
        answer = airflow.api("GET", hitl_path(run_id, task_id), token)
        seen.update(answer.json() if answer.ok else {})
        log = airflow.scheduler_log.read_text(errors="replace")
        return answer.ok and any(
            paused in line and "state=awaiting_input" in line for line in log.splitlines()
        )

    airflow.wait_for(asking, 180, f"{task_id} to ask for a review")
    return seen


@pytest.fixture(scope="module")
def reviewed_run(
    airflow: Standalone, emulator: EmulatorProcess, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """The review example, run once: the reviewer rejects take 1 with a note and approves take 2."""
    videos = airflow.kept_videos / "reviewed"
    run_id = airflow.trigger(
        REVIEW_DAG, airflow.has_dag, {"video_dir": str(videos)}, airflow.as_user("admin")
    )
    reviewer = airflow.as_user("reviewer")
    first = awaiting_review(airflow, run_id, "review_1", reviewer)
    rejected = airflow.api(
        "PATCH", hitl_path(run_id, "review_1"), reviewer,
        json={"chosen_options": ["Reject"], "params_input": {"note": REVIEW_NOTE}},
    )  # fmt: skip
    second = awaiting_review(airflow, run_id, "review_2", reviewer)
    approved = airflow.api(
        "PATCH", hitl_path(run_id, "review_2"), reviewer, json={"chosen_options": ["Approve"]}
    )
    state = lambda: airflow.query(  # noqa: E731
        "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", REVIEW_DAG, run_id
    )[0][0]
    airflow.wait_for(lambda: state() in ("success", "failed"), 180, f"the {REVIEW_DAG} run to end")
    return {
        "run_id": run_id,
        "state": state(),
        "first": first,
        "second": second,
        "answers": (rejected.status_code, approved.status_code),
        "videos": videos,
    }


def review_jobs(emulator: EmulatorProcess) -> list[dict[str, Any]]:
    return [job for job in emulator.jobs() if job["request"]["prompt"].startswith(REVIEW_PROMPT)]


def clip_job(emulator: EmulatorProcess) -> dict[str, Any]:
    """The text-to-video example's job (finished_run's)."""
    [clip] = [job for job in emulator.jobs() if not job["request"]["prompt"].startswith(REVIEW_PROMPT)]
    return clip


def test_the_reviewer_sees_the_prompt_the_video_and_its_credits(
    reviewed_run: dict[str, Any], emulator: EmulatorProcess
) -> None:
    first_take = review_jobs(emulator)[0]
    body = reviewed_run["first"]["body"]
    assert reviewed_run["first"]["options"] == ["Approve", "Reject"]
    assert REVIEW_PROMPT in body
    assert f"{emulator.url}/_emulator/videos/{first_take['task_id']}.mp4" in body
    assert f"**Credits:** {first_take['credits_used']} for this take" in body


def test_a_rejection_regenerates_with_the_reviewers_note_and_an_approval_publishes_that_take(
    reviewed_run: dict[str, Any], airflow: Standalone, emulator: EmulatorProcess
) -> None:
    assert reviewed_run["answers"] == (200, 200)
    assert reviewed_run["state"] == "success", task_logs_of(airflow.home, REVIEW_DAG, reviewed_run["run_id"])
    _, second = review_jobs(emulator)
    assert second["request"]["prompt"] == f"{REVIEW_PROMPT}. {REVIEW_NOTE}"
    assert REVIEW_NOTE in reviewed_run["second"]["body"]
    [video] = list(reviewed_run["videos"].glob("*.mp4"))
    published = airflow.query(
        "SELECT a.uri, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id WHERE a.uri = ?",
        f"file://{video}",
    )
    assert len(published) == 1 and second["task_id"] in published[0][1]
    states = dict(
        airflow.query(
            "SELECT task_id, state FROM task_instance WHERE dag_id = ? AND run_id = ?",
            REVIEW_DAG,
            reviewed_run["run_id"],
        )
    )
    assert states["publish_2"] == "success" and states["publish_1"] == "skipped"
    assert states["generate_3"] == "skipped" and states["no_take_approved"] == "skipped"


# -- the Kling gallery (airflow_provider_kling/plugins): a page in the api-server, behind its auth ----

GALLERY = "/kling/gallery"
#: The gallery at its longest page: other files' runs share the deployment, and none may push this
#: file's generations off the page.
WHOLE_GALLERY = f"{GALLERY}?limit=500"


def kept_video(reviewed_run: dict[str, Any], task_id: str) -> str:
    """The gallery's address of the video a task of the review run kept."""
    return f"/kling/videos/{REVIEW_DAG}/{quote(reviewed_run['run_id'], safe='')}/{task_id}/-1"


def test_installing_the_package_registers_the_gallery_plugin(airflow: Standalone) -> None:
    token = airflow.as_user("admin")
    plugins = airflow.api("GET", "/api/v2/plugins", token).json()["plugins"]
    [gallery] = [plugin for plugin in plugins if plugin["name"] == "kling_gallery"]
    assert [view["href"] for view in gallery["external_views"]] == [GALLERY]
    assert not any((airflow.home / "plugins").glob("*")), "nothing was copied into plugins/"


def test_the_gallery_shows_each_generation_its_video_prompt_and_the_runs_credits(
    airflow: Standalone,
    emulator: EmulatorProcess,
    finished_run: dict[str, Any],
    reviewed_run: dict[str, Any],
) -> None:
    page = airflow.api("GET", WHOLE_GALLERY, airflow.as_user("admin"))
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    clip = clip_job(emulator)
    assert html.escape(clip["request"]["prompt"], quote=True) in text
    assert f'src="{emulator.url}/_emulator/videos/{clip["task_id"]}.mp4"' in text  # the vendor's link
    # The approved take plays from the copy the review kept; both takes' credits count for the run.
    assert f'src="videos/{REVIEW_DAG}/{quote(reviewed_run["run_id"], safe="")}/publish_2/-1"' in text
    takes = review_jobs(emulator)
    row = f"<td class='n'>2</td><td class='n'>{sum(job['credits_used'] for job in takes)} credits</td>"
    assert row in text


def test_the_gallery_streams_the_kept_copy_of_a_video(
    airflow: Standalone, reviewed_run: dict[str, Any]
) -> None:
    [video] = list(reviewed_run["videos"].glob("*.mp4"))
    answer = airflow.api("GET", kept_video(reviewed_run, "publish_2"), airflow.as_user("admin"))
    assert answer.status_code == 200 and answer.content == video.read_bytes()
    assert answer.headers["content-type"] == "video/mp4"


def test_the_gallery_sends_a_kept_video_in_byte_ranges_so_players_can_seek(
    airflow: Standalone, reviewed_run: dict[str, Any]
) -> None:
    [video] = list(reviewed_run["videos"].glob("*.mp4"))
    token = airflow.as_user("admin")
    part = airflow.api(
        "GET", kept_video(reviewed_run, "publish_2"), token, headers={"Range": "bytes=100-199"}
    )
    assert part.status_code == 206 and part.content == video.read_bytes()[100:200]


def test_an_anonymous_request_sees_no_video_and_no_prompt(
    airflow: Standalone, reviewed_run: dict[str, Any]
) -> None:
    page = airflow.api("GET", GALLERY)
    video = airflow.api("GET", kept_video(reviewed_run, "publish_2"))
    assert page.status_code == 401 and video.status_code == 401
    assert "lighthouse" not in page.text and b"ftyp" not in video.content


def test_a_path_a_user_wrote_into_an_xcom_is_never_served(
    airflow: Standalone, reviewed_run: dict[str, Any]
) -> None:
    # A user allowed to edit XComs gives a task that is not a Kling one a result naming a secret file.
    reviewer, admin = (
        airflow.as_user("reviewer"),
        airflow.as_user("admin"),
    )
    secret = str(airflow.home / "passwords.json")
    run = f"/api/v2/dags/{REVIEW_DAG}/dagRuns/{quote(reviewed_run['run_id'], safe='')}"
    forged = {"key": "return_value", "value": {"path": secret, "task_id": "generate_1"}}
    created = airflow.api("POST", f"{run}/taskInstances/no_take_approved/xcomEntries", reviewer, json=forged)
    assert created.status_code == 201, created.text
    video = airflow.api("GET", kept_video(reviewed_run, "no_take_approved"), admin)
    assert video.status_code == 404 and airflow.passwords["admin"] not in video.text


def test_a_user_who_may_not_read_a_dag_sees_none_of_its_videos_or_prompts(
    airflow: Standalone,
    emulator: EmulatorProcess,
    finished_run: dict[str, Any],
    reviewed_run: dict[str, Any],
) -> None:
    outsider = airflow.as_user("outsider")
    dags = [dag["dag_id"] for dag in airflow.api("GET", "/api/v2/dags", outsider).json()["dags"]]
    assert DAG_ID in dags and REVIEW_DAG not in dags  # Airflow's own API hides it from them too
    text = airflow.api("GET", WHOLE_GALLERY, outsider).text
    clip = clip_job(emulator)
    assert html.escape(clip["request"]["prompt"], quote=True) in text  # what they may read, they see
    assert "lighthouse" not in text and REVIEW_DAG not in text
    assert all(job["task_id"] not in text for job in review_jobs(emulator))
    assert airflow.api("GET", kept_video(reviewed_run, "publish_2"), outsider).status_code == 404
    asked_for = airflow.api("GET", f"{GALLERY}?dag_id={REVIEW_DAG}", outsider).text
    assert "lighthouse" not in asked_for


def test_the_gallery_in_the_airflow_ui_plays_the_videos(
    browser_page: Any,
    airflow: Standalone,
    emulator: EmulatorProcess,
    finished_run: dict[str, Any],
    reviewed_run: dict[str, Any],
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    page = browser_page
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(f"{airflow.api_url}/plugin/kling-gallery")
    gallery = page.frame_locator("iframe").first
    gallery.get_by_role("heading", name="Kling gallery").wait_for()
    # This file's videos: its emulator's, and the copies the review kept (other files' runs share the
    # deployment).
    videos = gallery.locator(f'video[src^="{emulator.url}/"], video[src^="videos/{REVIEW_DAG}/"]')
    assert videos.count() >= 3
    for index in range(videos.count()):  # each one's first frame loaded: the source plays
        videos.nth(index).evaluate(
            "v => v.readyState >= 2 || new Promise((done) => v.addEventListener('loadeddata', done))"
        )
    assert gallery.get_by_text(REVIEW_NOTE).count() >= 1  # the second take's amended prompt
    screenshot(page, "kling-gallery", tmp_path_factory)


def test_the_api_key_appears_in_no_log_xcom_trigger_or_rendered_field(
    finished_run: dict[str, Any], airflow: Standalone, emulator: EmulatorProcess
) -> None:
    """Searched after everything above ran: task, trigger and component logs, and the metadata DB."""
    components = [airflow.home / f"{name}.log" for name in Standalone.COMPONENTS]
    logs = [*components, *(p for p in (airflow.home / "logs").rglob("*") if p.is_file())]
    leaking_logs = [str(path) for path in logs if API_KEY in path.read_text(errors="replace")]
    assert leaking_logs == []
    stored = {
        "xcom": "SELECT value FROM xcom",
        "trigger kwargs": "SELECT kwargs FROM trigger",
        "rendered templates": "SELECT rendered_fields FROM rendered_task_instance_fields",
        "task state": "SELECT value FROM task_state_store",
        "task instances": "SELECT next_kwargs, rendered_map_index FROM task_instance",
        "notes": "SELECT content FROM task_instance_note",
    }
    for what, sql in stored.items():
        rows = airflow.query(sql)
        assert API_KEY not in repr(rows), what
    # The control: the same search finds what these places do hold, the job's vendor task_id.
    job = clip_job(emulator)
    assert any(job["task_id"] in path.read_text(errors="replace") for path in logs)
    assert job["task_id"] in repr(airflow.query(stored["xcom"]))


# -- Kling's own API, in the same deployment (its own DAG folder, connection and emulator) ----------

KLINGAI_DAG_ID = "klingai_text_to_video"
#: How every token made for Kling's own API begins (its header, base64): in a log, a token leaked.
TOKEN_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"


@pytest.fixture(scope="module")
def klingai_run(airflow: Standalone) -> str:
    """A deferrable generation on Kling's own API, run to its end; its run id."""
    run_id = airflow.trigger(KLINGAI_DAG_ID, airflow.has_dag, token=airflow.as_user("admin"))

    def run_state() -> str | None:
        rows = airflow.query(
            "SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", KLINGAI_DAG_ID, run_id
        )
        return rows[0][0] if rows else None

    airflow.wait_for(lambda: run_state() in ("success", "failed"), 240, f"the {KLINGAI_DAG_ID} run to end")
    assert run_state() == "success", task_logs_of(airflow.home, KLINGAI_DAG_ID, run_id)
    return run_id


def test_a_generation_on_kling_s_own_api_makes_one_job_and_returns_its_charge_in_units(
    klingai_run: str, airflow: Standalone
) -> None:
    [job] = airflow.emulators["kling_klingai"].jobs()
    [(value,)] = airflow.query(
        "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
        KLINGAI_DAG_ID,
        klingai_run,
        TASK_ID,
    )
    result = json.loads(value)
    assert result["task_id"] == job["task_id"] and result["status"] == "succeed"
    assert result["credits_used"] == 2.5 and job["external_task_id"].startswith("airflow-")


def test_statsd_counts_the_charge_of_kling_s_own_api_in_units_when_the_job_ends(
    klingai_run: str, statsd: StatsdListener
) -> None:
    name = f"airflow.kling.generation.credits_used,conn_id=kling_klingai,dag_id={KLINGAI_DAG_ID}"
    wait_until(lambda: f"{name},task_id={TASK_ID},unit=units" in statsd.kling(), 30, "the charge's line")
    assert statsd.kling()[f"{name},task_id={TASK_ID},unit=units"] == "2.5|c"


def test_the_secret_key_and_its_tokens_are_in_no_log(klingai_run: str, airflow: Standalone) -> None:
    logs = airflow.logs()
    assert KLINGAI_DAG_ID in logs  # what was searched holds the run's logs
    assert API_KEYS["kling_klingai"] not in logs and TOKEN_HEADER not in logs


@pytest.mark.parametrize("secret_key", ["right", "wrong"])
def test_the_test_button_checks_kling_s_own_api_s_keys_without_spending(
    airflow: Standalone, secret_key: str
) -> None:
    from standalone import ACCESS_KEYS

    emulator = airflow.emulators["kling_klingai"]
    before = emulator.stats()["jobs_created"]
    form = {  # what the Add Connection form sends when its Test button is pressed
        "connection_id": "kling_klingai_from_the_form",
        "conn_type": "kling",
        "host": emulator.url,
        "login": ACCESS_KEYS["kling_klingai"],
        "password": API_KEYS["kling_klingai"] if secret_key == "right" else "not-the-secret-key",
        "extra": json.dumps({"api": "klingai"}),
    }
    answer = airflow.api("POST", "/api/v2/connections/test", airflow.as_user("admin"), json=form)
    assert answer.status_code == 200, answer.text
    if secret_key == "right":
        assert answer.json() == {
            "status": True,
            "message": f"Connected to {emulator.url}: the Access Key and Secret Key were accepted "
            "(no credits spent).",
        }
    else:
        assert answer.json()["status"] is False and "code 1002" in answer.json()["message"]
        assert "not-the-secret-key" not in answer.text
    assert emulator.stats()["jobs_created"] == before


def test_the_gallery_shows_a_generation_on_kling_s_own_api_with_its_charge_in_units(
    klingai_run: str, airflow: Standalone
) -> None:
    [job] = airflow.emulators["kling_klingai"].jobs()
    text = airflow.api("GET", WHOLE_GALLERY, airflow.as_user("admin")).text
    assert f'src="{airflow.emulators["kling_klingai"].url}/_emulator/videos/{job["task_id"]}.mp4"' in text
    assert "text_to_video · 5 s · 2.5 units · success" in text  # Kling's own API says nothing of sound
    assert "<td class='n'>1</td><td class='n'>2.5 units</td>" in text
