"""DAG-parse cost: what importing the operator and sensor adds over `airflow.sdk`, side by side.

    python benchmarks/parse_cost.py --runs 15

Each run is a fresh interpreter, alternating the baseline (`import airflow.sdk`) and the provider
(`import airflow.sdk` then the operator and sensor modules), so both see the same machine state.
Prints the median and p90 wall time of each, the provider's own import time measured inside the
interpreter (after `airflow.sdk`, so free of start-up noise), and the modules the provider adds.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

BASELINE = "import airflow.sdk"
PROVIDER = (
    "import airflow.sdk, sys, time, json; before = set(sys.modules); started = time.perf_counter(); "
    "import airflow_provider_kling.operators.kling, airflow_provider_kling.sensors.kling; "
    "took = time.perf_counter() - started; "
    "print(json.dumps({'seconds': took, 'added': sorted(set(sys.modules) - before)}))"
)


def timed(code: str) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    runs = parser.parse_args(argv).runs
    timed(PROVIDER)  # warm the file system cache for both
    baseline: list[float] = []
    provider: list[float] = []
    inside: list[float] = []
    added: list[str] = []
    for _ in range(runs):
        baseline.append(timed(BASELINE)[0])
        seconds, output = timed(PROVIDER)
        provider.append(seconds)
        probe = json.loads(output.strip().splitlines()[-1])
        inside.append(probe["seconds"])
        added = probe["added"]
    rows = [
        ("import airflow.sdk", statistics.median(baseline), percentile(baseline, 0.9)),
        ("+ operator and sensor", statistics.median(provider), percentile(provider, 0.9)),
        ("provider import inside", statistics.median(inside), percentile(inside, 0.9)),
    ]
    print(f"{'':24} {'median ms':>10} {'p90 ms':>10}")
    for name, median, p90 in rows:
        print(f"{name:24} {median * 1000:10.1f} {p90 * 1000:10.1f}")
    print(f"ratio of the two interpreters' medians: {rows[1][1] / rows[0][1]:.3f}")
    top_level = sorted({name.split(".")[0] for name in added})
    print(f"modules added: {len(added)}, top-level packages among them: {', '.join(top_level)}")
    heavy = [m for m in added if m.startswith(("requests", "aiohttp", "airflow_provider_kling.emulator"))]
    print(f"requests, aiohttp or the emulator loaded: {heavy or 'none'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
