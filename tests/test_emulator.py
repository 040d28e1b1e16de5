"""The Kling API emulator, driven as a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import struct
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests

from airflow_provider_kling.core.dialects.ulazai import DIALECT, SUBMIT_PATH, status_path
from airflow_provider_kling.core.errors import KlingBadRequestError, error_from_response
from airflow_provider_kling.emulator import EmulatorConfig, FaultRates, KlingEmulator
from airflow_provider_kling.emulator.pytest_plugin import KlingEmulatorFactory
from airflow_provider_kling.emulator.state import VIDEO_REQUESTS_KEPT, EmulatorState

ASSETS = Path(__file__).parent.parent / "airflow_provider_kling" / "emulator" / "assets"
TEXT_TO_VIDEO = {"prompt": "A red fox running through fresh snow", "generationMode": "text_to_video"}
IMAGE_TO_VIDEO = {
    "prompt": "The cat turns its head and blinks",
    "generationMode": "image_to_video",
    "imageUrls": ["https://example.com/cat.png"],
}
#: The price table's charge for TEXT_TO_VIDEO: 5 s, silent, Prompt Directory opt-in by default.
TEXT_TO_VIDEO_PRICE = DIALECT.from_payload(TEXT_TO_VIDEO).estimated_credits


def headers(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def submit(
    emulator: KlingEmulator, body: Any = TEXT_TO_VIDEO, *, key: str | None = None
) -> requests.Response:
    return requests.post(
        emulator.base_url + SUBMIT_PATH, json=body, headers=headers(key or emulator.api_key), timeout=10
    )


def status(emulator: KlingEmulator, task_id: str, *, key: str | None = None) -> requests.Response:
    return requests.get(
        emulator.base_url + status_path(task_id), headers=headers(key or emulator.api_key), timeout=10
    )


def submitted_task(emulator: KlingEmulator, body: Any = TEXT_TO_VIDEO) -> str:
    response = submit(emulator, body)
    assert response.status_code == 201, response.text
    return str(response.json()["data"]["task_id"])


def wait_until_finished(emulator: KlingEmulator, task_id: str) -> tuple[dict[str, Any], list[int]]:
    """The final status data and every progress seen on the way."""
    progress: list[int] = []
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        data = status(emulator, task_id).json()["data"]
        if data["status"] != "processing":
            return data, progress
        progress.append(data["progress"])
        time.sleep(0.05)
    raise AssertionError(f"job {task_id} still processing after 10 s")


# Just enough of MP4 (ISO/IEC 14496-12) to tell how long a file plays and what tracks it holds


def mp4_boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    """(type, payload) of each box laid end to end in ``data``: a file, or a container box's payload."""
    offset = 0
    while offset < len(data):
        size, kind = struct.unpack_from(">I4s", data, offset)
        header = 8
        if size == 1:  # a 64-bit size follows the type
            (size,) = struct.unpack_from(">Q", data, offset + 8)
            header = 16
        elif size == 0:  # the box runs to the end
            size = len(data) - offset
        assert header <= size <= len(data) - offset, f"box {kind!r} at {offset} overruns the data"
        yield kind, data[offset + header : offset + size]
        offset += size


def mp4_payloads(data: bytes, kind: bytes) -> list[bytes]:
    return [payload for found, payload in mp4_boxes(data) if found == kind]


def mp4_seconds(data: bytes) -> float:
    """How long the movie plays: the ``mvhd`` box's duration over its timescale."""
    [moov] = mp4_payloads(data, b"moov")
    [mvhd] = mp4_payloads(moov, b"mvhd")
    # version, flags (3 bytes), creation and modification times (4 bytes each, 8 in version 1)
    if mvhd[0] == 1:
        timescale, duration = struct.unpack_from(">IQ", mvhd, 20)
    else:
        timescale, duration = struct.unpack_from(">II", mvhd, 12)
    return float(duration / timescale)


def mp4_track_handlers(data: bytes) -> list[bytes]:
    """Each track's handler type (``vide``, ``soun``...), from ``moov/trak/mdia/hdlr``."""
    [moov] = mp4_payloads(data, b"moov")
    return [
        hdlr[8:12]  # after version, flags and pre_defined
        for trak in mp4_payloads(moov, b"trak")
        for mdia in mp4_payloads(trak, b"mdia")
        for hdlr in mp4_payloads(mdia, b"hdlr")
    ]


