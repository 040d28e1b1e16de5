"""Reading the API's answers: typed, defensive, and clear when something is missing."""

from __future__ import annotations

import logging

import pytest

from airflow_provider_kling.core.api import (
    MAX_BODY_BYTES,
    RetryPolicy,
    read_status_response,
    read_submit_response,
)
from airflow_provider_kling.core.dialects.ulazai import (
    DIALECT,
    read_status_body,
    read_submit_body,
    vendor_state,
)
from airflow_provider_kling.core.errors import (
    KlingAPIError,
    KlingAuthError,
    KlingBadRequestError,
    KlingConnectionSettingError,
    KlingInsufficientCreditsError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingResponseError,
    KlingServerError,
    KlingSubmitUncertainError,
    KlingTransportError,
    created_no_job,
    error_from_response,
    is_safe_to_resubmit,
    is_transient,
)
from airflow_provider_kling.core.responses import (
    JobState,
    parse_estimated_time,
    read_json,
)

SUBMIT_BODY = {
    "success": True,
    "data": {
        "task_id": "uuid-here",
        "status": "processing",
        "credits_used": 55,
        "credits_remaining": 945,
        "estimated_time": "60-90 seconds",
        "message": "KLING 2.6 video generation started",
    },
}


def test_submit_answer_from_the_contract_is_read() -> None:
    result = read_submit_body(SUBMIT_BODY)
    assert (result.task_id, result.credits_used, result.credits_remaining) == ("uuid-here", 55, 945)
    assert result.estimated_seconds == (60, 90)


@pytest.mark.parametrize(
    ("announced", "seconds"),
    [
        ("60-90 seconds", (60, 90)),
        ("90 – 60 sec", (60, 90)),
        ("6-9 seconds", (6, 9)),
        ("0.6-0.9 seconds", (0.6, 0.9)),
        ("about 75 seconds", (75, 75)),
        ("1-2 minutes", (60, 120)),
        ("60 to 90 s", (60, 90)),
        ("v2.6: 60-90 seconds", (60, 90)),
        ("2 hours", (7200, 7200)),
    ],
)
def test_estimated_time_is_read_as_a_range_of_seconds(announced: str, seconds: tuple[float, float]) -> None:
    assert parse_estimated_time(announced) == pytest.approx(seconds)


@pytest.mark.parametrize("announced", [None, "", "soon", "0 seconds", "60-90", "10 hours"])
def test_estimated_time_without_a_plausible_duration_and_unit_is_not_read(announced: str | None) -> None:
    assert parse_estimated_time(announced) is None


def test_unknown_fields_are_kept_in_extra() -> None:
    body = {"data": {**SUBMIT_BODY["data"], "queue_position": 3}}
    assert read_submit_body(body).extra == {"queue_position": 3}


def test_submit_answer_without_task_id_is_a_clear_error() -> None:
    with pytest.raises(KlingResponseError, match="lacks a valid 'task_id'"):
        read_submit_body({"success": True, "data": {"status": "processing"}}, http_status=201)


def test_answer_without_data_object_is_a_clear_error() -> None:
    with pytest.raises(KlingResponseError, match="no 'data' object"):
        read_status_body({"success": True}, task_id="t")


def test_processing_status_carries_progress() -> None:
    status = read_status_body({"data": {"status": "processing", "progress": 45}}, task_id="t")
    assert (status.state, status.progress) == (JobState.RUNNING, 45)


def test_completed_status_carries_the_video() -> None:
    body = {
        "data": {
            "task_id": "t",
            "status": "completed",
            "video_url": "https://cdn/x.mp4",
            "duration": 5,
            "has_audio": True,
        }
    }
    status = read_status_body(body, task_id="t")
    assert (status.state, status.video_url, status.duration, status.has_audio) == (
        JobState.COMPLETED,
        "https://cdn/x.mp4",
        5,
        True,
    )


def test_completed_status_without_video_url_is_a_clear_error() -> None:
    with pytest.raises(KlingResponseError, match="'video_url'"):
        read_status_body({"data": {"status": "completed"}}, task_id="t")


