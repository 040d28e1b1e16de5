"""DAG-parse cost: what importing the operator and sensor adds over `airflow.sdk`, side by side.

    python benchmarks/parse_cost.py --runs 15

Measures a regular install, as users have it: the checkout's wheel is installed with pip into a
temporary folder (its files, byte-compiled by pip) that goes first on PYTHONPATH. An editable install
measures something else: with PYTHONDONTWRITEBYTECODE set, as on these machines, its modules are
compiled from source on every import. ``--editable`` measures the checkout as installed.

Each run is a fresh interpreter, alternating the baseline (`import airflow.sdk`) and the provider
(`import airflow.sdk` then the operator and sensor modules), so both see the same machine state.
Prints the median and p90 wall time of each, the provider's own import time measured inside the
interpreter (after `airflow.sdk`, so free of start-up noise), and the modules the provider adds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from built_wheel import build_wheel
from figures import percentile

BASELINE = "import airflow.sdk"
PROVIDER = (
    "import airflow.sdk, sys, time, json; before = set(sys.modules); started = time.perf_counter(); "
    "import airflow_provider_kling.operators.kling, airflow_provider_kling.sensors.kling; "
    "took = time.perf_counter() - started; "
    "print(json.dumps({'seconds': took, 'added': sorted(set(sys.modules) - before), "
    "'from': sys.modules['airflow_provider_kling'].__file__}))"
)
#: Importing these at parse time would add a third-party package or open the emulator's server.
MUST_STAY_UNLOADED = ("requests", "aiohttp", "airflow_provider_kling.emulator", "airflow.triggers.base")


def timed(code: str, env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    # From a folder holding no checkout: `python -c` puts the working directory first on sys.path.
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        cwd=tempfile.gettempdir(),
    )
    return time.perf_counter() - started, done.stdout


def regular_install(target: Path) -> None:
    """The checkout's wheel installed in ``target``, byte-compiled; dependencies stay the environment's."""
    wheel = build_wheel(target / "wheel")
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps"]
    subprocess.run([*pip, "--target", str(target / "site"), str(wheel)], check=True)


def measure(runs: int, env: dict[str, str]) -> dict[str, Any]:
    timed(PROVIDER, env)  # warm the file system cache for both
    baseline: list[float] = []
    provider: list[float] = []
    inside: list[float] = []
    probe: dict[str, Any] = {}
    for _ in range(runs):
        baseline.append(timed(BASELINE, env)[0])
        seconds, output = timed(PROVIDER, env)
        provider.append(seconds)
        probe = json.loads(output.strip().splitlines()[-1])
        inside.append(float(probe["seconds"]))
    added = [str(name) for name in probe["added"]]
    return {
        "runs": runs,
        "imported_from": probe["from"],
        "baseline_ms": [statistics.median(baseline) * 1000, percentile(baseline, 0.9) * 1000],
        "provider_ms": [statistics.median(provider) * 1000, percentile(provider, 0.9) * 1000],
        "provider_inside_ms": [statistics.median(inside) * 1000, percentile(inside, 0.9) * 1000],
        "modules_added": added,
        "top_level_added": sorted({name.split(".")[0] for name in added}),
        "heavy_loaded": [name for name in added if name.startswith(MUST_STAY_UNLOADED)],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--editable", action="store_true", help="measure the checkout as installed")
    parser.add_argument("--json", help="also write the figures to this file")
    arguments = parser.parse_args(argv)
    env = dict(os.environ)
    with tempfile.TemporaryDirectory(prefix="kling-parse-cost-") as target:
        if not arguments.editable:
            regular_install(Path(target))
            site = str(Path(target) / "site")
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [site, env.get("PYTHONPATH")]))
        figures = measure(arguments.runs, env)
    print(f"provider imported from {figures['imported_from']}")
    print(f"{'':24} {'median ms':>10} {'p90 ms':>10}")
    for name, key in [
        ("import airflow.sdk", "baseline_ms"),
        ("+ operator and sensor", "provider_ms"),
        ("provider import inside", "provider_inside_ms"),
    ]:
        median, p90 = figures[key]
        print(f"{name:24} {median:10.1f} {p90:10.1f}")
    added, top_level = figures["modules_added"], ", ".join(figures["top_level_added"])
    print(f"modules added: {len(added)}, top-level packages among them: {top_level}")
    print(f"loaded that must not be: {figures['heavy_loaded'] or 'none'} (target: none, and under 20 ms)")
    if arguments.json:
        Path(arguments.json).write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
