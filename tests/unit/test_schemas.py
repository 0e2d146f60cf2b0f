"""Schema validators compiled from the ``ocpp`` package (gateway/ocpp/schemas.py)."""

from __future__ import annotations

import decimal
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ocpp import schemas

T0 = "2025-03-01T12:00:00Z"


def test_every_version_loads_requests_and_responses() -> None:
    assert schemas.SCHEMA_VERSIONS == ("1.6", "2.0.1", "2.1")
    for version in schemas.SCHEMA_VERSIONS:
        table = schemas.load(version)
        assert table is schemas.load(version)  # compiled once
        requests = {a for a, k in table if k == "request"}
        responses = {a for a, k in table if k == "response"}
        # a 2.1 SEND message (NotifyPeriodicEventStream.json, no suffix) has a request and no response
        assert requests - responses == ({"NotifyPeriodicEventStream"} if version == "2.1" else set())
        assert responses <= requests
    assert {"StartTransaction", "SignedUpdateFirmware", "ExtendedTriggerMessage"} <= schemas.actions("1.6")
    assert {"TransactionEvent", "NotifyReport", "GetVariables"} <= schemas.actions("2.0.1")
    assert "TransactionEvent" not in schemas.actions("1.6")
    assert schemas.actions("2.0.1") < schemas.actions("2.1")  # 2.1 has every 2.0.1 message, and more
    assert {"OpenPeriodicEventStream", "NotifySettlement", "SetDERControl"} <= schemas.actions("2.1")
    assert "NotifyPeriodicEventStreamRequest" not in schemas.actions("2.1")


def test_v21_payloads_are_validated_against_the_v21_schemas() -> None:
    # idToken.type is a free string of up to 20 in 2.1 ("VIN"), an enumeration in 2.0.1
    vin = {"idToken": {"idToken": "WVWZZZ1JZXW000001", "type": "VIN"}}
    schemas.validate("2.1", "Authorize", "request", vin)
    with pytest.raises(schemas.SchemaViolation):
        schemas.validate("2.0.1", "Authorize", "request", vin)
    with pytest.raises(schemas.SchemaViolation) as info:
        schemas.validate("2.1", "NotifyPeriodicEventStream", "request", {"id": 1, "pending": 0})
    assert info.value.path == "$" and "basetime" in info.value.message


def test_version_2_0_has_no_schemas_and_validating_it_never_raises_value_error() -> None:
    # OCPP 2.0 (2018) is not 2.0.1: no schemas are shipped for it, so it is not validated (see schemas.py)
    assert not schemas.validates("2.0")
    assert all(schemas.validates(v) for v in schemas.SCHEMA_VERSIONS)
    with pytest.raises(schemas.UnknownAction):  # a LookupError, which every caller handles
        schemas.validate("2.0", "Heartbeat", "request", {})


def test_violation_names_version_action_kind_and_path() -> None:
    with pytest.raises(schemas.SchemaViolation) as info:
        schemas.validate(
            "1.6",
            "StartTransactionResponse".removesuffix("Response"),
            "response",
            {"transactionId": 1, "idTagInfo": {"status": "Nope"}},
        )
    exc = info.value
    assert (exc.version, exc.action, exc.kind, exc.path) == (
        "1.6",
        "StartTransaction",
        "response",
        "$.idTagInfo.status",
    )


def test_unknown_action_and_version() -> None:
    with pytest.raises(schemas.UnknownAction):
        schemas.validate("2.0.1", "StartTransaction", "request", {})
    with pytest.raises(ValueError):
        schemas.load("1.5")


def test_validation_does_not_fill_defaults() -> None:
    payload = {"evseId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": 1, "unitOfMeasure": {}}]}]}
    schemas.validate("2.0.1", "MeterValues", "request", payload)
    assert payload["meterValue"][0]["sampledValue"][0]["unitOfMeasure"] == {}


def _profile(limit: object) -> dict[str, object]:
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Relative",
            "chargingSchedule": {
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            },
        },
    }


@pytest.mark.parametrize("limit", [2.3, 16.1, 0.7, 32, 7400.5])
def test_multiple_of_tenth_accepts_decimal_text_values(limit: object) -> None:
    schemas.validate("1.6", "SetChargingProfile", "request", _profile(limit))


def test_decimal_payloads_are_not_supported() -> None:
    # payloads carry floats (orjson); a Decimal breaks fastjsonschema's multipleOf (documented in schemas.py)
    with pytest.raises(decimal.InvalidOperation):
        schemas.validate("1.6", "SetChargingProfile", "request", _profile(decimal.Decimal("2.3")))


@pytest.mark.parametrize("limit", [2.35, 0.05])
def test_multiple_of_tenth_rejects_finer_values(limit: object) -> None:
    with pytest.raises(schemas.SchemaViolation):
        schemas.validate("1.6", "SetChargingProfile", "request", _profile(limit))


# ------------------------------------------------------------------------------------ compiled on first use


@pytest.fixture
def nothing_compiled() -> Iterator[None]:
    """This process's schema cache emptied for the test (other tests may have filled it), then given back."""
    saved = dict(schemas._compiled)
    schemas._compiled.clear()
    yield
    schemas._compiled.clear()
    schemas._compiled.update(saved)


def test_listing_the_schemas_compiles_none(nothing_compiled: None) -> None:
    n = schemas._compilations
    schemas.check_installed()
    for version in schemas.SCHEMA_VERSIONS:
        table = schemas.load(version)
        keys = list(table)
        assert len(keys) == len(table) > 70
        assert all(key in table for key in keys)
        assert all(schemas.has_schema(version, action, kind) for action, kind in keys)
        assert not schemas.has_schema(version, "NoSuchAction", "request")
        assert schemas.actions(version) == {action for action, kind in keys if kind == "request"}
        assert table.get(("NoSuchAction", "request")) is None
        with pytest.raises(KeyError):
            table[("NoSuchAction", "request")]
    assert schemas._compiled == {}
    assert schemas._compilations == n


