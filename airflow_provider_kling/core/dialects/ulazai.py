"""UlazAI's resale of Kling 2.6 (``../shared/kling-api.md``): all that is its own.

Auth is the API key as a Bearer token. Bodies use camelCase names; answers are
``{"success": ..., "data": {...}}`` with the statuses processing, completed and failed; errors are
told by their HTTP status alone; prices are whole credits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from airflow_provider_kling.core.errors import (
    FieldError,
    KlingValidationError,
    error_from_response,
)
from airflow_provider_kling.core.request import (
    DEFAULT_DURATION,
    GenerationMode,
    GenerationRequest,
    refuse_foreign,
)
from airflow_provider_kling.core.responses import (
    JobState,
    JobStatus,
    SubmitResult,
    envelope_data,
    job_state,
    optional_int,
    progress_of,
    require,
    required_video_url,
)

DEFAULT_BASE_URL = "https://ulazai.com"
SUBMIT_PATH = "/kling26/api/generate/"
STATUS_PATH = "/kling26/api/status/{task_id}/"

PROMPT_MAX_CHARS = 2000
#: The API's own default for prompt_directory_optin, applied to a body without the field.
DEFAULT_PROMPT_DIRECTORY_OPTIN = True
#: Documented price in credits by (duration, sound), before the Prompt Directory discount.
PRICES = {("5", False): 55, ("10", False): 110, ("5", True): 110, ("10", True): 220}
PROMPT_DIRECTORY_DISCOUNT = 10

#: The job statuses the documented API sends (the emulator sends exactly these).
VENDOR_PROCESSING = "processing"
VENDOR_COMPLETED = "completed"
VENDOR_FAILED = "failed"
COMPLETED_STATUSES = frozenset({VENDOR_COMPLETED})
#: "failed" is documented; the rest are its likely kin, so a job ending that way is never waited on.
FAILED_STATUSES = frozenset({VENDOR_FAILED, "cancelled", "canceled", "expired", "error", "rejected"})
#: Non-terminal statuses we expect; any other unknown status is logged and also treated as running.
RUNNING_STATUSES = frozenset({VENDOR_PROCESSING, "pending", "queued", "submitted", "running", "in_progress"})

#: Our parameter names and the submit body's names for them.
API_FIELD_NAMES = {
    "prompt": "prompt",
    "generation_mode": "generationMode",
    "image_urls": "imageUrls",
    "duration": "duration",
    "aspect_ratio": "aspectRatio",
    "sound": "sound",
    "prompt_directory_optin": "prompt_directory_optin",
}


def status_path(task_id: str) -> str:
    return STATUS_PATH.format(task_id=quote(task_id, safe=""))


def auth_headers(api_key: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {api_key}",
        "Content-Type": "application/json",
        "Accept": "application/json",
    }


def estimate_credits(duration: str, sound: bool, prompt_directory_optin: bool) -> int:
    """Credits the documented price table predicts; the server's ``credits_used`` is the truth."""
    price = PRICES[(duration, sound)]
    return price - PROMPT_DIRECTORY_DISCOUNT if prompt_directory_optin else price


def read_submit_body(body: Any, http_status: int | None = None) -> SubmitResult:
    data = envelope_data(body, "submit", http_status)
    known = {"task_id", "status", "credits_used", "credits_remaining", "estimated_time", "message"}
    return SubmitResult(
        task_id=require(data, "task_id", str, "submit", http_status),
        status=str(data.get("status") or VENDOR_PROCESSING),
        credits_used=optional_int(data, "credits_used"),
        credits_remaining=optional_int(data, "credits_remaining"),
        estimated_time=str(data["estimated_time"]) if data.get("estimated_time") is not None else None,
        message=str(data["message"]) if data.get("message") is not None else None,
        extra={k: v for k, v in data.items() if k not in known},
    )


def vendor_state(status: str) -> JobState:
    """Where an UlazAI status leaves the job; unknown statuses count as still running."""
    return job_state(status, COMPLETED_STATUSES, FAILED_STATUSES, RUNNING_STATUSES)


