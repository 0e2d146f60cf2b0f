"""Charger-initiated transaction messages: StatusNotification, StartTransaction, MeterValues, StopTransaction.

See ocpp-translation.md §2.3, §2.5, §2.6, §2.8. Decisions taken here (beyond the reference):

* StatusNotification: a 1.6 status change that stays inside 2.0.1 ``Occupied`` (Preparing -> Charging -> …) sends
  no StatusNotification (§2.3); every other status, including a repeat of the same one (chargers repeat after a
  reboot, and 2.0.1 CSMSs expect statuses after boot), is forwarded. A status asked for by TriggerMessage is always
  forwarded: a trigger for an EVSE is used by the next status of one of that EVSE's connectors (another
  connector's status neither uses it nor is forced), one for the whole station by the next status of each
  connector (``trigger.reported``), until it lapses (60 s, ``Context.prune``) or another TriggerMessage replaces
  it. When nothing at all has to be sent the charger is answered ``{}`` locally (reason
  ``occupied_folded``).
* All companions of one StatusNotification (the TransactionEvent ``ChargingStateChanged`` and the NotifyEvent of an
  errorCode change) are calls of the same plan, in the order StatusNotification, TransactionEvent, NotifyEvent;
  the charger is answered ``{}`` after the last.
* MeterValues for a transaction already ended (late, from the charger's queue) become a plain MeterValues for the
  connector's EVSE: 2.0.1 forbids events after ``Ended``, and the samples are not lost.
* Unknown transaction (§2.8): a Started is synthesised (seqNo 0, offline, no meterValue) for the charger's own
  integer, then the Updated/Ended follows with seqNo 1. Special case, **decision**: an unknown integer <= 0 (a
  charger that never got its StartTransaction.conf invents 0 or -1) is matched to the one open transaction whose
  idTag agrees, when exactly one exists, so that the CSMS does not see a phantom second transaction.
* A charger retrying StartTransaction (same connector, idTag, meterStart, timestamp) gets the same ids: answered
  from the stored result when the Started was acknowledged, else the same Started (same seqNo 0) is re-sent.
  A StopTransaction retry is answered from ``ended_result``, or re-sends the same Ended while unacknowledged.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from gateway.translate.base import JsonDict, OutCall, Plan
from gateway.translate.state import PendingRemoteStart, TxRecord
from gateway.translate.v16_v201.context import BOOT_AFTER_RESET, Context, id_tag_info, local, parse_ts
from gateway.translate.v16_v201.meter import ENERGY_REGISTER, convert_meter_values, register_sample
from gateway.translate.v16_v201.meter import signed_meter_value as _signed

__all__ = ["meter_values", "start_transaction", "status_notification", "stop_transaction"]

CONNECTOR_STATUS = {
    "Available": "Available",
    "Preparing": "Occupied",
    "Charging": "Occupied",
    "SuspendedEV": "Occupied",
    "SuspendedEVSE": "Occupied",
    "Finishing": "Occupied",
    "Reserved": "Reserved",
    "Unavailable": "Unavailable",
    "Faulted": "Faulted",
}
CHARGING_STATE = {
    "Preparing": "EVConnected",
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
}
CONTEXT_TRIGGER = {"Sample.Periodic": "MeterValuePeriodic", "Sample.Clock": "MeterValueClock", "Trigger": "Trigger"}
# 1.6 reason -> (stoppedReason, triggerReason); None = decided in stop_reasons()
STOP_REASON: dict[str, tuple[str | None, str | None]] = {
    "Local": ("Local", None),
    "Remote": ("Remote", "RemoteStop"),
    "EVDisconnected": ("EVDisconnected", "EVDeparted"),
    "DeAuthorized": ("DeAuthorized", "Deauthorized"),
    "EmergencyStop": ("EmergencyStop", "AbnormalCondition"),
    "PowerLoss": ("PowerLoss", "AbnormalCondition"),
    "HardReset": ("ImmediateReset", None),
    "SoftReset": (None, None),
    "Reboot": ("Reboot", "AbnormalCondition"),
    "UnlockCommand": ("Other", "UnlockCommand"),
    "Other": ("Other", "AbnormalCondition"),
}
_ACTIVE = frozenset({"Charging", "SuspendedEV", "SuspendedEVSE"})


def _tx_event(ctx: Context, rec: TxRecord, event_type: str, timestamp: str, trigger: str) -> JsonDict:
    if ctx.is_offline(timestamp):
        rec.offline = True
    event: JsonDict = {
        "eventType": event_type,
        "timestamp": timestamp,
        "triggerReason": trigger,
        "seqNo": ctx.take_seq(rec),
        "transactionInfo": {"transactionId": rec.tx201},
    }
    if rec.offline:
        event["offline"] = True
    return event


def _evse(ctx: Context, connector: int) -> JsonDict:
    evse_id, connector_id = ctx.evse_of(connector)
    return {"id": evse_id, "connectorId": connector_id}


# -- StatusNotification (§2.3) ---------------------------------------------------------------------------------


def _problem_event(ctx: Context, connector: int, timestamp: str, payload: Mapping[str, Any]) -> JsonDict:
    code = str(payload["errorCode"])
    cleared = code == "NoError"
    component: JsonDict = (
        {"name": "ChargingStation"} if connector == 0 else {"name": "Connector", "evse": _evse(ctx, connector)}
    )
    event: JsonDict = {
        "eventId": ctx.next_event_id(),
        "timestamp": timestamp,
        "trigger": "Alerting",
        "actualValue": "false" if cleared else "true",
        "component": component,
        "variable": {"name": "Problem"},
        "eventNotificationType": "HardWiredNotification",
        "cleared": cleared,
    }
    if not cleared:
        event["techCode"] = code[:50]
        info = " ".join(str(payload[k]) for k in ("info", "vendorId", "vendorErrorCode") if payload.get(k))
        if info:
            event["techInfo"] = info[:500]
    return event


def _take_trigger(ctx: Context, connector: int) -> bool:
    """Whether this connector's status is the one a TriggerMessage StatusNotification asked for (and use it up)."""
    trigger = ctx.state.trigger or {}
    if trigger.get("requestedMessage") != "StatusNotification":
        return False
    evse = trigger.get("evse")
    if evse is None:  # the whole station: each connector's next status once, until the trigger lapses
        reported = list(trigger.get("reported") or [])
        if connector in reported:
            return False
        ctx.state.trigger = {**trigger, "reported": [*reported, connector]}
        return True
    if connector < 1 or ctx.evse_of(connector)[0] != evse:
        return False
    ctx.state.trigger = None
    return True


