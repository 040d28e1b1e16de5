"""OpenLineage: a finished generation's lineage, read from OpenLineage's file transport.

The generations run with ``dag.test()``, each DAG of its own, in one process configured as a
deployment would be (``[openlineage] transport``): OpenLineage reads its configuration once per
process, and one process starts Airflow once, not once per DAG.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from dag_runs import HAS_TASK_STATE_STORE
from hook_setup import connect

from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.emulator.pytest_plugin import TEST_DEFAULTS

#: The generations run in the first test's set-up.
pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.timeout(600)]

IMAGE_URL = "https://images.example.com/cats/tabby.png"
PROMPT = "a confidential product reveal"


def operator_task(**operator_kwargs: Any) -> str:
    """The source of a KlingGenerateOperator task ``animate`` with ``operator_kwargs``."""
    return f"KlingGenerateOperator(task_id='animate', poll_interval=0.2, **{operator_kwargs!r})"


def prompt_of(case: str) -> str:
    """Each case's own prompt, so that its job is told apart from the others' at the emulator."""
    return f"{PROMPT} ({case})"


#: Each case's task ``animate`` (its source, given the folder the run writes in), run in a DAG
#: ``kling_lineage_<case>``.
CASES: dict[str, Callable[[Path], str]] = {
    "image": lambda folder: operator_task(
        prompt=prompt_of("image"),
        image_urls=[IMAGE_URL],
        output_path=f"file://{folder / 'tabby.mp4'}",
        deferrable=True,
    ),
    "prompt_asked": lambda folder: operator_task(
        prompt=prompt_of("prompt_asked"), openlineage_include_prompt=True
    ),
    # On Kling's own API, through a connection to an emulator speaking it.
    "klingai": lambda folder: operator_task(
        prompt=prompt_of("klingai"), mode="pro", kling_conn_id="kling_klingai", deferrable=True
    ),
    "taskflow": lambda folder: (
        f"""\
@task.kling(poll_interval=0.2, openlineage_include_prompt=True)
def animate():
    return {{"prompt": {prompt_of("taskflow")!r}, "image_urls": [{IMAGE_URL!r}]}}

