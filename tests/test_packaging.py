"""What installing the package gives: light DAG-parse imports, the entry points, the emulator command."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from airflow_provider_kling.get_provider_info import get_provider_info

PARSE_TIME_PROBE = """
import json, sys
import airflow.sdk
before = set(sys.modules)
import airflow_provider_kling.operators.kling, airflow_provider_kling.sensors.kling
added = sorted(set(sys.modules) - before)
new_top_level = sorted({name.split(".")[0] for name in added} - {name.split(".")[0] for name in before})
print(json.dumps({"added": added, "new_top_level": new_top_level}))
"""


def modules_added_by_importing_the_operator() -> dict[str, list[str]]:
    done = subprocess.run(
        [sys.executable, "-c", PARSE_TIME_PROBE], capture_output=True, text=True, check=True
    )
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_importing_the_operator_loads_no_third_party_package_beyond_airflow_sdk() -> None:
    probe = modules_added_by_importing_the_operator()
    assert set(probe["new_top_level"]) <= {"airflow_provider_kling"}
    heavy = {"requests", "aiohttp", "airflow_provider_kling.emulator", "airflow_provider_kling.hooks.kling"}
    assert heavy.isdisjoint(probe["added"])


def test_a_worker_that_only_submits_never_loads_aiohttp() -> None:
    probe = "import sys, airflow_provider_kling.hooks.kling; print('aiohttp' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_importing_the_operator_leaves_the_trigger_for_run_time() -> None:
    added = modules_added_by_importing_the_operator()["added"]
    assert {"airflow_provider_kling.triggers.kling", "airflow.triggers.base"}.isdisjoint(added)


def test_provider_entry_point_registers_the_kling_connection_type() -> None:
    [entry_point] = [
        ep for ep in entry_points(group="apache_airflow_provider") if ep.value.startswith("airflow_")
    ]
    assert entry_point.load() is get_provider_info
    [connection_type] = get_provider_info()["connection-types"]
    assert connection_type["connection-type"] == "kling"
    assert connection_type["hook-class-name"] == "airflow_provider_kling.hooks.kling.KlingHook"


def test_connection_form_labels_the_key_and_hides_unused_fields() -> None:
    [connection_type] = get_provider_info()["connection-types"]
    form = connection_type["ui-field-behaviour"]
    assert form["relabeling"] == {"host": "Base URL", "password": "API key"}
    assert form["placeholders"]["host"] == "https://ulazai.com"
    assert {"schema", "login"} <= set(form["hidden-fields"])


def test_video_link_is_registered() -> None:
    assert "airflow_provider_kling.links.kling.KlingVideoLink" in get_provider_info()["extra-links"]


def test_kling_emulator_command_is_installed() -> None:
    command = Path(sys.executable).parent / "kling-emulator"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True)
    assert "--speed" in done.stdout


def test_package_ships_typing_marker_and_the_sample_videos() -> None:
    package = Path(__file__).resolve().parent.parent / "airflow_provider_kling"
    assert (package / "py.typed").exists()
    assert sorted(p.name for p in (package / "emulator" / "assets").glob("*.mp4")) == [
        "clip-10s-silent.mp4",
        "clip-10s-sound.mp4",
        "clip-5s-silent.mp4",
        "clip-5s-sound.mp4",
    ]
