"""GetConfiguration and ChangeConfiguration from a 1.6 CSMS toward a 2.0.1 charger (ocpp-translation.md §4.4, §3.5).

The key table is set-up A's (:data:`gateway.translate.v16_v201.config_keys.KEYS`), read backwards: a 1.6 key becomes
its 2.0.1 (component, variable); a key the table does not know goes through the escape hatch (component
``OCPP16``, variable = the key), which a 2.0.1 station normally answers ``UnknownComponent`` (-> ``unknownKey``).

**Decision (differs from the reference, which suggests GetBaseReport + waiting for NotifyReport):** GetConfiguration
becomes GetVariables, with or without ``key``. GetVariables is mandatory for every 2.0.1 station, answers in its
CALLRESULT and so stays inside the one-plan model (a CSMS CALL -> the charger CALLs -> one answer). A report would
need NotifyReport CALLs from the charger to be correlated with a CSMS CALL still waiting for its answer, a timeout
for a report that never ends, and would return variables the 1.6 CSMS cannot name anyway.

GetConfiguration:

* With ``key``: each key is read through its table entry (or the escape hatch); the items of all keys go out in
  GetVariables CALLs of at most ``Options.variables_per_message`` items (several CALLs in one plan, one at a time).
  A key whose items came back ``Accepted`` -> ``configurationKey`` {``key``, ``value`` converted to its 1.6 form,
  ``readonly``}; anything else (``UnknownComponent``, ``UnknownVariable``, ``Rejected``, ...) -> ``unknownKey``.
  Repeated keys are answered once.
* Without ``key`` (or an empty list): every key of the table, plus the derived keys below; keys the charger does not
  answer ``Accepted`` are left out (the CSMS did not name them, so they are not ``unknownKey``).
* ``readonly``: from the table, or when the 1.6 specification defines the key read-only (:data:`READONLY_16`); else
  false (GetVariables does not return mutability; the ``*MaxLength`` keys reached through ``OCPP16`` are read-only by
  the 1.6 specification).
* Values: booleans lower-case ``true``/``false``; ``ChargingScheduleAllowedChargingRateUnit`` ``A``/``W`` ->
  ``Current``/``Power``; measurand lists lose the measurands 1.6 does not have (``Energy.*.Net``,
  ``Energy.Apparent.*``; counted ``measurand_not_in_16``); everything else is copied.
* A value longer than 1.6's 500 characters: the key stays in ``configurationKey`` without ``value`` (it exists, its
  value cannot be carried; an absent value is not an empty one), counted ``value_too_long`` (**decision**).
* Read values are cached in ``state.variables`` (key -> {value, readonly}); AuthorizationKey never is. The cached
  ``GetConfigurationMaxKeys`` (the charger's ``DeviceDataCtrlr.ItemsPerMessage`` for GetVariables, as §4.4 asks)
  lowers the chunk size when it is smaller than ``variables_per_message``; a value that is not a plain ASCII number
  of at most 18 digits (``gateway.ocpp.numbers.small_int``: ``"²".isdigit()`` is true and ``int()`` of a
  5,000-digit text raises) is no limit.

Derived and gateway-answered keys (**decisions**):

* ``ConnectorPhaseRotation``: ``ChargingStation.PhaseRotation`` (entry ``0``) and ``EVSE.PhaseRotation`` of every
  EVSE the gateway knows (the connector map, else the connector statuses seen), rebuilt as ``0.RST,1.RST,...`` with
  one entry per 1.6 connector of the EVSE. A write is split back into one SetVariables item per entry (one CALL);
  an entry whose connector is not an ASCII number of at most 18 digits is malformed (``Rejected``): its EVSE id
  would be out of the range the gateway carries, or ``int()`` would raise.
* ``NumberOfConnectors``: answered by the gateway from the connector map, else the connectors whose status the
  charger reported; nothing known -> ``unknownKey``. 2.0.1 has no such variable.
* ``SupportedFeatureProfiles``: ``Core,FirmwareManagement,RemoteTrigger`` (functions every 2.0.1 station has) plus
  ``LocalAuthListManagement`` / ``Reservation`` / ``SmartCharging`` when ``LocalAuthListCtrlr`` /
  ``ReservationCtrlr`` / ``SmartChargingCtrlr`` ``Available`` reads ``true`` (**verify**: these ``Available``
  variables are optional in 2.0.1, so a station that omits them is reported without the profile).
* ``AuthorizationKey`` (a password, ``SecurityCtrlr.BasicAuthPassword`` which is WriteOnly in 2.0.1): never read from
  the charger. Named explicitly it is answered ``configurationKey`` {key, readonly false} without value (1.6 security
  whitepaper: the value is never returned); the full listing leaves it out. A ChangeConfiguration is forwarded as
  set-up A forwards it (value copied, neither logged nor cached nor counted with its value; the edge's password
  rotation rule sees the CSMS frame before the translator does).

ChangeConfiguration -> SetVariables with one item (several only for ``ConnectorPhaseRotation``): value converted to
the 2.0.1 form (booleans lower-case, ``Current``/``Power`` -> ``A``/``W``); ``Accepted``/``Rejected``/
``RebootRequired`` copied; ``UnknownComponent``/``UnknownVariable``/``NotSupportedAttributeType`` -> ``NotSupported``
(several items: all ``Accepted`` -> ``Accepted``, else any ``Rejected`` -> ``Rejected``, else any ``RebootRequired``
-> ``RebootRequired``, else ``NotSupported``). Keys read-only by the table or the 1.6 specification -> ``Rejected``
without asking (the 2.0.1 counterpart is ReadOnly too, or does not exist). ``SecurityProfile`` is read-write in the
1.6 whitepaper but ``SecurityCtrlr.SecurityProfile`` is ReadOnly in 2.0.1 (changed through SetNetworkProfile, which
a 1.6 CSMS cannot send): ``Rejected`` too, and reported ``readonly`` true. A CALLERROR from the charger ends the
plan with the mapped CALLERROR.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.ocpp.numbers import small_int
from gateway.translate.base import JsonDict, OutCall, Plan
from gateway.translate.v16_v201.config_keys import KEYS, PHASE_ROTATION, KeyEntry, to_16_value, to_201_value
from gateway.translate.v201_v16.context import Context, local

__all__ = ["READONLY_16", "change_configuration", "get_configuration"]

VALUE_MAX = 500  # 1.6 configuration value
ESCAPE = "OCPP16"
AUTHORIZATION_KEY = "AuthorizationKey"
NUMBER_OF_CONNECTORS = "NumberOfConnectors"
FEATURE_PROFILES = "SupportedFeatureProfiles"
#: keys the 1.6 specification (core and security whitepaper) defines read-only
READONLY_16 = frozenset(
    {
        "AdditionalRootCertificateCheck", "CertificateSignedMaxChainSize", "CertificateStoreMaxLength",
        "ChargeProfileMaxStackLevel", "ChargingScheduleAllowedChargingRateUnit", "ChargingScheduleMaxPeriods",
        "ConnectorPhaseRotationMaxLength", "ConnectorSwitch3to1PhaseSupported", "GetConfigurationMaxKeys",
        "LocalAuthListMaxLength", "MaxChargingProfilesInstalled", "MeterValuesAlignedDataMaxLength",
        "MeterValuesSampledDataMaxLength", "NumberOfConnectors", "ReserveConnectorZeroSupported",
        "SendLocalListMaxLength", "StopTxnAlignedDataMaxLength", "StopTxnSampledDataMaxLength",
        "SupportedFeatureProfiles", "SupportedFeatureProfilesMaxLength",
    }
)  # fmt: skip
#: 1.6 key -> its table entry (the read-only second names of set-up A are 2.0.1-side aliases: not used here)
ENTRIES: dict[str, KeyEntry] = {entry.key: entry for entry in KEYS if not entry.alias}
#: optional 1.6 feature profile -> the 2.0.1 controller whose ``Available`` variable says it is there
OPTIONAL_PROFILES = (
    ("LocalAuthListManagement", "LocalAuthListCtrlr"),
    ("Reservation", "ReservationCtrlr"),
    ("SmartCharging", "SmartChargingCtrlr"),
)

Item = tuple[JsonDict, JsonDict]  # (component, variable)


@dataclass(frozen=True, slots=True)
class KeyRead:
    """How one 1.6 key is read: the 2.0.1 items to ask and how their values make the 1.6 value."""

    key: str
    items: tuple[Item, ...]
    #: the values of ``items`` in order (None: not Accepted) -> the 1.6 value; None: the key is unknown
    combine: Callable[[list[str | None]], str | None]
    readonly: bool
    hidden: bool = False  # answered without value (AuthorizationKey)


def ident(component: Mapping[str, Any], variable: Mapping[str, Any]) -> str:
    """A comparable name of a (component, variable) pair, to match GetVariables results to what was asked."""
    evse = component.get("evse") or {}
    return json.dumps(
        [
            component.get("name"),
            component.get("instance"),
            evse.get("id"),
            evse.get("connectorId"),
            variable.get("name"),
            variable.get("instance"),
        ]
    )


def _variable(entry: KeyEntry) -> JsonDict:
    variable: JsonDict = {"name": entry.variable}
    if entry.variable_instance:
        variable["instance"] = entry.variable_instance
    return variable


def _readonly(key: str) -> bool:
    entry = ENTRIES.get(key)
    return key in READONLY_16 or (entry is not None and entry.readonly)


def value_to_16(ctx: Context, entry: KeyEntry | None, value: str) -> str:
    """A 2.0.1 variable value as the 1.6 key's value (read direction: never refused, unmappable parts dropped)."""
    kind = entry.kind if entry else "text"
    if kind == "measurands":
        parts = [p.strip() for p in value.split(",") if p.strip()]
        kept = [p for p in parts if to_16_value(entry, p) is not None]
        if len(kept) < len(parts):
            ctx.drop("GetConfiguration", "measurand_not_in_16")
        return ",".join(kept)
    if kind == "rate_unit":
        names = {"A": "Current", "W": "Power"}
        return ",".join(names[p.strip()] for p in value.split(",") if p.strip() in names)
    converted = to_16_value(entry, value)
    return value if converted is None else converted


