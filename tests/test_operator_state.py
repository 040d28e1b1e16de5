"""What KlingGenerateOperator does with the submission it keeps in task_state_store, try after try.

These drive ``execute`` directly with a dict-backed store (the real one needs a running Airflow,
which test_operator.py and test_end_to_end.py use) and the emulator as the API.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import pytest
from airflow.providers.common.compat.sdk import AirflowFailException
from airflow.sdk import AssetAlias
from dag_runs import needs_task_state_store
from hook_setup import both_apis, connect, current_unit, one_slot_taken_for, only_on, quick_hook
from task_context import FakeStore, context_with, logged

from airflow_provider_kling.core.dialects.ulazai import PRICES, PROMPT_DIRECTORY_DISCOUNT
from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmitUncertainError,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.waiting import WaitOutcome, wait_event
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.operators.kling import (
    LEDGER_KEY,
    OPERATOR_DEFAULT_PROMPT_DIRECTORY_OPTIN,
    KlingGenerateOperator,
    KlingKeepVideoOperator,
)

pytestmark = both_apis

KEY = KlingGenerateOperator.external_id_key
#: What the operator's default request costs: 5 s, no sound, the prompt kept private.
DEFAULT_PRICE = PRICES[("5", False)]


def operator(prompt: str = "a fox", **kwargs: Any) -> KlingGenerateOperator:
    return KlingGenerateOperator(
        task_id="generate", prompt=prompt, poll_interval=0.1, deferrable=False, **kwargs
    )


def fingerprint(prompt: str = "a fox") -> str:
    """The fingerprint of the request operator(prompt) sends."""
    return GenerationRequest(
        prompt, prompt_directory_optin=OPERATOR_DEFAULT_PROMPT_DIRECTORY_OPTIN
    ).fingerprint()


@needs_task_state_store
@only_on("ulazai")  # its record of credits and no id
def test_the_submission_is_kept_with_its_fingerprint_and_credits(emulator: KlingEmulator) -> None:
    store = FakeStore()
    before = time.time()
    result = operator().execute(context_with(store, max_tries=3))
    assert store[KEY] == {
        "task_id": result["task_id"],
        "fingerprint": fingerprint(),
        "credits_used": DEFAULT_PRICE,
        "credits_remaining": 10_000 - DEFAULT_PRICE,
        "submitted_at": pytest.approx(before, abs=1),
        "expected_seconds": [1.0, 1.5],
        "round": 3,
        "paid_before": 0,
    }


@needs_task_state_store
def test_a_finished_job_is_reused_by_a_later_try(emulator: KlingEmulator) -> None:
    store = FakeStore()
    first = operator().execute(context_with(store))
    again = operator().execute(context_with(store, try_number=2))
    assert again == first
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
def test_changed_parameters_submit_a_new_job(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore()
    first = operator("a fox").execute(context_with(store))
    second = operator("a whale at sunset").execute(context_with(store, try_number=2))
    assert second["task_id"] != first["task_id"]
    assert store[KEY]["task_id"] == second["task_id"]
    assert "other parameters" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 2


@needs_task_state_store
@only_on("ulazai")  # its status words and fingerprint
def test_a_job_the_vendor_no_longer_knows_is_submitted_anew(emulator: KlingEmulator) -> None:
    store = FakeStore({KEY: {"task_id": "purged-long-ago", "fingerprint": fingerprint()}})
    result = operator().execute(context_with(store, try_number=2))
    assert result["status"] == "completed"
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
@only_on("ulazai")  # Kling's own API finds the job instead
def test_an_unconfirmed_submit_fails_the_retry_without_sending(emulator: KlingEmulator) -> None:
    store = FakeStore({KEY: {"pending": fingerprint()}})
    with pytest.raises(AirflowFailException, match="state-store/kling_submission"):
        operator().execute(context_with(store, try_number=2))
    assert emulator.stats()["requests"]["submit"] == 0


@needs_task_state_store
@only_on("ulazai")  # Kling's own API finds the job instead
def test_an_unconfirmed_submit_is_sent_again_when_told_to(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore({KEY: {"pending": fingerprint()}})
    operator(on_unconfirmed_submit="resubmit").execute(context_with(store, try_number=2))
    assert "may be paid twice" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
@only_on("ulazai")  # Kling's own API finds the job in the same try
def test_a_lost_answer_leaves_the_pending_mark_for_the_next_try(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    store = FakeStore()
    with pytest.raises(KlingSubmitUncertainError):
        operator(on_unconfirmed_submit="resubmit").execute(context_with(store))
    assert store[KEY] == {"pending": fingerprint(), "round": 0, "paid_before": 0}


@needs_task_state_store
@only_on("ulazai")  # its status words
def test_a_submit_refused_outright_clears_the_mark_so_a_retry_may_send_it(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "rate_limit", count=3, retry_after=0)
    store = FakeStore()
    with pytest.raises(KlingRateLimitError):
        operator().execute(context_with(store))
    assert KEY not in store
    result = operator().execute(context_with(store, try_number=2))
    assert result["status"] == "completed"
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
@only_on("ulazai")  # its status words
def test_an_unusable_connection_fails_before_marking_anything_sent(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, extra={"allowed_video_hosts": "10.0.0.0/33"})
    store = FakeStore()
    with pytest.raises(AirflowFailException, match="allowed_video_hosts"):
        operator().execute(context_with(store))
    assert KEY not in store  # no false "a job may exist" mark for the retry to fear
    assert emulator.stats()["requests"]["submit"] == 0
    connect(monkeypatch, emulator)  # the connection fixed, the task cleared
    assert operator().execute(context_with(store, try_number=2))["status"] == "completed"


@only_on("ulazai")  # Kling's own API's retry finds the job by its id
def test_without_a_store_a_retry_warns_that_it_pays_again(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    context = context_with(FakeStore(), try_number=2)
    context["task_state_store"] = None
    operator().execute(context)
    assert "paying again" in logged(capfd)


@only_on("ulazai")  # its prices
def test_over_budget_request_fails_before_sending(emulator: KlingEmulator) -> None:
    with pytest.raises(AirflowFailException, match=r"max_credits.*220 credits"):
        operator(duration=10, sound=True, prompt_directory_optin=False, max_credits=100).execute(
            context_with(FakeStore())
        )
    assert emulator.stats()["requests"]["submit"] == 0


def test_an_auth_error_seen_by_the_trigger_fails_the_task_without_retries() -> None:
    event = wait_event(WaitOutcome.ERROR, "t1", "Kling API refused the key", error=KlingAuthError("x"))
    with pytest.raises(AirflowFailException, match="refused the key"):
        operator().execute_complete(context_with(FakeStore()), event)


def test_an_outage_seen_by_the_trigger_leaves_the_task_to_its_retries() -> None:
    event = wait_event(WaitOutcome.ERROR, "t1", "API down", error=KlingRateLimitError("x"))
    with pytest.raises(KlingRateLimitError):
        operator().execute_complete(context_with(FakeStore()), event)


@pytest.mark.parametrize("poll_interval", [0, -1])
def test_poll_interval_must_be_positive(poll_interval: float) -> None:
    with pytest.raises(ValueError, match="poll_interval"):
        KlingGenerateOperator(task_id="generate", prompt="a", poll_interval=poll_interval)


@only_on("ulazai")  # its charge at the submit
def test_output_path_keeps_the_video_and_announces_it(emulator: KlingEmulator, tmp_path: Any) -> None:
    context = context_with(FakeStore())
    result = operator(output_path=f"file://{tmp_path}/clip.mp4").execute(context)
    events = context["outlet_events"][AssetAlias("kling_videos")]
    assert result["path"] == f"file://{tmp_path}/clip.mp4"
    assert result["sha256"] == hashlib.sha256((tmp_path / "clip.mp4").read_bytes()).hexdigest()
    [(uri, extra)] = events.added
    assert uri == f"file://{tmp_path}/clip.mp4"
    assert extra == {
        "task_id": result["task_id"],
        "duration": 5,
        "has_audio": False,
        "credits_used": DEFAULT_PRICE,
        "bytes": result["bytes"],
        "sha256": result["sha256"],
    }


def test_output_path_adds_the_default_asset_alias_outlet() -> None:
    assert AssetAlias("kling_videos") in operator(output_path="file:///videos/a.mp4").outlets
    assert operator().outlets == []


def test_a_finished_jobs_video_is_kept_later_without_submitting(
    emulator: KlingEmulator, tmp_path: Any
) -> None:
    generated = operator().execute(context_with(FakeStore()))
    context = context_with(FakeStore())
    kept = KlingKeepVideoOperator(
        task_id="publish", kling_task_id=generated["task_id"], output_path=f"file://{tmp_path}/take.mp4"
    ).execute(context)
    assert kept["task_id"] == generated["task_id"] and kept["path"] == f"file://{tmp_path}/take.mp4"
    assert kept["sha256"] == hashlib.sha256((tmp_path / "take.mp4").read_bytes()).hexdigest()
    [(uri, extra)] = context["outlet_events"][AssetAlias("kling_videos")].added
    assert uri == kept["path"] and extra["sha256"] == kept["sha256"]
    assert emulator.stats()["jobs_created"] == 1


def test_keeping_a_job_still_rendering_fails_the_try_so_a_retry_looks_again(
    emulator: KlingEmulator, tmp_path: Any
) -> None:
    running = operator(wait_for_completion=False).execute(context_with(FakeStore()))
    keep = KlingKeepVideoOperator(
        task_id="publish", kling_task_id=running, output_path=f"file://{tmp_path}/a.mp4"
    )
    with pytest.raises(KlingError, match="not finished"):
        keep.execute(context_with(FakeStore()))
    assert list(tmp_path.iterdir()) == []


def test_keeping_an_unknown_job_fails_without_retries(emulator: KlingEmulator, tmp_path: Any) -> None:
    keep = KlingKeepVideoOperator(
        task_id="publish", kling_task_id="no-such-job", output_path=f"file://{tmp_path}/a.mp4"
    )
    with pytest.raises(AirflowFailException, match="404"):
        keep.execute(context_with(FakeStore()))


@needs_task_state_store
def test_a_failed_download_is_retried_by_the_next_try_without_a_second_job(
    emulator: KlingEmulator, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FakeStore()
    emulator.inject("video", "server_error", count=3)
    first_try = operator(output_path=f"file://{tmp_path}/clip.mp4")
    first_try.hook = quick_hook()  # three quick tries, all refused
    with pytest.raises(KlingServerError):
        first_try.execute(context_with(store))
    assert list(tmp_path.iterdir()) == []
    result = operator(output_path=f"file://{tmp_path}/clip.mp4").execute(context_with(store, try_number=2))
    assert (tmp_path / "clip.mp4").stat().st_size == result["bytes"]
    assert emulator.stats()["jobs_created"] == 1


# -- Privacy by default: the Prompt Directory ---------------------------------------------------------


@only_on("ulazai")  # its Prompt Directory
def test_the_submit_log_says_the_prompt_is_not_shared_and_what_opting_in_would_save(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    operator().execute(context_with(FakeStore()))
    log = logged(capfd)
    assert f"estimated {DEFAULT_PRICE} credits" in log
    assert "not shared in the vendor's public Prompt Directory" in log
    assert f"save {PROMPT_DIRECTORY_DISCOUNT} credits" in log


@only_on("ulazai")  # its Prompt Directory
def test_an_opt_in_is_logged_as_published_with_its_discounted_estimate(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    operator(prompt_directory_optin=True).execute(context_with(FakeStore()))
    log = logged(capfd)
    assert f"estimated {DEFAULT_PRICE - PROMPT_DIRECTORY_DISCOUNT} credits" in log
    assert "will be published in the vendor's public Prompt Directory" in log
    [job] = emulator.jobs()
    assert job["request"]["prompt_directory_optin"] is True


# -- regenerate: a fresh take after a clear, never a second payment on a retry ------------------------
# A round is one run of the task instance between clears: Airflow sets max_tries = try_number +
# retries on every clear. Here retries=0, so try 1 runs with max_tries 0 and, once cleared, try 2
# runs with max_tries 1; with retries=2, tries 1 and 2 of one round both run with max_tries 2.


@needs_task_state_store
def test_regenerate_after_a_clear_submits_a_new_job(
    emulator: KlingEmulator, capfd: pytest.CaptureFixture[str]
) -> None:
    store = FakeStore()
    first = operator(regenerate=True).execute(context_with(store, try_number=1, max_tries=0))
    second = operator(regenerate=True).execute(context_with(store, try_number=2, max_tries=1))
    assert second["task_id"] != first["task_id"]
    assert store[KEY]["task_id"] == second["task_id"] and store[KEY]["round"] == 1
    assert f"regenerate=True: not reusing Kling job {first['task_id']}" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 2


@needs_task_state_store
def test_regenerate_on_a_retry_within_the_round_reattaches_to_the_job_paid_for(
    emulator: KlingEmulator,
) -> None:
    store = FakeStore()
    first = operator(regenerate=True, retries=2).execute(context_with(store, try_number=1, max_tries=2))
    again = operator(regenerate=True, retries=2).execute(context_with(store, try_number=2, max_tries=2))
    assert again == first
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
@only_on("ulazai")  # unconfirmed submits
def test_regenerate_keeps_a_retry_from_resending_an_unconfirmed_submit_of_its_round(
    emulator: KlingEmulator,
) -> None:
    store = FakeStore({KEY: {"pending": fingerprint(), "round": 2}})
    with pytest.raises(AirflowFailException, match="state-store/kling_submission"):
        operator(regenerate=True, retries=2).execute(context_with(store, try_number=2, max_tries=2))
    assert emulator.stats()["requests"]["submit"] == 0


@needs_task_state_store
@only_on("ulazai")  # its fingerprint
def test_regenerate_after_a_clear_submits_even_where_an_earlier_round_lost_its_answer(
    emulator: KlingEmulator,
) -> None:
    store = FakeStore({KEY: {"pending": fingerprint(), "round": 0}})
    result = operator(regenerate=True).execute(context_with(store, try_number=2, max_tries=1))
    assert result["status"] == "completed"
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
def test_without_regenerate_a_cleared_task_reuses_its_paid_video(emulator: KlingEmulator) -> None:
    store = FakeStore()
    first = operator().execute(context_with(store, try_number=1, max_tries=0))
    again = operator().execute(context_with(store, try_number=2, max_tries=1))
    assert again == first
    assert emulator.stats()["jobs_created"] == 1


@pytest.mark.parametrize("value", ["maybe", "2", 1, None])
def test_a_regenerate_value_that_is_not_a_flag_fails_before_anything_is_sent(
    emulator: KlingEmulator, value: Any
) -> None:
    store = FakeStore()
    with pytest.raises(AirflowFailException, match=rf"regenerate: must be true or false.*\(got {value!r}\)"):
        operator(regenerate=value).execute(context_with(store))
    assert store == {}
    assert emulator.stats()["requests"]["submit"] == 0


@needs_task_state_store
@pytest.mark.parametrize(
    ("param", "jobs"), [(True, 2), ("True", 2), ("yes", 2), (False, 1), ("false", 1), ("", 1)]
)
def test_a_templated_regenerate_is_read_as_a_flag(emulator: KlingEmulator, param: Any, jobs: int) -> None:
    store = FakeStore()
    operator().execute(context_with(store, try_number=1, max_tries=0))
    cleared = operator(regenerate="{{ params.regenerate }}")
    cleared.render_template_fields({"params": {"regenerate": param}})
    assert isinstance(cleared.regenerate, str)
    cleared.execute(context_with(store, try_number=2, max_tries=1))
    assert emulator.stats()["jobs_created"] == jobs


@needs_task_state_store
@only_on("ulazai")  # its hostile server speaks UlazAI's API
def test_a_reattach_read_ends_within_the_operators_timeout(
    serve: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostile_servers import STATUS_PROCESSING, Trickle

    from airflow_provider_kling.core.errors import KlingTimeoutError

    trickle = Trickle(STATUS_PROCESSING * 10)  # about 50 s of status answer, a byte at a time
    monkeypatch.setenv(
        "AIRFLOW_CONN_KLING_DEFAULT",
        f'{{"conn_type": "kling", "host": "{serve(trickle).url}", "password": "sk-test-key"}}',
    )
    store = FakeStore({KEY: {"task_id": "paid-job", "fingerprint": fingerprint(), "round": 0}})
    with pytest.raises(KlingTimeoutError, match="budget"):
        operator(timeout=1.0).execute(context_with(store, try_number=2))
    assert trickle.sent < len(STATUS_PROCESSING * 10)


# -- The DAG run's credit limit: each generation's entry in the run's ledger (XCom kling_credits) ----


def entry(
    spent: float = 0, pending: float = 0, sending: bool = False, unit: str | None = None
) -> dict[str, Any]:
    """A ledger entry as stored, in the unit of the test's API unless another is named."""
    return {"spent": spent, "pending": pending, "sending": sending, "unit": unit or current_unit()}


