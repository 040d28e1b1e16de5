"""KlingHook against the emulator as a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import logging
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import requests
from hook_setup import QUICK_RETRIES, both_apis, connect, only_on, quick_hook, use_connection
from request_cases import INVALID_REQUESTS

from airflow_provider_kling.core.api import read_submit_response
from airflow_provider_kling.core.dialects.ulazai import DIALECT, SUBMIT_PATH
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingBadRequestError,
    KlingConnectionSettingError,
    KlingError,
    KlingInsufficientCreditsError,
    KlingNotFoundError,
    KlingResponseError,
    KlingServerError,
    KlingSubmitUncertainError,
    KlingTransportError,
    KlingValidationError,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.hooks import _aio as async_module
from airflow_provider_kling.hooks import kling as hook_module
from airflow_provider_kling.hooks._aio import shared_for_loop
from airflow_provider_kling.hooks.kling import KlingHook

IMAGE = "https://example.com/dog.jpg"

pytestmark = both_apis


@pytest.fixture
def hook(kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch) -> KlingHook:
    connect(monkeypatch, kling_emulator)
    return quick_hook()


def wait_until_done(hook: KlingHook, task_id: str, seconds: float = 10) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status = hook.get_status(task_id)
        if status.state is not JobState.RUNNING:
            return status
        time.sleep(0.1)
    raise AssertionError(f"job {task_id} did not finish in {seconds} s")


def jobs_created(emulator: KlingEmulator) -> int:
    return int(emulator.stats()["jobs_created"])


def requests_to(emulator: KlingEmulator, endpoint: str) -> int:
    return int(emulator.stats()["requests"][endpoint])


# -- the connection ------------------------------------------------------------------------------


def test_connection_host_without_scheme_means_https(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, "api.example.com", "k")
    assert KlingHook().base_url == "https://api.example.com"


def test_connection_without_host_uses_the_vendor_url(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, "", "k")
    assert KlingHook().base_url == "https://ulazai.com"


def test_connection_from_a_uri_with_scheme_in_host_and_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_KLING_URI", "kling://http://:the%2Fkey@127.0.0.1:8088")
    hook = KlingHook("kling_uri")
    assert hook.base_url == "http://127.0.0.1:8088"
    sent = hook.get_conn().prepare_request(requests.Request("GET", hook.base_url))
    assert sent.headers["Authorization"] == "Bearer the/key"


def test_connection_without_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, "https://ulazai.com", "")
    with pytest.raises(KlingAuthError, match="no API key"):
        KlingHook().get_status("anything")


def test_hook_repr_has_no_key(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, "https://ulazai.com", "repr-secret-key")
    hook = KlingHook()
    assert hook.base_url
    assert "repr-secret-key" not in repr(hook) and "repr-secret-key" not in repr(hook.__dict__)


# -- submit and status ---------------------------------------------------------------------------


def test_text_to_video_is_submitted_and_completes(
    hook: KlingHook, kling_emulator: KlingEmulator, api: str
) -> None:
    result = hook.submit(GenerationRequest("a red fox in snow", duration=10))
    if api == "ulazai":  # charged at the submit, which says so; Kling's own API says so at the end
        assert result.credits_used == 100 and result.credits_remaining is not None
    status = wait_until_done(hook, result.task_id)
    assert status.state is JobState.COMPLETED
    assert status.video_url and status.duration == 10
    assert jobs_created(kling_emulator) == 1


@only_on("ulazai")  # Kling's own API: tests/test_klingai.py
def test_image_to_video_is_submitted_and_completes(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    result = hook.submit(GenerationRequest("the dog runs", image_urls=[IMAGE], sound=True))
    status = wait_until_done(hook, result.task_id)
    assert (status.state, status.has_audio) == (JobState.COMPLETED, True)
    job = next(j for j in kling_emulator.jobs() if j["task_id"] == result.task_id)
    assert job["request"]["imageUrls"] == [IMAGE]


@only_on("ulazai")  # Kling's own API reports no progress
def test_status_of_a_running_job_reports_progress(hook: KlingHook) -> None:
    result = hook.submit(GenerationRequest("slow clouds"))
    status = hook.get_status(result.task_id)
    assert status.state is JobState.RUNNING and status.progress is not None


def test_failed_job_reads_as_failed_with_the_vendor_message(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    with KlingEmulator(speed=60, seed=1, job_failure_rate=1.0, api=api) as emulator:
        connect(monkeypatch, emulator)
        hook = quick_hook()
        status = wait_until_done(hook, hook.submit(GenerationRequest("doomed")).task_id)
    assert status.state is JobState.FAILED and status.message


# -- errors from real HTTP answers ---------------------------------------------------------------


def test_wrong_key_is_an_auth_error_without_retries(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator, api_key="not-the-key")
    with pytest.raises(KlingAuthError) as raised:
        quick_hook().get_status("any")
    assert raised.value.http_status == 401
    assert requests_to(kling_emulator, "status") == 1


def test_unknown_task_is_not_found_without_retries(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    with pytest.raises(KlingNotFoundError) as raised:
        hook.get_status("no-such-task")
    assert raised.value.task_id == "no-such-task"
    # Where each mode's jobs have a path of their own, each is asked once.
    assert requests_to(kling_emulator, "status") == len(hook.dialect.status_paths("no-such-task", None))


def test_too_few_credits_is_a_credit_error_and_creates_no_job(
    hook: KlingHook, kling_emulator: KlingEmulator
) -> None:
    kling_emulator.set_credits(kling_emulator.api_key, 1)
    with pytest.raises(KlingInsufficientCreditsError):
        hook.submit(GenerationRequest("expensive", duration=10))
    assert jobs_created(kling_emulator) == 0
    assert requests_to(kling_emulator, "submit") == 1


@only_on("ulazai")  # its body by hand; Kling's own API's codes: tests/test_klingai.py
def test_server_side_rejection_is_a_bad_request_error(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    # A body that passes our rules cannot be refused by the emulator, so send one by hand.
    response = hook.get_conn().post(kling_emulator.base_url + SUBMIT_PATH, json={"prompt": ""})
    with pytest.raises(KlingBadRequestError, match="prompt"):
        read_submit_response(DIALECT, response.status_code, response.content, None)


def test_status_rides_out_a_burst_of_server_errors(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("storm")).task_id
    kling_emulator.inject("status", "server_error", count=2)
    assert hook.get_status(task_id).task_id == task_id
    assert requests_to(kling_emulator, "status") == 3


def test_status_gives_up_after_its_attempts(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("storm")).task_id
    kling_emulator.inject("status", "server_error", count=10)
    with pytest.raises(KlingServerError):
        hook.get_status(task_id)
    assert requests_to(kling_emulator, "status") == QUICK_RETRIES.attempts


def test_html_502_becomes_a_readable_server_error(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("gateway")).task_id
    kling_emulator.inject("status", "html_502", count=10)
    with pytest.raises(KlingServerError) as raised:
        hook.get_status(task_id)
    assert raised.value.http_status == 502
    assert "502" in str(raised.value) and "<html" not in str(raised.value).lower()


def test_rate_limit_then_success_waits_as_told(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("patience")).task_id
    kling_emulator.inject("status", "rate_limit", count=1, retry_after=1)
    started = time.monotonic()
    assert hook.get_status(task_id).task_id == task_id
    assert time.monotonic() - started >= 1.0
    assert requests_to(kling_emulator, "status") == 2


def test_unreadable_status_answer_is_retried(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("noise")).task_id
    kling_emulator.inject("status", "garbage", count=1)
    assert hook.get_status(task_id).task_id == task_id


def test_dropped_status_connection_is_retried(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("drop")).task_id
    kling_emulator.inject("status", "drop", count=1)
    assert hook.get_status(task_id).task_id == task_id


def test_submit_rate_limited_is_sent_again_and_creates_one_job(
    hook: KlingHook, kling_emulator: KlingEmulator
) -> None:
    kling_emulator.inject("submit", "rate_limit", count=1, retry_after=0)
    hook.submit(GenerationRequest("queue"))
    assert requests_to(kling_emulator, "submit") == 2
    assert jobs_created(kling_emulator) == 1


def test_submit_server_error_is_not_retried_and_says_a_job_may_exist(
    hook: KlingHook, kling_emulator: KlingEmulator
) -> None:
    kling_emulator.inject("submit", "server_error", count=5)
    with pytest.raises(KlingSubmitUncertainError, match="may have been created") as raised:
        hook.submit(GenerationRequest("maybe"))
    assert raised.value.http_status == 503
    assert requests_to(kling_emulator, "submit") == 1


def test_submit_whose_answer_is_lost_is_not_retried(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    kling_emulator.inject("submit", "timeout_after_create", count=1, delay=0.2)
    with pytest.raises(KlingSubmitUncertainError, match="Check the vendor dashboard"):
        hook.submit(GenerationRequest("lost answer"))
    assert requests_to(kling_emulator, "submit") == 1
    assert jobs_created(kling_emulator) == 1


def test_submit_unreadable_success_is_uncertain(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    kling_emulator.inject("submit", "garbage", count=1)
    with pytest.raises(KlingSubmitUncertainError):
        hook.submit(GenerationRequest("garbled"))
    assert requests_to(kling_emulator, "submit") == 1


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_submit_refused_before_sending_is_retried_then_reported(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    use_connection(monkeypatch, f"http://127.0.0.1:{closed_port()}", "k", api=api)
    with pytest.raises(KlingTransportError) as raised:
        quick_hook().submit(GenerationRequest("nobody home"))
    assert raised.value.request_sent is False
    assert not isinstance(raised.value, KlingSubmitUncertainError)


@pytest.mark.parametrize(
    "arguments", [case[1] for case in INVALID_REQUESTS], ids=[case[0] for case in INVALID_REQUESTS]
)
def test_invalid_request_never_reaches_the_server(
    hook: KlingHook, kling_emulator: KlingEmulator, arguments: dict[str, Any]
) -> None:
    with pytest.raises(KlingValidationError):
        hook.submit(GenerationRequest(**arguments))
    assert kling_emulator.stats()["requests"] == {"submit": 0, "status": 0, "video": 0}


# -- test_connection -----------------------------------------------------------------------------


def test_test_connection_accepts_a_good_key_without_spending(
    hook: KlingHook, kling_emulator: KlingEmulator
) -> None:
    ok, message = hook.test_connection()
    assert ok, message
    assert "accepted" in message
    assert jobs_created(kling_emulator) == 0


def test_test_connection_reports_a_wrong_key(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator, api_key="wrong-key")
    ok, message = KlingHook().test_connection()
    assert not ok and "401" in message
    assert "(connection" not in message  # the UI tests a form under a made-up id: naming it misleads


def test_a_wrong_key_error_names_the_connection_on_both_paths(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator, conn_id="kling_marketing", api_key="wrong-key")
    with pytest.raises(KlingAuthError, match="connection 'kling_marketing'"):
        quick_hook(conn_id="kling_marketing").get_status("any")
    with pytest.raises(KlingAuthError, match="connection 'kling_marketing'"):
        asyncio.run(quick_hook(conn_id="kling_marketing").aget_status("any"))


def test_test_connection_reports_an_unreachable_host(monkeypatch: pytest.MonkeyPatch) -> None:
    use_connection(monkeypatch, f"http://127.0.0.1:{closed_port()}", "k")
    ok, message = KlingHook().test_connection()
    assert not ok and "could not connect" in message


# -- async ---------------------------------------------------------------------------------------


def test_async_status_reads_the_job(hook: KlingHook) -> None:
    task_id = hook.submit(GenerationRequest("async fox")).task_id
    status = asyncio.run(quick_hook().aget_status(task_id))
    assert status.task_id == task_id and status.state is JobState.RUNNING


def test_async_status_rides_out_server_errors(hook: KlingHook, kling_emulator: KlingEmulator) -> None:
    task_id = hook.submit(GenerationRequest("async storm")).task_id
    kling_emulator.inject("status", "server_error", count=2)
    assert asyncio.run(quick_hook().aget_status(task_id)).task_id == task_id


def test_async_wrong_key_fails_at_once(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator, api_key="wrong-key")
    with pytest.raises(KlingAuthError):
        asyncio.run(quick_hook().aget_status("any"))
    assert requests_to(kling_emulator, "status") == 1


@pytest.fixture
def sessions_opened(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[aiohttp.ClientSession]]:
    opened: list[aiohttp.ClientSession] = []
    real_session = aiohttp.ClientSession

    def counting_session(*args: Any, **kwargs: Any) -> aiohttp.ClientSession:
        opened.append(real_session(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(async_module.aiohttp, "ClientSession", counting_session)
    yield opened


def test_all_pollers_in_one_loop_share_one_session(
    hook: KlingHook, sessions_opened: list[aiohttp.ClientSession]
) -> None:
    task_ids = [hook.submit(GenerationRequest(f"clip {n}")).task_id for n in range(5)]

    async def poll_all() -> None:
        async with shared_for_loop():
            for _ in range(3):
                await asyncio.gather(*(quick_hook().aget_status(t) for t in task_ids))

    asyncio.run(poll_all())
    assert len(sessions_opened) == 1
    assert sessions_opened[0].closed


def test_shared_session_closes_when_its_last_holder_leaves(
    sessions_opened: list[aiohttp.ClientSession],
) -> None:
    async def hold_twice() -> bool:
        async with shared_for_loop() as outer:
            async with shared_for_loop() as inner:
                assert inner is outer
            still_open = not outer.session.closed
        return still_open

    assert asyncio.run(hold_twice())
    assert len(sessions_opened) == 1 and sessions_opened[0].closed


def test_all_waits_in_one_loop_read_the_connection_once(
    hook: KlingHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = hook.submit(GenerationRequest("a fox")).task_id
    lookups: list[str] = []
    real_lookup = hook_module.get_async_connection

    async def counted_lookup(conn_id: str, **kwargs: Any) -> Any:
        lookups.append(conn_id)
        return await real_lookup(conn_id, **kwargs)

    monkeypatch.setattr(hook_module, "get_async_connection", counted_lookup)

    async def many_waits() -> None:
        async with shared_for_loop():  # as the waiting triggers hold it
            await asyncio.gather(*(quick_hook().aget_status(task_id) for _ in range(20)))
            await asyncio.gather(*(quick_hook().aget_status(task_id) for _ in range(20)))

    asyncio.run(many_waits())
    assert lookups == ["kling_default"]


def test_a_failed_connection_refresh_keeps_the_waits_on_the_settings_they_had(
    hook: KlingHook, monkeypatch: pytest.MonkeyPatch
) -> None:
    task_id = hook.submit(GenerationRequest("a fox")).task_id
    monkeypatch.setattr(async_module, "SETTINGS_SECONDS", 0.0)  # every poll reads again
    real_lookup = hook_module.get_async_connection
    lookups: list[str] = []

    async def lookup_that_fails_after_the_first(conn_id: str, **kwargs: Any) -> Any:
        lookups.append(conn_id)
        if len(lookups) > 1:
            raise RuntimeError("the secrets backend is unreachable")
        return await real_lookup(conn_id, **kwargs)

    monkeypatch.setattr(hook_module, "get_async_connection", lookup_that_fails_after_the_first)

    async def two_polls() -> list[str]:
        async with shared_for_loop():
            return [(await quick_hook().aget_status(task_id)).task_id for _ in range(2)]

    assert asyncio.run(two_polls()) == [task_id, task_id]
    assert len(lookups) == 2


def test_a_rejected_key_is_read_again_on_the_next_poll(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, kling_emulator)
    task_id = quick_hook().submit(GenerationRequest("a fox")).task_id
    connect(monkeypatch, kling_emulator, api_key="an-old-key")

    async def rotate_the_key_after_a_401() -> str:
        async with shared_for_loop():
            with pytest.raises(KlingAuthError):
                await quick_hook().aget_status(task_id)
            connect(monkeypatch, kling_emulator)
            return (await quick_hook().aget_status(task_id)).task_id

    assert asyncio.run(rotate_the_key_after_a_401()) == task_id


@pytest.fixture
def netrc_with_a_default_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("default login someone password something-else\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))


def test_a_netrc_entry_does_not_disturb_the_async_polls(
    hook: KlingHook, netrc_with_a_default_login: None
) -> None:
    task_id = hook.submit(GenerationRequest("a fox")).task_id
    assert asyncio.run(quick_hook().aget_status(task_id)).task_id == task_id


def test_a_netrc_entry_does_not_replace_the_key_on_sync_calls(
    hook: KlingHook, netrc_with_a_default_login: None
) -> None:
    task_id = hook.submit(GenerationRequest("a fox")).task_id
    assert hook.get_status(task_id).task_id == task_id


# -- secrets -------------------------------------------------------------------------------------


def test_api_key_appears_in_no_log_line_or_error(
    kling_emulator: KlingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    connect(monkeypatch, kling_emulator)
    caplog.set_level(logging.DEBUG)
    hook = quick_hook()
    messages: list[str] = []
    task_id = hook.submit(GenerationRequest("secret life of keys")).task_id
    kling_emulator.inject("status", "server_error", count=1)
    kling_emulator.inject("status", "rate_limit", count=1, retry_after=0)
    hook.get_status(task_id)
    asyncio.run(hook.aget_status(task_id))
    kling_emulator.inject("submit", "server_error", count=1)
    for failing in (lambda: hook.submit(GenerationRequest("x")), lambda: hook.get_status("missing")):
        with pytest.raises(KlingError) as raised:
            failing()
        messages += [str(raised.value), repr(raised.value), repr(raised.value.__cause__)]
    captured = capfd.readouterr()
    assert "Kling call failed" in caplog.text  # the retries above were logged
    secrets = hook._settings.credentials.secrets()  # the key; on Kling's own API, the tokens made too
    assert kling_emulator.api_key in secrets
    for text in [caplog.text, captured.out, captured.err, *messages]:
        assert not [secret for secret in secrets if secret in text]


class SlowWriter(socketserver.BaseRequestHandler):
    """Answers any request with a status body sent in two pieces, 50 ms apart, as proxies may."""

    body = b'{"success": true, "data": {"task_id": "t", "status": "completed", "video_url": "https://cdn/v.mp4"}}'

    def handle(self) -> None:
        self.request.recv(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(self.body)}\r\n"
        self.request.sendall((head + "Connection: close\r\n\r\n").encode() + self.body[:30])
        time.sleep(0.05)
        self.request.sendall(self.body[30:])


@pytest.fixture
def slow_writer(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), SlowWriter) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        use_connection(monkeypatch, url, "k")
        yield url
        server.shutdown()


def test_a_status_body_that_arrives_in_pieces_is_read_whole(slow_writer: str) -> None:
    assert quick_hook().get_status("t").state is JobState.COMPLETED
    assert asyncio.run(quick_hook().aget_status("t")).state is JobState.COMPLETED


def test_submit_refused_before_sending_is_tried_as_often_as_the_policy_allows(
    monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    use_connection(monkeypatch, f"http://127.0.0.1:{closed_port()}", "k", api=api)
    hook = quick_hook()
    attempts: list[GenerationRequest] = []
    real_submit_once = hook._submit_once

    def counted(request: GenerationRequest, *rest: Any) -> Any:
        attempts.append(request)
        return real_submit_once(request, *rest)

    monkeypatch.setattr(hook, "_submit_once", counted)
    with pytest.raises(KlingTransportError):
        hook.submit(GenerationRequest("nobody home"))
    assert len(attempts) == QUICK_RETRIES.attempts


@only_on("ulazai")  # Kling's own API does not say what is left
def test_a_submit_warns_when_credits_fall_below_the_connection_threshold(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    use_connection(
        monkeypatch, kling_emulator.base_url, kling_emulator.api_key, extra={"low_credit_warning": 100}
    )
    kling_emulator.set_credits(kling_emulator.api_key, 140)
    hook = quick_hook()
    hook.submit(GenerationRequest("first"))  # 95 left
    out, err = capfd.readouterr()
    assert "Only 95 Kling credits left" in out + err


@pytest.mark.parametrize("setting", ["100", 100])
@only_on("ulazai")
def test_a_low_credit_threshold_given_as_text_or_number_warns_alike(
    kling_emulator: KlingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    setting: Any,
) -> None:
    use_connection(
        monkeypatch, kling_emulator.base_url, kling_emulator.api_key, extra={"low_credit_warning": setting}
    )
    kling_emulator.set_credits(kling_emulator.api_key, 140)
    quick_hook().submit(GenerationRequest("first"))
    out, err = capfd.readouterr()
    assert "Only 95 Kling credits left" in out + err


@pytest.mark.parametrize("setting", ["many", 2.5, -1])
def test_a_bad_low_credit_threshold_is_the_same_clear_error_on_both_paths(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, setting: Any
) -> None:
    use_connection(
        monkeypatch, kling_emulator.base_url, kling_emulator.api_key, extra={"low_credit_warning": setting}
    )
    with pytest.raises(KlingConnectionSettingError, match=f"low_credit_warning={setting!r}"):
        quick_hook().get_status("any")
    with pytest.raises(KlingConnectionSettingError, match=f"low_credit_warning={setting!r}"):
        asyncio.run(quick_hook().aget_status("any"))
    assert requests_to(kling_emulator, "status") == 0


@only_on("ulazai")
def test_a_submit_does_not_warn_above_the_threshold(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    use_connection(
        monkeypatch, kling_emulator.base_url, kling_emulator.api_key, extra={"low_credit_warning": 100}
    )
    quick_hook().submit(GenerationRequest("first"))
    out, err = capfd.readouterr()
    assert "credits left" not in out + err


class HostileServer(socketserver.BaseRequestHandler):
    """Answers every request with HTTP 200 and whatever ``body`` the test set."""

    body = b""

    def handle(self) -> None:
        self.request.recv(65536)
        head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(self.body)}\r\nConnection: close\r\n\r\n"
        self.request.sendall(head.encode() + self.body)


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"", "not JSON"),
        (b"<html><body>Welcome to nginx!</body></html>", "not JSON"),
        (b'{"success": true, "data": ["not", "an", "object"]}', "no 'data' object"),
        (b'{"success": true, "data": {"progress": 10}}', "lacks a valid 'status'"),
        (b'{"data": {"status": "completed"}}', "'video_url'"),
        (b'{"data": {"status": "processing", "pad": "' + b"x" * (5 * 1024 * 1024) + b'"}}', "larger than"),
    ],
    ids=["empty", "html", "data-not-object", "no-status", "completed-without-video", "5-MiB"],
)
def test_a_hostile_status_answer_is_a_clear_error_on_both_paths(
    body: bytes, said: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    HostileServer.body = body
    with socketserver.ThreadingTCPServer(("127.0.0.1", 0), HostileServer) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        use_connection(monkeypatch, f"http://127.0.0.1:{server.server_address[1]}", "k")
        with pytest.raises(KlingResponseError, match=said):
            quick_hook().get_status("t")
        with pytest.raises(KlingResponseError, match=said):
            asyncio.run(quick_hook().aget_status("t"))
        server.shutdown()


class Recorded:
    """Airflow's Stats, as the provider's metrics see it: each call kept as (kind, name, count, tags)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any, dict[str, str]]] = []

    def incr(self, stat: str, count: int = 1, *, tags: dict[str, str]) -> None:
        self.calls.append(("incr", stat, count, tags))


