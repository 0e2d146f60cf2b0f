"""Set-up B translator, charger-initiated side (ocpp-translation.md §4.1-§4.3, §5.2, §6 "Set-up B").

Every input is checked against its 2.0.1 schema, every translated CALL (and the gateway's own ``then_to_csms``
CALLs) and every CSMS answer against the 1.6 schemas, and every answer to the charger against its 2.0.1 response
schema by :func:`tests.unit.translate_harness.exchange`; the state snapshot is checked to round-trip after each step.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from gateway.translate.base import JsonDict
from gateway.translate.v16_to_v201 import V201_STATION_ACTIONS
from gateway.translate.v201_to_v16 import POLICY, Options, V201ChargerToV16Csms
from gateway.translate.v201_v16 import meter
from gateway.translate.v201_v16.charger_calls import CHARGER_HANDLERS, CHARGER_POLICY
from gateway.translate.v201_v16.context import id_alias
from gateway.translate.v201_v16.state import PendingStart
from gateway.translate.v201_v16.transactions import STOPPED_REASON
from tests.unit.translate_harness import Clock, Outcome, exchange

T0 = "2025-03-01T12:00:00.000Z"
T1 = "2025-03-01T12:01:00.000Z"
T2 = "2025-03-01T12:02:00.000Z"
T3 = "2025-03-01T12:03:00.000Z"
T4 = "2025-03-01T12:04:00.000Z"
OLD = "2025-02-28T23:00:00.000Z"  # hours before the session: an offline event
LONG_TOKEN = "04A2B3C4D5E6F708090A0B0C0D0E0F1011"  # 34 characters: does not fit a 1.6 idTag
START_OK = {"transactionId": 77, "idTagInfo": {"status": "Accepted"}}
STOP_OK = {"idTagInfo": {"status": "Accepted"}}
ACCEPTED = {"idTokenInfo": {"status": "Accepted"}}


def make(options: Options | None = None) -> V201ChargerToV16Csms:
    clock = Clock()
    return V201ChargerToV16Csms(options, now=clock, session_started_at=clock())


def tok(value: str = "TAG1", kind: str = "ISO14443") -> JsonDict:
    return {"idToken": value, "type": kind}


def reg(value: float, context: str | None = None, ts: str = T0, **unit: Any) -> JsonDict:
    """One meterValue with one energy-register sample."""
    sample: JsonDict = {"value": value, "measurand": "Energy.Active.Import.Register"}
    if context:
        sample["context"] = context
    if unit:
        sample["unitOfMeasure"] = unit
    return {"timestamp": ts, "sampledValue": [sample]}


def event(
    event_type: str,
    seq: int,
    trigger: str,
    *,
    tx: str = "TX1",
    ts: str = T0,
    evse: int | None = 1,
    token: JsonDict | None = None,
    state: str | None = None,
    stopped: str | None = None,
    meter_value: list[JsonDict] | None = None,
    **extra: Any,
) -> JsonDict:
    info: JsonDict = {"transactionId": tx}
    if state:
        info["chargingState"] = state
    if stopped:
        info["stoppedReason"] = stopped
    payload: JsonDict = {
        "eventType": event_type,
        "timestamp": ts,
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": info,
        **extra,
    }
    if evse is not None and event_type == "Started":
        payload["evse"] = {"id": evse, "connectorId": 1}
    if token is not None:
        payload["idToken"] = token
    if meter_value is not None:
        payload["meterValue"] = meter_value
    return payload


def send(tr: V201ChargerToV16Csms, payload: JsonDict, answers: Any = ()) -> Outcome:
    return exchange(tr, "charger", "TransactionEvent", payload, answers)


def then(out: Outcome) -> list[tuple[str, JsonDict]]:
    """The 1.6 CALLs one exchange sent the CSMS besides a StartTransaction, in order: the plan's own calls
    (acknowledged before the charger is answered), then the gateway's CALLs after the answer (a queue flushed by
    StartTransaction.conf)."""
    own = [(c.action, c.payload) for c in out.calls if c.action != "StartTransaction"]
    return own + [(c.action, c.payload) for c in out.plan.then_to_csms]


def status(tr: V201ChargerToV16Csms, value: str, evse: int = 1, connector: int = 1, ts: str = T0) -> Outcome:
    payload = {"timestamp": ts, "connectorStatus": value, "evseId": evse, "connectorId": connector}
    return exchange(tr, "charger", "StatusNotification", payload, {})


def sent_status(out: Outcome) -> list[str]:
    """1.6 statuses sent by one exchange, as calls or gateway CALLs after the answer."""
    return [p["status"] for a, p in then(out) if a == "StatusNotification"]


def started(tr: V201ChargerToV16Csms, *, tx: str = "TX1", meter_wh: int = 1000, **kw: Any) -> Outcome:
    """A Started with the TAG1 token and a Transaction.Begin reading, accepted by the CSMS with id 77."""
    payload = event(
        "Started", 0, "Authorized", tx=tx, token=tok(), meter_value=[reg(meter_wh, "Transaction.Begin")], **kw
    )
    return send(tr, payload, START_OK)


# -- meter values (§4.3) -----------------------------------------------------------------------------------------


class TestMeterConversion:
    @pytest.mark.parametrize(
        ("value", "multiplier", "text"),
        [
            (1.5, 3, "1500"),
            (1e-7, 0, "0.0000001"),
            (12.50, 0, "12.5"),
            (0.0, 5, "0"),
            (2, -3, "0.002"),
            (1e18, 0, "1000000000000000000"),
            (9.2e15, 3, "9200000000000000000"),
            (5e-324, 0, "0." + "0" * 323 + "5"),
            (7, 3.0, "7000"),  # an integral float is an integer for the 2.0.1 schema
            (-3.25, 1, "-32.5"),
            (230, 0, "230"),
        ],
    )
    def test_value_text_has_no_exponent_and_applies_the_multiplier(
        self, value: float, multiplier: int, text: str
    ) -> None:
        assert meter.decimal_text(value, multiplier) == text

    @pytest.mark.parametrize(
        ("value", "multiplier"),
        [(1e21, 0), (9.3e18, 0), (-1e16, 3), (1.0, 19), (5e-324, -1), (1, 10**9), (1, -(10**9))],
    )
    def test_value_out_of_the_carried_range_has_no_text(self, value: float, multiplier: int) -> None:
        assert meter.decimal_text(value, multiplier) is None

    def test_multiplier_applied_into_the_value_and_unit_kept(self) -> None:
        tr = make()
        mv = [{"timestamp": T0, "sampledValue": [{"value": 1.5, "unitOfMeasure": {"unit": "kWh", "multiplier": 3}}]}]
        out = exchange(tr, "charger", "MeterValues", {"evseId": 1, "meterValue": mv}, {})
        assert out.calls[0].payload == {
            "connectorId": 1,
            "meterValue": [{"timestamp": T0, "sampledValue": [{"value": "1500", "unit": "kWh"}]}],
        }

    def test_context_phase_location_measurand_copied(self) -> None:
        tr = make()
        sample = {
            "value": 231.4,
            "context": "Sample.Clock",
            "measurand": "Voltage",
            "phase": "L2-N",
            "location": "Inlet",
            "unitOfMeasure": {"unit": "V"},
        }
        out = exchange(
            tr, "charger", "MeterValues", {"evseId": 0, "meterValue": [{"timestamp": T0, "sampledValue": [sample]}]}, {}
        )
        assert out.calls[0].payload["connectorId"] == 0
        assert out.calls[0].payload["meterValue"][0]["sampledValue"] == [
            {
                "value": "231.4",
                "context": "Sample.Clock",
                "measurand": "Voltage",
                "phase": "L2-N",
                "location": "Inlet",
                "unit": "V",
            }
        ]

    def test_unit_without_16_value_is_omitted_and_counted(self) -> None:
        tr = make()
        samples = [
            {"value": 50, "measurand": "Frequency", "unitOfMeasure": {"unit": "Hertz"}},
            {"value": 12, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
        ]
        out = exchange(
            tr, "charger", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": T0, "sampledValue": samples}]}, {}
        )
        assert out.calls[0].payload["meterValue"][0]["sampledValue"] == [
            {"value": "50", "measurand": "Frequency"},
            {"value": "12", "measurand": "SoC", "unit": "Percent"},
        ]
        assert tr.take_dropped() == [("MeterValues", "unit_not_in_16")]

    @pytest.mark.parametrize("measurand", sorted(meter.UNSUPPORTED_MEASURANDS))
    def test_measurands_without_16_value_are_dropped(self, measurand: str) -> None:
        tr = make()
        mv = [
            {"timestamp": T0, "sampledValue": [{"value": 1, "measurand": measurand}, {"value": 2}]},
            {"timestamp": T1, "sampledValue": [{"value": 3, "measurand": measurand}]},
        ]
        out = exchange(tr, "charger", "MeterValues", {"evseId": 1, "meterValue": mv}, {})
        assert out.calls[0].payload["meterValue"] == [{"timestamp": T0, "sampledValue": [{"value": "2"}]}]
        assert tr.take_dropped() == [
            ("MeterValues", "unsupported_measurand"),
            ("MeterValues", "unsupported_measurand"),
            ("MeterValues", "empty_meter_value"),
        ]

    def test_every_other_201_measurand_exists_in_16(self) -> None:
        import ocpp

        root = Path(ocpp.__file__).parent
        v201 = json.loads((root / "v201/schemas/MeterValuesRequest.json").read_text())
        v16 = json.loads((root / "v16/schemas/MeterValues.json").read_text())
        enum201 = set(v201["definitions"]["MeasurandEnumType"]["enum"])
        sampled = v16["properties"]["meterValue"]["items"]["properties"]["sampledValue"]["items"]["properties"]
        assert enum201 - meter.UNSUPPORTED_MEASURANDS <= set(sampled["measurand"]["enum"])
        assert enum201 >= meter.UNSUPPORTED_MEASURANDS
        assert set(sampled["unit"]["enum"]) >= meter.UNITS_16

    def test_message_with_nothing_left_is_answered_without_a_16_call(self) -> None:
        tr = make()
        mv = [{"timestamp": T0, "sampledValue": [{"value": 1, "measurand": "Energy.Active.Net"}]}]
        out = exchange(tr, "charger", "MeterValues", {"evseId": 1, "meterValue": mv}, {})
        assert out.calls == [] and out.answer == {} and out.plan.reason == "no_convertible_samples"

    def test_signed_value_becomes_an_extra_signed_data_sample(self) -> None:
        tr = make()
        sample = {
            "value": 12.3,
            "context": "Sample.Periodic",
            "unitOfMeasure": {"unit": "kWh"},
            "signedMeterValue": {
                "signedMeterData": "OCMF|{}|{}",
                "signingMethod": "ECDSA-secp256r1-SHA256",
                "encodingMethod": "OCMF",
                "publicKey": "KEY",
            },
        }
        out = exchange(
            tr, "charger", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [sample]}]}, {}
        )
        assert out.calls[0].payload["meterValue"][0]["sampledValue"] == [
            {"value": "12.3", "context": "Sample.Periodic", "unit": "kWh"},
            {"value": "OCMF|{}|{}", "format": "SignedData", "context": "Sample.Periodic"},
        ]
        assert ("MeterValues", "signed_method_dropped") in tr.take_dropped()

    @pytest.mark.parametrize(
        ("meter_values", "context", "wh"),
        [
            ([reg(12.3456, unit="kWh")], None, 12346),
            ([reg(1.2345, unit="kWh", multiplier=1)], None, 12345),
            ([reg(0.5)], None, 1),  # rounded half-up
            ([reg(123, unit="Wh", multiplier=-1)], None, 12),
            ([reg(5, multiplier=3)], None, 5000),
            ([reg(7, "Transaction.Begin", T0), reg(9, "Sample.Periodic", T1)], "Transaction.Begin", 7),
            ([reg(7, "Sample.Periodic", T1), reg(9, "Sample.Periodic", T0)], "Transaction.End", 7),  # latest
            ([{"timestamp": T0, "sampledValue": [{"value": 4}]}], None, 4),  # absent measurand = the register
            ([{"timestamp": T0, "sampledValue": [{"value": 4, "phase": "L1"}]}], None, None),
            ([{"timestamp": T0, "sampledValue": [{"value": 4, "measurand": "Power.Active.Import"}]}], None, None),
            ([reg(4, unit="varh")], None, None),
        ],
    )
    def test_energy_register_in_integer_wh(self, meter_values: list[JsonDict], context: str | None, wh: int) -> None:
        assert meter.energy_wh(meter_values, context) == wh


# -- every charger-initiated message: one table (§4.1, §5.2) -----------------------------------------------------

EXT = Options(security_extension=True)
WRAP = Options(wrap_untranslatable=True)
PROFILE = {
    "id": 1,
    "stackLevel": 0,
    "chargingProfilePurpose": "TxDefaultProfile",
    "chargingProfileKind": "Absolute",
    "chargingSchedule": [
        {"id": 1, "chargingRateUnit": "A", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16}]}
    ],
}
SCHEDULE = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}]}
NOTIFY_EVENT = {
    "generatedAt": T0,
    "seqNo": 0,
    "eventData": [
        {
            "eventId": 1,
            "timestamp": T0,
            "trigger": "Alerting",
            "actualValue": "true",
            "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector"},
            "variable": {"name": "Problem"},
        }
    ],
}
DROPPED = {"_dropped": True}

# (id, options, action, payload, CSMS answers, expected 1.6 calls, expected answer, expected then-calls)
TABLE: list[tuple[str, Options | None, str, JsonDict, Any, list[tuple[str, JsonDict]], Any, list[tuple[str, JsonDict]]]]
TABLE = [
    ("heartbeat", None, "Heartbeat", {}, {"currentTime": T1}, [("Heartbeat", {})], {"currentTime": T1}, []),
    (
        "boot",
        None,
        "BootNotification",
        {
            "reason": "PowerUp",
            "chargingStation": {
                "model": "W1",
                "vendorName": "ACME",
                "serialNumber": "SN-1",
                "firmwareVersion": "2.1",
                "modem": {"iccid": "8944", "imsi": "2620"},
            },
        },
        {"status": "Pending", "currentTime": T1, "interval": 30},
        [
            (
                "BootNotification",
                {
                    "chargePointVendor": "ACME",
                    "chargePointModel": "W1",
                    "chargePointSerialNumber": "SN-1",
                    "firmwareVersion": "2.1",
                    "iccid": "8944",
                    "imsi": "2620",
                },
            )
        ],
        {"status": "Pending", "currentTime": T1, "interval": 30},
        [],
    ),
    (
        "authorize",
        None,
        "Authorize",
        {"idToken": tok()},
        {"idTagInfo": {"status": "Blocked", "expiryDate": T4, "parentIdTag": "GRP"}},
        [("Authorize", {"idTag": "TAG1"})],
        {
            "idTokenInfo": {
                "status": "Blocked",
                "cacheExpiryDateTime": T4,
                "groupIdToken": {"idToken": "GRP", "type": "Central"},
            }
        },
        [],
    ),
    (
        "authorize_long_reject",
        None,
        "Authorize",
        {"idToken": tok(LONG_TOKEN, "ISO15693")},
        {},
        [],
        {"idTokenInfo": {"status": "Invalid"}},
        [],
    ),
    (
        "authorize_long_alias",
        Options(long_id_tokens="alias"),
        "Authorize",
        {"idToken": tok(LONG_TOKEN, "ISO15693")},
        {"idTagInfo": {"status": "Accepted"}},
        [("Authorize", {"idTag": id_alias(LONG_TOKEN, "ISO15693")})],
        ACCEPTED,
        [],
    ),
    (
        "authorize_free_vend",
        Options(free_vend_idtag="FREE"),
        "Authorize",
        {"idToken": {"idToken": "", "type": "NoAuthorization"}},
        {"idTagInfo": {"status": "Accepted"}},
        [("Authorize", {"idTag": "FREE"})],
        ACCEPTED,
        [],
    ),
    (
        "meter_values_main_meter",
        None,
        "MeterValues",
        {"evseId": 0, "meterValue": [reg(10)]},
        {},
        [
            (
                "MeterValues",
                {
                    "connectorId": 0,
                    "meterValue": [
                        {
                            "timestamp": T0,
                            "sampledValue": [{"value": "10", "measurand": "Energy.Active.Import.Register"}],
                        }
                    ],
                },
            )
        ],
        {},
        [],
    ),
    (
        "meter_values_unmapped_evse",
        Options(connector_map={1: (1, 1)}),
        "MeterValues",
        {"evseId": 4, "meterValue": [reg(10)]},
        {},
        [],
        {},
        [],
    ),
    (
        "data_transfer_object",
        None,
        "DataTransfer",
        {"vendorId": "com.acme", "messageId": "Price", "data": {"a": [1, 2]}},
        {"status": "Accepted", "data": '{"ok":true}'},
        [("DataTransfer", {"vendorId": "com.acme", "messageId": "Price", "data": '{"a":[1,2]}'})],
        {"status": "Accepted", "data": '{"ok":true}'},
        [],
    ),
    (
        "data_transfer_string",
        None,
        "DataTransfer",
        {"vendorId": "com.acme", "data": "raw"},
        {"status": "UnknownMessageId"},
        [("DataTransfer", {"vendorId": "com.acme", "data": "raw"})],
        {"status": "UnknownMessageId"},
        [],
    ),
    (
        "firmware_core_shared",
        None,
        "FirmwareStatusNotification",
        {"status": "Installing", "requestId": 3},
        {},
        [("FirmwareStatusNotification", {"status": "Installing"})],
        {},
        [],
    ),
    (
        "firmware_core_invalid_signature",
        None,
        "FirmwareStatusNotification",
        {"status": "InvalidSignature", "requestId": 3},
        {},
        [("FirmwareStatusNotification", {"status": "InstallationFailed"})],
        {},
        [],
    ),
    (
        "firmware_core_not_in_16",
        None,
        "FirmwareStatusNotification",
        {"status": "DownloadScheduled", "requestId": 3},
        {},
        [],
        {},
        [],
    ),
    (
        "firmware_ext",
        EXT,
        "FirmwareStatusNotification",
        {"status": "DownloadScheduled", "requestId": 3},
        {},
        [("SignedFirmwareStatusNotification", {"status": "DownloadScheduled", "requestId": 3})],
        {},
        [],
    ),
    (
        "log_core_failure",
        None,
        "LogStatusNotification",
        {"status": "PermissionDenied", "requestId": 4},
        {},
        [("DiagnosticsStatusNotification", {"status": "UploadFailed"})],
        {},
        [],
    ),
    (
        "log_core_uploaded",
        None,
        "LogStatusNotification",
        {"status": "Uploaded", "requestId": 4},
        {},
        [("DiagnosticsStatusNotification", {"status": "Uploaded"})],
        {},
        [],
    ),
    (
        "log_ext",
        EXT,
        "LogStatusNotification",
        {"status": "BadMessage", "requestId": 4},
        {},
        [("LogStatusNotification", {"status": "BadMessage", "requestId": 4})],
        {},
        [],
    ),
    (
        "log_accepted_canceled",
        EXT,
        "LogStatusNotification",
        {"status": "AcceptedCanceled", "requestId": 4},
        {},
        [],
        {},
        [],
    ),
    (
        "security_event_ext",
        EXT,
        "SecurityEventNotification",
        {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "v2"},
        {},
        [("SecurityEventNotification", {"type": "FirmwareUpdated", "timestamp": T0, "techInfo": "v2"})],
        {},
        [],
    ),
    (
        "security_event_wrapped",
        WRAP,
        "SecurityEventNotification",
        {"type": "TamperDetectionActivated", "timestamp": T0},
        {},
        [],
        {},
        [
            (
                "DataTransfer",
                {
                    "vendorId": "org.openchargealliance.ocpp201",
                    "messageId": "SecurityEventNotification",
                    "data": '{"type":"TamperDetectionActivated","timestamp":"2025-03-01T12:00:00.000Z"}',
                },
            )
        ],
    ),
    (
        "security_event_dropped",
        None,
        "SecurityEventNotification",
        {"type": "TamperDetectionActivated", "timestamp": T0},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "sign_certificate_ext",
        EXT,
        "SignCertificate",
        {"csr": "CSR", "certificateType": "ChargingStationCertificate"},
        {"status": "Accepted"},
        [("SignCertificate", {"csr": "CSR"})],
        {"status": "Accepted"},
        [],
    ),
    (
        "sign_certificate_v2g",
        EXT,
        "SignCertificate",
        {"csr": "CSR", "certificateType": "V2GCertificate"},
        {},
        [],
        {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn16"}},
        [],
    ),
    (
        "sign_certificate_no_ext",
        None,
        "SignCertificate",
        {"csr": "CSR"},
        {},
        [],
        {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn16"}},
        [],
    ),
    ("notify_report", WRAP, "NotifyReport", {"requestId": 1, "generatedAt": T0, "seqNo": 0}, {}, [], DROPPED, []),
    (
        "notify_event_wrapped",
        WRAP,
        "NotifyEvent",
        NOTIFY_EVENT,
        {},
        [],
        {},
        [
            (
                "DataTransfer",
                {
                    "vendorId": "org.openchargealliance.ocpp201",
                    "messageId": "NotifyEvent",
                    "data": json.dumps(NOTIFY_EVENT, separators=(",", ":")),
                },
            )
        ],
    ),
    ("notify_event_dropped", None, "NotifyEvent", NOTIFY_EVENT, {}, [], DROPPED, []),
    (
        "notify_monitoring_report",
        WRAP,
        "NotifyMonitoringReport",
        {"requestId": 1, "seqNo": 0, "generatedAt": T0},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "notify_customer_information",
        WRAP,
        "NotifyCustomerInformation",
        {"data": "x", "seqNo": 0, "generatedAt": T0, "requestId": 2},
        {},
        [],
        DROPPED,
        [],
    ),
    ("notify_display_messages", WRAP, "NotifyDisplayMessages", {"requestId": 3}, {}, [], DROPPED, []),
    (
        "report_charging_profiles",
        WRAP,
        "ReportChargingProfiles",
        {"requestId": 4, "chargingLimitSource": "CSO", "evseId": 1, "chargingProfile": [PROFILE]},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "reservation_status_update",
        WRAP,
        "ReservationStatusUpdate",
        {"reservationId": 5, "reservationUpdateStatus": "Expired"},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "publish_firmware_status",
        WRAP,
        "PublishFirmwareStatusNotification",
        {"status": "Published"},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "notify_charging_limit_wrapped",
        WRAP,
        "NotifyChargingLimit",
        {"chargingLimit": {"chargingLimitSource": "EMS"}},
        {},
        [],
        {},
        [
            (
                "DataTransfer",
                {
                    "vendorId": "org.openchargealliance.ocpp201",
                    "messageId": "NotifyChargingLimit",
                    "data": '{"chargingLimit":{"chargingLimitSource":"EMS"}}',
                },
            )
        ],
    ),
    (
        "notify_charging_limit_dropped",
        None,
        "NotifyChargingLimit",
        {"chargingLimit": {"chargingLimitSource": "EMS"}},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "cleared_charging_limit_wrapped",
        WRAP,
        "ClearedChargingLimit",
        {"chargingLimitSource": "SO", "evseId": 1},
        {},
        [],
        {},
        [
            (
                "DataTransfer",
                {
                    "vendorId": "org.openchargealliance.ocpp201",
                    "messageId": "ClearedChargingLimit",
                    "data": '{"chargingLimitSource":"SO","evseId":1}',
                },
            )
        ],
    ),
    (
        "cleared_charging_limit_dropped",
        None,
        "ClearedChargingLimit",
        {"chargingLimitSource": "SO"},
        {},
        [],
        DROPPED,
        [],
    ),
    (
        "ev_charging_needs",
        WRAP,
        "NotifyEVChargingNeeds",
        {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC"}},
        {},
        [],
        {"status": "Rejected", "statusInfo": {"reasonCode": "NotIn16"}},
        [],
    ),
    (
        "ev_charging_schedule",
        WRAP,
        "NotifyEVChargingSchedule",
        {"timeBase": T0, "evseId": 1, "chargingSchedule": SCHEDULE},
        {},
        [],
        {"status": "Accepted"},
        [],
    ),
    (
        "certificate_status",
        EXT,
        "GetCertificateStatus",
        {
            "ocspRequestData": {
                "hashAlgorithm": "SHA256",
                "issuerNameHash": "a",
                "issuerKeyHash": "b",
                "serialNumber": "c",
                "responderURL": "http://ocsp",
            }
        },
        {},
        [],
        {"status": "Failed", "statusInfo": {"reasonCode": "NotIn16"}},
        [],
    ),
    (
        "status_available",
        None,
        "StatusNotification",
        {"timestamp": T1, "connectorStatus": "Available", "evseId": 2, "connectorId": 1},
        {},
        [("StatusNotification", {"connectorId": 2, "errorCode": "NoError", "status": "Available", "timestamp": T1})],
        {},
        [],
    ),
    (
        "status_faulted",
        None,
        "StatusNotification",
        {"timestamp": T1, "connectorStatus": "Faulted", "evseId": 1, "connectorId": 1},
        {},
        [("StatusNotification", {"connectorId": 1, "errorCode": "OtherError", "status": "Faulted", "timestamp": T1})],
        {},
        [],
    ),
    (
        "status_occupied_without_transaction",
        None,
        "StatusNotification",
        {"timestamp": T1, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        {},
        [("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing", "timestamp": T1})],
        {},
        [],
    ),
    (
        "status_unmapped_connector",
        None,
        "StatusNotification",
        {"timestamp": T1, "connectorStatus": "Available", "evseId": 1, "connectorId": 2},
        {},
        [],
        {},
        [],
    ),
    (
        "transaction_started_with_token",
        None,
        "TransactionEvent",
        event("Started", 0, "Authorized", token=tok(), meter_value=[reg(1000, "Transaction.Begin")]),
        START_OK,
        [("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": T0})],
        ACCEPTED,
        [],
    ),
    (
        "transaction_started_cable_first",
        None,
        "TransactionEvent",
        event("Started", 0, "CablePluggedIn", state="EVConnected"),
        {},
        [],
        {},
        [],
    ),
]


@pytest.mark.parametrize(
    ("options", "action", "payload", "answers", "calls", "answer", "then_calls"),
    [row[1:] for row in TABLE],
    ids=[row[0] for row in TABLE],
)
def test_charger_message_table(
    options: Options | None,
    action: str,
    payload: JsonDict,
    answers: Any,
    calls: list[tuple[str, JsonDict]],
    answer: Any,
    then_calls: list[tuple[str, JsonDict]],
) -> None:
    tr = make(options)
    out = exchange(tr, "charger", action, payload, answers)
    assert out.error is None
    assert [(c.action, c.payload) for c in out.calls] == calls
    if answer is DROPPED:
        assert out.answer == {} and (action, "message") in tr.take_dropped()
    else:
        assert out.answer == answer
    assert [(c.action, c.payload) for c in out.plan.then_to_csms] == then_calls
    if not calls:
        assert out.plan.reason, "a local answer names its reason"


def test_table_covers_every_charger_action() -> None:
    assert {row[2] for row in TABLE} | {"Get15118EVCertificate"} == set(CHARGER_HANDLERS)


def test_get_15118_ev_certificate_is_not_supported() -> None:
    tr = make(EXT)
    payload = {"iso15118SchemaVersion": "urn:iso:15118:2:2013:MsgDef", "action": "Install", "exiRequest": "AAA"}
    out = exchange(tr, "charger", "Get15118EVCertificate", payload)
    assert out.error is not None and out.error[0] == "NotSupported" and out.calls == []


def test_policy_keys_and_handlers_match() -> None:
    assert set(CHARGER_POLICY) == set(CHARGER_HANDLERS)
    assert set(CHARGER_HANDLERS) == V201_STATION_ACTIONS | {"DataTransfer"}
    assert all(POLICY[action] for action in CHARGER_HANDLERS)
    assert all(isinstance(text, str) and text and "\n" not in text for text in CHARGER_POLICY.values())


def test_wrong_direction_and_unknown_actions() -> None:
    tr = make()
    wrong = tr.from_charger("RemoteStartTransaction", {}).error
    assert wrong is not None and wrong[0] == "NotSupported"
    unknown = tr.from_charger("StartTransaction", {}).error  # a 1.6 name: unknown to a 2.0.1 charger
    assert unknown is not None and unknown[0] == "NotImplemented"


# -- BootNotification ------------------------------------------------------------------------------------------


class TestBoot:
    BOOT_OK: ClassVar[JsonDict] = {"status": "Accepted", "currentTime": T0, "interval": 60}

    def test_long_vendor_is_truncated_and_counted_reason_kept(self) -> None:
        tr = make()
        payload = {
            "reason": "RemoteReset",
            "chargingStation": {"model": "M", "vendorName": "A Very Long Vendor Name Ltd"},
        }
        out = exchange(tr, "charger", "BootNotification", payload, self.BOOT_OK)
        assert out.calls[0].payload == {"chargePointVendor": "A Very Long Vendor N", "chargePointModel": "M"}
        assert tr.take_dropped() == [("BootNotification", "vendor_truncated")]
        assert tr.state.boot is not None and tr.state.boot["reason"] == "RemoteReset"
        assert tr.state.boot_result == self.BOOT_OK

    def test_configured_vendor_overrides(self) -> None:
        tr = make(Options(charge_point_vendor="Override"))
        payload = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "A Very Long Vendor Name Ltd"}}
        out = exchange(tr, "charger", "BootNotification", payload, self.BOOT_OK)
        assert out.calls[0].payload["chargePointVendor"] == "Override" and tr.take_dropped() == []

    def test_accepted_boot_lets_unchanged_statuses_through_again(self) -> None:
        tr = make()
        assert sent_status(status(tr, "Available")) == ["Available"]
        assert sent_status(status(tr, "Available")) == []
        boot = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}
        exchange(tr, "charger", "BootNotification", boot, {**self.BOOT_OK, "status": "Pending"})
        assert sent_status(status(tr, "Available")) == []
        exchange(tr, "charger", "BootNotification", boot, self.BOOT_OK)
        assert sent_status(status(tr, "Available")) == ["Available"]


# -- StatusNotification ------------------------------------------------------------------------------------------


class TestStatus:
    def test_occupied_and_charging_state_send_16_status_only_on_change(self) -> None:
        tr = make()
        assert sent_status(status(tr, "Occupied")) == ["Preparing"]
        assert status(tr, "Occupied").plan.reason == "status_unchanged"
        out = started(tr, state="Charging")
        assert sent_status(out) == ["Charging"]
        seen = []
        for seq, state in enumerate(["Charging", "SuspendedEV", "EVConnected", "Idle", "SuspendedEVSE", "Charging"], 1):
            out = send(tr, event("Updated", seq, "ChargingStateChanged", state=state))
            seen.append(sent_status(out))
            assert out.answer == {}
        assert seen == [[], ["SuspendedEV"], ["SuspendedEVSE"], ["SuspendedEV"], ["SuspendedEVSE"], ["Charging"]]
        assert sent_status(status(tr, "Occupied")) == []
        out = send(tr, event("Ended", 7, "EVDeparted", stopped="EVDisconnected"))
        assert [a for a, _ in then(out)] == ["StopTransaction", "StatusNotification"]
        assert sent_status(out) == ["Finishing"]
        assert sent_status(status(tr, "Occupied")) == []
        assert sent_status(status(tr, "Available")) == ["Available"]
        assert sent_status(status(tr, "Occupied")) == ["Preparing"]  # a new car, no transaction yet

    def test_status_before_the_16_transaction_exists_is_preparing(self) -> None:
        tr = make()
        status(tr, "Occupied")
        out = send(tr, event("Started", 0, "CablePluggedIn", state="Charging"))
        assert sent_status(out) == [] and out.calls == []
        assert status(tr, "Occupied").plan.reason == "status_unchanged"

    def test_transaction_event_before_occupied_status_is_accounted_for_later(self) -> None:
        tr = make()
        out = started(tr, state="SuspendedEV")
        assert sent_status(out) == []
        assert sent_status(status(tr, "Occupied")) == ["SuspendedEV"]

    def test_csms_error_lets_the_retry_send_the_status_again(self) -> None:
        tr = make()
        out = exchange(
            tr,
            "charger",
            "StatusNotification",
            {"timestamp": T0, "connectorStatus": "Unavailable", "evseId": 1, "connectorId": 1},
            ("InternalError", "busy"),
        )
        assert out.error == ("InternalError", "busy")
        assert sent_status(status(tr, "Unavailable")) == ["Unavailable"]

    def test_shared_evse_connector_maps_back(self) -> None:
        tr = make(Options(connector_map={1: (1, 1), 2: (1, 2)}))
        out = status(tr, "Reserved", evse=1, connector=2)
        assert out.calls[0].payload["connectorId"] == 2 and out.calls[0].payload["status"] == "Reserved"


class TestTriggeredStatus:
    """A StatusNotification the 1.6 CSMS asked for with TriggerMessage reaches it even when the 1.6 status did not
    change (the gateway would otherwise answer it ``{}`` itself: ``status_unchanged``)."""

    OK: ClassVar[JsonDict] = {"status": "Accepted"}

    @staticmethod
    def trigger(
        tr: V201ChargerToV16Csms, answer: Any, connector: int | None = 1, action: str = "TriggerMessage"
    ) -> None:
        request: JsonDict = {"requestedMessage": "StatusNotification"}
        if connector is not None:
            request["connectorId"] = connector
        exchange(tr, "csms", action, request, answer)

    def test_a_triggered_status_goes_out_unchanged_once(self) -> None:
        tr = make()
        assert sent_status(status(tr, "Available")) == ["Available"]
        self.trigger(tr, self.OK)
        out = status(tr, "Available")
        assert [(c.action, c.payload) for c in out.calls] == [
            ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": T0})
        ]
        assert out.answer == {} and tr.state.status_triggers == []
        assert status(tr, "Available").plan.reason == "status_unchanged"  # used: the next one is not forced

    def test_an_extended_trigger_counts_too_and_an_occupied_connector_sends_its_derived_status(self) -> None:
        tr = make()
        status(tr, "Occupied")
        self.trigger(tr, self.OK, action="ExtendedTriggerMessage")
        assert sent_status(status(tr, "Occupied")) == ["Preparing"]

    def test_a_trigger_for_one_connector_forces_only_that_one(self) -> None:
        tr = make()
        status(tr, "Available", evse=1)
        status(tr, "Available", evse=2)
        self.trigger(tr, self.OK, connector=2)
        assert sent_status(status(tr, "Available", evse=1)) == []
        assert sent_status(status(tr, "Available", evse=2)) == ["Available"]

    @pytest.mark.parametrize("connector", [None, 0])
    def test_a_trigger_for_the_station_forces_the_next_status_of_every_connector(self, connector: int | None) -> None:
        tr = make()
        status(tr, "Available", evse=1)
        status(tr, "Unavailable", evse=2)
        self.trigger(tr, self.OK, connector=connector)
        assert sent_status(status(tr, "Available", evse=1)) == ["Available"]
        assert sent_status(status(tr, "Unavailable", evse=2)) == ["Unavailable"]
        assert sent_status(status(tr, "Available", evse=1)) == []  # each connector once

    @pytest.mark.parametrize("answer", [{"status": "Rejected"}, {"status": "NotImplemented"}, ("NotSupported", "")])
    def test_a_trigger_the_charger_refused_forces_nothing(self, answer: Any) -> None:
        tr = make()
        status(tr, "Available")
        self.trigger(tr, answer)
        assert tr.state.status_triggers == []
        assert sent_status(status(tr, "Available")) == []

    def test_a_trigger_survives_a_reconnect(self) -> None:
        tr = make()
        status(tr, "Available")
        self.trigger(tr, self.OK)
        fresh = make()
        fresh.restore(json.loads(json.dumps(tr.snapshot())))
        assert sent_status(status(fresh, "Available")) == ["Available"]

    def test_a_trigger_is_forgotten_after_a_minute(self) -> None:
        clock = Clock()
        tr = V201ChargerToV16Csms(now=clock, session_started_at=clock())
        status(tr, "Available")
        self.trigger(tr, self.OK)
        clock.advance(61)
        assert sent_status(status(tr, "Available")) == []
        assert tr.state.status_triggers == []

    def test_a_csms_error_on_the_triggered_status_lets_the_retry_through(self) -> None:
        tr = make()
        status(tr, "Available")
        self.trigger(tr, self.OK)
        payload = {"timestamp": T0, "connectorStatus": "Available", "evseId": 1, "connectorId": 1}
        failed = exchange(tr, "charger", "StatusNotification", payload, ("InternalError", "busy"))
        assert failed.error is not None and failed.calls
        assert sent_status(status(tr, "Available")) == ["Available"]

    def test_triggers_are_bounded(self) -> None:
        tr = make()
        for connector in range(1, 40):
            self.trigger(tr, self.OK, connector=connector)
        self.trigger(tr, self.OK, connector=39)  # the same target again replaces the older one
        kept = tr.state.status_triggers
        assert len(kept) == 16
        assert [t["evse"] for t in kept] == list(range(24, 40))


# -- transactions (§4.2) ---------------------------------------------------------------------------------------


class TestTransactions:
    def test_start_update_stop_with_matching_ids(self) -> None:
        tr = make()
        status(tr, "Occupied")
        out = started(tr, state="Charging", reservationId=9)
        assert [(c.action, c.payload) for c in out.calls] == [
            (
                "StartTransaction",
                {"connectorId": 1, "idTag": "TAG1", "meterStart": 1000, "timestamp": T0, "reservationId": 9},
            )
        ]
        assert out.answer == ACCEPTED
        assert tr.state.transactions["TX1"].tx_int == 77
        mv = [reg(1.5, "Sample.Periodic", T1, unit="kWh")]
        out = send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=mv))
        # the charger's {} comes once the CSMS acknowledged the MeterValues (never before the CSMS has it)
        assert out.plan.then_to_csms == [] and out.answer == {}
        assert then(out) == [
            (
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": 77,
                    "meterValue": [
                        {
                            "timestamp": T1,
                            "sampledValue": [
                                {
                                    "value": "1.5",
                                    "context": "Sample.Periodic",
                                    "measurand": "Energy.Active.Import.Register",
                                    "unit": "kWh",
                                }
                            ],
                        }
                    ],
                },
            )
        ]
        out = send(
            tr,
            event(
                "Ended",
                2,
                "EVDeparted",
                ts=T2,
                stopped="EVDisconnected",
                meter_value=[reg(2.5, "Transaction.End", T2, unit="kWh")],
            ),
        )
        assert out.answer == {} and out.plan.then_to_csms == []
        stop = then(out)[0]
        assert stop == (
            "StopTransaction",
            {
                "meterStop": 2500,
                "timestamp": T2,
                "reason": "EVDisconnected",
                "transactionData": [
                    {
                        "timestamp": T2,
                        "sampledValue": [
                            {
                                "value": "2.5",
                                "context": "Transaction.End",
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "kWh",
                            }
                        ],
                    }
                ],
                "transactionId": 77,
            },
        )
        rec = tr.state.transactions["TX1"]
        assert rec.phase == "ended" and tr.state.open_tx_on_evse(1) is None

    def test_started_begin_samples_are_dropped_and_other_contexts_follow_as_meter_values(self) -> None:
        tr = make()
        mv = [
            {
                "timestamp": T0,
                "sampledValue": [
                    {"value": 1000, "context": "Transaction.Begin"},
                    {
                        "value": 40,
                        "context": "Transaction.Begin",
                        "measurand": "SoC",
                        "unitOfMeasure": {"unit": "Percent"},
                    },
                    {"value": 7.4, "context": "Sample.Periodic", "measurand": "Power.Active.Import"},
                ],
            }
        ]
        out = send(tr, event("Started", 0, "Authorized", token=tok(), meter_value=mv), START_OK)
        assert out.calls[0].payload["meterStart"] == 1000
        assert then(out) == [
            (
                "MeterValues",
                {
                    "connectorId": 1,
                    "transactionId": 77,
                    "meterValue": [
                        {
                            "timestamp": T0,
                            "sampledValue": [
                                {"value": "7.4", "context": "Sample.Periodic", "measurand": "Power.Active.Import"}
                            ],
                        }
                    ],
                },
            )
        ]
        assert tr.take_dropped() == [("TransactionEvent", "begin_sample_dropped")]

    def test_cable_first_then_authorized_flushes_queue_in_order_with_the_csms_id(self) -> None:
        tr = make()
        status(tr, "Occupied")
        out = send(
            tr, event("Started", 0, "CablePluggedIn", state="EVConnected", meter_value=[reg(500, "Transaction.Begin")])
        )
        assert out.calls == [] and then(out) == [] and out.answer == {} and out.plan.reason == "tx_held"
        rec = tr.state.transactions["TX1"]
        assert (rec.start_state, rec.start_ts, rec.meter_start_wh) == ("held", T0, 500)
        for seq, (ts, wh) in enumerate([(T1, 600), (T2, 700)], 1):
            out = send(tr, event("Updated", seq, "MeterValuePeriodic", ts=ts, meter_value=[reg(wh, ts=ts)]))
            assert out.calls == [] and then(out) == [] and out.answer == {}
        assert [q[1]["meterValue"][0]["sampledValue"][0]["value"] for q in tr.state.transactions["TX1"].queue] == [
            "600",
            "700",
        ]
        out = send(
            tr,
            event("Updated", 3, "Authorized", ts=T3, token=tok(), state="Charging", meter_value=[reg(800, ts=T3)]),
            START_OK,
        )
        assert [(c.action, c.payload) for c in out.calls] == [
            ("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 500, "timestamp": T0})
        ]
        assert out.answer == ACCEPTED
        flushed = then(out)
        assert [a for a, _ in flushed] == ["StatusNotification", "MeterValues", "MeterValues", "MeterValues"]
        assert flushed[0][1]["status"] == "Charging"
        assert [(p["transactionId"], p["meterValue"][0]["timestamp"]) for _, p in flushed[1:]] == [
            (77, T1),
            (77, T2),
            (77, T3),
        ]
        assert tr.state.transactions["TX1"].queue == []

    def test_events_of_a_held_transaction_never_reach_the_csms(self) -> None:
        tr = make()
        send(tr, event("Started", 0, "EVDetected"))
        for seq, trigger in enumerate(["ChargingStateChanged", "MeterValuePeriodic", "SignedDataReceived"], 1):
            out = send(tr, event("Updated", seq, trigger, state="SuspendedEV", meter_value=[reg(seq)]))
            assert out.calls == [] and then(out) == []

    def test_ended_of_a_never_authorized_transaction_sends_nothing(self) -> None:
        tr = make()
        send(tr, event("Started", 0, "CablePluggedIn"))
        send(tr, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(3)]))
        out = send(
            tr, event("Ended", 2, "EVDeparted", stopped="EVDisconnected", meter_value=[reg(5, "Transaction.End")])
        )
        assert out.calls == [] and then(out) == [] and out.answer == {}
        assert "TX1" not in tr.state.transactions
        assert ("TransactionEvent", "tx_never_authorized") in tr.take_dropped()

    def test_duplicate_seqno_is_answered_like_the_original_and_not_resent(self) -> None:
        tr = make()
        first = started(tr)
        again = send(tr, event("Started", 0, "Authorized", token=tok(), meter_value=[reg(1000, "Transaction.Begin")]))
        assert again.calls == [] and again.answer == first.answer == ACCEPTED
        assert again.plan.reason == "duplicate_event"
        update = event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(1100)])
        assert [a for a, _ in then(send(tr, update))] == ["MeterValues"]
        repeat = send(tr, update)
        assert then(repeat) == [] and repeat.answer == {}
        assert tr.take_dropped().count(("TransactionEvent", "duplicate_seqno")) == 2

    def test_seqno_gap_is_counted_and_translated(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Updated", 4, "MeterValuePeriodic", meter_value=[reg(1100)]))
        assert [a for a, _ in then(out)] == ["MeterValues"]
        assert ("TransactionEvent", "seqno_gap") in tr.take_dropped()
        assert tr.state.transactions["TX1"].last_seq == 4

    def test_answers_cache_keeps_only_the_last_few(self) -> None:
        tr = make()
        started(tr)
        for seq in range(1, 20):
            send(tr, event("Updated", seq, "MeterValuePeriodic", meter_value=[reg(1000 + seq)]))
        assert sorted(map(int, tr.state.transactions["TX1"].answers)) == list(range(12, 20))
        old = send(tr, event("Started", 0, "Authorized", token=tok()))  # evicted: the start verdict again
        assert old.answer == ACCEPTED and old.calls == [] and then(old) == []
        evicted = send(tr, event("Updated", 2, "MeterValuePeriodic", meter_value=[reg(1002)]))
        assert evicted.answer == {} and then(evicted) == [] and evicted.plan.reason == "duplicate_event"

    def test_start_transaction_callerror_then_retry_resends_and_keeps_the_queue(self) -> None:
        tr = make()
        send(tr, event("Started", 0, "CablePluggedIn", meter_value=[reg(100, "Transaction.Begin")]))
        send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=[reg(150, ts=T1)]))
        authorized = event("Updated", 2, "Authorized", ts=T2, token=tok())
        out = send(tr, authorized, ("InternalError", "db down"))
        assert out.error == ("InternalError", "db down")
        rec = tr.state.transactions["TX1"]
        assert (rec.start_state, rec.id_tag, rec.tx_int, len(rec.queue)) == ("held", "TAG1", None, 1)
        assert ("StartTransaction", "csms_error") in tr.take_dropped()
        out = send(tr, authorized, START_OK)  # the charger's retry (same seqNo)
        assert out.actions == ["StartTransaction"] and out.calls[0].payload["meterStart"] == 100
        assert out.answer == ACCEPTED
        assert [(a, p["transactionId"]) for a, p in then(out)] == [("MeterValues", 77)]

    def test_start_transaction_timeout_leaves_the_record_ready_for_the_retry(self) -> None:
        tr = make()
        out = send(tr, event("Started", 0, "Authorized", token=tok()), ("Timeout", ""))
        assert out.error is not None
        assert tr.state.transactions["TX1"].start_state == "held"
        assert ("StartTransaction", "timeout") in tr.take_dropped()
        out = send(tr, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(5)]), START_OK)
        assert out.actions == ["StartTransaction"] and out.answer == {}
        assert [(a, p["transactionId"]) for a, p in then(out)] == [("MeterValues", 77)]

    def test_ended_after_a_failed_start_sends_start_then_stop(self) -> None:
        tr = make()
        status(tr, "Occupied")
        send(tr, event("Started", 0, "Authorized", token=tok(), state="Charging"), ("InternalError", ""))
        out = send(tr, event("Ended", 1, "StopAuthorized", ts=T1, token=tok(), stopped="Local"), START_OK)
        assert out.actions == ["StartTransaction"] and out.answer == ACCEPTED
        assert [a for a, _ in then(out)] == ["StopTransaction", "StatusNotification"]
        stop = then(out)[0][1]
        assert (stop["transactionId"], stop["idTag"], stop["reason"], stop["timestamp"]) == (77, "TAG1", "Local", T1)
        assert then(out)[1][1]["status"] == "Finishing"

    def test_charger_giving_up_on_an_unstarted_transaction_counts_it_lost(self) -> None:
        tr = make()
        send(tr, event("Started", 0, "Authorized", token=tok()), ("InternalError", ""))
        send(tr, event("Ended", 1, "EVDeparted"), ("InternalError", ""))
        assert tr.state.transactions["TX1"].phase == "ended"
        out = send(tr, event("Started", 0, "Authorized", tx="TX2", token=tok()), START_OK)
        assert out.actions == ["StartTransaction"]
        assert "TX1" not in tr.state.transactions
        assert ("TransactionEvent", "tx_lost") in tr.take_dropped()

    def test_start_lost_in_a_restart_is_sent_again_on_the_charger_retry(self) -> None:
        tr = make()
        payload = event("Started", 0, "Authorized", token=tok())
        tr.from_charger("TransactionEvent", payload)  # planned; the gateway dies before the answer
        stored = tr.snapshot()
        assert stored["transactions"]["TX1"]["start_state"] == "sent"
        fresh = V201ChargerToV16Csms(now=Clock())
        fresh.restore(stored)
        out = send(fresh, payload, START_OK)
        assert out.actions == ["StartTransaction"] and out.answer == ACCEPTED

    def test_stop_callerror_lets_the_retry_send_the_same_stop(self) -> None:
        tr = make()
        started(tr)
        ended = event(
            "Ended", 1, "StopAuthorized", token=tok(), stopped="Local", meter_value=[reg(1500, "Transaction.End")]
        )
        out = send(tr, ended, ("InternalError", ""))
        assert out.error is not None
        again = send(tr, ended, STOP_OK)
        assert again.actions == ["StopTransaction"] and again.calls[0].payload == out.calls[0].payload
        assert again.answer == ACCEPTED
        assert send(tr, ended).calls == []  # answered now: a third copy is a duplicate

    def test_ended_with_token_waits_for_the_csms_verdict(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Ended", 1, "StopAuthorized", token=tok("OTHER")), {"idTagInfo": {"status": "Expired"}})
        assert out.calls[0].payload["idTag"] == "OTHER" and out.calls[0].payload["meterStop"] == 1000
        assert out.answer == {"idTokenInfo": {"status": "Expired"}}

    def test_ended_with_token_when_the_csms_omits_idtaginfo(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Ended", 1, "StopAuthorized", token=tok()), {})
        assert out.answer == {} and ("StopTransaction", "csms_omitted_idtaginfo") in tr.take_dropped()

    def test_stop_token_of_an_update_is_the_stop_idtag(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Updated", 1, "StopAuthorized", token=tok("STOPPER")))
        assert out.answer == {} and then(out) == []
        out = send(tr, event("Ended", 2, "StopAuthorized", stopped="Local"))
        assert then(out)[0][1]["idTag"] == "STOPPER"

    def test_start_token_repeated_gets_the_start_verdict(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Updated", 1, "Authorized", token=tok()))
        assert out.answer == ACCEPTED and then(out) == []

    def test_non_accepted_start_is_passed_on_and_the_transaction_exists(self) -> None:
        tr = make()
        out = send(
            tr,
            event("Started", 0, "Authorized", token=tok()),
            {"transactionId": 5, "idTagInfo": {"status": "Invalid"}},
        )
        assert out.answer == {"idTokenInfo": {"status": "Invalid"}}
        out = send(tr, event("Ended", 1, "Deauthorized", stopped="DeAuthorized"))
        assert then(out)[0][1]["transactionId"] == 5 and then(out)[0][1]["reason"] == "DeAuthorized"

    def test_offline_events_keep_their_timestamps(self) -> None:
        tr = make()
        started_ev = event(
            "Started",
            0,
            "Authorized",
            ts=OLD,
            token=tok(),
            offline=True,
            meter_value=[reg(10, "Transaction.Begin", OLD)],
        )
        out = send(tr, started_ev, START_OK)
        assert out.calls[0].payload["timestamp"] == OLD
        out = send(tr, event("Updated", 1, "MeterValuePeriodic", ts=OLD, offline=True, meter_value=[reg(20, ts=OLD)]))
        assert then(out)[0][1]["meterValue"][0]["timestamp"] == OLD
        out = send(
            tr, event("Ended", 2, "EVDeparted", ts=OLD, offline=True, meter_value=[reg(30, "Transaction.End", OLD)])
        )
        assert then(out)[0][1]["timestamp"] == OLD and then(out)[0][1]["meterStop"] == 30

    def test_meter_start_and_stop_from_kwh_with_multiplier(self) -> None:
        tr = make()
        begin = reg(1.2345, "Transaction.Begin", unit="kWh", multiplier=1)
        out = send(tr, event("Started", 0, "Authorized", token=tok(), meter_value=[begin]), START_OK)
        assert out.calls[0].payload["meterStart"] == 12345
        end = reg(13.0006, "Transaction.End", unit="kWh", multiplier=0)
        out = send(tr, event("Ended", 1, "EVDeparted", meter_value=[end]))
        assert then(out)[0][1]["meterStop"] == 13001

    def test_meter_stop_falls_back_to_the_latest_reading(self) -> None:
        tr = make()
        started(tr, meter_wh=100)
        send(tr, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(250)]))
        out = send(tr, event("Ended", 2, "EVDeparted"))
        assert then(out)[0][1]["meterStop"] == 250

    def test_unknown_meter_start_is_zero_and_counted(self) -> None:
        tr = make()
        out = send(tr, event("Started", 0, "Authorized", token=tok()), START_OK)
        assert out.calls[0].payload["meterStart"] == 0
        assert ("StartTransaction", "meter_unknown") in tr.take_dropped()

    def test_cable_first_without_reading_takes_the_first_later_reading(self) -> None:
        tr = make()
        send(tr, event("Started", 0, "CablePluggedIn"))
        send(tr, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(300)]))
        send(tr, event("Updated", 2, "MeterValuePeriodic", meter_value=[reg(310)]))
        out = send(tr, event("Updated", 3, "Authorized", token=tok()), START_OK)
        assert out.calls[0].payload["meterStart"] == 300

    def test_unknown_transaction_update_with_token_starts_it(self) -> None:
        tr = make()
        status(tr, "Occupied")
        mv = [reg(70, ts=T0), reg(80, ts=T2)]
        out = send(tr, event("Updated", 5, "Authorized", ts=T3, token=tok(), meter_value=mv), START_OK)
        assert out.calls[0].payload == {"connectorId": 1, "idTag": "TAG1", "meterStart": 80, "timestamp": T0}
        assert ("TransactionEvent", "unknown_transaction") in tr.take_dropped()

    def test_ended_of_an_unknown_transaction_sends_nothing(self) -> None:
        tr = make()
        out = send(tr, event("Ended", 9, "EVDeparted", token=tok()))
        assert out.calls == [] and then(out) == [] and out.answer == {}
        assert out.plan.reason == "unknown_transaction"

    def test_remote_start_id_consumes_the_pending_start(self) -> None:
        tr = make()
        tr.state.pending_starts = [
            PendingStart(remote_start_id=3, id_tag="APP", evse=1, expires_at="2025-03-01T12:03:00.000Z"),
            PendingStart(remote_start_id=4, id_tag="APP", evse=2, expires_at="2025-03-01T12:03:00.000Z"),
        ]
        payload = event("Started", 0, "RemoteStart", token=tok("APP", "Central"))
        payload["transactionInfo"]["remoteStartId"] = 3
        out = send(tr, payload, START_OK)
        assert out.calls[0].payload["idTag"] == "APP"
        assert [p.remote_start_id for p in tr.state.pending_starts] == [4]
        assert tr.state.transactions["TX1"].remote_start_id == 3

    def test_remote_start_trigger_without_id_matches_by_idtag(self) -> None:
        tr = make()
        tr.state.pending_starts = [PendingStart(3, "APP", None, "2025-03-01T12:03:00.000Z")]
        send(tr, event("Started", 0, "RemoteStart", token=tok("APP", "Central")), START_OK)
        assert tr.state.pending_starts == [] and tr.state.transactions["TX1"].remote_start_id == 3

    def test_shared_evse_transaction_uses_the_mapped_connector(self) -> None:
        tr = make(Options(connector_map={1: (1, 1), 2: (1, 2)}))
        payload = event("Started", 0, "Authorized", token=tok())
        payload["evse"] = {"id": 1, "connectorId": 2}
        out = send(tr, payload, START_OK)
        assert out.calls[0].payload["connectorId"] == 2

    def test_missing_evse_is_inferred_from_the_one_occupied_connector(self) -> None:
        tr = make()
        status(tr, "Available", evse=1)
        status(tr, "Occupied", evse=2)
        out = send(tr, event("Started", 0, "Authorized", evse=None, token=tok()), START_OK)
        assert out.calls[0].payload["connectorId"] == 2


class TestLongIdTokens:
    def test_reject_answers_invalid_and_starts_nothing(self) -> None:
        tr = make()
        out = send(tr, event("Started", 0, "Authorized", token=tok(LONG_TOKEN, "ISO15693")))
        assert out.calls == [] and out.answer == {"idTokenInfo": {"status": "Invalid"}}
        assert ("TransactionEvent", "idtoken_too_long") in tr.take_dropped()
        out = send(tr, event("Ended", 1, "Deauthorized", stopped="DeAuthorized"))
        assert out.calls == [] and then(out) == [] and "TX1" not in tr.state.transactions

    def test_alias_is_the_idtag_for_start_and_stop(self) -> None:
        tr = make(Options(long_id_tokens="alias"))
        alias = id_alias(LONG_TOKEN, "ISO15693")
        out = send(tr, event("Started", 0, "Authorized", token=tok(LONG_TOKEN, "ISO15693")), START_OK)
        assert out.calls[0].payload["idTag"] == alias and len(alias) == 20
        assert out.answer == ACCEPTED
        again = send(tr, event("Updated", 1, "Authorized", token=tok(LONG_TOKEN, "ISO15693")))
        assert again.answer == ACCEPTED  # the alias compares with the original token
        out = send(tr, event("Ended", 2, "StopAuthorized", token=tok(LONG_TOKEN, "ISO15693")), STOP_OK)
        assert out.calls[0].payload["idTag"] == alias and out.answer == ACCEPTED
        assert tr.take_dropped().count(("TransactionEvent", "idtoken_aliased")) >= 2

    def test_ended_token_that_does_not_fit_is_left_out_and_answered_invalid(self) -> None:
        tr = make()
        started(tr)
        out = send(tr, event("Ended", 1, "StopAuthorized", token=tok(LONG_TOKEN, "ISO15693")))
        assert out.answer == {"idTokenInfo": {"status": "Invalid"}}
        assert "idTag" not in then(out)[0][1]


# -- stop reasons ----------------------------------------------------------------------------------------------


def _reason_enum() -> list[str]:
    import ocpp

    schema = json.loads((Path(ocpp.__file__).parent / "v201/schemas/TransactionEventRequest.json").read_text())
    return list(schema["definitions"]["ReasonEnumType"]["enum"])


EXPECTED_REASON = {
    "DeAuthorized": "DeAuthorized",
    "EmergencyStop": "EmergencyStop",
    "EnergyLimitReached": "Other",
    "EVDisconnected": "EVDisconnected",
    "GroundFault": "Other",
    "ImmediateReset": "HardReset",
    "Local": "Local",
    "LocalOutOfCredit": "Other",
    "MasterPass": "Local",
    "Other": "Other",
    "OvercurrentFault": "Other",
    "PowerLoss": "PowerLoss",
    "PowerQuality": "Other",
    "Reboot": "Reboot",
    "Remote": "Remote",
    "SOCLimitReached": "Other",
    "StoppedByEV": "Other",
    "TimeLimitReached": "Other",
    "Timeout": "Other",
}


def test_expected_reason_table_covers_the_201_enum() -> None:
    assert set(EXPECTED_REASON) == set(_reason_enum())
    assert set(STOPPED_REASON) < set(EXPECTED_REASON)


@pytest.mark.parametrize("stopped", _reason_enum())
def test_every_stopped_reason_maps_to_a_valid_16_reason(stopped: str) -> None:
    tr = make()
    started(tr)
    out = send(tr, event("Ended", 1, "AbnormalCondition", stopped=stopped))
    assert then(out)[0][1]["reason"] == EXPECTED_REASON[stopped]  # schema-checked by exchange


@pytest.mark.parametrize(("asked", "reason"), [({"type": "Soft"}, "SoftReset"), ({"type": "Hard"}, "HardReset")])
def test_immediate_reset_follows_the_reset_the_csms_asked_for(asked: JsonDict, reason: str) -> None:
    tr = make()
    started(tr)
    tr.state.reset = {**asked, "sentAs": "Immediate", "at": T0}
    out = send(tr, event("Ended", 1, "ResetCommand", stopped="ImmediateReset"))
    assert then(out)[0][1]["reason"] == reason


def test_unlock_command_trigger_and_absent_reason() -> None:
    tr = make()
    started(tr)
    out = send(tr, event("Ended", 1, "UnlockCommand", stopped="Other"))
    assert then(out)[0][1]["reason"] == "UnlockCommand"
    tr2 = make()
    started(tr2)
    out = send(tr2, event("Ended", 1, "EVDeparted"))
    assert then(out)[0][1]["reason"] == "Local"


# -- state -----------------------------------------------------------------------------------------------------


class TestSnapshot:
    def test_restore_mid_held_transaction_continues(self) -> None:
        tr = make()
        status(tr, "Occupied")
        send(tr, event("Started", 0, "CablePluggedIn", meter_value=[reg(40, "Transaction.Begin")]))
        send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=[reg(45, ts=T1)]))
        fresh = V201ChargerToV16Csms(now=Clock())
        fresh.restore(json.loads(json.dumps(tr.snapshot())))
        out = send(fresh, event("Updated", 2, "Authorized", ts=T2, token=tok(), state="Charging"), START_OK)
        assert out.calls[0].payload == {"connectorId": 1, "idTag": "TAG1", "meterStart": 40, "timestamp": T0}
        assert [(a, p.get("transactionId"), p.get("status")) for a, p in then(out)] == [
            ("StatusNotification", None, "Charging"),
            ("MeterValues", 77, None),
        ]

    def test_restore_mid_acked_transaction_continues(self) -> None:
        tr = make()
        started(tr)
        send(tr, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(1200)]))
        fresh = V201ChargerToV16Csms(now=Clock())
        fresh.restore(tr.snapshot())
        dup = send(fresh, event("Updated", 1, "MeterValuePeriodic", meter_value=[reg(1200)]))
        assert then(dup) == []  # the answer cache survived
        out = send(fresh, event("Ended", 2, "EVDeparted", stopped="Local"))
        assert then(out)[0][1]["transactionId"] == 77 and then(out)[0][1]["meterStop"] == 1200


def test_an_update_is_acknowledged_only_after_the_csms_took_it() -> None:
    """A meter value the CSMS refused (or never answered) is not acknowledged to the charger: it sends the event
    again and the MeterValues go out again, with the same id."""
    tr = make()
    status(tr, "Occupied")
    started(tr, state="Charging")
    mv = [reg(2.0, "Sample.Periodic", T1, unit="kWh")]
    failed = send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=mv), ("InternalError", "db down"))
    assert failed.answer is None and failed.error == ("InternalError", "db down")
    retry = send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=mv))
    assert retry.answer == {}
    assert [(a, p["transactionId"]) for a, p in then(retry)] == [("MeterValues", 77)]
    # now acknowledged: a third copy of the same event is answered from the cache, nothing sent
    again = send(tr, event("Updated", 1, "MeterValuePeriodic", ts=T1, meter_value=mv))
    assert again.answer == {} and then(again) == []


def test_the_state_text_reads_back_as_its_snapshot() -> None:
    """What the relay persists (``snapshot_json``: orjson writes the records itself) is the snapshot's JSON."""
    from gateway.translate.v201_v16.state import PendingStart, ReverseState, TxB

    state = ReverseState(
        transactions={
            "T1": TxB("T1", evse=1, queue=[["MeterValues", {"connectorId": 1}]], answers={"3": {"status": "ok"}}),
            "T2": TxB("T2", tx_int=7, start_state="acked", phase="ended", ended_at="2025-01-01T00:00:00Z"),
        },
        pending_starts=[PendingStart(1, "TAG", None, "2025-01-01T00:00:00Z")],
        connector_status={"1.1": {"status": "Occupied"}},
        status_triggers=[{"evse": None, "connectorId": None, "at": "2025-01-01T00:00:00Z", "reported": []}],
        variables={"K": {"value": "1", "readonly": True}},
    )
    assert json.loads(state.to_json()) == json.loads(json.dumps(state.to_dict()))
