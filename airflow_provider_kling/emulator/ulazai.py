"""The emulator's UlazAI face: its two endpoints, its envelope and its error bodies."""

from __future__ import annotations

import time
from typing import Any

from aiohttp import web

from airflow_provider_kling.core.dialects.ulazai import DIALECT, STATUS_PATH, SUBMIT_PATH, VENDOR_PROCESSING
from airflow_provider_kling.core.errors import FieldError, KlingValidationError
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator.http import (
    FAILED_JOB_ERROR,
    Handler,
    WithFaults,
    json_safe,
    read_json,
    video_url,
)
from airflow_provider_kling.emulator.state import EmulatorState, InsufficientCreditsError

STARTED_MESSAGE = "KLING 2.6 video generation started"


def _error(http_status: int, message: str, **details: Any) -> web.Response:
    return web.json_response({"success": False, "error": message, **details}, status=http_status)


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
    errors = [{"field": e.field, "rule": e.rule, "value": json_safe(e.value)} for e in invalid.errors]
    return _error(400, message, errors=errors)


class UlazAIFace:
    def __init__(self, state: EmulatorState, with_faults: WithFaults) -> None:
        self.state, self._with_faults = state, with_faults

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(SUBMIT_PATH, self.submit, name="submit"),
            web.get(STATUS_PATH.format(task_id="{task_id}"), self.status, name="status"),
        ]

    def rate_limited(self, retry_after: float) -> web.Response:
        wait = f"{retry_after:g}"
        response = _error(429, f"Rate limit exceeded; retry after {wait} s")
        response.headers["Retry-After"] = wait
        return response

    def _for_account(self, answer: Any) -> Handler:
        """``answer`` for the account the request's key belongs to; a 401 for a key it does not know."""

        async def answer_for_account(request: web.Request) -> web.StreamResponse:
            account = self.state.account(request.headers.get("Authorization"))
            if account is None:
                return _error(401, "Invalid API key")
            if not self.state.admit(account, time.time()):
                return self.rate_limited(self.state.config.retry_after)
            response: web.StreamResponse = await answer(request, account)
            return response

        return answer_for_account

    async def submit(self, request: web.Request) -> web.StreamResponse:
        return await self._with_faults("submit", request, self._for_account(self._submit))

    async def _submit(self, request: web.Request, account: str) -> web.StreamResponse:
        try:
            payload = read_json(await request.read())
            generation = DIALECT.from_payload(payload)
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
            data["video_url"] = video_url(request, job.task_id)
            data["duration"] = job.duration
            data["has_audio"] = job.sound
        else:
            data["error"] = FAILED_JOB_ERROR
        return web.json_response({"success": True, "data": data})
