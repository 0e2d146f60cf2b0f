"""Set-up B translator, CSMS-initiated side (ocpp-translation.md §4.4): 1.6 CSMS -> 2.0.1 charger.

Every input is checked against its 1.6 schema, every translated CALL and every charger answer against the 2.0.1
schemas, and every answer to the CSMS against its 1.6 response schema by ``exchange``; the state snapshot is checked
to round-trip after each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import pytest

from gateway.translate.base import JsonDict, OutCall
from gateway.translate.v16_to_v201 import V16_CENTRAL_ACTIONS
from gateway.translate.v201_to_v16 import POLICY, Options, V201ChargerToV16Csms
from gateway.translate.v201_v16.context import id_alias
from gateway.translate.v201_v16.csms_calls import CSMS_HANDLERS, CSMS_POLICY
from gateway.translate.v201_v16.state import ReverseState, TxB
from gateway.translate.v201_v16.variables import ENTRIES, READONLY_16
from tests.unit.translate_harness import Clock, exchange

T0 = "2025-03-01T12:00:00.000Z"
SHARED = Options(connector_map={1: (1, 1), 2: (1, 2), 3: (2, 1)})
LONG_TOKEN = "04A2B3C4D5E6F708090A0B0C0D0E0F1011"  # 34 characters: does not fit a 1.6 idTag


def make(options: Options | None = None) -> V201ChargerToV16Csms:
    clock = Clock()
    return V201ChargerToV16Csms(options, now=clock, session_started_at=clock())


def with_tx(tr: V201ChargerToV16Csms, tx201: str = "TX-A", tx_int: int | None = 42, evse: int = 1) -> TxB:
    rec = TxB(tx201=tx201, evse=evse, connector=evse, tx_int=tx_int, start_state="acked" if tx_int else "sent")
    tr.state.transactions[tx201] = rec
    return rec


def alias_for(tr: V201ChargerToV16Csms, token: str = LONG_TOKEN, kind: str = "ISO15693") -> str:
    alias = id_alias(token, kind)
    tr.state.aliases[alias] = token
    tr.state.id_types[alias] = kind
    return alias


def profile16(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "chargingProfileId": 7,
        "stackLevel": 2,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": {
            "chargingRateUnit": "A",
            "startSchedule": T0,
            "duration": 3600,
            "chargingSchedulePeriod": [
                {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                {"startPeriod": 60, "limit": 8},
            ],
            "minChargingRate": 6.0,
        },
    }
    base.update(overrides)
    return base


def device(values: Mapping[tuple[str, str], str]) -> Any:
    """A 2.0.1 charger's GetVariables: ``values`` by (component name, variable name); OCPP16 -> UnknownComponent."""

    def answer(call: OutCall) -> JsonDict:
        results = []
        for item in call.payload["getVariableData"]:
            name, var = item["component"]["name"], item["variable"]["name"]
            result: JsonDict = {"component": item["component"], "variable": item["variable"]}
            if (name, var) in values:
                result.update(attributeStatus="Accepted", attributeValue=values[(name, var)])
            else:
                result["attributeStatus"] = "UnknownComponent" if name == "OCPP16" else "UnknownVariable"
            results.append(result)
        return {"getVariableResult": results}

    return answer


# -- dispatch and policy ---------------------------------------------------------------------------------------


def test_every_policy_line_has_a_handler_and_back() -> None:
    assert set(CSMS_POLICY) == set(CSMS_HANDLERS)
    assert all(line.startswith(("translate: ", "translate both ways: ")) for line in CSMS_POLICY.values())
    assert all(POLICY[action] == line for action, line in CSMS_POLICY.items())


def test_every_1_6_csms_action_has_a_handler() -> None:
    assert V16_CENTRAL_ACTIONS | {"DataTransfer"} <= set(CSMS_HANDLERS)


def test_charger_action_from_the_csms_is_refused() -> None:
    tr = make()
    assert tr.from_csms("StartTransaction", {}).error == ("NotSupported", "StartTransaction is sent by a charge point")
    assert tr.from_csms("Nope", {}).error is not None


# -- remote start / stop ---------------------------------------------------------------------------------------


