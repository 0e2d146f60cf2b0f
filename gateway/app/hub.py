"""The hub: the state of one gateway process, and the lifecycle that owns it.

:class:`Hub` holds what the process shares: the live connections (:class:`~gateway.app.connection.Conn`, by
charger id), the route resolver, the charger-side security and the link factory (with the upstream credentials),
the mirror board, the taps, the fleet (ownership and node messages), the write-behind writer, the ticker. No
module globals: the admin API gets the hub under an aiohttp AppKey.

:meth:`Hub.running` is its one owned lifecycle (an :class:`contextlib.AsyncExitStack`): it starts the writer, the
taps, the fleet and the sweeper, and on the way out drains (in-flight CALLs finish within
``session.shutdown_grace_s``, chargers are closed with 1001 spread over ``session.drain_window_s``), then stops
everything it started, in reverse order, the writer flushed last.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from gateway.app.connection import Conn
from gateway.app.fleet import Fleet
from gateway.app.quirks import ComplianceRecorder, QuirkBook
from gateway.app.ride_board import RideBoard
from gateway.app.routing import Router, RouteResolver
from gateway.app.sites import Sites
from gateway.config import Config
from gateway.core.jobs import SessionSettings
from gateway.edge.auth import EdgeSecurity
from gateway.fanout.board import MirrorBoard
from gateway.fanout.mirror import MirrorContext
from gateway.fanout.taps import Taps
from gateway.links.credentials import UpstreamCredentials
from gateway.links.factory import LinkFactory
from gateway.logging import get_logger
from gateway.metrics import Metrics
from gateway.store import StateWriter, Store
from gateway.store.keys import Keys
from gateway.tasks import stop_task
from gateway.transport import Ticker

__all__ = ["Hub"]


class Hub:
    """Everything a running gateway process holds. Building it loads every TLS file (ConfigError when one is bad)."""

    def __init__(self, config: Config, metrics: Metrics, store: Store, writer: StateWriter, *,
                 log: Any = None) -> None:  # fmt: skip
        self.config = config
        self.metrics = metrics
        self.store = store
        self.writer = writer
        self.log = log if log is not None else get_logger()
        #: this process in the fleet (ownership keys, node channel); random part: unique even for hubs in one process
        self.node = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.keys = Keys(config.store.prefix)
        self.ticker = Ticker()
        self.security = EdgeSecurity(config, store, metrics)
        self.credentials = UpstreamCredentials(config, store)
        self.links = LinkFactory(self.credentials, metrics, self.ticker, config.listen.max_frame_bytes)
        self.routes = RouteResolver(Router(config), store, self.log)
        self.board = MirrorBoard(metrics, store.outbox(), self.keys, self.log)
        self.mirror_context = MirrorContext(
            store=store, outbox=store.outbox(), keys=self.keys, metrics=metrics, board=self.board, links=self.links,
            persist=writer.put,
        )  # fmt: skip
        self.conns: dict[str, Conn] = {}
        #: the outage ride-through's shared state (routes[].offline.mode ride_through; gateway/app/ride.py)
        self.ride = RideBoard(metrics, store, writer, self.keys, self.log)
        self.taps: Taps | None = None
        self.fleet = Fleet(self, config.store.owner_ttl_s)
        #: the compliance report's counting (``compliance:``), and the quirk profiles (gateway/app/quirks.py)
        self.compliance = (
            ComplianceRecorder(store.compliance(), config, metrics, self.log) if config.compliance.active else None
        )
        self.quirks = QuirkBook(config, metrics, self.compliance, self.log)
        #: local load management (gateway/app/sites.py); None without ``sites:``
        self.sites = (
            Sites(self, config.sites, self.keys, call_timeout_s=config.session.call_timeout_s) if config.sites else None
        )
        self.draining = False
        #: an upstream link failed for want of a file descriptor and was logged ("fd_exhausted"), not again until a
        #: link opens
        self.fd_exhausted_logged = False
        #: see Session.observe (the demo's live view); None in production
        self.observe: Callable[[str, str, bytes], None] | None = None
        #: the YAML file the config came from (hot reload re-reads it); None when built in code (tests, demo)
        self.config_path: str | None = None
        #: short-lived tasks: handshakes (cancelled at drain), teardowns of ended sessions (awaited at drain, never
        #: cancelled, since each is bounded)
        self.handshakes: set[asyncio.Task[None]] = set()
        self.teardowns: set[asyncio.Task[None]] = set()
        # queue depths computed at scrape time from the sessions' lanes: exact, and nothing on the message path
        self.metrics.queued_calls.labels("up").set_function(lambda: self._queued(True))
        self.metrics.queued_calls.labels("down").set_function(lambda: self._queued(False))

    def _queued(self, up: bool) -> int:
        return sum(len(c.session.up.queue if up else c.session.down.queue) for c in list(self.conns.values()))

    def session_settings(self) -> SessionSettings:
        s = self.config.session
        return SessionSettings(
            call_timeout_s=s.call_timeout_s, max_queued_calls=s.max_queued_calls, validate=s.validate_schemas
        )

    def apply_config(self, config: Config, security: EdgeSecurity, credentials: UpstreamCredentials) -> None:
        """A reloaded config (gateway/app/reload.py): routes, backends, security and session settings from now on."""
        self.config = config
        self.security = security
        self.credentials = credentials
        self.links.credentials = credentials
        self.routes = RouteResolver(Router(config), self.store, self.log)
        self.quirks = QuirkBook(config, self.metrics, self.compliance, self.log)
        for conn in list(self.conns.values()):  # connected chargers get the new profiles now
            state = conn.quirk_state
            if state is not None:
                self.quirks.apply(conn, state.identity)
            else:
                self.quirks.attach(conn, None)

    def spawn(self, coro: Coroutine[Any, Any, None], name: str, owner: set[asyncio.Task[None]] | None = None) -> None:
        """Run a short-lived task owned by the hub: in ``handshakes`` (cancelled and awaited at drain) unless
        another set is given."""
        tasks = self.handshakes if owner is None else owner
        task: asyncio.Task[None] = asyncio.get_running_loop().create_task(coro, name=name)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def close_session(self, cid: str, code: int, message: str, reason: str | None = None) -> None:
        """Close a charger's socket with ``code`` and wait (bounded) until its session has ended."""
        conn = self.conns.get(cid)
        if conn is None:
            return
        conn.close(code, message, reason)
        try:
            async with asyncio.timeout(5):
                await conn.wait_ended()
        except TimeoutError:
            self.log.warning("session_close_slow", charger_id=cid)

    # ------------------------------------------------------------------ the lifecycle

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Hub]:
        """Start what the hub owns; on exit drain and stop it all (see the module docstring)."""
        async with contextlib.AsyncExitStack() as stack:
            self.writer.start()
            stack.push_async_callback(self.writer.close, 5.0)
            if self.config.taps:
                taps = self.taps = Taps(self.config.taps, self.store, self.keys, self.metrics, self.log, node=self.node)
                taps.start()
                stack.push_async_callback(taps.close)
            await self.fleet.start()  # ownership and node messages work before the first charger is admitted
            stack.push_async_callback(self.fleet.close)
            if self.compliance is not None:
                self.compliance.start(self.conns.values)
                stack.push_async_callback(lambda: self._close_compliance())
            if self.sites is not None:  # its controllers call chargers on other nodes through the fleet
                await self.sites.start()
                stack.push_async_callback(self.sites.close)
            sweeper = asyncio.get_running_loop().create_task(self.sweep(), name="sweeper")
            stack.push_async_callback(stop_task, sweeper)
            stack.push_async_callback(self.drain)
            yield self

    async def _close_compliance(self) -> None:
        if self.compliance is not None:
            await self.compliance.close(self.conns.values())

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
            tick = self.ticker.advance()
            now = loop.time()
            for i, conn in enumerate(list(self.conns.values())):
                if i % 500 == 499:
                    await asyncio.sleep(0)
                s = conn.session
                if s.overdue(now):
                    s.expire(now)
                conn.link.keepalive(tick)
                sock = conn.socket
                if sock.ping_at and sock.seen >= sock.ping_at:
                    sock.ping_at = 0
                silent = tick - sock.seen
                if idle and silent >= idle:
                    conn.close(1001, "idle timeout", "idle_timeout")
                elif ping and not sock.ping_at and silent >= ping and sock.transport is not None:
                    sock.ping(tick)
                elif sock.ping_at and tick - sock.ping_at >= pong_wait:
                    self.metrics.call_timeouts.labels("ping", "charger").inc()
                    conn.close(1001, "no pong", "ping_timeout")

    async def drain(self) -> None:
        """Let in-flight CALLs finish (bounded by ``session.shutdown_grace_s``), then close every charger with 1001,
        spread evenly over ``session.drain_window_s`` (0: all at once) so that they do not all reconnect to the
        other replicas at the same instant. Returns when every session has ended and the board is closed."""
        self.draining = True
        grace_s, window_s = self.config.session.shutdown_grace_s, self.config.session.drain_window_s
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
        await self.board.close()
        for t in list(self.handshakes):
            t.cancel()
        await asyncio.gather(*self.handshakes, return_exceptions=True)
