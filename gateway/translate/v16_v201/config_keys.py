"""1.6 configuration keys <-> 2.0.1 device model (ocpp-translation.md §3.5): the table and the lookup rule.

Lookup of a 2.0.1 (component, variable), in order:

1. component ``OCPP16`` (no evse, no instance): the variable name is the literal 1.6 key (escape hatch for vendor
   keys); ``OCPP16.meterType`` / ``meterSerialNumber`` / ``chargeBoxSerialNumber`` answer from the boot record.
2. :data:`KEYS` (exact component name + instance, variable name + instance; station-wide keys do not match a
   request that names an ``evse``; ``EVSE.PhaseRotation`` needs one).
3. Gateway-answered read-only variables (:func:`gateway_value`).
4. Otherwise ``UnknownVariable`` for a known component name, else ``UnknownComponent``.

Values: booleans are normalised to lower-case ``true``/``false`` when read; ``ChargingScheduleAllowedChargingRateUnit``
converts ``Current``<->``A`` and ``Power``<->``W``; writes of measurand lists containing ``Energy.*.Net`` or
``Energy.Apparent.*`` are refused (no 1.6 measurand). ``ConnectorPhaseRotation`` (``0.RST,1.RST,2.RTS``) is split
per connector: entry 0 is ``ChargingStation.PhaseRotation``, entry N is ``EVSE.PhaseRotation`` of N's EVSE (an
entry whose N is not an ASCII number of at most 18 digits is left out of a report: its EVSE id would be out of the
range the gateway carries); a write rebuilds the whole 1.6 list from the configuration snapshot (**verify** that
chargers accept the full list).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from gateway.ocpp.numbers import small_int
from gateway.translate.v16_v201.context import Context
from gateway.translate.v16_v201.transactions import CONNECTOR_STATUS

__all__ = ["KEYS", "KeyEntry", "Resolved", "key_to_device_model", "resolve", "to_16_value", "to_201_value"]

ValueKind = Literal["text", "bool", "rate_unit", "measurands", "phase_rotation"]


@dataclass(frozen=True, slots=True)
class KeyEntry:
    key: str
    component: str
    variable: str
    variable_instance: str | None = None
    readonly: bool = False
    writeonly: bool = False
    kind: ValueKind = "text"
    alias: bool = False  # a read-only second name for the same key (§3.5)


def _e(key: str, cv: str, inst: str | None = None, *, ro: bool = False, kind: ValueKind = "text") -> KeyEntry:
    component, variable = cv.split(".", 1)
    return KeyEntry(key, component, variable, inst, readonly=ro, kind=kind)


def _alias(entry: KeyEntry, cv: str) -> KeyEntry:
    component, variable = cv.split(".", 1)
    return KeyEntry(entry.key, component, variable, None, readonly=True, kind=entry.kind, alias=True)


_BASE = [
    _e("AllowOfflineTxForUnknownId", "AuthCtrlr.OfflineTxForUnknownIdEnabled", kind="bool"),
    _e("AuthorizationCacheEnabled", "AuthCacheCtrlr.Enabled", kind="bool"),
    _e("AuthorizeRemoteTxRequests", "AuthCtrlr.AuthorizeRemoteStart", kind="bool"),
    _e("ClockAlignedDataInterval", "AlignedDataCtrlr.Interval"),
    _e("ConnectionTimeOut", "TxCtrlr.EVConnectionTimeOut"),
    _e("GetConfigurationMaxKeys", "DeviceDataCtrlr.ItemsPerMessage", "GetVariables", ro=True),
    _e("HeartbeatInterval", "OCPPCommCtrlr.HeartbeatInterval"),
    _e("LocalAuthorizeOffline", "AuthCtrlr.LocalAuthorizeOffline", kind="bool"),
    _e("LocalPreAuthorize", "AuthCtrlr.LocalPreAuthorize", kind="bool"),
    _e("MaxEnergyOnInvalidId", "TxCtrlr.MaxEnergyOnInvalidId"),
    _e("MeterValuesAlignedData", "AlignedDataCtrlr.Measurands", kind="measurands"),
    _e("MeterValuesSampledData", "SampledDataCtrlr.TxUpdatedMeasurands", kind="measurands"),
    _e("MeterValueSampleInterval", "SampledDataCtrlr.TxUpdatedInterval"),
    _e("ResetRetries", "OCPPCommCtrlr.ResetRetries"),
    _e("StopTransactionOnEVSideDisconnect", "TxCtrlr.StopTxOnEVSideDisconnect", kind="bool"),
    _e("StopTransactionOnInvalidId", "TxCtrlr.StopTxOnInvalidId", kind="bool"),
    _e("StopTxnAlignedData", "AlignedDataCtrlr.TxEndedMeasurands", kind="measurands"),
    _e("StopTxnSampledData", "SampledDataCtrlr.TxEndedMeasurands", kind="measurands"),
    _e("TransactionMessageAttempts", "OCPPCommCtrlr.MessageAttempts", "TransactionEvent"),
    _e("TransactionMessageRetryInterval", "OCPPCommCtrlr.MessageAttemptInterval", "TransactionEvent"),
    _e("UnlockConnectorOnEVSideDisconnect", "OCPPCommCtrlr.UnlockOnEVSideDisconnect", kind="bool"),
    _e("WebSocketPingInterval", "OCPPCommCtrlr.WebSocketPingInterval"),
    _e("LocalAuthListEnabled", "LocalAuthListCtrlr.Enabled", kind="bool"),
    _e("LocalAuthListMaxLength", "LocalAuthListCtrlr.Entries", ro=True),
    _e("SendLocalListMaxLength", "LocalAuthListCtrlr.ItemsPerMessage", ro=True),
    _e("ReserveConnectorZeroSupported", "ReservationCtrlr.NonEvseSpecific", ro=True, kind="bool"),
    _e("ChargeProfileMaxStackLevel", "SmartChargingCtrlr.ProfileStackLevel", ro=True),
    _e("ChargingScheduleAllowedChargingRateUnit", "SmartChargingCtrlr.RateUnit", ro=True, kind="rate_unit"),
    _e("ChargingScheduleMaxPeriods", "SmartChargingCtrlr.PeriodsPerSchedule", ro=True),
    _e("ConnectorSwitch3to1PhaseSupported", "SmartChargingCtrlr.Phases3to1", ro=True, kind="bool"),
    _e("MaxChargingProfilesInstalled", "SmartChargingCtrlr.Entries", "ChargingProfiles", ro=True),
    _e("AdditionalRootCertificateCheck", "SecurityCtrlr.AdditionalRootCertificateCheck", ro=True, kind="bool"),
    KeyEntry("AuthorizationKey", "SecurityCtrlr", "BasicAuthPassword", writeonly=True),
    _e("CertificateSignedMaxChainSize", "SecurityCtrlr.MaxCertificateChainSize", ro=True),
    _e("CertificateStoreMaxLength", "SecurityCtrlr.CertificateEntries", ro=True),
    _e("CpoName", "SecurityCtrlr.OrganizationName"),
    _e("SecurityProfile", "SecurityCtrlr.SecurityProfile", ro=True),
]
_BY_KEY = {entry.key: entry for entry in _BASE}
KEYS: tuple[KeyEntry, ...] = (
    *_BASE,
    _alias(_BY_KEY["ClockAlignedDataInterval"], "AlignedDataCtrlr.TxEndedInterval"),
    _alias(_BY_KEY["MeterValuesSampledData"], "SampledDataCtrlr.TxStartedMeasurands"),
    _alias(_BY_KEY["MeterValueSampleInterval"], "SampledDataCtrlr.TxEndedInterval"),
)
PHASE_ROTATION = "ConnectorPhaseRotation"
BOOT_FIELDS = ("meterType", "meterSerialNumber", "chargeBoxSerialNumber")
GATEWAY_COMPONENTS = frozenset({"ChargingStation", "Controller", "EVSE", "Connector", "TxCtrlr"})
KNOWN_COMPONENTS = frozenset({e.component for e in KEYS} | GATEWAY_COMPONENTS | {"OCPP16"})
_UNMAPPABLE_MEASURANDS = ("Energy.Active.Net", "Energy.Reactive.Net", "Energy.Apparent.")


@dataclass(frozen=True, slots=True)
class Resolved:
    """Where a 2.0.1 (component, variable) leads."""

    outcome: Literal["key", "gateway", "UnknownComponent", "UnknownVariable"]
    key: str = ""  # outcome "key": the 1.6 key
    entry: KeyEntry | None = None
    connector: int | None = None  # ConnectorPhaseRotation: the 1.6 connector (0: station)
    value: str | None = None  # outcome "gateway": the answer


def _evse_id(component: Mapping[str, Any]) -> tuple[int, int | None] | None:
    evse = component.get("evse")
    if not isinstance(evse, Mapping):
        return None
    return int(evse["id"]), evse.get("connectorId")


def _availability(ctx: Context, connectors: list[int]) -> str:
    states = [
        CONNECTOR_STATUS.get(str((ctx.state.connector_status.get(c) or {}).get("status")), "") for c in connectors
    ]
    states = [s for s in states if s]
    for value in ("Faulted", "Unavailable", "Occupied", "Reserved"):
        if value in states:
            return value
    return "Available"


def gateway_value(ctx: Context, component: Mapping[str, Any], variable: Mapping[str, Any]) -> str | None:
    """The value of a gateway-answered read-only variable, None when (component, variable) is not one."""
    name, var = str(component.get("name")), str(variable.get("name"))
    if component.get("instance") is not None or variable.get("instance") is not None:
        return None
    boot = ctx.state.boot or {}
    evse = _evse_id(component)
    if name == "ChargingStation" and evse is None:
        if var in ("Model", "VendorName", "SerialNumber"):
            field = {"Model": "chargePointModel", "VendorName": "chargePointVendor"}.get(var)
            value = (
                boot.get(field) if field else boot.get("chargePointSerialNumber") or boot.get("chargeBoxSerialNumber")
            )
            return str(value) if value is not None else None
        if var == "AvailabilityState":
            status = str((ctx.state.connector_status.get(0) or {}).get("status", "Available"))
            return status if status in ("Available", "Unavailable", "Faulted") else "Available"
    if name == "Controller" and evse is None and var == "FirmwareVersion" and "firmwareVersion" in boot:
        return str(boot["firmwareVersion"])
    if name == "TxCtrlr" and evse is None and var in ("TxStartPoint", "TxStopPoint"):
        return "PowerPathClosed" if var == "TxStartPoint" else "EVConnected,Authorized"
    if var == "AvailabilityState" and evse is not None:
        if name == "EVSE" and evse[1] is None and ctx.connectors_of(evse[0]):
            return _availability(ctx, ctx.connectors_of(evse[0]))
        connector = ctx.connector_of(evse[0], evse[1]) if evse[1] is not None else None
        if name == "Connector" and connector:
            return _availability(ctx, [connector])
    return None


def resolve(ctx: Context, component: Mapping[str, Any], variable: Mapping[str, Any]) -> Resolved:
    name, var = str(component.get("name")), str(variable.get("name"))
    comp_inst, var_inst = component.get("instance"), variable.get("instance")
    evse = _evse_id(component)
    if name == "OCPP16":
        if comp_inst is not None or evse is not None or var_inst is not None:
            return Resolved("UnknownComponent")
        if var in BOOT_FIELDS:
            value = (ctx.state.boot or {}).get(var)
            return Resolved("gateway", value=str(value)) if value is not None else Resolved("UnknownVariable")
        return Resolved("key", key=var, entry=_BY_KEY.get(var))
    if var == "PhaseRotation" and comp_inst is None and var_inst is None:
        if name == "ChargingStation" and evse is None:
            return Resolved("key", key=PHASE_ROTATION, connector=0)
        if name == "EVSE" and evse is not None and evse[1] is None:
            connector = ctx.connector_of(evse[0], None)
            if connector:
                return Resolved("key", key=PHASE_ROTATION, connector=connector)
    if comp_inst is None and evse is None:
        for entry in KEYS:
            if (entry.component, entry.variable, entry.variable_instance) == (name, var, var_inst):
                return Resolved("key", key=entry.key, entry=entry)
    value = gateway_value(ctx, component, variable)
    if value is not None:
        return Resolved("gateway", value=value)
    return Resolved("UnknownVariable" if name in KNOWN_COMPONENTS else "UnknownComponent")


def to_201_value(entry: KeyEntry | None, value: str) -> str:
    """A 1.6 configuration value as the 2.0.1 variable's value."""
    kind = entry.kind if entry else "text"
    if kind == "bool" and value.strip().lower() in ("true", "false"):
        return value.strip().lower()
    if kind == "rate_unit":
        names = {"current": "A", "power": "W"}
        return ",".join(names.get(part.strip().lower(), part.strip()) for part in value.split(","))
    return value


