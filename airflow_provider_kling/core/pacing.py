"""Pace the status polls of every waiter on one connection in one event loop (one triggerer).

A bulk run parks thousands of waits in a triggerer; left alone they would poll as fast as their
schedules say, and the vendor's rate limit would answer with 429s. A :class:`RequestPacer` hands
out turns at most ``per_second`` apart, first come first served, and a 429 pauses every waiter on
the connection for its Retry-After, not just the one that got it.
"""

from __future__ import annotations

import asyncio


class RequestPacer:
    """Turns for requests: spaced ``1 / per_second`` apart (no cap when None), none while paused."""

    def __init__(self, per_second: float | None = None) -> None:
        self.per_second = per_second
        self._next_turn = 0.0
        self._paused_until = 0.0

    @property
    def holds_back(self) -> bool:
        """Whether a turn may have to wait: with a cap, or during a pause (else callers skip turn())."""
        return bool(self.per_second) or self._paused_until > asyncio.get_running_loop().time()

    async def turn(self) -> None:
        """Wait for this caller's turn; a pause declared meanwhile is waited out too."""
        clock = asyncio.get_running_loop()
        while True:
            now = clock.time()
            start = max(now, self._paused_until)
            if self.per_second:
                start = max(start, self._next_turn)
                self._next_turn = start + 1 / self.per_second
            if start <= now:
                return
            await asyncio.sleep(start - now)
            if self._paused_until <= clock.time():
                return

    def pause(self, seconds: float) -> None:
        """Hold every turn for ``seconds`` (a 429's Retry-After): the whole group slows, not one waiter."""
        self._paused_until = max(self._paused_until, asyncio.get_running_loop().time() + seconds)