class TestRemoteStart:
    def test_ids_count_up_and_pending_starts_are_kept(self) -> None:
        tr = make(Options(remote_start_ttl_s=60))
        first = exchange(
            tr, "csms", "RemoteStartTransaction", {"idTag": "TAG1", "connectorId": 2}, {"status": "Accepted"}
        )
        assert first.calls[0].action == "RequestStartTransaction"
        assert first.calls[0].payload == {
            "remoteStartId": 1,
            "idToken": {"idToken": "TAG1", "type": "ISO14443"},
            "evseId": 2,
        }
        assert first.answer == {"status": "Accepted"}
        second = exchange(
            tr,
            "csms",
            "RemoteStartTransaction",
            {"idTag": "TAG2"},
            {"status": "Accepted", "transactionId": "TX-9"},
        )
        assert second.calls[0].payload == {"remoteStartId": 2, "idToken": {"idToken": "TAG2", "type": "ISO14443"}}
        pending = [(p.remote_start_id, p.id_tag, p.evse, p.expires_at, p.tx201) for p in tr.state.pending_starts]
        assert pending == [
            (1, "TAG1", 2, "2025-03-01T12:01:00.000Z", None),
            (2, "TAG2", None, "2025-03-01T12:01:00.000Z", "TX-9"),
        ]
        restored = make()
        restored.restore(tr.snapshot())
        third = exchange(restored, "csms", "RemoteStartTransaction", {"idTag": "TAG3"}, {"status": "Accepted"})
        assert third.calls[0].payload["remoteStartId"] == 3
        assert [p.remote_start_id for p in restored.state.pending_starts] == [1, 2, 3]

    def test_connector_zero_means_any_evse(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": "T", "connectorId": 0}, {"status": "Accepted"})
        assert "evseId" not in out.calls[0].payload and tr.state.pending_starts[0].evse is None

    def test_rejected_or_error_forgets_the_pending_start(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": "T"}, {"status": "Rejected"})
        assert out.answer == {"status": "Rejected"} and tr.state.pending_starts == []
        err = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": "T"}, ("FormatViolation", "bad"))
        assert err.error == ("FormationViolation", "bad") and tr.state.pending_starts == []
        assert tr.state.next_remote_start_id == 3  # ids are never reused

    def test_alias_and_known_type_turn_back_into_the_token(self) -> None:
        tr = make()
        alias = alias_for(tr)
        tr.state.id_types["PIN1"] = "KeyCode"
        out = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": alias}, {"status": "Accepted"})
        assert out.calls[0].payload["idToken"] == {"idToken": LONG_TOKEN, "type": "ISO15693"}
        assert tr.state.pending_starts[0].id_tag == alias
        pin = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": "PIN1"}, {"status": "Accepted"})
        assert pin.calls[0].payload["idToken"] == {"idToken": "PIN1", "type": "KeyCode"}

    def test_profile_is_converted(self) -> None:
        tr = make()
        req = {"idTag": "T", "connectorId": 1, "chargingProfile": profile16(chargingProfilePurpose="TxProfile")}
        out = exchange(tr, "csms", "RemoteStartTransaction", req, {"status": "Accepted"})
        sent = out.calls[0].payload["chargingProfile"]
        assert sent["id"] == 7 and sent["chargingProfilePurpose"] == "TxProfile"
        assert sent["chargingSchedule"] == [
            {
                "id": 7,
                "chargingRateUnit": "A",
                "startSchedule": T0,
                "duration": 3600,
                "minChargingRate": 6.0,
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 16.0, "numberPhases": 3},
                    {"startPeriod": 60, "limit": 8},
                ],
            }
        ]

    def test_profile_that_is_not_a_tx_profile_is_rejected(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "RemoteStartTransaction", {"idTag": "T", "chargingProfile": profile16()})
        assert out.calls == [] and out.answer == {"status": "Rejected"} and out.plan.reason
        assert tr.state.pending_starts == [] and tr.state.next_remote_start_id == 1

    def test_transaction_id_in_a_remote_start_profile_is_dropped(self) -> None:
        tr = make()
        req = {"idTag": "T", "chargingProfile": profile16(chargingProfilePurpose="TxProfile", transactionId=5)}
        out = exchange(tr, "csms", "RemoteStartTransaction", req, {"status": "Accepted"})
        assert "transactionId" not in out.calls[0].payload["chargingProfile"]
        assert ("RemoteStartTransaction", "transactionId") in tr.take_dropped()


class TestRemoteStop:
    def test_known_transaction(self) -> None:
        tr = make()
        with_tx(tr)
        out = exchange(tr, "csms", "RemoteStopTransaction", {"transactionId": 42}, {"status": "Accepted"})
        assert (out.calls[0].action, out.calls[0].payload) == ("RequestStopTransaction", {"transactionId": "TX-A"})
        assert out.answer == {"status": "Accepted"}

    @pytest.mark.parametrize("setup", ["none", "ended", "pending"])
    def test_unknown_ended_or_pending_transaction_is_rejected(self, setup: str) -> None:
        tr = make()
        if setup == "ended":
            with_tx(tr).phase = "ended"
        elif setup == "pending":
            with_tx(tr, tx_int=None)
        out = exchange(tr, "csms", "RemoteStopTransaction", {"transactionId": 42})
        assert out.calls == [] and out.answer == {"status": "Rejected"} and out.plan.reason == "unknown_transaction"


# -- Reset, ChangeAvailability ---------------------------------------------------------------------------------


class TestReset:
    @pytest.mark.parametrize(
        ("kind", "soft_as", "sent"),
        [("Hard", "Immediate", "Immediate"), ("Soft", "Immediate", "Immediate"), ("Soft", "OnIdle", "OnIdle")],
    )
    def test_types_and_record(self, kind: str, soft_as: Any, sent: str) -> None:
        tr = make(Options(soft_reset_as=soft_as))
        out = exchange(tr, "csms", "Reset", {"type": kind}, {"status": "Scheduled"})
        assert out.calls[0].payload == {"type": sent} and out.answer == {"status": "Accepted"}
        assert tr.state.reset == {"type": kind, "sentAs": sent, "at": T0}

    def test_rejected_or_error_puts_back_the_previous_record(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "Reset", {"type": "Soft"}, {"status": "Rejected"})
        assert out.answer == {"status": "Rejected"} and tr.state.reset is None
        exchange(tr, "csms", "Reset", {"type": "Hard"}, {"status": "Accepted"})
        err = exchange(tr, "csms", "Reset", {"type": "Soft"}, ("InternalError", "x"))
        assert err.error == ("InternalError", "x") and tr.state.reset is not None
        assert tr.state.reset["type"] == "Hard"


