"""Upstream links: one WebSocket per (charger, backend), opened with the subprotocol of the backend's version.

Links run on picows (a Cython WebSocket library driven by callbacks): a frame from the backend is handed to the
link's sink (the charger's session, or a :class:`~gateway.links.caller.LinkCaller`) inside the transport's read
callback, with no task per message and no pump coroutine.

Links are opened by :class:`~gateway.links.factory.LinkFactory` only, with the backend's TLS context and Basic auth
password; :func:`open_link` connects (bounded by ``connect_timeout_s``) or raises :class:`BackendUnavailable`, so
that the edge can refuse the charger's upgrade with 502/503 and the charger stays offline. When a link drops
mid-session it reconnects with back-off for up to ``reconnect_grace_s`` (one task, owned by the link), with what it
was opened with; if that fails, ``on_give_up`` is called and the charger is closed with 1013 (try again later).
:meth:`Link.reconnect_with` reconnects with a new password (the ``terminate`` rotation policy).
"""

from __future__ import annotations

import asyncio
import errno
import random
import ssl
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import quote

import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable, OutOfFileDescriptors
from gateway.metrics import Metrics
from gateway.ocpp.frames import Raw
from gateway.security import basic_auth_header
from gateway.tasks import stop_task
from gateway.transport import PICOWS_LOG, READ_BUFFER, Fragments, MessageTooBig, Ticker, answer_close, pause_transport

__all__ = ["Link", "LinkSink", "open_link", "upstream_url"]


class LinkSink(Protocol):
    """What a link hands its backend's frames and state changes to."""

    def from_backend(self, text: bytes) -> None: ...

    def link_lost(self) -> None: ...

    def link_restored(self) -> None: ...


def upstream_url(backend: BackendConfig, charger_id: str) -> str:
    """``<backend url>/<charger id>``, the id percent-encoded."""
    return f"{backend.url}/{quote(charger_id, safe='')}"


class _BackendListener(WSListener):
    """Feeds backend frames to the link's sink."""

    __slots__ = ("fragments", "link", "ticker")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.fragments = Fragments(link.max_frame)
        self.ticker = link.ticker

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        self.link.seen = self.ticker.now
        sink = self.link.sink
        if mt is WSMsgType.TEXT and frame.fin and self.fragments.partial is None:
            if sink is not None:
                sink.from_backend(frame.get_payload_as_bytes())
            return
        if mt is WSMsgType.CLOSE:
            answer_close(transport, frame)
        elif mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            try:
                data = self.fragments.add(frame)
            except MessageTooBig:
                self.link.metrics.frame_errors.labels("backend", "too_big").inc()
                transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
                transport.disconnect()
                return
            if data is not None and sink is not None:
                sink.from_backend(data)
        elif mt is WSMsgType.BINARY:
            self.link.metrics.frame_errors.labels("backend", "binary").inc()

    def pause_writing(self) -> None:
        # The backend cannot take more: stop reading from the charger.
        self.link.on_pause(True)

    def resume_writing(self) -> None:
        self.link.on_pause(False)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.link.disconnected(transport)


async def _connect(
    link: Link, backend: BackendConfig, charger_id: str, subprotocol: str, ssl_context: ssl.SSLContext | None
) -> WSTransport:
    url = upstream_url(backend, charger_id)
    headers = {"Sec-WebSocket-Protocol": subprotocol}
    if link.password is not None:
        headers["Authorization"] = basic_auth_header(charger_id, link.password)
    try:
        async with asyncio.timeout(backend.connect_timeout_s):
            transport, _ = await picows.ws_connect(
                lambda: _BackendListener(link),
                url,
                ssl_context=ssl_context,
                extra_headers=headers,
                websocket_handshake_timeout=backend.connect_timeout_s,
                enable_auto_ping=False,  # the gateway's sweeper pings (see Ticker)
                max_frame_size=link.max_frame,
                read_buffer_init_size=READ_BUFFER,
                logger_name=PICOWS_LOG,
                use_aiofastnet=False,  # measured: its transport costs 5.7 KB more per link than the loop's
            )
    except TimeoutError:
        raise BackendUnavailable(backend.name, "connect timed out", 503) from None
    except picows.WSHandshakeError as e:
        status = getattr(getattr(e, "response", None), "status", None)
        code = int(status) if status else 0
        refused = 400 <= code < 500
        raise BackendUnavailable(backend.name, f"handshake refused (HTTP {code or '?'})", refused=refused) from None
    except OSError as e:
        if e.errno in (errno.EMFILE, errno.ENFILE) and not isinstance(e, ssl.SSLError):
            raise OutOfFileDescriptors(backend.name, f"{type(e).__name__}: {e}") from None
        raise BackendUnavailable(backend.name, f"{type(e).__name__}: {e}") from None
    except (picows.WSError, ssl.SSLError) as e:
        raise BackendUnavailable(backend.name, f"{type(e).__name__}: {e}") from None
    got = transport.response.headers.get("Sec-WebSocket-Protocol") if transport.response is not None else None
    if got != subprotocol:
        transport.disconnect(graceful=False)
        raise BackendUnavailable(backend.name, f"backend did not accept subprotocol {subprotocol}", refused=True)
    return transport


