"""The emulator's HTTP face: the vendor's two endpoints, the video files, and the control routes.

Every rule about a request body and its price comes from :mod:`airflow_provider_kling.core`, so the
emulator refuses exactly what the client would refuse.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from airflow_provider_kling.core.api import STATUS_PATH, SUBMIT_PATH
from airflow_provider_kling.core.errors import FieldError, KlingValidationError, shorten
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import VENDOR_PROCESSING, JobState
from airflow_provider_kling.emulator.config import Fault, FaultKind
from airflow_provider_kling.emulator.state import (
    COUNTED_ENDPOINTS,
    EmulatorState,
    InsufficientCreditsError,
)

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
STARTED_MESSAGE = "KLING 2.6 video generation started"

_PROXY_PAGE = (
    "<html>\r\n<head><title>{code} {reason}</title></head>\r\n<body>\r\n"
    "<center><h1>{code} {reason}</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
#: A JSON answer cut short, as a broken proxy or a crashed worker delivers it.
_GARBAGE = '{"success": true, "data": {"task_id": "'

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
#: A route's answer for a request and the account its key belongs to.
AccountHandler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]


def create_app(state: EmulatorState) -> web.Application:
    routes = _Routes(state)
    app = web.Application()
    app.add_routes(
        [
            web.post(SUBMIT_PATH, routes.submit, name="submit"),
            web.get(STATUS_PATH.format(task_id="{task_id}"), routes.status, name="status"),
            web.get(VIDEO_PATH, routes.video, name="video"),
            web.get("/_emulator/stats", routes.stats),
            web.get("/_emulator/jobs", routes.jobs),
            web.get("/_emulator/video-requests", routes.video_requests),
            web.get("/_emulator/traffic", routes.traffic),
            web.post("/_emulator/reset", routes.reset),
            web.post("/_emulator/faults", routes.inject),
            web.post("/_emulator/credits", routes.set_credits),
            web.post("/_emulator/hold", routes.hold),
            web.post("/_emulator/release", routes.release),
        ]
    )
    # Counting here sees every answer's final status (a 206 for a Range, an aiohttp 413...).
    app.on_response_prepare.append(routes.count_response)
    return app


def clip_for(duration: int, sound: bool) -> Path:
    """The MP4 for a job of ``duration`` seconds, with an audio track when ``sound``."""
    return CLIPS[(duration, sound)]


def _error(http_status: int, message: str, **details: Any) -> web.Response:
    return web.json_response({"success": False, "error": message, **details}, status=http_status)


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return repr(value)
    return value


class _Withheld:
    def __repr__(self) -> str:
        return "value not shown"


def _validation_failed(invalid: KlingValidationError) -> web.Response:
    message = str(invalid)
    if "credit" in message.lower():
        # Clients read "credit" in a 400 as "out of credits"; only an echoed value can bring it in.
        message = str(
            KlingValidationError([FieldError(e.field, e.rule, _Withheld()) for e in invalid.errors])
        )
    errors = [{"field": e.field, "rule": e.rule, "value": _json_safe(e.value)} for e in invalid.errors]
    return _error(400, message, errors=errors)


def _read_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        text = body.decode("utf-8", errors="replace")
        raise KlingValidationError([FieldError("body", "must be valid JSON", shorten(text, 200))]) from None


def _drop(request: web.Request) -> web.Response:
    """Close the connection unanswered; aiohttp then fails to write the returned response, quietly."""
    if request.transport is not None:
        request.transport.close()
    return web.Response()


def _is_dropped(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


def _rate_limited(retry_after: float) -> web.Response:
    wait = f"{retry_after:g}"
    response = _error(429, f"Rate limit exceeded; retry after {wait} s")
    response.headers["Retry-After"] = wait
    return response


def _fault_response(fault: Fault) -> web.Response:
    if fault.kind is FaultKind.SERVER_ERROR:
        page = _PROXY_PAGE.format(code=503, reason="Service Unavailable")
        return web.Response(status=503, text=page, content_type="text/html")
    if fault.kind is FaultKind.HTML_502:
        page = _PROXY_PAGE.format(code=502, reason="Bad Gateway")
        return web.Response(status=502, text=page, content_type="text/html")
    if fault.kind is FaultKind.RATE_LIMIT:
        return _rate_limited(fault.retry_after)
    assert fault.kind is FaultKind.GARBAGE, fault.kind
    return web.Response(status=200, text=_GARBAGE, content_type="application/json")


class _Routes:
    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def count_response(self, request: web.Request, response: web.StreamResponse) -> None:
        endpoint = request.match_info.route.name
        if endpoint in COUNTED_ENDPOINTS and not _is_dropped(request):
            self.state.count_response(endpoint, response.status)

    async def _with_faults(self, endpoint: str, request: web.Request, answer: Handler) -> web.StreamResponse:
        self.state.count_request(endpoint)
        fault = self.state.next_fault(endpoint)
        if fault is None:
            return await answer(request)
        if fault.kind is FaultKind.SLOW:
            await asyncio.sleep(fault.delay)
            return await answer(request)
        if fault.kind is FaultKind.TIMEOUT_AFTER_CREATE:
            await answer(request)  # the job is created and charged; its answer is lost on the way
            await asyncio.sleep(fault.delay)
            return _drop(request)
        if fault.kind is FaultKind.DROP:
            return _drop(request)
        return _fault_response(fault)

    # The vendor's API

    async def submit(self, request: web.Request) -> web.StreamResponse:
        return await self._with_faults("submit", request, self._for_account(self._submit))

    def _for_account(self, answer: AccountHandler) -> Handler:
        """``answer`` for the account the request's key belongs to; a 401 for a key it does not know."""

        async def answer_for_account(request: web.Request) -> web.StreamResponse:
            account = self.state.account(request.headers.get("Authorization"))
            if account is None:
                return _error(401, "Invalid API key")
            if not self.state.admit(account, time.time()):
                return _rate_limited(self.state.config.retry_after)
            return await answer(request, account)

        return answer_for_account

    async def _submit(self, request: web.Request, account: str) -> web.StreamResponse:
        try:
            payload = _read_json(await request.read())
            generation = GenerationRequest.from_payload(payload)
        except KlingValidationError as invalid:
            return _validation_failed(invalid)
        try:
            job = self.state.create_job(account, generation, payload)
        except InsufficientCreditsError as short:
            return _error(
                402,
                "Insufficient credits",
                credits_required=short.required,
                credits_remaining=short.remaining,
            )
        data = {
            "task_id": job.task_id,
            "status": VENDOR_PROCESSING,
            "credits_used": job.credits_used,
            "credits_remaining": self.state.credits_remaining(account),
            "estimated_time": self.state.config.estimated_time,
            "message": STARTED_MESSAGE,
        }
        return web.json_response({"success": True, "data": data}, status=201)

    async def status(self, request: web.Request) -> web.StreamResponse:
        return await self._with_faults("status", request, self._for_account(self._status))

    async def _status(self, request: web.Request, account: str) -> web.StreamResponse:
        now = time.time()
        job = self.state.poll(account, request.match_info["task_id"], now)
        if job is None:
            return _error(404, "Task not found")
        state = job.state(now)
        data: dict[str, Any] = {"task_id": job.task_id, "status": job.status(now)}
        if state is JobState.RUNNING:
            data["progress"] = job.progress(now)
        elif state is JobState.COMPLETED:
            # The host the client reached us at, so the link works on whatever port we listen.
            data["video_url"] = f"{request.scheme}://{request.host}{VIDEO_PATH.format(task_id=job.task_id)}"
            data["duration"] = job.duration
            data["has_audio"] = job.sound
        else:
            data["error"] = FAILED_JOB_ERROR
        return web.json_response({"success": True, "data": data})

    async def video(self, request: web.Request) -> web.StreamResponse:
        # Recorded before any fault: a request a fault then answers has still reached the video's host.
        self.state.record_video_request(request.raw_path, list(request.headers.items()))
        return await self._with_faults("video", request, self._video)

    async def _video(self, request: web.Request) -> web.StreamResponse:
        job = self.state.completed_job(request.match_info["task_id"])
        if job is None:
            return _error(404, "Video not found")
        return web.FileResponse(clip_for(job.duration, job.sound))

    # Controls

    async def stats(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state.stats())

    async def jobs(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state.jobs())

    async def video_requests(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state.video_requests())

    async def traffic(self, request: web.Request) -> web.StreamResponse:
        return web.json_response(self.state.traffic())

    async def reset(self, request: web.Request) -> web.StreamResponse:
        self.state.reset()
        return web.json_response({"success": True})

    async def inject(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_object(
                request, required={"endpoint", "kind"}, optional={"count", "retry_after", "delay"}
            )
            pending = self.state.inject(
                body["endpoint"],
                body["kind"],
                body.get("count", 1),
                retry_after=body.get("retry_after"),
                delay=body.get("delay"),
            )
        except ValueError as refused:
            return _error(400, str(refused))
        return web.json_response({"success": True, "pending": pending}, status=201)

    async def set_credits(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_object(request, required={"api_key", "credits"})
            account = self.state.set_credits(body["api_key"], body["credits"])
        except ValueError as refused:
            return _error(400, str(refused))
        return web.json_response({"success": True, "account": account, "credits_remaining": body["credits"]})

    async def hold(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await _json_object(request, required={"count"})
            holding = self.state.hold(body["count"])
        except ValueError as refused:
            return _error(400, str(refused))
        return web.json_response({"success": True, "holding": holding}, status=201)

    async def release(self, request: web.Request) -> web.StreamResponse:
        try:
            body = (
                await _json_object(request, required=set(), optional={"task_ids"})
                if request.can_read_body
                else {}
            )
            released = self.state.release(body.get("task_ids"))
        except ValueError as refused:
            return _error(400, str(refused))
        return web.json_response({"success": True, "released": released})


async def _json_object(
    request: web.Request, *, required: set[str], optional: frozenset[str] | set[str] = frozenset()
) -> dict[str, Any]:
    """A control body: a JSON object with the required fields and no unknown ones, else ValueError."""
    try:
        body = json.loads(await request.read())
    except ValueError:
        raise ValueError("body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ValueError("body must be a JSON object")
    missing = sorted(required - set(body))
    if missing:
        raise ValueError(f"missing fields: {', '.join(missing)}")
    unknown = sorted(set(body) - required - optional)
    if unknown:
        allowed = ", ".join(sorted(required | optional))
        raise ValueError(f"unknown fields: {', '.join(unknown)} (allowed: {allowed})")
    return body
