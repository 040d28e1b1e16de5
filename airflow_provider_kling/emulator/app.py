"""The emulator's HTTP face: one API's endpoints (its face: ``ulazai.py``, ``klingai.py``), the video
files, and the control routes, which every face shares.

Every rule about a request body and its price comes from :mod:`airflow_provider_kling.core`, so the
emulator refuses exactly what the client would refuse.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any, Protocol

from aiohttp import web

from airflow_provider_kling.emulator.config import Fault, FaultKind
from airflow_provider_kling.emulator.http import (
    GARBAGE,
    VIDEO_PATH,
    Handler,
    clip_for,
    drop,
    is_dropped,
    proxy_page,
)
from airflow_provider_kling.emulator.klingai import KlingAIFace
from airflow_provider_kling.emulator.state import COUNTED_ENDPOINTS, EmulatorState
from airflow_provider_kling.emulator.ulazai import UlazAIFace


class Face(Protocol):
    """One API's endpoints (named ``submit`` and ``status``, for the counters and faults)."""

    def routes(self) -> list[web.RouteDef]: ...

    def rate_limited(self, retry_after: float) -> web.Response: ...


FACES: dict[str, type[UlazAIFace] | type[KlingAIFace]] = {"ulazai": UlazAIFace, "klingai": KlingAIFace}


def create_app(state: EmulatorState) -> web.Application:
    routes = _Routes(state)
    face: Face = FACES[state.config.api](state, routes.with_faults)
    routes.face = face
    app = web.Application()
    app.add_routes(
        [
            *face.routes(),
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


def _error(http_status: int, message: str) -> web.Response:
    return web.json_response({"success": False, "error": message}, status=http_status)


class _Routes:
    """The routes every face shares: faults, videos, controls."""

    face: Face

    def __init__(self, state: EmulatorState) -> None:
        self.state = state

    async def count_response(self, request: web.Request, response: web.StreamResponse) -> None:
        endpoint = request.match_info.route.name
        if endpoint in COUNTED_ENDPOINTS and not is_dropped(request):
            self.state.count_response(endpoint, response.status)

    async def with_faults(self, endpoint: str, request: web.Request, answer: Handler) -> web.StreamResponse:
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
            return drop(request)
        if fault.kind is FaultKind.DROP:
            return drop(request)
        return self._fault_response(fault)

    def _fault_response(self, fault: Fault) -> web.Response:
        if fault.kind is FaultKind.SERVER_ERROR:
            return proxy_page(503, "Service Unavailable")
        if fault.kind is FaultKind.HTML_502:
            return proxy_page(502, "Bad Gateway")
        if fault.kind is FaultKind.RATE_LIMIT:
            return self.face.rate_limited(fault.retry_after)
        assert fault.kind is FaultKind.GARBAGE, fault.kind
        return web.Response(status=200, text=GARBAGE, content_type="application/json")

    # The video files

    async def video(self, request: web.Request) -> web.StreamResponse:
        # Recorded before any fault: a request a fault then answers has still reached the video's host.
        self.state.record_video_request(request.raw_path, list(request.headers.items()))
        return await self.with_faults("video", request, self._video)

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
