"""The generation request: the rules both APIs share, and the choice of which API's rules apply.

A :class:`GenerationRequest` cannot exist in an invalid state: its constructor checks every rule,
the shared ones here and its API's own (:mod:`airflow_provider_kling.core.dialects`), and raises
one :class:`KlingValidationError` listing all that are broken, so a request is refused before
anything is sent. The emulator reads incoming bodies through its API's ``from_payload``, so client
and emulator enforce the same rules.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from airflow_provider_kling.core.errors import FieldError, KlingValidationError
from airflow_provider_kling.core.urls import is_http_url

if TYPE_CHECKING:
    from airflow_provider_kling.core.dialects import Dialect


class GenerationMode(str, Enum):
    TEXT_TO_VIDEO = "text_to_video"
    IMAGE_TO_VIDEO = "image_to_video"


DURATIONS = ("5", "10")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
DEFAULT_DURATION = "5"
DEFAULT_ASPECT_RATIO = "16:9"
DEFAULT_SOUND = False
#: The API a request is for when none is named: the first one this provider spoke.
DEFAULT_API = "ulazai"

#: The request's parameters that only some APIs have: each API refuses those it lacks, by name.
OPTIONAL_FIELDS = (
    "prompt_directory_optin",
    "model_name",
    "mode",
    "negative_prompt",
    "camera_control",
    "cfg_scale",
    "image_tail_url",
)
#: Every parameter of a request (the operator's and ``@task.kling``'s names for them).
REQUEST_FIELDS = (
    "prompt",
    "generation_mode",
    "image_urls",
    "duration",
    "aspect_ratio",
    "sound",
    *OPTIONAL_FIELDS,
)


@dataclass(frozen=True, init=False)
class GenerationRequest:
    """A valid Kling generation request for one API (``api``: ``"ulazai"`` or ``"klingai"``).

    ``generation_mode`` is inferred as image_to_video when image URLs are given and no mode is
    named. ``duration`` takes 5, 10, "5" or "10" and is sent as the string the API wants.
    ``aspect_ratio`` applies to text_to_video only and defaults to 16:9 there. The fields only
    some APIs have (:data:`OPTIONAL_FIELDS`) hold their API's default when left unset, and are an
    error on an API that lacks them.
    """

    prompt: str
    generation_mode: GenerationMode
    image_urls: tuple[str, ...]
    duration: str
    aspect_ratio: str | None
    sound: bool
    api: str
    prompt_directory_optin: bool | None
    model_name: str | None
    mode: str | None
    negative_prompt: str | None
    camera_control: Mapping[str, Any] | None
    cfg_scale: float | None
    image_tail_url: str | None

    def __init__(
        self,
        prompt: str,
        *,
        api: str = DEFAULT_API,
        generation_mode: GenerationMode | str | None = None,
        image_urls: Sequence[str] | None = None,
        duration: int | str = DEFAULT_DURATION,
        aspect_ratio: str | None = None,
        sound: bool = DEFAULT_SOUND,
        prompt_directory_optin: bool | None = None,
        model_name: str | None = None,
        mode: str | None = None,
        negative_prompt: str | None = None,
        camera_control: Mapping[str, Any] | None = None,
        cfg_scale: float | None = None,
        image_tail_url: str | None = None,
    ) -> None:
        from airflow_provider_kling.core.dialects import DIALECTS  # the dialects build on this module

        errors: list[FieldError] = []
        dialect = DIALECTS.get(api) if isinstance(api, str) else None
        if dialect is None:
            errors.append(FieldError("api", f"must be one of {', '.join(DIALECTS)}", api))
        _check_prompt(prompt, dialect.prompt_max_chars if dialect else None, errors)
        urls = _read_image_urls(image_urls, errors)
        generation = _read_mode(generation_mode, urls, errors)
        _check_images_for_mode(generation, urls, image_urls, errors)
        duration_text = None if isinstance(duration, bool) else str(duration)
        if duration_text not in DURATIONS:
            errors.append(FieldError("duration", "must be 5 or 10 (seconds)", duration))
        _check_aspect_ratio(aspect_ratio, generation, errors)
        if not isinstance(sound, bool):
            errors.append(FieldError("sound", "must be true or false", sound))
        given = {
            "prompt_directory_optin": prompt_directory_optin,
            "model_name": model_name,
            "mode": mode,
            "negative_prompt": negative_prompt,
            "camera_control": camera_control,
            "cfg_scale": cfg_scale,
            "image_tail_url": image_tail_url,
        }
        shared = {"generation_mode": generation, "sound": sound}
        options = dialect.check_options(given, shared, errors) if dialect else given
        if errors:
            raise KlingValidationError(errors)

        assert generation is not None and duration_text is not None
        if generation is GenerationMode.TEXT_TO_VIDEO and aspect_ratio is None:
            aspect_ratio = DEFAULT_ASPECT_RATIO
        for name, value in (
            ("prompt", prompt),
            ("generation_mode", generation),
            ("image_urls", urls),
            ("duration", duration_text),
            ("aspect_ratio", aspect_ratio),
            ("sound", sound),
            ("api", api),
            *options.items(),
        ):
            object.__setattr__(self, name, value)

    @property
    def dialect(self) -> Dialect:
        from airflow_provider_kling.core.dialects import DIALECTS

        return DIALECTS[self.api]

    def to_payload(self) -> dict[str, Any]:
        """The submit body, with its API's names and types."""
        return self.dialect.to_payload(self)

    @property
    def estimated_credits(self) -> float:
        """The price-table estimate for this request, in its API's unit (the server's charge may differ)."""
        return self.dialect.estimate(self)

    def check_budget(self, max_credits: float) -> None:
        """Refuse, before anything is sent, a request whose estimate exceeds ``max_credits``."""
        if self.estimated_credits > max_credits:
            unit = self.dialect.credit_unit
            rule = f"is below this request's estimated cost of {self.estimated_credits:g} {unit}"
            raise KlingValidationError([FieldError("max_credits", rule, max_credits)])

    def fingerprint(self) -> str:
        """A stable digest of the body, to recognise the same request on a later try."""
        canonical = json.dumps(self.to_payload(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- The shared rules of the fields, each appending what it finds broken to ``errors`` ----------------


def check_text(
    name: str, text: Any, max_chars: int | None, errors: list[FieldError], *, required: bool
) -> None:
    """A prompt-like text: a string, not blank (when required), at most ``max_chars`` long."""
    if text is None:
        if required:
            errors.append(FieldError(name, "is required", text))
    elif not isinstance(text, str):
        errors.append(FieldError(name, "must be a string", text))
    elif not text.strip():
        errors.append(
            FieldError(name, "is required and must not be blank" if required else "must not be blank", text)
        )
    elif max_chars is not None and len(text) > max_chars:
        errors.append(FieldError(name, f"must be at most {max_chars} characters", text))


def _check_prompt(prompt: Any, max_chars: int | None, errors: list[FieldError]) -> None:
    check_text("prompt", prompt, max_chars, errors, required=True)


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


def refuse_foreign(
    given: Mapping[str, Any], own: Sequence[str], api_title: str, errors: list[FieldError]
) -> None:
    """An optional field set on an API that lacks it is an error naming it, never dropped."""
    for name in OPTIONAL_FIELDS:
        if name not in own and given.get(name) is not None:
            errors.append(FieldError(name, f"is not part of {api_title}; leave it unset", given[name]))
