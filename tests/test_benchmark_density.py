"""A CI-sized run of the triggerer density benchmark: 50 waits per variant, polled every half second.

It checks that the benchmark runs and reports every figure for all three variants, not the figures
themselves: the full-size run is `python benchmarks/triggerer_density.py --json density.json`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from script_runs import run_script

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "triggerer_density.py"
SIZE = 50
CAP = 40
VARIANTS = {"kling", "http-provider", "floor", "kling-capped"}

pytestmark = pytest.mark.timeout(800)


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict[str, Any]]:
    figures = tmp_path_factory.mktemp("density") / "density.json"
    options = ["--sizes", str(SIZE), "--interval", "0.5", "--cap", str(CAP), "--json", str(figures)]
    done = run_script(SCRIPT, *options, seconds=600)  # about a minute on a busy 2-core machine
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done.stdout, json.loads(figures.read_text())


def test_every_variant_ran_once(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    assert sorted(cell["variant"] for cell in figures["cells"]) == sorted(VARIANTS)
    assert {cell["size"] for cell in figures["cells"]} == {SIZE}


def test_every_wait_ended_as_expected_after_polling(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    for cell in figures["cells"]:
        assert cell["all_as_expected"], cell["outcomes"]
        assert sum(cell["outcomes"].values()) == SIZE
        assert cell["emulator_status_requests"] == cell["polls"]  # no poll uncounted, none retried
        assert cell["detection_lag_p99_s"] >= cell["detection_lag_median_s"] >= 0
        # Each wait polled until its job had ended, and stopped at the first answer saying so.
        assert cell["polls_after_ready"] == {"min": 1, "max": 1}, cell["variant"]


def test_the_capped_run_stays_under_its_cap_at_the_emulator(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    (capped,) = [cell for cell in figures["cells"] if cell["variant"] == "kling-capped"]
    # Counted in whole clock seconds at the emulator, where the network may bunch a few turns.
    assert capped["emulator_max_requests_per_second"] <= CAP * 1.25 + 1


def test_every_figure_is_reported(run: tuple[str, dict[str, Any]]) -> None:
    _, figures = run
    for cell in figures["cells"]:
        for name in ("cpu_us_per_poll", "rss_bytes_per_wait", "lag_p99_ms", "lag_max_ms", "wall_seconds"):
            assert isinstance(cell[name], float), (cell["variant"], name, cell[name])
    (comparison,) = figures["comparisons"]
    assert comparison["size"] == SIZE
    assert set(comparison["targets_met"]) == {
        "rss_per_wait",
        "cpu_vs_http_provider",
        "cpu_vs_floor",
        "lag_p99",
        "all_finished",
    }
    assert {"cpus", "python", "airflow", "aiohttp"} <= set(figures["machine"])


def test_the_table_names_each_variant_and_the_targets(run: tuple[str, dict[str, Any]]) -> None:
    table, _ = run
    for variant in VARIANTS:
        assert f" {variant} " in table
    assert "target" in table
