"""The emulator's memory: accounts and their credits, jobs, counters, queued faults, and the headers
its video route received.

Every method runs on the server's event loop. The HTTP routes and the in-process
:class:`~airflow_provider_kling.emulator.server.KlingEmulator` both call these methods, so each
control has one implementation and needs no lock.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import tempfile
import time
import uuid
from collections import Counter, deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from airflow_provider_kling.core.dialects.ulazai import VENDOR_COMPLETED, VENDOR_FAILED, VENDOR_PROCESSING
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator.config import (
    FAULT_ENDPOINTS,
    SCRIPTED_FAULT_ENDPOINTS,
    EmulatorConfig,
    Fault,
    FaultKind,
    check_seconds,
)

#: What the vendor says of a job in each state.
_VENDOR_STATUS = {
    JobState.RUNNING: VENDOR_PROCESSING,
    JobState.COMPLETED: VENDOR_COMPLETED,
    JobState.FAILED: VENDOR_FAILED,
}

#: Endpoints whose requests and responses are counted.
COUNTED_ENDPOINTS = SCRIPTED_FAULT_ENDPOINTS

#: Seconds a change waits before the state file is written, so a burst of polls costs one write.
SAVE_DELAY = 0.1

STATE_FILE_VERSION = 1

#: Video requests whose headers are kept, the most recent ones: a long soak must not grow without bound.
VIDEO_REQUESTS_KEPT = 100


class InsufficientCreditsError(Exception):
    """The account cannot pay for the job; nothing was created or charged."""

    def __init__(self, required: float, remaining: float) -> None:
        super().__init__(f"{required:g} credits required, {remaining:g} remaining")
        self.required = required
        self.remaining = remaining


class ExternalTaskIdTakenError(Exception):
    """The account already has a job with this external_task_id; nothing was created."""


class ConcurrencyFullError(Exception):
    """The account runs as many jobs as ``concurrency`` allows; nothing was created."""


def _check_whole(name: str, value: object, minimum: int) -> None:
    """A control's whole-number argument, which may come straight from a JSON body."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")


@dataclass
class Job:
    """One generation. ``account`` is the key's label (``key-1``...), never the key itself;
    ``request`` is the submit body as received; a ``held`` job runs until released, whatever its
    ``ready_at``."""

    task_id: str
    account: str
    request: dict[str, Any]
    duration: int
    sound: bool
    credits_used: float
    created_at: float
    ready_at: float
    fails: bool
    status_polls: list[float] = field(default_factory=list)
    held: bool = False
    generation_mode: str = "text_to_video"
    external_task_id: str | None = None

    def state(self, now: float) -> JobState:
        if self.held or now < self.ready_at:
            return JobState.RUNNING
        return JobState.FAILED if self.fails else JobState.COMPLETED

    def status(self, now: float) -> str:
        state = self.state(now)
        return _VENDOR_STATUS[state]

    def progress(self, now: float) -> int:
        """Percent done, 0-99 while running: 100 is only ever said as "completed"."""
        span = self.ready_at - self.created_at
        done = (now - self.created_at) / span if span > 0 else 1.0
        return max(0, min(99, int(99 * done)))


#: Seconds of :meth:`EmulatorState.traffic` kept (an hour of a benchmark's requests).
TRAFFIC_SECONDS_KEPT = 3600


def bearer_token(authorization: str | None) -> str | None:
    """What a ``Bearer`` Authorization header carries, or None for any other header."""
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


