#!/usr/bin/env bash
# Installs the Debian packages that the tests drive for real, once; a no-op when present.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then need+=(postgresql); fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system: need ${need[*]} (run as root, or install them with apt-get)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The tests start their own PostgreSQL cluster; keep the packaged one from running.
if command -v service >/dev/null 2>&1; then service postgresql stop >/dev/null 2>&1 || true; fi