def evse_connectors(ctx: Context) -> dict[int, list[int]]:
    """2.0.1 EVSE id -> its 1.6 connectors, from the connector map, else from the connector statuses seen."""
    out: dict[int, list[int]] = {}
    if ctx.options.connector_map:
        for connector, (evse, _) in sorted(ctx.options.connector_map.items()):
            out.setdefault(evse, []).append(connector)
        return out
    for name in ctx.state.connector_status:
        evse_text, _, connector_text = name.partition(".")
        if not (evse_text.isdigit() and connector_text.isdigit()) or int(evse_text) < 1:
            continue
        mapped = ctx.connector_of(int(evse_text), int(connector_text))
        if mapped:
            found = out.setdefault(int(evse_text), [])
            if mapped not in found:
                found.append(mapped)
    return {evse: sorted(found) for evse, found in sorted(out.items())}


# -- reading ---------------------------------------------------------------------------------------------------


def _phase_rotation(ctx: Context) -> KeyRead:
    evses = evse_connectors(ctx)
    items: list[Item] = [({"name": "ChargingStation"}, {"name": "PhaseRotation"})]
    items += [({"name": "EVSE", "evse": {"id": evse}}, {"name": "PhaseRotation"}) for evse in evses]

    def combine(values: list[str | None]) -> str | None:
        parts = [f"0.{values[0]}"] if values[0] else []
        for connectors, value in zip(evses.values(), values[1:], strict=True):
            if value:
                parts += [f"{connector}.{value}" for connector in connectors]
        return ",".join(parts) if parts else None

    return KeyRead(PHASE_ROTATION, tuple(items), combine, readonly=False)