def status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    status, error = str(payload["status"]), str(payload["errorCode"])
    timestamp = str(payload.get("timestamp") or ctx.now())
    previous = ctx.state.connector_status.get(connector) or {}
    ctx.state.connector_status[connector] = {"status": status, "errorCode": error, "at": timestamp}
    triggered = _take_trigger(ctx, connector)
    calls: list[OutCall] = []
    events: list[JsonDict] = []
    if connector == 0:
        events.append(
            {
                "eventId": ctx.next_event_id(),
                "timestamp": timestamp,
                "trigger": "Delta",
                "actualValue": status,
                "component": {"name": "ChargingStation"},
                "variable": {"name": "AvailabilityState"},
                "eventNotificationType": "HardWiredNotification",
            }
        )
    else:
        new = CONNECTOR_STATUS[status]
        old = CONNECTOR_STATUS.get(str(previous.get("status")))
        if triggered or not (old == new == "Occupied"):
            evse_id, connector_id = ctx.evse_of(connector)
            sn = {"timestamp": timestamp, "connectorStatus": new, "evseId": evse_id, "connectorId": connector_id}
            calls.append(OutCall("StatusNotification", sn))
        open_tx = ctx.state.open_tx_on_connector(connector)
        charging_state = CHARGING_STATE.get(status)
        if open_tx and charging_state and open_tx[1].charging_state != charging_state:
            rec = open_tx[1]
            rec.charging_state = charging_state
            event = _tx_event(ctx, rec, "Updated", timestamp, "ChargingStateChanged")
            event["transactionInfo"]["chargingState"] = charging_state
            event["evse"] = _evse(ctx, connector)
            calls.append(OutCall("TransactionEvent", event))
    if error != str(previous.get("errorCode", "NoError")):
        events.append(_problem_event(ctx, connector, timestamp, payload))
    if events:
        calls.append(OutCall("NotifyEvent", {"generatedAt": ctx.now(), "seqNo": 0, "tbc": False, "eventData": events}))
    if not calls:
        return local({}, "occupied_folded")
    return Plan(calls=calls, finish=lambda answers: {})


