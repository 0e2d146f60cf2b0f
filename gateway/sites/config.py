"""``sites:`` in the config: the sites whose grid connection the local controller keeps under its limit.

Parsed by :func:`parse_sites`, which :func:`gateway.config.parse_config` calls with its checker (every problem
reported with its YAML path, all at once). The YAML shape, every key but ``chargers`` and ``limit`` optional::

    sites:
      depot:
        chargers: ["DEPOT-*", CP-7]        # charger ids or globs; a charger belongs to the first site that matches
        limit: 100                         # the connection's limit, in ``unit``
        unit: A                            # A (per phase) | kW (the whole connection)
        margin: 5                          # kept free below the limit, in ``unit``
        phases: 3                          # phases of the grid connection (1 or 3)
        voltage_v: 230                     # phase-to-neutral voltage, to convert between A and W
        period_s: 10                       # re-allocate at least this often (and at every change)
        fairness: equal                    # equal share | priority (higher first, equal within a priority)
        charger_defaults: {phases: 3, min_current_a: 6, max_current_a: 32, priority: 0, rate_unit: A}
        charger_settings: {CP-7: {phases: 1, phase: L2, max_current_a: 16}}
        mqtt: mqtt://127.0.0.1:1883        # the broker of the meter and demand-response topics
        meter: {topic: site/depot/grid, unit: W, max_age_s: 30}
        demand_response_topic: site/depot/events
        fail_safe: {current_a: 10, validity_s: 120}
        profile: {id: 9001, stack_level: 1, fail_safe_id: 9000, fail_safe_stack_level: 0}

Pure: no I/O. It sits below :mod:`gateway.config` in the layers, so it knows nothing of that module: the checker
it is given is a :class:`~gateway.checking.Checker`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal, TypeVar, cast
from urllib.parse import urlsplit

from gateway.checking import Checker

__all__ = [
    "ChargerSpec",
    "Checker",
    "FailSafeConfig",
    "MeterConfig",
    "ProfileConfig",
    "SiteConfig",
    "parse_sites",
    "site_of",
]

SiteUnit = Literal["A", "kW"]
Fairness = Literal["equal", "priority"]
RateUnit = Literal["A", "W"]
MeterUnit = Literal["W", "kW", "A"]
Phase = Literal["L1", "L2", "L3"]
#: 1.6 ConnectorPhaseRotation spellings: which site phase the charger's L1, L2, L3 are wired to
ROTATIONS = ("RST", "RTS", "SRT", "STR", "TRS", "TSR")

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ChargerSpec:
    """How one charger draws and may be limited."""

    #: phases the charger is wired with (1 or 3)
    phases: int = 3
    #: a one-phase charger: the site phase it is on
    phase: Phase = "L1"
    #: a three-phase charger: the site phases its L1, L2, L3 are on, as 1.6 ConnectorPhaseRotation spells it (R, S,
    #: T are the site's L1, L2, L3; "SRT": its L1 on the site's L2, its L2 on L1, its L3 on L3). A one-phase EV on a
    #: three-phase charger draws on the charger's L1.
    rotation: str = "RST"
    #: below this an EV does not charge (IEC 61851: 6 A): an EV gets 0 or at least this
    min_current_a: float = 6.0
    #: the most one EVSE of this charger can take, per phase
    max_current_a: float = 32.0
    #: higher is served first (``fairness: priority``), and keeps its minimum longest when the site is short
    priority: int = 0
    #: the unit of the profiles sent to it (1.6 ChargingScheduleAllowedChargingRateUnit / 2.0.1 RateUnit)
    rate_unit: RateUnit = "A"

    def site_phases(self) -> tuple[int, ...]:
        """The site phases (0, 1, 2 for L1..L3) this charger's L1, L2, L3 are on (one for a one-phase charger)."""
        if self.phases == 1:
            return (int(self.phase[1]) - 1,)
        return tuple("RST".index(ch) for ch in self.rotation)


@dataclass(frozen=True, slots=True)
class MeterConfig:
    """The site meter: the grid connection's measured power or currents on an MQTT topic."""

    topic: str
    #: unit of a payload that is a bare number (JSON objects name their unit: see gateway/sites/meter.py)
    unit: MeterUnit = "W"
    #: a reading older than this is stale: the controller holds the last other-load it computed
    max_age_s: float = 30.0


@dataclass(frozen=True, slots=True)
class FailSafeConfig:
    """What each charger applies on its own when the gateway is gone (README "Local load management")."""

    #: per charger, per phase; None: the site's limit less margin, split evenly over its listed chargers
    current_a: float | None = None
    #: the dynamic profile's validity window: it lapses this long after the controller last renewed it
    validity_s: float = 120.0


@dataclass(frozen=True, slots=True)
class ProfileConfig:
    """The ids and stack levels of the controller's two station-wide maximum profiles on every charger."""

    id: int = 9001
    stack_level: int = 1
    fail_safe_id: int = 9000
    fail_safe_stack_level: int = 0


