"""Typed, defensive readings of the APIs' success bodies: the shared forms and the shared helpers.

Each API's module (core.dialects) reads its own envelope and status words into these forms. Fields
the contract does not name are kept in ``extra``; a missing required field becomes a
:class:`KlingResponseError` that says which one, never a KeyError.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any

from airflow_provider_kling.core.errors import (
    KlingResponseError,
    KlingResponseRefusedError,
    shorten,
    shorten_value,
)
from airflow_provider_kling.core.urls import is_http_url

log = logging.getLogger(__name__)


class JobState(str, Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


def job_state(
    status: str, completed: frozenset[str], failed: frozenset[str], running: frozenset[str]
) -> JobState:
    """Where a vendor status leaves the job, given its API's status words; unknown statuses count as
    still running (and are logged), so a job is never given up on for a word we do not know."""
    normalized = status.strip().lower()
    if normalized in completed:
        return JobState.COMPLETED
    if normalized in failed:
        return JobState.FAILED
    if normalized not in running:
        log.warning("Kling reported an unknown job status %r; treating it as still running.", status)
    return JobState.RUNNING


#: The deepest nesting an answer may have: the contract's bodies are two levels deep.
MAX_JSON_DEPTH = 16


def read_json(body: bytes | str, *, what: str, http_status: int | None = None) -> Any:
    """Parse a body as JSON, or raise a :class:`KlingResponseError` quoting a readable piece of it.

    An answer nested deeper than :data:`MAX_JSON_DEPTH` is refused: deep nesting breaks whatever
    recurses over it later (a trigger event's serialisation, an error message), never the API's shape.
    """
    try:
        parsed = json.loads(body)
    except RecursionError:
        parsed = _TOO_DEEP
    except ValueError:
        text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else body
        raise KlingResponseError(
            f"Kling API {what} answer is not JSON (HTTP {http_status}): {shorten(text) or '(empty body)'}",
            http_status=http_status,
        ) from None
    if parsed is _TOO_DEEP or _depth_exceeds(parsed, MAX_JSON_DEPTH):
        raise KlingResponseRefusedError(
            f"Kling API {what} answer is JSON nested deeper than {MAX_JSON_DEPTH} levels "
            f"(HTTP {http_status}); not read",
            http_status=http_status,
        )
    return parsed


_TOO_DEEP = object()


def _depth_exceeds(value: Any, limit: int) -> bool:
    """Whether ``value`` nests containers deeper than ``limit``, walked without recursion."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                pending.append((child, depth + 1))
    return False


def envelope_data(body: Any, what: str, http_status: int | None) -> dict[str, Any]:
    """The answer's ``data`` object, which both APIs wrap their answers in."""
    if isinstance(body, Mapping):
        data = body.get("data")
        if isinstance(data, Mapping):
            return dict(data)
    raise KlingResponseError(
        f"Kling API {what} answer has no 'data' object (HTTP {http_status}): {shorten(json.dumps(body))}",
        http_status=http_status,
    )


def require(
    data: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str, http_status: int | None
) -> Any:
    value = data.get(name)
    if value is None or (isinstance(value, bool) and kind is not bool) or not isinstance(value, kind):
        raise KlingResponseError(
            f"Kling API {what} answer lacks a valid '{name}' "
            f"(got {shorten_value(value)}; HTTP {http_status})",
            http_status=http_status,
            task_id=data.get("task_id") if isinstance(data.get("task_id"), str) else None,
        )
    return value


def optional_int(data: dict[str, Any], name: str) -> int | None:
    value = data.get(name)
    if isinstance(value, bool):
        return None
    if isinstance(value, int) or (isinstance(value, float) and math.isfinite(value)):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit() and len(value.strip()) <= 18:
        return int(value)
    return None


def progress_of(data: dict[str, Any]) -> int | None:
    """The progress in percent, held to 0-100 (a wait divides by it)."""
    value = optional_int(data, "progress")
    return None if value is None else min(max(value, 0), 100)


_DURATION = re.compile(
    r"(\d+(?:\.\d+)?)(?:\s*(?:-|–|to)\s*(\d+(?:\.\d+)?))?\s*(?P<unit>seconds?|secs?|s|minutes?|mins?|m|hours?|h)\b",
    re.IGNORECASE,
)
_UNIT_SECONDS = {"s": 1.0, "m": 60.0, "h": 3600.0}
#: An announcement outside this range is not believed; polling then plans on the vendor's 60-90 s.
PLAUSIBLE_SECONDS = (0.01, 6 * 3600.0)


def parse_estimated_time(text: str | None) -> tuple[float, float] | None:
    """``"60-90 seconds"`` -> ``(60.0, 90.0)``, ``"1-2 minutes"`` -> ``(60.0, 120.0)``; None when no
    number with a unit is there, or the range is not plausible."""
    match = _DURATION.search((text or "")[:200])  # an announcement is short; a longer text is cut
    if match is None:
        return None
    unit = _UNIT_SECONDS[match.group("unit")[0].lower()]
    low, high = float(match.group(1)) * unit, float(match.group(2) or match.group(1)) * unit
    low, high = min(low, high), max(low, high)
    if not PLAUSIBLE_SECONDS[0] <= low <= high <= PLAUSIBLE_SECONDS[1]:
        return None
    return low, high


@dataclass(frozen=True)
class SubmitResult:
    """The answer to a submit: the job exists and the credits are spent."""

    task_id: str
    status: str
    credits_used: int | None
    credits_remaining: int | None
    estimated_time: str | None
    message: str | None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def estimated_seconds(self) -> tuple[float, float] | None:
        return parse_estimated_time(self.estimated_time)


@dataclass(frozen=True)
class JobStatus:
    """One reading of a job's status. A completed job always has a ``video_url``."""

    task_id: str
    status: str
    state: JobState
    progress: int | None = None
    message: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    # The video, once the job completed:
    video_url: str | None = None
    duration: int | None = None
    has_audio: bool | None = None
    #: What the job was charged, where the status says it (Kling's own API, once the job ended),
    #: and in what (its API's unit).
    charged: float | None = None
    charge_unit: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """A JSON-serialisable form, e.g. for XCom or a trigger event."""
        result = asdict(self)
        result["state"] = self.state.value
        return result


def required_video_url(data: dict[str, Any], name: str, task_id: str, http_status: int | None) -> str:
    """A completed job's video URL: present, and http(s), or the answer is refused."""
    video_url = require(data, name, str, "status", http_status)
    if not is_http_url(video_url):
        raise KlingResponseRefusedError(
            f"Kling API status answer has a video_url that is not http(s): {shorten(video_url)}",
            http_status=http_status,
            task_id=task_id,
        )
    return str(video_url)
