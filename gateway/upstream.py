"""Upstream links: one WebSocket per (charger, backend), opened with the charger's negotiated subprotocol.

Links run on picows (a Cython WebSocket library driven by callbacks): a frame from the backend is handed to the
session inside the transport's read callback, with no task per message and no pump coroutine.

``open_link`` connects (bounded by ``connect_timeout_s``) or raises :class:`BackendUnavailable`, so that the edge can
refuse the charger's upgrade with 502/503 and the charger stays offline. When a link drops mid-session it reconnects
with back-off for up to ``reconnect_grace_s`` (one task, owned by the link); if that fails, ``on_give_up`` is called
and the edge closes the charger with 1013 (try again later).

Security toward the backend (profiles 1-3): the link is opened with the backend's client TLS context (built by
:mod:`gateway.auth`) and, for profiles 1/2, ``Authorization: Basic <charger id>:<password>``; both are kept on the
link and used again on every reconnect. Password rotation by the backend: a backend frame whose raw bytes contain
``AuthorizationKey`` or ``BasicAuthPassword`` (and only such a frame: the hot path does two substring scans) is
parsed; under the ``terminate`` policy a CALL setting the charger's Basic auth password is answered here (after the
new password is stored) and the link reconnects with it; the session never sees that CALL.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import picows
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from gateway.config import BackendConfig
from gateway.errors import BackendUnavailable
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.ocpp.errors import FrameError
from gateway.ocpp.frames import Call, Raw, call_result_text, parse_frame
from gateway.security import ROTATION_MARKERS, basic_auth_header, intercept_csms_call
from gateway.session import Session
from gateway.store import StoreUnavailable
from gateway.tasks import stop_task

__all__ = ["Link", "Ticker", "open_link", "pause_transport", "upstream_url"]


class Ticker:
    """Whole seconds since the gateway started, advanced by the sweeper: the clock of pings and idle timeouts.

    Each received frame stores ``ticker.now`` (an int) on its connection; one sweeper task per process sends pings
    and closes silent peers, so there is no ping task and no timer per connection (about 4 KB each, measured).
    """

    __slots__ = ("now",)

    def __init__(self) -> None:
        self.now = 1


#: picows logs every connection at INFO through stdlib logging; an adapter also stops it from creating a child
#: logger per connection (memory per charger).
_PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("gateway.picows"), {})
#: initial read buffer per link; frames are ~0.5 KB, picows grows the buffer when a bigger one arrives
READ_BUFFER = 2048


def pause_transport(t: WSTransport | None, paused: bool) -> None:
    """Stop (or resume) reading from a WebSocket's socket: back-pressure from the other side of the gateway."""
    if t is not None:
        u = t.underlying_transport
        if paused:
            u.pause_reading()
        else:
            u.resume_reading()


def upstream_url(backend: BackendConfig, charger_id: str) -> str:
    """``<backend url>/<charger id>``, the id percent-encoded."""
    return f"{backend.url}/{quote(charger_id, safe='')}"


