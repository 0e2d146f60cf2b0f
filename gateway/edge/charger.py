"""A charger's live WebSocket on picows: the socket as the rest of the gateway uses it, and its frame callbacks.

The edge frames; it does not interpret OCPP. Each complete text frame goes to the connection's ``from_charger``
(the session's entry point, called inside picows' read callback: no task, no await per frame). Binary frames close
with 1003, frames over ``max_frame_bytes`` with 1009 (both counted); a close frame is answered and the socket ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport

from gateway.metrics import Metrics
from gateway.ocpp.frames import Raw
from gateway.transport import Fragments, MessageTooBig, Ticker, answer_close, pause_transport

__all__ = ["ChargerConnection", "ChargerListener", "ChargerSocket"]


class ChargerSocket:
    """The charger's end of a connection: send, close, ping, pause reading; liveness ticks; why it ended."""

    __slots__ = ("ping_at", "reason", "remote", "seen", "transport")

    def __init__(self, remote: str, tick: int) -> None:
        self.remote = remote
        self.transport: WSTransport | None = None
        #: ticker second of the last frame from the charger, and of the ping sent while waiting for one (0: none)
        self.seen = tick
        self.ping_at = 0
        #: the ``reason`` label of ``ocppgw_disconnects_total`` (who ended it and why)
        self.reason = "charger_closed"

    def send(self, data: Raw) -> None:
        t = self.transport
        if t is not None:
            t.send(WSMsgType.TEXT, data)

    def close(self, code: int, message: str, reason: str | None = None) -> None:
        """Send a close frame with ``code`` and drop the socket; ``reason`` (when given) is why."""
        if reason is not None:
            self.reason = reason
        t = self.transport
        if t is not None and not t.is_disconnected:
            if not t.is_close_frame_sent:
                t.send_close(WSCloseCode(code), message.encode())
            t.disconnect()

    def ping(self, tick: int) -> None:
        if self.transport is not None:
            self.transport.send_ping()
            self.ping_at = tick

    def pause_reading(self, paused: bool) -> None:
        pause_transport(self.transport, paused)


class ChargerConnection(Protocol):
    """What the edge drives once a charger is admitted (the hub's connection)."""

    @property
    def from_charger(self) -> Callable[[bytes], None]:
        """Takes one complete text frame from the charger (the session's entry point)."""
        ...

    def backpressure(self, paused: bool) -> None:
        """The charger's socket buffer is full (True) or drained (False): pause reading from its backend."""
        ...

    def ended(self) -> None:
        """The socket is gone."""
        ...


class ChargerListener(WSListener):
    """picows callbacks of one charger connection."""

    __slots__ = ("conn", "deliver", "fragments", "metrics", "socket", "ticker")

    def __init__(self, conn: ChargerConnection, socket: ChargerSocket, ticker: Ticker, metrics: Metrics,
                 max_frame: int) -> None:  # fmt: skip
        self.conn = conn
        self.deliver = conn.from_charger
        self.socket = socket
        self.ticker = ticker
        self.metrics = metrics
        self.fragments = Fragments(max_frame)

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.socket.transport = transport
        self.socket.seen = self.ticker.now

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        mt = frame.msg_type
        self.socket.seen = self.ticker.now
        if mt is WSMsgType.TEXT and frame.fin and self.fragments.partial is None:
            self.deliver(frame.get_payload_as_bytes())
            return
        if mt is WSMsgType.CLOSE:
            answer_close(transport, frame)
        elif mt is WSMsgType.BINARY:
            self.metrics.frame_errors.labels("charger", "binary").inc()
            self.socket.close(1003, "binary frames are not OCPP-J", "binary_frame")
        elif mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            try:
                data = self.fragments.add(frame)
            except MessageTooBig:
                self.metrics.frame_errors.labels("charger", "too_big").inc()
                self.socket.close(1009, "frame too big", "frame_too_big")
                return
            if data is not None:
                self.deliver(data)

    def pause_writing(self) -> None:
        self.conn.backpressure(True)

    def resume_writing(self) -> None:
        self.conn.backpressure(False)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        hs = transport.close_handshake
        sent = hs.sent if hs is not None else None
        if sent is not None and sent.code is WSCloseCode.MESSAGE_TOO_BIG and self.socket.reason == "charger_closed":
            self.metrics.frame_errors.labels("charger", "too_big").inc()
            self.socket.reason = "frame_too_big"
        self.conn.ended()
