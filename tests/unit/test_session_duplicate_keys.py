"""The session and JSON objects that give a key twice (``{"status":"A","status":"B"}``): orjson keeps the last value,
a CSMS may keep the first, so where the gateway reads a payload it refuses such a CALL (the sender's format error)
and counts such a CALLRESULT; everything else is forwarded byte for byte (the check costs too much for every frame:
``gateway/ocpp/frames.py`` ``has_duplicate_keys``, ``bench/duplicate_keys.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.session_pair import CHARGER_ID, T0, WALL, SessionPair, gid

BOTH = pytest.mark.parametrize(("version", "code"), [("1.6", "FormationViolation"), ("2.0.1", "FormatViolation")])
STATUS = {
    "1.6": b'[2,"c1","StatusNotification",{"connectorId":1,"errorCode":"NoError","status":"Available",'
    b'"status":"Faulted"}]',
    "2.0.1": b'[2,"c1","StatusNotification",{"timestamp":"' + T0.encode() + b'","connectorStatus":"Available",'
    b'"connectorStatus":"Faulted","evseId":1,"connectorId":1}]',
}
BOOT = {
    "1.6": b'[2,"c1","BootNotification",{"chargePointVendor":"A","chargePointModel":"M","chargePointVendor":"B"}]',
    "2.0.1": b'[2,"c1","BootNotification",{"reason":"PowerUp","chargingStation":{"model":"M","vendorName":"A",'
    b'"vendorName":"B"}}]',
}
METER_16 = (
    b'[2,"c1","MeterValues",{"connectorId":1,"meterValue":[{"timestamp":"' + T0.encode() + b'",'
    b'"sampledValue":[{"value":"10","value":"20"}]}]}]'
)
BOOT_OK_TWICE = b'{"status":"Pending","currentTime":"' + T0.encode() + b'","interval":300,"status":"Accepted"}'


def callresult(uid: str, payload: bytes) -> bytes:
    return b'[3,"' + uid.encode() + b'",' + payload + b"]"


def dup_count(pair: SessionPair, side: str, kind: str = "duplicate_keys") -> float:
    return pair.counter("ocppgw_frame_errors_total", side=side, kind=kind)


class TestPassThrough:
    @BOTH
    def test_a_status_with_a_key_given_twice_is_refused_and_neither_stored_nor_forwarded(
        self, version: Any, code: str
    ) -> None:
        pair = SessionPair(version)
        pair.charger_sends(STATUS[version])
        pair.assert_error_to_charger("c1", code)
        pair.assert_to_backend()
        assert pair.writes_of("status") == []
        assert dup_count(pair, "charger") == 1

    @BOTH
    def test_a_boot_with_a_key_given_twice_is_refused_and_not_recorded(self, version: Any, code: str) -> None:
        pair = SessionPair(version)
        pair.charger_sends(BOOT[version])
        pair.assert_error_to_charger("c1", code)
        pair.assert_to_backend()
        assert pair.writes_of("boot") == []

    def test_other_calls_with_a_key_given_twice_are_forwarded_byte_for_byte(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(METER_16)
        assert pair.backend.raw == [METER_16]
        reset = b'[2,"b1","Reset",{"type":"Soft","type":"Hard"}]'
        pair.backend_sends(reset)
        assert pair.charger.raw == [reset]
        assert dup_count(pair, "charger") == 0 and dup_count(pair, "backend") == 0

    def test_a_password_call_with_a_key_given_twice_is_refused_to_the_backend(self) -> None:
        pair = SessionPair("1.6")
        pair.backend_sends(b'[2,"b1","ChangeConfiguration",{"key":"AuthorizationKey","value":"0123456789abcdef",'
                           b'"value":"fedcba9876543210"}]')  # fmt: skip
        pair.assert_error_to_backend("b1", "FormationViolation")
        pair.assert_to_charger()
        assert dup_count(pair, "backend") == 1

    def test_a_boot_answer_with_a_key_given_twice_is_counted_and_forwarded_byte_for_byte(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends([2, "c1", "BootNotification", {"chargePointVendor": "A", "chargePointModel": "M"}])
        answer = callresult("c1", BOOT_OK_TWICE)
        pair.backend_sends(answer)
        assert pair.charger.raw == [answer]
        assert dup_count(pair, "backend", "duplicate_keys_result") == 1
        (boot,) = pair.writes_of("boot")
        assert boot.value is not None and boot.value["response"]["status"] == "Accepted"  # orjson: the last one
        assert boot.cid == CHARGER_ID and boot.value["at"] == WALL

    def test_an_answer_the_gateway_does_not_read_is_neither_checked_nor_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends([2, "c1", "Heartbeat", {}])
        answer = callresult("c1", b'{"currentTime":"x","currentTime":"y"}')
        pair.backend_sends(answer)
        assert pair.charger.raw == [answer]
        assert dup_count(pair, "backend", "duplicate_keys_result") == 0


class TestValidated:
    def test_with_validation_every_call_with_a_key_given_twice_is_refused(self) -> None:
        pair = SessionPair("1.6", validate=True)
        pair.charger_sends(METER_16)
        pair.assert_error_to_charger("c1", "FormationViolation")
        pair.assert_to_backend()
        pair.backend_sends(b'[2,"b1","Reset",{"type":"Soft","type":"Hard"}]')
        pair.assert_error_to_backend("b1", "FormationViolation")
        pair.assert_to_charger()
        assert dup_count(pair, "charger") == 1 and dup_count(pair, "backend") == 1

    def test_with_validation_every_answer_with_a_key_given_twice_is_counted_and_forwarded(self) -> None:
        pair = SessionPair("2.0.1", validate=True)
        pair.charger_sends([2, "c1", "Heartbeat", {}])
        answer = callresult("c1", b'{"currentTime":"' + T0.encode() + b'","currentTime":"' + T0.encode() + b'"}')
        pair.backend_sends(answer)
        assert pair.charger.raw == [answer]
        assert dup_count(pair, "backend", "duplicate_keys_result") == 1


class TestTranslated:
    def test_a_charger_call_with_a_key_given_twice_is_refused_and_not_translated(self) -> None:
        pair = SessionPair("1.6", "2.0.1")
        pair.charger_sends(METER_16)
        pair.assert_error_to_charger("c1", "FormationViolation")
        pair.assert_to_backend()
        assert dup_count(pair, "charger") == 1

    def test_a_csms_call_with_a_key_given_twice_is_refused_in_the_csms_spelling(self) -> None:
        pair = SessionPair("1.6", "2.0.1")
        pair.backend_sends(b'[2,"b1","Reset",{"type":"Immediate","type":"OnIdle"}]')
        pair.assert_error_to_backend("b1", "FormatViolation")
        pair.assert_to_charger()
        assert dup_count(pair, "backend") == 1

    def test_a_csms_answer_with_a_key_given_twice_is_counted_and_translated(self) -> None:
        pair = SessionPair("1.6", "2.0.1")
        pair.charger_sends([2, "c1", "Heartbeat", {}])
        pair.backend_sends(callresult(gid(1), b'{"currentTime":"x","currentTime":"' + T0.encode() + b'"}'))
        pair.assert_to_charger([3, "c1", {"currentTime": T0}])
        assert dup_count(pair, "backend", "duplicate_keys_result") == 1

    def test_a_password_answer_with_a_key_given_twice_is_counted_once(self) -> None:
        pair = SessionPair("1.6", "2.0.1")
        basic_auth = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
        data = [{"attributeValue": "0123456789abcdef", **basic_auth}]
        pair.backend_sends([2, "b1", "SetVariables", {"setVariableData": data}])
        assert pair.charger.last_call()[2] == "ChangeConfiguration"
        pair.charger_sends(callresult(gid(1), b'{"status":"Rejected","status":"Accepted"}'))
        assert dup_count(pair, "charger", "duplicate_keys_result") == 1
