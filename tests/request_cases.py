"""Requests that break a rule, shared by the request model's tests and the hook's (which checks
that none of them reaches the server)."""

from __future__ import annotations

from typing import Any

IMAGE = "https://example.com/dog.jpg"

# (case name, constructor arguments, the field named, a phrase of the rule)
INVALID_REQUESTS: list[tuple[str, dict[str, Any], str, str]] = [
    ("prompt missing", {"prompt": None}, "prompt", "is required"),
    ("prompt blank", {"prompt": "   "}, "prompt", "must not be blank"),
    ("prompt not a string", {"prompt": 42}, "prompt", "must be a string"),
    ("prompt too long", {"prompt": "x" * 2501}, "prompt", "at most 2"),
    ("mode unknown", {"prompt": "a", "generation_mode": "video_to_video"}, "generation_mode", "must be"),
    (
        "image_to_video without image",
        {"prompt": "a", "generation_mode": "image_to_video"},
        "image_urls",
        "exactly one",
    ),
    (
        "image_to_video with two images",
        {"prompt": "a", "image_urls": [IMAGE, IMAGE]},
        "image_urls",
        "exactly one",
    ),
    ("image URL not http", {"prompt": "a", "image_urls": ["ftp://example.com/a.jpg"]}, "image_urls", "http"),
    ("image URL without host", {"prompt": "a", "image_urls": ["https://"]}, "image_urls", "http"),
    ("image_urls a bare string", {"prompt": "a", "image_urls": IMAGE}, "image_urls", "list of URLs"),
    (
        "text_to_video with an image",
        {"prompt": "a", "generation_mode": "text_to_video", "image_urls": [IMAGE]},
        "image_urls",
        "empty for text_to_video",
    ),
    ("duration not 5 or 10", {"prompt": "a", "duration": 7}, "duration", "5 or 10"),
    ("duration as text not 5 or 10", {"prompt": "a", "duration": "15"}, "duration", "5 or 10"),
    ("duration a bool", {"prompt": "a", "duration": True}, "duration", "5 or 10"),
    (
        "aspect ratio unknown",
        {"prompt": "a", "aspect_ratio": "4:3"},
        "aspect_ratio",
        "one of 16:9, 9:16, 1:1",
    ),
    (
        "aspect ratio for image_to_video",
        {"prompt": "a", "image_urls": [IMAGE], "aspect_ratio": "16:9"},
        "aspect_ratio",
        "text_to_video only",
    ),
    ("sound not a bool", {"prompt": "a", "sound": "yes"}, "sound", "true or false"),
    (
        "opt-in not a bool",
        {"prompt": "a", "prompt_directory_optin": 1},
        "prompt_directory_optin",
        "true or false",
    ),
]