@only_on("ulazai")  # its prices
def test_a_generation_past_the_runs_credit_limit_is_refused_before_sending(emulator: KlingEmulator) -> None:
    context = context_with(FakeStore())
    context["ti"].others = [entry(spent=200), entry(spent=0, pending=55, sending=True)]
    with pytest.raises(AirflowFailException) as refused:
        operator(run_credit_limit=300).execute(context)
    message = str(refused.value)
    assert "spent 255 credits" in message and "limit of 300" in message and "estimate of 55" in message
    assert emulator.stats()["requests"]["submit"] == 0
    assert context["ti"].xcoms[LEDGER_KEY] == entry(), "the refused reservation was not withdrawn"


@only_on("ulazai")  # its prices
def test_a_generation_under_the_limit_records_its_charge_in_the_runs_ledger(emulator: KlingEmulator) -> None:
    context = context_with(FakeStore())
    context["ti"].others = [entry(spent=190)]
    operator(run_credit_limit=300).execute(context)
    assert context["ti"].xcoms[LEDGER_KEY] == entry(spent=DEFAULT_PRICE)


def test_a_submit_refused_outright_withdraws_its_reservation(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "rate_limit", count=3, retry_after=0)
    context = context_with(FakeStore())
    with pytest.raises(KlingRateLimitError):
        operator(run_credit_limit=300).execute(context)
    assert context["ti"].xcoms[LEDGER_KEY] == entry()