@pytest.mark.parametrize("status", ["failed", "FAILED", "cancelled", "canceled", "expired", "error"])
def test_failed_and_its_kin_end_the_job(status: str) -> None:
    assert vendor_state(status) is JobState.FAILED


def test_unknown_status_is_still_running_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert vendor_state("warming_up") is JobState.RUNNING
    assert "warming_up" in caplog.text


def test_status_as_dict_is_json_ready() -> None:
    status = read_status_body({"data": {"status": "processing", "progress": 5}}, task_id="t")
    assert status.as_dict()["state"] == "running"


def test_non_json_body_is_quoted_readably() -> None:
    with pytest.raises(KlingResponseError, match=r"not JSON.*Service Unavailable"):
        read_json(b"<html><body>Service Unavailable</body></html>", what="status", http_status=200)


@pytest.mark.parametrize(
    ("http_status", "body", "error_class"),
    [
        (400, b'{"success": false, "error": "prompt is required"}', KlingBadRequestError),
        (400, b'{"success": false, "error": "Insufficient credits"}', KlingInsufficientCreditsError),
        (401, b'{"detail": "Invalid token"}', KlingAuthError),
        (403, b'{"message": "Forbidden"}', KlingAuthError),
        (402, b'{"error": {"message": "Not enough credits"}}', KlingInsufficientCreditsError),
        (404, b'{"error": "Task not found"}', KlingNotFoundError),
        (429, b'{"error": "Slow down"}', KlingRateLimitError),
        (500, b"", KlingServerError),
        (503, b"<html>busy</html>", KlingServerError),
        (418, b"teapot", KlingAPIError),
    ],
)
def test_http_errors_map_to_one_class_each(http_status: int, body: bytes, error_class: type) -> None:
    error = error_from_response(http_status, body)
    assert type(error) is error_class
    assert error.http_status == http_status


def test_error_keeps_the_server_message_and_task_id() -> None:
    error = error_from_response(404, b'{"success": false, "error": "Task not found"}', task_id="abc")
    assert (error.server_message, error.task_id) == ("Task not found", "abc")
    assert "abc" in str(error) and "Task not found" in str(error)


def test_html_error_page_becomes_short_readable_text() -> None:
    page = b"<html><head><title>502 Bad Gateway</title><style>body{}</style></head><body>" + b"x " * 2000
    error = error_from_response(502, page)
    assert "502 Bad Gateway" in str(error)
    assert "<" not in str(error) and "body{}" not in str(error)
    assert len(error.server_message or "") <= 300


def test_rate_limit_keeps_retry_after() -> None:
    error = error_from_response(429, b"{}", retry_after="7")
    assert isinstance(error, KlingRateLimitError) and error.retry_after == 7.0


def test_transient_errors_are_the_ones_worth_asking_again() -> None:
    assert is_transient(KlingServerError("x"))
    assert is_transient(KlingRateLimitError("x"))
    assert is_transient(KlingTransportError("x", request_sent=True))
    assert not is_transient(KlingAuthError("x"))
    assert not is_transient(KlingNotFoundError("x"))
    assert not is_transient(KlingInsufficientCreditsError("x"))


def test_submit_is_resent_only_when_no_job_can_exist() -> None:
    assert is_safe_to_resubmit(KlingRateLimitError("x", http_status=429))
    assert is_safe_to_resubmit(KlingTransportError("x", request_sent=False))
    assert not is_safe_to_resubmit(KlingTransportError("x", request_sent=True))
    assert not is_safe_to_resubmit(KlingServerError("x", http_status=503))
    assert not is_safe_to_resubmit(KlingSubmitUncertainError("x"))
    assert not is_safe_to_resubmit(KlingAuthError("x", http_status=401))  # no job, but no use either


def test_an_unusable_request_or_connection_created_no_job() -> None:
    assert created_no_job(KlingConnectionSettingError("bad extra"))
    assert created_no_job(KlingAuthError("the connection has no API key"))  # raised before sending


