"""``scripts/_venv.sh``, which both README commands start with: it installs into a venv only what
the venv lacks. A reinstall swaps the package's files under every process running from the venv
(the README test runs ``run-example.sh`` beside the other test files).

The venv here is a stand-in whose ``python`` refuses ``-m pip``: an install shows as that refusal.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PYPROJECT_HASH = hashlib.sha256((REPO / "pyproject.toml").read_bytes()).hexdigest()
INSTALL_REFUSED = "install refused by the test's venv"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = pip ]; then echo "{INSTALL_REFUSED}"; exit 1; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "python").chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    return bin_dir.parent


def installed(venv: Path, pyproject_hash: str, airflow: str, extras: str) -> None:
    (venv / "kling-installed").write_text(f"{pyproject_hash}\n{airflow}\n{extras}\n")


def source_venv_script(venv: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLING_VENV": str(venv), "KLING_EXTRAS": "", "KLING_AIRFLOW": "", **settings}
    return subprocess.run(
        ["bash", "-c", f"source {REPO / 'scripts' / '_venv.sh'}"], env=env, capture_output=True, text=True
    )


def test_a_venv_installed_from_this_pyproject_is_not_installed_again(venv: Path) -> None:
    installed(venv, PYPROJECT_HASH, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is installed in" in done.stdout


def test_the_example_takes_the_venv_the_tests_installed(venv: Path) -> None:
    installed(venv, PYPROJECT_HASH, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_changed_pyproject_installs_again(venv: Path) -> None:
    installed(venv, "0" * 64, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert INSTALL_REFUSED in done.stderr


def test_another_airflow_installs_again(venv: Path) -> None:
    installed(venv, PYPROJECT_HASH, "apache-airflow==3.1.8", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert INSTALL_REFUSED in done.stderr


def test_an_extra_not_installed_installs_again(venv: Path) -> None:
    installed(venv, PYPROJECT_HASH, "", "")
    done = source_venv_script(venv, KLING_EXTRAS="test")
    assert INSTALL_REFUSED in done.stderr


def test_a_failed_install_is_not_taken_for_done(venv: Path) -> None:
    source_venv_script(venv, KLING_EXTRAS="test")
    done = source_venv_script(venv, KLING_EXTRAS="test")
    assert INSTALL_REFUSED in done.stderr
