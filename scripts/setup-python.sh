#!/usr/bin/env bash
# Create .venv (reusing any packages the system Python already has) and install liveclass into it.
# Usage: scripts/setup-python.sh [extras]   e.g. "test"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
  echo "liveclass needs Python 3.11 or newer as '$PY' (set PYTHON=...)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$PY" -m venv --system-site-packages .venv 2>/dev/null; then
    # Debian ships venv separately
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv && "$PY" -m venv --system-site-packages .venv
  fi
fi
# A C compiler and Python's headers build the forwarding kernel's native half (sfu/native/forward.c); without
# them liveclass still installs and forwards from Python, at about twice the CPU per viewer.
inc=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')
if ! command -v cc >/dev/null 2>&1 || [ ! -f "$inc/Python.h" ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc python3-dev >/dev/null || \
    echo "no C compiler or Python headers: the native forwarding kernel is not built" >&2
fi
spec="."
[ -n "${1:-}" ] && spec=".[$1]"
.venv/bin/python -m pip install -q --disable-pip-version-check -e "$spec" 2>&1 | grep -v -E "^WARNING: (Location|Running pip)" || true
.venv/bin/python -c "import sfu.webrtc.aiortc_adapter as a, sys; p = a.self_test(); print('aiortc adapter self-test:', p or 'ok'); sys.exit(1 if p else 0)"
