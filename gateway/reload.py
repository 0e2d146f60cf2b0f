"""Hot reload (SIGHUP or ``POST /api/reload``): re-read the config, validate it, apply routes and backends.

* An invalid file is rejected with every problem and its YAML path; the running config stays.
* Applied: ``backends``, ``routes`` (mirrors, outbox bounds, mirror_calls, security overrides), ``session``,
  ``logging.level`` is not re-configured (structlog is configured once per process).
* Not applied (they need a restart and the result says so): ``listen``, ``admin``, ``store``, ``workers``.
* Connected chargers whose route did not change are untouched. A charger whose primary (or the primary's settings)
  changed is closed with 1012 (service restart) so that it reconnects on its new route at once; a charger whose
  mirrors changed keeps its connection and gets its feeds adjusted.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gateway.config import ConfigError, load_config
from gateway.cutover import sync_mirrors
from gateway.router import Router
from gateway.store.base import StoreUnavailable

if TYPE_CHECKING:
    from gateway.server import Gateway

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


async def reload_config(gw: Gateway, path: str | None) -> ReloadResult:
    """Load ``path`` and apply what can be applied live (see the module docstring)."""
    from gateway.auth import EdgeSecurity
    from gateway.server import close_charger

    if path is None:
        return ReloadResult(False, [("<file>", "the gateway was not started from a config file")])
    try:
        new = load_config(path)
    except ConfigError as e:
        gw.metrics.reloads.labels("invalid").inc()
        gw.log.warning("reload_rejected", problems=len(e.problems))
        return ReloadResult(False, e.problems)
    old = gw.config
    res = ReloadResult(True)
    for key in ("listen", "listeners", "admin", "store", "workers", "taps"):
        if getattr(old, key) != getattr(new, key):
            res.restart_required.append(key)
    applied = replace(
        new, listen=old.listen, listeners=old.listeners, admin=old.admin, store=old.store, workers=old.workers,
        taps=old.taps,
    )  # fmt: skip
    try:
        security = EdgeSecurity(applied, gw.store, gw.metrics)
    except (OSError, ValueError) as e:
        gw.metrics.reloads.labels("invalid").inc()
        return ReloadResult(False, [("<files>", f"cannot load a certificate or credential file: {e}")])
    router = Router(applied)
    gw.config, gw.router, gw.security = applied, router, security
    for cid, conn in list(gw.conns.items()):
        base = router.resolve(cid)
        override = None
        if base is not None:
            try:
                override = await gw.store.get_route_override(cid)
            except StoreUnavailable:
                override = None
        route = router.override(base, override) if base is not None else None
        current = conn.route
        if route is None or current is None or route.primary != current.primary:
            conn.reason = "reload"
            res.moved.append(cid)
            close_charger(conn, 1012, "route changed: reconnect")
            continue
        if route.mirrors != current.mirrors or route.outbox_max_len != current.outbox_max_len:
            conn.route = route
            for feed in sync_mirrors(gw, conn, route):
                await feed.close()
            res.mirrors_changed.append(cid)
            continue
        conn.route = route
        res.unchanged += 1
    gw.metrics.reloads.labels("applied").inc()
    gw.log.info(
        "config_reloaded",
        reconnecting=len(res.moved),
        mirrors_changed=len(res.mirrors_changed),
        restart_required=res.restart_required,
    )
    return res