animate()"""
    ),
}


class Lineage(NamedTuple):
    """What the cases' run left: each case's COMPLETE event and job, and the folder it wrote in."""

    events: dict[str, dict[str, Any]]
    jobs: dict[str, dict[str, Any]]
    folder: Path


def run_with_lineage(folder: Path) -> dict[str, list[dict[str, Any]]]:
    """Run every case with the file transport on; the COMPLETE events OpenLineage wrote for each
    case's task."""
    events_file = folder / "openlineage.jsonl"
    dags = folder / "dags"
    dags.mkdir()
    for case, task in CASES.items():
        (dags / f"kling_lineage_{case}.py").write_text(
            "from airflow.sdk import DAG, task\n"
            "from airflow_provider_kling.operators.kling import KlingGenerateOperator\n\n"
            f"with DAG('kling_lineage_{case}', schedule=None) as dag:\n"
            + textwrap.indent(task(folder), "    ")
            + "\n"
        )
    script = folder / "run_dags.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from dag_runs import DagBag

            bag = DagBag({str(dags)!r})
            assert not bag.import_errors, bag.import_errors
            assert sorted(bag.dags) == {sorted(f"kling_lineage_{case}" for case in CASES)!r}, sorted(bag.dags)
            for dag in bag.dags.values():
                assert dag.test().state == "success", dag.dag_id
            """
        )
    )
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    # The DAGs' folder as a bundle of its own: dag.test() runs what the bundles hold.
    bundle = {
        "name": "kling_lineage",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(dags)},
    }
    env = os.environ | {
        "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
        "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
        "PYTHONPATH": os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]),
    }
    ran = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=480)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return {
        case: [
            event
            for event in events
            if event["eventType"] == "COMPLETE" and event["job"]["name"] == f"kling_lineage_{case}.animate"
        ]
        for case in CASES
    }


@pytest.fixture(scope="module")
def lineage(airflow_db: None, tmp_path_factory: pytest.TempPathFactory) -> Lineage:
    folder = tmp_path_factory.mktemp("lineage")
    emulator = KlingEmulator(**TEST_DEFAULTS).start()
    klingai = KlingEmulator(**TEST_DEFAULTS, api="klingai").start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            connect(monkeypatch, emulator)
            connect(monkeypatch, klingai, conn_id="kling_klingai")
            events = run_with_lineage(folder)
        jobs = emulator.jobs() + klingai.jobs()
    finally:
        emulator.stop()
        klingai.stop()
    assert {case: len(completes) for case, completes in events.items()} == dict.fromkeys(CASES, 1)
    jobs_by_prompt = {job["request"]["prompt"]: job for job in jobs}
    assert len(jobs) == len(jobs_by_prompt) == len(CASES)  # one job for each generation
    return Lineage(
        events={case: completes[0] for case, completes in events.items()},
        jobs={case: jobs_by_prompt[prompt_of(case)] for case in CASES},
        folder=folder,
    )


def test_a_finished_generation_reports_its_image_video_and_how_it_was_made(lineage: Lineage) -> None:
    complete, job = lineage.events["image"], lineage.jobs["image"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("https://images.example.com", "/cats/tabby.png")
    ]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [
        ("file", str(lineage.folder / "tabby.mp4"))
    ]
    facet = complete["run"]["facets"]["kling_generation"]
    assert {k: v for k, v in facet.items() if not k.startswith("_")} == {
        "model": "kling-2.6",
        "mode": "image_to_video",
        "duration": 5,
        "sound": False,
        "vendorTaskId": job["task_id"],
        "creditUnit": "credits",
        # Before Airflow 3.3 a resumed task no longer knows its submit's answer (no task_state_store).
        **({"creditsUsed": job["credits_used"]} if HAS_TASK_STATE_STORE else {}),
    }  # OpenLineage leaves out what is None: no aspect ratio was asked for, and no prompt
    assert PROMPT not in json.dumps(complete)


def test_a_generation_on_kling_s_own_api_reports_its_model_and_its_charge_in_units(lineage: Lineage) -> None:
    facet = lineage.events["klingai"]["run"]["facets"]["kling_generation"]
    assert (facet["model"], facet["creditUnit"]) == ("kling-v2-6", "units")
    assert facet["creditsUsed"] == 2.5  # from the finished job's status: on every Airflow
    assert facet["vendorTaskId"] == lineage.jobs["klingai"]["task_id"]


def test_the_prompt_reaches_lineage_only_when_asked(lineage: Lineage) -> None:
    facet = lineage.events["prompt_asked"]["run"]["facets"]["kling_generation"]
    assert facet["prompt"] == prompt_of("prompt_asked")


def test_a_taskflow_generation_reports_the_image_and_prompt_its_function_returned(lineage: Lineage) -> None:
    complete = lineage.events["taskflow"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("https://images.example.com", "/cats/tabby.png")
    ]
    facet = complete["run"]["facets"]["kling_generation"]
    assert (facet["prompt"], facet["mode"]) == (prompt_of("taskflow"), "image_to_video")


@pytest.mark.parametrize(
    ("url", "namespace", "name"),
    [
        ("https://user:secret@images.example.com/cat.png", "https://images.example.com", "/cat.png"),
        ("s3://aws_default@videos/2026/cat.mp4", "s3://videos", "2026/cat.mp4"),
        ("http://127.0.0.1:8080/cat.png", "http://127.0.0.1:8080", "/cat.png"),
        ("file:///data/cat.mp4", "file", "/data/cat.mp4"),
    ],
)
def test_a_dataset_is_named_by_its_host_and_path_alone(url: str, namespace: str, name: str) -> None:
    from airflow_provider_kling.lineage import dataset_at

    dataset = dataset_at(url)
    assert (dataset.namespace, dataset.name) == (namespace, name)
