"""``kling-emulator`` / ``python -m airflow_provider_kling.emulator``: serve the emulator until signalled.

The first stdout line is ``Kling emulator listening on http://HOST:PORT`` with the real port, so a
script (or a test) that passed ``--port 0`` can read where to connect.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

from airflow_provider_kling.emulator.config import (
    APIS,
    DEFAULT_ACCESS_KEY,
    DEFAULT_API_KEY,
    FAULT_ENDPOINTS,
    EmulatorConfig,
    FaultRates,
)
from airflow_provider_kling.emulator.server import serving

DEFAULT_PORT = 8088
FAULT_NAMES = [rate_field.name for rate_field in fields(FaultRates)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kling-emulator", description="Serve an emulator of a Kling video API for offline tests."
    )
    defaults = EmulatorConfig()
    _add_server_options(parser.add_argument, defaults)
    _add_job_options(parser.add_argument, defaults)
    _add_fault_options(parser.add_argument, defaults)
    return parser


def _add_server_options(add: Callable[..., Any], defaults: EmulatorConfig) -> None:
    """Where it listens, whom it serves, and what it keeps across restarts."""
    add("--host", default=defaults.host, help="address to listen on (default: %(default)s)")
    add("--port", type=int, default=DEFAULT_PORT, help="port; 0 picks a free one (default: %(default)s)")
    add("--api", choices=APIS, default=defaults.api, help="the API it speaks (default: %(default)s)")
    add(
        "--api-key",
        action="append",
        dest="api_keys",
        metavar="KEY",
        help=f"an accepted API key (on klingai: a Secret Key); repeat for several accounts "
        f"(default: {DEFAULT_API_KEY})",
    )
    add(
        "--access-key",
        action="append",
        dest="access_keys",
        metavar="KEY",
        help=f"on klingai, the Access Key of each --api-key, in order (default: {DEFAULT_ACCESS_KEY}, "
        f"then {DEFAULT_ACCESS_KEY}-2...)",
    )
    add(
        "--credits",
        type=int,
        default=defaults.credits,
        help="starting credits per key (default: %(default)s)",
    )
    add("--state-file", type=Path, help="JSON file keeping jobs and credits across restarts")


def _add_job_options(add: Callable[..., Any], defaults: EmulatorConfig) -> None:
    """How long jobs run and how they end."""
    add("--min-seconds", type=float, default=defaults.min_seconds, help="shortest job (default: %(default)s)")
    add("--max-seconds", type=float, default=defaults.max_seconds, help="longest job (default: %(default)s)")
    add("--speed", type=float, default=defaults.speed, help="divides job durations (default: %(default)s)")
    add("--seed", type=int, help="makes task ids, durations, failures and faults repeatable")
    add(
        "--job-failure-rate",
        type=float,
        default=defaults.job_failure_rate,
        help="share of jobs that end failed (default: %(default)s)",
    )


def _add_fault_options(add: Callable[..., Any], defaults: EmulatorConfig) -> None:
    """The faults each endpoint answers with, and the account's rate limit."""
    for endpoint in FAULT_ENDPOINTS:
        for name in FAULT_NAMES:
            add(
                f"--{endpoint}-{name.replace('_', '-')}-rate",
                dest=f"{endpoint}_{name}_rate",
                type=float,
                default=0.0,
                help=f"share of {endpoint} requests answered with the {name} fault (default: %(default)s)",
            )
    add(
        "--slow-seconds",
        type=float,
        default=defaults.slow_seconds,
        help="how long a slow or timeout_after_create fault holds the answer (default: %(default)s)",
    )
    add(
        "--retry-after",
        type=float,
        default=defaults.retry_after,
        help="Retry-After seconds of a rate_limit fault or a --rate-limit 429 (default: %(default)s)",
    )
    add(
        "--rate-limit",
        type=float,
        help="API requests an account may make in any one second; 429 beyond it (default: no limit)",
    )
    add(
        "--concurrency",
        type=int,
        help="on klingai, jobs an account may run at once; 429 (code 1303) beyond it (default: no limit)",
    )


def _config(args: argparse.Namespace) -> EmulatorConfig:
    def rates(endpoint: str) -> FaultRates:
        return FaultRates(**{name: getattr(args, f"{endpoint}_{name}_rate") for name in FAULT_NAMES})

    # Every option sets the config field of its name; the fault rates come in per endpoint.
    given = {
        field.name: getattr(args, field.name) for field in fields(EmulatorConfig) if hasattr(args, field.name)
    }
    given["api_keys"] = tuple(args.api_keys or (DEFAULT_API_KEY,))
    given["access_keys"] = tuple(args.access_keys or ())
    return EmulatorConfig(**given, submit_faults=rates("submit"), status_faults=rates("status"))


async def _serve_until_signalled(config: EmulatorConfig) -> None:
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signal_number, stopping.set)
    async with serving(config) as (_, base_url):
        print(f"Kling emulator listening on {base_url}", flush=True)
        await stopping.wait()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = _config(args)
    except ValueError as invalid:
        parser.error(str(invalid))
    if not args.api_keys:
        print(
            f"kling-emulator: no --api-key given, accepting the default key {DEFAULT_API_KEY}",
            file=sys.stderr,
        )
    try:
        asyncio.run(_serve_until_signalled(config))
    except (OSError, ValueError) as failure:  # a taken port, an unreadable state file
        print(f"kling-emulator: {failure}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
