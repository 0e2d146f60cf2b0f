"""The charger session when charger and backend speak different versions (set-up A: 1.6 charger, 2.0.1 CSMS;
set-up B: 2.0.1 charger, 1.6 CSMS), with the real translators: the gateway's own unique ids toward the other side,
planning in turn, schema checks of every translated frame, error codes per version, state writes and timeouts.

What each translator makes of each message is tested in ``test_translate_*.py``; here, what the session does
around it.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

import pytest

from gateway.store.base import Write
from gateway.translate import translator_for
from tests.unit.session_pair import BACKEND, CHARGER_ID, T0, WALL, SessionPair, gid

A = ("1.6", "2.0.1")
B = ("2.0.1", "1.6")
SETUPS = pytest.mark.parametrize("setup", [A, B], ids=["A", "B"])
NOW = {"currentTime": T0}
ACCEPTED = {"status": "Accepted"}
BOOT_OK = {"status": "Accepted", "currentTime": T0, "interval": 300}
BOOT_16 = {"chargePointVendor": "ACME", "chargePointModel": "Wallbox"}
BOOT_201 = {"reason": "PowerUp", "chargingStation": {"model": "Wallbox", "vendorName": "ACME"}}
TOKEN = {"idToken": "TAG1", "type": "ISO14443"}
PASSWORD = "n3w-Secret-Passw0rd"
BASIC_AUTH = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
HEARTBEAT_INTERVAL = {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}}
#: (set-up, the CSMS's CALL setting the password, the CALL the charger gets, the charger's acceptance)
ROTATIONS = [
    (
        A,
        ["SetVariables", {"setVariableData": [{"attributeValue": PASSWORD, **BASIC_AUTH}]}],
        ["ChangeConfiguration", {"key": "AuthorizationKey", "value": PASSWORD}],
        ACCEPTED,
    ),
    (
        B,
        ["ChangeConfiguration", {"key": "AuthorizationKey", "value": PASSWORD}],
        ["SetVariables", {"setVariableData": [{"attributeValue": PASSWORD, **BASIC_AUTH}]}],
        {"setVariableResult": [{"attributeStatus": "Accepted", **BASIC_AUTH}]},
    ),
]


def pair_for(setup: tuple[Any, Any], **kw: Any) -> SessionPair:
    return SessionPair(setup[0], setup[1], **kw)


def hb(uid: str) -> list[Any]:
    return [2, uid, "Heartbeat", {}]


def tx_event(uid: str, event_type: str, seq: int, trigger: str, **fields: Any) -> list[Any]:
    """A 2.0.1 TransactionEvent of transaction TX1 with an energy reading (a Started one: on EVSE 1, by TAG1)."""
    context = "Transaction.Begin" if event_type == "Started" else "Transaction.End"
    payload: dict[str, Any] = {
        "eventType": event_type,
        "timestamp": T0,
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX1"},
        "meterValue": [{"timestamp": T0, "sampledValue": [{"value": 1000 * (seq + 1), "context": context}]}],
    }
    if event_type == "Started":
        payload.update(evse={"id": 1, "connectorId": 1}, idToken=TOKEN)
    return [2, uid, "TransactionEvent", {**payload, **fields}]


class TestRoundTrips:
    @SETUPS
    def test_a_heartbeat_goes_with_the_gateways_id_and_returns_with_the_chargers(self, setup: Any) -> None:
        pair = pair_for(setup)
        pair.charger_sends(hb("c1"))
        pair.assert_to_backend(hb(gid(1)))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])

    @pytest.mark.parametrize(
        ("setup", "boot", "sent"), [(A, BOOT_16, BOOT_201), (B, BOOT_201, BOOT_16)], ids=["A", "B"]
    )
    def test_a_boot_is_translated_both_ways_and_recorded_as_the_charger_sent_it(
        self, setup: Any, boot: Any, sent: Any
    ) -> None:
        pair = pair_for(setup)
        pair.charger_sends([2, "c1", "BootNotification", boot])
        pair.assert_to_backend([2, gid(1), "BootNotification", sent])
        pair.backend_answers(BOOT_OK)
        pair.assert_to_charger([3, "c1", BOOT_OK])
        assert pair.writes_of("boot") == [
            Write("boot", CHARGER_ID, "", {"request": boot, "response": BOOT_OK, "at": WALL})
        ]

    @SETUPS
    def test_a_csms_call_goes_with_the_gateways_id_and_returns_with_the_csms(self, setup: Any) -> None:
        pair = pair_for(setup)
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.assert_to_charger([2, gid(1), "ClearCache", {}])
        pair.charger_answers(ACCEPTED)
        pair.assert_to_backend([3, "b1", ACCEPTED])

    def test_an_answer_under_the_origins_id_is_not_an_answer(self) -> None:
        pair = pair_for(A)
        pair.charger_sends(hb("c1"))
        pair.backend_sends([3, "c1", NOW])
        pair.assert_to_charger()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_backend", reason="unknown_id") == 1


class TestPlanningInTurn:
    @SETUPS
    def test_a_second_charger_call_is_planned_after_the_first_is_answered(self, setup: Any) -> None:
        pair = pair_for(setup)
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend(hb(gid(1)))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend(hb(gid(2)))

    @SETUPS
    def test_a_second_csms_call_is_planned_after_the_charger_answered_the_first(self, setup: Any) -> None:
        pair = pair_for(setup)
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.backend_sends([2, "b2", "ClearCache", {}])
        pair.assert_to_charger([2, gid(1), "ClearCache", {}])
        pair.charger_answers(ACCEPTED)
        pair.assert_to_charger([2, gid(2), "ClearCache", {}])

    def test_a_stop_sent_before_the_start_was_answered_carries_the_csms_transaction_id(self) -> None:
        pair = pair_for(B)
        pair.charger_sends(tx_event("t1", "Started", 0, "Authorized"))
        ended = {"transactionId": "TX1", "stoppedReason": "Local"}
        pair.charger_sends(tx_event("t2", "Ended", 1, "EVDeparted", transactionInfo=ended))
        assert [f[2] for f in pair.backend.unread()] == ["StartTransaction"]
        pair.backend_answers({"transactionId": 77, "idTagInfo": {"status": "Accepted"}})
        stop = pair.backend.unread()
        assert [(f[1], f[2], f[3]["transactionId"]) for f in stop] == [(gid(2), "StopTransaction", 77)]

    def test_a_call_the_translator_refuses_is_answered_in_its_turn(self) -> None:
        pair = pair_for(A)
        pair.charger_sends(hb("c1"))
        pair.charger_sends([2, "c2", "Reset", {"type": "Soft"}])  # a central system's CALL
        pair.charger_sends(hb("c3"))
        pair.assert_to_charger()
        pair.backend_answers(NOW)
        assert [f[:3] for f in pair.charger.unread()] == [[3, "c1", NOW], [4, "c2", "NotSupported"]]
        pair.assert_to_backend(hb(gid(1)), hb(gid(2)))  # c3 goes once c2 is refused
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c3", NOW])
        labels = {"action": "Reset", "reason": "wrong_direction"}
        assert pair.counter("ocppgw_translation_local_answers_total", **labels) == 1

    def test_a_call_the_translator_answers_itself_never_reaches_the_csms(self) -> None:
        pair = pair_for(A)
        status = {"connectorId": 1, "errorCode": "NoError", "timestamp": T0}
        pair.charger_sends([2, "c1", "StatusNotification", {**status, "status": "Preparing"}])
        pair.backend_answers({})
        pair.backend.unread()
        pair.charger_sends([2, "c2", "StatusNotification", {**status, "status": "Finishing"}])
        pair.assert_to_backend()
        pair.assert_to_charger([3, "c1", {}], [3, "c2", {}])
        labels = {"action": "StatusNotification", "reason": "occupied_folded"}
        assert pair.counter("ocppgw_translation_local_answers_total", **labels) == 1


class TestSchemas:
    def test_a_translated_call_that_fails_the_target_schema_is_answered_internal_error_and_not_sent(self) -> None:
        # a vendor override longer than a 1.6 chargePointVendor (the config loader refuses it; the translator not)
        pair = pair_for(B, translation={"charge_point_vendor": "V" * 21})
        pair.charger_sends([2, "c1", "BootNotification", BOOT_201])
        pair.assert_error_to_charger("c1", "InternalError")
        pair.assert_to_backend()
        labels = {"action": "BootNotification", "kind": "invalid_call"}
        assert pair.counter("ocppgw_translation_errors_total", **labels) == 1
        pair.charger_sends(hb("c2"))  # the lane is free again
        pair.assert_to_backend(hb(gid(1)))

    def test_a_csms_answer_that_fails_its_own_schema_is_answered_internal_error_and_not_translated(self) -> None:
        pair = pair_for(A)
        pair.charger_sends(hb("c1"))
        pair.backend_answers({"currentTime": "yesterday"})
        pair.assert_error_to_charger("c1", "InternalError")
        assert pair.counter("ocppgw_frame_errors_total", side="backend", kind="schema_result") == 1
        assert pair.counter("ocppgw_translation_errors_total", action="Heartbeat", kind="invalid_answer") == 0

    @pytest.mark.parametrize(
        ("setup", "code"), [(A, "OccurenceConstraintViolation"), (B, "OccurrenceConstraintViolation")]
    )
    def test_a_charger_call_that_fails_its_own_schema_is_refused_and_not_translated(
        self, setup: Any, code: str
    ) -> None:
        pair = pair_for(setup)
        pair.charger_sends([2, "c1", "BootNotification", {}])
        pair.assert_error_to_charger("c1", code)
        pair.assert_to_backend()
        assert pair.counter("ocppgw_frame_errors_total", side="charger", kind="schema") == 1

    @pytest.mark.parametrize("side", ["backend", "charger"])
    def test_an_answer_that_fails_the_answering_sides_schema_does_not_wedge_the_lane(self, side: str) -> None:
        pair = pair_for(A)
        if side == "backend":
            pair.charger_sends(hb("c1"))
            pair.backend_answers({})  # a 2.0.1 Heartbeat answer without currentTime
            pair.charger_sends(hb("c2"))
            assert [f[1] for f in pair.backend.frames] == [gid(1), gid(2)]
        else:
            pair.backend_sends([2, "b1", "ClearCache", {}])
            pair.charger_answers({})  # a 1.6 ClearCache answer without status
            pair.backend_sends([2, "b2", "ClearCache", {}])
            assert [f[1] for f in pair.charger.frames] == [gid(1), gid(2)]


# (set-up, code the other side sent, code the origin gets)
UP_ERRORS = [
    (A, "FormatViolation", "FormationViolation"),
    (A, "RpcFrameworkError", "ProtocolError"),
    (A, "OccurrenceConstraintViolation", "OccurenceConstraintViolation"),
    (A, "NoSuchCode", "GenericError"),
    (B, "FormationViolation", "FormatViolation"),
    (B, "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    (B, "NotImplemented", "NotImplemented"),
]
DOWN_ERRORS = [
    (A, "FormationViolation", "FormatViolation"),
    (A, "OccurenceConstraintViolation", "OccurrenceConstraintViolation"),
    (B, "MessageTypeNotSupported", "ProtocolError"),
    (B, "FormatViolation", "FormationViolation"),
]


class TestErrorCodes:
    @pytest.mark.parametrize(("setup", "sent", "got"), UP_ERRORS)
    def test_a_csms_callerror_reaches_the_charger_in_the_chargers_spelling(
        self, setup: Any, sent: str, got: str
    ) -> None:
        pair = pair_for(setup)
        pair.charger_sends(hb("c1"))
        pair.backend_fails(sent, "why")
        pair.assert_to_charger([4, "c1", got, "why", {}])

    @pytest.mark.parametrize(("setup", "sent", "got"), DOWN_ERRORS)
    def test_a_charger_callerror_reaches_the_csms_in_the_csms_spelling(self, setup: Any, sent: str, got: str) -> None:
        pair = pair_for(setup)
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.charger_fails(sent, "why")
        pair.assert_to_backend([4, "b1", got, "why", {}])


class TestTranslatorState:
    def test_the_state_is_persisted_before_the_translated_call_leaves(self) -> None:
        pair = pair_for(B)
        pair.charger_sends(hb("c1"))
        assert [kind for kind, _ in pair.effects] == ["persist", "backend"]
        assert pair.effects[0][1].kind == "tx"

    def test_the_persisted_state_keeps_what_the_csms_answer_assigned(self) -> None:
        pair = pair_for(B)
        pair.charger_sends(tx_event("t1", "Started", 0, "Authorized"))
        pair.backend_answers({"transactionId": 77, "idTagInfo": {"status": "Accepted"}})
        last = pair.writes[-1]
        assert (last.kind, last.cid, last.sub) == ("tx", CHARGER_ID, BACKEND)
        stored = pair.stored_state(last)
        assert stored == json.loads(json.dumps(pair.session.translator.snapshot()))  # type: ignore[union-attr]
        assert (stored or {})["transactions"]["TX1"]["tx_int"] == 77
        assert pair.effects[-1][0] == "charger" and pair.effects[-2][0] == "persist"  # written before the answer

    def test_fields_the_csms_cannot_carry_are_counted(self) -> None:
        pair = pair_for(A)
        pair.charger_sends([2, "c1", "BootNotification", {**BOOT_16, "meterType": "EM340"}])
        pair.backend_answers(BOOT_OK)
        labels = {"action": "BootNotification", "what": "meterType"}
        assert pair.counter("ocppgw_translation_dropped_total", **labels) == 1

    def test_a_second_serial_number_the_csms_cannot_carry_is_counted(self) -> None:
        pair = pair_for(A)
        serials = {"chargePointSerialNumber": "CP-1", "chargeBoxSerialNumber": "CB-1"}
        pair.charger_sends([2, "c1", "BootNotification", {**BOOT_16, **serials}])
        pair.assert_to_backend(
            [
                2,
                gid(1),
                "BootNotification",
                {**BOOT_201, "chargingStation": {**BOOT_201["chargingStation"], "serialNumber": "CP-1"}},
            ]
        )
        pair.backend_answers(BOOT_OK)
        labels = {"action": "BootNotification", "what": "chargeBoxSerialNumber"}
        assert pair.counter("ocppgw_translation_dropped_total", **labels) == 1

    def test_closing_the_session_persists_the_state(self) -> None:
        pair = pair_for(A)
        pair.session.close()
        assert [(k, w.kind) for k, w in pair.effects] == [("persist", "tx")]


class TestTriggeredStatus:
    """Set-up B: the StatusNotification a 1.6 CSMS triggered reaches it, even when the 1.6 status is unchanged."""

    AVAILABLE: ClassVar[dict[str, Any]] = {"connectorStatus": "Available", "evseId": 1, "connectorId": 1}
    SENT: ClassVar[dict[str, Any]] = {"connectorId": 1, "errorCode": "NoError", "status": "Available"}

    def status(self, pair: SessionPair, uid: str) -> None:
        pair.charger_sends([2, uid, "StatusNotification", {**self.AVAILABLE, "timestamp": T0}])

    def trigger(self, pair: SessionPair) -> None:
        request = {"requestedMessage": "StatusNotification", "connectorId": 1}
        pair.backend_sends([2, "b1", "TriggerMessage", request])
        pair.assert_to_charger(
            [
                2,
                gid(2),
                "TriggerMessage",
                {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
            ]
        )
        pair.charger_answers(ACCEPTED)
        pair.assert_to_backend([3, "b1", ACCEPTED])

    def test_a_triggered_unchanged_status_reaches_the_csms(self) -> None:
        pair = pair_for(B)
        self.status(pair, "c1")
        pair.assert_to_backend([2, gid(1), "StatusNotification", {**self.SENT, "timestamp": T0}])
        pair.backend_answers({})
        pair.assert_to_charger([3, "c1", {}])
        self.trigger(pair)
        self.status(pair, "c2")
        pair.assert_to_backend([2, gid(3), "StatusNotification", {**self.SENT, "timestamp": T0}])
        pair.backend_answers({})
        pair.assert_to_charger([3, "c2", {}])
        labels = {"action": "StatusNotification", "reason": "status_unchanged"}
        assert pair.counter("ocppgw_translation_local_answers_total", **labels) == 0

    def test_a_trigger_survives_a_reconnect_between_the_trigger_and_the_status(self) -> None:
        pair = pair_for(B)
        self.status(pair, "c1")
        pair.backend_answers({})
        pair.backend.unread(), pair.charger.unread()
        self.trigger(pair)
        pair.session.close()
        stored = pair.stored_state()
        assert stored is not None
        translator = translator_for("2.0.1", "1.6", session_started_at=T0)
        translator.restore(json.loads(json.dumps(stored)))  # as the store keeps it
        again = SessionPair("2.0.1", "1.6", translator=translator)
        self.status(again, "c2")
        again.assert_to_backend([2, gid(1), "StatusNotification", {**self.SENT, "timestamp": T0}])


class TestPasswordRotation:
    @pytest.mark.parametrize(("setup", "csms_call", "charger_call", "accepted"), ROTATIONS, ids=["A", "B"])
    def test_a_password_the_csms_sets_through_translation_is_reported_once_the_charger_accepts_it(
        self, setup: Any, csms_call: Any, charger_call: Any, accepted: Any
    ) -> None:
        pair = pair_for(setup)
        pair.backend_sends([2, "b1", *csms_call])
        pair.assert_to_charger([2, gid(1), *charger_call])
        assert pair.passwords == []
        pair.charger_answers(accepted)
        assert pair.passwords == [PASSWORD]

    @pytest.mark.parametrize(("setup", "csms_call", "charger_call", "accepted"), ROTATIONS, ids=["A", "B"])
    def test_under_terminate_the_driver_takes_the_csms_password_call_before_translation(
        self, setup: Any, csms_call: Any, charger_call: Any, accepted: Any
    ) -> None:
        pair = pair_for(setup, rotation="terminate")
        pair.backend_sends([2, "b1", *csms_call])
        assert [(uid, password) for uid, _, password in pair.rotations] == [("b1", PASSWORD)]
        pair.assert_nothing_sent()


class TestTimeouts:
    @SETUPS
    def test_an_unanswered_charger_call_gives_the_charger_no_answer_and_the_next_goes(self, setup: Any) -> None:
        pair = pair_for(setup, call_timeout_s=30)
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.advance(30)
        pair.expire()
        pair.assert_to_charger()
        pair.assert_to_backend(hb(gid(1)), hb(gid(2)))
        assert pair.counter("ocppgw_call_timeouts_total", direction="up", backend=BACKEND) == 1
        pair.backend_sends([3, gid(1), NOW])  # too late
        pair.assert_to_charger()

    def test_an_unanswered_csms_call_gives_the_csms_no_answer_and_the_plan_undoes_its_bookkeeping(self) -> None:
        pair = pair_for(A, call_timeout_s=30)
        pair.backend_sends([2, "b1", "Reset", {"type": "Immediate"}])
        pair.assert_to_charger([2, gid(1), "Reset", {"type": "Hard"}])
        assert (pair.stored_state() or {})["reset"] is not None
        pair.advance(30)
        pair.expire()
        pair.assert_nothing_sent()
        assert (pair.stored_state() or {})["reset"] is None
        assert pair.counter("ocppgw_call_timeouts_total", direction="down", backend=BACKEND) == 1

    def test_a_timeout_inside_a_plan_of_several_calls_lets_the_plan_substitute_and_go_on(self) -> None:
        pair = pair_for(A, call_timeout_s=30)
        variables = [{"attributeValue": "60", **HEARTBEAT_INTERVAL}, {"attributeValue": PASSWORD, **BASIC_AUTH}]
        pair.backend_sends([2, "b1", "SetVariables", {"setVariableData": variables}])
        pair.assert_to_charger([2, gid(1), "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}])
        pair.advance(30)
        pair.expire()  # the first item gets no answer: the plan marks it and sends the next
        pair.assert_to_charger([2, gid(2), "ChangeConfiguration", {"key": "AuthorizationKey", "value": PASSWORD}])
        pair.charger_answers(ACCEPTED)
        [answer] = pair.backend.unread()
        assert answer[:2] == [3, "b1"]
        assert [r["attributeStatus"] for r in answer[2]["setVariableResult"]] == ["Rejected", "Accepted"]
        assert pair.passwords == [PASSWORD]


class TestBackendLink:
    def test_charger_calls_wait_while_the_link_is_down_and_are_planned_when_it_is_back(self) -> None:
        pair = pair_for(B)
        pair.charger_sends(hb("c1"))
        pair.session.link_lost()  # c1 is lost with the link: the charger gets no answer
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend(hb(gid(1)))
        pair.session.link_restored()
        pair.assert_to_backend(hb(gid(2)))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c2", NOW])

    @pytest.mark.parametrize("setup", [A, B], ids=["A", "B"])
    def test_with_resend_lost_the_call_the_link_lost_is_sent_again_under_its_unique_id(self, setup: Any) -> None:
        """Ride-through sets ``resend_lost``: the plan's CALL on the wire when the link dropped goes out again, same
        gateway unique id, before the CALLs that waited; nothing is counted dropped and the charger gets its answer."""
        pair = pair_for(setup)
        pair.session.resend_lost = True
        pair.charger_sends(hb("c1"))
        pair.assert_to_backend(hb(gid(1)))
        pair.session.link_lost()
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_backend", reason="link_lost") == 0
        pair.session.link_restored()
        pair.assert_to_backend(hb(gid(1)))  # the same CALL, the same id
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])
        pair.assert_to_backend(hb(gid(2)))
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c2", NOW])

    def test_a_charger_answer_while_the_link_is_down_is_dropped_and_counted(self) -> None:
        pair = pair_for(A)
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.session.link_lost()
        pair.charger_answers(ACCEPTED)
        pair.assert_to_backend()
        assert pair.counter("ocppgw_dropped_results_total", direction="from_charger", reason="link_down") == 1
