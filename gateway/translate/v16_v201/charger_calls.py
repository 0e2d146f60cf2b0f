"""Charger-initiated CALLs (1.6 -> 2.0.1) other than the transaction messages, and the dispatch table.

See ocpp-translation.md §2.2, §2.4, §2.9-§2.11. Decisions taken here:

* BootNotification ``reason``: a Reset recorded in the last 10 minutes and not yet followed by a boot ->
  ``RemoteReset``; a firmware job whose last status was ``Installing``/``Installed``/``InstallRebooting`` ->
  ``FirmwareUpdate``; a TriggerMessage BootNotification in flight -> ``Triggered``; else ``PowerUp``. An accepted
  boot clears the trigger and a *deferred* reset (the charger rebooted on its own), and marks the reset record
  ``booted``; the record itself stays for its 10-minute window so that the StopTransaction(HardReset) a charger
  sends after rebooting still maps to ``ResetCommand``.
* BootNotification serial numbers: 2.0.1 ``chargingStation.serialNumber`` carries one, ``chargePointSerialNumber``
  (the charge point's own, §2.2), else ``chargeBoxSerialNumber`` as the fallback; when both are sent and differ, the
  charge box's has no 2.0.1 field and is counted dropped (``chargeBoxSerialNumber``). It stays in the boot record,
  where GetVariables ``OCPP16.chargeBoxSerialNumber`` reads it (``config_keys``). It is not put into
  ``customData`` (a vendor extension no CSMS is bound to read).
* Firmware job: kept until a terminal status; ``Installed`` ends it only once the charger has booted since
  (otherwise the boot that follows still gets ``FirmwareUpdate``).
* DataTransfer ``data``: a string stays a string; a non-string 2.0.1 answer ``data`` is serialised as compact
  JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import JsonDict, Plan, data_transfer_from_v16
from gateway.translate.v16_v201.context import BOOT_AFTER_RESET, Context, forward, id_tag_info
from gateway.translate.v16_v201.transactions import (
    meter_values,
    start_transaction,
    status_notification,
    stop_transaction,
)

__all__ = ["CHARGER_HANDLERS"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]

DIAGNOSTICS_STATUS = {"Idle": "Idle", "Uploaded": "Uploaded", "UploadFailed": "UploadFailure", "Uploading": "Uploading"}
LOG_DONE = frozenset({"Uploaded", "UploadFailure", "BadMessage", "NotSupportedOperation", "PermissionDenied"})
FIRMWARE_DONE = frozenset({"Installed", "InstallationFailed", "DownloadFailed", "InstallVerificationFailed"})
FIRMWARE_REBOOTING = frozenset({"Installing", "Installed", "InstallRebooting"})


def _boot_reason(ctx: Context) -> str:
    reset = ctx.state.reset
    if reset and not reset.get("booted") and not reset.get("deferred") and ctx.since(reset, BOOT_AFTER_RESET):
        return "RemoteReset"
    job = ctx.state.fw_request or {}
    if job.get("status") in FIRMWARE_REBOOTING and not job.get("booted"):
        return "FirmwareUpdate"
    if (ctx.state.trigger or {}).get("requestedMessage") == "BootNotification":
        return "Triggered"
    return "PowerUp"


def boot_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    station: JsonDict = {"model": payload["chargePointModel"], "vendorName": payload["chargePointVendor"]}
    serial = payload.get("chargePointSerialNumber") or payload.get("chargeBoxSerialNumber")
    if serial:
        station["serialNumber"] = serial
    if payload.get("chargeBoxSerialNumber") not in (None, "", serial):
        ctx.drop("BootNotification", "chargeBoxSerialNumber")  # 2.0.1 has one serial number: the charge point's
    if "firmwareVersion" in payload:
        station["firmwareVersion"] = payload["firmwareVersion"]
    modem = {k: payload[k] for k in ("iccid", "imsi") if k in payload}
    if modem:
        station["modem"] = modem
    for name in ("meterType", "meterSerialNumber"):
        if name in payload:
            ctx.drop("BootNotification", name)
    ctx.state.boot = dict(payload)
    request = {"reason": _boot_reason(ctx), "chargingStation": station}

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        result = {k: answer[k] for k in ("status", "currentTime", "interval")}
        ctx.state.boot_result = dict(result)
        if result["status"] == "Accepted":
            if (ctx.state.trigger or {}).get("requestedMessage") == "BootNotification":
                ctx.state.trigger = None
            job = ctx.state.fw_request
            if job is not None and job.get("status") in FIRMWARE_REBOOTING:
                ctx.state.fw_request = {**job, "booted": True}
            reset = ctx.state.reset
            if reset is not None:
                ctx.state.reset = None if reset.get("deferred") else {**reset, "booted": True}
        return result

    return forward("BootNotification", request, finish)


def heartbeat(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("Heartbeat", {}, lambda answers: {"currentTime": answers[0]["currentTime"]})


def authorize(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    def finish(answers: list[JsonDict]) -> JsonDict:
        if "certificateStatus" in answers[0]:
            ctx.drop("Authorize", "certificateStatus")
        return {"idTagInfo": id_tag_info(ctx, "Authorize", answers[0]["idTokenInfo"])}

    return forward("Authorize", {"idToken": ctx.id_token(str(payload["idTag"]))}, finish)


def data_transfer(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return data_transfer_from_v16(payload)


def _log_status(ctx: Context, status: str, request_id: object) -> Plan:
    request: JsonDict = {"status": status}
    if isinstance(request_id, int):
        request["requestId"] = request_id
    elif ctx.state.log_request is not None:
        request["requestId"] = ctx.state.log_request["requestId"]
    if status in LOG_DONE:
        ctx.state.log_request = None
    if (ctx.state.trigger or {}).get("requestedMessage") == "LogStatusNotification":
        ctx.state.trigger = None
    return forward("LogStatusNotification", request, lambda answers: {})


def diagnostics_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return _log_status(ctx, DIAGNOSTICS_STATUS[str(payload["status"])], None)


def log_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return _log_status(ctx, str(payload["status"]), payload.get("requestId"))


def _firmware_status(ctx: Context, status: str, request_id: object) -> Plan:
    request: JsonDict = {"status": status}
    job = ctx.state.fw_request
    if isinstance(request_id, int):
        request["requestId"] = request_id
    elif job is not None:
        request["requestId"] = job["requestId"]
    if job is not None:
        done = status in FIRMWARE_DONE and (status != "Installed" or job.get("booted"))
        ctx.state.fw_request = None if done else {**job, "status": status}
    if (ctx.state.trigger or {}).get("requestedMessage") == "FirmwareStatusNotification":
        ctx.state.trigger = None
    return forward("FirmwareStatusNotification", request, lambda answers: {})


def firmware_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return _firmware_status(ctx, str(payload["status"]), None)


def signed_firmware_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return _firmware_status(ctx, str(payload["status"]), payload.get("requestId"))


def security_event_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {k: payload[k] for k in ("type", "timestamp", "techInfo") if k in payload}
    return forward("SecurityEventNotification", request, lambda answers: {})


def sign_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    request = {"csr": payload["csr"], "certificateType": "ChargingStationCertificate"}
    return forward("SignCertificate", request, lambda answers: {"status": answers[0]["status"]})


CHARGER_HANDLERS: Mapping[str, Handler] = {
    "Authorize": authorize,
    "BootNotification": boot_notification,
    "DataTransfer": data_transfer,
    "DiagnosticsStatusNotification": diagnostics_status_notification,
    "FirmwareStatusNotification": firmware_status_notification,
    "Heartbeat": heartbeat,
    "LogStatusNotification": log_status_notification,
    "MeterValues": meter_values,
    "SecurityEventNotification": security_event_notification,
    "SignCertificate": sign_certificate,
    "SignedFirmwareStatusNotification": signed_firmware_status_notification,
    "StartTransaction": start_transaction,
    "StatusNotification": status_notification,
    "StopTransaction": stop_transaction,
}
