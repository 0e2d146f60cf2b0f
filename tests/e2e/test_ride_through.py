"""Riding through a CSMS outage, end to end: the `ocpp` package as charger and CSMS, the gateway in between on a
real redis-server, the CSMS stopped and started again on the same port.

What a user checks: while the CSMS is down the charger is kept online and gets answers the CSMS itself gave
before (boot interval, authorization); when it is back the CSMS receives every CALL once, in order, with its
original timestamps, and the transactionId it assigned in every later message of that transaction; a token the CSMS
refused meanwhile is enforced.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
from ocpp.routing import on
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.ops.demo import Charger16, Charger201, ConnectionClosed, OcppWs
from gateway.ops.demo_csms import DemoCsms
from gateway.ops.lifecycle import Running, running_gateway
from tests.helpers import make_config
from tests.ocpp_rpc import rpc_charger
from tests.peers import now_iso

TIMEOUT = 30
RIDE = {"mode": "ride_through"}


class Csms(DemoCsms):
    """The demo CSMS with a list of refused tags the test changes while the CSMS is down."""

    def __init__(self) -> None:
        super().__init__(interval=120)
        self.refused: set[str] = set()
        self.port = 0

    def authorize(self, id_tag: str) -> str:
        return "Blocked" if id_tag in self.refused else super().authorize(id_tag)

    async def up(self) -> None:
        url = await self.start(port=self.port)
        self.port = int(url.rsplit(":", 1)[1].split("/")[0])


class Charger16Stops(Charger16):
    @on("RemoteStopTransaction")
    def on_remote_stop_transaction(self, transaction_id: int, **kw: Any) -> Any:
        self._handled("RemoteStopTransaction", {"transaction_id": transaction_id})
        return result16.RemoteStopTransaction(status="Accepted")


class Charger201Stops(Charger201):
    @on("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str, **kw: Any) -> Any:
        self._handled("RequestStopTransaction", {"transaction_id": transaction_id})
        return result201.RequestStopTransaction(status="Accepted")


@contextlib.asynccontextmanager
async def ride_gateway(redis_url: str, csms: Csms, version: str, **offline: Any) -> AsyncIterator[Running]:
    backend = {"url": f"ws://127.0.0.1:{csms.port}/ocpp", "ocpp": version, "reconnect_grace_s": 0.3,
               "replay_per_s": 500}  # fmt: skip
    config = make_config(
        {"csms": backend}, store=redis_url, routes=[{"match": "*", "primary": "csms", "offline": {**RIDE, **offline}}]
    )
    async with running_gateway(config) as running:
        yield running


@contextlib.asynccontextmanager
async def connected(kind: type[Any], url: str, cid: str) -> AsyncIterator[Any]:
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/{cid}", protocols=(kind.subprotocol,)) as ws,
    ):
        cp = kind(cid, OcppWs(ws))
        reader = asyncio.create_task(cp.start(), name=f"{cid}:recv")
        try:
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


async def ride_view(running: Running) -> dict[str, Any]:
    async with aiohttp.ClientSession() as http, http.get(f"{running.admin_url()}/api/ride-through") as r:
        assert r.status == 200
        return {c["charger_id"]: c for c in (await r.json())["chargers"]}


async def until(pred: Any, every: float = 0.05) -> None:
    while not await pred():
        await asyncio.sleep(every)


async def live_again(running: Running, cid: str) -> None:
    async def done() -> bool:
        view = (await ride_view(running)).get(cid)
        return view is not None and view["state"] == "live" and view["journal_depth"] == 0

    await until(done)


def sampled(energy_wh: int, ts: str) -> list[dict[str, Any]]:
    return [{"timestamp": ts, "sampledValue": [{"value": str(energy_wh), "measurand": "Energy.Active.Import.Register",
                                                "unit": "Wh"}]}]  # fmt: skip


async def test_ocpp16_mid_session_outage_is_ridden_through_and_replayed_in_order(redis_url: str) -> None:
    cid = "RIDE16-1"
    csms = Csms()
    await csms.up()
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "1.6") as running:
        async with connected(Charger16Stops, running.charger_url(), cid) as cp:
            boot = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"),
                                 suppress=False)  # fmt: skip
            assert (boot.status, boot.interval) == ("Accepted", 120)
            assert (await cp.call(call16.Authorize(id_tag="TAG-1"), suppress=False)).id_tag_info["status"] == "Accepted"
            before = len(csms.received)

            await csms.stop()  # the CSMS goes away mid-session; past reconnect_grace_s the gateway rides through
            t0, t1, t2 = now_iso(-30), now_iso(-20), now_iso(-10)
            hb = await cp.call(call16.Heartbeat(), suppress=False)
            assert hb.current_time
            await cp.call(call16.StatusNotification(connector_id=1, error_code="NoError", status="Preparing",
                                                    timestamp=t0), suppress=False)  # fmt: skip
            auth = await cp.call(call16.Authorize(id_tag="TAG-1"), suppress=False)
            assert auth.id_tag_info["status"] == "Accepted"  # from the CSMS's own earlier answer
            unknown = await cp.call(call16.Authorize(id_tag="NEVER-SEEN"), suppress=False)
            assert unknown.id_tag_info["status"] == "Invalid"  # unknown_token: reject (the default)
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="TAG-1", meter_start=1000,
                                                          timestamp=t1), suppress=False)  # fmt: skip
            gw_tx = start.transaction_id
            assert start.id_tag_info["status"] == "Accepted" and gw_tx < 0
            await cp.call(call16.MeterValues(connector_id=1, transaction_id=gw_tx, meter_value=sampled(1500, t2)),
                          suppress=False)  # fmt: skip
            view = (await ride_view(running))[cid]
            assert view["state"] == "riding" and view["journal_depth"] == 6
            assert len(csms.received) == before  # nothing reached the CSMS, nothing was invented toward it

            await csms.up()  # back: the journal is replayed, then the charger is live again
            await live_again(running, cid)
            got = [(r.action, r.payload) for r in csms.received[before:]]
            csms_tx = csms.transaction_ids[cid][-1]
            assert got == [
                ("Heartbeat", {}),
                ("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Preparing",
                                        "timestamp": t0}),
                ("Authorize", {"idTag": "TAG-1"}),
                ("Authorize", {"idTag": "NEVER-SEEN"}),
                ("StartTransaction", {"connectorId": 1, "idTag": "TAG-1", "meterStart": 1000, "timestamp": t1}),
                ("MeterValues", {"connectorId": 1, "transactionId": csms_tx, "meterValue": sampled(1500, t2)}),
            ]  # fmt: skip

            # live again: the CSMS's CALLs carry its id, the charger gets its own
            point = await csms.point(cid)
            assert (await point.call(call16.RemoteStopTransaction(transaction_id=csms_tx))).status == "Accepted"
            assert ("RemoteStopTransaction", {"transaction_id": gw_tx}) in cp.handled
            # and the charger still uses its own id; the CSMS gets its own
            t3 = now_iso()
            stop = await cp.call(call16.StopTransaction(meter_stop=2000, timestamp=t3, transaction_id=gw_tx,
                                                        id_tag="TAG-1"), suppress=False)  # fmt: skip
            assert stop.id_tag_info["status"] == "Accepted"
            assert csms.calls(cid, "StopTransaction") == [
                {"meterStop": 2000, "timestamp": t3, "transactionId": csms_tx, "idTag": "TAG-1"}
            ]
            view = (await ride_view(running))[cid]
            # the gateway refused the unknown tag, the CSMS accepts it: counted and shown, nothing to enforce
            assert view["replayed"] == 6 and view["divergences"] == 1
            assert view["last_divergence"]["action"] == "Authorize"
            assert view["last_divergence"]["csms"] == {"idTagInfo": {"status": "Accepted"}}
    await csms.stop()


async def test_ocpp16_csms_down_at_connect_admits_the_charger_and_enforces_a_refusal(redis_url: str) -> None:
    cid = "RIDE16-2"
    csms = Csms()
    await csms.up()
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "1.6") as running:
        async with connected(Charger16Stops, running.charger_url(), cid) as cp:  # learn: boot, TAG-2 accepted
            await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"), suppress=False)
            await cp.call(call16.Authorize(id_tag="TAG-2"), suppress=False)
        await csms.gone(cid)
        await running.hub.writer.flush(2)
        await csms.stop()
        before = len(csms.received)

        async with connected(Charger16Stops, running.charger_url(), cid) as cp:  # the CSMS is down at connect
            boot = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"),
                                 suppress=False)  # fmt: skip
            assert (boot.status, boot.interval) == ("Accepted", 120)  # the last accepted boot's interval
            csms.refused.add("TAG-2")  # the operator blocks the tag while the CSMS is unreachable
            t1 = now_iso(-5)
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="TAG-2", meter_start=0,
                                                          timestamp=t1), suppress=False)  # fmt: skip
            assert start.id_tag_info["status"] == "Accepted"
            gw_tx = start.transaction_id

            await csms.up()
            await live_again(running, cid)
            assert [r.action for r in csms.received[before:]] == ["BootNotification", "StartTransaction"]

            async def stopped() -> bool:
                return any(a == "RemoteStopTransaction" for a, _ in cp.handled)

            await until(stopped)  # the CSMS's decision is enforced: the charger is asked to stop its transaction
            assert ("RemoteStopTransaction", {"transaction_id": gw_tx}) in cp.handled
            view = (await ride_view(running))[cid]
            assert view["divergences"] == 1 and view["last_divergence"]["kind"] == "authorization"
            metrics = running.hub.metrics.render().decode()
            assert 'ocppgw_ride_through_divergences_total{backend="csms",kind="authorization"} 1.0' in metrics
            assert 'ocppgw_ride_through_stops_total{backend="csms",reason="divergence"} 1.0' in metrics
            # the charger's answer to the gateway's stop never reached the CSMS
            assert [r.action for r in csms.received[before:]] == ["BootNotification", "StartTransaction"]
    await csms.stop()


async def test_ocpp201_outage_is_ridden_through_with_transaction_events(redis_url: str) -> None:
    cid = "RIDE201-1"
    csms = Csms()
    await csms.up()
    token = {"id_token": "TOK-1", "type": "ISO14443"}
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "2.0.1") as running:
        async with connected(Charger201, running.charger_url(), cid) as cp:
            station = {"model": "M", "vendor_name": "V"}
            boot = await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
            assert boot.status == "Accepted"
            assert (await cp.call(call201.Authorize(id_token=token), suppress=False)).id_token_info["status"] == (
                "Accepted"
            )
            before = len(csms.received)
            await csms.stop()
            t1, t2 = now_iso(-20), now_iso(-10)
            started = await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=t1, trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "TX-201"}, id_token=token, evse={"id": 1, "connector_id": 1},
            ), suppress=False)  # fmt: skip
            assert started.id_token_info["status"] == "Accepted"
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=t2, trigger_reason="StopAuthorized", seq_no=1,
                transaction_info={"transaction_id": "TX-201", "stopped_reason": "Local"},
            ), suppress=False)  # fmt: skip
            hb = await cp.call(call201.Heartbeat(), suppress=False)
            assert hb.current_time
            await csms.up()
            await live_again(running, cid)
            got = [(r.action, r.payload.get("eventType"), r.payload.get("timestamp")) for r in csms.received[before:]]
            assert got == [("TransactionEvent", "Started", t1), ("TransactionEvent", "Ended", t2),
                           ("Heartbeat", None, None)]  # fmt: skip
    await csms.stop()


async def test_translated_16_charger_behind_201_csms_rides_through(redis_url: str) -> None:
    """Set-up A (1.6 charger, 2.0.1 CSMS): the journal holds the translated 2.0.1 CALLs, answered from the 2.0.1
    CSMS's own answers and translated back for the charger."""
    cid = "RIDE16T-1"
    csms = Csms()
    await csms.up()
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "2.0.1") as running:
        async with connected(Charger16, running.charger_url(), cid) as cp:
            boot = await cp.call(call16.BootNotification(charge_point_model="M", charge_point_vendor="V"),
                                 suppress=False)  # fmt: skip
            assert (boot.status, boot.interval) == ("Accepted", 120)
            assert (await cp.call(call16.Authorize(id_tag="TAG-T"), suppress=False)).id_tag_info["status"] == "Accepted"
            before = len(csms.received)
            await csms.stop()
            t1, t2 = now_iso(-20), now_iso(-10)
            start = await cp.call(call16.StartTransaction(connector_id=1, id_tag="TAG-T", meter_start=100,
                                                          timestamp=t1), suppress=False)  # fmt: skip
            assert start.id_tag_info["status"] == "Accepted"
            gw_tx = start.transaction_id
            stop = await cp.call(call16.StopTransaction(meter_stop=900, timestamp=t2, transaction_id=gw_tx),
                                 suppress=False)  # fmt: skip
            assert stop is not None
            assert len(csms.received) == before
            await csms.up()
            await live_again(running, cid)
            got = [(r.action, r.payload.get("eventType"), r.payload.get("timestamp")) for r in csms.received[before:]]
            assert [g for g in got if g[0] == "TransactionEvent"] == [
                ("TransactionEvent", "Started", t1), ("TransactionEvent", "Ended", t2),
            ]  # fmt: skip
            events = csms.calls(cid, "TransactionEvent")
            assert events[0]["idToken"]["idToken"] == "TAG-T"
            assert len({e["transactionInfo"]["transactionId"] for e in events}) == 1
            assert (await ride_view(running))[cid]["divergences"] == 0
    await csms.stop()


