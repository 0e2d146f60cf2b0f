"""Charger id -> Route: which backend is primary. Ordered rules, first glob match wins."""

from __future__ import annotations

from dataclasses import dataclass, replace
from fnmatch import fnmatchcase
from typing import Any

from gateway.config import BackendConfig, Config

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    primary: BackendConfig
    #: where the route came from: "config:routes[i]"
    origin: str
    #: the security profile this route requires; None: the listener's
    security_profile: int | None = None
    #: None: any charger id; else only these
    allowlist: frozenset[str] | None = None
    #: mirror backends (copies of charger CALLs)
    mirrors: tuple[BackendConfig, ...] = ()
    #: CALLs a mirror may send to the charger (None: none)
    mirror_calls_allow: frozenset[str] | None = None
    outbox_max_len: int = 10_000
    outbox_max_age_s: float = 7 * 86400.0


class Router:
    """Resolve charger ids against the configured routes (case-sensitive glob, as charger ids are)."""

    def __init__(self, config: Config) -> None:
        self._backends = config.backends
        self._rules = [
            (
                r.match,
                Route(
                    config.backends[r.primary],
                    f"config:routes[{i}]",
                    r.security_profile,
                    r.allowlist,
                    tuple(config.backends[m] for m in r.mirrors),
                    r.mirror_calls_allow,
                    r.outbox_max_len,
                    r.outbox_max_age_s,
                ),
            )
            for i, r in enumerate(config.routes)
        ]

    def override(self, route: Route, override: dict[str, Any] | None) -> Route:
        """``route`` with a per-charger override applied ({"primary", "mirrors"} from the store); backends the
        running config no longer has are ignored (the config route stays)."""
        if not override:
            return route
        primary = self._backends.get(str(override.get("primary")))
        if primary is None:
            return route
        names = override.get("mirrors") or []
        mirrors = tuple(self._backends[m] for m in names if m in self._backends and m != primary.name)
        return replace(route, primary=primary, mirrors=mirrors, origin="override")

    def backend(self, name: str) -> BackendConfig | None:
        return self._backends.get(name)

    def resolve(self, charger_id: str) -> Route | None:
        for pattern, route in self._rules:
            if fnmatchcase(charger_id, pattern):
                return route
        return None
