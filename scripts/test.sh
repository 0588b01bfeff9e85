#!/usr/bin/env bash
# Install everything the tests need (Debian's chromium, with fonts-noto-cjk for the pages in Chinese, and
# redis-server, iproute2 and nftables for network namespaces and their firewalls, coturn for TURN over TCP/TLS,
# caddy and docker-compose to check the production layout, janus for the side-by-side fan-out benchmark, Python
# deps) and run the whole suite. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for pkg in chromium fonts-noto-cjk redis-server iproute2 nftables coturn caddy docker-compose janus; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
bash scripts/setup-python.sh test
exec .venv/bin/python -m pytest -q -rs --durations=15 "$@"