def _feature_profiles() -> KeyRead:
    items = tuple(({"name": controller}, {"name": "Available"}) for _, controller in OPTIONAL_PROFILES)

    def combine(values: list[str | None]) -> str:
        optional = [
            name for (name, _), value in zip(OPTIONAL_PROFILES, values, strict=True) if (value or "").lower() == "true"
        ]
        return ",".join(["Core", "FirmwareManagement", *optional, "RemoteTrigger"])

    return KeyRead(FEATURE_PROFILES, items, combine, readonly=True)


def key_read(ctx: Context, key: str) -> KeyRead:
    """How the 1.6 ``key`` is read from a 2.0.1 charger."""
    if key == PHASE_ROTATION:
        return _phase_rotation(ctx)
    if key == FEATURE_PROFILES:
        return _feature_profiles()
    if key == NUMBER_OF_CONNECTORS:
        count = sum(len(c) for c in evse_connectors(ctx).values())
        return KeyRead(key, (), lambda values: str(count) if count else None, readonly=True)
    if key == AUTHORIZATION_KEY:
        return KeyRead(key, (), lambda values: "", readonly=False, hidden=True)
    entry = ENTRIES.get(key)
    if entry is None:
        item: Item = ({"name": ESCAPE}, {"name": key})
    else:
        item = ({"name": entry.component}, _variable(entry))
    return KeyRead(
        key,
        (item,),
        lambda values: None if values[0] is None else value_to_16(ctx, entry, values[0]),
        readonly=_readonly(key),
    )


def all_keys() -> list[str]:
    """The keys of a GetConfiguration without ``key``: the table's, then the derived ones (never AuthorizationKey)."""
    keys = [key for key in ENTRIES if key != AUTHORIZATION_KEY]
    return [*keys, PHASE_ROTATION, NUMBER_OF_CONNECTORS, FEATURE_PROFILES]


def _chunk_size(ctx: Context) -> int:
    """Items per GetVariables: ``variables_per_message``, or the charger's own limit when read before and smaller."""
    size = max(1, ctx.options.variables_per_message)
    cached = small_int(str((ctx.state.variables.get("GetConfigurationMaxKeys") or {}).get("value") or ""))
    return min(size, cached) if cached else size


