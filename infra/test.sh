#!/usr/bin/env bash
# The second command: set up (with test tools), then lint, type-check and run every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash infra/setup.sh dev
if command -v npm >/dev/null 2>&1; then
  # Serverless Framework v3, for the packaging test of serverless.yml; axe-core and the real
  # botframework-webchat bundle (Direct Line test) for tests/browser.
  if [ ! -x infra/node/node_modules/.bin/serverless ] || [ ! -f infra/node/node_modules/axe-core/axe.min.js ] \
    || [ ! -f infra/node/node_modules/botframework-webchat/dist/webchat.js ]; then
    npm ci --prefix infra/node --no-audit --no-fund --loglevel=error
  fi
fi
.venv/bin/ruff check shared functions tests bench
.venv/bin/ruff format --check shared functions tests bench
.venv/bin/mypy
.venv/bin/python -m pytest "$@"
