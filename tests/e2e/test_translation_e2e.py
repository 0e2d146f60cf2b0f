"""Translation end to end: the `ocpp` package's 1.6 charger, the gateway, the `ocpp` package's 2.0.1 CSMS.

The CSMS (:class:`Csms201`) is ``ocpp.v201.ChargePoint`` behind an aiohttp server: it validates every CALL it gets
and every answer it gets against the official 2.0.1 schemas and records each CALL as it was on the wire. The
charger (:class:`Charger16`) is ``ocpp.v16.ChargePoint``: it validates in 1.6 the same way, its handlers answer
like a real charger and record the CALLs it got as they were on the wire. The gateway in between has a backend
configured ``ocpp: "2.0.1"`` and the charger offers only ``ocpp1.6``, so every message crosses the translator.
The store is Redis (one memory-store smoke test), and one test restarts the gateway in the middle of a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from ocpp.exceptions import (
    FormationViolationError,
    FormatViolationError,
    OccurenceConstraintViolationError,
    OccurrenceConstraintViolationError,
    PropertyConstraintViolationError,
)
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.ops.demo_csms import ConnectionClosed, OcppWs, on
from gateway.ops.lifecycle import Running
from gateway.store.memory import MemoryStore
from gateway.store.redis import RedisStore
from tests.helpers import gateway, make_config
from tests.peers import CsmsServer, Wire, now_iso

TIMEOUT = 30
CACHE_EXPIRY = "2031-01-01T00:00:00.000Z"


# ----------------------------------------------------------------------------------------------- the 2.0.1 CSMS


class CsmsPoint(Cp201):  # type: ignore[misc]
    """The CSMS side of one charging station: realistic answers, every CALL recorded by :class:`Wire`."""

    def __init__(self, cid: str, conn: OcppWs) -> None:
        super().__init__(cid, conn, response_timeout=10)

    @staticmethod
    def token_info(token: str) -> dict[str, Any]:
        if token.upper().startswith("BLOCK"):
            return {"status": "Blocked"}
        return {
            "status": "Accepted",
            "cacheExpiryDateTime": CACHE_EXPIRY,
            "groupIdToken": {"idToken": "FLEET-1", "type": "Central"},
        }

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return result201.BootNotification(current_time=now_iso(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result201.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result201.StatusNotification()

    @on("NotifyEvent")
    def on_notify_event(self, **_: Any) -> Any:
        return result201.NotifyEvent()

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result201.MeterValues()

    @on("Authorize")
    def on_authorize(self, id_token: dict[str, Any], **_: Any) -> Any:
        return result201.Authorize(id_token_info=self.token_info(id_token["id_token"]))

    @on("TransactionEvent")
    def on_transaction_event(self, event_type: str, id_token: dict[str, Any] | None = None, **_: Any) -> Any:
        info = None if id_token is None else self.token_info(id_token["id_token"])
        return result201.TransactionEvent(id_token_info=info, total_cost=4.2 if event_type == "Ended" else None)

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, message_id: str | None = None, **_: Any) -> Any:
        if message_id == "bad-format":
            raise FormatViolationError(description="data is not what this vendor expects")
        if message_id == "bad-occurrence":
            raise OccurrenceConstraintViolationError(description="data is required for this message")
        return result201.DataTransfer(status="Accepted", data={"echo": message_id})


class Csms201(CsmsServer):
    """A 2.0.1 CSMS on loopback serving ``/ocpp/<charger id>``."""

    def __init__(self) -> None:
        super().__init__("ocpp2.0.1", CsmsPoint)


# --------------------------------------------------------------------------------------------- the 1.6 charger


class Charger16(Cp16):  # type: ignore[misc]
    """A 1.6 charger: answers the central system's CALLs like a real one (configuration kept in a dict)."""

    def __init__(self, cid: str, conn: OcppWs, wire: Wire) -> None:
        super().__init__(cid, conn, response_timeout=10)
        self.wire = wire
        self.reader: asyncio.Task[Any] | None = None
        self.config: dict[str, tuple[str, bool]] = {
            "HeartbeatInterval": ("300", False),
            "MeterValueSampleInterval": ("60", False),
            "AuthorizeRemoteTxRequests": ("False", False),
            "NumberOfConnectors": ("2", True),
        }

    @on("RemoteStartTransaction")
    def on_remote_start(self, id_tag: str, **_: Any) -> Any:
        return result16.RemoteStartTransaction(status="Accepted")

    @on("RemoteStopTransaction")
    def on_remote_stop(self, transaction_id: int) -> Any:
        return result16.RemoteStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str) -> Any:
        return result16.Reset(status="Accepted")

    @on("ChangeAvailability")
    def on_change_availability(self, connector_id: int, type: str) -> Any:
        # connector 0 while a connector is busy: the change happens after the transaction
        return result16.ChangeAvailability(status="Scheduled" if connector_id == 0 else "Accepted")

    @on("GetConfiguration")
    def on_get_configuration(self, key: list[str] | None = None) -> Any:
        wanted = key if key is not None else list(self.config)
        known = [
            {"key": k, "value": v, "readonly": ro} for k in wanted if k in self.config for v, ro in [self.config[k]]
        ]
        unknown = [k for k in wanted if k not in self.config]
        return result16.GetConfiguration(configuration_key=known, unknown_key=unknown or None)

    @on("ChangeConfiguration")
    def on_change_configuration(self, key: str, value: str) -> Any:
        if key not in self.config:
            return result16.ChangeConfiguration(status="NotSupported")
        if self.config[key][1]:
            return result16.ChangeConfiguration(status="Rejected")
        self.config[key] = (value, False)
        return result16.ChangeConfiguration(status="Accepted")

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, connector_id: int | None = None) -> Any:
        return result16.TriggerMessage(status="Accepted")

    @on("SetChargingProfile")
    def on_set_charging_profile(self, connector_id: int, cs_charging_profiles: dict[str, Any]) -> Any:
        return result16.SetChargingProfile(status="Accepted")

    @on("ClearCache")
    def on_clear_cache(self, **_: Any) -> Any:
        raise FormationViolationError(description="this charger's cache is read-only")


