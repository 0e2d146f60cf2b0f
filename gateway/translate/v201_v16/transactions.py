"""TransactionEvent -> StartTransaction / MeterValues / StatusNotification / StopTransaction, and StatusNotification
(set-up B, ocpp-translation.md §4.1, §4.2).

The 1.6 CSMS assigns the integer ``transactionId`` in StartTransaction.conf; until then nothing of the transaction
reaches the CSMS with an id: the 1.6 translations of its events wait in :attr:`TxB.queue` (persisted state) and are
flushed, in order and with the CSMS's id filled in, as ``then_to_csms`` CALLs of the plan that received the
StartTransaction.conf (the session sends them before it plans the charger's next CALL).

Decisions taken here (beyond the reference):

* **Start.** A ``Started`` with an ``idToken``, or the first ``Updated`` of a held transaction that carries one
  (any trigger except ``StopAuthorized``/``Deauthorized``, whose token is kept for StopTransaction ``idTag``), sends
  StartTransaction {``connectorId``, ``idTag``, ``meterStart``, ``timestamp`` = the Started event's,
  ``reservationId``}; the charger's answer waits for StartTransaction.conf: {``idTokenInfo`` <- ``idTagInfo``}.
  A status other than ``Accepted`` is passed on; the 1.6 transaction exists anyway and ends with the charger's
  ``Ended``.
* **Cable first** (Started without idToken): nothing is sent, the record is kept (``start_state`` ``held``, the
  Started's timestamp and meter reading); the event and every later one of the held transaction are answered
  ``{}`` at once; their MeterValues go to the queue. ``meterStart`` is the ``Transaction.Begin`` register of the
  Started event, else its latest register reading, else the **first** register reading seen later while the
  transaction was held (closest to the transaction's own start), else 0 (counted ``meter_unknown``).
* **Held status changes** are not queued as frames: while no 1.6 transaction exists an ``Occupied`` connector is
  ``Preparing`` whatever the chargingState; when StartTransaction.conf arrives the connector's 1.6 status is
  derived again and, if it changed, one StatusNotification goes first in the flush (after StopTransaction when the
  start was flushed by an ``Ended``).
* **The Started event's own samples**: the ``Transaction.Begin`` energy register travels as ``meterStart``; its
  other ``Transaction.Begin`` samples (SoC, power, …) have no place in a 1.6 StartTransaction and are dropped,
  counted ``begin_sample_dropped`` (a 1.6 CSMS does not expect a MeterValues of start readings); samples of any
  other context in a Started event follow as MeterValues with the transactionId.
* **Acked transactions** (differs from §4.2, which answers ``Updated`` at once): an ``Updated`` event's
  StatusNotification (when the derived 1.6 status changed) and MeterValues go to the CSMS in that order, and the
  charger's ``{}`` waits until the CSMS acknowledged them, so that a meter value or a stop is never acknowledged to
  the charger before the CSMS has it (a link loss or a restart in between would lose it: the charger would not send
  it again). ``Ended`` without idToken: StopTransaction (then StatusNotification ``Finishing`` while the connector
  stays ``Occupied``), then ``{}``. ``Ended`` with idToken: the answer waits for StopTransaction.conf
  (``idTokenInfo`` <- ``idTagInfo``; a CSMS that leaves ``idTagInfo`` out gives ``{}``, counted
  ``csms_omitted_idtaginfo``). Only the events of a transaction whose StartTransaction.conf has not come yet are
  answered at once (the CSMS cannot take them yet); they wait in the persisted queue.
* **An event that carries the transaction's start token again** (acked transaction) is answered with the
  ``idTokenInfo`` of the StartTransaction.conf (the CSMS's verdict on that token, never invented); any other token
  outside a start gets ``{}``.
* **StartTransaction CALLERROR or timeout**: ``on_error`` returns None, so the charger gets the mapped CALLERROR
  (nothing on a timeout) and retries its own TransactionEvent per ``OCPPCommCtrlr.MessageAttempts``; the record
  goes back to ``held`` with its idTag, so the retry (or any later event of that transaction) sends StartTransaction
  again; the queue is untouched (this event's own 1.6 frames are added only when the conf arrives, so a retry never
  queues twice). A record found ``sent`` when an event arrives lost its StartTransaction (gateway restart while it
  was in flight: the session plans one charger CALL at a time) and is treated like ``held``. When the charger gives
  up (a TransactionEvent of another transaction arrives while an ended transaction still has no 1.6 id: the charger
  delivers transaction messages in order, so it dropped that one), the record and its queue are deleted, counted
  ``tx_lost``. Nothing is ever sent with a made-up transactionId.
* **Ended before the 1.6 id**: never authorized (no idTag) -> nothing sent, record deleted, counted
  ``tx_never_authorized``, ``{}`` (also when the Ended itself carries a token: the CSMS never saw a start, there is
  nothing to ask it). With an idTag whose StartTransaction failed or was lost: StartTransaction again, then the
  queue and the StopTransaction in the flush; the answer comes with the StartTransaction.conf (``idTokenInfo`` when
  the Ended carries the start token, else ``{}``, counted ``stop_token_unverified``).
* **Unknown transaction** (no record, not ``Started``: the charger was moved behind the gateway mid-transaction or
  the store was lost): counted ``unknown_transaction`` and handled like a held transaction with the earliest known
  timestamp as start; an ``Ended`` of an unknown transaction sends nothing (no id, no start data).
* **Duplicates and order**: an event whose (transactionId, seqNo) was already answered gets the same answer again
  (the last 8 answers per transaction are kept) and nothing is sent (counted ``duplicate_seqno``); an older seqNo
  no longer in the cache gets ``{}`` (or the start ``idTokenInfo`` for the start token). The highest seqNo without a
  stored answer is the charger's retry of a CALL that got no answer and is translated again. A gap (seqNo > last +
  1) is counted ``seqno_gap`` and does not block.
* **Long idTokens** (``Options.long_id_tokens``, see ``context``): ``reject`` -> the Started/Updated that would
  start the transaction is answered ``idTokenInfo`` {``status`` ``Invalid``} (the charger ends it per
  StopTxOnInvalidId), no StartTransaction is sent, counted ``idtoken_too_long``; an Ended's token that does not
  fit is left out of StopTransaction and answered ``Invalid``. ``alias`` -> the alias is the idTag everywhere.
* **remoteStartId** in ``transactionInfo`` consumes the matching :class:`PendingStart` (removed from the state);
  without it, a ``RemoteStart`` trigger consumes the pending start with the same idTag on that EVSE (or any EVSE).
* **Stop reason** (§4.2): ``triggerReason`` ``UnlockCommand`` -> ``UnlockCommand`` first; then ``stoppedReason``
  per :data:`STOPPED_REASON`; ``ImmediateReset`` -> ``SoftReset`` when the last Reset the 1.6 CSMS asked for
  (``state.reset``, written by the CSMS side) was ``Soft``, else ``HardReset``; absent -> ``Local``.
* **Connector**: ``evse`` of the first event, mapped through ``connector_of``; when absent (or unmapped) the one
  ``Occupied`` connector without an open transaction, else connectorId 0 (counted ``connector_unknown``).
* **StatusNotification** (§4.1): ``Occupied`` -> ``Preparing`` (no 1.6 transaction yet), the 1.6 status of the
  open transaction's chargingState once acked (``EVConnected`` and an unknown chargingState -> ``SuspendedEVSE``,
  ``Idle`` -> ``SuspendedEV``), ``Finishing`` after its Ended while the connector stays ``Occupied``. Only a change
  of the derived 1.6 status is sent (compared with ``status16``, which an accepted BootNotification clears so that
  the statuses a charger sends after booting reach the CSMS again); otherwise ``{}`` locally
  (``status_unchanged``). Transaction-driven status changes are only derived for a connector whose last 2.0.1
  status is ``Occupied`` (a TransactionEvent that arrives before the StatusNotification is accounted for when the
  StatusNotification comes). A CALLERROR from the CSMS restores ``status16`` so the charger's retry re-sends.
* **A StatusNotification the CSMS triggered always reaches it**, changed or not: TriggerMessage (or
  ExtendedTriggerMessage) StatusNotification is remembered in ``state.status_triggers`` (persisted with the rest of
  the state, so it survives a reconnect between the trigger and the status) before it is sent to the charger, and
  forgotten when the charger refuses it (any status but ``Accepted``, or a CALLERROR; kept on a timeout: the
  charger may still send the status). A trigger for a connector is used by that connector's next
  StatusNotification, changed or not; one for the whole station (1.6 connectorId 0 or none) by the next
  StatusNotification of each connector (at most 64). Bounded: the newest 16 triggers, one per target (a new
  trigger for the same connector replaces the older one), each forgotten 60 s after the TriggerMessage (the
  reference's TTL for the trigger in flight, §1.3). A CALLERROR from the CSMS to the triggered status puts the
  trigger back, so the charger's retry goes out too. Only StatusNotification needs this: every other message a
  1.6 CSMS can trigger (BootNotification, Heartbeat, MeterValues, Diagnostics/FirmwareStatusNotification) is
  always translated and sent; the gateway answers none of them locally for being unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from gateway.translate.base import JsonDict, OutCall, Plan
from gateway.translate.v201_v16.context import Context, id_token_info, local, parse_ts
from gateway.translate.v201_v16.meter import convert_meter_values, energy_wh, is_register
from gateway.translate.v201_v16.state import TxB

__all__ = [
    "CHARGING_STATUS",
    "STOPPED_REASON",
    "status_notification",
    "stop_reason",
    "transaction_event",
]

TE = "TransactionEvent"
ANSWERS_KEPT = 8
REPORTED_MAX = 64  # connectors one whole-station StatusNotification trigger lets through
STOP_TRIGGERS = frozenset({"StopAuthorized", "Deauthorized"})
#: 2.0.1 chargingState -> 1.6 status while the 1.6 transaction is open (§4.1)
CHARGING_STATUS = {
    "Charging": "Charging",
    "SuspendedEV": "SuspendedEV",
    "SuspendedEVSE": "SuspendedEVSE",
    "EVConnected": "SuspendedEVSE",
    "Idle": "SuspendedEV",
}
#: 2.0.1 stoppedReason -> 1.6 StopTransaction reason; anything else -> Other (ImmediateReset: see stop_reason)
STOPPED_REASON = {
    "DeAuthorized": "DeAuthorized",
    "EmergencyStop": "EmergencyStop",
    "EVDisconnected": "EVDisconnected",
    "Local": "Local",
    "MasterPass": "Local",
    "PowerLoss": "PowerLoss",
    "Reboot": "Reboot",
    "Remote": "Remote",
    "Other": "Other",
}
_NEVER = datetime.min.replace(tzinfo=UTC)

Queued = tuple[str, JsonDict]  # a 1.6 CALL without its transactionId


# -- 1.6 connector status (§4.1) -------------------------------------------------------------------------------


def _key(evse: int, connector: int) -> str:
    return f"{evse}.{connector}"


def _derive(ctx: Context, evse: int, entry: Mapping[str, Any]) -> str:
    status = str(entry.get("status"))
    if status != "Occupied":
        return status
    rec = ctx.state.open_tx_on_evse(evse)
    if rec is not None:
        if rec.start_state != "acked":
            return "Preparing"
        return CHARGING_STATUS.get(rec.charging_state or "EVConnected", "SuspendedEVSE")
    return "Finishing" if entry.get("finishing") else "Preparing"


def _status_call(
    ctx: Context, evse: int, key: str, connector16: int, timestamp: str, *, force: bool = False
) -> OutCall | None:
    """The 1.6 StatusNotification when the derived status differs from the last one sent, or ``force`` (and record
    it)."""
    entry = ctx.state.connector_status.get(key)
    if entry is None:
        return None
    status = _derive(ctx, evse, entry)
    if status == entry.get("status16") and not force:
        return None
    entry["status16"] = status
    payload = {
        "connectorId": connector16,
        "errorCode": "OtherError" if status == "Faulted" else "NoError",
        "status": status,
        "timestamp": timestamp,
    }
    return OutCall("StatusNotification", payload)


def _tx_key(ctx: Context, rec: TxB) -> tuple[int, str] | None:
    if rec.connector < 1:
        return None
    evse, connector = ctx.evse_of(rec.connector)
    return evse, _key(evse, connector)


def _tx_status_call(ctx: Context, rec: TxB, timestamp: str) -> OutCall | None:
    """The StatusNotification a transaction change causes, for a connector the charger reported ``Occupied``."""
    found = _tx_key(ctx, rec)
    if found is None:
        return None
    evse, key = found
    if (ctx.state.connector_status.get(key) or {}).get("status") != "Occupied":
        return None
    return _status_call(ctx, evse, key, rec.connector, timestamp)


def _take_trigger(ctx: Context, evse: int, connector: int, key: str) -> Callable[[], None] | None:
    """Use the TriggerMessage (if any) that asked for this connector's status; returns how to put it back."""
    for entry in ctx.state.status_triggers:
        if entry.get("evse") is None:  # the whole station: each connector once
            reported = list(entry.get("reported") or [])
            if key in reported:
                continue
            if len(reported) + 1 >= REPORTED_MAX:
                ctx.drop_status_trigger(entry)
            else:
                entry["reported"] = [*reported, key]  # replaced, never changed in place (snapshots share it)

            def unreport(entry: JsonDict = entry) -> None:
                entry["reported"] = [k for k in entry.get("reported") or [] if k != key]
                if not any(t is entry for t in ctx.state.status_triggers):
                    ctx.state.status_triggers = [*ctx.state.status_triggers, entry]

            return unreport
        if (entry.get("evse"), entry.get("connectorId")) == (evse, connector):
            ctx.drop_status_trigger(entry)

            def restore(entry: JsonDict = entry) -> None:
                if not any(t is entry for t in ctx.state.status_triggers):
                    ctx.state.status_triggers = [*ctx.state.status_triggers, entry]

            return restore
    return None


