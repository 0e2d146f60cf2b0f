"""Quirk profiles: what they are, and reading them from YAML with every problem at its YAML path. Pure.

A profile says which chargers it is for (``ocpp``, ``match``: gateway/quirks/select.py) and lists rules. A rule
names a message (``action``, ``direction``: ``from_charger`` | ``from_backend``, ``message``: ``call`` |
``callresult``), a ``path`` ending in a field (gateway/quirks/paths.py) and a ``repair`` from a fixed vocabulary;
no code. Every rule is checked against the official schema of that action, kind and version when it is read: the
path must exist there (only the last field may be missing, for ``drop`` and ``rename``: an extra field), and the
repair must fit what the schema says is there:

=============  ===========================================================================================
repair         what it does (only to a value that violates the schema, unless said otherwise)
=============  ===========================================================================================
``enum_case``  a string that is an enumeration value but for its case -> the schema's spelling (``charging``)
``coerce``     a value of the wrong JSON type -> the schema's type: a numeric string -> number/integer, a number
               -> string, ``"true"``/``"FALSE"`` -> boolean, 12.0 -> 12 for an integer
``timestamp``  a date-time without zone -> with ``zone`` (rule, else ``quirks.zone``: ``Z``, ``+01:00`` or an IANA
               name); ``+02``/``+0200`` -> ``+02:00``; a space for the ``T``; an impossible one (``0000-00-00T…``,
               month 13) -> per ``impossible``: ``drop`` the field (optional fields only; their default), ``now``
               (the time the gateway received it), ``keep`` (required fields' default)
``truncate``   a string over the schema's ``maxLength`` -> cut to it (serial numbers)
``alias``      an idTag/idToken over the schema's ``maxLength`` -> the gateway's stable 20-character alias
               (``ocpp-gateway id-alias``: the same as set-up B's ``long_id_tokens: alias``)
``rename``     a field present under the rule's key -> moved to ``to`` (which the schema must have), when ``to`` is
               absent (whether the old name violates or not)
``drop``       a field the schema does not have, or whose value violates its schema -> removed; with
               ``element: true``, the array element that holds it instead (an invented measurand: dropping only
               the field would turn the sample into another measurand's)
``map``        a value listed in ``values`` -> the value it maps to (``{Error: OtherError}``), valid or not
               (each target must be valid)
``default``    a missing field -> ``value`` (which must be valid)
=============  ===========================================================================================

Rules apply in both directions: ``from_backend`` rules adapt the CSMS's CALLs and answers to what a charger's
firmware takes (pass-through sessions only: in a translated session the CSMS speaks another version).
"""

from __future__ import annotations

import glob
import importlib.resources
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta, timezone
from pathlib import Path
from typing import Any, Literal, cast, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import fastjsonschema
import yaml

from gateway.ocpp import schemas
from gateway.quirks.paths import Step, Target, locate, parse_path
from gateway.quirks.select import firmware_spec

__all__ = [
    "ComplianceConfig",
    "Direction",
    "Match",
    "Message",
    "Profile",
    "QuirksConfig",
    "RepairKind",
    "Rule",
    "parse_compliance",
    "parse_quirks",
    "shipped_names",
    "sub_validator",
    "zone_of",
]

RepairKind = Literal["enum_case", "coerce", "timestamp", "truncate", "alias", "rename", "drop", "map", "default"]
Direction = Literal["from_charger", "from_backend"]
Message = Literal["call", "callresult"]
Impossible = Literal["drop", "now", "keep"]
REPAIRS: tuple[str, ...] = get_args(RepairKind)
#: options each repair takes (required ones first)
_OPTIONS: dict[str, tuple[str, ...]] = {"rename": ("to",), "map": ("values",), "default": ("value",),
                                        "timestamp": ("zone", "impossible"), "drop": ("element",)}  # fmt: skip
