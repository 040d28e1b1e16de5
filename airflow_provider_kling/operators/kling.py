"""KlingGenerateOperator: turn a prompt (and optionally an image) into a finished Kling video."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any, Literal

from airflow.providers.common.compat.sdk import AirflowFailException, conf
from airflow.sdk import Asset, AssetAlias, BaseOperator

from airflow_provider_kling import DEFAULT_CONN_ID, metrics
from airflow_provider_kling.core.dialects.ulazai import PROMPT_DIRECTORY_DISCOUNT
from airflow_provider_kling.core.errors import (
    FieldError,
    KlingAccountError,
    KlingAuthError,
    KlingBadRequestError,
    KlingConcurrencyLimitError,
    KlingConnectionSettingError,
    KlingError,
    KlingInsufficientCreditsError,
    KlingJobFailedError,
    KlingNotFoundError,
    KlingRunBudgetError,
    KlingSubmitUncertainError,
    KlingValidationError,
    created_no_job,
)
from airflow_provider_kling.core.polling import schedule_for
from airflow_provider_kling.core.request import (
    DEFAULT_DURATION,
    DEFAULT_SOUND,
    REQUEST_FIELDS,
    GenerationRequest,
)
from airflow_provider_kling.core.responses import JobState, SubmitResult
from airflow_provider_kling.core.run_credits import LedgerEntry, claim
from airflow_provider_kling.core.submission import Submission
from airflow_provider_kling.core.waiting import (
    TASK_ENDED_EVENT,
    check_poll_interval,
    result_from_event,
    video_result,
    wait_for_job,
)
from airflow_provider_kling.links.kling import VIDEO_URL_ATTRIBUTE, KlingVideoLink

try:  # Airflow 3.3's own; below it, common-compat's stand-in (in its releases for Python 3.11+ only)
    from airflow.sdk import ResumableJobMixin
except ImportError:
    from airflow.providers.common.compat.sdk import ResumableJobMixin

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airflow_provider_kling.hooks.kling import KlingHook

#: Errors no retry can cure: the task fails at once instead of using up its retries.
FINAL_ERRORS = (
    KlingValidationError,
    KlingConnectionSettingError,
    KlingAuthError,
    KlingAccountError,
    KlingInsufficientCreditsError,
    KlingBadRequestError,
    KlingRunBudgetError,
)
#: The XCom key of each generation's entry in its DAG run's credit ledger (core.run_credits).
LEDGER_KEY = "kling_credits"
#: How long past its own deadline the trigger may run before Airflow's safety net fails the task.
DEFER_SAFETY_MARGIN = timedelta(minutes=5)
#: The alias written videos are announced under, unless the task's outlets name one.
DEFAULT_ASSET_ALIAS = "kling_videos"
#: The operator's default for prompt_directory_optin. It differs on purpose from UlazAI's default
#: (core.dialects.ulazai.DEFAULT_PROMPT_DIRECTORY_OPTIN, True, which the emulator applies to a body
#: without the field): opting in publishes the prompt in the vendor's public Prompt Directory, and a
#: DAG should do that by choice, for the PROMPT_DIRECTORY_DISCOUNT, never by leaving a parameter out.
OPERATOR_DEFAULT_PROMPT_DIRECTORY_OPTIN = False
#: What ``regenerate`` accepts once templated, besides a bool (strings compared case-insensitively).
REGENERATE_WORDS = {"true": True, "false": False, "1": True, "0": False, "yes": True, "no": False, "": False}

# What a stored submission can be besides a vendor job, told to ResumableJobMixin as a job status
# that is neither running nor succeeded, so that it goes on to submit_job.
UNCONFIRMED = "kling-provider:unconfirmed"  # an earlier try sent the request but never saw the answer
SUPERSEDED = "kling-provider:superseded"  # the stored job was for other parameters (the task changed)
VANISHED = "kling-provider:vanished"  # the vendor no longer knows the stored job
RETAKE = "kling-provider:retake"  # regenerate=True, and the stored job is from before the task was cleared


def _seconds(value: float | timedelta) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


def _regenerate_flag(value: Any) -> bool:
    """``regenerate`` as a bool: a bool, or a templated string among REGENERATE_WORDS."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in REGENERATE_WORDS:
        return REGENERATE_WORDS[value.strip().lower()]
    words = ", ".join(f'"{word}"' for word in REGENERATE_WORDS)
    rule = f"must be true or false: a bool, or once templated one of {words} (any case)"
    raise KlingValidationError([FieldError("regenerate", rule, value)])


def clear_round(context: Context) -> int:
    """Which run of the task instance this is: Airflow sets ``max_tries = try_number + retries`` on
    every clear, so it changes when the task is cleared and stays the same across its retries."""
    return int(context["ti"].max_tries)


