"""The charger edge: HTTP upgrade, charger id, subprotocol, upstream link, session lifetime, drain.

The listener is a plain asyncio server whose protocol, :class:`Handshake`, reads the HTTP upgrade request and
decides asynchronously whether to admit the charger (route, subprotocol, and opening the upstream link first). Only
then is the connection handed to picows (a Cython WebSocket implementation driven by callbacks) for the 101 answer
and the frames: no task and no await per message, one read callback per frame. The admin API stays on aiohttp.

Handshake, in order (each refusal is an HTTP status *before* the upgrade, counted in
``ocppgw_connections_total{outcome}``):

1. draining -> 503; not ``GET`` -> 405; path not ``<path_prefix>/<one segment>`` -> 404; charger id not 1..48
   printable characters without '/' after percent-decoding -> 400;
2. no route for the id -> 404; no subprotocol in common between the charger's offer and the primary -> 400;
3. the upstream link to the primary opens with the chosen subprotocol, or 502 (refused/failed) / 503 (timed out):
   the charger stays offline and queues on its own, the gateway never answers for the CSMS;
4. upgrade; a live session with the same id is closed first (logged, counted).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

from picows import WSAutoPingStrategy, WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeResponse
from picows.common import WSUpgradeResponseWithListener
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in the stub; pinned picows

from gateway.auth import Admission, EdgeSecurity, set_charger_password
from gateway.bridge import TranslatingSession
from gateway.config import Config, ListenConfig
from gateway.cutover import close_feeds, sync_mirrors
from gateway.errors import BackendUnavailable, ChargerRejected
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.mirror import MirrorBoard, MirrorFeed
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import Call, CallResult, parse_frame
from gateway.ocpp.versions import SUBPROTOCOLS, VERSIONS
from gateway.router import Route, Router
from gateway.security import ROTATION_MARKERS, rotation_accepted, rotation_offer
from gateway.session import Session, SessionSettings
from gateway.store import StateWriter, Store, StoreUnavailable, Write
from gateway.store.keys import Keys
from gateway.store.outbox import Outbox, open_outbox
from gateway.taps import Taps
from gateway.translate import TRANSLATABLE, translator_for
from gateway.translate.base import Translator
from gateway.upstream import READ_BUFFER, Link, Ticker, open_link, pause_transport

if TYPE_CHECKING:
    from gateway.fleet import Fleet

__all__ = ["Gateway", "Handshake", "choose_subprotocol", "parse_charger_id"]

MAX_CHARGER_ID = 48
MAX_REQUEST_HEAD = 16 * 1024
HANDSHAKE_TIMEOUT_S = 10.0
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("gateway.picows"), {})


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
    """The subprotocol toward the charger: the primary's own version when the charger offers it, else the first
    offered version the gateway can translate to the primary's (e.g. ocpp1.6 for a 2.0.1 primary)."""
    want = SUBPROTOCOLS[route.primary.ocpp]
    if want in offered and VERSIONS[want] in allowed:
        return want
    for p in offered:
        v = VERSIONS.get(p)
        if v in allowed and (v, route.primary.ocpp) in TRANSLATABLE:
            return p
    raise ChargerRejected(
        400, "no_subprotocol", f"charger offered {offered or 'none'}; backend {route.primary.name} speaks {want}"
    )


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    raw_path: str
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "


def parse_request_head(head: bytes) -> HttpRequest:
    """Request line and headers of an HTTP/1.1 request (``head`` ends before the blank line)."""
    try:
        text = head.decode("latin-1")
        lines = text.split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise ChargerRejected(400, "bad_request", "malformed HTTP request line") from None
    if not version.startswith("HTTP/1."):
        raise ChargerRejected(400, "bad_request", "HTTP/1.1 required")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ChargerRejected(400, "bad_request", "malformed HTTP header")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    return HttpRequest(method, target, headers)


def http_error(status: int, text: str, headers: Mapping[str, str] | None = None) -> bytes:
    body = (text + "\n").encode()
    reason = HTTPStatus(status).phrase
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n{extra}"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    ).encode() + body


