"""KlingHook: the Kling API with an Airflow connection's credentials, sync (requests) and async (aiohttp)."""

from __future__ import annotations

import hashlib
import json
import math
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests
from airflow.providers.common.compat.connection import get_async_connection
from airflow.sdk import BaseHook, Connection, ObjectStoragePath
from urllib3.exceptions import NewConnectionError

from airflow_provider_kling import DEFAULT_CONN_ID
from airflow_provider_kling.core import api
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingConnectionSettingError,
    KlingDownloadError,
    KlingError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingTransportError,
    error_from_response,
    is_safe_to_resubmit,
    is_transient,
    shorten,
    transport_error,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobStatus, SubmitResult

if TYPE_CHECKING:
    from airflow_provider_kling.hooks._aio import LoopShared

#: The connection extra (a form field in the UI) below which a submit warns about remaining credits.
LOW_CREDIT_WARNING = "low_credit_warning"
#: The connection extra capping the status polls all waits on the connection make, per triggerer.
MAX_POLLS_PER_SECOND = "max_polls_per_second"


def _polls_per_second(conn_id: str, extra: Mapping[str, Any]) -> float | None:
    """The connection's cap; a URI or environment variable gives it as a string, which is fine."""
    value = extra.get(MAX_POLLS_PER_SECOND)
    if value is None or value == "":
        return None
    try:
        cap = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        cap = math.nan
    if not 0 < cap < math.inf:
        raise KlingConnectionSettingError(
            f"The Kling connection {conn_id!r} sets {MAX_POLLS_PER_SECOND}={value!r}: it must be a number "
            "above 0 (or be left empty for no cap)."
        )
    return cap


@dataclass(frozen=True)
class _ApiSettings:
    base_url: str
    api_key: str = field(repr=False)
    low_credit_warning: int | None = None
    max_polls_per_second: float | None = None  # read for polls only (the triggerer's concern)

    @classmethod
    def from_connection(cls, conn: Connection, extra: Mapping[str, Any]) -> _ApiSettings:
        if not conn.password:
            raise KlingAuthError(
                f"The Kling connection {conn.conn_id!r} has no API key: set it as the connection's password."
            )
        threshold = extra.get(LOW_CREDIT_WARNING)
        return cls(
            base_url=api.base_url(conn.host, conn.port),
            api_key=conn.password,
            low_credit_warning=threshold if isinstance(threshold, int) else None,
        )

    @property
    def headers(self) -> dict[str, str]:
        return api.auth_headers(self.api_key)


def _read_capped(response: requests.Response) -> bytes:
    """The body, read no further than one byte past the cap (so an oversized answer is still noticed)."""
    body = bytearray()
    for chunk in response.iter_content(api.READ_CHUNK_BYTES):
        body += chunk
        if len(body) > api.MAX_BODY_BYTES:
            break
    return bytes(body)


def _requests_error(error: requests.RequestException, url: str) -> KlingTransportError:
    # A refused or unresolvable connection, or a connect timeout, means no byte reached the server.
    reason = getattr(error.args[0], "reason", None) if error.args else None
    not_sent = isinstance(error, requests.ConnectTimeout) or isinstance(reason, NewConnectionError)
    return transport_error(error, request_sent=not not_sent, url=url)


