"""The `ocpp` package on both ends, the gateway (Redis store) in between: OCPP 1.6 and 2.0.1 end to end.

The CSMS is :class:`gateway.ops.demo_csms.DemoCsms` (the ``ocpp`` package's v16/v201 ChargePoint on the CSMS side, which
validates every payload against the official schemas and records each CALL it receives as it was on the wire). The
chargers are the demo's ``Charger16``/``Charger201`` (the ``ocpp`` package's ChargePoint on the charger side, which
records each CSMS-initiated CALL its handlers got), driven step by step here instead of running their story.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from gateway.ops.demo import Charger16, Charger201, ConnectionClosed, OcppWs
from gateway.ops.demo_csms import PRICE_PER_KWH, DemoCsms, now_iso
from gateway.ops.lifecycle import Running, running_gateway
from gateway.store.redis import RedisStore
from tests.helpers import make_config

TIMEOUT = 30


@contextlib.asynccontextmanager
async def csms_behind_gateway(redis_url: str, version: str) -> AsyncIterator[tuple[DemoCsms, Running]]:
    csms = DemoCsms(interval=120)
    url = await csms.start()
    try:
        config = make_config({"csms": {"url": url, "ocpp": version}}, store=redis_url)
        async with running_gateway(config) as running:
            assert isinstance(running.hub.store, RedisStore)
            yield csms, running
    finally:
        await csms.stop()


@contextlib.asynccontextmanager
async def connected(kind: type[Any], url: str, cid: str) -> AsyncIterator[Any]:
    """An ``ocpp`` package charger connected through the gateway, its receive loop running."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{url}/{cid}", protocols=(kind.subprotocol,)) as ws,
    ):
        assert ws.protocol == kind.subprotocol
        cp = kind(cid, OcppWs(ws))
        reader = asyncio.create_task(cp.start(), name=f"{cid}:recv")
        try:
            yield cp
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


async def listed_chargers(running: Running) -> dict[str, dict[str, Any]]:
    async with aiohttp.ClientSession() as http, http.get(f"{running.admin_url()}/api/chargers") as resp:
        assert resp.status == 200
        body = await resp.json()
    return {c["charger_id"]: c for c in body["chargers"]}


async def gone_and_flushed(running: Running, csms: DemoCsms, cid: str) -> None:
    """Wait until the gateway ended the charger's session, then until its state writes reached Redis.

    The gateway closes the upstream link after queueing the session's last writes, so the link closing at the CSMS
    is the public signal that they are queued.
    """
    await csms.gone(cid)
    assert await running.hub.writer.flush(2), "write-behind queue did not drain"


def sampled16(energy_wh: int, power_w: int) -> list[dict[str, Any]]:
    return [
        {
            "timestamp": now_iso(),
            "sampledValue": [
                {"value": str(energy_wh), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": str(power_w), "measurand": "Power.Active.Import", "unit": "W"},
            ],
        }
    ]


def sampled201(energy_wh: float, power_w: float | None = None) -> list[dict[str, Any]]:
    values: list[dict[str, Any]] = [
        {"value": energy_wh, "measurand": "Energy.Active.Import.Register", "unitOfMeasure": {"unit": "Wh"}}
    ]
    if power_w is not None:
        values.append({"value": power_w, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}})
    return [{"timestamp": now_iso(), "sampledValue": values}]


