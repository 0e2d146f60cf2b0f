"""A site simulator: chargers whose draw follows their profiles, EVs that arrive and leave, a building's base load.

The chargers (:class:`SiteCharger16`, :class:`SiteCharger201`) are the ``ocpp`` package's ChargePoints, one EVSE
each, that keep the profiles they are given (:mod:`gateway.ops.sim_profiles`) and answer SetChargingProfile,
ClearChargingProfile and GetCompositeSchedule as OCPP defines them. An EV (:class:`SimEv`) draws the lowest of
what it can take and what the charger's profiles allow, or nothing below 6 A (IEC 61851); it reports its currents
per phase and its power in MeterValues (1.6) or TransactionEvent Updated (2.0.1). The end-to-end tests drive these
chargers step by step; :func:`run_site_demo` (``ocpp-gateway demo --site``) runs a 100 A site of them behind the
gateway and its controller, printing the site's draw against its limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import random
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
from ocpp.v16 import ChargePoint as _Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as _Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.config import Config, parse_config
from gateway.ops.demo_csms import ConnectionClosed, DemoCsms, OcppWs, on
from gateway.ops.lifecycle import running_gateway
from gateway.ops.sim_profiles import ProfileTable, from_ocpp16, from_ocpp201
from gateway.sites.allocation import Reading

__all__ = ["EV_MIN_A", "SimEv", "SiteCharger16", "SiteCharger201", "run_site_demo", "site_demo_config"]

#: an EV draws nothing when offered less than this (IEC 61851)
EV_MIN_A = 6.0
V = 230.0


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass
class SimEv:
    """An EV: the most it takes per phase, on how many phases."""

    max_a: float = 32.0
    phases: int = 3


class _SiteSim:
    """What both simulated site chargers share: profiles, the EV plugged in, its transaction, its meter."""

    id: str
    call: Any

    def _site_init(self, phases: int = 3) -> None:
        self.phases = phases
        self.table = ProfileTable()
        self.ev: SimEv | None = None
        self.tx: str | None = None
        self.tx_start: float | None = None
        self.energy_wh = 1000.0
        self.handled: list[tuple[str, dict[str, Any]]] = []
        #: set each time a profile is installed or cleared
        self.changed = asyncio.Event()

    def limit(self, now: float | None = None) -> float:
        """What the profiles allow the EVSE now (A per phase; inf: nothing limits it)."""
        now = time.time() if now is None else now
        return min(self.table.station_max(now), self.table.evse_limit(1, now, self.tx, self.tx_start))

    def draw_a(self, now: float | None = None) -> float:
        if self.ev is None or self.tx is None:
            return 0.0
        a = min(self.ev.max_a, self.limit(now))
        return a if a >= EV_MIN_A else 0.0

    def currents(self, now: float | None = None) -> tuple[float, float, float]:
        """The charger's currents on its L1, L2, L3."""
        a = self.draw_a(now)
        if self.ev is not None and self.ev.phases == 3 and self.phases == 3:
            return (a, a, a)
        return (a, 0.0, 0.0)

    def _installed(self, action: str, kw: dict[str, Any]) -> None:
        self.handled.append((action, kw))
        self.changed.set()

    def _composite(self, evse: int, duration: int) -> tuple[float, float | None]:
        now = time.time()
        lim = self.table.composite(evse, now, self.tx, self.tx_start)
        return now, (None if math.isinf(lim) else math.floor(lim * 10) / 10)

    def sampled(self, numbers: bool) -> list[dict[str, Any]]:
        cur = self.currents()
        power = sum(cur) * V
        self.energy_wh += power / 3600

        def val(x: float) -> Any:
            return round(x, 1) if numbers else f"{x:.1f}"

        def unit(u: str) -> dict[str, Any]:
            return {"unitOfMeasure": {"unit": u}} if numbers else {"unit": u}

        values = [
            {"value": val(self.energy_wh), "measurand": "Energy.Active.Import.Register", **unit("Wh")},
            {"value": val(power), "measurand": "Power.Active.Import", **unit("W")},
        ]
        for ph, a in zip(("L1", "L2", "L3"), cur, strict=True):
            values.append({"value": val(a), "measurand": "Current.Import", "phase": ph, **unit("A")})
        return [{"timestamp": _iso(time.time()), "sampledValue": values}]