class TestChangeAvailability:
    def test_station_and_connector(self) -> None:
        tr = make()
        whole = exchange(
            tr, "csms", "ChangeAvailability", {"connectorId": 0, "type": "Inoperative"}, {"status": "Scheduled"}
        )
        assert whole.calls[0].payload == {"operationalStatus": "Inoperative"} and whole.answer == {
            "status": "Scheduled"
        }
        one = exchange(
            tr, "csms", "ChangeAvailability", {"connectorId": 2, "type": "Operative"}, {"status": "Accepted"}
        )
        assert one.calls[0].payload == {"operationalStatus": "Operative", "evse": {"id": 2}}

    def test_shared_evse_names_the_connector(self) -> None:
        tr = make(SHARED)
        out = exchange(
            tr, "csms", "ChangeAvailability", {"connectorId": 2, "type": "Operative"}, {"status": "Rejected"}
        )
        assert out.calls[0].payload["evse"] == {"id": 1, "connectorId": 2} and out.answer == {"status": "Rejected"}
        alone = exchange(
            tr, "csms", "ChangeAvailability", {"connectorId": 3, "type": "Operative"}, {"status": "Accepted"}
        )
        assert alone.calls[0].payload["evse"] == {"id": 2}


# -- configuration ---------------------------------------------------------------------------------------------


class TestGetConfiguration:
    def test_keys_known_unknown_escape_hatch_and_conversion(self) -> None:
        tr = make()
        values = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): "300",
            ("AuthCtrlr", "LocalPreAuthorize"): "TRUE",
            ("SmartChargingCtrlr", "RateUnit"): "A,W",
            ("SampledDataCtrlr", "TxUpdatedMeasurands"): "Energy.Active.Import.Register,Energy.Active.Net,Voltage",
            ("OCPPCommCtrlr", "MessageAttempts"): "3",
        }
        keys = [
            "HeartbeatInterval",
            "LocalPreAuthorize",
            "ChargingScheduleAllowedChargingRateUnit",
            "MeterValuesSampledData",
            "TransactionMessageAttempts",
            "VendorSpecificKey",
            "ResetRetries",
            "HeartbeatInterval",
        ]
        out = exchange(tr, "csms", "GetConfiguration", {"key": keys}, device(values))
        asked = [i for c in out.calls for i in c.payload["getVariableData"]]
        assert asked[4] == {
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
        }
        assert asked[5] == {"component": {"name": "OCPP16"}, "variable": {"name": "VendorSpecificKey"}}
        assert len(asked) == 7  # the repeated key is asked once
        assert out.answer == {
            "configurationKey": [
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
                {"key": "LocalPreAuthorize", "readonly": False, "value": "true"},
                {"key": "ChargingScheduleAllowedChargingRateUnit", "readonly": True, "value": "Current,Power"},
                {"key": "MeterValuesSampledData", "readonly": False, "value": "Energy.Active.Import.Register,Voltage"},
                {"key": "TransactionMessageAttempts", "readonly": False, "value": "3"},
            ],
            "unknownKey": ["VendorSpecificKey", "ResetRetries"],
        }
        assert ("GetConfiguration", "measurand_not_in_16") in tr.take_dropped()
        assert tr.state.variables["HeartbeatInterval"] == {"value": "300", "readonly": False}

    def test_escape_hatch_value_comes_back(self) -> None:
        tr = make()
        out = exchange(
            tr, "csms", "GetConfiguration", {"key": ["LightIntensity"]}, device({("OCPP16", "LightIntensity"): "80"})
        )
        assert out.answer == {"configurationKey": [{"key": "LightIntensity", "readonly": False, "value": "80"}]}

    def test_chunks_follow_variables_per_message(self) -> None:
        tr = make(Options(variables_per_message=2))
        keys = ["HeartbeatInterval", "ResetRetries", "ConnectionTimeOut", "CpoName", "WebSocketPingInterval"]
        values = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): "1",
            ("OCPPCommCtrlr", "ResetRetries"): "2",
            ("TxCtrlr", "EVConnectionTimeOut"): "3",
            ("SecurityCtrlr", "OrganizationName"): "CPO",
            ("OCPPCommCtrlr", "WebSocketPingInterval"): "5",
        }
        out = exchange(tr, "csms", "GetConfiguration", {"key": keys}, device(values))
        assert out.actions == ["GetVariables"] * 3
        assert [len(c.payload["getVariableData"]) for c in out.calls] == [2, 2, 1]
        assert [(k["key"], k["value"]) for k in out.answer["configurationKey"]] == [  # type: ignore[index]
            ("HeartbeatInterval", "1"),
            ("ResetRetries", "2"),
            ("ConnectionTimeOut", "3"),
            ("CpoName", "CPO"),
            ("WebSocketPingInterval", "5"),
        ]

    def test_the_chargers_own_limit_lowers_the_chunk_size(self) -> None:
        tr = make(Options(variables_per_message=20))
        limit = {("DeviceDataCtrlr", "ItemsPerMessage"): "2"}
        first = exchange(tr, "csms", "GetConfiguration", {"key": ["GetConfigurationMaxKeys"]}, device(limit))
        assert first.answer == {
            "configurationKey": [{"key": "GetConfigurationMaxKeys", "readonly": True, "value": "2"}]
        }
        keys = ["HeartbeatInterval", "ResetRetries", "ConnectionTimeOut"]
        out = exchange(tr, "csms", "GetConfiguration", {"key": keys}, device({}))
        assert [len(c.payload["getVariableData"]) for c in out.calls] == [2, 1]
        assert out.answer == {"unknownKey": keys}

    def test_value_over_500_characters_is_left_out_and_counted(self) -> None:
        tr = make()
        values = {("OCPP16", "VendorBlob"): "x" * 501}
        out = exchange(tr, "csms", "GetConfiguration", {"key": ["VendorBlob"]}, device(values))
        assert out.answer == {"configurationKey": [{"key": "VendorBlob", "readonly": False}]}
        assert tr.take_dropped() == [("GetConfiguration", "value_too_long")]

    def test_authorization_key_is_never_read(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "GetConfiguration", {"key": ["AuthorizationKey"]})
        assert out.calls == [] and out.plan.reason
        assert out.answer == {"configurationKey": [{"key": "AuthorizationKey", "readonly": False}]}
        assert "AuthorizationKey" not in tr.state.variables

    def test_without_keys_reads_the_table(self) -> None:
        tr = make(Options(connector_map={1: (1, 1), 2: (1, 2), 3: (2, 1)}, variables_per_message=10))
        values = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): "60",
            ("AuthCacheCtrlr", "Enabled"): "False",
            ("ChargingStation", "PhaseRotation"): "RST",
            ("EVSE", "PhaseRotation"): "RTS",
            ("SmartChargingCtrlr", "Available"): "true",
            ("ReservationCtrlr", "Available"): "false",
            ("SecurityCtrlr", "BasicAuthPassword"): "must-never-be-asked",
        }
        out = exchange(tr, "csms", "GetConfiguration", {}, device(values))
        asked = [i for c in out.calls for i in c.payload["getVariableData"]]
        assert all(len(c.payload["getVariableData"]) <= 10 for c in out.calls) and len(out.calls) > 1
        assert {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}} not in asked
        assert {"component": {"name": "EVSE", "evse": {"id": 2}}, "variable": {"name": "PhaseRotation"}} in asked
        assert out.answer is not None and "unknownKey" not in out.answer
        got = {k["key"]: (k.get("value"), k["readonly"]) for k in out.answer["configurationKey"]}
        assert got == {
            "HeartbeatInterval": ("60", False),
            "AuthorizationCacheEnabled": ("false", False),
            "ConnectorPhaseRotation": ("0.RST,1.RTS,2.RTS,3.RTS", False),
            "NumberOfConnectors": ("3", True),
            "SupportedFeatureProfiles": ("Core,FirmwareManagement,SmartCharging,RemoteTrigger", True),
        }

    def test_number_of_connectors_from_statuses_or_unknown(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "GetConfiguration", {"key": ["NumberOfConnectors"]})
        assert out.calls == [] and out.answer == {"unknownKey": ["NumberOfConnectors"]}
        tr.state.connector_status = {"1.1": {"status": "Available"}, "2.1": {"status": "Occupied"}, "2.2": {}}
        out = exchange(tr, "csms", "GetConfiguration", {"key": ["NumberOfConnectors"]})
        assert out.answer == {"configurationKey": [{"key": "NumberOfConnectors", "readonly": True, "value": "2"}]}

    def test_charger_error_is_mapped(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "GetConfiguration", {"key": ["HeartbeatInterval"]}, ("RpcFrameworkError", "no"))
        assert out.error == ("ProtocolError", "no")


