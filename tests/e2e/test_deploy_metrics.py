"""The deployment artefacts only use metrics the gateway really exposes.

Every metric name in the Grafana dashboard (deploy/grafana/ocpp-gateway.json) and in the Prometheus rules
(deploy/prometheus/alerts.yaml) must be a family on a running gateway's /metrics (a family counts as soon as its
HELP line is printed: labelled metrics without samples still print HELP/TYPE). Plus: scripts/deploy-checks.sh
passes, when its tools (helm, promtool, hadolint, kubernetes-validate) are already installed.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from tests.helpers import gateway, make_config, raw_charger, recv_json, stub_csms

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "ocpp-gateway.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yaml"
CHART_ALERTS = ROOT / "deploy" / "helm" / "ocpp-gateway" / "files" / "alerts.yaml"
CHECKS = ROOT / "scripts" / "deploy-checks.sh"

#: series Prometheus itself attaches to every scrape target; not exported by the gateway
SYNTHETIC = {"up"}
HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

_KEYWORDS = {
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "and",
    "or",
    "unless",
    "offset",
    "atan2",
    "inf",
    "nan",
}
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGE = re.compile(r"\[[^\[\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)")
_IDENT = re.compile(r"(?<![\w$.:])([a-zA-Z_:][a-zA-Z0-9_:]*)(?![\w:])(\s*\()?")
_LABEL_VALUES = re.compile(r"^\s*label_values\((.*?)(?:,\s*[a-zA-Z_]\w*)?\)\s*$", re.S)
_NUMBER_UNITS = re.compile(r"\b\d+(?:\.\d+)?(?:ms|[smhdwy])?\b")


def metric_names(expr: str) -> set[str]:
    """Metric names in a PromQL expression: not functions, keywords, label names or label values."""
    m = _LABEL_VALUES.match(expr)
    if m:  # a Grafana variable query: label_values(<series selector>, <label>)
        expr = m.group(1)
    expr = _STRING.sub(" ", expr)  # label values, Grafana variables inside them
    expr = _MATCHERS.sub(" ", expr)  # label names in matchers
    expr = _RANGE.sub(" ", expr)  # [5m], [$__rate_interval]
    expr = _GROUPING.sub(" ", expr)  # by (job, le) ...
    expr = _NUMBER_UNITS.sub(" ", expr)
    names = set()
    for ident, call in _IDENT.findall(expr):
        if call or ident.lower() in _KEYWORDS:
            continue  # a function call, or an operator keyword
        names.add(ident)
    return names


def _walk_exprs(node: Any) -> list[str]:
    """Every PromQL string of a dashboard: panel targets' ``expr`` and query variables' ``query``."""
    found: list[str] = []
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "expr" and isinstance(v, str):
                found.append(v)
            elif k == "query" and isinstance(v, dict) and isinstance(v.get("query"), str):
                found.append(v["query"])
            elif k == "query" and isinstance(v, str) and node.get("type") == "query":
                found.append(v)
            else:
                found.extend(_walk_exprs(v))
    elif isinstance(node, list):
        for v in node:
            found.extend(_walk_exprs(v))
    return found


def dashboard_exprs() -> list[str]:
    return _walk_exprs(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def alert_exprs() -> list[str]:
    doc = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))
    return [rule["expr"] for group in doc["groups"] for rule in group["rules"]]


def families(exposition: str) -> dict[str, str]:
    """Metric family name -> type, from the HELP/TYPE lines of the text format."""
    out: dict[str, str] = {}
    for line in exposition.splitlines():
        parts = line.split(" ", 3)
        if line.startswith("# HELP "):
            out.setdefault(parts[2], "untyped")
        elif line.startswith("# TYPE "):
            out[parts[2]] = parts[3].strip()
    return out


def exposed(name: str, fams: dict[str, str]) -> bool:
    if name in fams:
        return True
    for suffix in HISTOGRAM_SUFFIXES:
        base = name.removesuffix(suffix)
        if base != name and fams.get(base) in ("histogram", "summary"):
            return True
    return False


def test_metric_name_extraction() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (backend, le) (rate(ocppgw_call_duration_seconds_bucket{job=~"$job",'
        ' direction="up"}[$__rate_interval]))) > 5 and on (job) up{job="x"} == 1 unless absent(ocppgw_store_up)'
    )
    assert metric_names(expr) == {"ocppgw_call_duration_seconds_bucket", "up", "ocppgw_store_up"}
    assert metric_names('label_values(ocppgw_store_up{job=~"$job"}, instance)') == {"ocppgw_store_up"}
    assert metric_names("sum(rate(ocppgw_messages_total[5m])) / 1e3 > bool 0.5 offset 1h") == {"ocppgw_messages_total"}


async def test_dashboard_and_alerts_use_only_exposed_metrics() -> None:
    async with stub_csms(lambda cid, action, p: {"currentTime": "2026-01-01T00:00:00Z"}) as csms:
        async with gateway(make_config({"csms-a": csms.url})) as gw:
            async with raw_charger(gw.charger_url(), "CP-DEPLOY") as ws:
                await ws.send_str(
                    json.dumps([2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}])
                )
                assert (await recv_json(ws))[:2] == [3, "b1"]
                await ws.send_str('[2, "h1", "Heartbeat", {}]')
                assert await recv_json(ws) == [3, "h1", {"currentTime": "2026-01-01T00:00:00Z"}]
                async with aiohttp.ClientSession() as http, http.get(gw.admin_url() + "/metrics") as r:
                    assert r.status == 200
                    text = await r.text()

    fams = families(text)
    assert "ocppgw_messages_total" in fams, "the gateway exposes no ocppgw_* metrics?"
    assert 'action="Heartbeat"' in text, "the frames sent were not counted"

    sources = {"deploy/grafana/ocpp-gateway.json": dashboard_exprs(), "deploy/prometheus/alerts.yaml": alert_exprs()}
    missing: list[str] = []
    for source, exprs in sources.items():
        assert exprs, f"no PromQL expressions found in {source}"
        names = set().union(*(metric_names(e) for e in exprs))
        assert len([n for n in names if n.startswith("ocppgw_")]) >= 5, f"{source}: extraction found {sorted(names)}"
        for name in sorted(names - SYNTHETIC):
            if not exposed(name, fams):
                missing.append(f"{source}: {name}")
    assert not missing, "metrics used but not exposed by the gateway:\n" + "\n".join(missing)


def test_chart_ships_the_same_alerts() -> None:
    assert CHART_ALERTS.read_bytes() == ALERTS.read_bytes(), (
        "deploy/helm/ocpp-gateway/files/alerts.yaml must be a copy of deploy/prometheus/alerts.yaml: "
        "cp deploy/prometheus/alerts.yaml deploy/helm/ocpp-gateway/files/alerts.yaml"
    )


def _leaf_paths(node: Any, prefix: str = "") -> list[str]:
    if isinstance(node, dict) and node:
        return [p for k, v in node.items() for p in _leaf_paths(v, f"{prefix}.{k}" if prefix else str(k))]
    return [prefix]


def test_chart_readme_documents_every_value() -> None:
    """Every leaf of values.yaml has a row in the chart README's table (itself or an object-valued ancestor)."""
    chart = ROOT / "deploy" / "helm" / "ocpp-gateway"
    values = yaml.safe_load((chart / "values.yaml").read_text(encoding="utf-8"))
    rows = set(re.findall(r"^\| `([^`]+)` \|", (chart / "README.md").read_text(encoding="utf-8"), re.M))
    undocumented = []
    for path in _leaf_paths(values):
        parts = path.split(".")
        # the top-level `config` row only introduces config.*: its keys need rows of their own
        ancestors = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} - {"config"}
        if not ancestors & rows:
            undocumented.append(path)
    assert undocumented == [], "values without a row in deploy/helm/ocpp-gateway/README.md"


@pytest.mark.slow
def test_deploy_checks_script() -> None:
    probe = subprocess.run(["bash", str(CHECKS), "--tools"], cwd=ROOT, capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        pytest.skip(f"scripts/deploy-checks.sh not run: {probe.stdout.strip() or probe.stderr.strip()}")
    run = subprocess.run(["bash", str(CHECKS)], cwd=ROOT, capture_output=True, text=True, check=False, timeout=300)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
