"""The record the operator keeps of its request in ``task_state_store``: one typed form, one JSON form.

First a *mark* that the request was sent (its fingerprint; no task_id yet), then the *job* the
vendor accepted (task_id, credits, when, how long it said it would take). Both carry the round of
the task instance they were made in (``max_tries``, which Airflow raises on every clear), which
``regenerate`` compares. The JSON form is what Airflow stores, and what earlier versions stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airflow_provider_kling.core.responses import SubmitResult


@dataclass(frozen=True)
class Submission:
    """A sent request (``task_id`` None: the answer was never seen) or the job it created."""

    fingerprint: str
    """The request's fingerprint: a retry with a changed request is a new request."""
    round: int | None = None
    """The task instance's ``max_tries`` when it was made: ``regenerate`` compares it."""
    task_id: str | None = None
    """The vendor's task_id; None while the answer to the submit has not been seen."""
    credits_used: int | None = None
    credits_remaining: int | None = None
    submitted_at: float | None = None
    """The Unix time the vendor's answer came: the adaptive schedule counts the job's age from it."""
    expected_seconds: tuple[float, float] | None = None
    """The duration range the submit announced, if it did."""
    external_task_id: str | None = None
    """The caller's id the submit carried (Kling's own API): a retry finds the job by it."""
    paid_before: float = 0
    """Credits (or units) the task instance's earlier jobs in this DAG run cost (a failed job's are
    not known to be refunded): with this one's, its entry in the run's credit ledger (core.run_credits)."""

    @property
    def pending(self) -> bool:
        """Sent, but its answer (and so its task_id) never seen: a job may exist, and be paid for."""
        return self.task_id is None

    def spent(self, estimate: float) -> float:
        """Credits paid in this DAG run up to and including this record's job: its charge, or
        ``estimate`` when the charge is unknown (the answer was lost, and a job may exist)."""
        return self.paid_before + (estimate if self.credits_used is None else self.credits_used)

    @classmethod
    def accepted(
        cls,
        fingerprint: str,
        round: int,
        submitted: SubmitResult,
        submitted_at: float,
        paid_before: float,
        external_task_id: str | None = None,
    ) -> Submission:
        return cls(
            fingerprint=fingerprint,
            round=round,
            task_id=submitted.task_id,
            credits_used=submitted.credits_used,
            credits_remaining=submitted.credits_remaining,
            submitted_at=submitted_at,
            expected_seconds=submitted.estimated_seconds,
            external_task_id=external_task_id,
            paid_before=paid_before,
        )

    def to_json(self) -> dict[str, Any]:
        if self.pending:
            mark = {"pending": self.fingerprint, "round": self.round, "paid_before": self.paid_before}
            return mark | _external(self.external_task_id)
        return _external(self.external_task_id) | {
            "task_id": self.task_id,
            "fingerprint": self.fingerprint,
            "credits_used": self.credits_used,
            "credits_remaining": self.credits_remaining,
            "submitted_at": self.submitted_at,
            "expected_seconds": list(self.expected_seconds) if self.expected_seconds else None,
            "round": self.round,
            "paid_before": self.paid_before,
        }

    @classmethod
    def from_json(cls, stored: Any) -> Submission | None:
        """The record from what was stored; None for anything that is neither form."""
        if not isinstance(stored, dict):
            return None
        external = stored.get("external_task_id") if isinstance(stored.get("external_task_id"), str) else None
        if isinstance(stored.get("pending"), str):
            return cls(
                fingerprint=stored["pending"],
                round=stored.get("round"),
                external_task_id=external,
                paid_before=_paid(stored),
            )
        if not isinstance(stored.get("task_id"), str):
            return None
        expected = stored.get("expected_seconds")
        return cls(
            fingerprint=str(stored.get("fingerprint")),
            round=stored.get("round"),
            task_id=stored["task_id"],
            credits_used=stored.get("credits_used"),
            credits_remaining=stored.get("credits_remaining"),
            submitted_at=stored.get("submitted_at"),
            expected_seconds=(float(expected[0]), float(expected[-1])) if expected else None,
            external_task_id=external,
            paid_before=_paid(stored),
        )


def _paid(stored: dict[str, Any]) -> float:
    """``paid_before`` of a stored record: 0 in a record from a version that did not keep it."""
    paid = stored.get("paid_before")
    return paid if isinstance(paid, (int, float)) and not isinstance(paid, bool) else 0


def _external(external_task_id: str | None) -> dict[str, Any]:
    """The record's external id, kept only where there is one (earlier records have none)."""
    return {} if external_task_id is None else {"external_task_id": external_task_id}
