"""The documentation site: MkDocs builds it from docs/ (the README as its front page) with every link
and every API reference checked, and the README stays a front page. The pages' commands and code
run in test_readme.py."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
MKDOCS = Path(sys.executable).parent / "mkdocs"
#: The sections of the README before the site (610 lines): each is now a page, or a section of one.
FORMER_README_SECTIONS = (
    "The two commands",
    "Install",
    "The connection",
    "Use",
    "Keeping the video: `output_path` and Assets",
    "One task start per video",
    "Money: when a video is paid for, and never twice",
    "A credit limit per DAG run: `run_credit_limit`",
    "Metrics: credits, polls and times",
    "Lineage: OpenLineage",
    "Watch and review the videos inside Airflow",
    "The Kling gallery",
    "A person approves each video: `example_dags/kling_review.py`",
    "Errors and retries",
    "Security",
    "The emulator",
    "Performance",
    "Production: PostgreSQL, Celery or Kubernetes, several triggerers",
    "Versions",
    "Layout",
)


def build(project: Path, site: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [str(MKDOCS), "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def headings() -> set[str]:
    pages = [REPO / "README.md", *(REPO / "docs").glob("*.md")]
    return {
        match.group(1).strip()
        for page in pages
        for match in re.finditer(r"^#{1,4} (.+)$", page.read_text(), flags=re.MULTILINE)
    }


def test_the_site_builds_with_every_link_and_reference_checked(tmp_path: Path) -> None:
    built = build(REPO, tmp_path / "site")
    assert built.returncode == 0, built.stderr
    front_page = (tmp_path / "site" / "index.html").read_text()
    assert "A first DAG" in front_page and "@task.kling" in front_page
    reference = (tmp_path / "site" / "reference" / "index.html").read_text()
    assert "KlingGenerateOperator" in reference and "run_credit_limit" in reference


def test_a_reference_to_a_class_that_does_not_exist_fails_the_build(tmp_path: Path) -> None:
    project = tmp_path / "project"
    for part in ("docs", "scripts", "airflow_provider_kling"):
        shutil.copytree(REPO / part, project / part)
    shutil.copy(REPO / "mkdocs.yml", project)
    shutil.copy(REPO / "README.md", project)
    with (project / "docs" / "reference.md").open("a") as reference:
        reference.write("\n::: airflow_provider_kling.hooks.kling.RenamedHook\n")
    built = build(project, tmp_path / "site")
    assert built.returncode != 0
    assert "RenamedHook" in built.stderr


def test_the_readme_is_a_front_page_of_at_most_150_lines() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


def test_every_page_is_in_the_sites_navigation() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text().replace("!!python", "python"))
    in_nav = {page for entry in config["nav"] for page in entry.values()}
    pages = {page.name for page in (REPO / "docs").glob("*.md")}
    assert in_nav == pages | {"index.md"}


def test_every_section_of_the_former_readme_is_a_page_or_a_section_of_one() -> None:
    assert set(FORMER_README_SECTIONS) - headings() == set()
