"""KlingGenerateOperator: turn a prompt (and optionally an image) into a finished Kling video."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import AirflowFailException, ResumableJobMixin, conf
from airflow.sdk import BaseOperator

from airflow_provider_kling.core.errors import (
    KlingAuthError,
    KlingBadRequestError,
    KlingInsufficientCreditsError,
    KlingSubmitUncertainError,
    KlingValidationError,
)
from airflow_provider_kling.core.request import GenerationRequest
from airflow_provider_kling.core.responses import JobState, job_state
from airflow_provider_kling.links.kling import KlingVideoLink
from airflow_provider_kling.triggers.kling import KlingStatusTrigger, result_from_event, video_result

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kling.hooks.kling import KlingHook

#: task_state_store key holding the fingerprint of a request whose POST may have gone out unanswered.
PENDING_SUBMIT_KEY = "kling_pending_submit"
#: Errors no retry can cure: the task fails at once instead of using up its retries.
FINAL_ERRORS = (KlingValidationError, KlingAuthError, KlingInsufficientCreditsError, KlingBadRequestError)
#: How long past its own deadline the trigger may run before Airflow's safety net fails the task.
DEFER_SAFETY_MARGIN = timedelta(minutes=5)


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class KlingGenerateOperator(ResumableJobMixin, BaseOperator):
    """Generate a Kling 2.6 video, pushing the vendor ``task_id`` to XCom as soon as the job exists.

    Waits for the video (in the triggerer when ``deferrable``) and returns its result:
    task_id, status, video_url, duration, has_audio, credits_used, credits_remaining.

    Never pays twice for one try's video: on Airflow 3.3+ the vendor task_id is kept in
    ``task_state_store``, and a retry reattaches to that job (or reuses its finished video)
    instead of submitting again; only a job that failed is submitted anew.

    :param on_unconfirmed_submit: what a retry does when an earlier try sent the request but never
        learnt its task_id (the worker died mid-request, or the answer was lost): ``"fail"`` (the
        default: check the vendor dashboard, then clear the task) or ``"resubmit"`` (may pay twice).
    """

    template_fields: Sequence[str] = ("prompt", "image_urls", "generation_mode", "duration", "aspect_ratio")
    ui_color = "#f2e6ff"
    external_id_key = "kling_task_id"
    operator_extra_links = (KlingVideoLink(),)

    def __init__(
        self,
        *,
        prompt: str,
        generation_mode: str | None = None,
        image_urls: list[str] | None = None,
        duration: int | str = 5,
        aspect_ratio: str | None = None,
        sound: bool = False,
        prompt_directory_optin: bool = True,
        kling_conn_id: str = "kling_default",
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float = 10.0,
        timeout: float | timedelta = timedelta(minutes=30),
        on_unconfirmed_submit: Literal["fail", "resubmit"] = "fail",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.prompt = prompt
        self.generation_mode = generation_mode
        self.image_urls = image_urls
        self.duration = duration
        self.aspect_ratio = aspect_ratio
        self.sound = sound
        self.prompt_directory_optin = prompt_directory_optin
        self.kling_conn_id = kling_conn_id
        self.wait_for_completion = wait_for_completion
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.timeout = timeout
        if on_unconfirmed_submit not in ("fail", "resubmit"):
            raise ValueError(
                f"on_unconfirmed_submit must be 'fail' or 'resubmit', got {on_unconfirmed_submit!r}"
            )
        self.on_unconfirmed_submit = on_unconfirmed_submit

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    def execute(self, context: Context) -> Any:
        try:
            self._request = GenerationRequest(
                self.prompt,
                generation_mode=self.generation_mode,
                image_urls=self.image_urls,
                duration=self.duration,
                aspect_ratio=self.aspect_ratio,
                sound=self.sound,
                prompt_directory_optin=self.prompt_directory_optin,
            )
        except KlingValidationError as invalid:
            raise AirflowFailException(str(invalid)) from invalid
        if context.get("task_state_store") is None and context["ti"].try_number > 1:
            self.log.warning(
                "This Airflow has no task_state_store (it came in 3.3): this retry submits a new Kling job, "
                "paying again, even if the previous try's job is still running."
            )
        try:
            return self.execute_resumable(context)
        except FINAL_ERRORS as error:
            raise AirflowFailException(str(error)) from error
        except KlingSubmitUncertainError as error:
            if self.on_unconfirmed_submit == "fail":
                raise AirflowFailException(str(error)) from error
            raise

    # -- ResumableJobMixin: submit once, reattach on retry -----------------------------------------
    # The "external id" kept in task_state_store is the submission record: the vendor task_id and
    # the credits its submit reported, so a reattached try still reports what the video cost.

    def submit_job(self, context: Context) -> dict[str, Any]:
        request: GenerationRequest = self._request
        store = context.get("task_state_store")
        if store is not None:
            if store.get(PENDING_SUBMIT_KEY):
                self._handle_unconfirmed_submit()
            store.set(PENDING_SUBMIT_KEY, request.fingerprint())
        self.log.info(
            "Submitting Kling %s, %s s%s (estimated %d credits)",
            request.generation_mode.value,
            request.duration,
            " with sound" if request.sound else "",
            request.estimated_credits,
        )
        submitted = self.hook.submit(request)
        submission: dict[str, Any] = {
            "task_id": submitted.task_id,
            "credits_used": submitted.credits_used,
            "credits_remaining": submitted.credits_remaining,
        }
        if store is not None:
            store.set(self.external_id_key, submission)
            store.delete(PENDING_SUBMIT_KEY)
        self._announce(context, submitted.task_id)
        self.log.info(
            "Kling job %s accepted: %s credits used, %s remaining",
            submitted.task_id,
            submitted.credits_used,
            submitted.credits_remaining,
        )
        return submission

    def _announce(self, context: Context, task_id: str) -> None:
        self._task_id = task_id
        context["ti"].xcom_push(key="task_id", value=task_id)

    def _handle_unconfirmed_submit(self) -> None:
        warning = (
            "An earlier try sent this Kling request but never learnt its task_id, so a job may exist "
            "and be paid for already"
        )
        if self.on_unconfirmed_submit == "fail":
            raise AirflowFailException(
                f"{warning}. Not submitting again (on_unconfirmed_submit='fail'): check the vendor "
                "dashboard, then clear this task to submit anew."
            )
        self.log.warning(
            "%s. Submitting again (on_unconfirmed_submit='resubmit'): one video may be paid twice.", warning
        )

    def get_job_status(self, external_id: Any, context: Context) -> str:
        self._announce(context, external_id["task_id"])
        return self.hook.get_status(external_id["task_id"]).status

    def is_job_active(self, status: str) -> bool:
        return job_state(status) is JobState.RUNNING

    def is_job_succeeded(self, status: str) -> bool:
        return job_state(status) is JobState.COMPLETED

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        # The mixin returns this on a reattach, and calls get_job_result after it on a fresh submit.
        if not self.wait_for_completion:
            return external_id["task_id"]
        trigger = KlingStatusTrigger(
            kling_task_id=external_id["task_id"],
            deadline=time.time() + _seconds(self.timeout),
            poll_interval=self.poll_interval,
            kling_conn_id=self.kling_conn_id,
        )
        if self.deferrable:
            self.defer(
                trigger=trigger,
                method_name="execute_complete",
                kwargs={"submission": external_id},
                timeout=timedelta(seconds=_seconds(self.timeout)) + DEFER_SAFETY_MARGIN,
            )
        self._finished = self._result(result_from_event(asyncio.run(trigger.wait())), external_id)
        return self._finished

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        if not self.wait_for_completion:
            return external_id["task_id"]
        if hasattr(self, "_finished"):
            return self._finished
        # An earlier try's job had already finished: read its result once more.
        return self._result(self.hook.get_status(external_id["task_id"]).as_dict(), external_id)

    def execute_complete(self, context: Context, event: dict[str, Any], submission: Any = None) -> Any:
        """Resume after the trigger's one event: the result, or a clear error."""
        if submission is None and (store := context.get("task_state_store")) is not None:
            submission = store.get(self.external_id_key)  # dag.test() drops the defer kwargs
        try:
            return self._result(result_from_event(event), submission)
        except FINAL_ERRORS as error:
            raise AirflowFailException(str(error)) from error

    def _result(self, status: dict[str, Any], submission: Any) -> dict[str, Any]:
        result = video_result(status, submission if isinstance(submission, dict) else None)
        self.log.info("Kling video ready: %s", result["video_url"])
        return result

    def on_kill(self) -> None:
        task_id = getattr(self, "_task_id", None)
        self.log.warning(
            "Task killed. The Kling job %s keeps running at the vendor (the API has no cancel call) "
            "and is charged.",
            task_id or "(if one was submitted)",
        )
