"""For tests that run DAGs with dag.test(): point a connection at the emulator, read what ran."""

from __future__ import annotations

import json
from typing import Any

import pytest
from airflow.models.taskinstance import TaskInstance
from airflow.models.xcom import XComModel
from airflow.utils.session import create_session

from airflow_provider_kling.emulator import KlingEmulator


def connect(
    monkeypatch: pytest.MonkeyPatch,
    emulator: KlingEmulator,
    conn_id: str = "kling_default",
    api_key: str | None = None,
) -> None:
    connection = {"conn_type": "kling", "host": emulator.base_url, "password": api_key or emulator.api_key}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(connection))


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
