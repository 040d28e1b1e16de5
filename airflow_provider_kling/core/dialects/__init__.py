"""The APIs that sell Kling, one module each: everything that differs between them lives there.

A dialect says where its endpoints are and how a request proves who sends it, how a request body
looks and what it costs, how an answer's envelope, status words and error codes read, and what a
task the API does not know looks like. The rules that do not differ (the shared request checks,
waits, pacing, budgets, spend safety, redaction, video checks) are written once, outside.

Adding a third API means one module here with a :class:`Dialect` object, its entry in
:data:`DIALECTS`, and its face in the emulator (``airflow_provider_kling/emulator/faces.py``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow_provider_kling.core.errors import FieldError, KlingAPIError
    from airflow_provider_kling.core.request import GenerationMode, GenerationRequest
    from airflow_provider_kling.core.responses import JobStatus, SubmitResult


class Credentials(Protocol):
    """How requests prove who sends them: the headers to send, and every secret to keep out of texts."""

    def headers(self) -> dict[str, str]: ...

    def renew(self) -> None:
        """Make fresh proof after the server called the last one expired."""

    def secrets(self) -> tuple[str, ...]:
        """Every secret a text could carry: the key, and any token made from it so far."""


class Dialect(Protocol):
    """One API's side of every difference (see the module's docstring)."""

    # Read-only, as the dialects are frozen:
    @property
    def name(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def default_base_url(self) -> str: ...
    @property
    def credit_unit(self) -> str:
        """What its prices count, as its bills name it."""

    @property
    def prompt_max_chars(self) -> int: ...
    @property
    def has_external_task_id(self) -> bool:
        """Whether a submit can carry the caller's own id, which makes an uncertain submit findable."""

    @property
    def charges_failed_jobs(self) -> bool:
        """Whether a job that fails may still be charged (as far as the documentation tells)."""

    @property
    def login_label(self) -> str | None:
        """What the connection's login holds (None: not used), for the form and for messages."""

    @property
    def password_label(self) -> str: ...

    def credentials(self, login: str | None, password: str) -> Credentials: ...

    def check_options(
        self, given: Mapping[str, Any], shared: Mapping[str, Any], errors: list[FieldError]
    ) -> dict[str, Any]:
        """Check the optional fields ``given`` (and the rules tying them to the ``shared`` ones:
        ``generation_mode``, ``sound``); their values with this API's defaults filled in."""

    def to_payload(self, request: GenerationRequest) -> dict[str, Any]: ...

    def from_payload(self, payload: Any, generation: GenerationMode | None = None) -> GenerationRequest:
        """A submit body as the API receives it: the emulator's entry."""

    def estimate(self, request: GenerationRequest) -> float: ...

    def submit_path(self, request: GenerationRequest) -> str: ...

    def status_paths(self, task_id: str, generation: GenerationMode | None) -> Sequence[str]:
        """Where a task's status may be read, tried in order until one knows it."""

    def read_submit(self, body: Any, http_status: int | None = None) -> SubmitResult: ...

    def read_status(self, body: Any, task_id: str, http_status: int | None = None) -> JobStatus: ...

    def error_from_response(
        self,
        http_status: int,
        body: bytes | str,
        *,
        retry_after: str | None = None,
        task_id: str | None = None,
        location: str | None = None,
    ) -> KlingAPIError: ...

    def token_expired(self, http_status: int, body: bytes) -> bool:
        """Whether an answer refused the request's proof only for its age: renew it, ask once more."""


def _dialects() -> dict[str, Dialect]:
    from airflow_provider_kling.core.dialects import klingai, ulazai

    return {ulazai.DIALECT.name: ulazai.DIALECT, klingai.DIALECT.name: klingai.DIALECT}


DIALECTS: Mapping[str, Dialect] = _dialects()
