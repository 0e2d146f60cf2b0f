"""The repair engine: a quirk profile's rules (gateway/quirks/profile.py) applied to payloads. Pure.

:class:`Repairs` is one profile compiled once per process: a table from (direction, message, action) to that
message's rules, each a small function over the objects its path reaches. :meth:`Repairs.apply` changes the payload
in place and says what it did (:class:`Applied` per rule that changed something: how many values, and whether they
violated the schema: every repair but ``map``, ``rename`` and ``default`` of an optional field touches only values
that do); nothing changed -> None, and the caller forwards the frame as it came, byte for byte. A message no rule
names costs one dict lookup.

Decisions:

* A repair that cannot make the value valid leaves it as it is (``coerce`` of ``"12 kWh"`` to a number, a
  ``timestamp`` that is no date at all with ``impossible: keep``): the schema then judges the frame as before.
* ``timestamp``: the validity test is the validator's own (fastjsonschema's ``date-time`` pattern), so a repaired
  value is one the schema accepts. A zone is added to a local time as the configured zone's offset *at that local
  time* (an IANA zone: summer time included); ``impossible: now`` writes the time the frame was received, in UTC.
* ``alias``: :func:`gateway.translate.v201_v16.context.id_alias` of the token and its sibling ``type`` (``ISO14443``
  without one: a 1.6 idTag), the alias ``ocpp-gateway id-alias`` prints; it is not mapped back (register the alias
  in the CSMS, as for set-up B).
* ``drop`` with ``element``: the array element holding the field goes; an array left empty stays (and fails its
  ``minItems``, as it would have).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timezone
from typing import Any

from fastjsonschema.draft04 import CodeGeneratorDraft04

from gateway.ocpp import schemas
from gateway.quirks.paths import Step
from gateway.quirks.profile import Profile, Rule, sub_validator, zone_of
from gateway.translate.v201_v16.context import id_alias

__all__ = ["Applied", "Repairs", "run"]

JsonDict = dict[str, Any]
_DATE_TIME = re.compile(CodeGeneratorDraft04.FORMAT_REGEXS["date-time"])
_LOOSE_TS = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d+)?\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?$"
)
_INT = re.compile(r"^[+-]?\d+$")
_NUMBER = re.compile(r"^[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?$")


@dataclass(frozen=True, slots=True)
class Applied:
    """A rule that changed a payload: ``changed`` values, of which ``fixed`` violated the schema."""

    rule: Rule
    changed: int
    fixed: int


#: (parent object, key) -> 0: unchanged; FIXED: a value that violated the schema changed; CHANGED: a valid one
Fix = Callable[[JsonDict, str], int]
FIXED, CHANGED = 1, 2


class _Compiled:
    __slots__ = ("element", "fix", "key", "rule", "walk")

    def __init__(self, rule: Rule, fix: Fix) -> None:
        self.rule = rule
        self.fix = fix
        self.key = rule.steps[-1]
        self.walk = rule.steps[:-1]
        self.element = rule.repair == "drop" and rule.element


class Repairs:
    """One profile, compiled. ``zone``: ``quirks.zone``, for ``timestamp`` rules without their own.
    ``backend_rules`` False (a translated session: the CSMS speaks another version) leaves out ``from_backend``
    rules. ``now``: the wall clock (unix seconds), for ``impossible: now``."""

    def __init__(self, profile: Profile, zone: str = "Z", *, backend_rules: bool = True,
                 now: Callable[[], float] | None = None) -> None:  # fmt: skip
        self.profile = profile
        self._now = now
        table: dict[tuple[str, str, str], list[_Compiled]] = {}
        for rule in profile.rules:
            if rule.direction == "from_backend" and not backend_rules:
                continue
            fix = self._compile(rule, profile.ocpp, zone)
            table.setdefault((rule.direction, rule.message, rule.action), []).append(_Compiled(rule, fix))
        self.table = {k: tuple(v) for k, v in table.items()}
        #: (direction, message) -> action -> its rules: what a session's hook looks up per frame
        self.by_message: dict[tuple[str, str], dict[str, tuple[_Compiled, ...]]] = {
            (d, m): {a: rules for (d2, m2, a), rules in self.table.items() if (d2, m2) == (d, m)}
            for d in ("from_charger", "from_backend") for m in ("call", "callresult")
        }  # fmt: skip

    def names(self, direction: str, message: str, action: str) -> bool:
        """Some rule names this message."""
        return (direction, message, action) in self.table

    def apply(self, direction: str, message: str, action: str, payload: JsonDict) -> list[Applied] | None:
        """Repair ``payload`` in place; what changed, or None when nothing did."""
        rules = self.table.get((direction, message, action))
        return None if rules is None else run(rules, payload)

    # ------------------------------------------------------------------ one fix per repair kind

    def _compile(self, rule: Rule, version: str, zone: str) -> Fix:
        sub = rule.target.schema
        repair = rule.repair
        if repair == "enum_case":
            assert sub is not None
            enum = frozenset(sub["enum"])
            spelled = {v.lower(): v for v in sub["enum"]}
            return _enum_case(enum, spelled)
        if repair == "coerce":
            assert sub is not None
            return _coerce(str(sub["type"]))
        if repair == "timestamp":
            tz = zone_of(rule.zone or zone)
            return _timestamp(tz, rule.impossible, self._wall)
        if repair == "truncate":
            assert sub is not None
            return _truncate(int(sub["maxLength"]))
        if repair == "alias":
            assert sub is not None
            return _alias(int(sub["maxLength"]))
        if repair == "rename":
            assert rule.to is not None
            return _rename(rule.to, FIXED if rule.target.schema is None else CHANGED)
        if repair == "drop":
            if sub is None:
                return _drop_any
            root = schemas.document(version, rule.action, "request" if rule.message == "call" else "response")
            return _drop_invalid(sub_validator(root, sub))
        if repair == "map":
            table = {_hashable(k): (v, FIXED if k in rule.invalid_from else CHANGED) for k, v in rule.values}
            return _map(table)
        assert repair == "default"
        return _default(rule.value, FIXED if rule.target.required else CHANGED)

    def _wall(self) -> float:
        if self._now is not None:
            return self._now()
        return datetime.now(UTC).timestamp()


def run(rules: tuple[_Compiled, ...], payload: JsonDict) -> list[Applied] | None:
    """Apply one message's rules (``Repairs.by_message``) to ``payload`` in place; what changed, or None."""
    done: list[Applied] | None = None
    for c in rules:
        changed, fixed = _run(c, payload)
        if changed:
            if done is None:
                done = []
            done.append(Applied(c.rule, changed, fixed))
    return done