_REQUIRED_OPTION = {"rename": "to", "map": "values", "default": "value"}
_RULE_KEYS = {"name", "action", "direction", "message", "path", "repair"} | {o for v in _OPTIONS.values() for o in v}
_PROFILE_KEYS = {"name", "ocpp", "match", "rules", "description", "source"}
_MATCH_KEYS = {"charger_id", "vendor", "model", "firmware"}
_ID_FIELDS = {"idTag", "parentIdTag", "idToken"}
_ZONE = re.compile(r"^(Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)$")
Problems = list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class Match:
    charger_id: str | None = None
    vendor: str | None = None
    model: str | None = None
    firmware: str | None = None

    def needs_boot(self) -> bool:
        """The match reads the BootNotification (not only the charger id)."""
        return self.vendor is not None or self.model is not None or self.firmware is not None


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    action: str
    direction: Direction
    message: Message
    path: str
    steps: tuple[Step, ...]
    repair: RepairKind
    #: what the schema says is at the path (checked when the rule was read)
    target: Target = field(compare=False, repr=False)
    to: str | None = None
    #: map: (from, to) pairs; from is a scalar
    values: tuple[tuple[Any, Any], ...] = ()
    value: Any = None
    zone: str | None = None
    impossible: Impossible = "drop"
    element: bool = False
    #: map: the ``from`` values that violate the schema (mapping them repairs a violation)
    invalid_from: frozenset[Any] = frozenset()

    @property
    def kind(self) -> str:
        return "request" if self.message == "call" else "response"


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    ocpp: str
    match: Match
    rules: tuple[Rule, ...]
    #: where it was read from (``quirks.profiles[0]``, a file, ``shipped:<name>``)
    source: str = ""
    description: str = ""


@dataclass(frozen=True, slots=True)
class QuirksConfig:
    """``quirks:`` of the config: profiles in the order they are tried."""

    profiles: tuple[Profile, ...] = ()
    #: the zone added to a timestamp without one (a rule's ``zone`` wins)
    zone: str = "Z"


@dataclass(frozen=True, slots=True)
class ComplianceConfig:
    """``compliance:`` of the config (see README "Non-conforming chargers")."""

    #: the per-model report in the store is kept (chargers seen, messages, violations, repairs); true when the
    #: section is there, unless it says otherwise
    enabled: bool = False
    #: share of the charger's CALLs and CALLRESULTs checked against the schema, for counting only, in sessions
    #: that do not validate (``session.validate_schemas`` off, pass-through); 0: none
    sample_rate: float = 0.0
    #: (vendor, model) pairs that get their own ``model`` label in the metrics; others: their profile, or other
    models: tuple[tuple[str, str], ...] = ()
    #: how often this process adds its counts to the store
    flush_interval_s: float = 5.0
    #: distinct counters (violations, repairs) kept per model in the store; more are counted as ``other``
    max_fields: int = 500
    #: distinct vendor/model/firmware this process reports; more are reported as other/other/other
    max_models: int = 1000

    @property
    def active(self) -> bool:
        return self.enabled


def shipped_names() -> list[str]:
    """The profiles shipped with the package (gateway/quirks/profiles/<name>.yaml)."""
    root = importlib.resources.files("gateway.quirks") / "profiles"
    return sorted(p.name.removesuffix(".yaml") for p in root.iterdir() if p.name.endswith(".yaml"))


def _shipped_text(name: str) -> str:
    return (importlib.resources.files("gateway.quirks") / "profiles" / f"{name}.yaml").read_text(encoding="utf-8")


def zone_of(name: str) -> timezone | ZoneInfo:
    """``Z``, ``+01:00`` or an IANA name as a tzinfo; ValueError when it is none of them (or the zone database
    does not know it)."""
    if _ZONE.match(name):
        if name == "Z":
            return UTC
        sign = -1 if name[0] == "-" else 1
        return timezone(sign * timedelta(hours=int(name[1:3]), minutes=int(name[4:6])))
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{name!r} is not Z, +HH:MM or a time zone the system knows (e.g. Europe/Berlin)") from None


