"""The charger session with OCPP 2.1 on both sides (pass-through): schema validation of 2.1, SEND frames relayed
both ways outside the call lanes, CALLRESULTERROR forwarded to the party whose CALLRESULT it refuses; and the
versions without these frames keep refusing them. Set-up C (a 2.1 charger, a 2.0.1 CSMS): ``test_translate_v21_v201``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.session_pair import BACKEND, T0, SessionPair

NOW = {"currentTime": T0}
STREAM = {"id": 1, "pending": 0, "basetime": T0, "data": [{"t": 0.5, "v": "230.1"}, {"t": 1.5, "v": "229.8"}]}


def send(uid: str, payload: dict[str, Any] | None = None) -> list[Any]:
    return [6, uid, "NotifyPeriodicEventStream", STREAM if payload is None else payload]


def hb(uid: str) -> list[Any]:
    return [2, uid, "Heartbeat", {}]


def messages(pair: SessionPair, direction: str, message_type: str, action: str) -> float:
    return pair.counter(
        "ocppgw_messages_total", direction=direction, message_type=message_type, action=action, backend=BACKEND
    )


class TestSchemas:
    def test_a_v21_call_is_validated_against_the_v21_schema_not_refused_with_an_exception(self) -> None:
        # before 2.1's schemas were loaded, the first CALL raised ValueError out of the frame callback (1011)
        pair = SessionPair("2.1", validate=True)
        pair.charger_sends([2, "c1", "Authorize", {"idToken": {"idToken": "WVWZZZ1JZXW000001", "type": "VIN"}}])
        pair.assert_to_backend([2, "c1", "Authorize", {"idToken": {"idToken": "WVWZZZ1JZXW000001", "type": "VIN"}}])
        pair.charger_sends([2, "c2", "Authorize", {"idToken": {"idToken": "x" * 256, "type": "VIN"}}])
        pair.assert_error_to_charger("c2", "PropertyConstraintViolation")
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 1

    def test_a_v21_only_call_is_validated_too(self) -> None:
        pair = SessionPair("2.1", validate=True)
        pair.charger_sends([2, "c1", "OpenPeriodicEventStream", {}])
        pair.assert_error_to_charger("c1", "OccurrenceConstraintViolation")
        pair.assert_to_backend()

    def test_version_2_0_is_not_validated_and_nothing_raises(self) -> None:
        # no 2.0 schemas exist: a 2.0 CALL is forwarded as it is even with validate_schemas (check-config warns)
        pair = SessionPair("2.0", validate=True)
        pair.charger_sends([2, "c1", "Heartbeat", {"not": "in any schema"}])
        pair.assert_to_backend([2, "c1", "Heartbeat", {"not": "in any schema"}])
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 0


class TestSend:
    def test_a_charger_send_is_relayed_byte_for_byte_and_gets_no_answer(self) -> None:
        pair = SessionPair("2.1")
        raw = (
            b'[6, "s1",\t"NotifyPeriodicEventStream", {"id":1,"pending":0,"basetime":"2025-03-01T12:00:00Z","data":[]}]'
        )
        pair.charger_sends(raw)
        assert pair.backend.raw == [raw]
        pair.assert_to_charger()
        assert messages(pair, "from_charger", "send", "NotifyPeriodicEventStream") == 1

    def test_a_send_takes_no_turn_on_the_lane(self) -> None:
        # a CALL is outstanding and another queued: the SEND goes out at once, and the lane goes on as before
        pair = SessionPair("2.1")
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.charger_sends(send("s1"))
        pair.assert_to_backend(hb("c1"), send("s1"))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend(hb("c2"))
        assert pair.session.in_flight()["outstanding"]["up"] == "Heartbeat"

    def test_a_backend_send_is_relayed_to_the_charger_while_its_call_waits(self) -> None:
        pair = SessionPair("2.1")
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.backend_sends([6, "b2", "NotifyPeriodicEventStream", STREAM])
        pair.assert_to_charger([2, "b1", "ClearCache", {}], [6, "b2", "NotifyPeriodicEventStream", STREAM])
        pair.charger_answers({"status": "Accepted"})
        pair.assert_to_backend([3, "b1", {"status": "Accepted"}])
        assert messages(pair, "from_backend", "send", "NotifyPeriodicEventStream") == 1

    @pytest.mark.parametrize("backend_version", ["2.1", "2.0.1"])
    def test_a_tap_sees_sends_and_callresulterrors(self, backend_version: str) -> None:
        pair = SessionPair("2.1", backend_version)  # type: ignore[arg-type]
        seen: list[tuple[str, str, str, str]] = []
        pair.session.tap = lambda direction, kind, action, uid, payload: seen.append((direction, kind, action, uid))
        pair.charger_sends(send("s1"))
        pair.charger_sends(hb("c1"))
        pair.backend_sends([3, pair.backend.last_call()[1], NOW])
        pair.charger_sends([5, "c1", "FormatViolation", "", {}])
        assert [x for x in seen if x[1] in ("send", "callresulterror")] == [
            ("from_charger", "send", "NotifyPeriodicEventStream", "s1"),
            ("from_charger", "callresulterror", "Heartbeat", "c1"),
        ]

    def test_an_invalid_send_is_dropped_and_counted_when_validating(self) -> None:
        pair = SessionPair("2.1", validate=True)
        pair.charger_sends(send("s1", {"id": 1}))
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 1
        pair.charger_sends(send("s2"))
        pair.assert_to_backend(send("s2"))

    def test_a_send_while_the_link_is_down_is_dropped_and_counted(self) -> None:
        pair = SessionPair("2.1")
        pair.session.link_lost()
        pair.charger_sends(send("s1"))
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_charger", reason="link_down") == 1

    @pytest.mark.parametrize(("version", "code"), [("2.0.1", "MessageTypeNotSupported"), ("1.6", "ProtocolError")])
    def test_a_send_from_a_version_without_it_is_refused_as_before(self, version: str, code: str) -> None:
        pair = SessionPair(version)  # type: ignore[arg-type]
        pair.charger_sends(send("s1"))
        pair.assert_error_to_charger("s1", code)
        pair.assert_to_backend()
        pair.backend_sends(send("s2"))
        pair.assert_error_to_backend("s2", code)
        pair.assert_to_charger()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="unknown_message_type") == 1
        assert pair.counter("ocppgw_frame_errors_total", side="backend", kind="unknown_message_type") == 1

    @pytest.mark.parametrize(("version", "code"), [("2.0.1", "MessageTypeNotSupported"), ("1.6", "ProtocolError")])
    @pytest.mark.parametrize(
        "frame", [[6, "m1", "Heartbeat"], [6, "m1", "Heartbeat", []], [5, "m1", "Heartbeat", {}], [5, "m1"]]
    )
    def test_a_malformed_send_or_callresulterror_from_a_version_without_them_is_an_unknown_type(
        self, version: str, code: str, frame: list[object]
    ) -> None:
        # to a 2.1 peer a malformed one is dropped (never answered); before 2.1 the type itself is unknown, whatever
        # follows it, and an unknown type is answered
        pair = SessionPair(version)  # type: ignore[arg-type]
        pair.charger_sends(frame)
        pair.assert_error_to_charger("m1", code)
        pair.assert_to_backend()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="unknown_message_type") == 1
        pair.backend_sends(frame)
        pair.assert_error_to_backend("m1", code)
        pair.assert_to_charger()


class TestCallResultError:
    def test_the_backends_callresulterror_reaches_the_charger_whose_callresult_it_refuses(self) -> None:
        pair = SessionPair("2.1")
        pair.backend_sends(
            [2, "b1", "GetVariables", {"getVariableData": [{"component": {"name": "X"}, "variable": {"name": "Y"}}]}]
        )
        pair.charger_answers({"getVariableResult": []})  # not what the CSMS can read (minItems 1)
        pair.assert_to_backend([3, "b1", {"getVariableResult": []}])
        raw = b'[5,"b1","OccurrenceConstraintViolation","getVariableResult: at least 1",{}]'
        pair.backend_sends(raw)
        assert pair.charger.raw[-1] == raw
        pair.assert_to_charger(
            [2, "b1", "GetVariables", pair.charger.frames[0][3]],
            [5, "b1", "OccurrenceConstraintViolation", "getVariableResult: at least 1", {}],
        )
        pair.assert_to_backend()  # never answered
        assert messages(pair, "from_backend", "callresulterror", "GetVariables") == 1

    def test_the_chargers_callresulterror_reaches_the_backend_whose_answer_it_refuses(self) -> None:
        pair = SessionPair("2.1")
        pair.charger_sends([2, "c1", "Authorize", {"idToken": {"idToken": "A", "type": "Local"}}])
        pair.backend_answers({"idTokenInfo": {"status": "Accepted"}, "tariff": {"bad": True}})
        pair.assert_to_charger([3, "c1", {"idTokenInfo": {"status": "Accepted"}, "tariff": {"bad": True}}])
        pair.charger_sends([5, "c1", "FormatViolation", "tariff unreadable", {}])
        pair.assert_to_backend(
            [2, "c1", "Authorize", {"idToken": {"idToken": "A", "type": "Local"}}],
            [5, "c1", "FormatViolation", "tariff unreadable", {}],
        )
        pair.assert_to_charger()
        assert messages(pair, "from_charger", "callresulterror", "Authorize") == 1

    def test_a_callresulterror_that_matches_no_answered_call_is_dropped_and_counted(self) -> None:
        pair = SessionPair("2.1")
        pair.charger_sends([5, "nobody", "GenericError", "", {}])
        pair.charger_sends(hb("c1"))
        pair.charger_sends([5, "c1", "GenericError", "not answered yet", {}])  # its CALL is still outstanding
        pair.assert_to_backend(hb("c1"))
        pair.assert_to_charger()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_charger", reason="unknown_id") == 2
        assert messages(pair, "from_charger", "callresulterror", "other") == 2

    def test_a_callresulterror_from_v201_is_an_unknown_message_type(self) -> None:
        pair = SessionPair("2.0.1")
        pair.charger_sends(hb("c1"))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.charger_sends([5, "c1", "GenericError", "", {}])
        pair.assert_error_to_charger("c1", "MessageTypeNotSupported")
        pair.assert_to_backend(hb("c1"))


# ------------------------------------------------------------------------------------------------------- set-up C

OPEN = {"constantStreamData": {"id": 1, "variableMonitoringId": 3, "params": {"interval": 10}}}
VENDOR = "org.openchargealliance.ocpp21"


def wrapped(action: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"vendorId": VENDOR, "messageId": action, "data": payload}


class TestTranslatedToV201:
    def test_a_charger_offering_only_ocpp2_1_to_a_v201_backend_is_translated(self) -> None:
        from gateway.app.admission import choose_subprotocol
        from gateway.app.routing import Route
        from gateway.config import BackendConfig
        from gateway.errors import ChargerRejected

        route = Route(primary=BackendConfig(name="csms", url="ws://x/ocpp", ocpp="2.0.1"), origin="config:routes[0]")
        assert choose_subprotocol(["ocpp2.1"], route, ("1.6", "2.0.1", "2.1")) == "ocpp2.1"
        assert choose_subprotocol(["ocpp2.1", "ocpp2.0.1"], route, ("2.0.1", "2.1")) == "ocpp2.0.1"  # its own first
        with pytest.raises(ChargerRejected):
            choose_subprotocol(["ocpp2.1"], route, ("1.6", "2.0.1"))  # 2.1 not offered on this listener

    def test_a_call_both_versions_have_goes_less_its_2_1_fields_with_the_gateways_id(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        event = {
            "eventType": "Updated", "timestamp": T0, "triggerReason": "MeterValuePeriodic", "seqNo": 1,
            "transactionInfo": {"transactionId": "tx-1", "operationMode": "ChargingOnly"}, "evseSleep": False,
        }  # fmt: skip
        pair.charger_sends([2, "c1", "TransactionEvent", event])
        to_csms = {k: v for k, v in event.items() if k != "evseSleep"} | {"transactionInfo": {"transactionId": "tx-1"}}
        pair.assert_to_backend([2, "g1.s1", "TransactionEvent", to_csms])
        pair.backend_sends([3, "g1.s1", {}])
        pair.assert_to_charger([3, "c1", {}])
        dropped = {"action": "TransactionEvent"}
        assert pair.counter("ocppgw_translation_dropped_total", what="evseSleep", **dropped) == 1
        assert pair.counter("ocppgw_translation_dropped_total", what="operationMode", **dropped) == 1

    def test_a_csms_call_reaches_the_2_1_charger_checked_against_2_1(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.backend_sends([2, "b1", "Reset", {"type": "Immediate"}])
        pair.assert_to_charger([2, "g1.s1", "Reset", {"type": "Immediate"}])
        pair.charger_sends([3, "g1.s1", {"status": "Accepted"}])
        pair.assert_to_backend([3, "b1", {"status": "Accepted"}])

    def test_a_2_1_only_call_reaches_the_csms_wrapped(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends([2, "c1", "OpenPeriodicEventStream", OPEN])
        pair.assert_to_backend([2, "g1.s1", "DataTransfer", wrapped("OpenPeriodicEventStream", OPEN)])
        pair.backend_sends([3, "g1.s1", {"status": "Accepted"}])
        pair.assert_to_charger([3, "c1", {"status": "Accepted"}])
        assert pair.stored_state() == {"streams": [1]}  # persisted, as every translator's state

    def test_a_send_of_an_accepted_stream_is_wrapped_into_a_call_and_gets_no_answer(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends([2, "c1", "OpenPeriodicEventStream", OPEN])
        pair.backend_sends([3, "g1.s1", {"status": "Accepted"}])
        pair.assert_to_charger([3, "c1", {"status": "Accepted"}])
        pair.assert_to_backend([2, "g1.s1", "DataTransfer", wrapped("OpenPeriodicEventStream", OPEN)])
        pair.charger_sends(hb("c2"))  # a CALL in flight: the wrapped SEND waits its turn toward the 2.0.1 CSMS
        pair.charger_sends(send("s1"))
        pair.assert_to_backend([2, "g2.s1", "Heartbeat", {}])
        pair.backend_sends([3, "g2.s1", NOW])
        pair.assert_to_backend([2, "g3.s1", "DataTransfer", wrapped("NotifyPeriodicEventStream", STREAM)])
        pair.backend_sends([3, "g3.s1", {"status": "Accepted"}])
        pair.assert_to_charger([3, "c2", NOW])  # the SEND itself is never answered
        assert messages(pair, "from_charger", "send", "NotifyPeriodicEventStream") == 1

    def test_a_send_of_an_unknown_stream_is_dropped_and_counted(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends(send("s1"))
        pair.assert_nothing_sent()
        labels = {"action": "NotifyPeriodicEventStream", "what": "send"}
        assert pair.counter("ocppgw_translation_dropped_total", **labels) == 1

    def test_an_invalid_send_is_dropped_and_counted(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends(send("s1", {"id": 1}))
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 1

    def test_the_csms_cannot_send_a_send(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.backend_sends(send("b1"))
        pair.assert_error_to_backend("b1", "MessageTypeNotSupported")
        pair.assert_to_charger()

    def test_a_chargers_callresulterror_is_not_for_the_v201_csms_and_is_counted(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends(hb("c1"))
        pair.backend_sends([3, "g1.s1", NOW])
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend([2, "g1.s1", "Heartbeat", {}])
        pair.charger_sends([5, "c1", "FormatViolation", "", {}])
        pair.assert_nothing_sent()
        labels = {"action": "Heartbeat", "what": "callresulterror"}
        assert pair.counter("ocppgw_translation_dropped_total", **labels) == 1

    def test_an_invalid_answer_of_the_2_1_charger_gets_a_callresulterror(self) -> None:
        # OCPP 2.1 Part 2 FR.06: the receiver of an invalid CALLRESULT answers it with a CALLRESULTERROR; the CSMS
        # whose CALL it answered gets InternalError, as in set-ups A and B
        pair = SessionPair("2.1", "2.0.1")
        pair.backend_sends([2, "b1", "Reset", {"type": "Immediate"}])
        pair.assert_to_charger([2, "g1.s1", "Reset", {"type": "Immediate"}])
        pair.charger_sends([3, "g1.s1", {"status": "Maybe"}])
        got = pair.charger.unread()
        assert [f[:3] for f in got] == [[5, "g1.s1", "PropertyConstraintViolation"]]
        pair.assert_error_to_backend("b1", "InternalError")

    def test_a_value_2_0_1_cannot_carry_is_refused_internal_error_and_never_sent(self) -> None:
        pair = SessionPair("2.1", "2.0.1")
        pair.charger_sends([2, "c1", "Authorize", {"idToken": {"idToken": "x" * 40, "type": "ISO14443"}}])
        pair.assert_error_to_charger("c1", "InternalError")
        pair.assert_to_backend()
        assert pair.counter("ocppgw_translation_errors_total", action="Authorize", kind="invalid_call") == 1