@contextlib.asynccontextmanager
async def charger(running: Running, cid: str) -> AsyncIterator[tuple[Charger16, aiohttp.ClientWebSocketResponse]]:
    """A 1.6 charger connected through the gateway (offering only ``ocpp1.6``), its receive loop running."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{running.charger_url()}/{cid}", protocols=("ocpp1.6",)) as ws,
    ):
        assert ws.protocol == "ocpp1.6"
        wire = Wire()
        cp = Charger16(cid, OcppWs(ws, wire.tap), wire)
        cp.reader = reader = asyncio.create_task(cp.start(), name=f"{cid}:recv")
        try:
            yield cp, ws
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


@contextlib.asynccontextmanager
async def csms_and_gateway(store: str) -> AsyncIterator[tuple[Csms201, Running]]:
    csms = Csms201()
    url = await csms.start()
    try:
        async with gateway(make_config({"csms": {"url": url, "ocpp": "2.0.1"}}, store=store)) as running:
            yield csms, running
    finally:
        await csms.stop()


# ------------------------------------------------------------------------------------------------ steps


async def boot(cp: Charger16) -> Any:
    return await cp.call(
        call16.BootNotification(
            charge_point_model="TX-16",
            charge_point_vendor="E2E Vendor",
            charge_point_serial_number="SN-0042",
            firmware_version="4.2.0",
        ),
        suppress=False,
    )


async def status(cp: Charger16, connector: int, state: str) -> None:
    answer = await cp.call(
        call16.StatusNotification(connector_id=connector, error_code="NoError", status=state, timestamp=now_iso()),
        suppress=False,
    )
    assert answer is not None


async def start_tx(cp: Charger16, id_tag: str, meter_start: int, connector: int = 1) -> Any:
    return await cp.call(
        call16.StartTransaction(connector_id=connector, id_tag=id_tag, meter_start=meter_start, timestamp=now_iso()),
        suppress=False,
    )


def samples16(energy_wh: float, power_w: float, amps: float, soc: int) -> list[dict[str, Any]]:
    """One 1.6 meterValue shaped like the load generator's (shared/bench/load.py), Temperature included."""
    outlet = {"context": "Sample.Periodic", "location": "Outlet"}
    sampled = [
        {"value": f"{energy_wh:.1f}", **outlet, "format": "Raw", "measurand": "Energy.Active.Import.Register"},
        {"value": f"{power_w:.1f}", **outlet, "measurand": "Power.Active.Import", "unit": "W"},
        {"value": f"{amps:.2f}", **outlet, "measurand": "Current.Import", "phase": "L1", "unit": "A"},
        {"value": str(soc), "context": "Sample.Periodic", "measurand": "SoC", "location": "EV", "unit": "Percent"},
        {
            "value": "31.5",
            "context": "Sample.Periodic",
            "measurand": "Temperature",
            "location": "Body",
            "unit": "Celsius",
        },
    ]
    sampled[0]["unit"] = "Wh"
    return [{"timestamp": now_iso(), "sampledValue": sampled}]