class TestChangeConfiguration:
    @pytest.mark.parametrize(
        ("charger", "csms"),
        [
            ("Accepted", "Accepted"),
            ("Rejected", "Rejected"),
            ("RebootRequired", "RebootRequired"),
            ("UnknownComponent", "NotSupported"),
            ("UnknownVariable", "NotSupported"),
            ("NotSupportedAttributeType", "NotSupported"),
        ],
    )
    def test_statuses(self, charger: str, csms: str) -> None:
        tr = make()
        item = {"component": {"name": "AuthCtrlr"}, "variable": {"name": "LocalPreAuthorize"}}
        out = exchange(
            tr,
            "csms",
            "ChangeConfiguration",
            {"key": "LocalPreAuthorize", "value": "TRUE"},
            {"setVariableResult": [{**item, "attributeStatus": charger}]},
        )
        assert out.calls[0].payload == {"setVariableData": [{"attributeValue": "true", **item}]}
        assert out.answer == {"status": csms}
        cached = tr.state.variables.get("LocalPreAuthorize")
        assert (cached is not None) == (csms in ("Accepted", "RebootRequired"))

    @pytest.mark.parametrize("key", ["NumberOfConnectors", "ChargeProfileMaxStackLevel", "SupportedFeatureProfiles"])
    def test_read_only_keys_are_rejected_without_asking(self, key: str) -> None:
        tr = make()
        out = exchange(tr, "csms", "ChangeConfiguration", {"key": key, "value": "1"})
        assert out.calls == [] and out.answer == {"status": "Rejected"} and out.plan.reason == "read_only_key"

    def test_escape_hatch_and_instance(self) -> None:
        tr = make()
        ok = {"attributeStatus": "Accepted", "component": {"name": "OCPP16"}, "variable": {"name": "BlinkRepeat"}}
        out = exchange(
            tr, "csms", "ChangeConfiguration", {"key": "BlinkRepeat", "value": "3"}, {"setVariableResult": [ok]}
        )
        assert out.calls[0].payload["setVariableData"][0]["component"] == {"name": "OCPP16"}
        res = {
            "attributeStatus": "Accepted",
            "component": {"name": "OCPPCommCtrlr"},
            "variable": {"name": "MessageAttemptInterval", "instance": "TransactionEvent"},
        }
        out = exchange(
            tr,
            "csms",
            "ChangeConfiguration",
            {"key": "TransactionMessageRetryInterval", "value": "30"},
            {"setVariableResult": [res]},
        )
        assert out.calls[0].payload["setVariableData"][0]["variable"] == res["variable"]

    def test_phase_rotation_is_split_per_evse(self) -> None:
        tr = make()

        def answer(call: OutCall) -> JsonDict:
            items = call.payload["setVariableData"]
            statuses = ["Accepted", "RebootRequired"]
            return {
                "setVariableResult": [
                    {"component": i["component"], "variable": i["variable"], "attributeStatus": s}
                    for i, s in zip(items, statuses, strict=True)
                ]
            }

        out = exchange(
            tr, "csms", "ChangeConfiguration", {"key": "ConnectorPhaseRotation", "value": "0.RST, 1.RTS"}, answer
        )
        assert out.calls[0].payload["setVariableData"] == [
            {"attributeValue": "RST", "component": {"name": "ChargingStation"}, "variable": {"name": "PhaseRotation"}},
            {
                "attributeValue": "RTS",
                "component": {"name": "EVSE", "evse": {"id": 1}},
                "variable": {"name": "PhaseRotation"},
            },
        ]
        assert out.answer == {"status": "RebootRequired"}
        bad = exchange(tr, "csms", "ChangeConfiguration", {"key": "ConnectorPhaseRotation", "value": "RST"})
        assert bad.calls == [] and bad.answer == {"status": "Rejected"}

    def test_authorization_key_is_forwarded_but_never_kept(self) -> None:
        tr = make()
        res = {
            "attributeStatus": "Accepted",
            "component": {"name": "SecurityCtrlr"},
            "variable": {"name": "BasicAuthPassword"},
        }
        secret = "0123456789abcdef0123"
        out = exchange(
            tr,
            "csms",
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": secret},
            {"setVariableResult": [res]},
        )
        assert out.calls[0].payload["setVariableData"][0]["attributeValue"] == secret
        assert out.answer == {"status": "Accepted"}
        assert secret not in str(tr.snapshot()) and secret not in str(tr.take_dropped())

    def test_read_only_set_agrees_with_the_table(self) -> None:
        assert all(key in READONLY_16 for key, entry in ENTRIES.items() if entry.readonly and key != "SecurityProfile")