class _HeadersAuth(requests.auth.AuthBase):
    """Sets the API's auth headers on each request."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        self._headers = dict(headers)

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers)
        return request


@dataclass(frozen=True)
class SavedVideo:
    """Where a video was kept, its size and its SHA-256."""

    path: str
    bytes: int
    sha256: str


def _check_video_response(response: requests.Response, video_url: str, max_bytes: int) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise error_from_response(
            response.status_code,
            response.content[: api.MAX_BODY_BYTES],
            retry_after=response.headers.get("Retry-After"),
        )
    if response.status_code != 200:
        raise KlingDownloadError(
            f"Could not download {video_url}: HTTP {response.status_code} (the link may have expired)",
            http_status=response.status_code,
        )
    content_type = response.headers.get("Content-Type", "")
    if content_type.startswith(("text/", "application/json")):
        raise KlingDownloadError(f"{video_url} is not a video (Content-Type {content_type})")
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise KlingDownloadError(
            f"{video_url} is {declared} bytes, larger than the {max_bytes} allowed; not kept"
        )


class KlingHook(BaseHook):
    """Talk to the Kling 2.6 API: connection host = base URL (default https://ulazai.com), password = key.

    Status calls retry transient failures (429 honouring Retry-After, 5xx, timeouts, resets);
    a submit is repeated only when the server provably created no job.
    """

    conn_name_attr = "kling_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "kling"
    hook_name = "Kling AI video"

    status_retry_policy = api.RetryPolicy()
    submit_retry_policy = api.RetryPolicy(attempts=3)

    def __init__(self, kling_conn_id: str = default_conn_name) -> None:
        super().__init__()
        self.kling_conn_id = kling_conn_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kling_conn_id={self.kling_conn_id!r})"

    @cached_property
    def _settings(self) -> _ApiSettings:
        connection = self.get_connection(self.kling_conn_id)
        return _ApiSettings.from_connection(connection, connection.extra_dejson)

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    def get_conn(self) -> requests.Session:
        """The pooled session every sync call goes through."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = requests.Session()
        session.headers.update(self._settings.headers)
        # As the session's auth, it keeps requests from replacing our header with a ~/.netrc login.
        session.auth = _HeadersAuth(self._settings.headers)
        return session

    # -- sync -----------------------------------------------------------------------------------

    def submit(self, request: GenerationRequest) -> SubmitResult:
        """Start a generation: credits are spent once this returns."""
        submitted = self.submit_retry_policy.run(is_safe_to_resubmit, self._submit_once, request)
        self._warn_if_credits_low(submitted.credits_remaining)
        return submitted

    def _warn_if_credits_low(self, credits_remaining: int | None) -> None:
        threshold = self._settings.low_credit_warning
        if threshold is not None and credits_remaining is not None and credits_remaining < threshold:
            self.log.warning(
                "Only %d Kling credits left, below the %d set as %r on connection %r: top up soon.",
                credits_remaining,
                threshold,
                LOW_CREDIT_WARNING,
                self.kling_conn_id,
            )

    def _submit_once(self, request: GenerationRequest) -> SubmitResult:
        url = self.base_url + api.SUBMIT_PATH
        try:
            with self.get_conn().post(
                url, json=request.to_payload(), timeout=(api.CONNECT_TIMEOUT, api.READ_TIMEOUT), stream=True
            ) as response:
                body = _read_capped(response)
        except requests.RequestException as error:
            transport_error = _requests_error(error, url)
            if transport_error.request_sent:
                raise api.uncertain_submit(transport_error) from error
            raise transport_error from error
        return api.read_submit_response(response.status_code, body, response.headers.get("Retry-After"))

    def get_status(self, task_id: str) -> JobStatus:
        return self.status_retry_policy.run(is_transient, self._get_status_once, task_id)

    def _get_status_once(self, task_id: str) -> JobStatus:
        url = self.base_url + api.status_path(task_id)
        try:
            with self.get_conn().get(
                url, timeout=(api.CONNECT_TIMEOUT, api.READ_TIMEOUT), stream=True
            ) as response:
                body = _read_capped(response)
        except requests.RequestException as error:
            raise _requests_error(error, url) from error
        return api.read_status_response(
            response.status_code, body, response.headers.get("Retry-After"), task_id
        )

    def download_video(
        self, video_url: str, destination: ObjectStoragePath, max_bytes: int = api.MAX_VIDEO_BYTES
    ) -> SavedVideo:
        """Stream a finished video to ``destination``: bounded memory, at most ``max_bytes``, atomic.

        The bytes go to a hidden ``.part`` file beside ``destination`` that is renamed into place
        only when complete, so a partial download never appears at the final path. Transient
        failures (5xx, 429, resets) retry the download, never the generation.
        """
        if urlsplit(video_url).scheme not in ("http", "https"):
            raise KlingDownloadError(
                f"Refusing to download a video_url that is not http(s): {shorten(video_url)}"
            )
        return self.status_retry_policy.run(
            is_transient, self._download_once, video_url, destination, max_bytes
        )

    def _download_once(self, video_url: str, destination: ObjectStoragePath, max_bytes: int) -> SavedVideo:
        partial = destination.parent / f".{destination.name}.{uuid.uuid4().hex}.part"
        digest, size = hashlib.sha256(), 0
        try:
            # A session of its own: the API key is for the API, never for the video's host.
            with self._download_session.get(
                video_url, stream=True, timeout=(api.CONNECT_TIMEOUT, api.READ_TIMEOUT)
            ) as response:
                _check_video_response(response, video_url, max_bytes)
                destination.parent.mkdir(parents=True, exist_ok=True)
                with partial.open("wb") as out:
                    for chunk in response.iter_content(api.DOWNLOAD_CHUNK_BYTES):
                        size += len(chunk)
                        if size > max_bytes:
                            raise KlingDownloadError(
                                f"{video_url} is larger than {max_bytes} bytes; not kept"
                            )
                        digest.update(chunk)
                        out.write(chunk)
            partial.rename(destination)
        except requests.RequestException as error:
            raise _requests_error(error, video_url) from error
        finally:
            if partial.exists():
                partial.unlink()
        self.log.info("Saved the Kling video to %s (%d bytes)", destination, size)
        return SavedVideo(path=str(destination), bytes=size, sha256=digest.hexdigest())

    @cached_property
    def _download_session(self) -> requests.Session:
        return requests.Session()

    def test_connection(self) -> tuple[bool, str]:
        """Check the URL and key by asking for a task that cannot exist: 404 means the key works.

        Costs no credits, and makes one request (no retries), so the UI's Test button answers fast.
        """
        try:
            self._get_status_once(f"airflow-connection-test-{uuid.uuid4().hex}")
        except KlingNotFoundError:
            return True, f"Connected to {self.base_url}: the API key was accepted (no credits spent)."
        except KlingAuthError as error:
            return False, str(error)
        except KlingError as error:
            return False, f"Could not check the Kling connection at {self.base_url}: {error}"
        return False, f"{self.base_url} answered for a task that cannot exist: is this the Kling API?"

    # -- async ---------------------------------------------------------------------------------------

    async def aget_status(self, task_id: str) -> JobStatus:
        """The async :meth:`get_status`, for triggers: same retries, on the event loop's shared session,
        paced with every other wait on this connection (the ``max_polls_per_second`` extra)."""
        from airflow_provider_kling.hooks._aio import shared_for_loop

        async with shared_for_loop() as shared:
            return await self.status_retry_policy.arun(is_transient, self._aget_status_once, shared, task_id)

    async def _aget_status_once(self, shared: LoopShared, task_id: str) -> JobStatus:
        settings: _ApiSettings = shared.known_settings(self.kling_conn_id) or await shared.settings(
            self.kling_conn_id, self._read_async_settings
        )
        pacer = shared.pacer(self.kling_conn_id, settings.max_polls_per_second)
        if pacer.holds_back:
            await pacer.turn()
        http_status, body, retry_after = await shared.get(
            settings.base_url, api.status_path(task_id), settings.headers
        )
        try:
            return api.read_status_response(http_status, body, retry_after, task_id)
        except KlingRateLimitError as limited:
            pacer.pause(self.status_retry_policy.group_pause(limited))
            raise
        except KlingAuthError:
            shared.forget_settings(self.kling_conn_id)  # the key may have changed: read it again
            raise

    async def _read_async_settings(self) -> _ApiSettings:
        connection = await get_async_connection(self.kling_conn_id, hook=self)
        # Not extra_dejson: it masks secrets synchronously, which an event loop must not do.
        extra = _extra_of(connection)
        settings = _ApiSettings.from_connection(connection, extra)
        return replace(settings, max_polls_per_second=_polls_per_second(self.kling_conn_id, extra))


def _extra_of(connection: Connection) -> dict[str, Any]:
    try:
        extra = json.loads(connection.extra or "{}")
    except ValueError:
        return {}
    return extra if isinstance(extra, dict) else {}
