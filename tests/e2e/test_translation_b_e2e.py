"""Translation the other way, end to end: the `ocpp` package's 2.0.1 charger, the gateway, its 1.6 CSMS.

The CSMS (:class:`Csms16`) is ``ocpp.v16.ChargePoint`` behind an aiohttp server: it validates every CALL and every
answer against the official 1.6 schemas, assigns transaction ids like a real central system and records each CALL
as it was on the wire. The charger (:class:`Charger201`) is ``ocpp.v201.ChargePoint``: it validates in 2.0.1, its
handlers answer like a real charging station and record the CALLs they got. The gateway in between has a backend
configured ``ocpp: "1.6"`` and the charger offers only ``ocpp2.0.1``, so every message crosses the set-up B
translator. The store is Redis, and one test restarts the gateway in the middle of a transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from ocpp.exceptions import PropertyConstraintViolationError
from ocpp.v16 import ChargePoint as Cp16
from ocpp.v16 import call as call16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from gateway.ops.demo_csms import ConnectionClosed, OcppWs, on
from gateway.ops.lifecycle import Running
from gateway.store.redis import RedisStore
from tests.helpers import gateway, make_config
from tests.peers import CsmsServer, Wire, now_iso

TIMEOUT = 30
EXPIRY = "2031-01-01T00:00:00.000Z"


# ----------------------------------------------------------------------------------------------- the 1.6 CSMS


class CentralPoint(Cp16):  # type: ignore[misc]
    """The central system's side of one charge point: realistic 1.6 answers, transaction ids it assigns."""

    ids = itertools.count(7001)

    def __init__(self, cid: str, conn: OcppWs, assigned: list[int]) -> None:
        super().__init__(cid, conn, response_timeout=10)
        self.assigned = assigned  # transaction ids given to this charger, in order

    @staticmethod
    def tag_info(id_tag: str) -> dict[str, Any]:
        if id_tag.upper().startswith("BLOCK"):
            return {"status": "Blocked"}
        return {"status": "Accepted", "expiryDate": EXPIRY, "parentIdTag": "FLEET-16"}

    @on("BootNotification")
    def on_boot(self, **_: Any) -> Any:
        return result16.BootNotification(current_time=now_iso(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return result16.Heartbeat(current_time=now_iso())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> Any:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, id_tag: str) -> Any:
        return result16.Authorize(id_tag_info=self.tag_info(id_tag))

    @on("StartTransaction")
    def on_start(self, id_tag: str, **_: Any) -> Any:
        tx_id = next(self.ids)
        self.assigned.append(tx_id)
        return result16.StartTransaction(transaction_id=tx_id, id_tag_info=self.tag_info(id_tag))

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> Any:
        return result16.MeterValues()

    @on("StopTransaction")
    def on_stop(self, id_tag: str | None = None, **_: Any) -> Any:
        return result16.StopTransaction(id_tag_info=None if id_tag is None else self.tag_info(id_tag))

    @on("DataTransfer")
    def on_data_transfer(self, vendor_id: str, **_: Any) -> Any:
        return result16.DataTransfer(status="Accepted")


class Csms16(CsmsServer):
    """A 1.6 central system on loopback serving ``/ocpp/<charger id>``; ``assigned`` holds the transaction ids it
    gave each charger."""

    def __init__(self) -> None:
        self.assigned: dict[str, list[int]] = {}
        super().__init__("ocpp1.6", lambda cid, conn: CentralPoint(cid, conn, self.assigned.setdefault(cid, [])))


# --------------------------------------------------------------------------------------------- the 2.0.1 charger


class Charger201(Cp201):  # type: ignore[misc]
    """A 2.0.1 charging station: answers the CSMS's CALLs like a real one (device model kept in a dict)."""

    def __init__(self, cid: str, conn: OcppWs, wire: Wire) -> None:
        super().__init__(cid, conn, response_timeout=10)
        self.wire = wire
        self.reader: asyncio.Task[Any] | None = None
        self.variables: dict[tuple[str, str], tuple[str, bool]] = {
            ("OCPPCommCtrlr", "HeartbeatInterval"): ("300", False),
            ("SampledDataCtrlr", "TxUpdatedInterval"): ("60", False),
            ("AuthCtrlr", "AuthorizeRemoteStart"): ("false", False),
        }
        self.next_tx: str | None = None  # transactionId a RequestStartTransaction reports (cable already in)

    @on("RequestStartTransaction")
    def on_request_start(self, **_: Any) -> Any:
        return result201.RequestStartTransaction(status="Accepted", transaction_id=self.next_tx)

    @on("RequestStopTransaction")
    def on_request_stop(self, transaction_id: str) -> Any:
        return result201.RequestStopTransaction(status="Accepted")

    @on("Reset")
    def on_reset(self, type: str, **_: Any) -> Any:
        return result201.Reset(status="Accepted")

    @on("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]]) -> Any:
        out = []
        for item in get_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            found = self.variables.get(key)
            answer = {"component": item["component"], "variable": item["variable"]}
            if found is None:
                answer["attribute_status"] = "UnknownVariable"
            else:
                answer["attribute_status"] = "Accepted"
                answer["attribute_value"] = found[0]
            out.append(answer)
        return result201.GetVariables(get_variable_result=out)

    @on("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]]) -> Any:
        out = []
        for item in set_variable_data:
            key = (item["component"]["name"], item["variable"]["name"])
            status = "UnknownVariable" if key not in self.variables else "Accepted"
            if status == "Accepted":
                self.variables[key] = (item["attribute_value"], False)
            out.append({"component": item["component"], "variable": item["variable"], "attribute_status": status})
        return result201.SetVariables(set_variable_result=out)

    @on("TriggerMessage")
    def on_trigger(self, requested_message: str, **_: Any) -> Any:
        return result201.TriggerMessage(status="Accepted")

    @on("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any]) -> Any:
        return result201.SetChargingProfile(status="Accepted")


@contextlib.asynccontextmanager
async def charger(running: Running, cid: str) -> AsyncIterator[tuple[Charger201, aiohttp.ClientWebSocketResponse]]:
    """A 2.0.1 charger connected through the gateway (offering only ``ocpp2.0.1``), its receive loop running."""
    async with (
        aiohttp.ClientSession() as http,
        http.ws_connect(f"{running.charger_url()}/{cid}", protocols=("ocpp2.0.1",)) as ws,
    ):
        assert ws.protocol == "ocpp2.0.1"
        wire = Wire()
        cp = Charger201(cid, OcppWs(ws, wire.tap), wire)
        cp.reader = reader = asyncio.create_task(cp.start(), name=f"{cid}:recv")
        try:
            yield cp, ws
        finally:
            await ws.close()
            with contextlib.suppress(ConnectionClosed):
                await reader


def config_for(url: str, store: str) -> Any:
    return make_config({"csms16": {"url": url, "ocpp": "1.6"}}, store=store)


@contextlib.asynccontextmanager
async def csms_and_gateway(store: str) -> AsyncIterator[tuple[Csms16, Running]]:
    csms = Csms16()
    url = await csms.start()
    try:
        async with gateway(config_for(url, store)) as running:
            yield csms, running
    finally:
        await csms.stop()


# ------------------------------------------------------------------------------------------------ steps


async def boot(cp: Charger201) -> Any:
    return await cp.call(
        call201.BootNotification(
            charging_station={
                "model": "TX-201",
                "vendor_name": "E2E Vendor",
                "serial_number": "SN-2001",
                "firmware_version": "2.0.1-e2e",
            },
            reason="PowerUp",
        ),
        suppress=False,
    )


async def status(cp: Charger201, evse: int, state: str) -> None:
    await cp.call(
        call201.StatusNotification(timestamp=now_iso(), connector_status=state, evse_id=evse, connector_id=1),
        suppress=False,
    )


def energy(kwh: float, context: str = "Sample.Periodic", ts: str | None = None) -> list[dict[str, Any]]:
    """One 2.0.1 meterValue: the import register in kWh, plus power in W."""
    return [
        {
            "timestamp": ts or now_iso(),
            "sampledValue": [
                {
                    "value": kwh,
                    "context": context,
                    "measurand": "Energy.Active.Import.Register",
                    "unitOfMeasure": {"unit": "kWh"},
                },
                {"value": 7400, "context": context, "measurand": "Power.Active.Import", "unitOfMeasure": {"unit": "W"}},
            ],
        }
    ]


async def tx_event(
    cp: Charger201,
    event: str,
    seq: int,
    tx: str,
    trigger: str,
    *,
    token: str | None = None,
    meter: list[dict[str, Any]] | None = None,
    evse: int = 1,
    **info: Any,
) -> Any:
    return await cp.call(
        call201.TransactionEvent(
            event_type=event,
            timestamp=now_iso(),
            trigger_reason=trigger,
            seq_no=seq,
            transaction_info={"transactionId": tx, **info},
            evse={"id": evse, "connectorId": 1} if event == "Started" else None,
            id_token=None if token is None else {"idToken": token, "type": "ISO14443"},
            meter_value=meter,
        ),
        suppress=False,
    )


def energy_16(payload: dict[str, Any]) -> list[tuple[str, str]]:
    """The energy register readings (value, unit) of a 1.6 MeterValues / StopTransaction.transactionData."""
    values = payload.get("meterValue") or payload.get("transactionData") or []
    return [
        (s["value"], s.get("unit", "Wh"))
        for mv in values
        for s in mv["sampledValue"]
        if s.get("measurand", "Energy.Active.Import.Register") == "Energy.Active.Import.Register"
        and s.get("format", "Raw") == "Raw"
    ]


# ------------------------------------------------------------------------------------------------ tests


async def test_boot_status_authorize_and_cable_first_transaction(redis_url: str) -> None:
    cid = "TR201-TX-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        assert isinstance(running.hub.store, RedisStore)
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)

            booted = await boot(cp)
            assert (booted.status, booted.interval) == ("Accepted", 300)
            datetime.fromisoformat(booted.current_time)
            (boot16,) = got.of("BootNotification")
            assert (boot16["chargePointVendor"], boot16["chargePointModel"]) == ("E2E Vendor", "TX-201")
            assert (boot16["chargePointSerialNumber"], boot16["firmwareVersion"]) == ("SN-2001", "2.0.1-e2e")

            await status(cp, 1, "Available")
            assert [(s["connectorId"], s["status"], s["errorCode"]) for s in got.of("StatusNotification")] == [
                (1, "Available", "NoError")
            ]

            ok = await cp.call(call201.Authorize(id_token={"idToken": "TAG-B", "type": "ISO14443"}), suppress=False)
            assert ok.id_token_info == {
                "status": "Accepted",
                "cache_expiry_date_time": EXPIRY,
                "group_id_token": {"id_token": "FLEET-16", "type": "Central"},
            }
            assert got.of("Authorize") == [{"idTag": "TAG-B"}]

            # cable first: Started without an idToken reaches nobody; the plug-in shows as Preparing
            started = await tx_event(
                cp, "Started", 0, "TX-CABLE-1", "CablePluggedIn", meter=energy(1.5, "Transaction.Begin")
            )
            assert started.id_token_info is None
            await status(cp, 1, "Occupied")
            assert got.of("StartTransaction") == []
            assert got.of("StatusNotification")[-1]["status"] == "Preparing"
            # a meter sample before authorization waits: there is no 1.6 transaction to carry it yet
            await tx_event(cp, "Updated", 1, "TX-CABLE-1", "MeterValuePeriodic", meter=energy(1.6))
            assert got.of("MeterValues") == []

            # authorized later: StartTransaction with the Started event's meter reading; the CSMS's verdict comes back
            authorized = await tx_event(
                cp, "Updated", 2, "TX-CABLE-1", "Authorized", token="TAG-B", charging_state="Charging"
            )
            assert authorized.id_token_info["status"] == "Accepted"
            (start16,) = got.of("StartTransaction")
            assert (start16["connectorId"], start16["idTag"], start16["meterStart"]) == (1, "TAG-B", 1500)
            await got.wait(lambda: len(got.of("MeterValues")) == 1)
            (tx_int,) = csms.assigned[cid]
            assert got.of("MeterValues")[0]["transactionId"] == tx_int
            assert energy_16(got.of("MeterValues")[0]) == [("1.6", "kWh")]  # §4.3: multiplier applied, unit kept

            await tx_event(cp, "Updated", 3, "TX-CABLE-1", "MeterValuePeriodic", meter=energy(2.25))
            assert [m["transactionId"] for m in got.of("MeterValues")] == [tx_int, tx_int]
            assert energy_16(got.of("MeterValues")[-1]) == [("2.25", "kWh")]

            ended = await tx_event(
                cp,
                "Ended",
                4,
                "TX-CABLE-1",
                "EVCommunicationLost",
                meter=energy(3.0, "Transaction.End"),
                stopped_reason="EVDisconnected",
            )
            assert ended.id_token_info is None
            (stop16,) = got.of("StopTransaction")
            assert (stop16["transactionId"], stop16["meterStop"], stop16["reason"]) == (tx_int, 3000, "EVDisconnected")
            # nothing reached the CSMS with an id it did not assign
            assert all(p.get("transactionId", tx_int) == tx_int for _, p in got.calls)


async def test_remote_start_and_stop_ids_match(redis_url: str) -> None:
    cid = "TR201-REMOTE-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, _ws):
            got = csms.got(cid)
            await boot(cp)
            await status(cp, 1, "Available")
            point = await csms.point(cid)

            remote = await point.call(
                call16.RemoteStartTransaction(id_tag="APP-USER-7", connector_id=1), suppress=False
            )
            assert remote.status == "Accepted"
            ((action, request),) = cp.wire.calls
            assert action == "RequestStartTransaction"
            assert request["idToken"]["idToken"] == "APP-USER-7" and request["evseId"] == 1
            remote_start_id = request["remoteStartId"]
            assert isinstance(remote_start_id, int)

            started = await tx_event(
                cp,
                "Started",
                0,
                "TX-REMOTE-1",
                "RemoteStart",
                token="APP-USER-7",
                meter=energy(5.0, "Transaction.Begin"),
                remote_start_id=remote_start_id,
                charging_state="Charging",
            )
            assert started.id_token_info["status"] == "Accepted"
            (start16,) = got.of("StartTransaction")
            assert (start16["idTag"], start16["meterStart"]) == ("APP-USER-7", 5000)
            (assigned,) = csms.assigned[cid]

            # the CSMS stops it by its own integer id; the charger gets its own string id
            stopped = await point.call(call16.RemoteStopTransaction(transaction_id=assigned), suppress=False)
            assert stopped.status == "Accepted"
            assert cp.wire.calls[-1] == ("RequestStopTransaction", {"transactionId": "TX-REMOTE-1"})
            await tx_event(
                cp,
                "Ended",
                1,
                "TX-REMOTE-1",
                "RemoteStop",
                meter=energy(5.6, "Transaction.End"),
                stopped_reason="Remote",
            )
            (stop16,) = got.of("StopTransaction")
            assert (stop16["transactionId"], stop16["meterStop"], stop16["reason"]) == (assigned, 5600, "Remote")

            # an id the CSMS never assigned is refused without reaching the charger
            unknown = await point.call(call16.RemoteStopTransaction(transaction_id=assigned + 1000), suppress=False)
            assert unknown.status == "Rejected"
            assert [a for a, _ in cp.wire.calls] == ["RequestStartTransaction", "RequestStopTransaction"]


async def test_csms_commands_reach_the_charger(redis_url: str) -> None:
    cid = "TR201-CMD-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, _ws):
            await boot(cp)
            point = await csms.point(cid)

            # configuration: 1.6 keys <-> device model variables
            conf = await point.call(call16.GetConfiguration(key=["HeartbeatInterval", "NoSuchKey"]), suppress=False)
            assert conf.configuration_key == [{"key": "HeartbeatInterval", "readonly": False, "value": "300"}]
            assert conf.unknown_key == ["NoSuchKey"]
            (get_vars,) = [p for a, p in cp.wire.calls if a == "GetVariables"]
            assert {"component": {"name": "OCPPCommCtrlr"}, "variable": {"name": "HeartbeatInterval"}} in [
                {"component": i["component"], "variable": i["variable"]} for i in get_vars["getVariableData"]
            ]
            changed = await point.call(call16.ChangeConfiguration(key="HeartbeatInterval", value="120"), suppress=False)
            assert changed.status == "Accepted"
            assert cp.variables[("OCPPCommCtrlr", "HeartbeatInterval")][0] == "120"
            again = await point.call(call16.GetConfiguration(key=["HeartbeatInterval"]), suppress=False)
            assert again.configuration_key[0]["value"] == "120"

            # reset: Hard -> Immediate
            reset = await point.call(call16.Reset(type="Hard"), suppress=False)
            assert reset.status == "Accepted"
            assert cp.wire.calls[-1] == ("Reset", {"type": "Immediate"})

            # trigger message: StatusNotification for connector 1 names the EVSE and its connector; the status it
            # brings reaches the CSMS even though it did not change
            await status(cp, 1, "Available")
            trig = await point.call(
                call16.TriggerMessage(requested_message="StatusNotification", connector_id=1), suppress=False
            )
            assert trig.status == "Accepted"
            assert cp.wire.calls[-1] == (
                "TriggerMessage",
                {"requestedMessage": "StatusNotification", "evse": {"id": 1, "connectorId": 1}},
            )
            await status(cp, 1, "Available")
            got = csms.got(cid)
            assert [(s["connectorId"], s["status"]) for s in got.of("StatusNotification")] == [(1, "Available")] * 2

            # a charging profile: the 1.6 schedule becomes a one-element list with the profile's id
            profile = await point.call(
                call16.SetChargingProfile(
                    connector_id=1,
                    cs_charging_profiles={
                        "chargingProfileId": 12,
                        "stackLevel": 0,
                        "chargingProfilePurpose": "TxDefaultProfile",
                        "chargingProfileKind": "Absolute",
                        "chargingSchedule": {
                            "chargingRateUnit": "A",
                            "startSchedule": "2030-01-01T00:00:00.000Z",
                            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 16.0}],
                        },
                    },
                ),
                suppress=False,
            )
            assert profile.status == "Accepted"
            action, sent = cp.wire.calls[-1]
            assert action == "SetChargingProfile" and sent["evseId"] == 1
            assert sent["chargingProfile"]["id"] == 12
            assert sent["chargingProfile"]["chargingProfilePurpose"] == "TxDefaultProfile"
            (schedule,) = sent["chargingProfile"]["chargingSchedule"]
            assert (schedule["chargingRateUnit"], schedule["chargingSchedulePeriod"][0]["limit"]) == ("A", 16.0)

            # the session goes on
            heartbeat = await cp.call(call201.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)


async def test_numbers_out_of_range_are_refused_both_ways_and_the_session_lives_on(redis_url: str) -> None:
    """Python's json writes 2**64 exactly; the gateway reads it as a float (which the 2.0.1 schema takes for an
    integer) it cannot carry. It used to raise out of the frame callback and close the charger with 1011."""
    cid = "TR201-BIG-1"
    async with asyncio.timeout(TIMEOUT), csms_and_gateway(redis_url) as (csms, running):
        async with charger(running, cid) as (cp, ws):
            got = csms.got(cid)
            await boot(cp)
            with pytest.raises(PropertyConstraintViolationError):
                await cp.call(call201.MeterValues(evse_id=2**64, meter_value=energy(1.5)), suppress=False)
            point = await csms.point(cid)
            with pytest.raises(PropertyConstraintViolationError):
                await point.call(call16.ChangeAvailability(connector_id=2**63, type="Operative"), suppress=False)
            assert got.actions() == ["BootNotification"] and cp.wire.calls == []
            heartbeat = await cp.call(call201.Heartbeat(), suppress=False)
            datetime.fromisoformat(heartbeat.current_time)
            assert not ws.closed
            frame_errors = running.hub.metrics.frame_errors
            assert frame_errors.labels("charger", "number_out_of_range")._value.get() == 1
            assert frame_errors.labels("backend", "number_out_of_range")._value.get() == 1


async def test_gateway_restart_mid_transaction(redis_url: str) -> None:
    """The translation state lives in Redis: a new gateway process ends, once, the transaction the old one began."""
    cid = "TR201-RESTART-1"
    async with asyncio.timeout(TIMEOUT):
        csms = Csms16()
        url = await csms.start()
        try:
            config = config_for(url, redis_url)
            got = csms.got(cid)
            async with contextlib.AsyncExitStack() as stack:
                async with gateway(config) as first:
                    cp, ws = await stack.enter_async_context(charger(first, cid))
                    await boot(cp)
                    await tx_event(
                        cp,
                        "Started",
                        0,
                        "TX-RS-1",
                        "Authorized",
                        token="TAG-RS",
                        meter=energy(10.0, "Transaction.Begin"),
                    )
                    await tx_event(cp, "Updated", 1, "TX-RS-1", "MeterValuePeriodic", meter=energy(10.4))
                assert cp.reader is not None
                with contextlib.suppress(ConnectionClosed):
                    await cp.reader
                assert ws.close_code == 1001
                await csms.gone(cid)
            (start16,) = got.of("StartTransaction")
            (tx_int,) = csms.assigned[cid]
            assert got.of("MeterValues")[0]["transactionId"] == tx_int

            async with gateway(config) as second, charger(second, cid) as (cp2, _ws2):
                await tx_event(cp2, "Updated", 2, "TX-RS-1", "MeterValuePeriodic", meter=energy(11.0))
                # the charger re-sends the Ended after a lost answer: the CSMS sees one StopTransaction
                for _ in range(2):
                    await tx_event(
                        cp2,
                        "Ended",
                        3,
                        "TX-RS-1",
                        "StopAuthorized",
                        token="TAG-RS",
                        meter=energy(11.5, "Transaction.End"),
                        stopped_reason="Local",
                    )
            assert csms.connects == [cid, cid]
            assert start16["meterStart"] == 10_000
            assert [m["transactionId"] for m in got.of("MeterValues")] == [tx_int, tx_int]
            (stop16,) = got.of("StopTransaction")
            assert (stop16["transactionId"], stop16["meterStop"], stop16["idTag"]) == (tx_int, 11_500, "TAG-RS")
            assert len(set(got.ids)) == len(got.ids), got.ids
        finally:
            await csms.stop()
