"""Admission pacing as data: the turns a :class:`ConnectPacer` hands out and the Retry-After of the refused, on a
clock the test moves; the pacing keys of the config with their YAML paths."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config
from gateway.links.pacing import MAX_RETRY_AFTER_S, ConnectPacer


def test_a_burst_waits_one_interval_each_first_come_first_served() -> None:
    p = ConnectPacer(rate=5, max_wait_s=10)
    assert [p.take(100.0) for _ in range(5)] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8])


def test_an_idle_pacer_gives_the_next_turn_at_once() -> None:
    p = ConnectPacer(rate=5, max_wait_s=10)
    assert p.take(0.0) == 0.0
    assert p.take(0.05) == pytest.approx(0.15)
    assert p.take(10.0) == 0.0  # long after the last turn: no wait, no credit saved up either
    assert p.take(10.0) == pytest.approx(0.2)


def test_a_charger_whose_turn_comes_too_late_takes_none() -> None:
    p = ConnectPacer(rate=5, max_wait_s=1.0)
    waits = [p.take(0.0) for _ in range(20)]
    assert waits[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert waits[6:] == [None] * 14
    assert p.take(0.2) == pytest.approx(1.0)  # the refused took no turn: the queue moved on by one interval only


def test_the_refused_are_told_to_come_back_one_turn_apart_after_the_queue() -> None:
    p = ConnectPacer(rate=5, max_wait_s=1.0)
    for _ in range(6):
        assert p.take(0.0) is not None
    # the queue ends at 1.2 s; the refused come back at 1.2, 1.4, ... 3.8 s, in whole seconds
    assert [p.retry_after(0.0) for _ in range(14)] == [2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 4, 4, 4, 4]
    assert p.retry_after(100.0) == 1  # long after: at least one second
    huge = ConnectPacer(rate=1, max_wait_s=0)
    assert max(huge.retry_after(0.0) for _ in range(1000)) == MAX_RETRY_AFTER_S


def test_zero_wait_admits_only_when_a_turn_is_free_now() -> None:
    p = ConnectPacer(rate=2, max_wait_s=0)
    assert p.take(0.0) == 0.0
    assert p.take(0.1) is None
    assert p.take(0.5) == 0.0


BASE: dict[str, Any] = {"routes": [{"match": "*", "primary": "a"}]}


def test_pacing_is_off_by_default_and_per_backend() -> None:
    c = parse_config({**BASE, "backends": {"a": {"url": "ws://h/ocpp"}, "b": {"url": "ws://h/ocpp",
                      "max_connects_per_s": 50, "max_connect_wait_s": 2}}})  # fmt: skip
    assert (c.backends["a"].max_connects_per_s, c.backends["a"].max_connect_wait_s) == (None, 5.0)
    assert (c.backends["b"].max_connects_per_s, c.backends["b"].max_connect_wait_s) == (50.0, 2.0)


@pytest.mark.parametrize(
    ("key", "value"), [("max_connects_per_s", 0), ("max_connects_per_s", "fast"), ("max_connect_wait_s", 9)]
)
def test_pacing_problems_are_reported_with_their_yaml_paths(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as e:
        parse_config({**BASE, "backends": {"a": {"url": "ws://h/ocpp", key: value}}})
    assert [p for p, _ in e.value.problems] == [f"backends.a.{key}"]


def test_a_reload_that_changes_only_the_pacing_keeps_the_backend_equal() -> None:
    """Reload closes chargers whose primary changed (1012); new pacing must not send the whole fleet reconnecting."""
    a = parse_config({**BASE, "backends": {"a": {"url": "ws://h/ocpp"}}}).backends["a"]
    b = parse_config({**BASE, "backends": {"a": {"url": "ws://h/ocpp", "max_connects_per_s": 5}}}).backends["a"]
    assert a == b and b.max_connects_per_s == 5.0