async def test_ocpp16_charger_and_csms_through_gateway(redis_url: str) -> None:
    cid = "CP16-E2E-1"
    async with asyncio.timeout(TIMEOUT), csms_behind_gateway(redis_url, "1.6") as (csms, running):
        async with connected(Charger16, running.charger_url(), cid) as cp:
            # boot: the CSMS got the charger's fields, the charger got the CSMS's interval
            boot = await cp.call(
                call16.BootNotification(
                    charge_point_model="E2E Model", charge_point_vendor="E2E Vendor", firmware_version="1.2.3"
                ),
                suppress=False,
            )
            assert (boot.status, boot.interval) == ("Accepted", 120)
            assert csms.calls(cid, "BootNotification") == [
                {"chargePointModel": "E2E Model", "chargePointVendor": "E2E Vendor", "firmwareVersion": "1.2.3"}
            ]

            heartbeat = await cp.call(call16.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)
            assert csms.calls(cid, "Heartbeat") == [{}]

            for connector, status in ((1, "Available"), (2, "Unavailable")):
                await cp.call(
                    call16.StatusNotification(connector_id=connector, error_code="NoError", status=status),
                    suppress=False,
                )
            assert [(p["connectorId"], p["status"]) for p in csms.calls(cid, "StatusNotification")] == [
                (1, "Available"),
                (2, "Unavailable"),
            ]

            # authorize: the CSMS's real verdicts reach the charger
            assert (await cp.call(call16.Authorize(id_tag="TAG-OK"), suppress=False)).id_tag_info == {
                "status": "Accepted"
            }
            assert (await cp.call(call16.Authorize(id_tag="BLOCKED-9"), suppress=False)).id_tag_info == {
                "status": "Blocked"
            }
            assert [p["idTag"] for p in csms.calls(cid, "Authorize")] == ["TAG-OK", "BLOCKED-9"]

            # transaction: the id the CSMS assigned is the one the charger got and uses
            start = await cp.call(
                call16.StartTransaction(connector_id=1, id_tag="TAG-OK", meter_start=1000, timestamp=now_iso()),
                suppress=False,
            )
            assert csms.transaction_ids[cid] == [start.transaction_id]
            assert start.id_tag_info == {"status": "Accepted"}
            (started,) = csms.calls(cid, "StartTransaction")
            assert (started["connectorId"], started["idTag"], started["meterStart"]) == (1, "TAG-OK", 1000)
            await cp.call(
                call16.StatusNotification(connector_id=1, error_code="NoError", status="Charging"), suppress=False
            )

            for energy, power in ((1200, 7400), (1450, 11000)):
                await cp.call(
                    call16.MeterValues(
                        connector_id=1, transaction_id=start.transaction_id, meter_value=sampled16(energy, power)
                    ),
                    suppress=False,
                )
            meters = csms.calls(cid, "MeterValues")
            assert [m["transactionId"] for m in meters] == [start.transaction_id] * 2
            assert [[v["value"] for v in m["meterValue"][0]["sampledValue"]] for m in meters] == [
                ["1200", "7400"],
                ["1450", "11000"],
            ]
            assert meters[0]["meterValue"][0]["sampledValue"][0]["measurand"] == "Energy.Active.Import.Register"

            stop = await cp.call(
                call16.StopTransaction(
                    meter_stop=1500, timestamp=now_iso(), transaction_id=start.transaction_id, reason="Local"
                ),
                suppress=False,
            )
            assert stop.id_tag_info == {"status": "Accepted"}
            (stopped,) = csms.calls(cid, "StopTransaction")
            assert (stopped["transactionId"], stopped["meterStop"], stopped["reason"]) == (
                start.transaction_id,
                1500,
                "Local",
            )
            assert csms.transactions_completed == 1
            await cp.call(
                call16.StatusNotification(connector_id=1, error_code="NoError", status="Available"), suppress=False
            )

            # CSMS-initiated: each reaches the charger's handler, each answer reaches the CSMS
            point = await csms.point(cid)
            remote = await point.call(call16.RemoteStartTransaction(id_tag="REMOTE-7", connector_id=1), suppress=False)
            assert remote.status == "Accepted"
            reset = await point.call(call16.Reset(type="Soft"), suppress=False)
            assert reset.status == "Accepted"
            conf = await point.call(call16.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]), suppress=False)
            assert conf.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
            assert conf.unknown_key == ["NoSuchKey"]
            assert cp.handled == [
                ("RemoteStartTransaction", {"id_tag": "REMOTE-7", "connector_id": 1}),
                ("Reset", {"type": "Soft"}),
                ("GetConfiguration", {"key": ["HeartbeatInterval", "NoSuchKey"]}),
            ]

            # the admin API lists it while connected
            assert await running.hub.writer.flush(2)
            entry = (await listed_chargers(running))[cid]
            assert (entry["local"], entry["ocpp_version"], entry["backend"]) == (True, "1.6", "csms")
            assert entry["outstanding"] == {"up": None, "down": None}
            assert entry["connection"]["protocol"] == "ocpp1.6"
            assert entry["connection"]["node"] == running.hub.node

        await gone_and_flushed(running, csms, cid)
        store = running.hub.store
        boot_rec = await store.get_boot(cid)
        assert boot_rec is not None
        assert boot_rec["request"] == {
            "chargePointModel": "E2E Model",
            "chargePointVendor": "E2E Vendor",
            "firmwareVersion": "1.2.3",
        }
        assert (boot_rec["response"]["status"], boot_rec["response"]["interval"]) == ("Accepted", 120)
        statuses = await store.get_statuses(cid)
        assert {k: v["status"] for k, v in statuses.items()} == {"1": "Available", "2": "Unavailable"}
        assert await store.get_connection(cid) is None
        assert cid not in await listed_chargers(running)