def test_mp4_reader_reads_a_version_1_mvhd_inside_a_box_with_a_64_bit_size() -> None:
    mvhd = bytes([1, 0, 0, 0]) + bytes(16) + struct.pack(">IQ", 1000, 12_500) + bytes(80)
    mvhd_box = struct.pack(">I4s", 8 + len(mvhd), b"mvhd") + mvhd
    moov_box = struct.pack(">I4sQ", 1, b"moov", 16 + len(mvhd_box)) + mvhd_box

    assert mp4_seconds(b"\x00\x00\x00\x10ftypisom\x00\x00\x02\x00" + moov_box) == 12.5


@pytest.fixture
def emulator(kling_emulator_factory: KlingEmulatorFactory) -> KlingEmulator:
    """Jobs done in 0.1-0.15 s, for tests about what happens after a job ends."""
    return kling_emulator_factory(speed=600)


# Submit


def test_text_to_video_submit_answers_201_with_the_price_table_charge(emulator: KlingEmulator) -> None:
    response = submit(emulator)

    assert response.status_code == 201
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["status"] == "processing"
    assert data["credits_used"] == TEXT_TO_VIDEO_PRICE == 45
    assert data["credits_remaining"] == 10_000 - 45
    assert data["message"] == "KLING 2.6 video generation started"
    assert len(data["task_id"]) == 36


def test_image_to_video_submit_is_accepted_and_keeps_the_request_body(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator, IMAGE_TO_VIDEO)

    [job] = emulator.jobs()
    assert job["task_id"] == task_id
    assert job["request"] == IMAGE_TO_VIDEO


def test_sound_and_ten_seconds_cost_the_price_table_amount(emulator: KlingEmulator) -> None:
    body = {**TEXT_TO_VIDEO, "duration": "10", "sound": True, "prompt_directory_optin": False}

    assert submit(emulator, body).json()["data"]["credits_used"] == 220


