"""The charger session, pass-through, beyond forwarding: the gateway's own CALLs (admin API), the state it persists
(boot record, connector statuses), the cutover hold, and Basic auth password rotation under both policies."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.session import AdminAnswer
from gateway.store.base import Write
from gateway.translate.base import JsonDict
from tests.unit.session_pair import BACKEND, CHARGER_ID, T0, WALL, SessionPair, gid

NOW = {"currentTime": T0}
BOOT = {"chargePointVendor": "ACME", "chargePointModel": "Wallbox"}
BOOT_OK = {"status": "Accepted", "currentTime": T0, "interval": 300}
ACCEPTED = {"status": "Accepted"}


def hb(uid: str) -> list[Any]:
    return [2, uid, "Heartbeat", {}]


class TestAdminCalls:
    def test_an_admin_call_gets_the_chargers_answer(self) -> None:
        pair = SessionPair("1.6")
        answers = pair.call_charger("Reset", {"type": "Soft"})
        pair.assert_to_charger([2, gid(1), "Reset", {"type": "Soft"}])
        pair.charger_answers(ACCEPTED)
        assert answers == [AdminAnswer(result=ACCEPTED)]
        pair.assert_nothing_sent()  # the backend never hears of it

    def test_an_admin_call_gets_the_chargers_callerror(self) -> None:
        pair = SessionPair("1.6")
        answers = pair.call_charger("Reset", {"type": "Soft"})
        pair.charger_fails("NotSupported", "no", {"a": 1})
        assert answers == [AdminAnswer(error=("NotSupported", "no", {"a": 1}))]

    def test_an_admin_call_takes_its_turn_behind_the_backends_call(self) -> None:
        pair = SessionPair("1.6")
        pair.backend_sends([2, "b1", "ClearCache", {}])
        answers = pair.call_charger("Reset", {"type": "Soft"})
        pair.assert_to_charger([2, "b1", "ClearCache", {}])
        pair.charger_answers(ACCEPTED)
        pair.assert_to_charger([2, gid(1), "Reset", {"type": "Soft"}])
        assert answers == []

    def test_each_gateway_call_gets_a_new_unique_id(self) -> None:
        pair = SessionPair("1.6")
        pair.call_charger("ClearCache", {})
        pair.charger_answers(ACCEPTED)
        pair.call_charger("ClearCache", {})
        assert [f[1] for f in pair.charger.unread()] == [gid(1), gid(2)]

    def test_an_unanswered_admin_call_gets_a_timeout_error(self) -> None:
        pair = SessionPair("1.6", call_timeout_s=30)
        answers = pair.call_charger("Reset", {"type": "Soft"})
        pair.advance(30)
        pair.expire()
        assert len(answers) == 1 and isinstance(answers[0], TimeoutError)
        assert pair.counter("ocppgw_call_timeouts_total", direction="down", backend=BACKEND) == 1

    def test_admin_calls_get_a_connection_error_when_the_session_closes(self) -> None:
        pair = SessionPair("1.6")
        on_the_wire = pair.call_charger("Reset", {"type": "Soft"})
        queued = pair.call_charger("ClearCache", {})
        pair.session.close()
        assert [type(a) for a in on_the_wire + queued] == [ConnectionError, ConnectionError]

    def test_an_admin_call_beyond_the_queue_raises_overflow_error_and_is_counted(self) -> None:
        pair = SessionPair("1.6", max_queued_calls=1)
        pair.call_charger("ClearCache", {})
        pair.call_charger("ClearCache", {})
        with pytest.raises(OverflowError):
            pair.call_charger("ClearCache", {})
        assert pair.counter("ocppgw_queue_overflows_total", direction="down") == 1
        assert [f[1] for f in pair.charger.unread()] == [gid(1)]


class TestPersistedState:
    def test_the_boot_record_keeps_the_request_and_its_answer(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends([2, "c1", "BootNotification", BOOT])
        assert pair.writes_of("boot") == []
        pair.backend_answers(BOOT_OK)
        assert pair.writes_of("boot") == [
            Write("boot", CHARGER_ID, "", {"request": BOOT, "response": BOOT_OK, "at": WALL})
        ]

    def test_a_boot_answered_with_a_callerror_is_not_recorded(self) -> None:
        pair = SessionPair("1.6")
        pair.charger_sends([2, "c1", "BootNotification", BOOT])
        pair.backend_fails("InternalError")
        assert pair.writes_of("boot") == []

    def test_a_queued_second_boot_does_not_take_the_first_ones_place(self) -> None:
        pair = SessionPair("1.6")
        second = {**BOOT, "firmwareVersion": "2.0"}
        pair.charger_sends([2, "c1", "BootNotification", BOOT])
        pair.charger_sends([2, "c2", "BootNotification", second])
        pair.backend_answers(BOOT_OK)
        pair.backend_answers({**BOOT_OK, "interval": 60})
        assert [(w.value or {})["request"] for w in pair.writes_of("boot")] == [BOOT, second]

    @pytest.mark.parametrize(
        ("version", "status", "sub"),
        [
            ("1.6", {"connectorId": 2, "errorCode": "NoError", "status": "Available"}, "2"),
            ("2.0.1", {"timestamp": T0, "connectorStatus": "Available", "evseId": 1, "connectorId": 2}, "1/2"),
        ],
    )
    def test_connector_statuses_are_persisted_per_connector(self, version: Any, status: Any, sub: str) -> None:
        pair = SessionPair(version)
        pair.charger_sends([2, "c1", "StatusNotification", status])
        assert pair.writes_of("status") == [Write("status", CHARGER_ID, sub, status)]
        pair.assert_to_backend([2, "c1", "StatusNotification", status])


class Quiet:
    """An ``on_quiet`` that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


