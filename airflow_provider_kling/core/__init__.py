"""The Kling APIs' rules with no Airflow in sight: shared by hook, operator, trigger and emulator.

What differs between the APIs lives in :mod:`airflow_provider_kling.core.dialects`, one module each."""

from __future__ import annotations

from airflow_provider_kling.core.errors import (
    FieldError,
    KlingAPIError,
    KlingAuthError,
    KlingBadRequestError,
    KlingError,
    KlingInsufficientCreditsError,
    KlingJobFailedError,
    KlingNotFoundError,
    KlingRateLimitError,
    KlingResponseError,
    KlingServerError,
    KlingSubmitUncertainError,
    KlingTransportError,
    KlingValidationError,
)
from airflow_provider_kling.core.request import GenerationMode, GenerationRequest
from airflow_provider_kling.core.responses import JobState, JobStatus, SubmitResult

__all__ = [
    "FieldError",
    "GenerationMode",
    "GenerationRequest",
    "JobState",
    "JobStatus",
    "KlingAPIError",
    "KlingAuthError",
    "KlingBadRequestError",
    "KlingError",
    "KlingInsufficientCreditsError",
    "KlingJobFailedError",
    "KlingNotFoundError",
    "KlingRateLimitError",
    "KlingResponseError",
    "KlingServerError",
    "KlingSubmitUncertainError",
    "KlingTransportError",
    "KlingValidationError",
    "SubmitResult",
]