def test_retry_waits_as_long_as_retry_after_asks() -> None:
    assert RetryPolicy().delay(1, KlingRateLimitError("x", retry_after=7)) == 7


def test_retry_after_is_capped() -> None:
    assert RetryPolicy(max_retry_after=30).delay(1, KlingRateLimitError("x", retry_after=3600)) == 30


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(initial_wait=1, max_wait=8)
    waits = [policy.delay(attempt, KlingServerError("x")) for attempt in (1, 3, 10)]
    assert 1 <= waits[0] <= 2 and 4 <= waits[1] <= 5 and waits[2] == 8


def test_a_retried_call_is_attempted_at_most_the_policys_attempts() -> None:
    calls = []

    def failing() -> None:
        calls.append(1)
        raise KlingServerError("x")

    with pytest.raises(KlingServerError):
        RetryPolicy(attempts=3, initial_wait=0.001, max_wait=0.001).run(lambda error: True, failing)
    assert len(calls) == 3


def test_an_error_the_policy_is_not_told_to_retry_is_raised_at_once() -> None:
    calls = []

    def refused() -> None:
        calls.append(1)
        raise KlingAuthError("x")

    with pytest.raises(KlingAuthError):
        RetryPolicy(attempts=3).run(lambda error: False, refused)
    assert len(calls) == 1


def test_any_2xx_submit_answer_is_read_as_accepted() -> None:
    result = read_submit_response(DIALECT, 202, b'{"success": true, "data": {"task_id": "abc"}}', None)
    assert result.task_id == "abc"


@pytest.mark.parametrize("http_status", [301, 408, 409, 500, 502])
def test_a_submit_answer_that_does_not_refuse_the_request_may_hide_a_job(http_status: int) -> None:
    with pytest.raises(KlingSubmitUncertainError):
        read_submit_response(DIALECT, http_status, b"{}", None)


@pytest.mark.parametrize("http_status", [400, 401, 402, 403, 404, 422, 429])
def test_a_submit_refused_outright_created_no_job(http_status: int) -> None:
    with pytest.raises(KlingAPIError) as raised:
        read_submit_response(DIALECT, http_status, b"{}", None)
    assert created_no_job(raised.value)


def test_odd_numbers_in_a_submit_answer_do_not_lose_its_task_id() -> None:
    body = b'{"data": {"task_id": "abc", "credits_used": NaN, "credits_remaining": Infinity}}'
    result = read_submit_response(DIALECT, 201, body, None)
    assert (result.task_id, result.credits_used, result.credits_remaining) == ("abc", None, None)


def test_an_absurd_progress_is_ignored_not_a_crash() -> None:
    status = read_status_response(
        DIALECT, 200, b'{"data": {"status": "processing", "progress": 1e999}}', None, "t"
    )
    assert status.progress is None


def test_an_oversized_status_answer_is_a_clear_error() -> None:
    with pytest.raises(KlingResponseError, match="larger than"):
        read_status_response(DIALECT, 200, b" " * (MAX_BODY_BYTES + 1), None, "t")


@pytest.mark.parametrize("video_url", ["javascript:alert(1)", "file:///etc/passwd", "ftp://cdn/v.mp4", ""])
def test_a_completed_job_whose_video_url_is_not_http_is_a_clear_error(video_url: str) -> None:
    with pytest.raises(KlingResponseError, match="video_url"):
        read_status_body({"data": {"status": "completed", "video_url": video_url}}, task_id="t")


@pytest.mark.parametrize(
    "body",
    [b"", b"null", b"[]", b'"completed"', b'{"data": []}', b'{"data": {"status": 5}}', b"<html>ok</html>"],
)
def test_a_status_answer_of_the_wrong_shape_is_a_clear_error_never_a_key_error(body: bytes) -> None:
    with pytest.raises(KlingResponseError):
        read_status_response(DIALECT, 200, body, None, "t")
