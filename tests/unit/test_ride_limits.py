"""The accept_limited watch (gateway/core/limits.py): a transaction of an unknown token is stopped at its energy or
duration limit, and forgotten when it ends."""

from __future__ import annotations

from typing import Any

from gateway.core.answerer import Answer
from gateway.core.limits import LimitWatch, energy_wh
from gateway.offline import OfflineConfig

POLICY = OfflineConfig(mode="ride_through", unknown_token="accept_limited", max_energy_wh=1000, max_duration_s=3600)
LIMITED = Answer({"idTagInfo": {"status": "Accepted"}, "transactionId": -5}, starts=True, limited=True)
PLAIN = Answer({})


def mv16(wh: Any, unit: str = "Wh") -> dict[str, Any]:
    return {"connectorId": 1, "transactionId": -5, "meterValue": [{"timestamp": "t", "sampledValue": [
        {"value": str(wh), "unit": unit}]}]}  # fmt: skip


def test_a_16_transaction_is_stopped_at_its_energy_limit() -> None:
    w = LimitWatch(POLICY)
    assert w.seen("StartTransaction", {"connectorId": 1, "idTag": "X", "meterStart": 500}, LIMITED, 0.0) == []
    assert w.seen("MeterValues", mv16(1400), PLAIN, 60.0) == []
    assert w.seen("MeterValues", mv16(1.5, "kWh"), PLAIN, 120.0) == [-5]
    assert w.seen("MeterValues", mv16(9000), PLAIN, 180.0) == []  # stopped once


def test_a_transaction_is_stopped_at_its_duration_at_the_next_call_of_the_charger() -> None:
    w = LimitWatch(POLICY)
    w.seen("StartTransaction", {"meterStart": 0}, LIMITED, 0.0)
    assert w.seen("Heartbeat", {}, PLAIN, 3599.0) == []
    assert w.seen("Heartbeat", {}, PLAIN, 3600.0) == [-5]


def test_an_ended_transaction_is_forgotten() -> None:
    w = LimitWatch(POLICY)
    w.seen("StartTransaction", {"meterStart": 0}, LIMITED, 0.0)
    assert w.seen("StopTransaction", {"transactionId": -5, "meterStop": 10}, PLAIN, 10.0) == []
    assert w.seen("Heartbeat", {}, PLAIN, 99999.0) == [] and not w.watched


def test_known_tokens_are_not_watched() -> None:
    w = LimitWatch(POLICY)
    w.seen("StartTransaction", {"meterStart": 0}, Answer(LIMITED.payload, starts=True), 0.0)
    assert not w.watched


def test_a_2x_transaction_takes_its_first_reading_as_the_baseline() -> None:
    w = LimitWatch(POLICY)
    started = {"eventType": "Started", "transactionInfo": {"transactionId": "T"}, "idToken": {"idToken": "X"}}
    assert w.seen("TransactionEvent", started, Answer({"idTokenInfo": {"status": "Accepted"}}, limited=True), 0.0) == []
    meter = [{"sampledValue": [{"value": 200.0, "unitOfMeasure": {"unit": "Wh"}}]}]
    updated = {"eventType": "Updated", "transactionInfo": {"transactionId": "T"}, "meterValue": meter}
    assert w.seen("TransactionEvent", updated, PLAIN, 10.0) == []
    meter2 = [{"sampledValue": [{"value": 1200.0, "unitOfMeasure": {"unit": "Wh"}}]}]
    assert w.seen("TransactionEvent", {**updated, "meterValue": meter2}, PLAIN, 20.0) == ["T"]


def test_malformed_meter_values_never_raise() -> None:
    for junk in (None, 5, [5], [{"sampledValue": 3}], [{"sampledValue": [{"value": "x"}, 7, {"value": [1]}]}],
                 [{"sampledValue": [{"value": "1e999999"}, {"value": "1", "unitOfMeasure": "kWh"}]}]):  # fmt: skip
        energy_wh(junk)
    w = LimitWatch(POLICY)
    w.seen("StartTransaction", {"meterStart": "zero"}, LIMITED, 0.0)
    assert w.seen("MeterValues", {"transactionId": -5, "meterValue": "junk"}, PLAIN, 1.0) == []