def get_configuration(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    asked: list[str] = list(dict.fromkeys(payload.get("key") or []))
    explicit = bool(asked)
    reads = [key_read(ctx, key) for key in (asked or all_keys())]
    items: dict[str, Item] = {}
    for read in reads:
        for component, variable in read.items:
            items.setdefault(ident(component, variable), (component, variable))
    size = _chunk_size(ctx)
    listed = list(items.values())
    chunks = [listed[i : i + size] for i in range(0, len(listed), size)]

    def answer(values: Mapping[str, str]) -> JsonDict:
        known: list[JsonDict] = []
        unknown: list[str] = []
        for read in reads:
            value = read.combine([values.get(ident(c, v)) for c, v in read.items])
            if value is None:
                if explicit:
                    unknown.append(read.key)
                continue
            entry: JsonDict = {"key": read.key, "readonly": read.readonly}
            known.append(entry)
            if read.hidden:
                continue
            if len(value) > VALUE_MAX:
                ctx.drop("GetConfiguration", "value_too_long")
            else:
                entry["value"] = value
            ctx.state.variables[read.key] = {"value": entry.get("value"), "readonly": read.readonly}
        result: JsonDict = {}
        if known:
            result["configurationKey"] = known
        if unknown:
            result["unknownKey"] = unknown
        return result

    if not chunks:
        return local(answer({}), "answered_from_state")
    calls = [
        OutCall("GetVariables", {"getVariableData": [{"component": c, "variable": v} for c, v in chunk]})
        for chunk in chunks
    ]

    def finish(answers: list[JsonDict]) -> JsonDict:
        values: dict[str, str] = {}
        for got in answers:
            for result in got.get("getVariableResult") or []:
                if result.get("attributeStatus") == "Accepted" and result.get("attributeType", "Actual") == "Actual":
                    values[ident(result["component"], result["variable"])] = str(result.get("attributeValue", ""))
        return answer(values)

    return Plan(calls=calls, finish=finish)


# -- writing ---------------------------------------------------------------------------------------------------

SET_STATUS = {
    "Accepted": "Accepted",
    "Rejected": "Rejected",
    "RebootRequired": "RebootRequired",
    "UnknownComponent": "NotSupported",
    "UnknownVariable": "NotSupported",
    "NotSupportedAttributeType": "NotSupported",
}


def _merge_set(statuses: list[str]) -> str:
    if len(set(statuses)) == 1:
        return statuses[0]
    if all(s in ("Accepted", "RebootRequired") for s in statuses):
        return "RebootRequired"
    return "Rejected" if "Rejected" in statuses or "Accepted" in statuses else "NotSupported"


def _phase_rotation_items(ctx: Context, value: str) -> list[JsonDict] | None:
    """``0.RST,1.RTS`` -> SetVariables items; None when an entry names no known connector or is malformed."""
    items: list[JsonDict] = []
    for part in value.split(","):
        number, dot, rotation = part.strip().partition(".")
        connector = small_int(number.strip())
        if not dot or connector is None or not rotation.strip():
            return None
        component: JsonDict = (
            {"name": "ChargingStation"}
            if connector == 0
            else {"name": "EVSE", "evse": {"id": ctx.evse_of(connector)[0]}}
        )
        items.append(
            {"attributeValue": rotation.strip(), "component": component, "variable": {"name": "PhaseRotation"}}
        )
    return items or None


def change_configuration(ctx: Context, payload: Mapping[str, Any]) -> Plan:
    key, value = str(payload["key"]), str(payload["value"])
    if _readonly(key):
        return local({"status": "Rejected"}, "read_only_key")
    entry = ENTRIES.get(key)
    if key == PHASE_ROTATION:
        items = _phase_rotation_items(ctx, value)
        if items is None:
            return local({"status": "Rejected"}, "invalid_value")
    elif entry is None:
        items = [{"attributeValue": value, "component": {"name": ESCAPE}, "variable": {"name": key}}]
    else:
        items = [
            {
                "attributeValue": to_201_value(entry, value),
                "component": {"name": entry.component},
                "variable": _variable(entry),
            }
        ]

    def finish(answers: list[JsonDict]) -> JsonDict:
        results = answers[0].get("setVariableResult") or []
        statuses = [SET_STATUS.get(str(r.get("attributeStatus")), "Rejected") for r in results] or ["Rejected"]
        status = _merge_set(statuses)
        if status in ("Accepted", "RebootRequired") and key != AUTHORIZATION_KEY:
            ctx.state.variables[key] = {"value": value, "readonly": False}
        return {"status": status}

    return Plan(calls=[OutCall("SetVariables", {"setVariableData": items})], finish=finish)
