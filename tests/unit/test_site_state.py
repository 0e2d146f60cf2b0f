"""What the controller takes a charger to be able to draw (gateway/app/site_state.py ``CtlState.limit``): never
less than what the charger may apply by what the controller knows."""

from __future__ import annotations

from gateway.app.site_state import CtlState

NOW = 1000.0
WORST = 32.0


def test_nothing_known_is_the_worst_case() -> None:
    assert CtlState().limit(NOW, WORST) == WORST


def test_the_dynamic_limit_while_valid_then_the_fail_safe() -> None:
    c = CtlState(sent_a=20.0, sent_at=990.0, valid_to=1100.0, fail_safe_a=8.0)
    assert c.limit(NOW, WORST) == 20.0
    assert c.limit(1100.0, WORST) == 8.0
    assert CtlState(sent_a=20.0, valid_to=900.0).limit(NOW, WORST) == WORST  # lapsed, no fail-safe of ours


def test_a_read_back_that_did_not_find_the_profile_counts_what_it_found() -> None:
    c = CtlState(sent_a=20.0, valid_to=1100.0, fail_safe_a=8.0, composite_a=6.0, resend=True)
    assert c.limit(NOW, WORST) == 8.0  # 6 now, the fail-safe later
    assert CtlState(sent_a=20.0, valid_to=1100.0, composite_a=None, resend=True).limit(NOW, WORST) == WORST


def test_an_unanswered_profile_may_apply() -> None:
    c = CtlState(sent_a=6.0, valid_to=1100.0, fail_safe_a=8.0, unsure_a=20.0)
    assert c.limit(NOW, WORST) == 20.0
    assert CtlState(composite_a=6.0, resend=True, unsure_a=16.0).limit(NOW, WORST) == 16.0


def test_the_stored_form_round_trips() -> None:
    c = CtlState(version="2.0.1", sent_a=1.5, sent_at=2.0, valid_to=3.0, fail_safe_a=4.0, read_conn=5.0,
                 read_dirty=6, composite_a=7.0, pending_a=8.0, unsure_a=9.0, resend=True, error="x")  # fmt: skip
    assert CtlState.from_doc(c.doc()) == c
