#!/usr/bin/env bash
# Install what the tests need into .venv, then run the linters and the whole test suite,
# including the end-to-end run on a real Airflow (scheduler, triggerer, dag-processor, api-server).
set -euo pipefail
KLING_EXTRAS=test source "$(dirname "$0")/_venv.sh"
cd "$ROOT"
echo "== ruff"; ruff check . && ruff format --check .
echo "== mypy"; mypy
echo "== pytest"; pytest "$@"
