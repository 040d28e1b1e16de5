"""The package as it would be published: the sdist and the wheel ``python -m build`` makes, checked
as PyPI would check them, and the wheel installed on its own (not the checkout) running the example.

Run on the newest Airflow only (scripts/run-tests.sh): nothing here depends on Airflow's version but
the fresh venv's install, which is the newest's.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest
from built_wheel import build_release, build_wheel

from airflow_provider_kling import __version__
from airflow_provider_kling.emulator import DEFAULT_API_KEY, KlingEmulator

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
#: The Python the wheel is installed on: the oldest that Airflow 3.3 supports, where
#: scripts/run-tests.sh found it on this machine, else the tests' own.
WHEEL_PYTHON = os.environ.get("KLING_WHEEL_PYTHON") or sys.executable


@pytest.fixture(scope="module")
def release(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist, and the wheel built from it."""
    return build_release(tmp_path_factory.mktemp("dist"))


def contents(wheel: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(wheel) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def sdist_names(sdist: Path) -> set[str]:
    with tarfile.open(sdist) as archive:
        return {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}


def test_twine_check_strict_passes_the_sdist_and_the_wheel(release: tuple[Path, Path]) -> None:
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, release)],
        capture_output=True,
        text=True,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_sdist_builds_the_wheel_the_checkout_builds(release: tuple[Path, Path], tmp_path: Path) -> None:
    _, from_sdist = release
    from_checkout = build_wheel(tmp_path)
    assert from_sdist.name == from_checkout.name == f"airflow_provider_kling-{__version__}-py3-none-any.whl"
    assert contents(from_sdist) == contents(from_checkout)


def test_both_carry_the_license_and_the_notice(release: tuple[Path, Path]) -> None:
    sdist, wheel = release
    licenses = f"airflow_provider_kling-{__version__}.dist-info/licenses"
    shipped = contents(wheel)
    assert shipped[f"{licenses}/LICENSE"] == (REPO / "LICENSE").read_bytes()
    assert shipped[f"{licenses}/NOTICE"] == (REPO / "NOTICE").read_bytes()
    assert {"LICENSE", "NOTICE", "CHANGELOG.md", "README.md", "pyproject.toml"} <= sdist_names(sdist)


def test_the_sdist_holds_no_part_of_the_tests(release: tuple[Path, Path]) -> None:
    # They need the whole checkout (their DAGs, harness and benchmarks); a part would not run.
    sdist, _ = release
    assert not [name for name in sdist_names(sdist) if name.startswith("tests/")]


def test_the_version_has_one_source(release: tuple[Path, Path]) -> None:
    _, wheel = release
    metadata = contents(wheel)[f"airflow_provider_kling-{__version__}.dist-info/METADATA"].decode()
    assert f"\nVersion: {__version__}\n" in metadata
    project = (REPO / "pyproject.toml").read_text().split("\n[project]\n", 1)[1].split("\n[", 1)[0]
    assert re.search(r'^dynamic = \["version"\]', project, re.MULTILINE)
    assert not re.search(r"^version\s*=", project, re.MULTILINE)


@pytest.fixture(scope="module")
def wheel_venv(release: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv on ``WHEEL_PYTHON`` with the wheel built from the sdist and this run's Airflow,
    nothing from the checkout."""
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    _, wheel = release
    uv = str(VENV_BIN / "uv")
    subprocess.run([uv, "venv", "--quiet", "--python", WHEEL_PYTHON, str(venv)], check=True)
    python = str(venv / "bin" / "python")
    airflow = f"apache-airflow=={version('apache-airflow')}"
    installed = subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", python, str(wheel), airflow],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr
    return venv


def in_wheel_venv(venv: Path, command: list[str], home: Path, **variables: str) -> str:
    """Run ``command`` from the venv's bin, in an empty folder, with none of this run's Airflow settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("AIRFLOW", "_AIRFLOW", "KLING_"))
    }
    env |= {"PATH": f"{venv / 'bin'}{os.pathsep}{env['PATH']}", "AIRFLOW_HOME": str(home), **variables}
    env.pop("PYTHONPATH", None)
    # The first command byte-compiles what Airflow imports, and the others reuse it: cheaper than
    # compiling the whole venv at install.
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run(
        [str(venv / "bin" / command[0]), *command[1:]], env=env, cwd=home, capture_output=True, text=True
    )
    assert done.returncode == 0, f"{command}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_the_wheel_venv_runs_on_the_python_asked_for(wheel_venv: Path, tmp_path: Path) -> None:
    asked = subprocess.run([WHEEL_PYTHON, "--version"], capture_output=True, text=True, check=True)
    assert in_wheel_venv(wheel_venv, ["python", "--version"], tmp_path) == asked.stdout


def test_the_installed_wheel_is_the_provider_airflow_lists(wheel_venv: Path, tmp_path: Path) -> None:
    where = in_wheel_venv(
        wheel_venv, ["python", "-c", "import airflow_provider_kling as p; print(p.__file__)"], tmp_path
    )
    listed = in_wheel_venv(wheel_venv, ["airflow", "providers", "list", "--output", "json"], tmp_path)
    assert Path(where.strip()).is_relative_to(wheel_venv)
    providers = {provider["package_name"]: provider["version"] for provider in json.loads(listed)}
    assert providers["airflow-provider-kling"] == __version__


def test_the_installed_wheel_runs_the_example_dag(
    wheel_venv: Path, tmp_path: Path, kling_emulator: KlingEmulator
) -> None:
    dags = shutil.copytree(REPO / "example_dags", tmp_path / "dags")
    connection = {"conn_type": "kling", "host": kling_emulator.base_url, "password": DEFAULT_API_KEY}
    settings = {
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW_CONN_KLING_DEFAULT": json.dumps(connection),
    }
    in_wheel_venv(wheel_venv, ["airflow", "db", "migrate"], tmp_path, **settings)
    run = in_wheel_venv(wheel_venv, ["airflow", "dags", "test", "kling_text_to_video"], tmp_path, **settings)
    assert "state=success" in run
    assert [job["status"] for job in kling_emulator.jobs()] == ["completed"]