def status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    evse, connector = int(payload["evseId"]), int(payload["connectorId"])
    status, timestamp = str(payload["connectorStatus"]), str(payload["timestamp"])
    connector16 = ctx.connector_of(evse, connector)
    if connector16 is None:
        ctx.drop("StatusNotification", "unmapped_connector")
        return local({}, "unmapped_connector")
    key = _key(evse, connector)
    entry = ctx.state.connector_status.setdefault(key, {})
    before = entry.get("status16")
    entry["status"], entry["at"] = status, timestamp
    if status != "Occupied":
        entry.pop("finishing", None)
    put_back = _take_trigger(ctx, evse, connector, key)
    call = _status_call(ctx, evse, key, connector16, timestamp, force=put_back is not None)
    if call is None:
        return local({}, "status_unchanged")

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        restored = ctx.state.connector_status.get(key)
        if restored is not None:
            restored["status16"] = before
        if put_back is not None:
            put_back()
        return None

    return Plan(calls=[call], finish=lambda answers: {}, on_error=on_error)


# -- helpers ---------------------------------------------------------------------------------------------------


def _earliest(timestamps: Sequence[str]) -> str:
    return min(timestamps, key=lambda t: (parse_ts(t) is None, parse_ts(t) or _NEVER))


def _same_token(ctx: Context, rec: TxB, token: Mapping[str, Any]) -> bool:
    """Whether ``token`` is the one the transaction started with (an alias compares with its original)."""
    if rec.id_tag is None:
        return False
    value = token.get("idToken")
    return value == rec.id_tag or value == ctx.state.aliases.get(rec.id_tag)


