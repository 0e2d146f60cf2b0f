#!/usr/bin/env bash
# ocpp-rpc from npm (version pinned in tests/interop/package-lock.json) into tests/interop/node_modules (git-ignored),
# for tests/e2e/test_interop_ocpp_rpc.py: `npm ci` once, then nothing while the lock file is unchanged. Without node
# or npm on PATH, Debian's nodejs and npm are installed with apt (as scripts/test.sh does for redis-server); where
# apt cannot, nothing is installed and those tests skip and say why.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  if command -v apt-get >/dev/null; then
    echo "node or npm not found: installing Debian's nodejs and npm with apt" >&2
    sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
    $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q nodejs npm >/dev/null
  fi
  if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node/npm not on PATH: the ocpp-rpc interop tests will be skipped" >&2
    exit 0
  fi
fi
stamp=node_modules/.installed-from-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
  exit 0
fi
echo "installing ocpp-rpc into tests/interop/node_modules (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
echo "$want" >"$stamp"
