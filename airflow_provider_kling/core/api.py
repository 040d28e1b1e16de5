"""How to reach an API, whichever it is: base URL, time budgets, retry schedule, reading answers."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from airflow_provider_kling.core.errors import (
    KlingRateLimitError,
    KlingResponseError,
    KlingResponseRefusedError,
    KlingSubmitUncertainError,
    created_no_job,
)
from airflow_provider_kling.core.responses import JobStatus, SubmitResult, read_json

if TYPE_CHECKING:
    from airflow_provider_kling.core.dialects import Dialect

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class SpeedFloor:
    """A download moving fewer than ``bytes_per_second`` on average over ``seconds`` has stalled, as
    curl's ``--speed-limit``/``--speed-time`` judge it: a host that sends its headers, then a byte a
    second, would otherwise hold a worker slot for the whole download budget.

    The defaults leave a wide margin below what a video CDN delivers (megabytes a second to a data
    centre): at 64 KiB/s a 5 s clip (a few MB) still arrives in about a minute and the largest
    10 s clips (~30 MB) within the budget; 30 s, the longest silence one read may already take,
    lets a brief stall (a CDN fetching from its origin, a lost packet) pass.
    """

    bytes_per_second: int = 64 * 1024
    seconds: float = 30.0

    def describe(self) -> str:
        return f"{self.bytes_per_second / 1024:g} KiB/s over {self.seconds:g} s"


class SpeedWatch:
    """A download's pace against a :class:`SpeedFloor`, judged afresh each ``floor.seconds``."""

    def __init__(self, floor: SpeedFloor, clock: Callable[[], float] = time.monotonic) -> None:
        self.floor, self._clock = floor, clock
        self._since, self._moved = clock(), 0

    def stalled(self, count: int) -> float | None:
        """Count ``count`` more bytes; once a window has passed, its rate (bytes a second) if that
        was below the floor, else None."""
        self._moved += count
        now = self._clock()
        elapsed = now - self._since
        if elapsed < self.floor.seconds:
            return None
        rate = self._moved / elapsed
        self._since, self._moved = now, 0
        return rate if rate < self.floor.bytes_per_second else None


@dataclass(frozen=True)
class Budgets:
    """How long calls may take, in seconds. Each *total* counts connect, headers and the whole
    body, so a server that drips its answer a byte at a time is cut off at the total, not kept
    alive by every byte as a per-read timeout would be.
    """

    #: To open a connection.
    connect: float = 10.0
    #: The longest silence within one read.
    read: float = 30.0
    #: One request to the API, in all.
    request: float = 60.0
    #: One API call with its retries (a status read, a submit).
    call: float = 180.0
    #: One video download with its retries: 512 MiB at about 1 MB/s.
    download: float = 900.0
    #: The slowest a download may go before it counts as stalled (the budget bounds its total).
    download_floor: SpeedFloor = SpeedFloor()


BUDGETS = Budgets()


@dataclass(frozen=True)
class Deadline:
    """A point on the monotonic clock that a call and its retries must not pass."""

    at: float
    seconds: float  # the budget it was made from, for messages

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds, seconds)

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def sooner(self, seconds: float | None) -> Deadline:
        """This deadline, or one ``seconds`` from now if that comes first."""
        if seconds is None or time.monotonic() + seconds >= self.at:
            return self
        return Deadline.after(max(seconds, 0.0))


#: The largest answer read; the contract's bodies are a few hundred bytes.
MAX_BODY_BYTES = 1024 * 1024
#: The largest video kept by default: a 10 s clip is tens of MB, so this only stops a runaway stream.
MAX_VIDEO_BYTES = 512 * 1024 * 1024
DOWNLOAD_CHUNK_BYTES = 1024 * 1024
READ_CHUNK_BYTES = 64 * 1024


