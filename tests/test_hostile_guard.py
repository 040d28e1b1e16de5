"""The guard's protections, each against a real server on loopback: a kept-alive connection watched on
every call, close-delimited bodies cut at the budget never taken for whole ones, the key redacted
along the whole error chain, and video hosts checked however their address is spelled or reached.

Each test fails when its protection is removed (see the mutation named in its docstring).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from airflow.sdk import ObjectStoragePath
from hook_setup import ONE_TRY, SECRET, TIGHT_BUDGETS, VIDEO, quick_hook, use_connection
from hostile_servers import (
    STATUS_PROCESSING,
    ScriptedServer,
    Trickle,
    answering,
    echo_of,
)

from airflow_provider_kling.core import api
from airflow_provider_kling.core.addresses import KlingVideoAddressError
from airflow_provider_kling.core.errors import KlingSubmitUncertainError, KlingTimeoutError
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator

#: Seconds between trickled bytes, and how many are trickled: 12 s, far past every budget above.
GAP = 0.1
TRICKLED = 120


def destination(tmp_path: Path) -> ObjectStoragePath:
    return ObjectStoragePath(f"file://{tmp_path}/clip.mp4")


class CloseDelimited:
    """A 200 answer with no Content-Length (its body ends when the connection closes): ``fast`` at
    once, then ``TRICKLED`` more bytes of ``tail`` one every ``GAP`` seconds, counting them."""

    def __init__(self, fast: bytes, tail: bytes, content_type: str) -> None:
        self.fast, self.tail, self.content_type = fast, tail, content_type
        self.sent = 0

    def __call__(self, request: bytes, sock: socket.socket) -> None:
        head = f"HTTP/1.1 200 OK\r\nContent-Type: {self.content_type}\r\nConnection: close\r\n\r\n"
        sock.sendall(head.encode() + self.fast)
        for index in range(len(self.tail)):
            sock.sendall(self.tail[index : index + 1])
            self.sent += 1
            time.sleep(GAP)

    def finished(self) -> bool:
        time.sleep(GAP * 3)  # the server notices the cut on its next write
        return self.sent >= len(self.tail)


# -- a kept-alive connection is watched on every call --------------------------------------------


class KeptAliveThenTrickling:
    """Answers a connection's first request at once, keeping the connection open, then trickles its
    answer to the second request on that same connection."""

    def __init__(self) -> None:
        self.trickle = Trickle(STATUS_PROCESSING + b" " * TRICKLED, gap=GAP)
        self.second_requests: list[bytes] = []

    def __call__(self, request: bytes, sock: socket.socket) -> None:
        head = (
            f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(STATUS_PROCESSING)}"
            "\r\n\r\n"
        )
        sock.sendall(head.encode() + STATUS_PROCESSING)
        received = b""
        while b"\r\n\r\n" not in received:
            chunk = sock.recv(65536)
            if not chunk:
                return  # the client closed the connection instead of reusing it
            received += chunk
        self.second_requests.append(received)
        self.trickle(received, sock)


def test_a_kept_alive_connection_is_watched_on_its_second_call(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: drop ``guard.watch(self.sock)`` from ``_Guarded.request``."""
    answer = KeptAliveThenTrickling()
    server = serve(answer)
    use_connection(monkeypatch, server.url)
    kling = quick_hook(TIGHT_BUDGETS, ONE_TRY)  # one connection: no retry on a fresh one
    assert kling.get_status("t").status == "processing"
    with pytest.raises(KlingTimeoutError, match="budget"):
        kling.get_status("t")
    assert len(answer.second_requests) == 1 and server.connections == 1  # the same connection, reused
    time.sleep(GAP * 3)  # the server notices the cut on its next write
    assert answer.trickle.sent < len(answer.trickle.body)


# -- a close-delimited body cut at the budget is not a whole one -------------------------------------


