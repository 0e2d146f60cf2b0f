"""What the outage ride-through shares across a process: the authorization caches (one per backend), the replay
pacers (one per backend), the chargers riding through, and their metrics. Held by the hub (``hub.ride``).

The cache of a backend is read from the store once, at the first admission of a ride-through charger toward it
(:meth:`RideBoard.ready`; the admission refuses the charger with 503 while it cannot be read, as it does without
translation state), then kept in memory and learned into from the live answers of this process's chargers
(written behind, bounded by ``offline.auth_cache.max_entries``: the least recently learned token goes first). A
process does not see what another replica learned until its next start.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Any, Protocol

from gateway.core.answerer import AuthEntry
from gateway.links.pacing import ConnectPacer
from gateway.metrics import Metrics
from gateway.store import StateWriter, Store, Write
from gateway.store.keys import Keys

__all__ = ["RideBoard"]


class Ride(Protocol):
    """What the board reads of a charger's ride-through (:class:`gateway.app.ride.Ride`)."""

    charger_id: str
    backend: str
    depth: int

    @property
    def answering(self) -> bool: ...

    def journal_age(self) -> float | None: ...


class RideBoard:
    """The process's ride-through state (see the module docstring)."""

    def __init__(self, metrics: Metrics, store: Store, writer: StateWriter, keys: Keys, log: Any) -> None:
        self.metrics = metrics
        self.store = store
        self.writer = writer
        self.keys = keys
        self.log = log
        #: backend -> token -> what the CSMS last said (insertion order: least recently learned first)
        self.caches: dict[str, OrderedDict[str, AuthEntry]] = {}
        #: every Ride of a connected ride-through charger, by charger id
        self.rides: dict[str, Ride] = {}
        self._pacers: dict[str, ConnectPacer] = {}
        self._gauged: set[str] = set()
        #: the store could not be written or read while riding: logged once until it works again
        self.store_down_logged = False

    # ------------------------------------------------------------------ the cache

    async def ready(self, backend: str) -> None:
        """Read ``backend``'s cache from the store, once (raises StoreUnavailable: the admission refuses)."""
        if backend in self.caches:
            return
        raw = await self.store.get_ride_auth(backend)
        cache: OrderedDict[str, AuthEntry] = OrderedDict()
        for token, doc in sorted(raw.items(), key=lambda kv: float(kv[1].get("at", 0) or 0)):
            entry = AuthEntry.from_json(doc)
            if entry is not None:
                cache[token] = entry
        self.caches.setdefault(backend, cache)
        self._gauge(backend)

    def cache(self, backend: str) -> OrderedDict[str, AuthEntry]:
        return self.caches.setdefault(backend, OrderedDict())

    def learn(self, backend: str, token: str, info: dict[str, Any], at: float, max_entries: int) -> None:
        """The CSMS answered about ``token``: remembered (and written behind), the oldest evicted past the bound."""
        cache = self.cache(backend)
        entry = AuthEntry(info, at)
        old = cache.pop(token, None)
        cache[token] = entry
        if old is None or old.info != info or at - old.at > 60:  # a token used every minute is written once a minute
            self.writer.put(Write("rideauth", backend, token, entry.to_json()))
        while len(cache) > max_entries:
            gone, _ = cache.popitem(last=False)
            self.writer.put(Write("rideauth", backend, gone, None))

    # ------------------------------------------------------------------ replay pacing

    async def pace(self, backend: str, rate: float) -> None:
        """Wait for a turn to replay one CALL toward ``backend`` (``rate`` per second for the whole process, first
        come first served)."""
        pacer = self._pacers.get(backend)
        if pacer is None or pacer.rate != rate:
            pacer = self._pacers[backend] = ConnectPacer(rate, float("inf"))
        loop = asyncio.get_running_loop()
        wait = pacer.take(loop.time())
        if wait:
            await asyncio.sleep(wait)

    # ------------------------------------------------------------------ metrics

    def attach(self, ride: Ride) -> None:
        self.rides[ride.charger_id] = ride
        self._gauge(ride.backend)

    def detach(self, ride: Ride) -> None:
        if self.rides.get(ride.charger_id) is ride:
            del self.rides[ride.charger_id]

    def _gauge(self, backend: str) -> None:
        """Gauges computed at scrape time from the rides (nothing on the message path)."""
        if backend in self._gauged:
            return
        self._gauged.add(backend)
        m = self.metrics
        m.ride_chargers.labels(backend).set_function(
            lambda: sum(1 for r in list(self.rides.values()) if r.backend == backend and r.answering)
        )
        m.ride_journal_depth.labels(backend).set_function(
            lambda: sum(r.depth for r in list(self.rides.values()) if r.backend == backend)
        )
        m.ride_journal_age.labels(backend).set_function(lambda: self._age(backend))

    def _age(self, backend: str) -> float:
        ages = [r.journal_age() for r in list(self.rides.values()) if r.backend == backend]
        return max((a for a in ages if a is not None), default=0.0)
