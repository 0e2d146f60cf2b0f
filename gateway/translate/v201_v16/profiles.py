"""Smart charging from a 1.6 CSMS toward a 2.0.1 charger (ocpp-translation.md §4.4, §3.10 reversed).

Profile conversion (:func:`profile_to_201`, 1.6 csChargingProfiles / chargingProfile -> 2.0.1 ChargingProfileType):
``chargingProfileId`` -> ``id``; ``ChargePointMaxProfile`` -> ``ChargingStationMaxProfile`` (``TxDefaultProfile``,
``TxProfile`` same); ``stackLevel``, ``chargingProfileKind``, ``recurrencyKind``, ``validFrom``, ``validTo`` copied;
the one ``chargingSchedule`` object becomes a one-element array whose ``id`` is the ``chargingProfileId`` (1.6 has
no schedule id; the profile id is unique per charger, so it is unique among schedules too); ``duration``,
``startSchedule``, ``chargingRateUnit``, ``minChargingRate`` and the periods (``startPeriod``, ``limit``,
``numberPhases``) copied. The integer ``transactionId`` becomes the charger's string through the state; an
unknown or ended transaction -> ``Rejected`` without asking (:class:`NotMappable`).

Decisions:

* SetChargingProfile ``TxProfile`` without ``transactionId`` (1.6: "the transaction on this connector") gets the
  string id of the open transaction on that EVSE (2.0.1 requires ``transactionId`` in a TxProfile); no open
  transaction there -> ``Rejected`` without asking (1.6 says the charge point discards such a profile).
* RemoteStartTransaction's profile must be a ``TxProfile`` (both versions say so) -> anything else ``Rejected``; a
  ``transactionId`` in it (1.6 forbids it, 2.0.1 too: the transaction does not exist yet) is dropped, counted.
* connectorId -> evseId: 0 stays 0 (the station), N -> N's EVSE from the map; a negative connectorId ->
  ``Rejected``/``Unknown`` without asking.
* GetCompositeSchedule answer: ``status`` copied; a ``schedule`` becomes ``connectorId`` (the one asked for),
  ``scheduleStart`` and ``chargingSchedule`` {``duration``, ``chargingRateUnit``, periods}; ``limit`` is rounded to
  one decimal (1.6 ``multipleOf`` 0.1); ``phaseToUse`` dropped, counted. A 2.0.1 ``statusInfo`` is not carried
  (1.6 has no place for it; the status is).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gateway.translate.base import JsonDict, Plan
from gateway.translate.v16_v201.smart_charging import NotMappable
from gateway.translate.v201_v16.context import Context, forward, local

__all__ = [
    "NotMappable",
    "clear_charging_profile",
    "evse_id_of",
    "get_composite_schedule",
    "profile_to_201",
    "set_charging_profile",
]

PURPOSE_TO_201 = {
    "ChargePointMaxProfile": "ChargingStationMaxProfile",
    "TxDefaultProfile": "TxDefaultProfile",
    "TxProfile": "TxProfile",
}


def evse_id_of(ctx: Context, connector: int) -> int | None:
    """The 2.0.1 evseId of a 1.6 connectorId (0 -> 0, the station); None for a negative one."""
    if connector < 0:
        return None
    return 0 if connector == 0 else ctx.evse_of(connector)[0]


def tenth(value: object) -> float | int:
    """A number rounded to one decimal (1.6 ``multipleOf`` 0.1); integral results as int."""
    rounded = round(float(value), 1)  # type: ignore[arg-type]
    return int(rounded) if rounded == int(rounded) else rounded


def profile_to_201(ctx: Context, profile: Mapping[str, Any]) -> JsonDict:
    """1.6 csChargingProfiles -> 2.0.1 ChargingProfileType; raises :class:`NotMappable`."""
    schedule: Mapping[str, Any] = profile["chargingSchedule"]
    periods: list[JsonDict] = []
    for period in schedule["chargingSchedulePeriod"]:
        out_period: JsonDict = {"startPeriod": period["startPeriod"], "limit": period["limit"]}
        if "numberPhases" in period:
            out_period["numberPhases"] = period["numberPhases"]
        periods.append(out_period)
    if not periods:
        raise NotMappable("a 2.0.1 schedule needs at least one period")
    out_schedule: JsonDict = {
        "id": profile["chargingProfileId"],
        "chargingRateUnit": schedule["chargingRateUnit"],
        "chargingSchedulePeriod": periods,
    }
    for name in ("startSchedule", "duration", "minChargingRate"):
        if name in schedule:
            out_schedule[name] = schedule[name]
    out: JsonDict = {
        "id": profile["chargingProfileId"],
        "stackLevel": profile["stackLevel"],
        "chargingProfilePurpose": PURPOSE_TO_201[str(profile["chargingProfilePurpose"])],
        "chargingProfileKind": profile["chargingProfileKind"],
        "chargingSchedule": [out_schedule],
    }
    for name in ("recurrencyKind", "validFrom", "validTo"):
        if name in profile:
            out[name] = profile[name]
    if "transactionId" in profile:
        rec = ctx.state.by_tx_int(int(profile["transactionId"]))
        if rec is None or rec.phase != "open":
            raise NotMappable("unknown or ended transactionId")
        out["transactionId"] = rec.tx201
    return out


def set_charging_profile(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    evse_id = evse_id_of(ctx, int(payload["connectorId"]))
    if evse_id is None:
        return local({"status": "Rejected"}, "unknown_connector")
    try:
        profile = profile_to_201(ctx, payload["csChargingProfiles"])
    except NotMappable:
        return local({"status": "Rejected"}, "profile_not_mappable")
    if profile["chargingProfilePurpose"] == "TxProfile" and "transactionId" not in profile:
        open_tx = ctx.state.open_tx_on_evse(evse_id) if evse_id else None
        if open_tx is None:
            return local({"status": "Rejected"}, "no_transaction")
        profile["transactionId"] = open_tx.tx201
    request = {"evseId": evse_id, "chargingProfile": profile}
    return forward("SetChargingProfile", request, lambda answers: {"status": answers[0]["status"]})


def clear_charging_profile(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request: JsonDict = {}
    if "id" in payload:
        request["chargingProfileId"] = payload["id"]
    criteria: JsonDict = {}
    if "connectorId" in payload:
        evse_id = evse_id_of(ctx, int(payload["connectorId"]))
        if evse_id is None:
            return local({"status": "Unknown"}, "unknown_connector")
        criteria["evseId"] = evse_id
    if "chargingProfilePurpose" in payload:
        criteria["chargingProfilePurpose"] = PURPOSE_TO_201[str(payload["chargingProfilePurpose"])]
    if "stackLevel" in payload:
        criteria["stackLevel"] = payload["stackLevel"]
    if criteria:
        request["chargingProfileCriteria"] = criteria
    return forward("ClearChargingProfile", request, lambda answers: {"status": answers[0]["status"]})


def get_composite_schedule(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    evse_id = evse_id_of(ctx, connector)
    if evse_id is None:
        return local({"status": "Rejected"}, "unknown_connector")
    request: JsonDict = {"duration": payload["duration"], "evseId": evse_id}
    if "chargingRateUnit" in payload:
        request["chargingRateUnit"] = payload["chargingRateUnit"]

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        result: JsonDict = {"status": answer["status"]}
        schedule = answer.get("schedule")
        if answer["status"] != "Accepted" or not isinstance(schedule, Mapping):
            return result
        periods: list[JsonDict] = []
        for period in schedule["chargingSchedulePeriod"]:
            if "phaseToUse" in period:
                ctx.drop("GetCompositeSchedule", "phaseToUse")
            out_period: JsonDict = {"startPeriod": period["startPeriod"], "limit": tenth(period["limit"])}
            if "numberPhases" in period:
                out_period["numberPhases"] = period["numberPhases"]
            periods.append(out_period)
        result.update(
            connectorId=connector,
            scheduleStart=schedule["scheduleStart"],
            chargingSchedule={
                "duration": schedule["duration"],
                "chargingRateUnit": schedule["chargingRateUnit"],
                "chargingSchedulePeriod": periods,
            },
        )
        return result

    return forward("GetCompositeSchedule", request, finish)