def test_a_close_delimited_status_cut_at_the_budget_is_not_taken_for_a_whole_one(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: in ``_call_api``, ``if guard.finish() and not _complete(...)`` becomes ``if False``.

    What arrives before the cut is a whole JSON status followed by white space: read as a body, it
    would parse as a job still processing."""
    answer = CloseDelimited(STATUS_PROCESSING, b" " * TRICKLED, "application/json")
    use_connection(monkeypatch, serve(answer).url)
    with pytest.raises(KlingTimeoutError, match="status answer within"):
        quick_hook(TIGHT_BUDGETS).get_status("t")
    assert not answer.finished()


def test_a_close_delimited_video_cut_at_the_budget_is_not_kept(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Mutation: in ``_save``, the ``guard.finish()`` check after writing never raises.

    A whole first read's worth (a video's start, padded) arrives at once, so the cut falls in the
    writing, after the video's signature was checked."""
    fast = VIDEO + b"\0" * (api.DOWNLOAD_CHUNK_BYTES - len(VIDEO))
    answer = CloseDelimited(fast, b"\0" * TRICKLED, "video/mp4")
    server = serve(answer)
    use_connection(monkeypatch, server.url)  # the API's own address: videos may come from there
    with pytest.raises(KlingTimeoutError, match="video within"):
        quick_hook(TIGHT_BUDGETS).download_video(f"{server.url}/v.mp4", destination(tmp_path))
    assert list(tmp_path.iterdir()) == []
    assert not answer.finished()


# -- the key redacted along the whole error chain -------------------------------------------------


def error_chain(error: BaseException) -> Iterator[BaseException]:
    """``error`` and every error its ``__cause__`` and ``__context__`` lead to."""
    seen: set[int] = set()
    pending: list[BaseException | None] = [error]
    while pending:
        link = pending.pop()
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        pending += [link.__cause__, link.__context__]


def test_a_5xx_echoing_the_key_on_a_submit_leaves_no_key_in_the_error_chain(
    serve: Callable[..., ScriptedServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Mutation: ``redact_error`` redacts the first link only (no walk of the chain)."""
    server = serve(echo_of(lambda header: f"upstream failed for {header}", status="503 Service Unavailable"))
    use_connection(monkeypatch, server.url)
    with pytest.raises(KlingSubmitUncertainError) as raised:
        quick_hook().submit(GenerationRequest("a fox"))
    links = list(error_chain(raised.value))
    assert len(links) >= 2  # the uncertain submit, and the server error it came from
    assert "upstream failed for" in str(links[1])  # the echo is there, its key taken out
    for link in links:
        for text in (str(link), repr(link), repr(link.args), *map(str, link.args)):
            assert SECRET not in text and quote(SECRET, safe="") not in text, type(link).__name__


# -- video hosts checked however their address is spelled or reached -------------------------------


@pytest.mark.parametrize(
    "inside",
    ["::ffff:127.0.0.2", "2002:7f00:2::1"],
    ids=["ipv4-mapped", "6to4"],
)
def test_an_ipv6_answer_carrying_a_loopback_ipv4_for_a_video_host_is_refused(
    inside: str,
    kling_emulator: KlingEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Mutation: ``_embedded_ipv4`` returns None always.

    Python itself counts IPv4-mapped addresses as private (not as loopback), but 6to4 ones as global."""
    use_connection(monkeypatch, kling_emulator.base_url, api_key=kling_emulator.api_key)
    real_getaddrinfo = socket.getaddrinfo

    def rebinding(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "cdn.example.com":
            return [(socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (inside, port, 0, 0))]
        return real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with pytest.raises(KlingVideoAddressError, match=r"cdn\.example\.com \(.*, a loopback address\)"):
        quick_hook().download_video("http://cdn.example.com:8080/v.mp4", destination(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_behind_a_proxy_a_video_host_that_does_not_resolve_here_is_refused_and_the_proxy_gets_nothing(
    kling_emulator: KlingEmulator,
    serve: Callable[..., ScriptedServer],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Mutation: ``_check_behind_proxy`` does nothing."""
    use_connection(monkeypatch, kling_emulator.base_url, api_key=kling_emulator.api_key)
    proxy = serve(answering("200 OK", VIDEO, Content_Type="video/mp4"))  # would hand back a "video"
    for name in ("NO_PROXY", "no_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("http_proxy", proxy.url)
    real_getaddrinfo = socket.getaddrinfo

    def unresolvable(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "metadata.google.internal":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", unresolvable)
    with pytest.raises(KlingVideoAddressError, match=r"metadata\.google\.internal.*does not resolve here"):
        quick_hook().download_video(
            "http://metadata.google.internal/computeMetadata/v1/", destination(tmp_path)
        )
    assert proxy.connections == 0 and proxy.requests == []
    assert list(tmp_path.iterdir()) == []
