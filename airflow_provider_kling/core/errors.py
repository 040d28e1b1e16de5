"""One error hierarchy for every way a Kling call can go wrong.

Each error carries what a person needs to act on it: the HTTP status, the server's own message,
and for anything about a job, the vendor task_id. Which errors are worth retrying is decided here
once (:func:`is_transient`, :func:`created_no_job`) and used by the sync and async clients alike.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus, urlsplit

#: How much of a server's message (or a non-JSON body) an error keeps: enough to read, not a page.
MESSAGE_LIMIT = 300


class KlingError(Exception):
    """Base class of every error this provider raises about the Kling API."""

    def __init__(
        self,
        message: str,
        *,
        http_status: int | None = None,
        server_message: str | None = None,
        task_id: str | None = None,
        vendor_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
        self.server_message = server_message
        self.task_id = task_id
        #: The API's own error code, where its answers carry one (Kling's own API).
        self.vendor_code = vendor_code

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class FieldError:
    """One broken rule of a request: which field, which rule, which value."""

    field: str
    rule: str
    value: Any

    def __str__(self) -> str:
        return f"{self.field}: {self.rule} (got {shorten_value(self.value)})"


class KlingValidationError(KlingError, ValueError):
    """The request breaks the API's rules; nothing was sent. Lists every broken rule at once."""

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors = tuple(errors)
        noun = "problem" if len(self.errors) == 1 else "problems"
        lines = "\n".join(f"  - {error}" for error in self.errors)
        super().__init__(f"Invalid Kling request, nothing was sent ({len(self.errors)} {noun}):\n{lines}")


class KlingRunBudgetError(KlingError):
    """The DAG run's credit limit leaves no room for this generation; nothing was sent."""

    def __init__(self, spent: float, limit: float, estimate: float, unit: str = "credits") -> None:
        self.spent, self.limit, self.estimate = spent, limit, estimate
        super().__init__(
            f"run_credit_limit: this DAG run's Kling generations have spent {spent:g} {unit} (those "
            f"being submitted included) of its limit of {limit:g}; this generation's estimate of "
            f"{estimate:g} {unit} would exceed it. Nothing was sent."
        )


class KlingRunBudgetContendedError(KlingError):
    """Other generations' claims kept this one from knowing whether it fits until its time ran out."""


class KlingConnectionSettingError(KlingError):
    """A setting of the Airflow connection is unusable; no retry can cure it, fix the connection."""


class KlingAPIError(KlingError):
    """The server answered with an error status."""


class KlingBadRequestError(KlingAPIError):
    """HTTP 400: the server refused the request."""


class KlingAuthError(KlingAPIError):
    """HTTP 401/403: the API key is missing, wrong or not allowed."""


class KlingInsufficientCreditsError(KlingAPIError):
    """The account has too few credits for this generation (HTTP 402, or a 400 that says so)."""


class KlingAccountError(KlingAPIError):
    """The account itself is refused (suspended, or this machine's address not allowed): no wait or
    retry cures it; someone must act on the vendor's console."""


class KlingNotFoundError(KlingAPIError):
    """HTTP 404: no such task on this account."""


