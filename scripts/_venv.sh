# Sourced by the other scripts: make (once) and activate a virtualenv ($KLING_VENV, default .venv)
# with the package installed from this checkout, the extras named in $KLING_EXTRAS, and
# $KLING_AIRFLOW (requirements, space-separated, such as apache-airflow==3.3.2) when set.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))'; then
  echo "airflow-provider-kling needs Python 3.10 or newer; $PYTHON is $("$PYTHON" --version 2>&1)." >&2
  exit 1
fi
VENV="${KLING_VENV:-$ROOT/.venv}"
python_version() { "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])'; }
if [ -x "$VENV/bin/python" ] && [ "$(python_version "$VENV/bin/python")" != "$(python_version "$PYTHON")" ]; then
  echo "Making $VENV again on Python $(python_version "$PYTHON") (it had $(python_version "$VENV/bin/python"))"
  rm -rf "$VENV"
fi
if [ ! -x "$VENV/bin/python" ]; then
  echo "Creating the virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
# An editable install follows the checkout's code by itself: it is made again only when another
# checkout, pyproject.toml, the package's version (airflow_provider_kling/__init__.py), the Airflow
# asked for or an extra not yet installed says so. Installing into a venv that other processes run
# from (the README test runs run-example.sh beside the others) would swap its files under them.
what="airflow-provider-kling${KLING_EXTRAS:+[$KLING_EXTRAS]}${KLING_AIRFLOW:+ with $KLING_AIRFLOW}"
stamp="$VENV/kling-installed"
sources_hash="$(cat "$ROOT/pyproject.toml" "$ROOT/airflow_provider_kling/__init__.py" | python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest())')"
installed_already() {
  [ -f "$stamp" ] || return 1
  local checkout hash airflow extras extra wanted="${KLING_EXTRAS:-}"
  { read -r checkout; read -r hash; read -r airflow; read -r extras; } <"$stamp" || return 1
  [ "$checkout" = "$ROOT" ] && [ "$hash" = "$sources_hash" ] || return 1
  [ -z "${KLING_AIRFLOW:-}" ] || [ "$airflow" = "$KLING_AIRFLOW" ] || return 1
  for extra in ${wanted//,/ }; do
    [[ ",$extras," == *",$extra,"* ]] || return 1
  done
}
if installed_already; then
  echo "$what is installed in $VENV already"
else
  echo "Installing $what into $VENV"
  install_log="$VENV/install.log"
  rm -f "$stamp"
  # uv resolves and installs Airflow's two hundred packages in seconds where pip takes a minute; pip
  # stays in the venv (the packaging tests and benchmarks build and install wheels with it). Byte-compiled
  # at install, as pip does: where PYTHONDONTWRITEBYTECODE is set, every Airflow process would otherwise
  # compile Airflow again as it imports it (the 3.3.2 tests took 13:40 instead of 10:40).
  if ! { python -m pip install --disable-pip-version-check --upgrade pip uv \
         && uv pip install --compile-bytecode --python "$VENV/bin/python" -e "$ROOT${KLING_EXTRAS:+[$KLING_EXTRAS]}" \
              ${KLING_AIRFLOW:-}; } \
       >"$install_log" 2>&1; then
    cat "$install_log" >&2
    echo "Installing failed; the log above is also in $install_log" >&2
    exit 1
  fi
  printf '%s\n%s\n%s\n%s\n' "$ROOT" "$sources_hash" "${KLING_AIRFLOW:-}" "${KLING_EXTRAS:-}" >"$stamp"
fi
