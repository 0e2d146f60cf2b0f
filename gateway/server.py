"""The charger edge (aiohttp): HTTP upgrade, charger id, subprotocol, upstream link, session lifetime, drain.

Handshake, in order (each refusal is an HTTP status *before* the upgrade, counted in
``ocppgw_connections_total{outcome}``):

1. draining -> 503; path not ``<path_prefix>/<one segment>`` -> 404; charger id not 1..48 printable characters
   without '/' after percent-decoding -> 400;
2. no route for the id -> 404; no subprotocol in common between the charger's offer and the primary -> 400;
3. the upstream link to the primary opens with the chosen subprotocol, or 502 (refused/failed) / 503 (timed out):
   the charger stays offline and queues on its own, the gateway never answers for the CSMS;
4. upgrade; a live session with the same id is closed first (logged, counted).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import aiohttp
from aiohttp import web

from gateway.config import Config
from gateway.errors import BackendUnavailable, ChargerRejected
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ocpp.versions import SUBPROTOCOLS, VERSIONS
from gateway.router import Route, Router
from gateway.session import Session, SessionSettings
from gateway.store import StateWriter, Store, Write
from gateway.upstream import Link, open_link

__all__ = ["Gateway", "charger_app", "parse_charger_id"]

MAX_CHARGER_ID = 48


def parse_charger_id(raw_path: str, prefix: str) -> str:
    """The charger id from the request's raw (percent-encoded) path, or :class:`ChargerRejected`."""
    path = raw_path.split("?", 1)[0]
    if not path.startswith(prefix + "/"):
        raise ChargerRejected(404, "bad_path", f"path must be {prefix}/<charger id>")
    segment = path[len(prefix) + 1 :]
    if not segment or "/" in segment:
        raise ChargerRejected(404, "bad_path", f"path must be {prefix}/<charger id>")
    try:
        cid = unquote(segment, errors="strict")
    except UnicodeDecodeError:
        raise ChargerRejected(400, "bad_charger_id", "charger id is not valid UTF-8") from None
    if not 1 <= len(cid) <= MAX_CHARGER_ID or "/" in cid or not cid.isprintable():
        raise ChargerRejected(400, "bad_charger_id", "charger id must be 1..48 printable characters without '/'")
    return cid


def choose_subprotocol(offered: list[str], route: Route, allowed: tuple[str, ...]) -> str:
    """The first subprotocol the charger offered that the listener allows and the primary speaks."""
    want = SUBPROTOCOLS[route.primary.ocpp]
    for p in offered:
        if p == want and VERSIONS.get(p) in allowed:
            return p
    raise ChargerRejected(
        400, "no_subprotocol", f"charger offered {offered or 'none'}; backend {route.primary.name} speaks {want}"
    )