@needs_task_state_store
def test_a_resubmit_refused_outright_leaves_only_the_earlier_jobs_charge(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "rate_limit", count=3, retry_after=0)
    store = FakeStore(
        {KEY: {"task_id": "gone", "fingerprint": fingerprint(), "credits_used": 55, "round": 0}}
    )
    context = context_with(store, try_number=2)
    with pytest.raises(KlingRateLimitError):
        operator(run_credit_limit=300).execute(context)
    assert context["ti"].xcoms[LEDGER_KEY] == entry(spent=55)


@needs_task_state_store
@only_on("ulazai")  # its charge at the submit
def test_a_retry_that_reattaches_puts_its_paid_job_back_in_the_cleared_ledger(
    emulator: KlingEmulator,
) -> None:
    store = FakeStore()
    operator(run_credit_limit=300).execute(context_with(store))
    retry = context_with(store, try_number=2)  # Airflow cleared the task instance's XComs
    operator(run_credit_limit=300).execute(retry)
    assert retry["ti"].xcoms[LEDGER_KEY] == entry(spent=DEFAULT_PRICE)
    assert emulator.stats()["jobs_created"] == 1


@needs_task_state_store
@only_on("ulazai")  # its prices
def test_a_new_job_after_a_vanished_one_counts_both_in_the_runs_spend(emulator: KlingEmulator) -> None:
    # The API does not say a lost or failed job's credits are refunded: the run keeps counting them.
    store = FakeStore(
        {KEY: {"task_id": "gone", "fingerprint": fingerprint(), "credits_used": 55, "round": 0}}
    )
    context = context_with(store, try_number=2)
    operator(run_credit_limit=300).execute(context)
    assert context["ti"].xcoms[LEDGER_KEY] == entry(spent=55 + DEFAULT_PRICE)
    assert store[KEY]["paid_before"] == 55