def events(wire: Wire) -> list[tuple[str, int, str]]:
    return [(e["eventType"], e["seqNo"], e["transactionInfo"]["transactionId"]) for e in wire.of("TransactionEvent")]


def values(event: dict[str, Any]) -> list[tuple[str, Any, str | None]]:
    return [
        (s.get("measurand", "Energy.Active.Import.Register"), s["value"], s.get("unitOfMeasure", {}).get("unit"))
        for mv in event["meterValue"]
        for s in mv["sampledValue"]
    ]


# ------------------------------------------------------------------------------------------------ tests


async def test_boot_status_authorize_and_full_transaction(redis_url: str) -> None:
    cid = "TR16-TX-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        assert isinstance(running.hub.store, RedisStore)
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)

            # boot: 1.6 fields land in chargingStation, the CSMS's answer comes back as 1.6
            booted = await boot(cp)
            assert (booted.status, booted.interval) == ("Accepted", 300)
            datetime.fromisoformat(booted.current_time)
            assert got.of("BootNotification") == [
                {
                    "reason": "PowerUp",
                    "chargingStation": {
                        "model": "TX-16",
                        "vendorName": "E2E Vendor",
                        "serialNumber": "SN-0042",
                        "firmwareVersion": "4.2.0",
                    },
                }
            ]
            heartbeat = await cp.call(call16.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)
            assert got.of("Heartbeat") == [{}]

            # status: connector 0 is the station (NotifyEvent AvailabilityState), 1..n are EVSEs
            await status(cp, 0, "Available")
            await status(cp, 1, "Available")
            await status(cp, 2, "Unavailable")
            assert [(s["evseId"], s["connectorId"], s["connectorStatus"]) for s in got.of("StatusNotification")] == [
                (1, 1, "Available"),
                (2, 1, "Unavailable"),
            ]
            ((station,),) = [n["eventData"] for n in got.of("NotifyEvent")]
            assert (station["component"], station["variable"], station["actualValue"]) == (
                {"name": "ChargingStation"},
                {"name": "AvailabilityState"},
                "Available",
            )

            # authorize: idTag -> idToken; idTokenInfo -> idTagInfo (expiry and group carried over)
            ok = await cp.call(call16.Authorize(id_tag="TAG-OK"), suppress=False)
            assert ok.id_tag_info == {"status": "Accepted", "expiry_date": CACHE_EXPIRY, "parent_id_tag": "FLEET-1"}
            blocked = await cp.call(call16.Authorize(id_tag="BLOCKED-9"), suppress=False)
            assert blocked.id_tag_info == {"status": "Blocked"}
            assert got.of("Authorize") == [
                {"idToken": {"idToken": "TAG-OK", "type": "ISO14443"}},
                {"idToken": {"idToken": "BLOCKED-9", "type": "ISO14443"}},
            ]

            # a full transaction: Started, ChargingStateChanged, two meter samples, Ended
            await status(cp, 1, "Preparing")
            start = await start_tx(cp, "TAG-OK", 1000)
            assert isinstance(start.transaction_id, int) and start.transaction_id > 0
            assert start.id_tag_info == {"status": "Accepted", "expiry_date": CACHE_EXPIRY, "parent_id_tag": "FLEET-1"}
            await status(cp, 1, "Charging")
            for energy, power, amps, soc in ((1510.5, 7400.0, 10.5, 41), (2222.0, 11000.0, 16.0, 48)):
                await cp.call(
                    call16.MeterValues(
                        connector_id=1,
                        transaction_id=start.transaction_id,
                        meter_value=samples16(energy, power, amps, soc),
                    ),
                    suppress=False,
                )
            stop = await cp.call(
                call16.StopTransaction(
                    meter_stop=2500,
                    timestamp=now_iso(),
                    transaction_id=start.transaction_id,
                    reason="Local",
                    id_tag="TAG-OK",
                ),
                suppress=False,
            )
            assert stop.id_tag_info == {"status": "Accepted", "expiry_date": CACHE_EXPIRY, "parent_id_tag": "FLEET-1"}
            await status(cp, 1, "Finishing")
            await status(cp, 1, "Available")

            txs = got.of("TransactionEvent")
            tx_id = txs[0]["transactionInfo"]["transactionId"]
            assert isinstance(tx_id, str) and tx_id and not tx_id.isdigit()
            assert events(got) == [
                ("Started", 0, tx_id),
                ("Updated", 1, tx_id),
                ("Updated", 2, tx_id),
                ("Updated", 3, tx_id),
                ("Ended", 4, tx_id),
            ]
            started, charging, meter1, meter2, ended = txs
            assert started["triggerReason"] == "Authorized"
            assert started["evse"] == {"id": 1, "connectorId": 1}
            assert started["idToken"] == {"idToken": "TAG-OK", "type": "ISO14443"}
            assert started["transactionInfo"]["chargingState"] == "EVConnected"
            assert values(started) == [("Energy.Active.Import.Register", 1000, "Wh")]
            assert started["meterValue"][0]["sampledValue"][0]["context"] == "Transaction.Begin"
            assert (charging["triggerReason"], charging["transactionInfo"]["chargingState"]) == (
                "ChargingStateChanged",
                "Charging",
            )
            # 1.6 strings become numbers; Temperature has no 2.0.1 measurand and is dropped
            assert values(meter1) == [
                ("Energy.Active.Import.Register", 1510.5, "Wh"),
                ("Power.Active.Import", 7400, "W"),
                ("Current.Import", 10.5, "A"),
                ("SoC", 41, "Percent"),
            ]
            assert meter1["triggerReason"] == "MeterValuePeriodic"
            assert meter1["meterValue"][0]["sampledValue"][2]["phase"] == "L1"
            assert values(meter2)[0] == ("Energy.Active.Import.Register", 2222, "Wh")
            assert ended["transactionInfo"]["stoppedReason"] == "Local"
            assert ended["triggerReason"] == "StopAuthorized"
            assert ended["idToken"] == {"idToken": "TAG-OK", "type": "ISO14443"}
            assert values(ended)[-1] == ("Energy.Active.Import.Register", 2500, "Wh")
            assert ended["meterValue"][-1]["sampledValue"][0]["context"] == "Transaction.End"
            # Preparing -> Charging -> Finishing stay "Occupied": one StatusNotification for all three
            assert [s["connectorStatus"] for s in got.of("StatusNotification")][2:] == ["Occupied", "Available"]
            assert not cp.wire.calls  # the CSMS sent nothing to the charger

        # the boot record holds what the charger sent and what it was answered (its own version, like pass-through)
        assert await running.hub.writer.flush(2)
        record = await running.hub.store.get_boot(cid)
        assert record is not None
        assert record["request"] == {
            "chargePointModel": "TX-16",
            "chargePointVendor": "E2E Vendor",
            "chargePointSerialNumber": "SN-0042",
            "firmwareVersion": "4.2.0",
        }
        assert (record["response"]["status"], record["response"]["interval"]) == ("Accepted", 300)


