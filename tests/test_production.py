"""A production-shaped Airflow: PostgreSQL, Redis, CeleryExecutor, two Celery workers, two triggerers.

Every component is a process of its own on loopback (api-server, scheduler, dag-processor, the
workers and the triggerers), with an emulator for each API (UlazAI's, and Kling's own for the DAGs
whose id ends in ``_klingai``), so that one can be killed as a machine would die. PostgreSQL and
Redis are Debian's (``./scripts/run-tests.sh`` installs them as root).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import HAS_TASK_STATE_STORE, task_logs_of
from deployment import (
    WORKERS,
    Deployment,
    Postgres,
    connection_env,
    missing_servers,
    production_airflow,
    wait_until,
)
from emulator_process import EmulatorProcess

DAGS = Path(__file__).resolve().parent / "production_dags"
#: A key no other part of the setup could produce, so finding it anywhere means it leaked (it is
#: also the Secret Key of Kling's own API's emulator).
API_KEY = f"production-secret-{uuid.uuid4().hex}"
ACCESS_KEY = f"production-access-{uuid.uuid4().hex}"
#: The header every token made for Kling's own API begins with: in a log, a token leaked.
TOKEN_HEADER = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
#: The DAG id suffix of each API's DAGs (production_dags/kling_production.py).
SUFFIX = {"ulazai": "", "klingai": "_klingai"}
#: Triggers one triggerer takes at most: fewer than the bulk and failover runs' 20 waits, so that both
#: triggerers must hold some (a triggerer that claims first would otherwise take them all).
TRIGGERER_CAPACITY = 15

pytestmark = [
    pytest.mark.timeout(900),
    pytest.mark.skipif(
        bool(missing_servers()),
        reason=f"needs Debian's {' and '.join(missing_servers())}: sudo apt-get install postgresql "
        "redis-server (./scripts/run-tests.sh installs them when run as root)",
    ),
    pytest.mark.skipif(
        not HAS_TASK_STATE_STORE, reason="run on the newest Airflow only, as the end-to-end tests"
    ),
]


class Production:
    """The running deployment, its database and the emulator, with the questions the tests ask."""

    def __init__(
        self, airflow: Deployment, database: Postgres, emulators: dict[str, EmulatorProcess]
    ) -> None:
        self.airflow, self.database, self.emulators = airflow, database, emulators

    def emulator_of(self, dag_id: str) -> EmulatorProcess:
        """The emulator of the API ``dag_id`` runs on."""
        return self.emulators["klingai" if dag_id.endswith(SUFFIX["klingai"]) else "ulazai"]

    def registered(self, dag_id: str) -> bool:
        return bool(self.database.execute("SELECT 1 FROM dag WHERE dag_id = %s", dag_id))

    def trigger(self, dag_id: str) -> str:
        return self.airflow.trigger(dag_id, self.registered)

    def task_instances(self, dag_id: str, run_id: str) -> list[tuple[int, str | None, int]]:
        """(map index, state, try number) of each of the run's task instances."""
        rows = self.database.execute(
            "SELECT map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s "
            "ORDER BY map_index",
            dag_id,
            run_id,
        )
        return [(index, state, tries) for index, state, tries in rows]

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.database.execute(
            "SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", dag_id, run_id
        )
        return rows[0][0] if rows else None

    def most_at_once(self, dag_id: str, run_id: str) -> int:
        """The most of the run's task instances that were running (or deferred) at one time."""
        rows = self.database.execute(
            "SELECT start_date, end_date FROM task_instance WHERE dag_id = %s AND run_id = %s",
            dag_id,
            run_id,
        )
        return max(sum(1 for start, end in rows if start <= moment < end) for moment, _ in rows)

    def deferred_on_both(self, dag_id: str, run_id: str, count: int) -> bool:
        """Whether the run's ``count`` tasks are all deferred, and both triggerers hold some of them."""
        states = [state for _, state, _ in self.task_instances(dag_id, run_id)]
        holders = {triggerer for triggerer, _ in self.triggers().values()}
        return states == ["deferred"] * count and len(holders - {None}) == 2

    def triggers(self) -> dict[int, tuple[int | None, str]]:
        """Trigger id -> (the triggerer job holding it, its stored kwargs) for every live trigger."""
        rows = self.database.execute("SELECT id, triggerer_id, kwargs FROM trigger")
        return {trigger_id: (triggerer, kwargs) for trigger_id, triggerer, kwargs in rows}

    def triggerer_heartbeats(self) -> dict[int, Any]:
        """Triggerer job id -> its latest heartbeat."""
        rows = self.database.execute("SELECT id, latest_heartbeat FROM job WHERE job_type = 'TriggererJob'")
        return dict(rows)

    def beating_since(self, heartbeats: dict[int, Any]) -> set[int]:
        """The triggerer jobs of ``heartbeats`` that have beaten since."""
        now = self.triggerer_heartbeats()
        return {job_id for job_id, beat in heartbeats.items() if now[job_id] != beat}

    def task_ids_for(self, dag_id: str, run_id: str, exclude_triggers: set[int]) -> list[str]:
        """The Kling task ids of the run's generations, but those waiting in ``exclude_triggers``."""
        rows = self.database.execute(
            "SELECT map_index, trigger_id FROM task_instance WHERE dag_id = %s AND run_id = %s",
            dag_id,
            run_id,
        )
        kept = tuple(
            f"{dag_id} clip {index}: " for index, trigger_id in rows if trigger_id not in exclude_triggers
        )
        jobs = self.emulator_of(dag_id).control("/_emulator/jobs")
        return [job["task_id"] for job in jobs if kept and job["request"]["prompt"].startswith(kept)]

    def wait_for_run(self, dag_id: str, run_id: str, seconds: float, while_waiting: Any = None) -> str:
        def ended() -> bool:
            if while_waiting:
                while_waiting()
            return self.run_state(dag_id, run_id) in ("success", "failed")

        wait_until(ended, seconds, f"the {dag_id} run to end", self.airflow.home / "scheduler.log")
        return str(self.run_state(dag_id, run_id))

    def jobs_for(self, dag_id: str) -> dict[str, int]:
        """Jobs the emulator created per prompt of ``dag_id``'s generations."""
        counts: dict[str, int] = {}
        for job in self.emulator_of(dag_id).control("/_emulator/jobs"):
            prompt = job["request"]["prompt"]
            if prompt.startswith(f"{dag_id} clip "):
                counts[prompt] = counts.get(prompt, 0) + 1
        return counts


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Production]:
    home = tmp_path_factory.mktemp("production-airflow-home")
    # 60-90 s jobs run 4x faster: 15-22 s of waiting, long enough to kill a triggerer mid-wait.
    common = ("--speed", "4", "--api-key", API_KEY, "--credits", "1000000")
    ulazai = EmulatorProcess(*common, "--seed", "11")
    klingai = EmulatorProcess(*common, "--seed", "12", "--api", "klingai", "--access-key", ACCESS_KEY)
    klingai_connection = connection_env(
        klingai.url, API_KEY, "kling_klingai", access_key=ACCESS_KEY, job_seconds="15-22.5"
    )
    with (
        ulazai,
        klingai,
        production_airflow(home, DAGS, ulazai.url, API_KEY, TRIGGERER_CAPACITY, **klingai_connection) as (
            airflow,
            database,
        ),
    ):
        # Through the REST API, not `airflow pools set`: on a loaded machine that command's start,
        # beside the workers' and triggerers', took over 180 s (a load run's red).
        pool = {"name": "kling_bulk", "slots": 6, "description": "Kling submits of the bulk run"}
        created = airflow.api("POST", "/api/v2/pools", json=pool)
        assert created.status_code == 201, created.text
        yield Production(airflow, database, {"ulazai": ulazai, "klingai": klingai})


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_bulk_run_under_a_pool_waits_all_at_once_on_both_triggerers_with_one_job_per_task(
    production: Production, api: str
) -> None:
    dag_id, emulator = f"kling_bulk{SUFFIX[api]}", production.emulators[api]
    # Every job runs until all 20 waits have deferred: the pool's 6 slots hold none of them.
    emulator.control("/_emulator/hold", "POST", {"count": 20})
    run_id = production.trigger(dag_id)
    wait_until(lambda: production.deferred_on_both(dag_id, run_id, 20), 300, "all 20 waits deferred")
    emulator.control("/_emulator/release", "POST", {})
    state = production.wait_for_run(dag_id, run_id, 300)
    assert state == "success", task_logs_of(production.airflow.home, dag_id, run_id)
    assert [ti_state for _, ti_state, _ in production.task_instances(dag_id, run_id)] == ["success"] * 20
    jobs = production.jobs_for(dag_id)
    assert len(jobs) == 20 and set(jobs.values()) == {1}


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_killed_triggerers_waits_are_adopted_with_their_deadlines_and_all_finish(
    production: Production, api: str
) -> None:
    dag_id, emulator = f"kling_failover{SUFFIX[api]}", production.emulators[api]
    # Every job runs until released, so the kill strands waits however late a loaded machine makes it.
    emulator.control("/_emulator/hold", "POST", {"count": 20})
    run_id = production.trigger(dag_id)

    wait_until(lambda: production.deferred_on_both(dag_id, run_id, 20), 300, "all 20 waits deferred")
    before, beats = production.triggers(), production.triggerer_heartbeats()
    production.airflow.kill("triggerer-1")
    wait_until(lambda: len(production.beating_since(beats)) == 1, 60, "the surviving triggerer's heartbeat")
    [survivor] = production.beating_since(beats)
    stranded = {trigger_id for trigger_id, (holder, _) in before.items() if holder not in (None, survivor)}
    assert stranded, f"the killed triggerer held none of the waits: {before}"
    # The other jobs end, so the survivor (15 waits at most) has room to adopt the stranded waits.
    others = production.task_ids_for(dag_id, run_id, exclude_triggers=stranded)
    emulator.control("/_emulator/release", "POST", {"task_ids": others})

    def adopted() -> bool:
        now = production.triggers()
        return all(now[trigger_id][0] == survivor for trigger_id in stranded)

    wait_until(adopted, 120, "the surviving triggerer to adopt every stranded wait")
    after = production.triggers()
    # The adopted waits run from the kwargs they were stored with: the same absolute deadline.
    assert all(after[trigger_id][1] == before[trigger_id][1] for trigger_id in stranded)
    emulator.control("/_emulator/release", "POST", {})
    state = production.wait_for_run(dag_id, run_id, 300)
    production.airflow.restart("triggerer-1")  # for the next test
    assert state == "success", task_logs_of(production.airflow.home, dag_id, run_id)
    jobs = production.jobs_for(dag_id)
    assert len(jobs) == 20 and set(jobs.values()) == {1}


