"""A TLS charger listener whose handshakes take turns, as many at a time as the event loop keeps up with.

``loop.create_server(ssl=...)`` starts the TLS handshake of every accepted connection at once. In a reconnect storm
that is thousands of handshakes and admissions interleaved on one event loop: every one progresses a little per
loop iteration, so they all finish late together, and one loop iteration carries hundreds of handshake steps
(~0.7-0.9 ms of CPU each) and admission steps, which the frames of chargers already connected wait behind
(measured: their round trip p99 went from ~1.5 ms to 130-340 ms during a 2,000-charger storm).

Here every connection is accepted as soon as it arrives (the kernel's backlog never fills: no SYN is dropped) and
queued, first come first served; its handshake starts when a turn is free
(:meth:`asyncio.AbstractEventLoop.connect_accepted_socket`, in asyncio and uvloop). The number of turns adapts to
the loop's latency, as a congestion window does: every :data:`PROBE_S` the listener measures how late its timer
fired; later than :data:`LAG_TARGET_S` halves the turns (down to :data:`MIN_TURNS`), else they grow by half
of :data:`MIN_TURNS` while all are in use (up to ``max_turns``). So on a loop that keeps up (chargers far away: a
handshake mostly waits for its client's round trip) thousands of handshakes run at once, and on a loop that does
not (a storm from nearby) only as many as keep its latency low. The wait for a turn does not count against the
handshake's own deadline (a storm on a busy machine would otherwise reset the tail of the queue, which then retries
and waits again). When its turn comes, a connection whose client has closed it meanwhile (it gave up waiting:
``POLLRDHUP``, Linux) is closed without a handshake and counted as ``abandoned``, so a storm spends no handshake on a
client that is gone and has most likely connected again behind; one that waited :data:`QUEUE_TIMEOUT_S` (a client
that vanished without closing) is closed without a handshake and counted as a handshake timeout. A failed handshake
is counted by the listener's context as before (:func:`gateway.security.observe_handshake_failures`), one that timed
out or was abandoned through ``on_failure``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import select
import socket
import ssl
import time
from collections.abc import Callable

from gateway.security import HandshakeAbandoned

__all__ = ["ACCEPT_BURST", "LAG_TARGET_S", "MIN_TURNS", "PROBE_S", "QUEUE_TIMEOUT_S", "GatedTlsServer", "serve_tls"]

#: how often the loop's latency is sampled while handshakes wait or run
PROBE_S = 0.005
#: a timer later than this means the loop is not keeping up: fewer handshakes at once
LAG_TARGET_S = 0.002
#: a connection that waited this long for its turn is closed without a handshake: a client that gave up sooner and
#: closed is seen at its turn (``abandoned``), so this bounds only the wait of clients that vanished without closing
QUEUE_TIMEOUT_S = 120.0
#: what poll reports for a client that closed its side (or reset): Linux's POLLRDHUP; elsewhere only POLLHUP
_HUNG_UP = getattr(select, "POLLRDHUP", 0) | select.POLLHUP | select.POLLERR
#: the fewest handshakes at once, and the step by which the turns grow
MIN_TURNS = 8
#: connections accepted before the listener lets the loop run other callbacks
ACCEPT_BURST = 64


class GatedTlsServer:
    """The listening sockets, the queue of accepted connections waiting for their handshake, and the turns.

    Quacks like :class:`asyncio.Server` as far as the lifecycle uses it (``sockets``, ``close``, ``wait_closed``).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        socks: list[socket.socket],
        factory: Callable[[], asyncio.BaseProtocol],
        ctx: ssl.SSLContext,
        handshake_timeout: float,
        max_turns: int,
        on_failure: Callable[[BaseException], None],
        on_change: Callable[[int, int], None] | None = None,
    ) -> None:
        self._loop = loop
        self._failed = on_failure
        self._socks = socks
        self._factory = factory
        self._ctx = ctx
        self._timeout = handshake_timeout
        self._queue_timeout = QUEUE_TIMEOUT_S
        self._max = max(max_turns, 1)
        self.turns = min(self._max, MIN_TURNS * 2)
        self._on_change = on_change
        self._waiting: collections.deque[tuple[socket.socket, float]] = collections.deque()
        self.active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._probe: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._closed = False
        self._acceptors = [loop.create_task(self._accept(s), name="tls-accept") for s in socks]

    @property
    def sockets(self) -> tuple[socket.socket, ...]:
        return () if self._closed else tuple(self._socks)

    @property
    def queued(self) -> int:
        return len(self._waiting)

    async def _accept(self, sock: socket.socket) -> None:
        loop = self._loop
        accepted = 0
        while True:
            try:
                conn, _ = await loop.sock_accept(sock)
            except OSError:  # EMFILE, ECONNABORTED...: the next one may succeed; do not spin
                await asyncio.sleep(0.05)
                continue
            self._waiting.append((conn, time.monotonic()))
            self._start()
            accepted += 1
            if accepted % ACCEPT_BURST == 0:
                # an accept that finds a connection waiting completes without yielding: a storm's thousands would
                # otherwise be accepted in one callback while the connected chargers' frames wait
                await asyncio.sleep(0)

    def _start(self) -> None:
        """Start handshakes while turns are free; keep the probe running while any wait or run."""
        if self._closed:
            return
        now = time.monotonic()
        while self._waiting and self.active < self.turns:
            conn, at = self._waiting.popleft()
            if _hung_up(conn):
                conn.close()  # never handed to the loop: ours to close
                self._failed(HandshakeAbandoned("the client closed the connection while it waited for its turn"))
                continue
            if now - at > self._queue_timeout:
                conn.close()  # never handed to the loop: ours to close
                self._failed(TimeoutError("waited for its turn longer than the queue allows"))
                continue
            self.active += 1
            task = self._loop.create_task(self._handshake(conn, self._timeout))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if self._probe is None and (self._waiting or self.active):
            self._due = self._loop.time() + PROBE_S
            self._probe = self._loop.call_at(self._due, self._sample)
        if self._on_change is not None:
            self._on_change(len(self._waiting), self.turns)

    def _sample(self) -> None:
        self._probe = None
        if self._loop.time() - self._due > LAG_TARGET_S:
            self.turns = max(min(MIN_TURNS, self._max), self.turns // 2)
        elif self.active >= self.turns:
            self.turns = min(self._max, self.turns + MIN_TURNS // 2)
        self._start()

    async def _handshake(self, conn: socket.socket, timeout: float) -> None:
        # From here the loop owns the socket (uvloop keeps its fd): it closes it on failure, never we.
        try:
            await self._loop.connect_accepted_socket(self._factory, conn, ssl=self._ctx, ssl_handshake_timeout=timeout)
        except ssl.SSLError:
            pass  # counted by the context's hook (gateway.security.observe_handshake_failures)
        except (TimeoutError, ConnectionAbortedError) as e:  # the loop's handshake timeout (asyncio: aborted)
            self._failed(TimeoutError(str(e)))
        except Exception:  # the client went away mid-handshake (reset, EOF): not the listener's failure to count
            pass
        finally:
            self.active -= 1
            self._start()

    def close(self) -> None:
        """No new connection: the listening sockets close, queued connections are closed, handshakes go on."""
        if self._closed:
            return
        self._closed = True
        for task in self._acceptors:
            task.cancel()
        for sock in self._socks:
            sock.close()
        while self._waiting:
            self._waiting.popleft()[0].close()
        if self._probe is not None:
            self._probe.cancel()
            self._probe = None

    async def wait_closed(self) -> None:
        for task in self._acceptors:
            with contextlib.suppress(asyncio.CancelledError):
                await task


def _hung_up(conn: socket.socket) -> bool:
    """Whether the client has closed (or reset) the connection: one zero-timeout poll, no data read."""
    poller = select.poll()
    try:
        poller.register(conn, _HUNG_UP)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # a socket that cannot be polled is not one to hand to the loop either
        return True


def _listening_sockets(host: str | None, port: int, backlog: int, reuse_port: bool) -> list[socket.socket]:
    """Bound, listening, non-blocking sockets for every address of ``host`` (all interfaces when empty), as
    ``loop.create_server`` makes them (SO_REUSEADDR; IPV6_V6ONLY on IPv6 sockets so that both families bind)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    socks: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    bound = port
    try:
        for family, kind, proto, _, addr in infos:
            if (family, addr) in seen:
                continue
            seen.add((family, addr))
            sock = socket.socket(family, kind, proto)
            socks.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((addr[0], bound, *addr[2:]))  # port 0: every address on the port the first one got
            sock.listen(backlog)
            sock.setblocking(False)
            bound = bound or int(sock.getsockname()[1])
    except OSError:
        for sock in socks:
            sock.close()
        raise
    return socks


async def serve_tls(
    factory: Callable[[], asyncio.BaseProtocol],
    host: str | None,
    port: int,
    *,
    ctx: ssl.SSLContext,
    handshake_timeout: float,
    max_turns: int,
    backlog: int = 4096,
    reuse_port: bool = False,
    on_failure: Callable[[BaseException], None],
    on_change: Callable[[int, int], None] | None = None,
) -> GatedTlsServer:
    """Bind ``host:port`` and serve TLS, the handshakes taking turns (at most ``max_turns`` at a time)."""
    socks = _listening_sockets(host, port, backlog, reuse_port)
    return GatedTlsServer(
        asyncio.get_running_loop(), socks, factory, ctx, handshake_timeout, max_turns, on_failure, on_change
    )