def test_estimated_time_announces_the_range_its_sped_up_jobs_take(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    emulator = kling_emulator_factory(min_seconds=30, max_seconds=45, speed=10)

    assert submit(emulator).json()["data"]["estimated_time"] == "3-4.5 seconds"


# Status and video


def test_progress_rises_until_the_job_completes_with_a_video_url(kling_emulator: KlingEmulator) -> None:
    task_id = submitted_task(kling_emulator)

    final, progress = wait_until_finished(kling_emulator, task_id)

    assert len(progress) >= 3
    assert progress == sorted(progress)
    assert progress[0] < progress[-1] <= 99
    assert final["status"] == "completed"
    assert final["task_id"] == task_id
    assert final["video_url"] == f"{kling_emulator.base_url}/_emulator/videos/{task_id}.mp4"
    assert final["duration"] == 5
    assert final["has_audio"] is False


def test_video_url_serves_a_playable_mp4(emulator: KlingEmulator) -> None:
    final, _ = wait_until_finished(emulator, submitted_task(emulator))

    video = requests.get(final["video_url"], timeout=10)

    assert video.status_code == 200
    assert video.headers["Content-Type"] == "video/mp4"
    assert video.content[4:8] == b"ftyp"
    assert video.content == (ASSETS / "clip-5s-silent.mp4").read_bytes()


def test_video_of_a_ten_second_job_with_sound_is_the_ten_second_clip_with_audio(
    emulator: KlingEmulator,
) -> None:
    task_id = submitted_task(emulator, {**TEXT_TO_VIDEO, "sound": True, "duration": "10"})
    final, _ = wait_until_finished(emulator, task_id)

    assert final["has_audio"] is True
    assert final["duration"] == 10
    video = requests.get(final["video_url"], timeout=10)
    assert video.content == (ASSETS / "clip-10s-sound.mp4").read_bytes()


JOB_SHAPES = [
    pytest.param(5, False, id="5s-silent"),
    pytest.param(5, True, id="5s-sound"),
    pytest.param(10, False, id="10s-silent"),
    pytest.param(10, True, id="10s-sound"),
]


def finished_video(emulator: KlingEmulator, duration: int, sound: bool) -> tuple[dict[str, Any], bytes]:
    """A job of this duration and sound, run to completion: its final status data and its video's bytes."""
    task_id = submitted_task(emulator, {**TEXT_TO_VIDEO, "duration": str(duration), "sound": sound})
    final, _ = wait_until_finished(emulator, task_id)
    assert final["status"] == "completed"
    video = requests.get(final["video_url"], timeout=10)
    assert video.status_code == 200
    return final, video.content


@pytest.mark.parametrize(("duration", "sound"), JOB_SHAPES)
def test_video_plays_as_long_as_the_job_duration_says(
    emulator: KlingEmulator, duration: int, sound: bool
) -> None:
    final, video = finished_video(emulator, duration, sound)

    assert final["duration"] == duration
    assert mp4_seconds(video) == pytest.approx(final["duration"], abs=0.1)


@pytest.mark.parametrize(("duration", "sound"), JOB_SHAPES)
def test_video_has_an_audio_track_exactly_when_the_job_has_sound(
    emulator: KlingEmulator, duration: int, sound: bool
) -> None:
    final, video = finished_video(emulator, duration, sound)

    assert final["has_audio"] is sound
    handlers = mp4_track_handlers(video)
    assert handlers.count(b"vide") == 1
    assert (b"soun" in handlers) is sound


def test_video_url_uses_the_host_the_client_reached(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    wait_until_finished(emulator, task_id)

    response = requests.get(
        emulator.base_url + status_path(task_id),
        headers={**headers(emulator.api_key), "Host": "kling.example.test:8443"},
        timeout=10,
    )

    assert response.json()["data"]["video_url"].startswith("http://kling.example.test:8443/_emulator/videos/")


def test_video_is_not_served_before_the_job_completes(kling_emulator: KlingEmulator) -> None:
    task_id = submitted_task(kling_emulator)

    video = requests.get(f"{kling_emulator.base_url}/_emulator/videos/{task_id}.mp4", timeout=10)

    assert video.status_code == 404


def test_video_answers_range_requests(emulator: KlingEmulator) -> None:
    final, _ = wait_until_finished(emulator, submitted_task(emulator))

    part = requests.get(final["video_url"], headers={"Range": "bytes=0-99"}, timeout=10)

    assert part.status_code == 206
    assert part.content == (ASSETS / "clip-5s-silent.mp4").read_bytes()[:100]


def test_job_failure_rate_one_makes_every_job_end_failed(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    emulator = kling_emulator_factory(speed=600, job_failure_rate=1.0)
    task_id = submitted_task(emulator)

    final, _ = wait_until_finished(emulator, task_id)

    assert final == {"task_id": task_id, "status": "failed", "error": "Video generation failed (emulated)"}
    assert requests.get(f"{emulator.base_url}/_emulator/videos/{task_id}.mp4", timeout=10).status_code == 404


# Refusals


@pytest.mark.parametrize("authorization", [None, "Bearer wrong-key", "kling-emulator-key", "Basic abc"])
def test_missing_or_wrong_api_key_is_refused_with_401(
    emulator: KlingEmulator, authorization: str | None
) -> None:
    task_id = submitted_task(emulator)
    sent = {} if authorization is None else {"Authorization": authorization}

    refusals = [
        requests.post(emulator.base_url + SUBMIT_PATH, json=TEXT_TO_VIDEO, headers=sent, timeout=10),
        requests.get(emulator.base_url + status_path(task_id), headers=sent, timeout=10),
    ]

    for refusal in refusals:
        assert refusal.status_code == 401
        assert refusal.json() == {"success": False, "error": "Invalid API key"}
    assert emulator.stats()["jobs_created"] == 1


def test_exhausted_ledger_answers_402_and_creates_no_job(emulator: KlingEmulator) -> None:
    emulator.set_credits(emulator.api_key, TEXT_TO_VIDEO_PRICE - 1)

    response = submit(emulator)

    assert response.status_code == 402
    assert response.json() == {
        "success": False,
        "error": "Insufficient credits",
        "credits_required": TEXT_TO_VIDEO_PRICE,
        "credits_remaining": TEXT_TO_VIDEO_PRICE - 1,
    }
    assert emulator.jobs() == []
    assert emulator.stats()["credits_remaining"] == {"key-1": TEXT_TO_VIDEO_PRICE - 1}


def test_body_breaking_the_rules_answers_400_listing_api_field_names(emulator: KlingEmulator) -> None:
    body = {"prompt": "  ", "generationMode": "image_to_video", "duration": 5, "aspectRatio": "4:3"}

    response = submit(emulator, body)

    assert response.status_code == 400
    answer = response.json()
    assert answer["success"] is False
    assert answer["error"].startswith("Invalid Kling request")
    assert {error["field"] for error in answer["errors"]} == {
        "prompt",
        "imageUrls",
        "duration",
        "aspectRatio",
    }
    assert {"field": "duration", "rule": 'must be a string, "5" or "10"', "value": 5} in answer["errors"]


def test_rejected_body_creates_no_job_and_charges_nothing(emulator: KlingEmulator) -> None:
    submit(emulator, {"prompt": "no mode"})

    stats = emulator.stats()
    assert stats["jobs_created"] == 0
    assert stats["credits_remaining"] == {"key-1": 10_000}


def test_invalid_json_answers_400_naming_the_body(emulator: KlingEmulator) -> None:
    response = requests.post(
        emulator.base_url + SUBMIT_PATH, data=b"{not json", headers=headers(emulator.api_key), timeout=10
    )

    assert response.status_code == 400
    assert response.json()["errors"] == [
        {"field": "body", "rule": "must be valid JSON", "value": "{not json"}
    ]
    assert emulator.stats()["jobs_created"] == 0


def test_validation_400_never_reads_as_out_of_credits(emulator: KlingEmulator) -> None:
    body = {**TEXT_TO_VIDEO, "prompt": "credit card commercial " * 100}

    response = submit(emulator, body)

    assert response.status_code == 400
    assert "credit" not in response.json()["error"].lower()
    assert type(error_from_response(400, response.content)) is KlingBadRequestError


def test_unknown_task_answers_404(emulator: KlingEmulator) -> None:
    response = status(emulator, "00000000-0000-4000-8000-000000000000")

    assert response.status_code == 404
    assert response.json() == {"success": False, "error": "Task not found"}


def test_task_of_another_key_answers_404(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(api_keys=("alice-key", "bob-key"))
    task_id = submitted_task(emulator)

    assert status(emulator, task_id, key="bob-key").status_code == 404
    assert status(emulator, task_id, key="alice-key").status_code == 200


# Scripted faults


def test_scripted_server_error_is_a_503_html_page(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "server_error")

    response = status(emulator, task_id)

    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    assert "503 Service Unavailable" in response.text


def test_scripted_html_502_is_an_nginx_page(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "html_502")

    response = submit(emulator)

    assert response.status_code == 502
    assert "<h1>502 Bad Gateway</h1>" in response.text
    assert "nginx" in response.text


def test_scripted_rate_limit_is_a_429_with_retry_after(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "rate_limit", retry_after=7)

    response = status(emulator, task_id)

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "7"
    assert response.json()["success"] is False


def test_rate_limit_retry_after_defaults_to_the_configured_seconds(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "rate_limit")

    assert submit(emulator).headers["Retry-After"] == "1"


def test_an_accounts_request_beyond_its_rate_limit_is_answered_429_with_retry_after(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    emulator = kling_emulator_factory(rate_limit=1, retry_after=2)
    task_id = submitted_task(emulator)  # the submit counts against the limit too
    answer = status(emulator, task_id)
    assert answer.status_code == 429 and answer.headers["Retry-After"] == "2"
    traffic = list(emulator.traffic().values())
    assert [sum(column) for column in zip(*traffic, strict=True)] == [2, 1]  # received, refused


def test_the_rate_limit_admits_so_many_requests_in_any_one_second() -> None:
    state = EmulatorState(EmulatorConfig(rate_limit=3))
    admitted = [state.admit("key-1", now) for now in (10.0, 10.2, 10.4, 10.6, 10.9, 11.05, 11.1)]
    # 10.6 and 10.9 find three within the second before them; at 11.05 the one at 10.0 has left it.
    assert admitted == [True, True, True, False, False, True, False]


def test_the_rate_limit_is_per_account(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(api_keys=("first-key", "second-key"), rate_limit=1)
    assert submit(emulator, key="first-key").status_code == 201
    assert submit(emulator, key="second-key").status_code == 201
    assert submit(emulator, key="first-key").status_code == 429


def test_requests_are_counted_by_the_second_without_a_limit(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    for _ in range(3):
        status(emulator, task_id)
    traffic = emulator.traffic()
    assert sum(received for received, _ in traffic.values()) == 4
    assert all(refused == 0 for _, refused in traffic.values())


def test_scripted_garbage_is_a_200_that_is_not_json(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "garbage")

    response = status(emulator, task_id)

    assert response.status_code == 200
    with pytest.raises(ValueError):
        json.loads(response.text)


def test_scripted_drop_closes_the_connection_without_an_answer(
    emulator: KlingEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "drop")

    with pytest.raises(requests.ConnectionError):
        status(emulator, task_id)

    assert status(emulator, task_id).status_code == 200
    assert [record for record in caplog.records if record.levelno >= logging.WARNING] == []


def test_scripted_drop_disconnects_an_aiohttp_client(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    # aiohttp silently repeats an idempotent request once after a disconnect, so drop both tries.
    emulator.inject("status", "drop", count=2)

    async def poll() -> None:
        async with (
            aiohttp.ClientSession(headers=headers(emulator.api_key)) as session,
            session.get(emulator.base_url + status_path(task_id)) as response,
        ):
            await response.read()

    with pytest.raises((aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)):
        asyncio.run(poll())


def test_scripted_slow_answers_normally_after_the_delay(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "slow", delay=0.3)

    started = time.monotonic()
    response = status(emulator, task_id)

    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    assert response.json()["data"]["task_id"] == task_id


def test_timeout_after_create_charges_a_job_whose_answer_is_lost(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", delay=0.2)

    started = time.monotonic()
    with pytest.raises(requests.ConnectionError):
        submit(emulator)

    assert time.monotonic() - started >= 0.2
    [job] = emulator.jobs()
    assert emulator.stats()["credits_remaining"] == {"key-1": 10_000 - job["credits_used"]}
    assert status(emulator, job["task_id"]).status_code == 200


@pytest.mark.parametrize("kind", ["server_error", "rate_limit", "drop", "garbage", "html_502"])
def test_faulted_submit_creates_no_job_and_charges_nothing(emulator: KlingEmulator, kind: str) -> None:
    emulator.inject("submit", kind)

    with contextlib.suppress(requests.ConnectionError):  # what a drop looks like
        submit(emulator)

    assert emulator.stats()["jobs_created"] == 0
    assert emulator.stats()["credits_remaining"] == {"key-1": 10_000}


def test_scripted_faults_hit_the_next_requests_in_order_then_stop(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    emulator.inject("status", "server_error", count=2)
    emulator.inject("status", "rate_limit")

    codes = [status(emulator, task_id).status_code for _ in range(4)]

    assert codes == [503, 503, 429, 200]


def test_faults_route_queues_a_fault_over_http(emulator: KlingEmulator) -> None:
    answer = requests.post(
        f"{emulator.base_url}/_emulator/faults",
        json={"endpoint": "submit", "kind": "rate_limit", "count": 2, "retry_after": 3},
        timeout=10,
    )

    assert answer.status_code == 201
    assert answer.json() == {"success": True, "pending": 2}
    assert [submit(emulator).status_code for _ in range(3)] == [429, 429, 201]


@pytest.mark.parametrize(
    "fault",
    [
        {"endpoint": "status", "kind": "meltdown"},
        {"endpoint": "jobs", "kind": "drop"},
        {"endpoint": "status", "kind": "timeout_after_create"},
        {"endpoint": "status", "kind": "drop", "count": 0},
        {"endpoint": "status", "kind": "slow", "delay": -1},
        {"endpoint": "status", "kind": "drop", "when": "later"},
        {"kind": "drop"},
    ],
)
def test_faults_route_refuses_a_fault_it_cannot_apply(emulator: KlingEmulator, fault: dict[str, Any]) -> None:
    answer = requests.post(f"{emulator.base_url}/_emulator/faults", json=fault, timeout=10)

    assert answer.status_code == 400
    assert answer.json()["success"] is False
    assert emulator.stats()["faults_pending"] == {"submit": 0, "status": 0, "video": 0}


# Random faults


def test_status_fault_rate_one_faults_every_status_request(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    emulator = kling_emulator_factory(speed=600, status_faults=FaultRates(server_error=1.0))
    task_id = submitted_task(emulator)

    assert [status(emulator, task_id).status_code for _ in range(5)] == [503] * 5
    assert emulator.stats()["faults_applied"]["status"] == {"server_error": 5}


def test_random_submit_faults_come_before_any_job_is_created(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    emulator = kling_emulator_factory(submit_faults=FaultRates(drop=1.0))

    with pytest.raises(requests.ConnectionError):
        submit(emulator)

    assert emulator.stats()["jobs_created"] == 0
    assert emulator.stats()["credits_remaining"] == {"key-1": 10_000}


def test_scripted_faults_come_before_random_ones(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(submit_faults=FaultRates(rate_limit=1.0))
    emulator.inject("submit", "html_502")

    assert [submit(emulator).status_code for _ in range(2)] == [502, 429]


# Control surface


def test_stats_count_requests_responses_jobs_and_credits(emulator: KlingEmulator) -> None:
    task_id = submitted_task(emulator)
    submit(emulator, {"prompt": "no mode"})
    final, _ = wait_until_finished(emulator, task_id)
    status(emulator, "unknown")
    requests.get(final["video_url"], timeout=10)

    stats = requests.get(f"{emulator.base_url}/_emulator/stats", timeout=10).json()

    polls = stats["requests"]["status"]
    assert stats["requests"] == {"submit": 2, "status": polls, "video": 1}
    assert stats["responses"] == {
        "submit": {"201": 1, "400": 1},
        "status": {"200": polls - 1, "404": 1},
        "video": {"200": 1},
    }
    assert stats["jobs_created"] == 1
    assert stats["credits_remaining"] == {"key-1": 10_000 - TEXT_TO_VIDEO_PRICE}
    assert stats == emulator.stats()


def test_jobs_list_each_jobs_timing_request_and_status_polls(emulator: KlingEmulator) -> None:
    before = time.time()
    task_id = submitted_task(emulator)
    status(emulator, task_id)
    status(emulator, task_id)

    [job] = requests.get(f"{emulator.base_url}/_emulator/jobs", timeout=10).json()

    assert job["task_id"] == task_id
    assert job["account"] == "key-1"
    assert job["request"] == TEXT_TO_VIDEO
    assert (job["duration"], job["sound"], job["fails"]) == (5, False, False)
    assert before <= job["created_at"] < job["ready_at"]
    assert len(job["status_polls"]) == 2
    assert all(job["created_at"] <= polled <= time.time() for polled in job["status_polls"])


def test_video_route_records_every_header_it_receives_until_reset(emulator: KlingEmulator) -> None:
    final, _ = wait_until_finished(emulator, submitted_task(emulator))
    emulator.inject("video", "server_error")
    sent = {"X-Probe": "first", "Authorization": "Bearer leaked"}

    assert requests.get(final["video_url"], headers=sent, timeout=10).status_code == 503
    assert requests.get(final["video_url"] + "?try=2", headers={"X-Probe": "second"}, timeout=10).ok

    recorded = requests.get(f"{emulator.base_url}/_emulator/video-requests", timeout=10).json()
    assert recorded == emulator.video_requests()
    first, second = recorded
    path = final["video_url"].removeprefix(emulator.base_url)
    assert (first["path"], second["path"]) == (path, path + "?try=2")
    assert ["X-Probe", "first"] in first["headers"]
    assert ["Authorization", "Bearer leaked"] in first["headers"]  # verbatim: a test double keeps it all
    assert ["X-Probe", "second"] in second["headers"]
    assert not any(name == "Authorization" for name, _ in second["headers"])
    assert {name for name, _ in first["headers"]} >= {"Host", "User-Agent", "Accept"}

    assert requests.post(f"{emulator.base_url}/_emulator/reset", timeout=10).status_code == 200
    assert emulator.video_requests() == []


def test_video_route_keeps_only_the_most_recent_requests(emulator: KlingEmulator) -> None:
    with requests.Session() as session:
        for number in range(VIDEO_REQUESTS_KEPT + 5):
            session.get(f"{emulator.base_url}/_emulator/videos/missing.mp4?n={number}", timeout=10)

    recorded = emulator.video_requests()

    assert len(recorded) == VIDEO_REQUESTS_KEPT
    assert recorded[0]["path"].endswith("?n=5")
    assert recorded[-1]["path"].endswith(f"?n={VIDEO_REQUESTS_KEPT + 4}")


def test_control_outputs_never_show_api_keys(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(api_keys=("sk-secret-one", "sk-secret-two"))
    submitted_task(emulator)

    outputs = json.dumps([emulator.stats(), emulator.jobs()])

    assert "sk-secret" not in outputs
    assert emulator.stats()["credits_remaining"] == {"key-1": 10_000 - TEXT_TO_VIDEO_PRICE, "key-2": 10_000}


def test_reset_clears_jobs_counters_faults_and_ledger(emulator: KlingEmulator) -> None:
    submitted_task(emulator)
    emulator.inject("status", "drop", count=3)

    answer = requests.post(f"{emulator.base_url}/_emulator/reset", timeout=10)

    assert answer.status_code == 200
    stats = emulator.stats()
    assert emulator.jobs() == []
    assert stats["jobs_created"] == 0
    assert stats["requests"] == {"submit": 0, "status": 0, "video": 0}
    assert stats["faults_pending"] == {"submit": 0, "status": 0, "video": 0}
    assert stats["credits_remaining"] == {"key-1": 10_000}


def test_credits_route_sets_a_keys_balance(emulator: KlingEmulator) -> None:
    answer = requests.post(
        f"{emulator.base_url}/_emulator/credits",
        json={"api_key": emulator.api_key, "credits": 50},
        timeout=10,
    )

    assert answer.json() == {"success": True, "account": "key-1", "credits_remaining": 50}
    assert submit(emulator).json()["data"]["credits_remaining"] == 50 - TEXT_TO_VIDEO_PRICE
    assert submit(emulator).status_code == 402


def test_credits_route_refuses_an_unknown_key(emulator: KlingEmulator) -> None:
    answer = requests.post(
        f"{emulator.base_url}/_emulator/credits", json={"api_key": "nobody", "credits": 50}, timeout=10
    )

    assert answer.status_code == 400


def test_a_held_job_runs_past_its_time_until_released(emulator: KlingEmulator) -> None:
    held = requests.post(f"{emulator.base_url}/_emulator/hold", json={"count": 1}, timeout=10)
    task_id = submitted_task(emulator)
    [job] = emulator.jobs()
    time.sleep(max(0.0, job["ready_at"] - time.time()) + 0.2)

    running = status(emulator, task_id).json()["data"]
    released = requests.post(f"{emulator.base_url}/_emulator/release", timeout=10)

    assert held.json() == {"success": True, "holding": 1}
    assert (running["status"], running["progress"]) == ("processing", 99)
    assert released.json() == {"success": True, "released": 1}
    assert status(emulator, task_id).json()["data"]["status"] == "completed"


def test_a_job_released_after_its_time_ended_at_its_release(emulator: KlingEmulator) -> None:
    emulator.hold(1)
    submitted_task(emulator)
    [job] = emulator.jobs()
    time.sleep(max(0.0, job["ready_at"] - time.time()) + 0.2)

    releasing = time.time()
    emulator.release()

    [released] = emulator.jobs()
    assert released["ready_at"] >= releasing


def test_a_job_released_before_its_time_keeps_its_time(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(min_seconds=60, max_seconds=60)
    emulator.hold(1)
    submitted_task(emulator)
    [job] = emulator.jobs()

    emulator.release()

    [released] = emulator.jobs()
    assert released["ready_at"] == job["ready_at"]


def test_a_hold_covers_the_next_jobs_created_and_no_more(emulator: KlingEmulator) -> None:
    emulator.hold(2)

    task_ids = [submitted_task(emulator) for _ in range(3)]
    time.sleep(0.5)  # every job's own time has passed

    assert [status(emulator, task_id).json()["data"]["status"] for task_id in task_ids] == [
        "processing",
        "processing",
        "completed",
    ]
    assert emulator.release() == 2


def test_release_cancels_holds_not_yet_used(emulator: KlingEmulator) -> None:
    emulator.hold(1)
    emulator.release()

    final, _ = wait_until_finished(emulator, submitted_task(emulator))

    assert final["status"] == "completed"


def test_release_of_task_ids_lets_only_those_jobs_end(emulator: KlingEmulator) -> None:
    emulator.hold(2)
    first, second = submitted_task(emulator), submitted_task(emulator)
    time.sleep(0.5)  # both jobs' own time has passed

    released = requests.post(
        f"{emulator.base_url}/_emulator/release", json={"task_ids": [second, "unknown"]}, timeout=10
    )

    assert released.json() == {"success": True, "released": 1}
    assert status(emulator, first).json()["data"]["status"] == "processing"
    assert status(emulator, second).json()["data"]["status"] == "completed"


def test_hold_route_refuses_a_count_below_one(emulator: KlingEmulator) -> None:
    answer = requests.post(f"{emulator.base_url}/_emulator/hold", json={"count": 0}, timeout=10)

    assert answer.status_code == 400
    assert answer.json()["error"] == "count must be a whole number >= 1, got 0"


# Determinism, persistence, configuration


def test_same_seed_gives_the_same_task_ids_and_durations(
    kling_emulator_factory: KlingEmulatorFactory,
) -> None:
    first, second = kling_emulator_factory(seed=7), kling_emulator_factory(seed=7)

    def run(emulator: KlingEmulator) -> list[tuple[str, float]]:
        for _ in range(3):
            submitted_task(emulator)
        return [(job["task_id"], round(job["ready_at"] - job["created_at"], 3)) for job in emulator.jobs()]

    assert run(first) == run(second)


def test_different_seeds_give_different_task_ids(kling_emulator_factory: KlingEmulatorFactory) -> None:
    first, second = kling_emulator_factory(seed=7), kling_emulator_factory(seed=8)

    assert submitted_task(first) != submitted_task(second)


def test_polling_does_not_shift_the_seeded_sequence(kling_emulator_factory: KlingEmulatorFactory) -> None:
    quiet = kling_emulator_factory(seed=7)
    busy = kling_emulator_factory(seed=7, status_faults=FaultRates(garbage=0.5))
    submitted_task(quiet)
    for _ in range(5):
        status(busy, submitted_task(busy))

    assert submitted_task(quiet) == busy.jobs()[1]["task_id"]


def test_state_file_keeps_jobs_and_credits_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "kling-state.json"
    with KlingEmulator(speed=600, seed=3, state_file=state_file) as before:
        task_id = submitted_task(before)
        status(before, task_id)

    with KlingEmulator(speed=600, seed=3, state_file=state_file) as after:
        final, _ = wait_until_finished(after, task_id)
        [job] = after.jobs()
        assert final["status"] == "completed"
        assert final["video_url"].startswith(after.base_url)
        assert job["task_id"] == task_id
        assert len(job["status_polls"]) >= 2
        assert after.stats()["credits_remaining"] == {"key-1": 10_000 - TEXT_TO_VIDEO_PRICE}
        assert submitted_task(after) != task_id


def test_unreadable_state_file_stops_the_start(tmp_path: Path) -> None:
    state_file = tmp_path / "kling-state.json"
    state_file.write_text("not json")

    with pytest.raises(ValueError, match="not a Kling emulator state file"):
        KlingEmulator(state_file=state_file).start()


@pytest.mark.parametrize(
    "build",
    [
        lambda: EmulatorConfig(min_seconds=90, max_seconds=60),
        lambda: EmulatorConfig(speed=0),
        lambda: EmulatorConfig(api_keys=()),
        lambda: EmulatorConfig(credits=-1),
        lambda: EmulatorConfig(job_failure_rate=1.5),
        lambda: FaultRates(drop=0.6, garbage=0.6),
    ],
    ids=["min-above-max", "zero-speed", "no-keys", "negative-credits", "failure-rate", "rates-above-one"],
)
def test_config_refuses_impossible_settings(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):
        build()


def test_many_concurrent_clients_are_all_served(kling_emulator_factory: KlingEmulatorFactory) -> None:
    emulator = kling_emulator_factory(credits=1_000_000)

    async def crowd() -> list[int]:
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector, headers=headers(emulator.api_key)) as session:

            async def one() -> int:
                async with session.post(emulator.base_url + SUBMIT_PATH, json=TEXT_TO_VIDEO) as response:
                    await response.read()
                    return response.status

            return await asyncio.gather(*(one() for _ in range(2000)))

    assert asyncio.run(crowd()) == [201] * 2000
    assert emulator.stats()["jobs_created"] == 2000


# The command line


@pytest.mark.timeout(30)
def test_cli_serves_on_a_free_port_and_exits_cleanly_on_sigterm() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_kling.emulator", "--port", "0", "--speed", "600"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        first_line = process.stdout.readline()
        prefix = "Kling emulator listening on http://127.0.0.1:"
        assert first_line.startswith(prefix), first_line
        base_url = first_line.removeprefix("Kling emulator listening on ").strip()

        response = requests.post(
            base_url + SUBMIT_PATH, json=TEXT_TO_VIDEO, headers=headers("kling-emulator-key"), timeout=10
        )
        assert response.status_code == 201

        process.send_signal(signal.SIGTERM)
        rest_of_stdout, stderr = process.communicate(timeout=10)
    finally:
        process.kill()
        process.wait()

    assert process.returncode == 0, stderr
    assert rest_of_stdout == ""
    assert "Traceback" not in stderr


def test_scripted_fault_on_the_video_download(emulator: KlingEmulator) -> None:
    final, _ = wait_until_finished(emulator, submitted_task(emulator))
    emulator.inject("video", "server_error", count=1)

    assert [requests.get(final["video_url"], timeout=10).status_code for _ in range(2)] == [503, 200]