def _check_settings(run_credit_limit: Any, on_unconfirmed_submit: Any, poll_interval: Any) -> None:
    """Refuse, when the DAG is parsed, settings that are not templated and can never work."""
    if run_credit_limit is not None and (
        isinstance(run_credit_limit, bool)
        or not isinstance(run_credit_limit, (int, float))
        or not 0 <= run_credit_limit < float("inf")
    ):
        raise ValueError(
            f"run_credit_limit must be a number of credits (units on Kling's own API) or None, "
            f"got {run_credit_limit!r}"
        )
    if on_unconfirmed_submit not in ("fail", "resubmit"):
        raise ValueError(f"on_unconfirmed_submit must be 'fail' or 'resubmit', got {on_unconfirmed_submit!r}")
    check_poll_interval(poll_interval)


def external_task_id_for(ti: Any, round: int, fingerprint: str, after: str | None) -> str:
    """The id a take's submits carry on an API that takes one: the same for every try of one take of
    one task instance, and another after the take's job (``after``) failed or vanished, or when the
    request changed. Hashed: run ids and task ids may hold what the API would not take."""
    parts = (ti.dag_id, ti.run_id, ti.task_id, str(ti.map_index), str(round), fingerprint, after or "")
    digest = hashlib.sha256("\n".join(parts).encode("utf-8")).hexdigest()
    return f"airflow-{digest[:40]}"


#: How many failed jobs one submit steps past when each id it tries is taken by one (Kling's own API).
MAX_TAKEN_IDS = 10


def _prompt_sharing(request: GenerationRequest) -> str:
    """For the submit log: whether the prompt is published, and what opting in would save."""
    if request.prompt_directory_optin is None:  # an API without a Prompt Directory
        return ""
    if request.prompt_directory_optin:
        return (
            " The prompt will be published in the vendor's public Prompt Directory "
            f"(prompt_directory_optin=True, {PROMPT_DIRECTORY_DISCOUNT} credits off)."
        )
    return (
        " The prompt is not shared in the vendor's public Prompt Directory; opting in "
        f"(prompt_directory_optin=True) would publish it and save {PROMPT_DIRECTORY_DISCOUNT} credits."
    )


