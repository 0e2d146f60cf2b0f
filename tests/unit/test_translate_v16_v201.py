"""Set-up A translator, charger-initiated side and transaction sequences (ocpp-translation.md §2, §6).

Every input is checked against its 1.6 schema and every output (CALLs to the CSMS, answers to the charger, the
gateway's own CALLs) against the target schema by :func:`tests.unit.translate_harness.exchange`.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from gateway.translate import v16_to_v201
from gateway.translate.base import JsonDict
from gateway.translate.v16_to_v201 import POLICY, Options, V16ChargerToV201Csms
from gateway.translate.v16_v201.charger_calls import CHARGER_HANDLERS
from gateway.translate.v16_v201.csms_calls import CSMS_HANDLERS
from tests.unit.translate_harness import exchange, make

T0 = "2025-03-01T12:00:00.000Z"
TE_OK = {"idTokenInfo": {"status": "Accepted"}}


def start(tr: V16ChargerToV201Csms, connector: int = 1, id_tag: str = "TAG1", meter: int = 1000, ts: str = T0) -> int:
    out = exchange(
        tr,
        "charger",
        "StartTransaction",
        {"connectorId": connector, "idTag": id_tag, "meterStart": meter, "timestamp": ts},
        TE_OK,
    )
    assert out.answer is not None
    return int(out.answer["transactionId"])


def status(tr: V16ChargerToV201Csms, connector: int, value: str, error: str = "NoError", **extra: object):  # type: ignore[no-untyped-def]
    payload = {"connectorId": connector, "errorCode": error, "status": value, "timestamp": T0, **extra}
    return exchange(tr, "charger", "StatusNotification", payload, {})


class TestBootAndHeartbeat:
    def test_boot_maps_station_fields_and_copies_answer(self) -> None:
        tr, _ = make()
        payload = {
            "chargePointVendor": "ACME",
            "chargePointModel": "Wallbox",
            "chargeBoxSerialNumber": "CB-1",
            "firmwareVersion": "1.2.3",
            "iccid": "8944",
            "meterType": "EM340",
        }
        answer = {"status": "Accepted", "currentTime": T0, "interval": 300}
        out = exchange(tr, "charger", "BootNotification", payload, answer)
        sent = out.calls[0].payload
        assert sent == {
            "reason": "PowerUp",
            "chargingStation": {
                "model": "Wallbox",
                "vendorName": "ACME",
                "serialNumber": "CB-1",
                "firmwareVersion": "1.2.3",
                "modem": {"iccid": "8944"},
            },
        }
        assert out.answer == answer
        assert ("BootNotification", "meterType") in tr.take_dropped()

    def test_boot_with_both_serial_numbers_sends_the_charge_points_and_counts_the_charge_boxs(self) -> None:
        tr, _ = make()
        both = {"chargePointVendor": "A", "chargePointModel": "B"}
        both.update(chargePointSerialNumber="CP-1", chargeBoxSerialNumber="CB-1")
        answer = {"status": "Accepted", "currentTime": T0, "interval": 300}
        out = exchange(tr, "charger", "BootNotification", both, answer)
        assert out.calls[0].payload["chargingStation"]["serialNumber"] == "CP-1"
        assert tr.take_dropped() == [("BootNotification", "chargeBoxSerialNumber")]
        assert tr.state.boot == both  # kept: OCPP16.chargeBoxSerialNumber answers it from the boot record
        got = exchange(
            tr,
            "csms",
            "GetVariables",
            {"getVariableData": [{"component": {"name": "OCPP16"}, "variable": {"name": "chargeBoxSerialNumber"}}]},
        )
        assert got.calls == [] and got.answer is not None
        assert got.answer["getVariableResult"][0]["attributeValue"] == "CB-1"

    @pytest.mark.parametrize(
        ("serials", "sent"),
        [
            ({"chargeBoxSerialNumber": "CB-1"}, "CB-1"),  # the fallback: nothing lost
            ({"chargePointSerialNumber": "SN-1", "chargeBoxSerialNumber": "SN-1"}, "SN-1"),  # the same number
            ({"chargePointSerialNumber": "", "chargeBoxSerialNumber": "CB-1"}, "CB-1"),  # an empty one is none
        ],
    )
    def test_boot_serial_number_carried_without_loss_is_not_counted(self, serials: JsonDict, sent: str) -> None:
        tr, _ = make()
        boot = {"chargePointVendor": "A", "chargePointModel": "B", **serials}
        out = exchange(
            tr, "charger", "BootNotification", boot, {"status": "Accepted", "currentTime": T0, "interval": 9}
        )
        assert out.calls[0].payload["chargingStation"]["serialNumber"] == sent
        assert tr.take_dropped() == []

    def test_boot_after_reset_reports_remote_reset_once(self) -> None:
        tr, _ = make()
        exchange(tr, "csms", "Reset", {"type": "Immediate"}, {"status": "Accepted"})
        boot = {"chargePointVendor": "A", "chargePointModel": "B"}
        ok = {"status": "Accepted", "currentTime": T0, "interval": 60}
        assert exchange(tr, "charger", "BootNotification", boot, ok).calls[0].payload["reason"] == "RemoteReset"
        assert exchange(tr, "charger", "BootNotification", boot, ok).calls[0].payload["reason"] == "PowerUp"

    def test_boot_after_trigger_is_triggered(self) -> None:
        tr, _ = make()
        exchange(tr, "csms", "TriggerMessage", {"requestedMessage": "BootNotification"}, {"status": "Accepted"})
        boot = {"chargePointVendor": "A", "chargePointModel": "B"}
        out = exchange(tr, "charger", "BootNotification", boot, {"status": "Pending", "currentTime": T0, "interval": 9})
        assert out.calls[0].payload["reason"] == "Triggered"
        assert out.answer == {"status": "Pending", "currentTime": T0, "interval": 9}

    def test_heartbeat_copies_current_time(self) -> None:
        tr, _ = make()
        out = exchange(tr, "charger", "Heartbeat", {}, {"currentTime": T0})
        assert out.calls[0].payload == {} and out.answer == {"currentTime": T0}


class TestStatusNotification:
    def test_connector_status_maps_to_evse_and_connector(self) -> None:
        tr, _ = make()
        out = status(tr, 2, "Available")
        assert out.calls[0].payload == {"timestamp": T0, "connectorStatus": "Available", "evseId": 2, "connectorId": 1}
        assert out.answer == {}

    def test_missing_timestamp_uses_receive_time(self) -> None:
        tr, _ = make()
        out = exchange(
            tr, "charger", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Faulted"}, {}
        )
        assert out.calls[0].payload["timestamp"] == T0

    def test_occupied_is_sent_once_and_charging_states_become_events(self) -> None:
        tr, _ = make()
        assert status(tr, 1, "Preparing").actions == ["StatusNotification"]
        start(tr)
        seen = []
        for value in ("Charging", "SuspendedEV", "Charging", "Finishing"):
            out = status(tr, 1, value)
            assert "StatusNotification" not in out.actions
            seen += [(p["seqNo"], p["transactionInfo"]["chargingState"]) for p in out.payloads("TransactionEvent")]
        assert seen == [(1, "Charging"), (2, "SuspendedEV"), (3, "Charging")]
        assert status(tr, 1, "Available").actions == ["StatusNotification"]

    def test_folded_status_without_anything_to_send_is_answered_locally(self) -> None:
        tr, _ = make()
        status(tr, 1, "Preparing")
        out = status(tr, 1, "Finishing")
        assert out.calls == [] and out.answer == {} and out.plan.reason == "occupied_folded"

    def test_charging_before_start_is_carried_by_started(self) -> None:
        tr, _ = make()
        status(tr, 1, "Charging")
        out = exchange(
            tr, "charger", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": T0}, TE_OK
        )
        assert out.calls[0].payload["transactionInfo"]["chargingState"] == "Charging"

    def test_connector_zero_becomes_notify_event(self) -> None:
        tr, _ = make()
        out = status(tr, 0, "Unavailable")
        assert out.actions == ["NotifyEvent"]
        event = out.calls[0].payload["eventData"][0]
        assert event["component"] == {"name": "ChargingStation"}
        assert event["variable"] == {"name": "AvailabilityState"} and event["actualValue"] == "Unavailable"

    def test_error_code_raises_and_clears_problem(self) -> None:
        tr, _ = make()
        status(tr, 1, "Available")
        out = status(tr, 1, "Faulted", "GroundFailure", info="RCD", vendorErrorCode="E42")
        assert out.actions == ["StatusNotification", "NotifyEvent"]
        event = out.payloads("NotifyEvent")[0]["eventData"][0]
        assert event["techCode"] == "GroundFailure" and event["techInfo"] == "RCD E42"
        assert event["actualValue"] == "true" and event["cleared"] is False
        assert event["component"] == {"name": "Connector", "evse": {"id": 1, "connectorId": 1}}
        cleared = status(tr, 1, "Available").payloads("NotifyEvent")[0]["eventData"][0]
        assert cleared["cleared"] is True and cleared["actualValue"] == "false"
        assert cleared["eventId"] == event["eventId"] + 1

    def test_shared_evse_map(self) -> None:
        tr, _ = make(Options(connector_map={1: (1, 1), 2: (1, 2)}))
        out = status(tr, 2, "Available")
        assert (out.calls[0].payload["evseId"], out.calls[0].payload["connectorId"]) == (1, 2)


class TestAuthorize:
    @pytest.mark.parametrize(
        ("status_201", "status_16"),
        [
            ("Accepted", "Accepted"),
            ("Blocked", "Blocked"),
            ("Expired", "Expired"),
            ("Invalid", "Invalid"),
            ("ConcurrentTx", "ConcurrentTx"),
            ("NoCredit", "Invalid"),
            ("NotAllowedTypeEVSE", "Invalid"),
            ("NotAtThisLocation", "Invalid"),
            ("NotAtThisTime", "Invalid"),
            ("Unknown", "Invalid"),
        ],
    )
    def test_token_status(self, status_201: str, status_16: str) -> None:
        tr, _ = make()
        out = exchange(tr, "charger", "Authorize", {"idTag": "ABC"}, {"idTokenInfo": {"status": status_201}})
        assert out.calls[0].payload == {"idToken": {"idToken": "ABC", "type": "ISO14443"}}
        assert out.answer == {"idTagInfo": {"status": status_16}}

    def test_token_info_fields(self) -> None:
        tr, _ = make()
        info = {
            "status": "Accepted",
            "cacheExpiryDateTime": "2025-04-01T00:00:00Z",
            "groupIdToken": {"idToken": "GROUP", "type": "Central"},
            "evseId": [1],
            "personalMessage": {"format": "UTF8", "content": "hi"},
        }
        out = exchange(tr, "charger", "Authorize", {"idTag": "ABC"}, {"idTokenInfo": info})
        assert out.answer == {
            "idTagInfo": {"status": "Accepted", "expiryDate": "2025-04-01T00:00:00Z", "parentIdTag": "GROUP"}
        }
        assert {("Authorize", "evseId"), ("Authorize", "personalMessage")} <= set(tr.take_dropped())

    def test_remembered_token_type_is_used(self) -> None:
        tr, _ = make()
        exchange(
            tr,
            "csms",
            "RequestStartTransaction",
            {"idToken": {"idToken": "PIN1", "type": "KeyCode"}, "remoteStartId": 7},
            {"status": "Accepted"},
        )
        out = exchange(tr, "charger", "Authorize", {"idTag": "PIN1"}, {"idTokenInfo": {"status": "Accepted"}})
        assert out.calls[0].payload["idToken"]["type"] == "KeyCode"


class TestTransactions:
    def test_start_assigns_ids_and_answers_with_the_int(self) -> None:
        tr, _ = make()
        payload = {"connectorId": 1, "idTag": "TAG1", "meterStart": 1234, "timestamp": T0, "reservationId": 5}
        out = exchange(tr, "charger", "StartTransaction", payload, {"idTokenInfo": {"status": "Blocked"}})
        event = out.calls[0].payload
        assert event["eventType"] == "Started" and event["seqNo"] == 0 and event["triggerReason"] == "Authorized"
        assert event["transactionInfo"] == {"transactionId": "tx-1", "chargingState": "EVConnected"}
        assert event["evse"] == {"id": 1, "connectorId": 1} and event["reservationId"] == 5
        assert event["meterValue"][0]["sampledValue"][0] == {
            "value": 1234,
            "context": "Transaction.Begin",
            "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"},
        }
        assert "offline" not in event
        assert out.answer is not None and out.answer["idTagInfo"] == {"status": "Blocked"}
        assert out.answer["transactionId"] == (1_740_830_400 - 1_704_067_200)  # seconds since 2024-01-01

    def test_csms_omitting_token_info_is_accepted_and_counted(self) -> None:
        tr, _ = make()
        out = exchange(
            tr, "charger", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": T0}, {}
        )
        assert out.answer is not None and out.answer["idTagInfo"] == {"status": "Accepted"}
        assert ("StartTransaction", "csms_omitted_idtokeninfo") in tr.take_dropped()

    def test_start_retry_reuses_ids(self) -> None:
        tr, _ = make()
        payload = {"connectorId": 1, "idTag": "T", "meterStart": 5, "timestamp": T0}
        plan = tr.from_charger("StartTransaction", payload)  # answer lost before the CSMS replied
        again = exchange(tr, "charger", "StartTransaction", payload, TE_OK)
        assert again.calls[0].payload == plan.calls[0].payload
        third = exchange(tr, "charger", "StartTransaction", payload)
        assert third.calls == [] and third.answer == again.answer

    def test_meter_values_in_transaction_become_updated(self) -> None:
        tr, _ = make()
        tx = start(tr)
        payload = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [
                {
                    "timestamp": "2025-03-01T12:01:00Z",
                    "sampledValue": [
                        {"value": "1500", "context": "Sample.Clock"},
                        {
                            "value": "16.5",
                            "measurand": "Current.Import",
                            "phase": "L1",
                            "unit": "A",
                            "location": "Outlet",
                        },
                    ],
                }
            ],
        }
        out = exchange(tr, "charger", "MeterValues", payload, {})
        event = out.calls[0].payload
        assert (event["eventType"], event["seqNo"], event["triggerReason"]) == ("Updated", 1, "MeterValueClock")
        assert "evse" not in event and event["timestamp"] == "2025-03-01T12:01:00Z"
        assert event["meterValue"][0]["sampledValue"] == [
            {"value": 1500, "context": "Sample.Clock"},
            {
                "value": 16.5,
                "measurand": "Current.Import",
                "phase": "L1",
                "location": "Outlet",
                "unitOfMeasure": {"unit": "A", "multiplier": 0},
            },
        ]

    def test_meter_values_outside_transaction(self) -> None:
        tr, _ = make()
        mv = [{"timestamp": T0, "sampledValue": [{"value": "42.5", "unit": "kWh"}]}]
        out = exchange(tr, "charger", "MeterValues", {"connectorId": 0, "meterValue": mv}, {})
        assert out.calls[0].payload == {
            "evseId": 0,
            "meterValue": [
                {"timestamp": T0, "sampledValue": [{"value": 42.5, "unitOfMeasure": {"unit": "kWh", "multiplier": 0}}]}
            ],
        }

    def test_unconvertible_samples_are_dropped_and_message_answered(self) -> None:
        tr, _ = make()
        mv = [
            {
                "timestamp": T0,
                "sampledValue": [
                    {"value": "n/a"},
                    {"value": "21", "measurand": "Temperature", "unit": "Celcius"},
                    {"value": "0x1F", "format": "SignedData"},
                ],
            }
        ]
        out = exchange(tr, "charger", "MeterValues", {"connectorId": 1, "meterValue": mv})
        assert out.calls == [] and out.answer == {}
        dropped = {what for _, what in tr.take_dropped()}
        assert {"unparsable_sample", "unsupported_measurand", "signed_without_value"} <= dropped

    def test_celcius_is_spelled_celsius(self) -> None:
        tr, _ = make()
        mv = [{"timestamp": T0, "sampledValue": [{"value": "21", "measurand": "SoC", "unit": "Celcius"}]}]
        out = exchange(tr, "charger", "MeterValues", {"connectorId": 1, "meterValue": mv}, {})
        assert out.calls[0].payload["meterValue"][0]["sampledValue"][0]["unitOfMeasure"]["unit"] == "Celsius"

    def test_signed_data_with_raw_sibling_and_ocmf(self) -> None:
        tr, _ = make(Options(meter_public_key="PK"))
        ocmf = 'OCMF|{"RD":[{"RV":1.234,"RU":"kWh"}]}|{"SA":"ECDSA-secp256r1-SHA256","SD":"00"}'
        mv = [
            {
                "timestamp": T0,
                "sampledValue": [
                    {"value": "1000", "context": "Sample.Periodic"},
                    {"value": "BLOB", "format": "SignedData", "context": "Sample.Periodic"},
                    {"value": ocmf, "format": "SignedData", "measurand": "Energy.Active.Export.Register"},
                ],
            }
        ]
        out = exchange(tr, "charger", "MeterValues", {"connectorId": 1, "meterValue": mv}, {})
        first, second = out.calls[0].payload["meterValue"][0]["sampledValue"]
        assert first["value"] == 1000
        assert first["signedMeterValue"] == {
            "signedMeterData": "BLOB",
            "signingMethod": "",
            "encodingMethod": "",
            "publicKey": "PK",
        }
        assert second["value"] == 1.234 and second["unitOfMeasure"]["unit"] == "kWh"
        assert second["signedMeterValue"]["encodingMethod"] == "OCMF"
        assert second["signedMeterValue"]["signingMethod"] == "ECDSA-secp256r1-SHA256"

    def test_stop_ends_transaction_with_meter_stop(self) -> None:
        tr, _ = make()
        tx = start(tr)
        payload = {
            "transactionId": tx,
            "meterStop": 9000,
            "timestamp": "2025-03-01T13:00:00Z",
            "idTag": "TAG1",
            "reason": "Local",
        }
        out = exchange(tr, "charger", "StopTransaction", payload, {"idTokenInfo": {"status": "Accepted"}})
        event = out.calls[0].payload
        assert (event["eventType"], event["seqNo"], event["triggerReason"]) == ("Ended", 1, "StopAuthorized")
        assert event["transactionInfo"] == {"transactionId": "tx-1", "stoppedReason": "Local"}
        assert event["idToken"] == {"idToken": "TAG1", "type": "ISO14443"}
        assert event["meterValue"][-1]["sampledValue"][0]["value"] == 9000
        assert out.answer == {"idTagInfo": {"status": "Accepted"}}
        assert tr.state.transactions[tx].phase == "ended"

    def test_stop_without_token_info_answers_empty(self) -> None:
        tr, _ = make()
        tx = start(tr)
        out = exchange(tr, "charger", "StopTransaction", {"transactionId": tx, "meterStop": 1, "timestamp": T0}, {})
        assert out.answer == {} and out.calls[0].payload["triggerReason"] == "EVDeparted"

    @pytest.mark.parametrize(
        ("reason", "stopped", "trigger"),
        [
            ("Local", "Local", "EVDeparted"),
            ("Remote", "Remote", "RemoteStop"),
            ("EVDisconnected", "EVDisconnected", "EVDeparted"),
            ("DeAuthorized", "DeAuthorized", "Deauthorized"),
            ("EmergencyStop", "EmergencyStop", "AbnormalCondition"),
            ("PowerLoss", "PowerLoss", "AbnormalCondition"),
            ("HardReset", "ImmediateReset", "AbnormalCondition"),
            ("SoftReset", "Reboot", "AbnormalCondition"),
            ("Reboot", "Reboot", "AbnormalCondition"),
            ("UnlockCommand", "Other", "UnlockCommand"),
            ("Other", "Other", "AbnormalCondition"),
        ],
    )
    def test_every_stop_reason(self, reason: str, stopped: str, trigger: str) -> None:
        tr, _ = make()
        tx = start(tr)
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": tx, "meterStop": 1, "timestamp": T0, "reason": reason},
            {},
        )
        event = out.calls[0].payload
        assert (event["transactionInfo"]["stoppedReason"], event["triggerReason"]) == (stopped, trigger)

    def test_soft_reset_after_immediate_sent_as_soft(self) -> None:
        tr, _ = make(Options(reset_immediate_as="Soft"))
        tx = start(tr)
        reset = exchange(tr, "csms", "Reset", {"type": "Immediate"}, {"status": "Accepted"})
        assert reset.calls[0].payload == {"type": "Soft"}
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": tx, "meterStop": 1, "timestamp": T0, "reason": "SoftReset"},
            {},
        )
        assert out.calls[0].payload["transactionInfo"]["stoppedReason"] == "ImmediateReset"
        assert out.calls[0].payload["triggerReason"] == "ResetCommand"

    def test_transaction_data_with_end_register_is_not_duplicated(self) -> None:
        tr, _ = make()
        tx = start(tr)
        data = [
            {
                "timestamp": T0,
                "sampledValue": [
                    {
                        "value": "5000",
                        "context": "Transaction.End",
                        "measurand": "Energy.Active.Import.Register",
                        "unit": "Wh",
                    }
                ],
            }
        ]
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": tx, "meterStop": 5000, "timestamp": T0, "transactionData": data},
            {},
        )
        assert len(out.calls[0].payload["meterValue"]) == 1

    def test_signed_end_register_is_attached_to_meter_stop(self) -> None:
        tr, _ = make()
        tx = start(tr)
        data = [
            {"timestamp": T0, "sampledValue": [{"value": "SIG", "format": "SignedData", "context": "Transaction.End"}]}
        ]
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": tx, "meterStop": 7, "timestamp": T0, "transactionData": data},
            {},
        )
        (only,) = out.calls[0].payload["meterValue"]
        assert only["sampledValue"][0]["value"] == 7
        assert only["sampledValue"][0]["signedMeterValue"]["signedMeterData"] == "SIG"

    def test_stop_retry_is_answered_from_record(self) -> None:
        tr, _ = make()
        tx = start(tr)
        payload = {"transactionId": tx, "meterStop": 1, "timestamp": T0, "idTag": "TAG1"}
        first_plan = tr.from_charger("StopTransaction", payload)  # Ended sent, answer lost
        resent = exchange(tr, "charger", "StopTransaction", payload, {"idTokenInfo": {"status": "Accepted"}})
        assert resent.calls[0].payload == first_plan.calls[0].payload  # same Ended, same seqNo
        again = exchange(tr, "charger", "StopTransaction", payload)
        assert again.calls == [] and again.answer == {"idTagInfo": {"status": "Accepted"}}

    def test_offline_queue_replay(self) -> None:
        tr, _ = make(session_started_at="2025-03-01T18:00:00Z")
        tx = start(tr, ts="2025-03-01T12:00:00Z")
        for minute in (1, 2, 3):
            mv = [{"timestamp": f"2025-03-01T12:0{minute}:00Z", "sampledValue": [{"value": str(minute)}]}]
            exchange(tr, "charger", "MeterValues", {"connectorId": 1, "transactionId": tx, "meterValue": mv}, {})
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": tx, "meterStop": 9, "timestamp": "2025-03-01T12:10:00Z"},
            {},
        )
        assert out.calls[0].payload["seqNo"] == 4 and out.calls[0].payload["offline"] is True
        assert tr.state.transactions[tx].offline

    def test_unknown_transaction_stop_synthesises_started(self) -> None:
        tr, _ = make()
        status(tr, 2, "Charging")
        data = [{"timestamp": "2025-03-01T11:00:00Z", "sampledValue": [{"value": "10"}]}]
        out = exchange(
            tr,
            "charger",
            "StopTransaction",
            {"transactionId": 4242, "meterStop": 99, "timestamp": T0, "idTag": "X", "transactionData": data},
            {},
        )
        started, ended = (c.payload for c in out.calls)
        assert (started["eventType"], started["seqNo"], started["offline"]) == ("Started", 0, True)
        assert started["timestamp"] == "2025-03-01T11:00:00Z" and started["evse"] == {"id": 2, "connectorId": 1}
        assert "meterValue" not in started and started["idToken"]["idToken"] == "X"
        assert (ended["eventType"], ended["seqNo"], ended["offline"]) == ("Ended", 1, True)
        assert started["transactionInfo"]["transactionId"] == ended["transactionInfo"]["transactionId"]

    def test_unknown_transaction_meter_values_then_stop(self) -> None:
        tr, _ = make()
        mv = [{"timestamp": T0, "sampledValue": [{"value": "10"}]}]
        out = exchange(tr, "charger", "MeterValues", {"connectorId": 3, "transactionId": 77, "meterValue": mv}, {})
        assert [c.payload["seqNo"] for c in out.calls] == [0, 1]
        assert out.calls[0].payload["evse"] == {"id": 3, "connectorId": 1}
        stop = exchange(tr, "charger", "StopTransaction", {"transactionId": 77, "meterStop": 11, "timestamp": T0}, {})
        assert stop.actions == ["TransactionEvent"] and stop.calls[0].payload["seqNo"] == 2

    def test_invented_id_after_lost_start_answer_ends_the_open_transaction(self) -> None:
        tr, _ = make()
        start(tr, id_tag="T9")
        out = exchange(
            tr, "charger", "StopTransaction", {"transactionId": -1, "meterStop": 3, "timestamp": T0, "idTag": "T9"}, {}
        )
        assert out.actions == ["TransactionEvent"]
        assert out.calls[0].payload["transactionInfo"]["transactionId"] == "tx-1"

    def test_snapshot_restore_mid_transaction(self) -> None:
        tr, clock = make()
        tx = start(tr)
        exchange(
            tr,
            "charger",
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "1"}]}],
            },
            {},
        )
        stored = tr.snapshot()
        fresh = V16ChargerToV201Csms(now=clock, new_tx_id=lambda: "never")
        fresh.restore(stored)
        out = exchange(fresh, "charger", "StopTransaction", {"transactionId": tx, "meterStop": 2, "timestamp": T0}, {})
        assert out.calls[0].payload["seqNo"] == 2 and out.calls[0].payload["transactionInfo"]["transactionId"] == "tx-1"

    def test_restore_tolerates_missing_and_unknown_keys(self) -> None:
        tr, _ = make()
        tr.restore({"transactions": {"5": {"tx201": "abc"}}, "future_field": 1})
        assert tr.state.transactions[5].tx201 == "abc" and tr.state.transactions[5].phase == "open"
        tr.restore({})
        assert tr.state.transactions == {}

    def test_remote_start_then_start_transaction_carries_remote_start_id(self) -> None:
        tr, _ = make()
        req = {"idToken": {"idToken": "APP1", "type": "Central"}, "remoteStartId": 31, "evseId": 1}
        out = exchange(tr, "csms", "RequestStartTransaction", req, {"status": "Accepted"})
        assert out.calls[0].payload == {"idTag": "APP1", "connectorId": 1}
        started = exchange(
            tr,
            "charger",
            "StartTransaction",
            {"connectorId": 1, "idTag": "APP1", "meterStart": 0, "timestamp": T0},
            TE_OK,
        )
        event = started.calls[0].payload
        assert event["triggerReason"] == "RemoteStart" and event["transactionInfo"]["remoteStartId"] == 31
        assert event["idToken"] == {"idToken": "APP1", "type": "Central"}

    def test_remote_start_with_other_tag_or_expired_is_authorized(self) -> None:
        tr, clock = make()
        exchange(
            tr,
            "csms",
            "RequestStartTransaction",
            {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1},
            {"status": "Accepted"},
        )
        other = exchange(
            tr, "charger", "StartTransaction", {"connectorId": 1, "idTag": "B", "meterStart": 0, "timestamp": T0}, TE_OK
        )
        assert other.calls[0].payload["triggerReason"] == "Authorized"
        clock.advance(181)
        late = exchange(
            tr, "charger", "StartTransaction", {"connectorId": 2, "idTag": "A", "meterStart": 0, "timestamp": T0}, TE_OK
        )
        assert late.calls[0].payload["triggerReason"] == "Authorized"
        assert "remoteStartId" not in late.calls[0].payload["transactionInfo"]

    def test_two_connectors_request_stop_only_one(self) -> None:
        tr, _ = make()
        start(tr, 1, "A")
        tx2 = start(tr, 2, "B")
        out = exchange(tr, "csms", "RequestStopTransaction", {"transactionId": "tx-2"}, {"status": "Accepted"})
        assert out.calls[0].payload == {"transactionId": tx2} and out.answer == {"status": "Accepted"}

    def test_deferred_reset_is_sent_after_last_ended(self) -> None:
        tr, _ = make()
        tx = start(tr)
        out = exchange(tr, "csms", "Reset", {"type": "OnIdle"})
        assert out.answer == {"status": "Scheduled"} and out.calls == []
        stop = exchange(tr, "charger", "StopTransaction", {"transactionId": tx, "meterStop": 1, "timestamp": T0}, {})
        assert [(c.action, c.payload) for c in stop.plan.then_to_charger] == [("Reset", {"type": "Soft"})]


class TestOtherChargerMessages:
    def test_data_transfer(self) -> None:
        tr, _ = make()
        out = exchange(
            tr,
            "charger",
            "DataTransfer",
            {"vendorId": "V", "messageId": "m", "data": "x"},
            {"status": "Accepted", "data": {"a": 1}},
        )
        assert out.calls[0].payload == {"vendorId": "V", "messageId": "m", "data": "x"}
        assert out.answer == {"status": "Accepted", "data": '{"a":1}'}

    def test_diagnostics_status_carries_get_log_request_id(self) -> None:
        tr, _ = make()
        get_log = {"logType": "DiagnosticsLog", "requestId": 12, "log": {"remoteLocation": "ftp://logs.example.com/"}}
        out = exchange(tr, "csms", "GetLog", get_log, {"fileName": "diag.zip"})
        assert out.calls[0].action == "GetDiagnostics" and out.answer == {"status": "Accepted", "filename": "diag.zip"}
        up = exchange(tr, "charger", "DiagnosticsStatusNotification", {"status": "Uploaded"}, {})
        assert up.calls[0].payload == {"status": "Uploaded", "requestId": 12}
        idle = exchange(tr, "charger", "DiagnosticsStatusNotification", {"status": "UploadFailed"}, {})
        assert idle.calls[0].payload == {"status": "UploadFailure"}

    def test_firmware_status_carries_request_id_and_boot_reason(self) -> None:
        tr, _ = make()
        fw = {"requestId": 3, "firmware": {"location": "https://fw.example.com/f.bin", "retrieveDateTime": T0}}
        assert exchange(tr, "csms", "UpdateFirmware", fw, {}).answer == {"status": "Accepted"}
        out = exchange(tr, "charger", "FirmwareStatusNotification", {"status": "Installing"}, {})
        assert out.calls[0].payload == {"status": "Installing", "requestId": 3}
        boot = exchange(
            tr,
            "charger",
            "BootNotification",
            {"chargePointVendor": "A", "chargePointModel": "B"},
            {"status": "Accepted", "currentTime": T0, "interval": 1},
        )
        assert boot.calls[0].payload["reason"] == "FirmwareUpdate"
        exchange(tr, "charger", "FirmwareStatusNotification", {"status": "Installed"}, {})
        assert tr.state.fw_request is None

    def test_security_extension_messages(self) -> None:
        tr, _ = make(Options(security_extension=True))
        sec = exchange(
            tr,
            "charger",
            "SecurityEventNotification",
            {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "x"},
            {},
        )
        assert sec.calls[0].payload == {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "x"}
        sign = exchange(tr, "charger", "SignCertificate", {"csr": "CSR"}, {"status": "Accepted"})
        assert sign.calls[0].payload == {"csr": "CSR", "certificateType": "ChargingStationCertificate"}
        log = exchange(tr, "charger", "LogStatusNotification", {"status": "Uploading", "requestId": 4}, {})
        assert log.calls[0].payload == {"status": "Uploading", "requestId": 4}
        fw = exchange(
            tr, "charger", "SignedFirmwareStatusNotification", {"status": "InvalidSignature", "requestId": 5}, {}
        )
        assert fw.calls[0].action == "FirmwareStatusNotification"
        assert fw.calls[0].payload == {"status": "InvalidSignature", "requestId": 5}

    def test_unknown_and_wrong_direction_actions(self) -> None:
        tr, _ = make()
        assert tr.from_charger("Teleport", {}).error == ("NotImplemented", "unknown action Teleport")
        assert tr.from_charger("RemoteStartTransaction", {"idTag": "x"}).error is not None
        assert tr.from_charger("RemoteStartTransaction", {"idTag": "x"}).error[0] == "NotSupported"  # type: ignore[index]
        assert tr.from_csms("TransactionEvent", {}).error[0] == "NotSupported"  # type: ignore[index]


class TestErrorsAndPolicy:
    @pytest.mark.parametrize(
        ("code", "to", "expected"),
        [
            ("FormationViolation", "csms", "FormatViolation"),
            ("FormatViolation", "charger", "FormationViolation"),
            ("OccurenceConstraintViolation", "csms", "OccurrenceConstraintViolation"),
            ("OccurrenceConstraintViolation", "charger", "OccurenceConstraintViolation"),
            ("NotSupported", "charger", "NotSupported"),
            ("SecurityError", "csms", "SecurityError"),
            ("GenericError", "csms", "GenericError"),
            ("Bogus", "csms", "GenericError"),
        ],
    )
    def test_map_error(self, code: str, to: str, expected: str) -> None:
        tr, _ = make()
        assert tr.map_error(code, to) == expected  # type: ignore[arg-type]

    def test_2_0_1_only_codes_get_a_1_6_spelling(self) -> None:
        tr, _ = make()
        for code in ("RpcFrameworkError", "MessageTypeNotSupported"):
            assert tr.map_error(code, "charger") in {"ProtocolError", "GenericError"}

    def test_policy_covers_every_handler_and_the_docstring(self) -> None:
        assert set(CHARGER_HANDLERS) | set(CSMS_HANDLERS) <= set(POLICY)
        doc = v16_to_v201.__doc__ or ""
        for action in POLICY:
            assert action in doc

    def test_translator_satisfies_protocol(self) -> None:
        from gateway.translate.base import Translator

        tr: Translator = V16ChargerToV201Csms()
        assert (tr.charger_version, tr.csms_version) == ("1.6", "2.0.1")


def test_sent_payloads_do_not_alias_translator_state() -> None:
    tr, _ = make()
    tx = start(tr)
    before = tr.snapshot()
    plan = tr.from_charger("StopTransaction", {"transactionId": tx, "meterStop": 1, "timestamp": T0})
    after_plan = tr.snapshot()
    plan.calls[0].payload["transactionInfo"]["transactionId"] = "mutated by the session"
    plan.calls[0].payload["meterValue"].clear()
    assert tr.snapshot() == after_plan != before


def test_transaction_snapshot_is_field_by_field_without_deep_copying_recorded_events() -> None:
    """The snapshot is taken twice per translated round trip for every kept transaction: it must stay cheap."""
    import dataclasses

    tr, _ = make()
    tx = start(tr)
    stop = {"transactionId": tx, "meterStop": 1500, "timestamp": T0, "idTag": "TAG1", "reason": "Local"}
    exchange(tr, "charger", "StopTransaction", stop, {"idTokenInfo": {"status": "Accepted"}})
    rec = tr.state.transactions[tx]
    snap = tr.snapshot()["transactions"][str(tx)]
    assert snap == {k: v for k, v in dataclasses.asdict(rec).items() if k not in ("_snapshot", "_json", "_owner")}
    assert rec.started_event is not None and rec.ended_event is not None
    # recorded events are shared (never edited in place once recorded), scalars are copied
    assert snap["started_event"] is rec.started_event and snap["ended_event"] is rec.ended_event
    rec.seq_no += 5
    assert snap["seq_no"] == rec.seq_no - 5
    # a record not set since is not rebuilt; one that was is
    again = tr.snapshot()["transactions"][str(tx)]
    assert again is not snap and again["seq_no"] == rec.seq_no
    assert tr.snapshot()["transactions"][str(tx)] is again


def test_the_state_as_json_text_is_the_snapshot_and_reencodes_only_changed_records() -> None:
    """What the relay persists (``snapshot_json``) reads back as the snapshot does; a record's text is kept until
    one of its fields is set."""
    tr, _ = make()
    tx = start(tr)
    other = start(tr, connector=2)
    assert orjson.loads(tr.snapshot_json()) == json.loads(json.dumps(tr.snapshot()))
    first, second = tr.state.transactions[tx].to_json(), tr.state.transactions[other].to_json()
    tr.state.transactions[tx].seq_no += 1
    text = tr.snapshot_json()
    assert orjson.loads(text) == json.loads(json.dumps(tr.snapshot()))
    assert tr.state.transactions[other].to_json() is second and tr.state.transactions[tx].to_json() != first
    restored, _ = make()
    restored.restore(orjson.loads(text))
    assert restored.snapshot() == tr.snapshot()


@pytest.mark.parametrize("records", [0, 1, 33])
def test_the_state_text_reads_back_as_its_snapshot_for_any_number_of_records(records: int) -> None:
    from gateway.translate.state import PendingRemoteStart, TranslationState, TxRecord

    state = TranslationState(
        next_tx_int=9,
        transactions={-k if k % 2 else k: TxRecord(f"tx-{k}", evse=k, seq_no=k) for k in range(records)},
        pending_remote_starts=[PendingRemoteStart(1, "TAG", "ISO14443", None, T0)],
        connector_status={1: {"status": "Charging"}},
        schedule_ids={3: 4},
        config={"K": {"value": "v", "readonly": False}},
    )
    assert orjson.loads(state.to_json()) == json.loads(json.dumps(state.to_dict()))


def test_the_transactions_text_is_built_again_after_any_change_of_a_record_or_of_the_set() -> None:
    """:class:`Records` keeps the text of all records until one is put, removed or has a field set."""
    import copy

    from gateway.translate.state import TranslationState, TxRecord

    state = TranslationState(next_tx_int=9)
    state.transactions[1] = TxRecord("a")
    state.transactions[2] = TxRecord("b")

    def read() -> dict[str, Any]:
        text = state.to_json()
        assert orjson.loads(text) == json.loads(json.dumps(state.to_dict()))
        return dict(orjson.loads(text)["transactions"])

    assert set(read()) == {"1", "2"}
    kept = state.to_json()
    assert state.to_json() == kept  # nothing changed: the same text
    state.transactions[1].seq_no = 5
    assert read()["1"]["seq_no"] == 5
    state.transactions[3] = TxRecord("c")
    assert set(read()) == {"1", "2", "3"}
    del state.transactions[2]
    assert set(read()) == {"1", "3"}
    state.transactions.pop(3)
    assert set(read()) == {"1"}
    copied = copy.deepcopy(state)  # a copy builds its own text, and its records tell it, not the original
    copied.transactions[1].phase = "ended"
    assert orjson.loads(copied.to_json())["transactions"]["1"]["phase"] == "ended"
    assert read()["1"]["phase"] == "open"
    restored = TranslationState.from_dict(orjson.loads(state.to_json()))
    restored.to_json()
    restored.transactions[1].seq_no = 6
    assert orjson.loads(restored.to_json())["transactions"]["1"]["seq_no"] == 6
