"""The simulated chargers' smart charging (gateway/ops/site_sim.py): installed profiles and the limit they give.

What OCPP 1.6 §3.13 / 2.0.1 K01 define, to the extent the demo and the end-to-end tests need it:

* a profile replaces an installed one with the same id, or with the same purpose, stack level and EVSE;
* a profile applies from its schedule's start (``Absolute``; ``Relative``: the transaction's start) while
  ``validFrom <= now < validTo``; within one purpose the highest stack level that applies wins;
* an EVSE's limit is the lowest of the station-wide maximum (``ChargePointMaxProfile`` /
  ``ChargingStationMaxProfile``, shared by the EVSEs charging) and its transaction's profile (``TxProfile``, else
  ``TxDefaultProfile`` of the EVSE, else of the station);
* a composite schedule is that limit now (one period), truthfully what the charger enforces.

Limits in W are taken as A on three phases at 230 V.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

__all__ = ["Profile", "ProfileTable", "from_ocpp16", "from_ocpp201"]

VOLTAGE = 230.0
_PURPOSE = {
    "ChargePointMaxProfile": "max", "ChargingStationMaxProfile": "max", "TxDefaultProfile": "txdefault",
    "TxProfile": "tx",
}  # fmt: skip


def _ts(v: Any) -> float | None:
    if not isinstance(v, str):
        return None
    try:
        return datetime.fromisoformat(v).timestamp()
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class Profile:
    id: int
    stack: int
    purpose: str  # max | txdefault | tx
    evse: int  # 0: the station
    kind: str  # Absolute | Relative | Recurring
    start: float | None
    periods: tuple[tuple[float, float], ...]  # (startPeriod, limit in A)
    valid_from: float | None = None
    valid_to: float | None = None
    tx: str | None = None

    def limit(self, now: float, tx_start: float | None) -> float | None:
        """This profile's limit now (A), or None when it does not apply now."""
        if self.valid_from is not None and now < self.valid_from:
            return None
        if self.valid_to is not None and now >= self.valid_to:
            return None
        start = tx_start if self.kind == "Relative" else self.start
        elapsed = now - start if start is not None else 0.0
        found = None
        for sp, lim in self.periods:
            if sp <= elapsed:
                found = lim
        return found


def _periods(sched: Mapping[str, Any], unit_key: str, periods_key: str, start_key: str) -> tuple[Any, ...]:
    per_w = sched.get(unit_key) == "W"
    out = []
    for p in sched.get(periods_key) or []:
        lim = float(p["limit"])
        out.append((float(p["start_period"]), lim / (3 * VOLTAGE) if per_w else lim))
    return tuple(out)


def from_ocpp16(connector_id: int, p: Mapping[str, Any]) -> Profile:
    """A profile from an ``ocpp`` package 1.6 handler's ``cs_charging_profiles`` (snake_case keys)."""
    sched = p["charging_schedule"]
    return Profile(
        id=int(p["charging_profile_id"]), stack=int(p["stack_level"]), purpose=_PURPOSE[p["charging_profile_purpose"]],
        evse=connector_id, kind=p["charging_profile_kind"], start=_ts(sched.get("start_schedule")),
        periods=_periods(sched, "charging_rate_unit", "charging_schedule_period", "start_schedule"),
        valid_from=_ts(p.get("valid_from")), valid_to=_ts(p.get("valid_to")),
        tx=str(p["transaction_id"]) if p.get("transaction_id") is not None else None,
    )  # fmt: skip


def from_ocpp201(evse_id: int, p: Mapping[str, Any]) -> Profile:
    """A profile from an ``ocpp`` package 2.0.1 handler's ``charging_profile`` (snake_case keys)."""
    sched = p["charging_schedule"][0]
    return Profile(
        id=int(p["id"]), stack=int(p["stack_level"]), purpose=_PURPOSE[p["charging_profile_purpose"]], evse=evse_id,
        kind=p["charging_profile_kind"], start=_ts(sched.get("start_schedule")),
        periods=_periods(sched, "charging_rate_unit", "charging_schedule_period", "start_schedule"),
        valid_from=_ts(p.get("valid_from")), valid_to=_ts(p.get("valid_to")),
        tx=str(p["transaction_id"]) if p.get("transaction_id") is not None else None,
    )  # fmt: skip


class ProfileTable:
    """A charger's installed profiles."""

    def __init__(self) -> None:
        self.profiles: dict[int, Profile] = {}

    def install(self, p: Profile) -> None:
        for pid, q in list(self.profiles.items()):
            if pid == p.id or (q.purpose, q.stack, q.evse) == (p.purpose, p.stack, p.evse):
                del self.profiles[pid]
        self.profiles[p.id] = p

    def clear(self, pid: int | None = None, evse: int | None = None, purpose: str | None = None,
              stack: int | None = None) -> int:  # fmt: skip
        """Remove the profiles matching every criterion given (none: all); how many went."""
        gone = [
            q.id
            for q in self.profiles.values()
            if (pid is None or q.id == pid)
            and (evse is None or q.evse == evse)
            and (purpose is None or q.purpose == _PURPOSE.get(purpose, purpose))
            and (stack is None or q.stack == stack)
        ]
        for g in gone:
            del self.profiles[g]
        return len(gone)

    def _best(self, purpose: str, evse: int, now: float, tx: str | None, tx_start: float | None) -> float | None:
        best: tuple[int, float] | None = None
        for q in self.profiles.values():
            if q.purpose != purpose or q.evse != evse or (purpose == "tx" and q.tx is not None and q.tx != tx):
                continue
            lim = q.limit(now, tx_start)
            if lim is not None and (best is None or q.stack > best[0]):
                best = (q.stack, lim)
        return best[1] if best is not None else None

    def station_max(self, now: float) -> float:
        lim = self._best("max", 0, now, None, None)
        return math.inf if lim is None else lim

    def evse_limit(self, evse: int, now: float, tx: str | None, tx_start: float | None) -> float:
        """The transaction's own limit on ``evse`` (TxProfile, else TxDefaultProfile of the EVSE, else of 0)."""
        for purpose, where in (("tx", evse), ("txdefault", evse), ("txdefault", 0)):
            if purpose == "tx" and tx is None:
                continue
            lim = self._best(purpose, where, now, tx, tx_start)
            if lim is not None:
                return lim
        return math.inf

    def composite(self, evse: int, now: float, tx: str | None = None, tx_start: float | None = None) -> float:
        """What limits ``evse`` now (0: the station as a whole)."""
        station = self.station_max(now)
        return station if evse == 0 else min(station, self.evse_limit(evse, now, tx, tx_start))
