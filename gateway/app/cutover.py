"""Live cutover of a connected charger to another primary, without dropping it (:func:`cutover`).

1. hold: the charger's new CALLs wait in the session's queue; in-flight CALLs in both directions finish (bounded
   by ``wait_s``), so that every answer still reaches the backend that asked (:meth:`Session.hold`);
2. the link to the new primary opens (the link factory: its own security profile and credentials);
3. the new primary gets the charger's last BootNotification (from the store) and must accept it, then the last
   StatusNotification of every connector, each answered before the next (a :class:`LinkCaller`: the call lane);
4. the connection switches to the new link and the held CALLs flow to the new primary; the old link closes, and the
   mirror feeds are brought in line with the new route (the old primary can stay as a mirror).

If the new primary cannot be reached, does not answer, or does not accept the boot, the charger stays on the old
primary, untouched, and the reason is returned. Live cutover needs a pass-through session on both sides (charger,
old and new primary speak one version); for a translated charger the override is stored and applies at its next
connection (the result says so). Every cutover is logged and counted (``ocppgw_cutovers_total{result}``).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from gateway.app.connection import Conn
from gateway.app.hub import Hub
from gateway.errors import BackendUnavailable, NoUpstreamCredentials
from gateway.links.caller import LinkCaller
from gateway.store.base import StoreUnavailable, Write

__all__ = ["CutoverResult", "cutover"]


@dataclass(frozen=True, slots=True)
class CutoverResult:
    ok: bool
    result: str  # bounded metric label: moved, unchanged, next_connection, unreachable, boot_refused, busy, ...
    detail: str = ""


async def cutover(hub: Hub, cid: str, primary: str, mirrors: list[str], wait_s: float = 10.0) -> CutoverResult:
    """Move a charger to ``primary`` (+ ``mirrors``): the override is stored, and a locally connected charger is
    moved live. See the module docstring for the steps and the guarantees."""
    routes = hub.routes
    new = routes.backend(primary)
    if new is None:
        return CutoverResult(False, "unknown_backend", f"no backend {primary!r}")
    unknown = [m for m in mirrors if routes.backend(m) is None]
    if unknown:
        return CutoverResult(False, "unknown_backend", f"no backend {', '.join(unknown)}")
    override = {"primary": primary, "mirrors": [m for m in mirrors if m != primary]}
    conn = hub.conns.get(cid)
    if conn is None:
        return await _store_override(hub, cid, override, "next_connection", "not connected to this gateway")
    base = routes.configured(cid)
    if base is None:
        return CutoverResult(False, "no_route", "no configured route for this charger")
    target = routes.apply(base, override)
    session = conn.session
    if session.translator is not None or new.ocpp != session.version:
        return await _store_override(hub, cid, override, "next_connection", "translated session: applies on reconnect")
    if conn.ride is not None:  # its journal and transaction ids belong to the current primary
        return await _store_override(hub, cid, override, "next_connection", "ride-through route: applies on reconnect")
    if session.backend == primary:
        res = await _store_override(hub, cid, override, "unchanged", "already on this primary")
        for feed in conn.sync_mirrors(target):
            await feed.close()
        return res

    # 1. hold and let in-flight CALLs finish
    quiet: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def quieted() -> None:
        if not quiet.done():
            quiet.set_result(None)

    session.hold(quieted)
    try:
        async with asyncio.timeout(wait_s):
            await quiet
    except TimeoutError:
        session.release()
        return _count(hub, conn, CutoverResult(False, "busy", "in-flight CALLs did not finish in time"))
    try:
        return await _move(hub, conn, target, override)
    finally:
        session.release()


async def _move(hub: Hub, conn: Conn, target: Any, override: dict[str, Any]) -> CutoverResult:
    cid, new = conn.charger_id, target.primary
    # 2. the new link, from the new primary's own config
    try:
        link = await hub.links.open(new, cid, charger_password=conn.charger_password, log=conn.log)
    except (BackendUnavailable, NoUpstreamCredentials) as e:
        return _count(hub, conn, CutoverResult(False, "unreachable", str(e)))
    except StoreUnavailable as e:
        return _count(hub, conn, CutoverResult(False, "store_unavailable", str(e)))
    timeout = min(30.0, hub.config.session.call_timeout_s)
    probe = LinkCaller(link, timeout_s=timeout, metrics=hub.metrics, side="backend")

    # 3. boot and statuses, each answered before the next
    try:
        boot = await hub.store.get_boot(cid)
        statuses = await hub.store.get_statuses(cid)
    except StoreUnavailable as e:
        await link.close()
        return _count(hub, conn, CutoverResult(False, "store_unavailable", str(e)))
    request = boot.get("request") if boot else None
    refused: CutoverResult | None = None
    if isinstance(request, dict):
        reply = await probe.call("BootNotification", request)
        if reply.kind in ("timeout", "lost"):
            refused = _no_answer(reply.kind)
        elif reply.kind != "result" or reply.payload.get("status") != "Accepted":
            why = reply.payload.get("status") if reply.kind == "result" else reply.code
            refused = CutoverResult(False, "boot_refused", f"new primary answered {why}")
    for _, status in sorted(statuses.items()) if refused is None else ():
        reply = await probe.call("StatusNotification", status)
        if reply.kind in ("timeout", "lost"):
            refused = _no_answer(reply.kind)
            break
    if refused is not None:
        probe.close()
        await link.close()
        return _count(hub, conn, refused)

    # 4. switch
    stored = await _store_override(hub, cid, override, "moved", "")
    if not stored.ok:
        probe.close()
        await link.close()
        return _count(hub, conn, stored)
    old_backend = conn.session.backend
    stale = await conn.switch_primary(link, target)
    conn.session.release()  # the held CALLs go to the new primary now
    for feed in stale:
        await feed.close()
    conn.log.info("cutover", from_backend=old_backend, to_backend=new.name, mirrors=override["mirrors"])
    return _count(hub, conn, CutoverResult(True, "moved", f"{old_backend} -> {new.name}"))


def _no_answer(kind: str) -> CutoverResult:
    if kind == "lost":
        return CutoverResult(False, "unreachable", "new primary closed the connection")
    return CutoverResult(False, "timeout", "new primary did not answer")


def _count(hub: Hub, conn: Conn, res: CutoverResult) -> CutoverResult:
    hub.metrics.cutovers.labels(res.result).inc()
    if not res.ok:
        conn.log.warning("cutover_refused", result=res.result, detail=res.detail)
    return res


async def _store_override(hub: Hub, cid: str, override: dict[str, Any], result: str, detail: str) -> CutoverResult:
    try:
        await hub.store.apply([Write("route", cid, "", override)])
    except StoreUnavailable as e:
        return CutoverResult(False, "store_unavailable", str(e))
    if result != "moved":
        hub.metrics.cutovers.labels(result).inc()
    return CutoverResult(True, result, detail)
