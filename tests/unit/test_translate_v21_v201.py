"""Set-up C translator (2.1 charger, 2.0.1 CSMS): the generated field table against the schemas, the value rules
against what the schemas add, and the policy of every message.

Every input is checked against its 2.1 (charger) or 2.0.1 (CSMS) schema and every output against its target's by
:func:`tests.unit.translate_harness.exchange`.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gateway.ocpp import schemas
from gateway.translate import TRANSLATABLE, translator_for, v16_to_v201
from gateway.translate.base import OutCall
from gateway.translate.v21_to_v201 import POLICY, V21ChargerToV201Csms
from gateway.translate.v21_v201 import fields, policy, rules
from gateway.translate.v21_v201.state import MAX_STREAMS, V21State
from tests.unit.translate_harness import exchange

ROOT = Path(__file__).resolve().parents[2]
T0 = "2025-03-01T12:00:00.000Z"
VENDOR = "org.openchargealliance.ocpp21"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_v21_fields", ROOT / "scripts" / "gen_v21_fields.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def make() -> V21ChargerToV201Csms:
    return V21ChargerToV201Csms(now=lambda: T0)


def sample(value: float, measurand: str | None = None, **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"value": value, **extra}
    if measurand is not None:
        out["measurand"] = measurand
    return out


def tx_event(**extra: Any) -> dict[str, Any]:
    return {
        "eventType": "Updated",
        "timestamp": T0,
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "tx-1"},
        **extra,
    }


# ---------------------------------------------------------------------------------------------------------------


class TestTheTablesAreTheSchemas:
    def test_the_generated_field_table_is_what_the_schemas_say(self) -> None:
        # scripts/gen_v21_fields.py compares the v201 and v21 schema files; a new ocpp release that changes them
        # fails here until the table is regenerated (and the rules reviewed)
        gen = _generator()
        tables = gen.compute()
        assert gen.render(tables) == (ROOT / "gateway/translate/v21_v201/fields.py").read_text()
        assert tables["ADDED_FIELDS"][("TransactionEvent", "request")][:3] == (
            "costDetails",
            "preconditioningStatus",
            "evseSleep",
        )
        assert set(fields.V21_ONLY_ACTIONS) == schemas.actions("2.1") - schemas.actions("2.0.1")

    def test_every_2_1_value_that_travels_to_the_csms_has_a_rule_or_a_reason(self) -> None:
        to_csms = {
            (a, k)
            for a, k in fields.NEW_VALUES
            if (k == "request") == (a in policy.V201_STATION_ACTIONS or a == "DataTransfer")
        }
        for key in to_csms:
            assert set(fields.NEW_VALUES[key]) == rules.COVERED[key], key
        for key, per_path in rules.VALUE_RULES.items():
            assert key in to_csms, f"{key}: a rule for a message that never travels to the CSMS"
            for path, rule in per_path.items():
                assert path in fields.NEW_VALUES[key], (key, path)
                allowed = set(fields.V201_ENUMS[key][path])
                assert set(rule.mapping.values()) <= allowed, (key, path)
                assert rule.fallback is None or rule.fallback in allowed

    def test_no_rule_can_leave_a_charger_answer_untranslatable(self) -> None:
        # a translated answer cannot be refused by the translator (the plan's finish must return one)
        for (action, kind), per_path in rules.VALUE_RULES.items():
            if kind != "response":
                continue
            required = set(fields.REQUIRED_ARRAYS.get((action, kind), ()))
            for path, rule in per_path.items():
                assert rule.unmapped == "item" or rule.mapping or rule.fallback, (action, path)
                if rule.unmapped == "item":
                    assert path.split("[]")[0] not in required, (action, path)

    def test_the_action_sets_are_the_schemas_and_agree_with_set_up_a(self) -> None:
        v201 = schemas.actions("2.0.1")
        assert policy.V201_STATION_ACTIONS == v16_to_v201.V201_STATION_ACTIONS
        assert policy.V201_STATION_ACTIONS | policy.V201_CSMS_ACTIONS | {"DataTransfer"} == v201
        only = schemas.actions("2.1") - v201
        assert only == policy.V21_STATION_ACTIONS | policy.V21_CSMS_ACTIONS | policy.SEND_ACTIONS
        assert not policy.V21_STATION_ACTIONS & policy.V21_CSMS_ACTIONS

    def test_the_policy_names_every_action_of_both_sides(self) -> None:
        charger = set(schemas.actions("2.1")) - policy.V201_CSMS_ACTIONS - policy.V21_CSMS_ACTIONS
        assert {a.removesuffix(" (SEND)") for a in policy.CHARGER_POLICY} == charger
        assert set(policy.CSMS_POLICY) - {"*unknown action*", "*action of the wrong direction*"} == (
            policy.V201_CSMS_ACTIONS | {"DataTransfer"}
        )
        assert {**policy.CHARGER_POLICY, **policy.CSMS_POLICY} == POLICY

    def test_the_pair_is_translatable_and_built_by_translator_for(self) -> None:
        assert ("2.1", "2.0.1") in TRANSLATABLE
        tr = translator_for("2.1", "2.0.1", session_started_at=T0)
        assert isinstance(tr, V21ChargerToV201Csms) and (tr.charger_version, tr.csms_version) == ("2.1", "2.0.1")


class TestChargerCallsBothVersionsHave:
    def test_a_message_without_2_1_additions_passes_as_the_same_object(self) -> None:
        tr = make()
        payload = tx_event(meterValue=[{"timestamp": T0, "sampledValue": [sample(12.5)]}])
        answer = {"totalCost": 1.5}
        out = exchange(tr, "charger", "TransactionEvent", payload, answer)
        assert out.calls[0].payload is payload  # no copy, no per-field work
        assert out.answer is answer  # the CSMS's answer, as it came (valid 2.1)
        assert tr.take_dropped() == []
        heartbeat: dict[str, Any] = {}
        assert exchange(tr, "charger", "Heartbeat", heartbeat, {"currentTime": T0}).calls[0].payload is heartbeat

    def test_2_1_fields_are_dropped_and_counted_and_the_rest_is_not_copied(self) -> None:
        tr = make()
        meter = [{"timestamp": T0, "sampledValue": [sample(12.5, "Energy.Active.Import.Register")]}]
        payload = tx_event(
            evseSleep=True,
            preconditioningStatus="Ready",
            transactionInfo={"transactionId": "tx-1", "operationMode": "ChargingOnly", "tariffId": "T1"},
            meterValue=meter,
        )
        out = exchange(tr, "charger", "TransactionEvent", payload, {})
        sent = out.calls[0].payload
        assert sent == tx_event(meterValue=meter)
        assert sent["meterValue"] is meter  # untouched parts are shared
        assert "evseSleep" in payload  # the charger's payload itself is not changed
        assert sorted(tr.take_dropped()) == [
            ("TransactionEvent", "evseSleep"),
            ("TransactionEvent", "operationMode"),
            ("TransactionEvent", "preconditioningStatus"),
            ("TransactionEvent", "tariffId"),
        ]

    def test_2_1_values_are_mapped_and_samples_of_2_1_measurands_dropped(self) -> None:
        tr = make()
        payload = tx_event(
            triggerReason="TariffChanged",
            transactionInfo={"transactionId": "tx-1", "stoppedReason": "ReqEnergyTransferRejected"},
            meterValue=[
                {"timestamp": T0, "sampledValue": [sample(80, "Display.PresentSOC")]},  # nothing left: dropped
                {
                    "timestamp": T0,
                    "sampledValue": [
                        sample(1.2, "Energy.Active.Import.Register", location="Upstream"),
                        sample(7, "Power.Active.Setpoint"),
                    ],
                },
            ],
        )
        sent = exchange(tr, "charger", "TransactionEvent", payload, {}).calls[0].payload
        assert sent["triggerReason"] == "ChargingRateChanged"
        assert sent["transactionInfo"] == {"transactionId": "tx-1", "stoppedReason": "Other"}
        assert sent["meterValue"] == [
            {"timestamp": T0, "sampledValue": [sample(1.2, "Energy.Active.Import.Register", location="Inlet")]}
        ]
        assert sorted(w for _, w in tr.take_dropped()) == [
            "Display.PresentSOC",
            "Power.Active.Setpoint",
            "location=Upstream",
            "sampledValue emptied",
            "stoppedReason=ReqEnergyTransferRejected",
            "triggerReason=TariffChanged",
        ]

    def test_a_transaction_events_id_token_of_a_2_1_type_is_dropped_an_evccid_becomes_a_mac_address(self) -> None:
        tr = make()
        vin = exchange(tr, "charger", "TransactionEvent", tx_event(idToken={"idToken": "WVW1", "type": "VIN"}), {})
        assert "idToken" not in vin.calls[0].payload
        assert tr.take_dropped() == [("TransactionEvent", "idToken (type VIN)")]
        mac = {"idToken": "00:11:22:33:44:55", "type": "EVCCID"}
        ok = {"idTokenInfo": {"status": "Accepted"}}
        sent = exchange(tr, "charger", "TransactionEvent", tx_event(idToken=mac), ok).calls[0].payload
        assert sent["idToken"] == {"idToken": "00:11:22:33:44:55", "type": "MacAddress"}

    def test_an_authorize_the_csms_cannot_read_is_refused_in_band(self) -> None:
        tr = make()
        out = exchange(tr, "charger", "Authorize", {"idToken": {"idToken": "WVW1", "type": "VIN"}})
        assert out.answer == {"idTokenInfo": {"status": "Invalid"}} and out.plan.reason == "id_token_type_not_in_201"
        local = {"idToken": {"idToken": "04A1", "type": "ISO14443"}}
        assert exchange(tr, "charger", "Authorize", local, {"idTokenInfo": {"status": "Accepted"}}).calls

    def test_meter_values_of_2_1_measurands_only_are_acked_and_dropped(self) -> None:
        tr = make()
        payload = {"evseId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [sample(80, "Display.PresentSOC")]}]}
        out = exchange(tr, "charger", "MeterValues", payload)
        assert out.answer == {} and not out.calls
        assert ("MeterValues", "message") in tr.take_dropped()

    @pytest.mark.parametrize(
        ("action", "payload", "answer"),
        [
            (
                "SignCertificate",
                {"csr": "-----BEGIN CERTIFICATE REQUEST-----", "certificateType": "V2G20Certificate"},
                {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn201"}},
            ),
            (
                "NotifyEVChargingNeeds",
                {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC_BPT"}},
                {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn201"}},
            ),
        ],
    )
    def test_a_call_whose_whole_point_2_0_1_lacks_is_refused_in_band(
        self, action: str, payload: dict[str, Any], answer: dict[str, Any]
    ) -> None:
        out = exchange(make(), "charger", action, payload)
        assert out.answer == answer and not out.calls

    def test_a_value_that_2_0_1_cannot_carry_fails_its_schema_and_is_never_sent(self) -> None:
        # an idToken over 36 characters (2.1 allows 255): no rule maps it; the session's check of the translated
        # CALL against 2.0.1 then answers InternalError (test_session_v21.py) - the translator passes it on as it is
        tr = make()
        long = {"idToken": {"idToken": "x" * 40, "type": "ISO14443"}}
        plan = tr.from_charger("Authorize", long)
        with pytest.raises(schemas.SchemaViolation):
            schemas.validate("2.0.1", "Authorize", "request", plan.calls[0].payload)


def _wrapped(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"vendorId": VENDOR, "messageId": action, "data": payload}


HASH = {"hashAlgorithm": "SHA256", "issuerNameHash": "aa", "issuerKeyHash": "bb", "serialNumber": "1f"}
ID = {"idToken": "04A1", "type": "ISO14443"}
#: action -> (a valid 2.1 request, the answer when the CSMS did not give a valid one)
WRAPPED: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "BatterySwap": (
        {
            "eventType": "BatteryIn",
            "requestId": 1,
            "idToken": ID,
            "batteryData": [{"evseId": 1, "serialNumber": "B1", "soC": 80, "soH": 95}],
        },
        {},
    ),
    "ClosePeriodicEventStream": ({"id": 7}, {}),
    "GetCertificateChainStatus": (
        {"certificateStatusRequests": [{"certificateHashData": HASH, "source": "OCSP", "urls": ["http://ocsp"]}]},
        {"certificateStatus": [{"certificateHashData": HASH, "source": "OCSP", "status": "Failed", "nextUpdate": T0}]},
    ),
    "NotifyDERAlarm": ({"controlType": "FreqDroop", "timestamp": T0}, {}),
    "NotifyDERStartStop": ({"controlId": "c1", "started": True, "timestamp": T0}, {}),
    "NotifyPriorityCharging": ({"transactionId": "tx-1", "activated": True}, {}),
    "NotifySettlement": ({"pspRef": "p1", "status": "Settled", "settlementAmount": 12.5, "settlementTime": T0}, {}),
    "OpenPeriodicEventStream": (
        {"constantStreamData": {"id": 7, "variableMonitoringId": 3, "params": {"interval": 10}}},
        {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn201"}},
    ),
    "PullDynamicScheduleUpdate": (
        {"chargingProfileId": 5},
        {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn201"}},
    ),
    "ReportDERControl": ({"requestId": 2}, {}),
    "VatNumberValidation": (
        {"vatNumber": "NL123"},
        {"vatNumber": "NL123", "status": "Rejected", "statusInfo": {"reasonCode": "NotIn201"}},
    ),
}


class TestChargerCallsOf2_1Only:
    def test_every_2_1_only_charger_call_has_a_case_here(self) -> None:
        assert set(WRAPPED) == policy.V21_STATION_ACTIONS

    @pytest.mark.parametrize("action", sorted(WRAPPED))
    @pytest.mark.parametrize("status", ["Accepted", "Rejected", "UnknownVendorId"])
    def test_it_reaches_the_csms_wrapped_and_gets_the_neutral_answer_without_valid_data(
        self, action: str, status: str
    ) -> None:
        payload, neutral = WRAPPED[action]
        out = exchange(make(), "charger", action, payload, {"status": status})
        assert [(c.action, c.payload) for c in out.calls] == [("DataTransfer", _wrapped(action, payload))]
        if action == "OpenPeriodicEventStream" and status == "Accepted":
            assert out.answer == {"status": "Accepted"}
        else:
            assert out.answer == neutral

    def test_the_csmss_data_is_the_answer_when_it_is_a_valid_2_1_answer(self) -> None:
        tr = make()
        vat = {
            "vatNumber": "NL123",
            "status": "Accepted",
            "company": {"name": "ACME", "address1": "x", "city": "y", "country": "NL"},
        }
        out = exchange(
            tr, "charger", "VatNumberValidation", {"vatNumber": "NL123"}, {"status": "Accepted", "data": vat}
        )
        assert out.answer == vat
        bad = {"status": "Accepted", "data": {"vatNumber": "NL123", "status": "Maybe"}}
        assert (
            exchange(tr, "charger", "VatNumberValidation", {"vatNumber": "NL123"}, bad).answer
            == WRAPPED["VatNumberValidation"][1]
        )
        # an answer that carries nothing is {} whatever the CSMS put into data
        assert (
            exchange(
                tr, "charger", "NotifyDERAlarm", WRAPPED["NotifyDERAlarm"][0], {"status": "Accepted", "data": {"x": 1}}
            ).answer
            == {}
        )

    def test_a_stream_the_csms_accepted_is_kept_and_its_sends_wrapped_until_closed(self) -> None:
        tr = make()
        stream = {"id": 7, "pending": 0, "basetime": T0, "data": [{"t": 0, "v": "230"}]}
        assert tr.send_from_charger("NotifyPeriodicEventStream", stream) is None  # not opened: dropped
        assert tr.take_dropped() == [("NotifyPeriodicEventStream", "send")]
        exchange(
            tr, "charger", "OpenPeriodicEventStream", WRAPPED["OpenPeriodicEventStream"][0], {"status": "Accepted"}
        )
        assert tr.snapshot() == {"streams": [7]}
        assert tr.send_from_charger("NotifyPeriodicEventStream", stream) == OutCall(
            "DataTransfer", _wrapped("NotifyPeriodicEventStream", stream)
        )
        schemas.validate("2.0.1", "DataTransfer", "request", _wrapped("NotifyPeriodicEventStream", stream))
        restored = make()
        restored.restore(tr.snapshot())  # the stream survives a reconnect or restart
        assert restored.send_from_charger("NotifyPeriodicEventStream", stream) is not None
        exchange(tr, "charger", "ClosePeriodicEventStream", {"id": 7}, {"status": "Accepted"})
        assert tr.snapshot() == {"streams": []}
        assert tr.send_from_charger("NotifyPeriodicEventStream", stream) is None

    def test_a_stream_the_csms_did_not_accept_is_not_kept(self) -> None:
        tr = make()
        out = exchange(
            tr,
            "charger",
            "OpenPeriodicEventStream",
            WRAPPED["OpenPeriodicEventStream"][0],
            {"status": "UnknownMessageId"},
        )
        assert out.answer["status"] == "Rejected" and tr.snapshot() == {"streams": []}

    def test_the_state_is_bounded_and_tolerates_what_it_does_not_know(self) -> None:
        state = V21State()
        for i in range(MAX_STREAMS + 5):
            state.open_stream(i)
        assert state.streams == list(range(5, MAX_STREAMS + 5))
        assert V21State.from_dict({"streams": [1, "x", 2], "future": True}).streams == [1, 2]
        assert V21State.from_dict({}).streams == []

    def test_wrong_direction_unknown_and_send_as_call(self) -> None:
        tr = make()
        assert tr.from_charger("SetDERControl", {}).error == ("NotSupported", "SetDERControl is sent by a CSMS")
        assert tr.from_charger("Reset", {}).error is not None
        assert tr.from_charger("Bogus", {}).error == ("NotImplemented", "unknown action Bogus")
        assert tr.from_charger("NotifyPeriodicEventStream", {}).reason == "wrong_message_type"


class TestCsmsCalls:
    def test_a_csms_call_passes_unchanged_and_the_chargers_answer_loses_its_2_1_fields(self) -> None:
        tr = make()
        request = {"duration": 3600, "evseId": 1}
        answer = {
            "status": "Accepted",
            "schedule": {
                "evseId": 1,
                "duration": 3600,
                "scheduleStart": T0,
                "chargingRateUnit": "W",
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 7400.0, "setpoint": 7000.0, "dischargeLimit": -3000.0}
                ],
            },
        }
        out = exchange(tr, "csms", "GetCompositeSchedule", request, answer)
        assert out.calls[0].payload is request
        assert out.answer is not None
        assert out.answer["schedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 7400.0}]
        assert sorted(w for _, w in tr.take_dropped()) == ["dischargeLimit", "setpoint"]

    def test_an_answer_without_2_1_additions_is_the_chargers_own(self) -> None:
        tr = make()
        answer = {"status": "Accepted"}
        out = exchange(tr, "csms", "Reset", {"type": "Immediate"}, answer)
        assert out.answer is answer

    @pytest.mark.parametrize(
        ("action", "request_", "answer", "expected"),
        [
            ("ClearDisplayMessage", {"id": 1}, {"status": "Rejected"}, {"status": "Unknown"}),
            (
                "SetDisplayMessage",
                {
                    "message": {
                        "id": 1,
                        "priority": "NormalCycle",
                        "message": {"format": "UTF8", "content": "hi", "language": "tlh"},
                    }
                },
                {"status": "LanguageNotSupported"},
                {"status": "Rejected"},
            ),
        ],
    )
    def test_2_1_answer_statuses_are_mapped(
        self, action: str, request_: dict[str, Any], answer: dict[str, Any], expected: dict[str, Any]
    ) -> None:
        assert exchange(make(), "csms", action, request_, answer).answer == expected

    def test_the_csms_reaches_a_2_1_message_through_data_transfer(self) -> None:
        tr = make()
        tariff = {
            "evseId": 1,
            "tariff": {"tariffId": "T1", "currency": "EUR", "energy": {"prices": [{"priceKwh": 0.3}]}},
        }
        out = exchange(tr, "csms", "DataTransfer", _wrapped("SetDefaultTariff", tariff), {"status": "Accepted"})
        assert [(c.action, c.payload) for c in out.calls] == [("SetDefaultTariff", tariff)]
        assert out.answer == {"status": "Accepted", "data": {"status": "Accepted"}}
        bad = exchange(tr, "csms", "DataTransfer", _wrapped("SetDefaultTariff", {"evseId": 1}))
        assert bad.answer is not None and bad.answer["status"] == "Rejected" and not bad.calls
        assert bad.answer["statusInfo"]["reasonCode"] == "InvalidPayload"

    def test_another_data_transfer_passes_both_ways(self) -> None:
        tr = make()
        payload = {"vendorId": "com.acme", "messageId": "Hello", "data": {"a": 1}}
        out = exchange(tr, "csms", "DataTransfer", payload, {"status": "Accepted", "data": [1, 2]})
        assert out.calls[0].payload is payload and out.answer == {"status": "Accepted", "data": [1, 2]}
        mine = {"vendorId": "com.acme", "data": "x"}
        assert exchange(tr, "charger", "DataTransfer", mine, {"status": "Rejected"}).calls[0].payload is mine

    def test_wrong_direction_and_unknown(self) -> None:
        tr = make()
        assert tr.from_csms("TransactionEvent", {}).reason == "wrong_direction"
        assert tr.from_csms("OpenPeriodicEventStream", {}).reason == "wrong_direction"
        assert tr.from_csms("SetDERControl", {}).error == ("NotImplemented", "unknown action SetDERControl")

    def test_errors_are_spelled_per_side(self) -> None:
        tr = make()
        assert tr.map_error("FormationViolation", "charger") == "FormatViolation"
        assert tr.map_error("MadeUp", "csms") == "GenericError"
