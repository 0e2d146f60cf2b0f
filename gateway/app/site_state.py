"""What a site controller keeps and shows: its record of each charger, one step's picture, the gauges and summary.

Split from :mod:`gateway.app.site_controller` (the loop, read-back, allocation and CALLs), which uses all of it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.metrics import Metrics
from gateway.sites.allocation import Allocation, Demand, Load, Reading
from gateway.sites.config import ChargerSpec, SiteConfig
from gateway.sites.events import Event
from gateway.sites.observe import ChargerObservation, EvseState
from gateway.sites.profiles import iso

__all__ = ["PHASE_USED_A", "CtlState", "Picture", "Step", "clear_gauges", "ev_draw", "report"]

#: a measured current at or above this marks the phase as used by the EV
PHASE_USED_A = 1.0


@dataclass(slots=True)
class CtlState:
    """What the controller did to one charger (stored as ``ctl:<id>``)."""

    version: str = "1.6"
    #: the dynamic profile's limit the charger accepted last (A per phase), when and until when
    sent_a: float | None = None
    sent_at: float = 0.0
    valid_to: float = 0.0
    #: the fail-safe profile's limit the charger accepted (None: not sent since it was last found dirty)
    fail_safe_a: float | None = None
    #: the connection (its ``connected_at``) and the ``dirty`` count of the charger when it was read back
    read_conn: float = -1.0
    read_dirty: int = -1
    #: the limit in force its composite schedule showed then (None: nothing limited it)
    composite_a: float | None = None
    #: a decrease the charger did not take (its difference counts as a fixed load until it does)
    pending_a: float | None = None
    #: the highest dynamic limit sent whose answer never came (it may apply), until one is accepted
    unsure_a: float | None = None
    #: the read-back did not find the dynamic profile surely in place: send it again (until then what the charger
    #: applies is what the read-back found)
    resend: bool = False
    error: str | None = None

    def doc(self) -> dict[str, Any]:
        return {
            "version": self.version, "sent_a": self.sent_a, "sent_at": self.sent_at, "valid_to": self.valid_to,
            "fail_safe_a": self.fail_safe_a, "read_conn": self.read_conn, "read_dirty": self.read_dirty,
            "composite_a": self.composite_a, "pending_a": self.pending_a, "unsure_a": self.unsure_a,
            "resend": self.resend, "error": self.error,
        }  # fmt: skip

    @classmethod
    def from_doc(cls, d: Mapping[str, Any]) -> CtlState:
        def num(k: str) -> float | None:
            v = d.get(k)
            return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

        read_conn = num("read_conn")
        return cls(
            version=str(d.get("version") or "1.6"),
            sent_a=num("sent_a"),
            sent_at=num("sent_at") or 0.0,
            valid_to=num("valid_to") or 0.0,
            fail_safe_a=num("fail_safe_a"),
            read_conn=read_conn if read_conn is not None else -1.0,
            read_dirty=rd if isinstance(rd := d.get("read_dirty"), int) else -1,
            composite_a=num("composite_a"),
            pending_a=num("pending_a"),
            unsure_a=num("unsure_a"),
            resend=bool(d.get("resend")),
            error=str(d["error"]) if d.get("error") else None,
        )

    def in_force(self, now: float) -> float | None:
        """The dynamic limit the charger applies now (None: it lapsed, none was sent, or it may be gone)."""
        if self.resend or self.sent_a is None or self.valid_to <= now:
            return None
        return self.sent_a

    def limit(self, now: float, worst: float) -> float:
        """The most the charger may draw now (A per phase), by what the controller knows: its dynamic limit while
        valid, then its fail-safe; after a read-back that did not find the dynamic profile in place, what it found
        (and the fail-safe, which may apply later); ``worst`` where nothing is known to limit it; never less than a
        limit sent whose answer never came."""
        unsure = self.unsure_a if self.unsure_a is not None else 0.0
        if self.resend:
            found = self.composite_a if self.composite_a is not None else worst
            return max(found, self.fail_safe_a if self.fail_safe_a is not None else 0.0, unsure)
        ours = self.in_force(now)
        if ours is not None:
            return max(ours, unsure)
        return max(self.fail_safe_a if self.fail_safe_a is not None else worst, unsure)


@dataclass(slots=True)
class Picture:
    """One step's view of the site."""

    obs: dict[str, ChargerObservation]
    events: list[Event]
    states: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Step:
    """What one step computed, for the gauges and the summary."""

    picture: Picture
    alloc: Allocation
    demands: list[Demand]
    ev: Load
    limit: float
    active: list[str]
    now: float


