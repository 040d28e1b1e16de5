"""The provider's wheel as users install it, built from a copy of the checkout's sources.

A copy, because setuptools builds inside the source folder: two builds at once would share its
``build/`` folder, and files an earlier build left there would be packed into the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent
#: What the build reads: the project's metadata, its readme and the package.
SOURCES = ("pyproject.toml", "README.md", "airflow_provider_kling")


def build_wheel(wheel_dir: Path) -> Path:
    """Build the wheel into ``wheel_dir`` (its dependencies are not fetched) and return its path."""
    with tempfile.TemporaryDirectory(prefix="kling-wheel-sources-") as folder:
        sources = Path(folder)
        for name in SOURCES:
            if (CHECKOUT / name).is_dir():
                shutil.copytree(CHECKOUT / name, sources / name, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(CHECKOUT / name, sources / name)
        pip = [sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps"]
        subprocess.run([*pip, "--wheel-dir", str(wheel_dir), str(sources)], check=True)
    [wheel] = wheel_dir.glob("airflow_provider_kling-*.whl")
    return wheel
