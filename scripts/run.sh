#!/usr/bin/env bash
# Set up (first run) and start the whole system with embedded defaults: in-memory state, no Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup-python.sh
exec .venv/bin/liveclass serve "$@"
