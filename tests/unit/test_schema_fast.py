"""The quick schema checks (gateway/ocpp/schema_fast.py) accept nothing the full validators refuse.

For every shipped schema of every version: instances built from the schema, and mutations of them (a value of
another type, a key removed or added, a string one past its length, an unknown enum member, a bad date, a number
past its bound, an integral float, an unhashable value where an enum member goes), each checked both ways. And the
messages of the hot path are "certainly valid" for the quick check, so that the full validator stays the exception.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Mapping
from typing import Any

import fastjsonschema
import pytest

from gateway.ocpp import schemas
from gateway.ocpp.schema_fast import compile_check

_OTHER_VALUES: list[Any] = [0, 1, -1, 2.0, 1.5, "", "x", True, False, None, [], {}, [1], {"a": 1}, 10**20, float("nan")]


def _resolve(root: Mapping[str, Any], schema: Any) -> Any:
    while isinstance(schema, Mapping) and "$ref" in schema:
        schema = root["definitions"][schema["$ref"].removeprefix("#/definitions/")]
    return schema


def _instance(root: Mapping[str, Any], schema: Any, rng: random.Random, depth: int = 0) -> Any:
    """A value meant to conform to ``schema`` (formats and patterns it cannot know may make it not conform)."""
    schema = _resolve(root, schema)
    if not isinstance(schema, Mapping):
        return {}
    if "enum" in schema:
        return rng.choice(schema["enum"])
    t = schema.get("type")
    if t == "object":
        out = {}
        required = set(schema.get("required", ()))
        for name, sub in schema.get("properties", {}).items():
            if name in required or (depth < 6 and rng.random() < 0.6):
                out[name] = _instance(root, sub, rng, depth + 1)
        return out
    if t == "array":
        low = schema.get("minItems", 0)
        high = min(schema.get("maxItems", low + 3), low + 3)
        return [_instance(root, schema.get("items", {}), rng, depth + 1) for _ in range(rng.randint(low, high))]
    if t == "string":
        if schema.get("format") == "date-time":
            return rng.choice(["2025-03-01T12:00:00Z", "2025-03-01T12:00:00.123+01:00", "2024-02-29t23:59:60z"])
        high = min(schema.get("maxLength", 12), 12)
        return "".join(rng.choice("abcXYZ09-") for _ in range(rng.randint(schema.get("minLength", 0), high)))
    if t == "integer":
        return rng.randint(int(schema.get("minimum", -3)), int(schema.get("maximum", 1000)))
    if t == "number":
        low, high = schema.get("minimum", -3), schema.get("maximum", 1000)
        return rng.choice([rng.randint(int(low), int(high)), round(rng.uniform(low, high), rng.randint(0, 2))])
    if t == "boolean":
        return rng.random() < 0.5
    return rng.choice(_OTHER_VALUES)


def _nodes(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if type(value) is dict:
        for k, v in value.items():
            out += _nodes(v, (*path, k))
    elif type(value) is list:
        for i, v in enumerate(value):
            out += _nodes(v, (*path, i))
    return out


def _replacement(node: Any, rng: random.Random) -> Any:
    if type(node) is str and rng.random() < 0.6:
        if rng.random() < 0.5:
            return node + "x" * rng.choice([1, 20, 300, 3000])
        return rng.choice(["Nope", "2025-13-01T00:00:00Z", "2025-03-01 12:00:00Z", "", "accepted"])
    if type(node) in (int, float) and rng.random() < 0.6:
        return rng.choice([node + 1, node - 1, -(10**9), 10**9, float(node), node + 0.5])
    return rng.choice(_OTHER_VALUES)


def _mutants(value: Any, rng: random.Random, count: int) -> list[Any]:
    out = []
    nodes = _nodes(value)
    for _ in range(count):
        m = copy.deepcopy(value)
        path = rng.choice(nodes)
        parent: Any = None
        node = m
        for step in path:
            parent, node = node, node[step]
        how = rng.randrange(4)
        if how == 0 and type(node) is dict and node:
            del node[rng.choice(list(node))]
        elif how == 1 and type(node) is dict:
            node["unknownKey"] = 1
        elif how == 2 and type(node) is list:
            node.clear()
        elif parent is None:
            m = _replacement(node, rng)
        else:
            parent[path[-1]] = _replacement(node, rng)
        out.append(m)
    return out


@pytest.mark.parametrize("version", schemas.SCHEMA_VERSIONS)
def test_what_the_quick_check_accepts_the_full_validator_accepts(version: str) -> None:
    rng = random.Random(version)
    checked = accepted = 0
    for action, kind in sorted(schemas.load(version)):
        doc = schemas.document(version, action, kind)
        quick, full = schemas.load(version)[(action, kind)]
        for _ in range(8):
            base = _instance(doc, doc, rng)
            for candidate in [base, *_mutants(base, rng, 12)]:
                checked += 1
                if quick(candidate):
                    accepted += 1
                    try:
                        full(candidate)
                    except fastjsonschema.JsonSchemaValueException as e:
                        pytest.fail(f"{version} {action} {kind}: quick accepted what fails {e.name}: {candidate!r}")
    assert accepted > checked // 10  # the instances are mostly valid: the quick check says so for many


def test_a_schema_it_cannot_read_is_never_certain() -> None:
    check = compile_check({"$schema": "http://json-schema.org/draft-07/schema#", "type": "object"})
    assert not check({})
    check = compile_check(
        {
            "$schema": "http://json-schema.org/draft-06/schema#",
            "type": "object",
            "properties": {
                "limit": {"type": "number", "multipleOf": 0.1},
                "id": {"type": "string", "pattern": "^a"},
                "either": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                "n": {"type": "integer"},
            },
        }
    )
    assert check({"n": 1})
    assert not check({"n": 1, "limit": 2.3})
    assert not check({"id": "abc"})
    assert not check({"either": 1})
    assert not check({"n": 1.0})  # draft-06 takes it for an integer: the full validator decides


def test_an_unhashable_value_where_an_enum_member_goes_is_not_sure() -> None:
    quick, full = schemas.load("1.6")[("StatusNotification", "request")]
    payload = {"connectorId": 1, "errorCode": ["NoError"], "status": "Available"}
    assert not quick(payload)
    with pytest.raises(fastjsonschema.JsonSchemaValueException):
        full(payload)


_T = "2025-03-01T12:00:00.000Z"
_HOT: list[tuple[str, str, str, dict[str, Any]]] = [
    ("1.6", "Heartbeat", "request", {}),
    ("1.6", "Heartbeat", "response", {"currentTime": _T}),
    ("1.6", "MeterValues", "request", {
        "connectorId": 1, "transactionId": 5001,
        "meterValue": [{"timestamp": _T, "sampledValue": [
            {"value": "9353.5", "context": "Sample.Periodic", "format": "Raw",
             "measurand": "Energy.Active.Import.Register", "location": "Outlet", "unit": "Wh"},
            {"value": "230.1", "context": "Sample.Periodic", "measurand": "Voltage", "phase": "L1-N",
             "location": "Outlet", "unit": "V"}]}]}),
    ("1.6", "MeterValues", "response", {}),
    ("1.6", "StatusNotification", "request", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}),
    ("1.6", "StartTransaction", "response", {"transactionId": 1, "idTagInfo": {"status": "Accepted"}}),
    ("2.0.1", "Heartbeat", "response", {"currentTime": _T}),
    ("2.0.1", "TransactionEvent", "request", {
        "eventType": "Updated", "timestamp": _T, "triggerReason": "MeterValuePeriodic", "seqNo": 3,
        "transactionInfo": {"transactionId": "TX-1"}, "offline": False, "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": _T, "sampledValue": [
            {"value": 9353.5, "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register",
             "location": "Outlet", "unitOfMeasure": {"unit": "Wh"}}]}]}),
    ("2.0.1", "TransactionEvent", "response", {}),
    ("2.0.1", "TransactionEvent", "response", {"idTokenInfo": {"status": "Accepted"}}),
    ("2.0.1", "StatusNotification", "request", {
        "timestamp": _T, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1}),
    ("2.1", "TransactionEvent", "request", {
        "eventType": "Updated", "timestamp": _T, "triggerReason": "MeterValuePeriodic", "seqNo": 3,
        "transactionInfo": {"transactionId": "TX-1"}}),
]  # fmt: skip


@pytest.mark.parametrize(("version", "action", "kind", "payload"), _HOT)
def test_the_hot_messages_are_certain(version: str, action: str, kind: str, payload: dict[str, Any]) -> None:
    quick, full = schemas.load(version)[(action, kind)]
    full(payload)
    assert quick(payload)
