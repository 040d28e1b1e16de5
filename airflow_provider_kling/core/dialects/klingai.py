"""Kling's own developer API (``../shared/klingai-api.md``): all that is its own.

Requests carry a JWT made from the Access Key and signed with the Secret Key (HS256, with the
standard library: no third-party import at DAG-parse time or in the emulator). Answers are
``{"code", "message", "request_id", "data"}``; errors are told by their ``code`` first, their HTTP
status second. Statuses are submitted, processing, succeed and failed. Prices are decimal units,
charged only for jobs that succeed. A submit carries the caller's ``external_task_id``, unique per
account, and the task list finds it again: what makes a submit whose answer was lost findable.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from airflow_provider_kling.core.errors import (
    FieldError,
    KlingAccountError,
    KlingAPIError,
    KlingAuthError,
    KlingBadRequestError,
    KlingConcurrencyLimitError,
    KlingInsufficientCreditsError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingResponseError,
    KlingServerError,
    KlingValidationError,
    error_from_response,
    parse_retry_after,
    server_message,
)
from airflow_provider_kling.core.request import GenerationMode, GenerationRequest, check_text, refuse_foreign
from airflow_provider_kling.core.responses import (
    JobState,
    JobStatus,
    SubmitResult,
    envelope_data,
    job_state,
    require,
    required_video_url,
)
from airflow_provider_kling.core.urls import is_http_url

DEFAULT_BASE_URL = "https://api-singapore.klingai.com"
#: The path of each generation mode's endpoints: create, query one, and the list.
KIND_OF = {GenerationMode.TEXT_TO_VIDEO: "text2video", GenerationMode.IMAGE_TO_VIDEO: "image2video"}
VIDEOS_PATH = "/v1/videos/{kind}"

PROMPT_MAX_CHARS = 2500
DEFAULT_MODEL = "kling-v2-6"
MODES = ("std", "pro")
DEFAULT_MODE = "std"
CAMERA_AXES = ("horizontal", "vertical", "pan", "tilt", "roll", "zoom")
CAMERA_PRESETS = ("down_back", "forward_up", "right_turn_forward", "left_turn_forward")
CAMERA_AXIS_LIMIT = 10

# -- Auth: a JWT from the Access Key, signed with the Secret Key ------------------------------------

#: How long a token is valid, and how early before its expiry a new one is made.
TOKEN_SECONDS = 1800
TOKEN_RENEW_MARGIN = 300
#: The token's ``nbf`` lies this far in the past, for clocks a little apart.
TOKEN_NOT_BEFORE_SLACK = 5
#: Tokens kept for redaction: more than a long-lived process has valid at once.
TOKENS_REMEMBERED = 8


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _signature(signing_input: str, secret_key: str) -> str:
    return _b64(hmac.new(secret_key.encode("utf-8"), signing_input.encode("ascii"), hashlib.sha256).digest())


def make_token(access_key: str, secret_key: str, now: float) -> str:
    """An HS256 JWT: ``iss`` the Access Key, valid from 5 s ago for :data:`TOKEN_SECONDS`."""
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = {"iss": access_key, "exp": int(now) + TOKEN_SECONDS, "nbf": int(now) - TOKEN_NOT_BEFORE_SLACK}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}"
    return f"{signing_input}.{_signature(signing_input, secret_key)}"


#: Why a token is refused: the API's codes.
TOKEN_MISSING, TOKEN_INVALID, TOKEN_NOT_YET_VALID, TOKEN_EXPIRED = 1001, 1002, 1003, 1004


def check_token(token: str, secret_of: Callable[[str], str | None], now: float) -> tuple[str | None, int]:
    """The Access Key a token was made with, and 0; or None and the code that refuses it. The
    emulator's check of what :func:`make_token` makes (``secret_of`` gives an Access Key's secret)."""
    if not token:
        return None, TOKEN_MISSING
    try:
        header_part, claims_part, signature = token.split(".")
        header, claims = json.loads(_unb64(header_part)), json.loads(_unb64(claims_part))
    except (ValueError, UnicodeDecodeError):
        return None, TOKEN_INVALID
    if not isinstance(header, dict) or header.get("alg") != "HS256" or not isinstance(claims, dict):
        return None, TOKEN_INVALID
    issuer, secret = claims.get("iss"), None
    if isinstance(issuer, str):
        secret = secret_of(issuer)
    expected = _signature(f"{header_part}.{claims_part}", secret) if secret else ""
    if not secret or not hmac.compare_digest(expected, signature):
        return None, TOKEN_INVALID
    expires, not_before = claims.get("exp"), claims.get("nbf")
    if not isinstance(expires, (int, float)) or now >= expires:
        return None, TOKEN_EXPIRED
    if isinstance(not_before, (int, float)) and now < not_before:
        return None, TOKEN_NOT_YET_VALID
    return issuer, 0


class KeyPair:
    """The Access Key and Secret Key, sent as a token made from them and reused until shortly
    before it expires. The Secret Key itself is never sent."""

    def __init__(self, access_key: str, secret_key: str, clock: Callable[[], float] = time.time) -> None:
        self.access_key, self._secret_key, self._clock = access_key, secret_key, clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._renew_at = 0.0
        self._made: deque[str] = deque(maxlen=TOKENS_REMEMBERED)

    def __repr__(self) -> str:
        return f"KeyPair(access_key={self.access_key!r})"

    def headers(self) -> dict[str, str]:
        with self._lock:
            now = self._clock()
            if self._token is None or now >= self._renew_at:
                self._token = make_token(self.access_key, self._secret_key, now)
                self._renew_at = now + TOKEN_SECONDS - TOKEN_RENEW_MARGIN
                self._made.append(self._token)
            token = self._token
        return {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }

    def renew(self) -> None:
        with self._lock:
            self._token = None

    def secrets(self) -> tuple[str, ...]:
        return (self._secret_key, *self._made)


# -- Models, rules and prices ----------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """What a model accepts, and its price in units of a 5 s clip by (mode, sound); 10 s costs twice."""

    prices: Mapping[tuple[str, bool], float]
    cfg_scale: bool = False
    #: Whether its end frame (image_tail) comes only in pro mode, and then without sound.
    tail_pro_silent_only: bool = False


#: The models whose rules and prices this provider knows (others are refused: no estimate, no budget).
MODELS = {
    "kling-v2-6": Model(
        prices={("std", False): 1.5, ("pro", False): 2.5, ("pro", True): 5.0}, tail_pro_silent_only=True
    ),
    "kling-v2-5-turbo": Model(prices={("std", False): 1.5, ("pro", False): 2.5}),
}

OWN_FIELDS = ("model_name", "mode", "negative_prompt", "camera_control", "cfg_scale", "image_tail_url")


def _check_camera(camera: Any, errors: list[FieldError]) -> None:
    presets = ", ".join(CAMERA_PRESETS)
    rule = f'must be {{"type": "simple", "config": {{one axis: value}}}} or {{"type": one of {presets}}}'
    if not isinstance(camera, Mapping):
        errors.append(FieldError("camera_control", rule, camera))
        return
    kind, config = camera.get("type"), camera.get("config")
    if set(camera) - {"type", "config"}:
        errors.append(FieldError("camera_control", f"{rule}; nothing else", camera))
    elif kind in CAMERA_PRESETS:
        if config is not None:
            errors.append(FieldError("camera_control", f"type {kind} takes no config", camera))
    elif kind != "simple":
        errors.append(FieldError("camera_control", rule, camera))
    elif not isinstance(config, Mapping) or set(config) - set(CAMERA_AXES):
        errors.append(FieldError("camera_control", f"config must name only {', '.join(CAMERA_AXES)}", config))
    else:
        values = list(config.values())
        if not all(_is_number(v) and -CAMERA_AXIS_LIMIT <= v <= CAMERA_AXIS_LIMIT for v in values):
            errors.append(
                FieldError(
                    "camera_control",
                    f"each axis must be a number from -{CAMERA_AXIS_LIMIT} to {CAMERA_AXIS_LIMIT}",
                    config,
                )
            )
        elif sum(1 for v in values if v != 0) != 1:
            errors.append(
                FieldError("camera_control", "config must set exactly one axis to a non-zero value", config)
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


# -- Reading answers -------------------------------------------------------------------------------

SUBMITTED, PROCESSING, SUCCEED, FAILED = "submitted", "processing", "succeed", "failed"
COMPLETED_STATUSES = frozenset({SUCCEED})
FAILED_STATUSES = frozenset({FAILED})
RUNNING_STATUSES = frozenset({SUBMITTED, PROCESSING})


def vendor_state(status: str) -> JobState:
    return job_state(status, COMPLETED_STATUSES, FAILED_STATUSES, RUNNING_STATUSES)


def _decimal(value: Any) -> float | None:
    """A decimal the API sends as a string ("1.5", "5.042") or a number; None if it is neither."""
    if isinstance(value, bool):
        return None
    try:
        number = float(value) if isinstance(value, (int, float, str)) and len(str(value)) <= 32 else math.nan
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def external_id_of(data: Mapping[str, Any]) -> str | None:
    info = data.get("task_info")
    found = info.get("external_task_id") if isinstance(info, Mapping) else None
    return found if isinstance(found, str) and found else None


def read_task(data: dict[str, Any], task_id: str, http_status: int | None) -> JobStatus:
    """One task object, as the query and the list answer carry it."""
    status = require(data, "task_status", str, "status", http_status)
    state = vendor_state(status)
    video: dict[str, Any] = {}
    result = data.get("task_result")
    videos = result.get("videos") if isinstance(result, Mapping) else None
    if isinstance(videos, list) and videos and isinstance(videos[0], Mapping):
        video = dict(videos[0])
    video_url = (
        required_video_url(video, "url", task_id, http_status) if state is JobState.COMPLETED else None
    )
    seconds = _decimal(video.get("duration"))
    message = data.get("task_status_msg")
    known = {"task_id", "task_status", "task_status_msg", "task_result", "final_unit_deduction"}
    return JobStatus(
        task_id=task_id,
        status=status,
        state=state,
        video_url=video_url,
        duration=round(seconds) if seconds is not None else None,
        message=str(message) if message else None,
        charged=_decimal(data.get("final_unit_deduction")),
        charge_unit=KlingAI.credit_unit,
        extra={k: v for k, v in data.items() if k not in known},
    )


def read_list(body: Any, http_status: int | None = None) -> tuple[list[JobStatus], int]:
    """The task list's page: its tasks (their ``extra`` keeps ``task_info``, the external id), and
    how many items it held (a page shorter than asked for is the last)."""
    items = body.get("data") if isinstance(body, Mapping) else None
    if not isinstance(items, list):
        raise KlingResponseError(
            f"Kling API task list answer has no 'data' list (HTTP {http_status})", http_status=http_status
        )
    tasks = [
        read_task(dict(item), item["task_id"], http_status)
        for item in items
        if isinstance(item, Mapping) and isinstance(item.get("task_id"), str)
    ]
    return tasks, len(items)


# -- Error codes -----------------------------------------------------------------------------------

CODE_ACCOUNT, CODE_ARREARS, CODE_PACK_DEPLETED, CODE_NO_PERMISSION = 1100, 1101, 1102, 1103
CODE_BAD_REQUEST, CODE_BAD_PARAMETER, CODE_BAD_METHOD, CODE_NOT_FOUND = 1200, 1201, 1202, 1203
CODE_POLICY, CODE_CONTENT_SAFETY, CODE_RATE, CODE_CONCURRENCY, CODE_IP_POLICY = 1300, 1301, 1302, 1303, 1304


def _code_of(body: bytes | str) -> int | None:
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return None
    code = parsed.get("code") if isinstance(parsed, dict) else None
    return code if isinstance(code, int) and not isinstance(code, bool) else None


def error_for_code(
    http_status: int,
    body: bytes | str,
    *,
    retry_after: str | None = None,
    task_id: str | None = None,
    location: str | None = None,
) -> KlingAPIError:
    """The error an answer's code names; an answer without one (a proxy's page) is read by its
    HTTP status, as any API's."""
    code = _code_of(body)
    said = server_message(body)
    about = f" (task_id {task_id})" if task_id else ""
    common: dict[str, Any] = {
        "http_status": http_status,
        "server_message": said,
        "task_id": task_id,
        "vendor_code": code,
    }
    where = f"HTTP {http_status}, code {code}"
    if code is None or not 400 <= http_status < 600:  # no code, or a redirect: read as any API's
        return error_from_response(
            http_status, body, retry_after=retry_after, task_id=task_id, location=location
        )
    if 1000 <= code <= 1004 or code == CODE_NO_PERMISSION:
        return KlingAuthError(
            f"Kling API refused the credentials ({where}): {said}. Check the Access Key (login) and "
            "Secret Key (password) of the Kling connection, and that the account may use this model.",
            **common,
        )
    if code in (CODE_ARREARS, CODE_PACK_DEPLETED):
        return KlingInsufficientCreditsError(
            f"Not enough Kling units ({where}): {said}. Top up the account's resource pack.", **common
        )
    if code == CODE_ACCOUNT:
        return KlingAccountError(
            f"Kling refuses the account ({where}): {said}. Check the account on Kling's developer console.",
            **common,
        )
    if code == CODE_IP_POLICY:
        return KlingAccountError(
            f"Kling refuses requests from this machine's address ({where}): {said}. Add the address "
            "to the account's IP allow-list on Kling's developer console.",
            **common,
        )
    if code == CODE_RATE:
        wait = parse_retry_after(retry_after)
        return KlingRateLimitError(
            f"Kling API rate limit hit ({where}){about}: {said}", retry_after=wait, **common
        )
    if code == CODE_CONCURRENCY:
        return KlingConcurrencyLimitError(
            f"Kling runs as many jobs as the account's plan allows ({where}): {said}. No job was created.",
            retry_after=parse_retry_after(retry_after),
            **common,
        )
    if code in (CODE_BAD_METHOD, CODE_NOT_FOUND) and task_id is not None:
        return KlingNotFoundError(f"Kling API knows no such task ({where}){about}: {said}", **common)
    if code in (CODE_POLICY, CODE_CONTENT_SAFETY):
        return KlingBadRequestError(
            f"Kling refused the request by its content policy ({where}): {said}. Change the prompt or image.",
            **common,
        )
    if 1200 <= code < 1300:
        return KlingBadRequestError(f"Kling API rejected the request ({where}): {said}", **common)
    if http_status >= 500 or 5000 <= code < 6000:
        return KlingServerError(f"Kling API server error ({where}){about}: {said}", **common)
    return KlingAPIError(f"Kling API answered {where}{about}: {said}", **common)