class TestHold:
    def test_on_quiet_is_called_at_once_when_nothing_is_in_flight(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.session.hold(quiet)
        assert quiet.calls == 1

    def test_on_quiet_waits_for_the_outstanding_charger_call_and_is_called_once(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.charger_sends(hb("c1"))
        pair.session.hold(quiet)
        assert quiet.calls == 0
        pair.backend_answers(NOW)
        pair.assert_to_charger([3, "c1", NOW])  # the answer still reaches the charger
        assert quiet.calls == 1
        pair.charger_sends(hb("c2"))
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.charger_answers(ACCEPTED)
        assert quiet.calls == 1

    def test_on_quiet_waits_for_the_outstanding_backend_call(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.backend_sends([2, "b1", "ClearCache", {}])
        pair.session.hold(quiet)
        assert quiet.calls == 0
        pair.charger_answers(ACCEPTED)
        pair.assert_to_backend([3, "b1", ACCEPTED])
        assert quiet.calls == 1

    def test_held_charger_calls_go_in_order_after_release(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.session.hold(quiet)
        pair.charger_sends(hb("c1"))
        pair.charger_sends(hb("c2"))
        pair.assert_to_backend()
        pair.session.release()
        pair.assert_to_backend(hb("c1"))
        pair.backend_answers(NOW)
        pair.assert_to_backend(hb("c2"))

    def test_the_link_coming_back_during_a_hold_does_not_release_the_held_calls(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.session.hold(quiet)
        pair.session.link_lost()
        pair.charger_sends(hb("c1"))
        pair.session.link_restored()
        pair.assert_to_backend()
        pair.session.release()
        pair.assert_to_backend(hb("c1"))

    def test_after_release_on_quiet_is_not_called(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.charger_sends(hb("c1"))
        pair.session.hold(quiet)
        pair.session.release()
        pair.backend_answers(NOW)
        assert quiet.calls == 0

    def test_an_answer_to_the_old_primarys_call_never_reaches_the_new_primary(self) -> None:
        pair, quiet = SessionPair("1.6"), Quiet()
        pair.session.hold(quiet)  # quiet at once: the cutover opens the new link now
        pair.backend_sends([2, "old-1", "ClearCache", {}])  # the old primary's CALL, while the cutover runs
        new_primary: list[bytes | str] = []
        pair.session.retarget("csms-new", new_primary.append)
        pair.session.release()
        pair.charger_answers(ACCEPTED)
        assert new_primary == []


PASSWORD = "n3w-Secret-Passw0rd"
ROTATION: dict[str, tuple[str, JsonDict, JsonDict, JsonDict]] = {
    "1.6": ("ChangeConfiguration", {"key": "AuthorizationKey", "value": PASSWORD}, ACCEPTED, {"status": "Rejected"}),
    "2.0.1": (
        "SetVariables",
        {
            "setVariableData": [
                {
                    "attributeValue": PASSWORD,
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Accepted",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
        {
            "setVariableResult": [
                {
                    "attributeStatus": "Rejected",
                    "component": {"name": "SecurityCtrlr"},
                    "variable": {"name": "BasicAuthPassword"},
                }
            ]
        },
    ),
}
VERSIONS = pytest.mark.parametrize("version", sorted(ROTATION))


class TestPasswordRotation:
    @VERSIONS
    def test_a_new_password_the_charger_accepts_is_reported(self, version: Any) -> None:
        pair = SessionPair(version)
        action, payload, accepted, _ = ROTATION[version]
        pair.backend_sends([2, "b1", action, payload])
        pair.assert_to_charger([2, "b1", action, payload])
        pair.charger_answers(accepted)
        assert pair.passwords == [PASSWORD]
        pair.assert_to_backend([3, "b1", accepted])

    @VERSIONS
    def test_a_new_password_the_charger_rejects_is_not_reported_and_is_counted(self, version: Any) -> None:
        pair = SessionPair(version)
        action, payload, _, rejected = ROTATION[version]
        pair.backend_sends([2, "b1", action, payload])
        pair.charger_answers(rejected)
        assert pair.passwords == []
        labels = {"backend": BACKEND, "policy": "passthrough", "outcome": "rejected"}
        assert pair.counter("ocppgw_password_rotations_total", **labels) == 1
        pair.assert_to_backend([3, "b1", rejected])

    def test_a_callerror_to_the_password_call_is_not_an_acceptance(self) -> None:
        pair = SessionPair("1.6")
        action, payload, _, _ = ROTATION["1.6"]
        pair.backend_sends([2, "b1", action, payload])
        pair.charger_fails("InternalError")
        assert pair.passwords == []

    def test_a_password_set_by_an_admin_call_is_reported_once_accepted(self) -> None:
        pair = SessionPair("1.6")
        action, payload, accepted, _ = ROTATION["1.6"]
        pair.call_charger(action, payload)
        assert pair.passwords == []
        pair.charger_answers(accepted)
        assert pair.passwords == [PASSWORD]

    def test_another_configuration_change_reports_no_password(self) -> None:
        pair = SessionPair("1.6")
        pair.backend_sends([2, "b1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}])
        pair.charger_answers(ACCEPTED)
        assert pair.passwords == []

    @VERSIONS
    def test_under_terminate_the_driver_takes_the_password_call_and_the_charger_never_sees_it(
        self, version: Any
    ) -> None:
        pair = SessionPair(version, rotation="terminate")
        action, payload, accepted, _ = ROTATION[version]
        pair.backend_sends([2, "b1", action, payload])
        assert pair.rotations == [("b1", accepted, PASSWORD)]
        pair.assert_nothing_sent()  # the driver answers the backend itself
        pair.backend_sends([2, "b2", "ClearCache", {}])  # and the down lane is free
        pair.assert_to_charger([2, "b2", "ClearCache", {}])

    def test_under_terminate_a_password_call_the_driver_declines_goes_to_the_charger(self) -> None:
        pair = SessionPair("1.6", rotation="terminate")
        pair.take_rotations = False  # a rotation is already running
        action, payload, _, _ = ROTATION["1.6"]
        pair.backend_sends([2, "b1", action, payload])
        pair.assert_to_charger([2, "b1", action, payload])

    def test_under_terminate_other_calls_are_not_offered_to_the_driver(self) -> None:
        pair = SessionPair("1.6", rotation="terminate")
        change = [2, "b1", "ChangeConfiguration", {"key": "HeartbeatInterval", "value": "60"}]
        pair.backend_sends(change)
        assert pair.rotations == []
        pair.assert_to_charger(change)
