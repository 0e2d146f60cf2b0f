"""The repair engine (gateway/core/repair.py), one row per repair kind and version: a payload that fails its
official schema only by the quirk is repaired into one that passes, and a payload without the quirk is left alone.
Rules are read through the config's parser, so every row's rule is also one ``check-config`` accepts."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from gateway.core.repair import Repairs
from gateway.ocpp import schemas
from gateway.quirks import parse_quirks
from gateway.translate.v201_v16.context import id_alias

TS = "2025-03-01T12:00:00Z"
BOOT16 = {"chargePointVendor": "ACME", "chargePointModel": "X1"}
BOOT201 = {"reason": "PowerUp", "chargingStation": {"model": "X1", "vendorName": "ACME"}}
STATUS201 = {"timestamp": TS, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
TX201 = {"eventType": "Updated", "timestamp": TS, "triggerReason": "MeterValuePeriodic", "seqNo": 1,
         "transactionInfo": {"transactionId": "T1"}}  # fmt: skip


def sv16(**kw: Any) -> dict[str, Any]:
    return {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1", **kw}]}]}


def tx201(**kw: Any) -> dict[str, Any]:
    return {**TX201, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 1.0, **kw}]}]}


#: (id, version, action, message, direction, path, repair, options, quirky payload, repaired payload)
ROWS: list[tuple[str, str, str, str, str, str, str, dict[str, Any], dict[str, Any], dict[str, Any]]] = [
    # ---- OCPP 1.6
    ("16-enum-case", "1.6", "StatusNotification", "call", "from_charger", "$.status", "enum_case", {},
     {"connectorId": 1, "errorCode": "NoError", "status": "charging"},
     {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    ("16-enum-case-upper", "1.6", "StatusNotification", "call", "from_charger", "$.errorCode", "enum_case", {},
     {"connectorId": 1, "errorCode": "NOERROR", "status": "Available"},
     {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("16-coerce-number-to-string", "1.6", "MeterValues", "call", "from_charger",
     "$.meterValue[*].sampledValue[*].value", "coerce", {},
     {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 604.213}, {"value": 0}]}]},
     {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "604.213"}, {"value": "0"}]}]}),
    ("16-coerce-string-to-integer", "1.6", "StatusNotification", "call", "from_charger", "$.connectorId", "coerce",
     {}, {"connectorId": "2", "errorCode": "NoError", "status": "Available"},
     {"connectorId": 2, "errorCode": "NoError", "status": "Available"}),
    ("16-timestamp-no-zone", "1.6", "StartTransaction", "call", "from_charger", "$.timestamp", "timestamp", {},
     {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2023-10-19T15:28:07"},
     {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2023-10-19T15:28:07Z"}),
    ("16-timestamp-zone-of-rule", "1.6", "StartTransaction", "call", "from_charger", "$.timestamp", "timestamp",
     {"zone": "Europe/Berlin"},
     {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2023-10-19T15:28:07.5"},
     {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2023-10-19T15:28:07.5+02:00"}),
    ("16-timestamp-short-offset", "1.6", "StatusNotification", "call", "from_charger", "$.timestamp", "timestamp",
     {}, {"connectorId": 2, "errorCode": "NoError", "status": "Preparing", "timestamp": "2024-04-26T14:35:02+02"},
     {"connectorId": 2, "errorCode": "NoError", "status": "Preparing", "timestamp": "2024-04-26T14:35:02+02:00"}),
    ("16-timestamp-impossible-dropped", "1.6", "StatusNotification", "call", "from_charger", "$.timestamp",
     "timestamp", {}, {"connectorId": 1, "errorCode": "NoError", "status": "Available",
                       "timestamp": "0000-00-00T00:00:00"},
     {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("16-truncate-serial", "1.6", "BootNotification", "call", "from_charger", "$.chargeBoxSerialNumber", "truncate",
     {}, {**BOOT16, "chargeBoxSerialNumber": "EVB1A22P2RI3N182341200100350795E5"},
     {**BOOT16, "chargeBoxSerialNumber": "EVB1A22P2RI3N182341200100350795E5"[:25]}),
    ("16-alias-idtag", "1.6", "Authorize", "call", "from_charger", "$.idTag", "alias", {},
     {"idTag": "04A1B2C3D4E5F60718293A4B"}, {"idTag": id_alias("04A1B2C3D4E5F60718293A4B", "ISO14443")}),
    ("16-rename", "1.6", "BootNotification", "call", "from_charger", "$.chargepointVendor", "rename",
     {"to": "chargePointVendor"}, {"chargepointVendor": "ACME", "chargePointModel": "X1"}, BOOT16),
    ("16-drop-extra", "1.6", "BootNotification", "call", "from_charger", "$.vendorId", "drop", {},
     {**BOOT16, "vendorId": "Chago"}, BOOT16),
    ("16-drop-invalid-optional", "1.6", "MeterValues", "call", "from_charger",
     "$.meterValue[*].sampledValue[*].location", "drop", {}, sv16(location="Pipe"), sv16()),
    ("16-drop-element", "1.6", "MeterValues", "call", "from_charger", "$.meterValue[*].sampledValue[*].measurand",
     "drop", {"element": True},
     {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [
         {"value": "1", "measurand": "Frequency.Hz"}, {"value": "2", "measurand": "Voltage"}]}]},
     {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "2", "measurand": "Voltage"}]}]}),
    ("16-map", "1.6", "StatusNotification", "call", "from_charger", "$.errorCode", "map",
     {"values": {"Error": "OtherError"}}, {"connectorId": 0, "errorCode": "Error", "status": "Faulted"},
     {"connectorId": 0, "errorCode": "OtherError", "status": "Faulted"}),
    ("16-map-unit", "1.6", "MeterValues", "call", "from_charger", "$.meterValue[*].sampledValue[*].unit", "map",
     {"values": {"Hz": "Hertz"}}, sv16(unit="Hz"), sv16(unit="Hertz")),
    ("16-default", "1.6", "BootNotification", "call", "from_charger", "$.chargePointVendor", "default",
     {"value": "Unknown"}, {"chargePointModel": "X1"}, {"chargePointVendor": "Unknown", "chargePointModel": "X1"}),
    ("16-csms-answer", "1.6", "BootNotification", "callresult", "from_backend", "$.interval", "coerce", {},
     {"status": "Accepted", "currentTime": TS, "interval": "300"},
     {"status": "Accepted", "currentTime": TS, "interval": 300}),
    ("16-charger-answer", "1.6", "RemoteStartTransaction", "callresult", "from_charger", "$.status", "enum_case",
     {}, {"status": "accepted"}, {"status": "Accepted"}),
    # ---- OCPP 2.0.1
    ("201-enum-case", "2.0.1", "StatusNotification", "call", "from_charger", "$.connectorStatus", "enum_case", {},
     {**STATUS201, "connectorStatus": "available"}, STATUS201),
    ("201-coerce-string-to-number", "2.0.1", "TransactionEvent", "call", "from_charger",
     "$.meterValue[*].sampledValue[*].value", "coerce", {},
     {**TX201, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "12.5"}, {"value": "7"}]}]},
     {**TX201, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 12.5}, {"value": 7}]}]}),
    ("201-coerce-integer", "2.0.1", "TransactionEvent", "call", "from_charger", "$.seqNo", "coerce", {},
     {**TX201, "seqNo": "3"}, {**TX201, "seqNo": 3}),
    ("201-coerce-boolean", "2.0.1", "TransactionEvent", "call", "from_charger", "$.offline", "coerce", {},
     {**TX201, "offline": "TRUE"}, {**TX201, "offline": True}),
    ("201-timestamp-space", "2.0.1", "TransactionEvent", "call", "from_charger", "$.timestamp", "timestamp",
     {"zone": "+01:00"}, {**TX201, "timestamp": "2024-01-01 10:00:00"},
     {**TX201, "timestamp": "2024-01-01T10:00:00+01:00"}),
    ("201-timestamp-in-array", "2.0.1", "TransactionEvent", "call", "from_charger", "$.meterValue[*].timestamp",
     "timestamp", {}, {**tx201(), "meterValue": [{"timestamp": "2024-01-01T10:00:00", "sampledValue": [{"value": 1}]}]},
     {**tx201(), "meterValue": [{"timestamp": "2024-01-01T10:00:00Z", "sampledValue": [{"value": 1}]}]}),
    ("201-truncate", "2.0.1", "BootNotification", "call", "from_charger", "$.chargingStation.serialNumber",
     "truncate", {}, {**BOOT201, "chargingStation": {**BOOT201["chargingStation"], "serialNumber": "S" * 30}},
     {**BOOT201, "chargingStation": {**BOOT201["chargingStation"], "serialNumber": "S" * 25}}),
    ("201-alias-idtoken", "2.0.1", "Authorize", "call", "from_charger", "$.idToken.idToken", "alias", {},
     {"idToken": {"idToken": "E" * 40, "type": "eMAID"}},
     {"idToken": {"idToken": id_alias("E" * 40, "eMAID"), "type": "eMAID"}}),
    ("201-rename", "2.0.1", "BootNotification", "call", "from_charger", "$.chargingStation.vendor", "rename",
     {"to": "vendorName"}, {**BOOT201, "chargingStation": {"model": "X1", "vendor": "ACME"}}, BOOT201),
    ("201-drop-extra", "2.0.1", "StatusNotification", "call", "from_charger", "$.status", "drop", {},
     {**STATUS201, "status": "Available"}, STATUS201),
    ("201-drop-element", "2.0.1", "TransactionEvent", "call", "from_charger",
     "$.meterValue[*].sampledValue[*].unitOfMeasure.unit", "drop", {"element": True},
     {**TX201, "meterValue": [{"timestamp": TS, "sampledValue": [
         {"value": 1, "unitOfMeasure": {"unit": "W" * 30}}, {"value": 2}]}]},
     {**TX201, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 2}]}]}),
    ("201-map", "2.0.1", "StatusNotification", "call", "from_charger", "$.connectorStatus", "map",
     {"values": {"Charging": "Occupied"}}, {**STATUS201, "connectorStatus": "Charging"},
     {**STATUS201, "connectorStatus": "Occupied"}),
    ("201-default", "2.0.1", "BootNotification", "call", "from_charger", "$.reason", "default",
     {"value": "Unknown"}, {"chargingStation": BOOT201["chargingStation"]},
     {"chargingStation": BOOT201["chargingStation"], "reason": "Unknown"}),
    ("201-charger-answer", "2.0.1", "GetVariables", "callresult", "from_charger",
     "$.getVariableResult[*].attributeStatus", "enum_case", {},
     {"getVariableResult": [{"attributeStatus": "ACCEPTED", "component": {"name": "C"}, "variable": {"name": "V"}}]},
     {"getVariableResult": [{"attributeStatus": "Accepted", "component": {"name": "C"}, "variable": {"name": "V"}}]}),
    ("201-csms-call", "2.0.1", "RequestStartTransaction", "call", "from_backend", "$.idToken.type", "enum_case", {},
     {"idToken": {"idToken": "T", "type": "central"}, "remoteStartId": 1},
     {"idToken": {"idToken": "T", "type": "Central"}, "remoteStartId": 1}),
    # ---- OCPP 2.1: the same engine over its schemas
    ("21-enum-case", "2.1", "StatusNotification", "call", "from_charger", "$.connectorStatus", "enum_case", {},
     {**STATUS201, "connectorStatus": "OCCUPIED"}, {**STATUS201, "connectorStatus": "Occupied"}),
]  # fmt: skip


def repairs_for(version: str, action: str, message: str, direction: str, path: str, repair: str,
                options: dict[str, Any]) -> Repairs:  # fmt: skip
    rule = {"action": action, "message": message, "direction": direction, "path": path, "repair": repair, **options}
    config, problems = parse_quirks({"profiles": [{"name": "p", "ocpp": version, "match": {"charger_id": "*"},
                                                   "rules": [rule]}]})  # fmt: skip
    assert problems == []
    return Repairs(config.profiles[0], config.zone, now=lambda: 1_740_830_400.0)


def kind_of(message: str) -> schemas.Kind:
    return "request" if message == "call" else "response"


@pytest.mark.parametrize(("row",), [(r,) for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_quirk_is_repaired_into_what_the_schema_accepts(row: tuple[Any, ...]) -> None:
    _, version, action, message, direction, path, repair, options, quirky, repaired = row
    with pytest.raises(schemas.SchemaViolation):
        schemas.validate(version, action, kind_of(message), quirky)
    engine = repairs_for(version, action, message, direction, path, repair, options)
    payload = copy.deepcopy(quirky)
    applied = engine.apply(direction, message, action, payload)
    assert payload == repaired
    schemas.validate(version, action, kind_of(message), payload)
    assert applied is not None and [a.rule.repair for a in applied] == [repair]
    assert applied[0].fixed >= 1  # it was a violation, and is no longer


@pytest.mark.parametrize(("row",), [(r,) for r in ROWS], ids=[r[0] for r in ROWS])
def test_a_conforming_payload_is_left_alone(row: tuple[Any, ...]) -> None:
    _, version, action, message, direction, path, repair, options, _, repaired = row
    engine = repairs_for(version, action, message, direction, path, repair, options)
    payload = copy.deepcopy(repaired)
    if repair == "map":  # map acts on the values it lists, valid or not: a conforming payload has none of them
        assert engine.apply(direction, message, action, payload) is None or payload != repaired
        return
    assert engine.apply(direction, message, action, payload) is None
    assert payload == repaired


def test_other_messages_and_directions_are_not_touched() -> None:
    engine = repairs_for("1.6", "StatusNotification", "call", "from_charger", "$.status", "enum_case", {})
    payload = {"connectorId": 1, "errorCode": "NoError", "status": "charging"}
    assert engine.apply("from_backend", "call", "StatusNotification", payload) is None
    assert engine.apply("from_charger", "callresult", "StatusNotification", payload) is None
    assert engine.apply("from_charger", "call", "Heartbeat", payload) is None
    assert payload["status"] == "charging"


def test_what_cannot_be_repaired_is_left_for_the_schema_to_judge() -> None:
    coerce = repairs_for("2.0.1", "TransactionEvent", "call", "from_charger", "$.seqNo", "coerce", {})
    payload = {**TX201, "seqNo": "three"}
    assert coerce.apply("from_charger", "call", "TransactionEvent", payload) is None
    case = repairs_for("1.6", "StatusNotification", "call", "from_charger", "$.status", "enum_case", {})
    payload = {"connectorId": 1, "errorCode": "NoError", "status": "busy"}
    assert case.apply("from_charger", "call", "StatusNotification", payload) is None
    stamp = repairs_for("1.6", "StartTransaction", "call", "from_charger", "$.timestamp", "timestamp", {})
    payload = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "0000-00-00T00:00:00"}
    assert stamp.apply("from_charger", "call", "StartTransaction", payload) is None  # required: kept by default
    assert payload["timestamp"] == "0000-00-00T00:00:00"


def test_an_impossible_required_timestamp_can_be_replaced_by_the_time_it_came() -> None:
    stamp = repairs_for("1.6", "StartTransaction", "call", "from_charger", "$.timestamp", "timestamp",
                        {"impossible": "now"})  # fmt: skip
    payload = {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "0000-00-00T00:00:00"}
    assert stamp.apply("from_charger", "call", "StartTransaction", payload) is not None
    assert payload["timestamp"] == "2025-03-01T12:00:00.000Z"


def test_map_counts_a_valid_value_it_changes_as_no_violation() -> None:
    engine = repairs_for("2.0.1", "StatusNotification", "call", "from_charger", "$.connectorStatus", "map",
                         {"values": {"Charging": "Occupied", "Reserved": "Occupied"}})  # fmt: skip
    payload = {**STATUS201, "connectorStatus": "Reserved"}
    applied = engine.apply("from_charger", "call", "StatusNotification", payload)
    assert applied is not None and (applied[0].changed, applied[0].fixed) == (1, 0)


def test_backend_rules_are_left_out_of_a_translated_session() -> None:
    rule = {"action": "BootNotification", "message": "callresult", "direction": "from_backend",
            "path": "$.interval", "repair": "coerce"}  # fmt: skip
    config, _ = parse_quirks({"profiles": [{"name": "p", "ocpp": "1.6", "match": {"charger_id": "*"},
                                            "rules": [rule]}]})  # fmt: skip
    engine = Repairs(config.profiles[0], backend_rules=False)
    payload = {"status": "Accepted", "currentTime": TS, "interval": "300"}
    assert engine.apply("from_backend", "callresult", "BootNotification", payload) is None
