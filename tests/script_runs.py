"""Running a benchmark script to its end from a test, and stopping it cleanly when it hangs."""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from deployment import stop

#: How long an interrupted script may take to stop the deployment it started.
CLEANUP_SECONDS = 120


def interrupt(process: subprocess.Popen[bytes]) -> None:
    """SIGINT, not SIGTERM: Python then runs the script's ``with`` blocks, which stop its deployment."""
    stop(process, ask=signal.SIGINT, seconds=CLEANUP_SECONDS)


def run_script(script: Path, *options: str, seconds: float) -> subprocess.CompletedProcess[str]:
    """``python script options``, allowed ``seconds`` (a hang guard, not a speed check).

    The script's output goes to files, not pipes: the Airflow components it starts hold its output
    open in sessions of their own, and a pipe read would wait for them too. A script still running
    after ``seconds`` gets SIGINT, so that its ``with`` blocks stop its deployment and emulator (a
    SIGKILL would leave them running, starving every test after it), then SIGKILL if it has not
    ended within CLEANUP_SECONDS; the test then fails with the end of what it printed.
    """
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), *options], stdout=stdout, stderr=stderr, start_new_session=True
        )
        stopped = False
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            stopped = True
            interrupt(process)
        except BaseException:  # pytest-timeout's, or a Ctrl-C: the deployment must not outlive the test
            interrupt(process)
            raise
        stdout.seek(0)
        stderr.seek(0)
        done = subprocess.CompletedProcess(process.args, process.returncode, stdout.read(), stderr.read())
    if stopped:
        raise AssertionError(
            f"{script.name} ran past {seconds} s and was stopped; it printed:\n"
            f"{done.stdout[-3000:]}\n{done.stderr[-4000:]}"
        )
    return done