async def test_ocpp201_charger_and_csms_through_gateway(redis_url: str) -> None:
    cid = "CP201-E2E-1"
    async with asyncio.timeout(TIMEOUT), csms_behind_gateway(redis_url, "2.0.1") as (csms, running):
        async with connected(Charger201, running.charger_url(), cid) as cp:
            station = {"model": "E2E Model", "vendorName": "E2E Vendor", "firmwareVersion": "2.0.0"}
            boot = await cp.call(call201.BootNotification(charging_station=station, reason="PowerUp"), suppress=False)
            assert (boot.status, boot.interval) == ("Accepted", 120)
            assert csms.calls(cid, "BootNotification") == [{"chargingStation": station, "reason": "PowerUp"}]

            heartbeat = await cp.call(call201.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)

            for evse, status in ((1, "Available"), (2, "Unavailable")):
                await cp.call(
                    call201.StatusNotification(
                        timestamp=now_iso(), connector_status=status, evse_id=evse, connector_id=1
                    ),
                    suppress=False,
                )
            assert [
                (p["evseId"], p["connectorId"], p["connectorStatus"]) for p in csms.calls(cid, "StatusNotification")
            ] == [
                (1, 1, "Available"),
                (2, 1, "Unavailable"),
            ]

            token = {"idToken": "TAG-OK", "type": "ISO14443"}
            auth = await cp.call(call201.Authorize(id_token=token), suppress=False)
            assert auth.id_token_info == {"status": "Accepted"}
            blocked = await cp.call(call201.Authorize(id_token={"idToken": "BLOCKED-1", "type": "ISO14443"}))
            assert blocked.id_token_info == {"status": "Blocked"}
            assert [p["idToken"]["idToken"] for p in csms.calls(cid, "Authorize")] == ["TAG-OK", "BLOCKED-1"]

            # transaction events: Started / Updated / Ended, plus a MeterValues; the CSMS's cost reaches the charger
            tx_id = "TX-E2E-201"
            started = await cp.call(
                call201.TransactionEvent(
                    event_type="Started",
                    timestamp=now_iso(),
                    trigger_reason="Authorized",
                    seq_no=0,
                    transaction_info={"transactionId": tx_id, "chargingState": "Charging"},
                    id_token=token,
                    evse={"id": 1, "connectorId": 1},
                    meter_value=sampled201(1000.0),
                ),
                suppress=False,
            )
            assert started.id_token_info == {"status": "Accepted"}
            updated = await cp.call(
                call201.TransactionEvent(
                    event_type="Updated",
                    timestamp=now_iso(),
                    trigger_reason="MeterValuePeriodic",
                    seq_no=1,
                    transaction_info={"transactionId": tx_id},
                    meter_value=sampled201(1500.0, 7400.0),
                ),
                suppress=False,
            )
            assert updated.total_cost is None
            await cp.call(call201.MeterValues(evse_id=1, meter_value=sampled201(1600.0, 7300.0)), suppress=False)
            ended = await cp.call(
                call201.TransactionEvent(
                    event_type="Ended",
                    timestamp=now_iso(),
                    trigger_reason="StopAuthorized",
                    seq_no=2,
                    transaction_info={"transactionId": tx_id, "stoppedReason": "Local"},
                    meter_value=sampled201(2000.0),
                ),
                suppress=False,
            )
            assert ended.total_cost == round(1.0 * PRICE_PER_KWH, 2)
            events = csms.calls(cid, "TransactionEvent")
            assert [(e["eventType"], e["seqNo"], e["transactionInfo"]["transactionId"]) for e in events] == [
                ("Started", 0, tx_id),
                ("Updated", 1, tx_id),
                ("Ended", 2, tx_id),
            ]
            assert events[0]["idToken"] == token and events[0]["evse"] == {"id": 1, "connectorId": 1}
            assert [v["value"] for v in events[1]["meterValue"][0]["sampledValue"]] == [1500.0, 7400.0]
            (meter,) = csms.calls(cid, "MeterValues")
            assert meter["evseId"] == 1 and meter["meterValue"][0]["sampledValue"][0]["value"] == 1600.0
            assert csms.transaction_ids[cid] == [tx_id] and csms.transactions_completed == 1

            # CSMS-initiated: RequestStartTransaction, Reset, GetVariables
            point = await csms.point(cid)
            remote = await point.call(
                call201.RequestStartTransaction(
                    id_token={"idToken": "REMOTE-9", "type": "Central"}, remote_start_id=42, evse_id=1
                ),
                suppress=False,
            )
            assert remote.status == "Accepted"
            reset = await point.call(call201.Reset(type="OnIdle"), suppress=False)
            assert reset.status == "Accepted"
            variables = await point.call(
                call201.GetVariables(
                    get_variable_data=[
                        {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}},
                        {"component": {"name": "Nope"}, "variable": {"name": "Nothing"}},
                    ]
                ),
                suppress=False,
            )
            assert variables.get_variable_result == [
                {
                    "attribute_status": "Accepted",
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attribute_value": "300",
                },
                {"attribute_status": "UnknownVariable", "component": {"name": "Nope"}, "variable": {"name": "Nothing"}},
            ]
            assert [a for a, _ in cp.handled] == ["RequestStartTransaction", "Reset", "GetVariables"]
            assert cp.handled[0][1] == {
                "id_token": {"id_token": "REMOTE-9", "type": "Central"},
                "remote_start_id": 42,
                "evse_id": 1,
            }
            assert cp.handled[1][1] == {"type": "OnIdle"}

            assert await running.hub.writer.flush(2)
            entry = (await listed_chargers(running))[cid]
            assert (entry["local"], entry["ocpp_version"], entry["backend"]) == (True, "2.0.1", "csms")
            assert entry["connection"]["protocol"] == "ocpp2.0.1"
            assert entry["connection"]["node"] == running.hub.node

        await gone_and_flushed(running, csms, cid)
        store = running.hub.store
        boot_rec = await store.get_boot(cid)
        assert boot_rec is not None
        assert boot_rec["request"] == {"chargingStation": station, "reason": "PowerUp"}
        assert boot_rec["response"]["status"] == "Accepted"
        statuses = await store.get_statuses(cid)
        assert {k: v["connectorStatus"] for k, v in statuses.items()} == {"1/1": "Available", "2/1": "Unavailable"}
        assert await store.get_connection(cid) is None
        assert cid not in await listed_chargers(running)
