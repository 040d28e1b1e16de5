"""For tests that run DAGs with dag.test(): read what ran, and what each task logged."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import airflow
import pytest
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session
from packaging.version import Version

try:
    from airflow.dag_processing.dagbag import DagBag
except ImportError:  # Airflow 3.1 keeps it in airflow.models
    from airflow.models.dagbag import DagBag  # type: ignore[no-redef]

__all__ = [
    "HAS_TASK_STATE_STORE",
    "DagBag",
    "needs_task_state_store",
    "run_fast",
    "task_instance",
    "task_logs_of",
    "xcoms",
]

#: Reattaching on retry needs task_state_store, new in Airflow 3.3; older versions resubmit.
HAS_TASK_STATE_STORE = Version(airflow.__version__).release >= (3, 3)
needs_task_state_store = pytest.mark.skipif(
    not HAS_TASK_STATE_STORE, reason="task_state_store (reattach on retry) needs Airflow 3.3+"
)


def xcoms(dag_run: Any, task_id: str, key: str = "return_value") -> list[Any]:
    with create_session() as session:
        rows = session.scalars(
            XComModel.get_many(run_id=dag_run.run_id, dag_ids=dag_run.dag_id, task_ids=task_id, key=key)
        ).all()
        return [XComModel.deserialize_value(row) for row in sorted(rows, key=lambda row: row.map_index)]


def task_instance(dag_run: Any, task_id: str) -> TaskInstance:
    with create_session() as session:
        [ti] = [ti for ti in dag_run.get_task_instances(session=session) if ti.task_id == task_id]
        return ti


def task_logs_of(home: Path, dag_id: str, run_id: str, tail: int = 3000) -> str:
    """The end of every task log of a run on a real Airflow under ``home``: why a run failed, for
    an assertion's message."""
    folder = home / "logs" / f"dag_id={dag_id}" / f"run_id={run_id}"
    logs = sorted(folder.glob("**/attempt=*.log"))
    if not logs:
        return f"(no task logs under {folder})"
    return "\n".join(
        f"== {log.relative_to(folder)}\n{log.read_text(errors='replace')[-tail:]}" for log in logs
    )


def run_fast(dagbag: DagBag, dag_id: str, **task_overrides: Any) -> Any:
    """Run a DAG with dag.test(), polling every 0.2 s instead of the examples' 10 s."""
    dag = dagbag.dags[dag_id]
    for task in dag.tasks:
        overrides = {"poll_interval": 0.2, "poke_interval": 0.2, **task_overrides}
        for name, value in overrides.items():
            if name in getattr(task, "partial_kwargs", {}):
                task.partial_kwargs[name] = value
            elif hasattr(task, name) and not hasattr(task, "partial_kwargs"):
                setattr(task, name, value)
    return dag.test()
