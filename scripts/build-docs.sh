#!/usr/bin/env bash
# Build the documentation site into site/ with MkDocs, strict: a broken link, or a reference to a
# renamed class, fails the build. Arguments go to mkdocs instead (./scripts/build-docs.sh serve).
set -euo pipefail
export NO_MKDOCS_2_WARNING=1  # Material for MkDocs's notice of its successor, on every build
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
KLING_EXTRAS=docs source "$ROOT/scripts/_venv.sh"
cd "$ROOT"
if [ "$#" -eq 0 ]; then
  set -- build --strict
fi
mkdocs "$@"