@dataclass(frozen=True, slots=True)
class SiteConfig:
    name: str
    #: charger ids or globs
    chargers: tuple[str, ...]
    limit: float
    unit: SiteUnit = "A"
    margin: float = 0.0
    phases: int = 3
    voltage_v: float = 230.0
    period_s: float = 10.0
    fairness: Fairness = "equal"
    charger_defaults: ChargerSpec = ChargerSpec()
    charger_settings: Mapping[str, ChargerSpec] = field(default_factory=dict, hash=False)
    mqtt: str | None = None
    meter: MeterConfig | None = None
    demand_response_topic: str | None = None
    fail_safe: FailSafeConfig = FailSafeConfig()
    profile: ProfileConfig = ProfileConfig()

    def matches(self, cid: str) -> bool:
        return any(cid == p or fnmatchcase(cid, p) for p in self.chargers)

    def spec(self, cid: str) -> ChargerSpec:
        return self.charger_settings.get(cid, self.charger_defaults)

    def fail_safe_a(self) -> float:
        """The fail-safe current per charger and phase (see :class:`FailSafeConfig`)."""
        if self.fail_safe.current_a is not None:
            return self.fail_safe.current_a
        per_phase = self.limit - self.margin
        if self.unit == "kW":
            per_phase = per_phase * 1000 / (self.voltage_v * self.phases)
        return _floor1(per_phase / max(1, len(self.chargers)))


def site_of(sites: tuple[SiteConfig, ...], cid: str) -> SiteConfig | None:
    """The first site whose ``chargers`` match ``cid``."""
    for site in sites:
        if site.matches(cid):
            return site
    return None


def _floor1(v: float) -> float:
    return int(v * 10) / 10


# ---------------------------------------------------------------------------------------------------------------
# parsing

_SITE_KEYS = {
    "chargers", "limit", "unit", "margin", "phases", "voltage_v", "period_s", "fairness", "charger_defaults",
    "charger_settings", "mqtt", "meter", "demand_response_topic", "fail_safe", "profile",
}  # fmt: skip
_SPEC_KEYS = {"phases", "phase", "rotation", "min_current_a", "max_current_a", "priority", "rate_unit"}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(v: str) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}; got {v!r}"

    return check


def _positive(v: float) -> str | None:
    return None if v > 0 else "must be > 0"


def _non_negative(v: float) -> str | None:
    return None if v >= 0 else "must be >= 0"


def _phases(v: int) -> str | None:
    return None if v in (1, 3) else "must be 1 or 3"


def _topic(v: str) -> str | None:
    if not v or any(ch in v for ch in "#+\x00"):
        return "must be an MQTT topic name without wildcards (# +)"
    return None


def _mqtt_url(v: str) -> str | None:
    u = urlsplit(v)
    if u.scheme not in ("mqtt", "mqtts") or not u.hostname:
        return f"must be an mqtt:// or mqtts:// URL, got {v!r}"
    try:
        u.port  # noqa: B018 (a bad port raises)
    except ValueError:
        return f"bad port in {v!r}"
    return None


def _spec(c: Checker, node: Any, path: str, base: ChargerSpec) -> ChargerSpec:
    d = c.mapping(node, path, _SPEC_KEYS)
    phase = c.get(d, "phase", path, str, base.phase, _one_of("L1", "L2", "L3"))
    spec = ChargerSpec(
        phases=c.get(d, "phases", path, int, base.phases, _phases),
        phase=cast(Phase, phase),
        rotation=c.get(d, "rotation", path, str, base.rotation, _one_of(*ROTATIONS)),
        min_current_a=c.get(d, "min_current_a", path, float, base.min_current_a, _non_negative),
        max_current_a=c.get(d, "max_current_a", path, float, base.max_current_a, _positive),
        priority=c.get(d, "priority", path, int, base.priority),
        rate_unit=cast(RateUnit, c.get(d, "rate_unit", path, str, base.rate_unit, _one_of("A", "W"))),
    )
    if spec.min_current_a > spec.max_current_a:
        c.err(f"{path}.min_current_a", f"must be <= max_current_a ({spec.max_current_a:g})")
    return spec


