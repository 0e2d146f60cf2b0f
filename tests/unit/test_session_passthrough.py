"""The charger session in pass-through (charger and backend speak one version): forwarding, one CALL at a time per
direction, the bounded queue, unknown answers, malformed frames, deadlines and the backend link going away.

The gateway's own CALLs, the state it persists, cutover holds and password rotation: ``test_session_control.py``.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.session_pair import BACKEND, T0, SessionPair

BOTH = pytest.mark.parametrize("version", ["1.6", "2.0.1"])
NOW = {"currentTime": T0}


def hb(uid: str) -> list[Any]:
    return [2, uid, "Heartbeat", {}]


class TestForwarding:
    def test_a_charger_call_and_its_answer_pass_byte_for_byte(self) -> None:
        pair = SessionPair("1.6")
        call = b'[2, "c1" ,  "Heartbeat",{ }]'
        answer = b'[ 3,"c1", {"currentTime" : "2025-03-01T12:00:00.000Z"}]'
        pair.charger_sends(call)
        assert pair.backend.raw == [call]
        pair.backend_sends(answer)
        assert pair.charger.raw == [answer]

    def test_a_backend_call_and_its_answer_pass_byte_for_byte(self) -> None:
        pair = SessionPair("2.0.1")
        call = b'[2,"b1","ClearCache",{}    ]'
        answer = '[3,"b1",{"status":"Accepted","statusInfo":{"reasonCode":"é"}}]'.encode()
        pair.backend_sends(call)
        assert pair.charger.raw == [call]
        pair.charger_sends(answer)
        assert pair.backend.raw == [answer]

    def test_a_callerror_answer_is_forwarded_as_it_came(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.backend_fails("NotImplemented", "nope", {"why": 1})
        pair.assert_to_charger([4, "c1", "NotImplemented", "nope", {"why": 1}])

    def test_frames_and_round_trips_are_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.advance(1.5)
        pair.backend_answers(NOW)
        labels = {"action": "Heartbeat", "backend": BACKEND}
        assert pair.counter("ocppgw_messages_total", direction="from_charger", message_type="call", **labels) == 1
        assert pair.counter("ocppgw_messages_total", direction="from_backend", message_type="callresult", **labels) == 1
        assert pair.counter("ocppgw_call_duration_seconds_sum", direction="up", **labels) == 1.5


class TestOneCallAtATime:
    def test_a_second_charger_call_waits_until_the_first_is_answered(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend(hb("c1"))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend(hb("c2"))

    def test_queued_charger_calls_go_in_the_order_they_came(self) -> None:
        pair = SessionPair("1.6")
        for uid in ("c1", "c2", "c3", "c4"):
            pair.charger_sends(hb(uid))
        for uid in ("c1", "c2", "c3", "c4"):
            pair.assert_to_backend(hb(uid))
            pair.backend_answers(NOW)
        pair.assert_to_backend()

    def test_a_second_backend_call_waits_until_the_charger_answers_the_first(self) -> None:
        pair = SessionPair("1.6")
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.backend_sends([2, "b2", "GetLocalListVersion", {}])
        pair.assert_to_charger([2, "b1", "ClearCache", {}])
        pair.charger_answers({"status": "Accepted"})
        pair.assert_to_backend([3, "b1", {"status": "Accepted"}])
        pair.assert_to_charger([2, "b2", "GetLocalListVersion", {}])

    def test_each_direction_has_its_own_outstanding_call(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.assert_to_backend(hb("c1"))
        pair.assert_to_charger([2, "b1", "ClearCache", {}])

    def test_a_callerror_frees_the_lane_for_the_next_call(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.backend_fails("InternalError")
        pair.assert_to_backend(hb("c1"), hb("c2"))


class TestFullQueue:
    @pytest.mark.parametrize(("version", "code"), [("1.6", "ProtocolError"), ("2.0.1", "RpcFrameworkError")])
    def test_a_charger_call_beyond_the_queue_is_answered_busy_and_counted(self, version: Any, code: str) -> None:
        pair = SessionPair(version, max_queued_calls=1)
        for uid in ("c1", "c2", "c3"):
            pair.charger_sends(hb(uid))
        pair.assert_error_to_charger("c3", code)
        assert pair.counter("ocppgw_queue_overflows_total", direction="up") == 1
        pair.backend_answers(NOW)
        pair.backend_answers(NOW)
        pair.assert_to_backend(hb("c1"), hb("c2"))  # c3 never reaches the backend

    @pytest.mark.parametrize(("version", "code"), [("1.6", "ProtocolError"), ("2.0.1", "RpcFrameworkError")])
    def test_a_backend_call_beyond_the_queue_is_answered_busy_and_counted(self, version: Any, code: str) -> None:
        pair = SessionPair(version, max_queued_calls=1)
        for uid in ("b1", "b2", "b3"):
            pair.backend_sends([2, uid, "ClearCache", {}])
        pair.assert_error_to_backend("b3", code)
        assert pair.counter("ocppgw_queue_overflows_total", direction="down") == 1
        assert [f[1] for f in pair.charger.unread()] == ["b1"]


class TestUnknownAnswers:
    def test_a_backend_answer_with_an_unknown_id_is_dropped_and_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.backend.unread()
        pair.backend_sends([3, "nobody", NOW])
        pair.backend_sends([4, "c2", "GenericError", "", {}])  # c2 is queued, not on the wire
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_backend", reason="unknown_id") == 2
        pair.backend_answers(NOW)  # the lane still waits for c1
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend(hb("c2"))

    def test_a_charger_answer_with_an_unknown_id_is_dropped_and_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends([3, "b9", {"status": "Accepted"}])
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_charger", reason="unknown_id") == 1


# (frame, ocppgw_frame_errors_total kind, 1.6 code, 2.0.1 code): frames whose unique id can be read
ANSWERABLE = [
    (b'[2,"m1","Heartbeat",{', "invalid_json", "FormationViolation", "RpcFrameworkError"),
    ([2, "m1", "Heartbeat", []], "payload_not_object", "FormationViolation", "FormatViolation"),
    ([2, "m1", "Heartbeat"], "bad_shape", "ProtocolError", "RpcFrameworkError"),
    ([2, "m1", "", {}], "bad_action", "ProtocolError", "RpcFrameworkError"),
    (["2", "m1", "Heartbeat", {}], "bad_message_type", "ProtocolError", "RpcFrameworkError"),
    ([7, "m1", "Heartbeat", {}], "unknown_message_type", "ProtocolError", "MessageTypeNotSupported"),
]
# frames nobody can be answered for: no readable unique id, or not a CALL
UNANSWERABLE = [
    (b"hello", "invalid_json"),
    (b"{}", "not_array"),
    ([2, 42, "Heartbeat", {}], "bad_unique_id"),
    ([3, "x" * 37, {}], "bad_unique_id"),
    ([3, "m1"], "bad_shape"),
    ([4, "m1", "GenericError"], "bad_shape"),
    ([3, "m1", []], "payload_not_object"),
]


# a CALL whose unique id is longer than 36 characters: (version, the id of its CALLERROR, the code); answered
# under "-1" (OCPP 2.0.1 Part 4 §4.2.3; 1.6 names no such id, and echoing the long one would break strict peers)
LONG_ID_ANSWERS = [
    ("1.6", "-1", "ProtocolError"),
    ("2.0.1", "-1", "RpcFrameworkError"),
    ("2.1", "-1", "RpcFrameworkError"),
]


class TestMalformedFrames:
    @BOTH
    @pytest.mark.parametrize(("frame", "kind", "v16", "v201"), ANSWERABLE, ids=[r[1] for r in ANSWERABLE])
    def test_a_malformed_charger_call_gets_its_versions_code_and_goes_nowhere(
        self, version: Any, frame: Any, kind: str, v16: str, v201: str
    ) -> None:
        pair = SessionPair(version)
        pair.charger_sends(frame)
        pair.assert_error_to_charger("m1", v16 if version == "1.6" else v201)
        pair.assert_to_backend()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind=kind) == 1

    @BOTH
    @pytest.mark.parametrize(("frame", "kind", "v16", "v201"), ANSWERABLE, ids=[r[1] for r in ANSWERABLE])
    def test_a_malformed_backend_call_gets_its_versions_code_and_goes_nowhere(
        self, version: Any, frame: Any, kind: str, v16: str, v201: str
    ) -> None:
        pair = SessionPair(version)
        pair.backend_sends(frame)
        pair.assert_error_to_backend("m1", v16 if version == "1.6" else v201)
        pair.assert_to_charger()
        assert pair.counter("ocppgw_frame_errors_total", side="backend", kind=kind) == 1

    @pytest.mark.parametrize("side", ["charger", "backend"])
    @pytest.mark.parametrize(("frame", "kind"), UNANSWERABLE)
    def test_a_malformed_frame_without_a_readable_call_id_is_counted_and_not_answered(
        self, side: str, frame: Any, kind: str
    ) -> None:
        pair = SessionPair("1.6")
        send = pair.charger_sends if side == "charger" else pair.backend_sends
        send(frame)
        pair.assert_nothing_sent()
        assert pair.counter("ocppgw_frame_errors_total", side=side, kind=kind) == 1

    @pytest.mark.parametrize(("version", "answer_id", "code"), LONG_ID_ANSWERS)
    def test_a_charger_call_with_a_unique_id_over_36_characters_is_answered_and_goes_nowhere(
        self, version: Any, answer_id: str, code: str
    ) -> None:
        pair = SessionPair(version)
        pair.charger_sends(hb("x" * 37))
        pair.assert_error_to_charger(answer_id, code)
        pair.assert_to_backend()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="bad_unique_id") == 1

    @pytest.mark.parametrize(("version", "answer_id", "code"), LONG_ID_ANSWERS)
    def test_a_backend_call_with_a_unique_id_over_36_characters_is_answered_and_goes_nowhere(
        self, version: Any, answer_id: str, code: str
    ) -> None:
        pair = SessionPair(version)
        pair.backend_sends(hb("x" * 37))
        pair.assert_error_to_backend(answer_id, code)
        pair.assert_to_charger()
        assert pair.counter("ocppgw_frame_errors_total", side="backend", kind="bad_unique_id") == 1

    @pytest.mark.parametrize("side", ["charger", "backend"])
    def test_invalid_utf8_fails_its_senders_connection_with_1007_and_goes_nowhere(self, side: str) -> None:
        # RFC 6455 §8.1: a text frame that is not UTF-8 fails the WebSocket connection; no CALLERROR
        pair = SessionPair("2.0.1")
        send = pair.charger_sends if side == "charger" else pair.backend_sends
        send(b'[2,"u1","Heartbeat",{"x":"\xff"}]')
        pair.assert_nothing_sent()
        assert pair.failed == [(side, 1007, "invalid_utf8")]
        assert pair.counter("ocppgw_frame_errors_total", side=side, kind="invalid_utf8") == 1

    def test_the_session_lives_on_after_a_malformed_frame(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.backend_sends(b"[3,")
        pair.charger_sends(b"[2,")
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend(hb("c1"), hb("c2"))

    def test_with_validation_a_call_that_fails_its_schema_is_refused_to_its_sender(self) -> None:
        pair = SessionPair("1.6", validate=True)
        pair.charger_sends([2, "c1", "BootNotification", {"chargePointVendor": "ACME"}])
        pair.assert_error_to_charger("c1", "OccurenceConstraintViolation")
        pair.assert_to_backend()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 1


class TestDeadlines:
    def test_a_charger_call_past_its_deadline_is_forgotten_and_the_next_goes(self) -> None:
        pair = SessionPair("1.6", call_timeout_s=30)
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.advance(29.9)
        pair.expire()
        pair.assert_to_backend(hb("c1"))
        pair.advance(0.1)
        assert pair.session.overdue(pair.now)
        pair.expire()
        pair.assert_to_backend(hb("c2"))
        pair.assert_to_charger()  # the gateway never invents an answer
        assert pair.counter("ocppgw_call_timeouts_total", direction="up", backend=BACKEND) == 1

    def test_a_late_answer_to_a_forgotten_call_is_dropped_and_counted(self) -> None:
        pair = SessionPair("1.6", call_timeout_s=30)
        pair.charger_sends(hb("c1"))
        pair.advance(30)
        pair.expire()
        pair.backend_sends([3, "c1", NOW])
        pair.assert_to_charger()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_backend", reason="unknown_id") == 1

    def test_the_next_call_gets_a_full_deadline_of_its_own(self) -> None:
        pair = SessionPair("1.6", call_timeout_s=30)
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.advance(30)
        pair.expire()  # c1 forgotten, c2 sent at t+30
        pair.advance(29)
        pair.expire()
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c2", NOW])

    def test_a_backend_call_past_its_deadline_is_forgotten_and_the_next_goes(self) -> None:
        pair = SessionPair("1.6", call_timeout_s=30)
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.backend_sends([2, "b2", "ClearCache", {}])
        pair.advance(30)
        pair.expire()
        assert [f[1] for f in pair.charger.unread()] == ["b1", "b2"]
        pair.assert_to_backend()
        assert pair.counter("ocppgw_call_timeouts_total", direction="down", backend=BACKEND) == 1


class TestBackendLink:
    def test_charger_calls_wait_while_the_link_is_down_and_flow_when_it_is_back(self) -> None:
        pair = SessionPair("1.6")
        pair.session.link_lost()
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.assert_nothing_sent()
        pair.session.link_restored()
        pair.assert_to_backend(hb("c1"))
        pair.backend_answers(NOW)
        pair.assert_to_backend(hb("c2"))

    def test_the_call_outstanding_when_the_link_drops_is_forgotten_and_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends(hb("c1"))
        pair.session.link_lost()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_backend", reason="link_lost") == 1
        pair.session.link_restored()
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend(hb("c1"), hb("c2"))  # c1 is not sent again
        pair.assert_to_charger()

    def test_a_charger_answer_while_the_link_is_down_is_dropped_and_counted(self) -> None:
        pair = SessionPair("1.6")
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.session.link_lost()
        pair.charger_answers({"status": "Accepted"})
        pair.assert_to_backend()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_charger", reason="link_down") == 1
