"""The provider's sdist and wheel as they would be published, built from a copy of the checkout.

A copy of the files git would commit (tracked, or new and not ignored), because setuptools builds
inside the source folder: two builds at once would share its ``build/`` folder, and files an earlier
build left there would be packed into the wheel.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parent.parent


def build_wheel(wheel_dir: Path) -> Path:
    """Build the wheel straight from the checkout's files into ``wheel_dir``; return its path."""
    [wheel] = _build(wheel_dir, "--wheel")
    return wheel


def build_release(dist_dir: Path) -> tuple[Path, Path]:
    """Build the sdist, then the wheel from the sdist, as ``python -m build`` makes them for PyPI;
    return both paths."""
    sdist, wheel = _build(dist_dir)
    return sdist, wheel


def copy_checkout(destination: Path) -> None:
    """Copy the files git would commit (uncommitted edits included) into ``destination``."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=CHECKOUT,
        capture_output=True,
        check=True,
    )
    for name in filter(None, listed.stdout.decode().split("\0")):
        if (CHECKOUT / name).is_file():  # a file deleted but not yet committed is still listed
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(CHECKOUT / name, destination / name)


def _build(dist_dir: Path, *options: str) -> list[Path]:
    with tempfile.TemporaryDirectory(prefix="kling-build-sources-") as folder:
        sources = Path(folder)
        copy_checkout(sources)
        built = subprocess.run(
            [sys.executable, "-m", "build", *options, "--outdir", str(dist_dir), str(sources)],
            capture_output=True,
            text=True,
        )
    if built.returncode != 0:
        raise RuntimeError(f"python -m build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}")
    return sorted(dist_dir.glob("airflow_provider_kling-*.tar.gz")) + sorted(
        dist_dir.glob("airflow_provider_kling-*.whl")
    )
