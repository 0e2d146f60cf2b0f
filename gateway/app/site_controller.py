"""One site's controller: the process holding the site's lease allocates its headroom and sets its chargers' limits.

Every node runs a :class:`SiteController` per site; one at a time, fleet-wide, holds the site's lease
(``<p>:site:{<site>}:lease``, :meth:`gateway.store.base.Store.lease`) and controls it; the others wait, and take
over within a third of the lease's time when the holder is gone. What the controller knows is in the store: the
chargers' observations (written by the node each charger is connected to), what it did to each charger (``ctl:``),
the demand-response events. Its own CALLs go to each charger in that charger's version, as CALLs of the gateway's
own on the charger's down lane (on another node through the fleet's node channel): the CSMS never sees them.

A step (every ``period_s``, at every transaction start or end, meter message, event boundary, charger connection):

1. **Read back** every charger connected since it was last read (a new connection, a gateway restart) or whose
   profiles may have been touched (the CSMS cleared profiles, the charger booted): ``GetCompositeSchedule`` of the
   whole charger. Until that answer the controller sends it nothing and counts it at its worst case (fixed).
2. **Allocate** (:mod:`gateway.sites.allocation`): headroom from the limit in force (demand-response events), the
   margin and the meter; the transactions of the read-back chargers as demands; the others as fixed loads (offline
   chargers at the most their own profiles let them draw); idle chargers on standby.
3. **Apply**: decreases first, all at once; increases only once every decrease was accepted (else the next step
   retries), so that the site is never over its limit between two CALLs. A charger that did not take its decrease
   counts the difference as a fixed load until it does. A profile is renewed halfway through its validity window.
   Before the first dynamic profile, each charger gets its fail-safe profile (once per connection read back dirty).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping
from typing import Any, Protocol

from gateway.app.site_state import CtlState, Picture, Step, clear_gauges, ev_draw, report
from gateway.core.jobs import AdminAnswer, Receiver
from gateway.metrics import Metrics
from gateway.sites.allocation import (
    Allocation,
    Demand,
    Fixed,
    Load,
    Reading,
    SiteLimit,
    Standby,
    allocate,
    headroom,
)
from gateway.sites.config import SiteConfig
from gateway.sites.events import Event, effective_limit, next_boundary
from gateway.sites.observe import ChargerObservation
from gateway.sites.profiles import composite_limit, composite_request, max_profile
from gateway.store import StateWriter, Store, StoreUnavailable, Write

__all__ = ["ControllerHost", "CtlState", "SiteController"]

#: an increase smaller than this waits for the profile's renewal (no chatter); any decrease is sent
INCREASE_STEP_A = 1.0
#: steps are at least this far apart, however many nudges come
MIN_STEP_S = 0.2


class _Calls(Protocol):
    @property
    def connected_at(self) -> float: ...

    def call_charger(self, action: str, payload: dict[str, Any], receiver: Receiver) -> None: ...


class _Live(Protocol):
    @property
    def session(self) -> _Calls: ...


class _Fleet(Protocol):
    async def call_remote(
        self, cid: str, action: str, payload: dict[str, Any], timeout: float
    ) -> tuple[int, dict[str, Any]]: ...


class ControllerHost(Protocol):
    """What a controller uses of its process (the hub)."""

    node: str
    store: Store
    writer: StateWriter
    metrics: Metrics

    @property
    def conns(self) -> Mapping[str, _Live]: ...

    @property
    def fleet(self) -> _Fleet: ...


class SiteController:
    """One site (see the module docstring). :meth:`run` is its one task (owned by :class:`gateway.app.sites.Sites`)."""

    def __init__(self, site: SiteConfig, host: ControllerHost, book: Mapping[str, ChargerObservation], lease_key: str,
                 log: Any, call_timeout_s: float = 30.0) -> None:  # fmt: skip
        self.site = site
        self.host = host
        self.book = book
        self.log = log.bind(site=site.name)
        self.call_timeout_s = min(call_timeout_s, max(5.0, site.period_s))
        self.lease_ttl_s = max(3 * site.period_s, 15.0)
        self.lease = host.store.lease(lease_key, host.node, self.lease_ttl_s)
        self.holding = False
        self.ctl: dict[str, CtlState] = {}
        #: chargers read back since this node took control (a restart, a takeover: each is read back first)
        self.read: set[str] = set()
        #: per EVSE (``<charger>/<evse>``): what it was offered last, and since when (a measurement taken before that
        #: says nothing about what the EV does with the offer)
        self.offered: dict[str, tuple[float, float]] = {}
        self.reading: Reading | None = None
        self.reading_at = 0.0
        self.held_other: Load | None = None
        self.summary: dict[str, Any] = {}
        self._wake = asyncio.Event()
        self._triggers: set[str] = set()
        self._store_failing = False
        m = host.metrics
        self._allocations = m.site_allocations
        self._profiles = m.site_profiles

    # ------------------------------------------------------------------ inputs

    def nudge(self, trigger: str) -> None:
        """Something changed: step soon (at most every :data:`MIN_STEP_S`)."""
        self._triggers.add(trigger)
        self._wake.set()

    def meter(self, reading: Reading, at: float) -> None:
        self.reading, self.reading_at = reading, at
        self.nudge("meter")

    # ------------------------------------------------------------------ the loop

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        last = 0.0
        while True:
            _cancelled_meanwhile()
            held = await self._still_holding()
            wait = self.lease_ttl_s / 3
            if held:
                since = loop.time() - last
                if since < MIN_STEP_S:
                    await asyncio.sleep(MIN_STEP_S - since)
                triggers, self._triggers = self._triggers or {"period"}, set()
                self._wake.clear()
                last = loop.time()
                wait = await self.step(triggers)
            await _wait(self._wake, wait)

    async def close(self) -> None:
        """Give up the lease (another node takes over at once) and the gauges."""
        if self.holding:
            self._holding(False)
            with contextlib.suppress(StoreUnavailable):
                await self.lease.release()

    def _holding(self, held: bool) -> None:
        if held == self.holding:
            return
        self.holding = held
        name = self.site.name
        if self.lease.shared:
            self.log.info("site_control_taken" if held else "site_control_lost")
        if held:
            self.host.metrics.site_controller.labels(name).set(1)
            self.ctl.clear()  # read again from the store: another node may have controlled the site meanwhile
            self.read.clear()  # and every charger read back before this controller changes anything
            self.nudge("charger")
        else:
            clear_gauges(self.host.metrics, self.site.name)

    # ------------------------------------------------------------------ one step

    async def step(self, triggers: set[str]) -> float:
        """Read back, allocate, apply; return how long until the next step is due."""
        site, now = self.site, time.time()
        for t in triggers:
            self._allocations.labels(site.name, t).inc()
        picture = await self._picture(now)
        reads = [cid for cid, o in picture.obs.items() if o.connected and self._needs_read(cid, o)]
        if reads:
            async with asyncio.TaskGroup() as tg:
                for cid in reads:
                    tg.create_task(self._read_back(cid, picture.obs[cid], now))
            if not await self._still_holding():  # read-backs may take a CALL timeout each: still ours?
                return 0.0
        limit, active = effective_limit(site.limit, picture.events, now)
        alloc, demands, ev = self._allocate(picture, limit, now)
        await self._apply(picture, alloc, now)
        step = Step(picture, alloc, demands, ev, limit, active, now)
        self.summary = report(
            site, self.host.metrics, self.host.node, step, self._fresh(now),
            self.held_other if self._metered() else None, self.reading_at, self._metered(), self.ctl,
        )  # fmt: skip
        self.host.writer.put(Write("site", site.name, "summary", self.summary))
        due = [now + site.period_s]
        boundary = next_boundary(picture.events, now)
        if boundary is not None:
            due.append(boundary)
        half = site.fail_safe.validity_s / 2
        due += [
            c.sent_at + half
            for cid, c in self.ctl.items()
            if c.sent_a is not None
            and not c.resend
            and picture.states.get(cid) == "controlled"
            and c.sent_at + half > now
        ]  # renewals of the chargers it controls (an offline charger's lapse is what the fail-safe is for)
        return max(0.05, min(due) - time.time())

    async def _still_holding(self) -> bool:
        try:
            held = await self.lease.hold()
        except StoreUnavailable as e:
            self._store_problem(e)
            held = False
        self._holding(held)
        return held

    async def _picture(self, now: float) -> Picture:
        """Observations (this node's own, fresher, over the store's), controller state and events."""
        name = self.site.name
        try:
            doc = await self.host.store.get_site(name)
            if self._store_failing:
                self.log.info("site_store_recovered")
                self._store_failing = False
        except StoreUnavailable as e:
            self._store_problem(e)
            doc = {}
        obs: dict[str, ChargerObservation] = {}
        events: list[Event] = []
        for key, value in doc.items():
            kind, _, ident = key.partition(":")
            if kind == "charger":
                obs[ident] = ChargerObservation.from_doc(value)
            elif kind == "ctl" and ident not in self.ctl:
                self.ctl[ident] = CtlState.from_doc(value)
            elif kind == "event":
                event = Event.from_doc(value)
                if event is not None:
                    events.append(event)
        obs.update(self.book)
        for done in [ev for ev in events if ev.end <= now]:
            try:
                await self.host.store.apply([Write("site", name, f"event:{done.id}", None)])
            except StoreUnavailable:
                break
            self.host.metrics.site_event_changes.labels(name, "ended", done.source).inc()
            self.log.info("site_event_ended", event_id=done.id)
        return Picture(obs, [ev for ev in events if ev.end > now])

    def _needs_read(self, cid: str, o: ChargerObservation) -> bool:
        c = self.ctl.get(cid)
        return cid not in self.read or c is None or c.read_conn != o.connected_at or c.read_dirty != o.dirty

    async def _read_back(self, cid: str, o: ChargerObservation, now: float) -> None:
        """GetCompositeSchedule of the whole charger: what limits it now, before anything is changed."""
        c = self.ctl.setdefault(cid, CtlState(version=o.version))
        spec = self.site.spec(cid)
        action, payload = composite_request(o.version, rate_unit=spec.rate_unit)
        answer = await self._call(cid, action, payload)
        if isinstance(answer, str):
            c.error = f"GetCompositeSchedule: {answer}"
            self.log.warning("site_read_back_failed", charger_id=cid, reason=answer)
            return
        composite = None
        if answer.result is not None:
            composite = composite_limit(o.version, answer.result, now, spec.phases, self.site.voltage_v)
        dirty = c.read_dirty != o.dirty and c.read_dirty != -1
        self.read.add(cid)
        c.version, c.read_conn, c.read_dirty, c.composite_a, c.error = (
            o.version, o.connected_at, o.dirty, composite, None
        )  # fmt: skip
        in_force = c.in_force(now)
        # the dynamic profile not (or not surely) in place: sent again at the next apply; until then the charger
        # applies what the composite shows (c.limit)
        c.resend = dirty or in_force is None or composite is None or composite > in_force + 0.5
        if dirty:
            c.fail_safe_a = None
        self.log.info("site_charger_read_back", charger_id=cid, composite_a=composite, dirty=dirty)
        self._save(cid, c)

    # ------------------------------------------------------------------ allocation

    def _allocate(self, picture: Picture, limit: float, now: float) -> tuple[Allocation, list[Demand], Load]:
        site = self.site
        demands: list[Demand] = []
        standby: list[Standby] = []
        fixed: list[Fixed] = []
        ev_phase = [0.0, 0.0, 0.0]
        ev_w = 0.0
        max_age = max(3 * site.period_s, 120.0)
        for cid, o in sorted(picture.obs.items()):
            spec = site.spec(cid)
            phases = spec.site_phases()
            c = self.ctl.get(cid) or CtlState(version=o.version)
            for st in o.evses.values():
                if st.measured_at >= now - max_age:
                    used, per_site, w = ev_draw(st, spec, site.voltage_v)
                    for p, a in per_site.items():
                        ev_phase[p] += a
                    ev_w += w
            worst = spec.max_current_a * max(1, len(o.evses))
            if not o.connected or self._needs_read(cid, o):
                # offline: it applies its own profiles; not read back: what it applies is not known for sure
                fixed.append(Fixed(cid, phases, c.limit(now, worst)))
                picture.states[cid] = "offline" if not o.connected else "reading"
                continue
            if c.pending_a is not None and c.pending_a < c.limit(now, worst):
                fixed.append(Fixed(cid, phases, c.limit(now, worst) - c.pending_a))
            picture.states[cid] = "controlled" if c.error is None else "retrying"
            if not o.evses:
                standby.append(Standby(cid, phases, spec.min_current_a))
            for evse, st in sorted(o.evses.items()):
                key = f"{cid}/{evse}"
                fresh = st.measured_at >= now - max_age
                used, _, _ = ev_draw(st, spec, site.voltage_v) if fresh else (phases, {}, 0.0)
                offer = self.offered.get(key)
                draw = max((st.phase_a or (0.0,))[: len(phases)]) if fresh and st.phase_a else None
                if fresh and draw is None and st.power_w is not None:
                    draw = st.power_w / (len(used) * site.voltage_v)
                if offer is None or st.measured_at <= offer[1]:
                    draw = None  # not measured since the offer: whether the EV takes it is not known yet
                demands.append(Demand(
                    key, cid, used, spec.min_current_a, spec.max_current_a, spec.priority, st.since, draw,
                    offer[0] if offer is not None else None,
                ))  # fmt: skip
        ev = Load((ev_phase[0], ev_phase[1], ev_phase[2]), ev_w)
        fresh_meter = self._fresh(now)
        lim = SiteLimit(limit, site.unit, site.margin, site.phases, site.voltage_v)
        if not self._metered():
            cap, _ = headroom(lim, ev, None)
        elif fresh_meter is not None:
            cap, self.held_other = headroom(lim, ev, fresh_meter)
        else:
            cap, _ = headroom(lim, ev, None, self.held_other)
        alloc = allocate(demands, cap, standby=standby, fixed=fixed, fairness=site.fairness)
        previous = self.offered
        self.offered = {
            k: (a, previous[k][1] if k in previous and previous[k][0] == a else now) for k, a in alloc.currents.items()
        }
        return alloc, demands, ev

    # ------------------------------------------------------------------ applying it

    async def _apply(self, picture: Picture, alloc: Allocation, now: float) -> None:
        site = self.site
        fail_safe = site.fail_safe_a()
        down: list[tuple[str, float]] = []
        up: list[tuple[str, float]] = []
        for cid, state in picture.states.items():
            if state not in ("controlled", "retrying"):
                continue
            c = self.ctl.setdefault(cid, CtlState(version=picture.obs[cid].version))
            cl = alloc.chargers.get(cid)
            wanted = cl.current_a if cl is not None else 0.0
            spec = site.spec(cid)
            old = c.limit(now, spec.max_current_a * max(1, len(picture.obs[cid].evses)))
            renew = (
                c.resend or c.sent_a is None or now >= c.sent_at + site.fail_safe.validity_s / 2
                or c.fail_safe_a != fail_safe
            )  # fmt: skip
            if wanted < old - 0.05 or (renew and wanted <= old):
                down.append((cid, wanted))
            elif wanted >= old + INCREASE_STEP_A or renew:
                up.append((cid, wanted))
        ok = True
        if (down or up) and not await self._still_holding():
            return
        if down:
            async with asyncio.TaskGroup() as tg:
                tasks = [tg.create_task(self._set(cid, a, fail_safe, picture.obs[cid], now)) for cid, a in down]
            ok = all(t.result() for t in tasks)
        if up and ok:
            async with asyncio.TaskGroup() as tg:
                for cid, a in up:
                    tg.create_task(self._set(cid, a, fail_safe, picture.obs[cid], now))

    async def _set(self, cid: str, current_a: float, fail_safe_a: float, o: ChargerObservation, now: float) -> bool:
        """The charger's fail-safe profile when it has none, then its dynamic profile; True when it took both."""
        site, c = self.site, self.ctl[cid]
        spec = site.spec(cid)
        p = site.profile
        common = {"rate_unit": spec.rate_unit, "phases": spec.phases, "voltage_v": site.voltage_v, "now": now}
        if c.fail_safe_a != fail_safe_a:
            action, payload = max_profile(
                o.version, profile_id=p.fail_safe_id, stack_level=p.fail_safe_stack_level, current_a=fail_safe_a,
                **common,  # type: ignore[arg-type]
            )  # fmt: skip
            if await self._profile(cid, c, action, payload) != "accepted":
                return False
            c.fail_safe_a = fail_safe_a
        valid_to = now + site.fail_safe.validity_s
        action, payload = max_profile(
            o.version, profile_id=p.id, stack_level=p.stack_level, current_a=current_a, valid_to=valid_to,
            **common,  # type: ignore[arg-type]
        )  # fmt: skip
        got = await self._profile(cid, c, action, payload)
        if got != "accepted":
            c.pending_a = current_a
            if got == "unknown":  # no answer: it may have been applied all the same
                c.unsure_a = max(c.unsure_a or 0.0, current_a)
            self._save(cid, c)
            return False
        c.sent_a, c.sent_at, c.valid_to, c.pending_a, c.resend, c.error = current_a, now, valid_to, None, False, None
        c.unsure_a = None
        self._save(cid, c)
        return True

    async def _profile(self, cid: str, c: CtlState, action: str, payload: dict[str, Any]) -> str:
        """``accepted``, ``refused`` (answered otherwise, or never sent), or ``unknown`` (sent, no answer)."""
        answer = await self._call(cid, action, payload)
        name = self.site.name
        before = c.error
        if isinstance(answer, str):
            self._profiles.labels(name, "failed").inc()
            c.error = f"{action}: {answer}"
        elif answer.result is not None and answer.result.get("status") == "Accepted":
            self._profiles.labels(name, "accepted").inc()
            return "accepted"
        else:
            self._profiles.labels(name, "rejected").inc()
            status = answer.result.get("status") if answer.result is not None else None
            c.error = f"{action}: {status or (answer.error[0] if answer.error else 'no status')}"
        if isinstance(answer, str) and answer in ("NotConnected", "Disconnected"):
            self.log.info("site_charger_gone", charger_id=cid, reason=c.error)  # it is offline from now on
        elif c.error != before:  # once per kind of failure: a charger that keeps refusing is retried every period
            self.log.warning("site_profile_not_set", charger_id=cid, reason=c.error)
        if isinstance(answer, str) and answer not in ("NotConnected", "QueueFull", "StoreUnavailable"):
            return "unknown"
        return "refused"

    async def _call(self, cid: str, action: str, payload: dict[str, Any]) -> AdminAnswer | str:
        """A CALL of the gateway's own to ``cid``, here or on its node; its answer, or why there is none."""
        conn = self.host.conns.get(cid)
        if conn is None:
            status, body = await self.host.fleet.call_remote(cid, action, payload, self.call_timeout_s)
            if "result" in body and isinstance(body["result"], dict):
                return AdminAnswer(result=body["result"])
            err = body.get("error")
            if status == 200 and isinstance(err, dict):
                return AdminAnswer(error=(str(err.get("code")), str(err.get("description")), {}))
            return str(err.get("code") if isinstance(err, dict) else status)
        answered: asyncio.Future[AdminAnswer] = asyncio.get_running_loop().create_future()

        def receive(answer: AdminAnswer | BaseException) -> None:
            if answered.done():
                return
            if isinstance(answer, BaseException):
                answered.set_exception(answer)
            else:
                answered.set_result(answer)

        try:
            conn.session.call_charger(action, payload, receive)
        except OverflowError:
            return "QueueFull"
        try:
            async with asyncio.timeout(self.call_timeout_s):
                return await asyncio.shield(answered)
        except TimeoutError:
            answered.cancel()
            _cancelled_meanwhile()
            return "Timeout"
        except ConnectionError:
            return "Disconnected"

    def _save(self, cid: str, c: CtlState) -> None:
        self.host.writer.put(Write("site", self.site.name, f"ctl:{cid}", c.doc()))

    # ------------------------------------------------------------------ what it shows

    def _metered(self) -> bool:
        """The site has a meter: configured, or readings fed directly (the demo's simulator)."""
        return self.site.meter is not None or self.reading_at > 0

    def _fresh(self, now: float) -> Reading | None:
        max_age = self.site.meter.max_age_s if self.site.meter is not None else 30.0
        return self.reading if self.reading is not None and now - self.reading_at <= max_age else None

    def _store_problem(self, e: StoreUnavailable) -> None:
        if not self._store_failing:
            self.log.warning("site_store_unavailable", error=str(e))
            self._store_failing = True


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Until ``event`` is set or ``seconds`` passed."""
    if seconds <= 0:
        return
    try:
        async with asyncio.timeout(seconds):
            await event.wait()
    except TimeoutError:
        _cancelled_meanwhile()


def _cancelled_meanwhile() -> None:
    """After a TimeoutError: raise the owner's cancellation if one is pending. On Python 3.11 ``asyncio.timeout``
    can hand a cancellation that lands as its deadline passes back as TimeoutError (its count of pending
    cancellations is taken when the block is entered); seen here as a controller task that ``stop_task`` waited on
    forever at shutdown, about once in six gateway stops."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError
