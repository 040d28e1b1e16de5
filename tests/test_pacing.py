"""Pacing status polls: the turns a RequestPacer hands out, and the hook's polls paced at the emulator."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, deque
from typing import Any

import pytest
from hook_setup import ONE_TRY, connect

from airflow_provider_kling.core import pacing
from airflow_provider_kling.core.api import RetryPolicy
from airflow_provider_kling.core.errors import KlingConnectionSettingError, KlingRateLimitError
from airflow_provider_kling.core.pacing import AdaptiveRate, RequestPacer
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.emulator.pytest_plugin import KlingEmulatorFactory
from airflow_provider_kling.hooks.kling import KlingHook


def turn_times(
    pacer: RequestPacer, waiters: int, pause_at: float | None = None, pause: float = 0
) -> list[float]:
    """When each of ``waiters`` concurrent callers got its turn, in seconds from the start; with
    ``pause_at``, a 429 pauses the pacer for ``pause`` seconds that long after the start."""

    async def run() -> list[float]:
        clock = asyncio.get_running_loop()
        started = clock.time()

        async def one() -> float:
            await pacer.turn()
            return clock.time() - started

        if pause_at == 0:
            pacer.limited(pause)
        waiting = [asyncio.create_task(one()) for _ in range(waiters)]
        if pause_at:
            await asyncio.sleep(pause_at)
            pacer.limited(pause)
        return sorted(await asyncio.gather(*waiting))

    return asyncio.run(run())


def test_without_a_cap_no_turn_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    # What the pacer waits, not how long the turns took: a loaded machine makes any turn late.
    waits: list[float] = []
    sleep = asyncio.sleep

    async def recorded(delay: float) -> None:
        waits.append(delay)
        await sleep(delay)

    monkeypatch.setattr(pacing.asyncio, "sleep", recorded)
    assert len(turn_times(RequestPacer(), 50)) == 50
    assert waits == []


def test_turns_are_spaced_by_the_cap_first_come_first_served() -> None:
    times = turn_times(RequestPacer(cap=50), 10)
    # The k-th turn never comes before k / 50 s (a busy machine may only make it later).
    assert all(time_taken >= turn / 50 - 0.001 for turn, time_taken in enumerate(times))


def test_a_stalled_loop_does_not_release_a_burst_of_overdue_turns() -> None:
    pacer = RequestPacer(cap=20)

    async def run() -> list[float]:
        clock = asyncio.get_running_loop()
        granted: list[float] = []

        async def one() -> None:
            await pacer.turn()
            granted.append(clock.time())

        waiting = [asyncio.create_task(one()) for _ in range(8)]
        await asyncio.sleep(0.01)
        time.sleep(0.3)  # the loop stalls (a long GC, a blocking call) while turns come due
        await asyncio.gather(*waiting)
        return granted

    granted = asyncio.run(run())
    gaps = [later - earlier for earlier, later in itertools.pairwise(granted)]
    assert min(gaps) >= 1 / 20 - 0.001


def test_a_pause_holds_every_waiter_until_it_ends() -> None:
    times = turn_times(RequestPacer(adaptive=False), 5, pause_at=0, pause=0.3)
    assert times[0] >= 0.29


def test_a_pause_declared_while_waiting_for_a_turn_is_waited_out() -> None:
    # Turns at 0, 0.1, 0.2, 0.3: a 0.5 s pause at 0.05 holds the later three until 0.55.
    times = turn_times(RequestPacer(cap=10, adaptive=False), 4, pause_at=0.05, pause=0.5)
    assert times[0] < 0.05
    assert min(times[1:]) >= 0.54


# -- The adaptive rate: the vendor's limit found from its 429s -----------------------------------------


def sending(rate: AdaptiveRate, per_second: int, start: float, seconds: int = 1) -> float:
    """``per_second`` polls a second, each answered, from ``start``; returns when the last went out."""
    now = start
    for _ in range(per_second * seconds):
        rate.sent(now)
        rate.answered(now, held_back=False)
        now += 1 / per_second
    return now


def test_nothing_is_paced_before_the_first_429() -> None:
    rate = AdaptiveRate()
    sending(rate, 200, start=0.0, seconds=5)
    assert rate.per_second is None


def test_a_429_sets_the_rate_to_seventy_percent_of_what_was_being_sent() -> None:
    rate = AdaptiveRate()
    now = sending(rate, 20, start=10.0, seconds=2)
    rate.limited(now)
    assert rate.per_second == pytest.approx(14)


def test_the_429s_of_one_burst_cut_the_rate_once() -> None:
    rate = AdaptiveRate()
    now = sending(rate, 20, start=10.0)
    for burst in range(5):
        rate.limited(now + burst * 0.1)
    assert rate.per_second == pytest.approx(14)
    rate.limited(now + 1.5)  # a second later: a new signal
    assert rate.per_second == pytest.approx(14 * 0.7)


def test_the_rate_grows_two_percent_of_its_cut_a_second_only_while_it_holds_polls_back() -> None:
    rate = AdaptiveRate()
    rate.limited(sending(rate, 20, start=10.0))  # 14 a second from t=11
    rate.answered(21.0, held_back=False)
    assert rate.per_second == pytest.approx(14)  # no demand beyond it: no probing upwards
    rate.answered(31.0, held_back=True)
    assert rate.per_second == pytest.approx(14 + 0.02 * 14 * 10)


def test_a_429_never_sets_a_rate_below_one_poll_every_two_seconds() -> None:
    rate = AdaptiveRate()
    rate.limited(5.0)
    assert rate.per_second == 0.5


def test_the_connections_cap_stays_a_ceiling_over_the_rate_found() -> None:
    pacer = RequestPacer(cap=5)
    assert pacer.per_second == 5 and pacer.rate is not None
    pacer.rate.limited(sending(pacer.rate, 5, start=0.0))
    assert pacer.per_second == pytest.approx(3.5)  # cut from the pace in force
    pacer.rate.answered(1000.0, held_back=True)
    assert pacer.per_second == 5  # and grown back no further than the cap


def account_limited_polling(
    triggerers: int, limit: int, seconds: int = 300
) -> tuple[Counter[int], Counter[int]]:
    """Simulate ``triggerers`` polling one account as fast as their rates allow (their waits ask for
    four times ``limit``), against a vendor allowing ``limit`` requests in any second and answering
    429 with Retry-After: 1 beyond it. Returns requests received and refused, by second."""
    rates = [AdaptiveRate() for _ in range(triggerers)]
    next_at = [0.001 * k for k in range(triggerers)]
    paused_until = [0.0] * triggerers
    accepted: deque[float] = deque()
    received: Counter[int] = Counter()
    refused: Counter[int] = Counter()
    demand_gap = triggerers / (4 * limit)
    while min(next_at) < seconds:
        k = next_at.index(min(next_at))
        now = next_at[k]
        rates[k].sent(now)
        while accepted and accepted[0] <= now - 1:
            accepted.popleft()
        received[int(now)] += 1
        if len(accepted) >= limit:
            refused[int(now)] += 1
            rates[k].limited(now)
            paused_until[k] = now + 1
        else:
            accepted.append(now)
            rates[k].answered(now, held_back=rates[k].per_second is not None)
        gap = 1 / rates[k].per_second if rates[k].per_second else demand_gap
        next_at[k] = max(
            now + max(gap, demand_gap) if rates[k].per_second is None else now + gap, paused_until[k]
        )
    return received, refused


@pytest.mark.parametrize("triggerers", [1, 2, 3])
def test_triggerers_finding_the_rate_each_on_its_own_stay_under_the_accounts_limit(triggerers: int) -> None:
    limit = 20
    received, refused = account_limited_polling(triggerers, limit)
    settled = [second for second in received if second >= 60]  # a minute to settle
    assert max(received[second] for second in settled) <= 1.1 * limit
    total = sum(received[second] for second in settled)
    assert sum(refused[second] for second in settled) < 0.02 * total
    assert total - sum(refused[second] for second in settled) >= 0.7 * limit * len(settled)


def poll_concurrently(task_ids: list[str], hook: KlingHook | None = None) -> list[Any]:
    """Poll every task at once, as waiting triggers do, through ``hook`` (by default, kling_default's)."""

    polling = hook or KlingHook()

    async def run() -> list[Any]:
        return await asyncio.gather(
            *(polling.aget_status(task_id) for task_id in task_ids), return_exceptions=True
        )

    return asyncio.run(run())


def test_the_connections_cap_spaces_the_polls_the_emulator_receives(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, extra={"max_polls_per_second": 20})
    task_id = KlingHook().submit(GenerationRequest("a fox")).task_id

    started = time.time()
    poll_concurrently([task_id] * 10)

    [job] = emulator.jobs()
    polled = sorted(job["status_polls"])
    assert len(polled) == 10
    assert all(at - started >= turn / 20 - 0.01 for turn, at in enumerate(polled))


def test_without_a_cap_concurrent_polls_go_out_together(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator)
    task_id = KlingHook().submit(GenerationRequest("a fox")).task_id

    poll_concurrently([task_id] * 10)

    [job] = emulator.jobs()
    assert max(job["status_polls"]) - min(job["status_polls"]) < 0.4  # capped at 20/s: 0.45 s


def test_a_429_holds_back_every_wait_on_the_connection_for_its_retry_after(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, extra={"max_polls_per_second": 2})  # turns 0.5 s apart
    task_id = KlingHook().submit(GenerationRequest("a fox")).task_id
    emulator.inject("status", "rate_limit", retry_after=1.0)

    started = time.time()
    answers = poll_concurrently([task_id] * 3, KlingHook(status_retry_policy=ONE_TRY))

    assert isinstance(answers[0], KlingRateLimitError)
    [job] = emulator.jobs()  # it notes the polls it answered, not the one it refused
    assert len(job["status_polls"]) == 2
    assert min(job["status_polls"]) >= started + 0.95


def refusals_polling_a_rate_limited_account(
    kling_emulator_factory: KlingEmulatorFactory, monkeypatch: pytest.MonkeyPatch, adaptive: bool
) -> int:
    """How many of 24 waits' polls, all due at once and each retried until answered, an account
    allowing 4 requests a second refuses."""
    emulator = kling_emulator_factory(rate_limit=4, retry_after=1)
    connect(monkeypatch, emulator, extra={"adaptive_rate": adaptive})
    task_id = KlingHook().submit(GenerationRequest("a fox")).task_id
    patient = KlingHook(status_retry_policy=RetryPolicy(attempts=100, initial_wait=0.1, max_wait=1))
    answers = poll_concurrently([task_id] * 24, patient)
    assert all(answer.task_id == task_id for answer in answers)
    return sum(refused for _, refused in emulator.traffic().values())


def test_the_waits_of_a_connection_find_a_pace_that_meets_fewer_429s(
    kling_emulator_factory: KlingEmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pausing for each Retry-After alone sends the waiting polls again all at once, each time.
    with_pause_only = refusals_polling_a_rate_limited_account(kling_emulator_factory, monkeypatch, False)
    with_adaptive_rate = refusals_polling_a_rate_limited_account(kling_emulator_factory, monkeypatch, True)
    print(f"429s: {with_pause_only} with the pause only, {with_adaptive_rate} with the adaptive rate")
    assert with_adaptive_rate < with_pause_only


def test_a_cap_given_as_text_as_a_uri_gives_it_is_read(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, extra={"max_polls_per_second": "20"})
    task_id = KlingHook().submit(GenerationRequest("a fox")).task_id
    assert [status.task_id for status in poll_concurrently([task_id] * 2)] == [task_id] * 2


def test_a_bad_cap_stops_a_submit_before_anything_is_sent(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Better than paying for a video whose wait then fails on the setting.
    connect(monkeypatch, emulator, extra={"max_polls_per_second": "fast"})
    with pytest.raises(KlingConnectionSettingError, match="max_polls_per_second='fast'"):
        KlingHook().submit(GenerationRequest("a fox"))
    assert emulator.stats()["requests"]["submit"] == 0


@pytest.mark.parametrize("setting", [0, -1, "fast", True])
def test_a_cap_that_is_not_a_positive_number_is_a_clear_error(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, setting: Any
) -> None:
    connect(monkeypatch, emulator, extra={"max_polls_per_second": setting})
    [answer] = poll_concurrently(["abc"])
    assert isinstance(answer, KlingConnectionSettingError)
    assert "max_polls_per_second" in str(answer) and repr(setting) in str(answer)


@pytest.mark.parametrize("setting", ["maybe", 1, "yes"])
def test_an_adaptive_rate_setting_that_is_not_true_or_false_is_a_clear_error(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, setting: Any
) -> None:
    connect(monkeypatch, emulator, extra={"adaptive_rate": setting})
    [answer] = poll_concurrently(["abc"])
    assert isinstance(answer, KlingConnectionSettingError)
    assert f"adaptive_rate={setting!r}: it must be true or false" in str(answer)


@pytest.mark.parametrize("setting", [False, "false", " False "])
def test_the_adaptive_rate_is_switched_off_by_false_as_json_or_as_text(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch, setting: Any
) -> None:
    connect(monkeypatch, emulator, extra={"adaptive_rate": setting})
    assert KlingHook()._settings.adaptive_rate is False
