"""The plan driver (:class:`gateway.core.plan.PlanRun`): CALLs one at a time, in order; answers, CALLERRORs (with
and without the plan's ``on_error`` substitution) and the answer to the origin."""

from __future__ import annotations

import pytest

from gateway.core.plan import PlanRun
from gateway.translate.base import JsonDict, OutCall, Plan

START = OutCall("StartTransaction", {"connectorId": 1})
METER = OutCall("MeterValues", {"connectorId": 1, "meterValue": []})
STATUS = OutCall("StatusNotification", {"connectorId": 1})


def joined(answers: list[JsonDict]) -> JsonDict:
    """A finish that shows every answer it got, in order."""
    return {"answers": answers}


def plan(*calls: OutCall, on_error: object = None) -> Plan:
    return Plan(calls=list(calls), finish=joined, on_error=on_error)  # type: ignore[arg-type]


class TestCallsInOrder:
    def test_the_first_call_goes_first(self) -> None:
        assert PlanRun(plan(START, METER, STATUS)).call == START

    def test_each_answer_moves_to_the_next_call(self) -> None:
        run = PlanRun(plan(START, METER, STATUS))
        sent = [run.call]
        while run.answered({"n": len(sent)}):
            sent.append(run.call)
        assert sent == [START, METER, STATUS]

    def test_answered_is_true_while_another_call_follows(self) -> None:
        run = PlanRun(plan(START, METER))
        assert run.answered({}) is True

    def test_answered_is_false_after_the_last_call(self) -> None:
        run = PlanRun(plan(START, METER))
        run.answered({})
        assert run.answered({}) is False

    def test_a_one_call_plan_ends_with_its_first_answer(self) -> None:
        assert PlanRun(plan(START)).answered({}) is False

    def test_a_plan_without_calls_is_refused(self) -> None:
        with pytest.raises(AssertionError):
            PlanRun(Plan(reply={}))


class TestFinish:
    def test_finish_gets_every_answer_in_order(self) -> None:
        run = PlanRun(plan(START, METER))
        run.answered({"transactionId": 7})
        run.answered({})
        assert run.finish() == {"answers": [{"transactionId": 7}, {}]}

    def test_finish_may_update_state_and_ask_for_the_gateways_own_calls(self) -> None:
        state: dict[str, object] = {}

        def finish(answers: list[JsonDict]) -> JsonDict:
            state["tx"] = answers[0]["transactionId"]
            p.then_to_csms.append(STATUS)
            return {"idTokenInfo": {"status": "Accepted"}}

        p = Plan(calls=[START], finish=finish)
        run = PlanRun(p)
        run.answered({"transactionId": 77})
        assert run.finish() == {"idTokenInfo": {"status": "Accepted"}}
        assert state == {"tx": 77} and run.plan.then_to_csms == [STATUS]


class TestFailed:
    def test_without_on_error_the_plan_ends_with_the_error(self) -> None:
        run = PlanRun(plan(START, METER))
        assert run.failed("InternalError", "boom") is None
        assert run.call == START and run.results == []

    def test_on_error_returning_none_ends_the_plan(self) -> None:
        run = PlanRun(plan(START, on_error=lambda index, code, description: None))
        assert run.failed("GenericError", "") is None

    def test_on_error_hears_which_call_failed_and_why(self) -> None:
        heard: list[tuple[int, str, str]] = []

        def on_error(index: int, code: str, description: str) -> JsonDict | None:
            heard.append((index, code, description))
            return None

        run = PlanRun(plan(START, METER, on_error=on_error))
        run.answered({})
        run.failed("Timeout", "no answer in time")
        assert heard == [(1, "Timeout", "no answer in time")]

    def test_a_substituted_answer_goes_on_to_the_next_call(self) -> None:
        run = PlanRun(plan(START, METER, on_error=lambda index, code, description: {"substitute": index}))
        assert run.failed("NotSupported", "") is True
        assert run.call == METER

    def test_a_substituted_answer_to_the_last_call_ends_the_plan(self) -> None:
        run = PlanRun(plan(START, METER, on_error=lambda index, code, description: {"substitute": index}))
        run.answered({"first": True})
        assert run.failed("Timeout", "") is False
        assert run.finish() == {"answers": [{"first": True}, {"substitute": 1}]}