def base_url(host: str | None, port: int | None, default: str) -> str:
    """The base URL from a connection's host and port (``default`` without a host); a host without
    a scheme means https."""
    if not host or not host.strip():
        return default
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    if port and urlsplit(url).port is None:
        scheme, rest = url.split("://", 1)
        netloc, slash, path = rest.partition("/")
        url = f"{scheme}://{netloc}:{port}{slash}{path}"
    return url


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter that honours a 429's ``Retry-After``.

    A plain loop, not a retry library: a poll that succeeds (nearly all of them) costs nothing
    beyond the call, which matters to a triggerer running thousands of waits.
    """

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 120.0

    def delay(self, attempt: int, error: BaseException) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based) before the next one."""
        if isinstance(error, KlingRateLimitError) and error.retry_after is not None:
            return self.group_pause(error)
        backoff = self.initial_wait * 2 ** (attempt - 1) + random.uniform(0, self.initial_wait)
        return min(backoff, self.max_wait)

    def group_pause(self, limited: KlingRateLimitError) -> float:
        """How long a 429 holds back every wait on the connection: its Retry-After, capped."""
        if limited.retry_after is None:
            return self.initial_wait
        return min(limited.retry_after, self.max_retry_after)

    def run(
        self,
        should_retry: Callable[[Exception], bool],
        call: Callable[..., T],
        *args: Any,
        deadline: Deadline | None = None,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """``call(*args)``, retried; with a ``deadline``, no retry starts (or sleeps) past it.
        ``on_retry`` is told of each retry (for metrics)."""
        attempt = 1
        while True:
            try:
                return call(*args)
            except Exception as error:
                if attempt >= self.attempts or not should_retry(error):
                    raise
                wait = self._next_wait(attempt, error)
                if deadline is not None and wait >= deadline.remaining():
                    raise
                if on_retry:
                    on_retry()
                time.sleep(wait)
            attempt += 1

    async def arun(
        self,
        should_retry: Callable[[Exception], bool],
        call: Callable[..., Awaitable[T]],
        *args: Any,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        attempt = 1
        while True:
            try:
                return await call(*args)
            except Exception as error:
                if attempt >= self.attempts or not should_retry(error):
                    raise
                await asyncio.sleep(self._next_wait(attempt, error))  # may be cut off: no retry then
                if on_retry:
                    on_retry()
            attempt += 1

    def _next_wait(self, attempt: int, error: Exception) -> float:
        wait = self.delay(attempt, error)
        log.warning(
            "Kling call failed (attempt %d of %d), retrying in %.1f s: %s",
            attempt,
            self.attempts,
            wait,
            error,
        )
        return wait


#: Status reads are safe to repeat: five tries over about 15 s ride out a short outage.
STATUS_RETRIES = RetryPolicy()
#: A submit is repeated only when the server provably created no job (``is_safe_to_resubmit``).
SUBMIT_RETRIES = RetryPolicy(attempts=3)


def _check_size(body: bytes, http_status: int) -> None:
    if len(body) > MAX_BODY_BYTES:
        raise KlingResponseRefusedError(
            f"Kling API answer is larger than {MAX_BODY_BYTES} bytes (HTTP {http_status}); not read",
            http_status=http_status,
        )


def read_json_body(body: bytes, http_status: int, *, what: str) -> Any:
    """A success answer's JSON, refused when larger than :data:`MAX_BODY_BYTES`."""
    _check_size(body, http_status)
    return read_json(body, what=what, http_status=http_status)


def read_submit_response(
    dialect: Dialect, http_status: int, body: bytes, retry_after: str | None, location: str | None = None
) -> SubmitResult:
    """Interpret a submit's answer. Anything that might hide a created job says so."""
    if 200 <= http_status < 300:
        try:
            return dialect.read_submit(read_json_body(body, http_status, what="submit"), http_status)
        except KlingResponseError as unreadable:
            raise uncertain_submit(unreadable) from unreadable
    error = dialect.error_from_response(
        http_status, body[:MAX_BODY_BYTES], retry_after=retry_after, location=location
    )
    if not created_no_job(error):
        raise uncertain_submit(error) from error
    raise error


def read_status_response(
    dialect: Dialect,
    http_status: int,
    body: bytes,
    retry_after: str | None,
    task_id: str,
    location: str | None = None,
) -> JobStatus:
    if not 200 <= http_status < 300:
        raise dialect.error_from_response(
            http_status, body[:MAX_BODY_BYTES], retry_after=retry_after, task_id=task_id, location=location
        )
    return dialect.read_status(read_json_body(body, http_status, what="status"), task_id, http_status)


def uncertain_submit(cause: BaseException) -> KlingSubmitUncertainError:
    """The error for a submit whose fate is unknown: it may have created, and charged, a job."""
    return KlingSubmitUncertainError(
        f"The Kling submit failed after the request was sent, so a job may have been created and "
        f"charged: {cause}. It was not sent again. Check the vendor dashboard before re-running.",
        http_status=getattr(cause, "http_status", None),
        server_message=getattr(cause, "server_message", None),
    )