# -- StartTransaction (§2.5) -----------------------------------------------------------------------------------


def _take_remote_start(ctx: Context, evse: int | None, id_tag: str) -> PendingRemoteStart | None:
    ctx.prune()
    for entry in ctx.state.pending_remote_starts:
        if entry.id_token == id_tag and (entry.evse is None or entry.evse == evse):
            ctx.state.pending_remote_starts.remove(entry)
            ctx.state.id_types[id_tag] = entry.id_token_type
            return entry
    return None


def _id_token(ctx: Context, id_tag: str, remote: PendingRemoteStart | None) -> JsonDict:
    if remote is not None:
        return {"idToken": id_tag, "type": remote.id_token_type}
    return ctx.id_token(id_tag)


def start_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector, id_tag = int(payload["connectorId"]), str(payload["idTag"])
    meter_start, timestamp = int(payload["meterStart"]), str(payload["timestamp"])
    dedup = hashlib.sha1(f"{connector}|{id_tag}|{meter_start}|{timestamp}".encode()).hexdigest()
    for tx_int, rec in ctx.state.transactions.items():
        if rec.dedup == dedup and rec.started_event is not None:
            if rec.started_acked and rec.start_result is not None:
                return local(copy.deepcopy(rec.start_result), "start_retry_answered")
            return _start_plan(ctx, tx_int, rec)
    evse = ctx.evse_of(connector) if connector > 0 else None
    remote = _take_remote_start(ctx, evse[0] if evse else None, id_tag)
    status = str((ctx.state.connector_status.get(connector) or {}).get("status"))
    rec = TxRecord(
        tx201=ctx.new_tx_id(),
        evse=evse[0] if evse else None,
        connector=connector,
        id_token=id_tag,
        meter_start_wh=meter_start,
        started_at=timestamp,
        remote_start_id=remote.remote_start_id if remote else None,
        reservation_id=payload.get("reservationId"),
        charging_state=status if status in _ACTIVE else "EVConnected",
        dedup=dedup,
    )
    token = _id_token(ctx, id_tag, remote)
    rec.id_token_type = token["type"]
    tx_int = ctx.alloc_tx_int()
    ctx.state.transactions[tx_int] = rec
    event = _tx_event(ctx, rec, "Started", timestamp, "RemoteStart" if remote else "Authorized")
    event["transactionInfo"]["chargingState"] = rec.charging_state
    if remote:
        event["transactionInfo"]["remoteStartId"] = remote.remote_start_id
    if "reservationId" in payload:
        event["reservationId"] = payload["reservationId"]
    if evse:
        event["evse"] = {"id": evse[0], "connectorId": evse[1]}
    event["idToken"] = token
    event["meterValue"] = [register_sample(meter_start, "Transaction.Begin", timestamp)]
    rec.started_event = event
    return _start_plan(ctx, tx_int, rec)


def _start_plan(ctx: Context, tx_int: int, rec: TxRecord) -> Plan:
    def finish(answers: list[JsonDict]) -> JsonDict:
        info = answers[-1].get("idTokenInfo")
        if isinstance(info, Mapping):
            tag_info = id_tag_info(ctx, "StartTransaction", info)
        else:
            ctx.drop("StartTransaction", "csms_omitted_idtokeninfo")
            tag_info = {"status": "Accepted"}
        result: JsonDict = {"transactionId": tx_int, "idTagInfo": tag_info}
        rec.started_acked, rec.start_result = True, result
        return copy.deepcopy(result)

    assert rec.started_event is not None
    return Plan(calls=[OutCall("TransactionEvent", copy.deepcopy(rec.started_event))], finish=finish)


# -- unknown transactions (§2.8) -------------------------------------------------------------------------------


def _adopt_orphan(ctx: Context, tx_int: int, id_tag: str | None) -> TxRecord | None:
    """An invented id (<= 0) for the one open transaction it can only be."""
    if tx_int > 0:
        return None
    candidates = [
        rec
        for rec in ctx.state.transactions.values()
        if rec.phase == "open" and (id_tag is None or rec.id_token in (None, id_tag))
    ]
    return candidates[0] if len(candidates) == 1 else None


