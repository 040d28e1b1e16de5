"""KlingHook.download_video: keep the finished video on any object storage, atomically and bounded."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest
import requests
import urllib3
from airflow.sdk import ObjectStoragePath
from airflow.sdk.io.store import attach
from hook_setup import connect, quick_hook

from airflow_provider_kling.core.api import SpeedFloor, SpeedWatch
from airflow_provider_kling.core.errors import KlingDownloadError, KlingTransportError
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.hooks.kling import KlingHook

ASSETS = Path(__file__).resolve().parent.parent / "airflow_provider_kling" / "emulator" / "assets"


@pytest.fixture
def hook(emulator: KlingEmulator) -> KlingHook:
    return quick_hook()


@pytest.fixture
def video_url(hook: KlingHook) -> str:
    task_id = hook.submit(GenerationRequest("a fox")).task_id
    deadline = time.monotonic() + 10
    while (status := hook.get_status(task_id)).state is JobState.RUNNING and time.monotonic() < deadline:
        time.sleep(0.1)
    assert status.video_url
    return status.video_url


@pytest.fixture
def memory_storage() -> Iterator[ObjectStoragePath]:
    attach(protocol="memory", fs=fsspec.filesystem("memory"))  # fsspec's in-memory filesystem
    root = ObjectStoragePath("memory://kling-tests/videos")
    yield root
    if root.exists():
        root.fs.rm(root.path, recursive=True)


def expected_sha256() -> str:
    return hashlib.sha256((ASSETS / "clip-5s-silent.mp4").read_bytes()).hexdigest()


def test_video_is_saved_to_a_local_file_with_its_sha256(
    hook: KlingHook, video_url: str, tmp_path: Path
) -> None:
    destination = ObjectStoragePath(f"file://{tmp_path}/2026-11-25/clip.mp4")
    saved = hook.download_video(video_url, destination)
    assert saved.path == str(destination)
    assert saved.sha256 == expected_sha256()
    assert saved.bytes == (ASSETS / "clip-5s-silent.mp4").stat().st_size
    assert (tmp_path / "2026-11-25" / "clip.mp4").read_bytes()[4:8] == b"ftyp"
    assert [p.name for p in (tmp_path / "2026-11-25").iterdir()] == ["clip.mp4"]


def test_video_is_saved_to_an_fsspec_filesystem(
    hook: KlingHook, video_url: str, memory_storage: ObjectStoragePath
) -> None:
    destination = memory_storage / "clip.mp4"
    saved = hook.download_video(video_url, destination)
    assert saved.sha256 == expected_sha256()
    assert hashlib.sha256(destination.read_bytes()).hexdigest() == expected_sha256()
    assert [p.name for p in memory_storage.iterdir()] == ["clip.mp4"]


def test_a_download_cut_short_leaves_nothing_at_the_final_path(
    hook: KlingHook, video_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    chunks = iter([b"\x00\x00\x00\x18ftypmp42"])

    def one_chunk_then_reset(self: Any, amt: int | None = None, decode_content: bool | None = None) -> bytes:
        for chunk in chunks:
            return chunk
        raise urllib3.exceptions.ProtocolError("Connection broken: connection reset by peer")

    monkeypatch.setattr(urllib3.response.HTTPResponse, "read1", one_chunk_then_reset)
    with pytest.raises(KlingTransportError):
        hook.download_video(video_url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert list(tmp_path.iterdir()) == []


def test_a_video_over_the_size_cap_is_refused_and_not_kept(
    hook: KlingHook, video_url: str, tmp_path: Path
) -> None:
    with pytest.raises(KlingDownloadError, match="larger than the 1000 allowed"):
        hook.download_video(video_url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"), max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


def test_a_stream_over_the_size_cap_without_a_length_is_cut_and_not_kept(
    hook: KlingHook, video_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_get = requests.Session.get

    def get_without_length(self: requests.Session, url: str, **kwargs: Any) -> requests.Response:
        response = real_get(self, url, **kwargs)
        response.headers.pop("Content-Length", None)
        return response

    monkeypatch.setattr(requests.Session, "get", get_without_length)
    with pytest.raises(KlingDownloadError, match="larger than 1000 bytes"):
        hook.download_video(video_url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"), max_bytes=1000)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("url", ["ftp://cdn.example.com/v.mp4", "file:///etc/passwd", "javascript:alert(1)"])
def test_a_video_url_that_is_not_http_is_refused_before_any_request(
    hook: KlingHook, kling_emulator: KlingEmulator, tmp_path: Path, url: str
) -> None:
    with pytest.raises(KlingDownloadError, match="not http"):
        hook.download_video(url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert kling_emulator.stats()["requests"]["video"] == 0


def test_a_transient_download_failure_is_retried(
    hook: KlingHook, kling_emulator: KlingEmulator, video_url: str, tmp_path: Path
) -> None:
    kling_emulator.inject("video", "server_error", count=2)
    saved = hook.download_video(video_url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert saved.sha256 == expected_sha256()
    assert kling_emulator.stats()["requests"]["video"] == 3


def test_an_expired_link_is_a_clear_error(
    hook: KlingHook, kling_emulator: KlingEmulator, tmp_path: Path
) -> None:
    gone = f"{kling_emulator.base_url}/_emulator/videos/no-such-task.mp4"
    with pytest.raises(KlingDownloadError, match="HTTP 404"):
        hook.download_video(gone, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))


def test_a_page_that_is_not_a_video_is_refused(
    hook: KlingHook, kling_emulator: KlingEmulator, tmp_path: Path
) -> None:
    page = f"{kling_emulator.base_url}/_emulator/stats"
    with pytest.raises(KlingDownloadError, match="not a video"):
        hook.download_video(page, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert list(tmp_path.iterdir()) == []


def test_the_api_key_is_not_sent_to_the_video_host(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A key with reserved characters, so its URL-encoded form is a different string to look for.
    api_key = "sk-live/Kling+key=1&2"
    leaks = (api_key, "sk-live%2FKling%2Bkey%3D1%262")
    with KlingEmulator(api_keys=(api_key,), speed=600) as emulator:
        connect(monkeypatch, emulator)
        hook = KlingHook()
        task_id = hook.submit(GenerationRequest("a fox")).task_id
        deadline = time.monotonic() + 10
        while (status := hook.get_status(task_id)).state is JobState.RUNNING and time.monotonic() < deadline:
            time.sleep(0.05)
        assert status.video_url

        hook.download_video(status.video_url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
        received = emulator.video_requests()  # what the video host was sent, not what the hook meant to send

    [request] = received
    assert request["path"] == f"/_emulator/videos/{task_id}.mp4"
    headers = [f"{name}: {value}" for name, value in request["headers"]]
    assert [header for header in headers if header.lower().startswith("authorization:")] == []
    assert [header for header in headers if any(leak.lower() in header.lower() for leak in leaks)] == []


# -- the speed floor --------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_download_at_the_floor_or_faster_never_stalls() -> None:
    clock = Clock()
    watch = SpeedWatch(SpeedFloor(bytes_per_second=100, seconds=10), clock)
    for _ in range(30):
        clock.now += 1
        assert watch.stalled(100) is None


def test_a_window_below_the_floor_is_a_stall_with_its_rate() -> None:
    clock = Clock()
    watch = SpeedWatch(SpeedFloor(bytes_per_second=100, seconds=10), clock)
    clock.now = 5
    assert watch.stalled(500) is None  # the window has not passed yet
    clock.now = 10
    assert watch.stalled(490) == 99.0


def test_each_window_is_judged_afresh() -> None:
    # A slow start is forgiven once a window ends above the floor; a later slow window is not.
    clock = Clock()
    watch = SpeedWatch(SpeedFloor(bytes_per_second=100, seconds=10), clock)
    clock.now = 10
    assert watch.stalled(5_000) is None
    clock.now = 20
    assert watch.stalled(10) == 1.0
