#!/usr/bin/env bash
# Set up .venv and run the demo: gateway + built-in CSMS + simulated 1.6 and 2.0.1 chargers, until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
# install only when the gateway is not in .venv yet (an editable install follows the source: no reinstall needed)
.venv/bin/python -c 'import gateway.ops.cli' 2>/dev/null || scripts/setup.sh
exec .venv/bin/ocpp-gateway demo "$@"