@dataclass
class Gateway:
    """Everything a running gateway holds. Lives under the app's AppKey; no module globals."""

    config: Config
    metrics: Metrics
    store: Store
    writer: StateWriter
    http: aiohttp.ClientSession
    router: Router
    node: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")
    sessions: dict[str, Session] = field(default_factory=dict)
    links: dict[str, Link] = field(default_factory=dict)
    sockets: dict[str, web.WebSocketResponse] = field(default_factory=dict)
    done: dict[str, asyncio.Event] = field(default_factory=dict)
    draining: bool = False
    #: see Session.observe (the demo's live view); None in production
    observe: Callable[[str, str, str], None] | None = None
    log: Any = field(default_factory=get_logger)

    def session_settings(self) -> SessionSettings:
        s = self.config.session
        return SessionSettings(call_timeout_s=s.call_timeout_s, max_queued_calls=s.max_queued_calls)

    async def close_session(self, cid: str, code: int, message: str) -> None:
        """Close a charger's socket with ``code`` and wait (bounded) until its handler finished."""
        ws = self.sockets.get(cid)
        done = self.done.get(cid)
        if ws is not None:
            await ws.close(code=code, message=message.encode())
        if done is not None:
            try:
                async with asyncio.timeout(5):
                    await done.wait()
            except TimeoutError:
                self.log.warning("session_close_slow", charger_id=cid)

    async def sweep(self) -> None:
        """Expire overdue CALLs once a second (one task for all sessions, no timer per message)."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            now = loop.time()
            for s in list(self.sessions.values()):
                if (s.up is not None and s.up.deadline <= now) or (s.down is not None and s.down.deadline <= now):
                    with contextlib.suppress(ConnectionError, RuntimeError):
                        await s.expire(now)  # a closing socket raises: its handler ends the session


GATEWAY = web.AppKey("gateway", Gateway)


async def handle_charger(request: web.Request) -> web.StreamResponse:
    gw = request.app[GATEWAY]
    cfg = gw.config
    m = gw.metrics
    remote = request.remote or ""
    try:
        if gw.draining:
            raise ChargerRejected(503, "draining", "gateway is shutting down")
        cid = parse_charger_id(request.raw_path, cfg.listen.path_prefix)
        route = gw.router.resolve(cid)
        if route is None:
            raise ChargerRejected(404, "no_route", "no route for this charger id")
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        subprotocol = choose_subprotocol(offered, route, cfg.listen.ocpp_versions)
    except ChargerRejected as e:
        m.connections.labels(e.outcome).inc()
        gw.log.info(
            "charger_refused",
            reason=e.reason,
            outcome=e.outcome,
            status=e.http_status,
            remote=remote,
            path=request.raw_path[:100],
        )
        return web.Response(status=e.http_status, text=e.reason + "\n")
    version = VERSIONS[subprotocol]
    log = gw.log.bind(charger_id=cid, backend=route.primary.name, ocpp_version=version)

    # A second connection with the same id replaces the first, before the new upstream link opens, so that the CSMS
    # never sees two connections for one charger.
    if cid in gw.sockets:
        m.chargers_replaced.inc()
        log.info("charger_replaced", remote=remote)
        await gw.close_session(cid, 1000, "replaced by a new connection")

    try:
        link = await open_link(gw.http, route.primary, cid, subprotocol, m, cfg.listen.max_frame_bytes)
    except BackendUnavailable as e:
        m.connections.labels("backend_unavailable").inc()
        log.warning("backend_unavailable", reason=e.reason, status=e.http_status)
        return web.Response(status=e.http_status, text=f"backend {e.backend} unavailable\n")

    ws = web.WebSocketResponse(
        protocols=(subprotocol,),
        heartbeat=cfg.listen.ping_interval_s or None,
        receive_timeout=cfg.listen.idle_timeout_s or None,
        max_msg_size=cfg.listen.max_frame_bytes,
        compress=False,
        autoping=True,
    )
    try:
        await ws.prepare(request)
    except (ConnectionError, RuntimeError):
        await link.close()
        raise
    m.connections.labels("accepted").inc()
    done = asyncio.Event()
    gw.sockets[cid] = ws
    gw.links[cid] = link
    gw.done[cid] = done

    session = Session(
        charger_id=cid,
        version=version,
        backend=route.primary.name,
        send_charger=ws.send_str,
        send_backend=link.send,
        metrics=m,
        write=gw.writer.put,
        settings=gw.session_settings(),
        log=log,
        remote=remote,
        observe=gw.observe,
    )
    gw.sessions[cid] = session
    gauge = m.chargers_connected.labels(version)
    gauge.inc()
    gw.writer.put(
        Write(
            "conn",
            cid,
            "",
            {
                "node": gw.node,
                "since": session.connected_at,
                "protocol": subprotocol,
                "backend": route.primary.name,
                "route": route.origin,
                "remote": remote,
            },
        )
    )
    log.info("charger_connected", remote=remote, subprotocol=subprotocol)

    reason = "charger_closed"
    gave_up = False

    async def run_link() -> bool:
        nonlocal gave_up
        ok = await link.run(session)
        gave_up = not ok
        if not ok and not ws.closed:
            # The link gave up (grace period over): close the charger so it reconnects later and queues meanwhile.
            await ws.close(code=1013, message=b"backend unavailable")
        return ok

    link_task = asyncio.get_running_loop().create_task(run_link(), name=f"link:{cid}")
    try:
        async for msg in ws:
            if msg.type is aiohttp.WSMsgType.TEXT:
                session.last_seen = time.time()
                await session.from_charger(msg.data)
            elif msg.type is aiohttp.WSMsgType.BINARY:
                m.frame_errors.labels("charger", "binary").inc()
                reason = "binary_frame"
                await ws.close(code=1003, message=b"binary frames are not OCPP-J")
                break
            elif msg.type is aiohttp.WSMsgType.ERROR:
                exc = ws.exception()
                if ws.close_code == 1009 or (isinstance(exc, aiohttp.WebSocketError) and exc.code == 1009):
                    m.frame_errors.labels("charger", "too_big").inc()
                    reason = "frame_too_big"
                else:
                    reason = "error"
                break
        if gave_up:
            reason = "backend_lost"
    except TimeoutError:
        reason = "idle_timeout"
        await ws.close(code=1001, message=b"idle timeout")
    except (ConnectionError, aiohttp.ClientConnectionResetError):
        reason = "connection_reset"
    except Exception:
        # A bug: log it with the charger bound, count it, close this one session, keep the process alive.
        m.internal_errors.labels("session").inc()
        log.exception("session_crashed")
        reason = "internal_error"
        await ws.close(code=1011, message=b"internal error")
    finally:
        if gw.sessions.get(cid) is session:
            del gw.sessions[cid]
            del gw.sockets[cid]
            del gw.links[cid]
            del gw.done[cid]
            gw.writer.put(Write("conn", cid, "", None))
        session.close()
        await link.close()
        if not link_task.done():
            link_task.cancel()
        try:
            await link_task
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
        except Exception:
            pass  # counted where it happened
        gauge.dec()
        m.disconnects.labels(reason).inc()
        log.info("charger_disconnected", reason=reason, close_code=ws.close_code)
        done.set()
    return ws


def charger_app(gw: Gateway) -> web.Application:
    """The charger-facing application (one route: ``<path_prefix>/<anything>``, parsed by hand)."""
    app = web.Application(handler_args={"max_field_size": 16384})
    app[GATEWAY] = gw
    prefix = gw.config.listen.path_prefix
    app.router.add_get(prefix + r"/{tail:[\s\S]*}", handle_charger)
    return app