async def test_remote_start_and_stop_ids_match(redis_url: str) -> None:
    cid = "TR16-REMOTE-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)
            await boot(cp)
            await status(cp, 1, "Available")
            point = await csms.point(cid)

            # CSMS RequestStartTransaction -> charger RemoteStartTransaction
            remote = await point.call(
                call201.RequestStartTransaction(
                    id_token={"idToken": "APP-USER-7", "type": "Central"}, remote_start_id=4711, evse_id=1
                ),
                suppress=False,
            )
            assert remote.status == "Accepted" and remote.transaction_id is None
            assert cp.wire.calls == [("RemoteStartTransaction", {"idTag": "APP-USER-7", "connectorId": 1})]

            # the charger starts it: the Started carries remoteStartId and the token's real type
            await status(cp, 1, "Preparing")
            start = await start_tx(cp, "APP-USER-7", 5000)
            assert isinstance(start.transaction_id, int)
            assert start.id_tag_info["status"] == "Accepted"
            (started,) = got.of("TransactionEvent")
            tx_id = started["transactionInfo"]["transactionId"]
            assert started["transactionInfo"]["remoteStartId"] == 4711
            assert started["triggerReason"] == "RemoteStart"
            assert started["idToken"] == {"idToken": "APP-USER-7", "type": "Central"}
            assert (started["seqNo"], started["evse"]) == (0, {"id": 1, "connectorId": 1})

            # the CSMS stops it by its own id; the charger gets its own integer
            stopped = await point.call(call201.RequestStopTransaction(transaction_id=tx_id), suppress=False)
            assert stopped.status == "Accepted"
            assert cp.wire.calls[-1] == ("RemoteStopTransaction", {"transactionId": start.transaction_id})
            stop = await cp.call(
                call16.StopTransaction(
                    meter_stop=5600, timestamp=now_iso(), transaction_id=start.transaction_id, reason="Remote"
                ),
                suppress=False,
            )
            assert stop.id_tag_info is None  # no idTag on the stop: the CSMS sent no idTokenInfo
            assert events(got) == [("Started", 0, tx_id), ("Ended", 1, tx_id)]
            ended = got.of("TransactionEvent")[-1]
            assert (ended["transactionInfo"]["stoppedReason"], ended["triggerReason"]) == ("Remote", "RemoteStop")
            assert values(ended) == [("Energy.Active.Import.Register", 5600, "Wh")]

            # a second stop for the ended transaction is refused without reaching the charger
            again = await point.call(call201.RequestStopTransaction(transaction_id=tx_id), suppress=False)
            assert again.status == "Rejected" and again.status_info["reason_code"] == "NoSuchTransaction"
            assert [a for a, _ in cp.wire.calls] == ["RemoteStartTransaction", "RemoteStopTransaction"]


