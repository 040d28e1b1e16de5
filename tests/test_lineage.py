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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from dag_runs import HAS_TASK_STATE_STORE
from hook_setup import connect

from airflow_provider_kling.emulator import KlingEmulator
from airflow_provider_kling.emulator.pytest_plugin import TEST_DEFAULTS

#: The three generations run in the first test's set-up.
pytestmark = [pytest.mark.usefixtures("airflow_db"), pytest.mark.timeout(600)]

IMAGE_URL = "https://images.example.com/cats/tabby.png"
PROMPT = "a confidential product reveal"


def operator_task(**operator_kwargs: Any) -> str:
    """The source of a KlingGenerateOperator task ``animate`` with ``operator_kwargs``."""
    return f"KlingGenerateOperator(task_id='animate', poll_interval=0.2, **{operator_kwargs!r})"


#: Each case's task ``animate`` (its source), run in a DAG ``kling_lineage_<case>``.
CASES = {
    "image": operator_task(
        prompt=PROMPT, image_urls=[IMAGE_URL], output_path="file://{folder}/tabby.mp4", deferrable=True
    ),
    "prompt_asked": operator_task(prompt=PROMPT, openlineage_include_prompt=True),
    "taskflow": f"""\
@task.kling(poll_interval=0.2, openlineage_include_prompt=True)
def animate():
    return {{"prompt": {PROMPT!r}, "image_urls": [{IMAGE_URL!r}]}}

animate()""",
}


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
            + textwrap.indent(task.replace("{folder}", str(folder)), "    ")
            + "\n"
        )
    script = folder / "run_dags.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from dag_runs import DagBag

            for dag in DagBag({str(dags)!r}).dags.values():
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
def lineage(
    airflow_db: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[dict[str, Any], list[Any], Path]]:
    """Each case's one COMPLETE event, the emulator's jobs, and the folder the run wrote in."""
    folder = tmp_path_factory.mktemp("lineage")
    emulator = KlingEmulator(**TEST_DEFAULTS).start()
    try:
        with pytest.MonkeyPatch.context() as monkeypatch:
            connect(monkeypatch, emulator)
            events = run_with_lineage(folder)
        jobs = emulator.jobs()
    finally:
        emulator.stop()
    assert {case: len(completes) for case, completes in events.items()} == dict.fromkeys(CASES, 1)
    assert len(jobs) == len(CASES)  # one job for each generation
    yield {case: completes[0] for case, completes in events.items()}, jobs, folder


def test_a_finished_generation_reports_its_image_video_and_how_it_was_made(
    lineage: tuple[dict[str, Any], list[Any], Path],
) -> None:
    events, jobs, folder = lineage
    complete = events["image"]
    facet = complete["run"]["facets"]["kling_generation"]
    [job] = [job for job in jobs if job["task_id"] == facet["vendorTaskId"]]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("https://images.example.com", "/cats/tabby.png")
    ]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [("file", str(folder / "tabby.mp4"))]
    assert {k: v for k, v in facet.items() if not k.startswith("_")} == {
        "model": "kling-2.6",
        "mode": "image_to_video",
        "duration": 5,
        "sound": False,
        "vendorTaskId": job["task_id"],
        # Before Airflow 3.3 a resumed task no longer knows its submit's answer (no task_state_store).
        **({"creditsUsed": job["credits_used"]} if HAS_TASK_STATE_STORE else {}),
    }  # OpenLineage leaves out what is None: no aspect ratio was asked for, and no prompt
    assert PROMPT not in json.dumps(complete)


def test_the_prompt_reaches_lineage_only_when_asked(lineage: tuple[dict[str, Any], list[Any], Path]) -> None:
    events, _, _ = lineage
    assert events["prompt_asked"]["run"]["facets"]["kling_generation"]["prompt"] == PROMPT


def test_a_taskflow_generation_reports_the_image_and_prompt_its_function_returned(
    lineage: tuple[dict[str, Any], list[Any], Path],
) -> None:
    events, _, _ = lineage
    complete = events["taskflow"]
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("https://images.example.com", "/cats/tabby.png")
    ]
    facet = complete["run"]["facets"]["kling_generation"]
    assert (facet["prompt"], facet["mode"]) == (PROMPT, "image_to_video")


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
