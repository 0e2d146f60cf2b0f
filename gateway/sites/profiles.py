"""The controller's CALLs, in the charger's own version: station-wide maximum profiles, composite schedules. Pure.

A translated charger gets its own version's form too: the controller's CALLs go to the charger as they are (a CALL
of the gateway's own on the down lane, never through the translator, never seen by the CSMS).

* 1.6: ``SetChargingProfile`` {connectorId 0, ChargePointMaxProfile}; ``GetCompositeSchedule`` {connectorId 0}.
* 2.0.1 / 2.1 (and 2.0): ``SetChargingProfile`` {evseId 0, ChargingStationMaxProfile, one schedule whose id is the
  profile's}; ``GetCompositeSchedule`` {evseId 0}.

Both profiles are ``Absolute`` with one period from ``startSchedule``, which is set a minute before now so that a
charger whose clock is a little behind applies it at once. The dynamic profile carries ``validTo`` (its validity
window: it lapses unless renewed, and the fail-safe profile below it applies); the fail-safe profile has none.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

__all__ = ["CLOCK_SKEW_S", "composite_limit", "composite_request", "iso", "max_profile", "parse_time"]

#: startSchedule is this long before now (chargers' clocks drift; a schedule that starts later limits nothing yet)
CLOCK_SKEW_S = 60.0


def iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_time(v: Any) -> float | None:
    """Unix seconds of an ISO 8601 date-time with an offset (``Z`` included); None when it is not one."""
    if not isinstance(v, str):
        return None
    try:
        dt = datetime.fromisoformat(v)
    except ValueError:
        return None
    if dt.tzinfo is None:
        return None
    return dt.timestamp()


def _limit(current_a: float, rate_unit: str, phases: int, voltage_v: float) -> float:
    if rate_unit == "W":
        return float(math.floor(current_a * phases * voltage_v))
    return math.floor(current_a * 10 + 1e-9) / 10


def max_profile(
    version: str, *, profile_id: int, stack_level: int, current_a: float, rate_unit: str = "A", phases: int = 3,
    voltage_v: float = 230.0, now: float, valid_to: float | None = None,
) -> tuple[str, dict[str, Any]]:  # fmt: skip
    """``("SetChargingProfile", payload)``: a station-wide maximum of ``current_a`` per phase (or the same in W on
    ``phases`` phases) from now, valid until ``valid_to`` (None: until replaced)."""
    period = {"startPeriod": 0, "limit": _limit(current_a, rate_unit, phases, voltage_v)}
    start = iso(now - CLOCK_SKEW_S)
    if version == "1.6":
        profile: dict[str, Any] = {
            "chargingProfileId": profile_id,
            "stackLevel": stack_level,
            "chargingProfilePurpose": "ChargePointMaxProfile",
            "chargingProfileKind": "Absolute",
            "chargingSchedule": {"startSchedule": start, "chargingRateUnit": rate_unit,
                                 "chargingSchedulePeriod": [period]},
        }  # fmt: skip
        if valid_to is not None:
            profile["validTo"] = iso(valid_to)
        return "SetChargingProfile", {"connectorId": 0, "csChargingProfiles": profile}
    profile = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {"id": profile_id, "startSchedule": start, "chargingRateUnit": rate_unit,
             "chargingSchedulePeriod": [period]}
        ],
    }  # fmt: skip
    if valid_to is not None:
        profile["validTo"] = iso(valid_to)
    return "SetChargingProfile", {"evseId": 0, "chargingProfile": profile}


def composite_request(version: str, duration_s: int = 300, rate_unit: str = "A") -> tuple[str, dict[str, Any]]:
    """``("GetCompositeSchedule", payload)`` for the whole charger (connector / EVSE 0)."""
    if version == "1.6":
        return "GetCompositeSchedule", {"connectorId": 0, "duration": duration_s, "chargingRateUnit": rate_unit}
    return "GetCompositeSchedule", {"duration": duration_s, "evseId": 0, "chargingRateUnit": rate_unit}


def composite_limit(
    version: str, answer: Mapping[str, Any], now: float, phases: int = 3, voltage_v: float = 230.0
) -> float | None:
    """The limit in force now (A per phase) in a GetCompositeSchedule answer; None when it has none (rejected, no
    schedule, no period started yet: nothing limits the charger)."""
    if answer.get("status") != "Accepted":
        return None
    if version == "1.6":
        sched = answer.get("chargingSchedule")
        start = parse_time(answer.get("scheduleStart"))
        if isinstance(sched, Mapping) and start is None:
            start = parse_time(sched.get("startSchedule"))
    else:
        sched = answer.get("schedule")
        start = parse_time(sched.get("scheduleStart")) if isinstance(sched, Mapping) else None
    if not isinstance(sched, Mapping):
        return None
    periods = sched.get("chargingSchedulePeriod")
    if not isinstance(periods, list):
        return None
    # the schedule is the charger's from its own now on: a start a little after ours (clocks differ) is now
    elapsed = max(0.0, now - start) if start is not None else 0.0
    found: float | None = None
    best = -1.0
    for p in periods:
        if not isinstance(p, Mapping):
            continue
        sp, lim = p.get("startPeriod"), p.get("limit")
        if not isinstance(sp, int | float) or not isinstance(lim, int | float):
            continue
        if best < sp <= elapsed + 1e-9:
            best, found = float(sp), float(lim)
    if found is None:
        return None
    if sched.get("chargingRateUnit") == "W":
        return found / (phases * voltage_v)
    return found