@only_on("ulazai")  # its prices
def test_without_task_state_store_each_earlier_try_counts_as_paid(emulator: KlingEmulator) -> None:
    # Nothing remembers what earlier tries paid (their XComs were cleared): each may have paid a job.
    context = context_with(None, try_number=3)
    context["ti"].others = [entry(spent=150)]
    with pytest.raises(AirflowFailException, match="spent 260 credits"):
        operator(run_credit_limit=300).execute(context)
    assert emulator.stats()["requests"]["submit"] == 0
    assert context["ti"].xcoms[LEDGER_KEY] == entry(spent=2 * DEFAULT_PRICE)


@pytest.mark.parametrize("limit", [-1, "300", True, float("nan"), float("inf")])
def test_a_run_credit_limit_that_is_not_a_number_of_credits_fails_the_dag(limit: Any) -> None:
    with pytest.raises(ValueError, match="run_credit_limit must be a number of credits"):
        operator(run_credit_limit=limit)


# -- Kling's own API: every submit's external_task_id finds what a lost answer hid -------------------


@only_on("klingai")
@needs_task_state_store
def test_the_submission_is_kept_with_its_external_task_id_and_the_charge_comes_at_the_end(
    emulator: KlingEmulator,
) -> None:
    store = FakeStore()
    result = operator().execute(context_with(store, max_tries=3))
    [job] = emulator.jobs()
    assert store[KEY]["task_id"] == result["task_id"] == job["task_id"]
    assert store[KEY]["external_task_id"] == job["external_task_id"]
    assert store[KEY]["credits_used"] is None and result["credits_used"] == 1.5


