"""What installing the package gives: light DAG-parse imports, the entry points, the emulator command.

The wheel's contents are read from a wheel built for the purpose, as users would install it.
"""

from __future__ import annotations

import configparser
import importlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from built_wheel import build_wheel

from airflow_provider_kling.get_provider_info import get_provider_info

#: The gallery's airflow.plugins entry point, as pyproject.toml declares it.
GALLERY_PLUGIN = "airflow_provider_kling.plugins.gallery:KlingGalleryPlugin"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    return zipfile.ZipFile(build_wheel(tmp_path_factory.mktemp("wheel")))


def entry_points_of(wheel: zipfile.ZipFile) -> configparser.ConfigParser:
    [name] = [name for name in wheel.namelist() if name.endswith(".dist-info/entry_points.txt")]
    parser = configparser.ConfigParser()
    parser.read_string(wheel.read(name).decode())
    return parser


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


def test_the_gallery_plugin_is_registered_and_loads_no_web_app_until_the_api_server_serves_it() -> None:
    # Every task start imports plugins (for their macros): the plugin's module must stay light.
    module, name = GALLERY_PLUGIN.split(":")
    probe = (
        f"import sys, {module}; print(sorted(m for m in ('fastapi', '{module}_app') if m in sys.modules), "
        f"{module}.{name}.fastapi_apps[0]['url_prefix'])"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip().splitlines()[-1] == "[] /kling"


def test_the_wheel_registers_the_provider_with_airflow(wheel: zipfile.ZipFile) -> None:
    target = entry_points_of(wheel)["apache_airflow_provider"]["provider_info"]
    module, _, function = target.partition(":")
    assert getattr(importlib.import_module(module), function) is get_provider_info
    [connection_type] = get_provider_info()["connection-types"]
    assert connection_type["connection-type"] == "kling"
    assert connection_type["hook-class-name"] == "airflow_provider_kling.hooks.kling.KlingHook"


def test_the_wheel_registers_the_gallery_plugin_with_airflow(wheel: zipfile.ZipFile) -> None:
    assert entry_points_of(wheel)["airflow.plugins"]["kling_gallery"] == GALLERY_PLUGIN


def test_the_wheel_installs_the_emulator_command(wheel: zipfile.ZipFile) -> None:
    scripts = entry_points_of(wheel)["console_scripts"]
    assert scripts["kling-emulator"] == "airflow_provider_kling.emulator.__main__:main"


def test_connection_form_labels_the_keys_of_both_apis_and_hides_unused_fields() -> None:
    [connection_type] = get_provider_info()["connection-types"]
    form = connection_type["ui-field-behaviour"]
    assert form["relabeling"] == {
        "host": "Base URL",
        "login": "Access Key (klingai)",
        "password": "API key (ulazai) / Secret Key (klingai)",
    }
    assert form["placeholders"]["host"] == "https://ulazai.com"
    assert "schema" in form["hidden-fields"] and "login" not in form["hidden-fields"]
    assert "klingai" in connection_type["conn-fields"]["api"]["description"]


def test_video_link_is_registered() -> None:
    assert "airflow_provider_kling.links.kling.KlingVideoLink" in get_provider_info()["extra-links"]


def test_kling_emulator_command_is_installed() -> None:
    command = Path(sys.executable).parent / "kling-emulator"
    done = subprocess.run([str(command), "--help"], capture_output=True, text=True, check=True)
    assert "--speed" in done.stdout


def test_the_wheel_ships_the_typing_marker_and_the_four_sample_clips(wheel: zipfile.ZipFile) -> None:
    names = wheel.namelist()
    assert "airflow_provider_kling/py.typed" in names
    assert sorted(name for name in names if name.endswith(".mp4")) == [
        "airflow_provider_kling/emulator/assets/clip-10s-silent.mp4",
        "airflow_provider_kling/emulator/assets/clip-10s-sound.mp4",
        "airflow_provider_kling/emulator/assets/clip-5s-silent.mp4",
        "airflow_provider_kling/emulator/assets/clip-5s-sound.mp4",
    ]


def test_the_wheel_holds_the_package_and_its_metadata_only(wheel: zipfile.ZipFile) -> None:
    tops = {name.split("/")[0] for name in wheel.namelist()}
    assert tops == {"airflow_provider_kling", "airflow_provider_kling-0.1.0.dist-info"}
    assert not [name for name in wheel.namelist() if "__pycache__" in name or name.endswith(".pyc")]


def test_the_adaptive_rate_switch_starts_on_in_a_new_connection_form() -> None:
    # The form saves what it shows: a switch shown off would turn the adaptive rate off unasked.
    [connection_type] = get_provider_info()["connection-types"]
    assert connection_type["conn-fields"]["adaptive_rate"]["schema"]["default"] is True
