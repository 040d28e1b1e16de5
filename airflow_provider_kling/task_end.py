"""Where a Kling wait may end its task: in the triggerer, or back on a worker.

A task ended in the triggerer (Airflow's ``TaskSuccessEvent``) skips the worker's end of a task, so
each thing that end does is either done by the trigger exactly as the worker does it, or its
presence sends the task back to a worker. :data:`WORKER_END` lists them all, read from Airflow's
task runner, ``airflow/sdk/execution_time/task_runner.py`` (``_execute_task``,
``_run_task_and_map_outcome``, ``_push_xcom_if_needed``, ``_handle_current_task_success``,
``finalize``), and from what a task-end event does instead (``handle_event_submit`` for
``BaseTaskEndEvent`` in ``airflow/models/trigger.py``), in Airflow 3.1.8 and 3.3.2. Read those
functions again for each new Airflow version and bring the list up to date.

Left out on purpose: the task runner's StatsD counters of its own process (``ti.start``,
``ti.finish``, ``operator_successes``, ``ti_successes``, ``task.duration``), which count worker
processes; a task ended by Airflow's own task-end events is left out of them the same way. The
provider's own metrics (``kling.generation.*``) are sent from the trigger either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from airflow.providers.common.compat.sdk import conf
from airflow.sdk import BaseOperator


@dataclass(frozen=True)
class WorkerEndStep:
    """One thing a worker's successful end of a task does.

    :param what: what it does.
    :param source: where Airflow does it (a function of the task runner).
    :param done_by_trigger: how the trigger does the same, or None: then a task that ``needs`` it
        goes back to a worker.
    :param needs: for a step the trigger does not do, whether a task (mapped or not) needs it.
    """

    what: str
    source: str
    done_by_trigger: str | None
    needs: Callable[[Any, bool], bool] | None = None


def _has_post_execute(task: Any, mapped: bool) -> bool:
    # The task runner's own test: a post_execute= hook, or a post_execute of the task's class.
    overridden = getattr(task.post_execute, "__func__", None) is not BaseOperator.post_execute
    return task._post_execute_hook is not None or overridden


def _has_mapped_dependants(task: Any, mapped: bool) -> bool:
    # The worker records how many items a downstream .expand()/.map() maps over only for a task
    # that is not mapped itself; a mapped task's map indexes are counted without it.
    # A task in no DAG (yet) has no downstream tasks.
    return not mapped and task.has_dag() and next(task.iter_mapped_dependants(), None) is not None


def success_listeners() -> list[str]:
    """The listeners the task runner here would tell of a task's success (OpenLineage among them)."""
    hook = _task_runner_listeners().hook.on_task_instance_success
    return [implementation.plugin_name for implementation in hook.get_hookimpls()]


def _task_runner_listeners() -> Any:
    try:
        from airflow.sdk.listener import get_listener_manager  # Airflow 3.2+
    except ImportError:
        from airflow.listeners.listener import get_listener_manager as core_listeners

        return core_listeners()
    return get_listener_manager()


#: Everything a worker's successful end of a task does, in the order the task runner does it.
WORKER_END = (
    WorkerEndStep(
        "the task's post_execute (an override, or the post_execute= hook)",
        "_execute_task",
        None,
        _has_post_execute,
    ),
    WorkerEndStep(
        "the map index rendered again after execution (map_index_template)",
        "_run_task_and_map_outcome",
        None,
        lambda task, mapped: bool(task.map_index_template),
    ),
    WorkerEndStep(
        "no return_value XCom (do_xcom_push=False)",
        "_push_xcom_if_needed",
        None,
        lambda task, mapped: not task.do_xcom_push,
    ),
    WorkerEndStep(
        "the result marked as the DAG's result (returns_dag_result)",
        "_xcom_push",
        None,
        lambda task, mapped: bool(getattr(task, "returns_dag_result", False)),
    ),
    WorkerEndStep(
        "the task map that a downstream .expand() or .map() over the result reads",
        "_push_xcom_if_needed (mapped_length)",
        None,
        _has_mapped_dependants,
    ),
    WorkerEndStep(
        "an XCom per key of the result (multiple_outputs)",
        "_push_xcom_if_needed",
        "pushed through the Task SDK's XCom, each key before return_value",
    ),
    WorkerEndStep(
        "the return_value XCom",
        "_push_xcom_if_needed",
        "pushed through the Task SDK's XCom (and any XCom backend), as the worker pushes it",
    ),
    WorkerEndStep(
        "asset events for the task's outlets",
        "_handle_current_task_success (task_outlets, outlet_events)",
        None,
        lambda task, mapped: bool(task.outlets),
    ),
    WorkerEndStep(
        "the task state cleared on success ([state_store] clear_on_success, Airflow 3.3+)",
        "_handle_current_task_success",
        None,
        lambda task, mapped: conf.getboolean("state_store", "clear_on_success", fallback=False),
    ),
    WorkerEndStep(
        "an XCom per operator extra link (the Kling video link)",
        "finalize",
        "pushed straight to Airflow's database (XCom._set_xcom_in_db), as the worker pushes it",
    ),
    WorkerEndStep(
        "the rendered template fields written again (overwrite_rtif_after_execution)",
        "finalize",
        None,
        lambda task, mapped: bool(getattr(task, "overwrite_rtif_after_execution", False)),
    ),
    WorkerEndStep(
        # A task-end event has the dag-processor run it instead: another process, later, with
        # another context.
        "the task's on_success_callback",
        "finalize",
        None,
        lambda task, mapped: bool(task.on_success_callback),
    ),
    WorkerEndStep(
        "listeners told of the task's success (on_task_instance_success: OpenLineage and others)",
        "finalize",
        None,
        lambda task, mapped: bool(success_listeners()),
    ),
)


def left_for_worker(task: Any, mapped: bool) -> list[str]:
    """What of a worker's end ``task`` needs that the trigger cannot do (empty: it may end there).

    :param task: the operator or sensor, as the worker or the DAG parser has it.
    :param mapped: whether this task instance is one of a mapped task's.
    """
    return [step.what for step in WORKER_END if step.needs is not None and step.needs(task, mapped)]


def trigger_ending(task: Any, ti: Any, log: Any = None) -> dict[str, Any]:
    """KlingStatusTrigger's ``end_from_trigger`` and ``multiple_outputs`` for ``task`` running as
    ``ti`` (None: not yet running, and not mapped); with ``log``, says what sends the task back to
    a worker once the video is ready."""
    left = left_for_worker(task, mapped=ti is not None and ti.map_index is not None and ti.map_index >= 0)
    if left and log is not None:
        log.info("Once the video is ready, the task resumes on a worker for: %s.", "; ".join(left))
    return {"end_from_trigger": not left, "multiple_outputs": bool(task.multiple_outputs)}
