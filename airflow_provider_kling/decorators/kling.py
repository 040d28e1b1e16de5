"""``@task.kling``: a TaskFlow function writes the request, and KlingGenerateOperator makes the video.

The function returns the prompt (a str) or a dict of request fields; the decorator's arguments are
the operator's, and the task returns what the operator returns.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.providers.common.compat.sdk import (
    SET_DURING_EXECUTION,
    AirflowFailException,
    DecoratedOperator,
    TaskDecorator,
    context_merge,
    determine_kwargs,
    task_decorator_factory,
)

from airflow_provider_kling.core.errors import FieldError, KlingValidationError
from airflow_provider_kling.core.request import REQUEST_FIELDS
from airflow_provider_kling.operators.kling import KlingGenerateOperator, clear_round

if TYPE_CHECKING:
    from airflow.sdk import Context

#: The task_state_store key of the fields the function returned in this run of the task.
RETURNED_KEY = "kling_returned"
#: The XCom key of the request fields the function returned: the task's rendered ``prompt`` is only
#: a placeholder, so the gallery reads them from here.
REQUEST_KEY = "kling_request"


def returned_fields(returned: Any) -> tuple[dict[str, Any], list[FieldError]]:
    """The request fields a TaskFlow function's return value sets (a str is the prompt; a dict names
    its fields, the prompt among them), and the names in it that are no request field."""
    if isinstance(returned, str):
        return {"prompt": returned}, []
    if not isinstance(returned, dict):
        rule = "must be the prompt (a str) or a dict of request fields"
        raise KlingValidationError([FieldError("the function's return value", rule, returned)])
    names = ", ".join(REQUEST_FIELDS)
    unknown = [
        FieldError(str(name), f"is not a request field (the fields: {names})", value)
        for name, value in returned.items()
        if name not in REQUEST_FIELDS
    ]
    # A dict without a prompt leaves none: the operator's check then says it is required.
    fields = {"prompt": None} | {name: value for name, value in returned.items() if name in REQUEST_FIELDS}
    return fields, unknown


def _kept_fields(store: Any, run_round: int) -> dict[str, Any] | None:
    """The fields task_state_store keeps from this run of the task's first try, if any."""
    kept = store.get(RETURNED_KEY) if store is not None else None
    if isinstance(kept, dict) and kept.get("round") == run_round and isinstance(kept.get("fields"), dict):
        return dict(kept["fields"])
    return None


class KlingDecoratedOperator(DecoratedOperator, KlingGenerateOperator):
    """KlingGenerateOperator with its request written by a TaskFlow function (``@task.kling``).

    The function runs when the task starts; its fields win over the decorator's arguments, and are
    used as returned, not rendered as templates (a prompt is free text that may hold braces). A
    retry in the same run of the task sends what the function returned on the first try instead of
    calling it again (kept in ``task_state_store``, Airflow 3.3+), so a function that writes a new
    prompt each call still reattaches to the job it paid for; a cleared task calls it again.

    :param python_callable: the function that returns the prompt or the request's fields.
    :param op_args: positional arguments for the function (templated).
    :param op_kwargs: keyword arguments for the function (templated).
    :param kwargs: KlingGenerateOperator's parameters, ``prompt`` excepted.
    """

    template_fields: Sequence[str] = (
        *DecoratedOperator.template_fields,
        *KlingGenerateOperator.template_fields,
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {**DecoratedOperator.template_fields_renderers}
    custom_operator_name = "@task.kling"

    def __init__(
        self,
        *,
        python_callable: Callable[..., Any],
        op_args: Collection[Any] | None = None,
        op_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            python_callable=python_callable,
            op_args=op_args,
            op_kwargs=op_kwargs,
            prompt=SET_DURING_EXECUTION,
            **kwargs,
        )

    def execute(self, context: Context) -> Any:
        try:
            self._returned, self._unknown_fields = self._fields_for_this_run(context)
        except KlingValidationError as invalid:
            raise AirflowFailException(str(invalid)) from invalid
        self._use(self._returned)
        context["ti"].xcom_push(key=REQUEST_KEY, value=self._returned)
        return super().execute(context)

    def _request_problems(self) -> list[FieldError]:
        return [*self._unknown_fields, *super()._request_problems()]

    def defer(self, *, kwargs: dict[str, Any] | None = None, **rest: Any) -> Any:
        # The try resumes with the fields it sent, without calling the function again.
        super().defer(kwargs={**(kwargs or {}), "returned": self._returned}, **rest)

    def execute_complete(
        self, context: Context, event: Any, submission: Any = None, returned: Any = None
    ) -> Any:
        if returned is None:  # dag.test() drops the defer kwargs
            returned = _kept_fields(context.get("task_state_store"), clear_round(context))
        if returned is not None:
            self._use(returned)
        return super().execute_complete(context, event, submission)

    def _fields_for_this_run(self, context: Context) -> tuple[dict[str, Any], list[FieldError]]:
        """What the function returned on this run's first try, when kept; else its answer now."""
        store = context.get("task_state_store") if self.durable else None
        if (kept := _kept_fields(store, clear_round(context))) is not None:
            self.log.info("Sending the request the function returned on this run's first try.")
            return kept, []
        context_merge(context, self.op_kwargs)
        arguments = determine_kwargs(self.python_callable, self.op_args, context)
        fields, unknown = returned_fields(self.python_callable(*self.op_args, **arguments))
        if store is not None and not unknown:
            store.set(RETURNED_KEY, {"round": clear_round(context), "fields": fields})
        return fields, unknown

    def _use(self, fields: Mapping[str, Any]) -> None:
        for name, value in fields.items():
            setattr(self, name, value)


def kling_task(python_callable: Callable[..., Any] | None = None, **kwargs: Any) -> TaskDecorator:
    """``@task.kling``: wrap a function that returns the prompt (or the request's fields) into a
    Kling generation task. Takes KlingGenerateOperator's parameters.

    :param python_callable: the function to decorate.
    :param kwargs: KlingGenerateOperator's parameters; ``multiple_outputs`` defaults to ``False``
        (the function returns the request, not the task's result).
    """
    kwargs.setdefault("multiple_outputs", False)
    return task_decorator_factory(
        python_callable=python_callable, decorated_operator_class=KlingDecoratedOperator, **kwargs
    )
