"""The ``ocpp`` package's OCPP 2.1 charger through the gateway: to a 2.1 CSMS (pass-through) and to a 2.0.1 CSMS
(set-up C, translated), over loopback sockets, every frame checked against the schemas (``validate_schemas``).

The CSMS is :class:`gateway.ops.demo_csms.DemoCsms`, whose ``ocpp``-package ChargePoints validate every payload
against their version's official schemas: a 2.1 field that reached the 2.0.1 CSMS would come back as a CALLERROR.
The charger is the demo's ``Charger21`` (``ocpp.v21``), driven step by step. The ``ocpp`` package has no SEND or
CALLRESULTERROR: those frames are written as they are, and the CSMS's socket records them as they came.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

from ocpp.v21 import call as call21

from gateway.ops.demo import Charger21
from gateway.ops.demo_csms import DemoCsms, now_iso
from gateway.ops.lifecycle import Running, running_gateway
from tests.e2e.test_ocpp_package_peers import connected, sampled201
from tests.helpers import make_config

TIMEOUT = 30
STATION = {"model": "E2E 2.1", "vendorName": "E2E Vendor"}
STREAM = {"id": 4, "variableMonitoringId": 1, "params": {"interval": 1}}


@contextlib.asynccontextmanager
async def csms_behind_gateway(store: str, version: str) -> AsyncIterator[tuple[DemoCsms, Running]]:
    csms = DemoCsms(interval=120)
    url = await csms.start()
    try:
        config = make_config(
            {"csms": {"url": url, "ocpp": version}},
            store=store,
            listen={"ocpp_versions": ["1.6", "2.0.1", "2.1"]},
            session={"validate_schemas": True},
        )
        async with running_gateway(config) as running:
            yield csms, running
    finally:
        await csms.stop()


def counted(running: Running, name: str, **labels: str) -> float:
    value = running.hub.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value


async def until(predicate: Callable[[], bool]) -> None:
    while not predicate():
        await asyncio.sleep(0.01)


def send_frame(uid: str, payload: dict[str, Any]) -> str:
    return json.dumps([6, uid, "NotifyPeriodicEventStream", payload], separators=(", ", ": "))


async def test_ocpp21_charger_and_csms_pass_through_with_send_and_callresulterror(redis_url: str) -> None:
    cid = "CP21-E2E-1"
    async with asyncio.timeout(TIMEOUT), csms_behind_gateway(redis_url, "2.1") as (csms, running):
        async with connected(Charger21, running.charger_url(), cid) as cp:
            boot = await cp.call(call21.BootNotification(charging_station=STATION, reason="PowerUp"), suppress=False)
            assert (boot.status, boot.interval) == ("Accepted", 120)
            assert csms.calls(cid, "BootNotification") == [{"chargingStation": STATION, "reason": "PowerUp"}]

            # what only 2.1 has reaches the 2.1 CSMS as it is: an idToken type 2.0.1 lacks, 2.1's own fields
            vin = {"idToken": "WVWZZZ1JZXW000001", "type": "VIN"}
            auth = await cp.call(call21.Authorize(id_token=vin), suppress=False)
            assert auth.id_token_info == {"status": "Accepted"}
            assert csms.calls(cid, "Authorize") == [{"idToken": vin}]
            info = {"transactionId": "TX-21", "chargingState": "Charging", "operationMode": "ChargingOnly"}
            await cp.call(
                call21.TransactionEvent(
                    event_type="Started", timestamp=now_iso(), trigger_reason="Authorized", seq_no=0,
                    transaction_info=info, id_token=vin, evse={"id": 1, "connectorId": 1}, evse_sleep=False,
                    meter_value=sampled201(1000.0),
                ),
                suppress=False,
            )  # fmt: skip
            (event,) = csms.calls(cid, "TransactionEvent")
            assert event["transactionInfo"] == info and event["evseSleep"] is False

            # a SEND goes through byte for byte and nothing answers it; a CALL right after it is answered as ever
            opened = await cp.call(call21.OpenPeriodicEventStream(constant_stream_data=STREAM), suppress=False)
            assert opened.status == "Accepted"
            raw = send_frame("s-1", {"id": 4, "pending": 0, "basetime": now_iso(), "data": [{"t": 0, "v": "7.4"}]})
            await cp._send(raw)
            heartbeat = await cp.call(call21.Heartbeat(), suppress=False, unique_id="hb-1")
            assert heartbeat.current_time
            await until(lambda: len(csms.frames_v21) == 1)
            assert csms.frames_v21 == [(cid, raw)]

            # a CALLRESULTERROR for the answer it just got reaches the CSMS that gave it, as it is
            refusal = json.dumps([5, "hb-1", "FormatViolation", "currentTime unreadable", {}])
            await cp._send(refusal)
            await until(lambda: len(csms.frames_v21) == 2)
            assert csms.frames_v21[1] == (cid, refusal)

            # CSMS -> charger through the gateway, checked against 2.1 both ways
            point = await csms.point(cid)
            variables = await point.read_config()
            assert [r["attribute_status"] for r in variables.get_variable_result] == ["Accepted", "Accepted"]

        m = {"direction": "from_charger", "backend": "csms"}
        assert counted(running, "ocppgw_messages_total", message_type="send", action="NotifyPeriodicEventStream", **m)
        assert counted(running, "ocppgw_messages_total", message_type="callresulterror", action="Heartbeat", **m)
        assert counted(running, "ocppgw_frame_errors_total", side="charger", kind="schema") == 0
        assert counted(running, "ocppgw_frame_errors_total", side="backend", kind="schema") == 0


async def test_ocpp21_charger_behind_a_v201_csms_is_translated(redis_url: str) -> None:
    cid = "CP21-E2E-2"
    async with asyncio.timeout(TIMEOUT), csms_behind_gateway(redis_url, "2.0.1") as (csms, running):
        async with connected(Charger21, running.charger_url(), cid) as cp:
            boot = await cp.call(call21.BootNotification(charging_station=STATION, reason="PowerUp"), suppress=False)
            assert (boot.status, boot.interval) == ("Accepted", 120)

            # 2.1's own fields and values are gone before the 2.0.1 CSMS (which validates against 2.0.1) sees them
            meter = sampled201(1000.0)
            meter[0]["sampledValue"].append({"value": 55, "measurand": "Display.PresentSOC"})
            info = {"transactionId": "TX-21B", "chargingState": "Charging", "operationMode": "ChargingOnly"}
            token = {"idToken": "TAG-OK", "type": "ISO14443"}
            started = await cp.call(
                call21.TransactionEvent(
                    event_type="Started", timestamp=now_iso(), trigger_reason="Authorized", seq_no=0,
                    transaction_info=info, id_token=token, evse={"id": 1, "connectorId": 1}, evse_sleep=False,
                    meter_value=meter,
                ),
                suppress=False,
            )  # fmt: skip
            assert started.id_token_info == {"status": "Accepted"}
            (event,) = csms.calls(cid, "TransactionEvent")
            assert event["transactionInfo"] == {"transactionId": "TX-21B", "chargingState": "Charging"}
            assert "evseSleep" not in event
            assert [s["measurand"] for s in event["meterValue"][0]["sampledValue"]] == ["Energy.Active.Import.Register"]

            # a 2.1-only CALL is wrapped; the CSMS accepts it, so the stream's SENDs reach it wrapped too
            opened = await cp.call(call21.OpenPeriodicEventStream(constant_stream_data=STREAM), suppress=False)
            assert opened.status == "Accepted"
            stream = {"id": 4, "pending": 0, "basetime": now_iso(), "data": [{"t": 0, "v": "7.4"}]}
            await cp._send(send_frame("s-1", stream))
            await until(lambda: len(csms.calls(cid, "DataTransfer")) == 2)
            vendor = "org.openchargealliance.ocpp21"
            assert csms.calls(cid, "DataTransfer") == [
                {"vendorId": vendor, "messageId": "OpenPeriodicEventStream", "data": {"constantStreamData": STREAM}},
                {"vendorId": vendor, "messageId": "NotifyPeriodicEventStream", "data": stream},
            ]
            assert csms.frames_v21 == []  # a 2.0.1 CSMS never sees a SEND frame

            # CSMS -> charger (2.0.1 -> 2.1): the CSMS's own CALLs reach the 2.1 charger and its answers come back
            point = await csms.point(cid)
            variables = await point.read_config()
            assert [r["attribute_status"] for r in variables.get_variable_result] == ["Accepted", "Accepted"]
            started_remote = await point.remote_start()
            assert started_remote.status == "Accepted"

        labels = {"action": "TransactionEvent"}
        for what in ("evseSleep", "operationMode", "Display.PresentSOC"):
            assert counted(running, "ocppgw_translation_dropped_total", what=what, **labels) == 1, what
        assert counted(running, "ocppgw_translation_errors_total", action="TransactionEvent", kind="invalid_call") == 0
        m = {"direction": "from_charger", "backend": "csms"}
        assert counted(running, "ocppgw_messages_total", message_type="send", action="NotifyPeriodicEventStream", **m)