def sub_validator(root: Mapping[str, Any], schema: Mapping[str, Any]) -> Callable[[Any], Any]:
    """A validator of one value against ``schema``, a part of ``root`` (whose definitions it may use)."""
    doc = {**schema, "definitions": root.get("definitions", {})}
    if "$schema" in root:
        doc["$schema"] = root["$schema"]
    return cast(Callable[[Any], Any], fastjsonschema.compile(doc, use_default=False))


def _valid(root: Mapping[str, Any], schema: Mapping[str, Any], value: Any) -> str | None:
    try:
        sub_validator(root, schema)(value)
    except fastjsonschema.JsonSchemaValueException as e:
        return str(e.message).removeprefix("data ")
    return None


# ------------------------------------------------------------------------------------------------ reading


class _Reader:
    def __init__(self) -> None:
        self.problems: Problems = []

    def err(self, path: str, msg: str) -> None:
        self.problems.append((path, msg))

    def mapping(self, node: Any, path: str, allowed: set[str], required: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
        if not isinstance(node, dict):
            self.err(path, f"must be a mapping, got {type(node).__name__}")
            return {}
        for k in node:
            if k not in allowed:
                self.err(f"{path}.{k}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        for k in sorted(required - set(node)):
            self.err(f"{path}.{k}", "is required")
        return {k: v for k, v in node.items() if k in allowed}

    def text(self, d: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str | None:
        v = d.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            self.err(f"{path}.{key}", f"must be a non-empty string, got {v!r}")
            return None
        return v


def parse_quirks(node: Any, path: str = "quirks") -> tuple[QuirksConfig, Problems]:
    """``quirks:`` of the config: ``zone``, ``profiles`` (inline), ``files`` (paths or globs of profile files,
    relative to the working directory), ``shipped`` (names of the package's profiles, or ``all``). Returns the
    profiles in the order they are tried, and every problem with its YAML path."""
    r = _Reader()
    if node is None:
        return QuirksConfig(), []
    d = r.mapping(node, path, {"zone", "profiles", "files", "shipped"})
    zone = r.text(d, "zone", path, "Z") or "Z"
    try:
        zone_of(zone)
    except ValueError as e:
        r.err(f"{path}.zone", str(e))
        zone = "Z"
    profiles: list[Profile] = []
    raw = d.get("profiles") or []
    if not isinstance(raw, list):
        r.err(f"{path}.profiles", "must be a list of profiles")
        raw = []
    for i, pnode in enumerate(raw):
        p = _profile(r, pnode, f"{path}.profiles[{i}]", None)
        if p is not None:
            profiles.append(p)
    files = d.get("files") or []
    if not isinstance(files, list) or not all(isinstance(f, str) and f for f in files):
        r.err(f"{path}.files", "must be a list of file paths (globs allowed)")
        files = []
    for i, pattern in enumerate(files):
        found = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
        if not found:
            r.err(f"{path}.files[{i}]", f"no file matches {pattern!r}")
        for name in found:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except OSError as e:
                r.err(f"{path}.files[{i}]", f"cannot read {name}: {e.strerror}")
                continue
            p = _from_text(r, text, name, Path(name).stem)
            if p is not None:
                profiles.append(p)
    shipped = d.get("shipped") or []
    known = shipped_names()
    if shipped == "all":
        shipped = known
    if not isinstance(shipped, list) or not all(isinstance(s, str) for s in shipped):
        r.err(f"{path}.shipped", "must be 'all' or a list of shipped profile names")
        shipped = []
    for i, name in enumerate(shipped):
        if name not in known:
            r.err(f"{path}.shipped[{i}]", f"no shipped profile {name!r} (shipped: {', '.join(known)})")
            continue
        p = _from_text(r, _shipped_text(name), f"shipped:{name}", name)
        if p is not None:
            profiles.append(p)
    seen: dict[str, str] = {}
    for p in profiles:
        if p.name in seen:
            r.err(p.source, f"profile name {p.name!r} is used twice (also by {seen[p.name]})")
        seen.setdefault(p.name, p.source)
    return QuirksConfig(profiles=tuple(profiles), zone=zone), r.problems


def _from_text(r: _Reader, text: str, where: str, stem: str) -> Profile | None:
    try:
        node = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "?"
        r.err(where, f"not valid YAML at {at}: {getattr(e, 'problem', e)}")
        return None
    if isinstance(node, dict):
        node = {"name": stem, **node}
    return _profile(r, node, where, stem)


def _profile(r: _Reader, node: Any, path: str, stem: str | None) -> Profile | None:
    before = len(r.problems)
    d = r.mapping(node, path, _PROFILE_KEYS, {"ocpp", "match", "rules"} | ({"name"} if stem is None else set()))
    name = r.text(d, "name", path, stem) or ""
    if name and not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
        r.err(f"{path}.name", "letters, digits, _ . - only (1..64)")
    version = str(d.get("ocpp", ""))
    if "ocpp" in d and version not in schemas.SCHEMA_VERSIONS:
        why = " (OCPP 2.0 has no schemas in the gateway)" if version == "2.0" else ""
        r.err(f"{path}.ocpp", f"must be one of {', '.join(schemas.SCHEMA_VERSIONS)}{why}; got {d['ocpp']!r}")
        version = ""
    match = _match(r, d.get("match"), f"{path}.match") if "match" in d else Match()
    rules: list[Rule] = []
    raw = d.get("rules")
    if "rules" in d and (not isinstance(raw, list) or not raw):
        r.err(f"{path}.rules", "must be a non-empty list of rules")
    elif isinstance(raw, list) and version:
        for i, rnode in enumerate(raw):
            rule = _rule(r, rnode, f"{path}.rules[{i}]", version)
            if rule is not None:
                if rule.name in (x.name for x in rules):
                    r.err(f"{path}.rules[{i}].name", f"rule name {rule.name!r} is used twice in this profile")
                rules.append(rule)
    description = d.get("description", "")
    if len(r.problems) > before:
        return None
    return Profile(name=name, ocpp=version, match=match, rules=tuple(rules), source=path,
                   description=description if isinstance(description, str) else "")  # fmt: skip


def _match(r: _Reader, node: Any, path: str) -> Match:
    d = r.mapping(node, path, _MATCH_KEYS)
    if not d and isinstance(node, dict):
        r.err(path, "needs at least one of charger_id, vendor, model, firmware")
    m = Match(**{k: r.text(d, k, path) for k in _MATCH_KEYS})
    if m.firmware is not None:
        try:
            firmware_spec(m.firmware)
        except ValueError as e:
            r.err(f"{path}.firmware", str(e))
    return m


def _rule(r: _Reader, node: Any, path: str, version: str) -> Rule | None:
    before = len(r.problems)
    d = r.mapping(node, path, _RULE_KEYS, {"action", "direction", "message", "path", "repair"})
    action, repair = r.text(d, "action", path), r.text(d, "repair", path)
    direction, message, text = d.get("direction"), d.get("message"), r.text(d, "path", path)
    if "direction" in d and direction not in ("from_charger", "from_backend"):
        r.err(f"{path}.direction", f"must be from_charger or from_backend; got {direction!r}")
    if "message" in d and message not in ("call", "callresult"):
        r.err(f"{path}.message", f"must be call or callresult; got {message!r}")
    if repair is not None and repair not in REPAIRS:
        r.err(f"{path}.repair", f"must be one of {', '.join(REPAIRS)}; got {repair!r}")
        repair = None
    if repair is not None:
        for opt in d.keys() & {o for v in _OPTIONS.values() for o in v}:
            if opt not in _OPTIONS.get(repair, ()):
                r.err(f"{path}.{opt}", f"is not an option of repair {repair}")
        need = _REQUIRED_OPTION.get(repair)
        if need is not None and need not in d:
            r.err(f"{path}.{need}", f"is required for repair {repair}")
    if len(r.problems) > before or action is None or repair is None or text is None:
        return None
    kind: schemas.Kind = "request" if message == "call" else "response"
    try:
        root = schemas.document(version, action, kind)
    except schemas.UnknownAction:
        r.err(f"{path}.action", f"OCPP {version} has no {kind} schema for {action!r}")
        return None
    try:
        steps = parse_path(text)
        target = locate(root, steps)
    except ValueError as e:
        r.err(f"{path}.path", f"{e} ({action} {kind}, OCPP {version})")
        return None
    rule = Rule(
        name=r.text(d, "name", path) or f"{action} {text} {repair}", action=action,
        direction=cast(Direction, direction), message=cast(Message, message), path=text, steps=steps,
        repair=cast(RepairKind, repair), target=target,
    )  # fmt: skip
    return _fit(r, rule, d, root, path, version)


def _fit(r: _Reader, rule: Rule, d: Mapping[str, Any], root: Mapping[str, Any], path: str, version: str) -> Rule | None:
    """The repair fits what the schema has at the path; the rule with its options, or None (problems noted)."""
    t, repair = rule.target, rule.repair
    sub = t.schema
    where = f"{rule.action} {rule.kind}, OCPP {version}"
    before = len(r.problems)
    if sub is None and repair not in ("drop", "rename"):
        props = ", ".join(sorted(t.parent.get("properties", {})))
        r.err(f"{path}.path", f"the schema has no field {t.key!r} there ({where}; fields: {props})")
        return None
    kinds = {"enum_case": "an enumeration of strings", "coerce": "a string, number, integer or boolean",
             "timestamp": "a date-time string", "truncate": "a string with a maxLength",
             "alias": "an idTag or idToken string with a maxLength of 20 or more"}  # fmt: skip
    if sub is not None and repair in kinds:
        ok = {
            "enum_case": isinstance(sub.get("enum"), list) and all(isinstance(v, str) for v in sub["enum"]),
            "coerce": sub.get("type") in ("string", "number", "integer", "boolean"),
            "timestamp": sub.get("type") == "string" and sub.get("format") == "date-time",
            "truncate": sub.get("type") == "string" and isinstance(sub.get("maxLength"), int),
            "alias": sub.get("type") == "string" and int(sub.get("maxLength", 0)) >= 20 and t.key in _ID_FIELDS,
        }[repair]
        if not ok:
            r.err(f"{path}.repair", f"{repair} needs {kinds[repair]} at {rule.path}; the schema has {_describe(sub)}"
                                    f" ({where})")  # fmt: skip
    out: dict[str, Any] = {}
    if repair == "rename":
        to = d.get("to")
        props = t.parent.get("properties", {})
        if not isinstance(to, str) or to not in props:
            r.err(f"{path}.to", f"must be a field of the object at the path ({', '.join(sorted(props))})")
        elif to == t.key:
            r.err(f"{path}.to", "is the field's own name")
        out["to"] = to
    elif repair == "drop":
        element = d.get("element", False)
        if not isinstance(element, bool):
            r.err(f"{path}.element", "must be true or false")
        elif element and not t.in_array:
            r.err(f"{path}.element", "the path goes through no array ([*]): there is no element to drop")
        elif t.required and not element:
            r.err(f"{path}.repair", f"{t.key!r} is required in {where}: dropping it cannot make the message valid "
                                    "(element: true drops the array element that holds it)")  # fmt: skip
        out["element"] = bool(element)
    elif repair == "map":
        values = d.get("values")
        if not isinstance(values, dict) or not values:
            r.err(f"{path}.values", "must be a non-empty mapping of value: replacement")
        else:
            assert sub is not None
            pairs, invalid = [], set()
            for k, v in values.items():
                why = _valid(root, sub, v)
                if why is not None:
                    r.err(f"{path}.values.{k}", f"{v!r} is not valid at {rule.path}: {why} ({where})")
                if _valid(root, sub, k) is not None:
                    invalid.add(k)
                pairs.append((k, v))
            out["values"], out["invalid_from"] = tuple(pairs), frozenset(invalid)
    elif repair == "default":
        assert sub is not None
        why = _valid(root, sub, d.get("value"))
        if why is not None:
            r.err(f"{path}.value", f"{d.get('value')!r} is not valid at {rule.path}: {why} ({where})")
        out["value"] = d.get("value")
    elif repair == "timestamp":
        zone = d.get("zone")
        if zone is not None:
            try:
                zone_of(str(zone))
            except ValueError as e:
                r.err(f"{path}.zone", str(e))
            out["zone"] = str(zone)
        impossible = d.get("impossible", "keep" if t.required else "drop")
        if impossible not in ("drop", "now", "keep"):
            r.err(f"{path}.impossible", f"must be drop, now or keep; got {impossible!r}")
        elif impossible == "drop" and t.required:
            r.err(f"{path}.impossible", f"{t.key!r} is required in {where}: an impossible one cannot be dropped "
                                        "(now or keep)")  # fmt: skip
        out["impossible"] = impossible
    if len(r.problems) > before:
        return None
    return replace(rule, **out)


def _describe(sub: Mapping[str, Any]) -> str:
    bits = [f"type {sub.get('type', '?')}"]
    if "enum" in sub:
        bits.append("an enumeration")
    if "format" in sub:
        bits.append(f"format {sub['format']}")
    if "maxLength" in sub:
        bits.append(f"maxLength {sub['maxLength']}")
    return ", ".join(bits)


def parse_compliance(node: Any, path: str = "compliance") -> tuple[ComplianceConfig, Problems]:
    """``compliance:`` of the config."""
    r = _Reader()
    if node is None:
        return ComplianceConfig(), []
    keys = {"enabled", "sample_rate", "models", "flush_interval_s", "max_fields", "max_models"}
    d = r.mapping(node, path, keys)
    dc = ComplianceConfig()
    enabled = d.get("enabled", True)
    if not isinstance(enabled, bool):
        r.err(f"{path}.enabled", f"must be true or false, got {enabled!r}")
        enabled = dc.enabled
    rate = d.get("sample_rate", dc.sample_rate)
    if isinstance(rate, bool) or not isinstance(rate, int | float) or not 0 <= rate <= 1:
        r.err(f"{path}.sample_rate", f"must be a number 0..1, got {rate!r}")
        rate = dc.sample_rate
    models: list[tuple[str, str]] = []
    for i, m in enumerate(d.get("models") or []):
        if isinstance(m, dict) and set(m) == {"vendor", "model"} and all(isinstance(v, str) for v in m.values()):
            models.append((m["vendor"], m["model"]))
        else:
            r.err(f"{path}.models[{i}]", "must be {vendor: ..., model: ...}")
    if d.get("models") is not None and not isinstance(d.get("models"), list):
        r.err(f"{path}.models", "must be a list of {vendor, model}")
    nums: dict[str, float] = {}
    for key, default in (("flush_interval_s", dc.flush_interval_s), ("max_fields", dc.max_fields),
                         ("max_models", dc.max_models)):  # fmt: skip
        v = d.get(key, default)
        want_int = key != "flush_interval_s"
        if isinstance(v, bool) or not isinstance(v, int if want_int else int | float) or v <= 0:
            r.err(f"{path}.{key}", f"must be {'an integer' if want_int else 'a number'} > 0, got {v!r}")
            v = default
        nums[key] = v
    config = ComplianceConfig(
        enabled=enabled, sample_rate=float(rate), models=tuple(models),
        flush_interval_s=float(nums["flush_interval_s"]), max_fields=int(nums["max_fields"]),
        max_models=int(nums["max_models"]),
    )  # fmt: skip
    return config, r.problems
