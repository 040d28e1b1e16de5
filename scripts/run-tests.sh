#!/usr/bin/env bash
# Install what the tests need, then run the linters and the whole test suite on Airflow 3.3.2
# (including the end-to-end runs on a real Airflow and smoke runs of the benchmarks),
# and the unit and DAG tests again on Airflow 3.1.8, the oldest version the package supports.
# Both runs always run; each reports its own result, and the script fails at the end if either did.
# Arguments go to pytest and skip the second Airflow (e.g. ./scripts/run-tests.sh -k hook).
set -euo pipefail
NEWEST_AIRFLOW="apache-airflow==3.3.2"
OLDEST_AIRFLOW="apache-airflow==3.1.8"
# Airflow 3.1.8 sets an attribute on cryptography's MultiFernet, which cryptography 51 (written in
# Rust) refuses: with a Fernet key set, every connection write fails. Its venv keeps cryptography 50.
OLDEST_AIRFLOW_PINS="cryptography<51"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

# Python $1 (such as 3.10) on PATH or installed by pyenv, if this machine has it.
find_python() {
  local candidate
  for candidate in "$(command -v "python$1")" "${PYENV_ROOT:-$HOME/.pyenv}/versions/$1".*/bin/"python$1"; do
    if [ -x "$candidate" ] && "$candidate" -c '' 2>/dev/null; then
      echo "$candidate"
      return
    fi
  done
  return 1
}
# The oldest and newest Python that Airflow 3.3 supports, where this machine has them (else its
# python3): the release's checks install the built wheel with the newest Airflow on the oldest Python,
# and the oldest Airflow's tests run on the newest Python (docs/versions.md).
OLDEST_PYTHON="$(find_python 3.10 || command -v python3)"
NEWEST_PYTHON="$(find_python 3.14 || find_python 3.13 || command -v python3)"

# From Debian: Chromium for the UI test (Playwright downloads no browser here); PostgreSQL and
# Redis for the production-shaped deployment (tests/test_production.py).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null || missing+=(postgresql)
[ -x /usr/bin/redis-server ] || missing+=(redis-server)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ]; then
    echo "Installing Debian's ${missing[*]} for the UI and production-shaped tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "The UI and production-shaped tests need Debian's ${missing[*]}: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
fi

# Most tests wait on emulators and Airflow, not on the CPU: four test processes run the files side by
# side, each file whole in one process (its deployment starts once), the files on the shared real
# Airflow together in one, and the files that wait longest first, so that their waits overlap the
# others' work (tests/conftest.py; docs/benchmarks.md, section 7, has the figures).
PARALLEL=(-n 4 --dist loadfile)
# The real-Airflow deployments, the benchmarks' smoke runs, the README's example (which runs in
# .venv), the release's checks and the docs site's build run once, on the newest Airflow; the
# task-end tests run on both.
NEWEST_ONLY=(
  --ignore=tests/test_end_to_end.py --ignore=tests/test_restarts.py --ignore=tests/test_production.py
  --ignore=tests/test_benchmark_worker_slots.py --ignore=tests/test_benchmark_rate_limit.py
  --ignore=tests/test_benchmark_real_triggerer.py --ignore=tests/test_benchmark_density.py
  --ignore=tests/test_benchmark_polling.py --ignore=tests/test_benchmark_parse_cost.py
  --deselect tests/test_readme.py::test_run_example_ends_with_the_path_of_a_kept_mp4
  --ignore=tests/test_release.py --ignore=tests/test_docs.py
)
failed=()
# Each run is a subshell with `set -e` of its own; its status is read with errexit off here, since a
# subshell tested by `if` or `||` would run with errexit ignored and hide a failing step. The runs
# take turns: on two cores, the oldest Airflow's run beside the newest's saved 2% and doubled the
# load every test meets (docs/benchmarks.md, section 7).
set +e
if [ "$#" -eq 0 ]; then
  # The oldest Airflow's venv installs in the background while the newest's installs and its tests
  # run; its output is shown when its tests start.
  oldest_install_log="$(mktemp)"
  (
    set -e
    PYTHON="$NEWEST_PYTHON" KLING_EXTRAS=test KLING_AIRFLOW="$OLDEST_AIRFLOW $OLDEST_AIRFLOW_PINS" \
      KLING_VENV="$ROOT/.venv-oldest-airflow" source "$ROOT/scripts/_venv.sh"
  ) >"$oldest_install_log" 2>&1 &
  oldest_install=$!
fi
(
  set -e
  KLING_EXTRAS=test,docs KLING_AIRFLOW="$NEWEST_AIRFLOW" source "$ROOT/scripts/_venv.sh"
  cd "$ROOT"
  echo "== ruff"; ruff check .; ruff format --check .
  # mypy keeps one core busy for about 20 s: it runs while the first test files wait on their
  # emulators, and its report follows the tests'.
  mypy_log="$(mktemp)"
  mypy >"$mypy_log" 2>&1 &
  mypy_run=$!
  trap 'kill "$mypy_run" 2>/dev/null || true; rm -f "$mypy_log"' EXIT
  echo "== pytest on $NEWEST_AIRFLOW, $(python --version) (the built wheel on $("$OLDEST_PYTHON" --version))"
  tests=0
  KLING_WHEEL_PYTHON="$OLDEST_PYTHON" pytest "${PARALLEL[@]}" "$@" || tests=$?
  echo "== mypy"
  checked=0
  wait "$mypy_run" || checked=$?
  cat "$mypy_log"
  [ "$tests" -eq 0 ] && [ "$checked" -eq 0 ]
)
[ $? -eq 0 ] || failed+=("$NEWEST_AIRFLOW (linters or tests)")
if [ "$#" -eq 0 ]; then
  wait "$oldest_install"
  installed=$?
  cat "$oldest_install_log"
  rm -f "$oldest_install_log"
  (
    set -e
    [ "$installed" -eq 0 ]
    # shellcheck disable=SC1091
    source "$ROOT/.venv-oldest-airflow/bin/activate"
    cd "$ROOT"
    echo "== pytest on $OLDEST_AIRFLOW, $(python --version) (unit and DAG tests)"
    pytest "${PARALLEL[@]}" "${NEWEST_ONLY[@]}"
  )
  [ $? -eq 0 ] || failed+=("$OLDEST_AIRFLOW (venv, or unit and DAG tests)")
fi
set -e
if [ "${#failed[@]}" -gt 0 ]; then
  printf '== FAILED on %s\n' "${failed[@]}" >&2
  exit 1
fi
echo "== all passed"
