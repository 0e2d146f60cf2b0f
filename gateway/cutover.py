"""Routes of connected chargers: mirror feeds per connection, and live cutover to another primary.

Live cutover of a connected charger (:func:`cutover`), without dropping it:

1. hold: the charger's new CALLs wait in the session's queue; in-flight CALLs in both directions finish (bounded
   by ``wait_s``), so that every answer still reaches the backend that asked;
2. the link to the new primary opens (its own security profile and credentials);
3. the new primary gets the charger's last BootNotification (from the store) and must accept it, then the last
   StatusNotification of every connector, each answered before the next;
4. the session switches to the new link and the held CALLs flow to the new primary; the old link closes, and the
   mirror feeds are brought in line with the new route (the old primary can stay as a mirror).

If the new primary cannot be reached, does not answer, or does not accept the boot, the charger stays on the old
primary, untouched, and the reason is returned. Live cutover needs a pass-through session on both sides (charger,
old and new primary speak one version); for a translated charger the override is stored and applies at its next
connection (the result says so). Every cutover is logged and counted (``ocppgw_cutovers_total{result}``).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable
from gateway.mirror import MirrorFeed, MirrorSettings
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import CallError, CallResult, call_text, parse_frame
from gateway.ocpp.versions import SUBPROTOCOLS
from gateway.router import Route
from gateway.session import Session
from gateway.store.base import StoreUnavailable, Write
from gateway.store.keys import Keys
from gateway.upstream import Link, open_link

if TYPE_CHECKING:
    from gateway.server import Conn, Gateway

__all__ = ["CutoverResult", "backend_credentials", "cutover", "sync_mirrors"]


@dataclass(frozen=True, slots=True)
class CutoverResult:
    ok: bool
    result: str  # bounded metric label: moved, unchanged, next_connection, unreachable, boot_refused, busy, ...
    detail: str = ""


async def backend_credentials(
    gw: Gateway, backend: BackendConfig, cid: str, charger_password: str | None
) -> tuple[ssl.SSLContext | None, str | None]:
    """TLS context and Basic auth password the gateway presents to ``backend`` for this charger."""
    sec = getattr(gw, "security", None)
    if sec is None:
        return None, None
    ctx = sec.client_tls(backend, cid)
    if backend.security_profile not in (1, 2):
        return ctx, None
    return ctx, await sec.upstream_password(backend, cid, charger_password)


def sync_mirrors(gw: Gateway, conn: Conn, route: Route) -> list[MirrorFeed]:
    """Start feeds for the route's mirrors that have none; return the feeds no longer wanted (caller closes)."""
    session = conn.session
    wanted = {b.name: b for b in route.mirrors}
    feeds: dict[str, MirrorFeed] = conn.feeds
    stale = [feeds.pop(name) for name in list(feeds) if name not in wanted]
    settings = MirrorSettings(
        outbox_max_len=route.outbox_max_len,
        outbox_max_age_s=route.outbox_max_age_s,
        call_timeout_s=min(30.0, gw.config.session.call_timeout_s),
        allow_calls=route.mirror_calls_allow,
    )
    for name, backend in wanted.items():
        if name in feeds:
            continue
        feed = MirrorFeed(
            charger_id=session.charger_id,
            charger_version=session.version,
            primary=route.primary.name,
            backend=backend,
            store=gw.store,
            outbox=gw.outbox,
            keys=Keys(gw.config.store.prefix),
            metrics=gw.metrics,
            settings=settings,
            ticker=gw.ticker,
            max_frame=gw.config.listen.max_frame_bytes,
            log=session.log if session.log is not None else gw.log,
            board=gw.mirror_board,
            call_charger=session.call_charger,
        )
        feeds[name] = feed
        feed.start()
    for feed in feeds.values():
        feed.primary = route.primary.name
        feed.sink = None
    for feed in stale:
        feed.sink = None
    session.set_mirror_spool(None, b"")
    if len(feeds) == 1:
        feed = next(iter(feeds.values()))
        session.mirror = feed.offer  # the common case: no fan-out call per copy
        if type(session) is Session:  # pass-through: frames as received; while the mirror is down, not even a call
            feed.sink = session.set_mirror_spool
            if feed.spooling is not None:
                session.set_mirror_spool(feed.spooling, feed.tag)
    elif feeds:
        session.mirror = lambda action, payload, answer: _fan_out(feeds, action, payload, answer)
    else:
        session.mirror = None
    return stale


def _fan_out(feeds: dict[str, MirrorFeed], action: str, call: Any, answer: Any) -> None:
    for feed in feeds.values():
        feed.offer(action, call, answer)


class _Probe:
    """A LinkSink that only collects answers to the gateway's own CALLs (boot and statuses at cutover)."""

    def __init__(self) -> None:
        self.log: Any = None
        self.waiting: dict[str, asyncio.Future[tuple[str, dict[str, Any]]]] = {}

    def from_backend(self, text: bytes) -> None:
        try:
            frame = parse_frame(text)
        except FrameError:
            return
        if type(frame) is CallResult:
            fut = self.waiting.pop(frame.unique_id, None)
            if fut is not None and not fut.done():
                fut.set_result(("result", frame.payload))
        elif type(frame) is CallError:
            fut = self.waiting.pop(frame.unique_id, None)
            if fut is not None and not fut.done():
                fut.set_result(("error", {"code": frame.code}))

    def link_lost(self) -> None:
        for fut in self.waiting.values():
            if not fut.done():
                fut.set_result(("error", {"code": "link_lost"}))

    def link_restored(self) -> None:
        return None


