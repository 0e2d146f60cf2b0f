"""What a schema violation is, in the terms of the profiles: its field, its kind, and the repair that would fit.
Pure.

The validator (fastjsonschema) reports the first violation it meets, as a path and a message; :func:`classify`
turns that into a :class:`Violation` with the field in rule form (``$.meterValue[*].sampledValue[*].unit``; a missing
or extra property is the property's own path), a bounded ``kind`` (``enum``, ``type``, ``length``, ``format``,
``missing``, ``extra``, ``other``) and a ``hint``: the repair of gateway/quirks/profile.py that would make such a value
valid, when one would (``enum_case`` when the value is an enumeration value but for its case, else ``map``;
``coerce`` when the value converts; ``timestamp``; ``truncate``, or ``alias`` for idTags and idTokens; ``drop`` for an
extra field; ``default`` for a missing one; ``""`` when none). Only an enumeration violation keeps the offending value
(at most 32 characters: the ``map`` suggestion needs it; no other value of a charger is kept, an idTag never).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from gateway.quirks.paths import normalise, value_at

__all__ = ["Violation", "classify"]

_LIST = re.compile(r"\[(.*)\]|\{(.*)\}")
_ID_FIELDS = ("idTag", "parentIdTag", "idToken")


@dataclass(frozen=True, slots=True)
class Violation:
    path: str
    kind: str
    hint: str
    value: str | None = None


def classify(path: str, message: str, payload: Any) -> Violation:
    """A violation reported at concrete ``path`` with the validator's ``message``, in ``payload``."""
    if "must contain" in message or "must not contain" in message:
        m = _LIST.search(message)
        names = re.findall(r"'([^']*)'", m.group(0)) if m else []
        name = sorted(names)[0] if names else "?"
        missing = "must contain" in message
        return Violation(f"{normalise(path)}.{name}", "missing" if missing else "extra",
                         "default" if missing else "drop")  # fmt: skip
    where = normalise(path)
    found, value = value_at(payload, path)
    last = where.rsplit(".", 1)[-1]
    if "must be one of" in message:
        options = re.findall(r"'([^']*)'", message)
        if isinstance(value, str) and value.lower() in {o.lower() for o in options} and value not in options:
            return Violation(where, "enum", "enum_case")
        return Violation(where, "enum", "map", value[:32] if isinstance(value, str) else repr(value)[:32])
    if "must be date-time" in message:
        return Violation(where, "format", "timestamp")
    if "must be shorter than" in message:
        return Violation(where, "length", "alias" if last in _ID_FIELDS else "truncate")
    m = re.search(r"must be (string|integer|number|boolean|object|array)\b", message)
    if m is not None:
        return Violation(where, "type", "coerce" if found and _coercible(value, m.group(1)) else "")
    return Violation(where, "other", "")


def _coercible(value: Any, kind: str) -> bool:
    if kind == "string":
        return type(value) in (int, float, bool)
    if isinstance(value, str):
        text = value.strip().lower()
        if kind == "boolean":
            return text in ("true", "false")
        try:
            number = float(text)
        except ValueError:
            return False
        return kind == "number" or number.is_integer()
    return kind == "integer" and type(value) is float and value.is_integer()
