"""KlingHook: a Kling API with an Airflow connection's credentials, sync (requests) and async (aiohttp)."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import json
import math
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any
from urllib.parse import SplitResult, urljoin, urlsplit

import requests
from airflow.providers.common.compat.connection import get_async_connection
from airflow.sdk import BaseHook, Connection, ObjectStoragePath
from urllib3 import exceptions as urllib3_errors
from urllib3.exceptions import NewConnectionError

from airflow_provider_kling import DEFAULT_CONN_ID, metrics
from airflow_provider_kling.core import api, videos
from airflow_provider_kling.core.addresses import ALLOWED_VIDEO_HOSTS, AddressPolicy, parse_allowed
from airflow_provider_kling.core.dialects import DIALECTS, Credentials, Dialect
from airflow_provider_kling.core.dialects.klingai import KlingAI, external_id_of, names_external_id
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingBadRequestError,
    KlingConnectionSettingError,
    KlingDownloadError,
    KlingError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingSubmitUncertainError,
    KlingTimeoutError,
    KlingTransportError,
    error_from_response,
    is_safe_to_resubmit,
    is_transient,
    origin_of,
    redact_error,
    secret_forms,
    shorten,
    transport_error,
)
from airflow_provider_kling.core.request import DEFAULT_API, GenerationMode, GenerationRequest
from airflow_provider_kling.core.responses import JobStatus, SubmitResult, parse_estimated_time
from airflow_provider_kling.core.urls import is_http_url
from airflow_provider_kling.hooks._guard import CallGuard, guarded, guarded_session

if TYPE_CHECKING:
    from airflow_provider_kling.hooks._aio import LoopShared

#: The connection extra (a form field in the UI) below which a submit warns about remaining credits.
LOW_CREDIT_WARNING = "low_credit_warning"
#: The connection extra capping the status polls all waits on the connection make, per triggerer.
MAX_POLLS_PER_SECOND = "max_polls_per_second"
#: The connection extra that turns off the adaptive poll rate (on unless set false).
ADAPTIVE_RATE = "adaptive_rate"
#: The connection extra naming the API the connection speaks: "ulazai" (the default) or "klingai".
API = "api"
#: The connection extra saying how long the account's jobs take ("60-90"), for the waits of an API
#: whose submit announces nothing (Kling's own).
JOB_SECONDS = "job_seconds"
#: How many times a findable submit (external_task_id) may be sent after its answer was lost.
FIND_ROUNDS = 3
#: Redirects a video download follows, each hop's address checked again.
MAX_VIDEO_REDIRECTS = 5


def _setting_error(conn_id: str, name: str, value: Any, rule: str) -> KlingConnectionSettingError:
    return KlingConnectionSettingError(f"The Kling connection {conn_id!r} sets {name}={value!r}: {rule}.")


def _number(conn_id: str, extra: Mapping[str, Any], name: str, rule: str, *, whole: bool) -> float | None:
    """An extra that holds a number above 0 (a whole one if ``whole``); a URI or environment variable
    gives it as a string, which is fine. Empty means unset."""
    value = extra.get(name)
    if value is None or value == "":
        return None
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not 0 < number < math.inf or (whole and not number.is_integer()):
        raise _setting_error(conn_id, name, value, rule)
    return number


def _flag(conn_id: str, extra: Mapping[str, Any], name: str, default: bool) -> bool:
    """An extra that holds true or false; a URI or environment variable gives it as text."""
    value = extra.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    if str(value).strip().lower() in ("true", "false"):
        return str(value).strip().lower() == "true"
    raise _setting_error(conn_id, name, value, "it must be true or false")


@dataclass(frozen=True)
class _ApiSettings:
    base_url: str
    dialect: Dialect
    credentials: Credentials = field(repr=False)
    low_credit_warning: int | None = None
    max_polls_per_second: float | None = None
    adaptive_rate: bool = True
    allowed_video_hosts: tuple[frozenset[str], tuple[Any, ...]] = (frozenset(), ())
    job_seconds: tuple[float, float] | None = None
    #: The secrets already told to Airflow's log masker (a token is told once, when first made).
    masked: set[str] = field(default_factory=set, compare=False, repr=False)

    def secrets_to_mask(self) -> tuple[str, ...]:
        """The secrets made since the masker was last told, now counted as told."""
        new = tuple(secret for secret in self.credentials.secrets() if secret not in self.masked)
        self.masked.update(new)
        return new

    @classmethod
    def from_connection(cls, conn: Connection) -> _ApiSettings:
        """Every setting of the connection, read the same way in workers and in the triggerer: a bad
        one is the same clear error on both, and comes before any request is sent."""
        conn_id, extra = conn.conn_id, _extra_of(conn)
        dialect = _dialect_of(conn_id, extra)
        if not conn.password:
            raise KlingAuthError(
                f"The Kling connection {conn_id!r} has no {dialect.password_label}: set it as the "
                "connection's password."
            )
        if dialect.login_label and not conn.login:
            raise KlingAuthError(
                f"The Kling connection {conn_id!r} has no {dialect.login_label}: set it as the "
                "connection's login."
            )
        threshold = _number(
            conn_id, extra, LOW_CREDIT_WARNING, "it must be a whole number above 0, or empty", whole=True
        )
        try:
            allowed = parse_allowed(extra.get(ALLOWED_VIDEO_HOSTS))
        except ValueError as bad:
            raise KlingConnectionSettingError(
                f"The Kling connection {conn_id!r} sets {ALLOWED_VIDEO_HOSTS}: {bad}"
            ) from None
        return cls(
            base_url=api.base_url(conn.host, conn.port, dialect.default_base_url),
            dialect=dialect,
            credentials=dialect.credentials(conn.login, conn.password),
            low_credit_warning=None if threshold is None else int(threshold),
            max_polls_per_second=_number(
                conn_id,
                extra,
                MAX_POLLS_PER_SECOND,
                "it must be a number above 0 (or empty for no cap)",
                whole=False,
            ),
            adaptive_rate=_flag(conn_id, extra, ADAPTIVE_RATE, default=True),
            allowed_video_hosts=allowed,
            job_seconds=_seconds_range(conn_id, extra),
        )


def _seconds_range(conn_id: str, extra: Mapping[str, Any]) -> tuple[float, float] | None:
    """The ``job_seconds`` extra ("60-90", "75", with or without "seconds"); empty means unset."""
    value = extra.get(JOB_SECONDS)
    if value is None or value == "":
        return None
    text = str(value).strip()
    seconds = parse_estimated_time(text) or parse_estimated_time(f"{text} seconds")
    if seconds is None:
        rule = 'it must be how long a job takes in seconds, as "60-90" or "75", or empty'
        raise _setting_error(conn_id, JOB_SECONDS, value, rule)
    return seconds


def _dialect_of(conn_id: str, extra: Mapping[str, Any]) -> Dialect:
    name = extra.get(API) or DEFAULT_API
    dialect = DIALECTS.get(name) if isinstance(name, str) else None
    if dialect is None:
        raise _setting_error(conn_id, API, name, f"it must be one of {', '.join(DIALECTS)}")
    return dialect


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
    """Sets the API's auth headers on each request, as they are then (a token may be renewed)."""

    def __init__(self, headers: Callable[[], Mapping[str, str]]) -> None:
        self._headers = headers

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        request.headers.update(self._headers())
        return request