class KlingRateLimitError(KlingAPIError):
    """HTTP 429. ``retry_after`` is the wait in seconds the server asked for, if it asked."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class KlingConcurrencyLimitError(KlingRateLimitError):
    """The account runs as many jobs as its plan allows: no job was created, and a submit may go
    again once a running job ends."""

    #: The wait when the answer names none: a job runs a minute or more, so sooner is no use.
    DEFAULT_WAIT = 30.0

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(
            message, retry_after=self.DEFAULT_WAIT if retry_after is None else retry_after, **kwargs
        )


class KlingServerError(KlingAPIError):
    """HTTP 5xx: the vendor (or a proxy in front of it) failed."""


class KlingRedirectError(KlingAPIError):
    """HTTP 3xx: the documented API never redirects, so the request goes no further than the
    configured origin (the prompt and the key are never re-sent elsewhere)."""


class KlingResponseError(KlingError):
    """The server answered, but not in a shape the contract describes (not JSON, fields missing)."""


class KlingResponseRefusedError(KlingResponseError):
    """An answer refused for what it is (too large, nested too deeply, a video_url we will not
    fetch): asking again would get the same, so it is not retried."""


class KlingTransportError(KlingError):
    """No usable answer: connection refused or reset, timeout.

    ``request_sent`` is False only when the request provably never reached the server
    (the connection was never established), which is what makes a submit safe to repeat.
    """

    def __init__(self, message: str, *, request_sent: bool = True, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.request_sent = request_sent


class KlingTimeoutError(KlingTransportError):
    """A call ran out of its time budget: connect, headers and the whole body, not per read."""


def transport_error(error: Exception, *, request_sent: bool, url: str) -> KlingTransportError:
    where = "could not connect to" if not request_sent else "got no usable answer from"
    return KlingTransportError(
        f"Kling API: {where} {url}: {type(error).__name__}: {error}", request_sent=request_sent
    )


class KlingSubmitUncertainError(KlingError):
    """A submit failed in a way that may still have created (and charged) a job."""


class KlingJobFailedError(KlingError):
    """The vendor reports the generation itself as failed."""


class KlingDownloadError(KlingError):
    """The finished video could not be kept: gone, not a video, or larger than allowed."""


#: The errors a wait event can name, so a resumed task raises the same class the trigger saw.
WAIT_ERRORS: dict[str, type[KlingError]] = {}


def is_transient(error: BaseException) -> bool:
    """Whether asking again later may succeed: the retry rule for every status call."""
    if isinstance(error, KlingResponseRefusedError):
        return False
    return isinstance(error, (KlingRateLimitError, KlingServerError, KlingTransportError, KlingResponseError))


#: Submit answers that prove no job was created: the request was refused as it stood. Not a
#: redirect: it is not followed, but a 303 after a POST may well point at a job it created.
SUBMIT_REFUSED_STATUSES = frozenset({400, 401, 402, 403, 404, 422, 429})


def created_no_job(error: BaseException) -> bool:
    """Whether a failed submit provably left no job behind: the one rule of what a failure proves.

    Refused as sent (an answer in :data:`SUBMIT_REFUSED_STATUSES`), or never sent: the connection
    was never made, or the error came before any request (the request or the connection unusable,
    an API error with no HTTP status).
    """
    if isinstance(error, (KlingValidationError, KlingConnectionSettingError)):
        return True
    if isinstance(error, KlingTransportError):
        return not error.request_sent
    if isinstance(error, KlingAPIError):
        return error.http_status is None or error.http_status in SUBMIT_REFUSED_STATUSES
    return False


def is_safe_to_resubmit(error: BaseException) -> bool:
    """Whether a failed submit may be sent again: it created no job and asking again may succeed
    (a 429, or a connection never made), so sending it again cannot pay twice."""
    return created_no_job(error) and is_transient(error)


def shorten(text: str, limit: int = MESSAGE_LIMIT) -> str:
    """Collapse white space and cut ``text`` to ``limit`` characters, marking the cut."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def shorten_value(value: Any, limit: int = 80) -> str:
    """A value as it belongs in an error message: its repr, and for long strings their length too."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}… ({len(value)} characters)"
    return shorten(repr(value), limit)


#: A tag, or a script or style element (bounded, so that no body makes the search quadratic).
_TAG = re.compile(r"<(script|style)\b[^<]{0,4000}</\1>|<[^<>]{0,400}>", re.IGNORECASE)
#: How much of an error body is read for its message: a page's first few kilobytes say it.
MESSAGE_SOURCE_LIMIT = 8192


def server_message(body: bytes | str) -> str:
    """The human part of an error body: a JSON ``error``/``detail``/``message``, else readable text."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
    try:
        parsed = json.loads(text)
    except (ValueError, RecursionError):
        parsed = None
    if isinstance(parsed, Mapping):
        for key in ("error", "detail", "message", "errors"):
            found = parsed.get(key)
            if isinstance(found, Mapping):
                found = found.get("message", found)
            if found:
                return shorten(found if isinstance(found, str) else _flat_json(found))
    if parsed is not None:
        return shorten(text)
    readable = html.unescape(_TAG.sub(" ", text[:MESSAGE_SOURCE_LIMIT]))
    return shorten(readable) or "(empty body)"


def _flat_json(value: Any) -> str:
    try:
        return json.dumps(value)
    except (ValueError, RecursionError):
        return repr(type(value))


_OUT_OF_CREDITS = re.compile(
    r"\b(insufficient|not enough|no|out of)\b.{0,20}\bcredits?\b"
    r"|\bcredits?\b.{0,20}\b(exhausted|insufficient|too low)\b",
    re.IGNORECASE,
)


def _says_out_of_credits(message: str) -> bool:
    return bool(_OUT_OF_CREDITS.search(message[:MESSAGE_SOURCE_LIMIT]))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header given in seconds; None when absent or a date we ignore."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds):  # "nan" or "inf": a timer built on it would break the event loop
        return None
    return max(seconds, 0.0)


