"""Violations in the profiles' terms (gateway/quirks/violations.py) and the compliance report with its suggested
rules (gateway/quirks/report.py): every suggestion is a rule the config accepts."""

from __future__ import annotations

import orjson
import pytest
import yaml

from gateway.ocpp import schemas
from gateway.quirks import parse_quirks
from gateway.quirks.report import build, render_text
from gateway.quirks.violations import classify
from gateway.store.compliance import ModelReport

TS = "2025-03-01T12:00:00Z"


def violation_of(version: str, action: str, payload: dict[str, object]) -> tuple[str, str, str, str | None]:
    with pytest.raises(schemas.SchemaViolation) as e:
        schemas.validate(version, action, "request", payload)
    v = classify(e.value.path, e.value.message, payload)
    return v.path, v.kind, v.hint, v.value


@pytest.mark.parametrize(
    ("version", "action", "payload", "expected"),
    [
        ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "charging"},
         ("$.status", "enum", "enum_case", None)),
        ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "Error", "status": "Faulted"},
         ("$.errorCode", "enum", "map", "Error")),
        ("1.6", "StatusNotification", {"connectorId": "1", "errorCode": "NoError", "status": "Charging"},
         ("$.connectorId", "type", "coerce", None)),
        ("1.6", "StatusNotification", {"connectorId": "one", "errorCode": "NoError", "status": "Charging"},
         ("$.connectorId", "type", "", None)),
        ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging",
                                       "timestamp": "2024-01-01T10:00:00"},
         ("$.timestamp", "format", "timestamp", None)),
        ("1.6", "Authorize", {"idTag": "X" * 21}, ("$.idTag", "length", "alias", None)),
        ("1.6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "iccid": "1" * 21},
         ("$.iccid", "length", "truncate", None)),
        ("1.6", "BootNotification", {"chargePointModel": "M"}, ("$.chargePointVendor", "missing", "default", None)),
        ("1.6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M", "vendorId": "x"},
         ("$.vendorId", "extra", "drop", None)),
        ("2.0.1", "TransactionEvent", {"eventType": "Updated", "timestamp": TS, "triggerReason": "MeterValuePeriodic",
                                       "seqNo": 1, "transactionInfo": {"transactionId": "T"}, "meterValue": [
                                           {"timestamp": TS, "sampledValue": [{"value": 1}, {"value": "2.5"}]}]},
         ("$.meterValue[*].sampledValue[*].value", "type", "coerce", None)),
    ],
)  # fmt: skip
def test_a_violation_is_named_by_field_kind_and_fitting_repair(
    version: str, action: str, payload: dict[str, object], expected: tuple[str, str, str, str | None]
) -> None:
    assert violation_of(version, action, payload) == expected


def name(*parts: str) -> str:
    return orjson.dumps(list(parts)).decode()


def test_the_report_summarises_a_model_and_suggests_rules_the_config_accepts() -> None:
    counts = {
        name("messages"): 40, name("checked"): 20,
        name("v", "1.6", "from_charger", "call", "StatusNotification", "$.status", "enum", "enum_case", ""): 5,
        name("v", "1.6", "from_charger", "call", "StatusNotification", "$.errorCode", "enum", "map", "Error"): 4,
        name("v", "1.6", "from_charger", "call", "BootNotification", "$.chargePointVendor", "missing", "default",
             ""): 3,
        name("v", "1.6", "from_charger", "call", "Heartbeat", "$.x", "extra", "drop", ""): 1,  # not recurring
        name("r", "1.6", "p", "serial", "from_charger", "call", "BootNotification", "$.chargePointSerialNumber",
             "truncate"): 2,
        name("f", "1.6", "p", "serial", "from_charger", "call", "BootNotification", "$.chargePointSerialNumber",
             "truncate"): 2,
        '["other"]': 7,
    }  # fmt: skip
    report = build({("ACME", "X1", "1.0"): ModelReport(3, counts)})
    (m,) = report["models"]
    assert (m["chargers"], m["messages"], m["checked"], m["other_counters"]) == (3, 40, 20, 7)
    by_path = {v["path"]: (v["kind"], v["repaired"], v["unrepaired"]) for v in m["violations"]}
    assert by_path["$.chargePointSerialNumber"] == ("length", 2, 0)
    assert by_path["$.status"] == ("enum", 0, 5)
    assert m["repairs"] == [{"ocpp": "1.6", "profile": "p", "rule": "serial", "direction": "from_charger",
                             "message": "call", "action": "BootNotification", "path": "$.chargePointSerialNumber",
                             "repair": "truncate", "values": 2, "violations": 2}]  # fmt: skip
    (s,) = m["suggestions"]
    rules = {r["path"]: r for r in s["profile"]["rules"]}
    assert set(rules) == {"$.status", "$.errorCode", "$.chargePointVendor"}
    assert rules["$.errorCode"]["values"] == {"Error": "OtherError"}  # the nearest spelling, to review
    assert rules["$.chargePointVendor"]["repair"] == "default"
    (profile,) = yaml.safe_load(s["yaml"])
    assert profile == s["profile"]
    assert parse_quirks({"profiles": [profile]})[1] == []
    assert "# 5 violations" in s["yaml"] and "review: the map targets" in s["yaml"]
    text = render_text(report)
    assert "ACME / X1 / firmware 1.0: 3 charger(s), 40 messages, 20 checked" in text
    assert "repair          2  p/serial: truncate BootNotification" in text


def test_an_empty_report_says_why() -> None:
    assert "no charger model" in render_text(build({}))
