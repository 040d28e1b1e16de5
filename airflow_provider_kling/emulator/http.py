"""What every API face of the emulator answers alike: the videos, a proxy's failures, a dropped
connection, a body that is not JSON."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from airflow_provider_kling.core.errors import FieldError, KlingValidationError, shorten

ASSETS = Path(__file__).parent / "assets"
#: The clip a finished job's video_url serves, by (duration in seconds, sound): it lasts as long as the
#: job asked for and has an audio track exactly when the job has sound. assets/README.md makes them.
CLIPS = {
    (5, False): ASSETS / "clip-5s-silent.mp4",
    (5, True): ASSETS / "clip-5s-sound.mp4",
    (10, False): ASSETS / "clip-10s-silent.mp4",
    (10, True): ASSETS / "clip-10s-sound.mp4",
}
VIDEO_PATH = "/_emulator/videos/{task_id}.mp4"
FAILED_JOB_ERROR = "Video generation failed (emulated)"

PROXY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
#: A JSON answer cut short, as a broken proxy or a crashed worker delivers it.
GARBAGE = '{"success": true, "data": {"task_id": "'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: Runs a route's answer through the endpoint's faults: (endpoint, request, answer).
WithFaults = Callable[[str, web.Request, Handler], Awaitable[web.StreamResponse]]


def clip_for(duration: int, sound: bool) -> Path:
    """The MP4 for a job of ``duration`` seconds, with an audio track when ``sound``."""
    return CLIPS[(duration, sound)]


def video_url(request: web.Request, task_id: str) -> str:
    """The host the client reached us at, so the link works on whatever port we listen."""
    return f"{request.scheme}://{request.host}{VIDEO_PATH.format(task_id=task_id)}"


def json_safe(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


def read_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace")
        raise KlingValidationError([FieldError("body", "must be valid JSON", shorten(text, 200))]) from None


def drop(request: web.Request) -> web.Response:
    """Close the connection unanswered; aiohttp then fails to write the returned response, quietly."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


def is_dropped(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def proxy_page(code: int, reason: str) -> web.Response:
    return web.Response(
        status=code, text=PROXY_PAGE.format(code=code, reason=reason), content_type="text/html"
    )
