"""Hot reload (SIGHUP or ``POST /api/reload``): re-read the config, validate it, apply routes and backends.

* An invalid file is rejected with every problem and its YAML path; the running config stays.
* Applied: ``backends``, ``routes`` (mirrors, outbox bounds, mirror_calls, security overrides), ``session``,
  ``logging.level`` is not re-configured (structlog is configured once per process).
* Not applied (they need a restart and the result says so): ``listen``, ``admin``, ``store``, ``workers``,
  ``taps``, ``compliance``, ``sites``. ``quirks`` is applied: connected chargers get the new profiles at once.
* Connected chargers whose route did not change are untouched. A charger whose primary (or the primary's settings)
  changed is closed with 1012 (service restart) so that it reconnects on its new route at once; a charger whose
  mirrors changed keeps its connection and gets its feeds adjusted.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field, replace
from typing import Any

from gateway.app.hub import Hub
from gateway.app.routing import RouteResolver
from gateway.config import ConfigError, load_config
from gateway.edge.auth import EdgeSecurity
from gateway.links.credentials import UpstreamCredentials

__all__ = ["ReloadResult", "reload_config"]


@dataclass
class ReloadResult:
    ok: bool
    problems: list[tuple[str, str]] = field(default_factory=list)
    restart_required: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    mirrors_changed: list[str] = field(default_factory=list)
    unchanged: int = 0

    def body(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "problems": [{"path": p, "message": m} for p, m in self.problems],
            "restart_required": self.restart_required,
            "reconnecting": self.moved,
            "mirrors_changed": self.mirrors_changed,
            "unchanged": self.unchanged,
        }


async def reload_config(hub: Hub, path: str | None) -> ReloadResult:
    """Load ``path`` and apply what can be applied live (see the module docstring)."""
    if path is None:
        return ReloadResult(False, [("<file>", "the gateway was not started from a config file")])
    try:
        new = load_config(path)
    except ConfigError as e:
        hub.metrics.reloads.labels("invalid").inc()
        hub.log.warning("reload_rejected", problems=len(e.problems))
        return ReloadResult(False, e.problems)
    old = hub.config
    res = ReloadResult(True)
    for key in ("listen", "listeners", "admin", "store", "workers", "taps", "compliance", "sites"):
        if getattr(old, key) != getattr(new, key):
            res.restart_required.append(key)
    applied = replace(
        new, listen=old.listen, listeners=old.listeners, admin=old.admin, store=old.store, workers=old.workers,
        taps=old.taps, compliance=old.compliance,
    )  # fmt: skip
    try:
        security = EdgeSecurity(applied, hub.store, hub.metrics)
        credentials = UpstreamCredentials(applied, hub.store)
    except ConfigError as e:
        hub.metrics.reloads.labels("invalid").inc()
        return ReloadResult(False, e.problems)
    except (OSError, ValueError, ssl.SSLError) as e:
        hub.metrics.reloads.labels("invalid").inc()
        return ReloadResult(False, [("<files>", f"cannot load a certificate or credential file: {e}")])
    hub.apply_config(applied, security, credentials)
    routes: RouteResolver = hub.routes
    for cid, conn in list(hub.conns.items()):
        route = await routes.resolve(cid)
        current = conn.route
        if route is None or route.primary != current.primary:
            res.moved.append(cid)
            conn.close(1012, "route changed: reconnect", "reload")
            continue
        if route.mirrors != current.mirrors or route.outbox_max_len != current.outbox_max_len:
            for feed in conn.sync_mirrors(route):
                await feed.close()
            res.mirrors_changed.append(cid)
            continue
        conn.route = route
        res.unchanged += 1
    hub.metrics.reloads.labels("applied").inc()
    hub.log.info(
        "config_reloaded",
        reconnecting=len(res.moved),
        mirrors_changed=len(res.mirrors_changed),
        restart_required=res.restart_required,
    )
    return res
