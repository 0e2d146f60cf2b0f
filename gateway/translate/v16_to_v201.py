"""Translator for set-up A: a 1.6 charger behind the gateway, a 2.0.1 CSMS upstream.

Reference: ocpp-translation.md §1 (principles, state), §2 (charger-initiated), §3 (CSMS-initiated), §5 (messages
without counterpart). The class here only dispatches; the translation lives in ``gateway/translate/v16_v201/``
(one module per concern) and the state in :class:`gateway.translate.state.TranslationState`.

Use::

    tr = V16ChargerToV201Csms(Options(...), now=clock, new_tx_id=ids, session_started_at=clock())
    tr.restore(stored)                      # if the store has a snapshot
    plan = tr.from_charger("StartTransaction", payload)
    store.write(tr.snapshot())              # write-ahead, before plan.calls leave
    ...                                     # send plan.calls one at a time to the CSMS
    answer = plan.finish(answers)           # the StartTransaction.conf for the charger; snapshot again
    ...                                     # then plan.then_to_csms / plan.then_to_charger, if any
    tr.take_dropped()                       # [(action, what), ...] for ocppgw_translation_dropped_total

Identifiers the translator owns: the 1.6 integer ``transactionId`` (seeded from the seconds since 2024-01-01, then
counting up) and the 2.0.1 string one (``new_tx_id()``, a UUID4 by default: the session may inject
``<charger_id>-<n>``-style ids; they are stored, never parsed), ``seqNo`` per transaction, ``eventId`` of
NotifyEvent. ``remoteStartId`` and ``requestId`` come from the CSMS and are remembered.

Decisions where the reference is thin are written in the docstring of the module that implements them
(``transactions``, ``charger_calls``, ``csms_calls``, ``device_model``, ``smart_charging``, ``meter``,
``config_keys``). The most visible ones:

* Transactions never seen before (offline-queued before the gateway knew the charger, store loss, charger moved
  behind the gateway mid-transaction): a MeterValues or StopTransaction with an unknown ``transactionId`` first
  sends a synthesised ``Started`` (seqNo 0, ``offline`` true, ``triggerReason`` ``Authorized`` — ``RemoteStart``
  when a pending remote start matches the idTag —, timestamp the earliest of the message, ``evse`` from the
  MeterValues connector or, for StopTransaction, the one connector in Charging/Suspended*/Finishing without an open
  transaction, no ``meterValue`` since meterStart is unknown), then the real ``Updated``/``Ended`` with seqNo 1,
  ``offline`` true. The charger's integer is kept (it already uses it). An invented id <= 0 is matched to the one
  open transaction whose idTag agrees, when there is exactly one.
* ``offline`` is set when an event's timestamp is older than this WebSocket session's start minus 60 s, and on
  every later event of a transaction whose Started was offline.
* Companion CALLs of one StatusNotification (TransactionEvent, NotifyEvent) are calls of the same plan; NotifyReport
  after GetBaseReport/GetReport and the deferred Soft Reset after the last Ended are ``Plan.then_to_*`` CALLs.

Policy per message (machine-readable: :data:`POLICY`; ``tests/unit/test_translate_v16_v201.py`` checks that this
table and the dict agree):

================================== ==================================================================================
action                             policy
================================== ==================================================================================
Authorize                          translate: Authorize (idTag -> idToken; idTokenInfo -> idTagInfo)
BootNotification                   translate: BootNotification (reason from state)
DiagnosticsStatusNotification      translate: LogStatusNotification (requestId from the GetLog job)
FirmwareStatusNotification         translate: FirmwareStatusNotification (requestId from the firmware job)
Heartbeat                          translate: Heartbeat
LogStatusNotification              translate: LogStatusNotification (security extension)
MeterValues                        translate: TransactionEvent Updated (with transactionId) or MeterValues (without)
SecurityEventNotification          translate: SecurityEventNotification (security extension)
SignCertificate                    translate: SignCertificate ChargingStationCertificate (security extension)
SignedFirmwareStatusNotification   translate: FirmwareStatusNotification (security extension)
StartTransaction                   translate: TransactionEvent Started (translator assigns both transaction ids)
StatusNotification                 translate: StatusNotification (+ TransactionEvent ChargingStateChanged, +
                                   NotifyEvent Problem); connector 0 -> NotifyEvent AvailabilityState
StopTransaction                    translate: TransactionEvent Ended (a Started is synthesised for an unknown
                                   transaction)
DataTransfer                       translate both ways: DataTransfer (non-string data -> compact JSON); vendorId
                                   org.openchargealliance.ocpp16 from the CSMS -> refuse in-band UnknownVendorId
CancelReservation                  translate: CancelReservation
CertificateSigned                  translate: CertificateSigned (ext.); V2GCertificate -> refuse in-band Rejected; no
                                   extension -> CALLERROR NotSupported
ChangeAvailability                 translate: ChangeAvailability (fan-out per connector of the EVSE, answers merged)
ClearCache                         translate: ClearCache
ClearChargingProfile               translate: ClearChargingProfile; ChargingStationExternalConstraints -> Unknown
ClearDisplayMessage                refuse in-band: Unknown
ClearVariableMonitoring            refuse in-band: NotFound per id
CostUpdated                        ack + drop: {} (tariffs are not shown on a 1.6 charger)
CustomerInformation                refuse in-band: Rejected (NotIn16)
DeleteCertificate                  translate: DeleteCertificate (ext.); no extension -> CALLERROR NotSupported
GetBaseReport                      translate: GetConfiguration, answer Accepted, then NotifyReport(s) from the
                                   gateway; SummaryInventory answered from state
GetChargingProfiles                refuse in-band: NoProfiles (1.6 cannot list profiles)
GetCompositeSchedule               translate: GetCompositeSchedule (schedule rebuilt as CompositeScheduleType)
GetDisplayMessages                 refuse in-band: Unknown
GetInstalledCertificateIds         translate: one GetInstalledCertificateIds per 1.6 type (ext.); V2G/MO types
                                   skipped; no extension -> CALLERROR NotSupported
GetLocalListVersion                translate: GetLocalListVersion
GetLog                             translate: GetLog (ext.) or GetDiagnostics; SecurityLog without ext. -> refuse in-
                                   band Rejected
GetMonitoringReport                refuse in-band: NotSupported
GetReport                          translate: GetConfiguration, then NotifyReport(s) filtered; nothing mappable ->
                                   EmptyResultSet
GetTransactionStatus               answer from state
GetVariables                       translate: GetConfiguration with the mapped keys; unmappable items answered per
                                   item
InstallCertificate                 translate: InstallCertificate (ext.); V2G/MO roots -> refuse in-band Rejected; no
                                   extension -> CALLERROR NotSupported
PublishFirmware                    refuse in-band: Rejected
RequestStartTransaction            translate: RemoteStartTransaction (idToken > 20 or unmappable profile -> Rejected)
RequestStopTransaction             translate: RemoteStopTransaction (unknown transaction -> Rejected
                                   NoSuchTransaction)
ReserveNow                         translate: ReserveNow (idToken > 20 -> Rejected)
Reset                              translate: Reset Hard/Soft; evseId -> refuse in-band Rejected; OnIdle during a
                                   transaction -> Scheduled, Soft reset sent after the last Ended
SendLocalList                      translate: SendLocalList (any idToken > 20 -> Failed, nothing sent)
SetChargingProfile                 translate: SetChargingProfile (unmappable profile -> Rejected ProfileNotMappable)
SetDisplayMessage                  refuse in-band: Rejected
SetMonitoringBase                  refuse in-band: NotSupported
SetMonitoringLevel                 refuse in-band: Rejected
SetNetworkProfile                  refuse in-band: Rejected (NotIn16)
SetVariableMonitoring              refuse in-band: UnsupportedMonitorType per item
SetVariables                       translate: one ChangeConfiguration per mappable item; others answered per item
TriggerMessage                     translate: TriggerMessage / ExtendedTriggerMessage; TransactionEvent ->
                                   MeterValues of the open transaction; types without 1.6 form -> NotImplemented
UnlockConnector                    translate: UnlockConnector; during a transaction -> OngoingAuthorizedTransaction
UnpublishFirmware                  refuse in-band: NoFirmware
UpdateFirmware                     translate: SignedUpdateFirmware (ext. + signature) or UpdateFirmware; a signature
                                   the charger cannot check -> Rejected unless allow_unsigned_firmware
*unknown action*                   CALLERROR NotImplemented
*action of the wrong direction*    CALLERROR NotSupported
================================== ==================================================================================
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

from gateway.ocpp.errors import normalise_code
from gateway.translate.base import JsonDict, Plan, Side
from gateway.translate.state import TranslationState
from gateway.translate.v16_v201.charger_calls import CHARGER_HANDLERS
from gateway.translate.v16_v201.context import Context, Options, utc_now
from gateway.translate.v16_v201.csms_calls import CSMS_HANDLERS
from gateway.translate.v16_v201.policy import POLICY

__all__ = ["POLICY", "Options", "V16ChargerToV201Csms", "map_error_code"]

# CALLs a 1.6 central system sends: arriving *from* a charger they are in the wrong direction.
V16_CENTRAL_ACTIONS = frozenset(
    {
        "CancelReservation", "CertificateSigned", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
        "ClearChargingProfile", "DeleteCertificate", "ExtendedTriggerMessage", "GetCompositeSchedule",
        "GetConfiguration", "GetDiagnostics", "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog",
        "InstallCertificate", "RemoteStartTransaction", "RemoteStopTransaction", "ReserveNow", "Reset",
        "SendLocalList", "SetChargingProfile", "SignedUpdateFirmware", "TriggerMessage", "UnlockConnector",
        "UpdateFirmware",
    }
)  # fmt: skip
# CALLs a 2.0.1 charging station sends: arriving *from* a CSMS they are in the wrong direction.
V201_STATION_ACTIONS = frozenset(
    {
        "Authorize", "BootNotification", "ClearedChargingLimit", "FirmwareStatusNotification",
        "Get15118EVCertificate", "GetCertificateStatus", "Heartbeat", "LogStatusNotification", "MeterValues",
        "NotifyChargingLimit", "NotifyCustomerInformation", "NotifyDisplayMessages", "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule", "NotifyEvent", "NotifyMonitoringReport", "NotifyReport",
        "PublishFirmwareStatusNotification", "ReportChargingProfiles", "ReservationStatusUpdate",
        "SecurityEventNotification", "SignCertificate", "StatusNotification", "TransactionEvent",
    }
)  # fmt: skip


def map_error_code(code: str, version: str) -> str:
    """An OCPP-J CALLERROR code of either version, spelled for ``version`` (§5.3).

    Delegates to :func:`gateway.ocpp.errors.normalise_code`, the one place that picks each version's spelling
    (FormationViolation/FormatViolation, the one- or two-r occurrence code; 2.0.1-only codes become ProtocolError
    on 1.6, unknown codes GenericError).
    """
    return normalise_code(code, version)


class V16ChargerToV201Csms:
    """The :class:`gateway.translate.base.Translator` for a 1.6 charger and a 2.0.1 CSMS (one per session).

    ``now`` returns the current time as an ISO-8601 UTC string; ``new_tx_id`` returns a fresh 2.0.1 transactionId
    (<= 36 characters); ``session_started_at`` is the start of the charger's WebSocket session (default: ``now()``
    at construction), the reference point of the ``offline`` flag.
    """

    charger_version = "1.6"
    csms_version = "2.0.1"

    def __init__(
        self,
        options: Options | None = None,
        *,
        now: Callable[[], str] = utc_now,
        new_tx_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        session_started_at: str | None = None,
        state: TranslationState | None = None,
    ) -> None:
        self._ctx = Context(
            state=state or TranslationState(),
            options=options or Options(),
            now=now,
            new_tx_id=new_tx_id,
            session_started_at=session_started_at or now(),
        )

    @property
    def state(self) -> TranslationState:
        return self._ctx.state

    @property
    def options(self) -> Options:
        return self._ctx.options

    def from_charger(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 1.6 CALL from the charger (already schema-checked); the plan's calls go to the 2.0.1 CSMS."""
        handler = CHARGER_HANDLERS.get(action)
        if handler is None:
            if action in V16_CENTRAL_ACTIONS:
                return Plan(error=("NotSupported", f"{action} is sent by a central system"), reason="wrong_direction")
            return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")
        self._ctx.prune()
        return handler(self._ctx, payload)

    def from_csms(self, action: str, payload: Mapping[str, Any]) -> Plan:
        """A 2.0.1 CALL from the CSMS (already schema-checked); the plan's calls go to the 1.6 charger."""
        handler = CSMS_HANDLERS.get(action)
        if handler is None:
            if action in V201_STATION_ACTIONS:
                return Plan(error=("NotSupported", f"{action} is sent by a charging station"), reason="wrong_direction")
            return Plan(error=("NotImplemented", f"unknown action {action}"), reason="unknown_action")
        self._ctx.prune()
        return handler(self._ctx, payload)

    def map_error(self, code: str, to: Side) -> str:
        return map_error_code(code, self.charger_version if to == "charger" else self.csms_version)

    def snapshot(self) -> JsonDict:
        return self._ctx.state.to_dict()

    def snapshot_json(self) -> bytes:
        """:meth:`snapshot` as its JSON text, re-encoding only the transaction records that changed (the relay
        persists this: :meth:`gateway.translate.state.TranslationState.to_json`)."""
        return self._ctx.state.to_json()

    def restore(self, data: Mapping[str, Any]) -> None:
        self._ctx.state = TranslationState.from_dict(data)

    def take_dropped(self) -> list[tuple[str, str]]:
        """(action, what) of every field/sample/message dropped since the last call (§1.1 rule 9)."""
        dropped, self._ctx.dropped = self._ctx.dropped, []
        return dropped