class SiteCharger16(_Cp16, _SiteSim):  # type: ignore[misc]
    """A simulated OCPP 1.6 charger with smart charging (one connector)."""

    subprotocol = "ocpp1.6"

    def __init__(self, cid: str, conn: OcppWs, phases: int = 3) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._site_init(phases)
        self.tx_int: int | None = None

    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any) -> Any:
        self.table.install(from_ocpp16(connector_id, cs_charging_profiles))
        self._installed("SetChargingProfile", {"connector_id": connector_id, **cs_charging_profiles})
        return result16.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        n = self.table.clear(kw.get("id"), kw.get("connector_id"), kw.get("charging_profile_purpose"),
                             kw.get("stack_level"))  # fmt: skip
        self._installed("ClearChargingProfile", kw)
        return result16.ClearChargingProfile(status="Accepted" if n else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, connector_id: int, duration: int, **kw: Any) -> Any:
        self.handled.append(("GetCompositeSchedule", {"connector_id": connector_id, "duration": duration, **kw}))
        now, lim = self._composite(connector_id, duration)
        if lim is None:
            return result16.GetCompositeSchedule(status="Accepted", connector_id=connector_id)
        schedule = {"duration": duration, "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": lim}]}  # fmt: skip
        return result16.GetCompositeSchedule(
            status="Accepted", connector_id=connector_id, schedule_start=_iso(now), charging_schedule=schedule
        )

    async def boot(self) -> None:
        await self.call(call16.BootNotification(charge_point_model="SiteSim", charge_point_vendor="Demo"))
        await self.status("Available")

    async def status(self, status: str) -> None:
        await self.call(call16.StatusNotification(connector_id=1, error_code="NoError", status=status), suppress=False)

    async def plug(self, ev: SimEv, tag: str = "SITE-EV") -> None:
        self.ev = ev
        await self.status("Preparing")
        start = await self.call(
            call16.StartTransaction(connector_id=1, id_tag=tag, meter_start=int(self.energy_wh), timestamp=_iso(
                time.time())), suppress=False,
        )  # fmt: skip
        self.tx_int = start.transaction_id
        self.tx, self.tx_start = str(start.transaction_id), time.time()
        await self.status("Charging")

    async def report(self) -> None:
        if self.tx_int is None:
            return
        await self.call(
            call16.MeterValues(connector_id=1, transaction_id=self.tx_int, meter_value=self.sampled(False)),
            suppress=False,
        )

    async def unplug(self) -> None:
        if self.tx_int is not None:
            await self.call(
                call16.StopTransaction(meter_stop=int(self.energy_wh), timestamp=_iso(time.time()),
                                       transaction_id=self.tx_int, reason="EVDisconnected"), suppress=False,
            )  # fmt: skip
        self.ev, self.tx, self.tx_int, self.tx_start = None, None, None, None
        await self.status("Available")