def _site(c: Checker, name: str, node: Any, path: str) -> SiteConfig | None:
    d = c.mapping(node, path, _SITE_KEYS, {"chargers", "limit"})
    raw = d.get("chargers")
    chargers: tuple[str, ...] = ()
    if raw is not None:
        if not isinstance(raw, list) or not raw or not all(isinstance(x, str) and x for x in raw):
            c.err(f"{path}.chargers", "must be a non-empty list of charger ids or globs")
        else:
            chargers = tuple(raw)
    unit = cast(SiteUnit, c.get(d, "unit", path, str, "A", _one_of("A", "kW")))
    limit = c.get(d, "limit", path, float, 0.0, _positive)
    margin = c.get(d, "margin", path, float, 0.0, _non_negative)
    if limit and margin >= limit:
        c.err(f"{path}.margin", f"must be below the limit ({limit:g} {unit})")
    defaults = _spec(c, d.get("charger_defaults"), f"{path}.charger_defaults", ChargerSpec())
    settings: dict[str, ChargerSpec] = {}
    sraw = d.get("charger_settings")
    if sraw is not None and not isinstance(sraw, dict):
        c.err(f"{path}.charger_settings", "must map a charger id to its settings")
    elif isinstance(sraw, dict):
        for cid, snode in sraw.items():
            settings[str(cid)] = _spec(c, snode, f"{path}.charger_settings.{cid}", defaults)
            if chargers and not any(str(cid) == p or fnmatchcase(str(cid), p) for p in chargers):
                c.err(f"{path}.charger_settings.{cid}", "is not one of this site's chargers")
    mqtt = c.get(d, "mqtt", path, str, "", _mqtt_url) or None
    meter: MeterConfig | None = None
    if d.get("meter") is not None:
        q = f"{path}.meter"
        m = c.mapping(d["meter"], q, {"topic", "unit", "max_age_s"}, {"topic"})
        meter = MeterConfig(
            topic=c.get(m, "topic", q, str, "", _topic),
            unit=cast(MeterUnit, c.get(m, "unit", q, str, "W", _one_of("W", "kW", "A"))),
            max_age_s=c.get(m, "max_age_s", q, float, 30.0, _positive),
        )
        if mqtt is None:
            c.err(q, f"needs {path}.mqtt (the broker the topic is on)")
    dr_topic = c.get(d, "demand_response_topic", path, str, "", _topic) or None
    if dr_topic is not None and mqtt is None:
        c.err(f"{path}.demand_response_topic", f"needs {path}.mqtt (the broker the topic is on)")
    q = f"{path}.fail_safe"
    f = c.mapping(d.get("fail_safe"), q, {"current_a", "validity_s"})
    fail_safe_a = c.get(f, "current_a", q, float, -1.0, _non_negative)
    fail_safe = FailSafeConfig(
        current_a=fail_safe_a if fail_safe_a >= 0 else None,
        validity_s=c.get(f, "validity_s", q, float, 120.0, _positive),
    )
    period = c.get(d, "period_s", path, float, 10.0, lambda v: None if 0.2 <= v <= 3600 else "must be 0.2..3600")
    if fail_safe.validity_s < 2 * period:
        c.err(f"{q}.validity_s", f"must be at least twice period_s ({period:g}): the profile is renewed each period")
    if fail_safe.current_a is None and any(any(ch in p for ch in "*?[") for p in chargers):
        c.err(f"{q}.current_a", "is required when chargers has globs (the fallback cannot be split over them)")
    q = f"{path}.profile"
    p = c.mapping(d.get("profile"), q, {"id", "stack_level", "fail_safe_id", "fail_safe_stack_level"})
    dp = ProfileConfig()
    profile = ProfileConfig(
        id=c.get(p, "id", q, int, dp.id, _positive),
        stack_level=c.get(p, "stack_level", q, int, dp.stack_level, _non_negative),
        fail_safe_id=c.get(p, "fail_safe_id", q, int, dp.fail_safe_id, _positive),
        fail_safe_stack_level=c.get(p, "fail_safe_stack_level", q, int, dp.fail_safe_stack_level, _non_negative),
    )
    if profile.id == profile.fail_safe_id:
        c.err(f"{q}.fail_safe_id", "must differ from id")
    if profile.stack_level <= profile.fail_safe_stack_level:
        c.err(f"{q}.stack_level", "must be above fail_safe_stack_level (the dynamic profile wins while it is valid)")
    site_phases = c.get(d, "phases", path, int, 3, _phases)
    if site_phases == 1:
        for where, spec in [
            ("charger_defaults", defaults),
            *((f"charger_settings.{k}", v) for k, v in settings.items()),
        ]:
            if spec.phases != 1:
                c.err(f"{path}.{where}.phases", "must be 1 on a one-phase site")
    voltage = c.get(d, "voltage_v", path, float, 230.0, _positive)
    fairness = cast(Fairness, c.get(d, "fairness", path, str, "equal", _one_of("equal", "priority")))
    if not chargers or not limit:
        return None
    return SiteConfig(
        name=name,
        chargers=chargers,
        limit=limit,
        unit=unit,
        margin=margin,
        phases=site_phases,
        voltage_v=voltage,
        period_s=period,
        fairness=fairness,
        charger_defaults=defaults,
        charger_settings=settings,
        mqtt=mqtt,
        meter=meter,
        demand_response_topic=dr_topic,
        fail_safe=fail_safe,
        profile=profile,
    )


def parse_sites(c: Checker, node: Any) -> tuple[SiteConfig, ...]:
    """``sites:``: a mapping of site name to its settings (absent: no site, no controller)."""
    if node is None:
        return ()
    if not isinstance(node, dict):
        c.err("sites", "must be a mapping of site name to its settings")
        return ()
    out: list[SiteConfig] = []
    for name, snode in node.items():
        path = f"sites.{name}"
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            c.err(path, "site names use letters, digits, _ . - (1..64)")
            continue
        site = _site(c, name, snode, path)
        if site is None:
            continue
        for other in out:
            for cid in site.chargers:
                if cid in other.chargers and not any(ch in cid for ch in "*?["):
                    c.err(f"{path}.chargers", f"{cid!r} is already a charger of site {other.name!r}")
        out.append(site)
    return tuple(out)
