"""The generation request: every rule of the submit body, and its price, in one place.

A :class:`GenerationRequest` cannot exist in an invalid state: its constructor checks every rule
and raises one :class:`KlingValidationError` listing all that are broken, so a request is refused
before anything is sent. The emulator reads incoming bodies through :meth:`GenerationRequest.from_payload`,
so client and emulator enforce the same rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

from airflow_provider_kling.core.errors import FieldError, KlingValidationError
from airflow_provider_kling.core.urls import is_http_url


class GenerationMode(str, Enum):
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"


PROMPT_MAX_CHARS = 2000
DURATIONS = ("5", "10")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DEFAULT_DURATION = "5"
DEFAULT_ASPECT_RATIO = "16:9"
DEFAULT_SOUND = False
DEFAULT_PROMPT_DIRECTORY_OPTIN = True

#: Documented price in credits by (duration, sound), before the Prompt Directory discount.
PRICES = {("5", False): 55, ("10", False): 110, ("5", True): 110, ("10", True): 220}
PROMPT_DIRECTORY_DISCOUNT = 10

#: Our parameter names and the submit body's names for them.
API_FIELD_NAMES = {
    "prompt": "prompt",
    "generation_mode": "generationMode",
    "image_urls": "imageUrls",
    "duration": "duration",
    "aspect_ratio": "aspectRatio",
    "sound": "sound",
    "prompt_directory_optin": "prompt_directory_optin",
}


def estimate_credits(duration: str, sound: bool, prompt_directory_optin: bool) -> int:
    """Credits the documented price table predicts; the server's ``credits_used`` is the truth."""
    price = PRICES[(duration, sound)]
    return price - PROMPT_DIRECTORY_DISCOUNT if prompt_directory_optin else price


