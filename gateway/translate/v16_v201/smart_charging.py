"""Smart charging, CSMS -> 1.6 charger (ocpp-translation.md §3.10).

Profile conversion (:func:`profile_to_16`) refuses — answer ``Rejected`` with reasonCode ``ProfileNotMappable``,
nothing sent — a ``ChargingStationExternalConstraints`` profile, more than one schedule, a period with
``phaseToUse``, a ``salesTariff``, and a ``transactionId`` that is unknown or not open. ``limit`` and
``minChargingRate`` are rounded to one decimal (1.6 ``multipleOf`` 0.1). The dropped schedule ``id`` is kept in the
state per chargingProfileId.

Decisions: an EVSE with several 1.6 connectors gets one SetChargingProfile / ClearChargingProfile per connector
(§1.4): Set is ``Accepted`` only when all are, Clear is ``Accepted`` when any is. GetCompositeSchedule for such an
EVSE asks the connector of its open transaction, else its first connector.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.translate.base import JsonDict, OutCall, Plan
from gateway.translate.v16_v201.context import Context, local, status_info

__all__ = ["clear_charging_profile", "get_composite_schedule", "profile_to_16", "set_charging_profile"]

PURPOSE_TO_16 = {
    "ChargingStationMaxProfile": "ChargePointMaxProfile",
    "TxDefaultProfile": "TxDefaultProfile",
    "TxProfile": "TxProfile",
}


class NotMappable(ValueError):
    """A 2.0.1 charging profile that 1.6 cannot express; ``args[0]`` says why."""


def _tenth(value: object) -> float | int:
    rounded = round(float(value), 1)  # type: ignore[arg-type]
    return int(rounded) if rounded == int(rounded) else rounded


def profile_to_16(ctx: Context, profile: Mapping[str, Any]) -> JsonDict:
    """2.0.1 ChargingProfileType -> 1.6 csChargingProfiles; raises :class:`NotMappable`."""
    purpose = PURPOSE_TO_16.get(str(profile["chargingProfilePurpose"]))
    if purpose is None:
        raise NotMappable("purpose ChargingStationExternalConstraints has no 1.6 form")
    schedules = list(profile["chargingSchedule"])
    if len(schedules) != 1:
        raise NotMappable("1.6 carries exactly one charging schedule")
    schedule = schedules[0]
    if "salesTariff" in schedule:
        raise NotMappable("salesTariff has no 1.6 form")
    periods: list[JsonDict] = []
    for period in schedule["chargingSchedulePeriod"]:
        if "phaseToUse" in period:
            raise NotMappable("phaseToUse has no 1.6 form")
        out_period: JsonDict = {"startPeriod": period["startPeriod"], "limit": _tenth(period["limit"])}
        if "numberPhases" in period:
            out_period["numberPhases"] = period["numberPhases"]
        periods.append(out_period)
    out_schedule: JsonDict = {"chargingRateUnit": schedule["chargingRateUnit"], "chargingSchedulePeriod": periods}
    for name in ("duration", "startSchedule"):
        if name in schedule:
            out_schedule[name] = schedule[name]
    if "minChargingRate" in schedule:
        out_schedule["minChargingRate"] = _tenth(schedule["minChargingRate"])
    out: JsonDict = {
        "chargingProfileId": profile["id"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile["chargingProfileKind"],
        "chargingSchedule": out_schedule,
    }
    for name in ("recurrencyKind", "validFrom", "validTo"):
        if name in profile:
            out[name] = profile[name]
    if "transactionId" in profile:
        found = ctx.state.by_tx201(str(profile["transactionId"]))
        if found is None or found[1].phase != "open":
            raise NotMappable("unknown or ended transactionId")
        out["transactionId"] = found[0]
    ctx.state.schedule_ids[int(profile["id"])] = int(schedule["id"])
    return out


def _connectors(ctx: Context, evse_id: int) -> list[int]:
    return [0] if evse_id == 0 else ctx.connectors_of(evse_id)


def set_charging_profile(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    try:
        profile = profile_to_16(ctx, payload["chargingProfile"])
    except NotMappable as exc:
        return local(
            {"status": "Rejected", "statusInfo": status_info("ProfileNotMappable", str(exc))}, "profile_not_mappable"
        )
    connectors = _connectors(ctx, int(payload["evseId"]))
    if not connectors:
        return local({"status": "Rejected", "statusInfo": status_info("EvseNotSupported")}, "unknown_evse")
    calls = [OutCall("SetChargingProfile", {"connectorId": c, "csChargingProfiles": profile}) for c in connectors]

    def finish(answers: list[JsonDict]) -> JsonDict:
        statuses = {str(a["status"]) for a in answers}
        if statuses == {"Accepted"}:
            return {"status": "Accepted"}
        if "NotSupported" in statuses:
            return {"status": "Rejected", "statusInfo": status_info("NotSupported")}
        return {"status": "Rejected"}

    return Plan(calls=calls, finish=finish)


def clear_charging_profile(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request: JsonDict = {}
    if "chargingProfileId" in payload:
        request["id"] = payload["chargingProfileId"]
    criteria: Mapping[str, Any] = payload.get("chargingProfileCriteria") or {}
    if "chargingProfilePurpose" in criteria:
        purpose = PURPOSE_TO_16.get(str(criteria["chargingProfilePurpose"]))
        if purpose is None:
            return local({"status": "Unknown", "statusInfo": status_info("NotIn16")}, "profile_not_mappable")
        request["chargingProfilePurpose"] = purpose
    if "stackLevel" in criteria:
        request["stackLevel"] = criteria["stackLevel"]
    connectors: list[int | None] = [None]
    if "evseId" in criteria:
        found = _connectors(ctx, int(criteria["evseId"]))
        if not found:
            return local({"status": "Unknown", "statusInfo": status_info("EvseNotSupported")}, "unknown_evse")
        connectors = list(found)
    calls = [
        OutCall("ClearChargingProfile", {**request, "connectorId": c} if c is not None else dict(request))
        for c in connectors
    ]
    return Plan(
        calls=calls,
        finish=lambda answers: {"status": "Accepted" if any(a["status"] == "Accepted" for a in answers) else "Unknown"},
    )


def get_composite_schedule(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    evse_id, duration = int(payload["evseId"]), int(payload["duration"])
    connectors = _connectors(ctx, evse_id)
    if not connectors:
        return local({"status": "Rejected", "statusInfo": status_info("EvseNotSupported")}, "unknown_evse")
    open_tx = ctx.state.open_tx_on_evse(evse_id) if evse_id else None
    connector = open_tx[1].connector if open_tx and open_tx[1].connector is not None else connectors[0]
    request: JsonDict = {"connectorId": connector, "duration": duration}
    if "chargingRateUnit" in payload:
        request["chargingRateUnit"] = payload["chargingRateUnit"]

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        result: JsonDict = {"status": answer["status"]}
        schedule = answer.get("chargingSchedule")
        if isinstance(schedule, Mapping):
            start = answer.get("scheduleStart") or schedule.get("startSchedule") or ctx.now()
            periods = [
                {k: p[k] for k in ("startPeriod", "limit", "numberPhases") if k in p}
                for p in schedule["chargingSchedulePeriod"]
            ]
            result["schedule"] = {
                "evseId": evse_id,
                "duration": schedule.get("duration", duration),
                "scheduleStart": start,
                "chargingRateUnit": schedule["chargingRateUnit"],
                "chargingSchedulePeriod": periods,
            }
            if "minChargingRate" in schedule:
                ctx.drop("GetCompositeSchedule", "minChargingRate")
        return result

    return Plan(calls=[OutCall("GetCompositeSchedule", request)], finish=finish)