class EmulatorState:
    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._account_of_key = {key: f"key-{number}" for number, key in enumerate(config.api_keys, 1)}
        self._secret_of_access_key = config.key_pairs
        self._save_handle: asyncio.TimerHandle | None = None
        self._clear()
        if config.state_file is not None and config.state_file.exists():
            self._load(config.state_file)

    def _clear(self) -> None:
        seed = self.config.seed
        # Faults draw from their own generator, so polling never shifts the ids or durations of jobs.
        self._job_rng = random.Random(seed)
        self._fault_rng = random.Random(None if seed is None else f"faults-{seed}")
        self._credits: dict[str, float] = {
            account: self.config.credits for account in self._account_of_key.values()
        }
        self._jobs: dict[str, Job] = {}
        self._scripted_faults: dict[str, deque[Fault]] = {
            endpoint: deque() for endpoint in SCRIPTED_FAULT_ENDPOINTS
        }
        self._requests: Counter[str] = Counter()
        self._responses: dict[str, Counter[int]] = {endpoint: Counter() for endpoint in COUNTED_ENDPOINTS}
        self._faults_applied: dict[str, Counter[str]] = {
            endpoint: Counter() for endpoint in SCRIPTED_FAULT_ENDPOINTS
        }
        self._jobs_created = 0
        self._jobs_to_hold = 0
        # Per account, when its admitted API requests came (the last second's); per second, how
        # many requests the accounts sent and how many the limit refused.
        self._admitted: dict[str, deque[float]] = {}
        self._traffic: dict[int, list[int]] = {}
        # (path with query, headers as received) per request to the video route, newest last.
        self._video_requests: deque[tuple[str, tuple[tuple[str, str], ...]]] = deque(
            maxlen=VIDEO_REQUESTS_KEPT
        )

    # The API

    def account(self, authorization: str | None) -> str | None:
        """The account a ``Bearer`` Authorization header with an API key opens, or None."""
        return self._account_of_key.get(bearer_token(authorization) or "")

    def account_of_secret(self, secret_key: str) -> str | None:
        return self._account_of_key.get(secret_key)

    def secret_of(self, access_key: str) -> str | None:
        """An Access Key's Secret Key, which signs its tokens."""
        return self._secret_of_access_key.get(access_key)

    def admit(self, account: str, now: float) -> bool:
        """Whether the account's request at ``now`` is within ``rate_limit`` (then it counts against
        the next second's); every request, admitted or not, is counted in :meth:`traffic`."""
        counts = self._traffic.setdefault(int(now), [0, 0])
        counts[0] += 1
        if len(self._traffic) > TRAFFIC_SECONDS_KEPT:
            del self._traffic[min(self._traffic)]
        if self.config.rate_limit is None:
            return True
        admitted = self._admitted.setdefault(account, deque())
        while admitted and admitted[0] <= now - 1.0:
            admitted.popleft()
        if len(admitted) >= self.config.rate_limit:
            counts[1] += 1
            return False
        admitted.append(now)
        return True

    def traffic(self) -> dict[str, list[int]]:
        """Per second (Unix time, whole): [API requests received, refused by the rate limit]."""
        return {str(second): list(counts) for second, counts in sorted(self._traffic.items())}

    def create_job(
        self,
        account: str,
        generation: GenerationRequest,
        body: dict[str, Any],
        *,
        external_task_id: str | None = None,
        charge_failed: bool = True,
    ) -> Job:
        """Create (and charge) a job; a job that will fail is charged only if ``charge_failed``."""
        price = generation.estimated_credits
        remaining = self._credits[account]
        if price > remaining:
            raise InsufficientCreditsError(price, remaining)
        now = time.time()
        if external_task_id is not None and any(
            job.account == account and job.external_task_id == external_task_id for job in self._jobs.values()
        ):
            raise ExternalTaskIdTakenError(external_task_id)
        if self.config.concurrency is not None and self.running_jobs(account, now) >= self.config.concurrency:
            raise ConcurrencyFullError()
        task_id = self._new_task_id()
        nominal_seconds = self._job_rng.uniform(self.config.min_seconds, self.config.max_seconds)
        fails = self._job_rng.random() < self.config.job_failure_rate
        charge = price if charge_failed or not fails else 0
        job = Job(
            task_id=task_id,
            account=account,
            request=body,
            duration=int(generation.duration),
            sound=generation.sound,
            credits_used=charge,
            created_at=now,
            ready_at=now + nominal_seconds / self.config.speed,
            fails=fails,
            held=self._jobs_to_hold > 0,
            generation_mode=generation.generation_mode.value,
            external_task_id=external_task_id,
        )
        self._jobs_to_hold = max(0, self._jobs_to_hold - 1)
        self._credits[account] = remaining - charge
        self._jobs[task_id] = job
        self._jobs_created += 1
        self._changed()
        return job

    def _new_task_id(self) -> str:
        # A seeded run restarted from its state file replays the same ids; skip those already taken.
        while True:
            task_id = str(uuid.UUID(int=self._job_rng.getrandbits(128), version=4))
            if task_id not in self._jobs:
                return task_id

    def credits_remaining(self, account: str) -> float:
        return self._credits[account]

    def running_jobs(self, account: str, now: float) -> int:
        return sum(
            1 for job in self._jobs.values() if job.account == account and job.state(now) is JobState.RUNNING
        )

    def account_jobs(self, account: str, generation_mode: str) -> list[Job]:
        """The account's jobs of one generation mode, newest first (the task list's order)."""
        mine = [
            job
            for job in self._jobs.values()
            if job.account == account and job.generation_mode == generation_mode
        ]
        return sorted(mine, key=lambda job: job.created_at, reverse=True)

    def poll(self, account: str, task_id: str, now: float, generation_mode: str | None = None) -> Job | None:
        """The account's job (of ``generation_mode``, where the API reads each mode apart), noting
        that it was asked about at ``now``, the moment its answer is for; None for unknown or foreign ids."""
        job = self._jobs.get(task_id)
        if job is None or job.account != account:
            return None
        if generation_mode is not None and job.generation_mode != generation_mode:
            return None
        job.status_polls.append(now)
        self._changed()
        return job

    def completed_job(self, task_id: str) -> Job | None:
        job = self._jobs.get(task_id)
        if job is None or job.state(time.time()) is not JobState.COMPLETED:
            return None
        return job

    # Counters and faults

    def count_request(self, endpoint: str) -> None:
        self._requests[endpoint] += 1

    def count_response(self, endpoint: str, http_status: int) -> None:
        self._responses[endpoint][http_status] += 1

    def record_video_request(self, path: str, headers: list[tuple[str, str]]) -> None:
        """Keep what a request to the video route carried, whether or not a fault then hits it."""
        self._video_requests.append((path, tuple(headers)))

    def next_fault(self, endpoint: str) -> Fault | None:
        """The fault for this request: the next scripted one, else maybe a random one."""
        scripted = self._scripted_faults[endpoint]
        fault: Fault | None = None
        if scripted:
            fault = scripted.popleft()
        elif endpoint in FAULT_ENDPOINTS:
            rates = self.config.submit_faults if endpoint == "submit" else self.config.status_faults
            kind = rates.pick(self._fault_rng.random())
            fault = None if kind is None else Fault(kind, self.config.retry_after, self.config.slow_seconds)
        if fault is not None:
            self._faults_applied[endpoint][fault.kind.value] += 1
        return fault

    # Controls, shared by the HTTP routes and the Python API

    def stats(self) -> dict[str, Any]:
        return {
            "requests": {endpoint: self._requests[endpoint] for endpoint in COUNTED_ENDPOINTS},
            "responses": {
                endpoint: {str(code): count for code, count in sorted(counts.items())}
                for endpoint, counts in self._responses.items()
            },
            "faults_applied": {endpoint: dict(counts) for endpoint, counts in self._faults_applied.items()},
            "faults_pending": {endpoint: len(queue) for endpoint, queue in self._scripted_faults.items()},
            "jobs_created": self._jobs_created,
            "credits_remaining": dict(self._credits),
        }

    def jobs(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{**asdict(job), "status": job.status(now)} for job in self._jobs.values()]

    def video_requests(self) -> list[dict[str, Any]]:
        """The last :data:`VIDEO_REQUESTS_KEPT` requests to the video route, oldest first: each one's
        ``path`` (with any query string, as sent) and every one of its ``headers``, as [name, value]
        pairs in the order received.

        Unlike the other controls, this shows what clients sent verbatim, credentials included: a test
        double records everything, so a test can prove the API key never reached the video's host.
        """
        return [
            {"path": path, "headers": [[name, value] for name, value in headers]}
            for path, headers in self._video_requests
        ]

    def inject(
        self,
        endpoint: str,
        kind: FaultKind | str,
        count: int = 1,
        *,
        retry_after: float | None = None,
        delay: float | None = None,
    ) -> int:
        """Queue ``count`` faults for the next requests to ``endpoint``; returns how many are queued there.

        Arguments may come straight from a JSON body, so their types are checked here.
        """
        if endpoint not in SCRIPTED_FAULT_ENDPOINTS:
            raise ValueError(
                f"endpoint must be one of {', '.join(SCRIPTED_FAULT_ENDPOINTS)}, got {endpoint!r}"
            )
        try:
            fault_kind = FaultKind(kind)
        except ValueError:
            kinds = ", ".join(known.value for known in FaultKind)
            raise ValueError(f"kind must be one of {kinds}, got {kind!r}") from None
        if fault_kind is FaultKind.TIMEOUT_AFTER_CREATE and endpoint != "submit":
            raise ValueError("timeout_after_create applies to the submit endpoint only")
        _check_whole("count", count, 1)
        wait = self.config.retry_after if retry_after is None else check_seconds("retry_after", retry_after)
        hold = self.config.slow_seconds if delay is None else check_seconds("delay", delay)
        queue = self._scripted_faults[endpoint]
        queue.extend([Fault(fault_kind, retry_after=wait, delay=hold)] * count)
        return len(queue)

    def hold(self, count: int) -> int:
        """Keep the next ``count`` jobs created running until :meth:`release`, so that a test can act
        on a wait however late a loaded machine gets to it; returns how many jobs are still to be held."""
        _check_whole("count", count, 1)
        self._jobs_to_hold += count
        return self._jobs_to_hold

    def release(self, task_ids: list[str] | None = None) -> int:
        """Let held jobs end at their own ``ready_at``, or now if that has passed (their ``ready_at``
        then says when they ended): those of ``task_ids``, or every one, and then no job created from
        now on is held. Returns how many jobs were released."""
        if task_ids is None:
            self._jobs_to_hold = 0
        elif not isinstance(task_ids, list) or not all(isinstance(task_id, str) for task_id in task_ids):
            raise ValueError(f"task_ids must be a list of task ids, got {task_ids!r}")
        chosen = (
            self._jobs.values() if task_ids is None else [self._jobs[t] for t in task_ids if t in self._jobs]
        )
        held = [job for job in chosen if job.held]
        now = time.time()
        for job in held:
            job.held = False
            job.ready_at = max(job.ready_at, now)
        if held:
            self._changed()
        return len(held)

    def set_credits(self, api_key: str, credits: float) -> str:
        """Set a key's balance; returns the key's account label."""
        account = self._account_of_key.get(api_key) if isinstance(api_key, str) else None
        if account is None:
            raise ValueError("api_key is not one of the emulator's keys")
        if self.config.api == "ulazai":  # whole credits there; decimal units on Kling's own API
            _check_whole("credits", credits, 0)
        elif (
            isinstance(credits, bool) or not isinstance(credits, (int, float)) or not 0 <= credits < math.inf
        ):
            raise ValueError(f"credits must be a number >= 0, got {credits!r}")
        self._credits[account] = credits
        self._changed()
        return account

    def reset(self) -> None:
        """Back to a fresh start: no jobs, holds, counters, queued faults or recorded video requests,
        full ledger, generators reseeded."""
        self._clear()
        self._changed()

    # Persistence

    def _changed(self) -> None:
        if self.config.state_file is not None and self._save_handle is None:
            self._save_handle = asyncio.get_running_loop().call_later(SAVE_DELAY, self._save)

    def flush(self) -> None:
        """Write a pending change now (at shutdown)."""
        if self._save_handle is not None:
            self._save_handle.cancel()
            self._save()

    def _save(self) -> None:
        self._save_handle = None
        path = self.config.state_file
        assert path is not None
        snapshot = {
            "version": STATE_FILE_VERSION,
            "credits": self._credits,
            "jobs": [asdict(job) for job in self._jobs.values()],
        }
        descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(descriptor, "w", encoding="utf-8") as file:
                json.dump(snapshot, file)
            os.replace(temporary, path)
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise

    def _load(self, path: Path) -> None:
        try:
            snapshot = json.loads(path.read_text(encoding="utf-8"))
            if snapshot.get("version") != STATE_FILE_VERSION:
                raise ValueError(f"unknown version {snapshot.get('version')!r}")
            jobs = [Job(**job) for job in snapshot["jobs"]]
            saved_credits = snapshot["credits"]
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            raise ValueError(f"{path} is not a Kling emulator state file: {error}") from None
        # Accounts are labelled by their key's position, so a restart must pass the keys in the same order.
        self._credits.update(
            {account: credits for account, credits in saved_credits.items() if account in self._credits}
        )
        self._jobs = {job.task_id: job for job in jobs}