class _BackendListener(WSListener):
    """Feeds backend frames to the link's session."""

    __slots__ = ("link", "partial", "ticker")

    def __init__(self, link: Link) -> None:
        self.link = link
        self.partial: bytearray | None = None
        self.ticker = link.ticker

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        self.link.seen = self.ticker.now
        session = self.link.session
        if mt is WSMsgType.TEXT and frame.fin and self.partial is None:
            if session is not None:
                data = frame.get_payload_as_bytes()
                if (ROTATION_MARKERS[0] in data or ROTATION_MARKERS[1] in data) and self.link.intercept(data):
                    return
                session.from_backend(data)
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
                if (ROTATION_MARKERS[0] in data or ROTATION_MARKERS[1] in data) and self.link.intercept(data):
                    return
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
                logger_name=_PICOWS_LOG,
                use_aiofastnet=False,  # measured: its transport costs 5.7 KB more per link than the loop's
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
    ticker: Ticker | None = None,
    password: str | None = None,
) -> Link:
    """Open the upstream WebSocket or raise :class:`BackendUnavailable` (counted).

    ``password``: sent as Basic auth (username = charger id) on this and every reconnect; None: no Authorization.
    """
    link = Link(backend, charger_id, subprotocol, metrics, max_frame, ssl_context, ticker or Ticker())
    link.password = password
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
        ticker: Ticker,
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
        self.transport: WSTransport | None = None
        self.session: Session | None = None
        self.closing = False
        self.gauge = metrics.backend_links.labels(backend.name)
        self._reconnect_task: asyncio.Task[None] | None = None
        #: Basic auth password toward the backend (None: no Authorization header)
        self.password: str | None = None
        #: policy ``terminate``: persists a new upstream password (raises StoreUnavailable); set by the edge
        self.store_password: Callable[[str], Awaitable[None]] | None = None
        self._rotation_task: asyncio.Task[None] | None = None
        self._rotating = False
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

    def disconnected(self, transport: WSTransport) -> None:
        if transport is not self.transport:
            return
        self.transport = None
        self.gauge.dec()
        if self.closing:
            return
        rotating, self._rotating = self._rotating, False
        if not rotating:
            self.metrics.backend_link_lost.labels(self.backend.name).inc()
        session = self.session
        if session is not None:
            session.link_lost()
            if session.log is not None:
                if rotating:
                    session.log.info("backend_link_reconnecting", why="password_rotated")
                else:
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
            self.seen, self.ping_at = self.ticker.now, 0
            self.gauge.inc()
            self.metrics.backend_reconnects.labels(self.backend.name).inc()
            if self.session is not None:
                if self.session.log is not None:
                    self.session.log.info("backend_link_restored")
                self.session.link_restored()
            return
        if not self.closing:
            self.on_give_up()

    # ------------------------------------------------------------------ password rotation (policy terminate)

    def intercept(self, data: bytes) -> bool:
        """A backend frame mentioning the Basic auth password: True when the link answers it itself (terminate)."""
        if self.backend.auth.password_rotation != "terminate" or self.store_password is None:
            return False
        try:
            frame = parse_frame(data)
        except FrameError:
            return False
        if type(frame) is not Call:
            return False
        answer, password = intercept_csms_call(frame.action, frame.payload, self.backend.ocpp)
        if answer is None or password is None:
            return False
        if self._rotation_task is not None and not self._rotation_task.done():
            return False  # one at a time; a second one goes to the charger's session as any CALL would
        self._rotation_task = asyncio.get_running_loop().create_task(
            self._terminate_rotation(frame.unique_id, answer, password), name="link-rotation"
        )
        return True

    async def _terminate_rotation(self, unique_id: str, answer: dict[str, object], password: str) -> None:
        """Store the new password, answer the backend, then reconnect with it (A01: the charger reconnects)."""
        log = self.session.log if self.session is not None and self.session.log is not None else get_logger()
        policy = self.backend.auth.password_rotation
        assert self.store_password is not None
        try:
            await asyncio.shield(self.store_password(password))
        except StoreUnavailable:
            self.metrics.password_rotations.labels(self.backend.name, policy, "failed").inc()
            log.error("backend_password_rotation_failed", reason="store unavailable")
            self.send(call_result_text(unique_id, _rejected(answer)))
            return
        self.password = password
        self.metrics.password_rotations.labels(self.backend.name, policy, "applied").inc()
        log.info("backend_password_rotated", policy=policy)
        t = self.transport
        if t is None:
            return  # the link is down: the reconnect under way uses the new password
        t.send(WSMsgType.TEXT, call_result_text(unique_id, dict(answer)))
        self._rotating = True
        t.send_close(WSCloseCode.OK, b"reconnecting with new credentials")
        t.disconnect()

    async def close(self) -> None:
        """Close the link and stop reconnecting (idempotent); waits for its tasks to end."""
        self.closing = True
        t, self.transport = self.transport, None
        if t is not None:
            self.gauge.dec()
            t.send_close(WSCloseCode.OK)
            t.disconnect()
        for attr in ("_reconnect_task", "_rotation_task"):
            task = getattr(self, attr)
            setattr(self, attr, None)
            await stop_task(task)


def _rejected(answer: dict[str, object]) -> dict[str, object]:
    """The same answer with every status Rejected (the new password could not be kept)."""
    if "status" in answer:
        return {"status": "Rejected"}
    results = answer.get("setVariableResult")
    if isinstance(results, list):
        return {"setVariableResult": [{**r, "attributeStatus": "Rejected"} for r in results if isinstance(r, dict)]}
    return answer
