"""CSMS-initiated CALLs of set-up B: a 1.6 CSMS toward a 2.0.1 charger, and the answers back (ocpp-translation.md
§4.4; §3 read backwards). Configuration keys: ``variables``; smart charging: ``profiles``. Every 1.6 CSMS CALL has
a 2.0.1 translation (§5.2), so there is no "untranslatable" table in this direction.

General rules:

* A CALLERROR (or timeout) from the charger ends the plan with the mapped CALLERROR (the plan's default); where the
  handler wrote bookkeeping before sending (pending remote start, reset, log and firmware jobs) ``on_error`` undoes
  it and still returns None.
* A 2.0.1 answer's ``statusInfo`` is not carried (1.6 responses have no place for it; the status itself is copied)
  and not counted: it only explains the status.
* connectorId -> EVSE: 0 is the whole station (``evse`` / ``evseId`` omitted, or ``evseId`` 0 where the 2.0.1 schema
  has a plain integer for it: SetChargingProfile, ClearChargingProfile, GetCompositeSchedule); N >= 1 -> the map's
  (evse, connector). A negative connectorId is answered locally with the message's refusal.
* idTag -> idToken: :meth:`Context.id_token_of` (an alias turns back into the long token; the type last seen for
  the idTag, else ``default_id_token_type``); ``parentIdTag`` -> ``groupIdToken`` {type ``Central``} (§1.5), an
  alias turning back too.

Decisions per message:

* RemoteStartTransaction: ``remoteStartId`` from the gateway's counter, taken only when the request is sent; the
  :class:`PendingStart` is stored *before* sending (the charger's TransactionEvent ``Started`` may arrive before its
  answer); ``Rejected`` or a CALLERROR removes it; an ``Accepted`` answer's ``transactionId`` is stored in it. A
  profile that is not a ``TxProfile`` -> ``Rejected`` without asking; a ``transactionId`` in it is dropped, counted.
* RemoteStopTransaction: a transaction that is unknown, not yet acknowledged with an integer, or ended -> answer
  ``Rejected`` without asking.
* Reset: ``Hard`` -> ``Immediate``, ``Soft`` -> ``Options.soft_reset_as`` (default ``Immediate``: a 1.6 Soft reset
  also ends transactions). ``state.reset`` = {``type`` as the 1.6 CSMS asked, ``sentAs``, ``at``} is written before
  sending (the charger side maps stoppedReason ``ImmediateReset`` to Hard/SoftReset from it); a ``Rejected`` answer
  or a CALLERROR puts back the previous record. ``Scheduled`` -> ``Accepted`` (1.6 has no such status; the charger
  will reset).
* ChangeAvailability: ``evse`` {``id``} for connector N; ``connectorId`` is added when N's EVSE carries other 1.6
  connectors too or N is not its connector 1 (otherwise a change for one connector would take the whole EVSE).
* ReserveNow: a connector that shares its EVSE with other 1.6 connectors cannot be named in 2.0.1 (``evseId`` only):
  the reservation is for the EVSE, counted ``connector_not_in_201``.
* TriggerMessage / ExtendedTriggerMessage: ``connectorId`` becomes ``evse`` {``id``, ``connectorId``} only for
  ``MeterValues`` and ``StatusNotification`` (the 2.0.1 messages that are per EVSE); for the others it has no
  meaning and is not sent. ``connectorId`` 0 -> no ``evse`` (2.0.1 has no station-level status: the charger reports
  its connectors). ``DiagnosticsStatusNotification`` -> ``LogStatusNotification``, ``SignChargePointCertificate`` ->
  ``SignChargingStationCertificate``; statuses copied. A StatusNotification trigger is remembered before it is sent
  (``state.status_triggers``, see ``transactions``) so that the status it brings reaches the CSMS even when
  unchanged; a refusal forgets it.
* UnlockConnector: ``OngoingAuthorizedTransaction`` -> ``UnlockFailed``, ``UnknownConnector`` -> ``NotSupported``;
  connectorId 0 or negative -> ``NotSupported`` without asking. The optional two-step of §4.4 (RequestStop, then
  unlock, to honour 1.6's "stop and unlock") is not done: the CSMS can stop the transaction itself.
* GetDiagnostics -> GetLog ``DiagnosticsLog`` with the gateway's ``requestId``; ``state.log_request`` =
  {``requestId``, ``at``, ``logType``, ``via`` ``GetDiagnostics``} (``via`` tells the charger side which 1.6 status
  message the CSMS waits for). Answer {``fileName``} when the charger returns ``filename``, else ``{}``; a
  ``Rejected`` answer -> ``{}`` (1.6: nothing to upload), counted, previous job record put back.
* UpdateFirmware -> UpdateFirmware with the gateway's ``requestId``, ``state.fw_request`` {``requestId``, ``at``,
  ``signed`` false}; the answer is ``{}`` whatever the status; a status other than ``Accepted`` is counted
  ``status_<status>`` and (unless ``AcceptedCanceled``) puts back the previous job record.
* A ``location`` longer than 2.0.1's 512 characters (1.6 ``uri`` has no limit) cannot be sent and 1.6 answers have
  no refusal status: CALLERROR ``PropertyConstraintViolation`` (never truncated: it is an address).
* Security-extension CALLs (ExtendedTriggerMessage, SignedUpdateFirmware, GetLog, InstallCertificate,
  DeleteCertificate, GetInstalledCertificateIds, CertificateSigned) are translated whatever
  ``Options.security_extension`` says: the option describes what the CSMS sends and expects back; a CSMS that sends
  one of these evidently implements it, the 2.0.1 charger has every function natively, and refusing would only
  lose function. SignedUpdateFirmware and GetLog keep the CSMS's own ``requestId`` (the charger's status
  notifications then carry the id the CSMS knows); ``via`` ``GetLog`` in ``state.log_request``,
  ``signed`` true in ``state.fw_request``.
* CertificateSigned -> ``certificateType`` ``ChargingStationCertificate`` (the only certificate a 1.6 charge point
  has signed). InstallCertificate ``CentralSystemRootCertificate`` -> ``CSMSRootCertificate``.
  GetInstalledCertificateIds: the one 1.6 type as a one-element list; the answer's chain entries give
  ``certificateHashData`` (child certificates dropped, counted); ``Accepted`` without any hash -> ``NotFound``.
* DataTransfer: ``vendorId`` ``org.openchargealliance.ocpp201`` is the gateway's own wrapping toward the CSMS (§5.1)
  and is answered ``UnknownVendorId`` without forwarding (as set-up A does with its own vendor id); otherwise copied;
  answer ``data`` that is not a string -> compact JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import JsonDict, OutCall, Plan, data_transfer_from_v16
from gateway.translate.v201_v16.context import WRAP_VENDOR_ID, Context, forward, id_token_info, local
from gateway.translate.v201_v16.profiles import (
    NotMappable,
    clear_charging_profile,
    get_composite_schedule,
    profile_to_201,
    set_charging_profile,
)
from gateway.translate.v201_v16.state import PendingStart
from gateway.translate.v201_v16.variables import change_configuration, get_configuration

__all__ = ["CSMS_HANDLERS", "CSMS_POLICY"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]
LOCATION_MAX = 512  # 2.0.1 log.remoteLocation / firmware.location
CERT_TYPE_TO_201 = {
    "CentralSystemRootCertificate": "CSMSRootCertificate",
    "ManufacturerRootCertificate": "ManufacturerRootCertificate",
}


def _status(answers: list[JsonDict]) -> JsonDict:
    """The common answer: the 2.0.1 status copied (the sets are the same)."""
    return {"status": answers[0]["status"]}


def _shares_evse(ctx: Context, connector: int) -> bool:
    """True when 1.6 ``connector`` is not the only connector of its EVSE (or not the EVSE's connector 1)."""
    evse, connector_id = ctx.evse_of(connector)
    others = [c for c, (e, _) in ctx.options.connector_map.items() if e == evse and c != connector]
    return bool(others) or connector_id != 1


def _group_token(ctx: Context, parent: str) -> JsonDict:
    return {"idToken": ctx.state.aliases.get(parent, parent), "type": "Central"}


def _too_long(location: object) -> Plan | None:
    if len(str(location)) > LOCATION_MAX:
        return Plan(
            error=("PropertyConstraintViolation", f"location longer than {LOCATION_MAX} characters"),
            reason="location_too_long",
        )
    return None


def _retries(payload: Mapping[str, Any]) -> JsonDict:
    return {k: payload[k] for k in ("retries", "retryInterval") if k in payload}


# -- remote start / stop ---------------------------------------------------------------------------------------


def remote_start_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    id_tag = str(payload["idTag"])
    connector = int(payload.get("connectorId") or 0)
    if connector < 0:
        return local({"status": "Rejected"}, "unknown_connector")
    request: JsonDict = {"idToken": ctx.id_token_of(id_tag)}
    evse_id = ctx.evse_of(connector)[0] if connector else None
    if evse_id is not None:
        request["evseId"] = evse_id
    if "chargingProfile" in payload:
        profile = dict(payload["chargingProfile"])
        if profile.get("chargingProfilePurpose") != "TxProfile":
            return local({"status": "Rejected"}, "profile_not_mappable")
        if profile.pop("transactionId", None) is not None:
            ctx.drop("RemoteStartTransaction", "transactionId")
        try:
            request["chargingProfile"] = profile_to_201(ctx, profile)
        except NotMappable:
            return local({"status": "Rejected"}, "profile_not_mappable")
    remote_start_id = ctx.take_remote_start_id()
    request = {"remoteStartId": remote_start_id, **request}
    ctx.state.pending_starts.append(
        PendingStart(
            remote_start_id=remote_start_id,
            id_tag=id_tag,
            evse=evse_id,
            expires_at=ctx.expires_in(ctx.options.remote_start_ttl_s),
        )
    )

    def pending() -> PendingStart | None:
        return next((p for p in ctx.state.pending_starts if p.remote_start_id == remote_start_id), None)

    def forget() -> None:
        entry = pending()
        if entry is not None:
            ctx.state.pending_starts.remove(entry)

    def finish(answers: list[JsonDict]) -> JsonDict:
        status = str(answers[0]["status"])
        tx201 = answers[0].get("transactionId")
        entry = pending()
        if status != "Accepted":
            forget()
        elif entry is not None and isinstance(tx201, str):
            entry.tx201 = tx201
        return {"status": status}

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        forget()
        return None

    return Plan(calls=[OutCall("RequestStartTransaction", request)], finish=finish, on_error=on_error)


def remote_stop_transaction(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    rec = ctx.state.by_tx_int(int(payload["transactionId"]))
    if rec is None or rec.phase != "open":
        return local({"status": "Rejected"}, "unknown_transaction")
    return forward("RequestStopTransaction", {"transactionId": rec.tx201}, _status)


# -- Reset, ChangeAvailability ---------------------------------------------------------------------------------


def reset(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    kind = str(payload["type"])
    sent_as = "Immediate" if kind == "Hard" else ctx.options.soft_reset_as
    previous = ctx.state.reset
    ctx.state.reset = {"type": kind, "sentAs": sent_as, "at": ctx.now()}

    def finish(answers: list[JsonDict]) -> JsonDict:
        if answers[0]["status"] == "Rejected":
            ctx.state.reset = previous
            return {"status": "Rejected"}
        return {"status": "Accepted"}  # Accepted, Scheduled

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.reset = previous
        return None

    return Plan(calls=[OutCall("Reset", {"type": sent_as})], finish=finish, on_error=on_error)


def change_availability(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    if connector < 0:
        return local({"status": "Rejected"}, "unknown_connector")
    request: JsonDict = {"operationalStatus": payload["type"]}
    if connector > 0:
        evse, connector_id = ctx.evse_of(connector)
        request["evse"] = {"id": evse, "connectorId": connector_id} if _shares_evse(ctx, connector) else {"id": evse}
    return forward("ChangeAvailability", request, _status)


# -- TriggerMessage, UnlockConnector ---------------------------------------------------------------------------

TRIGGER_TO_201 = {
    "BootNotification": "BootNotification",
    "DiagnosticsStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "Heartbeat": "Heartbeat",
    "MeterValues": "MeterValues",
    "StatusNotification": "StatusNotification",
}
EXTENDED_TRIGGER_TO_201 = {
    "BootNotification": "BootNotification",
    "LogStatusNotification": "LogStatusNotification",
    "FirmwareStatusNotification": "FirmwareStatusNotification",
    "Heartbeat": "Heartbeat",
    "MeterValues": "MeterValues",
    "SignChargePointCertificate": "SignChargingStationCertificate",
    "StatusNotification": "StatusNotification",
}
PER_EVSE_TRIGGERS = frozenset({"MeterValues", "StatusNotification"})


def _trigger(names: Mapping[str, str]) -> Handler:
    def handler(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        message = names[str(payload["requestedMessage"])]
        request: JsonDict = {"requestedMessage": message}
        connector = payload.get("connectorId")
        if connector is not None and message in PER_EVSE_TRIGGERS:
            if int(connector) < 0:
                return local({"status": "Rejected"}, "unknown_connector")
            if int(connector) > 0:
                evse, connector_id = ctx.evse_of(int(connector))
                request["evse"] = {"id": evse, "connectorId": connector_id}
        if message != "StatusNotification":
            return forward("TriggerMessage", request, _status)
        target = request.get("evse") or {}
        entry = ctx.add_status_trigger(target.get("id"), target.get("connectorId"))

        def finish(answers: list[JsonDict]) -> JsonDict:
            if answers[0]["status"] != "Accepted":
                ctx.drop_status_trigger(entry)
            return _status(answers)

        def on_error(index: int, code: str, description: str) -> JsonDict | None:
            if code != "Timeout":  # refused; without an answer the charger may still send it: the TTL decides
                ctx.drop_status_trigger(entry)
            return None

        return Plan(calls=[OutCall("TriggerMessage", request)], finish=finish, on_error=on_error)

    return handler


UNLOCK_TO_16 = {
    "Unlocked": "Unlocked",
    "UnlockFailed": "UnlockFailed",
    "OngoingAuthorizedTransaction": "UnlockFailed",
    "UnknownConnector": "NotSupported",
}


def unlock_connector(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    if connector < 1:
        return local({"status": "NotSupported"}, "unknown_connector")
    evse, connector_id = ctx.evse_of(connector)
    return forward(
        "UnlockConnector",
        {"evseId": evse, "connectorId": connector_id},
        lambda answers: {"status": UNLOCK_TO_16.get(str(answers[0]["status"]), "UnlockFailed")},
    )


# -- cache, local list, reservations ---------------------------------------------------------------------------


def clear_cache(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("ClearCache", {}, _status)


def get_local_list_version(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("GetLocalListVersion", {}, lambda answers: {"listVersion": answers[0]["versionNumber"]})


def send_local_list(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    entries: list[JsonDict] = []
    for item in payload.get("localAuthorizationList") or []:
        entry: JsonDict = {"idToken": ctx.id_token_of(str(item["idTag"]))}
        if "idTagInfo" in item:
            info = id_token_info(item["idTagInfo"])
            parent = item["idTagInfo"].get("parentIdTag")
            if isinstance(parent, str) and parent:
                info["groupIdToken"] = _group_token(ctx, parent)
            entry["idTokenInfo"] = info
        entries.append(entry)
    request: JsonDict = {"versionNumber": payload["listVersion"], "updateType": payload["updateType"]}
    if entries:
        request["localAuthorizationList"] = entries
    return forward("SendLocalList", request, _status)


def reserve_now(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = int(payload["connectorId"])
    if connector < 0:
        return local({"status": "Rejected"}, "unknown_connector")
    request: JsonDict = {
        "id": payload["reservationId"],
        "expiryDateTime": payload["expiryDate"],
        "idToken": ctx.id_token_of(str(payload["idTag"])),
    }
    if connector > 0:
        request["evseId"] = ctx.evse_of(connector)[0]
        if _shares_evse(ctx, connector):
            ctx.drop("ReserveNow", "connector_not_in_201")
    parent = payload.get("parentIdTag")
    if isinstance(parent, str) and parent:
        request["groupIdToken"] = _group_token(ctx, parent)
    return forward("ReserveNow", request, _status)


def cancel_reservation(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("CancelReservation", {"reservationId": payload["reservationId"]}, _status)


# -- firmware and logs -----------------------------------------------------------------------------------------


def get_diagnostics(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    refused = _too_long(payload["location"])
    if refused is not None:
        return refused
    request_id = ctx.take_request_id()
    log: JsonDict = {"remoteLocation": payload["location"]}
    if "startTime" in payload:
        log["oldestTimestamp"] = payload["startTime"]
    if "stopTime" in payload:
        log["latestTimestamp"] = payload["stopTime"]
    request: JsonDict = {"logType": "DiagnosticsLog", "requestId": request_id, "log": log, **_retries(payload)}
    previous = ctx.state.log_request
    ctx.state.log_request = {
        "requestId": request_id,
        "at": ctx.now(),
        "logType": "DiagnosticsLog",
        "via": "GetDiagnostics",
    }

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        if answer["status"] == "Rejected":
            ctx.state.log_request = previous
            ctx.drop("GetDiagnostics", "status_Rejected")
            return {}
        name = answer.get("filename")
        return {"fileName": name} if isinstance(name, str) and name else {}

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.log_request = previous
        return None

    return Plan(calls=[OutCall("GetLog", request)], finish=finish, on_error=on_error)


def get_log(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    """Security-extension GetLog: the same message in 2.0.1, the CSMS's requestId kept."""
    log: JsonDict = dict(payload["log"])
    request: JsonDict = {
        "logType": payload["logType"],
        "requestId": payload["requestId"],
        "log": log,
        **_retries(payload),
    }
    previous = ctx.state.log_request
    ctx.state.log_request = {
        "requestId": payload["requestId"],
        "at": ctx.now(),
        "logType": payload["logType"],
        "via": "GetLog",
    }

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        if answer["status"] == "Rejected":
            ctx.state.log_request = previous
        result: JsonDict = {"status": answer["status"]}
        if isinstance(answer.get("filename"), str):
            result["filename"] = answer["filename"]
        return result

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.log_request = previous
        return None

    return Plan(calls=[OutCall("GetLog", request)], finish=finish, on_error=on_error)


def _firmware_plan(
    ctx: Context, request: JsonDict, record: JsonDict, answer: Callable[[str], JsonDict], action: str
) -> Plan:
    previous = ctx.state.fw_request
    ctx.state.fw_request = record

    def finish(answers: list[JsonDict]) -> JsonDict:
        status = str(answers[0]["status"])
        if status != "Accepted":
            ctx.drop(action, f"status_{status}")
        if status not in ("Accepted", "AcceptedCanceled"):
            ctx.state.fw_request = previous
        return answer(status)

    def on_error(index: int, code: str, description: str) -> JsonDict | None:
        ctx.state.fw_request = previous
        return None

    return Plan(calls=[OutCall("UpdateFirmware", request)], finish=finish, on_error=on_error)


def update_firmware(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    refused = _too_long(payload["location"])
    if refused is not None:
        return refused
    request_id = ctx.take_request_id()
    request: JsonDict = {
        "requestId": request_id,
        "firmware": {"location": payload["location"], "retrieveDateTime": payload["retrieveDate"]},
        **_retries(payload),
    }
    record: JsonDict = {"requestId": request_id, "at": ctx.now(), "signed": False}
    return _firmware_plan(ctx, request, record, lambda status: {}, "UpdateFirmware")


def signed_update_firmware(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request: JsonDict = {
        "requestId": payload["requestId"],
        "firmware": dict(payload["firmware"]),
        **_retries(payload),
    }
    record: JsonDict = {"requestId": payload["requestId"], "at": ctx.now(), "signed": True}
    return _firmware_plan(ctx, request, record, lambda status: {"status": status}, "SignedUpdateFirmware")


# -- certificates (security extension) -------------------------------------------------------------------------


def certificate_signed(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {"certificateChain": payload["certificateChain"], "certificateType": "ChargingStationCertificate"}
    return forward("CertificateSigned", request, _status)


def install_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {
        "certificateType": CERT_TYPE_TO_201[str(payload["certificateType"])],
        "certificate": payload["certificate"],
    }
    return forward("InstallCertificate", request, _status)


def delete_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("DeleteCertificate", {"certificateHashData": dict(payload["certificateHashData"])}, _status)


def get_installed_certificate_ids(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    kind = CERT_TYPE_TO_201[str(payload["certificateType"])]

    def finish(answers: list[JsonDict]) -> JsonDict:
        hashes: list[JsonDict] = []
        for entry in answers[0].get("certificateHashDataChain") or []:
            hashes.append(dict(entry["certificateHashData"]))
            if entry.get("childCertificateHashData"):
                ctx.drop("GetInstalledCertificateIds", "childCertificateHashData")
        if answers[0]["status"] != "Accepted" or not hashes:
            return {"status": "NotFound"}
        return {"status": "Accepted", "certificateHashData": hashes}

    return forward("GetInstalledCertificateIds", {"certificateType": [kind]}, finish)


# -- DataTransfer ----------------------------------------------------------------------------------------------


def data_transfer(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if payload["vendorId"] == WRAP_VENDOR_ID:
        return local({"status": "UnknownVendorId"}, "reserved_vendor_id")
    return data_transfer_from_v16(payload)


CSMS_HANDLERS: dict[str, Handler] = {
    "CancelReservation": cancel_reservation,
    "CertificateSigned": certificate_signed,
    "ChangeAvailability": change_availability,
    "ChangeConfiguration": change_configuration,
    "ClearCache": clear_cache,
    "ClearChargingProfile": clear_charging_profile,
    "DataTransfer": data_transfer,
    "DeleteCertificate": delete_certificate,
    "ExtendedTriggerMessage": _trigger(EXTENDED_TRIGGER_TO_201),
    "GetCompositeSchedule": get_composite_schedule,
    "GetConfiguration": get_configuration,
    "GetDiagnostics": get_diagnostics,
    "GetInstalledCertificateIds": get_installed_certificate_ids,
    "GetLocalListVersion": get_local_list_version,
    "GetLog": get_log,
    "InstallCertificate": install_certificate,
    "RemoteStartTransaction": remote_start_transaction,
    "RemoteStopTransaction": remote_stop_transaction,
    "ReserveNow": reserve_now,
    "Reset": reset,
    "SendLocalList": send_local_list,
    "SetChargingProfile": set_charging_profile,
    "SignedUpdateFirmware": signed_update_firmware,
    "TriggerMessage": _trigger(TRIGGER_TO_201),
    "UnlockConnector": unlock_connector,
    "UpdateFirmware": update_firmware,
}
#: action -> one-line policy (README table); keys are the 1.6 CSMS's action names
CSMS_POLICY: dict[str, str] = {
    "CancelReservation": "translate: CancelReservation",
    "CertificateSigned": "translate: CertificateSigned (certificateType ChargingStationCertificate)",
    "ChangeAvailability": "translate: ChangeAvailability (connectorId -> evse; 0 -> whole station)",
    "ChangeConfiguration": "translate: SetVariables (key via the §3.5 table, else OCPP16.<key>); Unknown* -> "
    "NotSupported; keys read-only in 1.6 -> refuse in-band Rejected",
    "ClearCache": "translate: ClearCache",
    "ClearChargingProfile": "translate: ClearChargingProfile (id -> chargingProfileId, the rest -> criteria)",
    # one line for both directions (it overrides CHARGER_POLICY's in the merged POLICY), as set-up A does
    "DataTransfer": "translate both ways: DataTransfer (non-string data -> compact JSON); vendorId "
    "org.openchargealliance.ocpp201 from the CSMS -> refuse in-band UnknownVendorId",
    "DeleteCertificate": "translate: DeleteCertificate",
    "ExtendedTriggerMessage": "translate: TriggerMessage (SignChargePointCertificate -> "
    "SignChargingStationCertificate)",
    "GetCompositeSchedule": "translate: GetCompositeSchedule (schedule -> scheduleStart + chargingSchedule)",
    "GetConfiguration": "translate: GetVariables in chunks (keys via the §3.5 table, else OCPP16.<key>; no key -> "
    "every table key); NumberOfConnectors answered from state",
    "GetDiagnostics": "translate: GetLog DiagnosticsLog (requestId from the gateway); filename -> fileName",
    "GetInstalledCertificateIds": "translate: GetInstalledCertificateIds (CentralSystemRootCertificate -> "
    "CSMSRootCertificate)",
    "GetLocalListVersion": "translate: GetLocalListVersion (versionNumber -> listVersion)",
    "GetLog": "translate: GetLog (the CSMS's requestId kept)",
    "InstallCertificate": "translate: InstallCertificate (CentralSystemRootCertificate -> CSMSRootCertificate)",
    "RemoteStartTransaction": "translate: RequestStartTransaction (remoteStartId from the gateway, pending start "
    "kept); non-TxProfile -> refuse in-band Rejected",
    "RemoteStopTransaction": "translate: RequestStopTransaction (int -> string id); unknown transaction -> refuse "
    "in-band Rejected",
    "ReserveNow": "translate: ReserveNow (idTag -> idToken, parentIdTag -> groupIdToken Central)",
    "Reset": "translate: Reset (Hard -> Immediate, Soft -> configured, default Immediate); Scheduled -> Accepted",
    "SendLocalList": "translate: SendLocalList (idTag -> idToken, idTagInfo -> idTokenInfo)",
    "SetChargingProfile": "translate: SetChargingProfile (int -> string transactionId; unknown transaction -> "
    "refuse in-band Rejected)",
    "SignedUpdateFirmware": "translate: UpdateFirmware with signature (the CSMS's requestId kept)",
    "TriggerMessage": "translate: TriggerMessage (DiagnosticsStatusNotification -> LogStatusNotification)",
    "UnlockConnector": "translate: UnlockConnector (OngoingAuthorizedTransaction -> UnlockFailed, UnknownConnector "
    "-> NotSupported)",
    "UpdateFirmware": "translate: UpdateFirmware (requestId from the gateway); answer {} whatever the status",
}