def _synthesise(
    ctx: Context, tx_int: int, connector: int | None, id_tag: str | None, timestamp: str
) -> tuple[TxRecord, OutCall]:
    evse = ctx.evse_of(connector) if connector else None
    remote = _take_remote_start(ctx, evse[0] if evse else None, id_tag) if id_tag else None
    rec = TxRecord(
        tx201=ctx.new_tx_id(),
        evse=evse[0] if evse else None,
        connector=connector,
        id_token=id_tag,
        started_at=timestamp,
        remote_start_id=remote.remote_start_id if remote else None,
        offline=True,
        started_acked=True,
    )
    ctx.state.transactions[tx_int] = rec
    event = _tx_event(ctx, rec, "Started", timestamp, "RemoteStart" if remote else "Authorized")
    if remote:
        event["transactionInfo"]["remoteStartId"] = remote.remote_start_id
    if evse:
        event["evse"] = {"id": evse[0], "connectorId": evse[1]}
    if id_tag:
        token = _id_token(ctx, id_tag, remote)
        rec.id_token_type = token["type"]
        event["idToken"] = token
    rec.started_event = event
    ctx.drop("TransactionEvent", "synthesised_started")
    return rec, OutCall("TransactionEvent", copy.deepcopy(event))


_NEVER = datetime.min.replace(tzinfo=UTC)


def _earliest(*timestamps: str) -> str:
    """The earliest parsable timestamp (unparsable ones sort last)."""
    if len(timestamps) == 1:  # the common case: nothing to compare (and to parse)
        return timestamps[0]
    return min(timestamps, key=lambda t: (parse_ts(t) is None, parse_ts(t) or _NEVER))


def _latest(timestamps: list[str]) -> str:
    if len(timestamps) == 1:
        return timestamps[0]
    return max(timestamps, key=lambda t: (parse_ts(t) is not None, parse_ts(t) or _NEVER))


# -- MeterValues (§2.6) ----------------------------------------------------------------------------------------