async def test_csms_commands_reach_the_charger(redis_url: str) -> None:
    cid = "TR16-CMD-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)
            await boot(cp)
            await status(cp, 1, "Charging")
            start = await start_tx(cp, "TAG-CMD", 100)
            (started,) = got.of("TransactionEvent")
            tx_id = started["transactionInfo"]["transactionId"]
            point = await csms.point(cid)

            # Reset: Immediate -> Hard; OnIdle during a transaction is Scheduled and sent (Soft) after the Ended
            reset = await point.call(call201.Reset(type="Immediate"), suppress=False)
            assert reset.status == "Accepted"
            assert cp.wire.calls[-1] == ("Reset", {"type": "Hard"})
            scheduled = await point.call(call201.Reset(type="OnIdle"), suppress=False)
            assert scheduled.status == "Scheduled"
            assert cp.wire.of("Reset") == [{"type": "Hard"}]

            # ChangeAvailability: an EVSE -> its connector; the whole station -> connector 0
            evse = await point.call(
                call201.ChangeAvailability(operational_status="Inoperative", evse={"id": 1}), suppress=False
            )
            assert evse.status == "Accepted"
            whole = await point.call(call201.ChangeAvailability(operational_status="Operative"), suppress=False)
            assert whole.status == "Scheduled"
            assert cp.wire.of("ChangeAvailability") == [
                {"connectorId": 1, "type": "Inoperative"},
                {"connectorId": 0, "type": "Operative"},
            ]

            # GetVariables / SetVariables <-> GetConfiguration / ChangeConfiguration
            def get_data(*cvs: tuple[str, str]) -> list[dict[str, Any]]:
                return [{"component": {"name": c}, "variable": {"name": v}} for c, v in cvs]

            wanted = get_data(
                ("OCPPCommCtrlr", "HeartbeatInterval"),
                ("SampledDataCtrlr", "TxUpdatedInterval"),
                ("AuthCtrlr", "AuthorizeRemoteStart"),
                ("NoSuchCtrlr", "Nothing"),
            )
            read = await point.call(call201.GetVariables(get_variable_data=wanted), suppress=False)
            assert [(r["attribute_status"], r.get("attribute_value")) for r in read.get_variable_result] == [
                ("Accepted", "300"),
                ("Accepted", "60"),
                ("Accepted", "false"),
                ("UnknownComponent", None),
            ]
            assert cp.wire.calls[-1] == (
                "GetConfiguration",
                {"key": ["HeartbeatInterval", "MeterValueSampleInterval", "AuthorizeRemoteTxRequests"]},
            )
            written = await point.call(
                call201.SetVariables(
                    set_variable_data=[
                        {**get_data(("OCPPCommCtrlr", "HeartbeatInterval"))[0], "attributeValue": "120"},
                        {**get_data(("AuthCtrlr", "AuthorizeRemoteStart"))[0], "attributeValue": "true"},
                    ]
                ),
                suppress=False,
            )
            assert [r["attribute_status"] for r in written.set_variable_result] == ["Accepted", "Accepted"]
            assert cp.wire.of("ChangeConfiguration") == [
                {"key": "HeartbeatInterval", "value": "120"},
                {"key": "AuthorizeRemoteTxRequests", "value": "true"},
            ]
            reread = await point.call(call201.GetVariables(get_variable_data=wanted[:1] + wanted[2:3]), suppress=False)
            assert [r["attribute_value"] for r in reread.get_variable_result] == ["120", "true"]

            # TriggerMessage TransactionEvent -> MeterValues of the open transaction, which comes back as Trigger
            trigger = await point.call(
                call201.TriggerMessage(requested_message="TransactionEvent", evse={"id": 1}), suppress=False
            )
            assert trigger.status == "Accepted"
            assert cp.wire.calls[-1] == ("TriggerMessage", {"requestedMessage": "MeterValues", "connectorId": 1})
            await cp.call(
                call16.MeterValues(
                    connector_id=1,
                    transaction_id=start.transaction_id,
                    meter_value=[
                        {
                            "timestamp": now_iso(),
                            "sampledValue": [{"value": "777", "context": "Trigger", "unit": "Wh"}],
                        }
                    ],
                ),
                suppress=False,
            )
            triggered = got.of("TransactionEvent")[-1]
            assert (triggered["eventType"], triggered["triggerReason"], triggered["seqNo"]) == ("Updated", "Trigger", 1)
            assert values(triggered) == [("Energy.Active.Import.Register", 777, "Wh")]
            # TriggerMessage StatusNotification: forwarded although the connector stays Occupied
            trigger = await point.call(
                call201.TriggerMessage(requested_message="StatusNotification", evse={"id": 1, "connectorId": 1}),
                suppress=False,
            )
            assert trigger.status == "Accepted"
            assert cp.wire.calls[-1] == ("TriggerMessage", {"requestedMessage": "StatusNotification", "connectorId": 1})
            await status(cp, 1, "Charging")
            assert got.of("StatusNotification")[-1]["connectorStatus"] == "Occupied"
            assert len(got.of("StatusNotification")) == 2

            # smart charging: a 2.0.1 TxProfile for the open transaction -> a valid 1.6 profile
            profile = {
                "id": 31,
                "stackLevel": 1,
                "chargingProfilePurpose": "TxProfile",
                "chargingProfileKind": "Relative",
                "transactionId": tx_id,
                "chargingSchedule": [
                    {
                        "id": 7,
                        "chargingRateUnit": "A",
                        "duration": 3600,
                        "chargingSchedulePeriod": [
                            {"startPeriod": 0, "limit": 16.04, "numberPhases": 3},
                            {"startPeriod": 1800, "limit": 10.0},
                        ],
                    }
                ],
            }
            smart = await point.call(call201.SetChargingProfile(evse_id=1, charging_profile=profile), suppress=False)
            assert smart.status == "Accepted"
            assert cp.wire.calls[-1] == (
                "SetChargingProfile",
                {
                    "connectorId": 1,
                    "csChargingProfiles": {
                        "chargingProfileId": 31,
                        "transactionId": start.transaction_id,
                        "stackLevel": 1,
                        "chargingProfilePurpose": "TxProfile",
                        "chargingProfileKind": "Relative",
                        "chargingSchedule": {
                            "duration": 3600,
                            "chargingRateUnit": "A",
                            "chargingSchedulePeriod": [
                                {"startPeriod": 0, "limit": 16, "numberPhases": 3},
                                {"startPeriod": 1800, "limit": 10},
                            ],
                        },
                    },
                },
            )
            station_max = {**profile, "id": 32, "chargingProfilePurpose": "ChargingStationMaxProfile"}
            station_max["chargingProfileKind"] = "Absolute"
            del station_max["transactionId"]
            station_max["chargingSchedule"] = [{**profile["chargingSchedule"][0], "startSchedule": now_iso()}]
            smart = await point.call(
                call201.SetChargingProfile(evse_id=0, charging_profile=station_max), suppress=False
            )
            assert smart.status == "Accepted"
            sent = cp.wire.calls[-1][1]
            assert sent["connectorId"] == 0
            assert sent["csChargingProfiles"]["chargingProfilePurpose"] == "ChargePointMaxProfile"

            # the transaction ends: the deferred OnIdle reset now reaches the charger, as Soft
            await cp.call(
                call16.StopTransaction(meter_stop=900, timestamp=now_iso(), transaction_id=start.transaction_id),
                suppress=False,
            )
            await cp.wire.wait(lambda: len(cp.wire.of("Reset")) == 2)
            assert cp.wire.of("Reset") == [{"type": "Hard"}, {"type": "Soft"}]
            assert events(got) == [("Started", 0, tx_id), ("Updated", 1, tx_id), ("Ended", 2, tx_id)]