async def open_link(
    backend: BackendConfig,
    charger_id: str,
    subprotocol: str,
    metrics: Metrics,
    max_frame: int,
    *,
    ssl_context: ssl.SSLContext | None,
    password: str | None,
    ticker: Ticker,
    log: Any = None,
) -> Link:
    """Open the upstream WebSocket or raise :class:`BackendUnavailable` (counted). Called by the link factory only.

    ``password``: sent as Basic auth (username = charger id) on this and every reconnect; None: no Authorization.
    """
    link = Link(backend, charger_id, subprotocol, metrics, max_frame, ssl_context, ticker, log)
    link.password = password
    try:
        link.transport = await _connect(link, backend, charger_id, subprotocol, ssl_context)
    except BackendUnavailable as e:
        outcome = "no_fd" if type(e) is OutOfFileDescriptors else "timeout" if e.http_status == 503 else "error"
        metrics.backend_connects.labels(backend.name, outcome).inc()
        raise
    metrics.backend_connects.labels(backend.name, "ok").inc()
    link.gauge.inc()
    return link


class Link:
    """An upstream link. Its owner attaches a sink (:meth:`attach`) and closes it with :meth:`close`."""

    def __init__(
        self,
        backend: BackendConfig,
        charger_id: str,
        subprotocol: str,
        metrics: Metrics,
        max_frame: int,
        ssl_context: ssl.SSLContext | None,
        ticker: Ticker,
        log: Any = None,
    ) -> None:
        self.backend = backend
        self.ticker = ticker
        #: tick of the last frame received, and of the ping sent while waiting for one (0: none)
        self.seen = ticker.now
        self.ping_at = 0
        self.charger_id = charger_id
        self.subprotocol = subprotocol
        self.metrics = metrics
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        #: state changes (lost, restored) are logged here; None: not logged (a mirror's link: its board logs an
        #: outage once for every charger, not once per charger)
        self.log = log
        self.transport: WSTransport | None = None
        self.sink: LinkSink | None = None
        self.closing = False
        self.gauge = metrics.backend_links.labels(backend.name)
        self._reconnect_task: asyncio.Task[None] | None = None
        #: Basic auth password toward the backend (None: no Authorization header)
        self.password: str | None = None
        #: the next drop is ours: reconnecting with a new password (not counted as a lost link)
        self._rotating = False
        #: called with True/False when the backend's socket buffer is full/drained (pause the charger's reads)
        self.on_pause: Callable[[bool], None] = _ignore
        #: called when the link could not be re-established within the grace period
        self.on_give_up: Callable[[], None] = _nothing
        #: reconnect without a deadline (a ride-through route's link while its charger rides through an outage:
        #: gateway/app/ride.py); the back-off still grows to 5 s
        self.persistent = False

    def attach(self, sink: LinkSink) -> None:
        self.sink = sink

    def send(self, data: Raw) -> None:
        """Queue a frame upstream (never blocks); nothing is sent while the link is down."""
        t = self.transport
        if t is not None:
            t.send(WSMsgType.TEXT, data)

    def keepalive(self, now: int) -> None:
        """Called by the sweeper each second: ping a silent backend, drop it when the pong is late."""
        t = self.transport
        interval = int(self.backend.ping_interval_s)
        if t is None or interval <= 0:
            return
        if self.ping_at and self.seen >= self.ping_at:
            self.ping_at = 0
        if not self.ping_at:
            if now - self.seen >= interval:
                t.send_ping()
                self.ping_at = now
        elif now - self.ping_at >= max(1, interval // 2):
            self.metrics.call_timeouts.labels("ping", self.backend.name).inc()
            t.disconnect(graceful=False)  # -> disconnected(): reconnect within the grace period

    def pause_reading(self, paused: bool) -> None:
        """The charger cannot take more: stop (or resume) reading from the backend."""
        pause_transport(self.transport, paused)

    def fail(self, code: int, reason: str) -> None:
        """Fail the WebSocket (RFC 6455 §7.1.7: the backend broke the protocol): close with ``code`` and drop it; the
        link then reconnects within the grace period, as after any drop (counted as a lost link)."""
        t = self.transport
        if t is not None:
            t.send_close(WSCloseCode(code), reason.encode())
            t.disconnect()

    def reconnect_with(self, password: str) -> None:
        """Close and reconnect at once with a new Basic auth password (kept for every later reconnect too)."""
        self.password = password
        t = self.transport
        if t is None:
            return  # the link is down: the reconnect under way uses the new password
        self._rotating = True
        t.send_close(WSCloseCode.OK, b"reconnecting with new credentials")
        t.disconnect()

    def disconnected(self, transport: WSTransport) -> None:
        if transport is not self.transport:
            return
        self.transport = None
        self.gauge.dec()
        if self.closing:
            return
        rotating, self._rotating = self._rotating, False
        if rotating:
            if self.log is not None:
                self.log.info("backend_link_reconnecting", why="password_rotated")
        else:
            self.metrics.backend_link_lost.labels(self.backend.name).inc()
            if self.log is not None:
                self.log.warning("backend_link_lost")
        if self.sink is not None:
            self.sink.link_lost()
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(), name="link-reconnect")

    def keep_trying(self) -> None:
        """The link is down (never opened, or past its grace): reconnect with back-off and no deadline until it is
        back (then ``sink.link_restored()``) or closed. Starts at once when a grace-bound reconnect is not running."""
        self.persistent = True
        if self.transport is not None or self.closing:
            return
        task = self._reconnect_task
        if task is None or task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(), name="link-reconnect")

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.backend.reconnect_grace_s
        delay = 0.2
        while not self.closing:
            if self.persistent:
                deadline = loop.time() + 3600.0
            try:
                async with asyncio.timeout_at(deadline):
                    transport = await _connect(self, self.backend, self.charger_id, self.subprotocol, self.ssl_context)
            except TimeoutError:
                self.metrics.backend_connects.labels(self.backend.name, "timeout").inc()
                if self.persistent:
                    continue
                break
            except BackendUnavailable:
                self.metrics.backend_connects.labels(self.backend.name, "error").inc()
                if loop.time() + delay >= deadline and not self.persistent:
                    break
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.backend_connects.labels(self.backend.name, "ok").inc()
            if self.closing:
                transport.disconnect()
                return
            self.transport = transport
            self.seen, self.ping_at = self.ticker.now, 0
            self.gauge.inc()
            self.metrics.backend_reconnects.labels(self.backend.name).inc()
            if self.log is not None:
                self.log.info("backend_link_restored")
            if self.sink is not None:
                self.sink.link_restored()
            return
        if not self.closing and not self.persistent:
            self.on_give_up()
            if self.persistent and not self.closing:  # the sink rides through the outage: no deadline from now on
                self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(), name="link-reconnect")

    async def close(self) -> None:
        """Close the link and stop reconnecting (idempotent); waits for its task to end."""
        self.closing = True
        t, self.transport = self.transport, None
        if t is not None:
            self.gauge.dec()
            t.send_close(WSCloseCode.OK)
            t.disconnect()
        task, self._reconnect_task = self._reconnect_task, None
        await stop_task(task)


def _ignore(paused: bool) -> None:
    return None


def _nothing() -> None:
    return None
