"""Where and how to reach the API: base URL, paths, auth header, timeouts, retry schedule."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import tenacity

from airflow_provider_kling.core.errors import KlingRateLimitError

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://ulazai.com"
SUBMIT_PATH = "/kling26/api/generate/"
STATUS_PATH = "/kling26/api/status/{task_id}/"

#: Seconds to open a connection, and to wait for an answer once the request is sent.
CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0


def status_path(task_id: str) -> str:
    return STATUS_PATH.format(task_id=quote(task_id, safe=""))


def base_url(host: str | None, port: int | None = None) -> str:
    """The base URL from a connection's host and port; a host without a scheme means https."""
    if not host or not host.strip():
        return DEFAULT_BASE_URL
    url = host.strip().rstrip("/")
    if "://" not in url:
        url = f"https://{url}"
    if port and urlsplit(url).port is None:
        scheme, rest = url.split("://", 1)
        netloc, slash, path = rest.partition("/")
        url = f"{scheme}://{netloc}:{port}{slash}{path}"
    return url


def auth_headers(api_key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "Content-Type": "application/json", "Accept": "application/json"}


@dataclass(frozen=True)
class RetryPolicy:
    """Capped exponential backoff with jitter that honours a 429's ``Retry-After``."""

    attempts: int = 5
    initial_wait: float = 1.0
    max_wait: float = 30.0
    max_retry_after: float = 120.0

    def wait(self, retry_state: tenacity.RetryCallState) -> float:
        error = retry_state.outcome.exception() if retry_state.outcome else None
        if isinstance(error, KlingRateLimitError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        backoff = tenacity.wait_exponential_jitter(initial=self.initial_wait, max=self.max_wait)
        return backoff(retry_state)

    def _arguments(self, should_retry: Callable[[BaseException], bool]) -> dict[str, Any]:
        def log_retry(retry_state: tenacity.RetryCallState) -> None:
            error = retry_state.outcome.exception() if retry_state.outcome else None
            sleep = retry_state.next_action.sleep if retry_state.next_action else 0.0
            log.warning(
                "Kling call failed (attempt %d of %d), retrying in %.1f s: %s",
                retry_state.attempt_number, self.attempts, sleep, error,
            )

        return {
            "retry": tenacity.retry_if_exception(should_retry),
            "stop": tenacity.stop_after_attempt(self.attempts),
            "wait": self.wait,
            "before_sleep": log_retry,
            "reraise": True,
        }

    def sync(self, should_retry: Callable[[BaseException], bool]) -> tenacity.Retrying:
        return tenacity.Retrying(**self._arguments(should_retry))

    def asynchronous(self, should_retry: Callable[[BaseException], bool]) -> tenacity.AsyncRetrying:
        return tenacity.AsyncRetrying(**self._arguments(should_retry))