class SiteCharger201(_Cp201, _SiteSim):  # type: ignore[misc]
    """A simulated OCPP 2.0.1 charging station with smart charging (one EVSE)."""

    subprotocol = "ocpp2.0.1"

    def __init__(self, cid: str, conn: OcppWs, phases: int = 3) -> None:
        super().__init__(cid, conn, response_timeout=15)
        self._site_init(phases)
        self.seq = 0

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        self.table.install(from_ocpp201(evse_id, charging_profile))
        self._installed("SetChargingProfile", {"evse_id": evse_id, **charging_profile})
        return result201.SetChargingProfile(status="Accepted")

    @on("ClearChargingProfile")
    def on_clear_charging_profile(self, **kw: Any) -> Any:
        crit = kw.get("charging_profile_criteria") or {}
        n = self.table.clear(kw.get("charging_profile_id"), crit.get("evse_id"), crit.get("charging_profile_purpose"),
                             crit.get("stack_level"))  # fmt: skip
        self._installed("ClearChargingProfile", kw)
        return result201.ClearChargingProfile(status="Accepted" if n else "Unknown")

    @on("GetCompositeSchedule")
    def on_get_composite_schedule(self, duration: int, evse_id: int, **kw: Any) -> Any:
        self.handled.append(("GetCompositeSchedule", {"evse_id": evse_id, "duration": duration, **kw}))
        now, lim = self._composite(evse_id, duration)
        if lim is None:
            return result201.GetCompositeSchedule(status="Rejected", status_info={"reason_code": "NoSchedule"})
        schedule = {"evse_id": evse_id, "duration": duration, "schedule_start": _iso(now), "charging_rate_unit": "A",
                    "charging_schedule_period": [{"start_period": 0, "limit": lim}]}  # fmt: skip
        return result201.GetCompositeSchedule(status="Accepted", schedule=schedule)

    async def boot(self) -> None:
        station = {"model": "SiteSim", "vendorName": "Demo"}
        await self.call(call201.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
        await self.status("Available")

    async def status(self, status: str) -> None:
        await self.call(
            call201.StatusNotification(timestamp=_iso(time.time()), connector_status=status, evse_id=1,
                                       connector_id=1), suppress=False,
        )  # fmt: skip

    async def _event(self, event: str, trigger: str, **kw: Any) -> None:
        info: dict[str, Any] = {"transactionId": self.tx}
        if event == "Ended":
            info["stoppedReason"] = "EVDisconnected"
        await self.call(
            call201.TransactionEvent(event_type=event, timestamp=_iso(time.time()), trigger_reason=trigger,
                                     seq_no=self.seq, transaction_info=info, **kw), suppress=False,
        )  # fmt: skip
        self.seq += 1

    async def plug(self, ev: SimEv, tag: str = "SITE-EV") -> None:
        self.ev = ev
        self.tx, self.tx_start, self.seq = uuid.uuid4().hex[:12], time.time(), 0
        await self._event(
            "Started", "Authorized", id_token={"idToken": tag, "type": "ISO14443"}, evse={"id": 1, "connectorId": 1}
        )
        await self.status("Occupied")

    async def report(self) -> None:
        if self.tx is not None:
            await self._event("Updated", "MeterValuePeriodic", meter_value=self.sampled(True))

    async def unplug(self) -> None:
        if self.tx is not None:
            await self._event("Ended", "EVCommunicationLost", meter_value=self.sampled(True))
        self.ev, self.tx, self.tx_start = None, None, None
        await self.status("Available")


SiteCharger = SiteCharger16 | SiteCharger201


def site_draw(chargers: list[SiteCharger], now: float | None = None) -> tuple[float, float, float]:
    """The chargers' currents per site phase together (each charger's L1, L2, L3 on the site's L1, L2, L3)."""
    total = [0.0, 0.0, 0.0]
    for cp in chargers:
        for i, a in enumerate(cp.currents(now)):
            total[i] += a
    return (total[0], total[1], total[2])


# ----------------------------------------------------------------------------------------------------- the demo

SITE = "demo-site"
#: a demand-response event of the demo: at this second, for this long, at most this much
DR_AT, DR_FOR, DR_LIMIT = 8, 12.0, 70.0
#: chargers of the demo site in turn: 1.6 to a 1.6 CSMS, 2.0.1 to a 2.0.1 CSMS, 1.6 translated for the 2.0.1 CSMS
KINDS: tuple[tuple[str, type[SiteCharger16] | type[SiteCharger201]], ...] = (
    ("SITE16", SiteCharger16), ("SITE201", SiteCharger201), ("SITE16T", SiteCharger16),
)  # fmt: skip


def site_demo_config(csms_url: str, port: int, admin_port: int, period_s: float = 2.0) -> Config:
    return parse_config(
        {
            "listen": {"host": "127.0.0.1", "port": port},
            "admin": {"host": "127.0.0.1", "port": admin_port},
            "store": {"url": "memory://"},
            "backends": {"csms-16": {"url": csms_url, "ocpp": "1.6"}, "csms-201": {"url": csms_url, "ocpp": "2.0.1"}},
            "routes": [
                {"match": "SITE16-*", "primary": "csms-16"},
                {"match": "SITE201-*", "primary": "csms-201"},
                {"match": "SITE16T-*", "primary": "csms-201"},  # translated: set-up A
            ],
            "logging": {"level": "warning", "format": "console"},
            "session": {"shutdown_grace_s": 1, "call_timeout_s": 10},
            "sites": {
                SITE: {
                    "chargers": ["SITE*"], "limit": 100, "unit": "A", "margin": 4, "period_s": period_s,
                    "fail_safe": {"current_a": 10, "validity_s": max(30.0, 4 * period_s)},
                    "charger_defaults": {"min_current_a": 6, "max_current_a": 32},
                },
            },
        },
        env={},
    )  # fmt: skip


async def _run_charger(cp_kind: type[SiteCharger16] | type[SiteCharger201], cid: str, url: str,
                       ready: asyncio.Queue[SiteCharger]) -> None:  # fmt: skip
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/{cid}", protocols=(cp_kind.subprotocol,), heartbeat=None) as ws,
    ):
        cp = cp_kind(cid, OcppWs(ws))
        reader = asyncio.get_running_loop().create_task(cp.start(), name=f"{cid}:recv")
        try:
            await cp.boot()
            await ready.put(cp)
            await reader
        finally:
            reader.cancel()
            with contextlib.suppress(ConnectionClosed, asyncio.CancelledError):
                await reader


