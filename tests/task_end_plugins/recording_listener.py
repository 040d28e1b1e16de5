"""A listener plugin for tests/test_task_end_differential.py: records each task instance's success
(as OpenLineage's listener would report it) to ``$KLING_TASK_END_RECORDS/listener.jsonl``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin


class RecordSuccess:
    @hookimpl
    def on_task_instance_success(self, previous_state: Any, task_instance: Any) -> None:
        entry = {
            "dag_id": task_instance.dag_id,
            "task_id": task_instance.task_id,
            "map_index": task_instance.map_index,
        }
        with (Path(os.environ["KLING_TASK_END_RECORDS"]) / "listener.jsonl").open("a") as records:
            records.write(json.dumps(entry) + "\n")


class RecordingListenerPlugin(AirflowPlugin):
    name = "kling_recording_listener"
    listeners: ClassVar[list[Any]] = [RecordSuccess()]
