"""Making a 2.1 message a 2.0.1 one: the fields 2.1 added are dropped, the values 2.0.1 has no form for are mapped
or their item dropped, everything else is left alone (not copied).

The fields come from the schemas (:mod:`gateway.translate.v21_v201.fields`, generated); what becomes of each 2.1-only
*value* is decided here, in :data:`VALUE_RULES` (every enumerated field whose 2.1 values 2.0.1 lacks, in the
messages that travel from the 2.1 charger to the 2.0.1 CSMS: its requests, and its answers to the CSMS's CALLs), or
excused in :data:`NOT_MAPPED` with the reason. ``tests/unit/test_translate_v21_v201.py`` checks that the two cover
every such field the schemas name, so a new ``ocpp`` release cannot add a value that slips through.

A :class:`Values` rule names 2.0.1's values (``allowed``: left as they are), maps 2.1's to 2.0.1's (``mapping``),
and says what a value with no 2.0.1 form does (``unmapped``):

* ``"item"``: the enclosing array element is dropped (a sampled value of a measurand 2.0.1 does not have); an array
  left empty is itself dropped, or, when 2.0.1 requires it, its own enclosing element (a ``meterValue`` without
  sampled values); at the top of the message the message cannot be translated (:class:`Uncarriable`);
* ``"parent"``: the enclosing object is dropped (a TransactionEvent's ``idToken`` of a type 2.0.1 does not name);
* ``"message"``: the message cannot be translated (:class:`Uncarriable`; the translator answers per its policy).

``fallback`` maps any other value (a field 2.1 made a free string, such as ``chargingLimitSource``: "Other").

Cost: :func:`to_v201` walks only the rule tree of the message's (action, kind) and only the keys present; nothing is
copied unless something below it changed (copy on write), so a message without 2.1 additions is returned as it is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from gateway.translate.v21_v201.fields import ADDED_FIELDS, NEW_VALUES, REQUIRED_ARRAYS, V201_ENUMS

__all__ = ["NOT_MAPPED", "VALUE_RULES", "Uncarriable", "Values", "to_v201"]

Unmapped = Literal["item", "parent", "message"]


@dataclass(frozen=True, slots=True)
class Values:
    """What becomes of the 2.1 values of one enumerated field (see the module docstring)."""

    mapping: Mapping[str, str] = field(default_factory=dict)
    unmapped: Unmapped = "message"
    fallback: str | None = None
    allowed: frozenset[str] = frozenset()  # filled from fields.V201_ENUMS when the rules are built


class Uncarriable(Exception):
    """The message holds a value that 2.0.1 has no form for, and nothing smaller can be dropped instead."""

    def __init__(self, path: str, value: object) -> None:
        super().__init__(f"{path}: {value!r} has no OCPP 2.0.1 form")
        self.path = path
        self.value = value


#: 2.1 measurands 2.0.1 does not have: their sampled values are dropped (no 2.0.1 measurand means the same)
_SAMPLE = Values(unmapped="item", mapping={})
_LOCATION = Values(mapping={"Upstream": "Inlet"})  # 2.1 Upstream: measured on the grid side, 2.0.1 Inlet likewise
#: 2.1 idToken types (a free string of up to 20): EVCCID is the EV's MAC address (ISO 15118), which 2.0.1 names
#: MacAddress; DirectPayment, NEVI, VIN and any other type have no 2.0.1 form
_ID_TOKEN_TYPE = {"EVCCID": "MacAddress"}

#: (action, kind) -> path -> what becomes of 2.1's values there (charger requests; its answers to CSMS CALLs)
VALUE_RULES: dict[tuple[str, str], dict[str, Values]] = {
    ("Authorize", "request"): {"idToken.type": Values(_ID_TOKEN_TYPE, "message")},
    ("ClearDisplayMessage", "response"): {"status": Values({"Rejected": "Unknown"})},
    ("ClearedChargingLimit", "request"): {"chargingLimitSource": Values(fallback="Other")},
    ("GetInstalledCertificateIds", "response"): {"certificateHashDataChain[].certificateType": Values(unmapped="item")},
    ("MeterValues", "request"): {
        "meterValue[].sampledValue[].measurand": _SAMPLE,
        "meterValue[].sampledValue[].location": _LOCATION,
    },
    ("NotifyChargingLimit", "request"): {"chargingLimit.chargingLimitSource": Values(fallback="Other")},
    ("NotifyDisplayMessages", "request"): {
        "messageInfo[].state": Values({"Discharging": "Charging", "Suspended": "Idle"}),
        "messageInfo[].message.format": Values(unmapped="item"),  # QRCODE: no 2.0.1 format shows it
    },
    ("NotifyEVChargingNeeds", "request"): {"chargingNeeds.requestedEnergyTransfer": Values()},  # V2X, DER, WPT
    ("NotifyMonitoringReport", "request"): {"monitor[].variableMonitoring[].type": Values(unmapped="item")},
    ("ReportChargingProfiles", "request"): {
        "chargingLimitSource": Values(fallback="Other"),
        "chargingProfile[].chargingProfilePurpose": Values(unmapped="item"),
        "chargingProfile[].chargingProfileKind": Values(unmapped="item"),
    },
    ("ReservationStatusUpdate", "request"): {"reservationUpdateStatus": Values({"NoTransaction": "Expired"})},
    ("SetDisplayMessage", "response"): {"status": Values({"LanguageNotSupported": "Rejected"})},
    ("SignCertificate", "request"): {"certificateType": Values()},  # V2G20Certificate
    ("TransactionEvent", "request"): {
        "meterValue[].sampledValue[].measurand": _SAMPLE,
        "meterValue[].sampledValue[].location": _LOCATION,
        "triggerReason": Values(
            {
                "CostLimitReached": "EnergyLimitReached",  # a limit of the transaction was reached
                "SoCLimitReached": "EnergyLimitReached",
                "LimitSet": "ChargingRateChanged",
                "OperationModeChanged": "ChargingRateChanged",
                "TariffChanged": "ChargingRateChanged",
                "RunningCost": "MeterValuePeriodic",  # a periodic update (its costDetails are dropped)
                "TariffNotAccepted": "Deauthorized",  # the driver did not accept the tariff: no authorization
                "TxResumed": "ChargingStateChanged",  # resumed after a reset or an outage
            }
        ),
        "transactionInfo.stoppedReason": Values({"ReqEnergyTransferRejected": "Other"}),
        "idToken.type": Values(_ID_TOKEN_TYPE, "parent"),  # the event goes on without the idToken (counted)
    },
}

#: (action, kind) -> path -> why 2.1's new values there need no rule
NOT_MAPPED: dict[tuple[str, str], dict[str, str]] = {
    ("SetVariableMonitoring", "response"): {
        "setMonitoringResult[].type": "echoes the request's type: a 2.0.1 CSMS never asks for TargetDelta",
    },
}

# ---------------------------------------------------------------------------------------------------------------
# the rule trees: path segments -> None (a 2.1-only field: dropped) | Values | a subtree; "[]" marks an array

Tree = dict[str, Any]
_ARRAY = "[]"
_REQUIRED = "required"  # in an array node: 2.0.1 requires the array (never empty)


def _insert(tree: Tree, path: str, leaf: object, required: frozenset[str]) -> None:
    node = tree
    parts = path.split(".")
    walked: list[str] = []
    for i, part in enumerate(parts):
        name, is_array = (part[:-2], True) if part.endswith(_ARRAY) else (part, False)
        walked.append(name)
        last = i == len(parts) - 1
        if last and not is_array:
            node[name] = leaf
            return
        child = node.setdefault(name, {})
        assert type(child) is dict, f"{path}: a rule inside a field that is dropped whole"
        if is_array:
            child[_REQUIRED] = ".".join(walked) in required
            node = child.setdefault(_ARRAY, {})
        else:
            node = child
        walked[-1] = part


def _build() -> dict[tuple[str, str], Tree]:
    trees: dict[tuple[str, str], Tree] = {}
    for key in sorted(set(ADDED_FIELDS) | set(VALUE_RULES)):
        required = frozenset(REQUIRED_ARRAYS.get(key, ()))
        tree: Tree = {}
        for path in ADDED_FIELDS.get(key, ()):
            _insert(tree, path, None, required)
        for path, rule in VALUE_RULES.get(key, {}).items():
            allowed = frozenset(V201_ENUMS.get(key, {}).get(path, ()))
            _insert(tree, path, Values(rule.mapping, rule.unmapped, rule.fallback, allowed), required)
        trees[key] = tree
    return trees


#: (action, kind) -> rule tree; a message whose (action, kind) is not here is the same in both versions
TREES: dict[tuple[str, str], Tree] = _build()
#: the keys of NEW_VALUES the rules cover (for the consistency test)
COVERED = {k: set(VALUE_RULES.get(k, {})) | set(NOT_MAPPED.get(k, {})) for k in NEW_VALUES}


class _DropItem(Exception):
    """Raised inside an array element: drop that element."""

    def __init__(self, what: str) -> None:
        self.what = what


class _DropParent(Exception):
    """Raised inside an object: drop that object from its parent."""

    def __init__(self, what: str) -> None:
        self.what = what


_GONE = object()


def to_v201(action: str, kind: str, payload: dict[str, Any], dropped: list[str]) -> dict[str, Any]:
    """``payload`` (2.1) as 2.0.1 says it: the same object when nothing had to change. ``dropped`` gets what was
    lost (a field's name, ``name=value`` of a mapped value, the value of an element dropped for it). Raises
    :class:`Uncarriable` when a value has no 2.0.1 form and nothing smaller can go instead."""
    tree = TREES.get((action, kind))
    if tree is None:
        return payload
    try:
        return _object(payload, tree, "", dropped)
    except (_DropItem, _DropParent) as e:
        raise Uncarriable(e.what, None) from None


def _object(obj: dict[str, Any], tree: Tree, path: str, dropped: list[str]) -> dict[str, Any]:
    out = obj
    for name, rule in tree.items():
        if name not in obj:
            continue
        value = obj[name]
        new: object
        if rule is None:
            new = _GONE
            dropped.append(name)
        elif type(rule) is Values:
            new = _value(value, rule, name, path, dropped)
        elif _ARRAY in rule:
            new = _array(value, rule, path + name, dropped)
        else:
            try:
                new = _object(value, rule, f"{path}{name}.", dropped)
            except _DropParent as e:
                dropped.append(e.what)
                new = _GONE
        if new is value:
            continue
        if out is obj:
            out = dict(obj)
        if new is _GONE:
            del out[name]
        else:
            out[name] = new
    return out


def _value(value: object, rule: Values, name: str, path: str, dropped: list[str]) -> object:
    if value in rule.allowed:
        return value
    mapped = rule.mapping.get(value) if isinstance(value, str) else None
    if mapped is None:
        mapped = rule.fallback
    if mapped is not None:
        dropped.append(f"{name}={value}")
        return mapped
    if rule.unmapped == "item":
        raise _DropItem(str(value))
    if rule.unmapped == "parent":
        raise _DropParent(f"{path.rstrip('.').rsplit('.', 1)[-1] or name} ({name} {value})")
    raise Uncarriable(path + name, value)


def _array(items: list[Any], rule: Tree, path: str, dropped: list[str]) -> object:
    sub = rule[_ARRAY]
    out: list[Any] | None = None
    for i, item in enumerate(items):
        try:
            new = _object(item, sub, path + "[].", dropped) if type(item) is dict else item
        except _DropItem as e:
            dropped.append(e.what)
            new = _GONE
        if new is not item and out is None:
            out = items[:i]
        if out is not None and new is not _GONE:
            out.append(new)
    if out is None:
        return items
    if out:
        return out
    if rule[_REQUIRED]:
        raise _DropItem(path.rsplit(".", 1)[-1] + " emptied")  # 2.0.1 requires the array: its element goes too
    return _GONE


# ---------------------------------------------------------------------------------------------------------------
# what README shows (tests/unit/test_readme.py keeps it in step)


def _to_csms(action: str, kind: str) -> bool:
    from gateway.translate.v21_v201.policy import V201_STATION_ACTIONS

    return action == "DataTransfer" or (kind == "request") == (action in V201_STATION_ACTIONS)


def field_rows() -> list[tuple[str, str]]:
    """(message, the 2.1 fields dropped from it) for every message that travels from the charger to the CSMS."""
    rows = []
    for (action, kind), paths in ADDED_FIELDS.items():
        if not _to_csms(action, kind):
            continue
        groups: dict[str, list[str]] = {}
        for path in paths:
            parent, _, name = path.rpartition(".")
            groups.setdefault(parent, []).append(name)
        said = [(f"{parent}: " if parent else "") + ", ".join(names) for parent, names in groups.items()]
        rows.append((f"{action} ({kind})", "; ".join(said)))
    return rows


def value_rows() -> list[tuple[str, str]]:
    """(message, what becomes of its 2.1 values) for every message with a :data:`VALUE_RULES` entry."""
    rows = []
    for (action, kind), per_path in VALUE_RULES.items():
        parts = []
        for path, rule in per_path.items():
            said = [f"{v} -> {m}" for v, m in rule.mapping.items()]
            new = NEW_VALUES[(action, kind)][path]
            if rule.fallback is not None:
                said.append(f"any other -> {rule.fallback}")
            elif "*" in new or set(new) - set(rule.mapping):
                rest = {"item": "its element dropped", "parent": "its object dropped", "message": "not translatable"}
                said.append(f"{'other 2.1 values' if said else '2.1 values'}: {rest[rule.unmapped]}")
            parts.append(f"{path}: {', '.join(said)}")
        rows.append((f"{action} ({kind})", "; ".join(parts)))
    return rows
