"""A DAG run's credit limit, shared by generations that run at the same time on different workers.

No store a task can reach offers an atomic compare-and-set, so no shared counter is ever read and
rewritten. Instead each generation owns one entry in a ledger (``LedgerEntry``: what it has spent,
and what it is about to spend) that only it writes, and the run's spend is the sum of all entries.

A generation under a limit claims its share by writing its entry as *reserving* first and reading
the whole ledger second. Of any two generations claiming at once, the one that reads later sees the
other's entry, since each wrote before it read: so the last of any set that goes ahead has counted
all the others, and together they cannot pass the limit. A reservation that does not fit is
withdrawn. If it does not fit because of what is spent or being sent, the generation is refused.
If it fails only because of other reservations still being decided, it backs off for a random
while and tries again: those may be withdrawn, and then it fits.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from airflow_provider_kling.core.errors import KlingRunBudgetContendedError, KlingRunBudgetError

#: The first back-off after a contended claim, in seconds; it doubles per attempt, up to the cap.
FIRST_BACKOFF = 0.25
BACKOFF_CAP = 4.0


@dataclass(frozen=True)
class LedgerEntry:
    """One generation's part of its DAG run's spend."""

    spent: float = 0
    """Credits (units, on Kling's own API) it has paid in this run: jobs the vendor accepted, and
    any submit whose answer was lost."""
    pending: float = 0
    """The estimate of the submit it is about to make, if any."""
    sending: bool = False
    """Whether that submit goes ahead (it fit under the limit, or the task has none)."""
    unit: str = "credits"
    """What it counts: its API's unit (``credits`` on UlazAI's, ``units`` on Kling's own)."""

    def to_json(self) -> dict[str, Any]:
        return {"spent": self.spent, "pending": self.pending, "sending": self.sending, "unit": self.unit}

    @classmethod
    def from_json(cls, stored: Any) -> LedgerEntry | None:
        """The entry from what was stored; None for anything else."""
        if not isinstance(stored, dict):
            return None
        spent, pending = stored.get("spent"), stored.get("pending")
        if not isinstance(spent, (int, float)) or not isinstance(pending, (int, float)):
            return None
        if not _is_amount(spent) or not _is_amount(pending):
            return None
        unit = stored.get("unit")  # none in an entry from a version that counted credits only
        return cls(
            spent, pending, stored.get("sending") is True, unit if isinstance(unit, str) else "credits"
        )


def _is_amount(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class Ledger(Protocol):
    """Where a run's entries live: each generation writes its own and reads them all."""

    def write(self, entry: LedgerEntry) -> None: ...

    def read(self) -> Iterable[LedgerEntry]: ...


class Verdict(Enum):
    FITS = "fits"
    CONTENDED = "contended"  # fits unless the other reservations being decided go ahead
    EXCEEDED = "exceeded"


def judge(
    entries: Iterable[LedgerEntry], estimate: float, limit: float, unit: str = "credits"
) -> tuple[Verdict, float]:
    """Whether ``estimate`` more fits under ``limit``, given every entry of the run in ``unit`` (the
    claimant's own reservation among them), and what is spent or being sent so far."""
    committed = reserved = 0.0
    for entry in (entry for entry in entries if entry.unit == unit):
        committed += entry.spent + (entry.pending if entry.sending else 0)
        reserved += 0 if entry.sending else entry.pending
    if committed + estimate > limit:
        return Verdict.EXCEEDED, committed
    if committed + reserved > limit:
        return Verdict.CONTENDED, committed
    return Verdict.FITS, committed


def claim(
    ledger: Ledger,
    spent: float,
    estimate: float,
    limit: float | None,
    deadline: float,
    *,
    unit: str = "credits",
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.time,
) -> None:
    """Write this generation's entry as sending ``estimate`` on top of ``spent``, once it fits under
    ``limit`` (None: no limit, nothing to check); raise KlingRunBudgetError when it cannot fit. Only
    the run's entries in ``unit`` count: a run may use both APIs, whose units do not add up."""
    if limit is None:
        ledger.write(LedgerEntry(spent, estimate, sending=True))
        return
    backoff = FIRST_BACKOFF
    while True:
        ledger.write(LedgerEntry(spent, estimate))
        try:
            verdict, committed = judge(ledger.read(), estimate, limit, unit)
        except BaseException:  # a reservation left behind would hold up the run's other generations
            ledger.write(LedgerEntry(spent))
            raise
        if verdict is Verdict.FITS:
            ledger.write(LedgerEntry(spent, estimate, sending=True))
            return
        ledger.write(LedgerEntry(spent))
        if verdict is Verdict.EXCEEDED:
            raise KlingRunBudgetError(committed, limit, estimate, unit)
        pause = backoff * random.uniform(0.5, 1.5)
        if clock() + pause > deadline:
            raise KlingRunBudgetContendedError(
                f"run_credit_limit: other generations of this DAG run kept claiming {unit} until this "
                f"task's timeout; {committed:g} {unit} of the limit of {limit:g} are spent, and this "
                f"generation's estimate is {estimate:g}. Nothing was sent; a retry claims again."
            )
        sleep(pause)
        backoff = min(backoff * 2, BACKOFF_CAP)