async def test_translated_201_charger_behind_16_csms_maps_the_csms_transaction_id(redis_url: str) -> None:
    """Set-up B (2.0.1 charger, 1.6 CSMS): the gateway's 1.6 transactionId is replaced by the CSMS's in the replayed
    StopTransaction; the charger keeps its own 2.0.1 id throughout."""
    cid = "RIDE201T-1"
    csms = Csms()
    await csms.up()
    token = {"id_token": "TOK-B", "type": "ISO14443"}
    meter = [
        {"timestamp": now_iso(-30), "sampled_value": [{"value": 100.0, "measurand": "Energy.Active.Import.Register"}]}
    ]
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "1.6") as running:
        async with connected(Charger201, running.charger_url(), cid) as cp:
            station = {"model": "M", "vendor_name": "V"}
            assert (await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"),
                                  suppress=False)).status == "Accepted"  # fmt: skip
            auth = await cp.call(call201.Authorize(id_token=token), suppress=False)
            assert auth.id_token_info["status"] == "Accepted"
            before = len(csms.received)
            await csms.stop()
            started = await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=now_iso(-20), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "TX-B"}, id_token=token, evse={"id": 1, "connector_id": 1},
                meter_value=meter,
            ), suppress=False)  # fmt: skip
            assert started.id_token_info["status"] == "Accepted"
            end_meter = [
                {
                    "timestamp": now_iso(-10),
                    "sampled_value": [{"value": 900.0, "measurand": "Energy.Active.Import.Register"}],
                }
            ]
            await cp.call(call201.TransactionEvent(
                event_type="Ended", timestamp=now_iso(-10), trigger_reason="StopAuthorized", seq_no=1,
                transaction_info={"transaction_id": "TX-B", "stopped_reason": "Local"}, meter_value=end_meter,
            ), suppress=False)  # fmt: skip
            await csms.up()
            await live_again(running, cid)
            actions = [r.action for r in csms.received[before:]]
            assert actions.count("StartTransaction") == 1 and actions.count("StopTransaction") == 1
            assert actions.index("StartTransaction") < actions.index("StopTransaction")
            (stop,) = csms.calls(cid, "StopTransaction")
            assert stop["transactionId"] == csms.transaction_ids[cid][-1] > 0
    await csms.stop()


