"""A DAG run's credit limit (core.run_credits): the ledger's verdicts, and claims made at once."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Iterable

import pytest

from airflow_provider_kling.core.errors import KlingRunBudgetContendedError, KlingRunBudgetError
from airflow_provider_kling.core.run_credits import LedgerEntry, Verdict, claim, judge


class SharedLedger:
    """One run's ledger in memory, each read and write atomic (as XCom's are), shared by claimants.
    With ``latency``, each call first takes a random 0-3 ms, as a call to Airflow's API does."""

    def __init__(self, entries: dict[str, LedgerEntry] | None = None, latency: random.Random | None = None):
        self.entries = dict(entries or {})
        self.lock = threading.Lock()
        self.latency = latency

    def travel(self) -> None:
        if self.latency is not None:
            time.sleep(self.latency.uniform(0, 0.003))

    def of(self, name: str) -> NamedLedger:
        return NamedLedger(self, name)


class NamedLedger:
    """One generation's view: it writes its own entry and reads everyone's."""

    def __init__(self, shared: SharedLedger, name: str) -> None:
        self.shared, self.name = shared, name
        self.writes: list[LedgerEntry] = []
        self.reads = 0

    def write(self, entry: LedgerEntry) -> None:
        self.shared.travel()
        with self.shared.lock:
            self.shared.entries[self.name] = entry
        self.writes.append(entry)

    def read(self) -> Iterable[LedgerEntry]:
        self.reads += 1
        self.shared.travel()
        with self.shared.lock:
            return list(self.shared.entries.values())


def test_a_generation_that_fits_under_the_limit_fits() -> None:
    entries = [LedgerEntry(spent=100), LedgerEntry(pending=55)]
    assert judge(entries, 55, limit=200) == (Verdict.FITS, 100)


def test_spent_credits_and_submits_being_sent_leave_no_room() -> None:
    entries = [
        LedgerEntry(spent=100),
        LedgerEntry(spent=55, pending=55, sending=True),
        LedgerEntry(pending=55),
    ]
    assert judge(entries, 55, limit=250) == (Verdict.EXCEEDED, 210)


def test_other_reservations_being_decided_make_a_claim_contended_not_refused() -> None:
    entries = [LedgerEntry(spent=100), LedgerEntry(pending=55), LedgerEntry(pending=55)]
    assert judge(entries, 55, limit=200) == (Verdict.CONTENDED, 100)


def test_without_a_limit_the_entry_goes_straight_to_sending_and_nothing_is_read() -> None:
    ledger = SharedLedger().of("a")
    claim(ledger, 10, 55, None, deadline=time.time() + 10)
    assert ledger.writes == [LedgerEntry(10, 55, sending=True)] and ledger.reads == 0


def test_a_claim_past_the_limit_is_refused_naming_the_spend_the_limit_and_the_estimate() -> None:
    shared = SharedLedger({"b": LedgerEntry(spent=250)})
    ledger = shared.of("a")
    with pytest.raises(KlingRunBudgetError) as refused:
        claim(ledger, 0, 55, 300, deadline=time.time() + 10)
    message = str(refused.value)
    assert "run_credit_limit" in message and "spent 250 credits" in message
    assert "limit of 300" in message and "estimate of 55 credits" in message
    assert shared.entries["a"] == LedgerEntry(), "the refused reservation was not withdrawn"


def test_a_claim_counts_what_its_own_task_instance_paid_before() -> None:
    shared = SharedLedger({"b": LedgerEntry(spent=100)})
    with pytest.raises(KlingRunBudgetError, match="spent 200 credits"):
        claim(shared.of("a"), 100, 55, 250, deadline=time.time() + 10)
    assert shared.entries["a"] == LedgerEntry(spent=100)


def test_a_contended_claim_backs_off_and_fits_once_the_other_reservation_is_withdrawn() -> None:
    shared = SharedLedger({"b": LedgerEntry(pending=55)})
    pauses: list[float] = []

    def other_withdraws(seconds: float) -> None:
        pauses.append(seconds)
        shared.entries["b"] = LedgerEntry()

    ledger = shared.of("a")
    claim(ledger, 0, 55, 100, deadline=time.time() + 10, sleep=other_withdraws)
    assert len(pauses) == 1 and ledger.writes[-1] == LedgerEntry(0, 55, sending=True)


def test_a_claim_contended_until_its_deadline_fails_withdrawn_and_retryable() -> None:
    shared = SharedLedger({"b": LedgerEntry(pending=55)})
    now = [1_000.0]

    def pass_time(seconds: float) -> None:
        now[0] += seconds

    with pytest.raises(KlingRunBudgetContendedError, match="timeout"):
        claim(shared.of("a"), 0, 55, 100, deadline=1_010.0, sleep=pass_time, clock=lambda: now[0])
    assert shared.entries["a"] == LedgerEntry()
    assert not isinstance(KlingRunBudgetContendedError("x"), KlingRunBudgetError)


def test_a_claim_whose_read_fails_withdraws_its_reservation() -> None:
    # Left behind, the reservation would make every other claim of the run contended until it timed out.
    class Unreadable(NamedLedger):
        def read(self) -> Iterable[LedgerEntry]:
            raise ConnectionError("the API server is away")

    shared = SharedLedger({"b": LedgerEntry(spent=55)})
    with pytest.raises(ConnectionError):
        claim(Unreadable(shared, "a"), 10, 55, 300, deadline=time.time() + 60)
    assert shared.entries["a"] == LedgerEntry(spent=10)


@pytest.mark.parametrize("seed", range(8))
def test_concurrent_claims_never_pass_the_limit_together_and_fill_it(seed: int) -> None:
    """Twelve generations of 55 credits claim at once under a 300-credit limit: five go ahead."""
    shared = SharedLedger({"earlier": LedgerEntry(spent=20)}, latency=random.Random(seed))
    went_ahead: list[str] = []
    refused: list[str] = []

    def generation(name: str) -> None:
        ledger = shared.of(name)
        try:
            claim(ledger, 0, 55, 300, deadline=time.time() + 60, sleep=lambda s: time.sleep(s / 50))
        except KlingRunBudgetError:
            refused.append(name)
            return
        went_ahead.append(name)
        ledger.write(LedgerEntry(spent=55))  # the job was accepted

    threads = [threading.Thread(target=generation, args=(f"g{index}",)) for index in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    spent = sum(entry.spent + entry.pending for entry in shared.entries.values())
    assert len(went_ahead) == 5 and len(refused) == 7, (went_ahead, refused)
    assert spent == 20 + 5 * 55 <= 300