def names_external_id(error: BaseException) -> bool:
    """Whether a refused submit names ``external_task_id``: read as "that id is taken", so the job
    may exist, never as a reason to send again."""
    return (
        isinstance(error, KlingBadRequestError) and "external_task_id" in (error.server_message or "").lower()
    )


# -- The dialect -----------------------------------------------------------------------------------


class KlingAI:
    """The :class:`~airflow_provider_kling.core.dialects.Dialect` of Kling's own API."""

    name = "klingai"
    title = "Kling's own API (api='klingai')"
    default_base_url = DEFAULT_BASE_URL
    credit_unit = "units"
    prompt_max_chars = PROMPT_MAX_CHARS
    has_external_task_id = True
    charges_failed_jobs = False
    login_label: str | None = "Access Key"
    password_label = "Secret Key"
    #: The list's largest page.
    page_size = 500
    models: Mapping[str, Model] = MODELS

    def credentials(self, login: str | None, password: str) -> KeyPair:
        return KeyPair(login or "", password)

    def check_options(
        self, given: Mapping[str, Any], shared: Mapping[str, Any], errors: list[FieldError]
    ) -> dict[str, Any]:
        generation, sound = shared["generation_mode"], shared["sound"]
        refuse_foreign(given, (*OWN_FIELDS, "prompt_directory_optin"), self.title, errors)
        if given["prompt_directory_optin"]:  # False says what this API does anyway: nothing is published
            errors.append(
                FieldError(
                    "prompt_directory_optin", f"is not part of {self.title}: it publishes no prompts", True
                )
            )
        model_name = DEFAULT_MODEL if given["model_name"] is None else given["model_name"]
        model = self.models.get(model_name) if isinstance(model_name, str) else None
        if model is None:
            known = ", ".join(self.models)
            errors.append(
                FieldError(
                    "model_name", f"must be one of {known} (the models whose price is known)", model_name
                )
            )
        mode = DEFAULT_MODE if given["mode"] is None else given["mode"]
        if mode not in MODES:
            errors.append(FieldError("mode", f"must be {' or '.join(MODES)}", mode))
        check_text("negative_prompt", given["negative_prompt"], PROMPT_MAX_CHARS, errors, required=False)
        cfg_scale = given["cfg_scale"]
        if cfg_scale is not None:
            if model is not None and not model.cfg_scale:
                errors.append(
                    FieldError("cfg_scale", f"is not supported by {model_name}; leave it unset", cfg_scale)
                )
            elif not _is_number(cfg_scale) or not 0 <= cfg_scale <= 1:
                errors.append(FieldError("cfg_scale", "must be a number from 0 to 1", cfg_scale))
        if given["camera_control"] is not None:
            _check_camera(given["camera_control"], errors)
        if model is not None and mode in MODES and sound is True and (mode, sound) not in model.prices:
            has_sound = ("pro", True) in model.prices
            rule = (
                f"is only for pro mode of {model_name}" if has_sound else f"is not supported by {model_name}"
            )
            errors.append(FieldError("sound", rule, sound))
        self._check_tail(given, generation, model, model_name, mode, sound, errors)
        return {
            **dict.fromkeys(given),
            "model_name": model_name,
            "mode": mode,
            "negative_prompt": given["negative_prompt"],
            "camera_control": dict(given["camera_control"])
            if isinstance(given["camera_control"], Mapping)
            else given["camera_control"],
            "cfg_scale": cfg_scale,
            "image_tail_url": given["image_tail_url"],
        }

    @staticmethod
    def _check_tail(
        given: Mapping[str, Any],
        generation: GenerationMode | None,
        model: Model | None,
        model_name: Any,
        mode: Any,
        sound: Any,
        errors: list[FieldError],
    ) -> None:
        tail = given["image_tail_url"]
        if tail is None:
            return
        if generation is not GenerationMode.IMAGE_TO_VIDEO:
            errors.append(
                FieldError("image_tail_url", "applies to image_to_video only; leave it unset", tail)
            )
        elif not is_http_url(tail):
            errors.append(FieldError("image_tail_url", "must be an http(s) URL", tail))
        if given["camera_control"] is not None:
            errors.append(
                FieldError(
                    "camera_control", "cannot go with an end frame (image_tail_url)", given["camera_control"]
                )
            )
        if model is not None and model.tail_pro_silent_only and (mode != "pro" or sound is True):
            errors.append(FieldError("image_tail_url", f"needs pro mode and no sound on {model_name}", tail))

    def to_payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model_name": request.model_name,
            "mode": request.mode,
            "prompt": request.prompt,
            "duration": request.duration,
        }
        if ("pro", True) in self.models[str(request.model_name)].prices:  # a model with sound
            payload["sound"] = "on" if request.sound else "off"
        optional = {
            "negative_prompt": request.negative_prompt,
            "cfg_scale": request.cfg_scale,
            "camera_control": request.camera_control,
            "aspect_ratio": request.aspect_ratio,
            "image": request.image_urls[0] if request.image_urls else None,
            "image_tail": request.image_tail_url,
        }
        return payload | {name: value for name, value in optional.items() if value is not None}

    def from_payload(self, payload: Any, generation: GenerationMode | None = None) -> GenerationRequest:
        if not isinstance(payload, Mapping):
            raise KlingValidationError([FieldError("body", "must be a JSON object", payload)])
        wire_errors = []
        ours: dict[str, Any] = {
            name: payload[name]
            for name in (
                "prompt",
                "duration",
                "aspect_ratio",
                "model_name",
                "mode",
                "negative_prompt",
                "cfg_scale",
                "camera_control",
            )
            if name in payload
        }
        ours.setdefault("prompt", None)
        ours.setdefault("model_name", "kling-v1")  # the API's own default, older than any we know
        if "image" in payload:
            ours["image_urls"] = [payload["image"]]
        if "image_tail" in payload:
            ours["image_tail_url"] = payload["image_tail"]
        if "duration" in payload and not isinstance(payload["duration"], str):
            wire_errors.append(FieldError("duration", 'must be a string, "5" or "10"', ours.pop("duration")))
        sound = payload.get("sound", "off")
        if sound not in ("on", "off"):
            wire_errors.append(FieldError("sound", 'must be "on" or "off"', sound))
        unknown = set(payload) - {*ours, "image", "image_tail", "sound", "external_task_id", "callback_url"}
        wire_errors += [
            FieldError(name, "is not a field of this API", payload[name]) for name in sorted(unknown)
        ]
        try:
            request = GenerationRequest(
                api=self.name, generation_mode=generation, sound=sound == "on", **ours
            )
        except KlingValidationError as invalid:
            wire = {"image_urls": "image", "image_tail_url": "image_tail"}
            field_errors = [FieldError(wire.get(e.field, e.field), e.rule, e.value) for e in invalid.errors]
            raise KlingValidationError(wire_errors + field_errors) from None
        if wire_errors:
            raise KlingValidationError(wire_errors)
        return request

    def estimate(self, request: GenerationRequest) -> float:
        model = self.models[str(request.model_name)]
        return model.prices[(str(request.mode), request.sound)] * int(request.duration) / 5

    def submit_path(self, request: GenerationRequest) -> str:
        return VIDEOS_PATH.format(kind=KIND_OF[request.generation_mode])

    def status_paths(self, task_id: str, generation: GenerationMode | None) -> Sequence[str]:
        kinds = [KIND_OF[generation]] if generation else list(KIND_OF.values())
        return tuple(f"{VIDEOS_PATH.format(kind=kind)}/{quote(task_id, safe='')}" for kind in kinds)

    def list_path(self, generation: GenerationMode, page: int) -> str:
        """A page (from 1) of the account's tasks of one generation mode."""
        return f"{VIDEOS_PATH.format(kind=KIND_OF[generation])}?pageNum={page}&pageSize={self.page_size}"

    read_list = staticmethod(read_list)

    def read_submit(self, body: Any, http_status: int | None = None) -> SubmitResult:
        data = envelope_data(body, "submit", http_status)
        known = {"task_id", "task_status"}
        return SubmitResult(
            task_id=require(data, "task_id", str, "submit", http_status),
            status=str(data.get("task_status") or SUBMITTED),
            credits_used=None,  # charged when the job succeeds: the query answer says how much
            credits_remaining=None,
            estimated_time=None,
            message=None,
            extra={k: v for k, v in data.items() if k not in known},
        )

    @staticmethod
    def read_status(body: Any, task_id: str, http_status: int | None = None) -> JobStatus:
        return read_task(envelope_data(body, "status", http_status), task_id, http_status)

    error_from_response = staticmethod(error_for_code)

    def token_expired(self, http_status: int, body: bytes) -> bool:
        return http_status == 401 and _code_of(body) in (TOKEN_NOT_YET_VALID, TOKEN_EXPIRED)


DIALECT = KlingAI()