async def _ask(link: Link, probe: _Probe, uid: str, action: str, payload: dict[str, Any], timeout: float) -> Any:
    fut: asyncio.Future[tuple[str, dict[str, Any]]] = asyncio.get_running_loop().create_future()
    probe.waiting[uid] = fut
    link.send(call_text(uid, action, payload))
    async with asyncio.timeout(timeout):
        return await fut


async def cutover(gw: Gateway, cid: str, primary: str, mirrors: list[str], wait_s: float = 10.0) -> CutoverResult:
    """Move a charger to ``primary`` (+ ``mirrors``): the override is stored, and a locally connected charger is
    moved live. See the module docstring for the steps and the guarantees."""
    new = gw.router.backend(primary)
    if new is None:
        return CutoverResult(False, "unknown_backend", f"no backend {primary!r}")
    unknown = [m for m in mirrors if gw.router.backend(m) is None]
    if unknown:
        return CutoverResult(False, "unknown_backend", f"no backend {', '.join(unknown)}")
    override = {"primary": primary, "mirrors": [m for m in mirrors if m != primary]}
    conn = gw.conns.get(cid)
    if conn is None:
        return await _store_override(gw, cid, override, "next_connection", "not connected to this gateway")
    session = conn.session
    log = session.log if session.log is not None else gw.log
    base = gw.router.resolve(cid)
    if base is None:
        return CutoverResult(False, "no_route", "no configured route for this charger")
    target = gw.router.override(base, override)
    if getattr(session, "translator", None) is not None or new.ocpp != session.version:
        res = await _store_override(gw, cid, override, "next_connection", "translated session: applies on reconnect")
        return res
    if session.backend == primary:
        res = await _store_override(gw, cid, override, "unchanged", "already on this primary")
        for feed in sync_mirrors(gw, conn, target):
            await feed.close()
        return res

    # 1. hold and let in-flight CALLs finish
    session.link_up = False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_s
    while (session.up is not None or session.down is not None) and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    if session.up is not None or session.down is not None:
        _resume(conn)
        return _count(gw, log, cid, CutoverResult(False, "busy", "in-flight CALLs did not finish in time"))

    # 2. the new link
    try:
        ctx, password = await backend_credentials(gw, new, cid, conn.charger_password)
        link = await open_link(
            new, cid, SUBPROTOCOLS[new.ocpp], gw.metrics, gw.config.listen.max_frame_bytes,
            ssl_context=ctx, ticker=gw.ticker, password=password,
        )  # fmt: skip
    except (BackendUnavailable, StoreUnavailable, OSError, ssl.SSLError) as e:
        _resume(conn)
        return _count(gw, log, cid, CutoverResult(False, "unreachable", str(e)))
    probe = _Probe()
    link.attach(probe)  # type: ignore[arg-type]

    # 3. boot and statuses, each answered before the next
    try:
        boot = await gw.store.get_boot(cid)
        statuses = await gw.store.get_statuses(cid)
    except StoreUnavailable as e:
        await link.close()
        _resume(conn)
        return _count(gw, log, cid, CutoverResult(False, "store_unavailable", str(e)))
    request = boot.get("request") if boot else None
    timeout = min(30.0, gw.config.session.call_timeout_s)
    try:
        if isinstance(request, dict):
            kind, answer = await _ask(link, probe, f"cut-boot-{cid}"[:36], "BootNotification", request, timeout)
            if kind != "result" or answer.get("status") != "Accepted":
                await link.close()
                _resume(conn)
                why = answer.get("status") or answer.get("code")
                return _count(gw, log, cid, CutoverResult(False, "boot_refused", f"new primary answered {why}"))
        for n, (_, status) in enumerate(sorted(statuses.items())):
            await _ask(link, probe, f"cut-st{n}-{cid}"[:36], "StatusNotification", status, timeout)
    except TimeoutError:
        await link.close()
        _resume(conn)
        return _count(gw, log, cid, CutoverResult(False, "timeout", "new primary did not answer"))

    # 4. switch
    stored = await _store_override(gw, cid, override, "moved", "")
    if not stored.ok:
        await link.close()
        _resume(conn)
        return _count(gw, log, cid, stored)
    old = conn.link
    conn.link = link
    link.attach(session)
    link.on_pause = old.on_pause
    link.on_give_up = old.on_give_up
    session.send_backend = link.send
    old_backend = session.backend
    session.backend = primary
    conn.route = target
    await old.close()
    _resume(conn)
    for feed in sync_mirrors(gw, conn, target):
        await feed.close()
    gw.writer.put(Write("conn", cid, "", {**(conn.info or {}), "backend": primary, "route": "override"}))
    log.info("cutover", from_backend=old_backend, to_backend=primary, mirrors=override["mirrors"])
    return _count(gw, log, cid, CutoverResult(True, "moved", f"{old_backend} -> {primary}"))


def _resume(conn: Conn) -> None:
    conn.session.link_restored()


def _count(gw: Gateway, log: Any, cid: str, res: CutoverResult) -> CutoverResult:
    gw.metrics.cutovers.labels(res.result).inc()
    if not res.ok:
        log.warning("cutover_refused", result=res.result, detail=res.detail)
    return res


async def _store_override(gw: Gateway, cid: str, override: dict[str, Any], result: str, detail: str) -> CutoverResult:
    try:
        await gw.store.apply([Write("route", cid, "", override)])
    except StoreUnavailable as e:
        return CutoverResult(False, "store_unavailable", str(e))
    if result != "moved":
        gw.metrics.cutovers.labels(result).inc()
    return CutoverResult(True, result, detail)


async def close_feeds(conn: Conn) -> None:
    """Close every mirror feed of a connection that ended (their buffered copies are written to the outbox)."""
    feeds = list(conn.feeds.values())
    conn.feeds.clear()
    for feed in feeds:
        await feed.close()
