"""The limits of transactions the ride-through accepted for unknown tokens (``unknown_token.policy:
accept_limited``). Pure: the caller passes each CALL it journals, with the gateway's answer and the time, and stops
the transactions this returns (RemoteStopTransaction / RequestStopTransaction: gateway/app/ride.py).

A transaction is watched from the answer that accepted its unknown token (a 1.6 StartTransaction, a 2.x
TransactionEvent) until it ends (StopTransaction, a TransactionEvent Ended) or reaches a limit: ``max_duration_s``
since it was accepted, checked at every CALL of the charger, or ``max_energy_wh`` of Energy.Active.Import.Register
since its meter start (1.6 ``meterStart``; 2.x the first reading of the transaction), checked at each of its meter
values. Anything malformed in a charger's payload is skipped: nothing here raises.
"""

from __future__ import annotations

from typing import Any

from gateway.core.answerer import Answer
from gateway.offline.config import OfflineConfig

__all__ = ["LimitWatch", "energy_wh"]

_ENERGY = "Energy.Active.Import.Register"


class LimitWatch:
    """The accept_limited transactions of one charger, by their id (1.6 int, 2.x string)."""

    __slots__ = ("policy", "watched")

    def __init__(self, policy: OfflineConfig) -> None:
        self.policy = policy
        #: transaction id -> (accepted at, meter start in Wh or None while unknown)
        self.watched: dict[int | str, tuple[float, float | None]] = {}

    def seen(self, action: str, payload: dict[str, Any], answer: Answer, now: float) -> list[int | str]:
        """One journalled charger CALL and the gateway's answer: the transactions to stop now (no longer watched)."""
        tx = transaction_of(payload)
        if answer.limited and action == "StartTransaction":
            new = answer.payload.get("transactionId")  # the gateway's id, which the charger uses from now on
            start = payload.get("meterStart")
            meter = float(start) if isinstance(start, int | float) and not isinstance(start, bool) else None
            if isinstance(new, int) and new not in self.watched:
                self.watched[new] = (now, meter)
        elif answer.limited and action == "TransactionEvent" and tx is not None and tx not in self.watched:
            self.watched[tx] = (now, energy_wh(payload.get("meterValue")))
        if not self.watched:
            return []
        if tx is not None and (action == "StopTransaction" or payload.get("eventType") == "Ended"):
            self.watched.pop(tx, None)
            return []
        energy = energy_wh(payload.get("meterValue")) if tx in self.watched else None
        stop: list[int | str] = []
        for t, (started, meter_start) in list(self.watched.items()):
            if t == tx and meter_start is None and energy is not None:
                self.watched[t] = (started, energy)  # the first reading is the baseline
                meter_start = energy
            over_time = self.policy.max_duration_s is not None and now - started >= self.policy.max_duration_s
            over_energy = (
                t == tx and self.policy.max_energy_wh is not None and energy is not None and meter_start is not None
                and energy - meter_start >= self.policy.max_energy_wh
            )  # fmt: skip
            if over_time or over_energy:
                del self.watched[t]
                stop.append(t)
        return stop


def transaction_of(payload: dict[str, Any]) -> int | str | None:
    """The transaction a CALL names: 2.x ``transactionInfo.transactionId``, 1.6 ``transactionId``."""
    info = payload.get("transactionInfo")
    if isinstance(info, dict):
        tx = info.get("transactionId")
        return tx if isinstance(tx, str) else None
    tx = payload.get("transactionId")
    return tx if isinstance(tx, int) and not isinstance(tx, bool) else None


def energy_wh(meter_values: Any) -> float | None:
    """The last Energy.Active.Import.Register (Wh; kWh converted) in a list of meter values, or None."""
    out: float | None = None
    if not isinstance(meter_values, list):
        return None
    for mv in meter_values:
        values = mv.get("sampledValue") if isinstance(mv, dict) else None
        for sv in values if isinstance(values, list) else []:
            if not isinstance(sv, dict) or sv.get("measurand", _ENERGY) != _ENERGY:
                continue
            try:
                value = float(sv.get("value"))  # type: ignore[arg-type]
            except (TypeError, ValueError, OverflowError):
                continue
            uom = sv.get("unitOfMeasure")
            unit = sv.get("unit") or (uom.get("unit") if isinstance(uom, dict) else None)
            out = value * 1000 if unit == "kWh" else value
    return out
