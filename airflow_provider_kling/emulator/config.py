"""How an emulator run behaves: its accounts, how long jobs take, and which faults it injects."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum
from pathlib import Path

#: Accepted when no key is configured; not a secret, so the CLI may name it. On ``api="klingai"`` it
#: is the Secret Key of the Access Key :data:`DEFAULT_ACCESS_KEY`.
DEFAULT_API_KEY = "kling-emulator-key"
DEFAULT_ACCESS_KEY = "kling-emulator-access-key"
#: The APIs the emulator can speak (core.dialects), one per run.
APIS = ("ulazai", "klingai")

#: The API endpoints faults can be injected on.
FAULT_ENDPOINTS = ("submit", "status")
#: Where scripted faults (``inject``) can go: the API endpoints, and the video download.
SCRIPTED_FAULT_ENDPOINTS = (*FAULT_ENDPOINTS, "video")


class FaultKind(str, Enum):
    """Ways the path between a client and the vendor goes wrong, as a client sees them."""

    SERVER_ERROR = "server_error"  # 503 with a proxy's HTML page
    RATE_LIMIT = "rate_limit"  # 429 with Retry-After
    DROP = "drop"  # connection closed, no HTTP answer at all
    GARBAGE = "garbage"  # 200 whose body is not JSON
    SLOW = "slow"  # the normal answer, late
    HTML_502 = "html_502"  # 502 with an nginx page
    TIMEOUT_AFTER_CREATE = "timeout_after_create"  # submit only: job created and charged, answer lost


def check_seconds(name: str, value: object) -> float:
    """Seconds from a setting or a JSON body, where neither a bool nor NaN may pass for a number."""
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class FaultRates:
    """Chance per request of each random fault on one endpoint; one draw picks at most one fault."""

    server_error: float = 0.0
    rate_limit: float = 0.0
    drop: float = 0.0
    garbage: float = 0.0
    slow: float = 0.0

    def __post_init__(self) -> None:
        for rate_field in fields(self):
            rate = getattr(self, rate_field.name)
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate <= 1.0:
                raise ValueError(f"{rate_field.name} rate must be between 0 and 1, got {rate!r}")
        total = sum(getattr(self, rate_field.name) for rate_field in fields(self))
        if total > 1.0 + 1e-9:
            raise ValueError(f"fault rates of one endpoint must add up to at most 1, got {total:g}")

    def pick(self, draw: float) -> FaultKind | None:
        """The fault a uniform draw in [0, 1) lands on, if any."""
        edge = 0.0
        for rate_field in fields(self):
            edge += getattr(self, rate_field.name)
            if draw < edge:
                return FaultKind(rate_field.name)
        return None


@dataclass(frozen=True)
class Fault:
    """One fault about to hit a request, its parameters resolved."""

    kind: FaultKind
    retry_after: float  # the Retry-After of a rate_limit
    delay: float  # how long slow and timeout_after_create hold the answer


def _plain(seconds: float) -> str:
    """Seconds as a person writes them: 7.5, 1200, 0.06 (no exponent, at most three decimals)."""
    return f"{seconds:.3f}".rstrip("0").rstrip(".")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything an emulator run is told at start.

    A job's nominal duration is drawn from [min_seconds, max_seconds] and then divided by ``speed``
    (``estimated_time`` announces the result), so tests can run the vendor's 60-90 s in one.
    With ``rate_limit``, an account's submits and status polls beyond that many in any one second
    are answered 429 with ``Retry-After: retry_after``, as a vendor's account-wide limit would.
    """

    api: str = "ulazai"
    api_keys: tuple[str, ...] = (DEFAULT_API_KEY,)
    #: On ``klingai``, the Access Key of each of ``api_keys`` (its Secret Key), in order; by default
    #: DEFAULT_ACCESS_KEY for the first, then DEFAULT_ACCESS_KEY-2...
    access_keys: tuple[str, ...] = ()
    credits: int = 10_000
    min_seconds: float = 60.0
    max_seconds: float = 90.0
    speed: float = 1.0
    seed: int | None = None
    job_failure_rate: float = 0.0
    submit_faults: FaultRates = field(default_factory=FaultRates)
    status_faults: FaultRates = field(default_factory=FaultRates)
    slow_seconds: float = 5.0
    retry_after: float = 1.0
    rate_limit: float | None = None
    #: On ``klingai``, the jobs an account may have running at once; a create beyond it is refused
    #: (429, code 1303), as the account's resource pack limits it.
    concurrency: int | None = None
    state_file: Path | None = None
    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        keys = (self.api_keys,) if isinstance(self.api_keys, str) else tuple(self.api_keys)
        if not keys or not all(isinstance(key, str) and key.strip() for key in keys):
            raise ValueError("api_keys must hold at least one non-blank key")
        if len(set(keys)) != len(keys):
            raise ValueError("api_keys must not repeat a key")
        object.__setattr__(self, "api_keys", keys)
        if self.api not in APIS:
            raise ValueError(f"api must be one of {', '.join(APIS)}, got {self.api!r}")
        object.__setattr__(self, "access_keys", tuple(self.access_keys))
        access = self.key_pairs
        if len(set(access)) != len(keys):
            raise ValueError("access_keys must name one distinct Access Key for each of api_keys")
        concurrency = self.concurrency
        if concurrency is not None and (
            isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
        ):
            raise ValueError(f"concurrency must be a whole number >= 1, got {concurrency!r}")
        if self.state_file is not None:
            object.__setattr__(self, "state_file", Path(self.state_file))
        if isinstance(self.credits, bool) or not isinstance(self.credits, int) or self.credits < 0:
            raise ValueError(f"credits must be a whole number >= 0, got {self.credits!r}")
        check_seconds("min_seconds", self.min_seconds)
        check_seconds("max_seconds", self.max_seconds)
        if self.min_seconds > self.max_seconds:
            raise ValueError(f"min_seconds ({self.min_seconds:g}) exceeds max_seconds ({self.max_seconds:g})")
        speed = self.speed
        if isinstance(speed, bool) or not isinstance(speed, (int, float)) or not 0 < speed < math.inf:
            raise ValueError(f"speed must be a number above 0, got {speed!r}")
        if not 0.0 <= self.job_failure_rate <= 1.0:
            raise ValueError(f"job_failure_rate must be between 0 and 1, got {self.job_failure_rate!r}")
        check_seconds("slow_seconds", self.slow_seconds)
        check_seconds("retry_after", self.retry_after)
        if self.rate_limit is not None and not 0 < self.rate_limit < math.inf:
            raise ValueError(
                f"rate_limit must be a number of requests a second above 0, got {self.rate_limit!r}"
            )
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")

    @property
    def key_pairs(self) -> dict[str, str]:
        """On ``klingai``: each Access Key and its Secret Key (one of ``api_keys``)."""
        access = self.access_keys or tuple(
            DEFAULT_ACCESS_KEY if number == 1 else f"{DEFAULT_ACCESS_KEY}-{number}"
            for number in range(1, len(self.api_keys) + 1)
        )
        if len(access) != len(self.api_keys):
            raise ValueError("access_keys must name one distinct Access Key for each of api_keys")
        return dict(zip(access, self.api_keys, strict=True))

    @property
    def estimated_time(self) -> str:
        """The announcement of a job's duration: the range its jobs really take, sped up, as a vendor
        whose jobs took that long would say it (adaptive polling plans on it)."""
        shortest, longest = (_plain(seconds / self.speed) for seconds in (self.min_seconds, self.max_seconds))
        return f"{shortest} seconds" if shortest == longest else f"{shortest}-{longest} seconds"