def _run(c: _Compiled, payload: JsonDict) -> tuple[int, int]:
    """(values changed, of which violated the schema)."""
    key = c.key
    assert key is not None
    changed = fixed = 0
    if not c.element:
        fix = c.fix
        for _, _, parent in _parents(payload, c.walk, 0, None, 0):
            done = fix(parent, key)
            if done:
                changed += 1
                fixed += done == FIXED
        return changed, fixed
    doomed: dict[int, tuple[list[Any], set[int]]] = {}
    for holder, index, parent in _parents(payload, c.walk, 0, None, 0):
        if holder is not None and c.fix(dict(parent), key):  # on a copy: the element goes, not the field
            doomed.setdefault(id(holder), (holder, set()))[1].add(index)
    for holder, indices in doomed.values():
        for i in sorted(indices, reverse=True):
            del holder[i]
            changed += 1
    return changed, changed


def _parents(node: Any, steps: tuple[Step, ...], i: int, holder: list[Any] | None,
             index: int) -> Iterator[tuple[list[Any] | None, int, JsonDict]]:  # fmt: skip
    """Every object the path's steps (all but its last key) reach, with the nearest array element around it."""
    if i == len(steps):
        if type(node) is dict:
            yield holder, index, node
        return
    step = steps[i]
    if step is None:
        if type(node) is list:
            for j, item in enumerate(node):
                yield from _parents(item, steps, i + 1, node, j)
    elif type(node) is dict and step in node:
        yield from _parents(node[step], steps, i + 1, holder, index)


def _hashable(v: Any) -> tuple[str, Any]:
    return (type(v).__name__, v)


def _enum_case(enum: frozenset[str], spelled: dict[str, str]) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        v = parent.get(key)
        if type(v) is not str or v in enum:
            return 0
        right = spelled.get(v.strip().lower())
        if right is None:
            return 0
        parent[key] = right
        return FIXED

    return fix


