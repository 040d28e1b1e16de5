"""For tests that drive an operator's methods directly: a dict-backed task_state_store and a
task instance and context holding just what the operator reads."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import pytest


class FakeStore(dict[str, Any]):
    def set(self, key: str, value: Any) -> None:
        self[key] = value

    def delete(self, key: str) -> None:
        self.pop(key, None)


@dataclass
class FakeTaskInstance:
    try_number: int = 1
    max_tries: int = 0  # Airflow sets it to try_number + retries on every clear
    dag_id: str = "videos"
    run_id: str = "manual_1"
    task_id: str = "generate"
    map_index: int = -1
    stats_tags: dict[str, str] = field(default_factory=dict)
    xcoms: dict[str, Any] = field(default_factory=dict)
    others: list[Any] = field(default_factory=list)
    """What the run's other generations pushed: a pull over the DAG's tasks returns them too."""

    def xcom_push(self, key: str, value: Any) -> None:
        self.xcoms[key] = value

    def xcom_pull(self, task_ids: Any = None, key: str = "return_value", **_: Any) -> Any:
        """This task instance's XCom; pulled over several tasks, the others' too."""
        value = self.xcoms.get(key)
        return value if isinstance(task_ids, (str, type(None))) else [value, *self.others]


class FakeAliasEvents:
    def __init__(self) -> None:
        self.added: list[tuple[str, dict[str, Any]]] = []

    def add(self, asset: Any, extra: dict[str, Any] | None = None) -> None:
        self.added.append((asset.uri, extra or {}))


class FakeOutletEvents(defaultdict[str, FakeAliasEvents]):
    """context["outlet_events"], keyed by alias name (an AssetAlias is not hashable on Airflow 3.1)."""

    def __init__(self) -> None:
        super().__init__(FakeAliasEvents)

    def __getitem__(self, alias: Any) -> FakeAliasEvents:
        return super().__getitem__(alias.name)


def logged(capfd: pytest.CaptureFixture[str]) -> str:
    """What the task logged: Airflow's task logger writes to the process's output, not to caplog."""
    out, err = capfd.readouterr()
    return out + err


def context_with(store: FakeStore | None, try_number: int = 1, max_tries: int = 0) -> Any:
    return {
        "task_state_store": store,
        "ti": FakeTaskInstance(try_number=try_number, max_tries=max_tries),
        "outlet_events": FakeOutletEvents(),
    }