async def run_site_demo(chargers: int = 8, duration: float = 0, port: int = 9000, admin_port: int = 9001,
                        out: TextIO | None = None) -> int:  # fmt: skip
    """The site demo until Ctrl-C or ``duration`` seconds; prints the site every second and a verdict at the end."""
    out = out or sys.stdout
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    csms = DemoCsms()
    rng = random.Random(7)
    worst, over_s, samples = 0.0, 0.0, 0
    try:
        url_csms = await csms.start()
        config = site_demo_config(url_csms, port, admin_port)
        site = config.sites[0]
        async with running_gateway(config) as running:
            sites = running.hub.sites
            assert sites is not None
            url = running.charger_url()
            print(
                f"local load management demo: {chargers} chargers on site {SITE!r}, a {site.limit:g} A connection "
                f"(margin {site.margin:g} A), re-allocated every {site.period_s:g} s and at every change\n"
                f"  chargers: SITE16-* (1.6), SITE201-* (2.0.1), SITE16T-* (1.6 translated for a 2.0.1 CSMS)\n"
                f"  a demand-response event limits the site to {DR_LIMIT:g} A from {DR_AT} s for {DR_FOR:g} s\n"
                f"  site API  {running.admin_url()}/api/sites/{SITE}    metrics {running.admin_url()}/metrics\n"
                f"  Ctrl-C to stop{f' (or wait {duration:g} s)' if duration > 0 else ''}\n",
                file=out, flush=True,
            )  # fmt: skip
            ready: asyncio.Queue[SiteCharger] = asyncio.Queue()
            tasks = []
            for i in range(1, chargers + 1):
                prefix, kind = KINDS[(i - 1) % len(KINDS)]
                tasks.append(loop.create_task(_run_charger(kind, f"{prefix}-{i:02d}", url, ready), name=f"sim:{i}"))
            cps: list[SiteCharger] = []
            started = time.monotonic()
            try:
                async with asyncio.timeout(duration if duration > 0 else None):
                    for tick in itertools.count():
                        while not ready.empty():
                            cps.append(ready.get_nowait())
                        await _tick(cps, rng, tick)
                        if tick == DR_AT:
                            event = {"id": "demo-peak", "duration_s": DR_FOR, "limit": DR_LIMIT}
                            got = await sites.add_event(SITE, event)
                            print(f"  demand response {'demo-peak' if not isinstance(got, tuple) else got}: the site "
                                  f"may draw {DR_LIMIT:g} A for {DR_FOR:g} s", file=out, flush=True)  # fmt: skip
                        base = 18 + 8 * math.sin(tick / 15)
                        ev = site_draw(cps)
                        total = (ev[0] + base, ev[1] + base * 0.8, ev[2] + base * 0.8)
                        sites.feed_meter(SITE, Reading(phase_a=total))
                        samples += 1
                        worst = max(worst, *total)
                        over_s += 1.0 if max(total) > site.limit else 0.0
                        in_force = sites.controllers[SITE].summary.get("limit", {}).get("effective", site.limit)
                        print(_line(cps, total, base, site.limit, in_force), file=out, flush=True)
                        if stop.is_set():
                            break
                        with contextlib.suppress(TimeoutError):
                            async with asyncio.timeout(1.0):
                                await stop.wait()
            except TimeoutError:
                pass
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            elapsed = time.monotonic() - started
    finally:
        await csms.stop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.remove_signal_handler(signal.SIGINT)
    print(
        f"\nsite demo stopped after {elapsed:.0f} s: highest phase current {worst:.1f} A of {site.limit:g} A; "
        f"{over_s:.0f} of {samples} one-second samples over the limit",
        file=out, flush=True,
    )  # fmt: skip
    return 0


async def _tick(cps: list[SiteCharger], rng: random.Random, tick: int) -> None:
    """EVs arrive and leave; every charging charger reports its meter."""
    for cp in cps:
        if cp.ev is None and rng.random() < 0.08:
            await cp.plug(SimEv(max_a=rng.choice([16.0, 32.0, 32.0]), phases=rng.choice([3, 3, 1])))
        elif cp.ev is not None and rng.random() < 0.03:
            await cp.unplug()
        elif cp.ev is not None:
            await cp.report()


def _line(cps: list[SiteCharger], total: tuple[float, float, float], base: float, limit: float,
          in_force: float) -> str:  # fmt: skip
    now = datetime.now().strftime("%H:%M:%S")
    worst = max(total)
    mark = "OVER" if worst > limit else "ok  "
    dr = f" (event: {in_force:g})" if in_force < limit else ""
    evs = sum(1 for cp in cps if cp.ev is not None)
    charging = sum(1 for cp in cps if cp.draw_a() > 0)
    per = " ".join(f"{cp.id.split('-')[-1]}:{cp.draw_a():4.1f}" for cp in cps if cp.ev is not None)
    return (
        f"{now}  {mark} L1 {total[0]:5.1f} L2 {total[1]:5.1f} L3 {total[2]:5.1f} A of {limit:g}{dr}  "
        f"(base {base:4.1f})  EVs {evs} ({charging} charging)  {per}"
    )