def report(site: SiteConfig, m: Metrics, node: str, step: Step, reading: Reading | None, other: Load | None,
           reading_at: float, metered: bool, ctl: Mapping[str, CtlState]) -> dict[str, Any]:  # fmt: skip
    """Set the site's gauges from one step; the summary the admin API shows (``summary`` in the store)."""
    picture, alloc, demands, ev, limit, active, now = (
        step.picture, step.alloc, step.demands, step.ev, step.limit, step.active, step.now
    )  # fmt: skip
    name = site.name
    v, n = site.voltage_v, site.phases
    if reading is not None and reading.phase_a is not None:
        draw_phase = reading.phase_a
    elif reading is not None and reading.power_w is not None:
        each = reading.power_w / (v * n)
        draw_phase = (each, each if n == 3 else 0.0, each if n == 3 else 0.0)
    else:
        rest = other.phase_a if other is not None else (0.0, 0.0, 0.0)
        draw_phase = (ev.phase_a[0] + rest[0], ev.phase_a[1] + rest[1], ev.phase_a[2] + rest[2])
    if reading is not None and reading.power_w is not None:
        draw_w = reading.power_w
    elif reading is not None:
        draw_w = sum(draw_phase) * v
    else:
        draw_w = ev.power_w + (other.power_w if other is not None else 0.0)
    paused = len(alloc.paused)
    if site.unit == "A":
        m.site_limit_amperes.labels(name, "connection").set(site.limit)
        m.site_limit_amperes.labels(name, "effective").set(limit)
        for i, ph in enumerate(("L1", "L2", "L3")[:n]):
            m.site_draw_amperes.labels(name, ph).set(round(draw_phase[i], 2))
            m.site_allocated_amperes.labels(name, ph).set(alloc.used_phase_a[i])
    else:
        m.site_limit_watts.labels(name, "connection").set(site.limit * 1000)
        m.site_limit_watts.labels(name, "effective").set(limit * 1000)
        m.site_draw_watts.labels(name).set(round(draw_w, 1))
        m.site_allocated_watts.labels(name).set(alloc.used_w)
    m.site_transactions.labels(name, "charging").set(len(demands) - paused)
    m.site_transactions.labels(name, "paused").set(paused)
    m.site_events.labels(name, "active").set(len(active))
    m.site_events.labels(name, "scheduled").set(sum(1 for e in picture.events if e.start > now))
    if metered:
        m.site_meter_age.labels(name).set(round(now - reading_at, 1) if reading_at else -1)
    chargers: dict[str, Any] = {}
    for cid, o in sorted(picture.obs.items()):
        c = ctl.get(cid)
        cl = alloc.chargers.get(cid)
        chargers[cid] = {
            "state": picture.states.get(cid, "offline"),
            "ocpp_version": o.version,
            "limit_a": cl.current_a if cl is not None else None,
            "standby": bool(cl and cl.standby),
            "sent_a": c.sent_a if c else None,
            "resend": c.resend if c else None,
            "valid_to": iso(c.valid_to) if c and c.valid_to else None,
            "fail_safe_a": c.fail_safe_a if c else None,
            "composite_a": c.composite_a if c else None,
            "error": c.error if c else None,
            "evses": {
                str(e): {"current_a": alloc.currents.get(f"{cid}/{e}"), "tx": st.tx,
                         "measured_a": list(st.phase_a) if st.phase_a else None, "power_w": st.power_w}
                for e, st in sorted(o.evses.items())
            },
        }  # fmt: skip
    return {
        "site": name, "at": iso(now), "node": node, "unit": site.unit,
        "limit": {"connection": site.limit, "effective": limit, "margin": site.margin},
        "events_active": active,
        "draw": {"phase_a": [round(x, 2) for x in draw_phase[:n]], "power_w": round(draw_w, 1),
                 "source": "meter" if reading is not None else ("meter-stale" if metered else "chargers")},
        "allocated": {"phase_a": list(alloc.used_phase_a[:n]), "power_w": alloc.used_w},
        "transactions": {"charging": len(demands) - paused, "paused": paused},
        "chargers": chargers,
    }  # fmt: skip


def clear_gauges(m: Metrics, name: str) -> None:
    """This node does not control the site (any more): its series go, so that max over replicas is the holder's."""
    m.site_controller.labels(name).set(0)
    gauges = (
        (m.site_limit_amperes, ("connection", "effective")), (m.site_limit_watts, ("connection", "effective")),
        (m.site_draw_amperes, ("L1", "L2", "L3")), (m.site_allocated_amperes, ("L1", "L2", "L3")),
        (m.site_transactions, ("charging", "paused")), (m.site_events, ("active", "scheduled")),
    )  # fmt: skip
    for gauge, seconds in gauges:
        for second in seconds:
            with contextlib.suppress(KeyError):  # never set on this node
                gauge.remove(name, second)
    for gauge1 in (m.site_draw_watts, m.site_allocated_watts, m.site_meter_age):
        with contextlib.suppress(KeyError):
            gauge1.remove(name)


def ev_draw(st: EvseState, spec: ChargerSpec, voltage_v: float) -> tuple[tuple[int, ...], dict[int, float], float]:
    """(the site phases the EV draws on, its current per site phase, its power in W) from its last measurement."""
    phases = spec.site_phases()
    if st.phase_a is not None:
        per = {phases[i]: st.phase_a[i] for i in range(len(phases))}
        used = tuple(sorted(p for p, a in per.items() if a >= PHASE_USED_A)) or tuple(sorted(phases))
        w = st.power_w if st.power_w is not None else sum(per.values()) * voltage_v
        return used, per, w
    if st.power_w is not None:
        each = st.power_w / (len(phases) * voltage_v)
        return tuple(sorted(phases)), dict.fromkeys(phases, each), st.power_w
    return tuple(sorted(phases)), {}, 0.0
