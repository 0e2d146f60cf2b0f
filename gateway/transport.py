"""What the charger edge and the upstream links share about their sockets: the liveness clock, pausing a socket.

Both sides run on picows; neither imports the other. Every frame received stores ``ticker.now`` on its socket, one
sweeper task per process pings silent peers and closes dead ones (:meth:`gateway.app.hub.Hub.sweep`), and a full
socket buffer on one side pauses reading on the other (back-pressure both ways). A peer's close frame is answered
the same way on both sides (:func:`answer_close`).
"""

from __future__ import annotations

import logging
import time

from picows import WSCloseCode, WSFrame, WSMsgType, WSTransport

__all__ = ["PICOWS_LOG", "READ_BUFFER", "Fragments", "MessageTooBig", "Ticker", "answer_close", "pause_transport"]

#: picows logs every connection at INFO through stdlib logging; an adapter also stops it from creating a child
#: logger per connection (memory per charger).
PICOWS_LOG = logging.LoggerAdapter(logging.getLogger("gateway.picows"), {})
#: initial read buffer per connection (both sides); frames are ~0.5 KB, picows grows it when a bigger one arrives
READ_BUFFER = 2048


class Ticker:
    """Whole seconds since the gateway started, advanced by the sweeper: the clock of pings and idle timeouts.

    Each received frame stores ``ticker.now`` (an int) on its connection; one sweeper task per process sends pings
    and closes silent peers, so there is no ping task and no timer per connection (about 4 KB each, measured).
    :meth:`wall` turns a tick back into unix time (``last_seen`` in the admin API costs the frame path nothing).
    """

    __slots__ = ("now", "stamp")

    def __init__(self) -> None:
        self.now = 1
        #: unix time when ``now`` was reached
        self.stamp = time.time()

    def advance(self) -> int:
        """One more second (the sweeper calls it)."""
        self.now += 1
        self.stamp = time.time()
        return self.now

    def wall(self, tick: int) -> float:
        """Unix time of ``tick``, to within a second or so (the sweeper ticks about once a second)."""
        return self.stamp - (self.now - tick)


def pause_transport(t: WSTransport | None, paused: bool) -> None:
    """Stop (or resume) reading from a WebSocket's socket: back-pressure from the other side of the gateway."""
    if t is not None:
        u = t.underlying_transport
        if paused:
            u.pause_reading()
        else:
            u.resume_reading()


def _sendable_close_code(code: int) -> bool:
    """A status code an endpoint may put in a close frame (RFC 6455 §7.4.1-§7.4.2 and the IANA registry: 1000-1003,
    1007-1014, 3000-4999). Never 0-999, 1004 (reserved), 1005, 1006 or 1015 (only ever reported locally), 1016-2999
    (unassigned) or 5000 and up."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


def answer_close(transport: WSTransport, frame: WSFrame) -> None:
    """Answer a peer's close frame (RFC 6455 §5.5.1) and drop the socket: a close without a status code gets a close
    without one, a valid code is echoed, an invalid one (picows lets 0 and 1006 through) gets 1002.

    picows' ``get_close_code()`` reads a close without a payload as ``NO_INFO`` (0) and ``send_close`` always writes
    a 2-byte code, so echoing it put 0 on the wire; the empty answer goes out as a raw CLOSE frame instead. When the
    gateway sent its own close first, the peer's close is the answer to it and only the socket is dropped.
    """
    if not transport.is_close_frame_sent:
        if frame.payload_size == 0:
            transport.send(WSMsgType.CLOSE, b"")
        else:
            code = frame.get_close_code()
            transport.send_close(code if _sendable_close_code(code.value) else WSCloseCode.PROTOCOL_ERROR)
    transport.disconnect()


class MessageTooBig(Exception):
    """A fragmented message grew past ``max_frame_bytes`` (the peer is closed with 1009)."""


class Fragments:
    """A text message sent in fragments (TEXT without FIN, then CONTINUATION frames), put back together."""

    __slots__ = ("max_bytes", "partial")

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.partial: bytearray | None = None

    def add(self, frame: WSFrame) -> bytes | None:
        """The whole message once ``frame`` is its last fragment, else None; MessageTooBig past the bound (the
        fragments so far are dropped). A CONTINUATION with no message started is ignored."""
        if frame.msg_type is WSMsgType.TEXT:
            self.partial = bytearray(frame.get_payload_as_memoryview())
        elif self.partial is not None:
            self.partial += frame.get_payload_as_memoryview()
        else:
            return None
        if len(self.partial) > self.max_bytes:
            self.partial = None
            raise MessageTooBig
        if not frame.fin:
            return None
        data, self.partial = bytes(self.partial), None
        return data
