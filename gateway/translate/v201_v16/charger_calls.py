"""Charger-initiated CALLs of set-up B (2.0.1 charger -> 1.6 CSMS) and their dispatch table.

See ocpp-translation.md §4.1 and §5.2; TransactionEvent and StatusNotification live in ``transactions``.
:data:`CHARGER_POLICY` is the one-line policy per action (README table), :data:`CHARGER_HANDLERS` the dispatch.

Decisions taken here (beyond the reference):

* BootNotification: ``chargePointVendor`` <- ``Options.charge_point_vendor`` when configured, else ``vendorName``
  cut to 20 characters (counted ``vendor_truncated``: informational, not an identifier). ``chargePointModel``,
  ``chargePointSerialNumber`` <- ``serialNumber``, ``firmwareVersion``, ``iccid``/``imsi`` <- ``modem`` copied
  (same limits). The charger's own payload (with ``reason``) is kept in ``state.boot``, the answer in
  ``state.boot_result``. An ``Accepted`` boot forgets the 1.6 statuses last sent (``status16``), so the statuses the
  charger reports after booting reach the CSMS even when unchanged (a 1.6 CSMS expects them after a boot).
* Authorize: an idToken that cannot become an idTag (longer than 20 with ``long_id_tokens: reject``, or
  ``NoAuthorization`` without ``free_vend_idtag``) is answered ``idTokenInfo`` {``status`` ``Invalid``} locally
  (reason ``idtoken_not_expressible``); ``certificate`` / ``iso15118CertificateHashData`` are dropped (counted).
* MeterValues (no transaction): ``connectorId`` <- the EVSE (0 stays 0, the main meter; an EVSE with several 1.6
  connectors -> the lowest); an EVSE the map does not know, or a message whose samples all drop, is answered
  ``{}`` without a 1.6 CALL (counted).
* DataTransfer: a non-string ``data`` is sent as compact JSON; the answer's ``data`` (a 1.6 string) stays a
  string (no guessing of JSON).
* FirmwareStatusNotification: with ``security_extension`` -> SignedFirmwareStatusNotification (all 14 statuses,
  the charger's ``requestId``, else the gateway's firmware job's); core -> FirmwareStatusNotification with the 7
  shared values, ``InstallVerificationFailed``/``InvalidSignature`` -> ``InstallationFailed``, the other five
  answered ``{}`` locally (counted ``status_not_in_16``). The firmware job (``state.fw_request``) is forgotten on
  ``Installed``, ``InstallationFailed``, ``DownloadFailed``, ``InstallVerificationFailed``, ``InvalidSignature``.
* LogStatusNotification: with the extension -> LogStatusNotification (``requestId`` as for firmware); core ->
  DiagnosticsStatusNotification (``UploadFailure``, ``BadMessage``, ``PermissionDenied``,
  ``NotSupportedOperation`` -> ``UploadFailed``). ``AcceptedCanceled`` is never sent (``{}``, counted). The log job
  (``state.log_request``) is forgotten on a terminal status.
* SignCertificate: only ``ChargingStationCertificate`` (or absent) with the extension is forwarded; a
  ``V2GCertificate`` or a CSMS without the extension -> ``Rejected`` in-band (the charger retries per its back-off).
* SecurityEventNotification without the extension, NotifyEvent, NotifyChargingLimit, ClearedChargingLimit:
  ack + wrap (DataTransfer ``org.openchargealliance.ocpp201``, sent after the ``{}`` answer) when
  ``wrap_untranslatable``, else ack + drop. NotifyReport (the gateway asks with GetVariables, never with reports),
  NotifyMonitoringReport, NotifyCustomerInformation, NotifyDisplayMessages, ReportChargingProfiles,
  ReservationStatusUpdate, PublishFirmwareStatusNotification: ack + drop (§5.2).
* NotifyEVChargingNeeds -> ``Rejected``; NotifyEVChargingSchedule -> ``Accepted`` (§5.2 decision);
  GetCertificateStatus -> ``Failed``; Get15118EVCertificate -> CALLERROR ``NotSupported``. In-band refusals carry
  ``statusInfo`` {``reasonCode`` ``NotIn16``}.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import JsonDict, Plan, data_transfer_to_v16
from gateway.translate.v201_v16.context import Context, forward, id_token_info, local
from gateway.translate.v201_v16.meter import convert_meter_values
from gateway.translate.v201_v16.transactions import status_notification, transaction_event

__all__ = ["CHARGER_HANDLERS", "CHARGER_POLICY"]

Handler = Callable[[Context, Mapping[str, Any]], Plan]

VENDOR_MAX = 20
NOT_IN_16 = {"reasonCode": "NotIn16"}
#: 2.0.1 FirmwareStatusEnumType -> core 1.6 FirmwareStatus (None: not sent)
FIRMWARE_STATUS_CORE: dict[str, str | None] = {
    "Downloaded": "Downloaded",
    "DownloadFailed": "DownloadFailed",
    "Downloading": "Downloading",
    "Idle": "Idle",
    "InstallationFailed": "InstallationFailed",
    "Installing": "Installing",
    "Installed": "Installed",
    "InstallVerificationFailed": "InstallationFailed",
    "InvalidSignature": "InstallationFailed",
    "DownloadScheduled": None,
    "DownloadPaused": None,
    "InstallScheduled": None,
    "InstallRebooting": None,
    "SignatureVerified": None,
}
FIRMWARE_DONE = frozenset(
    {"Installed", "InstallationFailed", "DownloadFailed", "InstallVerificationFailed", "InvalidSignature"}
)
#: 2.0.1 UploadLogStatusEnumType -> core 1.6 DiagnosticsStatus (None: not sent)
LOG_STATUS_CORE: dict[str, str | None] = {
    "Idle": "Idle",
    "Uploaded": "Uploaded",
    "Uploading": "Uploading",
    "UploadFailure": "UploadFailed",
    "BadMessage": "UploadFailed",
    "PermissionDenied": "UploadFailed",
    "NotSupportedOperation": "UploadFailed",
    "AcceptedCanceled": None,
}
LOG_DONE = frozenset({"Uploaded", "UploadFailure", "BadMessage", "PermissionDenied", "NotSupportedOperation"})


def _empty(answers: list[JsonDict]) -> JsonDict:
    return {}


# -- BootNotification, Heartbeat, Authorize ----------------------------------------------------------------------


def boot_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    station: Mapping[str, Any] = payload["chargingStation"]
    vendor = ctx.options.charge_point_vendor
    if vendor is None:
        vendor = str(station["vendorName"])
        if len(vendor) > VENDOR_MAX:
            ctx.drop("BootNotification", "vendor_truncated")
            vendor = vendor[:VENDOR_MAX]
    request: JsonDict = {"chargePointVendor": vendor, "chargePointModel": station["model"]}
    if "serialNumber" in station:
        request["chargePointSerialNumber"] = station["serialNumber"]
    if "firmwareVersion" in station:
        request["firmwareVersion"] = station["firmwareVersion"]
    for name in ("iccid", "imsi"):
        if name in (station.get("modem") or {}):
            request[name] = station["modem"][name]
    ctx.state.boot = dict(payload)

    def finish(answers: list[JsonDict]) -> JsonDict:
        result = {k: answers[0][k] for k in ("status", "currentTime", "interval")}
        ctx.state.boot_result = dict(result)
        if result["status"] == "Accepted":
            for entry in ctx.state.connector_status.values():
                entry.pop("status16", None)
        return result

    return forward("BootNotification", request, finish)


def heartbeat(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return forward("Heartbeat", {}, lambda answers: {"currentTime": answers[0]["currentTime"]})


def authorize(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    for name in ("certificate", "iso15118CertificateHashData"):
        if name in payload:
            ctx.drop("Authorize", name)
    id_tag = ctx.id_tag_of("Authorize", payload["idToken"])
    if id_tag is None:
        return local({"idTokenInfo": {"status": "Invalid"}}, "idtoken_not_expressible")
    return forward(
        "Authorize", {"idTag": id_tag}, lambda answers: {"idTokenInfo": id_token_info(answers[0]["idTagInfo"])}
    )


# -- MeterValues, DataTransfer -----------------------------------------------------------------------------------


def meter_values(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    connector = ctx.connector_of(int(payload["evseId"]))
    if connector is None:
        ctx.drop("MeterValues", "unmapped_evse")
        return local({}, "unmapped_evse")
    converted = convert_meter_values(ctx, "MeterValues", payload["meterValue"])
    if not converted:
        return local({}, "no_convertible_samples")
    return forward("MeterValues", {"connectorId": connector, "meterValue": converted}, _empty)


def data_transfer(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return data_transfer_to_v16(payload)


# -- firmware and log status -------------------------------------------------------------------------------------


def _request_id(payload: Mapping[str, Any], job: Mapping[str, Any] | None) -> int | None:
    value = payload.get("requestId")
    if isinstance(value, int):
        return value
    value = (job or {}).get("requestId")
    return value if isinstance(value, int) else None


def firmware_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    status = str(payload["status"])
    request_id = _request_id(payload, ctx.state.fw_request)
    if status in FIRMWARE_DONE:
        ctx.state.fw_request = None
    if ctx.options.security_extension:
        request: JsonDict = {"status": status}
        if request_id is not None:
            request["requestId"] = request_id
        return forward("SignedFirmwareStatusNotification", request, _empty)
    core = FIRMWARE_STATUS_CORE.get(status)
    if core is None:
        ctx.drop("FirmwareStatusNotification", "status_not_in_16")
        return local({}, "firmware_status_not_in_16")
    return forward("FirmwareStatusNotification", {"status": core}, _empty)


def log_status_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    status = str(payload["status"])
    request_id = _request_id(payload, ctx.state.log_request)
    if status in LOG_DONE:
        ctx.state.log_request = None
    if status == "AcceptedCanceled":
        ctx.drop("LogStatusNotification", "status_not_in_16")
        return local({}, "log_status_not_in_16")
    if ctx.options.security_extension:
        request: JsonDict = {"status": status}
        if request_id is not None:
            request["requestId"] = request_id
        return forward("LogStatusNotification", request, _empty)
    core = LOG_STATUS_CORE[status]
    assert core is not None
    return forward("DiagnosticsStatusNotification", {"status": core}, _empty)


# -- security ----------------------------------------------------------------------------------------------------


def _ack(action: str, *, wrap: bool) -> Handler:
    """§5.1 ack + wrap (when configured and ``wrap``) or ack + drop: the empty answer at once."""

    def handler(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        if wrap and ctx.options.wrap_untranslatable:
            plan = local({}, "wrapped")
            plan.then_to_csms.append(ctx.wrap(action, payload))
            return plan
        ctx.drop(action, "message")
        return local({}, "dropped")

    return handler


_security_event_wrap = _ack("SecurityEventNotification", wrap=True)


def security_event_notification(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if not ctx.options.security_extension:
        return _security_event_wrap(ctx, payload)
    request = {k: payload[k] for k in ("type", "timestamp", "techInfo") if k in payload}
    return forward("SecurityEventNotification", request, _empty)


def sign_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    if payload.get("certificateType", "ChargingStationCertificate") != "ChargingStationCertificate":
        return local({"status": "Rejected", "statusInfo": NOT_IN_16}, "v2g_certificate_not_in_16")
    if not ctx.options.security_extension:
        return local({"status": "Rejected", "statusInfo": NOT_IN_16}, "no_security_extension")
    return forward("SignCertificate", {"csr": payload["csr"]}, lambda answers: {"status": answers[0]["status"]})


# -- messages without counterpart (§5.2) -------------------------------------------------------------------------


def _answer(reply: JsonDict, reason: str) -> Handler:
    def handler(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        return local(dict(reply), reason)

    return handler


def get_15118_ev_certificate(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    return Plan(error=("NotSupported", "Get15118EVCertificate has no OCPP 1.6 counterpart"), reason="not_in_16")


CHARGER_HANDLERS: dict[str, Handler] = {
    "Authorize": authorize,
    "BootNotification": boot_notification,
    "ClearedChargingLimit": _ack("ClearedChargingLimit", wrap=True),
    "DataTransfer": data_transfer,
    "FirmwareStatusNotification": firmware_status_notification,
    "Get15118EVCertificate": get_15118_ev_certificate,
    "GetCertificateStatus": _answer({"status": "Failed", "statusInfo": NOT_IN_16}, "not_in_16"),
    "Heartbeat": heartbeat,
    "LogStatusNotification": log_status_notification,
    "MeterValues": meter_values,
    "NotifyChargingLimit": _ack("NotifyChargingLimit", wrap=True),
    "NotifyCustomerInformation": _ack("NotifyCustomerInformation", wrap=False),
    "NotifyDisplayMessages": _ack("NotifyDisplayMessages", wrap=False),
    "NotifyEVChargingNeeds": _answer({"status": "Rejected", "statusInfo": NOT_IN_16}, "not_in_16"),
    "NotifyEVChargingSchedule": _answer({"status": "Accepted"}, "ev_schedule_within_limits"),
    "NotifyEvent": _ack("NotifyEvent", wrap=True),
    "NotifyMonitoringReport": _ack("NotifyMonitoringReport", wrap=False),
    "NotifyReport": _ack("NotifyReport", wrap=False),
    "PublishFirmwareStatusNotification": _ack("PublishFirmwareStatusNotification", wrap=False),
    "ReportChargingProfiles": _ack("ReportChargingProfiles", wrap=False),
    "ReservationStatusUpdate": _ack("ReservationStatusUpdate", wrap=False),
    "SecurityEventNotification": security_event_notification,
    "SignCertificate": sign_certificate,
    "StatusNotification": status_notification,
    "TransactionEvent": transaction_event,
}

#: action -> one-line policy (README table)
CHARGER_POLICY: dict[str, str] = {
    "Authorize": "translate: Authorize (idToken -> idTag; idTagInfo -> idTokenInfo); idToken not expressible in "
    "1.6 -> refuse in-band Invalid",
    "BootNotification": "translate: BootNotification (vendorName > 20 truncated or configured; reason kept in state)",
    "ClearedChargingLimit": "ack + wrap (DataTransfer) or ack + drop per wrap_untranslatable",
    "DataTransfer": "translate: DataTransfer (non-string data -> compact JSON)",
    "FirmwareStatusNotification": "translate: SignedFirmwareStatusNotification (ext.) or FirmwareStatusNotification "
    "(7 shared statuses; verification failures -> InstallationFailed; others answered {} and counted)",
    "Get15118EVCertificate": "CALLERROR NotSupported (exiResponse cannot be produced)",
    "GetCertificateStatus": "refuse in-band: Failed",
    "Heartbeat": "translate: Heartbeat",
    "LogStatusNotification": "translate: LogStatusNotification (ext.) or DiagnosticsStatusNotification "
    "(failures -> UploadFailed); AcceptedCanceled answered {} and counted",
    "MeterValues": "translate: MeterValues without transactionId (evseId -> connectorId, samples per §4.3)",
    "NotifyChargingLimit": "ack + wrap (DataTransfer) or ack + drop per wrap_untranslatable",
    "NotifyCustomerInformation": "ack + drop",
    "NotifyDisplayMessages": "ack + drop",
    "NotifyEVChargingNeeds": "refuse in-band: Rejected (no schedule will follow)",
    "NotifyEVChargingSchedule": "answer Accepted (the EV's schedule stays within the limits it was given)",
    "NotifyEvent": "ack + wrap (DataTransfer) or ack + drop per wrap_untranslatable; never a StatusNotification",
    "NotifyMonitoringReport": "ack + drop",
    "NotifyReport": "ack + drop (the gateway reads variables with GetVariables, never with reports)",
    "PublishFirmwareStatusNotification": "ack + drop",
    "ReportChargingProfiles": "ack + drop",
    "ReservationStatusUpdate": "ack + drop (the CSMS sees the StatusNotification Reserved -> Available)",
    "SecurityEventNotification": "translate: SecurityEventNotification (ext.); without the extension ack + wrap or "
    "ack + drop per wrap_untranslatable",
    "SignCertificate": "translate: SignCertificate (ext.); V2GCertificate or no extension -> refuse in-band Rejected",
    "StatusNotification": "translate: StatusNotification when the derived 1.6 status changes (Occupied -> "
    "Preparing / the transaction's chargingState / Finishing) or the CSMS triggered it; else answered {}",
    "TransactionEvent": "translate: StartTransaction (first idToken; answer waits for the CSMS), MeterValues, "
    "StatusNotification, StopTransaction; events before the CSMS's transactionId are queued in state; "
    "never authorized -> nothing sent",
}
