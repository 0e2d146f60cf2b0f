"""CSMS-initiated CALLs (2.0.1 -> 1.6 charger) and the dispatch table of that direction.

See ocpp-translation.md §3.2-§3.4, §3.7-§3.9, §3.11-§3.14 (device model: ``device_model``; smart charging:
``smart_charging``; messages without 1.6 form: ``policy``). Decisions taken here (beyond the reference):

* A CALLERROR from the charger ends a plan with the mapped CALLERROR, except where a section says otherwise; the
  bookkeeping written before sending (pending remote start, trigger, reset) is undone in ``on_error``.
* RequestStartTransaction: ``chargingProfile`` must be a ``TxProfile`` (both versions say so); another purpose is
  refused like an unmappable profile.
* RequestStopTransaction for a transaction whose StopTransaction already arrived (``ending``) is refused like an
  unknown one (``NoSuchTransaction``): nothing is left to stop.
* A refused Reset (1.6 ``Rejected``) or a CALLERROR forgets the recorded reset.
* TriggerMessage ``TransactionEvent`` without ``evse`` asks for MeterValues on every connector with an open
  transaction (merged answer); a StatusNotification trigger for an EVSE with several connectors fans out too.
* ReserveNow ``connectorType`` for an EVSE with one connector is not checked (dropped, counted).
* DataTransfer with ``vendorId`` ``org.openchargealliance.ocpp16`` (reserved for the gateway's wrapping) is
  answered ``UnknownVendorId`` without forwarding.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any

from gateway.translate.base import JsonDict, OutCall, Plan, data_transfer_to_v16
from gateway.translate.state import PendingRemoteStart
from gateway.translate.v16_v201.context import Context, fmt_ts, forward, id_tag_info, local, parse_ts, status_info
from gateway.translate.v16_v201.device_model import get_base_report, get_report, get_variables, set_variables
from gateway.translate.v16_v201.policy import UNTRANSLATABLE_HANDLERS
from gateway.translate.v16_v201.smart_charging import (
    NotMappable,
    clear_charging_profile,
    get_composite_schedule,
    profile_to_16,
    set_charging_profile,
)

__all__ = ["CSMS_HANDLERS", "WRAP_VENDOR_ID"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]
WRAP_VENDOR_ID = "org.openchargealliance.ocpp16"
CERT_TYPE_TO_16 = {
    "CSMSRootCertificate": "CentralSystemRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}
CERT_TYPE_TO_201 = {v: k for k, v in CERT_TYPE_TO_16.items()}


def _merge(statuses: list[str]) -> str:
    """§1.4: all Accepted -> Accepted; any Rejected -> Rejected; otherwise Scheduled."""
    if all(s == "Accepted" for s in statuses):
        return "Accepted"
    return "Rejected" if "Rejected" in statuses else "Scheduled"


# -- remote start / stop (§3.2) --------------------------------------------------------------------------------


def request_start_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    id_tag = ctx.id_tag_of(payload["idToken"])
    if id_tag is None:
        return local({"status": "Rejected", "statusInfo": status_info("IdTokenTooLong")}, "idtoken_too_long")
    evse_id: int | None = payload.get("evseId")
    request: JsonDict = {"idTag": id_tag}
    if evse_id:
        connector = ctx.connector_of(evse_id, None)
        if connector:
            request["connectorId"] = connector
    if "groupIdToken" in payload:
        ctx.drop("RequestStartTransaction", "groupIdToken")
    if "chargingProfile" in payload:
        profile = payload["chargingProfile"]
        try:
            if profile.get("chargingProfilePurpose") != "TxProfile":
                raise NotMappable("a remote start carries a TxProfile only")
            request["chargingProfile"] = profile_to_16(ctx, profile)
        except NotMappable as exc:
            return local(
                {"status": "Rejected", "statusInfo": status_info("ProfileNotMappable", str(exc))},
                "profile_not_mappable",
            )
    expires = parse_ts(ctx.now()) or parse_ts("2024-01-01T00:00:00Z")
    assert expires is not None
    entry = PendingRemoteStart(
        remote_start_id=int(payload["remoteStartId"]),
        id_token=id_tag,
        id_token_type=str(payload["idToken"]["type"]),
        evse=evse_id or None,
        expires_at=fmt_ts(expires + timedelta(seconds=ctx.options.remote_start_ttl_s)),
    )
    ctx.state.pending_remote_starts.append(entry)

    def forget() -> None:
        if entry in ctx.state.pending_remote_starts:
            ctx.state.pending_remote_starts.remove(entry)

    def finish(answers: list[JsonDict]) -> JsonDict:
        result: JsonDict = {"status": answers[0]["status"]}
        if result["status"] != "Accepted":
            forget()
        elif evse_id and (open_tx := ctx.state.open_tx_on_evse(evse_id)) is not None:
            result["transactionId"] = open_tx[1].tx201
        return result

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        forget()
        return None

    return Plan(calls=[OutCall("RemoteStartTransaction", request)], finish=finish, on_error=on_error)


def request_stop_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    found = ctx.state.by_tx201(str(payload["transactionId"]))
    if found is None or found[1].phase != "open":
        return local({"status": "Rejected", "statusInfo": status_info("NoSuchTransaction")}, "unknown_transaction")
    return forward("RemoteStopTransaction", {"transactionId": found[0]}, lambda a: {"status": a[0]["status"]})


# -- Reset, ChangeAvailability (§3.3, §3.4) --------------------------------------------------------------------


def reset(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if "evseId" in payload:
        return local({"status": "Rejected", "statusInfo": status_info("EvseNotSupported")}, "reset_evse_not_in_16")
    kind = str(payload["type"])
    if kind == "OnIdle" and ctx.state.has_open_transactions():
        ctx.state.reset = {"type": kind, "sentAs": "Soft", "at": ctx.now(), "deferred": True}
        return local({"status": "Scheduled"}, "reset_deferred")
    sent_as = ctx.options.reset_immediate_as if kind == "Immediate" else "Soft"
    ctx.state.reset = {"type": kind, "sentAs": sent_as, "at": ctx.now(), "deferred": False}

    def finish(answers: list[JsonDict]) -> JsonDict:
        if answers[0]["status"] != "Accepted":
            ctx.state.reset = None
        return {"status": answers[0]["status"]}

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.reset = None
        return None

    return Plan(calls=[OutCall("Reset", {"type": sent_as})], finish=finish, on_error=on_error)


def change_availability(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    kind = payload["operationalStatus"]
    evse = payload.get("evse")
    if evse is None:
        connectors = [0]
    elif "connectorId" in evse:
        one = ctx.connector_of(int(evse["id"]), int(evse["connectorId"]))
        connectors = [one] if one is not None else []
    else:
        connectors = ctx.connectors_of(int(evse["id"])) if int(evse["id"]) > 0 else [0]
    if not connectors:
        return local({"status": "Rejected", "statusInfo": status_info("UnknownEvse")}, "unknown_evse")
    calls = [OutCall("ChangeAvailability", {"connectorId": c, "type": kind}) for c in connectors]
    return Plan(calls=calls, finish=lambda answers: {"status": _merge([str(a["status"]) for a in answers])})


# -- TriggerMessage, UnlockConnector (§3.7) --------------------------------------------------------------------

SAME_TRIGGER = frozenset(
    {"BootNotification", "Heartbeat", "FirmwareStatusNotification", "StatusNotification", "MeterValues"}
)


def trigger_message(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    wanted = str(payload["requestedMessage"])
    evse: Mapping[str, Any] | None = payload.get("evse")
    action = "TriggerMessage"
    message = wanted
    connectors: list[int | None] = [None]
    if evse is not None:
        if "connectorId" in evse:
            one = ctx.connector_of(int(evse["id"]), int(evse["connectorId"]))
            connectors = [one] if one is not None else []
        else:
            connectors = list(ctx.connectors_of(int(evse["id"]))) if int(evse["id"]) > 0 else [None]
    if wanted == "TransactionEvent":
        open_txs = [r.connector for r in ctx.state.transactions.values() if r.phase == "open" and r.connector]
        connectors = [c for c in open_txs if evse is None or c in connectors]
        if not connectors:
            return local({"status": "Rejected", "statusInfo": status_info("NoSuchTransaction")}, "trigger_no_tx")
        message = "MeterValues"
    elif wanted == "LogStatusNotification":
        if ctx.options.security_extension:
            action = "ExtendedTriggerMessage"
        else:
            message = "DiagnosticsStatusNotification"
    elif wanted == "SignChargingStationCertificate" and ctx.options.security_extension:
        action, message = "ExtendedTriggerMessage", "SignChargePointCertificate"
    elif wanted not in SAME_TRIGGER:
        return local({"status": "NotImplemented", "statusInfo": status_info("NotIn16")}, "trigger_not_in_16")
    if not connectors:
        return local({"status": "Rejected", "statusInfo": status_info("UnknownEvse")}, "unknown_evse")
    ctx.state.trigger = {"requestedMessage": wanted, "evse": evse.get("id") if evse else None, "at": ctx.now()}
    calls = [
        OutCall(action, {"requestedMessage": message, **({"connectorId": c} if c is not None else {})})
        for c in connectors
    ]

    def finish(answers: list[JsonDict]) -> JsonDict:
        statuses = [str(a["status"]) for a in answers]
        status = "Accepted" if "Accepted" in statuses else statuses[0]
        if status != "Accepted":
            ctx.state.trigger = None
        return {"status": status}

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.trigger = None
        return None

    return Plan(calls=calls, finish=finish, on_error=on_error)


def unlock_connector(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = ctx.connector_of(int(payload["evseId"]), int(payload["connectorId"]))
    if not connector:
        return local({"status": "UnknownConnector"}, "unknown_connector")
    if ctx.state.open_tx_on_connector(connector) is not None:
        return local({"status": "OngoingAuthorizedTransaction"}, "unlock_during_transaction")

    def finish(answers: list[JsonDict]) -> JsonDict:
        status = str(answers[0]["status"])
        if status == "NotSupported":
            return {"status": "UnlockFailed", "statusInfo": status_info("NotSupported")}
        return {"status": status}

    return forward("UnlockConnector", {"connectorId": connector}, finish)


# -- cache and local list (§3.8) -------------------------------------------------------------------------------


def clear_cache(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("ClearCache", {}, lambda answers: {"status": answers[0]["status"]})


def get_local_list_version(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("GetLocalListVersion", {}, lambda answers: {"versionNumber": answers[0]["listVersion"]})


def send_local_list(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    entries: list[JsonDict] = []
    for item in payload.get("localAuthorizationList") or []:
        id_tag = ctx.id_tag_of(item["idToken"])
        if id_tag is None:
            return local({"status": "Failed", "statusInfo": status_info("IdTokenTooLong")}, "idtoken_too_long")
        entry: JsonDict = {"idTag": id_tag}
        if "idTokenInfo" in item:
            entry["idTagInfo"] = id_tag_info(ctx, "SendLocalList", item["idTokenInfo"])
        entries.append(entry)
    request: JsonDict = {"listVersion": payload["versionNumber"], "updateType": payload["updateType"]}
    if entries:
        request["localAuthorizationList"] = entries

    def finish(answers: list[JsonDict]) -> JsonDict:
        status = str(answers[0]["status"])
        if status == "NotSupported":
            return {"status": "Failed", "statusInfo": status_info("NotSupported")}
        return {"status": status}

    return forward("SendLocalList", request, finish)


# -- reservations (§3.9) ---------------------------------------------------------------------------------------


def reserve_now(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    id_tag = ctx.id_tag_of(payload["idToken"])
    if id_tag is None:
        return local({"status": "Rejected", "statusInfo": status_info("IdTokenTooLong")}, "idtoken_too_long")
    evse_id = int(payload.get("evseId") or 0)
    connector: int | None = 0
    if evse_id:
        candidates = ctx.connectors_of(evse_id)
        wanted = payload.get("connectorType")
        if wanted is not None and len(candidates) > 1:
            candidates = [c for c in candidates if ctx.options.connector_types.get(c) == wanted]
        elif wanted is not None:
            ctx.drop("ReserveNow", "connectorType")
        connector = candidates[0] if candidates else None
    if connector is None:
        return local({"status": "Rejected", "statusInfo": status_info("UnknownEvse")}, "unknown_evse")
    request: JsonDict = {
        "connectorId": connector,
        "expiryDate": payload["expiryDateTime"],
        "idTag": id_tag,
        "reservationId": payload["id"],
    }
    group = payload.get("groupIdToken")
    if group is not None:
        parent = str(group.get("idToken", ""))
        if 0 < len(parent) <= 20:
            request["parentIdTag"] = parent
        else:
            ctx.drop("ReserveNow", "parent_id_too_long")
    return forward("ReserveNow", request, lambda answers: {"status": answers[0]["status"]})


def cancel_reservation(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {"reservationId": payload["reservationId"]}
    return forward("CancelReservation", request, lambda answers: {"status": answers[0]["status"]})


# -- firmware and logs (§3.11) ---------------------------------------------------------------------------------


def update_firmware(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    firmware: Mapping[str, Any] = payload["firmware"]
    signed = "signature" in firmware or "signingCertificate" in firmware
    retry = {k: payload[k] for k in ("retries", "retryInterval") if k in payload}
    if ctx.options.security_extension and "signature" in firmware and "signingCertificate" in firmware:
        request: JsonDict = {"requestId": payload["requestId"], "firmware": dict(firmware), **retry}
        ctx.state.fw_request = {"requestId": payload["requestId"], "at": ctx.now(), "signed": True}
        return forward("SignedUpdateFirmware", request, lambda answers: {"status": answers[0]["status"]})
    if signed and not ctx.options.allow_unsigned_firmware:
        return local({"status": "Rejected", "statusInfo": status_info("SignatureNotIn16")}, "signature_not_in_16")
    if "installDateTime" in firmware:
        ctx.drop("UpdateFirmware", "installDateTime")
    request = {"location": firmware["location"], "retrieveDate": firmware["retrieveDateTime"], **retry}
    ctx.state.fw_request = {"requestId": payload["requestId"], "at": ctx.now(), "signed": False}
    return forward("UpdateFirmware", request, lambda answers: {"status": "Accepted"})


def get_log(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    log: Mapping[str, Any] = payload["log"]
    retry = {k: payload[k] for k in ("retries", "retryInterval") if k in payload}
    record = {"requestId": payload["requestId"], "logType": payload["logType"], "at": ctx.now()}

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        result: JsonDict = {"status": answer.get("status", "Accepted")}
        name = answer.get("filename", answer.get("fileName"))
        if name:
            result["filename"] = name
        return result

    if ctx.options.security_extension:
        ctx.state.log_request = record
        request: JsonDict = {
            k: payload[k] for k in ("logType", "requestId", "retries", "retryInterval") if k in payload
        }
        request["log"] = dict(log)
        return forward("GetLog", request, finish)
    if payload["logType"] != "DiagnosticsLog":
        return local({"status": "Rejected", "statusInfo": status_info("NotIn16")}, "security_log_not_in_16")
    request = {"location": log["remoteLocation"], **retry}
    if "oldestTimestamp" in log:
        request["startTime"] = log["oldestTimestamp"]
    if "latestTimestamp" in log:
        request["stopTime"] = log["latestTimestamp"]
    ctx.state.log_request = record
    return forward("GetDiagnostics", request, finish)


# -- DataTransfer (§3.12) --------------------------------------------------------------------------------------


def data_transfer(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if payload["vendorId"] == WRAP_VENDOR_ID:
        return local({"status": "UnknownVendorId"}, "reserved_vendor_id")
    return data_transfer_to_v16(payload)


# -- certificates (§3.13) --------------------------------------------------------------------------------------


def _needs_extension(handler: Handler) -> Handler:
    def wrapped(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        if not ctx.options.security_extension:
            return Plan(error=("NotSupported", "the charger has no OCPP 1.6 security extension"), reason="no_ext")
        return handler(ctx, payload)

    return wrapped


def certificate_signed(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if payload.get("certificateType") == "V2GCertificate":
        return local({"status": "Rejected", "statusInfo": status_info("NotIn16")}, "v2g_not_in_16")
    request = {"certificateChain": payload["certificateChain"]}
    return forward("CertificateSigned", request, lambda answers: {"status": answers[0]["status"]})


def install_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    kind = CERT_TYPE_TO_16.get(str(payload["certificateType"]))
    if kind is None:
        return local({"status": "Rejected", "statusInfo": status_info("NotIn16")}, "certificate_type_not_in_16")
    request = {"certificateType": kind, "certificate": payload["certificate"]}
    return forward("InstallCertificate", request, lambda answers: {"status": answers[0]["status"]})


def delete_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {"certificateHashData": dict(payload["certificateHashData"])}
    return forward("DeleteCertificate", request, lambda answers: {"status": answers[0]["status"]})


def get_installed_certificate_ids(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    asked = payload.get("certificateType") or list(CERT_TYPE_TO_16)
    kinds = [CERT_TYPE_TO_16[k] for k in asked if k in CERT_TYPE_TO_16]
    if not kinds:
        return local({"status": "NotFound"}, "certificate_type_not_in_16")
    calls = [OutCall("GetInstalledCertificateIds", {"certificateType": k}) for k in kinds]

    def finish(answers: list[JsonDict]) -> JsonDict:
        chain = [
            {"certificateType": CERT_TYPE_TO_201[kind], "certificateHashData": data}
            for kind, answer in zip(kinds, answers, strict=True)
            for data in answer.get("certificateHashData") or []
        ]
        return {"status": "Accepted", "certificateHashDataChain": chain} if chain else {"status": "NotFound"}

    return Plan(calls=calls, finish=finish)


# -- GetTransactionStatus (§3.14) ------------------------------------------------------------------------------


def get_transaction_status(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if "transactionId" not in payload:
        in_queue = any(r.phase == "ending" for r in ctx.state.transactions.values())
        return local({"messagesInQueue": in_queue}, "answered_from_state")
    found = ctx.state.by_tx201(str(payload["transactionId"]))
    if found is None:
        return local({"messagesInQueue": False}, "answered_from_state")
    rec = found[1]
    return local(
        {"messagesInQueue": rec.phase == "ending", "ongoingIndicator": rec.phase == "open"}, "answered_from_state"
    )


CSMS_HANDLERS: Mapping[str, Handler] = {
    "CancelReservation": cancel_reservation,
    "CertificateSigned": _needs_extension(certificate_signed),
    "ChangeAvailability": change_availability,
    "ClearCache": clear_cache,
    "ClearChargingProfile": clear_charging_profile,
    "DataTransfer": data_transfer,
    "DeleteCertificate": _needs_extension(delete_certificate),
    "GetBaseReport": get_base_report,
    "GetCompositeSchedule": get_composite_schedule,
    "GetInstalledCertificateIds": _needs_extension(get_installed_certificate_ids),
    "GetLocalListVersion": get_local_list_version,
    "GetLog": get_log,
    "GetReport": get_report,
    "GetTransactionStatus": get_transaction_status,
    "GetVariables": get_variables,
    "InstallCertificate": _needs_extension(install_certificate),
    "RequestStartTransaction": request_start_transaction,
    "RequestStopTransaction": request_stop_transaction,
    "ReserveNow": reserve_now,
    "Reset": reset,
    "SendLocalList": send_local_list,
    "SetChargingProfile": set_charging_profile,
    "SetVariables": set_variables,
    "TriggerMessage": trigger_message,
    "UnlockConnector": unlock_connector,
    "UpdateFirmware": update_firmware,
    **UNTRANSLATABLE_HANDLERS,
}
