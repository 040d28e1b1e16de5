"""Restarts on a real Airflow: the triggerer killed, a worker's task killed, the API restarting; and
where each step of a wait runs: which endings resume a worker, and a task marked while deferred.

Airflow's components run as separate processes here (api-server, scheduler, dag-processor,
triggerer), so one can be killed with SIGKILL and started again, as an outage would. Task process
runs are counted from the audit log: the api-server logs ``running`` each time a worker's task
process starts its task, first run or resumption alike.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from dag_runs import task_logs_of
from deployment import Deployment, airflow_env, connection_env, free_port, stop, wait_until

DAGS = Path(__file__).resolve().parent / "restart_dags"
API_KEY = "restart-test-key"
ACCESS_KEY = "restart-test-access-key"
#: The DAG id suffix of each API's restart cases (restart_dags/kling_restart_cases.py).
SUFFIX = {"ulazai": "", "klingai": "_klingai"}

#: The first test waits for its real Airflow to start too: on a machine running two suites at once,
#: that and the test took more than the default 300 s (as in the production-shaped tests).
pytestmark = pytest.mark.timeout(900)


class Restarts(Deployment):
    """The harness's deployment with an emulator of each API as one of its processes (restartable on
    its port, keeping its jobs in a state file), and the questions the tests ask of its database."""

    def __init__(self, home: Path, env: dict[str, str], emulator_ports: dict[str, int]) -> None:
        super().__init__(home, env)
        self.emulator_ports = emulator_ports

    def start_emulator(self, api: str = "ulazai") -> None:
        self.start(
            f"emulator{SUFFIX[api]}", sys.executable, "-m", "airflow_provider_kling.emulator",
            "--port", str(self.emulator_ports[api]), "--speed", "6", "--api", api,
            "--api-key", API_KEY, "--access-key", ACCESS_KEY,
            "--state-file", str(self.home / f"emulator-state{SUFFIX[api]}.json"),
        )  # fmt: skip
        wait_until(lambda: self.emulator("stats", api) is not None, 30, "the emulator to answer")

    def emulator(self, route: str, api: str = "ulazai") -> Any:
        try:
            return requests.get(self._control_url(route, api), timeout=5).json()
        except requests.RequestException:
            return None

    def hold(self, count: int, api: str = "ulazai") -> None:
        """Keep the next ``count`` jobs running until :meth:`release`: what a test does to a wait then
        finds it waiting, however slowly a loaded machine gets there."""
        held = requests.post(self._control_url("hold", api), json={"count": count}, timeout=5)
        assert held.status_code == 201, held.text

    def release(self, api: str = "ulazai") -> None:
        requests.post(self._control_url("release", api), timeout=5).raise_for_status()

    def _control_url(self, route: str, api: str) -> str:
        return f"http://127.0.0.1:{self.emulator_ports[api]}/_emulator/{route}"

    def task_states(self, dag_id: str, run_id: str) -> list[str | None]:
        """The states of the run's task instances, in map index order."""
        rows = self.query(
            "SELECT state FROM task_instance WHERE dag_id = ? AND run_id = ? ORDER BY map_index",
            dag_id,
            run_id,
        )
        return [state for (state,) in rows]

    def run_state(self, dag_id: str, run_id: str) -> str | None:
        rows = self.query("SELECT state FROM dag_run WHERE dag_id = ? AND run_id = ?", dag_id, run_id)
        return rows[0][0] if rows else None

    def trigger_run(self, dag_id: str) -> str:
        return self.trigger(dag_id, self.has_dag)

    def jobs_for(self, prompt: str, api: str = "ulazai") -> list[dict[str, Any]]:
        return [job for job in self.emulator("jobs", api) or [] if job["request"]["prompt"] == prompt]

    def task_process_runs(
        self, dag_id: str, run_id: str, task_id: str, map_index: int = -1
    ) -> dict[int, int]:
        """How many times a worker ran the task's process (of one map index), by try number."""
        rows = self.query(
            "SELECT try_number, COUNT(*) FROM log WHERE dag_id = ? AND run_id = ? AND task_id = ? "
            "AND map_index = ? AND event = 'running' GROUP BY try_number",
            dag_id,
            run_id,
            task_id,
            map_index,
        )
        return dict(rows)

    def returned(self, dag_id: str, run_id: str, task_id: str) -> Any:
        """The task's return value, read as Airflow reads it: the JSON column holds its JSON text."""
        [(value,)] = self.query(
            "SELECT value FROM xcom WHERE dag_id = ? AND run_id = ? AND task_id = ? AND key = 'return_value'",
            dag_id,
            run_id,
            task_id,
        )
        return json.loads(value)

    def finish(self, dag_id: str, run_id: str) -> str | None:
        wait_until(lambda: self.run_state(dag_id, run_id) in ("success", "failed"), 180, f"the {dag_id} run")
        return self.run_state(dag_id, run_id)


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restarts]:
    home = tmp_path_factory.mktemp("restart-airflow-home")
    ports = {"ulazai": free_port(), "klingai": free_port()}
    env = (
        airflow_env(home, DAGS, free_port())
        | connection_env(f"http://127.0.0.1:{ports['ulazai']}", API_KEY)
        | connection_env(
            f"http://127.0.0.1:{ports['klingai']}", API_KEY, "kling_klingai", ACCESS_KEY, job_seconds="10-15"
        )
    )
    env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"] = "20"
    env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "True"  # the REST API needs no token
    running = Restarts(home, env, ports)
    try:
        running.cli("db", "migrate")
        running.start_emulator("ulazai")
        running.start_emulator("klingai")
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            running.start_airflow(component, component)
        running.wait_for_api()
        yield running
    finally:
        running.stop()


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_killing_the_triggerer_while_deferred_loses_nothing_and_pays_once(
    deployment: Restarts, api: str
) -> None:
    dag_id = f"restart_deferred{SUFFIX[api]}"
    deployment.hold(3, api)
    run_id = deployment.trigger_run(dag_id)
    wait_until(lambda: deployment.task_states(dag_id, run_id) == ["deferred"] * 3, 120, "deferrals")
    deployment.kill("triggerer")
    time.sleep(3)
    deployment.start_airflow("triggerer", "triggerer")
    deployment.release(api)
    wait_until(lambda: deployment.run_state(dag_id, run_id) in ("success", "failed"), 180, "the run")
    assert deployment.task_states(dag_id, run_id) == ["success"] * 3, task_logs_of(
        deployment.home, dag_id, run_id
    )
    assert [len(deployment.jobs_for(f"triggerer restart {n}", api)) for n in range(3)] == [1, 1, 1]


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_triggerer_restart_does_not_extend_the_deadline(deployment: Restarts, api: str) -> None:
    dag_id = f"restart_deadline{SUFFIX[api]}"
    deployment.hold(1, api)  # the job outlives the wait
    run_id = deployment.trigger_run(dag_id)
    wait_until(lambda: deployment.task_states(dag_id, run_id) == ["deferred"], 120, "deferral")
    deployment.kill("triggerer")
    time.sleep(4)
    restarted_at = time.time()
    deployment.start_airflow("triggerer", "triggerer")
    wait_until(lambda: deployment.run_state(dag_id, run_id) in ("success", "failed"), 180, "the run")
    assert deployment.task_states(dag_id, run_id) == ["failed"]
    # The wait had 6 s from its deferral and 4 of them passed while the triggerer was down, so the
    # restarted trigger stops polling within about 2 s; one whose clock restarted would poll for 6 s.
    [job] = deployment.jobs_for("deadline", api)
    assert all(poll < restarted_at + 3 for poll in job["status_polls"]), (restarted_at, job["status_polls"])


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_killing_the_task_mid_wait_retries_onto_the_same_job(deployment: Restarts, api: str) -> None:
    dag_id = f"restart_worker{SUFFIX[api]}"
    deployment.hold(1, api)
    run_id = deployment.trigger_run(dag_id)
    wait_until(
        lambda: any(job["status_polls"] for job in deployment.jobs_for("worker killed", api)), 120, "polling"
    )
    [(pid,)] = deployment.query(
        "SELECT pid FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
    )
    assert pid, "the running task instance records its process id"
    os.kill(pid, signal.SIGKILL)
    deployment.release(api)
    wait_until(lambda: deployment.run_state(dag_id, run_id) in ("success", "failed"), 180, "the run")
    assert deployment.run_state(dag_id, run_id) == "success", task_logs_of(deployment.home, dag_id, run_id)
    [(try_number,)] = deployment.query(
        "SELECT try_number FROM task_instance WHERE dag_id = ? AND run_id = ?", dag_id, run_id
    )
    assert try_number == 2
    assert len(deployment.jobs_for("worker killed", api)) == 1


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_the_api_restarting_mid_wait_is_ridden_out(deployment: Restarts, api: str) -> None:
    dag_id = f"restart_emulator{SUFFIX[api]}"
    deployment.hold(1, api)  # held in the state file too
    run_id = deployment.trigger_run(dag_id)
    wait_until(
        lambda: any(job["status_polls"] for job in deployment.jobs_for("emulator restart", api)),
        120,
        "polling",
    )
    stop(deployment.processes[f"emulator{SUFFIX[api]}"])  # a clean stop saves the jobs to the state file
    time.sleep(2)
    deployment.start_emulator(api)
    deployment.release(api)
    wait_until(lambda: deployment.run_state(dag_id, run_id) in ("success", "failed"), 180, "the run")
    assert deployment.run_state(dag_id, run_id) == "success", task_logs_of(deployment.home, dag_id, run_id)
    assert len(deployment.jobs_for("emulator restart", api)) == 1


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_deferrable_generation_takes_one_task_process_run(deployment: Restarts, api: str) -> None:
    dag_id = f"one_task_start{SUFFIX[api]}"
    run_id = deployment.trigger_run(dag_id)
    assert deployment.finish(dag_id, run_id) == "success"
    # Submitted and deferred on a worker; the triggerer ended the task once the video was ready.
    assert deployment.task_process_runs(dag_id, run_id, "generate") == {1: 1}
    [job] = deployment.jobs_for("one task start", api)
    result = deployment.returned(dag_id, run_id, "generate")
    assert (result["task_id"], result["credits_used"]) == (job["task_id"], job["credits_used"])
    assert result["video_url"].endswith(f"{job['task_id']}.mp4")


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_timeout_resumes_on_a_worker_and_the_retry_reattaches(deployment: Restarts, api: str) -> None:
    dag_id = f"resume_on_worker{SUFFIX[api]}"
    deployment.hold(1, api)  # until the first try has timed out
    run_id = deployment.trigger_run(dag_id)
    wait_until(lambda: deployment.task_process_runs(dag_id, run_id, "generate").get(2), 120, "a retry")
    deployment.release(api)
    state = deployment.finish(dag_id, run_id)
    assert state == "success", task_logs_of(deployment.home, dag_id, run_id)
    runs = deployment.task_process_runs(dag_id, run_id, "generate")
    last = max(runs)
    assert last >= 2, runs
    # Each timed-out try ran twice: its start, then its resumption on a worker to raise the timeout.
    # The last try reattached to the job, and either found its video or had the triggerer end it.
    assert runs == {**dict.fromkeys(range(1, last), 2), last: 1}
    [job] = deployment.jobs_for("timeout then retry", api)
    assert deployment.returned(dag_id, run_id, "generate")["task_id"] == job["task_id"]


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_a_mapped_taskflow_generation_retries_onto_its_jobs_and_ends_in_the_triggerer(
    deployment: Restarts, api: str
) -> None:
    dag_id = f"taskflow_retry{SUFFIX[api]}"
    deployment.hold(2, api)  # until both map indexes' first tries have timed out
    run_id = deployment.trigger_run(dag_id)

    def runs(map_index: int) -> dict[int, int]:
        return deployment.task_process_runs(dag_id, run_id, "taskflow_clip", map_index)

    wait_until(lambda: runs(0).get(2) and runs(1).get(2), 120, "both retries")
    deployment.release(api)
    state = deployment.finish(dag_id, run_id)
    assert state == "success", task_logs_of(deployment.home, dag_id, run_id)
    for map_index in (0, 1):
        # Each timed-out try ran twice (its start, then its resumption to raise the timeout); the
        # last one reattached, and the triggerer ended it.
        last = max(runs(map_index))
        assert runs(map_index) == {**dict.fromkeys(range(1, last), 2), last: 1}
    # The function wrote a new prompt on each call, yet each map index has one job.
    jobs = [
        [
            job["task_id"]
            for job in deployment.emulator("jobs", api)
            if job["request"]["prompt"].startswith(prefix)
        ]
        for prefix in ("taskflow fox ", "taskflow owl ")
    ]
    assert [len(found) for found in jobs] == [1, 1]
    assert deployment.returned(dag_id, run_id, "collect") == [found for [found] in jobs]