def _start_answer(ctx: Context, rec: TxB, token: object) -> JsonDict:
    if isinstance(token, Mapping) and rec.start_result is not None and _same_token(ctx, rec, token):
        return {"idTokenInfo": id_token_info(rec.start_result)}
    return {}


def _remember(rec: TxB, seq: int, answer: JsonDict) -> JsonDict:
    rec.answers[str(seq)] = copy.deepcopy(answer)
    for old in sorted(rec.answers, key=int)[:-ANSWERS_KEPT]:
        del rec.answers[old]
    return answer


def _answered(rec: TxB, seq: int, answer: JsonDict, reason: str, then: Sequence[OutCall | None] = ()) -> Plan:
    plan = local(_remember(rec, seq, answer), reason)
    plan.then_to_csms.extend(call for call in then if call is not None)
    return plan


def _forwarded(rec: TxB, seq: int, answer: JsonDict, calls: list[OutCall]) -> Plan:
    """An event of an acknowledged transaction: its 1.6 CALLs go to the CSMS and the charger is answered once the
    CSMS acknowledged them all, so the charger keeps (and retries) the event until the CSMS has it; the answer
    carries nothing of the CSMS's (a 1.6 MeterValues/StopTransaction.conf without idTagInfo has nothing to pass on).
    A CALLERROR or timeout reaches the charger as such (nothing on a timeout): it sends the event again."""
    if not calls:
        return _answered(rec, seq, answer, "no_16_counterpart")
    return Plan(calls=calls, finish=lambda answers: _remember(rec, seq, answer))


