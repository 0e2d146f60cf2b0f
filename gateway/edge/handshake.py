"""The charger listener's protocol: the HTTP upgrade, admission (asynchronous), then the hand-over to picows.

The listener is a plain asyncio server whose protocol, :class:`Handshake`, reads the HTTP upgrade request, refuses
what is malformed, and asks its :class:`Admitter` (the hub's admission, :mod:`gateway.app.admission`) whether to
admit the charger. Only then is the connection handed to picows (a Cython WebSocket implementation driven by
callbacks) for the 101 answer and the frames. Every refusal is an HTTP status *before* the upgrade, logged
(``charger_refused``) and counted in ``ocppgw_connections_total{outcome}``:

1. a request head of 16 KiB or more, or with more than 100 header fields -> 431; not HTTP/1.1 -> 400;
2. draining -> 503; not ``GET`` -> 405; no ``Upgrade: websocket``/``Connection: Upgrade`` -> 400; a
   ``Sec-WebSocket-Version`` other than 13 -> 426 (with ``Sec-WebSocket-Version: 13``); a missing, repeated or
   malformed ``Sec-WebSocket-Key`` -> 400 (:func:`~gateway.edge.http.check_websocket_upgrade`); path not
   ``<path_prefix>/<one segment>`` -> 404; charger id not 1..48 printable characters without '/' after
   percent-decoding -> 400;
3. whatever the admitter refuses (no route, security profile, subprotocol, upstream link: see the admission).

Everything picows checks of the request once it completes the handshake is checked here first, so that a refusal
never comes after an upstream link was opened. Should picows still refuse one (it also checks header syntax and
refuses a request body), the admitted connection is ended at once (disconnect reason ``upgrade_refused``).

A head over the limit is refused while the client may still be sending it: the answer goes out, the write side is
shut (the client sees the end of the answer), and what the client still sends is read and dropped until it closes
or :data:`LINGER_S` pass. Closing at once with its bytes unread would make the kernel reset the connection (RST),
which destroys the answer before the client reads it.

On a TLS listener the loop has done the TLS handshake before ``connection_made`` (``create_server(ssl=...)``); a
failed one never gets here and is counted by the listener's context (see :mod:`gateway.edge.auth`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

from picows import WSAutoPingStrategy, WSUpgradeResponse
from picows.common import WSUpgradeResponseWithListener
from picows.picows import WSProtocol  # type: ignore[attr-defined]  # not in the stub; pinned picows

from gateway.config import ListenConfig
from gateway.edge.charger import ChargerConnection, ChargerListener, ChargerSocket
from gateway.edge.http import (
    MAX_REQUEST_HEAD,
    check_websocket_upgrade,
    http_error,
    parse_charger_id,
    parse_request_head,
)
from gateway.errors import ChargerRejected
from gateway.metrics import Metrics
from gateway.transport import PICOWS_LOG, READ_BUFFER, Ticker

__all__ = ["HANDSHAKE_TIMEOUT_S", "LINGER_S", "Admitted", "Admitter", "Handshake", "UpgradeRequest"]

HANDSHAKE_TIMEOUT_S = 10.0
#: after refusing a head that was still arriving, how long what the client still sends is read and dropped
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class UpgradeRequest:
    """A well-formed upgrade request, as the admitter sees it."""

    charger_id: str
    raw_path: str
    headers: Mapping[str, str]  # lower-case names
    remote: str
    #: the TLS connection (peer certificate), None on a plain listener
    ssl_object: Any
    listener: ListenConfig


class Admitted(ChargerConnection, Protocol):
    """An admitted charger: the subprotocol to answer with, and the connection the frames go to."""

    @property
    def subprotocol(self) -> str: ...

    def upgraded(self) -> None:
        """The 101 is on its way: the connection is live."""
        ...


class Admitter(Protocol):
    """Decides about a charger (the hub's admission)."""

    @property
    def draining(self) -> bool:
        """The gateway is shutting down: every new charger gets 503."""
        ...

    async def admit(self, request: UpgradeRequest, socket: ChargerSocket) -> Admitted:
        """Admit the charger (``socket`` is its end of the connection once upgraded) or raise ChargerRejected."""
        ...


class Handshake(asyncio.Protocol):
    """Reads the HTTP upgrade request, admits the charger asynchronously, then hands the socket to picows."""

    def __init__(
        self,
        admitter: Admitter,
        listener: ListenConfig,
        *,
        metrics: Metrics,
        ticker: Ticker,
        log: Any,
        spawn: Callable[[Coroutine[Any, Any, None], str], None],
    ) -> None:
        self.admitter = admitter
        self.listener = listener
        self.metrics = metrics
        self.ticker = ticker
        self.log = log
        self.spawn = spawn
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.started = False
        #: refused while the head was arriving: what the client still sends is dropped (see the module docstring)
        self.refused = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports are not asyncio.Transport
        self.timer = asyncio.get_running_loop().call_later(HANDSHAKE_TIMEOUT_S, self.transport.abort)
        if self.listener.tls is not None:
            self.metrics.tls_handshakes.labels(self.listener.name, "ok").inc()

    def data_received(self, data: bytes) -> None:
        if self.started:
            self.buf += data  # pipelined bytes after the request: replayed to picows
            return
        if self.refused:
            return
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0 and len(self.buf) < MAX_REQUEST_HEAD + 3:
            return  # the end of the head may still come
        if end < 0 or end >= MAX_REQUEST_HEAD:
            # Checked on the whole head too: a big head often arrives in one read, end and all.
            too_large = ChargerRejected(431, "head_too_large", f"request head of {MAX_REQUEST_HEAD} bytes or more")
            self._refuse(too_large, linger=True)
            return
        self.started = True
        assert self.transport is not None
        self.transport.pause_reading()
        self.spawn(self._admit(bytes(self.buf[:end])), "handshake")

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()

    def _refuse(self, e: ChargerRejected, path: str = "", *, linger: bool = False) -> None:
        """Answer ``e``'s status and close; ``linger``: the client may still be sending (see the module docstring)."""
        self.metrics.connections.labels(e.outcome).inc()
        self.log.info(
            "charger_refused", reason=e.reason, outcome=e.outcome, status=e.http_status, remote=self._remote(),
            path=path[:100],
        )  # fmt: skip
        t = self.transport
        if t is None or t.is_closing():
            return
        t.write(http_error(e.http_status, e.reason, e.headers))
        if not linger:
            t.close()
            return
        self.refused = True
        self.buf = bytearray()
        if t.can_write_eof():  # TLS cannot half-close: the client reads the answer (Content-Length) and closes
            t.write_eof()
        if self.timer is not None:
            self.timer.cancel()
        self.timer = asyncio.get_running_loop().call_later(LINGER_S, t.close)

    def _remote(self) -> str:
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return str(peer[0]) if peer else ""

    async def _admit(self, head: bytes) -> None:
        path = ""
        try:
            req = parse_request_head(head)
            path = req.raw_path
            if self.admitter.draining:
                raise ChargerRejected(503, "draining", "gateway is shutting down")
            if req.method != "GET":
                raise ChargerRejected(405, "bad_request", "WebSocket upgrade needs GET")
            check_websocket_upgrade(req.headers)
            cid = parse_charger_id(req.raw_path, self.listener.path_prefix)
            ssl_object = self.transport.get_extra_info("ssl_object") if self.transport is not None else None
            remote = self._remote()
            socket = ChargerSocket(remote, self.ticker.now)
            request = UpgradeRequest(cid, req.raw_path, req.headers, remote, ssl_object, self.listener)
            admitted = await self.admitter.admit(request, socket)
        except ChargerRejected as e:
            self._refuse(e, path)
            return
        if self.transport is None or self.transport.is_closing():
            admitted.ended()  # the charger went away while it was being admitted
            return
        self._upgrade(admitted, socket, cid)

    def _upgrade(self, admitted: Admitted, socket: ChargerSocket, charger_id: str) -> None:
        transport = self.transport
        assert transport is not None
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None  # this protocol stays reachable for the connection's life: so would the handle
        max_frame = self.listener.max_frame_bytes
        listener = ChargerListener(admitted, socket, self.ticker, self.metrics, max_frame)
        response = WSUpgradeResponse.create_101_response(extra_headers={"Sec-WebSocket-Protocol": admitted.subprotocol})
        proto = WSProtocol(
            None, None, False,
            lambda request: WSUpgradeResponseWithListener(response, listener),
            PICOWS_LOG, True, HANDSHAKE_TIMEOUT_S,
            False, 20, 10, WSAutoPingStrategy.PING_WHEN_IDLE,  # no ping task per charger: the hub's sweeper pings
            True, max_frame, None, READ_BUFFER,
        )  # fmt: skip
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
        if socket.transport is None:
            # picows refused the request (it answered 400 and dropped the socket; it never reports a disconnect for
            # a handshake it did not complete): end the admitted connection, and the upstream link with it
            self.log.warning("charger_upgrade_refused", remote=socket.remote, charger_id=charger_id)
            socket.reason = "upgrade_refused"
            admitted.ended()
            return
        transport.resume_reading()
        admitted.upgraded()
