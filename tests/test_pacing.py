"""Pacing status polls: the turns a RequestPacer hands out, and the hook's polls paced at the emulator."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from hook_setup import ONE_TRY, connect

from airflow_provider_kling.core.errors import KlingConnectionSettingError, KlingRateLimitError
from airflow_provider_kling.core.pacing import RequestPacer
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.hooks.kling import KlingHook


def turn_times(
    pacer: RequestPacer, waiters: int, pause_at: float | None = None, pause: float = 0
) -> list[float]:
    """When each of ``waiters`` concurrent callers got its turn, in seconds from the start; with
    ``pause_at``, the pacer is paused for ``pause`` seconds that long after the start."""

    async def run() -> list[float]:
        clock = asyncio.get_running_loop()
        started = clock.time()

        async def one() -> float:
            await pacer.turn()
            return clock.time() - started

        if pause_at == 0:
            pacer.pause(pause)
        waiting = [asyncio.create_task(one()) for _ in range(waiters)]
        if pause_at:
            await asyncio.sleep(pause_at)
            pacer.pause(pause)
        return sorted(await asyncio.gather(*waiting))

    return asyncio.run(run())


def test_without_a_cap_every_turn_comes_at_once() -> None:
    assert turn_times(RequestPacer(), 50)[-1] < 0.5  # a cap of 100/s would take 0.49 s


def test_turns_are_spaced_by_the_cap_first_come_first_served() -> None:
    times = turn_times(RequestPacer(per_second=50), 10)
    # The k-th turn never comes before k / 50 s (a busy machine may only make it later).
    assert all(time_taken >= turn / 50 - 0.001 for turn, time_taken in enumerate(times))


def test_a_stalled_loop_does_not_release_a_burst_of_overdue_turns() -> None:
    pacer = RequestPacer(per_second=20)

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
    times = turn_times(RequestPacer(), 5, pause_at=0, pause=0.3)
    assert times[0] >= 0.29


def test_a_pause_declared_while_waiting_for_a_turn_is_waited_out() -> None:
    # Turns at 0, 0.1, 0.2, 0.3: a 0.5 s pause at 0.05 holds the later three until 0.55.
    times = turn_times(RequestPacer(per_second=10), 4, pause_at=0.05, pause=0.5)
    assert times[0] < 0.05
    assert min(times[1:]) >= 0.54


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
