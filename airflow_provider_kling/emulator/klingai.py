"""The emulator's face of Kling's own API: JWT checks, the ``code`` envelope, ``external_task_id``
uniqueness, the task list, and the account's concurrency limit."""

from __future__ import annotations

import time
import uuid
from typing import Any

from aiohttp import web

from airflow_provider_kling.core.dialects import klingai
from airflow_provider_kling.core.dialects.klingai import DIALECT, KIND_OF
from airflow_provider_kling.core.errors import KlingValidationError
from airflow_provider_kling.core.request import GenerationMode
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator.http import (
    FAILED_JOB_ERROR,
    Handler,
    WithFaults,
    read_json,
    video_url,
)
from airflow_provider_kling.emulator.state import (
    ConcurrencyFullError,
    EmulatorState,
    ExternalTaskIdTakenError,
    InsufficientCreditsError,
    Job,
    bearer_token,
)

MODE_OF_KIND = {kind: mode for mode, kind in KIND_OF.items()}
#: The share of a job's run it is "submitted" (queued) before "processing".
QUEUED_SHARE = 0.1
#: How the emulated clips' lengths are told: a real render is a few milliseconds off the asked length.
DURATION_TEXT = "{seconds}.042"
TOKEN_MESSAGES = {
    klingai.TOKEN_MISSING: "Authorization is empty",
    klingai.TOKEN_INVALID: "Authorization is invalid",
    klingai.TOKEN_NOT_YET_VALID: "Authorization is not yet valid",
    klingai.TOKEN_EXPIRED: "Authorization has expired",
}


def _answer(data: Any, http_status: int = 200, code: int = 0, message: str = "SUCCEED") -> web.Response:
    body = {"code": code, "message": message, "request_id": str(uuid.uuid4()), "data": data}
    return web.json_response(body, status=http_status)


def _error(http_status: int, code: int, message: str) -> web.Response:
    return _answer(None, http_status, code, message)


def _millis(seconds: float) -> int:
    return int(seconds * 1000)


def task_status(job: Job, now: float) -> str:
    state = job.state(now)
    if state is JobState.COMPLETED:
        return klingai.SUCCEED
    if state is JobState.FAILED:
        return klingai.FAILED
    queued_until = job.created_at + QUEUED_SHARE * (job.ready_at - job.created_at)
    return klingai.SUBMITTED if now < queued_until and not job.held else klingai.PROCESSING


def task_object(job: Job, now: float, request: web.Request) -> dict[str, Any]:
    """A task as the query and the list answer carry it."""
    status = task_status(job, now)
    data: dict[str, Any] = {
        "task_id": job.task_id,
        "task_status": status,
        "task_info": {"external_task_id": job.external_task_id} if job.external_task_id else {},
        "created_at": _millis(job.created_at),
        "updated_at": _millis(min(now, job.ready_at) if not job.held else now),
    }
    if status == klingai.SUCCEED:
        data["final_unit_deduction"] = f"{job.credits_used:g}"
        data["task_result"] = {
            "videos": [
                {
                    "id": f"video-{job.task_id}",
                    "url": video_url(request, job.task_id),
                    "duration": DURATION_TEXT.format(seconds=job.duration),
                }
            ]
        }
    elif status == klingai.FAILED:
        data["task_status_msg"] = FAILED_JOB_ERROR
        data["final_unit_deduction"] = "0"
    return data


