"""What happens to every message in set-up C (2.1 charger, 2.0.1 CSMS), the 2.1-only ones included.

:data:`CHARGER_POLICY` (the charger's 2.1 actions, its SEND messages marked) and :data:`CSMS_POLICY` (the CSMS's
2.0.1 actions) are the tables README shows (``tests/unit/test_readme.py`` keeps them in step); the handlers here
implement the rows for the messages 2.0.1 lacks. The rows for messages both versions have are one policy:
*pass through*, with the 2.1-only fields dropped and 2.1-only values mapped (:mod:`gateway.translate.v21_v201.rules`);
the dropped fields of each message are listed in README from :data:`gateway.translate.v21_v201.fields.ADDED_FIELDS`.

Decisions:

* **Wrap, do not drop, what carries information.** A 2.1-only charger CALL reaches the CSMS as a DataTransfer
  (vendorId ``org.openchargealliance.ocpp21``, messageId the action, data the 2.1 payload, as set-up B's
  ``wrap_untranslatable`` does with ``…ocpp201``), so that a CSMS that knows 2.1 through DataTransfer can act on it
  and any other sees it in its logs. What the charger is answered: the CSMS's ``data`` when it answered Accepted
  with a valid 2.1 response; else the neutral answer of the row: ``{}`` for notifications, ``Rejected`` with
  ``statusInfo.reasonCode`` ``NotIn201`` where 2.1 has a status, ``Failed`` (2.1: the status could not be
  determined) for each certificate of a GetCertificateChainStatus. None of these claims what the CSMS did not say.
* **Streams.** OpenPeriodicEventStream is wrapped, and Accepted only when the CSMS accepted the DataTransfer; the
  stream is then remembered (state) and its NotifyPeriodicEventStream SENDs are wrapped too, each a DataTransfer
  CALL of the gateway's own (its answer is dropped; a SEND gets none). A SEND of a stream the CSMS did not accept
  is dropped (counted). ClosePeriodicEventStream is wrapped and forgets the stream.
* **The CSMS can reach 2.1's own messages** through DataTransfer with vendorId ``org.openchargealliance.ocpp21``
  and messageId a 2.1 CSMS action: the gateway unwraps it into that CALL (its data, checked against 2.1's schema)
  and wraps the charger's answer back as ``data`` of an Accepted DataTransfer answer; data that is not a valid
  request is answered Rejected (``statusInfo.reasonCode`` ``InvalidPayload``) without asking the charger. A CALLERROR
  of the charger reaches the CSMS as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gateway.ocpp import schemas
from gateway.translate.base import JsonDict, OutCall, Plan, forward, local
from gateway.translate.v21_v201.state import V21State

__all__ = [
    "CHARGER_POLICY", "CSMS_POLICY", "SEND_ACTIONS", "V201_CSMS_ACTIONS", "V201_STATION_ACTIONS", "V21_CSMS_ACTIONS",
    "V21_STATION_ACTIONS", "VENDOR_ID", "unwrap", "wrap_call", "wrap_send", "wrapped",
]  # fmt: skip

VENDOR_ID = "org.openchargealliance.ocpp21"

#: 2.0.1 CALLs a charging station sends (both versions have them; DataTransfer goes both ways)
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
#: 2.0.1 CALLs a CSMS sends
V201_CSMS_ACTIONS = frozenset(
    {
        "CancelReservation", "CertificateSigned", "ChangeAvailability", "ClearCache", "ClearChargingProfile",
        "ClearDisplayMessage", "ClearVariableMonitoring", "CostUpdated", "CustomerInformation", "DeleteCertificate",
        "GetBaseReport", "GetChargingProfiles", "GetCompositeSchedule", "GetDisplayMessages",
        "GetInstalledCertificateIds", "GetLocalListVersion", "GetLog", "GetMonitoringReport", "GetReport",
        "GetTransactionStatus", "GetVariables", "InstallCertificate", "PublishFirmware", "RequestStartTransaction",
        "RequestStopTransaction", "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile", "SetDisplayMessage",
        "SetMonitoringBase", "SetMonitoringLevel", "SetNetworkProfile", "SetVariableMonitoring", "SetVariables",
        "TriggerMessage", "UnlockConnector", "UnpublishFirmware", "UpdateFirmware",
    }
)  # fmt: skip
#: 2.1-only CALLs a charging station sends
V21_STATION_ACTIONS = frozenset(
    {
        "BatterySwap", "ClosePeriodicEventStream", "GetCertificateChainStatus", "NotifyDERAlarm",
        "NotifyDERStartStop", "NotifyPriorityCharging", "NotifySettlement", "OpenPeriodicEventStream",
        "PullDynamicScheduleUpdate", "ReportDERControl", "VatNumberValidation",
    }
)  # fmt: skip
#: 2.1 messages a charging station sends as SEND frames (no answer)
SEND_ACTIONS = frozenset({"NotifyPeriodicEventStream"})
#: 2.1-only CALLs a CSMS sends (a 2.0.1 CSMS reaches them through DataTransfer, see the module docstring)
V21_CSMS_ACTIONS = frozenset(
    {
        "AFRRSignal", "AdjustPeriodicEventStream", "ChangeTransactionTariff", "ClearDERControl", "ClearTariffs",
        "GetDERControl", "GetPeriodicEventStream", "GetTariffs", "NotifyAllowedEnergyTransfer",
        "NotifyWebPaymentStarted", "RequestBatterySwap", "SetDERControl", "SetDefaultTariff",
        "UpdateDynamicSchedule", "UsePriorityCharging",
    }
)  # fmt: skip

_PASS = "pass through (2.1-only fields dropped, 2.1-only values mapped: see below)"
_WRAP = f"wrap: DataTransfer {VENDOR_ID}"

#: the charger's 2.1 actions -> policy (messages both versions have first, then 2.1's own, then SEND messages)
CHARGER_POLICY: dict[str, str] = {
    **{a: _PASS for a in sorted(V201_STATION_ACTIONS)},
    "Authorize": f"{_PASS}; idToken type without 2.0.1 form (VIN, NEVI, DirectPayment…) -> refuse in-band Invalid",
    "DataTransfer": "pass through both ways",
    "MeterValues": f"{_PASS}; only sampled values of 2.1-only measurands -> ack + drop",
    "NotifyEVChargingNeeds": f"{_PASS}; a 2.1-only energy transfer mode (V2X, DER, WPT) -> refuse in-band Rejected",
    "ReportChargingProfiles": f"{_PASS}; only profiles of 2.1-only purposes or kinds -> ack + drop",
    "SignCertificate": f"{_PASS}; V2G20Certificate -> refuse in-band Rejected",
    "TransactionEvent": f"{_PASS}; idToken of a type without 2.0.1 form -> dropped from the event (counted)",
    "BatterySwap": f"{_WRAP}; answer {{}}",
    "ClosePeriodicEventStream": f"{_WRAP}; answer {{}}; the stream is forgotten",
    "GetCertificateChainStatus": f"{_WRAP}; answer the CSMS's data, else status Failed per certificate",
    "NotifyDERAlarm": f"{_WRAP}; answer {{}}",
    "NotifyDERStartStop": f"{_WRAP}; answer {{}}",
    "NotifyPriorityCharging": f"{_WRAP}; answer {{}}",
    "NotifySettlement": f"{_WRAP}; answer the CSMS's data, else {{}}",
    "OpenPeriodicEventStream": f"{_WRAP}; Accepted when the CSMS accepted it (stream kept), else Rejected",
    "PullDynamicScheduleUpdate": f"{_WRAP}; answer the CSMS's data, else Rejected",
    "ReportDERControl": f"{_WRAP}; answer {{}}",
    "VatNumberValidation": f"{_WRAP}; answer the CSMS's data, else Rejected (NotIn201)",
    "NotifyPeriodicEventStream (SEND)": f"{_WRAP} (a CALL of the gateway's own, answer dropped) for a stream the "
    "CSMS accepted; else drop (counted); never answered",
}
CHARGER_POLICY = dict(sorted(CHARGER_POLICY.items(), key=lambda kv: (kv[0] in V21_STATION_ACTIONS, "SEND" in kv[0])))

#: the CSMS's 2.0.1 actions -> policy
CSMS_POLICY: dict[str, str] = {
    **{
        a: "pass through; the charger's answer with 2.1-only fields dropped, values mapped"
        for a in sorted(V201_CSMS_ACTIONS)
    },
    "ClearDisplayMessage": "pass through; answer Rejected (2.1-only) -> Unknown",
    "SetDisplayMessage": "pass through; answer LanguageNotSupported (2.1-only) -> Rejected",
    "DataTransfer": f"pass through both ways; vendorId {VENDOR_ID} with messageId a 2.1 CSMS action -> that CALL "
    "(unwrapped), its answer as data of an Accepted answer; invalid data -> refuse in-band Rejected",
    "*unknown action*": "CALLERROR NotImplemented",
    "*action of the wrong direction*": "CALLERROR NotSupported",
}
CSMS_POLICY = dict(sorted(CSMS_POLICY.items(), key=lambda kv: (kv[0].startswith("*"), kv[0])))

# ---------------------------------------------------------------------------------------------------------------
# 2.1-only charger CALLs, wrapped


def _answered(action: str, data: object) -> JsonDict | None:
    """``data`` of an Accepted DataTransfer answer, when it is a valid 2.1 answer to ``action``."""
    if not isinstance(data, dict):
        return None
    try:
        schemas.validate("2.1", action, "response", data)
    except (schemas.SchemaViolation, schemas.UnknownAction):
        return None
    return data


_NOT_IN_201 = {"reasonCode": "NotIn201"}


def _chain_failed(payload: Mapping[str, Any], now: str) -> JsonDict:
    return {
        "certificateStatus": [
            {
                "certificateHashData": r["certificateHashData"],
                "source": r["source"],
                "status": "Failed",
                "nextUpdate": now,
            }
            for r in payload["certificateStatusRequests"]
        ]
    }


#: action -> the answer when the CSMS's is not a valid 2.1 one (``now`` is the translator's clock)
_NEUTRAL: dict[str, Callable[[Mapping[str, Any], str], JsonDict]] = {
    "BatterySwap": lambda p, now: {},
    "ClosePeriodicEventStream": lambda p, now: {},
    "GetCertificateChainStatus": _chain_failed,
    "NotifyDERAlarm": lambda p, now: {},
    "NotifyDERStartStop": lambda p, now: {},
    "NotifyPriorityCharging": lambda p, now: {},
    "NotifySettlement": lambda p, now: {},
    "OpenPeriodicEventStream": lambda p, now: {"status": "Rejected", "statusInfo": dict(_NOT_IN_201)},
    "PullDynamicScheduleUpdate": lambda p, now: {"status": "Rejected", "statusInfo": dict(_NOT_IN_201)},
    "ReportDERControl": lambda p, now: {},
    "VatNumberValidation": lambda p, now: {
        "vatNumber": p["vatNumber"],
        "status": "Rejected",
        "statusInfo": dict(_NOT_IN_201),
    },
}
#: the answer is the neutral one whatever the CSMS's data: {} answers that carry nothing, and the stream's
#: acceptance, which is the CSMS's DataTransfer status
_FIXED = frozenset(
    {"BatterySwap", "ClosePeriodicEventStream", "NotifyDERAlarm", "NotifyDERStartStop", "NotifyPriorityCharging",
     "OpenPeriodicEventStream", "ReportDERControl"}
)  # fmt: skip


def wrapped(action: str, payload: Mapping[str, Any]) -> JsonDict:
    """The DataTransfer request that carries a 2.1 message to a 2.0.1 CSMS."""
    return {"vendorId": VENDOR_ID, "messageId": action, "data": dict(payload)}


def wrap_call(state: V21State, action: str, payload: Mapping[str, Any], now: Callable[[], str]) -> Plan:
    """A 2.1-only charger CALL: wrapped into a DataTransfer; the answer per :data:`CHARGER_POLICY`."""
    neutral = _NEUTRAL[action]

    def finish(answers: list[JsonDict]) -> JsonDict:
        answer = answers[0]
        accepted = answer.get("status") == "Accepted"
        if action == "OpenPeriodicEventStream" and accepted:
            state.open_stream(int(payload["constantStreamData"]["id"]))
            return {"status": "Accepted"}
        if action == "ClosePeriodicEventStream":
            state.close_stream(int(payload["id"]))
        if accepted and action not in _FIXED:
            data = _answered(action, answer.get("data"))
            if data is not None:
                return data
        return neutral(payload, now())

    return forward("DataTransfer", wrapped(action, payload), finish)


def wrap_send(state: V21State, action: str, payload: Mapping[str, Any]) -> OutCall | None:
    """A SEND of the charger: the DataTransfer CALL that carries it, or None (dropped)."""
    if action == "NotifyPeriodicEventStream" and payload.get("id") in state.streams:
        return OutCall("DataTransfer", wrapped(action, payload))
    return None


# ---------------------------------------------------------------------------------------------------------------
# DataTransfer from the CSMS


def unwrap(payload: Mapping[str, Any]) -> Plan | None:
    """A CSMS DataTransfer that carries a 2.1 CSMS CALL: the plan that sends it unwrapped; None: not one of those."""
    action = payload.get("messageId")
    if payload.get("vendorId") != VENDOR_ID or action not in V21_CSMS_ACTIONS:
        return None
    assert isinstance(action, str)
    data = payload.get("data")
    try:
        if not isinstance(data, dict):
            raise schemas.SchemaViolation("2.1", action, "request", "$", "data must be the request object")
        schemas.validate("2.1", action, "request", data)
    except schemas.SchemaViolation as e:
        return local(
            {"status": "Rejected", "statusInfo": {"reasonCode": "InvalidPayload", "additionalInfo": str(e)[:1000]}},
            "unwrap_invalid",
        )

    def finish(answers: list[JsonDict]) -> JsonDict:
        return {"status": "Accepted", "data": answers[0]}

    return forward(action, data, finish)
