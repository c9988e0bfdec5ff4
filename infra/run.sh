#!/usr/bin/env bash
# The first command: set up, then run the whole local stack with the demo copilot.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh
exec .venv/bin/copilot up "$@"
