"""The call lane (:mod:`gateway.core.lane`): one table row per move of its docstring's table.

Each row starts from a fresh lane (``max_queued`` 2, ``timeout_s`` 10), applies the moves before, then the move
under test, and checks what it returned and what the lane looks like afterwards: the current job, the unique id on
the wire, the queue and whether the lane is held.
"""

from __future__ import annotations

from typing import Any

import pytest

from gateway.core.lane import FULL, QUEUED, START, Lane

Move = tuple[Any, ...]

MAX_QUEUED = 2
TIMEOUT = 10.0


def apply(lane: Lane[str], move: Move) -> Any:
    name, *args = move
    return getattr(lane, name)(*args)


def fresh() -> Lane[str]:
    return Lane(MAX_QUEUED, TIMEOUT)


def looks(lane: Lane[str]) -> tuple[str | None, str | None, list[str], bool]:
    return lane.current, lane.unique_id, list(lane.queue), lane.held


A: list[Move] = [("offer", "a")]
AB: list[Move] = [*A, ("offer", "b")]
ABC: list[Move] = [*AB, ("offer", "c")]  # the queue is full
HELD: list[Move] = [("hold",)]
A_SENT: list[Move] = [*A, ("sent", "u1", "Heartbeat", 100.0)]
A_ANSWERED: list[Move] = [*A_SENT, ("answer", "u1")]
A_EXPIRED: list[Move] = [*A_SENT, ("expire", 110.0)]
After = tuple[str | None, str | None, list[str], bool]
FREE: After = (None, None, [], False)

# (what it shows, moves before, the move, what it returns, (current, on the wire, queue, held) afterwards)
ROWS: list[tuple[str, list[Move], Move, Any, After]] = [
    # offer
    ("offer_to_a_free_lane_starts_the_job", [], ("offer", "a"), START, ("a", None, [], False)),
    ("offer_behind_the_current_job_queues_it", A, ("offer", "b"), QUEUED, ("a", None, ["b"], False)),
    ("offers_queue_in_order", AB, ("offer", "c"), QUEUED, ("a", None, ["b", "c"], False)),
    ("offer_to_a_held_free_lane_queues_it", HELD, ("offer", "a"), QUEUED, (None, None, ["a"], True)),
    ("offer_at_max_queued_is_full_and_queues_nothing", ABC, ("offer", "d"), FULL, ("a", None, ["b", "c"], False)),
    ("offer_at_max_queued_on_a_held_lane_is_full", [*HELD, *AB], ("offer", "c"), FULL, (None, None, ["a", "b"], True)),
    # sent / answer
    ("sent_puts_the_call_on_the_wire", A, ("sent", "u1", "Heartbeat", 100.0), None, ("a", "u1", [], False)),
    ("answer_with_the_calls_id_returns_the_job", A_SENT, ("answer", "u1"), "a", ("a", None, [], False)),
    ("answer_with_another_id_returns_none", A_SENT, ("answer", "u2"), None, ("a", "u1", [], False)),
    ("a_second_answer_with_the_same_id_returns_none", A_ANSWERED, ("answer", "u1"), None, ("a", None, [], False)),
    ("answer_on_a_free_lane_returns_none", [], ("answer", "u1"), None, FREE),
    ("answer_before_any_call_was_sent_returns_none", A, ("answer", "u1"), None, ("a", None, [], False)),
    # expire / overdue / abandon
    ("expire_before_the_deadline_returns_none", A_SENT, ("expire", 109.9), None, ("a", "u1", [], False)),
    ("expire_at_the_deadline_returns_the_job", A_SENT, ("expire", 110.0), "a", ("a", None, [], False)),
    ("expire_after_the_deadline_returns_the_job", A_SENT, ("expire", 500.0), "a", ("a", None, [], False)),
    ("expire_twice_returns_the_job_once", A_EXPIRED, ("expire", 111.0), None, ("a", None, [], False)),
    ("expire_after_the_answer_returns_none", A_ANSWERED, ("expire", 200.0), None, ("a", None, [], False)),
    ("overdue_before_the_deadline_is_false", A_SENT, ("overdue", 109.9), False, ("a", "u1", [], False)),
    ("overdue_at_the_deadline_is_true", A_SENT, ("overdue", 110.0), True, ("a", "u1", [], False)),
    ("overdue_without_a_call_on_the_wire_is_false", A, ("overdue", 1e9), False, ("a", None, [], False)),
    ("abandon_forgets_the_call_on_the_wire", A_SENT, ("abandon",), "a", ("a", None, [], False)),
    ("abandon_without_a_call_on_the_wire_returns_none", A, ("abandon",), None, ("a", None, [], False)),
    # done
    ("done_starts_the_next_queued_job", AB, ("done",), "b", ("b", None, [], False)),
    ("done_takes_the_queue_in_order", ABC, ("done",), "b", ("b", None, ["c"], False)),
    ("done_with_nothing_queued_frees_the_lane", A, ("done",), None, FREE),
    ("done_forgets_a_call_still_on_the_wire", A_SENT, ("done",), None, FREE),
    ("done_on_a_held_lane_starts_nothing", [*AB, *HELD], ("done",), None, (None, None, ["b"], True)),
    # hold / release
    ("hold_keeps_the_current_job_and_its_call", A_SENT, ("hold",), None, ("a", "u1", [], True)),
    ("release_starts_the_first_held_job", [*HELD, *AB], ("release",), "a", ("a", None, ["b"], False)),
    ("release_while_a_job_is_current_starts_none", [*AB, *HELD], ("release",), None, ("a", None, ["b"], False)),
    ("release_with_nothing_queued_starts_nothing", HELD, ("release",), None, FREE),
    # push
    ("push_to_a_free_lane_starts_the_job", [], ("push", "x"), "x", ("x", None, [], False)),
    ("push_behind_the_current_job_queues_it_last", AB, ("push", "x"), None, ("a", None, ["b", "x"], False)),
    ("push_is_not_bounded_by_max_queued", ABC, ("push", "x"), None, ("a", None, ["b", "c", "x"], False)),
    ("push_to_a_held_free_lane_starts_nothing", HELD, ("push", "x"), None, (None, None, ["x"], True)),
    # clear
    ("clear_returns_every_job_current_first", [*A_SENT, ("offer", "b")], ("clear",), ["a", "b"], FREE),
    ("clear_of_a_held_lane_returns_the_queue", [*HELD, *A], ("clear",), ["a"], (None, None, [], True)),
    ("clear_of_a_free_lane_returns_nothing", [], ("clear",), [], FREE),
]  # fmt: skip


