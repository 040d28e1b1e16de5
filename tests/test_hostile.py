"""Hostile servers on loopback: trickling, nesting, oversized, echoing, redirecting, and video hosts
where videos do not live. Each is a real TCP server; the hook, trigger and sensor meet it as they
would meet a hostile API or CDN.
"""

from __future__ import annotations

import asyncio
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk import ObjectStoragePath
from hook_setup import (
    ONE_TRY,
    QUICK_RETRIES,
    ROOMY_BUDGETS,
    SECRET,
    TIGHT_BUDGETS,
    VIDEO,
    both_apis,
    connect,
    quick_hook,
    resolving,
    use_connection,
)
from hostile_servers import (
    STATUS_COMPLETED,
    STATUS_PROCESSING,
    ScriptedServer,
    Trickle,
    answering,
    echo_of,
)

from airflow_provider_kling.core.addresses import AddressPolicy, KlingVideoAddressError, parse_allowed
from airflow_provider_kling.core.api import BUDGETS, RetryPolicy, SpeedFloor
from airflow_provider_kling.core.dialects.ulazai import read_submit_body
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingDownloadError,
    KlingError,
    KlingRateLimitError,
    KlingRedirectError,
    KlingResponseError,
    KlingResponseRefusedError,
    KlingServerError,
    KlingSubmitUncertainError,
    KlingTimeoutError,
    KlingTransportError,
    is_transient,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.triggers.kling import KlingStatusTrigger


def sent_through(trickle: Trickle, total: int) -> bool:
    time.sleep(trickle.gap * 3)  # the server notices the cut on its next write
    return trickle.sent >= total


# -- every call bounded in total time ----------------------------------------------------------

#: One 1 s request in a roomy call, so that the request's own budget is what cuts it, however long a
#: busy machine takes to get the request going (one try: a retry is test_a_status_call_retries_...).
ONE_REQUEST_BUDGET = replace(TIGHT_BUDGETS, call=10.0)


