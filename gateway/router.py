"""Charger id -> Route: which backend is primary. Ordered rules, first glob match wins."""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase

from gateway.config import BackendConfig, Config

__all__ = ["Route", "Router"]


@dataclass(frozen=True, slots=True)
class Route:
    primary: BackendConfig
    #: where the route came from: "config:routes[i]"
    origin: str


class Router:
    """Resolve charger ids against the configured routes (case-sensitive glob, as charger ids are)."""

    def __init__(self, config: Config) -> None:
        self._rules = [
            (r.match, config.backends[r.primary], f"config:routes[{i}]") for i, r in enumerate(config.routes)
        ]

    def resolve(self, charger_id: str) -> Route | None:
        for pattern, backend, origin in self._rules:
            if fnmatchcase(charger_id, pattern):
                return Route(primary=backend, origin=origin)
        return None