@pytest.mark.parametrize(("before", "move", "returns", "after"), [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_lane_move(before: list[Move], move: Move, returns: Any, after: tuple[Any, ...]) -> None:
    lane = fresh()
    for m in before:
        apply(lane, m)
    assert apply(lane, move) == returns
    assert looks(lane) == after


class TestTheCallOnTheWire:
    def test_sent_sets_the_deadline_from_the_callers_clock(self) -> None:
        lane = fresh()
        lane.offer("a")
        lane.sent("u1", "Heartbeat", 100.0)
        assert (lane.started, lane.deadline, lane.action, lane.last_id) == (100.0, 110.0, "Heartbeat", "u1")

    def test_the_last_call_is_remembered_after_its_answer(self) -> None:
        lane = fresh()
        lane.offer("a")
        lane.sent("u1", "Heartbeat", 0.0)
        lane.answer("u1")
        assert (lane.unique_id, lane.action, lane.last_id) == (None, "Heartbeat", "u1")

    def test_a_job_sends_its_calls_one_after_the_other(self) -> None:
        lane = fresh()
        lane.offer("plan")
        lane.sent("u1", "StartTransaction", 0.0)
        assert lane.answer("u1") == "plan"
        lane.sent("u2", "MeterValues", 5.0)
        assert lane.answer("u1") is None
        assert lane.answer("u2") == "plan"
        assert lane.deadline == 15.0


class TestLooking:
    @pytest.mark.parametrize(
        ("moves", "idle", "quiet"),
        [
            ([], True, True),
            ([("offer", "a")], False, True),
            (A_SENT, False, False),
            ([("hold",), ("offer", "a")], False, True),
            ([*A_SENT, ("answer", "u1"), ("done",)], True, True),
        ],
        ids=["free", "current", "call_on_the_wire", "queued_while_held", "done"],
    )
    def test_idle_and_quiet(self, moves: list[Move], idle: bool, quiet: bool) -> None:
        lane = fresh()
        for m in moves:
            apply(lane, m)
        assert (lane.idle(), lane.quiet()) == (idle, quiet)