def error_from_response(
    status: int,
    body: bytes | str,
    *,
    retry_after: str | None = None,
    task_id: str | None = None,
    location: str | None = None,
) -> KlingAPIError:
    """Turn an error status and body into the matching :class:`KlingAPIError`."""
    said = server_message(body)
    about = f" (task_id {task_id})" if task_id else ""
    common: dict[str, Any] = {"http_status": status, "server_message": said, "task_id": task_id}
    if 300 <= status < 400:
        return KlingRedirectError(
            f"Kling API answered HTTP {status}, redirecting to {origin_of(location)}{about}: redirects "
            "are not followed (the documented API never redirects), so nothing was sent there. If that "
            "origin is the API's, set it as the Kling connection's host.",
            **common,
        )
    if status == 429:
        wait = parse_retry_after(retry_after)
        hint = f", retry after {wait:g} s" if wait is not None else ""
        return KlingRateLimitError(
            f"Kling API rate limit hit (HTTP 429{hint}){about}: {said}", retry_after=wait, **common
        )
    if status in (401, 403):
        return KlingAuthError(
            f"Kling API refused the API key (HTTP {status}): {said}. "
            "Check the password of the Kling connection.",
            **common,
        )
    if status == 402 or (status == 400 and _says_out_of_credits(said)):
        return KlingInsufficientCreditsError(f"Not enough Kling credits (HTTP {status}): {said}", **common)
    if status == 404:
        return KlingNotFoundError(f"Kling API knows no such task (HTTP 404){about}: {said}", **common)
    if status == 400:
        return KlingBadRequestError(f"Kling API rejected the request (HTTP 400): {said}", **common)
    if status >= 500:
        return KlingServerError(f"Kling API server error (HTTP {status}){about}: {said}", **common)
    return KlingAPIError(f"Kling API answered HTTP {status}{about}: {said}", **common)


def origin_of(url: str | None) -> str:
    """``scheme://host[:port]`` of a URL, for messages: never its path or query, which may hold tokens."""
    if not url:
        return "(no Location header)"
    parts = urlsplit(url.strip())
    if not parts.netloc:
        return "(the same origin, another path)"
    return shorten(f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}", 120)


REDACTED = "***"
#: Shorter secrets are not redacted (nor masked by Airflow, whose default is the same): replacing
#: a letter or two everywhere would shred every message, and no real API key is that short.
MIN_SECRET_LENGTH = 5


def secret_forms(secret: str) -> list[str]:
    """The ways a server may echo ``secret`` back: raw, URL-encoded, JSON-escaped; longest first."""
    if len(secret) < MIN_SECRET_LENGTH:
        return []
    forms = {secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1]}
    return sorted(forms, key=len, reverse=True)


def redact(text: str, secret: str) -> str:
    """``text`` with every form of ``secret`` replaced, in any letter case, and with a form's
    beginning cut off by :func:`shorten` (``sk-live/Sec…``) too."""
    for form in secret_forms(secret):
        text = re.sub(re.escape(form), REDACTED, text, flags=re.IGNORECASE)
        cut_short = "|".join(
            re.escape(form[:size]) for size in range(len(form) - 1, MIN_SECRET_LENGTH - 1, -1)
        )
        if cut_short:
            text = re.sub(f"(?:{cut_short})…", REDACTED + "…", text, flags=re.IGNORECASE)
    return text


def redact_error(error: KlingError, secret: str) -> KlingError:
    """Strip every echo of ``secret`` from ``error``'s texts and the errors chained to it, in place
    (a server may quote our request back)."""
    link: BaseException | None = error
    while link is not None:
        if isinstance(link, KlingError):
            link.message = redact(link.message, secret)
            if link.server_message:
                link.server_message = redact(link.server_message, secret)
        link.args = tuple(redact(arg, secret) if isinstance(arg, str) else arg for arg in link.args)
        link = link.__cause__ or link.__context__
    return error


WAIT_ERRORS.update(
    (cls.__name__, cls)
    for cls in (
        KlingError,
        KlingConnectionSettingError,
        KlingAPIError,
        KlingAuthError,
        KlingAccountError,
        KlingInsufficientCreditsError,
        KlingNotFoundError,
        KlingRateLimitError,
        KlingConcurrencyLimitError,
        KlingServerError,
        KlingRedirectError,
        KlingResponseError,
        KlingResponseRefusedError,
        KlingTransportError,
        KlingTimeoutError,
    )
)