def read_status_body(body: Any, task_id: str, http_status: int | None = None) -> JobStatus:
    """Read a status body for ``task_id`` (the id asked about, whatever the body repeats)."""
    data = envelope_data(body, "status", http_status)
    data.setdefault("task_id", task_id)
    status = require(data, "status", str, "status", http_status)
    state = vendor_state(status)
    known = {"task_id", "status", "progress", "video_url", "duration", "has_audio", "message", "error"}
    video_url = data.get("video_url")
    if state is JobState.COMPLETED:
        video_url = required_video_url(data, "video_url", task_id, http_status)
    has_audio = data.get("has_audio")
    message = data.get("message") or data.get("error")
    return JobStatus(
        task_id=task_id,
        status=status,
        state=state,
        progress=progress_of(data),
        video_url=video_url if isinstance(video_url, str) else None,
        duration=optional_int(data, "duration"),
        has_audio=has_audio if isinstance(has_audio, bool) else None,
        message=str(message) if message else None,
        extra={k: v for k, v in data.items() if k not in known},
    )


@dataclass(frozen=True)
class ApiKey:
    """The API key, sent as it is on every request."""

    key: str = field(repr=False)

    def headers(self) -> dict[str, str]:
        return auth_headers(self.key)

    def renew(self) -> None:
        """Nothing to renew: the key does not expire."""

    def secrets(self) -> tuple[str, ...]:
        return (self.key,)


class UlazAI:
    """The :class:`~airflow_provider_kling.core.dialects.Dialect` of UlazAI's API."""

    name = "ulazai"
    title = "UlazAI's Kling 2.6 API (api='ulazai')"
    default_base_url = DEFAULT_BASE_URL
    credit_unit = "credits"
    prompt_max_chars = PROMPT_MAX_CHARS
    has_external_task_id = False
    #: The documentation does not say a failed job's credits are refunded: they are counted.
    charges_failed_jobs = True
    login_label: str | None = None
    password_label = "API key"

    def credentials(self, login: str | None, password: str) -> ApiKey:
        return ApiKey(password)

    def check_options(
        self, given: Mapping[str, Any], shared: Mapping[str, Any], errors: list[FieldError]
    ) -> dict[str, Any]:
        refuse_foreign(given, ("prompt_directory_optin",), self.title, errors)
        optin = given["prompt_directory_optin"]
        if optin is None:
            optin = DEFAULT_PROMPT_DIRECTORY_OPTIN
        elif not isinstance(optin, bool):
            errors.append(FieldError("prompt_directory_optin", "must be true or false", optin))
        return {**dict.fromkeys(given), "prompt_directory_optin": optin}

    def to_payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "prompt": request.prompt,
            "generationMode": request.generation_mode.value,
            "duration": request.duration,
            "sound": request.sound,
            "prompt_directory_optin": request.prompt_directory_optin,
        }
        if request.image_urls:
            payload["imageUrls"] = list(request.image_urls)
        if request.aspect_ratio is not None:
            payload["aspectRatio"] = request.aspect_ratio
        return payload

    def from_payload(self, payload: Any, generation: GenerationMode | None = None) -> GenerationRequest:
        if not isinstance(payload, Mapping):
            raise KlingValidationError([FieldError("body", "must be a JSON object", payload)])
        known = {ours: payload[theirs] for ours, theirs in API_FIELD_NAMES.items() if theirs in payload}
        known.setdefault("prompt", None)
        # The wire is stricter than our constructor: the mode must be named, the duration a string.
        wire_errors = []
        if "generationMode" not in payload:
            wire_errors.append(FieldError("generationMode", "is required", None))
        if not isinstance(known.get("duration", DEFAULT_DURATION), str):
            wire_errors.append(FieldError("duration", 'must be a string, "5" or "10"', known.pop("duration")))
        try:
            request = GenerationRequest(api=self.name, **known)
        except KlingValidationError as invalid:
            field_errors = [
                FieldError(API_FIELD_NAMES.get(e.field, e.field), e.rule, e.value) for e in invalid.errors
            ]
            raise KlingValidationError(wire_errors + field_errors) from None
        if wire_errors:
            raise KlingValidationError(wire_errors)
        return request

    def estimate(self, request: GenerationRequest) -> float:
        return estimate_credits(request.duration, request.sound, bool(request.prompt_directory_optin))

    def submit_path(self, request: GenerationRequest) -> str:
        return SUBMIT_PATH

    def status_paths(self, task_id: str, generation: GenerationMode | None) -> Sequence[str]:
        return (status_path(task_id),)

    read_submit = staticmethod(read_submit_body)
    read_status = staticmethod(read_status_body)
    error_from_response = staticmethod(error_from_response)

    @staticmethod
    def token_expired(http_status: int, body: bytes) -> bool:
        return False  # a key does not expire


DIALECT = UlazAI()