async def test_gateway_restart_mid_transaction(redis_url: str) -> None:
    """The translation state lives in Redis: a new gateway process continues the transaction the old one began."""
    cid = "TR16-RESTART-1"
    async with asyncio.timeout(TIMEOUT):
        csms = Csms201()
        url = await csms.start()
        try:
            config = make_config({"csms": {"url": url, "ocpp": "2.0.1"}}, store=redis_url)
            got = csms.got(cid)
            async with contextlib.AsyncExitStack() as stack:
                async with gateway(config) as first:
                    cp, ws = await stack.enter_async_context(charger(first, cid))
                    await boot(cp)
                    await status(cp, 1, "Charging")
                    start = await start_tx(cp, "TAG-RS", 10_000)
                    await cp.call(
                        call16.MeterValues(
                            connector_id=1,
                            transaction_id=start.transaction_id,
                            meter_value=samples16(10_400, 7000, 10, 50),
                        ),
                        suppress=False,
                    )
                # graceful stop: the charger was told "going away", the CSMS link closed
                assert cp.reader is not None
                with contextlib.suppress(ConnectionClosed):
                    await cp.reader
                assert ws.close_code == 1001
                await csms.gone(cid)
            tx_id = got.of("TransactionEvent")[0]["transactionInfo"]["transactionId"]
            assert events(got) == [("Started", 0, tx_id), ("Updated", 1, tx_id)]

            async with gateway(config) as second, charger(second, cid) as (cp2, _ws2):
                assert isinstance(second.hub.store, RedisStore)
                await cp2.call(
                    call16.MeterValues(
                        connector_id=1,
                        transaction_id=start.transaction_id,
                        meter_value=samples16(11_000, 7100, 10, 55),
                    ),
                    suppress=False,
                )
                stop = await cp2.call(
                    call16.StopTransaction(
                        meter_stop=11_500,
                        timestamp=now_iso(),
                        transaction_id=start.transaction_id,
                        reason="EVDisconnected",
                        id_tag="TAG-RS",
                    ),
                    suppress=False,
                )
                assert stop.id_tag_info["status"] == "Accepted"
                # the CSMS can still address the transaction by its id after the restart
                point = await csms.point(cid)
                answer = await point.call(call201.GetTransactionStatus(transaction_id=tx_id), suppress=False)
                assert (answer.messages_in_queue, answer.ongoing_indicator) == (False, False)
            assert csms.connects == [cid, cid]
            assert events(got) == [
                ("Started", 0, tx_id),
                ("Updated", 1, tx_id),
                ("Updated", 2, tx_id),
                ("Ended", 3, tx_id),
            ]
            ended = got.of("TransactionEvent")[-1]
            assert (ended["transactionInfo"]["stoppedReason"], ended["triggerReason"]) == (
                "EVDisconnected",
                "EVDeparted",
            )
            assert values(ended)[-1] == ("Energy.Active.Import.Register", 11_500, "Wh")
            assert not any(e.get("offline") for e in got.of("TransactionEvent"))
            # OCPP-J: a CALL's message id is never reused for the same charging station, across connections too
            assert len(set(got.ids)) == len(got.ids), got.ids
        finally:
            await csms.stop()