@pytest.fixture
def stats(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    from airflow_provider_kling import metrics

    recorded = Recorded()
    monkeypatch.setattr(metrics, "_stats", lambda: recorded)
    return recorded


def test_a_429_and_the_retry_after_it_are_counted(
    hook: KlingHook, kling_emulator: KlingEmulator, stats: Recorded
) -> None:
    task_id = hook.submit(GenerationRequest("patience")).task_id
    kling_emulator.inject("status", "rate_limit", count=1, retry_after=0)
    hook.get_status(task_id)
    assert stats.calls == [
        ("incr", "kling.api.rate_limited", 1, {"conn_id": "kling_default"}),
        ("incr", "kling.api.retries", 1, {"conn_id": "kling_default"}),
    ]


def test_the_async_status_counts_its_retries(
    hook: KlingHook, kling_emulator: KlingEmulator, stats: Recorded
) -> None:
    task_id = hook.submit(GenerationRequest("storm")).task_id
    kling_emulator.inject("status", "server_error", count=2)

    async def read() -> Any:
        async with hook.polling_session():
            return await hook.aget_status(task_id)

    assert asyncio.run(read()).task_id == task_id
    assert [name for _, name, _, _ in stats.calls] == ["kling.api.retries"] * 2


def test_a_metric_that_cannot_be_sent_never_fails_the_call(
    hook: KlingHook, kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_kling import metrics

    class Refusing:
        def incr(self, *args: Any, **kwargs: Any) -> None:
            raise ValueError("count must be a positive value.")  # as OpenTelemetry's counter says

    monkeypatch.setattr(metrics, "_stats", Refusing)
    task_id = hook.submit(GenerationRequest("patience")).task_id
    kling_emulator.inject("status", "rate_limit", count=1, retry_after=0)
    assert hook.get_status(task_id).task_id == task_id
