"""OpenLineage: a finished generation's lineage, read from OpenLineage's file transport.

Each DAG runs with ``dag.test()`` in a process of its own, configured as a deployment would be
(``[openlineage] transport``): OpenLineage reads its configuration once per process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from dag_runs import HAS_TASK_STATE_STORE

from airflow_provider_kling.emulator import KlingEmulator

pytestmark = pytest.mark.usefixtures("airflow_db")

IMAGE_URL = "https://images.example.com/cats/tabby.png"
PROMPT = "a confidential product reveal"


def operator_task(**operator_kwargs: Any) -> str:
    """The source of a KlingGenerateOperator task ``animate`` with ``operator_kwargs``."""
    return f"KlingGenerateOperator(task_id='animate', poll_interval=0.2, **{operator_kwargs!r})"


def run_with_lineage(tmp_path: Path, task: str) -> list[dict[str, Any]]:
    """Run one generation (``task``: the source of a task ``animate``) with the file transport on;
    the COMPLETE events OpenLineage wrote for it."""
    events_file = tmp_path / "openlineage.jsonl"
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = dags / "kling_lineage.py"
    dag_file.write_text(
        "from airflow.sdk import DAG, task\n"
        "from airflow_provider_kling.operators.kling import KlingGenerateOperator\n\n"
        "with DAG('kling_lineage', schedule=None) as dag:\n" + textwrap.indent(task, "    ") + "\n"
    )
    script = tmp_path / "run_dag.py"
    script.write_text(
        textwrap.dedent(
            f"""
            from dag_runs import DagBag

            assert DagBag({str(dag_file)!r}).dags["kling_lineage"].test().state == "success"
            """
        )
    )
    transport = {"type": "file", "log_file_path": str(events_file), "append": True}
    # The DAG's folder as a bundle of its own: dag.test() runs what the bundles hold.
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
    ran = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=240)
    assert ran.returncode == 0, ran.stdout[-3000:] + ran.stderr[-3000:]
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line.strip()]
    return [e for e in events if e["eventType"] == "COMPLETE" and e["job"]["name"].endswith(".animate")]


def test_a_finished_generation_reports_its_image_video_and_how_it_was_made(
    emulator: KlingEmulator, tmp_path: Path
) -> None:
    video = tmp_path / "tabby.mp4"
    [complete] = run_with_lineage(
        tmp_path,
        operator_task(prompt=PROMPT, image_urls=[IMAGE_URL], output_path=f"file://{video}", deferrable=True),
    )
    [job] = emulator.jobs()
    assert [(d["namespace"], d["name"]) for d in complete["inputs"]] == [
        ("https://images.example.com", "/cats/tabby.png")
    ]
    assert [(d["namespace"], d["name"]) for d in complete["outputs"]] == [("file", str(video))]
    facet = complete["run"]["facets"]["kling_generation"]
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


def test_the_prompt_reaches_lineage_only_when_asked(emulator: KlingEmulator, tmp_path: Path) -> None:
    [complete] = run_with_lineage(tmp_path, operator_task(prompt=PROMPT, openlineage_include_prompt=True))
    assert complete["run"]["facets"]["kling_generation"]["prompt"] == PROMPT


def test_a_taskflow_generation_reports_the_image_and_prompt_its_function_returned(
    emulator: KlingEmulator, tmp_path: Path
) -> None:
    taskflow = f"""\
@task.kling(poll_interval=0.2, openlineage_include_prompt=True)
def animate():
    return {{"prompt": {PROMPT!r}, "image_urls": [{IMAGE_URL!r}]}}

animate()"""
    [complete] = run_with_lineage(tmp_path, taskflow)
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
