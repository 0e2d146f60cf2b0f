"""Local load management end to end: the `ocpp` package's chargers (1.6, 2.0.1, and a 1.6 charger translated for a
2.0.1 CSMS) whose draw follows their profiles (gateway/ops/site_sim.py), the gateway and its site controller
(Redis store), and a strict CSMS (the `ocpp` package's, which validates every payload it gets).

What the issue asks, each a test: the site stays under its limit within one allocation period after every change;
the CSMS's own profiles keep working (and its GetCompositeSchedule answers are the charger's); a demand-response
event lowers the site and ends on time; a gateway restart changes nothing on the chargers until they are re-read;
the CSMS never sees a CALL of the controller's, nor its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.ops.demo_csms import ConnectionClosed, DemoCsms, OcppWs
from gateway.ops.lifecycle import Running, running_gateway
from gateway.ops.site_sim import SimEv, SiteCharger16, SiteCharger201, site_draw
from tests.helpers import make_config

TIMEOUT = 60
PERIOD = 1.0
LIMIT = 40.0
#: one allocation period, plus the CALL round trips that carry it out on loopback
SETTLE = PERIOD + 1.5
SiteCharger = SiteCharger16 | SiteCharger201


class StrictCsms(DemoCsms):
    """The demo CSMS, also keeping every frame it got and the unique ids of the CALLs it sent."""

    def __init__(self) -> None:
        super().__init__(interval=120)
        self.frames_in: list[tuple[str, list[Any]]] = []
        self.sent_ids: set[str] = set()

    def _tap(self, cid: str, direction: str, text: str) -> None:
        frame = json.loads(text)
        if direction == "out" and frame[0] == 2:
            self.sent_ids.add(str(frame[1]))
        elif direction == "in":
            self.frames_in.append((cid, frame))
        super()._tap(cid, direction, text)

    def foreign_answers(self) -> list[Any]:
        """Answers the CSMS got to CALLs it never sent (a controller CALL's answer leaking upstream)."""
        return [f for _, f in self.frames_in if f[0] in (3, 4) and str(f[1]) not in self.sent_ids]


def site_config(csms_url: str, redis_url: str, **site: Any) -> Any:
    return make_config(
        {"csms-16": {"url": csms_url, "ocpp": "1.6"}, "csms-201": {"url": csms_url, "ocpp": "2.0.1"}},
        store=redis_url,
        routes=[
            {"match": "LM16-*", "primary": "csms-16"},
            {"match": "LM201-*", "primary": "csms-201"},
            {"match": "LM16T-*", "primary": "csms-201"},  # a 1.6 charger translated for the 2.0.1 CSMS
        ],
        session={"call_timeout_s": 10, "shutdown_grace_s": 1},
        sites={
            "lot": {
                "chargers": ["LM16-1", "LM201-2", "LM16T-3"], "limit": LIMIT, "unit": "A", "period_s": PERIOD,
                "fail_safe": {"current_a": 8, "validity_s": 60}, **site,
            }
        },
    )  # fmt: skip


@contextlib.asynccontextmanager
async def site_gateway(redis_url: str, csms: StrictCsms | None = None, **site: Any) -> AsyncIterator[
        tuple[StrictCsms, Running]]:  # fmt: skip
    """The gateway with the site ``lot``; its own CSMS unless one is given (which then outlives it)."""
    own = csms is None
    csms = csms or StrictCsms()
    url = csms.url or await csms.start()
    try:
        async with running_gateway(site_config(url, redis_url, **site)) as running:
            yield csms, running
    finally:
        if own:
            await csms.stop()


@contextlib.asynccontextmanager
async def charger(kind: type[SiteCharger], url: str, cid: str, carry: SiteCharger | None = None) -> AsyncIterator[
        SiteCharger]:  # fmt: skip
    """A simulated site charger connected through the gateway; ``carry``: the same charger before a reconnection
    (its installed profiles and its EV stay, as a real charger's do)."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/{cid}", protocols=(kind.subprotocol,)) as ws,
    ):
        cp = kind(cid, OcppWs(ws))
        if carry is not None:
            cp.table, cp.ev, cp.tx, cp.tx_start, cp.energy_wh = carry.table, carry.ev, carry.tx, carry.tx_start, 2000.0
            if isinstance(cp, SiteCharger16) and isinstance(carry, SiteCharger16):
                cp.tx_int = carry.tx_int
        reader = asyncio.create_task(cp.start(), name=f"{cid}:recv")
        try:
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


async def until(predicate: Callable[[], bool], chargers: list[SiteCharger], timeout: float) -> float:
    """Wait until ``predicate`` holds, woken by every profile a charger gets; how long it took."""
    start = time.monotonic()
    async with asyncio.timeout(timeout):
        while not predicate():
            for cp in chargers:
                cp.changed.clear()
            waits = [asyncio.ensure_future(cp.changed.wait()) for cp in chargers]
            try:
                await asyncio.wait(waits, timeout=0.1, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waits:
                    w.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
    return time.monotonic() - start


async def report_all(chargers: list[SiteCharger]) -> None:
    for cp in chargers:
        await cp.report()


def under(chargers: list[SiteCharger], limit: float = LIMIT) -> bool:
    return max(site_draw(chargers)) <= limit + 1e-6


async def profiled(cp: SiteCharger) -> None:
    """The charger got its read-back and both profiles (fail-safe and dynamic) at least once."""
    await until(lambda: sum(1 for a, _ in cp.handled if a == "SetChargingProfile") >= 2, [cp], 10)


async def admin(running: Running, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as http, http.request(method, f"{running.admin_url()}{path}", json=body) as r:
        text = await r.text()
        return r.status, (json.loads(text) if text else None)


async def test_the_site_stays_under_its_limit_within_one_period_after_every_change(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), site_gateway(redis_url) as (csms, running):
        url = running.charger_url()
        async with (
            charger(SiteCharger16, url, "LM16-1") as a,
            charger(SiteCharger201, url, "LM201-2") as b,
            charger(SiteCharger16, url, "LM16T-3") as c,
        ):
            cps: list[SiteCharger] = [a, b, c]
            for cp in cps:
                await cp.boot()
            for cp in cps:
                await profiled(cp)
                # read back before anything was changed: the first CALL of the controller (and again after the
                # charger's boot, which may have touched its profiles)
                assert cp.handled[0][0] == "GetCompositeSchedule"
            # the translated charger got the 1.6 form (connector 0, ChargePointMaxProfile), the 2.0.1 one its own
            fail_safe_16 = next(p for x, p in c.handled if x == "SetChargingProfile")
            assert (
                fail_safe_16["connector_id"] == 0
                and fail_safe_16["charging_profile_purpose"] == "ChargePointMaxProfile"
            )
            fail_safe_201 = next(p for x, p in b.handled if x == "SetChargingProfile")
            assert fail_safe_201["evse_id"] == 0
            assert fail_safe_201["charging_profile_purpose"] == "ChargingStationMaxProfile"

            changes: list[tuple[str, Callable[[], Any]]] = [
                ("EV on LM16-1", lambda: a.plug(SimEv(32, 3))),
                ("EV on LM201-2", lambda: b.plug(SimEv(32, 3))),
                ("EV on the translated LM16T-3", lambda: c.plug(SimEv(32, 3))),
                ("LM201-2's EV leaves", lambda: b.unplug()),
                ("a one-phase EV on LM201-2", lambda: b.plug(SimEv(32, 1))),
                ("LM16-1's EV leaves", lambda: a.unplug()),
            ]
            for what, change in changes:
                await change()
                await report_all(cps)
                assert under(cps), f"over the limit right after: {what} ({site_draw(cps)})"
                # the controller re-allocates within one period: the site under its limit, the EVs using it
                took = await until(lambda: under(cps) and max(site_draw(cps)) >= LIMIT - 8.0 - 1e-6, cps, SETTLE * 2)
                assert took <= SETTLE, f"{what}: settled after {took:.1f} s"
                await report_all(cps)
                assert under(cps), what
            # three-phase EV on LM16T-3 and a one-phase EV on LM201-2: L1 shared, L2/L3 only the three-phase one
            await until(lambda: c.draw_a() >= 20.0, cps, SETTLE * 2)
            assert site_draw(cps)[0] <= LIMIT and c.draw_a() > b.draw_a() - 1e-6

            status, body = await admin(running, "GET", "/api/sites/lot")
            assert status == 200
            alloc = body["allocation"]
            assert set(alloc["chargers"]) == {"LM16-1", "LM201-2", "LM16T-3"}
            assert alloc["chargers"]["LM16T-3"]["state"] == "controlled"
            assert alloc["chargers"]["LM16T-3"]["ocpp_version"] == "1.6"
            assert max(alloc["allocated"]["phase_a"]) <= LIMIT
        metrics = await _metrics(running)
        assert 'ocppgw_site_limit_amperes{kind="effective",site="lot"} 40.0' in metrics
        assert 'ocppgw_site_controller{site="lot"} 1.0' in metrics
        assert "LM16-1" not in metrics and "LM201-2" not in metrics  # per-charger figures are in the admin API
    # the CSMS never saw the controller's CALLs nor their answers, and everything it got was valid
    assert csms.foreign_answers() == []
    for action in ("SetChargingProfile", "GetCompositeSchedule"):
        assert not any(r.action == action for r in csms.received)


async def _metrics(running: Running) -> str:
    async with aiohttp.ClientSession() as http, http.get(f"{running.admin_url()}/metrics") as r:
        return await r.text()


async def _metrics_showing(running: Running, *lines: str, timeout: float = SETTLE) -> str:
    """The metrics once they show every line, within ``timeout``: a step sets its gauges after its CALLs are
    answered, so a charger may see its new limit a round trip before the gauges do."""
    text = ""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            while True:
                text = await _metrics(running)
                if all(line in text for line in lines):
                    break
                await asyncio.sleep(0.05)
    missing = [line for line in lines if line not in text]
    assert not missing, (missing, text)
    return text


async def test_the_csms_own_profiles_keep_working_under_the_station_maximum(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), site_gateway(redis_url) as (csms, running):
        url = running.charger_url()
        async with charger(SiteCharger16, url, "LM16-1") as a, charger(SiteCharger16, url, "LM16T-3") as c:
            cps: list[SiteCharger] = [a, c]
            for cp in cps:
                await cp.boot()
                await profiled(cp)
            await a.plug(SimEv(32, 3))
            await c.plug(SimEv(32, 3))
            await until(lambda: a.draw_a() == 20.0 and c.draw_a() == 20.0, cps, SETTLE * 2)
            # the CSMS limits LM16-1's transactions to 10 A (1.6 TxDefaultProfile on connector 1)
            point = await csms.point("LM16-1")
            tx_default = {
                "chargingProfileId": 77, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                "chargingProfileKind": "Absolute",
                "chargingSchedule": {"startSchedule": "2020-01-01T00:00:00Z", "chargingRateUnit": "A",
                                     "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 10.0}]},
            }  # fmt: skip
            answer = await point.call(call16.SetChargingProfile(connector_id=1, cs_charging_profiles=tx_default))
            assert answer.status == "Accepted"
            assert a.draw_a() == 10.0  # the lower of the two: the charger enforces both, as OCPP defines
            # the 2.0.1 CSMS limits the translated charger to 12 A (TxDefaultProfile of EVSE 1, translated to 1.6)
            point3 = await csms.point("LM16T-3")
            answer3 = await point3.call(
                call201.SetChargingProfile(
                    evse_id=1,
                    charging_profile={
                        "id": 78, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": [{"id": 1, "startSchedule": "2020-01-01T00:00:00Z",
                                              "chargingRateUnit": "A",
                                              "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12.0}]}],
                    },
                )
            )  # fmt: skip
            assert answer3.status == "Accepted"
            assert c.draw_a() == 12.0
            # GetCompositeSchedule stays truthful: what the charger itself computes, the controller's maximum included
            composite = await point.call(call16.GetCompositeSchedule(connector_id=1, duration=60))
            assert composite.status == "Accepted"
            assert composite.charging_schedule["charging_schedule_period"][0]["limit"] == 10.0
            station = await point.call(call16.GetCompositeSchedule(connector_id=0, duration=60))
            assert station.charging_schedule["charging_schedule_period"][0]["limit"] == a.table.station_max(time.time())
            # the controller lets the others use what a limited EV does not draw
            await report_all(cps)
            await report_all(cps)
            assert under(cps)
    assert csms.foreign_answers() == []


async def test_a_demand_response_event_lowers_the_site_and_ends_on_time(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), site_gateway(redis_url) as (_, running):
        url = running.charger_url()
        async with charger(SiteCharger16, url, "LM16-1") as a, charger(SiteCharger201, url, "LM201-2") as b:
            cps: list[SiteCharger] = [a, b]
            for cp in cps:
                await cp.boot()
                await profiled(cp)
            await a.plug(SimEv(32, 3))
            await b.plug(SimEv(32, 3))
            await until(lambda: max(site_draw(cps)) == 40.0, cps, SETTLE * 2)

            # bad input gets a clear answer
            for body, why in (
                ({"limit": 20}, "give exactly one of end and duration_s"),
                ({"duration_s": 5, "limit": 20, "reduction": 5}, "give exactly one of limit and reduction"),
                ({"duration_s": 5, "limit": 20, "unit": "kW"}, "unit must be the site's unit, 'A' (got 'kW')"),
                ({"duration_s": 5, "limit": 20, "color": "red"}, "unknown field 'color'"),
                ({"end": "2001-01-01T00:00:00Z", "limit": 20}, "end is in the past"),
                ({"duration_s": 5, "reduction": 50}, "reduction must be at most the site's limit (40 A)"),
            ):
                status, got = await admin(running, "POST", "/api/sites/lot/events", body)
                assert status == 400 and got["error"].startswith(why), (body, got)
            assert (await admin(running, "POST", "/api/sites/nowhere/events", {"duration_s": 5, "limit": 1}))[0] == 404

            window = 4.0
            status, got = await admin(
                running, "POST", "/api/sites/lot/events", {"id": "dr-1", "duration_s": window, "limit": 20}
            )
            assert status == 201 and got["event"]["state"] == "active" and got["event"]["limit"] == 20
            created = time.monotonic()
            assert (await admin(running, "POST", "/api/sites/lot/events", {"id": "dr-1", "duration_s": 9,
                                                                           "limit": 5}))[0] == 409  # fmt: skip
            took = await until(lambda: max(site_draw(cps)) <= 20.0, cps, SETTLE * 2)
            assert took <= SETTLE
            assert (await admin(running, "GET", "/api/sites/lot/events"))[1]["events"][0]["id"] == "dr-1"
            await _metrics_showing(running, 'ocppgw_site_events{site="lot",state="active"} 1.0')
            # it ends on time: the site goes back up within one period after the end
            await until(lambda: max(site_draw(cps)) == 40.0, cps, window + SETTLE * 2)
            assert time.monotonic() - created <= window + SETTLE
            assert (await admin(running, "GET", "/api/sites/lot/events"))[1]["events"] == []
            await _metrics_showing(
                running,
                'ocppgw_site_events{site="lot",state="active"} 0.0',
                'ocppgw_site_event_changes_total{change="ended",site="lot",source="api"} 1.0',
            )

            # a reduction, cancelled early
            status, _ = await admin(running, "POST", "/api/sites/lot/events", {"id": "dr-2", "duration_s": 60,
                                                                                "reduction": 16})  # fmt: skip
            assert status == 201
            await until(lambda: max(site_draw(cps)) <= 24.0, cps, SETTLE * 2)
            assert (await admin(running, "DELETE", "/api/sites/lot/events/dr-2"))[0] == 204
            assert (await admin(running, "DELETE", "/api/sites/lot/events/dr-2"))[0] == 404
            took = await until(lambda: max(site_draw(cps)) == 40.0, cps, SETTLE * 2)
            assert took <= SETTLE


async def test_events_survive_a_gateway_restart(redis_url: str) -> None:
    csms = StrictCsms()
    await csms.start()
    try:
        async with site_gateway(redis_url, csms) as (_, running):
            later = {"id": "later", "start": time.time() + 3600, "duration_s": 600, "limit": 5}
            status, _ = await admin(running, "POST", "/api/sites/lot/events", later)
            assert status == 201
        async with site_gateway(redis_url, csms) as (_, running):
            status, body = await admin(running, "GET", "/api/sites/lot/events")
            assert [(e["id"], e["state"], e["limit"]) for e in body["events"]] == [("later", "scheduled", 5.0)]
    finally:
        await csms.stop()


async def test_a_gateway_restart_changes_nothing_on_the_chargers_until_they_are_read_back(redis_url: str) -> None:
    csms = StrictCsms()
    await csms.start()
    try:
        async with asyncio.timeout(TIMEOUT):
            async with site_gateway(redis_url, csms) as (_, running):
                url = running.charger_url()
                async with charger(SiteCharger16, url, "LM16-1") as a, charger(SiteCharger201, url, "LM201-2") as b:
                    cps: list[SiteCharger] = [a, b]
                    for cp in cps:
                        await cp.boot()
                        await profiled(cp)
                    await a.plug(SimEv(32, 3))
                    await b.plug(SimEv(32, 3))
                    await report_all(cps)
                    await until(lambda: a.draw_a() == 20.0 and b.draw_a() == 20.0, cps, SETTLE * 2)
                    before = (a.limit(), b.limit())
                    await asyncio.sleep(PERIOD * 1.5)  # the last ctl writes flushed behind
            # a new gateway process on the same store; the chargers reconnect with what they had
            async with site_gateway(redis_url, csms) as (_, running):
                url = running.charger_url()
                async with (
                    charger(SiteCharger16, url, "LM16-1", carry=a) as a2,
                    charger(SiteCharger201, url, "LM201-2", carry=b) as b2,
                ):
                    cps2: list[SiteCharger] = [a2, b2]
                    await report_all(cps2)
                    await until(lambda: all(cp.handled for cp in cps2), cps2, 10)
                    # three allocation periods: each charger was read back, and nothing else was needed
                    await asyncio.sleep(PERIOD * 3)
                    for cp in cps2:
                        assert cp.handled[0][0] == "GetCompositeSchedule", cp.handled
                        assert [x for x, _ in cp.handled] == ["GetCompositeSchedule"], [
                            (x, p.get("charging_profile_id") or p.get("id"), p.get("charging_schedule"))
                            for x, p in cp.handled
                        ]
                    assert (a2.limit(), b2.limit()) == before
                    # a change after the read-back is carried out as usual
                    await b2.unplug()
                    await until(lambda: a2.draw_a() == 32.0, cps2, SETTLE * 2)
    finally:
        await csms.stop()


# ----------------------------------------------------------------------------------------------- MQTT


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def mqtt_url() -> Iterator[str]:
    """A mosquitto of this test module on a free port (the machine's own on 1883 when the binary is missing)."""
    exe = shutil.which("mosquitto")
    if exe is None:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", 1883)) != 0:
                pytest.skip("no mosquitto binary and no broker on 127.0.0.1:1883")
        yield "mqtt://127.0.0.1:1883"
        return
    port = _free_port()
    conf = tempfile.NamedTemporaryFile("w", suffix=".conf", delete=False)  # noqa: SIM115
    conf.write(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    conf.close()
    proc = subprocess.Popen([exe, "-c", conf.name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("mosquitto did not start")
        time.sleep(0.02)
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(10)


async def _publish(url: str, topic: str, payload: bytes) -> None:
    import aiomqtt

    host, port = url.removeprefix("mqtt://").split(":")
    async with aiomqtt.Client(host, int(port)) as client:
        await client.publish(topic, payload, qos=1)


async def test_the_site_meter_and_demand_response_over_mqtt(redis_url: str, mqtt_url: str) -> None:
    topic = f"test/{time.time_ns()}"
    site = {"mqtt": mqtt_url, "meter": {"topic": f"{topic}/grid", "unit": "W", "max_age_s": 30},
            "demand_response_topic": f"{topic}/dr"}  # fmt: skip
    async with asyncio.timeout(TIMEOUT), site_gateway(redis_url, **site) as (_, running):
        sites = running.hub.sites
        assert sites is not None
        async with asyncio.timeout(10):
            await sites.feeds["lot"].subscribed.wait()
        url = running.charger_url()
        async with charger(SiteCharger16, url, "LM16-1") as a:
            await a.boot()
            await profiled(a)
            await a.plug(SimEv(32, 3))
            await a.report()
            await until(lambda: a.draw_a() == 32.0, [a], SETTLE * 2)
            await a.report()  # the meter is subtracted what the EVs were measured to draw: their last report
            # the meter shows 20 A per phase of other load on top of the EV: the EV gets what is left
            other = 20.0 * 3 * 230
            await _publish(mqtt_url, f"{topic}/grid", json.dumps({"power_w": sum(a.currents()) * 230 + other}).encode())
            took = await until(lambda: a.draw_a() <= LIMIT - 20.0, [a], SETTLE * 2)
            assert took <= SETTLE and a.draw_a() == 20.0
            await _publish(mqtt_url, f"{topic}/grid", b"not a reading")
            await _publish(
                mqtt_url, f"{topic}/dr", json.dumps({"id": "grid-1", "duration_s": 30, "limit": 30}).encode()
            )
            await until(lambda: a.draw_a() <= 10.0, [a], SETTLE * 3)
            _, body = await admin(running, "GET", "/api/sites/lot/events")
            assert [(e["id"], e["source"]) for e in body["events"]] == [("grid-1", "mqtt")]
            await _publish(mqtt_url, f"{topic}/dr", b'{"cancel": "grid-1"}')
            await until(lambda: a.draw_a() == 20.0, [a], SETTLE * 3)
        metrics = await _metrics(running)
        assert 'ocppgw_site_meter_messages_total{result="invalid",site="lot"} 1.0' in metrics
        assert 'ocppgw_site_event_changes_total{change="cancelled",site="lot",source="mqtt"} 1.0' in metrics


async def test_an_offline_charger_counts_at_what_its_own_profiles_allow(redis_url: str) -> None:
    async with asyncio.timeout(TIMEOUT), site_gateway(redis_url) as (_, running):
        url = running.charger_url()
        async with charger(SiteCharger16, url, "LM16-1") as a:
            async with charger(SiteCharger201, url, "LM201-2") as b:
                for cp in (a, b):
                    await cp.boot()
                    await profiled(cp)
                await a.plug(SimEv(32, 3))
                await b.plug(SimEv(32, 3))
                await report_all([a, b])
                await until(lambda: a.draw_a() == 20.0 and b.draw_a() == 20.0, [a, b], SETTLE * 2)
            # LM201-2 is gone, its EV charging on at its dynamic limit until that lapses (then at its fail-safe):
            # LM16-1 does not get what LM201-2 may still draw
            await a.report()
            await asyncio.sleep(PERIOD * 2.5)
            assert a.draw_a() == 20.0 and a.draw_a() + b.draw_a() <= LIMIT
            _, body = await admin(running, "GET", "/api/sites/lot")
            assert body["allocation"]["chargers"]["LM201-2"]["state"] == "offline"


async def test_one_node_controls_the_site_and_another_takes_over(redis_url: str) -> None:
    csms = StrictCsms()
    url_csms = await csms.start()
    nodes = [contextlib.AsyncExitStack(), contextlib.AsyncExitStack()]
    try:
        async with asyncio.timeout(TIMEOUT), nodes[0], nodes[1]:
            gws = [await n.enter_async_context(running_gateway(site_config(url_csms, redis_url))) for n in nodes]

            def controllers() -> list[bool]:
                return [g.hub.sites is not None and g.hub.sites.controllers["lot"].holding for g in gws]

            # each charger on its own node; the node controlling the site reaches the other's through the fleet
            async with (
                charger(SiteCharger16, gws[0].charger_url(), "LM16-1") as a,
                charger(SiteCharger201, gws[1].charger_url(), "LM201-2") as b,
            ):
                for cp in (a, b):
                    await cp.boot()
                    await profiled(cp)
                assert sorted(controllers()) == [False, True]
                await a.plug(SimEv(32, 3))
                await b.plug(SimEv(32, 3))
                await report_all([a, b])
                await until(lambda: a.draw_a() == 20.0 and b.draw_a() == 20.0, [a, b], SETTLE * 4)
                # the controlling node stops (its charger with it): the other takes the site over and reads back
                # the charger it holds before changing it
                holder = controllers().index(True)
                left = b if holder == 0 else a
                reads_before = sum(1 for x, _ in left.handled if x == "GetCompositeSchedule")
                await nodes[holder].aclose()
                await until(lambda: controllers()[1 - holder], [left], 15)
                await until(
                    lambda: sum(1 for x, _ in left.handled if x == "GetCompositeSchedule") > reads_before, [left], 10
                )
                await left.report()
                # the gone charger counts at what it may still draw on its own: the one left keeps 20 A for now
                assert left.draw_a() == 20.0
    finally:
        await csms.stop()
