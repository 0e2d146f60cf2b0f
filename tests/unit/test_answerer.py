"""The ride-through answerer (gateway/core/answerer.py): every answer it gives is schema-valid in its version, comes
from the CSMS's own earlier answers (or the configured policy), and nothing else is answered."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.answerer import (
    AuthEntry,
    answer,
    divergence,
    enforcement,
    gateway_transaction_id,
    learned,
    map_transaction_ids,
)
from gateway.ocpp import schemas
from gateway.offline import OfflineConfig

NOW = 1_800_000_000.0
RIDE = OfflineConfig(mode="ride_through")
LIMITED = OfflineConfig(mode="ride_through", unknown_token="accept_limited", max_energy_wh=5000)
ID201 = {"idToken": "TAG-1", "type": "ISO14443"}
CACHE16 = {"TAG-1": AuthEntry({"status": "Accepted"}, NOW - 60), "BAD": AuthEntry({"status": "Blocked"}, NOW - 60)}
CACHE2X = {"ISO14443:TAG-1": AuthEntry({"status": "Accepted"}, NOW - 60)}
TS = "2027-01-15T08:00:00.000Z"

REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("1.6", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}),
    ("1.6", "Heartbeat", {}),
    ("1.6", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"}),
    ("1.6", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": "1"}]}]}),
    ("1.6", "Authorize", {"idTag": "TAG-1"}),
    ("1.6", "Authorize", {"idTag": "NEW"}),
    ("1.6", "StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": TS}),
    ("1.6", "StopTransaction", {"transactionId": -5, "meterStop": 10, "timestamp": TS, "idTag": "TAG-1"}),
    ("1.6", "StopTransaction", {"transactionId": -5, "meterStop": 10, "timestamp": TS}),
    ("1.6", "DataTransfer", {"vendorId": "X"}),
    ("1.6", "FirmwareStatusNotification", {"status": "Idle"}),
    ("1.6", "DiagnosticsStatusNotification", {"status": "Idle"}),
]
for _v in ("2.0.1", "2.1"):
    REQUESTS += [
        (_v, "BootNotification", {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}),
        (_v, "Heartbeat", {}),
        (_v, "StatusNotification", {"timestamp": TS, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}),
        (_v, "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": TS, "sampledValue": [{"value": 1.0}]}]}),
        (_v, "Authorize", {"idToken": ID201}),
        (_v, "Authorize", {"idToken": {"idToken": "NEW", "type": "ISO14443"}}),
        (_v, "TransactionEvent", {"eventType": "Started", "timestamp": TS, "triggerReason": "Authorized",
                                  "seqNo": 0, "transactionInfo": {"transactionId": "T1"}, "idToken": ID201}),
        (_v, "TransactionEvent", {"eventType": "Updated", "timestamp": TS, "triggerReason": "MeterValuePeriodic",
                                  "seqNo": 1, "transactionInfo": {"transactionId": "T1"}}),
        (_v, "DataTransfer", {"vendorId": "X"}),
        (_v, "NotifyEvent", {"generatedAt": TS, "seqNo": 0, "eventData": []}),
        (_v, "SecurityEventNotification", {"type": "X", "timestamp": TS}),
        (_v, "FirmwareStatusNotification", {"status": "Idle"}),
        (_v, "LogStatusNotification", {"status": "Idle"}),
    ]  # fmt: skip


@pytest.mark.parametrize("policy", [RIDE, LIMITED, OfflineConfig(mode="ride_through", data_transfer="accept")])
@pytest.mark.parametrize(("version", "action", "payload"), REQUESTS, ids=[f"{v}-{a}" for v, a, _ in REQUESTS])
def test_every_answer_is_schema_valid(
    version: str, action: str, payload: dict[str, Any], policy: OfflineConfig
) -> None:
    cache = CACHE16 if version == "1.6" else CACHE2X
    got = answer(version, action, payload, cache=cache, boot_interval=300, now=NOW, policy=policy)
    assert got is not None
    schemas.validate(version, action, "response", got.payload)


def test_boot_is_answered_with_the_last_accepted_interval_only() -> None:
    boot = {"chargePointVendor": "V", "chargePointModel": "M"}
    got = answer("1.6", "BootNotification", boot, cache={}, boot_interval=120, now=NOW, policy=RIDE)
    assert got is not None and got.payload["interval"] == 120 and got.payload["status"] == "Accepted"
    assert answer("1.6", "BootNotification", boot, cache={}, boot_interval=None, now=NOW, policy=RIDE) is None


def test_cached_tags_get_the_csms_answer_and_unknown_ones_the_policy() -> None:
    def auth(tag: str, policy: OfflineConfig) -> tuple[Any, bool]:
        got = answer("1.6", "Authorize", {"idTag": tag}, cache=CACHE16, boot_interval=1, now=NOW, policy=policy)
        assert got is not None
        return got.payload["idTagInfo"]["status"], got.limited

    assert auth("TAG-1", RIDE) == ("Accepted", False)
    assert auth("BAD", RIDE) == ("Blocked", False)
    assert auth("NEW", RIDE) == ("Invalid", False)
    assert auth("NEW", LIMITED) == ("Accepted", True)
    assert auth("BAD", LIMITED) == ("Blocked", False)  # the CSMS's refusal stands whatever the policy


def test_expired_cache_entries_are_not_used() -> None:
    cache = {
        "OLD": AuthEntry({"status": "Accepted"}, NOW - RIDE.auth_cache_ttl_s - 1),
        "EXP": AuthEntry({"status": "Accepted", "expiryDate": "2020-01-01T00:00:00Z"}, NOW - 10),
        "OK": AuthEntry({"status": "Accepted", "expiryDate": "2099-01-01T00:00:00Z"}, NOW - 10),
    }
    for tag, want in (("OLD", "Invalid"), ("EXP", "Invalid"), ("OK", "Accepted")):
        got = answer("1.6", "Authorize", {"idTag": tag}, cache=cache, boot_interval=1, now=NOW, policy=RIDE)
        assert got is not None and got.payload["idTagInfo"]["status"] == want, tag


def test_2x_unknown_token_is_unknown_and_2x_cache_expiry_is_honoured() -> None:
    cache = {"ISO14443:T": AuthEntry({"status": "Accepted", "cacheExpiryDateTime": "2020-01-01T00:00:00Z"}, NOW)}
    got = answer("2.0.1", "Authorize", {"idToken": {"idToken": "T", "type": "ISO14443"}}, cache=cache,
                 boot_interval=1, now=NOW, policy=RIDE)  # fmt: skip
    assert got is not None and got.payload == {"idTokenInfo": {"status": "Unknown"}}


def test_start_transaction_gets_a_negative_gateway_id() -> None:
    got = answer("1.6", "StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 0, "timestamp": TS},
                 cache=CACHE16, boot_interval=1, now=NOW, policy=RIDE)  # fmt: skip
    assert got is not None and got.starts
    assert got.payload["transactionId"] == gateway_transaction_id(NOW) < 0


def test_data_transfer_is_rejected_and_not_journalled_by_default() -> None:
    got = answer("1.6", "DataTransfer", {"vendorId": "X"}, cache={}, boot_interval=1, now=NOW, policy=RIDE)
    assert got is not None and got.payload == {"status": "Rejected"} and not got.journal


@pytest.mark.parametrize("action", ["SignCertificate", "Get15118EVCertificate", "GetCertificateStatus", "Unknown"])
def test_what_only_the_csms_can_answer_is_not_answered(action: str) -> None:
    assert answer("2.0.1", action, {}, cache={}, boot_interval=1, now=NOW, policy=RIDE) is None
    assert answer("2.0", "Heartbeat", {}, cache={}, boot_interval=1, now=NOW, policy=RIDE) is None


def test_live_answers_teach_tokens_and_the_boot_interval() -> None:
    assert learned("1.6", "Authorize", {"idTag": "A"}, {"idTagInfo": {"status": "Blocked"}}).tokens == (
        ("A", {"status": "Blocked"}),
    )
    assert learned("2.0.1", "TransactionEvent", {"idToken": ID201}, {"idTokenInfo": {"status": "Accepted"}}).tokens
    assert learned("1.6", "BootNotification", {}, {"status": "Accepted", "interval": 60}).boot_interval == 60
    assert learned("1.6", "BootNotification", {}, {"status": "Pending", "interval": 60}).boot_interval is None
    assert learned("1.6", "Heartbeat", {}, {"currentTime": TS}) == learned("1.6", "MeterValues", {}, {})


def test_divergence_kinds() -> None:
    ok, blocked = {"idTagInfo": {"status": "Accepted"}}, {"idTagInfo": {"status": "Blocked"}}
    assert divergence("1.6", "Authorize", ok, blocked) == "authorization"
    assert divergence("1.6", "Authorize", ok, ok) is None
    assert divergence("1.6", "Heartbeat", {}, {"currentTime": TS}) is None
    assert divergence("1.6", "BootNotification", {"status": "Accepted"}, {"status": "Pending"}) == "boot"
    assert divergence("1.6", "MeterValues", {}, None) == "callerror"


def test_a_refused_start_is_enforced_with_a_stop_for_the_charger_s_id() -> None:
    ok, blocked = {"idTagInfo": {"status": "Accepted"}, "transactionId": -7}, {"idTagInfo": {"status": "Blocked"}}
    assert enforcement("1.6", "StartTransaction", {}, ok, blocked) == ("RemoteStopTransaction", {"transactionId": -7})
    assert enforcement("1.6", "StartTransaction", {}, ok, {**ok, "transactionId": 3}) is None
    call = {"eventType": "Started", "transactionInfo": {"transactionId": "T1"}, "idToken": ID201}
    got = enforcement("2.0.1", "TransactionEvent", call, {"idTokenInfo": {"status": "Accepted"}},
                      {"idTokenInfo": {"status": "Invalid"}})  # fmt: skip
    assert got == ("RequestStopTransaction", {"transactionId": "T1"})
    schemas.validate("1.6", "RemoteStopTransaction", "request", {"transactionId": -7})
    schemas.validate("2.0.1", "RequestStopTransaction", "request", got[1])


def test_transaction_ids_are_mapped_both_ways() -> None:
    to_csms, to_charger = {-7: 1001}, {1001: -7}
    assert map_transaction_ids("MeterValues", {"connectorId": 1, "transactionId": -7}, to_csms, True) == {
        "connectorId": 1, "transactionId": 1001,
    }  # fmt: skip
    assert map_transaction_ids("StopTransaction", {"transactionId": 5}, to_csms, True) is None
    assert map_transaction_ids("RemoteStopTransaction", {"transactionId": 1001}, to_charger, False) == {
        "transactionId": -7
    }
    profile = {"connectorId": 1, "csChargingProfiles": {"transactionId": 1001, "chargingProfileId": 1}}
    got = map_transaction_ids("SetChargingProfile", profile, to_charger, False)
    assert got is not None and got["csChargingProfiles"]["transactionId"] == -7
