"""Site load allocation: transactions and limits in, each charger's limit out. Pure, no clock, no I/O.

Two steps, each a function of its inputs only:

1. :func:`headroom`: what the EVs may draw together. The site's limit (after demand-response events) less the
   margin less what the rest of the site draws. The rest of the site is what the meter measures less what the EVs
   are measured to draw; when the meter reads less than the EVs' own sum (a lagging meter, a meter on another
   phase), the larger is believed: the other load is never taken below zero. An EV whose draw is not known counts
   as drawing nothing in that subtraction, which puts its draw in the other load: conservative. With no fresh
   reading the other load the caller held from the last one is used; with no meter at all it is zero.
2. :func:`allocate`: the headroom split over the transactions in progress.

   * Each transaction (:class:`Demand`, one EVSE) gets either 0 or at least its minimum current (an EV does not
     charge below ~6 A, IEC 61851). When the headroom cannot give every transaction its minimum, transactions are
     admitted in order, each while its minimum still fits: first by ``priority`` (``fairness: priority`` only),
     then the earliest started; the others get 0 (paused) until there is room.
   * Above the minimums the rest is filled progressively ("water-filling"): every admitted transaction rises at
     the same pace, and stops when it reaches its cap or when a constraint it is under is used up; the others go
     on. The result is max-min fair: no transaction could get more without taking from one that has less. With
     ``fairness: priority`` the highest priority is filled first, then the next with what is left.
   * A transaction's cap is the EVSE's maximum, or, when the EV was measured drawing clearly less than it was
     offered (its battery is nearly full, its onboard charger is smaller), what it draws plus ``spare_a``: the rest
     goes to the others, and the EV can rise by ``spare_a`` each round.
   * Constraints: per site phase (A sites), and the total power (kW sites). A three-phase transaction uses all
     three phases, a one-phase one only its phase; a charger's limit is one figure for all its phases (the
     station-wide profile), so every transaction of a charger is counted on every phase any of them uses (exact
     for the usual one-EV charger, conservative for a charger mixing one- and three-phase EVs).
   * What the controller cannot change now (:class:`Fixed`: a charger that is offline, which applies its own
     profiles, or one not read back yet after a restart) is taken off first at its worst case.
   * What is left after the transactions goes to idle chargers (:class:`Standby`), their minimum each while it
     fits: a newly plugged EV can start at once, and the site stays under its limit even if every idle charger
     started drawing before the next allocation. Otherwise an idle charger gets 0.
   * Every current is rounded down to 0.1 A (what a 1.6 profile can carry): never above what was computed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "Allocation",
    "Capacity",
    "ChargerLimit",
    "Demand",
    "Fixed",
    "Load",
    "Reading",
    "SiteLimit",
    "Standby",
    "allocate",
    "headroom",
]

EPS = 1e-6
Phases3 = tuple[float, float, float]
Fairness = Literal["equal", "priority"]


@dataclass(frozen=True, slots=True)
class Demand:
    """One transaction in progress (one EVSE of a charger)."""

    key: str
    charger: str
    #: the site phases it draws on (0, 1, 2 for L1..L3)
    phases: tuple[int, ...]
    min_a: float
    max_a: float
    priority: int = 0
    #: when it started: the earliest keeps its minimum first among equals
    since: float = 0.0
    #: measured draw, the highest of its phases (A); None: not known
    draw_a: float | None = None
    #: what it was allowed last (A); None: nothing yet
    offered_a: float | None = None


@dataclass(frozen=True, slots=True)
class Standby:
    """A connected charger with no transaction: its minimum, when there is room, so that an EV can start at once."""

    charger: str
    phases: tuple[int, ...]
    min_a: float


@dataclass(frozen=True, slots=True)
class Fixed:
    """A charger the controller cannot change now, at the most it may draw (A per phase) on its phases."""

    charger: str
    phases: tuple[int, ...]
    current_a: float


@dataclass(frozen=True, slots=True)
class Capacity:
    """What the EVs may draw together: per site phase (A; None: no per-phase limit) and in total (W; None: none)."""

    phase_a: Phases3 | None
    power_w: float | None
    voltage_v: float = 230.0


@dataclass(frozen=True, slots=True)
class ChargerLimit:
    """The station-wide limit of one charger: A per phase, on ``phases`` (its EVSEs' together)."""

    current_a: float
    phases: tuple[int, ...]
    #: transactions of this charger that got 0 (no room for their minimum)
    paused: int = 0
    #: an idle charger's standby minimum
    standby: bool = False


@dataclass(frozen=True, slots=True)
class Allocation:
    #: demand key -> A per phase (0: paused)
    currents: Mapping[str, float]
    #: charger id -> its limit (every charger of the demands and standbys)
    chargers: Mapping[str, ChargerLimit]
    #: demand keys that got 0 for want of room for their minimum
    paused: tuple[str, ...]
    #: what the allocation uses at most, per site phase (A) and in total (W), fixed loads included
    used_phase_a: Phases3
    used_w: float

    def total_a(self) -> float:
        return max(self.used_phase_a)


# ---------------------------------------------------------------------------------------------------------------
# 1. headroom


@dataclass(frozen=True, slots=True)
class Reading:
    """A site meter reading: per-phase currents (A), total power (W), or both."""

    phase_a: Phases3 | None = None
    power_w: float | None = None


@dataclass(frozen=True, slots=True)
class Load:
    """What something draws: per phase (A) and in total (W)."""

    phase_a: Phases3 = (0.0, 0.0, 0.0)
    power_w: float = 0.0


@dataclass(frozen=True, slots=True)
class SiteLimit:
    """The site's limit in force (after demand-response events), in its unit, and how to convert."""

    limit: float
    unit: Literal["A", "kW"] = "A"
    margin: float = 0.0
    phases: int = 3
    voltage_v: float = 230.0


def headroom(site: SiteLimit, ev: Load, meter: Reading | None, held_other: Load | None = None) -> tuple[Capacity, Load]:
    """What the EVs may draw (``ev``: what they are measured to draw now), and the other load it assumed (for the
    caller to hold when the next reading is stale). See the module docstring."""
    v, n = site.voltage_v, site.phases
    other: Load
    if meter is None:
        other = held_other if held_other is not None else Load()
    elif meter.phase_a is not None:
        per = tuple(max(0.0, m - e) for m, e in zip(meter.phase_a, ev.phase_a, strict=True))
        phase_a: Phases3 = (per[0], per[1], per[2])
        power = meter.power_w if meter.power_w is not None else sum(meter.phase_a) * v
        other = Load(phase_a, max(0.0, power - ev.power_w))
    else:
        assert meter.power_w is not None, "a reading has currents or power"
        w = max(0.0, meter.power_w - ev.power_w)
        each = w / (v * n)
        other = Load((each, each if n == 3 else 0.0, each if n == 3 else 0.0), w)
    room = site.limit - site.margin
    if site.unit == "A":
        caps = [max(0.0, room - o) for o in other.phase_a]
        if n == 1:
            caps[1] = caps[2] = 0.0
        return Capacity((caps[0], caps[1], caps[2]), None, v), other
    return Capacity(None, max(0.0, room * 1000 - other.power_w), v), other


# ---------------------------------------------------------------------------------------------------------------
# 2. allocation


@dataclass
class _Room:
    phase: list[float] | None
    power: float | None
    voltage: float
    used_phase: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    used_power: float = 0.0

    def fits(self, current: float, phases: Sequence[int]) -> bool:
        if self.phase is not None and any(self.phase[p] - current < -EPS for p in phases):
            return False
        return self.power is None or self.power - current * len(phases) * self.voltage >= -EPS

    def take(self, current: float, phases: Sequence[int]) -> None:
        for p in phases:
            if self.phase is not None:
                self.phase[p] -= current
            self.used_phase[p] += current
        w = current * len(phases) * self.voltage
        if self.power is not None:
            self.power -= w
        self.used_power += w


def _floor(v: float) -> float:
    return max(0.0, math.floor(v * 10 + 1e-9) / 10)


def allocate(
    demands: Iterable[Demand],
    capacity: Capacity,
    *,
    standby: Iterable[Standby] = (),
    fixed: Iterable[Fixed] = (),
    fairness: Fairness = "equal",
    spare_a: float = 2.0,
) -> Allocation:
    """Split ``capacity`` over ``demands`` (see the module docstring)."""
    room = _Room(list(capacity.phase_a) if capacity.phase_a is not None else None, capacity.power_w, capacity.voltage_v)
    for f in fixed:
        room.take(f.current_a, f.phases)
    if room.phase is not None:
        room.phase = [max(0.0, x) for x in room.phase]
    if room.power is not None:
        room.power = max(0.0, room.power)
    demands = list(demands)
    # a charger's limit covers all its EVSEs on every phase any of them uses
    union: dict[str, set[int]] = {}
    for d in demands:
        union.setdefault(d.charger, set()).update(d.phases)
    phases = {d.key: tuple(sorted(union[d.charger])) for d in demands}
    caps = {d.key: _cap(d, spare_a) for d in demands}

    def rank(d: Demand) -> tuple[int, float, str]:
        return (-d.priority if fairness == "priority" else 0, d.since, d.key)

    alloc: dict[str, float] = {}
    paused: list[str] = []
    for d in sorted(demands, key=rank):
        if d.min_a <= caps[d.key] + EPS and room.fits(d.min_a, phases[d.key]):
            room.take(d.min_a, phases[d.key])
            alloc[d.key] = d.min_a
        else:
            paused.append(d.key)
    admitted = [d for d in demands if d.key in alloc]
    if fairness == "priority":
        for prio in sorted({d.priority for d in admitted}, reverse=True):
            _fill([d.key for d in admitted if d.priority == prio], alloc, caps, phases, room)
    else:
        _fill([d.key for d in admitted], alloc, caps, phases, room)

    currents = {d.key: _floor(alloc.get(d.key, 0.0)) for d in demands}
    chargers: dict[str, ChargerLimit] = {}
    for d in demands:
        prev = chargers.get(d.charger)
        total = (prev.current_a if prev else 0.0) + currents[d.key]
        n_paused = (prev.paused if prev else 0) + (d.key in paused)
        chargers[d.charger] = ChargerLimit(round(total, 1), phases[d.key], n_paused)
    for s in sorted(standby, key=lambda s: s.charger):
        if s.charger in chargers:
            continue
        ok = s.min_a > 0 and room.fits(s.min_a, s.phases)
        if ok:
            room.take(s.min_a, s.phases)
        chargers[s.charger] = ChargerLimit(_floor(s.min_a) if ok else 0.0, tuple(s.phases), standby=ok)
    used = room.used_phase
    # what the rounded currents use (never more than the exact figures the room counted)
    return Allocation(
        currents=currents,
        chargers=chargers,
        paused=tuple(paused),
        used_phase_a=(round(used[0], 3), round(used[1], 3), round(used[2], 3)),
        used_w=round(room.used_power, 1),
    )


def _cap(d: Demand, spare_a: float) -> float:
    """The most a transaction should get: the EVSE's maximum, or its measured draw plus ``spare_a`` when it drew
    clearly less than it was offered."""
    cap = d.max_a
    if d.draw_a is not None and d.offered_a is not None and d.draw_a < d.offered_a - spare_a:
        cap = min(cap, max(d.min_a, d.draw_a + spare_a))
    return cap


def _fill(
    keys: list[str], alloc: dict[str, float], caps: Mapping[str, float], phases: Mapping[str, tuple[int, ...]],
    room: _Room,
) -> None:  # fmt: skip
    """Raise the lowest of ``keys`` together until each reaches its cap or a constraint it is under is used up."""
    active = {k for k in keys if alloc[k] < caps[k] - EPS}
    v = room.voltage
    for _ in range(4 * len(keys) + 8):  # each round caps one, merges a level or uses up a constraint
        if not active:
            return
        level = min(alloc[k] for k in active)
        low = [k for k in active if alloc[k] <= level + EPS]
        higher = [alloc[k] for k in active if alloc[k] > level + EPS]
        step = (min(higher) - level) if higher else math.inf
        step = min(step, min(caps[k] - alloc[k] for k in low))
        per_phase = [sum(1 for k in low if p in phases[k]) for p in range(3)]
        if room.phase is not None:
            for p in range(3):
                if per_phase[p]:
                    step = min(step, room.phase[p] / per_phase[p])
        watts = sum(len(phases[k]) * v for k in low)
        if room.power is not None and watts:
            step = min(step, room.power / watts)
        step = max(0.0, step)
        for k in low:
            alloc[k] += step
            room.take(step, phases[k])
        for k in low:
            if alloc[k] >= caps[k] - EPS:
                active.discard(k)
        if room.phase is not None:
            for p in range(3):
                if room.phase[p] <= EPS:
                    active -= {k for k in active if p in phases[k]}
        if room.power is not None and room.power <= EPS:
            active.clear()