@both_apis
def test_a_status_answer_trickled_a_byte_at_a_time_is_cut_at_the_budget(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    trickle = Trickle(STATUS_PROCESSING)
    use_connection(monkeypatch, serve(trickle).url, api=api)
    with pytest.raises(KlingTimeoutError, match=r"127\.0\.0\.1.*status answer within its 1 s budget"):
        quick_hook(ONE_REQUEST_BUDGET, ONE_TRY).get_status("t")
    assert not sent_through(trickle, len(STATUS_PROCESSING))


@both_apis
def test_trickled_headers_are_cut_at_the_budget(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    trickle = Trickle(STATUS_PROCESSING, headers_too=True)
    use_connection(monkeypatch, serve(trickle).url, api=api)
    with pytest.raises(KlingTimeoutError, match="budget"):
        quick_hook(TIGHT_BUDGETS).get_status("t")


@both_apis
def test_a_status_call_retries_within_its_total_budget_only(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(Trickle(STATUS_PROCESSING))
    use_connection(monkeypatch, server.url, api=api)
    # 1 s a request, 1.5 s a call: room for a second try, cut short (or, on a busy machine, not made)
    with pytest.raises(KlingTimeoutError):
        quick_hook(TIGHT_BUDGETS).get_status("t")
    assert 1 <= len(server.requests) <= 2


@both_apis
def test_an_async_status_answer_trickled_is_cut_at_the_budget(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    trickle = Trickle(STATUS_PROCESSING)
    use_connection(monkeypatch, serve(trickle).url, api=api)
    single = quick_hook(ONE_REQUEST_BUDGET, ONE_TRY)
    with pytest.raises(KlingTimeoutError, match="within its 1 s budget"):
        asyncio.run(single.aget_status("t"))
    assert not sent_through(trickle, len(STATUS_PROCESSING))


@both_apis
def test_a_trickled_submit_answer_is_cut_and_says_a_job_may_exist(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(Trickle(b'{"success": true, "data": {"task_id": "abc", "status": "processing"}}'))
    use_connection(monkeypatch, server.url, api=api)
    with pytest.raises(KlingSubmitUncertainError, match="budget") as raised:
        quick_hook(TIGHT_BUDGETS).submit(GenerationRequest("a fox"))
    assert isinstance(raised.value.__cause__, KlingTimeoutError)
    assert len(server.requests) == 1  # never sent twice


@both_apis
def test_the_connection_test_ends_within_one_request_budget(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    use_connection(monkeypatch, serve(Trickle(STATUS_PROCESSING)).url, api=api)
    ok, message = quick_hook(TIGHT_BUDGETS).test_connection()
    assert not ok and "1 s budget" in message


def test_a_trickled_video_is_cut_at_the_download_budget_and_nothing_is_kept(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    trickle = Trickle(VIDEO[:200], gap=0.05, content_type="video/mp4")
    server = serve(trickle)
    use_connection(monkeypatch, server.url)  # the API's own address: allowed
    with pytest.raises(KlingTimeoutError, match=r"video within the download's 1\.5 s budget"):
        quick_hook(TIGHT_BUDGETS).download_video(
            f"{server.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
        )
    assert list(tmp_path.iterdir()) == []
    assert not sent_through(trickle, 200)


#: Ten megabytes that begin like an MP4: a real clip's size, so only the pace can end its download.
TEN_MB_VIDEO = VIDEO[:64] + bytes(10 * 1024 * 1024 - 64)


def test_a_video_dripped_a_byte_a_second_ends_at_the_speed_floors_window(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The default floor (64 KiB/s over 30 s) under a download budget of 60 s: the drip ends at the
    # floor's window, well before the budget (at 1 byte a second, before the 45th byte).
    trickle = Trickle(TEN_MB_VIDEO, gap=1.0, content_type="video/mp4")
    server = serve(trickle)
    use_connection(monkeypatch, server.url)
    budgets = replace(ROOMY_BUDGETS, download=60.0)
    assert budgets.download_floor == SpeedFloor(bytes_per_second=64 * 1024, seconds=30.0)
    expected = r"127\.0\.0\.1:\d+ sent the video at 1 bytes/s, below the floor of 64 KiB/s over 30 s"
    with pytest.raises(KlingTransportError, match=expected) as stalled:
        quick_hook(budgets, ONE_TRY).download_video(
            f"{server.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
        )
    assert is_transient(stalled.value)  # the download's retries try again, within its budget
    assert list(tmp_path.iterdir()) == []
    assert not sent_through(trickle, 45)


def test_a_stalled_download_is_tried_again_within_the_download_budget(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    tries: list[Trickle] = []

    def drip(request: bytes, sock: socket.socket) -> None:
        tries.append(Trickle(TEN_MB_VIDEO, gap=0.1, content_type="video/mp4"))
        tries[-1](request, sock)

    server = serve(drip)
    use_connection(monkeypatch, server.url)
    budgets = replace(ROOMY_BUDGETS, download_floor=SpeedFloor(bytes_per_second=1024, seconds=0.5))
    with pytest.raises(KlingTransportError, match="the download stalled; cut off"):
        quick_hook(budgets).download_video(
            f"{server.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/v.mp4")
        )
    assert len(tries) == QUICK_RETRIES.attempts


# -- answers bounded in shape -------------------------------------------------------------------

NESTED = b"[" * 100_000 + b"]" * 100_000
#: A finished job whose video is a local file, in each API's words.
FILE_URL_ANSWERS = {
    "ulazai": b'{"data": {"status": "completed", "video_url": "file:///etc/passwd"}}',
    "klingai": b'{"code": 0, "data": {"task_status": "succeed", '
    b'"task_result": {"videos": [{"url": "file:///etc/passwd"}]}}}',
}


@both_apis
@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        ("200 OK", NESTED, KlingResponseRefusedError),
        ("200 OK", b'{"data": ' * 50 + b"1" + b"}" * 50, KlingResponseRefusedError),
        (
            "200 OK",
            b'{"data": {"status": "processing", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}}',
            KlingResponseRefusedError,
        ),
        ("500 Internal Server Error", b'{"error": ' + NESTED + b"}", KlingServerError),
    ],
    ids=["nested-100000", "nested-50", "10-MB", "nested-error-body"],
)
def test_a_malformed_status_answer_is_a_clear_error_on_both_paths(
    status: str,
    body: bytes,
    error: type[Exception],
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    api: str,
) -> None:
    use_connection(monkeypatch, serve(answering(status, body)).url, api=api)
    with pytest.raises(error) as sync_raised:
        quick_hook().get_status("t")
    with pytest.raises(error) as async_raised:
        asyncio.run(quick_hook().aget_status("t"))
    for raised in (sync_raised, async_raised):
        assert raised.value.http_status == int(status.split()[0])  # type: ignore[attr-defined]


@both_apis
@pytest.mark.parametrize(
    "body",
    [NESTED, b'{"data": {"status": "processing", "pad": "' + b"x" * (10 * 1024 * 1024) + b'"}}'],
    ids=["nested", "10-MB"],
)
def test_an_answer_that_will_not_shrink_is_not_asked_for_again(
    body: bytes, serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(answering("200 OK", body))
    use_connection(monkeypatch, server.url, api=api)
    with pytest.raises(KlingResponseRefusedError):
        quick_hook().get_status("t")
    assert len(server.requests) == 1


@both_apis
def test_a_nested_answer_ends_the_trigger_with_an_error_event_after_one_poll(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(answering("200 OK", NESTED))
    use_connection(monkeypatch, server.url, api=api)
    trigger = KlingStatusTrigger(kling_task_id="t", deadline=time.time() + 30, poll_interval=0.05)
    trigger.hook = quick_hook()
    event = asyncio.run(trigger.wait())
    assert event["status"] == "error" and event["error"] == "KlingResponseRefusedError"
    assert "nested deeper" in event["message"]
    assert len(server.requests) == 1


@both_apis
def test_a_completed_job_with_a_file_url_ends_the_wait_at_once(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    server = serve(answering("200 OK", FILE_URL_ANSWERS[api]))
    use_connection(monkeypatch, server.url, api=api)
    trigger = KlingStatusTrigger(kling_task_id="t", deadline=time.time() + 30, poll_interval=0.05)
    trigger.hook = quick_hook()
    event = asyncio.run(trigger.wait())
    assert event["status"] == "error" and "not http(s)" in event["message"]
    assert len(server.requests) == 1


# -- a stored video is a video ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "headers", "said"),
    [
        (b"", {"Content_Type": "video/mp4"}, "an empty body"),
        (b"<!doctype html><html><body>Sign in</body></html>", {}, "not an MP4"),
        (b"GIF89a" + b"\0" * 100, {"Content_Type": "video/mp4"}, "not an MP4"),
    ],
    ids=["empty-mp4", "html-without-content-type", "gif-labelled-mp4"],
)
def test_a_body_that_is_not_a_video_is_neither_kept_nor_retried(
    body: bytes,
    headers: dict[str, str],
    said: str,
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = serve(answering("200 OK", body, **headers))
    use_connection(monkeypatch, server.url)
    with pytest.raises(KlingDownloadError, match=said):
        quick_hook().download_video(f"{server.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert list(tmp_path.iterdir()) == []
    assert len(server.requests) == 1


def test_a_webm_video_is_kept(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    webm = b"\x1a\x45\xdf\xa3" + b"\x01" * 64
    server = serve(answering("200 OK", webm))
    use_connection(monkeypatch, server.url)
    saved = quick_hook().download_video(
        f"{server.url}/v.webm", ObjectStoragePath(f"file://{tmp_path}/clip.webm")
    )
    assert saved.bytes == len(webm) and (tmp_path / "clip.webm").read_bytes() == webm


# -- the key redacted, even when echoed ---------------------------------------------------------


#: How every token made for Kling's own API begins (its header, base64): in a text, a token leaked.
TOKEN_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"

ECHOES = {
    "raw": lambda header: header,
    "url-encoded": lambda header: quote(header, safe=""),
    "after-bearer-only": lambda header: header.removeprefix("Bearer "),
    "json-escaped": lambda header: json.dumps(header)[1:-1],
}


@pytest.mark.parametrize("form", list(ECHOES.values()), ids=list(ECHOES))
@both_apis
def test_an_echoed_key_is_redacted_from_every_error_text(
    form: Callable[[str], str],
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    api: str,
) -> None:
    use_connection(monkeypatch, serve(echo_of(form)).url, api=api)
    raised = []
    for call in (
        lambda: quick_hook().get_status("t"),
        lambda: asyncio.run(quick_hook().aget_status("t")),
        lambda: quick_hook().submit(GenerationRequest("a fox")),
    ):
        with pytest.raises(KlingAuthError) as error:
            call()
        raised.append(error.value)
    for error in raised:
        texts = [str(error), repr(error), str(error.args), error.server_message or ""]
        assert "Bad credentials: " in str(error) and "***" in str(error)
        for text in texts:
            assert SECRET not in text and quote(SECRET, safe="") not in text
            assert TOKEN_HEADER not in text  # on Kling's own API the header holds a token of the key


@both_apis
def test_an_echoed_key_never_reaches_the_logs_of_retries(
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    api: str,
) -> None:
    use_connection(monkeypatch, serve(echo_of(ECHOES["raw"], status="503 Service Unavailable")).url, api=api)
    with pytest.raises(KlingServerError):
        quick_hook().get_status("t")
    assert "Kling call failed" in caplog.text and SECRET not in caplog.text
    assert TOKEN_HEADER not in caplog.text


@both_apis
def test_an_echoed_key_is_redacted_from_the_trigger_event(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    use_connection(monkeypatch, serve(echo_of(ECHOES["url-encoded"])).url, api=api)
    trigger = KlingStatusTrigger(kling_task_id="t", deadline=time.time() + 30, poll_interval=0.05)
    event = asyncio.run(trigger.wait())
    assert event["error"] == "KlingAuthError"
    assert quote(SECRET, safe="") not in json.dumps(event) and SECRET not in json.dumps(event)
    assert TOKEN_HEADER not in json.dumps(event)


def test_the_key_is_registered_with_airflows_secrets_masker(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk._shared.secrets_masker import _secrets_masker  # what task logs go through

    use_connection(monkeypatch, kling_emulator.base_url, api_key="sk-masked/Key+77")
    assert quick_hook().base_url  # reads the connection
    assert quote("sk-masked/Key+77", safe="") not in _secrets_masker().redact(
        f"x {quote('sk-masked/Key+77', safe='')}"
    )


def test_every_token_made_from_the_secret_key_is_registered_with_the_masker(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow.sdk._shared.secrets_masker import _secrets_masker

    emulator = kling_emulator_factory(api="klingai")
    connect(monkeypatch, emulator)
    hook = quick_hook()
    with pytest.raises(KlingError):  # any answer will do: the request made its token
        hook.get_status("no-such-task")
    [secret_key, token] = hook._settings.credentials.secrets()
    assert secret_key == emulator.api_key
    assert token not in _secrets_masker().redact(f"the header was Bearer {token}")


# -- no redirects on the API --------------------------------------------------------------------


@both_apis
def test_a_redirected_status_is_refused_and_the_other_origin_gets_nothing(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    elsewhere = serve(answering("200 OK", STATUS_COMPLETED))
    api_server = serve(answering("302 Found", b"", Location=f"{elsewhere.url}/kling26/api/status/t/?sig=abc"))
    use_connection(monkeypatch, api_server.url, api=api)
    for call in (lambda: quick_hook().get_status("t"), lambda: asyncio.run(quick_hook().aget_status("t"))):
        with pytest.raises(KlingRedirectError, match=rf"HTTP 302, redirecting to {elsewhere.url} ") as raised:
            call()
        assert "sig=abc" not in str(raised.value)
    assert elsewhere.connections == 0


@both_apis
def test_a_redirected_submit_is_not_followed_and_says_where_it_pointed(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    elsewhere = serve(answering("201 Created", b'{"data": {"task_id": "stolen"}}'))
    api_server = serve(answering("307 Temporary Redirect", b"", Location=f"{elsewhere.url}/generate/"))
    use_connection(monkeypatch, api_server.url, api=api)
    with pytest.raises(KlingSubmitUncertainError, match=f"HTTP 307, redirecting to {elsewhere.url}"):
        quick_hook().submit(GenerationRequest("a confidential prompt"))
    assert elsewhere.connections == 0 and len(api_server.requests) == 1


# -- videos fetched only from where videos live -------------------------------------------------


@pytest.fixture
def api_on_loopback(kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch) -> KlingEmulator:
    """The API (the emulator) on 127.0.0.1: a video host on another loopback address is not it."""
    use_connection(monkeypatch, kling_emulator.base_url, api_key=kling_emulator.api_key)
    return kling_emulator


def video_server(serve: Callable[..., ScriptedServer], host: str = "127.0.0.2") -> ScriptedServer:
    return serve(answering("200 OK", VIDEO, Content_Type="video/mp4"), host=host)


def test_a_video_on_another_loopback_address_is_refused_before_connecting(
    api_on_loopback: KlingEmulator, serve: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    inside = video_server(serve)
    with pytest.raises(KlingVideoAddressError, match=r"127\.0\.0\.2, a loopback address"):
        quick_hook().download_video(f"{inside.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert inside.connections == 0 and list(tmp_path.iterdir()) == []


def test_a_link_local_metadata_address_is_refused_before_connecting(
    api_on_loopback: KlingEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    connected: list[Any] = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket,
        "connect",
        lambda sock, address: connected.append(address) or real_connect(sock, address),
    )
    with pytest.raises(KlingVideoAddressError, match="link-local"):
        quick_hook().download_video(
            "http://169.254.169.254/latest/meta-data/", ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
        )
    assert connected == []


def test_a_public_name_resolving_inside_is_refused(
    api_on_loopback: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = video_server(serve)
    resolving(monkeypatch, "cdn.example.com", "127.0.0.2")  # DNS that answers with an inside address
    url = f"http://cdn.example.com:{inside.server_address[1]}/v.mp4"
    with pytest.raises(KlingVideoAddressError, match=r"cdn\.example\.com"):
        quick_hook().download_video(url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert inside.connections == 0


def test_a_redirect_to_an_inside_address_is_refused_at_that_hop(
    kling_emulator: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = video_server(serve)
    hop = serve(answering("302 Found", b"", Location=f"{inside.url}/v.mp4"))
    use_connection(  # the first hop is allowed; the one it redirects to is not
        monkeypatch,
        kling_emulator.base_url,
        kling_emulator.api_key,
        extra={"allowed_video_hosts": "127.0.0.1"},
    )
    with pytest.raises(KlingVideoAddressError, match=r"127\.0\.0\.2"):
        quick_hook().download_video(f"{hop.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert len(hop.requests) == 1 and inside.connections == 0


@pytest.fixture
def hops_allowed(kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    """The API on 127.0.0.1, and 127.0.0.1's other ports allowed for videos (the redirecting hops)."""
    use_connection(
        monkeypatch,
        kling_emulator.base_url,
        kling_emulator.api_key,
        extra={"allowed_video_hosts": "127.0.0.1"},
    )


@pytest.mark.usefixtures("hops_allowed")
def test_a_redirect_to_a_file_url_fails_at_once(serve: Callable[..., ScriptedServer], tmp_path: Path) -> None:
    hop = serve(answering("302 Found", b"", Location="file:///etc/passwd"))
    with pytest.raises(KlingDownloadError, match="not http"):
        quick_hook().download_video(f"{hop.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert len(hop.requests) == 1  # not retried


@pytest.mark.usefixtures("hops_allowed")
def test_redirect_hops_are_capped(serve: Callable[..., ScriptedServer], tmp_path: Path) -> None:
    loop = serve(answering("302 Found", b"", Location="/again.mp4"))
    with pytest.raises(KlingDownloadError, match="more than 5 redirects"):
        quick_hook().download_video(f"{loop.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert len(loop.requests) == 6


def test_a_host_the_connection_allows_is_fetched(
    kling_emulator: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    inside = video_server(serve)
    use_connection(
        monkeypatch,
        kling_emulator.base_url,
        kling_emulator.api_key,
        extra={"allowed_video_hosts": "127.0.0.0/8"},
    )
    saved = quick_hook().download_video(
        f"{inside.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
    )
    assert saved.bytes == len(VIDEO) and inside.connections == 1


def test_a_bad_allowed_video_hosts_entry_is_a_clear_connection_error(
    kling_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airflow_provider_kling.core.errors import KlingConnectionSettingError

    use_connection(monkeypatch, kling_emulator.base_url, extra={"allowed_video_hosts": "10.0.0.0/33"})
    with pytest.raises(KlingConnectionSettingError, match=r"allowed_video_hosts: '10\.0\.0\.0/33'"):
        assert quick_hook().base_url


# -- the sensor's timeout bounds its pokes ------------------------------------------------------


def test_a_poke_mode_sensor_bounds_its_pokes_by_its_timeout(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from airflow.providers.common.compat.sdk import AirflowSensorTimeout

    from airflow_provider_kling.sensors.kling import KlingStatusSensor

    use_connection(monkeypatch, serve(Trickle(STATUS_PROCESSING * 20)).url)  # about 2 minutes of drip
    sensor = KlingStatusSensor(task_id="wait", kling_task_id="t", timeout=1.0, poke_interval=0.1, mode="poke")
    sensor.hook = quick_hook(BUDGETS)  # the default budgets: 60 s a request
    with pytest.raises(AirflowSensorTimeout):
        sensor.execute(context={"ti": None})  # type: ignore[arg-type]
    # The poke was cut by what was left of the sensor's 1 s, not by a request's own 60 s budget.
    assert re.search(r"of the call's (0\.\d+|1) s budget", caplog.text), caplog.text


def test_the_apis_own_address_on_another_port_is_refused(
    api_on_loopback: KlingEmulator, serve: Callable[..., ScriptedServer], tmp_path: Path
) -> None:
    sidecar = video_server(serve, host="127.0.0.1")  # the API's address, another service's port
    with pytest.raises(KlingVideoAddressError, match="loopback"):
        quick_hook().download_video(
            f"{sidecar.url}/admin/export", ObjectStoragePath(f"file://{tmp_path}/clip.mp4")
        )
    assert sidecar.connections == 0


def test_a_named_api_host_does_not_vouch_for_its_addresses(
    kling_emulator: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = video_server(serve)
    resolving(monkeypatch, "api.vendor.test", "127.0.0.2")  # the vendor's zone, answering inside
    use_connection(monkeypatch, f"http://api.vendor.test:{inside.server_address[1]}", kling_emulator.api_key)
    with pytest.raises(KlingVideoAddressError):
        quick_hook().download_video(f"{inside.url}/v.mp4", ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert inside.connections == 0


def test_a_failed_lookup_is_not_followed_by_an_unchecked_one(
    api_on_loopback: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    inside = video_server(serve)
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def fails_once_then_answers_inside(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "cdn.example.com":
            lookups.append(host)
            if len(lookups) == 1:
                raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
            host = "127.0.0.2"
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fails_once_then_answers_inside)
    url = f"http://cdn.example.com:{inside.server_address[1]}/v.mp4"
    with pytest.raises(KlingDownloadError):  # the retry's lookup is checked too: refused
        quick_hook().download_video(url, ObjectStoragePath(f"file://{tmp_path}/clip.mp4"))
    assert inside.connections == 0


@pytest.mark.parametrize("address", ["2002:7f00:2::1", "fec0::1", "::ffff:10.0.0.1", "0.0.0.0"])
def test_addresses_that_lead_inside_are_refused(address: str) -> None:
    with pytest.raises(KlingVideoAddressError):
        AddressPolicy().check("videos.example.com", 443, [address])


def test_an_allowed_network_also_admits_its_ipv4_mapped_form() -> None:
    policy = AddressPolicy(allowed_networks=parse_allowed("10.20.0.0/16")[1])
    policy.check("videos.internal", 443, ["::ffff:10.20.1.2", "10.20.1.3"])  # no error


# -- answers that would cost time or crash, not just bytes --------------------------------------


def test_a_retry_after_of_nan_is_ignored_on_both_paths(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    limited = answering("429 Too Many Requests", b'{"error": "slow down"}', Retry_After="nan")
    use_connection(monkeypatch, serve(limited).url)
    single = quick_hook(retries=RetryPolicy(attempts=2, initial_wait=0.01))
    with pytest.raises(KlingRateLimitError) as raised:
        single.get_status("t")
    assert raised.value.retry_after is None
    with pytest.raises(KlingRateLimitError):
        single.submit(GenerationRequest("a fox"))

    async def poll_then_keep_time() -> None:
        with pytest.raises(KlingRateLimitError):
            await single.aget_status("t")
        await asyncio.wait_for(asyncio.sleep(0.01), 5)  # the loop's timers still work

    asyncio.run(poll_then_keep_time())


def test_a_megabyte_of_angle_brackets_is_read_as_an_error_message_at_once(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, serve(answering("500 Internal Server Error", b"<" * 1024 * 1024)).url)
    single = quick_hook(retries=ONE_TRY)
    with pytest.raises(KlingServerError, match="HTTP 500"):
        single.get_status("t")
    with pytest.raises(KlingServerError, match="HTTP 500"):
        asyncio.run(single.aget_status("t"))


def test_an_estimated_time_of_a_megabyte_of_digits_is_not_believed() -> None:
    submitted = read_submit_body({"data": {"task_id": "t", "estimated_time": "9" * 1024 * 1024}})
    assert submitted.estimated_seconds is None


def test_an_echoed_key_cut_short_by_the_message_limit_is_redacted(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    long_echo = echo_of(lambda header: "x" * 262 + " " + header)  # the cut falls in the key
    use_connection(monkeypatch, serve(long_echo).url)
    with pytest.raises(KlingAuthError) as raised:
        quick_hook().get_status("t")
    assert SECRET[:8] not in str(raised.value) and "***" in str(raised.value)


def test_an_echo_in_other_letter_case_or_lower_case_escapes_is_redacted(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    use_connection(monkeypatch, serve(echo_of(lambda header: quote(header, safe="").lower())).url)
    with pytest.raises(KlingAuthError) as raised:
        quick_hook().get_status("t")
    assert quote(SECRET, safe="").lower() not in str(raised.value).lower()


def test_a_huge_field_in_a_status_answer_makes_a_short_error(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps({"data": {"status": ["x" * 900_000]}}).encode()
    use_connection(monkeypatch, serve(answering("200 OK", body)).url)
    with pytest.raises(KlingResponseError) as raised:
        quick_hook().get_status("t")
    assert len(str(raised.value)) < 1000


def test_a_progress_beyond_any_number_does_not_crash_the_wait(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    body = b'{"data": {"status": "processing", "progress": 1' + b"0" * 400 + b"}}"
    server = serve(answering("200 OK", body))
    use_connection(monkeypatch, server.url)
    trigger = KlingStatusTrigger(
        kling_task_id="t",
        deadline=time.time() + 1.5,
        submitted_at=time.time() - 60,
        expected_seconds=[60, 90],
    )
    event = asyncio.run(trigger.wait())
    assert event["status"] == "timeout" and event["progress"] == 100