def test_validate_compiles_the_one_schema_it_needs_once(nothing_compiled: None) -> None:
    n = schemas._compilations
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    schemas.validate("1.6", "BootNotification", "request", boot)
    assert list(schemas._compiled) == [("1.6", "BootNotification", "request")]
    assert schemas._compilations == n + 1
    pair = schemas._compiled[("1.6", "BootNotification", "request")]
    schemas.validate("1.6", "BootNotification", "request", boot)  # the second frame reuses it
    with pytest.raises(schemas.SchemaViolation) as info:  # so does a refusal, with the full validator's path
        schemas.validate("1.6", "BootNotification", "request", {"chargePointVendor": "V"})
    assert info.value.path == "$" and "chargePointModel" in info.value.message
    assert schemas.load("1.6")[("BootNotification", "request")] is pair  # the table reads the same cache
    assert schemas._compiled == {("1.6", "BootNotification", "request"): pair}
    assert schemas._compilations == n + 1
    # the response, or the same action of another version, is another schema: compiled on its own first use
    schemas.validate(
        "2.0.1", "BootNotification", "response", {"currentTime": T0, "interval": 300, "status": "Accepted"}
    )
    assert set(schemas._compiled) == {("1.6", "BootNotification", "request"), ("2.0.1", "BootNotification", "response")}
    assert schemas._compilations == n + 2


def test_unknown_actions_and_versions_compile_nothing(nothing_compiled: None) -> None:
    n = schemas._compilations
    for version, action, kind in [
        ("2.0.1", "StartTransaction", "request"),  # a 1.6 action
        ("1.6", "NoSuchAction", "response"),
        ("2.1", "NotifyPeriodicEventStream", "response"),  # a SEND message: no response
        ("2.0", "Heartbeat", "request"),  # no schemas for 2.0
        ("1.5", "Heartbeat", "request"),
    ]:
        with pytest.raises(schemas.UnknownAction):
            schemas.validate(version, action, kind, {})  # type: ignore[arg-type]
    assert schemas._compiled == {}
    assert schemas._compilations == n


_START = """
import asyncio, sys
if sys.argv[1] == "absent":
    sys.modules["ocpp"] = None  # the package is not installed
from gateway.ops.lifecycle import running_gateway
from tests.helpers import make_config

async def main():
    async with running_gateway(make_config({"a": "ws://127.0.0.1:9/ocpp"})):
        print("started")

try:
    asyncio.run(main())
except RuntimeError as e:
    print("RuntimeError:", e)
"""


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("absent", "RuntimeError: the 'ocpp' package (schemas) is not installed"),
        ("empty", "RuntimeError: no schemas found for OCPP 1.6"),
        (
            "damaged",
            "RuntimeError: OCPP 1.6 schema Heartbeat.json is unreadable: Expecting value: line 1 column 1 (char 0)",
        ),
    ],
)
def test_the_gateway_does_not_start_without_the_schemas(case: str, message: str, tmp_path: Path) -> None:
    # "empty": an ``ocpp`` package without schema files shadows the installed one; "damaged": one file is not JSON
    for d in ("v16", "v201", "v21"):
        (tmp_path / "ocpp" / d / "schemas").mkdir(parents=True)
        if case == "damaged":
            (tmp_path / "ocpp" / d / "schemas" / "Heartbeat.json").write_text("<html>not a schema</html>")
    (tmp_path / "ocpp" / "__init__.py").write_text("")
    env = {**os.environ, "PYTHONPATH": str(tmp_path) if case in ("empty", "damaged") else ""}
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run(
        [sys.executable, "-c", _START, case], cwd=root, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == message


def test_warming_compiles_the_common_actions_of_each_version_once(nothing_compiled: None) -> None:
    n = schemas._compilations
    assert schemas.warm(["1.6", "2.0"]) == 14  # 2.0 has no schemas: skipped
    hot = {("1.6", a, k) for a in schemas.HOT_ACTIONS["1.6"] for k in ("request", "response")}
    assert set(schemas._compiled) == hot
    assert schemas.warm(["1.6"]) == 0  # compiled already
    assert schemas._compilations == n + 14


@pytest.mark.parametrize(
    ("listen", "backend", "validate", "warmed"),
    [
        (["1.6"], "1.6", False, set()),  # pass-through, not validated: no schema compiled at all
        (["1.6"], "1.6", True, {"1.6"}),
        (["1.6", "2.0.1"], "2.0.1", False, {"1.6", "2.0.1"}),  # a 1.6 charger is translated: both sides are read
        (["2.1"], "2.0.1", False, {"2.1", "2.0.1"}),
    ],
)
async def test_a_gateway_compiles_at_start_what_its_chargers_frames_will_be_checked_against(
    nothing_compiled: None, listen: list[str], backend: str, validate: bool, warmed: set[str]
) -> None:
    from gateway.ops.lifecycle import running_gateway
    from tests.helpers import make_config

    config = make_config(
        {"a": {"url": "ws://127.0.0.1:9/ocpp", "ocpp": backend}},
        listen={"ocpp_versions": listen},
        session={"validate_schemas": validate},
    )
    async with running_gateway(config):
        compiled = set(schemas._compiled)
    expected = {(v, a, k) for v in warmed for a in schemas.HOT_ACTIONS[v] for k in ("request", "response")}
    assert compiled == expected