async def test_ocpp_rpc_strict_charger_rides_through_and_accepts_every_gateway_answer(redis_url: str) -> None:
    """ocpp-rpc (npm, strict mode: every answer checked against its own copy of the official schemas) as the charger:
    the gateway's answers on the CSMS's behalf are valid to an independent validator, and the CSMS gets it all."""
    cid = "RIDE-RPC-1"
    csms = Csms()
    await csms.up()
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "1.6") as running:
        async with rpc_charger(running.charger_url(), cid, "ocpp1.6", mode="idle") as cp:

            async def rpc(action: str, params: dict[str, Any]) -> dict[str, Any]:
                done = await cp.command("call", action=action, params=params, timeout=15)
                assert "response" in done, cp.transcript()
                return dict(done["response"])

            assert (await rpc("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))[
                "interval"
            ] == 120
            await rpc("Authorize", {"idTag": "RPC-TAG"})
            before = len(csms.received)
            await csms.stop()

            async def is_riding() -> bool:
                return (await ride_view(running))[cid]["state"] == "riding"

            await until(is_riding)
            t1 = now_iso(-10)
            assert (await rpc("BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}))[
                "interval"
            ] == 120
            start = await rpc(
                "StartTransaction", {"connectorId": 1, "idTag": "RPC-TAG", "meterStart": 5, "timestamp": t1}
            )
            assert start["idTagInfo"]["status"] == "Accepted"
            await rpc("MeterValues", {"connectorId": 1, "transactionId": start["transactionId"],
                                      "meterValue": sampled(50, t1)})  # fmt: skip
            await rpc("StopTransaction", {"transactionId": start["transactionId"], "meterStop": 60, "timestamp": t1})
            assert (await rpc("Heartbeat", {}))["currentTime"]
            assert (await rpc("DataTransfer", {"vendorId": "X"})) == {"status": "Rejected"}
            await csms.up()
            await live_again(running, cid)
            got = [r.action for r in csms.received[before:]]
            assert got == ["BootNotification", "StartTransaction", "MeterValues", "StopTransaction", "Heartbeat"]
            (stop,) = csms.calls(cid, "StopTransaction")
            assert stop["transactionId"] == csms.transaction_ids[cid][-1]
            assert not cp.problems(), cp.transcript()
    await csms.stop()


async def test_ocpp201_token_refused_meanwhile_is_enforced_with_request_stop(redis_url: str) -> None:
    cid = "RIDE201-2"
    csms = Csms()
    await csms.up()
    token = {"id_token": "TOK-2", "type": "ISO14443"}
    async with asyncio.timeout(TIMEOUT), ride_gateway(redis_url, csms, "2.0.1") as running:
        async with connected(Charger201Stops, running.charger_url(), cid) as cp:
            station = {"model": "M", "vendor_name": "V"}
            await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
            await cp.call(call201.Authorize(id_token=token), suppress=False)
            await csms.stop()
            csms.refused.add("TOK-2")
            started = await cp.call(call201.TransactionEvent(
                event_type="Started", timestamp=now_iso(-5), trigger_reason="Authorized", seq_no=0,
                transaction_info={"transaction_id": "TX-R"}, id_token=token, evse={"id": 1, "connector_id": 1},
            ), suppress=False)  # fmt: skip
            assert started.id_token_info["status"] == "Accepted"  # the cache's answer
            await csms.up()
            await live_again(running, cid)

            async def stopped() -> bool:
                return ("RequestStopTransaction", {"transaction_id": "TX-R"}) in cp.handled

            await until(stopped)
            view = (await ride_view(running))[cid]
            assert view["divergences"] == 1 and view["last_divergence"]["csms"]["idTokenInfo"]["status"] == "Blocked"
            # from then on the CSMS's decision holds, even offline: the cache learned it from the replay
            await csms.stop()
            again = await cp.call(call201.Authorize(id_token=token), suppress=False)
            assert again.id_token_info["status"] == "Blocked"
    await csms.stop()
