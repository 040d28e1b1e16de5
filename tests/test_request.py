"""The request model: every rule of the submit body, checked before anything is sent."""

from __future__ import annotations

from typing import Any

import pytest
from request_cases import IMAGE, INVALID_REQUESTS

from airflow_provider_kling.core.dialects.ulazai import DIALECT, estimate_credits
from airflow_provider_kling.core.errors import KlingValidationError
from airflow_provider_kling.core.request import GenerationMode, GenerationRequest


@pytest.mark.parametrize(
    ("arguments", "field", "rule"), [c[1:] for c in INVALID_REQUESTS], ids=[c[0] for c in INVALID_REQUESTS]
)
def test_invalid_request_names_field_rule_and_value(arguments: dict[str, Any], field: str, rule: str) -> None:
    with pytest.raises(KlingValidationError) as raised:
        GenerationRequest(**arguments)
    [error] = raised.value.errors
    assert error.field == field
    assert rule in error.rule
    assert field in str(raised.value) and rule in str(raised.value)


def test_every_broken_rule_is_reported_at_once() -> None:
    with pytest.raises(KlingValidationError) as raised:
        GenerationRequest("", duration=3, aspect_ratio="2:1", sound="no")
    assert [e.field for e in raised.value.errors] == ["prompt", "duration", "aspect_ratio", "sound"]
    assert "4 problems" in str(raised.value)


def test_error_shows_the_value_given() -> None:
    with pytest.raises(KlingValidationError, match=r"duration: must be 5 or 10 \(seconds\) \(got 7\)"):
        GenerationRequest("a", duration=7)


def test_long_values_are_cut_in_the_message_but_their_length_is_told() -> None:
    with pytest.raises(KlingValidationError) as raised:
        GenerationRequest("x" * 5000)
    assert "(5000 characters)" in str(raised.value)
    assert len(str(raised.value)) < 400


def test_prompt_of_exactly_2000_characters_is_valid() -> None:
    assert len(GenerationRequest("x" * 2000).prompt) == 2000


def test_mode_is_inferred_as_image_to_video_from_an_image() -> None:
    assert GenerationRequest("a", image_urls=[IMAGE]).generation_mode is GenerationMode.IMAGE_TO_VIDEO


def test_mode_defaults_to_text_to_video() -> None:
    assert GenerationRequest("a").generation_mode is GenerationMode.TEXT_TO_VIDEO


@pytest.mark.parametrize("duration", [5, "5", 10, "10"])
def test_duration_accepts_int_or_text_and_is_sent_as_text(duration: int | str) -> None:
    assert GenerationRequest("a", duration=duration).to_payload()["duration"] == str(duration)


def test_text_to_video_payload_uses_api_names_and_defaults() -> None:
    assert GenerationRequest("a cat surfing").to_payload() == {
        "prompt": "a cat surfing",
        "generationMode": "text_to_video",
        "duration": "5",
        "aspectRatio": "16:9",
        "sound": False,
        "prompt_directory_optin": True,
    }


def test_image_to_video_payload_carries_the_image_and_no_aspect_ratio() -> None:
    payload = GenerationRequest("the dog runs", image_urls=[IMAGE], duration=10, sound=True).to_payload()
    assert payload == {
        "prompt": "the dog runs",
        "generationMode": "image_to_video",
        "imageUrls": [IMAGE],
        "duration": "10",
        "sound": True,
        "prompt_directory_optin": True,
    }


@pytest.mark.parametrize(
    ("duration", "sound", "optin", "credits"),
    [
        ("5", False, False, 55),
        ("10", False, False, 110),
        ("5", True, False, 110),
        ("10", True, False, 220),
        ("5", False, True, 45),
        ("10", True, True, 210),
    ],
)
def test_credit_estimate_follows_the_price_table(
    duration: str, sound: bool, optin: bool, credits: int
) -> None:
    assert estimate_credits(duration, sound, optin) == credits
    request = GenerationRequest("a", duration=duration, sound=sound, prompt_directory_optin=optin)
    assert request.estimated_credits == credits


def test_fingerprint_is_stable_and_tells_requests_apart() -> None:
    assert GenerationRequest("a").fingerprint() == GenerationRequest("a", duration="5").fingerprint()
    assert GenerationRequest("a").fingerprint() != GenerationRequest("b").fingerprint()


def test_payload_round_trips_through_the_wire_reader() -> None:
    request = GenerationRequest("the dog runs", image_urls=[IMAGE], duration=10, sound=True)
    assert DIALECT.from_payload(request.to_payload()) == request


def test_wire_reader_requires_the_mode_and_a_text_duration_and_uses_api_names() -> None:
    with pytest.raises(KlingValidationError) as raised:
        DIALECT.from_payload({"prompt": "a", "duration": 5, "aspectRatio": "4:3"})
    assert [e.field for e in raised.value.errors] == ["generationMode", "duration", "aspectRatio"]


def test_wire_reader_refuses_a_body_that_is_not_an_object() -> None:
    with pytest.raises(KlingValidationError, match="must be a JSON object"):
        DIALECT.from_payload(["prompt"])


def test_budget_refuses_a_request_estimated_above_it_naming_both_numbers() -> None:
    with pytest.raises(
        KlingValidationError, match=r"max_credits: .*estimated cost of 220 credits \(got 100\)"
    ):
        GenerationRequest("a", duration=10, sound=True, prompt_directory_optin=False).check_budget(100)


def test_budget_accepts_a_request_estimated_at_it() -> None:
    GenerationRequest("a", duration=10, sound=True, prompt_directory_optin=False).check_budget(220)
