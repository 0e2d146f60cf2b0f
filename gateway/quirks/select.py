"""Which profile a charger gets: its id, and what it said in its BootNotification. Pure.

A profile's ``match`` may name ``charger_id`` (a glob, case-sensitive like the routes' match), ``vendor`` and
``model`` (globs, case-insensitive: chargers of one vendor spell it differently), ``firmware`` (a glob, or a range:
comparisons joined by commas, ``">=1.2, <1.4"``) and every one given must hold. Firmware versions compare by their
parts: runs of digits as numbers, other runs as text (``1.10`` is after ``1.9``, ``1.2`` equals ``1.2.0``). The
first profile in order that matches wins (config's ``profiles``, then ``files``, then ``shipped``), as routes do.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

__all__ = ["Identity", "Matcher", "choose", "firmware_spec", "identity_of", "matches", "version_key"]


@dataclass(frozen=True, slots=True)
class Identity:
    """What a charger says it is (BootNotification), as it said it."""

    vendor: str
    model: str
    firmware: str

    def key(self) -> tuple[str, str, str]:
        return (self.vendor, self.model, self.firmware)


def identity_of(boot: Mapping[str, Any] | None) -> Identity | None:
    """The identity in a BootNotification request of any version (1.6 ``chargePointVendor``/``chargePointModel``/
    ``firmwareVersion``; 2.x ``chargingStation.vendorName``/``model``/``firmwareVersion``); None when it has none."""
    if not isinstance(boot, Mapping):
        return None
    station = boot.get("chargingStation")
    src: Mapping[str, Any] = station if isinstance(station, Mapping) else boot
    if station is not None:
        vendor, model = src.get("vendorName"), src.get("model")
    else:
        vendor, model = src.get("chargePointVendor"), src.get("chargePointModel")
    firmware = src.get("firmwareVersion")
    if not isinstance(vendor, str) and not isinstance(model, str):
        return None
    return Identity(_text(vendor), _text(model), _text(firmware))


def _text(v: Any) -> str:
    return v[:64] if isinstance(v, str) else ""


_PART = re.compile(r"\d+|[A-Za-z]+")


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """A firmware version as comparable parts (trailing zero parts dropped: 1.2 == 1.2.0)."""
    parts: list[tuple[int, int | str]] = [
        (0, int(p)) if p.isdigit() else (1, p.lower()) for p in _PART.findall(version)
    ]
    while parts and parts[-1] == (0, 0):
        parts.pop()
    return tuple(parts)


_OPS = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_CMP = re.compile(r"^\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")


def firmware_spec(spec: str) -> list[tuple[str, tuple[tuple[int, int | str], ...]]] | None:
    """A range (``">=1.2, <1.4"``) as (operator, version key) pairs; None when ``spec`` is a glob. ValueError for a
    range that cannot be read."""
    if not spec.strip() or spec.strip()[0] not in "<>=!":
        return None
    out = []
    for part in spec.split(","):
        m = _CMP.match(part)
        if m is None:
            raise ValueError(f"cannot read {part.strip()!r}: a range is comparisons like '>=1.2, <1.4'")
        out.append((m.group(1), version_key(m.group(2))))
    return out


class Matcher(Protocol):
    """A profile's match (gateway/quirks/profile.py ``Match``)."""

    @property
    def charger_id(self) -> str | None: ...
    @property
    def vendor(self) -> str | None: ...
    @property
    def model(self) -> str | None: ...
    @property
    def firmware(self) -> str | None: ...

    def needs_boot(self) -> bool: ...


def matches(match: Matcher, cid: str, identity: Identity | None) -> bool:
    if match.charger_id is not None and not fnmatch.fnmatchcase(cid, match.charger_id):
        return False
    if not match.needs_boot():
        return True
    if identity is None:
        return False
    for pattern, value in ((match.vendor, identity.vendor), (match.model, identity.model)):
        if pattern is not None and not fnmatch.fnmatchcase(value.lower(), pattern.lower()):
            return False
    if match.firmware is not None:
        spec = firmware_spec(match.firmware)
        if spec is None:
            return fnmatch.fnmatchcase(identity.firmware, match.firmware)
        have = version_key(identity.firmware)
        return bool(identity.firmware) and all(_OPS[op](have, want) for op, want in spec)
    return True


class Choosable(Protocol):
    @property
    def ocpp(self) -> str: ...
    @property
    def match(self) -> Matcher: ...


P = TypeVar("P", bound=Choosable)


def choose(profiles: Iterable[P], cid: str, version: str, identity: Identity | None) -> P | None:
    """The first profile for ``version`` whose match holds for this charger, or None."""
    for p in profiles:
        if p.ocpp == version and matches(p.match, cid, identity):
            return p
    return None
