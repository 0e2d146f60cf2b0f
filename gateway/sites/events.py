"""Demand-response events: a limit or a reduction of a site for a time window. Pure: parsed, checked, combined.

An event comes from ``POST /api/sites/{site}/events`` or the site's MQTT topic as a JSON object::

    {"id": "dr-2024-05-01", "start": "2024-05-01T17:00:00Z", "end": "2024-05-01T19:00:00Z", "limit": 60}
    {"id": "peak", "duration_s": 900, "reduction": 20}          # start: now

* ``id``: 1..64 of letters, digits, ``_ . : -`` (absent: the caller makes one); an id identifies the event
  (cancel, list; the same id again is a conflict).
* ``start`` (absent: now) and ``end`` or ``duration_s``: ISO 8601 with an offset, or unix seconds; ``end`` after
  ``start`` and in the future, the window at most :data:`MAX_WINDOW_S` long.
* exactly one of ``limit`` (the site may draw at most this) and ``reduction`` (the connection's limit less this),
  in the site's unit (``unit``, when given, must be it).

While events are active the site's limit is the lowest of its connection limit and every active event's: they
never raise it. Ended events are forgotten (counted); cancelling one ends it at once.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from gateway.sites.profiles import iso, parse_time

__all__ = ["MAX_WINDOW_S", "Event", "effective_limit", "next_boundary", "parse_event"]

#: the longest window an event may have
MAX_WINDOW_S = 7 * 86400.0
_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
_KEYS = {"id", "start", "end", "duration_s", "limit", "reduction", "unit"}


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    start: float
    end: float
    #: a cap on the site's limit, or an amount taken off the connection's limit (exactly one is set)
    limit: float | None = None
    reduction: float | None = None
    #: api | mqtt
    source: str = "api"
    created: float = 0.0

    def cap(self, connection_limit: float) -> float:
        if self.limit is not None:
            return self.limit
        assert self.reduction is not None
        return max(0.0, connection_limit - self.reduction)

    def active(self, now: float) -> bool:
        return self.start <= now < self.end

    def doc(self) -> dict[str, Any]:
        return {
            "id": self.id, "start": self.start, "end": self.end, "limit": self.limit, "reduction": self.reduction,
            "source": self.source, "created": self.created,
        }  # fmt: skip

    def view(self, now: float, unit: str) -> dict[str, Any]:
        """What the admin API shows."""
        state = "active" if self.active(now) else "scheduled" if now < self.start else "ended"
        return {
            "id": self.id, "start": iso(self.start), "end": iso(self.end), "limit": self.limit,
            "reduction": self.reduction, "unit": unit, "state": state, "source": self.source,
        }  # fmt: skip

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> Event | None:
        """From the store; None when the document is not an event (written by something else)."""
        try:
            limit, reduction = d.get("limit"), d.get("reduction")
            return cls(
                id=str(d["id"]),
                start=float(d["start"]),
                end=float(d["end"]),
                limit=float(limit) if limit is not None else None,
                reduction=float(reduction) if reduction is not None else None,
                source=str(d.get("source") or "api"),
                created=float(d.get("created") or 0.0),
            )
        except (KeyError, TypeError, ValueError):
            return None


def _when(v: Any) -> float | None:
    if isinstance(v, int | float) and not isinstance(v, bool):
        return float(v)
    return parse_time(v)


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None


def parse_event(body: Any, *, unit: str, connection_limit: float, now: float, new_id: str,
                source: str = "api") -> Event | str:  # fmt: skip
    """An event from a request body, or what is wrong with it (one sentence, naming the field)."""
    if not isinstance(body, Mapping):
        return "the body must be a JSON object"
    unknown = sorted(set(map(str, body)) - _KEYS)
    if unknown:
        return f"unknown field {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})"
    eid = body.get("id", new_id)
    if not isinstance(eid, str) or not _ID.fullmatch(eid):
        return "id must be 1..64 letters, digits, _ . : -"
    if "unit" in body and body["unit"] != unit:
        return f"unit must be the site's unit, {unit!r} (got {body['unit']!r})"
    start = _when(body["start"]) if "start" in body else now
    if start is None:
        return "start must be an ISO 8601 date-time with an offset (e.g. 2024-05-01T17:00:00Z) or unix seconds"
    if ("end" in body) == ("duration_s" in body):
        return "give exactly one of end and duration_s"
    if "end" in body:
        end = _when(body["end"])
        if end is None:
            return "end must be an ISO 8601 date-time with an offset (e.g. 2024-05-01T19:00:00Z) or unix seconds"
    else:
        duration = _number(body["duration_s"])
        if duration is None or duration <= 0:
            return "duration_s must be a number > 0"
        end = start + duration
    if end <= now:
        return "end is in the past"
    if end <= start:
        return "end must be after start"
    if end - start > MAX_WINDOW_S:
        return f"the window may be at most {MAX_WINDOW_S / 86400:g} days"
    if ("limit" in body) == ("reduction" in body):
        return "give exactly one of limit and reduction"
    if "limit" in body:
        limit = _number(body["limit"])
        if limit is None or limit < 0:
            return f"limit must be a number >= 0 ({unit})"
        return Event(eid, start, end, limit=limit, source=source, created=now)
    reduction = _number(body["reduction"])
    if reduction is None or reduction <= 0:
        return f"reduction must be a number > 0 ({unit})"
    if reduction > connection_limit:
        return f"reduction must be at most the site's limit ({connection_limit:g} {unit})"
    return Event(eid, start, end, reduction=reduction, source=source, created=now)


def effective_limit(connection_limit: float, events: Iterable[Event], now: float) -> tuple[float, list[str]]:
    """The site's limit now, and the ids of the events that are active."""
    limit = connection_limit
    active: list[str] = []
    for e in events:
        if e.active(now):
            active.append(e.id)
            limit = min(limit, e.cap(connection_limit))
    return limit, sorted(active)


def next_boundary(events: Iterable[Event], now: float) -> float | None:
    """The next moment an event starts or ends (after ``now``), for the controller to wake up on time."""
    times = [t for e in events for t in (e.start, e.end) if t > now]
    return min(times) if times else None