@only_on("klingai")
def test_a_lost_answer_is_found_by_its_external_task_id_in_the_same_try(emulator: KlingEmulator) -> None:
    emulator.inject("submit", "timeout_after_create", count=1, delay=0.1)
    result = operator().execute(context_with(FakeStore()))
    [job] = emulator.jobs()
    assert result["task_id"] == job["task_id"]


@only_on("klingai")
@needs_task_state_store
def test_a_retry_after_a_try_killed_mid_submit_reattaches_to_the_job_its_mark_names(
    emulator: KlingEmulator,
) -> None:
    request = GenerationRequest("a fox")
    job = quick_hook().submit(request, external_task_id="airflow-a-killed-try")  # the killed try's
    mark = {"pending": request.fingerprint(), "round": 0, "external_task_id": "airflow-a-killed-try"}
    result = operator().execute(context_with(FakeStore({KEY: mark}), try_number=2))
    assert result["task_id"] == job.task_id
    assert emulator.stats()["jobs_created"] == 1


@only_on("klingai")
def test_without_a_store_a_retry_finds_the_job_its_first_try_made(emulator: KlingEmulator) -> None:
    first = operator(wait_for_completion=False).execute(context_with(None, try_number=1))
    again = operator().execute(context_with(None, try_number=2))
    assert again["task_id"] == first
    assert emulator.stats()["jobs_created"] == 1


