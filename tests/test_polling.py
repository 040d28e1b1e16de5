"""The polling schedules, on simulated jobs whose progress rises as the emulator's does."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from airflow_provider_kling.core.polling import AdaptivePolling, FixedPolling

SUBMITTED_AT = 1_000_000.0


def simulate(schedule: AdaptivePolling | FixedPolling, job_seconds: float, shape: float = 1.0) -> list[float]:
    """The job ages at which ``schedule`` polls a job that ends at ``job_seconds``; the last sees it done.

    Progress is ``99 * (age / job_seconds) ** shape`` rounded down: shape 1 rises evenly.
    """
    age = schedule.first_delay(SUBMITTED_AT)
    polls = []
    while True:
        polls.append(age)
        if age >= job_seconds:
            return polls
        progress = int(99 * (age / job_seconds) ** shape)
        age += schedule.next_delay(SUBMITTED_AT + age, progress)


def job_lengths(count: int = 500) -> list[float]:
    chance = random.Random(6)
    return [chance.uniform(60, 90) for _ in range(count)]


def test_the_first_poll_comes_late_in_the_announced_range() -> None:
    assert AdaptivePolling(SUBMITTED_AT, (60, 90)).first_delay(SUBMITTED_AT) == pytest.approx(48)


def test_a_job_older_than_its_first_reading_is_polled_at_once() -> None:
    assert AdaptivePolling(SUBMITTED_AT, (60, 90)).first_delay(SUBMITTED_AT + 300) == 0


def test_a_triggerer_clock_behind_the_workers_delays_the_first_poll_no_more_than_a_fresh_job() -> None:
    assert AdaptivePolling(SUBMITTED_AT, (60, 90)).first_delay(SUBMITTED_AT - 600) == pytest.approx(48)


def test_progress_points_the_next_poll_at_the_extrapolated_end() -> None:
    schedule = AdaptivePolling(SUBMITTED_AT, (60, 90))
    # 72 s in at 96%: the job ends near 74.25 s, close enough to wake just then.
    assert schedule.next_delay(SUBMITTED_AT + 72, 96) == pytest.approx(74.25 - 72)


def test_a_far_end_is_approached_with_another_reading_before_it() -> None:
    schedule = AdaptivePolling(SUBMITTED_AT, (60, 90))
    # 48 s in at 60%: the end is ~31 s away, so the next reading comes at most 18 s later.
    assert schedule.next_delay(SUBMITTED_AT + 48, 60) == pytest.approx(18)


def test_even_progress_shows_the_end_within_a_second_for_under_60_percent_of_the_requests() -> None:
    lengths = job_lengths()
    fixed = [simulate(FixedPolling(10), length) for length in lengths]
    adaptive = [simulate(AdaptivePolling(SUBMITTED_AT, (60, 90)), length) for length in lengths]

    adaptive_requests = sum(len(polls) for polls in adaptive)
    assert adaptive_requests <= 0.6 * sum(len(polls) for polls in fixed)
    lags = [polls[-1] - length for polls, length in zip(adaptive, lengths, strict=True)]
    assert statistics.median(lags) <= 1.0


@pytest.mark.parametrize("shape", [0.5, 2.0], ids=["fast-start", "slow-start"])
def test_uneven_progress_costs_no_more_requests_and_no_more_lag_than_the_vendors_10s(shape: float) -> None:
    lengths = job_lengths()
    fixed = [simulate(FixedPolling(10), length, shape) for length in lengths]
    adaptive = [simulate(AdaptivePolling(SUBMITTED_AT, (60, 90)), length, shape) for length in lengths]

    assert sum(map(len, adaptive)) <= sum(map(len, fixed))
    lag = [polls[-1] - length for polls, length in zip(adaptive, lengths, strict=True)]
    fixed_lag = [polls[-1] - length for polls, length in zip(fixed, lengths, strict=True)]
    assert statistics.mean(lag) <= statistics.mean(fixed_lag) * 1.25


def test_without_progress_it_polls_evenly_through_the_expected_range_then_backs_off() -> None:
    # Kling's own API reports no progress: nothing to extrapolate, so the polls spread over 60-90 s.
    schedule = AdaptivePolling(SUBMITTED_AT, (60, 90))
    ages = [48.0]  # the first reading, at 0.8 of the shortest
    for _ in range(12):
        ages.append(ages[-1] + schedule.next_delay(SUBMITTED_AT + ages[-1], None))
    assert ages[1:8] == pytest.approx([60, 65, 70, 75, 80, 85, 90])
    past_the_range = [later - earlier for earlier, later in itertools.pairwise(ages[7:])]
    assert past_the_range == sorted(past_the_range) and past_the_range[0] > 5
    assert max(past_the_range) == pytest.approx(18)


def test_stuck_progress_never_makes_it_sleep_longer_than_a_fifth_of_the_job() -> None:
    schedule = AdaptivePolling(SUBMITTED_AT, (60, 90))
    assert schedule.next_delay(SUBMITTED_AT + 3000, 10) == pytest.approx(18)


def test_the_schedule_keeps_its_shape_when_jobs_run_ten_times_faster() -> None:
    vendor = simulate(AdaptivePolling(SUBMITTED_AT, (60, 90)), 75)
    emulated = simulate(AdaptivePolling(SUBMITTED_AT, (6, 9)), 7.5)
    assert emulated == pytest.approx([age / 10 for age in vendor])


def test_fixed_polling_starts_at_once_and_keeps_its_interval() -> None:
    schedule = FixedPolling(10)
    assert schedule.first_delay(SUBMITTED_AT) == 0
    assert {schedule.next_delay(SUBMITTED_AT + age, 50) for age in (1, 30, 300)} == {10}


@pytest.mark.parametrize("expected", [(0, 90), (-1, 5)])
def test_expected_seconds_must_be_positive(expected: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="expected_seconds"):
        AdaptivePolling(SUBMITTED_AT, expected)
