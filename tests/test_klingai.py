"""Kling's own API (``api="klingai"``): its tokens, its rules and prices, its codes, and a submit
that is found again by its ``external_task_id`` instead of being paid twice.

The contract is ``../shared/klingai-api.md``; the emulator speaks it with ``api="klingai"``.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
import requests
from hook_setup import QUICK_RETRIES, ROOMY_BUDGETS, connect, quick_hook

from airflow_provider_kling.core.api import Budgets, RetryPolicy
from airflow_provider_kling.core.dialects import klingai
from airflow_provider_kling.core.dialects.klingai import DIALECT, KeyPair, check_token, make_token
from airflow_provider_kling.core.errors import (
    KlingAccountError,
    KlingAuthError,
    KlingBadRequestError,
    KlingConcurrencyLimitError,
    KlingConnectionSettingError,
    KlingInsufficientCreditsError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingServerError,
    KlingSubmitUncertainError,
    KlingValidationError,
    created_no_job,
    is_safe_to_resubmit,
)
from airflow_provider_kling.core.request import GenerationMode, GenerationRequest
from airflow_provider_kling.core.responses import JobState
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.emulator.config import FaultKind

ACCESS_KEY, SECRET_KEY = "ak-test", "sk-test/Secret+Key=42"
IMAGE, TAIL = "https://images.example.com/start.png", "https://images.example.com/end.png"


def claims_of(token: str) -> dict[str, Any]:
    part = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def request(prompt: str = "a red fox in the snow", **fields: Any) -> GenerationRequest:
    return GenerationRequest(prompt, api="klingai", **fields)


def broken(**fields: Any) -> dict[str, str]:
    """The fields a klingai request with ``fields`` breaks, and their rules."""
    with pytest.raises(KlingValidationError) as refused:
        request(**fields)
    return {error.field: error.rule for error in refused.value.errors}


# -- Tokens ------------------------------------------------------------------------------------------


def test_a_token_carries_the_access_key_and_the_documented_validity() -> None:
    token = make_token(ACCESS_KEY, SECRET_KEY, now=1_000_000)
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "HS256", "typ": "JWT"}
    assert claims_of(token) == {"iss": ACCESS_KEY, "exp": 1_001_800, "nbf": 999_995}
    assert SECRET_KEY not in token


def test_a_token_is_checked_against_the_secret_key_and_its_validity() -> None:
    token = make_token(ACCESS_KEY, SECRET_KEY, now=1_000_000)
    secret_of = {ACCESS_KEY: SECRET_KEY}.get
    assert check_token(token, secret_of, now=1_000_100) == (ACCESS_KEY, 0)
    assert check_token(token, {ACCESS_KEY: "another secret"}.get, now=1_000_100)[1] == klingai.TOKEN_INVALID
    assert check_token(token, secret_of, now=1_001_800)[1] == klingai.TOKEN_EXPIRED
    assert check_token(token, secret_of, now=999_990)[1] == klingai.TOKEN_NOT_YET_VALID
    assert check_token("", secret_of, now=1_000_100)[1] == klingai.TOKEN_MISSING
    assert check_token("not.a.token", secret_of, now=1_000_100)[1] == klingai.TOKEN_INVALID


def test_a_token_is_reused_until_shortly_before_it_expires() -> None:
    now = [1_000_000.0]
    keys = KeyPair(ACCESS_KEY, SECRET_KEY, clock=lambda: now[0])
    first = keys.headers()["Authorization"]
    now[0] += klingai.TOKEN_SECONDS - klingai.TOKEN_RENEW_MARGIN - 1
    assert keys.headers()["Authorization"] == first
    now[0] += 1
    assert keys.headers()["Authorization"] != first


def test_a_renewed_token_is_new_and_every_token_made_counts_as_a_secret() -> None:
    keys = KeyPair(ACCESS_KEY, SECRET_KEY, clock=iter(range(1_000_000, 2_000_000, 10)).__next__)
    first = keys.headers()["Authorization"].removeprefix("Bearer ")
    keys.renew()
    second = keys.headers()["Authorization"].removeprefix("Bearer ")
    assert first != second
    assert set(keys.secrets()) == {SECRET_KEY, first, second}
    assert SECRET_KEY not in repr(keys)


# -- The request's rules and price ----------------------------------------------------------------


def test_the_defaults_are_kling_v2_6_in_standard_mode_without_sound() -> None:
    payload = request().to_payload()
    assert payload == {
        "model_name": "kling-v2-6",
        "mode": "std",
        "prompt": "a red fox in the snow",
        "duration": "5",
        "sound": "off",
        "aspect_ratio": "16:9",
    }


def test_image_to_video_sends_the_start_and_end_frames_and_no_aspect_ratio() -> None:
    payload = request(image_urls=[IMAGE], image_tail_url=TAIL, mode="pro").to_payload()
    assert payload["image"] == IMAGE and payload["image_tail"] == TAIL
    assert "aspect_ratio" not in payload
    assert DIALECT.submit_path(request(image_urls=[IMAGE])) == "/v1/videos/image2video"
    assert DIALECT.submit_path(request()) == "/v1/videos/text2video"


@pytest.mark.parametrize(
    ("fields", "units"),
    [
        ({}, 1.5),
        ({"duration": 10}, 3.0),
        ({"mode": "pro"}, 2.5),
        ({"mode": "pro", "duration": 10}, 5.0),
        ({"mode": "pro", "sound": True}, 5.0),
        ({"mode": "pro", "sound": True, "duration": 10}, 10.0),
        ({"model_name": "kling-v2-5-turbo", "mode": "pro"}, 2.5),
    ],
)
def test_the_estimate_is_the_documented_price_in_units(fields: dict[str, Any], units: float) -> None:
    assert request(**fields).estimated_credits == units


def test_sound_is_sent_as_on_and_only_with_kling_v2_6_in_pro_mode() -> None:
    assert request(mode="pro", sound=True).to_payload()["sound"] == "on"
    assert broken(sound=True) == {"sound": "is only for pro mode of kling-v2-6"}
    assert broken(model_name="kling-v2-5-turbo", mode="pro", sound=True) == {
        "sound": "is not supported by kling-v2-5-turbo"
    }


def test_cfg_scale_is_refused_for_the_v2_models() -> None:
    assert broken(cfg_scale=0.5) == {"cfg_scale": "is not supported by kling-v2-6; leave it unset"}


@pytest.mark.parametrize(
    "camera",
    [
        {"type": "simple", "config": {"zoom": 5}},
        {"type": "simple", "config": {"pan": -10, "tilt": 0}},
        {"type": "forward_up"},
    ],
)
def test_a_camera_control_with_one_axis_or_a_preset_is_sent_as_given(camera: dict[str, Any]) -> None:
    assert request(camera_control=camera).to_payload()["camera_control"] == camera


@pytest.mark.parametrize(
    "camera",
    [
        {"type": "simple", "config": {"zoom": 5, "pan": 1}},
        {"type": "simple", "config": {"zoom": 0}},
        {"type": "simple", "config": {"zoom": 11}},
        {"type": "simple", "config": {"spin": 1}},
        {"type": "forward_up", "config": {"zoom": 1}},
        {"type": "barrel_roll"},
        "zoom",
    ],
)
def test_a_camera_control_without_exactly_one_axis_in_range_is_refused(camera: Any) -> None:
    assert set(broken(camera_control=camera)) == {"camera_control"}


def test_an_end_frame_is_refused_with_a_camera_control_in_standard_mode_or_with_sound() -> None:
    camera = {"type": "simple", "config": {"zoom": 5}}
    assert set(broken(image_urls=[IMAGE], image_tail_url=TAIL, camera_control=camera, mode="pro")) == {
        "camera_control"
    }
    assert set(broken(image_urls=[IMAGE], image_tail_url=TAIL)) == {"image_tail_url"}
    assert set(broken(image_urls=[IMAGE], image_tail_url=TAIL, mode="pro", sound=True)) == {"image_tail_url"}
    assert set(broken(image_tail_url=TAIL, mode="pro")) == {"image_tail_url"}


def test_prompts_may_be_2500_characters_on_klingai_and_2000_on_ulazai() -> None:
    assert request("x" * 2500).prompt == "x" * 2500
    assert set(broken(prompt="x" * 2501, negative_prompt="y" * 2501)) == {"prompt", "negative_prompt"}
    with pytest.raises(KlingValidationError, match="at most 2000 characters"):
        GenerationRequest("x" * 2001, api="ulazai")


def test_a_field_one_api_lacks_is_an_error_on_it_naming_the_field() -> None:
    assert set(broken(prompt_directory_optin=True)) == {"prompt_directory_optin"}
    with pytest.raises(KlingValidationError) as refused:
        GenerationRequest("a fox", negative_prompt="blur", mode="pro", image_tail_url=TAIL)
    assert {error.field for error in refused.value.errors} == {"negative_prompt", "mode", "image_tail_url"}


def test_every_broken_rule_is_named_at_once() -> None:
    assert set(broken(model_name="kling-v9", mode="ultra", duration=7, aspect_ratio="4:3")) == {
        "model_name",
        "mode",
        "duration",
        "aspect_ratio",
    }


def test_the_emulator_reads_a_body_back_into_the_same_request() -> None:
    sent = request(image_urls=[IMAGE], image_tail_url=TAIL, mode="pro", negative_prompt="blur")
    assert DIALECT.from_payload(sent.to_payload(), GenerationMode.IMAGE_TO_VIDEO) == sent


# -- The answers' codes ---------------------------------------------------------------------------


def answer(code: int, message: str = "said") -> bytes:
    return json.dumps({"code": code, "message": message, "request_id": "r", "data": None}).encode()


@pytest.mark.parametrize(
    ("http_status", "code", "kind", "no_job", "retried"),
    [
        (401, 1002, KlingAuthError, True, False),
        (401, 1004, KlingAuthError, True, False),
        (403, 1103, KlingAuthError, True, False),
        (429, 1100, KlingAccountError, True, False),
        (429, 1101, KlingInsufficientCreditsError, True, False),
        (429, 1102, KlingInsufficientCreditsError, True, False),
        (429, 1304, KlingAccountError, True, False),
        (400, 1201, KlingBadRequestError, True, False),
        (400, 1301, KlingBadRequestError, True, False),
        (429, 1302, KlingRateLimitError, True, True),
        (429, 1303, KlingConcurrencyLimitError, True, True),
        (500, 5000, KlingServerError, False, False),
        (503, 5001, KlingServerError, False, False),
    ],
)
def test_each_code_is_the_error_it_documents_and_a_submit_knows_what_it_proves(
    http_status: int, code: int, kind: type, no_job: bool, retried: bool
) -> None:
    error = DIALECT.error_from_response(http_status, answer(code))
    assert type(error) is kind and error.vendor_code == code and str(code) in str(error)
    assert created_no_job(error) is no_job
    assert is_safe_to_resubmit(error) is retried


def test_an_account_error_says_what_to_do() -> None:
    assert "IP allow-list" in str(DIALECT.error_from_response(429, answer(1304)))
    assert "Top up" in str(DIALECT.error_from_response(429, answer(1102)))


def test_a_concurrency_refusal_waits_for_a_running_job_to_end() -> None:
    error = DIALECT.error_from_response(429, answer(1303))
    assert isinstance(error, KlingConcurrencyLimitError)
    assert error.retry_after == KlingConcurrencyLimitError.DEFAULT_WAIT == 30


def test_an_unknown_task_on_a_query_is_not_found() -> None:
    assert isinstance(DIALECT.error_from_response(404, answer(1203), task_id="t"), KlingNotFoundError)


def test_a_proxy_page_is_read_by_its_http_status() -> None:
    error = DIALECT.error_from_response(502, b"<html><h1>502 Bad Gateway</h1></html>")
    assert isinstance(error, KlingServerError) and error.vendor_code is None


# -- The hook against the emulator ----------------------------------------------------------------


@pytest.fixture
def emulator(kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch) -> KlingEmulator:
    started: KlingEmulator = kling_emulator_factory(api="klingai")
    connect(monkeypatch, started)
    return started


def wait_for_end(hook: Any, task_id: str, mode: GenerationMode | None = None) -> Any:
    for _ in range(200):
        status = hook.get_status(task_id, generation_mode=mode)
        if status.state is not JobState.RUNNING:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{task_id} never ended")


def test_a_generation_runs_through_and_reports_its_charge(emulator: KlingEmulator) -> None:
    hook = quick_hook()
    submitted = hook.submit(request(mode="pro"))
    assert submitted.credits_used is None  # the create answer carries no charge
    status = wait_for_end(hook, submitted.task_id, GenerationMode.TEXT_TO_VIDEO)
    assert status.state is JobState.COMPLETED and status.status == "succeed"
    assert status.charged == 2.5 and status.duration == 5
    assert requests.get(str(status.video_url), timeout=10).content[4:8] == b"ftyp"


def test_an_image_job_is_found_without_its_mode_by_asking_each_path(emulator: KlingEmulator) -> None:
    hook = quick_hook()
    task_id = hook.submit(request(image_urls=[IMAGE])).task_id
    assert hook.get_status(task_id).task_id == task_id


def test_the_secret_key_is_never_sent_and_tokens_are_reused(emulator: KlingEmulator) -> None:
    hook = quick_hook()
    task_id = hook.submit(request()).task_id
    for _ in range(3):
        hook.get_status(task_id, generation_mode=GenerationMode.TEXT_TO_VIDEO)
    sent = hook._settings.credentials.secrets()
    assert len(sent) == 2  # the Secret Key, and the one token made for all four requests


def test_an_expired_token_is_renewed_once_and_the_call_goes_through(emulator: KlingEmulator) -> None:
    hook = quick_hook()
    task_id = hook.submit(request()).task_id
    keys = hook._settings.credentials
    stale = iter([time.time() - 4000.0])
    keys._clock = lambda: next(stale, None) or time.time()
    keys.renew()
    assert hook.get_status(task_id, generation_mode=GenerationMode.TEXT_TO_VIDEO).task_id == task_id
    assert emulator.stats()["responses"]["status"] == {"200": 1, "401": 1}


def test_a_wrong_secret_key_fails_the_connection_test_naming_the_keys_and_hiding_the_secret(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, emulator, api_key="sk-wrong/Secret+Key=99")
    ok, message = quick_hook().test_connection()
    assert not ok and "Access Key" in message and "Secret Key" in message
    assert "sk-wrong" not in message


def test_the_connection_test_passes_and_spends_nothing(emulator: KlingEmulator) -> None:
    ok, message = quick_hook().test_connection()
    assert ok, message
    assert emulator.stats()["jobs_created"] == 0


def test_a_klingai_connection_without_an_access_key_is_a_clear_error(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connection = {
        "conn_type": "kling",
        "host": emulator.base_url,
        "password": "s",
        "extra": {"api": "klingai"},
    }
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", json.dumps(connection))
    with pytest.raises(KlingAuthError, match="no Access Key: set it as the connection's login"):
        quick_hook().submit(request())


def test_an_unknown_api_in_the_connection_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    connection = {"conn_type": "kling", "password": "k", "extra": {"api": "fal"}}
    monkeypatch.setenv("AIRFLOW_CONN_KLING_DEFAULT", json.dumps(connection))
    with pytest.raises(KlingConnectionSettingError, match="api='fal': it must be one of ulazai, klingai"):
        quick_hook().base_url  # noqa: B018


def test_a_request_for_the_other_api_is_refused_before_sending(emulator: KlingEmulator) -> None:
    with pytest.raises(KlingConnectionSettingError, match="speaks api='klingai'"):
        quick_hook().submit(GenerationRequest("a fox"))
    assert emulator.stats()["requests"]["submit"] == 0


def test_a_full_concurrency_limit_creates_nothing(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = kling_emulator_factory(api="klingai", concurrency=1)
    connect(monkeypatch, emulator)
    emulator.hold(1)
    # Its tries as a submit's, but the 30 s wait for a running job to end in hundredths of a second.
    hook = quick_hook(retries=RetryPolicy(attempts=3, initial_wait=0.01, max_wait=0.02, max_retry_after=0.01))
    hook.submit(request())
    with pytest.raises(KlingConcurrencyLimitError):
        hook.submit(request("a second fox"))
    assert emulator.stats()["jobs_created"] == 1
    assert emulator.stats()["responses"]["submit"] == {"200": 1, "429": 3}  # waited and tried again


# -- Exactly once, through external_task_id -------------------------------------------------------


def test_a_create_whose_answer_is_lost_is_found_by_its_external_task_id(emulator: KlingEmulator) -> None:
    emulator.inject("submit", FaultKind.TIMEOUT_AFTER_CREATE, delay=5.0)
    hook = quick_hook(budgets=Budgets(connect=2.0, read=20.0, request=1.0, call=30.0, download=30.0))
    submitted = hook.submit(request(), external_task_id="take-1")
    [job] = emulator.jobs()
    assert submitted.task_id == job["task_id"] and job["external_task_id"] == "take-1"
    assert submitted.extra["found_by_external_task_id"] == "take-1"


def test_a_retry_of_a_created_job_is_refused_by_the_api_and_finds_the_job(emulator: KlingEmulator) -> None:
    first = quick_hook().submit(request(), external_task_id="take-2")
    again = quick_hook().submit(request(), external_task_id="take-2")
    assert again.task_id == first.task_id
    assert emulator.stats()["jobs_created"] == 1
    assert emulator.stats()["responses"]["submit"] == {"200": 1, "400": 1}


def test_a_submit_that_created_nothing_is_sent_again_once_the_list_proves_it(emulator: KlingEmulator) -> None:
    emulator.inject("submit", FaultKind.SERVER_ERROR)  # a 503 from a proxy: a job may or may not exist
    submitted = quick_hook(retries=QUICK_RETRIES).submit(request(), external_task_id="take-3")
    [job] = emulator.jobs()
    assert submitted.task_id == job["task_id"]
    assert emulator.stats()["responses"]["submit"] == {"503": 1, "200": 1}


def test_a_list_that_cannot_be_read_leaves_the_submit_uncertain_and_sends_nothing_more(
    kling_emulator_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = kling_emulator_factory(api="klingai")
    connect(monkeypatch, emulator)
    emulator.inject("submit", FaultKind.SERVER_ERROR)
    hook = quick_hook(budgets=ROOMY_BUDGETS)
    monkeypatch.setattr(
        DIALECT.__class__, "list_path", lambda self, mode, page: "/v1/videos/nowhere?pageNum=1"
    )
    with pytest.raises(KlingSubmitUncertainError, match="Could not read the Kling task list"):
        hook.submit(request(), external_task_id="take-4")
    assert emulator.stats()["requests"]["submit"] == 1


def test_the_list_is_read_to_its_end_to_find_an_old_job(
    emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(DIALECT.__class__, "page_size", 2)  # three pages for five jobs
    hook = quick_hook()
    first = hook.submit(request("the oldest fox"), external_task_id="take-5")
    for number in range(4):
        hook.submit(request(f"fox {number}"), external_task_id=f"other-{number}")
    found = hook.find_job("take-5", GenerationMode.TEXT_TO_VIDEO)
    assert found is not None and found.task_id == first.task_id
    assert hook.find_job("take-never", GenerationMode.TEXT_TO_VIDEO) is None


# -- Money in units ----------------------------------------------------------------------------------


class RecordedStats:
    def __init__(self) -> None:
        self.counted: list[tuple[str, float, dict[str, str]]] = []

    def incr(self, name: str, count: float = 1, tags: dict[str, str] | None = None) -> None:
        self.counted.append((name, count, tags or {}))

    def timing(self, *args: Any, **kwargs: Any) -> None:
        pass


def test_a_finished_jobs_charge_is_counted_in_units_when_its_wait_ends(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from airflow_provider_kling import metrics
    from airflow_provider_kling.core.waiting import WaitOutcome, wait_event

    stats = RecordedStats()
    monkeypatch.setattr(metrics, "_stats", lambda: stats)
    body = {
        "data": {
            "task_id": "t",
            "task_status": "succeed",
            "final_unit_deduction": "2.5",
            "task_result": {"videos": [{"url": "https://cdn.example.com/t.mp4", "duration": "5.042"}]},
        }
    }
    status = DIALECT.read_status(body, "t")
    event = wait_event(WaitOutcome.SUCCESS, "t", "ready", status=status)
    metrics.wait_ended({"conn_id": "kling_default"}, event, None, time.time())
    assert (metrics.CREDITS_USED, 2.5, {"conn_id": "kling_default", "unit": "units"}) in stats.counted


def test_the_lineage_facet_names_the_model_and_the_unit() -> None:
    pytest.importorskip("airflow.providers.openlineage")
    from airflow_provider_kling.lineage import FACET_KEY, lineage_of

    result = {"task_id": "t", "duration": 5, "credits_used": 2.5}
    facet = lineage_of(request(mode="pro"), result, include_prompt=False).run_facets[FACET_KEY]
    assert (facet.model, facet.creditsUsed, facet.creditUnit) == ("kling-v2-6", 2.5, "units")


def test_a_sensor_told_the_mode_reads_one_path_a_poke_and_one_not_told_asks_each(
    emulator: KlingEmulator,
) -> None:
    from airflow_provider_kling.sensors.kling import KlingStatusSensor

    task_id = quick_hook().submit(request(image_urls=[IMAGE])).task_id
    told = KlingStatusSensor(task_id="told", kling_task_id=task_id, generation_mode="image_to_video")
    told.hook = quick_hook()
    told.poke({})
    assert emulator.stats()["responses"]["status"] == {"200": 1}
    untold = KlingStatusSensor(task_id="untold", kling_task_id=task_id)
    untold.hook = quick_hook()
    untold.poke({})
    assert emulator.stats()["responses"]["status"] == {"200": 2, "404": 1}  # text2video first: not there