@only_on("klingai")
def test_a_failed_job_found_by_its_id_makes_the_take_go_on_under_the_next_id(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator = kling_emulator_factory(api="klingai", job_failure_rate=1.0)
    connect(monkeypatch, emulator)
    for try_number in (1, 2):  # no store: the retry derives the first try's id again
        with pytest.raises(KlingError, match="failed"):
            operator().execute(context_with(None, try_number=try_number))
    first, second = emulator.jobs()
    assert first["external_task_id"] != second["external_task_id"]
    assert f"Kling job {first['task_id']}, found by external_task_id" in logged(capfd)


@only_on("klingai")
def test_a_run_credit_limit_counts_units_on_kling_s_own_api(emulator: KlingEmulator) -> None:
    context = context_with(FakeStore())
    # UlazAI's credits in the same run do not count against a limit in units: they do not add up.
    context["ti"].others = [entry(spent=1.5, unit="units"), entry(spent=55, unit="credits")]
    with pytest.raises(AirflowFailException) as refused:
        operator(run_credit_limit=2.5).execute(context)
    assert "spent 1.5 units" in str(refused.value) and "estimate of 1.5 units" in str(refused.value)
    assert emulator.stats()["requests"]["submit"] == 0


@only_on("klingai")
def test_max_credits_counts_units_on_kling_s_own_api(emulator: KlingEmulator) -> None:
    with pytest.raises(
        AirflowFailException, match=r"max_credits: is below this request's estimated cost of 5 units"
    ):
        operator(mode="pro", sound=True, max_credits=2).execute(context_with(FakeStore()))
    assert emulator.stats()["requests"]["submit"] == 0


@only_on("klingai")
def test_a_field_kling_s_own_api_lacks_fails_the_task_before_sending(emulator: KlingEmulator) -> None:
    with pytest.raises(AirflowFailException, match="prompt_directory_optin: is not part of Kling's own API"):
        operator(prompt_directory_optin=True).execute(context_with(FakeStore()))
    assert emulator.stats()["requests"]["submit"] == 0


@only_on("klingai")
def test_a_full_concurrency_limit_holds_the_submit_back_until_a_running_job_ends(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    with one_slot_taken_for(3.0, kling_emulator_factory, monkeypatch) as emulator:
        result = operator().execute(context_with(FakeStore()))
    assert result["status"] == "succeed"
    assert "Submitting again in 0.5 s" in logged(capfd)
    assert emulator.stats()["jobs_created"] == 2
    assert emulator.stats()["responses"]["submit"]["429"] >= 3  # refused while the slot was taken


def test_a_failed_job_costs_nothing_in_the_runs_ledger_where_failed_jobs_are_not_charged(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch, api: str
) -> None:
    emulator = kling_emulator_factory(api=api, job_failure_rate=1.0)
    connect(monkeypatch, emulator)
    context = context_with(FakeStore())
    with pytest.raises(KlingError, match="failed"):
        operator(run_credit_limit=500).execute(context)
    # Kling's own API charges only jobs that succeed; UlazAI's says nothing of refunds: counted.
    assert context["ti"].xcoms[LEDGER_KEY] == entry(spent={"ulazai": DEFAULT_PRICE, "klingai": 0}[api])