async def test_callerrors_keep_each_versions_spelling(redis_url: str) -> None:
    cid = "TR16-ERR-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)
            await boot(cp)
            # charger -> CSMS: the 2.0.1 codes come back as the 1.6 spellings
            ok = await cp.call(call16.DataTransfer(vendor_id="com.example", message_id="hello"), suppress=False)
            assert (ok.status, json.loads(ok.data)) == ("Accepted", {"echo": "hello"})
            with pytest.raises(FormationViolationError) as format_error:
                await cp.call(call16.DataTransfer(vendor_id="com.example", message_id="bad-format"), suppress=False)
            assert format_error.value.description == "data is not what this vendor expects"
            with pytest.raises(OccurenceConstraintViolationError):
                await cp.call(call16.DataTransfer(vendor_id="com.example", message_id="bad-occurrence"), suppress=False)
            assert [p["messageId"] for p in got.of("DataTransfer")] == ["hello", "bad-format", "bad-occurrence"]
            # CSMS -> charger: the charger's 1.6 code reaches the CSMS in its 2.0.1 spelling
            point = await csms.point(cid)
            with pytest.raises(FormatViolationError):
                await point.call(call201.ClearCache(), suppress=False)
            assert cp.wire.calls == [("ClearCache", {})]
            # the session goes on
            heartbeat = await cp.call(call16.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)


