"""Local load management, the process's half: every site's session hooks, controller, MQTT topics and events.

:class:`Sites` is held by the hub (``hub.sites``, None without ``sites:`` in the config):

* **Hooks.** A charger of a site gets a session hook when it is admitted (:meth:`Sites.attach`): the session's
  ``tap`` callable, composed with the taps' own when a tap wants the charger too, so that the payload the session
  parsed is read here, not parsed again. The hook feeds the charger's
  :class:`~gateway.sites.observe.ChargerObservation` (synchronous, no I/O: a dict lookup for every action it does
  not watch) and writes it behind to the site's document in the store on every change, so that the node controlling
  the site sees it; a transaction that starts or ends nudges this node's controller at once. A new connection
  first merges what the store kept of the charger (transactions in progress when the gateway restarted).
* **Controllers.** One :class:`~gateway.app.site_controller.SiteController` per site, one task each; the one
  holding the site's lease controls it.
* **MQTT.** Per site with ``mqtt``: the meter's topic (readings to the controller) and the demand-response topic
  (events, as the admin API takes them, or ``{"cancel": "<id>"}``), one :class:`~gateway.app.site_mqtt.MqttFeed`.
* **Events.** :meth:`Sites.add_event`, :meth:`Sites.cancel_event`, :meth:`Sites.events` for the admin API
  (gateway/ops/admin/sites.py) and the MQTT topic: stored in the site's document (applied directly: an event the
  API accepted survives a restart), counted, and the controller nudged.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import orjson

from gateway.app.site_controller import ControllerHost, SiteController
from gateway.app.site_mqtt import MqttFeed
from gateway.core.session import Session
from gateway.sites.allocation import Reading
from gateway.sites.config import SiteConfig, site_of
from gateway.sites.events import Event, parse_event
from gateway.sites.meter import parse_reading
from gateway.sites.observe import DIRTY, TX, WATCHED, ChargerObservation, EvseState
from gateway.store import StoreUnavailable, Write
from gateway.store.keys import Keys
from gateway.tasks import stop_task
from gateway.translate.base import JsonDict

__all__ = ["Sites", "SitesHost"]

Hook = Callable[[str, str, str, str, JsonDict], None]


class SitesHost(ControllerHost, Protocol):
    log: Any

    def spawn(
        self, coro: Coroutine[Any, Any, None], name: str, owner: set[asyncio.Task[None]] | None = None
    ) -> None: ...


class Sites:
    """Every site of one process (see the module docstring). :meth:`start` / :meth:`close` own its tasks."""

    def __init__(self, host: SitesHost, sites: tuple[SiteConfig, ...], keys: Keys, *, call_timeout_s: float = 30.0,
                 log: Any = None) -> None:  # fmt: skip
        self.host = host
        self.sites = {s.name: s for s in sites}
        self._order = sites
        self.log = (log if log is not None else host.log).bind(component="sites")
        #: this node's own chargers of each site, as their hooks see them
        self.books: dict[str, dict[str, ChargerObservation]] = {s.name: {} for s in sites}
        self.controllers = {
            s.name: SiteController(s, host, self.books[s.name], keys.site_lease(s.name), self.log, call_timeout_s)
            for s in sites
        }
        self.feeds: dict[str, MqttFeed] = {}
        self._site_of: dict[str, SiteConfig | None] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._meter_bad: set[str] = set()
        #: observations (by id) whose stored past is being merged in: not written, not seen by the controller yet
        self._seeding: set[int] = set()

    def site_of(self, cid: str) -> SiteConfig | None:
        if cid not in self._site_of:
            if len(self._site_of) > 100_000:
                self._site_of.clear()
            self._site_of[cid] = site_of(self._order, cid)
        return self._site_of[cid]

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        for name, site in self.sites.items():
            topics: dict[str, Callable[[bytes], None]] = {}
            if site.meter is not None:
                topics[site.meter.topic] = functools.partial(self._meter_message, name)
            if site.demand_response_topic is not None:
                topics[site.demand_response_topic] = functools.partial(self._event_message, name)
            if site.mqtt is not None and topics:
                feed = self.feeds[name] = MqttFeed(site.mqtt, topics, self.log.bind(site=name),
                                                   f"ocppgw-{name}-{secrets.token_hex(3)}")  # fmt: skip
                feed.start()
            self._tasks.append(loop.create_task(self.controllers[name].run(), name=f"site:{name}"))

    async def close(self) -> None:
        for task in self._tasks:
            await stop_task(task)
        self._tasks = []
        for feed in self.feeds.values():
            await feed.close()
        for c in self.controllers.values():
            await c.close()

    # ------------------------------------------------------------------ chargers (the connection's side)

    def attach(self, cid: str, session: Session) -> None:
        """A charger was admitted: observe its session if it belongs to a site."""
        site = self.site_of(cid)
        if site is None:
            return
        o = ChargerObservation(
            version=session.version, connected=True, node=self.host.node, connected_at=session.connected_at
        )
        # the hook observes from the first frame on; the controller sees the charger once what the store kept of it
        # is merged in (_seed), so that it never acts on half a picture
        self._seeding.add(id(o))
        hook = self._hook(site.name, cid, o)
        tap = session.tap
        if tap is None:
            session.tap = hook
        else:

            def both(d: str, t: str, a: str, u: str, p: JsonDict) -> None:
                tap(d, t, a, u, p)
                hook(d, t, a, u, p)

            session.tap = both
        self.host.spawn(self._seed(site.name, cid, o), f"site-seed:{cid}")

    def detach(self, cid: str, session: Session) -> None:
        """The charger's session ended: it is offline for its site (its transactions may go on without us)."""
        site = self.site_of(cid)
        if site is None:
            return
        book = self.books[site.name]
        o = book.get(cid)
        if o is None or o.connected_at != session.connected_at:
            return  # a newer session of the same charger took its place (or it ended before it was seeded)
        del book[cid]
        o.connected = False
        self._write(site.name, cid, o)
        self.controllers[site.name].nudge("charger")

    def _hook(self, name: str, cid: str, o: ChargerObservation) -> Hook:
        controller = self.controllers[name]

        def hook(direction: str, message_type: str, action: str, unique_id: str, payload: JsonDict) -> None:
            if action not in WATCHED:
                return
            changed = o.apply(direction, message_type, action, unique_id, payload, time.time())
            if changed and id(o) not in self._seeding:
                self._write(name, cid, o)
                if changed & TX:
                    controller.nudge("transaction")
                elif changed & DIRTY:
                    controller.nudge("charger")

        return hook

    async def _seed(self, name: str, cid: str, o: ChargerObservation) -> None:
        """Merge what the store kept of the charger (transactions that went on while it was away, its dirty count)
        into its new observation, then publish it."""
        try:
            try:
                doc = (await self.host.store.get_site(name)).get(f"charger:{cid}")
            except StoreUnavailable:
                doc = None
            if doc is not None:
                kept = ChargerObservation.from_doc(doc)
                for evse, st in kept.evses.items():
                    o.evses.setdefault(evse, EvseState(st.tx, st.since, st.phase_a, st.power_w, st.measured_at))
                o.dirty = max(o.dirty, kept.dirty)
        finally:
            self._seeding.discard(id(o))
        conn = self.host.conns.get(cid)
        if conn is None or conn.session.connected_at != o.connected_at:
            return  # it went away meanwhile (its detach found nothing to do), or reconnected
        self.books[name][cid] = o
        self._write(name, cid, o)
        self.controllers[name].nudge("charger")

    def _write(self, name: str, cid: str, o: ChargerObservation) -> None:
        self.host.writer.put(Write("site", name, f"charger:{cid}", o.doc()))

    # ------------------------------------------------------------------ the meter

    def feed_meter(self, name: str, reading: Reading) -> None:
        """A meter reading of the site (from its MQTT topic; the demo's simulator calls it directly)."""
        self.controllers[name].meter(reading, time.time())

    def _meter_message(self, name: str, raw: bytes) -> None:
        site = self.sites[name]
        assert site.meter is not None
        reading = parse_reading(raw, site.meter.unit)
        m = self.host.metrics.site_meter_messages
        if isinstance(reading, str):
            m.labels(name, "invalid").inc()
            if name not in self._meter_bad:
                self._meter_bad.add(name)
                self.log.warning("site_meter_message_invalid", site=name, reason=reading)
            return
        self._meter_bad.discard(name)
        m.labels(name, "ok").inc()
        self.feed_meter(name, reading)

    # ------------------------------------------------------------------ demand-response events

    async def events(self, name: str) -> list[Event]:
        doc = await self.host.store.get_site(name)
        found = [Event.from_doc(v) for k, v in doc.items() if k.startswith("event:")]
        return sorted((e for e in found if e is not None), key=lambda e: (e.start, e.id))

    async def add_event(self, name: str, body: Any, source: str = "api") -> Event | tuple[int, str]:
        """Store a new event; the event, or (HTTP status, why not): 400 bad input, 409 id taken, 503 store."""
        site = self.sites[name]
        m = self.host.metrics.site_event_changes
        now = time.time()
        parsed = parse_event(
            body, unit=site.unit, connection_limit=site.limit, now=now, new_id=f"{source}-{secrets.token_hex(4)}",
            source=source,
        )  # fmt: skip
        if isinstance(parsed, str):
            m.labels(name, "refused", source).inc()
            return 400, parsed
        try:
            doc = await self.host.store.get_site(name)
            if f"event:{parsed.id}" in doc:
                m.labels(name, "refused", source).inc()
                return 409, f"event {parsed.id!r} exists (cancel it first)"
            await self.host.store.apply([Write("site", name, f"event:{parsed.id}", parsed.doc())])
        except StoreUnavailable:
            return 503, "store unreachable: the event was not stored"
        m.labels(name, "created", source).inc()
        self.log.info("site_event_created", site=name, event_id=parsed.id, source=source)
        self.controllers[name].nudge("event")
        return parsed

    async def cancel_event(self, name: str, event_id: str, source: str = "api") -> int:
        """204 cancelled, 404 no such event, 503 store."""
        try:
            doc = await self.host.store.get_site(name)
            if f"event:{event_id}" not in doc:
                return 404
            await self.host.store.apply([Write("site", name, f"event:{event_id}", None)])
        except StoreUnavailable:
            return 503
        self.host.metrics.site_event_changes.labels(name, "cancelled", source).inc()
        self.log.info("site_event_cancelled", site=name, event_id=event_id, source=source)
        self.controllers[name].nudge("event")
        return 204

    def _event_message(self, name: str, raw: bytes) -> None:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            body = None
        self.host.spawn(self._mqtt_event(name, body), f"site-event:{name}")

    async def _mqtt_event(self, name: str, body: Any) -> None:
        if isinstance(body, dict) and set(body) == {"cancel"} and isinstance(body["cancel"], str):
            await self.cancel_event(name, body["cancel"], "mqtt")
            return
        got = await self.add_event(name, body, "mqtt")
        if isinstance(got, tuple) and got[0] != 409:  # 409: the same event again (a retained message)
            self.log.warning("site_event_refused", site=name, source="mqtt", reason=got[1])