def _with_id(rec: TxB, action: str, payload: Mapping[str, Any]) -> OutCall:
    out = dict(payload)
    if action in ("MeterValues", "StopTransaction"):
        out["transactionId"] = rec.tx_int
    return OutCall(action, out)


def _duplicate(ctx: Context, rec: TxB, seq: int, token: object) -> Plan | None:
    cached = rec.answers.get(str(seq))
    if cached is not None:
        ctx.drop(TE, "duplicate_seqno")
        return local(copy.deepcopy(cached), "duplicate_event")
    if seq < rec.last_seq:
        ctx.drop(TE, "duplicate_seqno")
        return local(_start_answer(ctx, rec, token), "duplicate_event")
    if seq > rec.last_seq + 1:
        ctx.drop(TE, "seqno_gap")
    return None


def _forget_lost(ctx: Context, current: str) -> None:
    for key, rec in list(ctx.state.transactions.items()):
        if key != current and rec.phase == "ended" and rec.start_state != "acked":
            del ctx.state.transactions[key]
            ctx.drop(TE, "tx_lost")


def _infer_connector(ctx: Context) -> int | None:
    busy = {rec.evse for rec in ctx.state.transactions.values() if rec.phase == "open"}
    found: list[int] = []
    for key, entry in ctx.state.connector_status.items():
        evse_text, _, connector_text = key.partition(".")
        if entry.get("status") != "Occupied" or not evse_text.isdigit() or not connector_text.isdigit():
            continue
        if int(evse_text) in busy:
            continue
        connector = ctx.connector_of(int(evse_text), int(connector_text))
        if connector:
            found.append(connector)
    return found[0] if len(found) == 1 else None


