"""Upstream links: one WebSocket per (charger, backend), opened with the charger's negotiated subprotocol.

Links run on picows (a Cython WebSocket library driven by callbacks): a frame from the backend is handed to the
session inside the transport's read callback, with no task per message and no pump coroutine.

``open_link`` connects (bounded by ``connect_timeout_s``) or raises :class:`BackendUnavailable`, so that the edge can
refuse the charger's upgrade with 502/503 and the charger stays offline. When a link drops mid-session it reconnects
with back-off for up to ``reconnect_grace_s`` (one task, owned by the link); if that fails, ``on_give_up`` is called
and the edge closes the charger with 1013 (try again later).
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Callable
from urllib.parse import quote

import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable
from gateway.metrics import Metrics
from gateway.ocpp.frames import Raw
from gateway.session import Session

__all__ = ["Link", "open_link", "upstream_url"]

#: picows logs every connection at INFO through stdlib logging; an adapter also stops it from creating a child
#: logger per connection (memory per charger).
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("gateway.picows"), {})
#: initial read buffer per link; frames are ~0.5 KB, picows grows the buffer when a bigger one arrives
READ_BUFFER = 2048


def upstream_url(backend: BackendConfig, charger_id: str) -> str:
    """``<backend url>/<charger id>``, the id percent-encoded."""
    return f"{backend.url}/{quote(charger_id, safe='')}"


class _BackendListener(WSListener):
    """Feeds backend frames to the link's session."""

    __slots__ = ("link", "partial")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.partial: bytearray | None = None

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        session = self.link.session
        if mt is WSMsgType.TEXT and frame.fin and self.partial is None:
            if session is not None:
                session.from_backend(frame.get_payload_as_bytes())
            return
        if mt is WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            self._fragment(transport, frame)
        elif mt is WSMsgType.BINARY:
            self.link.metrics.frame_errors.labels("backend", "binary").inc()

    def _fragment(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type is WSMsgType.TEXT:
            self.partial = bytearray(frame.get_payload_as_memoryview())
        elif self.partial is not None:
            self.partial += frame.get_payload_as_memoryview()
        else:
            return
        if len(self.partial) > self.link.max_frame:
            self.partial = None
            self.link.metrics.frame_errors.labels("backend", "too_big").inc()
            transport.send_close(WSCloseCode.MESSAGE_TOO_BIG)
            transport.disconnect()
        elif frame.fin:
            data, self.partial = bytes(self.partial), None
            if self.link.session is not None:
                self.link.session.from_backend(data)

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
    ping = backend.ping_interval_s
    try:
        async with asyncio.timeout(backend.connect_timeout_s):
            transport, _ = await picows.ws_connect(
                lambda: _BackendListener(link),
                url,
                ssl_context=ssl_context,
                extra_headers={"Sec-WebSocket-Protocol": subprotocol},
                websocket_handshake_timeout=backend.connect_timeout_s,
                enable_auto_ping=ping > 0,
                auto_ping_idle_timeout=ping or 10,
                auto_ping_reply_timeout=(ping / 2) or 5,
                max_frame_size=link.max_frame,
                read_buffer_init_size=READ_BUFFER,
                logger_name=_PICOWS_LOG,
            )
    except TimeoutError:
        raise BackendUnavailable(backend.name, "connect timed out", 503) from None
    except picows.WSHandshakeError as e:
        status = getattr(getattr(e, "response", None), "status", None)
        raise BackendUnavailable(backend.name, f"handshake refused (HTTP {int(status) if status else '?'})") from None
    except (picows.WSError, OSError, ssl.SSLError) as e:
        raise BackendUnavailable(backend.name, f"{type(e).__name__}: {e}") from None
    got = transport.response.headers.get("Sec-WebSocket-Protocol") if transport.response is not None else None
    if got != subprotocol:
        transport.disconnect(graceful=False)
        raise BackendUnavailable(backend.name, f"backend did not accept subprotocol {subprotocol}")
    return transport


async def open_link(
    backend: BackendConfig,
    charger_id: str,
    subprotocol: str,
    metrics: Metrics,
    max_frame: int,
    ssl_context: ssl.SSLContext | None = None,
) -> Link:
    """Open the upstream WebSocket or raise :class:`BackendUnavailable` (counted)."""
    link = Link(backend, charger_id, subprotocol, metrics, max_frame, ssl_context)
    try:
        link.transport = await _connect(link, backend, charger_id, subprotocol, ssl_context)
    except BackendUnavailable as e:
        metrics.backend_connects.labels(backend.name, "timeout" if e.http_status == 503 else "error").inc()
        raise
    metrics.backend_connects.labels(backend.name, "ok").inc()
    link.gauge.inc()
    return link


class Link:
    """An upstream link. The edge attaches a session (:meth:`attach`) and closes it with :meth:`close`."""

    def __init__(
        self,
        backend: BackendConfig,
        charger_id: str,
        subprotocol: str,
        metrics: Metrics,
        max_frame: int,
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.backend = backend
        self.charger_id = charger_id
        self.subprotocol = subprotocol
        self.metrics = metrics
        self.max_frame = max_frame
        self.ssl_context = ssl_context
        self.transport: WSTransport | None = None
        self.session: Session | None = None
        self.closing = False
        self.gauge = metrics.backend_links.labels(backend.name)
        self._reconnect_task: asyncio.Task[None] | None = None
        #: called with True/False when the backend's socket buffer is full/drained (pause the charger's reads)
        self.on_pause: Callable[[bool], None] = lambda paused: None
        #: called when the link could not be re-established within the grace period
        self.on_give_up: Callable[[], None] = lambda: None

    def attach(self, session: Session) -> None:
        self.session = session

    def send(self, data: Raw) -> None:
        """Queue a frame upstream (never blocks); the session does not call this while the link is down."""
        t = self.transport
        if t is not None:
            t.send(WSMsgType.TEXT, data)

    def pause_reading(self, paused: bool) -> None:
        """The charger cannot take more: stop (or resume) reading from the backend."""
        t = self.transport
        if t is not None:
            u = t.underlying_transport
            if paused:
                u.pause_reading()
            else:
                u.resume_reading()

    def disconnected(self, transport: WSTransport) -> None:
        if transport is not self.transport:
            return
        self.transport = None
        self.gauge.dec()
        if self.closing:
            return
        self.metrics.backend_link_lost.labels(self.backend.name).inc()
        session = self.session
        if session is not None:
            session.link_lost()
            if session.log is not None:
                session.log.warning("backend_link_lost")
        self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect(), name="link-reconnect")

    async def _reconnect(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.backend.reconnect_grace_s
        delay = 0.2
        while not self.closing:
            try:
                async with asyncio.timeout_at(deadline):
                    transport = await _connect(self, self.backend, self.charger_id, self.subprotocol, self.ssl_context)
            except TimeoutError:
                self.metrics.backend_connects.labels(self.backend.name, "timeout").inc()
                break
            except BackendUnavailable:
                self.metrics.backend_connects.labels(self.backend.name, "error").inc()
                if loop.time() + delay >= deadline:
                    break
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
                continue
            self.metrics.backend_connects.labels(self.backend.name, "ok").inc()
            if self.closing:
                transport.disconnect()
                return
            self.transport = transport
            self.gauge.inc()
            self.metrics.backend_reconnects.labels(self.backend.name).inc()
            if self.session is not None:
                if self.session.log is not None:
                    self.session.log.info("backend_link_restored")
                self.session.link_restored()
            return
        if not self.closing:
            self.on_give_up()

    async def close(self) -> None:
        """Close the link and stop reconnecting (idempotent); waits for the reconnect task to end."""
        self.closing = True
        t, self.transport = self.transport, None
        if t is not None:
            self.gauge.dec()
            t.send_close(WSCloseCode.OK)
            t.disconnect()
        task, self._reconnect_task = self._reconnect_task, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise
