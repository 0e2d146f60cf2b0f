"""Admission: which chargers the hub takes, and what it gives each (route, subprotocol, primary link, session).

The edge (:class:`gateway.edge.handshake.Handshake`) hands every well-formed upgrade request to :meth:`Admission.admit`.
In order, each refusal an HTTP status before the upgrade:

1. no route for the charger id -> 404 (the route is the config's with the store's override, one resolver for all);
2. the security profile (gateway/edge/auth.py: 401/403/429/503);
3. no subprotocol in common between the charger's offer and the primary (its own version, or one the gateway
   translates to it) -> 400;
4. no upstream credentials for this charger toward the primary -> 502 (store unreadable: 503);
5. a translated charger's state cannot be read -> 503 (the charger retries, and queues meanwhile); the last boot is
   read when a quirk profile may match on it (gateway/app/quirks.py; unreadable: chosen at the next boot instead);
6. admission pacing toward the primary (``max_connects_per_s``, the link factory's): the charger waits for its turn,
   or gets 503 with ``Retry-After`` when none comes within ``max_connect_wait_s``; after the security checks, so that
   chargers that cannot authenticate take no turn from those that can;
7. a live session with the same id is closed first (here or, through the fleet, on another node), so that the CSMS
   never sees two connections for one charger;
8. the primary link opens (the link factory) or 502 (refused/failed) / 503 (timed out): the charger stays offline
   and queues on its own; the gateway never answers for the CSMS. Unless the route rides through outages
   (``offline.mode: ride_through``, gateway/app/ride.py): its ride-through state (journal depth, transaction ids,
   boot interval, the backend's authorization cache) is read first (store away -> 503), and an unreachable primary
   admits the charger with a link that keeps reconnecting, the gateway answering from the CSMS's earlier answers.
"""

from __future__ import annotations

import time
from typing import Any

from gateway.app.connection import Conn
from gateway.app.hub import Hub
from gateway.app.routing import Route
from gateway.edge.charger import ChargerSocket
from gateway.edge.handshake import UpgradeRequest
from gateway.errors import BackendBusy, BackendUnavailable, ChargerRejected, NoUpstreamCredentials, OutOfFileDescriptors
from gateway.ocpp.versions import SUBPROTOCOLS, VERSIONS, OcppVersion
from gateway.store import StoreUnavailable
from gateway.translate import TRANSLATABLE, translator_for
from gateway.translate.base import Translator

__all__ = ["Admission", "choose_subprotocol"]


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


class Admission:
    """The hub's :class:`~gateway.edge.handshake.Admitter`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    @property
    def draining(self) -> bool:
        return self.hub.draining

    async def admit(self, request: UpgradeRequest, socket: ChargerSocket) -> Conn:
        hub = self.hub
        cid = request.charger_id
        route = await hub.routes.resolve(cid)
        if route is None:
            raise ChargerRejected(404, "no_route", "no route for this charger id")
        required = request.listener.security_profile if route.security_profile is None else route.security_profile
        admitted = await hub.security.admit(
            cid, request.headers.get("authorization"), request.ssl_object, required, route.allowlist, request.remote
        )
        offered = [p.strip() for p in request.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        subprotocol = choose_subprotocol(offered, route, request.listener.ocpp_versions)
        version: OcppVersion = VERSIONS[subprotocol]
        backend = route.primary
        log = hub.log.bind(charger_id=cid, backend=backend.name, ocpp_version=version)
        try:
            credentials = await hub.links.credentials_for(backend, cid, admitted.password)
        except NoUpstreamCredentials as e:
            log.warning("upstream_credentials_missing", reason=e.reason)
            raise ChargerRejected(502, "no_upstream_credentials", e.reason) from None
        except StoreUnavailable:
            raise ChargerRejected(503, "store_unavailable", "credential store unavailable") from None
        translator = await self._translator(cid, version, route) if version != backend.ocpp else None
        identity = await hub.quirks.identity(hub.store, cid)  # the last boot, when a quirk profile may need it
        try:
            await hub.links.pace(backend)
        except BackendBusy as e:
            retry = {"Retry-After": str(e.retry_after_s)}
            raise ChargerRejected(503, "paced", f"backend {e.backend} is pacing new connections", retry) from None

        # A second connection with the same id replaces the first, before the new upstream link opens, so that the
        # CSMS never sees two connections for one charger.
        if cid in hub.conns:
            hub.metrics.chargers_replaced.inc()
            log.info("charger_replaced", remote=request.remote)
            await hub.close_session(cid, 1000, "replaced by a new connection", "replaced")
        await hub.fleet.take(cid, log)  # ownership; a session on another node is closed first

        ride = await self._ride_state(cid, route) if route.offline.ride_through else None
        try:
            link = await hub.links.open(backend, cid, credentials=credentials, log=log)
        except OutOfFileDescriptors as e:
            # the gateway is full, the backend is not down: not ridden through; logged once until a link opens again
            if not hub.fd_exhausted_logged:
                hub.fd_exhausted_logged = True
                log.error("fd_exhausted", reason=e.reason, hint="raise RLIMIT_NOFILE (2 per charger) or add workers")
            raise ChargerRejected(
                503, "at_capacity", "the gateway has no file descriptor left", {"Retry-After": "30"}
            ) from None
        except BackendUnavailable as e:
            log.warning("backend_unavailable", reason=e.reason, status=e.http_status)
            if ride is None or e.refused:  # a CSMS that answers and refuses is not down: never ridden through
                raise ChargerRejected(
                    e.http_status, "backend_unavailable", f"backend {e.backend} unavailable"
                ) from None
            link = hub.links.dormant(backend, cid, credentials, log)
        hub.fd_exhausted_logged = False
        if cid in hub.conns:  # another connection for the id won the race while the link opened
            await link.close()
            raise ChargerRejected(409, "conflict", "another connection for this charger id was admitted first")
        conn = Conn(
            hub, charger_id=cid, socket=socket, link=link, route=route, version=version, subprotocol=subprotocol,
            translator=translator, charger_password=admitted.password, log=log, ride=ride,
        )  # fmt: skip
        hub.quirks.attach(conn, identity)
        hub.conns[cid] = conn
        conn.gauge.inc()
        hub.metrics.connections.labels("accepted").inc()
        return conn

    async def _ride_state(self, cid: str, route: Route) -> dict[str, Any]:
        """A ride-through charger's state, read before it is admitted (its journal must be replayed before any new
        CALL of it is forwarded). Store away -> 503, the charger retries."""
        hub, backend = self.hub, route.primary.name
        try:
            await hub.ride.ready(backend)
            stored = await hub.store.get_ride(cid)
            depth, age = await hub.store.outbox().stats(hub.keys.journal(cid, backend))
        except StoreUnavailable:
            hub.writer.mark(False)
            raise ChargerRejected(503, "state_unavailable", "ride-through state unavailable") from None
        oldest = time.time() - age if age is not None else None
        return {"stored": stored, "depth": depth, "oldest_at": oldest}

    async def _translator(self, cid: str, version: OcppVersion, route: Route) -> Translator:
        """Translation state must be read before the charger is admitted: without it, transaction ids the peers
        already use would be lost. Store away -> 503, the charger retries (and queues meanwhile)."""
        hub = self.hub
        try:
            stored = await hub.store.get_translation_state(cid, route.primary.name)
        except StoreUnavailable:
            hub.writer.mark(False)
            raise ChargerRejected(503, "state_unavailable", "translation state unavailable") from None
        translator = translator_for(version, route.primary.ocpp, options=route.primary.translation)
        if stored is not None:
            translator.restore(stored)
        return translator