def to_16_value(entry: KeyEntry | None, value: str) -> str | None:
    """A 2.0.1 value for the 1.6 key; None when it cannot be expressed."""
    kind = entry.kind if entry else "text"
    if kind == "bool":
        lowered = value.strip().lower()
        return lowered if lowered in ("true", "false") else None
    if kind == "measurands":
        parts = [p.strip() for p in value.split(",") if p.strip()]
        if any(p.startswith(_UNMAPPABLE_MEASURANDS) for p in parts):
            return None
        return ",".join(parts)
    if kind == "rate_unit":
        names = {"A": "Current", "W": "Power"}
        units = [names.get(p.strip()) for p in value.split(",")]
        return ",".join(u for u in units if u) if None not in units else None
    return value


def phase_rotation_part(value: str, connector: int) -> str | None:
    for part in value.split(","):
        number, _, rotation = part.strip().partition(".")
        if number.strip() == str(connector):
            return rotation.strip()
    return None


def phase_rotation_with(value: str, connector: int, rotation: str) -> str:
    parts = [p.strip() for p in value.split(",") if p.strip()]
    kept = [p for p in parts if p.partition(".")[0].strip() != str(connector)]
    kept.append(f"{connector}.{rotation}")
    return ",".join(sorted(kept, key=lambda p: (not p.partition(".")[0].isdigit(), p.partition(".")[0].zfill(4))))