def _coerce(kind: str) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        if key not in parent:
            return 0
        v = parent[key]
        out: Any = _NO
        if kind == "string":
            if type(v) is bool:
                out = "true" if v else "false"
            elif type(v) is int or type(v) is float:
                out = repr(v) if type(v) is float else str(v)
        elif kind in ("integer", "number"):
            if type(v) is str:
                text = v.strip()
                if _INT.match(text):
                    out = int(text)
                elif kind == "number" and _NUMBER.match(text):
                    out = float(text)
                elif kind == "integer" and _NUMBER.match(text) and float(text).is_integer():
                    out = int(float(text))
            elif kind == "integer" and type(v) is float and v.is_integer():
                out = int(v)
        elif kind == "boolean" and type(v) is str and v.strip().lower() in ("true", "false"):
            out = v.strip().lower() == "true"
        if out is _NO:
            return 0
        parent[key] = out
        return FIXED

    return fix


_NO = object()


def _timestamp(tz: timezone | Any, impossible: str, wall: Callable[[], float]) -> Fix:
    utc = tz is UTC or tz == UTC

    def fix(parent: JsonDict, key: str) -> int:
        v = parent.get(key)
        if type(v) is not str or _DATE_TIME.match(v):
            return 0
        m = _LOOSE_TS.match(v.strip())
        moment: datetime | None = None
        if m is not None:
            y, mo, d, h, mi, s = (int(m.group(i)) for i in range(1, 7))
            try:
                moment = datetime(y, mo, d, h, mi, min(s, 59))
            except ValueError:
                moment = None
        if m is None or moment is None:
            if impossible == "drop":
                del parent[key]
                return FIXED
            if impossible == "now":
                parent[key] = datetime.fromtimestamp(wall(), UTC).isoformat(timespec="milliseconds")[:23] + "Z"
                return FIXED
            return 0
        if m.group(8):
            zone = "Z"
        elif m.group(9):
            zone = f"{m.group(9)}{m.group(10)}:{m.group(11) or '00'}"
        elif utc:
            zone = "Z"
        else:
            offset = moment.replace(tzinfo=tz).utcoffset()
            assert offset is not None
            minutes = int(offset.total_seconds() // 60)
            sign = "-" if minutes < 0 else "+"
            zone = f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
        fixed = f"{v.strip()[:10]}T{v.strip()[11:19]}{m.group(7) or ''}{zone}"
        if not _DATE_TIME.match(fixed):
            return 0
        parent[key] = fixed
        return FIXED

    return fix


def _truncate(limit: int) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        v = parent.get(key)
        if type(v) is not str or len(v) <= limit:
            return 0
        parent[key] = v[:limit]
        return FIXED

    return fix


def _alias(limit: int) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        v = parent.get(key)
        if type(v) is not str or len(v) <= limit:
            return 0
        kind = parent.get("type")
        parent[key] = id_alias(v, kind if type(kind) is str else "ISO14443")
        return FIXED

    return fix


def _rename(to: str, outcome: int) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        if key not in parent or to in parent:
            return 0
        parent[to] = parent.pop(key)
        return outcome

    return fix


def _drop_any(parent: JsonDict, key: str) -> int:
    if key not in parent:
        return 0
    del parent[key]
    return FIXED


def _drop_invalid(valid: Callable[[Any], Any]) -> Fix:
    from fastjsonschema import JsonSchemaValueException

    def fix(parent: JsonDict, key: str) -> int:
        if key not in parent:
            return 0
        try:
            valid(parent[key])
        except JsonSchemaValueException:
            del parent[key]
            return FIXED
        return 0

    return fix


def _map(table: dict[tuple[str, Any], tuple[Any, int]]) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        if key not in parent:
            return 0
        v = parent[key]
        if type(v) is dict or type(v) is list:
            return 0
        to = table.get(_hashable(v))
        if to is None:
            return 0
        parent[key] = copy.deepcopy(to[0])
        return to[1]

    return fix


def _default(value: Any, outcome: int) -> Fix:
    def fix(parent: JsonDict, key: str) -> int:
        if key in parent:
            return 0
        parent[key] = copy.deepcopy(value)
        return outcome

    return fix