# -- local list, reservations, cache ---------------------------------------------------------------------------


class TestLocalListAndReservations:
    def test_send_local_list(self) -> None:
        tr = make()
        alias = alias_for(tr)
        parent = alias_for(tr, "G" * 30, "Central")
        req = {
            "listVersion": 5,
            "updateType": "Differential",
            "localAuthorizationList": [
                {"idTag": alias, "idTagInfo": {"status": "Blocked", "expiryDate": T0, "parentIdTag": parent}},
                {"idTag": "SHORT", "idTagInfo": {"status": "Accepted", "parentIdTag": "GRP"}},
                {"idTag": "GONE"},
            ],
        }
        out = exchange(tr, "csms", "SendLocalList", req, {"status": "VersionMismatch"})
        assert out.calls[0].payload == {
            "versionNumber": 5,
            "updateType": "Differential",
            "localAuthorizationList": [
                {
                    "idToken": {"idToken": LONG_TOKEN, "type": "ISO15693"},
                    "idTokenInfo": {
                        "status": "Blocked",
                        "cacheExpiryDateTime": T0,
                        "groupIdToken": {"idToken": "G" * 30, "type": "Central"},
                    },
                },
                {
                    "idToken": {"idToken": "SHORT", "type": "ISO14443"},
                    "idTokenInfo": {"status": "Accepted", "groupIdToken": {"idToken": "GRP", "type": "Central"}},
                },
                {"idToken": {"idToken": "GONE", "type": "ISO14443"}},
            ],
        }
        assert out.answer == {"status": "VersionMismatch"}

    def test_empty_full_list(self) -> None:
        tr = make()
        out = exchange(
            tr,
            "csms",
            "SendLocalList",
            {"listVersion": 1, "updateType": "Full", "localAuthorizationList": []},
            {"status": "Failed"},
        )
        assert out.calls[0].payload == {"versionNumber": 1, "updateType": "Full"} and out.answer == {"status": "Failed"}

    def test_list_version(self) -> None:
        tr = make()
        assert exchange(tr, "csms", "GetLocalListVersion", {}, {"versionNumber": 12}).answer == {"listVersion": 12}

    def test_clear_cache(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "ClearCache", {}, {"status": "Rejected", "statusInfo": {"reasonCode": "Off"}})
        assert out.calls[0].payload == {} and out.answer == {"status": "Rejected"}

    def test_reserve_now(self) -> None:
        tr = make()
        alias = alias_for(tr)
        req = {"connectorId": 2, "expiryDate": T0, "idTag": alias, "reservationId": 77, "parentIdTag": "PARENT"}
        out = exchange(tr, "csms", "ReserveNow", req, {"status": "Occupied"})
        assert out.calls[0].payload == {
            "id": 77,
            "expiryDateTime": T0,
            "idToken": {"idToken": LONG_TOKEN, "type": "ISO15693"},
            "evseId": 2,
            "groupIdToken": {"idToken": "PARENT", "type": "Central"},
        }
        assert out.answer == {"status": "Occupied"}
        station = exchange(tr, "csms", "ReserveNow", {**req, "connectorId": 0, "idTag": "T"}, {"status": "Accepted"})
        assert "evseId" not in station.calls[0].payload
        assert station.calls[0].payload["idToken"] == {"idToken": "T", "type": "ISO14443"}

    def test_reserve_connector_of_a_shared_evse_is_counted(self) -> None:
        tr = make(SHARED)
        req = {"connectorId": 2, "expiryDate": T0, "idTag": "T", "reservationId": 1}
        out = exchange(tr, "csms", "ReserveNow", req, {"status": "Accepted"})
        assert out.calls[0].payload["evseId"] == 1
        assert tr.take_dropped() == [("ReserveNow", "connector_not_in_201")]

    def test_cancel_reservation(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "CancelReservation", {"reservationId": 77}, {"status": "Accepted"})
        assert out.calls[0].payload == {"reservationId": 77} and out.answer == {"status": "Accepted"}


# -- smart charging --------------------------------------------------------------------------------------------