@dataclass(frozen=True, init=False)
class GenerationRequest:
    """A valid Kling 2.6 generation request.

    ``generation_mode`` is inferred as image_to_video when image URLs are given and no mode is
    named. ``duration`` takes 5, 10, "5" or "10" and is sent as the string the API wants.
    ``aspect_ratio`` applies to text_to_video only and defaults to 16:9 there.
    """

    prompt: str
    generation_mode: GenerationMode
    image_urls: tuple[str, ...]
    duration: str
    aspect_ratio: str | None
    sound: bool
    prompt_directory_optin: bool

    def __init__(
        self,
        prompt: str,
        *,
        generation_mode: GenerationMode | str | None = None,
        image_urls: Sequence[str] | None = None,
        duration: int | str = DEFAULT_DURATION,
        aspect_ratio: str | None = None,
        sound: bool = DEFAULT_SOUND,
        prompt_directory_optin: bool = DEFAULT_PROMPT_DIRECTORY_OPTIN,
    ) -> None:
        errors: list[FieldError] = []
        _check_prompt(prompt, errors)
        urls = _read_image_urls(image_urls, errors)
        mode = _read_mode(generation_mode, urls, errors)
        _check_images_for_mode(mode, urls, image_urls, errors)
        duration_text = None if isinstance(duration, bool) else str(duration)
        if duration_text not in DURATIONS:
            errors.append(FieldError("duration", "must be 5 or 10 (seconds)", duration))
        _check_aspect_ratio(aspect_ratio, mode, errors)
        for name, flag in (("sound", sound), ("prompt_directory_optin", prompt_directory_optin)):
            if not isinstance(flag, bool):
                errors.append(FieldError(name, "must be true or false", flag))
        if errors:
            raise KlingValidationError(errors)

        assert mode is not None and duration_text is not None
        if mode is GenerationMode.TEXT_TO_VIDEO and aspect_ratio is None:
            aspect_ratio = DEFAULT_ASPECT_RATIO
        object.__setattr__(self, "prompt", prompt)
        object.__setattr__(self, "generation_mode", mode)
        object.__setattr__(self, "image_urls", urls)
        object.__setattr__(self, "duration", duration_text)
        object.__setattr__(self, "aspect_ratio", aspect_ratio)
        object.__setattr__(self, "sound", sound)
        object.__setattr__(self, "prompt_directory_optin", prompt_directory_optin)

    @classmethod
    def from_payload(cls, payload: Any) -> GenerationRequest:
        """Read a submit body as the API receives it (API names, wire types); the emulator's entry."""
        if not isinstance(payload, Mapping):
            raise KlingValidationError([FieldError("body", "must be a JSON object", payload)])
        known = {ours: payload[theirs] for ours, theirs in API_FIELD_NAMES.items() if theirs in payload}
        known.setdefault("prompt", None)
        # The wire is stricter than our constructor: the mode must be named, the duration a string.
        wire_errors = []
        if "generationMode" not in payload:
            wire_errors.append(FieldError("generationMode", "is required", None))
        if not isinstance(known.get("duration", DEFAULT_DURATION), str):
            wire_errors.append(FieldError("duration", 'must be a string, "5" or "10"', known.pop("duration")))
        try:
            request = cls(**known)
        except KlingValidationError as invalid:
            field_errors = [
                FieldError(API_FIELD_NAMES.get(e.field, e.field), e.rule, e.value) for e in invalid.errors
            ]
            raise KlingValidationError(wire_errors + field_errors) from None
        if wire_errors:
            raise KlingValidationError(wire_errors)
        return request

    def to_payload(self) -> dict[str, Any]:
        """The submit body, with the API's names and types."""
        payload: dict[str, Any] = {
            "prompt": self.prompt,
            "generationMode": self.generation_mode.value,
            "duration": self.duration,
            "sound": self.sound,
            "prompt_directory_optin": self.prompt_directory_optin,
        }
        if self.image_urls:
            payload["imageUrls"] = list(self.image_urls)
        if self.aspect_ratio is not None:
            payload["aspectRatio"] = self.aspect_ratio
        return payload

    @property
    def estimated_credits(self) -> int:
        """The price-table estimate for this request (the server's charge may differ)."""
        return estimate_credits(self.duration, self.sound, self.prompt_directory_optin)

    def check_budget(self, max_credits: int) -> None:
        """Refuse, before anything is sent, a request whose estimate exceeds ``max_credits``."""
        if self.estimated_credits > max_credits:
            raise KlingValidationError(
                [
                    FieldError(
                        "max_credits",
                        f"is below this request's estimated cost of {self.estimated_credits} credits",
                        max_credits,
                    )
                ]
            )

    def fingerprint(self) -> str:
        """A stable digest of the body, to recognise the same request on a later try."""
        canonical = json.dumps(self.to_payload(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- The rules of the fields, each appending what it finds broken to ``errors`` ----------------------


def _check_prompt(prompt: Any, errors: list[FieldError]) -> None:
    if prompt is None:
        errors.append(FieldError("prompt", "is required", prompt))
    elif not isinstance(prompt, str):
        errors.append(FieldError("prompt", "must be a string", prompt))
    elif not prompt.strip():
        errors.append(FieldError("prompt", "is required and must not be blank", prompt))
    elif len(prompt) > PROMPT_MAX_CHARS:
        errors.append(FieldError("prompt", f"must be at most {PROMPT_MAX_CHARS} characters", prompt))


def _read_image_urls(image_urls: Any, errors: list[FieldError]) -> tuple[Any, ...]:
    if image_urls is None:
        return ()
    if isinstance(image_urls, (str, bytes)) or not isinstance(image_urls, Sequence):
        errors.append(FieldError("image_urls", "must be a list of URLs", image_urls))
        return ()
    return tuple(image_urls)


def _read_mode(
    generation_mode: Any, urls: tuple[Any, ...], errors: list[FieldError]
) -> GenerationMode | None:
    """The named mode, or the one the images imply; None (and an error) for an unknown name."""
    if generation_mode is None:
        return GenerationMode.IMAGE_TO_VIDEO if urls else GenerationMode.TEXT_TO_VIDEO
    try:
        return GenerationMode(generation_mode)
    except ValueError:
        allowed = " or ".join(m.value for m in GenerationMode)
        errors.append(FieldError("generation_mode", f"must be {allowed}", generation_mode))
        return None


def _check_images_for_mode(
    mode: GenerationMode | None, urls: tuple[Any, ...], image_urls: Any, errors: list[FieldError]
) -> None:
    if mode is GenerationMode.IMAGE_TO_VIDEO:
        if len(urls) != 1:
            errors.append(
                FieldError("image_urls", "must hold exactly one image URL for image_to_video", image_urls)
            )
        elif not is_http_url(urls[0]):
            errors.append(FieldError("image_urls", "must be an http(s) URL", urls[0]))
    elif mode is GenerationMode.TEXT_TO_VIDEO and urls:
        errors.append(FieldError("image_urls", "must be empty for text_to_video", image_urls))


def _check_aspect_ratio(aspect_ratio: Any, mode: GenerationMode | None, errors: list[FieldError]) -> None:
    if aspect_ratio is None:
        return
    if mode is GenerationMode.IMAGE_TO_VIDEO:
        errors.append(
            FieldError("aspect_ratio", "applies to text_to_video only; leave it unset", aspect_ratio)
        )
    elif aspect_ratio not in ASPECT_RATIOS:
        errors.append(FieldError("aspect_ratio", f"must be one of {', '.join(ASPECT_RATIOS)}", aspect_ratio))