@dataclass
class Conn:
    """One live charger connection: its picows transport, link and session."""

    session: Session
    link: Link
    transport: WSTransport | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = "charger_closed"
    gauge: Any = None
    #: Ticker second of the last frame from the charger, and of the ping sent while waiting for one (0: none)
    seen: int = 0
    ping_at: int = 0
    #: (unique id, new password) of a CALL setting the charger's Basic auth password, until the charger answers it
    rotation: tuple[str, str] | None = None
    #: the route in force (config or override) and the mirror feeds it runs (gateway/cutover.py)
    route: Route | None = None
    feeds: dict[str, MirrorFeed] = field(default_factory=dict)
    #: what the charger presented at the handshake (to derive upstream credentials for a cutover or a mirror)
    charger_password: str | None = field(default=None, repr=False)
    #: the connection record written to the store
    info: dict[str, Any] | None = None


@dataclass
class Gateway:
    """Everything a running gateway holds. No module globals; the admin app gets it under an AppKey."""

    config: Config
    metrics: Metrics
    store: Store
    writer: StateWriter
    router: Router
    #: this process in the fleet (ownership keys, node channel); random part: unique even for gateways in one process
    node: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}")
    conns: dict[str, Conn] = field(default_factory=dict)
    handshakes: set[asyncio.Task[None]] = field(default_factory=set)
    #: teardown of ended sessions (closing links and mirror feeds, which write their copies): awaited at drain,
    #: never cancelled, since each is bounded
    teardowns: set[asyncio.Task[None]] = field(default_factory=set)
    ticker: Ticker = field(default_factory=Ticker)
    draining: bool = False
    #: see Session.observe (the demo's live view); None in production
    observe: Callable[[str, str, bytes], None] | None = None
    #: charger ownership and messages between nodes (gateway.fleet), set by the runtime
    fleet: Fleet | None = None
    log: Any = field(default_factory=get_logger)
    #: TLS contexts, password verifier, failure limiters (built from the config; raises on unreadable files)
    security: EdgeSecurity = field(init=False)
    #: the YAML file the config came from (hot reload re-reads it); None when built in code (tests, demo)
    config_path: str | None = None
    #: copies of selected messages to Redis Streams / HTTP (gateway/taps.py); None without taps
    taps: Taps | None = None
    #: durable outboxes of mirror copies (Redis Streams with the Redis store)
    outbox: Outbox = field(init=False)
    mirror_board: MirrorBoard = field(init=False)

    def __post_init__(self) -> None:
        self.security = EdgeSecurity(self.config, self.store, self.metrics)
        self.outbox = open_outbox(self.store)
        self.mirror_board = MirrorBoard(self.metrics, self.outbox, Keys(self.config.store.prefix), self.log)

    @property
    def sessions(self) -> dict[str, Session]:
        return {cid: c.session for cid, c in self.conns.items()}

    def session_settings(self) -> SessionSettings:
        s = self.config.session
        return SessionSettings(
            call_timeout_s=s.call_timeout_s, max_queued_calls=s.max_queued_calls, validate=s.validate_schemas
        )

    async def close_session(self, cid: str, code: int, message: str) -> None:
        """Close a charger's socket with ``code`` and wait (bounded) until its session has ended."""
        conn = self.conns.get(cid)
        if conn is None:
            return
        close_charger(conn, code, message)
        try:
            async with asyncio.timeout(5):
                await conn.closed.wait()
        except TimeoutError:
            self.log.warning("session_close_slow", charger_id=cid)

    async def sweep(self) -> None:
        """Once a second, for every connection: expire overdue CALLs, ping silent peers (both sides) and close the
        ones whose pong is late or that stayed silent past ``idle_timeout_s``. One task for all sessions: no timer
        per message, no ping task per connection. Yields to the loop every 500 connections (bounded lag)."""
        loop = asyncio.get_running_loop()
        lst = self.config.listen
        ping, idle = int(lst.ping_interval_s), int(lst.idle_timeout_s)
        pong_wait = max(1, ping // 2)
        while True:
            await asyncio.sleep(1.0)
            self.ticker.now += 1
            tick = self.ticker.now
            now = loop.time()
            for i, conn in enumerate(list(self.conns.values())):
                if i % 500 == 499:
                    await asyncio.sleep(0)
                s = conn.session
                if s.overdue(now):
                    s.expire(now)
                conn.link.keepalive(tick)
                if conn.ping_at and conn.seen >= conn.ping_at:
                    conn.ping_at = 0
                silent = tick - conn.seen
                if idle and silent >= idle:
                    conn.reason = "idle_timeout"
                    close_charger(conn, 1001, "idle timeout")
                elif ping and not conn.ping_at and silent >= ping and conn.transport is not None:
                    conn.transport.send_ping()
                    conn.ping_at = tick
                elif conn.ping_at and tick - conn.ping_at >= pong_wait:
                    conn.reason = "ping_timeout"
                    self.metrics.call_timeouts.labels("ping", "charger").inc()
                    close_charger(conn, 1001, "no pong")

    async def drain(self, grace_s: float, window_s: float = 0.0) -> None:
        """Let in-flight CALLs finish (bounded by ``grace_s``), then close every charger with 1001, spread evenly
        over ``window_s`` (0: all at once) so that they do not all reconnect to the other replicas at the same
        instant. Returns when every session has ended (at most ``grace_s + window_s`` plus the close time)."""
        self.draining = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_s
        # Polls: one event per session would cost on the hot path; this runs once, bounded by the deadline.
        while loop.time() < deadline and any(not c.session.idle() for c in self.conns.values()):  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        cids = list(self.conns)
        if cids:
            self.log.info("draining", chargers=len(cids), window_s=window_s)
        start, step = loop.time(), (window_s / len(cids) if cids else 0.0)
        closing: list[asyncio.Task[None]] = []
        for i, cid in enumerate(cids):
            delay = start + i * step - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            closing.append(loop.create_task(self.close_session(cid, 1001, "gateway shutting down")))
        await asyncio.gather(*closing, return_exceptions=True)
        await asyncio.gather(*self.teardowns, return_exceptions=True)
        await self.mirror_board.close()
        for t in list(self.handshakes):
            t.cancel()
        await asyncio.gather(*self.handshakes, return_exceptions=True)


def close_charger(conn: Conn, code: int, message: str) -> None:
    t = conn.transport
    if t is not None and not t.is_disconnected:
        if not t.is_close_frame_sent:
            t.send_close(WSCloseCode(code), message.encode())
        t.disconnect()


class ChargerListener(WSListener):
    """picows callbacks of one charger connection."""

    __slots__ = ("conn", "gw", "max_frame", "partial", "ticker")

    def __init__(self, gw: Gateway, conn: Conn) -> None:
        self.gw = gw
        self.conn = conn
        self.partial: bytearray | None = None
        self.max_frame = gw.config.listen.max_frame_bytes
        self.ticker = gw.ticker

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.conn.transport = transport
        self.conn.seen = self.ticker.now

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        self.conn.seen = self.ticker.now
        if mt is WSMsgType.TEXT and frame.fin and self.partial is None:
            data = frame.get_payload_as_bytes()
            if self.conn.rotation is not None:
                rotation_answered(self.gw, self.conn, data)
            self.conn.session.from_charger(data)
            return
        if mt is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif mt is WSMsgType.BINARY:
            self.gw.metrics.frame_errors.labels("charger", "binary").inc()
            self.conn.reason = "binary_frame"
            close_charger(self.conn, 1003, "binary frames are not OCPP-J")
        elif mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            self._fragment(frame)

    def _fragment(self, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.partial = bytearray(frame.get_payload_as_memoryview())
        elif self.partial is not None:
            self.partial += frame.get_payload_as_memoryview()
        else:
            return
        if len(self.partial) > self.max_frame:
            self.partial = None
            self.gw.metrics.frame_errors.labels("charger", "too_big").inc()
            self.conn.reason = "frame_too_big"
            close_charger(self.conn, 1009, "frame too big")
        elif frame.fin:
            data, self.partial = bytes(self.partial), None
            self.conn.session.from_charger(data)

    def pause_writing(self) -> None:
        self.conn.link.pause_reading(True)

    def resume_writing(self) -> None:
        self.conn.link.pause_reading(False)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        hs = transport.close_handshake
        sent = hs.sent if hs is not None else None
        if sent is not None and sent.code is WSCloseCode.MESSAGE_TOO_BIG and self.conn.reason == "charger_closed":
            self.gw.metrics.frame_errors.labels("charger", "too_big").inc()
            self.conn.reason = "frame_too_big"
        end_session(self.gw, self.conn)


def end_session(gw: Gateway, conn: Conn) -> None:
    """The charger's socket is gone: forget the session, close the link (in the background, owned by the gateway)."""
    session = conn.session
    cid = session.charger_id
    if gw.conns.get(cid) is conn:
        del gw.conns[cid]
        gw.writer.put(Write("conn", cid, gw.node, None))  # releases ownership unless another node took it over
    session.close()
    if conn.gauge is not None:
        conn.gauge.dec()
    gw.metrics.disconnects.labels(conn.reason).inc()
    if session.log is not None:
        session.log.info("charger_disconnected", reason=conn.reason)

    async def finish() -> None:
        try:
            await conn.link.close()
            await close_feeds(conn)
        finally:
            conn.closed.set()

    spawn(gw, finish(), f"close:{cid}", gw.teardowns)


def spawn(gw: Gateway, coro: Any, name: str, owner: set[asyncio.Task[None]] | None = None) -> None:
    """Run a short-lived task owned by the gateway: in ``gw.handshakes`` (cancelled and awaited at drain) unless
    another set is given."""
    tasks = gw.handshakes if owner is None else owner
    task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
    tasks.add(task)
    task.add_done_callback(tasks.discard)


class Handshake(asyncio.Protocol):
    """Reads the HTTP upgrade request, admits the charger asynchronously, then hands the socket to picows.

    On a TLS listener the loop has done the TLS handshake before ``connection_made`` (``create_server(ssl=...)``); a
    failed one never gets here and is counted by the listener's context (see ``gateway.auth``).
    """

    def __init__(self, gw: Gateway, listener: ListenConfig | None = None) -> None:
        self.gw = gw
        self.listener = listener or gw.config.listen
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self.transport.abort)
        if self.listener.tls is not None:
            self.gw.metrics.tls_handshakes.labels(self.listener.name, "ok").inc()

    def data_received(self, data: bytes) -> None:
        if self.started:
            self.buf += data  # pipelined bytes after the request: replayed to picows
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_REQUEST_HEAD:
                self._refuse(ChargerRejected(431, "bad_request", "request header too large"))
            return
        self.started = True
        assert self.transport is not None
        self.transport.pause_reading()
        spawn(self.gw, self._admit(bytes(self.buf[:end])), "handshake")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _refuse(self, e: ChargerRejected, path: str = "") -> None:
        gw = self.gw
        gw.metrics.connections.labels(e.outcome).inc()
        remote = self._remote()
        gw.log.info(
            "charger_refused", reason=e.reason, outcome=e.outcome, status=e.http_status, remote=remote, path=path[:100]
        )
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(http_error(e.http_status, e.reason, e.headers))
            self.transport.close()

    def _remote(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else ""

    async def _admit(self, head: bytes) -> None:
        gw = self.gw
        path = ""
        try:
            req = parse_request_head(head)
            path = req.raw_path
            if gw.draining:
                raise ChargerRejected(503, "draining", "gateway is shutting down")
            if req.method != "GET":
                raise ChargerRejected(405, "bad_request", "WebSocket upgrade needs GET")
            cid = parse_charger_id(req.raw_path, self.listener.path_prefix)
            route = gw.router.resolve(cid)
            if route is None:
                raise ChargerRejected(404, "no_route", "no route for this charger id")
            route = gw.router.override(route, await self._override(cid))
            # Security profile (401/403/429 before any upgrade; see gateway/auth.py for the order of the checks)
            required = self.listener.security_profile if route.security_profile is None else route.security_profile
            ssl_object = self.transport.get_extra_info("ssl_object") if self.transport is not None else None
            admission = await gw.security.admit(
                cid, req.headers.get("authorization"), ssl_object, required, route.allowlist, self._remote()
            )
            offered = [p.strip() for p in req.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
            subprotocol = choose_subprotocol(offered, route, self.listener.ocpp_versions)
            up_tls, up_password = await self._upstream_credentials(route, cid, admission)
            self.charger_password = admission.password
        except ChargerRejected as e:
            self._refuse(e, path)
            return
        version = VERSIONS[subprotocol]
        remote = self._remote()
        log = gw.log.bind(charger_id=cid, backend=route.primary.name, ocpp_version=version)
        translator: Translator | None = None
        if version != route.primary.ocpp:
            # Translation state must be read before the charger is admitted: without it, transaction ids the peers
            # already use would be lost. Store away -> 503, the charger retries (and queues meanwhile).
            try:
                stored = await gw.store.get_translation_state(cid, route.primary.name)
            except StoreUnavailable:
                gw.writer.mark(False)
                self._refuse(ChargerRejected(503, "state_unavailable", "translation state unavailable"), path)
                return
            translator = translator_for(version, route.primary.ocpp, options=route.primary.translation)
            if stored is not None:
                translator.restore(stored)

        # A second connection with the same id replaces the first, before the new upstream link opens, so that the
        # CSMS never sees two connections for one charger.
        if cid in gw.conns:
            gw.metrics.chargers_replaced.inc()
            log.info("charger_replaced", remote=remote)
            old = gw.conns[cid]
            old.reason = "replaced"
            await gw.close_session(cid, 1000, "replaced by a new connection")
        if gw.fleet is not None:
            await gw.fleet.take(cid, log)  # ownership; a session on another node is closed first

        try:
            link = await open_link(
                route.primary,
                cid,
                SUBPROTOCOLS[route.primary.ocpp],
                gw.metrics,
                self.listener.max_frame_bytes,
                ssl_context=up_tls,
                ticker=gw.ticker,
                password=up_password,
            )
        except BackendUnavailable as e:
            log.warning("backend_unavailable", reason=e.reason, status=e.http_status)
            self._refuse(ChargerRejected(e.http_status, "backend_unavailable", f"backend {e.backend} unavailable"))
            return
        if self.transport is None or self.transport.is_closing() or cid in gw.conns:
            # The charger went away while we connected upstream, or another connection for the id won the race.
            await link.close()
            if self.transport is not None:
                self.transport.close()
            return
        link.store_password = functools.partial(gw.security.store_upstream_password, cid, route.primary.name)
        self._upgrade(gw, cid, version, subprotocol, route, link, log, remote, translator)

    async def _override(self, cid: str) -> dict[str, Any] | None:
        """The charger's route override from the store (admin API cutover); the config route when unreadable."""
        try:
            return await self.gw.store.get_route_override(cid)
        except StoreUnavailable:
            self.gw.log.warning("route_override_unreadable", charger_id=cid)
            return None

    async def _upstream_credentials(
        self, route: Route, cid: str, admission: Admission
    ) -> tuple[ssl.SSLContext | None, str | None]:
        """TLS context and Basic auth password toward the primary, or :class:`ChargerRejected` (502/503)."""
        backend = route.primary
        sec = self.gw.security
        try:
            ctx = sec.client_tls(backend, cid)
        except (OSError, ssl.SSLError):
            self.gw.log.warning("upstream_certificate_unusable", charger_id=cid, backend=backend.name)
            raise ChargerRejected(502, "no_upstream_credentials", "no client certificate for this charger") from None
        if backend.security_profile not in (1, 2):
            return ctx, None
        try:
            password = await sec.upstream_password(backend, cid, admission.password)
        except StoreUnavailable:
            raise ChargerRejected(503, "store_unavailable", "credential store unavailable") from None
        if password is None:
            self.gw.log.warning("upstream_password_missing", charger_id=cid, backend=backend.name)
            raise ChargerRejected(502, "no_upstream_credentials", "no upstream password for this charger")
        return ctx, password

    def _upgrade(
        self,
        gw: Gateway,
        cid: str,
        version: str,
        subprotocol: str,
        route: Route,
        link: Link,
        log: Any,
        remote: str,
        translator: Translator | None = None,
    ) -> None:
        transport = self.transport
        assert transport is not None
        if self.timer is not None:
            self.timer.cancel()
        m = gw.metrics
        conn = Conn(session=None, link=link)  # type: ignore[arg-type]

        def send_charger(data: Any) -> None:
            t = conn.transport
            if t is not None:
                if rotation_marked(data):
                    watch_rotation(gw, conn, data)
                t.send(WSMsgType.TEXT, data)

        kind: type[Session] = Session
        extra: dict[str, Any] = {}
        if translator is not None:
            kind = TranslatingSession
            extra = {"translator": translator, "backend_version": route.primary.ocpp}
        session = kind(
            charger_id=cid,
            version=version,
            backend=route.primary.name,
            send_charger=send_charger,
            send_backend=link.send,
            metrics=m,
            write=gw.writer.put,
            settings=gw.session_settings(),
            log=log,
            remote=remote,
            observe=gw.observe,
            **extra,
        )
        conn.session = session
        link.attach(session)
        link.on_pause = lambda paused: _pause(conn, paused)
        link.on_give_up = lambda: _give_up(conn)
        listener = ChargerListener(gw, conn)
        response = WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": subprotocol})
        proto = WSProtocol(
            None, None, False,
            lambda request: WSUpgradeResponseWithListener(response, listener),
            _PICOWS_LOG, True, HANDSHAKE_TIMEOUT_S,
            False, 20, 10, WSAutoPingStrategy.PING_WHEN_IDLE,  # no ping task per charger: Gateway.sweep pings
            True, gw.config.listen.max_frame_bytes, None, READ_BUFFER,
        )  # fmt: skip
        gw.conns[cid] = conn
        conn.gauge = m.chargers_connected.labels(version)
        conn.gauge.inc()
        m.connections.labels("accepted").inc()
        transport.set_protocol(proto)
        proto.connection_made(transport)
        data = bytes(self.buf)
        self.buf = bytearray()
        # Replay the request (and anything pipelined after it) into picows, which answers 101 and parses frames.
        while data:
            buf = proto.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            proto.buffer_updated(n)
            data = data[n:]
        transport.resume_reading()
        conn.route = route
        conn.charger_password = self.charger_password
        conn.info = {
            "node": gw.node,
            "since": session.connected_at,
            "protocol": subprotocol,
            "backend": route.primary.name,
            "route": route.origin,
            "mirrors": [b.name for b in route.mirrors],
            "remote": remote,
        }
        gw.writer.put(Write("conn", cid, "", conn.info))
        if route.mirrors:
            sync_mirrors(gw, conn, route)
        taps = gw.taps
        if taps is not None and taps.wants(route.origin):
            origin = route.origin
            session.tap = lambda d, t, a, u, p: taps.offer(cid, origin, d, t, a, u, p)
        log.info("charger_connected", remote=remote, subprotocol=subprotocol)


def _pause(conn: Conn, paused: bool) -> None:
    pause_transport(conn.transport, paused)


def _give_up(conn: Conn) -> None:
    """The link could not come back within the grace period: close the charger so it reconnects later."""
    conn.reason = "backend_lost"
    close_charger(conn, 1013, "backend unavailable")


# ---------------------------------------------------------------------------------------------------------------
# Basic auth password set by the CSMS (or the admin API) and accepted by the charger: keep the store in step, so
# that the charger's next connection (with the new password) is admitted. Only frames that mention the password
# are parsed; under the policy ``terminate`` such a CALL never reaches the charger (see upstream.Link.intercept).


def rotation_marked(data: bytes | str) -> bool:
    if isinstance(data, str):
        return "AuthorizationKey" in data or "BasicAuthPassword" in data
    return ROTATION_MARKERS[0] in data or ROTATION_MARKERS[1] in data


def watch_rotation(gw: Gateway, conn: Conn, data: bytes | str) -> None:
    """A frame to the charger mentions the password: remember a CALL that sets it, until the charger answers."""
    try:
        frame = parse_frame(data)
    except FrameError:
        return
    if type(frame) is Call:
        password = rotation_offer(frame.action, frame.payload, conn.session.version)
        if password is not None:
            conn.rotation = (frame.unique_id, password)


def rotation_answered(gw: Gateway, conn: Conn, data: bytes) -> None:
    """A frame from the charger while a password change is outstanding: on its acceptance, store the new password."""
    assert conn.rotation is not None
    uid, password = conn.rotation
    if uid.encode() not in data:
        return
    try:
        frame = parse_frame(data)
    except FrameError:
        return
    if type(frame) is Call or frame.unique_id != uid:
        return
    conn.rotation = None
    backend = conn.link.backend
    if type(frame) is not CallResult or not rotation_accepted(frame.payload, conn.session.version):
        gw.metrics.password_rotations.labels(backend.name, "passthrough", "rejected").inc()
        return
    spawn(gw, _store_rotated(gw, conn, password), "rotation-store")


async def _store_rotated(gw: Gateway, conn: Conn, password: str) -> None:
    cid = conn.session.charger_id
    backend = conn.link.backend
    log = conn.session.log or gw.log
    try:
        await set_charger_password(gw.store, cid, password)
        if backend.security_profile in (1, 2) and backend.auth.password_from == "store":
            await gw.security.store_upstream_password(cid, backend.name, password)
    except StoreUnavailable:
        gw.metrics.password_rotations.labels(backend.name, "passthrough", "failed").inc()
        log.error("charger_password_rotation_not_stored", reason="store unavailable")
        return
    if backend.auth.password_from in ("store", "charger"):
        conn.link.password = password
    gw.metrics.password_rotations.labels(backend.name, "passthrough", "applied").inc()
    log.info("charger_password_rotated", policy="passthrough")
