"""Pace the status polls of every waiter on one connection in one event loop (one triggerer).

A bulk run parks thousands of waits in a triggerer; left alone they would poll as fast as their
schedules say, and the vendor's rate limit would answer with 429s. A :class:`RequestPacer` lets
the waiters through one at a time, first come first served, at most ``per_second`` a second by
the clock (so a loop that stalls does not release a burst of overdue turns afterwards), and a 429
pauses every waiter on the connection for its Retry-After, not just the one that got it.
"""

from __future__ import annotations

import asyncio


class RequestPacer:
    """Turns for requests: ``1 / per_second`` apart (no cap when None), none while paused."""

    def __init__(self, per_second: float | None = None) -> None:
        self.per_second = per_second
        self._last_turn = float("-inf")
        self._paused_until = 0.0
        self._queue = asyncio.Lock()  # FIFO: waiters take their turns in the order they asked

    @property
    def holds_back(self) -> bool:
        """Whether a turn may have to wait: with a cap, or during a pause (else callers skip turn())."""
        return bool(self.per_second) or self._paused_until > asyncio.get_running_loop().time()

    async def turn(self) -> None:
        """Wait for this caller's turn."""
        clock = asyncio.get_running_loop()
        async with self._queue:
            while True:
                now = clock.time()
                ready_at = self._paused_until
                if self.per_second:
                    ready_at = max(ready_at, self._last_turn + 1 / self.per_second)
                if ready_at <= now:
                    self._last_turn = now
                    return
                await asyncio.sleep(ready_at - now)

    def pause(self, seconds: float) -> None:
        """Hold every turn for ``seconds`` (a 429's Retry-After): the whole group slows, not one waiter."""
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + seconds)
