"""``scripts/_venv.sh``, which both README commands start with: it installs into a venv only what
the venv lacks. A reinstall swaps the package's files under every process running from the venv
(the README test runs ``run-example.sh`` beside the other test files).

The venv here is a stand-in whose ``python -m pip`` and ``uv`` install nothing: they refuse, or with
``INSTALL=ok`` succeed, and an install shows as the refusal.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SOURCES_HASH = hashlib.sha256(
    (REPO / "pyproject.toml").read_bytes() + (REPO / "airflow_provider_kling" / "__init__.py").read_bytes()
).hexdigest()
INSTALL_REFUSED = "install refused by the test's venv"


@pytest.fixture
def venv(tmp_path: Path) -> Path:
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    refuse_unless_ok = f'[ "$INSTALL" = ok ] && exit 0; echo "{INSTALL_REFUSED}"; exit 1\n'
    (bin_dir / "python").write_text(
        f'#!/bin/sh\nif [ "$1" = -m ] && [ "$2" = pip ]; then {refuse_unless_ok}fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "uv").write_text(f"#!/bin/sh\n{refuse_unless_ok}")
    for command in ("python", "uv"):
        (bin_dir / command).chmod(0o755)
    (bin_dir / "activate").write_text(f'PATH="{bin_dir}:$PATH"\n')
    return bin_dir.parent


def installed(venv: Path, sources_hash: str, airflow: str, extras: str, checkout: Path = REPO) -> None:
    (venv / "kling-installed").write_text(f"{checkout}\n{sources_hash}\n{airflow}\n{extras}\n")


def source_venv_script(venv: Path, **settings: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "KLING_VENV": str(venv), "KLING_EXTRAS": "", "KLING_AIRFLOW": "", **settings}
    script = str(REPO / "scripts" / "_venv.sh")
    return subprocess.run(["bash", "-c", 'source "$0"', script], env=env, capture_output=True, text=True)


def test_a_venv_installed_from_this_pyproject_is_not_installed_again(venv: Path) -> None:
    installed(venv, SOURCES_HASH, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "is installed in" in done.stdout


def test_the_example_takes_the_venv_the_tests_installed(venv: Path) -> None:
    installed(venv, SOURCES_HASH, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv)
    assert done.returncode == 0, done.stdout + done.stderr


def test_an_install_is_remembered_for_the_next_run(venv: Path) -> None:
    first = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2", INSTALL="ok")
    second = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert second.returncode == 0, second.stdout + second.stderr
    assert "is installed in" in second.stdout


def test_another_checkout_installs_again(venv: Path, tmp_path: Path) -> None:
    installed(venv, SOURCES_HASH, "apache-airflow==3.3.2", "test", checkout=tmp_path)
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert INSTALL_REFUSED in done.stderr


def test_a_changed_pyproject_or_version_installs_again(venv: Path) -> None:
    installed(venv, "0" * 64, "apache-airflow==3.3.2", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert INSTALL_REFUSED in done.stderr


def test_another_airflow_installs_again(venv: Path) -> None:
    installed(venv, SOURCES_HASH, "apache-airflow==3.1.8", "test")
    done = source_venv_script(venv, KLING_EXTRAS="test", KLING_AIRFLOW="apache-airflow==3.3.2")
    assert INSTALL_REFUSED in done.stderr


def test_an_extra_not_installed_installs_again(venv: Path) -> None:
    installed(venv, SOURCES_HASH, "", "")
    done = source_venv_script(venv, KLING_EXTRAS="test")
    assert INSTALL_REFUSED in done.stderr


def test_a_failed_install_is_not_taken_for_done(venv: Path) -> None:
    source_venv_script(venv, KLING_EXTRAS="test")
    done = source_venv_script(venv, KLING_EXTRAS="test")
    assert INSTALL_REFUSED in done.stderr


def test_a_venv_on_another_python_is_made_again_on_the_one_asked_for(venv: Path) -> None:
    installed(venv, SOURCES_HASH, "", "")
    (venv / "bin" / "python").write_text("#!/bin/sh\necho 3.9\n")
    # Made again, its install then fails at once: no package index here.
    done = source_venv_script(venv, PYTHON=sys.executable, PIP_NO_INDEX="1", PIP_FIND_LINKS="")
    assert (
        f"Making {venv} again on Python {sys.version_info[0]}.{sys.version_info[1]} (it had 3.9)"
        in done.stdout
    )
    made = subprocess.run([venv / "bin" / "python", "--version"], capture_output=True, text=True)
    assert made.stdout == f"Python {sys.version.split()[0]}\n"
