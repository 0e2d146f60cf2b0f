"""A site meter's message (the grid connection's draw, on an MQTT topic) as a reading. Pure.

Accepted payloads (UTF-8):

* a bare number, in the ``meter.unit`` of the site (``W``, ``kW``, or ``A``: one current for every phase);
* a JSON object with any of ``power_w``, ``power_kw`` (the total) and ``current_a`` (a list of the three phase
  currents L1, L2, L3, or one number for every phase), e.g. ``{"power_w": 41250, "current_a": [61.2, 58.0, 60.1]}``.

Negative figures (export) count as 0. Anything else is refused with the reason (logged and counted by the caller).
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from gateway.sites.allocation import Reading

__all__ = ["parse_reading"]


def _num(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        return None
    return max(0.0, float(v))


def parse_reading(payload: bytes, unit: str) -> Reading | str:
    """The reading in ``payload``, or why it is not one."""
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return "not a number or a JSON object"
    if isinstance(doc, int | float) and not isinstance(doc, bool):
        v = _num(doc)
        if v is None:
            return "not a finite number"
        if unit == "A":
            return Reading(phase_a=(v, v, v))
        return Reading(power_w=v * (1000 if unit == "kW" else 1))
    if not isinstance(doc, dict):
        return "not a number or a JSON object"
    power: float | None = None
    if "power_w" in doc or "power_kw" in doc:
        raw = doc.get("power_w", doc.get("power_kw"))
        power = _num(raw)
        if power is None:
            return "power_w / power_kw must be a finite number"
        if "power_w" not in doc:
            power *= 1000
    phase_a: tuple[float, float, float] | None = None
    if "current_a" in doc:
        cur = doc["current_a"]
        if isinstance(cur, list):
            vals = [_num(x) for x in cur]
            if len(vals) != 3 or any(x is None for x in vals):
                return "current_a must be three finite numbers (L1, L2, L3) or one"
            phase_a = (vals[0] or 0.0, vals[1] or 0.0, vals[2] or 0.0)
        else:
            one = _num(cur)
            if one is None:
                return "current_a must be three finite numbers (L1, L2, L3) or one"
            phase_a = (one, one, one)
    if power is None and phase_a is None:
        return "a JSON reading needs power_w, power_kw or current_a"
    return Reading(phase_a=phase_a, power_w=power)
