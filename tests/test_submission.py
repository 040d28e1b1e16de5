"""The operator's stored record: one typed form, and the JSON form Airflow keeps (and kept before)."""

from __future__ import annotations

from airflow_provider_kling.core.dialects.ulazai import read_submit_body
from airflow_provider_kling.core.submission import Submission


def test_a_mark_of_a_sent_request_is_pending_and_keeps_its_json_form() -> None:
    sent = Submission(fingerprint="f" * 64, round=2, paid_before=55)
    assert sent.pending and sent.to_json() == {"pending": "f" * 64, "round": 2, "paid_before": 55}
    assert Submission.from_json(sent.to_json()) == sent


def test_an_accepted_job_round_trips_through_its_json_form() -> None:
    submitted = read_submit_body(
        {
            "data": {
                "task_id": "abc",
                "credits_used": 55,
                "credits_remaining": 945,
                "estimated_time": "60-90 s",
            }
        }
    )
    job = Submission.accepted("f" * 64, 0, submitted, submitted_at=1_000.0, paid_before=110)
    assert not job.pending and job.expected_seconds == (60.0, 90.0)
    assert Submission.from_json(job.to_json()) == job


def test_a_record_stored_by_an_earlier_version_is_read() -> None:
    stored = {"task_id": "abc", "fingerprint": "f", "credits_used": 45, "expected_seconds": [6, 9]}
    job = Submission.from_json(stored)
    assert (
        job is not None
        and job.task_id == "abc"
        and job.round is None
        and job.expected_seconds == (6.0, 9.0)
        and job.paid_before == 0
    )


def test_a_job_has_spent_what_was_paid_before_and_its_charge() -> None:
    job = Submission(fingerprint="f", task_id="abc", credits_used=45, paid_before=110)
    assert job.spent(estimate=55) == 155


def test_a_sent_request_whose_answer_was_lost_counts_its_estimate_as_spent() -> None:
    assert Submission(fingerprint="f", paid_before=110).spent(estimate=55) == 165


def test_anything_else_is_no_record() -> None:
    assert Submission.from_json(None) is None
    assert Submission.from_json({"something": "else"}) is None
    assert Submission.from_json("abc") is None