def test_workers_killed_mid_submit_never_pay_twice_silently_on_ulazai(production: Production) -> None:
    instances, jobs, logs = kill_the_workers_mid_submit(production, "kling_worker_kill")
    assert all(count == 1 for count in jobs.values()), f"a second job: {jobs}"
    for index, state, _ in instances:
        prompt = f"kling_worker_kill clip {index}: a lighthouse at dusk"
        if state == "success":
            assert jobs.get(prompt) == 1
        else:  # the documented outcome: a submit sent but never confirmed fails, naming the risk
            assert state == "failed" and "never learnt its task_id" in logs, logs[-5000:]


def test_workers_killed_mid_submit_cost_one_job_per_prompt_and_fail_nothing_on_klingai(
    production: Production,
) -> None:
    instances, jobs, logs = kill_the_workers_mid_submit(production, "kling_worker_kill_klingai")
    assert [state for _, state, _ in instances] == ["success"] * 8, logs[-5000:]
    assert len(jobs) == 8 and set(jobs.values()) == {1}, jobs


def kill_the_workers_mid_submit(
    production: Production, dag_id: str
) -> tuple[list[tuple[int, str | None, int]], dict[str, int], str]:
    """Kill the workers while the run's submits are in flight; the run's task instances, its jobs per
    prompt and its logs, once it ended."""
    # Every submit of this run is answered 4 s late, so the kill finds some of them in flight.
    production.emulator_of(dag_id).control(
        "/_emulator/faults", "POST", {"endpoint": "submit", "kind": "slow", "count": 8, "delay": 4}
    )
    run_id = production.trigger(dag_id)

    def submitting() -> bool:
        return [state for _, state, _ in production.task_instances(dag_id, run_id)].count("running") >= 4

    wait_until(submitting, 300, "the run's tasks to be submitting")
    time.sleep(1)
    # Both workers, as a machine running them would die: whichever took the tasks (one just started
    # again by an earlier test may have taken none). They start again for the retries.
    for worker in WORKERS:
        production.airflow.kill(worker)
    for worker in WORKERS:
        production.airflow.restart(worker)
    production.wait_for_run(dag_id, run_id, 400)
    logs = task_logs_of(production.airflow.home, dag_id, run_id, tail=100_000)
    instances = production.task_instances(dag_id, run_id)
    assert any(tries > 1 for _, _, tries in instances), "the kill hit no task: nothing was shown"
    return instances, production.jobs_for(dag_id), logs


