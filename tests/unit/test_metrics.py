"""The hot-path counting (Metrics.count_message, Metrics.observe_rtt) exposes exactly what prometheus_client's own
Counter.inc / Histogram.observe expose: it increments the children's values directly, so an upgrade of the client
that changes those internals must fail here, not on a dashboard."""

from __future__ import annotations

import math

import pytest

from gateway.metrics import Metrics


def exposition(m: Metrics, name: str) -> list[str]:
    return sorted(line for line in m.render().decode().splitlines() if line.startswith(name) and "_created" not in line)


def test_counting_a_message_is_what_counter_inc_exposes() -> None:
    fast, reference = Metrics(), Metrics()
    frames = [
        ("from_charger", "call", "MeterValues", "csms"),
        ("from_backend", "callresult", "MeterValues", "csms"),
        ("from_charger", "call", "Heartbeat", "csms"),
        ("from_charger", "call", "MeterValues", "csms"),
    ]
    for labels in frames:
        fast.count_message(*labels)
        reference.messages.labels(*labels).inc()
    assert exposition(fast, "ocppgw_messages_total") == exposition(reference, "ocppgw_messages_total")
    assert (
        fast.registry.get_sample_value(
            "ocppgw_messages_total",
            {"direction": "from_charger", "message_type": "call", "action": "MeterValues", "backend": "csms"},
        )
        == 2
    )


def test_an_action_that_is_not_ocpp_is_counted_as_other_and_not_cached() -> None:
    m = Metrics()
    for i in range(50):
        m.count_message("from_charger", "call", f"Bogus{i}", "csms")
        m.observe_rtt("up", f"Bogus{i}", "csms", 0.01)
    labels = {"direction": "from_charger", "message_type": "call", "action": "other", "backend": "csms"}
    assert m.registry.get_sample_value("ocppgw_messages_total", labels) == 50
    assert (
        m.registry.get_sample_value(
            "ocppgw_call_duration_seconds_count", {"direction": "up", "action": "other", "backend": "csms"}
        )
        == 50
    )
    assert len(m._message_incs) == 0 and len(m._rtt_observers) == 0  # bounded: only OCPP actions are cached


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.005, 0.0050001, 0.3, 1.0, 59.9, 60.0, 61.0, 3600.0, math.inf])
def test_observing_a_round_trip_is_what_histogram_observe_exposes(seconds: float) -> None:
    fast, reference = Metrics(), Metrics()
    for value in (seconds, 0.02, seconds):
        fast.observe_rtt("up", "Heartbeat", "csms", value)
        reference.call_duration.labels("up", "Heartbeat", "csms").observe(value)
    name = "ocppgw_call_duration_seconds"
    assert exposition(fast, name) == exposition(reference, name)


def test_counts_between_collections_are_all_exposed_once() -> None:
    """The hot path counts into plain numbers that every collection moves into the children: counting, collecting,
    counting again exposes the total, never a count twice."""
    fast, reference = Metrics(), Metrics()
    for round_ in range(3):
        for _ in range(round_ + 1):
            fast.count_message("from_charger", "call", "Heartbeat", "csms")
            reference.messages.labels("from_charger", "call", "Heartbeat", "csms").inc()
            fast.observe_rtt("up", "Heartbeat", "csms", 0.25)
            reference.call_duration.labels("up", "Heartbeat", "csms").observe(0.25)
        for name in ("ocppgw_messages_total", "ocppgw_call_duration_seconds"):
            assert exposition(fast, name) == exposition(reference, name)
            assert exposition(fast, name) == exposition(reference, name)  # a second collection adds nothing