class TestSmartCharging:
    def test_charge_point_max_profile(self) -> None:
        tr = make()
        req = {"connectorId": 0, "csChargingProfiles": profile16(chargingProfilePurpose="ChargePointMaxProfile")}
        out = exchange(tr, "csms", "SetChargingProfile", req, {"status": "Rejected"})
        sent = out.calls[0].payload
        assert sent["evseId"] == 0
        assert sent["chargingProfile"]["chargingProfilePurpose"] == "ChargingStationMaxProfile"
        assert sent["chargingProfile"]["chargingSchedule"][0]["id"] == 7
        assert out.answer == {"status": "Rejected"}

    def test_tx_profile_int_becomes_the_charger_string(self) -> None:
        tr = make()
        with_tx(tr, evse=1)
        req = {"connectorId": 1, "csChargingProfiles": profile16(chargingProfilePurpose="TxProfile", transactionId=42)}
        out = exchange(tr, "csms", "SetChargingProfile", req, {"status": "Accepted"})
        assert out.calls[0].payload["chargingProfile"]["transactionId"] == "TX-A"
        assert out.answer == {"status": "Accepted"}

    def test_tx_profile_without_id_takes_the_open_transaction(self) -> None:
        tr = make()
        req = {"connectorId": 1, "csChargingProfiles": profile16(chargingProfilePurpose="TxProfile")}
        none = exchange(tr, "csms", "SetChargingProfile", req)
        assert none.calls == [] and none.answer == {"status": "Rejected"}
        with_tx(tr, evse=1)
        out = exchange(tr, "csms", "SetChargingProfile", req, {"status": "Accepted"})
        assert out.calls[0].payload["chargingProfile"]["transactionId"] == "TX-A"

    def test_unknown_transaction_is_rejected(self) -> None:
        tr = make()
        with_tx(tr)
        req = {"connectorId": 1, "csChargingProfiles": profile16(chargingProfilePurpose="TxProfile", transactionId=9)}
        out = exchange(tr, "csms", "SetChargingProfile", req)
        assert out.calls == [] and out.answer == {"status": "Rejected"} and out.plan.reason == "profile_not_mappable"

    def test_clear_charging_profile(self) -> None:
        tr = make(SHARED)
        req = {"id": 7, "connectorId": 3, "chargingProfilePurpose": "ChargePointMaxProfile", "stackLevel": 1}
        out = exchange(tr, "csms", "ClearChargingProfile", req, {"status": "Unknown"})
        assert out.calls[0].payload == {
            "chargingProfileId": 7,
            "chargingProfileCriteria": {
                "evseId": 2,
                "chargingProfilePurpose": "ChargingStationMaxProfile",
                "stackLevel": 1,
            },
        }
        assert out.answer == {"status": "Unknown"}
        everything = exchange(tr, "csms", "ClearChargingProfile", {}, {"status": "Accepted"})
        assert everything.calls[0].payload == {} and everything.answer == {"status": "Accepted"}

    def test_composite_schedule_is_rebuilt(self) -> None:
        tr = make()
        answer = {
            "status": "Accepted",
            "schedule": {
                "evseId": 2,
                "duration": 900,
                "scheduleStart": T0,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 7400.04, "numberPhases": 3},
                    {"startPeriod": 300, "limit": 3000, "phaseToUse": 1, "numberPhases": 1},
                ],
            },
        }
        req = {"connectorId": 2, "duration": 900, "chargingRateUnit": "W"}
        out = exchange(tr, "csms", "GetCompositeSchedule", req, answer)
        assert out.calls[0].payload == {"duration": 900, "evseId": 2, "chargingRateUnit": "W"}
        assert out.answer == {
            "status": "Accepted",
            "connectorId": 2,
            "scheduleStart": T0,
            "chargingSchedule": {
                "duration": 900,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 7400, "numberPhases": 3},
                    {"startPeriod": 300, "limit": 3000, "numberPhases": 1},
                ],
            },
        }
        assert tr.take_dropped() == [("GetCompositeSchedule", "phaseToUse")]
        rejected = exchange(
            tr, "csms", "GetCompositeSchedule", {"connectorId": 0, "duration": 60}, {"status": "Rejected"}
        )
        assert rejected.calls[0].payload == {"duration": 60, "evseId": 0} and rejected.answer == {"status": "Rejected"}


# -- TriggerMessage, UnlockConnector ---------------------------------------------------------------------------


