"""When to ask for a job's status next: rarely while it renders, closely around its end.

The vendor's own sample polls every 10 s, so a 60-90 s job costs about nine requests and its end is
seen 5 s late on average. :class:`AdaptivePolling` reads the job's age and reported progress instead:
it takes a first reading late in the announced range, extrapolates the finish time from the
progress (``age * 99 / progress``, which never lands before the end when progress rises evenly and
is rounded down), and wakes just after it. ``benchmarks/polling_schedule.py`` measures both.

An API that reports no progress (Kling's own) leaves nothing to extrapolate: there the polls
spread evenly over the expected duration range (:data:`WINDOW_POLLS` of them), then back off.

Every interval is a fraction of the announced duration, so the schedule keeps its shape when an
emulator runs jobs ten times faster and announces them so.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: The contract's ``estimated_time`` ("60-90 seconds"), used when a submit did not announce one.
VENDOR_EXPECTED_SECONDS = (60.0, 90.0)

#: The first reading comes at this share of the shortest announced duration: late enough for the
#: progress to say something, early enough to come before the end.
FIRST_READING = 0.8
#: Below this percentage a progress reading is too coarse to extrapolate from.
MIN_USEFUL_PROGRESS = 5
#: Far from the extrapolated end, sleep this share of the time left, then read the progress again.
APPROACH = 0.8
#: Around the end, polls are this share of the longest announced duration apart (1 s for 90 s) ...
CLOSE_SHARE = 1 / 90
#: ... and no sleep is longer than this share of it (18 s for 90 s), so a misleading progress
#: curve cannot make the wait oversleep by much.
LONGEST_SHARE = 1 / 5
#: Past the extrapolated end, each further poll waits this much longer than the one before.
OVERDUE_BACKOFF = 1.5
#: Without progress, the polls that spread over the expected range (5 s apart for 60-90 s): the
#: end is seen about half that late on average.
WINDOW_POLLS = 6


@dataclass
class AdaptivePolling:
    """The polling schedule of one job submitted at ``submitted_at`` (Unix time).

    ``expected_seconds`` is the announced duration range; stateful only in how many polls in a row
    came after the extrapolated end.
    """

    submitted_at: float
    expected_seconds: tuple[float, float] = VENDOR_EXPECTED_SECONDS
    _overdue_polls: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        shortest, longest = sorted(float(seconds) for seconds in self.expected_seconds)
        if not shortest > 0:
            raise ValueError(f"expected_seconds must be positive, got {self.expected_seconds!r}")
        self.expected_seconds = (shortest, longest)

    @property
    def close_interval(self) -> float:
        return self.expected_seconds[1] * CLOSE_SHARE

    @property
    def longest_sleep(self) -> float:
        return self.expected_seconds[1] * LONGEST_SHARE

    def first_delay(self, now: float) -> float:
        """Seconds until the first poll: none when the job is already old (a reattach), and never
        more than the first reading's offset (a triggerer whose clock is behind the worker's)."""
        offset = FIRST_READING * self.expected_seconds[0]
        return min(max(self.submitted_at + offset - now, 0.0), offset)

    def next_delay(self, now: float, progress: int | None) -> float:
        """Seconds until the next poll, after a poll at ``now`` found the job running at ``progress``
        (None: the API reports none)."""
        age = max(now - self.submitted_at, 0.0)
        if progress is None:
            return self._window_delay(age)
        if progress >= MIN_USEFUL_PROGRESS:
            finish_age = age * 99 / progress
        else:
            finish_age = max(self.expected_seconds[0], age + self.close_interval)
        remaining = finish_age - age
        if remaining <= self.close_interval:
            delay = self.close_interval * OVERDUE_BACKOFF**self._overdue_polls
            self._overdue_polls += 1
            return min(delay, self.longest_sleep)
        self._overdue_polls = 0
        if remaining <= 4 * self.close_interval:
            return remaining
        return min(remaining * APPROACH, self.longest_sleep)

    def _window_delay(self, age: float) -> float:
        """No progress to read: a poll at the shortest expected duration, then evenly spaced ones to
        the longest, then further apart (OVERDUE_BACKOFF) up to the longest sleep."""
        shortest, longest = self.expected_seconds
        spread = max((longest - shortest) / WINDOW_POLLS, self.close_interval)
        if age < shortest:
            return shortest - age
        if age < longest:
            return min(spread, longest - age) if longest - age > self.close_interval else spread
        delay = spread * OVERDUE_BACKOFF ** (self._overdue_polls + 1)
        self._overdue_polls += 1
        return min(delay, self.longest_sleep)


@dataclass(frozen=True)
class FixedPolling:
    """A poll every ``interval`` seconds, the first at once: what a user who sets an interval gets."""

    interval: float

    def first_delay(self, now: float) -> float:
        return 0.0

    def next_delay(self, now: float, progress: int | None) -> float:
        return self.interval


#: The interval of a wait told neither an interval nor when its job was submitted: the vendor's.
DEFAULT_POLL_INTERVAL = 10.0


def schedule_for(
    poll_interval: float | None,
    submitted_at: float | None,
    expected_seconds: tuple[float, float] | list[float] | None,
) -> AdaptivePolling | FixedPolling:
    """A fixed interval when one is given; else adaptive when the submit time is known."""
    if poll_interval is None and submitted_at is not None:
        expected = expected_seconds or VENDOR_EXPECTED_SECONDS
        return AdaptivePolling(submitted_at, (expected[0], expected[-1]))
    return FixedPolling(poll_interval or DEFAULT_POLL_INTERVAL)