def _place(ctx: Context, rec: TxB, evse: object) -> None:
    """Connector of a record that has none yet (first event, or an event that finally names the EVSE)."""
    if isinstance(evse, Mapping):
        connector = ctx.connector_of(int(evse["id"]), evse.get("connectorId"))
        if connector:
            rec.evse, rec.connector = int(evse["id"]), connector
            return
    connector = _infer_connector(ctx)
    if connector:
        rec.evse, rec.connector = ctx.evse_of(connector)[0], connector


def _consume_remote_start(ctx: Context, rec: TxB, info: Mapping[str, Any], trigger: str, id_tag: str | None) -> None:
    remote_start_id = info.get("remoteStartId")
    pending = ctx.state.pending_starts
    if isinstance(remote_start_id, int):
        rec.remote_start_id = remote_start_id
        ctx.state.pending_starts = [p for p in pending if p.remote_start_id != remote_start_id]
        return
    if trigger != "RemoteStart" or id_tag is None:
        return
    for entry in pending:
        if entry.id_tag == id_tag and entry.evse in (None, rec.evse):
            rec.remote_start_id = entry.remote_start_id
            pending.remove(entry)
            return


def stop_reason(ctx: Context, stopped: str | None, trigger: str) -> str:
    """1.6 StopTransaction ``reason`` for a 2.0.1 ``stoppedReason`` / ``triggerReason`` (§4.2)."""
    if trigger == "UnlockCommand":
        return "UnlockCommand"
    if stopped is None:
        return "Local"
    if stopped == "ImmediateReset":
        return "SoftReset" if (ctx.state.reset or {}).get("type") == "Soft" else "HardReset"
    return STOPPED_REASON.get(stopped, "Other")


def _meter_tail(ctx: Context, rec: TxB, meter: Sequence[Mapping[str, Any]], started: bool) -> list[Queued]:
    """The MeterValues (without transactionId) of one Started/Updated event."""
    if started:  # Transaction.Begin samples: the register travels as meterStart, the others have no 1.6 place
        kept: list[Mapping[str, Any]] = []
        for mv in meter:
            samples = []
            for sample in mv.get("sampledValue") or []:
                if sample.get("context") != "Transaction.Begin":
                    samples.append(sample)
                elif not is_register(sample):
                    ctx.drop(TE, "begin_sample_dropped")
            if samples:
                kept.append({**mv, "sampledValue": samples})
        meter = kept
    converted = convert_meter_values(ctx, TE, meter)
    return [("MeterValues", {"connectorId": rec.connector, "meterValue": converted})] if converted else []