class KlingAIFace:
    def __init__(self, state: EmulatorState, with_faults: WithFaults) -> None:
        self.state, self._with_faults = state, with_faults

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post("/v1/videos/{kind}", self.create, name="submit"),
            web.get("/v1/videos/{kind}/{task_id}", self.query, name="status"),
            web.get("/v1/videos/{kind}", self.list, name="list"),
        ]

    def rate_limited(self, retry_after: float) -> web.Response:
        wait = f"{retry_after:g}"
        response = _error(429, klingai.CODE_RATE, f"Too many requests; retry after {wait} s")
        response.headers["Retry-After"] = wait
        return response

    def _for_account(self, answer: Any) -> Handler:
        """``answer`` for the account whose Access Key signed the request's token, at a known path."""

        async def answer_for_account(request: web.Request) -> web.StreamResponse:
            now = time.time()
            token = bearer_token(request.headers.get("Authorization")) or ""
            access_key, code = klingai.check_token(token, self.state.secret_of, now)
            secret = self.state.secret_of(access_key) if access_key else None
            account = self.state.account_of_secret(secret) if secret else None
            if account is None:
                return _error(
                    401, code or klingai.TOKEN_INVALID, TOKEN_MESSAGES[code or klingai.TOKEN_INVALID]
                )
            mode = MODE_OF_KIND.get(request.match_info["kind"])
            if mode is None:
                return _error(404, klingai.CODE_BAD_METHOD, f"No such resource: {request.path}")
            if not self.state.admit(account, now):
                return self.rate_limited(self.state.config.retry_after)
            response: web.StreamResponse = await answer(request, account, mode)
            return response

        return answer_for_account

    async def create(self, request: web.Request) -> web.StreamResponse:
        return await self._with_faults("submit", request, self._for_account(self._create))

    async def _create(self, request: web.Request, account: str, mode: GenerationMode) -> web.StreamResponse:
        try:
            payload = read_json(await request.read())
            generation = DIALECT.from_payload(payload, mode)
        except KlingValidationError as invalid:
            return _error(400, klingai.CODE_BAD_PARAMETER, str(invalid))
        external_task_id = payload.get("external_task_id")
        if external_task_id is not None and (not isinstance(external_task_id, str) or not external_task_id):
            return _error(400, klingai.CODE_BAD_PARAMETER, "external_task_id must be a non-empty string")
        try:
            job = self.state.create_job(
                account, generation, payload, external_task_id=external_task_id, charge_failed=False
            )
        except ExternalTaskIdTakenError:
            return _error(
                400, klingai.CODE_BAD_PARAMETER, f"external_task_id {external_task_id} already exists"
            )
        except ConcurrencyFullError:
            # With the Retry-After a rate limit names (the documentation shows none here; a client
            # then waits its own 30 s), so that tests need not wait that long.
            full = _error(429, klingai.CODE_CONCURRENCY, "The account's concurrency limit is reached")
            full.headers["Retry-After"] = f"{self.state.config.retry_after:g}"
            return full
        except InsufficientCreditsError:
            return _error(429, klingai.CODE_PACK_DEPLETED, "The resource pack is depleted")
        now = time.time()
        data = {
            "task_id": job.task_id,
            "task_status": klingai.SUBMITTED,
            "task_info": {"external_task_id": external_task_id} if external_task_id else {},
            "created_at": _millis(job.created_at),
            "updated_at": _millis(now),
        }
        return _answer(data)

    async def query(self, request: web.Request) -> web.StreamResponse:
        return await self._with_faults("status", request, self._for_account(self._query))

    async def _query(self, request: web.Request, account: str, mode: GenerationMode) -> web.StreamResponse:
        now = time.time()
        job = self.state.poll(account, request.match_info["task_id"], now, generation_mode=mode.value)
        if job is None:
            return _error(404, klingai.CODE_NOT_FOUND, "Task not found")
        return _answer(task_object(job, now, request))

    async def list(self, request: web.Request) -> web.StreamResponse:
        return await self._for_account(self._list)(request)

    async def _list(self, request: web.Request, account: str, mode: GenerationMode) -> web.StreamResponse:
        try:
            page = int(request.query.get("pageNum", "1"))
            size = int(request.query.get("pageSize", "30"))
        except ValueError:
            return _error(400, klingai.CODE_BAD_PARAMETER, "pageNum and pageSize must be whole numbers")
        if page < 1 or not 1 <= size <= DIALECT.page_size:
            return _error(
                400, klingai.CODE_BAD_PARAMETER, f"pageNum must be >= 1 and pageSize 1-{DIALECT.page_size}"
            )
        now = time.time()
        jobs = self.state.account_jobs(account, mode.value)[(page - 1) * size : page * size]
        return _answer([task_object(job, now, request) for job in jobs])