@dataclass(frozen=True)
class SavedVideo:
    """Where a video was kept, its size and its SHA-256."""

    path: str
    bytes: int
    sha256: str


def _first_bytes(chunks: Iterator[bytes], count: int) -> bytes:
    """At least ``count`` bytes from ``chunks`` (whole chunks), or all there are."""
    head = b""
    for chunk in chunks:
        head += chunk
        if len(head) >= count:
            break
    return head


def _check_is_video(head: bytes, response: requests.Response, url: str) -> None:
    """Refuse (before anything is kept) a body that does not begin like a video container."""
    if videos.container_of(head) is None:
        raise KlingDownloadError(
            f"{shorten(url)} is not a video: {videos.describe(head)} "
            f"(Content-Type {response.headers.get('Content-Type') or 'none'}); nothing was kept"
        )


def _check_video_response(response: requests.Response, video_url: str, max_bytes: int) -> None:
    if response.status_code == 429 or response.status_code >= 500:
        raise error_from_response(
            response.status_code, _read_capped(response), retry_after=response.headers.get("Retry-After")
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


def _paced_chunks(response: requests.Response, url: str, watch: api.SpeedWatch) -> Iterator[bytes]:
    """The body as it arrives (each read returns what came, not a full chunk), ended with a
    transient error, which the download's retries try again, once it stalls below ``watch``'s floor."""
    while chunk := _read1(response):
        if (rate := watch.stalled(len(chunk))) is not None:
            raise KlingTransportError(
                f"Kling: {origin_of(url)} sent the video at {rate:,.0f} bytes/s, below the floor of "
                f"{watch.floor.describe()}: the download stalled; cut off"
            )
        yield chunk


def _read1(response: requests.Response) -> bytes:
    """What the body has brought since the last read (b"" at its end), its failures as requests'
    own ``iter_content`` raises them."""
    try:
        return bytes(response.raw.read1(api.DOWNLOAD_CHUNK_BYTES, decode_content=True))
    except urllib3_errors.ProtocolError as error:
        raise requests.exceptions.ChunkedEncodingError(error) from error
    except urllib3_errors.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from error
    except urllib3_errors.ReadTimeoutError as error:
        raise requests.exceptions.ConnectionError(error) from error
    except urllib3_errors.SSLError as error:
        raise requests.exceptions.SSLError(error) from error


def _complete(response: requests.Response, size: int) -> bool:
    declared = response.headers.get("Content-Length", "")
    return declared.isdigit() and int(declared) == size


def _out_of_time(url: str, what: str, budget: str) -> KlingTimeoutError:
    return KlingTimeoutError(
        f"Kling: {origin_of(url)} did not deliver the {what} within {budget} "
        "(connect, headers and body together); cut off"
    )


def _addresses_of(host: str) -> list[str]:
    try:
        return [str(info[4][0]) for info in socket.getaddrinfo(host, None, 0, socket.SOCK_STREAM)]
    except (socket.gaierror, UnicodeError):
        return []


def _check_behind_proxy(session: requests.Session, url: str, policy: AddressPolicy) -> None:
    """Behind a proxy the proxy connects, not us: check what the video's host resolves to here
    (the proxy resolves it again; a name that does not resolve here is refused)."""
    if session.trust_env and requests.utils.select_proxy(url, requests.utils.get_environ_proxies(url)):
        parts = urlsplit(url)
        host = parts.hostname or ""
        policy.check(host, _port_of(parts), _addresses_of(host))


def _port_of(parts: SplitResult) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def _api_endpoints(base_url: str) -> frozenset[tuple[str, int]]:
    """The API's own address and port, when the connection names them literally (an IP address or
    localhost): videos may come from there. A name is not trusted, since its DNS could say anything."""
    parts = urlsplit(base_url)
    host, port = (parts.hostname or "").lower(), _port_of(parts)
    if host == "localhost":
        return frozenset({("127.0.0.1", port), ("::1", port)})
    try:
        return frozenset({(str(ipaddress.ip_address(host)), port)})
    except ValueError:
        return frozenset()


def _register_with_masker(secrets: tuple[str, ...]) -> None:
    """Airflow masks a connection's password in logs; add the forms a server may echo it in, and
    the tokens made from it."""
    try:
        from airflow.sdk.log import mask_secret
    except ImportError:  # not inside an Airflow process
        return
    for secret in secrets:
        for form in secret_forms(secret):
            mask_secret(form)


async def _aregister_with_masker(secrets: tuple[str, ...]) -> None:
    """The triggerer's :func:`_register_with_masker`, where Airflow has an async one (3.3+)."""
    try:
        from airflow.sdk.log import amask_secret
    except ImportError:  # older Airflow: its own connection fetch masked the password as it is
        return
    for secret in secrets:
        for form in secret_forms(secret):
            await amask_secret(form)


class KlingHook(BaseHook):
    """Talk to a Kling API: UlazAI's (the default) or Kling's own, as the connection's ``api`` extra says.

    Status calls retry transient failures (429 honouring Retry-After, 5xx, timeouts, resets);
    a submit is repeated only when the server provably created no job, or, on an API whose submits
    carry the caller's ``external_task_id`` (``klingai``), when the account's task list proves no
    job has that id. Every call has a total time budget
    (:class:`~airflow_provider_kling.core.api.Budgets`), follows no redirect, and strips the
    secrets (the key, and any token made from it) from any error text, even where a server echoes them.

    :param kling_conn_id: the Airflow connection (type ``kling``). Extra ``api``: ``"ulazai"``
        (the default: host = base URL, default https://ulazai.com; password = API key) or
        ``"klingai"`` (host default https://api-singapore.klingai.com; login = Access Key,
        password = Secret Key). Extras ``low_credit_warning``, ``max_polls_per_second``,
        ``adaptive_rate`` and ``allowed_video_hosts``.
    :param status_retry_policy: how status reads and downloads retry transient failures.
    :param submit_retry_policy: how a submit retries, when the server provably created no job.
    :param budgets: the time budgets of a request, a call with its retries, and a download.
    """

    conn_name_attr = "kling_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = "kling"
    hook_name = "Kling AI video"

    def __init__(
        self,
        kling_conn_id: str = default_conn_name,
        *,
        status_retry_policy: api.RetryPolicy = api.STATUS_RETRIES,
        submit_retry_policy: api.RetryPolicy = api.SUBMIT_RETRIES,
        budgets: api.Budgets = api.BUDGETS,
    ) -> None:
        super().__init__()
        self.kling_conn_id = kling_conn_id
        self.status_retry_policy = status_retry_policy
        self.submit_retry_policy = submit_retry_policy
        self.budgets = budgets

    def __repr__(self) -> str:
        return f"{type(self).__name__}(kling_conn_id={self.kling_conn_id!r})"

    @cached_property
    def _settings(self) -> _ApiSettings:
        connection = self.get_connection(self.kling_conn_id)
        settings = _ApiSettings.from_connection(connection)
        _register_with_masker(settings.secrets_to_mask())
        return settings

    @property
    def base_url(self) -> str:
        return self._settings.base_url

    @property
    def dialect(self) -> Dialect:
        """The API the connection speaks."""
        return self._settings.dialect

    def expected_seconds(self, submitted: tuple[float, float] | None) -> tuple[float, float] | None:
        """How long a job is expected to take: what its submit announced, else the connection's
        ``job_seconds``, else None (the wait then plans on the documented 60-90 s)."""
        return submitted or self._settings.job_seconds

    def _headers(self) -> Mapping[str, str]:
        """The auth headers for a request now; a token made for them is masked in logs from now on."""
        headers = self._settings.credentials.headers()
        _register_with_masker(self._settings.secrets_to_mask())
        return headers

    def get_conn(self) -> requests.Session:
        """The pooled session the API's sync calls go through (not downloads: they carry no key)."""
        return self._session

    @cached_property
    def _session(self) -> requests.Session:
        session = guarded_session()
        # As the session's auth, it keeps requests from replacing our header with a ~/.netrc login.
        session.auth = _HeadersAuth(self._headers)
        return session

    @contextmanager
    def _clean_errors(self) -> Iterator[None]:
        """Errors leave with every echo of the key taken out (a server may quote our request back),
        and an auth error names the connection to fix."""
        try:
            yield
        except KlingError as error:
            self._finish_error(error, self._settings.credentials.secrets())
            raise

    def _retried(self) -> None:
        metrics.retried(self.kling_conn_id)

    def _finish_error(self, error: KlingError, secrets: tuple[str, ...]) -> None:
        """Take every echo of the secrets out of ``error``; make an auth error name the connection.
        Counts a 429 (every call to the API ends here when it fails)."""
        for secret in secrets:
            redact_error(error, secret)
        if isinstance(error, KlingRateLimitError):
            metrics.rate_limited(self.kling_conn_id)
        if isinstance(error, KlingAuthError) and f"connection {self.kling_conn_id!r}" not in error.message:
            error.message = f"{error.message} (connection {self.kling_conn_id!r})"
            error.args = (error.message, *error.args[1:])

    def _call_api(
        self, method: str, path: str, deadline: api.Deadline, what: str, **kwargs: Any
    ) -> tuple[int, bytes, Mapping[str, str]]:
        """One request to the API within ``deadline`` and the per-request budget; no redirects. Asked
        once more, with fresh proof, when the answer says the token expired."""
        answer = self._request_api(method, path, deadline, what, **kwargs)
        if self._settings.dialect.token_expired(answer[0], answer[1]):
            self._settings.credentials.renew()
            answer = self._request_api(method, path, deadline, what, **kwargs)
        return answer

    def _request_api(
        self, method: str, path: str, deadline: api.Deadline, what: str, **kwargs: Any
    ) -> tuple[int, bytes, Mapping[str, str]]:
        url = self.base_url + path
        seconds = min(self.budgets.request, deadline.remaining())
        if seconds <= 0:
            raise KlingTimeoutError(
                f"Kling: no time left to ask {origin_of(url)} for the {what} (its {deadline.seconds:g} s "
                "budget is spent); not sent",
                request_sent=False,
            )
        if seconds == self.budgets.request:
            budget = f"its {seconds:g} s budget"
        else:
            budget = f"what was left ({seconds:.1f} s) of the call's {deadline.seconds:g} s budget"
        with guarded(seconds) as guard:
            try:
                with self.get_conn().request(
                    method,
                    url,
                    timeout=(min(self.budgets.connect, seconds), self.budgets.read),
                    stream=True,
                    allow_redirects=False,
                    **kwargs,
                ) as response:
                    body = _read_capped(response)
            except requests.RequestException as error:
                if guard.expired:
                    raise _out_of_time(url, what, budget) from error
                raise _requests_error(error, url) from error
            # A cut socket reads as end-of-file: never take that for a whole body, unless the body
            # is as long as it said it would be (the budget ran out just as it arrived).
            if guard.finish() and not _complete(response, len(body)):
                raise _out_of_time(url, what, budget)
        return response.status_code, body, response.headers

    # -- sync -----------------------------------------------------------------------------------

    def submit(
        self, request: GenerationRequest, timeout: float | None = None, external_task_id: str | None = None
    ) -> SubmitResult:
        """Start a generation: credits are spent once this returns.

        :param request: the validated request, for the connection's API.
        :param timeout: seconds the call may take with its retries, if less than ``budgets.call``.
        :param external_task_id: the caller's own id for the job, on an API that takes one
            (``klingai``): the same for every try of one take. A submit whose answer was lost, or that
            the API refuses because the id is taken, is then found by it in the account's task list
            and returned; it is sent again only when the whole list holds no such job.
        """
        if request.api != self.dialect.name:
            raise KlingConnectionSettingError(
                f"The request is for api={request.api!r}, but the Kling connection {self.kling_conn_id!r} "
                f"speaks api={self.dialect.name!r}: set its '{API}' extra, or use another connection."
            )
        deadline = api.Deadline.after(self.budgets.call).sooner(timeout)
        if external_task_id is None:
            submitted = self._submit(request, deadline, None)
        else:
            submitted = self._submit_findable(request, external_task_id, deadline)
        self._warn_if_credits_low(submitted.credits_remaining)
        return submitted

    def _submit(
        self, request: GenerationRequest, deadline: api.Deadline, external_task_id: str | None
    ) -> SubmitResult:
        return self.submit_retry_policy.run(
            is_safe_to_resubmit,
            self._submit_once,
            request,
            deadline,
            external_task_id,
            deadline=deadline,
            on_retry=self._retried,
        )

    def _submit_findable(
        self, request: GenerationRequest, external_task_id: str, deadline: api.Deadline
    ) -> SubmitResult:
        """Submit with the caller's id; after an uncertain answer, the job with that id, or a new
        submit once the task list proves there is none. Never a second job for one id: the API
        refuses a taken id, and that refusal is read as "find it"."""
        if not self.dialect.has_external_task_id:
            raise KlingConnectionSettingError(
                f"{self.dialect.name!r} submits carry no external_task_id to find an uncertain submit by"
            )
        for _round in range(FIND_ROUNDS):
            try:
                return self._submit(request, deadline, external_task_id)
            except (KlingSubmitUncertainError, KlingBadRequestError) as error:
                if isinstance(error, KlingBadRequestError) and not names_external_id(error):
                    raise
                uncertain = error
            found = self.find_job(external_task_id, request.generation_mode, timeout=deadline.remaining())
            if found is not None:
                self.log.warning(
                    "The Kling submit's fate was unknown (%s); found its job %s by external_task_id %s.",
                    uncertain,
                    found.task_id,
                    external_task_id,
                )
                return SubmitResult(
                    task_id=found.task_id,
                    status=found.status,
                    credits_used=None,
                    credits_remaining=None,
                    estimated_time=None,
                    message=None,
                    extra={"found_by_external_task_id": external_task_id, "found_state": found.state.value},
                )
            self.log.warning(
                "The Kling submit's answer was lost (%s), and the account's task list holds no job with "
                "external_task_id %s: sending it again (the API refuses a second job with that id).",
                uncertain,
                external_task_id,
            )
        raise KlingSubmitUncertainError(
            f"The Kling submit's fate is unknown ({uncertain}), and its external_task_id {external_task_id} "
            f"was not found after {FIND_ROUNDS} tries. Nothing more was sent; a retry looks for the job "
            "by that id again, and never makes a second one.",
            http_status=uncertain.http_status,
        ) from uncertain

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

    def _submit_once(
        self, request: GenerationRequest, deadline: api.Deadline, external_task_id: str | None
    ) -> SubmitResult:
        payload = request.to_payload()
        if external_task_id is not None:
            payload["external_task_id"] = external_task_id
        with self._clean_errors():
            try:
                http_status, body, headers = self._call_api(
                    "POST", self.dialect.submit_path(request), deadline, "submit answer", json=payload
                )
            except KlingTransportError as error:
                if error.request_sent:
                    raise api.uncertain_submit(error) from error
                raise
            return api.read_submit_response(
                self.dialect, http_status, body, headers.get("Retry-After"), headers.get("Location")
            )

    def get_status(
        self, task_id: str, timeout: float | None = None, generation_mode: GenerationMode | None = None
    ) -> JobStatus:
        """The job's status, retrying transient failures.

        :param task_id: the vendor task_id.
        :param timeout: seconds the call may take with its retries, if less than ``budgets.call``.
        :param generation_mode: the job's mode, where the API reads each mode's jobs at a path of its
            own (``klingai``); unknown, each path is asked in turn.
        """
        deadline = api.Deadline.after(self.budgets.call).sooner(timeout)
        *others, last = self.dialect.status_paths(task_id, generation_mode)
        for path in others:
            try:
                return self._read_status(task_id, path, deadline)
            except KlingNotFoundError:
                continue
        return self._read_status(task_id, last, deadline)

    def _read_status(self, task_id: str, path: str, deadline: api.Deadline) -> JobStatus:
        return self.status_retry_policy.run(
            is_transient,
            self._get_status_once,
            task_id,
            path,
            deadline,
            deadline=deadline,
            on_retry=self._retried,
        )

    def _get_status_once(self, task_id: str, path: str, deadline: api.Deadline) -> JobStatus:
        with self._clean_errors():
            http_status, body, headers = self._call_api("GET", path, deadline, "status answer")
            return api.read_status_response(
                self.dialect, http_status, body, headers.get("Retry-After"), task_id, headers.get("Location")
            )

    def find_job(
        self, external_task_id: str, generation_mode: GenerationMode, timeout: float | None = None
    ) -> JobStatus | None:
        """The job submitted with ``external_task_id``, or None when the account's task list, read
        to its end, holds none. The list's order is not relied on. A list that cannot be read to its
        end within the time leaves the question open: a :class:`KlingSubmitUncertainError`, never None.

        :param external_task_id: the id the submit carried.
        :param generation_mode: the job's mode (each mode has a list of its own).
        :param timeout: seconds the reading may take, if less than ``budgets.call``.
        """
        dialect = self.dialect
        if not isinstance(dialect, KlingAI):
            raise KlingConnectionSettingError(f"{dialect.name!r} has no external_task_id to find a job by")
        deadline = api.Deadline.after(self.budgets.call).sooner(timeout)
        try:
            for page in itertools.count(1):
                tasks, count = self.status_retry_policy.run(
                    is_transient,
                    self._list_page_once,
                    dialect,
                    generation_mode,
                    page,
                    deadline,
                    deadline=deadline,
                )
                for task in tasks:
                    if external_id_of(task.extra) == external_task_id:
                        return task
                if count < dialect.page_size:
                    return None
        except KlingError as unreadable:
            raise KlingSubmitUncertainError(
                f"Could not read the Kling task list to its end to find the job with external_task_id "
                f"{external_task_id} ({unreadable}); whether it exists is unknown, so nothing was sent. A "
                "retry looks again.",
                http_status=unreadable.http_status,
            ) from unreadable
        raise AssertionError("unreachable")  # itertools.count never ends

    def _list_page_once(
        self, dialect: KlingAI, generation_mode: GenerationMode, page: int, deadline: api.Deadline
    ) -> tuple[list[JobStatus], int]:
        with self._clean_errors():
            http_status, body, headers = self._call_api(
                "GET", dialect.list_path(generation_mode, page), deadline, "task list"
            )
            if not 200 <= http_status < 300:
                raise dialect.error_from_response(
                    http_status, body[: api.MAX_BODY_BYTES], retry_after=headers.get("Retry-After")
                )
            return dialect.read_list(api.read_json_body(body, http_status, what="task list"), http_status)

    def download_video(
        self,
        video_url: str,
        destination: ObjectStoragePath,
        max_bytes: int = api.MAX_VIDEO_BYTES,
        timeout: float | None = None,
    ) -> SavedVideo:
        """Stream a finished video to ``destination``: bounded memory, at most ``max_bytes``, atomic.

        The bytes go to a hidden ``.part`` file beside ``destination`` that is renamed into place
        only when complete, so a partial download never appears at the final path. Only a body
        that begins like a video is kept. Only public addresses, the API's own, and what the
        connection's ``allowed_video_hosts`` names are connected to, checked at every redirect
        hop. Transient failures (5xx, 429, resets) retry the download, never the generation.

        :param video_url: the finished job's ``video_url``.
        :param destination: where to keep it.
        :param max_bytes: the largest video kept.
        :param timeout: seconds the download may take with its retries, if less than
            ``budgets.download``.
        """
        deadline = api.Deadline.after(self.budgets.download).sooner(timeout)
        return self.status_retry_policy.run(
            is_transient,
            self._download_once,
            video_url,
            destination,
            max_bytes,
            deadline,
            deadline=deadline,
        )

    def _video_addresses(self) -> AddressPolicy:
        hosts, networks = self._settings.allowed_video_hosts
        return AddressPolicy(
            api_endpoints=_api_endpoints(self.base_url),
            allowed_hosts=hosts,
            allowed_networks=networks,
        )

    def _download_once(
        self, video_url: str, destination: ObjectStoragePath, max_bytes: int, deadline: api.Deadline
    ) -> SavedVideo:
        policy = self._video_addresses()
        url = video_url
        for _hop in range(MAX_VIDEO_REDIRECTS + 1):
            if not is_http_url(url):
                raise KlingDownloadError(
                    f"Refusing to download a video_url that is not http(s): {shorten(url)}"
                )
            if deadline.remaining() <= 0:
                raise KlingTimeoutError(
                    f"Kling: the video download's {deadline.seconds:g} s budget is spent", request_sent=False
                )
            _check_behind_proxy(self._download_session, url, policy)
            budget = f"the download's {deadline.seconds:g} s budget"
            with guarded(deadline.remaining(), policy) as guard:
                try:
                    # A session of its own: the API key is for the API, never for the video's host.
                    with self._download_session.get(
                        url,
                        stream=True,
                        timeout=(min(self.budgets.connect, deadline.remaining()), self.budgets.read),
                        allow_redirects=False,
                    ) as response:
                        if response.is_redirect:
                            url = urljoin(url, response.headers["Location"])
                            continue
                        return self._save(response, url, destination, max_bytes, guard, budget)
                except requests.RequestException as error:
                    if guard.expired:
                        raise _out_of_time(url, "video", budget) from error
                    raise _requests_error(error, url) from error
        raise KlingDownloadError(
            f"Could not download {shorten(video_url)}: more than {MAX_VIDEO_REDIRECTS} redirects"
        )

    def _save(
        self,
        response: requests.Response,
        url: str,
        destination: ObjectStoragePath,
        max_bytes: int,
        guard: CallGuard,
        budget: str,
    ) -> SavedVideo:
        _check_video_response(response, url, max_bytes)
        chunks = _paced_chunks(response, url, api.SpeedWatch(self.budgets.download_floor))
        head = _first_bytes(chunks, videos.SIGNATURE_BYTES)
        if guard.expired:
            raise _out_of_time(url, "video", budget)
        _check_is_video(head, response, url)
        partial = destination.parent / f".{destination.name}.{uuid.uuid4().hex}.part"
        digest, size = hashlib.sha256(), 0
        try:
            destination.parent.mkdir(parents=True, exist_ok=True)
            with partial.open("wb") as out:
                for chunk in itertools.chain((head,), chunks):
                    size += len(chunk)
                    if size > max_bytes:
                        raise KlingDownloadError(f"{url} is larger than {max_bytes} bytes; not kept")
                    digest.update(chunk)
                    out.write(chunk)
            if guard.finish() and not _complete(response, size):  # cut short: not the whole video
                raise _out_of_time(url, "video", budget)
            partial.rename(destination)
        finally:
            if partial.exists():
                partial.unlink()
        self.log.info("Saved the Kling video to %s (%d bytes)", destination, size)
        return SavedVideo(path=str(destination), bytes=size, sha256=digest.hexdigest())

    @cached_property
    def _download_session(self) -> requests.Session:
        session = guarded_session()
        # An auth of its own (sending nothing) keeps requests from adding a ~/.netrc login.
        session.auth = _HeadersAuth(dict)
        return session

    def test_connection(self) -> tuple[bool, str]:
        """Check the URL and key by asking for a task that cannot exist: 404 means the key works.

        Costs no credits, and makes one request (no retries) within one request's budget, so the
        UI's Test button answers fast.
        """
        try:
            deadline = api.Deadline.after(self.budgets.request)
            task_id = f"airflow-connection-test-{uuid.uuid4().hex}"
            path = self.dialect.status_paths(task_id, GenerationMode.TEXT_TO_VIDEO)[0]
            self._get_status_once(task_id, path, deadline)
        except (KlingNotFoundError, KlingBadRequestError) as refused:
            # A refusal of the request, not of the credentials: they were accepted. Only an API that
            # says so in a code of its own is believed about a bad request.
            if isinstance(refused, KlingNotFoundError) or refused.vendor_code is not None:
                dialect = self.dialect
                accepted = (
                    f"the {dialect.login_label} and {dialect.password_label} were"
                    if dialect.login_label
                    else f"the {dialect.password_label} was"
                )
                return True, f"Connected to {self.base_url}: {accepted} accepted (no credits spent)."
            return False, f"Could not check the Kling connection at {self.base_url}: {refused}"
        except KlingAuthError as error:
            # The UI's Test button tests the form under a made-up connection id: naming it misleads.
            return False, error.message.replace(f" (connection {self.kling_conn_id!r})", "")
        except KlingError as error:
            return False, f"Could not check the Kling connection at {self.base_url}: {error}"
        return False, f"{self.base_url} answered for a task that cannot exist: is this the Kling API?"

    # -- async ---------------------------------------------------------------------------------------

    @asynccontextmanager
    async def polling_session(self) -> AsyncIterator[None]:
        """Hold this event loop's shared session (and per-connection settings and pacing) open
        around many polls, as a wait does, so that they reuse its connections."""
        from airflow_provider_kling.hooks._aio import shared_for_loop

        async with shared_for_loop():
            yield

    async def aget_status(self, task_id: str, generation_mode: GenerationMode | None = None) -> JobStatus:
        """The async :meth:`get_status`, for triggers: same retries, on the event loop's shared session,
        paced with every other wait on this connection (the ``max_polls_per_second`` extra)."""
        from airflow_provider_kling.hooks._aio import shared_for_loop

        async with shared_for_loop() as shared:
            return await self.status_retry_policy.arun(
                is_transient, self._aget_status_once, shared, task_id, generation_mode, on_retry=self._retried
            )

    async def _aget_status_once(
        self, shared: LoopShared, task_id: str, generation_mode: GenerationMode | None
    ) -> JobStatus:
        known: _ApiSettings | None = shared.known_settings(self.kling_conn_id)
        settings = known or await shared.settings(self.kling_conn_id, self._read_async_settings)
        *others, last = settings.dialect.status_paths(task_id, generation_mode)
        for path in others:
            try:
                return await self._aread_status(shared, settings, task_id, path)
            except KlingNotFoundError:
                continue
        return await self._aread_status(shared, settings, task_id, last)

    async def _aread_status(
        self, shared: LoopShared, settings: _ApiSettings, task_id: str, path: str
    ) -> JobStatus:
        pacer = shared.pacer(self.kling_conn_id, settings.max_polls_per_second, settings.adaptive_rate)
        if pacer.holds_back:
            await pacer.turn()
        pacer.sent()
        try:
            answer = await self._aget(shared, settings, path)
            if settings.dialect.token_expired(answer[0], answer[1]):
                settings.credentials.renew()
                answer = await self._aget(shared, settings, path)
            http_status, body, headers = answer
            status = api.read_status_response(
                settings.dialect,
                http_status,
                body,
                headers.get("Retry-After"),
                task_id,
                headers.get("Location"),
            )
            pacer.answered()
            return status
        except KlingError as error:
            if isinstance(error, KlingRateLimitError):
                pacer.limited(self.status_retry_policy.group_pause(error))
            elif isinstance(error, KlingAuthError):
                shared.forget_settings(self.kling_conn_id)  # the key may have changed: read it again
            self._finish_error(error, settings.credentials.secrets())
            raise

    async def _aget(
        self, shared: LoopShared, settings: _ApiSettings, path: str
    ) -> tuple[int, bytes, Mapping[str, str]]:
        headers = settings.credentials.headers()
        if new := settings.secrets_to_mask():
            await _aregister_with_masker(new)
        return await shared.get(settings.base_url, path, headers, self.budgets)

    async def _read_async_settings(self) -> _ApiSettings:
        connection = await get_async_connection(self.kling_conn_id, hook=self)
        settings = _ApiSettings.from_connection(connection)
        await _aregister_with_masker(settings.secrets_to_mask())
        return settings


def _extra_of(connection: Connection) -> dict[str, Any]:
    # Not extra_dejson: it masks secrets synchronously, which an event loop must not do.
    try:
        extra = json.loads(connection.extra or "{}")
    except ValueError:
        return {}
    return extra if isinstance(extra, dict) else {}
