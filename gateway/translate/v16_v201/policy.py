"""What happens to every message in set-up A (1.6 charger, 2.0.1 CSMS), including those without counterpart.

:data:`POLICY` maps each action to a one-line policy (README is generated from it; the translator's module
docstring carries the same table). Keys are the action as received: 1.6 names for charger-initiated CALLs, 2.0.1
names for CSMS-initiated ones (``DataTransfer`` exists in both directions and has one entry).

Vocabulary (ocpp-translation.md §5.1): *translate* (one or more CALLs to the other side), *answer from state*,
*refuse in-band* (a schema-valid negative answer, ``statusInfo.reasonCode`` says why), *ack + drop* (neutral answer,
counted), CALLERROR ``NotSupported`` (valid action the other side cannot do) and ``NotImplemented`` (action unknown
to the sender's version). Every local answer carries ``Plan.reason`` for ``ocppgw_translation_local_answers_total``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.translate.base import JsonDict, Plan
from gateway.translate.v16_v201.context import Context, local, status_info

__all__ = ["POLICY", "UNTRANSLATABLE_HANDLERS"]

POLICY: dict[str, str] = {
    # charger-initiated (1.6 -> 2.0.1)
    "Authorize": "translate: Authorize (idTag -> idToken; idTokenInfo -> idTagInfo)",
    "BootNotification": "translate: BootNotification (reason from state)",
    "DiagnosticsStatusNotification": "translate: LogStatusNotification (requestId from the GetLog job)",
    "FirmwareStatusNotification": "translate: FirmwareStatusNotification (requestId from the firmware job)",
    "Heartbeat": "translate: Heartbeat",
    "LogStatusNotification": "translate: LogStatusNotification (security extension)",
    "MeterValues": "translate: TransactionEvent Updated (with transactionId) or MeterValues (without)",
    "SecurityEventNotification": "translate: SecurityEventNotification (security extension)",
    "SignCertificate": "translate: SignCertificate ChargingStationCertificate (security extension)",
    "SignedFirmwareStatusNotification": "translate: FirmwareStatusNotification (security extension)",
    "StartTransaction": "translate: TransactionEvent Started (translator assigns both transaction ids)",
    "StatusNotification": "translate: StatusNotification (+ TransactionEvent ChargingStateChanged, + NotifyEvent "
    "Problem); connector 0 -> NotifyEvent AvailabilityState",
    "StopTransaction": "translate: TransactionEvent Ended (a Started is synthesised for an unknown transaction)",
    "DataTransfer": "translate both ways: DataTransfer (non-string data -> compact JSON); vendorId "
    "org.openchargealliance.ocpp16 from the CSMS -> refuse in-band UnknownVendorId",
    # CSMS-initiated (2.0.1 -> 1.6)
    "CancelReservation": "translate: CancelReservation",
    "CertificateSigned": "translate: CertificateSigned (ext.); V2GCertificate -> refuse in-band Rejected; "
    "no extension -> CALLERROR NotSupported",
    "ChangeAvailability": "translate: ChangeAvailability (fan-out per connector of the EVSE, answers merged)",
    "ClearCache": "translate: ClearCache",
    "ClearChargingProfile": "translate: ClearChargingProfile; ChargingStationExternalConstraints -> Unknown",
    "ClearDisplayMessage": "refuse in-band: Unknown",
    "ClearVariableMonitoring": "refuse in-band: NotFound per id",
    "CostUpdated": "ack + drop: {} (tariffs are not shown on a 1.6 charger)",
    "CustomerInformation": "refuse in-band: Rejected (NotIn16)",
    "DeleteCertificate": "translate: DeleteCertificate (ext.); no extension -> CALLERROR NotSupported",
    "GetBaseReport": "translate: GetConfiguration, answer Accepted, then NotifyReport(s) from the gateway; "
    "SummaryInventory answered from state",
    "GetChargingProfiles": "refuse in-band: NoProfiles (1.6 cannot list profiles)",
    "GetCompositeSchedule": "translate: GetCompositeSchedule (schedule rebuilt as CompositeScheduleType)",
    "GetDisplayMessages": "refuse in-band: Unknown",
    "GetInstalledCertificateIds": "translate: one GetInstalledCertificateIds per 1.6 type (ext.); V2G/MO types "
    "skipped; no extension -> CALLERROR NotSupported",
    "GetLocalListVersion": "translate: GetLocalListVersion",
    "GetLog": "translate: GetLog (ext.) or GetDiagnostics; SecurityLog without ext. -> refuse in-band Rejected",
    "GetMonitoringReport": "refuse in-band: NotSupported",
    "GetReport": "translate: GetConfiguration, then NotifyReport(s) filtered; nothing mappable -> EmptyResultSet",
    "GetTransactionStatus": "answer from state",
    "GetVariables": "translate: GetConfiguration with the mapped keys; unmappable items answered per item",
    "InstallCertificate": "translate: InstallCertificate (ext.); V2G/MO roots -> refuse in-band Rejected; "
    "no extension -> CALLERROR NotSupported",
    "PublishFirmware": "refuse in-band: Rejected",
    "RequestStartTransaction": "translate: RemoteStartTransaction (idToken > 20 or unmappable profile -> Rejected)",
    "RequestStopTransaction": "translate: RemoteStopTransaction (unknown transaction -> Rejected NoSuchTransaction)",
    "ReserveNow": "translate: ReserveNow (idToken > 20 -> Rejected)",
    "Reset": "translate: Reset Hard/Soft; evseId -> refuse in-band Rejected; OnIdle during a transaction -> "
    "Scheduled, Soft reset sent after the last Ended",
    "SendLocalList": "translate: SendLocalList (any idToken > 20 -> Failed, nothing sent)",
    "SetChargingProfile": "translate: SetChargingProfile (unmappable profile -> Rejected ProfileNotMappable)",
    "SetDisplayMessage": "refuse in-band: Rejected",
    "SetMonitoringBase": "refuse in-band: NotSupported",
    "SetMonitoringLevel": "refuse in-band: Rejected",
    "SetNetworkProfile": "refuse in-band: Rejected (NotIn16)",
    "SetVariableMonitoring": "refuse in-band: UnsupportedMonitorType per item",
    "SetVariables": "translate: one ChangeConfiguration per mappable item; others answered per item",
    "TriggerMessage": "translate: TriggerMessage / ExtendedTriggerMessage; TransactionEvent -> MeterValues of the "
    "open transaction; types without 1.6 form -> NotImplemented",
    "UnlockConnector": "translate: UnlockConnector; during a transaction -> OngoingAuthorizedTransaction",
    "UnpublishFirmware": "refuse in-band: NoFirmware",
    "UpdateFirmware": "translate: SignedUpdateFirmware (ext. + signature) or UpdateFirmware; a signature the "
    "charger cannot check -> Rejected unless allow_unsigned_firmware",
    # anything else
    "*unknown action*": "CALLERROR NotImplemented",
    "*action of the wrong direction*": "CALLERROR NotSupported",
}


def _rejected(reason: str) -> Callable[[Context, Mapping[str, Any]], Plan]:
    def handler(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        return local({"status": "Rejected", "statusInfo": status_info("NotIn16")}, reason)

    return handler


def _status(status: str, reason: str, *, info: bool = True) -> Callable[[Context, Mapping[str, Any]], Plan]:
    def handler(ctx: Context, payload: Mapping[str, Any]) -> Plan:
        answer: JsonDict = {"status": status}
        if info:  # UnpublishFirmwareResponse has no statusInfo
            answer["statusInfo"] = status_info("NotIn16")
        return local(answer, reason)

    return handler


def _cost_updated(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    ctx.drop("CostUpdated", "message")
    return local({}, "cost_updated_dropped")


def _set_variable_monitoring(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    results: list[JsonDict] = [
        {
            "status": "UnsupportedMonitorType",
            "type": item["type"],
            "severity": item["severity"],
            "component": dict(item["component"]),
            "variable": dict(item["variable"]),
        }
        for item in payload["setMonitoringData"]
    ]
    return local({"setMonitoringResult": results}, "monitoring_not_in_16")


def _clear_variable_monitoring(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    results = [{"status": "NotFound", "id": ident} for ident in payload["id"]]
    return local({"clearMonitoringResult": results}, "monitoring_not_in_16")


UNTRANSLATABLE_HANDLERS: Mapping[str, Callable[[Context, Mapping[str, Any]], Plan]] = {
    "ClearDisplayMessage": _status("Unknown", "display_not_in_16"),
    "ClearVariableMonitoring": _clear_variable_monitoring,
    "CostUpdated": _cost_updated,
    "CustomerInformation": _rejected("customer_information_not_in_16"),
    "GetChargingProfiles": _status("NoProfiles", "profiles_not_listable_in_16"),
    "GetDisplayMessages": _status("Unknown", "display_not_in_16"),
    "GetMonitoringReport": _status("NotSupported", "monitoring_not_in_16"),
    "PublishFirmware": _rejected("publish_firmware_not_in_16"),
    "SetDisplayMessage": _rejected("display_not_in_16"),
    "SetMonitoringBase": _status("NotSupported", "monitoring_not_in_16"),
    "SetMonitoringLevel": _rejected("monitoring_not_in_16"),
    "SetNetworkProfile": _rejected("network_profile_not_in_16"),
    "SetVariableMonitoring": _set_variable_monitoring,
    "UnpublishFirmware": _status("NoFirmware", "publish_firmware_not_in_16", info=False),
}