class TestTriggerAndUnlock:
    @pytest.mark.parametrize(
        ("requested", "connector", "sent"),
        [
            ("DiagnosticsStatusNotification", None, {"requestedMessage": "LogStatusNotification"}),
            ("StatusNotification", 2, {"requestedMessage": "StatusNotification", "evse": {"id": 2, "connectorId": 1}}),
            ("StatusNotification", 0, {"requestedMessage": "StatusNotification"}),
            ("MeterValues", 1, {"requestedMessage": "MeterValues", "evse": {"id": 1, "connectorId": 1}}),
            ("BootNotification", 1, {"requestedMessage": "BootNotification"}),
            ("Heartbeat", None, {"requestedMessage": "Heartbeat"}),
            ("FirmwareStatusNotification", None, {"requestedMessage": "FirmwareStatusNotification"}),
        ],
    )
    def test_trigger_message(self, requested: str, connector: int | None, sent: JsonDict) -> None:
        tr = make()
        req: JsonDict = {"requestedMessage": requested}
        if connector is not None:
            req["connectorId"] = connector
        out = exchange(tr, "csms", "TriggerMessage", req, {"status": "NotImplemented"})
        assert (out.calls[0].action, out.calls[0].payload) == ("TriggerMessage", sent)
        assert out.answer == {"status": "NotImplemented"}

    def test_shared_evse_status_trigger(self) -> None:
        tr = make(SHARED)
        req = {"requestedMessage": "StatusNotification", "connectorId": 2}
        out = exchange(tr, "csms", "TriggerMessage", req, {"status": "Accepted"})
        assert out.calls[0].payload["evse"] == {"id": 1, "connectorId": 2}

    def test_extended_trigger(self) -> None:
        tr = make()
        out = exchange(
            tr,
            "csms",
            "ExtendedTriggerMessage",
            {"requestedMessage": "SignChargePointCertificate"},
            {"status": "Accepted"},
        )
        assert out.calls[0].payload == {"requestedMessage": "SignChargingStationCertificate"}
        assert out.answer == {"status": "Accepted"}
        log = exchange(
            tr, "csms", "ExtendedTriggerMessage", {"requestedMessage": "LogStatusNotification"}, {"status": "Rejected"}
        )
        assert log.calls[0].payload == {"requestedMessage": "LogStatusNotification"} and log.answer == {
            "status": "Rejected"
        }

    @pytest.mark.parametrize(
        ("charger", "csms"),
        [
            ("Unlocked", "Unlocked"),
            ("UnlockFailed", "UnlockFailed"),
            ("OngoingAuthorizedTransaction", "UnlockFailed"),
            ("UnknownConnector", "NotSupported"),
        ],
    )
    def test_unlock(self, charger: str, csms: str) -> None:
        tr = make(SHARED)
        out = exchange(tr, "csms", "UnlockConnector", {"connectorId": 2}, {"status": charger})
        assert out.calls[0].payload == {"evseId": 1, "connectorId": 2} and out.answer == {"status": csms}

    def test_unlock_connector_zero(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "UnlockConnector", {"connectorId": 0})
        assert out.calls == [] and out.answer == {"status": "NotSupported"}


# -- firmware, logs, certificates ------------------------------------------------------------------------------


class TestFirmwareAndLogs:
    def test_get_diagnostics(self) -> None:
        tr = make()
        req = {
            "location": "ftp://logs.example.com/up",
            "startTime": T0,
            "stopTime": T0,
            "retries": 2,
            "retryInterval": 30,
        }
        out = exchange(tr, "csms", "GetDiagnostics", req, {"status": "Accepted", "filename": "diag.zip"})
        assert out.calls[0].action == "GetLog"
        assert out.calls[0].payload == {
            "logType": "DiagnosticsLog",
            "requestId": 1,
            "log": {"remoteLocation": "ftp://logs.example.com/up", "oldestTimestamp": T0, "latestTimestamp": T0},
            "retries": 2,
            "retryInterval": 30,
        }
        assert out.answer == {"fileName": "diag.zip"}
        assert tr.state.log_request == {"requestId": 1, "at": T0, "logType": "DiagnosticsLog", "via": "GetDiagnostics"}
        again = exchange(tr, "csms", "GetDiagnostics", {"location": "ftp://x.example.com/"}, {"status": "Accepted"})
        assert again.calls[0].payload["requestId"] == 2 and again.answer == {}

    def test_rejected_diagnostics_keeps_the_previous_job(self) -> None:
        tr = make()
        exchange(tr, "csms", "GetDiagnostics", {"location": "ftp://x.example.com/"}, {"status": "Accepted"})
        out = exchange(tr, "csms", "GetDiagnostics", {"location": "ftp://x.example.com/"}, {"status": "Rejected"})
        assert out.answer == {} and tr.state.log_request is not None and tr.state.log_request["requestId"] == 1
        assert ("GetDiagnostics", "status_Rejected") in tr.take_dropped()

    def test_location_too_long(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "GetDiagnostics", {"location": "ftp://x.example.com/" + "a" * 600})
        assert out.error is not None and out.error[0] == "PropertyConstraintViolation" and out.plan.reason

    @pytest.mark.parametrize("status", ["Accepted", "Rejected", "InvalidCertificate"])
    def test_update_firmware(self, status: str) -> None:
        tr = make()
        req = {"location": "https://fw.example.com/1.bin", "retrieveDate": T0, "retries": 3}
        out = exchange(tr, "csms", "UpdateFirmware", req, {"status": status})
        assert out.calls[0].payload == {
            "requestId": 1,
            "firmware": {"location": "https://fw.example.com/1.bin", "retrieveDateTime": T0},
            "retries": 3,
        }
        assert out.answer == {}
        dropped = tr.take_dropped()
        if status == "Accepted":
            assert dropped == [] and tr.state.fw_request == {"requestId": 1, "at": T0, "signed": False}
        else:
            assert dropped == [("UpdateFirmware", f"status_{status}")] and tr.state.fw_request is None

    def test_signed_update_firmware_keeps_the_csms_request_id(self) -> None:
        tr = make(Options(security_extension=True))
        firmware = {
            "location": "https://fw.example.com/2.bin",
            "retrieveDateTime": T0,
            "installDateTime": T0,
            "signingCertificate": "CERT",
            "signature": "SIG",
        }
        out = exchange(
            tr,
            "csms",
            "SignedUpdateFirmware",
            {"requestId": 55, "firmware": firmware},
            {"status": "RevokedCertificate"},
        )
        assert out.calls[0].payload == {"requestId": 55, "firmware": firmware}
        assert out.answer == {"status": "RevokedCertificate"}
        ok = exchange(
            tr, "csms", "SignedUpdateFirmware", {"requestId": 56, "firmware": firmware}, {"status": "Accepted"}
        )
        assert ok.answer == {"status": "Accepted"}
        assert tr.state.fw_request == {"requestId": 56, "at": T0, "signed": True}

    def test_extension_get_log(self) -> None:
        tr = make()  # translated even without security_extension
        req = {"logType": "SecurityLog", "requestId": 9, "log": {"remoteLocation": "https://x.example.com/"}}
        out = exchange(tr, "csms", "GetLog", req, {"status": "AcceptedCanceled", "filename": "sec.log"})
        assert out.calls[0].payload == req and out.answer == {"status": "AcceptedCanceled", "filename": "sec.log"}
        assert tr.state.log_request == {"requestId": 9, "at": T0, "logType": "SecurityLog", "via": "GetLog"}


