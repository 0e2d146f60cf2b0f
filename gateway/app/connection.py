"""One admitted charger: the thin driver around its session.

:class:`Conn` carries out what the sans-I/O session asks for (its :class:`~gateway.core.session.Effects`): frames
to the charger's socket (edge) and to the primary link (links), state writes to the write-behind writer, a new
Basic auth password to the credential store, a connection the session fails closed. It owns the primary link and
the charger's mirror feeds (a :class:`~gateway.fanout.mirror.MirrorSet`), and ends them when the socket ends. The
edge drives it through :class:`~gateway.edge.charger.ChargerConnection`; a cutover switches its primary
(:meth:`Conn.switch_primary`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

from gateway.app.credentials import set_charger_password
from gateway.app.ride import Ride, RideState
from gateway.app.ride_board import RideBoard
from gateway.app.routing import Route
from gateway.config import Config
from gateway.core.jobs import Effects, SessionSettings
from gateway.core.rotation import rejected_answer
from gateway.core.session import Session
from gateway.edge.charger import ChargerSocket
from gateway.fanout.mirror import MirrorContext, MirrorFeed, MirrorSet
from gateway.fanout.taps import Taps
from gateway.links.credentials import UpstreamCredentials
from gateway.links.link import Link
from gateway.metrics import Metrics
from gateway.ocpp.frames import call_result_text
from gateway.ocpp.versions import OcppVersion
from gateway.store import StateWriter, Store, StoreUnavailable, Write
from gateway.translate.base import JsonDict, Translator
from gateway.transport import Ticker

__all__ = ["Conn", "ConnHost"]


class SiteHooks(Protocol):
    """Local load management (gateway/app/sites.py): observes the sessions of site chargers."""

    def attach(self, cid: str, session: Session) -> None: ...

    def detach(self, cid: str, session: Session) -> None: ...


class ConnHost(Protocol):
    """What a connection uses of its process (the hub, :class:`gateway.app.hub.Hub`)."""

    config: Config
    metrics: Metrics
    store: Store
    writer: StateWriter
    credentials: UpstreamCredentials
    mirror_context: MirrorContext
    ticker: Ticker
    node: str
    taps: Taps | None
    observe: Callable[[str, str, bytes], None] | None
    conns: dict[str, Conn]
    teardowns: set[asyncio.Task[None]]
    ride: RideBoard

    @property
    def sites(self) -> SiteHooks | None: ...

    def session_settings(self) -> SessionSettings: ...

    def spawn(
        self, coro: Coroutine[Any, Any, None], name: str, owner: set[asyncio.Task[None]] | None = None
    ) -> None: ...


class Conn:
    """A live charger connection: socket, session, primary link, mirror feeds."""

    def __init__(
        self,
        hub: ConnHost,
        *,
        charger_id: str,
        socket: ChargerSocket,
        link: Link,
        route: Route,
        version: OcppVersion,
        subprotocol: str,
        translator: Translator | None,
        charger_password: str | None,
        log: Any,
        ride: dict[str, Any] | None = None,
    ) -> None:
        self.hub = hub
        self.charger_id = charger_id
        self.socket = socket
        self.link = link
        self.route = route
        self.subprotocol = subprotocol
        self.log = log
        #: what the charger presented at the handshake (to derive upstream credentials for a cutover or a mirror)
        self.charger_password = charger_password
        #: set once the session has ended and its links are closed; a future only when someone waits for it (an
        #: ``asyncio.Event`` per charger cost ~850 bytes of its idle memory, its deque of waiters included)
        self.torn_down = False
        self._ended_waiter: asyncio.Future[None] | None = None
        self._rotating: asyncio.Task[None] | None = None
        loop = asyncio.get_running_loop()
        self.session = Session(
            charger_id=charger_id, version=version, backend=route.primary.name,
            effects=Effects(to_charger=socket.send, to_backend=link.send, persist=hub.writer.put, fail=self._fail,
                            password_accepted=self._password_accepted),
            metrics=hub.metrics, clock=loop.time, wall=time.time, settings=hub.session_settings(),
            translator=translator, backend_version=route.primary.ocpp if translator is not None else None,
            log=log, remote=socket.remote,
        )  # fmt: skip
        self.session.observe = hub.observe
        #: the edge hands each frame straight to the session
        self.from_charger = self.session.from_charger
        self.mirrors = MirrorSet(hub.mirror_context, self.session, log, charger_password)
        self.gauge = hub.metrics.chargers_connected.labels(version)
        #: the charger's quirk profile and compliance state (gateway/app/quirks.py); None when profiles are off
        self.quirk_state: Any = None
        #: the outage ride-through (routes[].offline.mode ride_through): admission read its state (``ride``)
        self.ride: Ride | None = None
        self._attach(link)
        if ride is not None:
            self.ride = Ride(
                hub.ride, charger_id=charger_id, session=self.session, link=link, policy=route.offline,
                stored=ride["stored"], depth=ride["depth"], oldest_at=ride["oldest_at"],
                call_timeout_s=hub.config.session.call_timeout_s,
                spawn=lambda coro, name: hub.spawn(coro, name, hub.teardowns), log=log,
            )  # fmt: skip
            if link.transport is None:
                self.ride.ride()
            elif ride["depth"]:
                self.ride.state = RideState.REPLAYING  # the replay starts once the charger is upgraded

    def _attach(self, link: Link) -> None:
        self.link = link
        link.attach(self.session if self.ride is None else self.ride)
        link.on_pause = self.socket.pause_reading
        link.on_give_up = self._give_up
        terminate = link.backend.auth.password_rotation == "terminate"
        self.session.fx.rotate_upstream = self._rotate_upstream if terminate else None

    # ------------------------------------------------------------------ the edge's side

    def backpressure(self, paused: bool) -> None:
        self.link.pause_reading(paused)

    def upgraded(self) -> None:
        hub, route, cid = self.hub, self.route, self.charger_id
        hub.writer.put(Write("conn", cid, "", self._conn_record(route)))
        if route.mirrors:
            self.sync_mirrors(route)
        taps = hub.taps
        if taps is not None and taps.wants(route.origin):
            origin = route.origin
            self.session.tap = lambda d, t, a, u, p: taps.offer(cid, origin, d, t, a, u, p)
        if hub.sites is not None:
            hub.sites.attach(cid, self.session)
        if self.ride is not None and self.ride.state is RideState.REPLAYING:
            self.ride.replay_now()
        self.log.info("charger_connected", remote=self.socket.remote, subprotocol=self.subprotocol)

    def ended(self) -> None:
        """The charger's socket is gone: forget the session, close the link and the feeds (in the background, owned
        by the hub)."""
        hub, cid, session = self.hub, self.charger_id, self.session
        if hub.conns.get(cid) is self:
            del hub.conns[cid]
            hub.writer.put(Write("conn", cid, hub.node, None))  # releases ownership unless another node took it over
            self.gauge.dec()
            if hub.sites is not None:
                hub.sites.detach(cid, session)
        session.close()
        if self.quirk_state is not None:
            self.quirk_state.ended(self)
        hub.metrics.disconnects.labels(self.socket.reason).inc()
        self.log.info("charger_disconnected", reason=self.socket.reason)
        hub.spawn(self._teardown(), f"close:{cid}", hub.teardowns)

    async def _teardown(self) -> None:
        try:
            if self.ride is not None:
                await self.ride.close()
            await self.link.close()
            await self.mirrors.close()
            if self._rotating is not None:
                await self._rotating
        finally:
            self.torn_down = True
            if self._ended_waiter is not None and not self._ended_waiter.done():
                self._ended_waiter.set_result(None)

    async def wait_ended(self) -> None:
        """Return once the session has ended and its links are closed."""
        if self.torn_down:
            return
        if self._ended_waiter is None:
            self._ended_waiter = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._ended_waiter)  # one waiter's timeout does not cancel it for the others

    def close(self, code: int, message: str, reason: str | None = None) -> None:
        self.socket.close(code, message, reason)

    def _fail(self, side: str, code: int, reason: str) -> None:
        """The session fails a side's connection: the charger is closed; the primary link is closed and reconnects
        within its grace period, as after any drop (the charger's CALLs wait meanwhile)."""
        if side == "charger":
            self.close(code, reason, reason)
        else:
            self.link.fail(code, reason)

    def _give_up(self) -> None:
        """The link could not come back within the grace period: close the charger so it reconnects later."""
        self.close(1013, "backend unavailable", "backend_lost")

    # ------------------------------------------------------------------ routes

    def sync_mirrors(self, route: Route) -> list[MirrorFeed]:
        """Feeds for ``route``'s mirrors; the ones no longer wanted are returned (the caller closes them)."""
        self.route = route
        settings = route.mirror_settings(self.hub.config.session.call_timeout_s)
        return self.mirrors.sync(route.primary.name, route.mirrors, settings)

    async def switch_primary(self, link: Link, route: Route) -> list[MirrorFeed]:
        """Cutover: frames go to ``link`` (the new primary, already booted) from now on; the old link closes, the
        mirror feeds follow ``route`` (the ones no longer wanted are returned: the caller closes them)."""
        old = self.link
        self._attach(link)
        self.session.retarget(route.primary.name, link.send)
        await old.close()
        self.hub.writer.put(Write("conn", self.charger_id, "", self._conn_record(route)))
        return self.sync_mirrors(route)

    def _conn_record(self, route: Route) -> dict[str, Any]:
        """The connection as the store and the admin API show it (built when written, not kept: ~0.3 kB per
        charger)."""
        return {
            "node": self.hub.node,
            "since": self.session.connected_at,
            "protocol": self.subprotocol,
            "backend": route.primary.name,
            "route": route.origin,
            "mirrors": [b.name for b in route.mirrors],
            "remote": self.socket.remote,
        }

    # ------------------------------------------------------------------ password rotation

    def _password_accepted(self, password: str) -> None:
        """Policy passthrough: the charger accepted a new Basic auth password; keep the store in step so that its
        next connection (with the new password) is admitted."""
        self.hub.spawn(self._store_rotated(password), "rotation-store")

    async def _store_rotated(self, password: str) -> None:
        hub, backend = self.hub, self.link.backend
        m = hub.metrics.password_rotations
        try:
            await set_charger_password(hub.store, self.charger_id, password)
            if backend.security_profile in (1, 2) and backend.auth.password_from == "store":
                await hub.credentials.store_password(self.charger_id, backend.name, password)
        except StoreUnavailable:
            m.labels(backend.name, "passthrough", "failed").inc()
            self.log.error("charger_password_rotation_not_stored", reason="store unavailable")
            return
        if backend.auth.password_from in ("store", "charger"):
            self.link.password = password
        m.labels(backend.name, "passthrough", "applied").inc()
        self.log.info("charger_password_rotated", policy="passthrough")

    def _rotate_upstream(self, unique_id: str, answer: JsonDict, password: str) -> bool:
        """Policy terminate: the CSMS sets the charger's password; the gateway keeps it as the upstream one,
        answers, and reconnects the link with it. One at a time (a second one goes to the charger)."""
        if self._rotating is not None and not self._rotating.done():
            return False
        self._rotating = asyncio.get_running_loop().create_task(
            self._terminate_rotation(unique_id, answer, password), name="link-rotation"
        )
        return True

    async def _terminate_rotation(self, unique_id: str, answer: JsonDict, password: str) -> None:
        """Store the new password, answer the backend, then reconnect with it (A01: the charger reconnects)."""
        link = self.link
        backend = link.backend
        policy = backend.auth.password_rotation
        m = self.hub.metrics.password_rotations
        try:
            await asyncio.shield(self.hub.credentials.store_password(self.charger_id, backend.name, password))
        except StoreUnavailable:
            m.labels(backend.name, policy, "failed").inc()
            self.log.error("backend_password_rotation_failed", reason="store unavailable")
            link.send(call_result_text(unique_id, rejected_answer(answer)))
            return
        m.labels(backend.name, policy, "applied").inc()
        self.log.info("backend_password_rotated", policy=policy)
        if link.transport is not None:
            link.send(call_result_text(unique_id, dict(answer)))
        link.reconnect_with(password)

    # ------------------------------------------------------------------ looking

    def view(self) -> dict[str, Any]:
        """What the admin API shows of the live session."""
        s = self.session
        return {
            "charger_id": s.charger_id,
            "ocpp_version": s.version,
            "backend": s.backend,
            "remote": s.remote,
            "connected_at": s.connected_at,
            "last_seen": self.hub.ticker.wall(self.socket.seen),
            "frames_in": s.frames_in,
            "link_up": s.link_up,
            **s.in_flight(),
            "translated": s.backend_version if s.translator is not None else None,
            **({"ride_through": self.ride.view()} if self.ride is not None else {}),
        }