# -- TransactionEvent (§4.2) -----------------------------------------------------------------------------------


def transaction_event(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    info: Mapping[str, Any] = payload["transactionInfo"]
    tx201, seq = str(info["transactionId"]), int(payload["seqNo"])
    event_type, trigger = str(payload["eventType"]), str(payload["triggerReason"])
    timestamp = str(payload["timestamp"])
    meter: list[Mapping[str, Any]] = list(payload.get("meterValue") or [])
    token = payload.get("idToken")
    rec = ctx.state.transactions.get(tx201)
    if rec is not None:
        duplicate = _duplicate(ctx, rec, seq, token)
        if duplicate is not None:
            return duplicate
    _forget_lost(ctx, tx201)
    if rec is None and event_type == "Ended":  # no id, no start data: nothing can be said to the CSMS
        ctx.drop(TE, "unknown_transaction")
        return local({}, "unknown_transaction")
    if rec is None:
        if event_type == "Started":
            start_ts = timestamp
            if seq > 0:
                ctx.drop(TE, "seqno_gap")
        else:
            ctx.drop(TE, "unknown_transaction")
            start_ts = _earliest([timestamp, *(str(mv["timestamp"]) for mv in meter)])
        rec = TxB(tx201=tx201, start_ts=start_ts)
        _place(ctx, rec, payload.get("evse"))
        if rec.connector == 0:
            ctx.drop(TE, "connector_unknown")
        else:
            for key, entry in ctx.state.connector_status.items():
                if key.partition(".")[0] == str(rec.evse):
                    entry.pop("finishing", None)
        ctx.state.transactions[tx201] = rec
    elif rec.connector == 0:
        _place(ctx, rec, payload.get("evse"))
    rec.last_seq = max(rec.last_seq, seq)
    if rec.start_state == "sent":  # its StartTransaction was lost (restart while in flight): send it again
        rec.start_state = "held"
    if isinstance(info.get("chargingState"), str):
        rec.charging_state = str(info["chargingState"])
    if rec.reservation_id is None and isinstance(payload.get("reservationId"), int):
        rec.reservation_id = int(payload["reservationId"])
    if rec.start_state != "acked" and rec.meter_start_wh is None:
        rec.meter_start_wh = energy_wh(meter, "Transaction.Begin")
    latest = energy_wh(meter)
    if latest is not None:
        rec.last_energy_wh = latest
    elif rec.last_energy_wh is None:
        rec.last_energy_wh = rec.meter_start_wh
    if event_type == "Ended":
        return _ended(ctx, rec, payload, seq)
    rejected = False
    if isinstance(token, Mapping):
        if trigger in STOP_TRIGGERS:
            stop_tag = ctx.id_tag_of(TE, token)
            if stop_tag is not None:
                rec.stop_id_tag = stop_tag
        elif rec.id_tag is None:
            rec.id_tag = ctx.id_tag_of(TE, token)
            rejected = rec.id_tag is None
    _consume_remote_start(ctx, rec, info, trigger, rec.id_tag)
    tail = _meter_tail(ctx, rec, meter, event_type == "Started")
    if rec.start_state != "acked":
        if rec.id_tag is not None:
            return _start_plan(ctx, rec, seq, timestamp, token, tail, ended=False)
        rec.queue.extend([action, body] for action, body in tail)
        if rejected:
            return _answered(rec, seq, {"idTokenInfo": {"status": "Invalid"}}, "idtoken_too_long")
        return _answered(rec, seq, {}, "tx_held")
    calls = [_tx_status_call(ctx, rec, timestamp), *(_with_id(rec, a, p) for a, p in tail)]
    return _forwarded(rec, seq, _start_answer(ctx, rec, token), [c for c in calls if c is not None])


def _start_plan(
    ctx: Context, rec: TxB, seq: int, timestamp: str, token: object, tail: list[Queued], *, ended: bool
) -> Plan:
    """StartTransaction for ``rec``; its conf answers the charger and flushes the queue, then ``tail``."""
    meter_start = rec.meter_start_wh
    if meter_start is None:
        ctx.drop("StartTransaction", "meter_unknown")
        meter_start = 0
    assert rec.id_tag is not None
    start: JsonDict = {
        "connectorId": rec.connector,
        "idTag": rec.id_tag,
        "meterStart": meter_start,
        "timestamp": rec.start_ts or timestamp,
    }
    if rec.reservation_id is not None:
        start["reservationId"] = rec.reservation_id
    rec.start_state = "sent"
    plan = Plan(calls=[OutCall("StartTransaction", start)])

    def finish(answers: list[JsonDict]) -> JsonDict:
        conf = answers[0]
        rec.tx_int, rec.start_state = int(conf["transactionId"]), "acked"
        rec.start_result = dict(conf["idTagInfo"])
        flushed = [_with_id(rec, str(a), p) for a, p in rec.queue] + [_with_id(rec, a, p) for a, p in tail]
        rec.queue = []
        status = _tx_status_call(ctx, rec, timestamp)
        then = [*flushed, status] if ended else [status, *flushed]
        plan.then_to_csms.extend(call for call in then if call is not None)
        answer = _start_answer(ctx, rec, token)
        if ended and isinstance(token, Mapping) and not answer:
            ctx.drop(TE, "stop_token_unverified")
        return _remember(rec, seq, answer)

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        rec.start_state = "held"
        ctx.drop("StartTransaction", "timeout" if code == "Timeout" else "csms_error")
        return None

    plan.finish, plan.on_error = finish, on_error
    return plan


def _ended(ctx: Context, rec: TxB, payload: Mapping[str, Any], seq: int) -> Plan:
    timestamp, info = str(payload["timestamp"]), payload["transactionInfo"]
    meter: list[Mapping[str, Any]] = list(payload.get("meterValue") or [])
    token = payload.get("idToken")
    rec.phase, rec.ended_at = "ended", ctx.now()
    if rec.start_state != "acked" and rec.id_tag is None:
        del ctx.state.transactions[rec.tx201]
        ctx.drop(TE, "tx_never_authorized")
        return local({}, "tx_never_authorized")
    found = _tx_key(ctx, rec)
    entry = ctx.state.connector_status.get(found[1]) if found else None
    if entry is not None and entry.get("status") == "Occupied":
        entry["finishing"] = True
    tag = ctx.id_tag_of(TE, token) if isinstance(token, Mapping) else None
    stop: JsonDict = {"meterStop": 0, "timestamp": timestamp}
    meter_stop = energy_wh(meter, "Transaction.End")
    if meter_stop is None:
        meter_stop = rec.last_energy_wh
    if meter_stop is None:
        ctx.drop("StopTransaction", "meter_unknown")
    else:
        stop["meterStop"] = meter_stop
    stop["reason"] = stop_reason(ctx, info.get("stoppedReason"), str(payload["triggerReason"]))
    if tag or rec.stop_id_tag:
        stop["idTag"] = tag or rec.stop_id_tag
    data = convert_meter_values(ctx, "StopTransaction", meter)
    if data:
        stop["transactionData"] = data
    if rec.start_state != "acked":
        return _start_plan(ctx, rec, seq, timestamp, token, [("StopTransaction", stop)], ended=True)
    call = _with_id(rec, "StopTransaction", stop)
    if not isinstance(token, Mapping) or tag is None:
        answer: JsonDict = {} if not isinstance(token, Mapping) else {"idTokenInfo": {"status": "Invalid"}}
        status = _tx_status_call(ctx, rec, timestamp)
        return _forwarded(rec, seq, answer, [call] if status is None else [call, status])
    plan = Plan(calls=[call])

    def finish(answers: list[JsonDict]) -> JsonDict:
        tag_info = answers[0].get("idTagInfo")
        if isinstance(tag_info, Mapping):
            answer = {"idTokenInfo": id_token_info(tag_info)}
        else:
            ctx.drop("StopTransaction", "csms_omitted_idtaginfo")
            answer = {}
        status = _tx_status_call(ctx, rec, timestamp)
        if status is not None:
            plan.then_to_csms.append(status)
        return _remember(rec, seq, answer)

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.drop("StopTransaction", "timeout" if code == "Timeout" else "csms_error")
        return None  # the record stays ended: the charger's retry sends the same StopTransaction again

    plan.finish, plan.on_error = finish, on_error
    return plan
