"""Charger id -> Route: which backend is primary, which are mirrors. The one place routes are resolved.

:class:`Router` holds the configured rules (ordered, first glob match wins). :class:`RouteResolver` adds the
per-charger overrides the admin API stores (a cutover): admission, cutover, hot reload and the admin API all ask
it, so a charger's route is computed one way everywhere.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from fnmatch import fnmatchcase
from typing import Any

from gateway.config import BackendConfig, Config
from gateway.fanout.mirror import MirrorSettings
from gateway.offline import OfflineConfig
from gateway.store import Store, StoreUnavailable

__all__ = ["Route", "RouteResolver", "Router"]


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
    #: while the primary is unreachable: close (default) or ride through (gateway/app/ride.py)
    offline: OfflineConfig = field(default_factory=OfflineConfig)

    def mirror_settings(self, call_timeout_s: float) -> MirrorSettings:
        """The settings of this route's mirror feeds (a mirror CALL waits at most 30 s)."""
        return MirrorSettings(
            outbox_max_len=self.outbox_max_len,
            outbox_max_age_s=self.outbox_max_age_s,
            call_timeout_s=min(30.0, call_timeout_s),
            allow_calls=self.mirror_calls_allow,
        )


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
                    r.offline,
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


class RouteResolver:
    """Config routes with the store's per-charger overrides applied."""

    def __init__(self, router: Router, store: Store, log: Any) -> None:
        self.router = router
        self.store = store
        self.log = log

    def configured(self, charger_id: str) -> Route | None:
        """The config's route for ``charger_id`` (no override)."""
        return self.router.resolve(charger_id)

    def backend(self, name: str) -> BackendConfig | None:
        return self.router.backend(name)

    def apply(self, route: Route, override: dict[str, Any] | None) -> Route:
        return self.router.override(route, override)

    async def resolve(self, charger_id: str, *, strict: bool = False) -> Route | None:
        """The route in force for ``charger_id``: the config's, with its override from the store. When the store
        cannot be read, the config route (logged), or StoreUnavailable when ``strict``."""
        base = self.router.resolve(charger_id)
        if base is None:
            return None
        try:
            override = await self.store.get_route_override(charger_id)
        except StoreUnavailable:
            if strict:
                raise
            self.log.warning("route_override_unreadable", charger_id=charger_id)
            return base
        return self.router.override(base, override)
