"""Property-based: any request, however odd, is either refused naming its fields or sent as the contract says.

The oracle below is the contract (../shared/kling-api.md) written out plainly, independently of
the request model, so the model is checked against the rules rather than against itself.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hook_setup import connect
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_kling.core.dialects import ulazai
from airflow_provider_kling.core.errors import KlingValidationError
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.hooks.kling import KlingHook

ANYTHING = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
HTTP_URLS = st.builds(
    lambda scheme, host, path: f"{scheme}://{host}.example.com/{path}.jpg",
    st.sampled_from(["http", "https"]),
    st.text(alphabet="abcdefghij", min_size=1, max_size=8),
    st.text(alphabet="abcxyz0123", max_size=8),
)
NOT_HTTP_URLS = st.one_of(
    st.sampled_from(["ftp://example.com/a.jpg", "file:///etc/passwd", "https://", "example.com/a.jpg", ""]),
    st.integers(),
)

REQUESTS = st.fixed_dictionaries(
    {
        "prompt": st.one_of(
            st.text(max_size=40),  # unicode, control characters, blanks
            st.text(min_size=1995, max_size=2005),  # around the 2000-character limit
            st.just("x" * 2000),
            st.just("x" * 2001),
            ANYTHING,
        ),
    },
    optional={
        "generation_mode": st.one_of(st.sampled_from(["text_to_video", "image_to_video"]), ANYTHING),
        "image_urls": st.one_of(
            st.none(),
            st.lists(st.one_of(HTTP_URLS, NOT_HTTP_URLS), max_size=3),
            HTTP_URLS,  # a bare string, not a list
        ),
        "duration": st.one_of(st.sampled_from([5, 10, "5", "10"]), ANYTHING),
        "aspect_ratio": st.one_of(st.sampled_from(["16:9", "9:16", "1:1"]), ANYTHING),
        "sound": ANYTHING,
        "prompt_directory_optin": ANYTHING,
    },
)


def is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or "://" not in value:
        return False
    scheme, rest = value.split("://", 1)
    return scheme in ("http", "https") and bool(rest.split("/", 1)[0])


def broken_fields(fields: dict[str, Any]) -> set[str]:
    """The contract, read plainly: which fields of these arguments break a rule."""
    broken = set()
    prompt = fields["prompt"]
    if not isinstance(prompt, str) or not prompt.strip() or len(prompt) > 2000:
        broken.add("prompt")
    urls = fields.get("image_urls")
    urls_is_list = urls is None or isinstance(urls, list)
    if not urls_is_list:
        broken.add("image_urls")
    url_list = urls if isinstance(urls, list) else []
    mode = fields.get("generation_mode")
    if mode is None:
        mode = "image_to_video" if url_list else "text_to_video"
    if mode not in ("text_to_video", "image_to_video"):
        broken.add("generation_mode")
    if mode == "image_to_video" and urls_is_list and (len(url_list) != 1 or not is_http_url(url_list[0])):
        broken.add("image_urls")
    if mode == "text_to_video" and url_list:
        broken.add("image_urls")
    duration = fields.get("duration", 5)
    if isinstance(duration, bool) or str(duration) not in ("5", "10"):
        broken.add("duration")
    ratio = fields.get("aspect_ratio")
    if ratio is not None and (mode == "image_to_video" or ratio not in ("16:9", "9:16", "1:1")):
        broken.add("aspect_ratio")
    if "sound" in fields and not isinstance(fields["sound"], bool):
        broken.add("sound")
    optin = fields.get("prompt_directory_optin")  # None: unset, the API's default applies
    if optin is not None and not isinstance(optin, bool):
        broken.add("prompt_directory_optin")
    return broken


@settings(max_examples=600, deadline=None)
@given(REQUESTS)
def test_a_request_is_refused_exactly_when_it_breaks_a_rule_naming_each_broken_field(
    fields: dict[str, Any],
) -> None:
    expected = broken_fields(fields)
    arguments = dict(fields)
    prompt = arguments.pop("prompt")
    try:
        request = GenerationRequest(prompt, **arguments)
    except KlingValidationError as refused:
        assert {error.field for error in refused.errors} == expected, (fields, refused)
        for error in refused.errors:
            assert error.field in str(refused) and error.rule in str(refused)
        return
    assert expected == set(), fields
    payload = request.to_payload()
    assert payload["prompt"] == prompt and payload["duration"] in ("5", "10")
    assert payload["generationMode"] in ("text_to_video", "image_to_video")
    assert ("imageUrls" in payload) == (payload["generationMode"] == "image_to_video")
    assert ("aspectRatio" in payload) == (payload["generationMode"] == "text_to_video")
    assert isinstance(payload["sound"], bool) and isinstance(payload["prompt_directory_optin"], bool)
    json.dumps(payload)  # sendable as it is
    assert ulazai.DIALECT.from_payload(payload) == request  # and read back by the emulator alike


@pytest.fixture(scope="module")
def shared_emulator() -> Any:
    with KlingEmulator(speed=600, seed=5, credits=10_000_000) as emulator:
        yield emulator


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=REQUESTS)
def test_only_valid_requests_reach_the_server_and_each_is_accepted(
    fields: dict[str, Any], shared_emulator: KlingEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    connect(monkeypatch, shared_emulator)
    before = shared_emulator.stats()
    arguments = dict(fields)
    prompt = arguments.pop("prompt")
    try:
        request = GenerationRequest(prompt, **arguments)
    except KlingValidationError:
        assert shared_emulator.stats()["requests"] == before["requests"]
        return
    KlingHook().submit(request)
    assert shared_emulator.stats()["jobs_created"] == before["jobs_created"] + 1