async def test_numbers_out_of_range_are_refused_both_ways_and_the_session_lives_on(redis_url: str) -> None:
    """Python's json writes 2**64 exactly; the gateway reads it as a float it cannot carry. It used to raise out of
    the frame callback (orjson encodes no integer beyond 64 bits) and close the charger with 1011."""
    cid = "TR16-BIG-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, ws):
            got = csms.got(cid)
            await boot(cp)
            with pytest.raises(PropertyConstraintViolationError):
                await cp.call(
                    call16.StatusNotification(connector_id=2**63, error_code="NoError", status="Available"),
                    suppress=False,
                )
            point = await csms.point(cid)
            with pytest.raises(PropertyConstraintViolationError):
                await point.call(
                    call201.ChangeAvailability(operational_status="Operative", evse={"id": 2**64}), suppress=False
                )
            assert got.actions() == ["BootNotification"] and cp.wire.calls == []
            heartbeat = await cp.call(call16.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)
            assert not ws.closed
            frame_errors = running.hub.metrics.frame_errors
            assert frame_errors.labels("charger", "number_out_of_range")._value.get() == 1
            assert frame_errors.labels("backend", "number_out_of_range")._value.get() == 1


async def test_memory_store_smoke() -> None:
    cid = "TR16-MEM-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway("memory://") as (csms, running):
        assert isinstance(running.hub.store, MemoryStore)
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)
            assert (await boot(cp)).status == "Accepted"
            start = await start_tx(cp, "TAG-MEM", 0)
            await cp.call(
                call16.StopTransaction(meter_stop=1234, timestamp=now_iso(), transaction_id=start.transaction_id),
                suppress=False,
            )
            tx_id = got.of("TransactionEvent")[0]["transactionInfo"]["transactionId"]
            assert events(got) == [("Started", 0, tx_id), ("Ended", 1, tx_id)]
            assert got.of("TransactionEvent")[0]["meterValue"][0]["sampledValue"][0]["value"] == 0