@pytest.mark.parametrize(("api", "completed"), [("ulazai", "completed"), ("klingai", "succeed")])
def test_a_deferrable_sensor_runs_no_task_process(deployment: Restarts, api: str, completed: str) -> None:
    dag_id = f"submit_then_sense{SUFFIX[api]}"
    run_id = deployment.trigger_run(dag_id)
    state = deployment.finish(dag_id, run_id)
    assert state == "success", task_logs_of(deployment.home, dag_id, run_id)
    assert deployment.task_process_runs(dag_id, run_id, "submit") == {1: 1}
    # The triggerer started it, rendering the xcom_pull template, and ended it with the video.
    assert deployment.task_process_runs(dag_id, run_id, "wait") == {}
    [job] = deployment.jobs_for("sensed", api)
    result = deployment.returned(dag_id, run_id, "wait")
    assert (result["task_id"], result["status"]) == (job["task_id"], completed)
    assert result["video_url"].endswith(f"{job['task_id']}.mp4")


@pytest.mark.parametrize("api", ["ulazai", "klingai"])
def test_marking_a_deferred_generation_failed_warns_that_the_job_goes_on(
    deployment: Restarts, api: str
) -> None:
    dag_id = f"kill_deferred{SUFFIX[api]}"
    deployment.hold(1, api)  # still running when it is marked
    run_id = deployment.trigger_run(dag_id)
    # Until the triggerer polls, it runs no trigger that a kill could reach.
    wait_until(
        lambda: any(job["status_polls"] for job in deployment.jobs_for("marked failed", api)), 120, "polling"
    )
    [job] = deployment.jobs_for("marked failed", api)
    marked = requests.patch(
        f"{deployment.api_url}/api/v2/dags/{dag_id}/dagRuns/{run_id}/taskInstances/generate",
        json={"new_state": "failed"},
        timeout=30,
    )
    assert marked.status_code == 200, marked.text
    warning = f"Stopped waiting for Kling job {job['task_id']} (the task was marked or cleared)"
    wait_until(lambda: warning in deployment.logs(), 60, "the trigger's on_kill warning")
    assert "keeps running at the vendor" in deployment.logs()