class TestCertificates:
    HASH: ClassVar = {"hashAlgorithm": "SHA256", "issuerNameHash": "a", "issuerKeyHash": "b", "serialNumber": "c"}

    def test_install_and_delete(self) -> None:
        tr = make()
        out = exchange(
            tr,
            "csms",
            "InstallCertificate",
            {"certificateType": "CentralSystemRootCertificate", "certificate": "PEM"},
            {"status": "Failed"},
        )
        assert out.calls[0].payload == {"certificateType": "CSMSRootCertificate", "certificate": "PEM"}
        assert out.answer == {"status": "Failed"}
        gone = exchange(tr, "csms", "DeleteCertificate", {"certificateHashData": self.HASH}, {"status": "NotFound"})
        assert gone.calls[0].payload == {"certificateHashData": self.HASH} and gone.answer == {"status": "NotFound"}

    def test_installed_ids(self) -> None:
        tr = make()
        answer = {
            "status": "Accepted",
            "certificateHashDataChain": [
                {"certificateType": "ManufacturerRootCertificate", "certificateHashData": self.HASH},
                {
                    "certificateType": "ManufacturerRootCertificate",
                    "certificateHashData": {**self.HASH, "serialNumber": "d"},
                    "childCertificateHashData": [self.HASH],
                },
            ],
        }
        req = {"certificateType": "ManufacturerRootCertificate"}
        out = exchange(tr, "csms", "GetInstalledCertificateIds", req, answer)
        assert out.calls[0].payload == {"certificateType": ["ManufacturerRootCertificate"]}
        assert out.answer == {
            "status": "Accepted",
            "certificateHashData": [self.HASH, {**self.HASH, "serialNumber": "d"}],
        }
        assert tr.take_dropped() == [("GetInstalledCertificateIds", "childCertificateHashData")]
        none = exchange(tr, "csms", "GetInstalledCertificateIds", req, {"status": "Accepted"})
        assert none.answer == {"status": "NotFound"}

    def test_certificate_signed(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "CertificateSigned", {"certificateChain": "CHAIN"}, {"status": "Rejected"})
        assert out.calls[0].payload == {"certificateChain": "CHAIN", "certificateType": "ChargingStationCertificate"}
        assert out.answer == {"status": "Rejected"}


# -- DataTransfer, errors --------------------------------------------------------------------------------------


class TestDataTransferAndErrors:
    def test_data_transfer(self) -> None:
        tr = make()
        req = {"vendorId": "com.example", "messageId": "m", "data": "payload"}
        out = exchange(tr, "csms", "DataTransfer", req, {"status": "Accepted", "data": {"k": [1, 2]}})
        assert out.calls[0].payload == req and out.answer == {"status": "Accepted", "data": '{"k":[1,2]}'}
        plain = exchange(tr, "csms", "DataTransfer", {"vendorId": "v"}, {"status": "UnknownMessageId", "data": "s"})
        assert plain.answer == {"status": "UnknownMessageId", "data": "s"}

    def test_own_wrap_vendor_id_is_not_forwarded(self) -> None:
        tr = make()
        out = exchange(tr, "csms", "DataTransfer", {"vendorId": "org.openchargealliance.ocpp201", "data": "{}"})
        assert out.calls == [] and out.answer == {"status": "UnknownVendorId"} and out.plan.reason

    @pytest.mark.parametrize(
        ("action", "payload"),
        [
            ("ClearCache", {}),
            ("UnlockConnector", {"connectorId": 1}),
            ("ChangeConfiguration", {"key": "HeartbeatInterval", "value": "10"}),
            ("TriggerMessage", {"requestedMessage": "Heartbeat"}),
        ],
    )
    @pytest.mark.parametrize(
        ("code", "mapped"),
        [("FormatViolation", "FormationViolation"), ("OccurrenceConstraintViolation", "OccurenceConstraintViolation")],
    )
    def test_charger_callerror_is_mapped(self, action: str, payload: JsonDict, code: str, mapped: str) -> None:
        tr = make()
        out = exchange(tr, "csms", action, payload, (code, "details"))
        assert out.error == (mapped, "details") and out.answer is None


def test_state_snapshot_keeps_the_csms_side_records() -> None:
    tr = make()
    exchange(tr, "csms", "Reset", {"type": "Soft"}, {"status": "Accepted"})
    exchange(tr, "csms", "GetDiagnostics", {"location": "ftp://x.example.com/"}, {"status": "Accepted"})
    exchange(
        tr, "csms", "UpdateFirmware", {"location": "ftp://x.example.com/", "retrieveDate": T0}, {"status": "Accepted"}
    )
    exchange(
        tr,
        "csms",
        "GetConfiguration",
        {"key": ["HeartbeatInterval"]},
        device({("OCPPCommCtrlr", "HeartbeatInterval"): "9"}),
    )
    restored = ReverseState.from_dict(tr.snapshot())
    assert restored.reset == tr.state.reset and restored.log_request == tr.state.log_request
    assert restored.fw_request == tr.state.fw_request and restored.next_request_id == 3
    assert restored.variables == {"HeartbeatInterval": {"value": "9", "readonly": False}}