def key_to_device_model(
    ctx: Context, key: str, value: str | None
) -> list[tuple[dict[str, Any], dict[str, Any], str | None]]:
    """Report entries (component, variable, 2.0.1 value) for one 1.6 key (reverse of :func:`resolve`)."""
    entry = _BY_KEY.get(key)
    if key == PHASE_ROTATION and value is not None:
        out: list[tuple[dict[str, Any], dict[str, Any], str | None]] = []
        for part in value.split(","):
            number, _, rotation = part.strip().partition(".")
            connector = small_int(number.strip())
            if connector is None:
                continue
            if connector == 0:
                out.append(({"name": "ChargingStation"}, {"name": "PhaseRotation"}, rotation.strip()))
            else:
                out.append(
                    (
                        {"name": "EVSE", "evse": {"id": ctx.evse_of(connector)[0]}},
                        {"name": "PhaseRotation"},
                        rotation.strip(),
                    )
                )
        if out:
            return out
    if entry is None:
        return [({"name": "OCPP16"}, {"name": key}, value)]
    variable: dict[str, Any] = {"name": entry.variable}
    if entry.variable_instance:
        variable["instance"] = entry.variable_instance
    return [
        ({"name": entry.component}, variable, None if entry.writeonly or value is None else to_201_value(entry, value))
    ]
