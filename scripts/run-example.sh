#!/usr/bin/env bash
# Run the text-to-video example DAG end to end with `airflow dags test`.
# KLING_API picks the API: ulazai (the default) or klingai (Kling's own). With no key set it starts
# the bundled Kling emulator speaking that API and spends nothing. With a key it calls the real API
# and spends: on ulazai KLING_API_KEY (KLING_BASE_URL, default https://ulazai.com; ~55 credits), on
# klingai KLING_ACCESS_KEY and KLING_SECRET_KEY (KLING_BASE_URL, default
# https://api-singapore.klingai.com; 1.5 units).
set -euo pipefail
KLING_EXTRAS="" source "$(dirname "$0")/_venv.sh"
cd "$ROOT"

export AIRFLOW_HOME="${AIRFLOW_HOME:-$(mktemp -d -t kling-example-airflow-XXXXXX)}"
export AIRFLOW__CORE__LOAD_EXAMPLES=False
export AIRFLOW__CORE__DAGS_FOLDER="$ROOT/example_dags"
export KLING_API="${KLING_API:-ulazai}"
emulator_pid=""
cleanup() { if [ -n "$emulator_pid" ]; then kill "$emulator_pid" 2>/dev/null || true; fi; }
trap cleanup EXIT

# The connection as JSON: host $1, password $2, and on klingai login $3, the "api" extra, and how long
# its jobs take where that is known ($4: the emulator's, 6x faster than the vendor's 60-90 s).
connection() {
  python -c 'import json, os, sys
connection = {"conn_type": "kling", "host": sys.argv[1], "password": sys.argv[2]}
if os.environ["KLING_API"] != "ulazai":
    extra = {"api": os.environ["KLING_API"], "job_seconds": sys.argv[4] if len(sys.argv) > 4 else ""}
    connection |= {"login": sys.argv[3], "extra": extra}
print(json.dumps(connection))' "$@"
}

case "$KLING_API" in
  ulazai) key="${KLING_API_KEY:-}"; default_url="https://ulazai.com" ;;
  klingai) key="${KLING_SECRET_KEY:-}"; default_url="https://api-singapore.klingai.com" ;;
  *) echo "KLING_API must be ulazai or klingai, not $KLING_API" >&2; exit 2 ;;
esac
if [ -n "$key" ]; then
  echo "A key is set: using the real Kling API ($KLING_API) at ${KLING_BASE_URL:-$default_url} (this spends credits)."
  export AIRFLOW_CONN_KLING_DEFAULT="$(connection "${KLING_BASE_URL:-$default_url}" "$key" "${KLING_ACCESS_KEY:-}")"
else
  echo "No key set: starting the bundled Kling emulator, speaking $KLING_API (no key, no credits)."
  # Jobs take 60-90 s at the vendor; the emulator runs them 6x faster so the demo takes ~15 s.
  exec 3< <(python -m airflow_provider_kling.emulator --api "$KLING_API" --port 0 --speed 6)
  emulator_pid=$!
  read -r banner <&3
  emulator_url="${banner##* }"
  echo "$banner"
  export AIRFLOW_CONN_KLING_DEFAULT="$(connection "$emulator_url" kling-emulator-key kling-emulator-access-key 10-15)"
fi

echo "Preparing Airflow in $AIRFLOW_HOME"
airflow db migrate >/dev/null
echo "Running the example DAG kling_text_to_video"
airflow dags test kling_text_to_video 2>&1 | tee "$AIRFLOW_HOME/example-run.log" \
  | grep --line-buffered -E "Submitting Kling|Kling job|Kling video ready|New clip|DagRun Finished|ERROR|Error" || true
if grep -q "state=success" "$AIRFLOW_HOME/example-run.log"; then
  video_url="$(grep -o 'Kling video ready: [^ ]*' "$AIRFLOW_HOME/example-run.log" | tail -1 | cut -d' ' -f4)"
  # Keep the video while its host (the emulator, or the vendor's short-lived link) still serves it,
  # with the provider's own bounded, checked download.
  video_file="$AIRFLOW_HOME/kling-example-video.mp4"
  python - "$video_url" "$video_file" <<'PY'
import sys

from airflow.sdk import ObjectStoragePath

from airflow_provider_kling.hooks.kling import KlingHook

KlingHook().download_video(sys.argv[1], ObjectStoragePath(f"file://{sys.argv[2]}"))
PY
  echo "Done: the example DAG succeeded. The video ($video_url) is kept at: $video_file"
else
  echo "The example DAG did not succeed; full log: $AIRFLOW_HOME/example-run.log" >&2
  exit 1
fi
