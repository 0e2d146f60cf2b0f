#!/usr/bin/env bash
# ocpp-rpc from npm (version pinned in tests/interop/package-lock.json) into tests/interop/node_modules (git-ignored),
# for tests/e2e/test_interop_ocpp_rpc.py: `npm ci` once, then nothing while the lock file is unchanged. Without node
# on PATH it installs nothing (those tests then skip and say why); with node but no working npm it fails.
set -euo pipefail
cd "$(dirname "$0")/../tests/interop"
if ! command -v node >/dev/null; then
  echo "node not on PATH: the ocpp-rpc interop tests will be skipped" >&2
  exit 0
fi
stamp=node_modules/.installed-from-lock
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [[ -f $stamp && $(<"$stamp") == "$want" ]]; then
  exit 0
fi
echo "installing ocpp-rpc into tests/interop/node_modules (npm ci)" >&2
npm ci --no-audit --no-fund --loglevel=error >/dev/null
echo "$want" >"$stamp"
