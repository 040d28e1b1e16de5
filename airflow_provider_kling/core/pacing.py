"""Pace the status polls of every waiter on one connection in one event loop (one triggerer).

A bulk run parks thousands of waits in a triggerer; left alone they would poll as fast as their
schedules say, and the vendor's rate limit would answer with 429s. A :class:`RequestPacer` lets
the waiters through one at a time, first come first served, at most ``per_second`` a second by
the clock (so a loop that stalls does not release a burst of overdue turns afterwards), and a 429
pauses every waiter on the connection for its Retry-After, not just the one that got it.

The vendor's limit is per account, undocumented, and shared by every triggerer polling it, so no
single number fits. An :class:`AdaptiveRate` finds it the way TCP finds a link's capacity: no pace
until the first 429, then the rate that was being sent, cut to ``BACK_OFF`` of it, growing again
by a small step each second the pace holds polls back (additive increase, multiplicative decrease).
Several triggerers, each doing so on its own, settle together just under the account's limit.
"""

from __future__ import annotations

import asyncio

#: The share of the rate sent that a 429 leaves (the multiplicative decrease).
BACK_OFF = 0.7
#: Growth a second while the pace holds polls back, as a share of the rate set by the last 429:
#: small, so that a triggerer probes the limit again only every ~20 s and few polls meet a 429.
GROWTH = 0.02
#: The slowest pace a 429 can set: a poll every 2 s keeps every wait learning how its job went.
MIN_RATE = 0.5
#: 429s closer together than this are one signal (the polls of one burst), cutting the rate once.
SIGNAL_SECONDS = 1.0


class AdaptiveRate:
    """The poll rate one triggerer has found for a connection: None (no pace) until the first 429.

    Methods take the loop's clock reading, so the rule is tested without a loop.

    :param ceiling: a pace it never exceeds (the connection's cap), None for none.
    """

    def __init__(self, ceiling: float | None = None) -> None:
        self.ceiling = ceiling
        self.per_second: float | None = None
        self._step = 0.0
        self._cut_at = float("-inf")
        self._grown_at = 0.0
        self._second = 0
        self._sent_this_second = 0
        self._sent_last_second = 0

    def sent(self, now: float) -> None:
        """A poll went out: counted by the second, to know the rate being sent when a 429 comes."""
        self._roll(now)
        self._sent_this_second += 1

    def _roll(self, now: float) -> None:
        second = int(now)
        if second != self._second:
            self._sent_last_second = self._sent_this_second if second == self._second + 1 else 0
            self._second, self._sent_this_second = second, 0

    def limited(self, now: float) -> None:
        """A 429: the rate becomes ``BACK_OFF`` of the pace (of what was being sent, the first time);
        once a burst."""
        if now - self._cut_at < SIGNAL_SECONDS:
            return
        if self.per_second is None:  # the first: measure what was being sent
            self._roll(now)
            sending = float(max(self._sent_last_second, self._sent_this_second))
        else:
            sending = self.per_second
        if self.ceiling is not None:
            sending = min(sending, self.ceiling)
        self.per_second = max(MIN_RATE, BACK_OFF * sending)
        self._step = GROWTH * self.per_second
        self._cut_at = self._grown_at = now

    def answered(self, now: float, held_back: bool) -> None:
        """A poll was answered: while the pace holds polls back, the rate grows by a step a second."""
        if self.per_second is not None and held_back:
            grown = self.per_second + self._step * (now - self._grown_at)
            self.per_second = grown if self.ceiling is None else min(grown, self.ceiling)
        self._grown_at = now


class RequestPacer:
    """Turns for requests: ``1 / per_second`` apart (no cap when None), none while paused.

    :param cap: the connection's ``max_polls_per_second``: a hard ceiling, None for none.
    :param adaptive: whether the pace also follows the vendor's 429s (:class:`AdaptiveRate`).
    """

    def __init__(self, cap: float | None = None, adaptive: bool = True) -> None:
        self.rate = AdaptiveRate(cap) if adaptive else None
        self.cap = cap
        self._last_turn = float("-inf")
        self._paused_until = 0.0
        self._held_back_at = float("-inf")
        self._queue = asyncio.Lock()  # FIFO: waiters take their turns in the order they asked

    @property
    def cap(self) -> float | None:
        return self._cap

    @cap.setter
    def cap(self, cap: float | None) -> None:
        self._cap = cap
        if self.rate:
            self.rate.ceiling = cap

    @property
    def per_second(self) -> float | None:
        """The pace now: the adaptive rate (never above the cap), else the cap; None for none."""
        found = self.rate.per_second if self.rate else None
        return self.cap if found is None else found

    @property
    def holds_back(self) -> bool:
        """Whether a turn may have to wait: with a pace, or during a pause (else callers skip turn())."""
        return bool(self.per_second) or self._paused_until > asyncio.get_running_loop().time()

    async def turn(self) -> None:
        """Wait for this caller's turn."""
        clock = asyncio.get_running_loop()
        async with self._queue:
            while True:
                now = clock.time()
                ready_at = self._paused_until
                per_second = self.per_second
                if per_second:
                    ready_at = max(ready_at, self._last_turn + 1 / per_second)
                if ready_at <= now:
                    self._last_turn = now
                    return
                self._held_back_at = now
                await asyncio.sleep(ready_at - now)

    def sent(self) -> None:
        """A request went out (after its turn, or at once when nothing holds back)."""
        if self.rate:
            self.rate.sent(asyncio.get_running_loop().time())

    def answered(self) -> None:
        """A request was answered without a 429."""
        if self.rate:
            now = asyncio.get_running_loop().time()
            self.rate.answered(now, held_back=now - self._held_back_at < SIGNAL_SECONDS)

    def limited(self, seconds: float) -> None:
        """A 429: hold every turn for ``seconds`` (its Retry-After: the whole group slows, not one
        waiter), and cut the adaptive rate."""
        now = asyncio.get_running_loop().time()
        if self.rate:
            self.rate.limited(now)
        self._paused_until = max(self._paused_until, now + seconds)
