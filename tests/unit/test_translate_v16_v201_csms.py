"""Set-up A translator, CSMS-initiated side (ocpp-translation.md §3, §5): 2.0.1 CSMS -> 1.6 charger.

Every input is checked against its 2.0.1 schema and every output against the target schema by ``exchange``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

from gateway.translate.base import OutCall
from gateway.translate.v16_to_v201 import Options
from gateway.translate.v16_v201.policy import UNTRANSLATABLE_HANDLERS
from tests.unit.translate_harness import exchange, make

T0 = "2025-03-01T12:00:00.000Z"
SHARED = Options(connector_map={1: (1, 1), 2: (1, 2)})
EXT = Options(security_extension=True)


def start(tr: Any, connector: int = 1) -> int:
    out = exchange(
        tr,
        "charger",
        "StartTransaction",
        {"connectorId": connector, "idTag": "TAG", "meterStart": 0, "timestamp": T0},
        {"idTokenInfo": {"status": "Accepted"}},
    )
    return int(out.answer["transactionId"])  # type: ignore[index]


def profile(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": 9,
        "stackLevel": 1,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 4,
                "chargingRateUnit": "A",
                "startSchedule": T0,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.04, "numberPhases": 3}],
                "minChargingRate": 6.0,
            }
        ],
    }
    base.update(overrides)
    return base


class TestRemoteStartStop:
    def test_long_id_token_is_rejected_without_asking(self) -> None:
        tr, _ = make()
        req = {"idToken": {"idToken": "X" * 36, "type": "Central"}, "remoteStartId": 1}
        out = exchange(tr, "csms", "RequestStartTransaction", req)
        assert out.calls == [] and out.answer == {"status": "Rejected", "statusInfo": {"reasonCode": "IdTokenTooLong"}}

    def test_rejected_start_forgets_pending_entry(self) -> None:
        tr, _ = make()
        req = {"idToken": {"idToken": "A", "type": "Central"}, "remoteStartId": 1}
        assert exchange(tr, "csms", "RequestStartTransaction", req, {"status": "Rejected"}).answer == {
            "status": "Rejected"
        }
        assert tr.state.pending_remote_starts == []
        out = exchange(tr, "csms", "RequestStartTransaction", req, ("InternalError", "boom"))
        assert out.error == ("InternalError", "boom") and tr.state.pending_remote_starts == []

    def test_start_with_tx_profile_and_running_transaction(self) -> None:
        tr, _ = make()
        start(tr)
        req = {
            "idToken": {"idToken": "A", "type": "eMAID"},
            "remoteStartId": 2,
            "evseId": 1,
            "chargingProfile": profile(chargingProfilePurpose="TxProfile"),
        }
        out = exchange(tr, "csms", "RequestStartTransaction", req, {"status": "Accepted"})
        sent = out.calls[0].payload
        assert sent["chargingProfile"]["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"] == 16.0
        assert out.answer == {"status": "Accepted", "transactionId": "tx-1"}

    def test_unknown_stop_is_rejected(self) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "RequestStopTransaction", {"transactionId": "nope"})
        assert out.answer == {"status": "Rejected", "statusInfo": {"reasonCode": "NoSuchTransaction"}}


class TestResetAndAvailability:
    def test_reset_with_evse_is_rejected(self) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "Reset", {"type": "Immediate", "evseId": 1})
        assert out.answer == {"status": "Rejected", "statusInfo": {"reasonCode": "EvseNotSupported"}}

    @pytest.mark.parametrize(("kind", "sent"), [("Immediate", "Hard"), ("OnIdle", "Soft")])
    def test_reset_types(self, kind: str, sent: str) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "Reset", {"type": kind}, {"status": "Rejected"})
        assert out.calls[0].payload == {"type": sent} and out.answer == {"status": "Rejected"}
        assert tr.state.reset is None

    def test_change_availability_station(self) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "ChangeAvailability", {"operationalStatus": "Inoperative"}, {"status": "Scheduled"})
        assert out.calls[0].payload == {"connectorId": 0, "type": "Inoperative"} and out.answer == {
            "status": "Scheduled"
        }

    def test_change_availability_fans_out_over_shared_evse(self) -> None:
        tr, _ = make(SHARED)
        req = {"operationalStatus": "Operative", "evse": {"id": 1}}
        out = exchange(tr, "csms", "ChangeAvailability", req, [{"status": "Accepted"}, {"status": "Scheduled"}])
        assert [c.payload["connectorId"] for c in out.calls] == [1, 2] and out.answer == {"status": "Scheduled"}
        one = exchange(
            tr,
            "csms",
            "ChangeAvailability",
            {"operationalStatus": "Operative", "evse": {"id": 1, "connectorId": 2}},
            {"status": "Accepted"},
        )
        assert one.calls[0].payload["connectorId"] == 2

    def test_transaction_on_shared_evse_reports_connector(self) -> None:
        tr, _ = make(SHARED)
        out = exchange(
            tr, "charger", "StartTransaction", {"connectorId": 2, "idTag": "T", "meterStart": 0, "timestamp": T0}, {}
        )
        assert out.calls[0].payload["evse"] == {"id": 1, "connectorId": 2}


class TestDeviceModel:
    def test_get_variables_mixed(self) -> None:
        tr, _ = make()
        req = {
            "getVariableData": [
                {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeType": "Target",
                },
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}},
                {"component": {"name": "OCPP16"}, "variable": {"name": "VendorKey"}},
                {"component": {"name": "Nope"}, "variable": {"name": "X"}},
                {"component": {"name": "AuthCtrlr"}, "variable": {"name": "Nope"}},
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
                {"component": {"name": "TxCtrlr"}, "variable": {"name": "TxStartPoint"}},
                {"component": {"name": "AuthCtrlr"}, "variable": {"name": "LocalPreAuthorize"}},
            ]
        }
        answer = {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"},
                {"key": "LocalPreAuthorize", "readonly": False, "value": "TRUE"},
            ],
            "unknownKey": ["VendorKey"],
        }
        out = exchange(tr, "csms", "GetVariables", req, answer)
        assert out.calls[0].payload == {
            "key": ["HeartbeatInterval", "ChargingScheduleAllowedChargingRateUnit", "VendorKey", "LocalPreAuthorize"]
        }
        results = out.answer["getVariableResult"]  # type: ignore[index]
        assert [(r["attributeStatus"], r.get("attributeValue")) for r in results] == [
            ("Accepted", "300"),
            ("NotSupportedAttributeType", None),
            ("Accepted", "A,W"),
            ("UnknownVariable", None),
            ("UnknownComponent", None),
            ("UnknownVariable", None),
            ("Rejected", None),
            ("Accepted", "PowerPathClosed"),
            ("Accepted", "true"),
        ]
        assert all(r["component"] == i["component"] for r, i in zip(results, req["getVariableData"], strict=True))
        assert tr.state.config["HeartbeatInterval"]["value"] == "300"

    def test_get_variables_only_local_needs_no_call(self) -> None:
        tr, _ = make()
        req = {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}, "attributeType": "MaxSet"}]}
        out = exchange(tr, "csms", "GetVariables", req)
        assert out.calls == [] and out.answer["getVariableResult"][0]["attributeStatus"] == "NotSupportedAttributeType"  # type: ignore[index]

    def test_set_variables_items_in_order(self) -> None:
        tr, _ = make()
        req = {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "60",
                },
                {"component": {"name": "Nope"}, "variable": {"name": "X"}, "attributeValue": "1"},
                {"component": {"name": "TxCtrlr"}, "variable": {"name": "StopTxOnInvalidId"}, "attributeValue": "TRUE"},
                {
                    "component": {"name": "AlignedDataCtrlr"},
                    "variable": {"name": "Measurands"},
                    "attributeValue": "Energy.Active.Net",
                },
                {"component": {"name": "OCPP16"}, "variable": {"name": "Long"}, "attributeValue": "x" * 600},
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}, "attributeValue": "A"},
                {"component": {"name": "OCPP16"}, "variable": {"name": "Vendor"}, "attributeValue": "v"},
            ]
        }
        answers = [{"status": "Accepted"}, {"status": "RebootRequired"}, ("InternalError", "")]
        out = exchange(tr, "csms", "SetVariables", req, answers)
        assert [(c.payload["key"], c.payload["value"]) for c in out.calls] == [
            ("HeartbeatInterval", "60"),
            ("StopTransactionOnInvalidId", "true"),
            ("Vendor", "v"),
        ]
        results = out.answer["setVariableResult"]  # type: ignore[index]
        assert [(r["attributeStatus"], r.get("attributeStatusInfo", {}).get("reasonCode")) for r in results] == [
            ("Accepted", None),
            ("UnknownComponent", None),
            ("RebootRequired", None),
            ("Rejected", "InvalidValue"),
            ("Rejected", "ValueTooLong"),
            ("Rejected", "ReadOnly"),
            ("Rejected", "ChargerError"),
        ]
        assert tr.state.config["HeartbeatInterval"]["value"] == "60"

    def test_phase_rotation_read_and_write(self) -> None:
        tr, _ = make()
        get = {
            "getVariableData": [
                {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "PhaseRotation"}}
            ]
        }
        answer = {
            "configurationKey": [{"key": "ConnectorPhaseRotation", "readonly": False, "value": "0.RST,1.RST,2.RTS"}]
        }
        out = exchange(tr, "csms", "GetVariables", get, answer)
        assert out.answer["getVariableResult"][0]["attributeValue"] == "RTS"  # type: ignore[index]
        put = {
            "setVariableData": [
                {
                    "component": {"name": "EVSE", "evse": {"id": 1}},
                    "variable": {"name": "PhaseRotation"},
                    "attributeValue": "TSR",
                }
            ]
        }
        written = exchange(tr, "csms", "SetVariables", put, {"status": "Accepted"})
        assert written.calls[0].payload == {"key": "ConnectorPhaseRotation", "value": "0.RST,1.TSR,2.RTS"}

    def test_base_report_in_chunks_without_authorization_key(self) -> None:
        tr, _ = make(Options(report_items_per_message=100))
        keys = [{"key": f"Vendor{i}", "readonly": i % 2 == 0, "value": str(i)} for i in range(249)]
        keys.append({"key": "AuthorizationKey", "readonly": False, "value": "secret"})
        out = exchange(
            tr,
            "csms",
            "GetBaseReport",
            {"requestId": 5, "reportBase": "ConfigurationInventory"},
            {"configurationKey": keys},
        )
        assert out.calls[0].payload == {} and out.answer == {"status": "Accepted"}
        reports = out.plan.then_to_csms
        assert [(r.payload["seqNo"], r.payload["tbc"]) for r in reports] == [(0, True), (1, True), (2, False)]
        assert all(r.payload["requestId"] == 5 for r in reports)
        last = reports[-1].payload["reportData"][-1]
        assert last["variable"] == {"name": "BasicAuthPassword"} and "value" not in last["variableAttribute"][0]
        assert last["variableAttribute"][0]["mutability"] == "WriteOnly"
        assert "secret" not in str([r.payload for r in reports])

    def test_base_report_charger_error_is_rejected(self) -> None:
        tr, _ = make()
        out = exchange(
            tr, "csms", "GetBaseReport", {"requestId": 1, "reportBase": "FullInventory"}, ("GenericError", "")
        )
        assert out.answer is not None and out.answer["status"] == "Rejected" and out.plan.then_to_csms == []

    def test_summary_inventory_from_state(self) -> None:
        tr, _ = make()
        exchange(
            tr,
            "charger",
            "StatusNotification",
            {"connectorId": 1, "errorCode": "GroundFailure", "status": "Faulted"},
            [{}, {}],
        )
        out = exchange(tr, "csms", "GetBaseReport", {"requestId": 2, "reportBase": "SummaryInventory"})
        assert out.answer == {"status": "Accepted"} and out.calls == []
        data = out.plan.then_to_csms[0].payload["reportData"]
        assert {(d["component"]["name"], d["variable"]["name"]) for d in data} >= {
            ("ChargingStation", "AvailabilityState"),
            ("EVSE", "AvailabilityState"),
            ("Connector", "Problem"),
        }

    def test_get_report_filters(self) -> None:
        tr, _ = make()
        req = {"requestId": 3, "componentVariable": [{"component": {"name": "OCPPCommCtrlr"}}]}
        answer = {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "1"},
                {"key": "CpoName", "readonly": False, "value": "X"},
            ]
        }
        out = exchange(tr, "csms", "GetReport", req, answer)
        data = out.plan.then_to_csms[0].payload["reportData"]
        assert [d["variable"]["name"] for d in data] == ["HeartbeatInterval"]
        empty = exchange(
            tr, "csms", "GetReport", {"requestId": 4, "componentVariable": [{"component": {"name": "Nope"}}]}
        )
        assert empty.answer == {"status": "EmptyResultSet"}


class TestCommands:
    @pytest.mark.parametrize(
        ("requested", "action", "message"),
        [
            ("BootNotification", "TriggerMessage", "BootNotification"),
            ("Heartbeat", "TriggerMessage", "Heartbeat"),
            ("LogStatusNotification", "TriggerMessage", "DiagnosticsStatusNotification"),
            ("FirmwareStatusNotification", "TriggerMessage", "FirmwareStatusNotification"),
        ],
    )
    def test_trigger_message(self, requested: str, action: str, message: str) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "TriggerMessage", {"requestedMessage": requested}, {"status": "Accepted"})
        assert (out.calls[0].action, out.calls[0].payload) == (action, {"requestedMessage": message})

    def test_trigger_with_extension(self) -> None:
        tr, _ = make(EXT)
        out = exchange(
            tr, "csms", "TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"}, {"status": "Rejected"}
        )
        assert out.calls[0] == OutCall("ExtendedTriggerMessage", {"requestedMessage": "SignChargePointCertificate"})
        assert out.answer == {"status": "Rejected"} and tr.state.trigger is None

    def test_trigger_without_1_6_form(self) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "TriggerMessage", {"requestedMessage": "SignV2GCertificate"})
        assert out.answer is not None and out.answer["status"] == "NotImplemented"

    def test_trigger_transaction_event(self) -> None:
        tr, _ = make()
        none = exchange(tr, "csms", "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}})
        assert none.answer is not None and none.answer["status"] == "Rejected"
        tx = start(tr)
        out = exchange(
            tr,
            "csms",
            "TriggerMessage",
            {"requestedMessage": "TransactionEvent", "evse": {"id": 1}},
            {"status": "Accepted"},
        )
        assert out.calls[0].payload == {"requestedMessage": "MeterValues", "connectorId": 1}
        mv = {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "5", "context": "Trigger"}]}],
        }
        event = exchange(tr, "charger", "MeterValues", mv, {}).calls[0].payload
        assert event["triggerReason"] == "Trigger"

    def test_triggered_status_is_always_sent(self) -> None:
        tr, _ = make()
        exchange(
            tr, "charger", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}, {}
        )
        exchange(
            tr,
            "csms",
            "TriggerMessage",
            {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
            {"status": "Accepted"},
        )
        out = exchange(
            tr, "charger", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging"}, {}
        )
        assert out.actions == ["StatusNotification"]

    @staticmethod
    def charging(tr: Any, connector: int) -> list[str]:
        payload = {"connectorId": connector, "errorCode": "NoError", "status": "Charging"}
        return exchange(tr, "charger", "StatusNotification", payload, {}).actions

    def test_a_status_triggered_for_one_evse_is_not_used_up_by_another_connectors_status(self) -> None:
        tr, _ = make()
        self.charging(tr, 1), self.charging(tr, 2)
        request = {"requestedMessage": "StatusNotification", "evse": {"id": 2}}
        exchange(tr, "csms", "TriggerMessage", request, {"status": "Accepted"})
        assert self.charging(tr, 1) == []  # Occupied stays Occupied: not sent, and not the one asked for
        assert self.charging(tr, 2) == ["StatusNotification"]
        assert self.charging(tr, 2) == []

    def test_a_status_triggered_for_the_station_lets_each_connectors_next_status_through(self) -> None:
        tr, _ = make()
        self.charging(tr, 1), self.charging(tr, 2)
        exchange(tr, "csms", "TriggerMessage", {"requestedMessage": "StatusNotification"}, {"status": "Accepted"})
        assert self.charging(tr, 1) == ["StatusNotification"]
        assert self.charging(tr, 2) == ["StatusNotification"]
        assert self.charging(tr, 1) == []

    def test_unlock(self) -> None:
        tr, _ = make()
        assert exchange(tr, "csms", "UnlockConnector", {"evseId": 1, "connectorId": 2}).answer == {
            "status": "UnknownConnector"
        }
        out = exchange(tr, "csms", "UnlockConnector", {"evseId": 1, "connectorId": 1}, {"status": "NotSupported"})
        assert out.calls[0].payload == {"connectorId": 1}
        assert out.answer == {"status": "UnlockFailed", "statusInfo": {"reasonCode": "NotSupported"}}
        start(tr)
        busy = exchange(tr, "csms", "UnlockConnector", {"evseId": 1, "connectorId": 1})
        assert busy.calls == [] and busy.answer == {"status": "OngoingAuthorizedTransaction"}

    def test_cache_and_local_list(self) -> None:
        tr, _ = make()
        assert exchange(tr, "csms", "ClearCache", {}, {"status": "Rejected"}).answer == {"status": "Rejected"}
        assert exchange(tr, "csms", "GetLocalListVersion", {}, {"listVersion": 7}).answer == {"versionNumber": 7}
        req = {
            "versionNumber": 8,
            "updateType": "Differential",
            "localAuthorizationList": [
                {
                    "idToken": {"idToken": "A", "type": "KeyCode"},
                    "idTokenInfo": {"status": "NoCredit", "groupIdToken": {"idToken": "G", "type": "Central"}},
                },
                {"idToken": {"idToken": "B", "type": "ISO14443"}},
            ],
        }
        out = exchange(tr, "csms", "SendLocalList", req, {"status": "NotSupported"})
        assert out.calls[0].payload == {
            "listVersion": 8,
            "updateType": "Differential",
            "localAuthorizationList": [
                {"idTag": "A", "idTagInfo": {"status": "Invalid", "parentIdTag": "G"}},
                {"idTag": "B"},
            ],
        }
        assert out.answer == {"status": "Failed", "statusInfo": {"reasonCode": "NotSupported"}}
        assert tr.state.id_types["A"] == "KeyCode"
        long = {
            "versionNumber": 9,
            "updateType": "Full",
            "localAuthorizationList": [{"idToken": {"idToken": "L" * 21, "type": "Central"}}],
        }
        assert exchange(tr, "csms", "SendLocalList", long).answer == {
            "status": "Failed",
            "statusInfo": {"reasonCode": "IdTokenTooLong"},
        }

    def test_reservations(self) -> None:
        tr, _ = make()
        req = {
            "id": 3,
            "expiryDateTime": T0,
            "idToken": {"idToken": "A", "type": "Central"},
            "groupIdToken": {"idToken": "G", "type": "Central"},
        }
        out = exchange(tr, "csms", "ReserveNow", req, {"status": "Occupied"})
        assert out.calls[0].payload == {
            "connectorId": 0,
            "expiryDate": T0,
            "idTag": "A",
            "reservationId": 3,
            "parentIdTag": "G",
        }
        assert out.answer == {"status": "Occupied"}
        out = exchange(tr, "csms", "ReserveNow", {**req, "evseId": 2}, {"status": "Accepted"})
        assert out.calls[0].payload["connectorId"] == 2
        assert exchange(tr, "csms", "CancelReservation", {"reservationId": 3}, {"status": "Accepted"}).answer == {
            "status": "Accepted"
        }

    def test_data_transfer_from_csms(self) -> None:
        tr, _ = make()
        out = exchange(
            tr, "csms", "DataTransfer", {"vendorId": "V", "data": {"k": [1, 2]}}, {"status": "Accepted", "data": "ok"}
        )
        assert out.calls[0].payload == {"vendorId": "V", "data": '{"k":[1,2]}'} and out.answer == {
            "status": "Accepted",
            "data": "ok",
        }
        reserved = exchange(tr, "csms", "DataTransfer", {"vendorId": "org.openchargealliance.ocpp16"})
        assert reserved.answer == {"status": "UnknownVendorId"}

    def test_get_transaction_status(self) -> None:
        tr, _ = make()
        tx = start(tr)
        assert exchange(tr, "csms", "GetTransactionStatus", {"transactionId": "tx-1"}).answer == {
            "messagesInQueue": False,
            "ongoingIndicator": True,
        }
        tr.from_charger("StopTransaction", {"transactionId": tx, "meterStop": 1, "timestamp": T0})
        assert exchange(tr, "csms", "GetTransactionStatus", {"transactionId": "tx-1"}).answer == {
            "messagesInQueue": True,
            "ongoingIndicator": False,
        }
        assert exchange(tr, "csms", "GetTransactionStatus", {}).answer == {"messagesInQueue": True}
        assert exchange(tr, "csms", "GetTransactionStatus", {"transactionId": "zzz"}).answer == {
            "messagesInQueue": False
        }


class TestSmartCharging:
    def test_set_charging_profile(self) -> None:
        tr, _ = make()
        out = exchange(
            tr,
            "csms",
            "SetChargingProfile",
            {"evseId": 0, "chargingProfile": profile(chargingProfilePurpose="ChargingStationMaxProfile")},
            {"status": "Accepted"},
        )
        sent = out.calls[0].payload
        assert (
            sent["connectorId"] == 0 and sent["csChargingProfiles"]["chargingProfilePurpose"] == "ChargePointMaxProfile"
        )
        assert sent["csChargingProfiles"]["chargingSchedule"]["minChargingRate"] == 6
        assert out.answer == {"status": "Accepted"} and tr.state.schedule_ids[9] == 4

    def test_tx_profile_uses_the_int_transaction_id(self) -> None:
        tr, _ = make()
        tx = start(tr)
        out = exchange(
            tr,
            "csms",
            "SetChargingProfile",
            {"evseId": 1, "chargingProfile": profile(chargingProfilePurpose="TxProfile", transactionId="tx-1")},
            {"status": "NotSupported"},
        )
        assert out.calls[0].payload["csChargingProfiles"]["transactionId"] == tx
        assert out.answer == {"status": "Rejected", "statusInfo": {"reasonCode": "NotSupported"}}

    @pytest.mark.parametrize(
        "bad",
        [
            profile(chargingProfilePurpose="TxProfile", transactionId="unknown"),
            profile(chargingSchedule=[profile()["chargingSchedule"][0], {**profile()["chargingSchedule"][0], "id": 5}]),
            profile(
                chargingSchedule=[
                    {
                        "id": 1,
                        "chargingRateUnit": "W",
                        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1, "phaseToUse": 1}],
                    }
                ]
            ),
            profile(chargingProfilePurpose="ChargingStationExternalConstraints"),
        ],
    )
    def test_unmappable_profiles_are_rejected(self, bad: dict[str, Any]) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "SetChargingProfile", {"evseId": 1, "chargingProfile": bad})
        assert (
            out.calls == []
            and out.answer is not None
            and out.answer["statusInfo"]["reasonCode"] == "ProfileNotMappable"
        )

    def test_clear_charging_profile(self) -> None:
        tr, _ = make(SHARED)
        req = {
            "chargingProfileId": 9,
            "chargingProfileCriteria": {
                "evseId": 1,
                "chargingProfilePurpose": "ChargingStationMaxProfile",
                "stackLevel": 2,
            },
        }
        out = exchange(tr, "csms", "ClearChargingProfile", req, [{"status": "Unknown"}, {"status": "Accepted"}])
        assert out.calls[0].payload == {
            "id": 9,
            "chargingProfilePurpose": "ChargePointMaxProfile",
            "stackLevel": 2,
            "connectorId": 1,
        }
        assert out.answer == {"status": "Accepted"}

    def test_composite_schedule(self) -> None:
        tr, _ = make()
        answer = {
            "status": "Accepted",
            "connectorId": 1,
            "scheduleStart": T0,
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.5}],
                "minChargingRate": 1.5,
            },
        }
        out = exchange(
            tr, "csms", "GetCompositeSchedule", {"duration": 600, "evseId": 1, "chargingRateUnit": "W"}, answer
        )
        assert out.calls[0].payload == {"connectorId": 1, "duration": 600, "chargingRateUnit": "W"}
        assert out.answer == {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 600,
                "scheduleStart": T0,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400.5}],
            },
        }


class TestFirmwareLogsCertificates:
    FW: ClassVar[dict[str, str]] = {
        "location": "https://fw.example.com/f.bin",
        "retrieveDateTime": T0,
        "signingCertificate": "CERT",
        "signature": "SIG",
    }

    def test_signed_firmware_with_extension(self) -> None:
        tr, _ = make(EXT)
        out = exchange(
            tr,
            "csms",
            "UpdateFirmware",
            {"requestId": 1, "firmware": self.FW, "retries": 2},
            {"status": "InvalidCertificate"},
        )
        assert out.calls[0].action == "SignedUpdateFirmware" and out.answer == {"status": "InvalidCertificate"}

    def test_signed_firmware_without_extension(self) -> None:
        tr, _ = make()
        out = exchange(tr, "csms", "UpdateFirmware", {"requestId": 1, "firmware": self.FW})
        assert out.answer == {"status": "Rejected", "statusInfo": {"reasonCode": "SignatureNotIn16"}}
        tr2, _ = make(Options(allow_unsigned_firmware=True))
        ok = exchange(tr2, "csms", "UpdateFirmware", {"requestId": 1, "firmware": self.FW}, {})
        assert ok.calls[0].payload == {"location": self.FW["location"], "retrieveDate": T0}

    def test_get_log_variants(self) -> None:
        tr, _ = make()
        sec = {"logType": "SecurityLog", "requestId": 1, "log": {"remoteLocation": "ftp://x.example.com/"}}
        assert exchange(tr, "csms", "GetLog", sec).answer == {
            "status": "Rejected",
            "statusInfo": {"reasonCode": "NotIn16"},
        }
        ext, _ = make(EXT)
        out = exchange(ext, "csms", "GetLog", {**sec, "retries": 1}, {"status": "Accepted", "filename": "s.log"})
        assert out.calls[0].action == "GetLog" and out.answer == {"status": "Accepted", "filename": "s.log"}
        diag = {
            "logType": "DiagnosticsLog",
            "requestId": 2,
            "log": {"remoteLocation": "ftp://x.example.com/", "oldestTimestamp": T0},
        }
        plain = exchange(tr, "csms", "GetLog", diag, {})
        assert plain.calls[0].payload == {"location": "ftp://x.example.com/", "startTime": T0} and plain.answer == {
            "status": "Accepted"
        }

    def test_certificates_need_extension(self) -> None:
        tr, _ = make()
        out = exchange(
            tr, "csms", "InstallCertificate", {"certificateType": "CSMSRootCertificate", "certificate": "PEM"}
        )
        assert out.error is not None and out.error[0] == "NotSupported"

    def test_certificates_with_extension(self) -> None:
        tr, _ = make(EXT)
        inst = exchange(
            tr,
            "csms",
            "InstallCertificate",
            {"certificateType": "CSMSRootCertificate", "certificate": "PEM"},
            {"status": "Failed"},
        )
        assert inst.calls[0].payload == {"certificateType": "CentralSystemRootCertificate", "certificate": "PEM"}
        assert (
            exchange(
                tr, "csms", "InstallCertificate", {"certificateType": "V2GRootCertificate", "certificate": "P"}
            ).answer["status"]
            == "Rejected"
        )  # type: ignore[index]
        signed = exchange(
            tr,
            "csms",
            "CertificateSigned",
            {"certificateChain": "CHAIN", "certificateType": "ChargingStationCertificate"},
            {"status": "Accepted"},
        )
        assert signed.calls[0].payload == {"certificateChain": "CHAIN"}
        hash_data = {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c"}
        assert exchange(
            tr, "csms", "DeleteCertificate", {"certificateHashData": hash_data}, {"status": "NotFound"}
        ).answer == {"status": "NotFound"}
        ids = exchange(
            tr,
            "csms",
            "GetInstalledCertificateIds",
            {},
            [{"status": "Accepted", "certificateHashData": [hash_data]}, {"status": "NotFound"}],
        )
        assert [c.payload["certificateType"] for c in ids.calls] == [
            "CentralSystemRootCertificate",
            "ManufacturerRootCertificate",
        ]
        assert ids.answer == {
            "status": "Accepted",
            "certificateHashDataChain": [{"certificateType": "CSMSRootCertificate", "certificateHashData": hash_data}],
        }


UNTRANSLATABLE = {
    "SetNetworkProfile": {
        "configurationSlot": 1,
        "connectionData": {
            "ocppVersion": "OCPP20",
            "ocppTransport": "JSON",
            "ocppCsmsUrl": "wss://x",
            "messageTimeout": 30,
            "securityProfile": 1,
            "ocppInterface": "Wired0",
        },
    },
    "SetDisplayMessage": {
        "message": {"id": 1, "priority": "NormalCycle", "message": {"format": "UTF8", "content": "hi"}}
    },
    "GetDisplayMessages": {"requestId": 1},
    "ClearDisplayMessage": {"id": 1},
    "CostUpdated": {"totalCost": 1.5, "transactionId": "abc"},
    "CustomerInformation": {"requestId": 1, "report": True, "clear": False},
    "GetChargingProfiles": {"requestId": 1, "chargingProfile": {}},
    "SetMonitoringBase": {"monitoringBase": "All"},
    "GetMonitoringReport": {"requestId": 1},
    "SetMonitoringLevel": {"severity": 5},
    "SetVariableMonitoring": {
        "setMonitoringData": [
            {"value": 1, "type": "Delta", "severity": 5, "component": {"name": "X"}, "variable": {"name": "Y"}}
        ]
    },
    "ClearVariableMonitoring": {"id": [1, 2]},
    "PublishFirmware": {"location": "https://x", "checksum": "abc", "requestId": 1},
    "UnpublishFirmware": {"checksum": "abc"},
}


@pytest.mark.parametrize("action", sorted(UNTRANSLATABLE_HANDLERS))
def test_untranslatable_csms_message_is_answered_in_band(action: str) -> None:
    tr, _ = make()
    out = exchange(tr, "csms", action, UNTRANSLATABLE[action])
    assert out.calls == [] and out.answer is not None and out.plan.reason