def test_creates_whose_answers_are_lost_are_found_by_their_external_task_id(production: Production) -> None:
    # Each create makes its job, then the connection drops before the answer: no try learns a task_id.
    production.emulators["klingai"].control(
        "/_emulator/faults",
        "POST",
        {"endpoint": "submit", "kind": "timeout_after_create", "count": 4, "delay": 1},
    )
    run_id = production.trigger("kling_lost_answers_klingai")
    state = production.wait_for_run("kling_lost_answers_klingai", run_id, 300)
    logs = task_logs_of(production.airflow.home, "kling_lost_answers_klingai", run_id, tail=100_000)
    assert state == "success", logs[-5000:]
    jobs = production.jobs_for("kling_lost_answers_klingai")
    assert len(jobs) == 4 and set(jobs.values()) == {1}, jobs
    assert logs.count("found its job") >= 4, logs[-5000:]


@pytest.mark.parametrize(
    ("api", "spent", "limit", "estimate"),
    # 5 x 55 = 275 credits fit under 300, a sixth would make 330; 5 x 1.5 = 7.5 units under 8.
    [("ulazai", "275 credits", "300", "55 credits"), ("klingai", "7.5 units", "8", "1.5 units")],
)
def test_concurrent_mapped_generations_never_spend_past_the_runs_credit_limit(
    production: Production, api: str, spent: str, limit: str, estimate: str
) -> None:
    dag_id = f"kling_budget{SUFFIX[api]}"
    run_id = production.trigger(dag_id)
    production.wait_for_run(dag_id, run_id, 600)
    jobs = production.jobs_for(dag_id)
    states = [state for _, state, _ in production.task_instances(dag_id, run_id)]
    logs = task_logs_of(production.airflow.home, dag_id, run_id, tail=100_000)
    assert len(jobs) == 5 and set(jobs.values()) == {1}, jobs
    assert states.count("success") == 5 and states.count("failed") == 7, states
    refusal = f"spent {spent} (those being submitted included) of its limit of {limit}"
    assert logs.count(refusal) >= 7 and f"estimate of {estimate}" in logs, logs[-5000:]
    assert production.most_at_once(dag_id, run_id) >= 2


def test_the_keys_and_tokens_are_in_no_table_and_no_log(production: Production) -> None:
    dump, logs = production.database.dump(), production.airflow.logs()
    assert "kling_bulk" in dump and "celery" in logs  # what was searched is the deployment's
    assert "kling_worker_kill_klingai" in dump  # Kling's own API's runs among it
    for secret in (API_KEY, TOKEN_HEADER):
        assert secret not in dump
        assert secret not in logs
