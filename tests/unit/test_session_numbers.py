"""Numbers a translated session cannot carry (set-up A: 1.6 charger, 2.0.1 CSMS; set-up B: 2.0.1 charger, 1.6 CSMS).

A JSON number outside the signed 64-bit range (``orjson`` parses integers up to 2**64 - 1 as ``int`` and larger ones
as ``float``; the 2.0.1 schemas, draft-06, take an integral float for an ``integer``), or a decimal whose magnitude
reaches 2**63, in a CALL is refused with the origin version's ``PropertyConstraintViolation``, counted
``ocppgw_frame_errors_total{kind="number_out_of_range"}``, and nothing reaches the other side; the session serves
the next CALL. The same holds for answers (the origin gets ``InternalError``) and for what a translation computes
(an out-of-range meter value is a sample the target cannot carry: dropped, counted; a configuration value's number
that is no small integer is malformed). A hypothesis test then feeds random payloads of a few real actions through
both set-ups and checks that no frame callback raises and that every CALL gets exactly one answer, at once or after
its translation went to the other side and was answered.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.translate.base import JsonDict, OutCall, Plan
from tests.unit.session_pair import T0, SessionPair, gid

A = ("1.6", "2.0.1")
B = ("2.0.1", "1.6")
BIG = 2**64  # beyond what orjson encodes: parsed as a float, 1.8446744073709552e19
INT64_OVER = 2**63  # parsed as an int, encodable, but beyond the signed 64-bit range
OUT = "number_out_of_range"
PCV = "PropertyConstraintViolation"


def meter_201(value: Any, evse: Any = 1) -> dict[str, Any]:
    return {"evseId": evse, "meterValue": [{"timestamp": T0, "sampledValue": [{"value": value}]}]}


def profile_201(limit: Any) -> dict[str, Any]:
    schedule = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}]}
    return {
        "evseId": 1,
        "chargingProfile": {
            "id": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": [{**schedule, "startSchedule": T0}],
        },
    }


def profile_16(limit: Any) -> dict[str, Any]:
    schedule = {
        "chargingRateUnit": "W",
        "startSchedule": T0,
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    return {
        "connectorId": 1,
        "csChargingProfiles": {
            "chargingProfileId": 1,
            "stackLevel": 0,
            "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": schedule,
        },
    }


STATUS_16 = {"errorCode": "NoError", "status": "Available", "timestamp": T0}
START_16 = {"connectorId": 1, "idTag": "TAG1", "timestamp": T0}
#: (set-up, side that sends, action, payload) of CALLs with a number the gateway cannot carry
OUT_OF_RANGE = [
    (B, "charger", "MeterValues", meter_201(1, evse=BIG)),
    (B, "charger", "MeterValues", meter_201(1e308)),
    (B, "charger", "MeterValues", meter_201(-1e19)),
    (
        B,
        "charger",
        "StatusNotification",
        {"timestamp": T0, "connectorStatus": "Available", "evseId": 1e300, "connectorId": 1},
    ),
    (B, "backend", "ChangeAvailability", {"connectorId": INT64_OVER, "type": "Operative"}),
    (B, "backend", "SetChargingProfile", profile_16(1e19)),  # 1e308 fails the 1.6 multipleOf 0.1 first
    (A, "charger", "StatusNotification", {"connectorId": INT64_OVER, **STATUS_16}),
    (A, "charger", "StartTransaction", {**START_16, "meterStart": INT64_OVER}),
    (A, "backend", "ChangeAvailability", {"operationalStatus": "Operative", "evse": {"id": BIG}}),
    (A, "backend", "SetChargingProfile", profile_201(1e308)),
]


def pair_for(setup: tuple[Any, Any]) -> SessionPair:
    return SessionPair(setup[0], setup[1])


def still_serves(pair: SessionPair, side: str) -> None:
    """The session translates the next valid CALL from ``side`` as usual (the first CALL it sends)."""
    if side == "charger":
        pair.charger_sends([2, "next", "Heartbeat", {}])
        pair.assert_to_backend([2, gid(1), "Heartbeat", {}])
        pair.backend_answers({"currentTime": T0})
        pair.assert_to_charger([3, "next", {"currentTime": T0}])
    else:
        pair.backend_sends([2, "next", "ClearCache", {}])
        pair.assert_to_charger([2, gid(1), "ClearCache", {}])
        pair.charger_answers({"status": "Accepted"})
        pair.assert_to_backend([3, "next", {"status": "Accepted"}])


# -- CALLs and answers of the peers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("setup", "side", "action", "payload"), OUT_OF_RANGE)
def test_a_call_with_a_number_out_of_range_is_refused_counted_and_the_session_goes_on(
    setup: tuple[Any, Any], side: str, action: str, payload: dict[str, Any]
) -> None:
    pair = pair_for(setup)
    frame = [2, "big", action, payload]
    if side == "charger":
        pair.charger_sends(frame)
        pair.assert_error_to_charger("big", PCV)
        pair.assert_to_backend()
    else:
        pair.backend_sends(frame)
        pair.assert_error_to_backend("big", PCV)
        pair.assert_to_charger()
    assert pair.counter("ocppgw_frame_errors_total", side=side, kind=OUT) == 1
    still_serves(pair, side)


@pytest.mark.parametrize(
    ("setup", "side", "action", "payload", "code"),
    [
        (B, "backend", "ChangeAvailability", {"connectorId": BIG, "type": "Operative"}, "TypeConstraintViolation"),
        (B, "backend", "SetChargingProfile", profile_16(1e308), PCV),  # multipleOf 0.1: "infinity reached"
        (A, "charger", "StartTransaction", {**START_16, "meterStart": -(2**63) - 1}, "TypeConstraintViolation"),
    ],
)
def test_some_numbers_out_of_range_are_refused_by_the_16_schema_already(
    setup: tuple[Any, Any], side: str, action: str, payload: dict[str, Any], code: str
) -> None:
    """orjson reads an integer beyond 64 bits as a float, which the 1.6 (draft-04) schemas do not take for an
    ``integer``; a 1.6 ``limit`` of 1e308 fails its ``multipleOf``. Counted as schema refusals."""
    pair = pair_for(setup)
    frame = [2, "big", action, payload]
    if side == "charger":
        pair.charger_sends(frame)
        pair.assert_error_to_charger("big", code)
        pair.assert_to_backend()
    else:
        pair.backend_sends(frame)
        pair.assert_error_to_backend("big", code)
        pair.assert_to_charger()
    assert pair.counter("ocppgw_frame_errors_total", side=side, kind="schema") == 1
    still_serves(pair, side)


BOOT_16 = {"chargePointVendor": "V", "chargePointModel": "M"}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"model": "M", "vendorName": "V"}}


@pytest.mark.parametrize(
    ("setup", "call", "answer"),
    [
        (A, ["BootNotification", BOOT_16], {"currentTime": T0, "interval": BIG, "status": "Accepted"}),
        (A, ["Heartbeat", {}], {"currentTime": T0, "customData": {"vendorId": "V", "n": 1e300}}),
        (B, ["BootNotification", BOOT_201], {"currentTime": T0, "interval": INT64_OVER, "status": "Accepted"}),
    ],
)
def test_an_answer_with_a_number_out_of_range_gives_the_origin_internal_error(
    setup: tuple[Any, Any], call: list[Any], answer: dict[str, Any]
) -> None:
    pair = pair_for(setup)
    pair.charger_sends([2, "c1", *call])
    pair.backend.unread()
    pair.backend_answers(answer)
    pair.assert_error_to_charger("c1", "InternalError")
    assert pair.counter("ocppgw_frame_errors_total", side="backend", kind=OUT) == 1
    pair.charger_sends([2, "c2", "Heartbeat", {}])
    assert pair.backend.unread()[0][2] == "Heartbeat"


def test_a_csms_transaction_id_beyond_64_bits_is_not_taken() -> None:
    pair = pair_for(B)
    started = {
        "eventType": "Started",
        "timestamp": T0,
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "TX1"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "TAG1", "type": "ISO14443"},
    }
    pair.charger_sends([2, "t1", "TransactionEvent", started])
    assert [f[2] for f in pair.backend.unread()] == ["StartTransaction"]
    pair.backend_answers({"transactionId": INT64_OVER, "idTagInfo": {"status": "Accepted"}})
    pair.assert_error_to_charger("t1", "InternalError")
    assert pair.counter("ocppgw_frame_errors_total", side="backend", kind=OUT) == 1


# -- what a translation computes (a stand-in translator) ---------------------------------------------------------


class Computing:
    """A translator (set-up B's versions) whose plans carry what a translation might compute: ``call`` as the
    Heartbeat's payload toward the CSMS, ``answer`` as the charger's answer, ``then`` as a CALL of the gateway's own
    after a local answer to a StatusNotification."""

    charger_version = "2.0.1"
    csms_version = "1.6"

    def __init__(self, call: JsonDict | None = None, answer: JsonDict | None = None, then: JsonDict | None = None):
        self.call, self.answer, self.then = call, answer, then

    def from_charger(self, action: str, payload: Any) -> Plan:
        if action == "StatusNotification":
            plan = Plan(reply={}, reason="test")
            plan.then_to_csms.append(OutCall("DataTransfer", self.then or {"vendorId": "V"}))
            return plan
        return Plan(calls=[OutCall("Heartbeat", self.call or {})], finish=lambda answers: self.answer or answers[0])

    def from_csms(self, action: str, payload: Any) -> Plan:
        return Plan(error=("NotSupported", "test"))

    def map_error(self, code: str, to: str) -> str:
        return code

    def snapshot(self) -> JsonDict:
        return {}

    def restore(self, data: Any) -> None:
        return None


def deep(levels: int) -> Any:
    value: Any = 1
    for _ in range(levels):
        value = [value]
    return value


CUSTOM = "customData"  # 2.0.1 payloads take any property in it: what a schema check lets through


@pytest.mark.parametrize(
    ("translator", "code", "kind"),
    [
        (Computing(answer={"currentTime": T0, CUSTOM: {"vendorId": "V", "n": BIG}}), "InternalError", OUT),
        (Computing(answer={"currentTime": T0, CUSTOM: {"vendorId": "V", "n": math.inf}}), "InternalError", OUT),
        (
            Computing(answer={"currentTime": T0, CUSTOM: {"vendorId": "V", "n": deep(300)}}),
            "InternalError",
            "unencodable",
        ),
    ],
)
def test_a_translated_answer_the_gateway_cannot_encode_is_refused_and_counted(
    translator: Any, code: str, kind: str
) -> None:
    """``math.inf`` would have reached the charger as ``null``; a 2**64 integer or 300 levels of nesting raised."""
    pair = SessionPair("2.0.1", "1.6", translator=translator)
    pair.charger_sends([2, "c1", "Heartbeat", {}])
    pair.backend_answers({"currentTime": T0})
    pair.assert_error_to_charger("c1", code)
    assert pair.counter("ocppgw_translation_errors_total", action="Heartbeat", kind=kind) == 1


def test_a_translated_call_with_a_computed_number_out_of_range_is_refused_and_not_sent() -> None:
    pair = SessionPair("1.6", "2.0.1", translator=_a(Computing(call={CUSTOM: {"vendorId": "V", "n": -(2**64)}})))
    pair.charger_sends([2, "c1", "Heartbeat", {}])
    pair.assert_error_to_charger("c1", PCV)
    pair.assert_to_backend()
    assert pair.counter("ocppgw_translation_errors_total", action="Heartbeat", kind=OUT) == 1


def test_a_translated_call_the_gateway_cannot_encode_is_refused_and_the_lane_goes_on() -> None:
    pair = SessionPair("1.6", "2.0.1", translator=_a(Computing(call={CUSTOM: {"vendorId": "V", "n": deep(300)}})))
    pair.charger_sends([2, "c1", "Heartbeat", {}])
    pair.charger_sends([2, "c2", "Heartbeat", {}])
    assert [f[:3] for f in pair.charger.unread()] == [[4, "c1", "InternalError"], [4, "c2", "InternalError"]]
    pair.assert_to_backend()
    assert pair.counter("ocppgw_translation_errors_total", action="Heartbeat", kind="unencodable") == 2


def test_a_gateway_call_after_the_answer_with_a_number_out_of_range_is_counted_and_not_sent() -> None:
    pair = SessionPair("2.0.1", "1.6", translator=Computing(then={"vendorId": "V", "data": "x", "n": 1}))
    pair.charger_sends(
        [
            2,
            "c1",
            "StatusNotification",
            {"timestamp": T0, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        ]
    )
    pair.assert_to_charger([3, "c1", {}])
    pair.assert_to_backend()  # the 1.6 schema refuses the extra property: counted invalid_call
    out = SessionPair(
        "1.6", "2.0.1", translator=_a(Computing(then={"vendorId": "V", CUSTOM: {"vendorId": "V", "n": 1e300 * 1e10}}))
    )
    out.charger_sends([2, "c1", "StatusNotification", {"connectorId": 1, **STATUS_16}])
    out.assert_to_charger([3, "c1", {}])
    out.assert_to_backend()
    assert out.counter("ocppgw_translation_errors_total", action="DataTransfer", kind=OUT) == 1
    out.charger_sends([2, "c2", "Heartbeat", {}])
    out.assert_to_backend([2, gid(1), "Heartbeat", {}])


def _a(translator: Computing) -> Computing:
    """The same plans with set-up A's versions (a 2.0.1 CSMS takes ``customData`` in the CALLs it gets)."""
    translator.charger_version, translator.csms_version = "1.6", "2.0.1"
    return translator


# -- meter values ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "unit"), [("1e308", "Wh"), ("9223372036854775808", None), ("-1E+19", "kWh")])
def test_a_16_meter_text_beyond_the_range_is_a_sample_the_csms_cannot_carry(text: str, unit: str | None) -> None:
    """Set-up A: a 1.6 sample value is text (the 1.6 schema takes any string); one whose number is out of range is
    dropped like an unparsable one (counted), the rest of the message is translated."""
    pair = pair_for(A)
    big: dict[str, Any] = {"value": text, "measurand": "Power.Active.Import"}
    if unit:
        big["unit"] = unit
    samples = [big, {"value": "12.5"}]
    pair.charger_sends(
        [2, "m1", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": samples}]}]
    )
    [sent] = pair.backend.unread()
    assert sent[2] == "MeterValues"
    assert sent[3]["meterValue"] == [{"timestamp": T0, "sampledValue": [{"value": 12.5}]}]
    pair.backend_answers({})
    pair.assert_to_charger([3, "m1", {}])
    assert pair.counter("ocppgw_translation_dropped_total", action="MeterValues", what=OUT) == 1


def test_a_huge_16_meter_exponent_costs_nothing() -> None:
    """``1e10000000`` is a valid decimal text: turning it into an int would take minutes of CPU."""
    pair = pair_for(A)
    sample = {"value": "1e10000000"}
    pair.charger_sends(
        [2, "m1", "MeterValues", {"connectorId": 1, "meterValue": [{"timestamp": T0, "sampledValue": [sample]}]}]
    )
    pair.assert_to_charger([3, "m1", {}])  # nothing left to send: answered locally
    assert pair.counter("ocppgw_translation_dropped_total", action="MeterValues", what=OUT) == 1


@pytest.mark.parametrize("multiplier", [10**9, 30, -1_000_000, 2**62])
def test_a_201_multiplier_that_takes_the_value_out_of_range_drops_the_sample(multiplier: int) -> None:
    pair = pair_for(B)
    samples = [
        {"value": 1.5, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W", "multiplier": multiplier}},
        {"value": 2, "unitOfMeasure": {"unit": "kWh", "multiplier": 3}},
    ]
    pair.charger_sends(
        [2, "m1", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": T0, "sampledValue": samples}]}]
    )
    [sent] = pair.backend.unread()
    assert sent[3]["meterValue"] == [{"timestamp": T0, "sampledValue": [{"value": "2000", "unit": "kWh"}]}]
    pair.backend_answers({})
    pair.assert_to_charger([3, "m1", {}])
    assert pair.counter("ocppgw_translation_dropped_total", action="MeterValues", what=OUT) == 1


# -- configuration values ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["99999999999999999999999.RST", "\u00b2.RST"])
def test_a_connector_number_in_a_16_configuration_value_that_is_no_small_integer_is_refused(value: str) -> None:
    """Set-up B: ``ConnectorPhaseRotation`` names connectors by number; one beyond 18 digits (its EVSE id would be out
    of range) or written with a non-ASCII digit (``"\u00b2".isdigit()`` is true, ``int()`` raises) is malformed."""
    pair = pair_for(B)
    pair.backend_sends([2, "b1", "ChangeConfiguration", {"key": "ConnectorPhaseRotation", "value": value}])
    pair.assert_to_backend([3, "b1", {"status": "Rejected"}])
    pair.assert_to_charger()


def test_a_connector_number_in_a_reported_16_value_that_is_no_small_integer_is_left_out() -> None:
    """Set-up A: the 1.6 charger's ``ConnectorPhaseRotation`` becomes a NotifyReport entry per connector; an entry
    whose EVSE id would be out of range is left out, the rest of the report goes."""
    pair = pair_for(A)
    pair.backend_sends([2, "b1", "GetBaseReport", {"requestId": 1, "reportBase": "ConfigurationInventory"}])
    pair.assert_to_charger([2, gid(1), "GetConfiguration", {}])
    value = "0.RST,99999999999999999999.RTS,1.TSR"
    pair.charger_answers({"configurationKey": [{"key": "ConnectorPhaseRotation", "readonly": False, "value": value}]})
    assert pair.backend.unread()[0] == [3, "b1", {"status": "Accepted"}]
    [report] = [f[3] for f in pair.backend.frames if f[0] == 2 and f[2] == "NotifyReport"]
    rotations = [(d["component"], d["variableAttribute"][0]["value"]) for d in report["reportData"]]
    assert rotations == [({"name": "ChargingStation"}, "RST"), ({"name": "EVSE", "evse": {"id": 1}}, "TSR")]


@pytest.mark.parametrize("setup", [A, B], ids=["A", "B"])
@pytest.mark.parametrize("value", ["\u00b2", "1" * 5000])
def test_a_charger_max_keys_value_that_is_no_small_integer_is_ignored(setup: tuple[str, str], value: str) -> None:
    """``GetConfigurationMaxKeys`` as last read from the charger sizes the gateway's reads; a value ``int()`` cannot
    read (or reads into thousands of digits) is no limit."""
    pair = pair_for(setup)
    translator: Any = pair.session.translator
    if setup == A:
        translator.state.config["GetConfigurationMaxKeys"] = {"value": value, "readonly": True}
        items = [{"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}]
        pair.backend_sends([2, "b1", "GetVariables", {"getVariableData": items}])
        pair.assert_to_charger([2, gid(1), "GetConfiguration", {"key": ["HeartbeatInterval"]}])
    else:
        translator.state.variables["GetConfigurationMaxKeys"] = {"value": value, "readonly": True}
        pair.backend_sends([2, "b1", "GetConfiguration", {"key": ["HeartbeatInterval"]}])
        assert [f[2] for f in pair.charger.unread()] == ["GetVariables"]


# -- random payloads ---------------------------------------------------------------------------------------------

NUMBERS = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.sampled_from([2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**63) - 1, 0, -1]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e308, -1e308, -0.0, 5e-324, 1.5, 9.3e18]),
)
TEXT = st.one_of(st.text(max_size=8), st.sampled_from(["1e308", "1e999999", "-0", "NaN", "Infinity", "12.5", ""]))
SCALARS = st.one_of(NUMBERS, TEXT, st.booleans(), st.none())
JSON = st.recursive(
    SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3), max_leaves=8
)


SAMPLE_201 = st.fixed_dictionaries(
    {"value": NUMBERS},
    optional={
        "unitOfMeasure": st.fixed_dictionaries(
            {}, optional={"unit": st.sampled_from(["Wh", "kWh", "W"]), "multiplier": NUMBERS}
        ),
        "context": st.sampled_from(["Transaction.Begin", "Sample.Periodic", "Transaction.End"]),
        "measurand": st.sampled_from(["Energy.Active.Import.Register", "Power.Active.Import", "SoC"]),
    },
)
METER_201 = st.lists(
    st.fixed_dictionaries({"timestamp": st.just(T0), "sampledValue": st.lists(SAMPLE_201, min_size=1, max_size=3)}),
    min_size=1,
    max_size=2,
)
SAMPLE_16 = st.fixed_dictionaries(
    {"value": st.one_of(TEXT, NUMBERS.map(repr), NUMBERS.map(str))},
    optional={
        "unit": st.sampled_from(["Wh", "kWh", "W"]),
        "context": st.sampled_from(["Sample.Periodic", "Transaction.End"]),
    },
)
METER_16 = st.lists(
    st.fixed_dictionaries({"timestamp": st.just(T0), "sampledValue": st.lists(SAMPLE_16, min_size=1, max_size=3)}),
    min_size=1,
    max_size=2,
)
ANY_INT = st.one_of(NUMBERS, st.integers(min_value=0, max_value=3))

#: (set-up, side, action, payload strategy): real actions whose payloads mostly pass their schema, with numbers
#: (and sometimes anything) where numbers go
CALLS: list[tuple[tuple[str, str], str, str, st.SearchStrategy[Any]]] = [
    (B, "charger", "MeterValues", st.fixed_dictionaries({"evseId": ANY_INT, "meterValue": METER_201})),
    (
        B,
        "charger",
        "TransactionEvent",
        st.fixed_dictionaries(
            {
                "eventType": st.sampled_from(["Started", "Updated", "Ended"]),
                "timestamp": st.just(T0),
                "triggerReason": st.sampled_from(["Authorized", "MeterValuePeriodic", "EVDeparted"]),
                "seqNo": ANY_INT,
                "transactionInfo": st.fixed_dictionaries(
                    {"transactionId": st.sampled_from(["TX1", "TX2"])}, optional={"remoteStartId": ANY_INT}
                ),
            },
            optional={
                "evse": st.fixed_dictionaries({"id": ANY_INT}, optional={"connectorId": ANY_INT}),
                "idToken": st.just({"idToken": "TAG1", "type": "ISO14443"}),
                "meterValue": METER_201,
                "reservationId": ANY_INT,
            },
        ),
    ),
    (
        B,
        "charger",
        "StatusNotification",
        st.fixed_dictionaries(
            {
                "timestamp": st.just(T0),
                "connectorStatus": st.sampled_from(["Available", "Occupied"]),
                "evseId": ANY_INT,
                "connectorId": ANY_INT,
            }
        ),
    ),
    (B, "charger", "DataTransfer", st.fixed_dictionaries({"vendorId": st.just("V")}, optional={"data": JSON})),
    (B, "backend", "ChangeAvailability", st.fixed_dictionaries({"connectorId": ANY_INT, "type": st.just("Operative")})),
    (B, "backend", "SetChargingProfile", NUMBERS.map(profile_16)),
    (B, "backend", "RemoteStopTransaction", st.fixed_dictionaries({"transactionId": ANY_INT})),
    (
        B,
        "backend",
        "TriggerMessage",
        st.fixed_dictionaries({"requestedMessage": st.just("StatusNotification")}, optional={"connectorId": ANY_INT}),
    ),
    (
        A,
        "charger",
        "MeterValues",
        st.fixed_dictionaries({"connectorId": ANY_INT, "meterValue": METER_16}, optional={"transactionId": ANY_INT}),
    ),
    (
        A,
        "charger",
        "StartTransaction",
        st.fixed_dictionaries(
            {"connectorId": ANY_INT, "idTag": st.just("TAG1"), "meterStart": ANY_INT, "timestamp": st.just(T0)}
        ),
    ),
    (
        A,
        "charger",
        "StopTransaction",
        st.fixed_dictionaries(
            {"transactionId": ANY_INT, "meterStop": ANY_INT, "timestamp": st.just(T0)},
            optional={"transactionData": METER_16},
        ),
    ),
    (
        A,
        "charger",
        "StatusNotification",
        st.fixed_dictionaries({"connectorId": ANY_INT, **{k: st.just(v) for k, v in STATUS_16.items()}}),
    ),
    (
        A,
        "backend",
        "ChangeAvailability",
        st.fixed_dictionaries(
            {"operationalStatus": st.just("Operative")},
            optional={"evse": st.fixed_dictionaries({"id": ANY_INT}, optional={"connectorId": ANY_INT})},
        ),
    ),
    (A, "backend", "SetChargingProfile", NUMBERS.map(profile_201)),
    (A, "backend", "DataTransfer", st.fixed_dictionaries({"vendorId": st.just("V")}, optional={"data": JSON})),
    (A, "charger", "BootNotification", st.just(BOOT_16)),
    (B, "charger", "BootNotification", st.just(BOOT_201)),
    (
        A,
        "backend",
        "ReserveNow",
        st.fixed_dictionaries(
            {"id": ANY_INT, "expiryDateTime": st.just(T0), "idToken": st.just({"idToken": "TAG1", "type": "ISO14443"})},
            optional={"evseId": ANY_INT},
        ),
    ),
]
CASES = st.one_of(
    *(st.tuples(st.just(setup), st.just(side), st.just(action), payload) for setup, side, action, payload in CALLS)
)
#: plain answers of the other side, by its version and action (anything else gets a CALLERROR NotSupported); the
#: numbers of StartTransaction.conf and the BootNotification answers are drawn (:func:`answer_everything`)
ANSWERS: dict[str, dict[str, dict[str, Any]]] = {
    "1.6": {
        "Authorize": {"idTagInfo": {"status": "Accepted"}},
        "BootNotification": {"status": "Accepted", "currentTime": T0, "interval": 60},
        "ChangeAvailability": {"status": "Accepted"},
        "DataTransfer": {"status": "Accepted"},
        "Heartbeat": {"currentTime": T0},
        "MeterValues": {},
        "ReserveNow": {"status": "Accepted"},
        "SetChargingProfile": {"status": "Accepted"},
        "StartTransaction": {"transactionId": 7, "idTagInfo": {"status": "Accepted"}},
        "StatusNotification": {},
        "StopTransaction": {},
    },
    "2.0.1": {
        "BootNotification": {"status": "Accepted", "currentTime": T0, "interval": 60},
        "ChangeAvailability": {"status": "Accepted"},
        "DataTransfer": {"status": "Accepted"},
        "MeterValues": {},
        "NotifyEvent": {},
        "RequestStopTransaction": {"status": "Accepted"},
        "SetChargingProfile": {"status": "Accepted"},
        "StatusNotification": {},
        "TransactionEvent": {},
        "TriggerMessage": {"status": "Accepted"},
    },
}


DRAWN = {"StartTransaction": "transactionId", "BootNotification": "interval"}


def answer_everything(pair: SessionPair, setup: tuple[str, str], numbers: list[Any]) -> None:
    """Answer every CALL the session sent either side until none is left (``numbers``: drawn answer numbers)."""
    sides = ((pair.backend, setup[1], pair.backend_sends), (pair.charger, setup[0], pair.charger_sends))
    for _ in range(50):
        calls = [(f, version, send) for wire, version, send in sides for f in wire.unread() if f[0] == 2]
        if not calls:
            return
        for frame, version, send in calls:
            known = ANSWERS[version].get(frame[2])
            if known is None:
                send([4, frame[1], "NotSupported", "", {}])
                continue
            field = DRAWN.get(frame[2])
            if field is not None and numbers:
                known = {**known, field: numbers.pop()}
            send(json.dumps([3, frame[1], known]).encode())
    raise AssertionError("the session keeps sending CALLs")


def answers_to(wire: Any, uid: str, since: int) -> list[list[Any]]:
    return [f for f in wire.frames[since:] if f[0] in (3, 4) and f[1] == uid]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases=st.lists(CASES, min_size=1, max_size=4), numbers=st.lists(ANY_INT, max_size=4))
def test_random_payloads_never_raise_and_every_call_is_answered_once_or_translated(
    cases: list[tuple[tuple[str, str], str, str, Any]], numbers: list[Any]
) -> None:
    pairs = {A: pair_for(A), B: pair_for(B)}
    for n, (setup, side, action, payload) in enumerate(cases):
        pair = pairs[setup]
        uid = f"u{n}"
        origin, other = (pair.charger, pair.backend) if side == "charger" else (pair.backend, pair.charger)
        since, other_since = len(origin.raw), len(other.raw)
        frame = json.dumps([2, uid, action, payload]).encode()  # Python's json writes big integers exactly
        (pair.charger_sends if side == "charger" else pair.backend_sends)(frame)  # never raises
        answered = answers_to(origin, uid, since)
        forwarded = [f for f in other.frames[other_since:] if f[0] == 2]
        assert len(answered) == 1 or (not answered and forwarded), (answered, forwarded)
        answer_everything(pair, setup, numbers)
        assert len(answers_to(origin, uid, since)) == 1