def meter_values(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    raw: list[Mapping[str, Any]] = list(payload["meterValue"])
    converted = convert_meter_values(ctx, "MeterValues", raw)
    tx_int = payload.get("transactionId")
    if tx_int is None and ctx.options.attach_untagged_samples_to_open_tx and connector > 0:
        open_tx = ctx.state.open_tx_on_connector(connector)
        tx_int = open_tx[0] if open_tx else None
    rec = ctx.state.transactions.get(tx_int) if isinstance(tx_int, int) else None
    if tx_int is None or (rec is not None and rec.phase != "open"):
        if not converted:
            return local({}, "no_convertible_samples")
        evse_id = ctx.evse_of(connector)[0] if connector > 0 else 0
        return Plan(calls=[OutCall("MeterValues", {"evseId": evse_id, "meterValue": converted})], finish=lambda a: {})
    calls: list[OutCall] = []
    if rec is None:
        rec = _adopt_orphan(ctx, int(tx_int), None)
    if rec is None:
        rec, started = _synthesise(ctx, int(tx_int), connector, None, _earliest(*(str(m["timestamp"]) for m in raw)))
        calls.append(started)
    if not converted and not calls:
        return local({}, "no_convertible_samples")
    trigger = ctx.state.trigger or {}
    if trigger.get("requestedMessage") in ("MeterValues", "TransactionEvent"):
        ctx.state.trigger = None
        reason = "Trigger"
    else:
        first = (raw[0].get("sampledValue") or [{}])[0] if raw else {}
        reason = CONTEXT_TRIGGER.get(str(first.get("context", "Sample.Periodic")), "MeterValuePeriodic")
    event = _tx_event(ctx, rec, "Updated", _latest([str(m["timestamp"]) for m in raw]), reason)
    if converted:
        event["meterValue"] = converted
    calls.append(OutCall("TransactionEvent", event))
    return Plan(calls=calls, finish=lambda answers: {})


# -- StopTransaction (§2.8) ------------------------------------------------------------------------------------


def _stop_reasons(ctx: Context, reason: str, has_tag: bool) -> tuple[str, str]:
    stopped, trigger = STOP_REASON.get(reason, ("Other", "AbnormalCondition"))
    reset = ctx.state.reset if ctx.since(ctx.state.reset, BOOT_AFTER_RESET) else None
    if reason == "Local":
        trigger = "StopAuthorized" if has_tag else "EVDeparted"
    elif reason in ("HardReset", "SoftReset"):
        trigger = "ResetCommand" if reset else "AbnormalCondition"
        if reason == "SoftReset":
            stopped = "ImmediateReset" if reset and reset.get("type") == "Immediate" else "Reboot"
    assert stopped is not None and trigger is not None
    return stopped, trigger


def _ended_connector(ctx: Context) -> int | None:
    busy = {rec.connector for rec in ctx.state.transactions.values() if rec.phase == "open"}
    found = [
        c
        for c, s in ctx.state.connector_status.items()
        if c > 0 and s.get("status") in (*_ACTIVE, "Finishing") and c not in busy
    ]
    return found[0] if len(found) == 1 else None


def stop_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    tx_int = int(payload["transactionId"])
    timestamp, meter_stop = str(payload["timestamp"]), int(payload["meterStop"])
    id_tag: str | None = payload.get("idTag")
    rec = ctx.state.transactions.get(tx_int) or _adopt_orphan(ctx, tx_int, id_tag)
    calls: list[OutCall] = []
    if rec is not None and rec.phase == "ended" and rec.ended_result is not None:
        return local(copy.deepcopy(rec.ended_result), "stop_retry_answered")
    if rec is not None and rec.phase == "ending" and rec.ended_event is not None:
        return _stop_plan(ctx, rec, [OutCall("TransactionEvent", copy.deepcopy(rec.ended_event))])
    data: list[Mapping[str, Any]] = list(payload.get("transactionData") or [])
    if rec is None:
        first = _earliest(timestamp, *(str(m["timestamp"]) for m in data))
        rec, started = _synthesise(ctx, tx_int, _ended_connector(ctx), id_tag, first)
        calls.append(started)
    stopped, trigger = _stop_reasons(ctx, str(payload.get("reason", "Local")), id_tag is not None)
    blobs: list[str] = []
    converted = convert_meter_values(ctx, "StopTransaction", data, blobs.append)
    stop_sample = register_sample(meter_stop, "Transaction.End", timestamp)
    duplicate = any(
        s.get("context") == "Transaction.End"
        and s.get("measurand", ENERGY_REGISTER) == ENERGY_REGISTER
        and "phase" not in s
        and s.get("value") == meter_stop
        and s.get("unitOfMeasure", {}).get("unit", "Wh") == "Wh"
        for mv in converted
        for s in mv["sampledValue"]
    )
    if not duplicate:
        if blobs and (signed := _signed(ctx, blobs[0])) is not None:
            stop_sample["sampledValue"][0]["signedMeterValue"] = signed
        converted.append(stop_sample)
    event = _tx_event(ctx, rec, "Ended", timestamp, trigger)
    event["transactionInfo"]["stoppedReason"] = stopped
    if id_tag is not None:
        event["idToken"] = ctx.id_token(id_tag)
    event["meterValue"] = converted
    rec.phase, rec.ended_event = "ending", event
    calls.append(OutCall("TransactionEvent", copy.deepcopy(event)))
    return _stop_plan(ctx, rec, calls)


def _stop_plan(ctx: Context, rec: TxRecord, calls: list[OutCall]) -> Plan:
    plan = Plan(calls=calls)

    def finish(answers: list[JsonDict]) -> JsonDict:
        info = answers[-1].get("idTokenInfo")
        result: JsonDict = {"idTagInfo": id_tag_info(ctx, "StopTransaction", info)} if isinstance(info, Mapping) else {}
        rec.phase, rec.ended_result, rec.ended_at = "ended", result, ctx.now()
        reset = ctx.state.reset
        if reset and reset.get("deferred") and not ctx.state.has_open_transactions():
            ctx.state.reset = {**reset, "deferred": False, "sentAs": "Soft", "at": ctx.now()}
            plan.then_to_charger.append(OutCall("Reset", {"type": "Soft"}))
        return copy.deepcopy(result)

    plan.finish = finish
    return plan