class KlingGenerateOperator(ResumableJobMixin, BaseOperator):
    """Generate a Kling 2.6 video, pushing the vendor ``task_id`` to XCom as soon as the job exists.

    Waits for the video (in the triggerer when ``deferrable``) and returns its result:
    task_id, status, video_url, duration, has_audio, credits_used, credits_remaining, and with
    ``output_path`` also path, bytes and sha256.

    Never pays twice for one task's video: on Airflow 3.3+ the submission is kept in
    ``task_state_store`` (key ``kling_submission``), and a retry reattaches to that job, or reuses
    its finished video, instead of submitting again. A new job is submitted only when the stored
    one failed, vanished, or was for other parameters (the task was changed and cleared), or when
    ``regenerate`` asks for a fresh take after the task was cleared.

    The connection's ``api`` extra picks the API: ``ulazai`` (the default) or ``klingai``. Each
    field below is checked against that API's rules before anything is sent; a field it does not
    have is an error there, never dropped. On ``klingai`` every submit carries an
    ``external_task_id`` derived from the task instance and its take, so a submit whose answer was
    lost is found again, and ``on_unconfirmed_submit`` is not needed.

    :param prompt: (templated) what the video shows, at most 2,000 characters (2,500 on ``klingai``).
    :param generation_mode: (templated) ``"text_to_video"`` or ``"image_to_video"``; by default
        image_to_video when ``image_urls`` is given, else text_to_video.
    :param image_urls: (templated) for image_to_video, exactly one http(s) URL of the first frame.
    :param duration: (templated) 5 or 10 seconds (int or string).
    :param aspect_ratio: (templated) ``"16:9"`` (the default), ``"9:16"`` or ``"1:1"``; text_to_video
        only.
    :param sound: generate native audio too (doubles the price; on ``klingai`` ``kling-v2-6`` pro only).
    :param prompt_directory_optin: ``ulazai`` only: publish the prompt in the vendor's public Prompt
        Directory for a discount of ``PROMPT_DIRECTORY_DISCOUNT`` (10) credits. Defaults to ``False``,
        keeping the prompt private, although the API's own default is ``True``; the submit log line
        says which.
    :param model_name: (templated) ``klingai`` only: ``kling-v2-6`` (the default) or ``kling-v2-5-turbo``.
    :param mode: (templated) ``klingai`` only: ``std`` (the default) or ``pro``.
    :param negative_prompt: (templated) ``klingai`` only: what the video should not show, at most
        2,500 characters.
    :param camera_control: ``klingai`` only: ``{"type": "simple", "config": {one axis: -10..10}}``
        or ``{"type": <preset>}``; not with an end frame.
    :param cfg_scale: ``klingai`` only, and not for the v2 models this provider prices.
    :param image_tail_url: (templated) ``klingai`` image_to_video only: the end frame's http(s) URL
        (on ``kling-v2-6`` in pro mode, silent).
    :param regenerate: (templated) submit a new job, paying again, even when this task instance
        already has a job for the same parameters from before it was cleared, for a fresh take of a
        video. Retries within one run (between clears) still reattach to that run's job, so a retry
        never pays twice. A bool, or once templated ``"true"``/``"false"``, ``"1"``/``"0"``,
        ``"yes"``/``"no"`` (any case) or ``""`` (false), so a DAG param can flip it per run:
        ``regenerate="{{ params.regenerate }}"``; anything else fails the task before sending.
        Default ``False``: a cleared task with unchanged parameters reuses its paid video. Without
        ``task_state_store`` (before Airflow 3.3) there is nothing to reuse and it changes nothing.
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API: host = base URL,
        password = API key.
    :param wait_for_completion: wait for the video and return its result (the default); ``False``
        returns the vendor task_id as soon as the job exists, for a sensor to wait on.
    :param deferrable: wait in the triggerer, holding no worker slot (default
        ``[operators] default_deferrable``).
    :param max_credits: refuse, before sending, a request whose price-table estimate exceeds this
        (credits on ``ulazai``, decimal units on ``klingai``).
    :param output_path: keep the video at this object storage URL (templated, e.g.
        ``file:///data/videos/{{ ds }}/{{ ti.map_index }}.mp4``), written atomically, and announce
        it as an Asset event through the task's ``AssetAlias`` outlets (``kling_videos`` by default).
    :param poll_interval: poll the status every this many seconds. By default the wait adapts
        instead: it polls rarely while the video renders and closely around the end the job's
        progress points to (about four requests for a 60-90 s job, its end seen about half a
        second late at the median).
    :param on_unconfirmed_submit: ``ulazai`` only (``klingai`` finds the job by its id): what a retry
        does when an earlier try sent the request but never learnt its task_id (the worker died
        mid-request, or the answer was lost): ``"fail"`` (the default: check the vendor dashboard
        first) or ``"resubmit"`` (may pay twice).
    :param timeout: how long to wait for the video (seconds or a timedelta, default 30 minutes);
        it also bounds a retry's reads of the stored job. The job is not cancelled (the API has no
        cancel call).
    :param openlineage_include_prompt: put the prompt in the OpenLineage run facet (default
        ``False``: prompts can be confidential, and lineage backends are read widely).
    :param run_credit_limit: refuse, before sending, a generation whose estimate would take the
        credits spent by all Kling generations of this DAG run past this limit (set it in the DAG's
        ``default_args`` so every generation shares it). Concurrent generations, mapped ones
        included, cannot pass it together; each generation's spend is its XCom ``kling_credits``.
    """

    template_fields: Sequence[str] = (
        "prompt",
        "image_urls",
        "generation_mode",
        "duration",
        "aspect_ratio",
        "output_path",
        "regenerate",
        "model_name",
        "mode",
        "negative_prompt",
        "image_tail_url",
    )
    ui_color = "#f2e6ff"
    external_id_key = "kling_submission"
    operator_extra_links = (KlingVideoLink(),)

    def __init__(
        self,
        *,
        prompt: str,
        generation_mode: str | None = None,
        image_urls: list[str] | None = None,
        duration: int | str = DEFAULT_DURATION,
        aspect_ratio: str | None = None,
        sound: bool = DEFAULT_SOUND,
        prompt_directory_optin: bool = OPERATOR_DEFAULT_PROMPT_DIRECTORY_OPTIN,
        kling_conn_id: str = DEFAULT_CONN_ID,
        wait_for_completion: bool = True,
        deferrable: bool = conf.getboolean("operators", "default_deferrable", fallback=False),
        poll_interval: float | None = None,
        timeout: float | timedelta = timedelta(minutes=30),
        max_credits: float | None = None,
        output_path: str | None = None,
        on_unconfirmed_submit: Literal["fail", "resubmit"] = "fail",
        regenerate: bool | str = False,
        openlineage_include_prompt: bool = False,
        run_credit_limit: float | None = None,
        model_name: str | None = None,
        mode: str | None = None,
        negative_prompt: str | None = None,
        camera_control: dict[str, Any] | None = None,
        cfg_scale: float | None = None,
        image_tail_url: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        _check_settings(run_credit_limit, on_unconfirmed_submit, poll_interval)
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
        self.max_credits = max_credits
        self.output_path = output_path
        self.on_unconfirmed_submit = on_unconfirmed_submit
        self.regenerate = regenerate
        self.openlineage_include_prompt = openlineage_include_prompt
        self.run_credit_limit = run_credit_limit
        self.model_name = model_name
        self.mode = mode
        self.negative_prompt = negative_prompt
        self.camera_control = camera_control
        self.cfg_scale = cfg_scale
        self.image_tail_url = image_tail_url
        if output_path and not any(isinstance(outlet, AssetAlias) for outlet in self.outlets):
            self.outlets = [*self.outlets, AssetAlias(DEFAULT_ASSET_ALIAS)]

    def _generation_request(self) -> GenerationRequest:
        # The operator's parameters of the request bear the request's own names; the connection
        # says which API's rules they must meet.
        fields = {name: getattr(self, name) for name in REQUEST_FIELDS}
        return GenerationRequest(api=self.hook.dialect.name, **fields)

    @cached_property
    def hook(self) -> KlingHook:
        from airflow_provider_kling.hooks.kling import KlingHook

        return KlingHook(self.kling_conn_id)

    def execute(self, context: Context) -> Any:
        self._started = time.monotonic()
        return self._generate(context)

    def submit_when_a_job_ends(self, context: Context, event: Any = None, until: float | None = None) -> Any:
        """Resume after waiting, in the triggerer, for a running job of the account to end (a submit
        refused with code 1303), within the first try's ``timeout`` (``until``, Unix time)."""
        self._started = time.monotonic() - (_seconds(self.timeout) - ((until or time.time()) - time.time()))
        return self._generate(context)

    def _generate(self, context: Context) -> Any:
        if problems := self._request_problems():
            raise AirflowFailException(str(KlingValidationError(problems)))
        self._store = context.get("task_state_store") if self.durable else None
        if (
            self._store is None
            and context["ti"].try_number > 1
            and not self.hook.dialect.has_external_task_id
        ):
            self.log.warning(
                "No task_state_store here (it needs Airflow 3.3 and durable=True): this retry submits a "
                "new Kling job, paying again, even if the previous try's job is still running; the DAG "
                "run's credit ledger counts each earlier try at its estimate."
            )
        self._ledger = _RunLedger(context["ti"], self._generation_task_ids(), self.hook.dialect.credit_unit)
        if paid := self._paid_so_far(self._stored(), context):
            # Airflow cleared this task instance's XComs as the try began: what it paid goes back in.
            self._ledger.write(LedgerEntry(paid))
        try:
            return self.execute_resumable(context)
        except FINAL_ERRORS as error:
            raise AirflowFailException(str(error)) from error
        except KlingConcurrencyLimitError as full:
            return self._when_a_job_ends(context, full)
        except KlingSubmitUncertainError as error:
            # Where submits carry an external_task_id, a retry finds the job by it: nothing to fail for.
            if self.on_unconfirmed_submit == "fail" and not self.hook.dialect.has_external_task_id:
                raise AirflowFailException(f"{error} {self._how_to_reset(context)}") from error
            raise

    def _when_a_job_ends(self, context: Context, full: KlingConcurrencyLimitError) -> Any:
        """Submit again once a running job of the account may have ended: the API made no job, and
        refused only for the account's jobs in progress. Waits in the triggerer when deferrable;
        past the task's ``timeout`` the refusal ends the try, for the task's retries."""
        wait = full.retry_after or full.DEFAULT_WAIT
        if self._time_left() <= wait:
            raise full
        self.log.info(
            "Kling runs as many jobs as the account allows; no job was made. Submitting again in %g s.", wait
        )
        if self.deferrable:
            from airflow.providers.standard.triggers.temporal import TimeDeltaTrigger

            self.defer(
                trigger=TimeDeltaTrigger(timedelta(seconds=wait)),
                method_name="submit_when_a_job_ends",
                kwargs={"until": time.time() + self._time_left()},
            )
        time.sleep(wait)
        return self._generate(context)

    def _request_problems(self) -> list[FieldError]:
        """Every broken rule of this try's request, found before anything is sent."""
        problems: list[FieldError] = []
        try:
            self._regenerate = _regenerate_flag(self.regenerate)
        except KlingValidationError as invalid:
            problems += invalid.errors
        try:
            self._request = self._generation_request()
            if self.max_credits is not None:
                self._request.check_budget(self.max_credits)
        except KlingValidationError as invalid:
            problems += invalid.errors
        except (KlingConnectionSettingError, KlingAuthError) as unusable:  # the connection names the API
            raise AirflowFailException(str(unusable)) from unusable
        return problems

    # -- ResumableJobMixin: submit once, reattach on retry -----------------------------------------
    # The "external id" the mixin keeps in task_state_store is our Submission record, in its JSON
    # form: first a mark that the request was sent, then the job the vendor accepted.

    def submit_job(self, context: Context) -> dict[str, Any]:
        request: GenerationRequest = self._request
        # Read the connection before marking the request as sent: an unusable one (no key, a bad
        # extra) fails here, leaving no mark that would make a retry fear a paid job.
        dialect = self.hook.dialect
        previous = self._stored()
        external_id = (
            self._external_task_id(previous, request, context) if dialect.has_external_task_id else None
        )
        if external_id is None:  # a lost answer cannot be found again: on_unconfirmed_submit decides
            self._check_unconfirmed(previous, request, context)
        paid = self._paid_so_far(previous, context)
        claim(
            self._ledger,
            paid,
            request.estimated_credits,
            self.run_credit_limit,
            deadline=time.time() + self._time_left(),
            unit=dialect.credit_unit,
        )
        submitted, external_id = self._send(request, previous, paid, external_id, context)
        # submitted_at after any retries: the job's age counts from its answer.
        submission = Submission.accepted(
            request.fingerprint(),
            clear_round(context),
            submitted,
            time.time(),
            paid_before=paid,
            external_task_id=external_id,
        )
        # ResumableJobMixin stores the submission as soon as this returns, before anything else
        # (the task_id's XCom included, pushed when the wait starts) can fail.
        if submitted.credits_used is None:
            self.log.info("Kling job %s accepted; what it costs is known when it ends.", submitted.task_id)
        else:
            self.log.info(
                "Kling job %s accepted: %s credits used, %s remaining",
                submitted.task_id,
                submitted.credits_used,
                submitted.credits_remaining,
            )
        tags = metrics.task_tags(self.kling_conn_id, context["ti"])
        metrics.submitted(tags, submitted.credits_used, submitted.credits_remaining, dialect.credit_unit)
        return submission.to_json()

    def _external_task_id(
        self, previous: Submission | None, request: GenerationRequest, context: Context
    ) -> str:
        """This take's external_task_id: a stored uncertain submit's own (its job is then found by
        it), else one derived from the task instance, its take, and the job it replaces."""
        fingerprint = request.fingerprint()
        if (
            previous is not None
            and previous.pending
            and previous.external_task_id
            and previous.fingerprint == fingerprint
            and not self._is_retake(previous, context)
        ):
            return previous.external_task_id
        replaced = previous.task_id if previous is not None else None
        return external_task_id_for(context["ti"], clear_round(context), fingerprint, replaced)

    def _mark_sent(
        self, request: GenerationRequest, paid: float, external_id: str | None, context: Context
    ) -> None:
        """Mark the request as sent: a retry that finds only this mark fears a paid job, or, with an
        external_task_id, looks for it."""
        if self._store is not None:
            sent = Submission(
                fingerprint=request.fingerprint(),
                round=clear_round(context),
                external_task_id=external_id,
                paid_before=paid,
            )
            self._store.set(self.external_id_key, sent.to_json())

    def _send(
        self,
        request: GenerationRequest,
        previous: Submission | None,
        paid: float,
        external_id: str | None,
        context: Context,
    ) -> tuple[SubmitResult, str | None]:
        """Submit ``request``; when that provably created no job, take back the sent mark and the
        run ledger's reservation, so a retry may send it again. With an external_task_id taken by a
        job that failed (an earlier try's), the take goes on under the next id."""
        self.log.info(
            "Submitting Kling %s, %s s%s (estimated %g %s).%s",
            request.generation_mode.value,
            request.duration,
            " with sound" if request.sound else "",
            request.estimated_credits,
            request.dialect.credit_unit,
            _prompt_sharing(request),
        )
        try:
            for _taken in range(MAX_TAKEN_IDS):
                self._mark_sent(request, paid, external_id, context)
                submitted = self.hook.submit(request, external_task_id=external_id)
                if submitted.extra.get("found_state") != JobState.FAILED.value:
                    return submitted, external_id
                self.log.warning(
                    "Kling job %s, found by external_task_id %s, had failed: submitting under the next id.",
                    submitted.task_id,
                    external_id,
                )
                external_id = external_task_id_for(
                    context["ti"], clear_round(context), request.fingerprint(), submitted.task_id
                )
            raise KlingError(
                f"{MAX_TAKEN_IDS} Kling jobs of this take, found by their external_task_id, had all "
                "failed; not submitting another. Clear the task to try again."
            )
        except Exception as error:
            if created_no_job(error):
                if self._store is not None:  # first: a mark left behind would make a retry fear a paid job
                    self._restore(self._store, previous)
                self._ledger.write(LedgerEntry(paid))
            raise

    def _stored(self) -> Submission | None:
        """The record task_state_store keeps of this task instance's submission, if any."""
        return None if self._store is None else Submission.from_json(self._store.get(self.external_id_key))

    def _paid_so_far(self, previous: Submission | None, context: Context) -> float:
        """Credits this task instance's earlier tries in this DAG run paid, as far as can be known: the
        stored record's count; without task_state_store, the estimate once per earlier try, since each
        may have paid for a job and nothing else remembers (the run's credit limit errs safe)."""
        if previous is not None:
            if getattr(self, "_stored_job_failed", False) and not self.hook.dialect.charges_failed_jobs:
                return previous.paid_before  # its job failed, and a failed job is not charged
            return previous.spent(self._request.estimated_credits)
        if self._store is None:
            return (context["ti"].try_number - 1) * self._request.estimated_credits
        return 0

    def _restore(self, store: Any, previous: Submission | None) -> None:
        """Put back the record a submit that created no job replaced, keeping what was paid before."""
        if previous is None:
            store.delete(self.external_id_key)
        else:
            store.set(self.external_id_key, previous.to_json())

    def _generation_task_ids(self) -> list[str]:
        """The DAG's Kling generation tasks, mapped or not: whose ledger entries make the run's spend."""
        dag = self.get_dag()
        tasks = dag.tasks if dag is not None else [self]
        return [
            task.task_id
            for task in tasks
            if issubclass(getattr(task, "operator_class", type(task)), KlingGenerateOperator)
        ]

    def _check_unconfirmed(
        self, previous: Submission | None, request: GenerationRequest, context: Context
    ) -> None:
        """If an earlier try sent this same request and never learnt its task_id, a job may be paid for
        already: ``on_unconfirmed_submit`` decides whether to send it again."""
        if (
            previous is not None
            and previous.pending
            and previous.fingerprint == request.fingerprint()
            and not self._is_retake(previous, context)
        ):
            self._handle_unconfirmed_submit(context)

    def _announce(self, context: Context, task_id: str) -> None:
        """Push the vendor task_id to XCom, once per try."""
        if getattr(self, "_task_id", None) != task_id:
            self._task_id = task_id
            context["ti"].xcom_push(key="task_id", value=task_id)

    def _how_to_reset(self, context: Context) -> str:
        ti = context["ti"]
        return (
            "Check the vendor dashboard for the job; to submit anew, delete this task's state key "
            f"'{self.external_id_key}' (REST API: DELETE /api/v2/dags/{ti.dag_id}/dagRuns/{ti.run_id}/"
            f"taskInstances/{ti.task_id}/state-store/{self.external_id_key}), then clear the task."
        )

    def _handle_unconfirmed_submit(self, context: Context) -> None:
        warning = (
            "An earlier try sent this Kling request but never learnt its task_id, so a job may exist "
            "and be paid for already"
        )
        if self.on_unconfirmed_submit == "fail":
            raise AirflowFailException(
                f"{warning}. Not submitting again (on_unconfirmed_submit='fail'). "
                + self._how_to_reset(context)
            )
        self.log.warning(
            "%s. Submitting again (on_unconfirmed_submit='resubmit'): one video may be paid twice.", warning
        )

    def _is_retake(self, submission: Submission, context: Context) -> bool:
        """Whether regenerate=True turns this stored submission down: it is from before a clear."""
        return self._regenerate and submission.round != clear_round(context)

    def get_job_status(self, external_id: Any, context: Context) -> str:
        stored = Submission.from_json(external_id)
        if stored is None or stored.pending:
            if stored is not None and self._is_retake(stored, context):
                self._log_retake(stored)
                return RETAKE
            return UNCONFIRMED  # sent, answer never seen (or a record we cannot read): a job may exist
        if self._is_retake(stored, context):
            self._log_retake(stored)
            return RETAKE
        if stored.fingerprint != self._request.fingerprint():
            self.log.warning(
                "The stored Kling job %s was for other parameters (the task changed since): submitting anew.",
                stored.task_id,
            )
            return SUPERSEDED
        task_id = str(stored.task_id)
        self._announce(context, task_id)
        try:
            status = self.hook.get_status(
                task_id, timeout=self._time_left(), generation_mode=self._request.generation_mode
            )
            self._stored_job_failed = status.state is JobState.FAILED
            return status.state.value  # what the vendor's word means, whichever API said it
        except KlingNotFoundError:
            self.log.warning("The vendor no longer knows the stored Kling job %s: submitting anew.", task_id)
            return VANISHED

    def _log_retake(self, stored: Submission) -> None:
        self.log.warning(
            "regenerate=True: not reusing Kling job %s from an earlier run of this task; submitting a "
            "new job, paying again.",
            stored.task_id or "(submitted, task_id never learnt)",
        )

    def is_job_active(self, status: str) -> bool:
        return status == JobState.RUNNING.value

    def is_job_succeeded(self, status: str) -> bool:
        return status == JobState.COMPLETED.value

    def poll_until_complete(self, external_id: Any, context: Context) -> Any:
        # The mixin returns this on a reattach, and calls get_job_result after it on a fresh submit.
        job = self._job(external_id)
        task_id = str(job.task_id)
        self._announce(context, task_id)
        self._ledger.write(LedgerEntry(job.spent(self._request.estimated_credits)))
        if not self.wait_for_completion:
            return task_id
        deadline = time.time() + _seconds(self.timeout)
        if self.deferrable:
            # Not at DAG-parse time:
            from airflow_provider_kling.task_end import trigger_ending
            from airflow_provider_kling.triggers.kling import KlingStatusTrigger

            self.defer(
                trigger=KlingStatusTrigger(
                    kling_task_id=task_id,
                    deadline=deadline,
                    poll_interval=self.poll_interval,
                    kling_conn_id=self.kling_conn_id,
                    generation_mode=self._request.generation_mode.value,
                    submitted_at=job.submitted_at,
                    expected_seconds=self.hook.expected_seconds(job.expected_seconds),
                    # A ready video ends the task in the triggerer (one task start per generation)
                    # unless the task needs more of a worker's end: output_path's download and
                    # asset event, a callback, OpenLineage... (task_end.py).
                    **trigger_ending(self, context["ti"], self.log),
                    credits_used=job.credits_used,
                    credits_remaining=job.credits_remaining,
                ),
                method_name="execute_complete",
                kwargs={"submission": external_id},
                timeout=timedelta(seconds=_seconds(self.timeout)) + DEFER_SAFETY_MARGIN,
            )
        schedule = schedule_for(
            self.poll_interval, job.submitted_at, self.hook.expected_seconds(job.expected_seconds)
        )
        event = asyncio.run(self._wait_here(task_id, deadline, schedule))
        metrics.wait_ended(
            metrics.task_tags(self.kling_conn_id, context["ti"]), event, job.submitted_at, time.time()
        )
        return self._result(self._ended(event, job, context), job, context)

    @staticmethod
    def _job(external_id: Any) -> Submission:
        """The stored job the mixin hands back (only ever one the vendor accepted, at this point)."""
        job = Submission.from_json(external_id)
        if job is None or job.pending:
            raise KlingError(f"The stored Kling submission is not a job: {external_id!r}")
        return job

    async def _wait_here(self, task_id: str, deadline: float, schedule: Any) -> dict[str, Any]:
        """The trigger's wait, run in this worker (not deferrable): the same core loop and event."""
        async with self.hook.polling_session():
            mode = self._request.generation_mode
            return await wait_for_job(
                lambda: self.hook.aget_status(task_id, generation_mode=mode), task_id, deadline, schedule
            )

    def get_job_result(self, external_id: Any, context: Context) -> Any:
        job = self._job(external_id)
        if not self.wait_for_completion:
            return job.task_id
        if hasattr(self, "_finished"):
            return self._finished
        # An earlier try's job had already finished: read its result once more.
        status = self.hook.get_status(
            str(job.task_id), timeout=self._time_left(), generation_mode=self._request.generation_mode
        )
        return self._result(status.as_dict(), job, context)

    def _time_left(self) -> float:
        """What is left of ``timeout`` since this try began: reattach reads may not outlast it."""
        return _seconds(self.timeout) - (time.monotonic() - self._started)

    def execute_complete(self, context: Context, event: Any, submission: Any = None) -> Any:
        """Resume after the trigger's one event: the result, or a clear error."""
        if submission is None and (store := context.get("task_state_store")) is not None:
            submission = store.get(self.external_id_key)  # dag.test() drops the defer kwargs
        job = Submission.from_json(submission)
        try:
            if event == TASK_ENDED_EVENT:  # the trigger ended the task, and dag.test() resumed it
                status = self.hook.get_status(self._announced_task_id(context, job)).as_dict()
            else:
                status = self._ended(event, job, context)
            return self._result(status, job, context)
        except FINAL_ERRORS as error:
            raise AirflowFailException(str(error)) from error

    def _ended(self, event: Any, job: Submission | None, context: Context) -> dict[str, Any]:
        """The finished job's status from its wait's event; where a failed job is not charged, its
        entry in the run's credit ledger takes back the estimate first."""
        try:
            return result_from_event(event)
        except KlingJobFailedError:
            if job is not None and not self.hook.dialect.charges_failed_jobs:
                ledger = _RunLedger(context["ti"], self._generation_task_ids(), self.hook.dialect.credit_unit)
                ledger.write(LedgerEntry(job.paid_before))
            raise

    def _announced_task_id(self, context: Context, job: Submission | None) -> str:
        """The job's vendor task_id: from its stored record, else from the XCom this try pushed."""
        if job is not None and job.task_id:
            return str(job.task_id)
        ti = context["ti"]
        return str(ti.xcom_pull(task_ids=ti.task_id, key="task_id", map_indexes=ti.map_index))

    def _result(
        self, status: dict[str, Any], submission: Submission | None, context: Context
    ) -> dict[str, Any]:
        credits = (submission.credits_used, submission.credits_remaining) if submission else (None, None)
        result = video_result(status, *credits)
        setattr(self, VIDEO_URL_ATTRIBUTE, result["video_url"])  # for the "Kling video" link
        self.log.info("Kling video ready: %s", result["video_url"])
        if self.output_path:
            result |= keep_video(self.hook, result, str(self.output_path), self.outlets, context)
        self._finished = result
        return result

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """What OpenLineage records of this generation (with the ``openlineage`` extra): the input
        images, the kept video, and how it was made; the prompt only with ``openlineage_include_prompt``."""
        from airflow_provider_kling.lineage import lineage_of

        return lineage_of(
            self._generation_request(), getattr(self, "_finished", None), self.openlineage_include_prompt
        )

    def on_kill(self) -> None:
        task_id = getattr(self, "_task_id", None)
        self.log.warning(
            "Task killed. The Kling job %s keeps running at the vendor (the API has no cancel call) "
            "and is charged.",
            task_id or "(if one was submitted)",
        )


def keep_video(
    hook: KlingHook, result: dict[str, Any], output_path: str, outlets: Sequence[Any], context: Context
) -> dict[str, Any]:
    """Download a finished generation's video to ``output_path`` and announce it through the task's
    AssetAlias outlets with the job's facts; its path, size and sha256."""
    from airflow.sdk import ObjectStoragePath

    saved = hook.download_video(result["video_url"], ObjectStoragePath(output_path))
    facts = {k: result[k] for k in ("task_id", "duration", "has_audio", "credits_used")}
    facts |= {"bytes": saved.bytes, "sha256": saved.sha256}
    for alias in (outlet for outlet in outlets if isinstance(outlet, AssetAlias)):
        context["outlet_events"][alias].add(Asset(saved.path), extra=facts)
    return {"path": saved.path, "bytes": saved.bytes, "sha256": saved.sha256}


class KlingKeepVideoOperator(BaseOperator):
    """Keep the video of a Kling job that finished earlier: for a video approved in a review, or one a
    sensor waited for. Reads the job again (for a current ``video_url``), downloads the video to
    ``output_path`` as KlingGenerateOperator's ``output_path`` does, and announces it as an Asset
    event through the task's AssetAlias outlets (``kling_videos`` by default). Submits nothing.

    Returns the job's result, as KlingGenerateOperator returns it (credits_used and
    credits_remaining None: the status does not carry them), with path, bytes and sha256.

    :param kling_task_id: (templated) the vendor task_id of a completed job.
    :param output_path: (templated) where to keep the video, any ObjectStoragePath URL.
    :param kling_conn_id: the Airflow connection (type ``kling``) to the API.
    """

    template_fields: Sequence[str] = ("kling_task_id", "output_path")
    ui_color = "#f2e6ff"
    operator_extra_links = (KlingVideoLink(),)

    def __init__(
        self, *, kling_task_id: str, output_path: str, kling_conn_id: str = DEFAULT_CONN_ID, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.kling_task_id = kling_task_id
        self.output_path = output_path
        self.kling_conn_id = kling_conn_id
        if not any(isinstance(outlet, AssetAlias) for outlet in self.outlets):
            self.outlets = [*self.outlets, AssetAlias(DEFAULT_ASSET_ALIAS)]

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_kling.hooks.kling import KlingHook

        hook = KlingHook(self.kling_conn_id)
        try:
            status = hook.get_status(str(self.kling_task_id))
        except (*FINAL_ERRORS, KlingNotFoundError) as error:
            raise AirflowFailException(str(error)) from error
        if status.state is JobState.FAILED:
            raise AirflowFailException(f"Kling job {status.task_id} failed at the vendor: no video to keep.")
        if status.state is not JobState.COMPLETED:
            raise KlingError(
                f"Kling job {status.task_id} is {status.status}, not finished: a retry looks again."
            )
        result = video_result(status.as_dict())
        setattr(self, VIDEO_URL_ATTRIBUTE, result["video_url"])  # for the "Kling video" link
        return result | keep_video(hook, result, str(self.output_path), self.outlets, context)


class _RunLedger:
    """The DAG run's credit ledger in XCom: each generation task instance writes its own entry
    (key ``kling_credits``), in its API's ``unit``, and reads those of all the DAG's Kling generation
    tasks."""

    def __init__(self, ti: Any, task_ids: list[str], unit: str) -> None:
        self._ti, self._task_ids, self._unit = ti, task_ids, unit
        self._written: LedgerEntry | None = None

    def write(self, entry: LedgerEntry) -> None:
        """Write this task instance's entry, unless it already says so."""
        entry = replace(entry, unit=self._unit)
        if entry != self._written:
            self._ti.xcom_push(key=LEDGER_KEY, value=entry.to_json())
            self._written = entry

    def read(self) -> list[LedgerEntry]:
        values = self._ti.xcom_pull(task_ids=self._task_ids, key=LEDGER_KEY)  # every map index
        return [entry for value in values or () if (entry := LedgerEntry.from_json(value)) is not None]
